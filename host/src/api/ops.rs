//! Operational routes: capacity, adapters, render, health, readiness and metrics.

use std::fmt::Write as _;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::tasks::assign_tenant;
use super::tenancy::require_admin;
use super::{ApiError, ApiState};
use crate::metrics::escape_label;
use crate::store::TaskState;
use crate::task::SubmittedTask;
use crate::tenants::Principal;

/// `GET|PUT /v1/capacity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityView {
    /// Most Jobs in flight at once.
    pub capacity: usize,
    /// Tasks holding a slot now (launching or running). Ignored in a PUT.
    #[serde(default)]
    pub in_flight: u64,
    /// Tasks waiting for a slot. Ignored in a PUT.
    #[serde(default)]
    pub pending: u64,
}

/// One loaded adapter (`GET /v1/adapters`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterView {
    /// The name tasks are routed by.
    pub name: String,
    /// `builtin:NAME` or the component's path.
    pub origin: String,
    /// `sha256:<hex>` of the component.
    pub digest: String,
    /// The adapter's own name.
    pub adapter: String,
    /// Its version.
    pub version: String,
    /// What it does.
    pub description: String,
    /// Task types it is meant for (empty: any).
    pub task_types: Vec<String>,
    /// The tenant owning it (`tenants[i].adapters`); absent for a shared adapter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Failed launch calls in a row.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Why it is quarantined (its tasks fail until it is reloaded), when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<String>,
}

async fn capacity_view(state: &ApiState) -> Result<CapacityView, ApiError> {
    let counts = state.runner.store().counts().await?;
    Ok(CapacityView {
        capacity: state.runner.capacity(),
        in_flight: counts.state(TaskState::Launching) + counts.state(TaskState::Running),
        pending: counts.state(TaskState::Pending),
    })
}

/// `GET /v1/capacity`.
pub(super) async fn get_capacity(
    State(state): State<ApiState>,
) -> Result<Json<CapacityView>, ApiError> {
    Ok(Json(capacity_view(&state).await?))
}

/// `PUT /v1/capacity` with `{"capacity": N}`.
pub(super) async fn put_capacity(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Json<CapacityView>, ApiError> {
    require_admin(&principal, "changing the capacity")?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid("body", format!("not JSON ({e}); send {{\"capacity\": N}}"))
    })?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::invalid(
            "body",
            "must be a JSON object like {\"capacity\": 10}",
        ));
    };
    if let Some(extra) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "capacity" | "inFlight" | "pending"))
    {
        return Err(ApiError::invalid(
            extra.clone(),
            "unknown field; only `capacity` can be set",
        ));
    }
    let n = match object.get("capacity") {
        None => return Err(ApiError::invalid("capacity", "required")),
        Some(v) => v.as_u64().ok_or_else(|| {
            ApiError::invalid("capacity", format!("{v} is not a positive integer"))
        })?,
    };
    if n == 0 || n > i32::MAX as u64 {
        return Err(ApiError::invalid(
            "capacity",
            format!("{n} is out of range; give 1 to {}", i32::MAX),
        ));
    }
    state.runner.set_capacity(n as usize).await?;
    Ok(Json(capacity_view(&state).await?))
}

/// `GET /v1/adapters`: the adapters tasks launch with (a tenant sees the shared ones and its
/// own), with their quarantine state.
pub(super) async fn adapters(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<AdapterView>>, ApiError> {
    Ok(Json(
        state
            .renderer()
            .adapter_entries()
            .into_iter()
            .filter(|entry| entry.tenant.as_deref().is_none_or(|t| principal.can_see(t)))
            .map(|entry| {
                let a = &entry.adapter;
                AdapterView {
                    name: a.name().to_owned(),
                    origin: a.origin().to_owned(),
                    digest: a.digest().to_owned(),
                    adapter: a.info().name.clone(),
                    version: a.info().version.clone(),
                    description: a.info().description.clone(),
                    task_types: a.info().task_types.clone(),
                    tenant: entry.tenant.clone(),
                    consecutive_failures: entry.health.consecutive_failures,
                    quarantined: entry.health.quarantined.clone(),
                }
            })
            .collect(),
    ))
}

/// `POST /v1/adapters/{name}/reload` (admin): loads the adapter again from the configuration
/// (its component file is read anew), ends its quarantine and re-enables a tenant it disabled.
pub(super) async fn reload_adapter(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&principal, "reloading adapters")?;
    match state.runner.reload_adapter(&name).await {
        Ok(()) => Ok(Json(serde_json::json!({ "reloaded": name }))),
        Err(crate::render::RenderError::UnknownAdapter { name, .. }) => Err(ApiError::NotFound {
            message: format!("no adapter named `{name}`; list them with GET /v1/adapters"),
        }),
        Err(error) => Err(ApiError::Unavailable(format!(
            "adapter `{name}` could not be reloaded (it stays as it was): {error}"
        ))),
    }
}

