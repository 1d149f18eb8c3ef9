//! taskpod's simulated Kubernetes cluster: an API server that the real `kube` client and
//! `kubectl` talk to over loopback HTTP, plus simulated controllers and kubelets.
//!
//! No cluster exists on the build machines, yet taskpod's value is correct behaviour against the
//! Kubernetes API, so tests, demos and benchmarks run against this stand-in. The server side
//! ([`server`], [`store`], [`validation`], …) reproduces kube-apiserver's wire behaviour —
//! discovery, `Status` errors, resourceVersion semantics, watch with bookmarks and 410 Expired,
//! validation and defaulting, finalizers and deletion propagation, pod logs — and documents where
//! it differs in sim/FIDELITY.md. The [`controllers`] side runs the Job, TTL and garbage-collection
//! controllers, a scheduler and kubelets against it through HTTP, as real ones do.
//!
//! Start one in-process with [`Sim::start`], or standalone with [`serve_standalone`] (what
//! `taskpod sim` runs).

pub mod bench;
pub mod controllers;
pub mod counters;
pub mod faults;
pub mod logs;
pub mod patch;
pub mod resources;
pub mod selectors;
mod server;
pub mod status;
pub mod store;
pub mod table;
pub mod validation;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use controllers::{ControllerConfig, ControllerMode, Controllers};
pub use counters::{Counters, CountersSnapshot};
pub use faults::{ErrorRule, FaultConfig, Faults};
pub use logs::PodLogs;

use server::{App, ServerSettings};
use store::Store;

/// Options of a simulated cluster.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// What the simulated controllers and kubelets do (default: all of them, default node pool).
    pub controllers: ControllerConfig,
    /// Number of change events retained for watches (etcd's history before compaction). A watch
    /// or continue token older than this window gets 410 Expired.
    pub watch_window: usize,
    /// Interval between watch bookmarks for clients that allow them.
    pub bookmark_interval: Duration,
    /// Lifetime of a watch whose client gives no `timeoutSeconds` (kube-apiserver: 30–60 min).
    pub default_watch_timeout: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            controllers: ControllerConfig::default(),
            watch_window: 50_000,
            bookmark_interval: Duration::from_secs(5),
            default_watch_timeout: Duration::from_secs(1800),
        }
    }
}

/// Why the simulated cluster could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The bound listener has no local address.
    #[error("cannot read the listener's local address: {0}")]
    LocalAddr(#[source] std::io::Error),
    /// The server URL is not a valid URI.
    #[error("invalid server URL {url}: {source}")]
    Url {
        /// The URL.
        url: String,
        /// The parse error.
        #[source]
        source: http::uri::InvalidUri,
    },
    /// The kube client for the controllers could not be built.
    #[error("cannot build a Kubernetes client for {url}: {source}")]
    Client {
        /// The server URL.
        url: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The kubeconfig file could not be written.
    #[error(
        "cannot write the kubeconfig {path}: {source} (check that the directory exists and is writable)"
    )]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The initial namespaces could not be created (a bug).
    #[error("cannot create the initial namespaces: {0}")]
    Bootstrap(#[source] status::ApiError),
}

