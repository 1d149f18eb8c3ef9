//! Streaming routes: a task's log (whole, or followed live) and the server-sent event feed.
//!
//! Both read what the store has committed: the log route reads (or follows, without polling)
//! the bytes the runner captured from the main container, so a log stays readable after its pod
//! is gone; the event feed relays [`StoreEvent`]s broadcast after each commit. Streams end when
//! the task's log is complete, when the client goes away, or when the server shuts down.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::tasks::flag;
use super::tenancy::visible_task;
use super::{ApiError, ApiState};
use crate::store::{StoreEvent, TaskState};
use crate::tenants::Principal;

/// Largest chunk read from the store at once.
const LOG_CHUNK: usize = 64 * 1024;

/// Query parameters of `GET /v1/tasks/{id}/log`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogParams {
    follow: Option<String>,
    offset: Option<String>,
}

/// `GET /v1/tasks/{id}/log`: `text/plain`; with `follow=true` the body stays open and streams
/// new output until the task has ended and everything was sent.
pub(super) async fn log(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    params: Result<Query<LogParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let follow = flag("follow", params.follow.as_deref())?;
    let offset = match params.offset.as_deref() {
        None | Some("") => 0,
        Some(text) => text.parse::<u64>().map_err(|_| {
            ApiError::invalid(
                "offset",
                format!("`{text}` is not a byte offset; give a non-negative integer"),
            )
        })?,
    };
    let store = state.runner.store().clone();
    // Existence (and ownership) check first, so an unknown task — or another tenant's — is a
    // 404 rather than an empty stream.
    visible_task(&state, &principal, &id).await?;
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !follow {
        let mut out = Vec::new();
        let mut at = offset;
        loop {
            let slice = store.read_log(&id, at, LOG_CHUNK).await?;
            let done = slice.data.is_empty() || slice.next_offset >= slice.log_bytes;
            out.extend_from_slice(&slice.data);
            at = slice.next_offset;
            if done {
                break;
            }
        }
        return Ok((headers, out).into_response());
    }
    let mut follower = store.follow_log(&id, offset, LOG_CHUNK);
    let closed = state.closed();
    let chunks = async_stream(move |tx| async move {
        loop {
            match follower.next_chunk().await {
                Ok(Some(slice)) => {
                    if !slice.data.is_empty() && tx.send(Ok(Bytes::from(slice.data))).await.is_err()
                    {
                        return;
                    }
                }
                Ok(None) => return,
                Err(err) => {
                    tracing::warn!(task = %id, error = %err, "following a log failed");
                    let _ = tx.send(Err(std::io::Error::other(err.to_string()))).await;
                    return;
                }
            }
        }
    })
    .take_until(closed);
    Ok((headers, Body::from_stream(chunks)).into_response())
}

