//! Migration routing (Druid's `k8sAndWorker`): tasks the config sends to another task runner
//! (`routing.toWorker`) are forwarded over HTTP instead of becoming Jobs — e.g. to an overlord
//! that still runs tasks on middle managers while the migration goes on.
//!
//! A forwarded task goes `pending → launching → running` (reason `forwarded`, the runner named
//! in the task's adapter field as `worker/NAME`) and holds no Kubernetes capacity. Its outcome
//! comes from the runner's `statusUrl`, read by one loop for all forwarded tasks (no task or
//! thread per task); the loop reads the store, so forwarded tasks are picked up again after a
//! restart. Without a `statusUrl`, the task ends `succeeded` once the runner accepted it.
//! Forwarding the same task twice (a crash between storing `launching` and storing `running`)
//! is harmless: an answer saying the task already exists counts as accepted.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::Inner;
use crate::config::WorkerBackend;
use crate::store::{AdapterRef, ReasonCode, StoreError, TaskRecord, TaskState, Transition};

/// Prefix of the adapter name recorded for a forwarded task.
pub const WORKER_PREFIX: &str = "worker/";

/// The largest answer body read from a worker runner.
const MAX_ANSWER: usize = 64 * 1024;

/// The HTTP client to worker runners (http, and https verified against the system's root
/// certificates).
#[derive(Clone)]
pub(crate) struct Workers {
    /// The client, or why none could be built (then every forward fails with that message).
    client: Result<HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>, String>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers").finish_non_exhaustive()
    }
}

/// What a runner says about a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RemoteStatus {
    /// Still queued or running there.
    Running,
    /// Succeeded there.
    Succeeded,
    /// Failed there, with its message.
    Failed(String),
}

impl Workers {
    pub(crate) fn new() -> Workers {
        let client = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map(|builder| {
                HyperClient::builder(TokioExecutor::new())
                    .build(builder.https_or_http().enable_http1().build())
            })
            .map_err(|e| format!("no HTTP client for worker runners: the system's root certificates could not be loaded ({e})"));
        Workers { client }
    }

    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<String>,
        timeout: Duration,
    ) -> Result<(StatusCode, String), String> {
        let mut request = Request::builder().method(method).uri(url);
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| format!("bad request to {url}: {e}"))?;
        let answer = async {
            let client = self.client.as_ref().map_err(Clone::clone)?;
            let response = client
                .request(request)
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("{url}: reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(timeout, answer)
            .await
            .map_err(|_| format!("{url}: no answer within {timeout:?}"))?
    }

    /// POSTs the task document; `Ok` when the runner accepted it (or already has it).
    pub(crate) async fn forward(
        &self,
        backend: &WorkerBackend,
        payload: &str,
    ) -> Result<StatusCode, String> {
        let (status, body) = self
            .call(
                Method::POST,
                &backend.url,
                Some(payload.to_owned()),
                backend.timeout.0,
            )
            .await?;
        if status.is_success() || (status.is_client_error() && body.contains("already exists")) {
            Ok(status)
        } else {
            Err(format!(
                "{} answered {status}: {}",
                backend.url,
                body.chars().take(300).collect::<String>()
            ))
        }
    }

    /// Reads a forwarded task's status from `statusUrl`.
    pub(crate) async fn status(
        &self,
        backend: &WorkerBackend,
        status_url: &str,
        id: &str,
    ) -> Result<RemoteStatus, String> {
        let url = status_url.replace("{id}", &encode_id(id));
        let (status, body) = self
            .call(Method::GET, &url, None, backend.timeout.0)
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(RemoteStatus::Failed(format!(
                "the worker runner does not know the task ({url} answered 404)"
            )));
        }
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        parse_status(&body).map_err(|problem| format!("{url}: {problem}"))
    }
}

