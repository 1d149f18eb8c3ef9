//! Kubernetes Events on the Jobs taskpod creates, so `kubectl describe job` (and `kubectl get
//! events`) explain what taskpod did: which adapter shaped the Job (name, version and digest),
//! why a policy refused an adapter's output, why a task timed out before its pod started, and
//! other host-decided ends (max duration, cancel).
//!
//! Events are written as `events.k8s.io/v1` by one writer task per host, fed through a bounded
//! queue: publishing never holds up a task (it only queues the Event), at most
//! [`MAX_IN_FLIGHT`] are sent at once so that a burst of launches is not slowed by a burst of
//! Events, and nothing is cached per Job (each of taskpod's Events is written once: a Job is
//! adapted, refused, timed out, stopped or canceled once). The Role grants `create` on
//! `events.k8s.io/events` and nothing more for writing (deploy/rbac-calls.yaml). A failed
//! write is logged and counted (`taskpod_kube_api_errors_total{resource="events"}`), never
//! retried; when the queue is full (the API server is far behind) an Event is dropped and
//! counted the same way. [`Events::close`] sends what is queued before the host stops.
//!
//! An Event `regarding` a Job that does not exist (a refusal happens before the Job is
//! created) still names the Job taskpod would have created, so `kubectl get events
//! --field-selector regarding.name=JOB` finds it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::kube::Client;
use ::kube::api::{Api, PostParams};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

/// Events queued and not yet sent, at most; more are dropped (and counted).
pub const QUEUE_CAPACITY: usize = 10_000;

/// Event writes in flight at once.
pub const MAX_IN_FLIGHT: usize = 4;

/// How long [`Events::close`] waits for queued Events to be sent.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Normal or Warning (the `Type` column of `kubectl describe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Something taskpod did as expected.
    Normal,
    /// Something went wrong.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// The `reportingController` of taskpod's Events.
pub const REPORTING_CONTROLLER: &str = "taskpod.dev/runner";

/// Event reasons (the `Reason` column of `kubectl describe`).
pub mod reason {
    /// Normal: the adapter that shaped the Job, with its version and digest.
    pub const ADAPTED: &str = "Adapted";
    /// Warning: the tenant's policy refused the adapter's output; no Job was created.
    pub const POLICY_REFUSED: &str = "PolicyRefused";
    /// Warning: the pod did not start within the launch timeout; the Job is deleted.
    pub const LAUNCH_TIMEOUT: &str = "LaunchTimeout";
    /// Warning: the task ran longer than its maximum duration; the Job is deleted.
    pub const MAX_DURATION: &str = "MaxDurationExceeded";
    /// Normal: the task was canceled; the Job is deleted.
    pub const CANCELED: &str = "Canceled";
}

/// Most bytes of an Event's note (the API server refuses more than 1 kB).
const MAX_NOTE_BYTES: usize = 1024;

/// The Job an Event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    /// The Job's name.
    pub name: String,
    /// The Job's uid, when it exists.
    pub uid: Option<String>,
}

