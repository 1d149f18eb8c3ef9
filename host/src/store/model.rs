//! The store's data model: task states and the legal transitions between them, end reasons,
//! what a caller submits ([`NewTask`]), what the store keeps ([`TaskRecord`]), state history,
//! log slices, list queries with keyset pagination, counts and change events.
//!
//! These are plain values with no database handle inside, so the runner, the API and the CLI
//! can pass them around, serialise them and test against them freely.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Ordered key/value pairs (labels, tags), as in the adapter SDK.
pub type Pairs = Vec<(String, String)>;

/// Where a task is in its lifecycle.
///
/// ```text
/// pending ──► launching ──► running ──► succeeded
///    │            │  │         ├──────► failed
///    │            │  │         └──────► canceled
///    │            │  ├──────────────────► succeeded   (Job finished before a running pod was seen)
///    │            ├─┴──────────────────► failed | canceled
///    ├────────────────────────────────► failed        (adapter error, policy refusal)
///    └────────────────────────────────► canceled      (canceled while queued)
/// ```
/// The full table is [`TaskState::can_transition_to`]; terminal states have no way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Durable and acknowledged, waiting in the queue for capacity.
    Pending,
    /// Holds a capacity slot: the adapter ran and the Job is being created.
    Launching,
    /// The Job's pod started.
    Running,
    /// The task's main container exited 0 / the Job completed.
    Succeeded,
    /// The task ended without success; the reason says why.
    Failed,
    /// The task was canceled before it finished.
    Canceled,
}

impl TaskState {
    /// Every state, in lifecycle order.
    pub const ALL: [TaskState; 6] = [
        TaskState::Pending,
        TaskState::Launching,
        TaskState::Running,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Canceled,
    ];

    /// The states a task can still leave (pending, launching, running).
    pub const NON_TERMINAL: [TaskState; 3] =
        [TaskState::Pending, TaskState::Launching, TaskState::Running];

    /// The lower-case name used in the database, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Launching => "launching",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Canceled => "canceled",
        }
    }

    /// True for succeeded, failed and canceled.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Canceled
        )
    }

    /// True while the task holds a capacity slot (a Job is in flight): launching or running.
    pub fn is_in_flight(self) -> bool {
        matches!(self, TaskState::Launching | TaskState::Running)
    }

    /// The transition table.
    ///
    /// | from \ to  | launching | running | succeeded | failed | canceled |
    /// |------------|-----------|---------|-----------|--------|----------|
    /// | pending    | yes       |         |           | yes    | yes      |
    /// | launching  |           | yes     | yes       | yes    | yes      |
    /// | running    |           |         | yes       | yes    | yes      |
    /// | terminal   |           |         |           |        |          |
    ///
    /// `launching → succeeded` covers a Job that completes before its pod was seen running.
    pub fn can_transition_to(self, to: TaskState) -> bool {
        use TaskState::*;
        matches!(
            (self, to),
            (Pending, Launching | Failed | Canceled)
                | (Launching, Running | Succeeded | Failed | Canceled)
                | (Running, Succeeded | Failed | Canceled)
        )
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the names of [`TaskState`] or [`ReasonCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`; expected one of: {expected}")]
pub struct UnknownName {
    /// What was being parsed ("task state", "reason code").
    pub what: &'static str,
    /// The rejected text.
    pub value: String,
    /// The accepted names, comma separated.
    pub expected: String,
}

impl FromStr for TaskState {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "task state",
                value: s.to_string(),
                expected: TaskState::ALL.map(TaskState::as_str).join(", "),
            })
    }
}