/// Percent-encodes a task id for a URL path (Druid ids carry `:` and other characters).
fn encode_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Druid's task status answer: `{"task": ID, "status": {"status": "RUNNING", "statusCode":
/// "RUNNING", "errorMsg": …}}` (or the inner object alone).
pub(crate) fn parse_status(body: &str) -> Result<RemoteStatus, String> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("answer is not JSON: {e}"))?;
    let inner = value
        .get("status")
        .filter(|s| s.is_object())
        .unwrap_or(&value);
    let code = inner
        .get("statusCode")
        .or_else(|| inner.get("status"))
        .and_then(|v| v.as_str())
        .ok_or("answer has no status.statusCode or status.status")?;
    Ok(match code.to_ascii_uppercase().as_str() {
        "SUCCESS" | "SUCCEEDED" => RemoteStatus::Succeeded,
        "FAILED" | "FAILURE" => RemoteStatus::Failed(
            inner
                .get("errorMsg")
                .and_then(|v| v.as_str())
                .unwrap_or("the worker runner reported FAILED")
                .chars()
                .take(1000)
                .collect(),
        ),
        "RUNNING" | "PENDING" | "WAITING" => RemoteStatus::Running,
        other => return Err(format!("unknown task status {other:?}")),
    })
}

/// The worker runner a forwarded task went to (from its adapter field).
pub(crate) fn worker_of(record: &TaskRecord) -> Option<&str> {
    record
        .adapter
        .as_ref()
        .and_then(|a| a.name.strip_prefix(WORKER_PREFIX))
}

impl Inner {
    /// Forwards a task (holding an in-flight slot, released here: forwarded tasks use no
    /// Kubernetes capacity) to worker runner `name`.
    pub(super) async fn forward(&self, record: TaskRecord, name: &str, backend: &WorkerBackend) {
        let id = record.id.clone();
        if record.state == TaskState::Pending {
            let change = Transition::new(&id, TaskState::Pending, TaskState::Launching)
                .reason(
                    ReasonCode::Forwarded,
                    format!("forwarding to worker runner `{name}` ({})", backend.url),
                )
                .adapter(AdapterRef {
                    name: format!("{WORKER_PREFIX}{name}"),
                    version: String::new(),
                    digest: String::new(),
                });
            if let Err(error) = self.store.transition(change).await {
                if !matches!(error, StoreError::StateMismatch { .. }) {
                    tracing::error!(task = %id, %error, "forward: cannot store launching");
                }
                self.queue.finish(&id);
                return;
            }
        }
        self.queue.finish(&id);
        let result = self.workers.forward(backend, &record.payload).await;
        let change = match result {
            Ok(status) if backend.status_url.is_some() => {
                Transition::new(&id, TaskState::Launching, TaskState::Running).reason(
                    ReasonCode::Forwarded,
                    format!(
                        "forwarded to worker runner `{name}` ({} answered {status}); its status is read from the runner",
                        backend.url
                    ),
                )
            }
            Ok(status) => Transition::new(&id, TaskState::Launching, TaskState::Succeeded)
                .reason(
                    ReasonCode::Completed,
                    format!(
                        "handed to worker runner `{name}` ({} answered {status}); with no statusUrl its outcome is tracked there",
                        backend.url
                    ),
                ),
            Err(problem) => Transition::new(&id, TaskState::Launching, TaskState::Failed)
                .reason(
                    ReasonCode::LaunchError,
                    format!("worker runner `{name}` did not take the task: {problem}"),
                ),
        };
        match self.store.transition(change).await {
            Ok(updated) if updated.state.is_terminal() => self.metrics.task_ended(&updated),
            Ok(_) | Err(StoreError::StateMismatch { .. }) => {}
            Err(error) => tracing::error!(task = %id, %error, "forward: cannot store the outcome"),
        }
    }

