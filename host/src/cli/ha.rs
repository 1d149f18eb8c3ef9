//! `taskpod serve` with `ha.enabled`: one replica among several sharing a PostgreSQL store.
//!
//! The replica serves HTTP at once. While it follows, `/healthz`, `/readyz` and `/metrics`
//! answer locally and every other request is redirected (307, method and body kept) to the
//! leader's advertised URL, or refused with 503 while no leader is known. Once it wins the
//! Lease it starts the runner (which restores every unfinished task from the store and
//! re-attaches to its Job) and serves the full API. If it loses the Lease it stops the runner
//! and exits with an error, to be restarted as a follower.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;
use tower::ServiceExt;

use super::remote::ServiceError;
use super::serve::{open_store, shutdown_signal, start_runner};
use crate::api::{self, ApiError};
use crate::config::Config;
use crate::ha::{Elector, ElectorOptions, Leadership};

/// This replica's identity: `ha.identity`, else `POD_NAME`, else the host name.
fn identity(config: &Config) -> String {
    if let Some(id) = &config.ha.identity {
        return id.clone();
    }
    if let Ok(name) = std::env::var("POD_NAME")
        && !name.is_empty()
    {
        return name;
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("taskpod-{}", std::process::id()))
}

/// The URL followers redirect to while this replica leads.
fn advertise_url(config: &Config, addr: SocketAddr) -> String {
    if let Some(url) = &config.ha.advertise_url {
        return url.trim_end_matches('/').to_string();
    }
    if let Ok(url) = std::env::var("TASKPOD_ADVERTISE_URL")
        && !url.is_empty()
    {
        return url.trim_end_matches('/').to_string();
    }
    if let Ok(ip) = std::env::var("POD_IP")
        && let Ok(ip) = ip.parse::<std::net::IpAddr>()
    {
        return format!("http://{}", SocketAddr::new(ip, addr.port()));
    }
    format!("http://{addr}")
}

/// What a follower answers.
fn follower_response(req: &Request<Body>, leadership: &Leadership) -> Response {
    let holder = leadership.holder.as_deref().unwrap_or("none yet");
    match req.uri().path() {
        "/healthz" => "ok\n".into_response(),
        "/readyz" if leadership.leading => ApiError::Unavailable(
            "elected leader, restoring tasks and syncing the watches".to_owned(),
        )
        .into_response(),
        "/readyz" => format!("ready (follower; leader: {holder})\n").into_response(),
        "/metrics" => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            "# HELP taskpod_leader 1 on the replica that holds the leader Lease.\n\
             # TYPE taskpod_leader gauge\ntaskpod_leader 0\n",
        )
            .into_response(),
        _ if leadership.leading => {
            let mut response = ApiError::Unavailable(
                "this replica was just elected leader and is restoring tasks; retry in a moment"
                    .to_owned(),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            response
        }
        _ => match &leadership.leader_url {
            Some(url) => {
                let target = format!(
                    "{url}{}",
                    req.uri()
                        .path_and_query()
                        .map(|pq| pq.as_str())
                        .unwrap_or("/")
                );
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, target)],
                    format!("this replica follows; the leader ({holder}) serves at {url}\n"),
                )
                    .into_response()
            }
            None => {
                let mut response = ApiError::Unavailable(
                    "no leader is elected yet (replicas are electing one through the Lease); \
                     retry in a few seconds"
                        .to_owned(),
                )
                .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
                response
            }
        },
    }
}

/// The front router: the full API once leading, the follower's answers before.
fn front(leader: Arc<RwLock<Option<Router>>>, leadership: watch::Receiver<Leadership>) -> Router {
    let service = tower::service_fn(move |req: Request<Body>| {
        let leader = leader.read().ok().and_then(|slot| slot.clone());
        let leadership = leadership.borrow().clone();
        async move {
            match leader {
                Some(router) => router.oneshot(req).await,
                None => Ok::<_, Infallible>(follower_response(&req, &leadership)),
            }
        }
    });
    Router::new().fallback_service(service)
}

/// Runs one HA replica until Ctrl-C/SIGTERM (Ok) or the loss of the leadership (Err).
pub(crate) async fn serve_replica(
    config: Config,
    listen: SocketAddr,
    client: ::kube::Client,
    out: &mut dyn Write,
) -> Result<(), ServiceError> {
    let store = open_store(&config, std::path::Path::new("")).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ServiceError::io(format!("cannot listen on {listen}"), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServiceError::io("listener address", e))?;
    let options = ElectorOptions {
        lease_name: config
            .ha
            .lease_name
            .clone()
            .unwrap_or_else(|| config.instance.clone()),
        identity: identity(&config),
        advertise_url: advertise_url(&config, addr),
        lease_duration: config.ha.lease_duration.0,
        renew_deadline: config.ha.renew_deadline.0,
        retry_period: config.ha.retry_period.0,
    };
    tracing::info!(
        store = %store.describe(),
        identity = %options.identity,
        lease = %options.lease_name,
        advertise = %options.advertise_url,
        "serving as a high-availability replica"
    );
    let identity = options.identity.clone();
    let lease_name = options.lease_name.clone();
    let namespace = config.namespace.clone();
    let elector = Elector::new(client.clone(), &config.namespace, options);
    let mut leadership = elector.subscribe();
    let election = tokio::spawn(elector.run());

    let leader: Arc<RwLock<Option<Router>>> = Arc::new(RwLock::new(None));
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn({
        let app = front(leader.clone(), leadership.clone());
        let mut stop_rx = stop_rx.clone();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                })
                .await
        }
    });
    writeln!(out, "listening on http://{addr} (replica {identity})")
        .and_then(|()| out.flush())
        .map_err(|e| ServiceError::io("standard output", e))?;

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    tokio::pin!(election);
    // Follow until elected (or stopped).
    let lost = loop {
        tokio::select! {
            () = &mut shutdown => {
                let _ = stop_tx.send(true);
                let _ = server.await;
                return Ok(());
            }
            lost = &mut election => break Some(match lost {
                Ok(lost) => lost.to_string(),
                Err(join) => format!("the leader election task failed: {join}"),
            }),
            changed = leadership.changed() => {
                if changed.is_err() {
                    break Some("the leader election task ended".to_owned());
                }
                if leadership.borrow_and_update().leading {
                    break None;
                }
            }
        }
    };
    if let Some(why) = lost {
        let _ = stop_tx.send(true);
        let _ = server.await;
        return Err(ServiceError::Start(why));
    }

    // Leading: restore and run.
    let client_for_release = client.clone();
    let state = start_runner(config, store, client).await?;
    let runner = state.runner().clone();
    let closing = state.clone();
    if let Ok(mut slot) = leader.write() {
        *slot = Some(api::router(state));
    }
    let result = tokio::select! {
        () = &mut shutdown => Ok(()),
        lost = &mut election => Err(ServiceError::Start(match lost {
            Ok(lost) => lost.to_string(),
            Err(join) => format!("the leader election task failed: {join}"),
        })),
    };
    closing.close_streams();
    let _ = stop_tx.send(true);
    let _ = server.await;
    runner.shutdown().await;
    if result.is_ok() {
        // Stopping cleanly: stop renewing, then hand the Lease over at once.
        election.abort();
        match crate::ha::release(client_for_release, &namespace, &lease_name, &identity).await {
            Ok(true) => tracing::info!(lease = %lease_name, "released the leader Lease"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "releasing the leader Lease failed; it expires"),
        }
    }
    result
}
