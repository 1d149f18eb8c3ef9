//! The dynamic execution config routes: `GET|POST /v1/config/execution` and
//! `GET /v1/config/execution/history`, also answered at Druid's paths
//! (`/druid/indexer/v1/k8s/taskrunner/executionconfig[/history]`) so Druid's tooling keeps
//! working against taskpod.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;

use super::{ApiError, ApiState};
use crate::execution::{self, Author, ExecutionError, ExecutionView, HistoryEntry};
use crate::render::RenderError;

impl From<ExecutionError> for ApiError {
    fn from(err: ExecutionError) -> ApiError {
        match err {
            ExecutionError::Invalid { field, message } => ApiError::Invalid { field, message },
            ExecutionError::Render(RenderError::Adapter(
                crate::adapters::Error::InvalidConfig { .. },
            )) => ApiError::invalid(
                "podTemplateSelectStrategy",
                format!("refused by the adapter, nothing changed: {err}"),
            ),
            ExecutionError::Render(RenderError::UnknownAdapter { .. }) => {
                ApiError::invalid("adapter", err.to_string())
            }
            ExecutionError::Render(render) => ApiError::from(render),
            ExecutionError::Runner(runner) => ApiError::from(runner),
            ExecutionError::Store(store) => ApiError::from(store),
        }
    }
}

/// Query of `POST /v1/config/execution`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangeQuery {
    /// Change only this pod-template adapter binding's strategy.
    adapter: Option<String>,
}

/// Query of the history.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    /// Newest entries to return (default and maximum: the whole kept history).
    count: Option<usize>,
}

/// The value of the first of `names` present, as text, bounded in size.
fn header(headers: &HeaderMap, names: &[&str]) -> String {
    names
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(256).collect())
        .unwrap_or_default()
}

/// `GET /v1/config/execution`.
pub(super) async fn get(State(state): State<ApiState>) -> Result<Json<ExecutionView>, ApiError> {
    Ok(Json(execution::current(state.runner()).await?))
}

/// `POST /v1/config/execution`: `{"capacity": N, "podTemplateSelectStrategy": {...} | null}`,
/// with who and why in the `X-Taskpod-Author`/`X-Taskpod-Comment` headers (Druid's
/// `X-Druid-Author`/`X-Druid-Comment` are read too).
pub(super) async fn post(
    State(state): State<ApiState>,
    Query(query): Query<ChangeQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ExecutionView>, ApiError> {
    let change = execution::parse_change(&body, query.adapter)?;
    let mut author = Author {
        author: header(&headers, &["x-taskpod-author", "x-druid-author"]),
        comment: header(&headers, &["x-taskpod-comment", "x-druid-comment"]),
    };
    if author.author.is_empty() {
        author.author = "unknown".to_owned();
    }
    Ok(Json(
        execution::apply(state.runner(), change, author).await?,
    ))
}

/// `GET /v1/config/execution/history[?count=N]`, newest first.
pub(super) async fn history(
    State(state): State<ApiState>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    let count = query.count.unwrap_or(execution::HISTORY_LIMIT);
    if count == 0 {
        return Err(ApiError::invalid(
            "count",
            "must be at least 1 (or left out for the whole history)",
        ));
    }
    Ok(Json(execution::history(state.runner(), count).await?))
}
