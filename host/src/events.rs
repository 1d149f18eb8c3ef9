//! Kubernetes Events on the Jobs taskpod creates, so `kubectl describe job` (and `kubectl get
//! events`) explain what taskpod did: which adapter shaped the Job (name, version and digest),
//! why a policy refused an adapter's output, why a task timed out before its pod started, and
//! other host-decided ends (max duration, cancel).
//!
//! Events are written as `events.k8s.io/v1` through kube's event recorder (repeats of the same
//! event become a series, patched in place): the Role grants `create` and `patch` on
//! `events.k8s.io/events` and nothing more for writing (deploy/rbac-calls.yaml). Publishing
//! never holds up a task: each Event is sent from its own spawned task, and a failure is logged
//! and counted (`taskpod_kube_api_errors_total{resource="events"}`), never retried.
//!
//! An Event `regarding` a Job that does not exist (a refusal happens before the Job is
//! created) still names the Job taskpod would have created, so `kubectl get events
//! --field-selector regarding.name=JOB` finds it.

use std::sync::Arc;

use ::kube::Client;
use ::kube::runtime::events::{Event, EventType, Recorder, Reporter};
use k8s_openapi::api::core::v1::ObjectReference;

use crate::metrics::Metrics;

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
    recorder: Recorder,
    namespace: String,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Events {
    /// Events in `namespace`, reported by `instance` (this host: its pod name when it runs in
    /// one, else the configured instance name).
    pub fn new(client: Client, namespace: &str, instance: &str, metrics: Arc<Metrics>) -> Events {
        let reporter = Reporter {
            controller: REPORTING_CONTROLLER.to_owned(),
            instance: Some(truncate(instance, 128)),
        };
        Events {
            recorder: Recorder::new(client, reporter),
            namespace: namespace.to_owned(),
            metrics,
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

    /// Sends one Event from a spawned task (needs a Tokio runtime); failures are logged at
    /// `warn` and counted.
    fn publish(
        &self,
        job: &JobRef,
        type_: EventType,
        reason: &'static str,
        action: &str,
        note: String,
    ) {
        let reference = ObjectReference {
            api_version: Some("batch/v1".to_owned()),
            kind: Some("Job".to_owned()),
            name: Some(job.name.clone()),
            namespace: Some(self.namespace.clone()),
            uid: job.uid.clone(),
            ..ObjectReference::default()
        };
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(truncate(&note, MAX_NOTE_BYTES)),
            action: action.to_owned(),
            secondary: None,
        };
        let recorder = self.recorder.clone();
        let metrics = Arc::clone(&self.metrics);
        let job = job.name.clone();
        tokio::spawn(async move {
            match recorder.publish(&event, &reference).await {
                Ok(()) => metrics.event_published(reason),
                Err(error) => {
                    let code = match &error {
                        ::kube::Error::Api(status) => Some(status.code),
                        _ => None,
                    };
                    metrics.kube_error("create", "events", code);
                    tracing::warn!(%job, reason, %error, "cannot write the Event on the Job");
                }
            }
        });
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