/// A stream fed by a task that sends into a small channel; the task ends when the receiver is
/// dropped (the client went away).
fn async_stream<T, F, Fut>(produce: F) -> impl Stream<Item = T> + Send + 'static
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(produce(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Query parameters of `GET /v1/events`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventParams {
    /// Only this task's events.
    task: Option<String>,
    /// Include `log` events (off by default: they are frequent).
    logs: Option<String>,
}

/// The `data` of one server-sent event; the SSE `event` field carries `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// `submitted`, `transition`, `log` or `lagged`.
    pub kind: String,
    /// The task (absent for `lagged`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The previous state (transitions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<TaskState>,
    /// The new state (`pending` for submissions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<TaskState>,
    /// Reason code (transitions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Reason details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The log's new length (`log`), or how many events were missed (`lagged`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl EventView {
    fn from_store(event: &StoreEvent) -> EventView {
        let empty = EventView {
            kind: String::new(),
            id: None,
            tenant: None,
            from: None,
            to: None,
            reason: None,
            message: None,
            count: None,
        };
        match event {
            StoreEvent::Submitted { id, tenant, .. } => EventView {
                kind: "submitted".to_owned(),
                id: Some(id.clone()),
                tenant: Some(tenant.clone()),
                to: Some(TaskState::Pending),
                ..empty
            },
            StoreEvent::Transitioned {
                id,
                tenant,
                from,
                to,
                reason,
            } => EventView {
                kind: "transition".to_owned(),
                id: Some(id.clone()),
                tenant: Some(tenant.clone()),
                from: Some(*from),
                to: Some(*to),
                reason: reason.as_ref().map(|r| r.code.to_string()),
                message: reason
                    .as_ref()
                    .map(|r| r.message.clone())
                    .filter(|m| !m.is_empty()),
                ..empty
            },
            StoreEvent::LogAppended { id, end_offset } => EventView {
                kind: "log".to_owned(),
                id: Some(id.clone()),
                count: Some(*end_offset),
                ..empty
            },
        }
    }

    fn task_id(&self) -> Option<&str> {
        self.id.as_deref()
    }
}

/// `GET /v1/events`: server-sent events (`event: submitted|transition|log|lagged`, `data:` an
/// [`EventView`] as JSON). A client too slow to keep up gets a `lagged` event with the number
/// of events it missed, then the feed continues; it should re-read the tasks it cares about.
pub(super) async fn events(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<EventParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let with_logs = flag("logs", params.logs.as_deref())?;
    let only = params.task.filter(|t| !t.is_empty());
    // Watching a task that does not exist yet is allowed (submit after subscribing); another
    // tenant's task is a 404, like for every other route. Events are filtered by owner anyway.
    if let Some(id) = &only
        && let Some(record) = state.runner.store().get(id).await?
        && !principal.can_see(&record.tenant)
    {
        return Err(ApiError::task_not_found(id));
    }
    // A tenant sees only its tasks' events; `log` events carry no tenant, so their task's owner
    // is looked up once and remembered.
    let owner = principal.tenant().map(str::to_owned);
    let store = state.runner.store().clone();
    let known = Arc::new(Mutex::new(HashMap::<String, bool>::new()));
    let rx = state.runner.store().subscribe();
    let stream = BroadcastStream::new(rx)
        .filter_map(move |item| {
            let view = match item {
                Ok(event) => EventView::from_store(&event),
                Err(BroadcastStreamRecvError::Lagged(n)) => EventView {
                    kind: "lagged".to_owned(),
                    id: None,
                    tenant: None,
                    from: None,
                    to: None,
                    reason: None,
                    message: None,
                    count: Some(n),
                },
            };
            let mut keep = (with_logs || view.kind != "log")
                && match (&only, view.task_id()) {
                    (Some(want), Some(id)) => want == id,
                    _ => true,
                };
            let owner = owner.clone();
            let store = store.clone();
            let known = Arc::clone(&known);
            async move {
                if keep && let Some(owner) = &owner {
                    keep = match (&view.tenant, &view.id) {
                        (Some(tenant), Some(id)) => {
                            let mine = tenant == owner;
                            remember(&known, id, mine);
                            mine
                        }
                        (None, Some(id)) => {
                            let cached = lock(&known).get(id).copied();
                            match cached {
                                Some(mine) => mine,
                                None => {
                                    let mine = store
                                        .get(id)
                                        .await
                                        .ok()
                                        .flatten()
                                        .is_some_and(|r| &r.tenant == owner);
                                    remember(&known, id, mine);
                                    mine
                                }
                            }
                        }
                        _ => true,
                    };
                }
                keep.then(|| {
                    Ok(Event::default()
                        .event(view.kind.clone())
                        .json_data(&view)
                        .unwrap_or_else(|_| Event::default().event("error")))
                })
            }
        })
        .take_until(state.closed());
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn lock(known: &Mutex<HashMap<String, bool>>) -> std::sync::MutexGuard<'_, HashMap<String, bool>> {
    known.lock().unwrap_or_else(|p| p.into_inner())
}

/// Remembers whether a task is the subscriber's (bounded: forgotten past 10 000 tasks).
fn remember(known: &Mutex<HashMap<String, bool>>, id: &str, mine: bool) {
    let mut known = lock(known);
    if known.len() >= 10_000 {
        known.clear();
    }
    known.insert(id.to_owned(), mine);
}
