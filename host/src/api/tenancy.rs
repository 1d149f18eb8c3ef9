//! Authentication and the tenant routes.
//!
//! [`authenticate`] runs before every route but `/healthz`, `/readyz` and `/v1/openapi.json`: it resolves the
//! `Authorization: Bearer` header to a [`Principal`] (401 otherwise) and hands it to the
//! handlers as a request extension. Tenants see and act only on their own tasks — another
//! tenant's task answers 404, exactly like a missing one. The admin sees everything and alone
//! changes capacity, holds and adapters. With authentication off (no tenant, no admin token),
//! every caller is the admin.
//!
//! Routes: `GET /v1/tenants` (the admin sees every tenant, a tenant itself), `POST
//! /v1/tenants/{name}/hold|drain|resume` (admin). The execution config routes are the admin's
//! too.

use axum::Json;
use axum::extract::{Extension, Path, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::store::TaskRecord;
use crate::tenants::{Principal, TenantSwitches};

/// Paths answered without authentication (health, readiness, the API's description).
const OPEN_PATHS: &[&str] = &["/healthz", "/readyz", "/v1/openapi.json"];

/// Path prefixes only the admin may use: the run-time execution config (taskpod's and Druid's
/// path) changes how every tenant's tasks are shaped.
const ADMIN_PREFIXES: &[&str] = &[
    "/v1/config/",
    "/druid/indexer/v1/k8s/taskrunner/executionconfig",
];

/// The authentication middleware.
pub(super) async fn authenticate(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    if OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let header = match request.headers().get(header::AUTHORIZATION) {
        None => None,
        Some(value) => match value.to_str() {
            Ok(text) => Some(text),
            Err(_) => Some(""),
        },
    };
    match state.runner.tenants().authenticate(header) {
        Ok(principal) => {
            let path = request.uri().path();
            if principal != Principal::Admin && ADMIN_PREFIXES.iter().any(|p| path.starts_with(p)) {
                return ApiError::admin_only("the execution config").into_response();
            }
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error) => ApiError::Unauthorized(error.to_string()).into_response(),
    }
}

/// Reads task `id` if the principal may see it; another tenant's task is a 404 like a missing
/// one.
pub(super) async fn visible_task(
    state: &ApiState,
    principal: &Principal,
    id: &str,
) -> Result<TaskRecord, ApiError> {
    state
        .runner
        .store()
        .get(id)
        .await?
        .filter(|record| principal.can_see(&record.tenant))
        .ok_or_else(|| ApiError::task_not_found(id))
}

/// Refuses a non-admin.
pub(super) fn require_admin(principal: &Principal, what: &str) -> Result<(), ApiError> {
    match principal {
        Principal::Admin => Ok(()),
        Principal::Tenant(_) => Err(ApiError::admin_only(what)),
    }
}

/// A tenant's quotas as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotasView {
    /// Most tasks launching or running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
    /// Most tasks waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued: Option<u32>,
    /// CPU ceiling per task (Kubernetes quantity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpu: Option<String>,
    /// Memory ceiling per task (Kubernetes quantity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<String>,
}

/// One tenant (`GET /v1/tenants`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantView {
    /// The tenant's name.
    pub name: String,
    /// Priority among tenants below their share.
    pub priority: i32,
    /// Weight in the fair share.
    pub weight: u32,
    /// Quotas.
    pub quotas: QuotasView,
    /// Queued tasks are not launched.
    pub held: bool,
    /// New submissions are refused.
    pub draining: bool,
    /// Why the tenant is disabled (an adapter failed to load), when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<String>,
    /// Tasks waiting.
    pub pending: usize,
    /// Tasks launching or running.
    pub in_flight: usize,
}

fn tenant_view(state: &ApiState, name: &str) -> Option<TenantView> {
    let runner = &state.runner;
    let config = runner.tenants().get(name)?;
    let switches = runner.tenants().switches(name);
    let usage = runner.tenant_usage(name);
    Some(TenantView {
        name: name.to_owned(),
        priority: config.priority,
        weight: config.weight,
        quotas: QuotasView {
            max_running: config.quotas.max_running,
            max_queued: config.quotas.max_queued,
            max_cpu: config.quotas.max_cpu.as_ref().map(|q| q.text.clone()),
            max_memory: config.quotas.max_memory.as_ref().map(|q| q.text.clone()),
        },
        held: switches.held,
        draining: switches.draining,
        disabled: runner
            .renderer()
            .tenant_disabled(name)
            .map(|e| e.to_string()),
        pending: usage.pending,
        in_flight: usage.in_flight,
    })
}

/// `GET /v1/tenants`.
pub(super) async fn list(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
) -> Json<Vec<TenantView>> {
    let names: Vec<String> = state
        .runner
        .tenants()
        .configs()
        .map(|t| t.name.clone())
        .filter(|name| principal.can_see(name))
        .collect();
    Json(
        names
            .iter()
            .filter_map(|name| tenant_view(&state, name))
            .collect(),
    )
}

async fn switch(
    state: &ApiState,
    principal: &Principal,
    name: &str,
    change: impl FnOnce(&mut TenantSwitches),
) -> Result<Json<TenantView>, ApiError> {
    require_admin(principal, "holding, draining and resuming tenants")?;
    let not_found = || ApiError::NotFound {
        message: format!("no tenant `{name}` is configured; list them with GET /v1/tenants"),
    };
    if state.runner.tenants().get(name).is_none() {
        return Err(not_found());
    }
    let mut switches = state.runner.tenants().switches(name);
    change(&mut switches);
    state.runner.set_tenant_switches(name, switches).await?;
    tenant_view(state, name).map(Json).ok_or_else(not_found)
}

/// `POST /v1/tenants/{name}/hold`: stop launching the tenant's queued tasks.
pub(super) async fn hold(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    switch(&state, &principal, &name, |s| s.held = true).await
}

/// `POST /v1/tenants/{name}/drain`: refuse the tenant's new submissions.
pub(super) async fn drain(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    switch(&state, &principal, &name, |s| s.draining = true).await
}

/// `POST /v1/tenants/{name}/resume`: lift hold and drain.
pub(super) async fn resume(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    switch(&state, &principal, &name, |s| {
        *s = TenantSwitches::default()
    })
    .await
}
