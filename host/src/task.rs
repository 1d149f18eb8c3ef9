//! The task a user submits, as taskpod reads it.
//!
//! Two JSON forms are accepted. taskpod's envelope:
//! `{"id", "type", "tenant"?, "groupId"?, "dataSource"?, "payload": {…}, "labels"?: {…},
//! "priority"?}` — the payload is the submitting system's own document. Or a raw Druid task
//! (no `payload` key): `id` and `type` are required, `groupId`, `dataSource` and
//! `context.tags` are read, and the whole document is the payload. [`SubmittedTask::parse`]
//! validates either form with errors naming the field; [`SubmittedTask::to_sdk`] gives the
//! record adapters receive.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use taskpod_adapter_sdk as sdk;

/// Tenant of tasks that do not name one.
pub const DEFAULT_TENANT: &str = "default";

/// Longest task id accepted (Druid ids are far shorter; the full id travels in an annotation).
pub const MAX_TASK_ID_LEN: usize = 1024;

/// Why a task document cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// Not JSON, or not a JSON object.
    #[error("the task is not a JSON object: {0}")]
    NotJson(String),
    /// A field is missing or has the wrong type or value.
    #[error("task field `{field}`: {message}")]
    Field {
        /// The field path (`id`, `labels.team`, `context.tags`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// A submitted task, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmittedTask {
    /// The task id.
    pub id: String,
    /// The task type.
    pub kind: String,
    /// The tenant (default [`DEFAULT_TENANT`]).
    pub tenant: String,
    /// Druid's `groupId`.
    pub group_id: Option<String>,
    /// Druid's `dataSource`.
    pub datasource: Option<String>,
    /// The payload document, JSON text.
    pub payload: String,
    /// Submitter labels.
    pub labels: BTreeMap<String, String>,
    /// Context tags (strings as is, other values as JSON text).
    pub tags: Vec<(String, String)>,
    /// Scheduling priority (higher first); default 0.
    pub priority: i32,
}

impl SubmittedTask {
    /// Parses and validates a task document (envelope or raw Druid task).
    pub fn parse(text: &str) -> Result<SubmittedTask, TaskError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| TaskError::NotJson(e.to_string()))?;
        let Value::Object(doc) = value else {
            return Err(TaskError::NotJson(format!("found {}", kind_of(&value))));
        };
        let task = match doc.get("payload") {
            Some(payload) => parse_envelope(&doc, payload)?,
            None => parse_druid(&doc, text.trim())?,
        };
        task.validate()?;
        Ok(task)
    }

    fn validate(&self) -> Result<(), TaskError> {
        if self.id.trim().is_empty() {
            return Err(field("id", "must not be empty"));
        }
        if self.id.len() > MAX_TASK_ID_LEN {
            return Err(field(
                "id",
                &format!(
                    "{} characters, over the {MAX_TASK_ID_LEN} allowed",
                    self.id.len()
                ),
            ));
        }
        if self.id.chars().any(char::is_control) {
            return Err(field("id", "must not contain control characters"));
        }
        if self.kind.trim().is_empty() {
            return Err(field("type", "must not be empty"));
        }
        if self.tenant.trim().is_empty() {
            return Err(field("tenant", "must not be empty"));
        }
        Ok(())
    }

    /// The record adapters receive.
    pub fn to_sdk(&self) -> sdk::Task {
        sdk::Task {
            id: self.id.clone(),
            kind: self.kind.clone(),
            tenant: self.tenant.clone(),
            group_id: self.group_id.clone(),
            datasource: self.datasource.clone(),
            payload: self.payload.clone(),
            labels: self
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tags: self.tags.clone(),
        }
    }
}

fn field(name: &str, message: &str) -> TaskError {
    TaskError::Field {
        field: name.to_owned(),
        message: message.to_owned(),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn required_string(doc: &Map<String, Value>, name: &str) -> Result<String, TaskError> {
    match doc.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(field(
            name,
            &format!("must be a string, found {}", kind_of(other)),
        )),
        None => Err(field(name, "is required")),
    }
}

fn optional_string(doc: &Map<String, Value>, name: &str) -> Result<Option<String>, TaskError> {
    match doc.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(field(
            name,
            &format!("must be a string, found {}", kind_of(other)),
        )),
    }
}

fn tags_of(doc: &Map<String, Value>) -> Result<Vec<(String, String)>, TaskError> {
    let Some(context) = doc.get("context") else {
        return Ok(Vec::new());
    };
    let tags = match context {
        Value::Object(c) => c.get("tags"),
        Value::Null => None,
        other => {
            return Err(field(
                "context",
                &format!("must be an object, found {}", kind_of(other)),
            ));
        }
    };
    match tags {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(tags)) => Ok(tags
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect()),
        Some(other) => Err(field(
            "context.tags",
            &format!("must be an object, found {}", kind_of(other)),
        )),
    }
}

