//! The store's typed errors: what went wrong, on which task or field, and what to do about it.

use std::path::PathBuf;

use super::model::TaskState;

/// A tenant-facing field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {problem}")]
pub struct ValidationError {
    /// The field, as named in the submit JSON (`id`, `type`, `tenant`, `labels.team` …).
    pub field: String,
    /// What is wrong and what is accepted.
    pub problem: String,
}

impl ValidationError {
    /// An error on `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> ValidationError {
        ValidationError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Everything the store can refuse or fail at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The submitted task is malformed.
    #[error("invalid task: {0}")]
    Invalid(#[from] ValidationError),

    /// The id exists with a different submission.
    #[error(
        "task `{id}` already exists with a different submission (differs in: {}); resubmit the \
         identical task to get the existing one, or use a new id",
        fields.join(", ")
    )]
    Conflict {
        /// The task id.
        id: String,
        /// The fields that differ (submit JSON names).
        fields: Vec<&'static str>,
    },

    /// No task has this id.
    #[error("task `{id}` not found")]
    NotFound {
        /// The task id.
        id: String,
    },

    /// Compare-and-set failed: the task is not in the expected state.
    #[error(
        "task `{id}` is {actual}, not {expected}; it changed concurrently — reload it and decide again"
    )]
    StateMismatch {
        /// The task id.
        id: String,
        /// The state the caller expected.
        expected: TaskState,
        /// The state the task is in.
        actual: TaskState,
    },

    /// The transition is not in the lifecycle table.
    #[error(
        "task `{id}`: {from} → {to} is not a legal transition (see TaskState::can_transition_to)"
    )]
    IllegalTransition {
        /// The task id.
        id: String,
        /// Current state.
        from: TaskState,
        /// Requested state.
        to: TaskState,
    },

    /// A transition lacks data it needs, or carries a reason that does not fit it.
    #[error("task `{id}`: transition to {to} {problem}")]
    BadTransition {
        /// The task id.
        id: String,
        /// Requested state.
        to: TaskState,
        /// What is missing or wrong.
        problem: String,
    },

    /// The database file cannot be opened or prepared.
    #[error("cannot open the task store at {path}: {problem}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        problem: String,
    },

    /// The PostgreSQL store cannot be reached or refused the connection.
    #[error(
        "cannot connect to the PostgreSQL task store at {target}: {problem}; check `storeBackend.url` \
         (or TASKPOD_STORE_URL) and that the server accepts connections from this host"
    )]
    Connect {
        /// `postgres://host:port/database` (never the user or password).
        target: String,
        /// What the client or server said.
        problem: String,
    },

    /// The file was written by a newer taskpod.
    #[error(
        "the task store at {path} has schema version {found}, newer than this taskpod supports \
         ({supported}); run a taskpod at least as new as the one that wrote it"
    )]
    SchemaTooNew {
        /// The file.
        path: PathBuf,
        /// Version found in the file.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },

    /// A schema migration failed (nothing of it was applied).
    #[error("migrating the task store at {path} to schema version {version} failed: {detail}")]
    Migration {
        /// The file.
        path: PathBuf,
        /// The version being applied.
        version: u32,
        /// SQLite's message.
        detail: String,
    },

    /// A database operation failed.
    #[error("task store: {context} failed: {detail}")]
    Database {
        /// What the store was doing.
        context: String,
        /// SQLite's message.
        detail: String,
    },

    /// The file is damaged.
    #[error("the task store failed its integrity check: {detail}; restore it from a backup")]
    Corrupt {
        /// What SQLite reported.
        detail: String,
    },

    /// The store's writer has stopped (the store was closed or its thread failed).
    #[error("the task store is closed")]
    Closed,
}

impl StoreError {
    /// Wraps a SQLite error with what the store was doing.
    pub(crate) fn db(context: impl Into<String>, err: rusqlite::Error) -> StoreError {
        StoreError::Database {
            context: context.into(),
            detail: err.to_string(),
        }
    }
}

/// Result with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