/// Writes Events on the Jobs of one namespace.
#[derive(Clone)]
pub struct Events {
    queue: mpsc::Sender<Message>,
    namespace: String,
    instance: String,
    metrics: Arc<Metrics>,
    /// Makes Event names unique within this process (with the time).
    sequence: Arc<AtomicU64>,
    writer: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

enum Message {
    Write(Box<Event>, &'static str),
    Close(oneshot::Sender<()>),
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("namespace", &self.namespace)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl Events {
    /// Events in `namespace`, reported by `instance` (this host: its pod name when it runs in
    /// one, else the configured instance name). Starts the writer task (needs a Tokio runtime).
    pub fn new(client: Client, namespace: &str, instance: &str, metrics: Arc<Metrics>) -> Events {
        let (queue, received) = mpsc::channel(QUEUE_CAPACITY);
        let api: Api<Event> = Api::namespaced(client, namespace);
        let writer = tokio::spawn(write_all(api, received, Arc::clone(&metrics)));
        Events {
            queue,
            namespace: namespace.to_owned(),
            instance: truncate(instance, 128),
            metrics,
            sequence: Arc::default(),
            writer: Arc::new(Mutex::new(Some(writer))),
        }
    }

    /// Sends the Events queued so far (waiting at most a few seconds) and stops the writer;
    /// later Events are dropped. Called when the host stops.
    pub async fn close(&self) {
        let (done, sent) = oneshot::channel();
        if self.queue.send(Message::Close(done)).await.is_ok() {
            let _ = sent.await;
        }
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(writer) = writer {
            let _ = writer.await;
        }
    }

    /// The adapter instance `binding` (the adapter `name@version`, component `digest`) shaped
    /// `job`.
    pub fn adapted(&self, job: &JobRef, binding: &str, name: &str, version: &str, digest: &str) {
        self.publish(
            job,
            EventType::Normal,
            reason::ADAPTED,
            "Launch",
            format!("Job shaped by adapter `{binding}`: {name}@{version}, component {digest}"),
        );
    }

    /// The tenant's policy refused the output of `adapter` for the task whose Job would have
    /// been `job`; `why` names the rule and the field path. The task fails; no Job is created.
    pub fn policy_refused(&self, job: &JobRef, adapter: &str, why: &str) {
        self.publish(
            job,
            EventType::Warning,
            reason::POLICY_REFUSED,
            "Refuse",
            format!("policy refused the output of adapter {adapter}: {why}"),
        );
    }

    /// The pod of `job` did not start within the launch timeout; `why` is the scheduler's or
    /// kubelet's reason, as the task's failure message says it.
    pub fn launch_timeout(&self, job: &JobRef, why: &str) {
        self.publish(
            job,
            EventType::Warning,
            reason::LAUNCH_TIMEOUT,
            "Delete",
            format!("{why}; deleting the Job"),
        );
    }

    /// The task of `job` ran past its maximum duration.
    pub fn max_duration(&self, job: &JobRef, why: &str) {
        self.publish(
            job,
            EventType::Warning,
            reason::MAX_DURATION,
            "Delete",
            format!("{why}; deleting the Job"),
        );
    }

    /// The task of `job` was canceled (`how`: by whom, forced or not).
    pub fn canceled(&self, job: &JobRef, how: &str) {
        self.publish(
            job,
            EventType::Normal,
            reason::CANCELED,
            "Delete",
            format!("task {how}; deleting the Job"),
        );
    }

    /// Queues one Event for the writer; when the queue is full it is dropped and counted.
    fn publish(
        &self,
        job: &JobRef,
        type_: EventType,
        reason: &'static str,
        action: &str,
        note: String,
    ) {
        let now = k8s_openapi::jiff::Timestamp::now();
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}{:x}",
                    job.name,
                    now.as_nanosecond(),
                    sequence & 0xfff
                )),
                namespace: Some(self.namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(action.to_owned()),
            reason: Some(reason.to_owned()),
            note: Some(truncate(&note, MAX_NOTE_BYTES)),
            type_: Some(type_.as_str().to_owned()),
            regarding: Some(ObjectReference {
                api_version: Some("batch/v1".to_owned()),
                kind: Some("Job".to_owned()),
                name: Some(job.name.clone()),
                namespace: Some(self.namespace.clone()),
                uid: job.uid.clone(),
                ..ObjectReference::default()
            }),
            reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        };
        if let Err(error) = self.queue.try_send(Message::Write(Box::new(event), reason)) {
            self.metrics.kube_error("create", "events", None);
            let why = match error {
                mpsc::error::TrySendError::Full(_) => "the Event queue is full",
                mpsc::error::TrySendError::Closed(_) => "the host is stopping",
            };
            tracing::warn!(job = %job.name, reason, "Event on the Job dropped: {why}");
        }
    }
}

/// The writer task: sends queued Events, [`MAX_IN_FLIGHT`] at a time, until closed.
async fn write_all(api: Api<Event>, mut queue: mpsc::Receiver<Message>, metrics: Arc<Metrics>) {
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let closed = loop {
        tokio::select! {
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            message = queue.recv(), if in_flight.len() < MAX_IN_FLIGHT => match message {
                Some(Message::Write(event, reason)) => {
                    in_flight.push(write_one(&api, event, reason, &metrics));
                }
                Some(Message::Close(done)) => break Some(done),
                None => break None,
            },
        }
    };
    // Closing: what was queued before the close is sent, then the writer ends.
    queue.close();
    let drain = async {
        while let Some(message) = queue.recv().await {
            if let Message::Write(event, reason) = message {
                in_flight.push(write_one(&api, event, reason, &metrics));
                while in_flight.len() >= MAX_IN_FLIGHT {
                    in_flight.next().await;
                }
            }
        }
        while in_flight.next().await.is_some() {}
    };
    if tokio::time::timeout(CLOSE_WAIT, drain).await.is_err() {
        tracing::warn!("stopping with Events not yet written on their Jobs");
    }
    if let Some(done) = closed {
        let _ = done.send(());
    }
}

async fn write_one(api: &Api<Event>, event: Box<Event>, reason: &'static str, metrics: &Metrics) {
    match api.create(&PostParams::default(), &event).await {
        Ok(_) => metrics.event_published(reason),
        Err(error) => {
            let code = match &error {
                ::kube::Error::Api(status) => Some(status.code),
                _ => None,
            };
            metrics.kube_error("create", "events", code);
            let job = event
                .regarding
                .as_ref()
                .and_then(|r| r.name.as_deref())
                .unwrap_or_default();
            tracing::warn!(%job, reason, %error, "cannot write the Event on the Job");
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary (with `…` when cut).
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("short", 10), "short");
        let long = "é".repeat(600);
        let cut = truncate(&long, 1024);
        assert!(cut.len() <= 1024);
        assert!(cut.ends_with('…'));
    }
}
