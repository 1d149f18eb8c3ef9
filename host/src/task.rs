//! The task a user submits, as taskpod reads it.
//!
//! Two JSON forms are accepted. taskpod's envelope:
//! `{"id", "type", "tenant"?, "groupId"?, "dataSource"?, "payload": {…}, "labels"?: {…},
//! "priority"?}` — the payload is the submitting system's own document. Or a raw Druid task
//! (no `payload` key): `id` and `type` are required, `groupId`, `dataSource` and
//! `context.tags` are read, and the whole document is the payload. [`SubmittedTask::parse`]
//! validates either form with errors naming the field; [`SubmittedTask::to_sdk`] gives the
//! record adapters receive. A Samza job config (`.properties`) is read by
//! [`SubmittedTask::from_properties`] into a task whose payload is the properties as one JSON
//! object (the `samza` adapter's input).

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

/// Task type of a Samza job config read by [`SubmittedTask::from_properties`].
pub const SAMZA_TASK_TYPE: &str = "samza";

/// Property naming where `taskpod render` writes a Samza job's resources (samza_kubernetes'
/// `kubernetes.resources.out`).
pub const SAMZA_RESOURCES_OUT: &str = "kubernetes.resources.out";

impl SubmittedTask {
    /// Reads a Samza job config (`.properties`, Java's format: `key=value`, `key: value` or
    /// `key value`, `#`/`!` comments, `\` line continuations and escapes) as a task: type
    /// [`SAMZA_TASK_TYPE`], id `<job.name>-<job.id>` (`job.id` defaults to 1, as in Samza), and
    /// the properties as a JSON object of strings for the payload.
    pub fn from_properties(text: &str) -> Result<SubmittedTask, TaskError> {
        let props = parse_properties(text)?;
        let name = props
            .get("job.name")
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| field("job.name", "missing; a Samza job config must name its job"))?;
        let job_id = props.get("job.id").map(String::as_str).unwrap_or("1");
        let payload = Value::Object(
            props
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        );
        let task = SubmittedTask {
            id: format!("{name}-{job_id}"),
            kind: SAMZA_TASK_TYPE.to_owned(),
            tenant: DEFAULT_TENANT.to_owned(),
            group_id: None,
            datasource: None,
            payload: payload.to_string(),
            labels: BTreeMap::new(),
            tags: Vec::new(),
            priority: 0,
        };
        task.validate()?;
        Ok(task)
    }

    /// For a Samza task: the file its `kubernetes.resources.out` property names, if any.
    pub fn resources_out(&self) -> Option<String> {
        if self.kind != SAMZA_TASK_TYPE {
            return None;
        }
        let payload: Value = serde_json::from_str(&self.payload).ok()?;
        payload
            .get(SAMZA_RESOURCES_OUT)?
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }
}

/// Parses Java `.properties` text into keys and values (a later key wins, as in Java).
pub fn parse_properties(text: &str) -> Result<BTreeMap<String, String>, TaskError> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines().enumerate();
    while let Some((number, first)) = lines.next() {
        let trimmed = first.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
            continue;
        }
        // Join continuation lines: an odd number of trailing backslashes continues the line.
        let mut logical = String::from(trimmed);
        while ends_with_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_property(&logical);
        let key = unescape(key).map_err(|m| field(&format!("line {}", number + 1), &m))?;
        let value = unescape(value).map_err(|m| field(&format!("line {}", number + 1), &m))?;
        out.insert(key, value);
    }
    Ok(out)
}

fn ends_with_continuation(line: &str) -> bool {
    line.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

/// Splits at the first unescaped `=`, `:` or whitespace (whitespace around the separator is
/// dropped).
fn split_property(line: &str) -> (&str, &str) {
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' => return (&line[..i], line[i + 1..].trim_start()),
            c if c.is_whitespace() => {
                let rest = line[i..].trim_start();
                let rest = rest.strip_prefix(['=', ':']).map_or(rest, str::trim_start);
                return (&line[..i], rest);
            }
            _ => {}
        }
    }
    (line, "")
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .and_then(char::from_u32)
                    .ok_or_else(|| {
                        format!("bad unicode escape \\u{hex}; write \\u followed by 4 hex digits")
                    })?;
                out.push(code);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_follow_javas_format() {
        let text = "# comment\n! also a comment\n  job.name = wiki feed\njob.id:2\nkey\\ with\\ space value here\n\
                    multi=a,\\\n     b\nempty=\nunicode=caf\\u00e9\ntab=a\\tb\nlast=1\nlast=2\n";
        let p = parse_properties(text).unwrap();
        assert_eq!(p["job.name"], "wiki feed");
        assert_eq!(p["job.id"], "2");
        assert_eq!(p["key with space"], "value here");
        assert_eq!(p["multi"], "a,b");
        assert_eq!(p["empty"], "");
        assert_eq!(p["unicode"], "café");
        assert_eq!(p["tab"], "a\tb");
        assert_eq!(p["last"], "2");
        let err = parse_properties("a=\\u12").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn samza_properties_become_a_task() {
        let task = SubmittedTask::from_properties(
            "job.name=wikipedia-feed\nkubernetes.pod.count=3\nkubernetes.resources.out=out.yaml\n",
        )
        .unwrap();
        assert_eq!(task.id, "wikipedia-feed-1");
        assert_eq!(task.kind, SAMZA_TASK_TYPE);
        let payload: Value = serde_json::from_str(&task.payload).unwrap();
        assert_eq!(payload["kubernetes.pod.count"], "3");
        assert_eq!(task.resources_out().as_deref(), Some("out.yaml"));
        let err = SubmittedTask::from_properties("kubernetes.pod.count=3\n").unwrap_err();
        assert!(err.to_string().contains("job.name"), "{err}");
        let druid = SubmittedTask::parse(r#"{"type":"index","id":"t"}"#).unwrap();
        assert_eq!(druid.resources_out(), None);
    }

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