/// Why a task changed state; required for every terminal state.
///
/// `succeeded` takes [`ReasonCode::Completed`], `canceled` takes [`ReasonCode::CanceledByUser`],
/// `failed` takes any other code except [`ReasonCode::Submitted`] (see [`ReasonCode::fits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReasonCode {
    /// The task entered the store (first history entry).
    Submitted,
    /// The Job completed successfully.
    Completed,
    /// A user or operator canceled the task.
    CanceledByUser,
    /// The adapter refused the task or failed (`adapter-error`).
    AdapterError,
    /// The tenant's policy refused the adapter's output.
    Policy,
    /// The Kubernetes API refused to create the Job or its companions.
    LaunchError,
    /// The pod was not created or scheduled within the launch timeout.
    LaunchTimeout,
    /// The task ran longer than its maximum duration (activeDeadlineSeconds / host check).
    MaxDuration,
    /// The main container exited with a non-zero code (see the exit code).
    ExitCode,
    /// The main container was killed for exceeding its memory limit.
    OomKilled,
    /// The pod was evicted from its node.
    Evicted,
    /// The image could not be pulled.
    ImagePull,
    /// The pod could not be scheduled.
    Unschedulable,
    /// The Job was deleted outside taskpod.
    JobDeleted,
    /// The pod was deleted outside taskpod.
    PodDeleted,
    /// The Job failed for another reason reported by Kubernetes.
    JobFailed,
    /// taskpod itself could not carry on with the task.
    HostError,
    /// The task was forwarded to a worker runner (migration routing) instead of becoming a Job.
    Forwarded,
    /// The worker runner the task was forwarded to reported it failed.
    WorkerFailed,
}

impl ReasonCode {
    /// Every code.
    pub const ALL: [ReasonCode; 19] = [
        ReasonCode::Submitted,
        ReasonCode::Completed,
        ReasonCode::CanceledByUser,
        ReasonCode::AdapterError,
        ReasonCode::Policy,
        ReasonCode::LaunchError,
        ReasonCode::LaunchTimeout,
        ReasonCode::MaxDuration,
        ReasonCode::ExitCode,
        ReasonCode::OomKilled,
        ReasonCode::Evicted,
        ReasonCode::ImagePull,
        ReasonCode::Unschedulable,
        ReasonCode::JobDeleted,
        ReasonCode::PodDeleted,
        ReasonCode::JobFailed,
        ReasonCode::HostError,
        ReasonCode::Forwarded,
        ReasonCode::WorkerFailed,
    ];

    /// The kebab-case name used in the database, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Submitted => "submitted",
            ReasonCode::Completed => "completed",
            ReasonCode::CanceledByUser => "canceled-by-user",
            ReasonCode::AdapterError => "adapter-error",
            ReasonCode::Policy => "policy",
            ReasonCode::LaunchError => "launch-error",
            ReasonCode::LaunchTimeout => "launch-timeout",
            ReasonCode::MaxDuration => "max-duration",
            ReasonCode::ExitCode => "exit-code",
            ReasonCode::OomKilled => "oom-killed",
            ReasonCode::Evicted => "evicted",
            ReasonCode::ImagePull => "image-pull",
            ReasonCode::Unschedulable => "unschedulable",
            ReasonCode::JobDeleted => "job-deleted",
            ReasonCode::PodDeleted => "pod-deleted",
            ReasonCode::JobFailed => "job-failed",
            ReasonCode::HostError => "host-error",
            ReasonCode::Forwarded => "forwarded",
            ReasonCode::WorkerFailed => "worker-failed",
        }
    }

    /// Whether this code may end a transition into `to`.
    ///
    /// Non-terminal targets accept any code except `completed` and `canceled-by-user`.
    pub fn fits(self, to: TaskState) -> bool {
        match to {
            TaskState::Succeeded => self == ReasonCode::Completed,
            TaskState::Canceled => self == ReasonCode::CanceledByUser,
            TaskState::Failed => !matches!(
                self,
                ReasonCode::Completed | ReasonCode::CanceledByUser | ReasonCode::Submitted
            ),
            TaskState::Pending | TaskState::Launching | TaskState::Running => {
                !matches!(self, ReasonCode::Completed | ReasonCode::CanceledByUser)
            }
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReasonCode {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReasonCode::ALL
            .into_iter()
            .find(|code| code.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "reason code",
                value: s.to_string(),
                expected: ReasonCode::ALL.map(ReasonCode::as_str).join(", "),
            })
    }
}

