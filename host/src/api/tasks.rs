//! Task routes: submit, get, list and cancel, and the JSON shapes they answer with.
//!
//! The views are the API's contract (camelCase, states and reason codes as their lower-case
//! names); they are built from the store's records so that nothing is reported before it is
//! durable, and the CLI's client deserialises the same types.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::tenancy::visible_task;
use super::{ApiError, ApiState};
use crate::runner::CancelMode;
use crate::store::{Cursor, HistoryEntry, ListQuery, Order, TaskRecord, TaskState};
use crate::task::{DEFAULT_TENANT, SubmittedTask};
use crate::tenants::Principal;

/// A task as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    /// The task id.
    pub id: String,
    /// The task type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The tenant.
    pub tenant: String,
    /// Druid's groupId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Druid's dataSource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source: Option<String>,
    /// Priority (higher first).
    pub priority: i32,
    /// Current state: pending, launching, running, succeeded, failed, canceled.
    pub state: TaskState,
    /// Reason code of the latest transition that gave one (always set when terminal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Reason details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The main container's exit code, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The Kubernetes Job's name, once launched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// The adapter that shaped the Job (`name@version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// Launch attempts.
    pub attempt: u32,
    /// Submission time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Last state change, Unix milliseconds.
    pub updated_at_ms: i64,
    /// When the pod started, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
    /// When the task ended, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
    /// Bytes of log kept.
    pub log_bytes: u64,
    /// Submitter labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl From<&TaskRecord> for TaskView {
    fn from(r: &TaskRecord) -> TaskView {
        TaskView {
            id: r.id.clone(),
            kind: r.kind.clone(),
            tenant: r.tenant.clone(),
            group_id: r.group_id.clone(),
            data_source: r.datasource.clone(),
            priority: r.priority,
            state: r.state,
            reason: r.reason.as_ref().map(|reason| reason.code.to_string()),
            message: r
                .reason
                .as_ref()
                .map(|reason| reason.message.clone())
                .filter(|m| !m.is_empty()),
            exit_code: r.exit_code,
            job_name: r.job_name.clone(),
            adapter: r
                .adapter
                .as_ref()
                .map(|a| format!("{}@{}", a.name, a.version)),
            attempt: r.attempt,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            started_at_ms: r.started_at_ms,
            finished_at_ms: r.finished_at_ms,
            log_bytes: r.log_bytes,
            labels: r.labels.iter().cloned().collect(),
        }
    }
}

/// One state change in [`TaskDetail::history`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryView {
    /// The state before (absent for the submission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<TaskState>,
    /// The state after.
    pub to: TaskState,
    /// The reason code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The reason's details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When, Unix milliseconds.
    pub at_ms: i64,
}

impl From<&HistoryEntry> for HistoryView {
    fn from(h: &HistoryEntry) -> HistoryView {
        HistoryView {
            from: h.from,
            to: h.to,
            reason: h.reason.as_ref().map(|r| r.code.to_string()),
            message: h
                .reason
                .as_ref()
                .map(|r| r.message.clone())
                .filter(|m| !m.is_empty()),
            at_ms: h.at_ms,
        }
    }
}

/// `GET /v1/tasks/{id}`: the task and its state history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDetail {
    /// The task.
    pub task: TaskView,
    /// Every state change, oldest first.
    pub history: Vec<HistoryView>,
    /// What the task's companions report while it runs (`Deployment NAME: 2/3 available` for a
    /// Teraslice execution's workers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
}

/// `POST /v1/tasks`: the stored task and whether this request created it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitView {
    /// The task.
    pub task: TaskView,
    /// False when the identical task existed already (idempotent resubmission).
    pub created: bool,
}

/// `GET /v1/tasks`: one page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListView {
    /// The tasks.
    pub tasks: Vec<TaskView>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `POST /v1/tasks`.
pub(super) async fn submit(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<(StatusCode, Json<SubmitView>), ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::invalid("body", format!("not UTF-8 text: {e}")))?;
    let mut task = SubmittedTask::parse(text)?;
    assign_tenant(&principal, &mut task)?;
    if principal.tenant().is_some()
        && let Some(existing) = state.runner.store().get(&task.id).await?
        && !principal.can_see(&existing.tenant)
    {
        return Err(ApiError::Conflict {
            field: Some("id".to_owned()),
            message: format!("task id `{}` is already in use; choose another id", task.id),
        });
    }
    let submitted = state.runner.submit(task).await?;
    let status = if submitted.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(SubmitView {
            task: TaskView::from(&submitted.task),
            created: submitted.created,
        }),
    ))
}

