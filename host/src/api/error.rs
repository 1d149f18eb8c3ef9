//! The API's one error type and its HTTP mapping.
//!
//! Every handler returns `Result<_, ApiError>`; [`ApiError`]'s `IntoResponse` is the only place
//! where errors become status codes, so every 4xx carries the same JSON body:
//! `{"error": {"status": 400, "code": "invalid", "field": "id", "message": "…"}}` — the field
//! (when one is at fault) and a message saying what is wrong and how to fix it.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::render::RenderError;
use crate::runner::RunnerError;
use crate::store::StoreError;
use crate::task::TaskError;

/// An error answered by the API, with the HTTP status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: `field` names what is wrong (400).
    #[error("field `{field}`: {message}")]
    Invalid {
        /// The field path (`id`, `labels.team`, `capacity`, query parameter name …).
        field: String,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// The request conflicts with an existing task or its state (409).
    #[error("{message}")]
    Conflict {
        /// The task id, when one is concerned.
        field: Option<String>,
        /// What conflicts.
        message: String,
    },
    /// The request carries no known bearer token (401). The message never repeats the token.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller is authenticated but may not do this (403).
    #[error("{message}")]
    Forbidden {
        /// The field at fault, when there is one.
        field: Option<String>,
        /// What is not allowed and who may do it.
        message: String,
    },
    /// A quota refuses the request for now (429).
    #[error("{0}")]
    TooManyRequests(String),
    /// The task (or route) does not exist (404).
    #[error("{message}")]
    NotFound {
        /// What was not found.
        message: String,
    },
    /// The service cannot answer now: starting, shutting down, cluster unreachable (503).
    #[error("{0}")]
    Unavailable(String),
    /// Anything that is taskpod's fault (500). The message is logged and returned; it never
    /// carries secrets (store and runner errors name files, tasks and fields only).
    #[error("{0}")]
    Internal(String),
}

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What [`ErrorBody`] says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// The HTTP status code, repeated for clients that only keep the body.
    pub status: u16,
    /// A stable machine-readable code: `invalid`, `unauthorized`, `forbidden`, `conflict`,
    /// `not-found`, `quota-exceeded`, `unavailable`, `internal`.
    pub code: String,
    /// The field at fault, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ApiError {
    /// A 400 naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A 403 for an action only the admin may take.
    pub fn admin_only(what: &str) -> ApiError {
        ApiError::Forbidden {
            field: None,
            message: format!("{what} is reserved to the admin; use an admin token"),
        }
    }

    /// A 404 for task `id`.
    pub fn task_not_found(id: &str) -> ApiError {
        ApiError::NotFound {
            message: format!("task `{id}` not found; list tasks with GET /v1/tasks"),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        let (code, field, message) = match self {
            ApiError::Invalid { field, message } => ("invalid", Some(field.clone()), message),
            ApiError::Unauthorized(message) => ("unauthorized", None, message),
            ApiError::Forbidden { field, message } => ("forbidden", field.clone(), message),
            ApiError::TooManyRequests(message) => ("quota-exceeded", None, message),
            ApiError::Conflict { field, message } => ("conflict", field.clone(), message),
            ApiError::NotFound { message } => ("not-found", None, message),
            ApiError::Unavailable(message) => ("unavailable", None, message),
            ApiError::Internal(message) => ("internal", None, message),
        };
        ErrorBody {
            error: ErrorDetail {
                status: self.status().as_u16(),
                code: code.to_owned(),
                field,
                message: message.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "API request failed");
        }
        if status == StatusCode::UNAUTHORIZED {
            return (
                status,
                [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                Json(self.body()),
            )
                .into_response();
        }
        (status, Json(self.body())).into_response()
    }
}

impl From<TaskError> for ApiError {
    fn from(err: TaskError) -> ApiError {
        match err {
            TaskError::NotJson(message) => {
                ApiError::invalid("body", format!("the task is not a JSON object: {message}"))
            }
            TaskError::Field { field, message } => ApiError::Invalid { field, message },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::Invalid(v) => ApiError::Invalid {
                field: v.field,
                message: v.problem,
            },
            StoreError::Conflict { .. } => ApiError::Conflict {
                field: Some("id".to_owned()),
                message: err.to_string(),
            },
            StoreError::NotFound { id } => ApiError::task_not_found(&id),
            StoreError::StateMismatch { .. }
            | StoreError::IllegalTransition { .. }
            | StoreError::BadTransition { .. } => ApiError::Conflict {
                field: None,
                message: err.to_string(),
            },
            StoreError::Closed => ApiError::Unavailable(err.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<RunnerError> for ApiError {
    fn from(err: RunnerError) -> ApiError {
        match err {
            RunnerError::Invalid { field, problem } => ApiError::Invalid {
                field,
                message: problem,
            },
            // A conflict is about the task named by `id` (a resubmission that differs, or a
            // state that forbids the request).
            RunnerError::Conflict { .. } => ApiError::Conflict {
                field: Some("id".to_owned()),
                message: err.to_string(),
            },
            RunnerError::NotFound { id } => ApiError::task_not_found(&id),
            RunnerError::Unavailable(_) => ApiError::Unavailable(err.to_string()),
            RunnerError::Store(store) => ApiError::from(store),
            RunnerError::Internal(_) => ApiError::Internal(err.to_string()),
            RunnerError::QuotaExceeded(message) => ApiError::TooManyRequests(message),
            RunnerError::Draining(message) => ApiError::Conflict {
                field: Some("tenant".to_owned()),
                message,
            },
        }
    }
}

impl From<RenderError> for ApiError {
    fn from(err: RenderError) -> ApiError {
        match err {
            RenderError::NoRoute { .. } => ApiError::invalid("type", err.to_string()),
            RenderError::TenantDisabled { .. } | RenderError::Quarantined { .. } => {
                ApiError::Unavailable(err.to_string())
            }
            RenderError::UnknownAdapter { name, .. } => ApiError::NotFound {
                message: format!("no adapter named `{name}`; list them with GET /v1/adapters"),
            },
            RenderError::Adapter(crate::adapters::Error::InvalidTask { .. }) => {
                ApiError::invalid("payload", err.to_string())
            }
            RenderError::Adapter(crate::adapters::Error::InvalidOutput(_)) => {
                ApiError::invalid("job", format!("the adapter's Job was refused: {err}"))
            }
            // The adapter failed on this task (deadline, memory, trap, panic, oversized output,
            // its own internal error): the task cannot be rendered, which is not a server fault.
            RenderError::Adapter(
                crate::adapters::Error::Timeout { .. }
                | crate::adapters::Error::OutOfMemory { .. }
                | crate::adapters::Error::Trap { .. }
                | crate::adapters::Error::Panic { .. }
                | crate::adapters::Error::OutputTooLarge { .. }
                | crate::adapters::Error::Internal { .. },
            ) => ApiError::invalid("adapter", format!("the adapter failed on this task: {err}")),
            RenderError::Policy(_) => ApiError::invalid(
                "job",
                format!("the adapter's Job was refused by the policy: {err}"),
            ),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