/// A reason: a machine-readable code and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// What kind of reason.
    pub code: ReasonCode,
    /// Details (the adapter's error, the scheduler's message …); cut to
    /// [`Reason::MAX_MESSAGE_BYTES`] when stored.
    pub message: String,
}

impl Reason {
    /// Longest message kept; longer messages are cut at a character boundary.
    pub const MAX_MESSAGE_BYTES: usize = 4096;

    /// A reason with a code and a message.
    pub fn new(code: ReasonCode, message: impl Into<String>) -> Reason {
        Reason {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

/// Which adapter shaped the task's Job (kept for annotations, audits and restore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterRef {
    /// The adapter's name.
    pub name: String,
    /// The adapter's version.
    pub version: String,
    /// sha256 of the adapter component, hex.
    pub digest: String,
}

/// A task as submitted by a tenant, before it is stored.
///
/// Field names in validation errors are those of the submit JSON: `id`, `type`, `tenant`,
/// `groupId`, `dataSource`, `payload`, `labels`, `tags`, `priority`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NewTask {
    /// The task id as the submitting system knows it.
    pub id: String,
    /// The task type.
    pub kind: String,
    /// The submitting tenant.
    pub tenant: String,
    /// Druid's `groupId`, if any.
    pub group_id: Option<String>,
    /// Druid's `dataSource`, if any.
    pub datasource: Option<String>,
    /// The task document, JSON object text.
    pub payload: String,
    /// Submitter labels.
    pub labels: Pairs,
    /// Context tags.
    pub tags: Pairs,
    /// Higher runs first; equal priorities run oldest first.
    pub priority: i32,
}

impl NewTask {
    /// A task with the required fields and no labels, tags, group, datasource; priority 0.
    pub fn new(
        id: impl Into<String>,
        kind: impl Into<String>,
        tenant: impl Into<String>,
        payload: impl Into<String>,
    ) -> NewTask {
        NewTask {
            id: id.into(),
            kind: kind.into(),
            tenant: tenant.into(),
            payload: payload.into(),
            ..NewTask::default()
        }
    }

    /// Sets the priority.
    pub fn with_priority(mut self, priority: i32) -> NewTask {
        self.priority = priority;
        self
    }