    /// One loop for every forwarded task: reads each runner's status at its poll interval and
    /// stores the outcome. Stateless between rounds (reads the store), so it resumes after a
    /// restart.
    pub(super) async fn poll_workers(self: Arc<Self>) {
        let Some(interval) = self
            .config
            .routing
            .workers
            .values()
            .filter(|w| w.status_url.is_some())
            .map(|w| w.poll_interval.0)
            .min()
        else {
            return;
        };
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if self.is_stopping() {
                return;
            }
            let tasks = match self.store.non_terminal().await {
                Ok(tasks) => tasks,
                Err(error) => {
                    tracing::warn!(%error, "worker status: cannot list tasks; retrying next round");
                    continue;
                }
            };
            let forwarded = tasks
                .into_iter()
                .filter(|t| t.state == TaskState::Running && worker_of(t).is_some());
            let checks = forwarded.map(|record| {
                let inner = Arc::clone(&self);
                async move { inner.check_forwarded(record).await }
            });
            // A bounded number of requests in flight.
            futures::stream::iter(checks)
                .buffer_unordered(16)
                .for_each(|()| async {})
                .await;
        }
    }

    async fn check_forwarded(&self, record: TaskRecord) {
        let Some(name) = worker_of(&record) else {
            return;
        };
        let Some(backend) = self.config.routing.workers.get(name) else {
            let change = Transition::new(&record.id, TaskState::Running, TaskState::Failed)
                .reason(
                    ReasonCode::HostError,
                    format!(
                        "forwarded to worker runner `{name}`, which is no longer in routing.workers: its outcome cannot be read"
                    ),
                );
            if let Ok(updated) = self.store.transition(change).await {
                self.metrics.task_ended(&updated);
            }
            return;
        };
        let Some(status_url) = &backend.status_url else {
            return;
        };
        let change = match self.workers.status(backend, status_url, &record.id).await {
            Ok(RemoteStatus::Running) => return,
            Ok(RemoteStatus::Succeeded) => {
                Transition::new(&record.id, TaskState::Running, TaskState::Succeeded).reason(
                    ReasonCode::Completed,
                    format!("worker runner `{name}` reported SUCCESS"),
                )
            }
            Ok(RemoteStatus::Failed(message)) => {
                Transition::new(&record.id, TaskState::Running, TaskState::Failed).reason(
                    ReasonCode::WorkerFailed,
                    format!("worker runner `{name}`: {message}"),
                )
            }
            Err(problem) => {
                tracing::warn!(task = %record.id, worker = %name, %problem, "worker status not read; retrying next round");
                return;
            }
        };
        match self.store.transition(change).await {
            Ok(updated) => self.metrics.task_ended(&updated),
            Err(StoreError::StateMismatch { .. }) => {}
            Err(error) => {
                tracing::error!(task = %record.id, %error, "worker status: cannot store the outcome")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn druid_status_answers_are_read() {
        let running =
            r#"{"task":"t","status":{"id":"t","status":"RUNNING","statusCode":"RUNNING"}}"#;
        assert_eq!(parse_status(running), Ok(RemoteStatus::Running));
        let done = r#"{"task":"t","status":{"statusCode":"SUCCESS","status":"SUCCESS"}}"#;
        assert_eq!(parse_status(done), Ok(RemoteStatus::Succeeded));
        let failed = r#"{"task":"t","status":{"statusCode":"FAILED","errorMsg":"disk full"}}"#;
        assert_eq!(
            parse_status(failed),
            Ok(RemoteStatus::Failed("disk full".into()))
        );
        assert_eq!(
            parse_status(r#"{"status":"WAITING"}"#),
            Ok(RemoteStatus::Running)
        );
        assert!(parse_status("nope").unwrap_err().contains("not JSON"));
        assert!(
            parse_status(r#"{"status":"EXPLODED"}"#)
                .unwrap_err()
                .contains("EXPLODED")
        );
        assert!(parse_status(r#"{"x":1}"#).is_err());
    }

    #[test]
    fn ids_are_encoded_for_paths() {
        assert_eq!(
            encode_id("index_parallel_wiki_2026-11-23T10:15:02.117Z"),
            "index_parallel_wiki_2026-11-23T10%3A15%3A02.117Z"
        );
        assert_eq!(encode_id("a/b c"), "a%2Fb%20c");
    }
}