/// A running simulated cluster: the API server on a loopback port plus its controllers.
pub struct Sim {
    base_url: String,
    app: Arc<App>,
    client: kube::Client,
    controllers: Controllers,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("base_url", &self.base_url)
            .field("controllers", &self.controllers)
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// Starts a simulated cluster on `127.0.0.1` with a free port.
    pub async fn start(opts: SimOptions) -> Result<Sim, SimError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| SimError::Bind {
                addr: "127.0.0.1:0".to_owned(),
                source,
            })?;
        Self::start_on(listener, opts).await
    }

    /// Starts a simulated cluster serving on an already bound listener.
    pub async fn start_on(listener: TcpListener, opts: SimOptions) -> Result<Sim, SimError> {
        let addr = listener.local_addr().map_err(SimError::LocalAddr)?;
        let base_url = format!("http://{addr}");
        let store = Arc::new(Store::new(opts.watch_window));
        let app = Arc::new(App {
            faults: Faults::new(store.clone()),
            store,
            logs: PodLogs::new(),
            counters: Counters::new(),
            settings: ServerSettings {
                bookmark_interval: opts.bookmark_interval,
                default_watch_timeout: opts.default_watch_timeout,
            },
        });
        server::bootstrap(&app).map_err(SimError::Bootstrap)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let router = server::router(app.clone());
        let server = tokio::spawn(async move {
            use axum::serve::ListenerExt;
            // Watch and log streams are many small writes: without TCP_NODELAY, Nagle's
            // algorithm and delayed ACKs hold each event back by up to 40 ms.
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY on an API connection");
                }
            });
            let result = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "simulated API server stopped with an error");
            }
        });
        let client = make_client(&base_url)?;
        let controllers =
            controllers::spawn(client.clone(), app.logs.clone(), opts.controllers.clone());
        app.faults.attach_controllers(controllers.clone());
        Ok(Sim {
            base_url,
            app,
            client,
            controllers,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// The server's base URL (`http://127.0.0.1:PORT`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A kubeconfig (YAML) pointing at this server, with `namespace` as the context's default.
    pub fn kubeconfig_yaml(&self, namespace: &str) -> String {
        kubeconfig_yaml(&self.base_url, namespace)
    }

    /// A `kube` client for this server (default namespace `default`).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Fault injection of this server.
    pub fn faults(&self) -> Faults {
        self.app.faults.clone()
    }

    /// Request and creation counters of this server.
    pub fn counters(&self) -> Counters {
        self.app.counters.clone()
    }

    /// The simulated controllers and kubelets.
    pub fn controllers(&self) -> &Controllers {
        &self.controllers
    }

    /// The container log store (what the simulated kubelets write, what `/log` serves).
    pub fn logs(&self) -> PodLogs {
        self.app.logs.clone()
    }

    /// The current resourceVersion of the store (etcd revision).
    pub fn revision(&self) -> u64 {
        self.app.store.revision()
    }

    /// Stops the controllers, then the server (open watches end).
    pub async fn shutdown(mut self) {
        self.controllers.clone().shutdown().await;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            // Open watch and log streams end when their connections close; do not wait on
            // clients that keep them open.
            if tokio::time::timeout(Duration::from_secs(2), server)
                .await
                .is_err()
            {
                tracing::debug!("simulated API server: open connections abandoned at shutdown");
            }
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

fn make_client(base_url: &str) -> Result<kube::Client, SimError> {
    let client_err = |source| SimError::Client {
        url: base_url.to_owned(),
        source,
    };
    let uri: http::Uri = base_url.parse().map_err(|e| SimError::Url {
        url: base_url.to_owned(),
        source: e,
    })?;
    let mut config = kube::Config::new(uri);
    config.default_namespace = "default".to_owned();
    config.read_timeout = None;
    kube::Client::try_from(config).map_err(client_err)
}

/// A kubeconfig (YAML) for a simulated server at `base_url` with `namespace` as the default
/// namespace of its single context, `taskpod-sim`. No credentials: the server accepts every
/// request.
pub fn kubeconfig_yaml(base_url: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: taskpod-sim\n  cluster:\n    server: {base_url}\ncontexts:\n- name: taskpod-sim\n  context:\n    cluster: taskpod-sim\n    user: taskpod-sim\n    namespace: {namespace}\ncurrent-context: taskpod-sim\nusers:\n- name: taskpod-sim\n  user: {{}}\npreferences: {{}}\n"
    )
}

/// Runs a simulated cluster on `listen` until `shutdown` completes, after writing a kubeconfig
/// for it to `kubeconfig_path` (what `taskpod sim --listen ADDR --kubeconfig FILE` does).
pub async fn serve_standalone(
    listen: SocketAddr,
    kubeconfig_path: &Path,
    opts: SimOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SimError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| SimError::Bind {
            addr: listen.to_string(),
            source,
        })?;
    let sim = Sim::start_on(listener, opts).await?;
    let yaml = sim.kubeconfig_yaml("default");
    if let Err(source) = tokio::fs::write(kubeconfig_path, yaml).await {
        sim.shutdown().await;
        return Err(SimError::Kubeconfig {
            path: kubeconfig_path.to_owned(),
            source,
        });
    }
    tracing::info!(url = sim.base_url(), kubeconfig = %kubeconfig_path.display(), "simulated cluster serving");
    shutdown.await;
    sim.shutdown().await;
    Ok(())
}