fn parse_envelope(doc: &Map<String, Value>, payload: &Value) -> Result<SubmittedTask, TaskError> {
    const KNOWN: &[&str] = &[
        "id",
        "type",
        "tenant",
        "groupId",
        "dataSource",
        "payload",
        "labels",
        "priority",
    ];
    if let Some(unknown) = doc.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(field(
            unknown,
            &format!(
                "unknown field in the task envelope (known: {}); put the system's own fields \
                 inside `payload`",
                KNOWN.join(", ")
            ),
        ));
    }
    if !payload.is_object() {
        return Err(field(
            "payload",
            &format!("must be a JSON object, found {}", kind_of(payload)),
        ));
    }
    let labels = match doc.get("labels") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(map)) => {
            let mut labels = BTreeMap::new();
            for (k, v) in map {
                let Value::String(s) = v else {
                    return Err(field(
                        &format!("labels.{k}"),
                        &format!("must be a string, found {}", kind_of(v)),
                    ));
                };
                labels.insert(k.clone(), s.clone());
            }
            labels
        }
        Some(other) => {
            return Err(field(
                "labels",
                &format!("must be an object of strings, found {}", kind_of(other)),
            ));
        }
    };
    let priority = match doc.get("priority") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| field("priority", "must be a 32-bit integer"))?,
        Some(other) => {
            return Err(field(
                "priority",
                &format!("must be an integer, found {}", kind_of(other)),
            ));
        }
    };
    let payload_map = payload.as_object().cloned().unwrap_or_default();
    Ok(SubmittedTask {
        id: required_string(doc, "id")?,
        kind: required_string(doc, "type")?,
        tenant: optional_string(doc, "tenant")?.unwrap_or_else(|| DEFAULT_TENANT.to_owned()),
        group_id: optional_string(doc, "groupId")?,
        datasource: optional_string(doc, "dataSource")?,
        payload: payload.to_string(),
        labels,
        tags: tags_of(&payload_map)?,
        priority,
    })
}

fn parse_druid(doc: &Map<String, Value>, text: &str) -> Result<SubmittedTask, TaskError> {
    Ok(SubmittedTask {
        id: required_string(doc, "id")?,
        kind: required_string(doc, "type")?,
        tenant: DEFAULT_TENANT.to_owned(),
        group_id: optional_string(doc, "groupId")?,
        datasource: optional_string(doc, "dataSource")?,
        payload: text.to_owned(),
        labels: BTreeMap::new(),
        tags: tags_of(doc)?,
        priority: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_druid_task_reads_ids_and_tags() {
        let text = r#"{"type":"index_parallel","id":"t1","groupId":"g","dataSource":"wiki",
                      "context":{"tags":{"team":"a","priority":50}}}"#;
        let task = SubmittedTask::parse(text).unwrap();
        assert_eq!(task.id, "t1");
        assert_eq!(task.kind, "index_parallel");
        assert_eq!(task.group_id.as_deref(), Some("g"));
        assert_eq!(task.datasource.as_deref(), Some("wiki"));
        assert_eq!(task.tenant, DEFAULT_TENANT);
        assert_eq!(task.payload, text);
        assert_eq!(
            task.tags,
            vec![
                ("priority".into(), "50".into()),
                ("team".into(), "a".into())
            ]
        );
    }

    #[test]
    fn envelope_reads_its_fields() {
        let text = r#"{"id":"e1","type":"compact","tenant":"acme","labels":{"x":"y"},
                      "priority":5,"payload":{"a":1}}"#;
        let task = SubmittedTask::parse(text).unwrap();
        assert_eq!(task.tenant, "acme");
        assert_eq!(task.payload, r#"{"a":1}"#);
        assert_eq!(task.labels["x"], "y");
        assert_eq!(task.priority, 5);
        assert_eq!(task.to_sdk().labels, vec![("x".into(), "y".into())]);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"type":"x"}"#, "id"),
            (r#"{"id":"a"}"#, "type"),
            (r#"{"id":7,"type":"x"}"#, "id"),
            (r#"{"id":"","type":"x"}"#, "id"),
            (r#"{"id":"a","type":"x","payload":[]}"#, "payload"),
            (
                r#"{"id":"a","type":"x","payload":{},"labels":{"k":1}}"#,
                "labels.k",
            ),
            (r#"{"id":"a","type":"x","payload":{},"extra":1}"#, "extra"),
            (
                r#"{"id":"a","type":"x","context":{"tags":[1]}}"#,
                "context.tags",
            ),
            (
                r#"{"id":"a","type":"x","payload":{},"priority":"high"}"#,
                "priority",
            ),
        ];
        for (text, expected) in cases {
            match SubmittedTask::parse(text) {
                Err(TaskError::Field { field, .. }) => assert_eq!(field, expected, "{text}"),
                other => panic!("{text}: expected an error on `{expected}`, got {other:?}"),
            }
        }
        assert!(matches!(
            SubmittedTask::parse("[1]"),
            Err(TaskError::NotJson(_))
        ));
    }
}