    /// Adds a label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> NewTask {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// Adds a tag.
    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> NewTask {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// Sets Druid's groupId.
    pub fn with_group_id(mut self, group_id: impl Into<String>) -> NewTask {
        self.group_id = Some(group_id.into());
        self
    }

    /// Sets Druid's dataSource.
    pub fn with_datasource(mut self, datasource: impl Into<String>) -> NewTask {
        self.datasource = Some(datasource.into());
        self
    }

    /// The store's form of a task document parsed by [`crate::task::SubmittedTask::parse`].
    pub fn from_submitted(task: &crate::task::SubmittedTask) -> NewTask {
        NewTask {
            id: task.id.clone(),
            kind: task.kind.clone(),
            tenant: task.tenant.clone(),
            group_id: task.group_id.clone(),
            datasource: task.datasource.clone(),
            payload: task.payload.clone(),
            labels: task
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tags: task.tags.clone(),
            priority: task.priority,
        }
    }
}

/// A task as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task id.
    pub id: String,
    /// Submission order (strictly increasing, never reused); the queue's age key and the
    /// list cursor.
    pub seq: i64,
    /// The submitting tenant.
    pub tenant: String,
    /// The task type.
    pub kind: String,
    /// Druid's groupId, if any.
    pub group_id: Option<String>,
    /// Druid's dataSource, if any.
    pub datasource: Option<String>,
    /// Higher runs first.
    pub priority: i32,
    /// The task document as submitted.
    pub payload: String,
    /// sha256 (hex) of the payload's compact JSON form.
    pub payload_digest: String,
    /// sha256 (hex) over every tenant-facing field; equal digests make a resubmission idempotent.
    pub submission_digest: String,
    /// Submitter labels.
    pub labels: Pairs,
    /// Context tags.
    pub tags: Pairs,
    /// Current state.
    pub state: TaskState,
    /// The reason of the latest transition that gave one (always set in terminal states).
    pub reason: Option<Reason>,
    /// The main container's exit code, when known.
    pub exit_code: Option<i32>,
    /// The Job's name, set when the task enters `launching`.
    pub job_name: Option<String>,
    /// The adapter that shaped the Job.
    pub adapter: Option<AdapterRef>,
    /// How many times the task entered `launching`.
    pub attempt: u32,
    /// When it was submitted (Unix milliseconds).
    pub created_at_ms: i64,
    /// When its row last changed state (Unix milliseconds).
    pub updated_at_ms: i64,
    /// When it last entered `launching`.
    pub launched_at_ms: Option<i64>,
    /// When it entered `running`.
    pub started_at_ms: Option<i64>,
    /// When it reached a terminal state.
    pub finished_at_ms: Option<i64>,
    /// Bytes of log stored.
    pub log_bytes: u64,
    /// True once the log reached the per-task cap and later output was dropped.
    pub log_truncated: bool,
}

impl TaskRecord {
    /// The record an adapter receives for this task.
    pub fn to_sdk(&self) -> taskpod_adapter_sdk::Task {
        taskpod_adapter_sdk::Task {
            id: self.id.clone(),
            kind: self.kind.clone(),
            tenant: self.tenant.clone(),
            group_id: self.group_id.clone(),
            datasource: self.datasource.clone(),
            payload: self.payload.clone(),
            labels: self.labels.clone(),
            tags: self.tags.clone(),
        }
    }
}

/// The result of [`super::Store::submit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The stored task (the existing one when `created` is false).
    pub task: TaskRecord,
    /// False when an identical task with this id already existed (idempotent resubmission).
    pub created: bool,
}

/// A compare-and-set state change: applied only if the task is in `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The task.
    pub id: String,
    /// The state the caller believes the task is in.
    pub from: TaskState,
    /// The new state.
    pub to: TaskState,
    /// Why; required for terminal states.
    pub reason: Option<Reason>,
    /// The Job name; required when entering `launching`.
    pub job_name: Option<String>,
    /// The adapter that shaped the Job (usually given with `launching`).
    pub adapter: Option<AdapterRef>,
    /// The main container's exit code, when known.
    pub exit_code: Option<i32>,
}

impl Transition {
    /// A transition with nothing but its states.
    pub fn new(id: impl Into<String>, from: TaskState, to: TaskState) -> Transition {
        Transition {
            id: id.into(),
            from,
            to,
            reason: None,
            job_name: None,
            adapter: None,
            exit_code: None,
        }
    }

    /// Sets the reason.
    pub fn reason(mut self, code: ReasonCode, message: impl Into<String>) -> Transition {
        self.reason = Some(Reason::new(code, message));
        self
    }

    /// Sets the Job name.
    pub fn job_name(mut self, job_name: impl Into<String>) -> Transition {
        self.job_name = Some(job_name.into());
        self
    }

    /// Sets the adapter.
    pub fn adapter(mut self, adapter: AdapterRef) -> Transition {
        self.adapter = Some(adapter);
        self
    }

    /// Sets the exit code.
    pub fn exit_code(mut self, exit_code: i32) -> Transition {
        self.exit_code = Some(exit_code);
        self
    }
}

/// One stored state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// 1 for the submission, then one more per transition.
    pub seq: u32,
    /// The state before (`None` for the submission).
    pub from: Option<TaskState>,
    /// The state after.
    pub to: TaskState,
    /// The reason given.
    pub reason: Option<Reason>,
    /// When (Unix milliseconds).
    pub at_ms: i64,
}

/// The result of [`super::Store::append_log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogAppend {
    /// Offset of the first byte written.
    pub offset: u64,
    /// Offset after the last byte written (the log's length).
    pub end_offset: u64,
    /// True when the per-task cap cut this chunk (or dropped it entirely).
    pub truncated: bool,
}

