//! Plain Rust mirrors of the records in `wit/adapter.wit`.
//!
//! Adapter logic is written against these types, not against generated bindings, so the
//! same code compiles natively (for unit tests, golden tests and the host's native
//! benchmark baseline) and to a `wasm32-wasip2` component (through [`crate::export_adapter!`]).
//! Field names and meanings are those of the WIT file; see its doc comments.

use std::fmt;

/// Ordered key/value pairs (labels, annotations, tags, named templates).
pub type Pairs = Vec<(String, String)>;

/// What an adapter says about itself (`adapter-info`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdapterInfo {
    /// Short machine name, DNS-1123 label characters only.
    pub name: String,
    /// The adapter's own semver version.
    pub version: String,
    /// One line for humans.
    pub description: String,
    /// JSON Schema of the adapter's configuration, as JSON text (`{}` when none).
    pub config_schema: String,
    /// Task types the adapter is meant for; empty means any.
    pub task_types: Vec<String>,
}

/// One task to be run as a Kubernetes Job (`task`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Task {
    /// The task id as the submitting system knows it.
    pub id: String,
    /// The task type (WIT `kind`).
    pub kind: String,
    /// The tenant that submitted the task.
    pub tenant: String,
    /// Druid's `groupId`, if any.
    pub group_id: Option<String>,
    /// Druid's `dataSource`, if any.
    pub datasource: Option<String>,
    /// The task document as JSON text.
    pub payload: String,
    /// Submitter labels (not yet sanitised).
    pub labels: Pairs,
    /// Context tags; non-string values are JSON text.
    pub tags: Pairs,
}

/// Host-side limits that apply to the Job (`limits`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Job `activeDeadlineSeconds`.
    pub max_duration_seconds: u64,
    /// Job `ttlSecondsAfterFinished`; `None` keeps finished Jobs (debugJobs).
    pub cleanup_delay_seconds: Option<u64>,
    /// Pod `terminationGracePeriodSeconds`, when configured.
    pub termination_grace_period_seconds: Option<u64>,
    /// Largest gzip+base64 payload that may travel inline (annotation/env).
    pub max_inline_payload: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_duration_seconds: 4 * 3600,
            cleanup_delay_seconds: Some(2 * 24 * 3600),
            termination_grace_period_seconds: None,
            max_inline_payload: crate::payload::MAX_INLINE_PAYLOAD as u32,
        }
    }
}

/// Everything the host knows that may shape the Job (`context`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Context {
    /// Namespace the Job will be created in.
    pub namespace: String,
    /// This adapter instance's configuration, JSON text.
    pub config: String,
    /// The host's own pod, JSON text, when provided.
    pub base_pod: Option<String>,
    /// Named `v1/PodTemplate` documents, JSON text.
    pub templates: Pairs,
    /// The Job name the host will use.
    pub job_name: String,
    /// Labels the host wants on the Job and its pods.
    pub labels: Pairs,
    /// Annotations the host wants on the Job and its pods.
    pub annotations: Pairs,
    /// Limits that apply to the Job.
    pub limits: Limits,
}

/// What `adapt` produces (`adapter-output`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdapterOutput {
    /// The `batch/v1` Job as JSON text.
    pub job: String,
    /// Companion objects as JSON text.
    pub companions: Vec<String>,
}

/// Why an adapter could not produce a Job (`adapter-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterError {
    /// The task cannot be run as given.
    InvalidTask(String),
    /// The configuration (or a template) is wrong.
    InvalidConfig(String),
    /// A bug in the adapter.
    Internal(String),
}

impl fmt::Display for AdapterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdapterError::InvalidTask(m) => write!(f, "invalid task: {m}"),
            AdapterError::InvalidConfig(m) => write!(f, "invalid config: {m}"),
            AdapterError::Internal(m) => write!(f, "internal adapter error: {m}"),
        }
    }
}

impl std::error::Error for AdapterError {}

/// The three calls of the `pod-adapter` world, implemented by every adapter.
///
/// Implement this on a unit struct and export it with [`crate::export_adapter!`].
pub trait Adapter {
    /// Describes the adapter (`info`).
    fn info() -> AdapterInfo;
    /// Checks a configuration (`validate-config`).
    fn validate_config(config: &str) -> Result<(), AdapterError>;
    /// Builds the Job for one task (`adapt`).
    fn adapt(task: &Task, ctx: &Context) -> Result<AdapterOutput, AdapterError>;
}