/// `POST /v1/render`: the Job and companions `serve` would create for the task, as JSON
/// (`{"job": …, "companions": […]}`), or as multi-document YAML when the request's `Accept`
/// asks for YAML. Nothing is stored or created.
pub(super) async fn render(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let renderer = state.renderer();
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::invalid("body", format!("not UTF-8 text: {e}")))?;
    let mut task = SubmittedTask::parse(text)?;
    assign_tenant(&principal, &mut task)?;
    let manifests = renderer.render(&task).await?;
    let wants_yaml = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("yaml"));
    if wants_yaml {
        let yaml = manifests
            .to_yaml()
            .map_err(|e| ApiError::Internal(format!("cannot write the Job as YAML: {e}")))?;
        return Ok(([(header::CONTENT_TYPE, "application/yaml")], yaml).into_response());
    }
    let mut values = manifests
        .to_values()
        .map_err(|e| ApiError::Internal(format!("cannot write the Job as JSON: {e}")))?
        .into_iter();
    let job = values.next().unwrap_or(serde_json::Value::Null);
    Ok(
        Json(serde_json::json!({ "job": job, "companions": values.collect::<Vec<_>>() }))
            .into_response(),
    )
}

/// `GET /v1/openapi.json`: the OpenAPI description of the API.
pub(super) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], super::OPENAPI).into_response()
}

/// `/healthz`: the process serves requests.
pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

/// `/readyz`: restore is done and the watches are synced.
pub(super) async fn readyz(State(state): State<ApiState>) -> Result<&'static str, ApiError> {
    if state.runner.is_ready() {
        Ok("ready\n")
    } else {
        Err(ApiError::Unavailable(
            "not ready: restoring tasks or syncing the Job and Pod watches".to_owned(),
        ))
    }
}

/// `/metrics`: Prometheus text exposition.
pub(super) async fn metrics(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    require_admin(&principal, "/metrics (it counts every tenant's tasks)")?;
    let counts = state.runner.store().counts().await?;
    let mut out = String::new();
    out.push_str("# HELP taskpod_tasks Tasks in the store by state.\n# TYPE taskpod_tasks gauge\n");
    for s in TaskState::ALL {
        let _ = writeln!(out, "taskpod_tasks{{state=\"{s}\"}} {}", counts.state(s));
    }
    out.push_str(
        "# HELP taskpod_tenant_tasks Tasks in the store by tenant and state.\n\
         # TYPE taskpod_tenant_tasks gauge\n",
    );
    for (tenant, states) in &counts.by_tenant {
        for (s, n) in states {
            let _ = writeln!(
                out,
                "taskpod_tenant_tasks{{tenant=\"{}\",state=\"{s}\"}} {n}",
                escape_label(tenant)
            );
        }
    }
    let in_flight = counts.state(TaskState::Launching) + counts.state(TaskState::Running);
    let _ = write!(
        out,
        "# HELP taskpod_queue_depth Tasks waiting for capacity.\n# TYPE taskpod_queue_depth gauge\n\
         taskpod_queue_depth {}\n\
         # HELP taskpod_capacity Most Jobs in flight at once.\n# TYPE taskpod_capacity gauge\n\
         taskpod_capacity {}\n\
         # HELP taskpod_capacity_in_use Jobs in flight (launching or running).\n\
         # TYPE taskpod_capacity_in_use gauge\ntaskpod_capacity_in_use {in_flight}\n\
         # HELP taskpod_ready 1 once restore is done and the watches are synced.\n\
         # TYPE taskpod_ready gauge\ntaskpod_ready {}\n",
        counts.state(TaskState::Pending),
        state.runner.capacity(),
        u8::from(state.runner.is_ready()),
    );
    state.runner.metrics().render(&mut out);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}

/// Any other path: a JSON 404 naming the path.
pub(super) async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound {
        message: format!(
            "no route {}; the API is under /v1 (tasks, events, capacity, adapters, render), \
             plus /healthz, /readyz and /metrics",
            uri.path()
        ),
    }
}