/// Which pod the end of a task's stored log comes from: a Job of several pods (retries,
/// Samza's containers) stores their logs one after another, and a log follower resuming
/// after a restart must know how much of *its* pod's log is stored, whatever the pods printed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogSection {
    /// Where the part of the log stored last comes from, as its writer named it (the runner:
    /// `POD#RUN`, the pod and the run of its main container); `None` when nothing was stored
    /// with a name yet, e.g. a log stored by an older taskpod.
    pub pod: Option<String>,
    /// Where that pod's part of the stored log starts.
    pub start: u64,
    /// The stored log's length.
    pub end: u64,
}

/// A piece of a task's log, read from an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSlice {
    /// The bytes read (at most the requested maximum).
    pub data: Vec<u8>,
    /// The offset of `data[0]`.
    pub offset: u64,
    /// Where to read next.
    pub next_offset: u64,
    /// The log's length when read.
    pub log_bytes: u64,
    /// True once output beyond the per-task cap was dropped.
    pub truncated: bool,
    /// The task's state when read: a follower stops once it is terminal and `next_offset ==
    /// log_bytes`.
    pub state: TaskState,
}

impl LogSlice {
    /// True when a follower has read everything there will ever be.
    pub fn is_complete(&self) -> bool {
        self.state.is_terminal() && self.next_offset >= self.log_bytes
    }
}

/// Sort order of [`ListQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// Most recently submitted first.
    #[default]
    NewestFirst,
    /// Oldest first.
    OldestFirst,
}

/// An opaque keyset cursor (a task's submission sequence) for [`ListQuery::after`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor(pub i64);

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Cursor {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Cursor)
    }
}

/// Filters and page of a task listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListQuery {
    /// Only these states (empty: all).
    pub states: Vec<TaskState>,
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this task type.
    pub kind: Option<String>,
    /// Continue after this cursor (from the previous [`Page::next`]).
    pub after: Option<Cursor>,
    /// Page size; 0 means [`ListQuery::DEFAULT_LIMIT`], values above [`ListQuery::MAX_LIMIT`]
    /// are capped.
    pub limit: usize,
    /// Sort order.
    pub order: Order,
}

impl ListQuery {
    /// Page size when none is given.
    pub const DEFAULT_LIMIT: usize = 100;
    /// Largest page.
    pub const MAX_LIMIT: usize = 1000;
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The tasks, in the query's order.
    pub tasks: Vec<TaskRecord>,
    /// The cursor for the next page; `None` on the last page.
    pub next: Option<Cursor>,
}

/// Task counts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Counts {
    /// Tasks per state (states without tasks are absent).
    pub by_state: BTreeMap<TaskState, u64>,
    /// Tasks per tenant and state.
    pub by_tenant: BTreeMap<String, BTreeMap<TaskState, u64>>,
}

impl Counts {
    /// Tasks in one state.
    pub fn state(&self, state: TaskState) -> u64 {
        self.by_state.get(&state).copied().unwrap_or(0)
    }

    /// Tasks of one tenant in one state.
    pub fn tenant_state(&self, tenant: &str, state: TaskState) -> u64 {
        self.by_tenant
            .get(tenant)
            .and_then(|states| states.get(&state))
            .copied()
            .unwrap_or(0)
    }
}

/// A committed change, broadcast after the commit (for `/v1/events`, log followers, metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// A new task was stored (not sent for idempotent resubmissions).
    Submitted {
        /// The task.
        id: String,
        /// Its tenant.
        tenant: String,
        /// Its type.
        kind: String,
        /// Its priority.
        priority: i32,
        /// Its submission sequence.
        seq: i64,
    },
    /// A task changed state.
    Transitioned {
        /// The task.
        id: String,
        /// Its tenant.
        tenant: String,
        /// The previous state.
        from: TaskState,
        /// The new state.
        to: TaskState,
        /// The reason given.
        reason: Option<Reason>,
    },
    /// Log bytes were appended.
    LogAppended {
        /// The task.
        id: String,
        /// The log's new length.
        end_offset: u64,
    },
}
