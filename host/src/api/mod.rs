//! The HTTP API (axum): how users, the CLI and other systems submit, watch and cancel tasks.
//!
//! The API owns no task state: every request goes to the [`Runner`] (submit, cancel, capacity)
//! or reads the store the runner writes (status, lists, logs, events), so what the API says is
//! what is durable. [`router`] builds the whole `axum::Router` (tests drive it with
//! `tower::ServiceExt::oneshot`, no socket); [`serve`] runs it on a listener the caller bound,
//! until the caller's shutdown future completes. Errors become HTTP responses in one place,
//! [`ApiError`].
//!
//! Routes:
//! - `POST /v1/tasks` (a task envelope or a raw Druid task) → 201 with the task, 200 with the
//!   existing task when the identical task was submitted before, 409 when the id exists with a
//!   different submission.
//! - `GET /v1/tasks/{id}` (with its state history), `GET /v1/tasks?state=&tenant=&type=&limit=&
//!   after=&order=` (keyset pages: `next` is the `after` of the next page).
//! - `POST /v1/tasks/{id}/cancel[?force=true]`.
//! - `GET /v1/tasks/{id}/log[?follow=true][&offset=N]` (plain text, streamed while following).
//! - `GET /v1/events[?task=ID]`: server-sent events, one per committed change.
//! - `GET|PUT /v1/capacity`, `GET /v1/adapters`, `POST /v1/render`.
//! - `GET|POST /v1/config/execution`, `GET /v1/config/execution/history[?count=N]`: the dynamic
//!   execution config (capacity, template selection strategy) and its history; also at Druid's
//!   `/druid/indexer/v1/k8s/taskrunner/executionconfig[/history]`.
//! - `/healthz`, `/readyz` (restore done and watches synced), `/metrics` (Prometheus text).
//! - `GET /v1/openapi.json`: the OpenAPI 3 description of every route ([`OPENAPI`]; a test
//!   checks it lists exactly the routes [`router`] serves — add a route there and here).
//! - `GET /v1/tenants`, `POST /v1/tenants/{name}/hold|drain|resume`,
//!   `POST /v1/adapters/{name}/reload`.
//!
//! Every route but `/healthz`, `/readyz` and `/v1/openapi.json` is authenticated when tenants or an admin token are
//! configured ([`tenancy`]): a tenant sees only its own tasks, the admin everything; `/metrics`
//! is the admin's (it names every tenant).

mod error;
mod execution;
mod ops;
mod stream;
mod tasks;
mod tenancy;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::render::Renderer;
use crate::runner::Runner;

pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use ops::{AdapterView, CapacityView};
pub use stream::EventView;
pub use tasks::{HistoryView, ListView, SubmitView, TaskDetail, TaskView};
pub use tenancy::{QuotasView, TenantView};

/// The OpenAPI 3 description of this API, served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Largest request body accepted (a task document or a capacity change).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What the handlers share: the runner, which holds the store and the renderer (the same
/// adapters, with the same run-time execution config, serve launches, `/v1/render` and
/// `/v1/adapters`).
#[derive(Clone, Debug)]
pub struct ApiState {
    runner: Runner,
    /// Set to true when the server shuts down, so endless streams (events, followed logs) end.
    closing: Arc<watch::Sender<bool>>,
}

impl ApiState {
    /// State for a runner.
    pub fn new(runner: Runner) -> ApiState {
        ApiState {
            runner,
            closing: Arc::new(watch::channel(false).0),
        }
    }

    /// Ends the open event and log streams (called by [`serve`] on shutdown; call it before
    /// dropping a router served some other way).
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Completes once [`ApiState::close_streams`] was called.
    fn closed(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|closing| *closing).await;
        }
    }

    /// The runner.
    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    fn renderer(&self) -> &Renderer {
        self.runner.renderer()
    }
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/tasks", post(tasks::submit).get(tasks::list))
        .route("/v1/tasks/{id}", get(tasks::get))
        .route("/v1/tasks/{id}/cancel", post(tasks::cancel))
        .route("/v1/tasks/{id}/log", get(stream::log))
        .route("/v1/events", get(stream::events))
        .route(
            "/v1/capacity",
            get(ops::get_capacity).put(ops::put_capacity),
        )
        .route(
            "/v1/config/execution",
            get(execution::get).post(execution::post),
        )
        .route("/v1/config/execution/history", get(execution::history))
        .route(
            "/druid/indexer/v1/k8s/taskrunner/executionconfig",
            get(execution::get).post(execution::post),
        )
        .route(
            "/druid/indexer/v1/k8s/taskrunner/executionconfig/history",
            get(execution::history),
        )
        .route("/v1/adapters", get(ops::adapters))
        .route("/v1/adapters/{name}/reload", post(ops::reload_adapter))
        .route("/v1/tenants", get(tenancy::list))
        .route("/v1/tenants/{name}/hold", post(tenancy::hold))
        .route("/v1/tenants/{name}/drain", post(tenancy::drain))
        .route("/v1/tenants/{name}/resume", post(tenancy::resume))
        .route("/v1/render", post(ops::render))
        .route("/v1/openapi.json", get(ops::openapi))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            tenancy::authenticate,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, then stops accepting and lets
/// in-flight requests finish (open event and log streams end with the runtime).
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let closing = state.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            closing.close_streams();
        })
        .await
}
