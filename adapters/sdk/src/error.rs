//! Error helpers: build [`AdapterError`]s that say what is wrong and where.
//!
//! Every adapter error crosses the component boundary as text, so the text must carry the field
//! path and the fix. The free functions build the three variants; [`ErrorContext`] turns any
//! `Result` whose error is displayable (a `serde_json::Error`, a [`crate::names::NameError`] …)
//! into an [`AdapterError`] that names the field it came from.

use std::fmt::Display;

use crate::types::AdapterError;

/// An [`AdapterError::InvalidTask`]: the task cannot be run as given.
pub fn invalid_task(msg: impl Into<String>) -> AdapterError {
    AdapterError::InvalidTask(msg.into())
}

/// An [`AdapterError::InvalidConfig`]: the configuration or a template is wrong.
pub fn invalid_config(msg: impl Into<String>) -> AdapterError {
    AdapterError::InvalidConfig(msg.into())
}

/// An [`AdapterError::Internal`]: a bug in the adapter.
pub fn internal(msg: impl Into<String>) -> AdapterError {
    AdapterError::Internal(msg.into())
}

/// Converts any displayable error into an [`AdapterError`] naming the field it concerns.
///
/// ```
/// use taskpod_adapter_sdk::error::ErrorContext;
/// let err = serde_json::from_str::<u32>("\"x\"").invalid_config_at("config.replicas").unwrap_err();
/// assert!(err.to_string().starts_with("invalid config: config.replicas: invalid type"));
/// ```
pub trait ErrorContext<T> {
    /// Maps the error to [`AdapterError::InvalidTask`] as `"{path}: {error}"`.
    fn invalid_task_at(self, path: &str) -> Result<T, AdapterError>;
    /// Maps the error to [`AdapterError::InvalidConfig`] as `"{path}: {error}"`.
    fn invalid_config_at(self, path: &str) -> Result<T, AdapterError>;
    /// Maps the error to [`AdapterError::Internal`] as `"{path}: {error}"`.
    fn internal_at(self, path: &str) -> Result<T, AdapterError>;
}

impl<T, E: Display> ErrorContext<T> for Result<T, E> {
    fn invalid_task_at(self, path: &str) -> Result<T, AdapterError> {
        self.map_err(|e| AdapterError::InvalidTask(format!("{path}: {e}")))
    }

    fn invalid_config_at(self, path: &str) -> Result<T, AdapterError> {
        self.map_err(|e| AdapterError::InvalidConfig(format!("{path}: {e}")))
    }

    fn internal_at(self, path: &str) -> Result<T, AdapterError> {
        self.map_err(|e| AdapterError::Internal(format!("{path}: {e}")))
    }
}

/// Parses a configuration object, rejecting it with an [`AdapterError::InvalidConfig`] that
/// names the offending key (use `#[serde(deny_unknown_fields)]` on `C` to reject unknown keys).
/// An empty or all-blank string is read as `{}`.
pub fn parse_config<C: serde::de::DeserializeOwned>(config: &str) -> Result<C, AdapterError> {
    let text = if config.trim().is_empty() {
        "{}"
    } else {
        config
    };
    serde_json::from_str(text).invalid_config_at("config")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Conf {
        #[serde(default)]
        image: Option<String>,
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = parse_config::<Conf>(r#"{"imag": "x"}"#).unwrap_err();
        assert!(matches!(err, AdapterError::InvalidConfig(_)));
        let msg = err.to_string();
        assert!(
            msg.contains("unknown field `imag`") && msg.contains("image"),
            "{msg}"
        );
        assert!(parse_config::<Conf>("").unwrap().image.is_none());
        let ok: Conf = parse_config(r#"{"image": "x"}"#).unwrap();
        assert_eq!(ok.image.as_deref(), Some("x"));
        assert!(parse_config::<Conf>("42").is_err());
    }

    #[test]
    fn helpers_build_each_variant() {
        assert_eq!(invalid_task("a"), AdapterError::InvalidTask("a".into()));
        assert_eq!(invalid_config("b"), AdapterError::InvalidConfig("b".into()));
        assert_eq!(internal("c"), AdapterError::Internal("c".into()));
        let e: Result<(), _> = Err("boom");
        assert_eq!(
            e.invalid_task_at("payload.spec").unwrap_err(),
            AdapterError::InvalidTask("payload.spec: boom".into())
        );
    }
}