/// A tenant's task is always its own: the `tenant` field may be absent (or `default`) and is
/// set to the caller's tenant; naming another tenant is refused. The admin submits for any
/// tenant.
pub(super) fn assign_tenant(
    principal: &Principal,
    task: &mut SubmittedTask,
) -> Result<(), ApiError> {
    if let Principal::Tenant(name) = principal
        && &task.tenant != name
    {
        if task.tenant != DEFAULT_TENANT {
            return Err(ApiError::Forbidden {
                field: Some("tenant".to_owned()),
                message: format!(
                    "you are authenticated as tenant `{name}` and can submit only its tasks; \
                     omit `tenant` or set it to `{name}`"
                ),
            });
        }
        task.tenant = name.clone();
    }
    Ok(())
}

/// `GET /v1/tasks/{id}`.
pub(super) async fn get(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<TaskDetail>, ApiError> {
    let store = state.runner.store();
    let record = visible_task(&state, &principal, &id).await?;
    let history = store.history(&id).await?;
    Ok(Json(TaskDetail {
        task: TaskView::from(&record),
        history: history.iter().map(HistoryView::from).collect(),
        progress: state.runner.progress(&id),
    }))
}

/// Query parameters of `GET /v1/tasks`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    /// Comma-separated states.
    state: Option<String>,
    tenant: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    after: Option<String>,
    limit: Option<String>,
    order: Option<String>,
}

fn list_query(params: ListParams) -> Result<ListQuery, ApiError> {
    let mut query = ListQuery::default();
    if let Some(states) = params.state {
        for name in states.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let state: TaskState = name.parse().map_err(|e: crate::store::UnknownName| {
                ApiError::invalid("state", e.to_string())
            })?;
            query.states.push(state);
        }
    }
    query.tenant = params.tenant.filter(|t| !t.is_empty());
    query.kind = params.kind.filter(|t| !t.is_empty());
    if let Some(after) = params.after.filter(|a| !a.is_empty()) {
        let cursor: Cursor = after.parse().map_err(|_| {
            ApiError::invalid(
                "after",
                format!("`{after}` is not a cursor; pass the `next` value of the previous page"),
            )
        })?;
        query.after = Some(cursor);
    }
    if let Some(limit) = params.limit {
        let n: usize = limit.parse().map_err(|_| {
            ApiError::invalid(
                "limit",
                format!(
                    "`{limit}` is not a page size; give 1 to {}",
                    ListQuery::MAX_LIMIT
                ),
            )
        })?;
        if n == 0 || n > ListQuery::MAX_LIMIT {
            return Err(ApiError::invalid(
                "limit",
                format!("{n} is out of range; give 1 to {}", ListQuery::MAX_LIMIT),
            ));
        }
        query.limit = n;
    }
    query.order = match params.order.as_deref() {
        None | Some("") | Some("newest-first") | Some("newest") => Order::NewestFirst,
        Some("oldest-first") | Some("oldest") => Order::OldestFirst,
        Some(other) => {
            return Err(ApiError::invalid(
                "order",
                format!("`{other}` is not an order; give newest-first or oldest-first"),
            ));
        }
    };
    Ok(query)
}

/// `GET /v1/tasks`.
pub(super) async fn list(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ListView>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let mut query = list_query(params)?;
    if let Principal::Tenant(name) = &principal {
        match &query.tenant {
            Some(asked) if asked != name => {
                return Err(ApiError::Forbidden {
                    field: Some("tenant".to_owned()),
                    message: format!(
                        "you are authenticated as tenant `{name}` and can list only its tasks"
                    ),
                });
            }
            _ => query.tenant = Some(name.clone()),
        }
    }
    let page = state.runner.store().list(query).await?;
    Ok(Json(ListView {
        tasks: page.tasks.iter().map(TaskView::from).collect(),
        next: page.next.map(|c| c.to_string()),
    }))
}

/// Query parameters of `POST /v1/tasks/{id}/cancel`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CancelParams {
    force: Option<String>,
}

/// Parses a boolean query parameter (`true`/`false`/`1`/`0`; empty means true).
pub(super) fn flag(name: &str, value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None => Ok(false),
        Some("" | "true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(ApiError::invalid(
            name,
            format!("`{other}` is not a boolean; give true or false"),
        )),
    }
}

/// `POST /v1/tasks/{id}/cancel`.
pub(super) async fn cancel(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    params: Result<Query<CancelParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TaskView>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    visible_task(&state, &principal, &id).await?;
    let mode = if flag("force", params.force.as_deref())? {
        CancelMode::Force
    } else {
        CancelMode::Graceful
    };
    let record = state.runner.cancel(&id, mode).await?;
    Ok(Json(TaskView::from(&record)))
}
