//! Validation of tenant-facing input and the digests that make resubmission idempotent.
//!
//! Every check names the field as it appears in the submit JSON and says what is accepted,
//! so the API can return the message as is.

use sha2::{Digest, Sha256};

use super::error::ValidationError;
use super::model::{NewTask, Pairs};

/// Size limits on submitted tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputLimits {
    /// Largest payload, in bytes.
    pub max_payload_bytes: usize,
    /// Most labels per task.
    pub max_labels: usize,
    /// Most tags per task.
    pub max_tags: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_payload_bytes: 4 * 1024 * 1024,
            max_labels: 64,
            max_tags: 128,
        }
    }
}

/// Longest task id.
pub const MAX_ID_LEN: usize = 1024;
/// Longest task type.
pub const MAX_TYPE_LEN: usize = 128;
/// Longest tenant name (a Kubernetes label value).
pub const MAX_TENANT_LEN: usize = 63;
const MAX_NAME_LEN: usize = 255;
const MAX_KEY_LEN: usize = 253;
const MAX_LABEL_VALUE_LEN: usize = 1024;
const MAX_TAG_VALUE_LEN: usize = 64 * 1024;

/// A validated task with its digests, ready to store.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    pub task: NewTask,
    pub payload_digest: String,
    pub submission_digest: String,
}

/// Checks every field of `task` and computes its digests.
pub(crate) fn check(task: NewTask, limits: &InputLimits) -> Result<Checked, ValidationError> {
    check_id(&task.id)?;
    check_word(
        "type",
        &task.kind,
        MAX_TYPE_LEN,
        "letters, digits, '_', '-' and '.'",
    )?;
    check_tenant(&task.tenant)?;
    check_optional_name("groupId", task.group_id.as_deref())?;
    check_optional_name("dataSource", task.datasource.as_deref())?;
    let canonical = check_payload(&task.payload, limits)?;
    check_pairs(
        "labels",
        &task.labels,
        limits.max_labels,
        MAX_LABEL_VALUE_LEN,
    )?;
    check_pairs("tags", &task.tags, limits.max_tags, MAX_TAG_VALUE_LEN)?;

    let payload_digest = hex::encode(Sha256::digest(canonical.as_bytes()));
    let submission_digest = submission_digest(&task, &canonical);
    Ok(Checked {
        task,
        payload_digest,
        submission_digest,
    })
}

/// Druid's rules for ids (`IdUtils.validateId`): not empty, no '/', not starting with '.', no
/// whitespace other than a plain space, no control characters; plus a length limit.
fn check_id(id: &str) -> Result<(), ValidationError> {
    if id.is_empty() {
        return Err(ValidationError::new("id", "must not be empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(ValidationError::new(
            "id",
            format!(
                "is {} bytes long; at most {MAX_ID_LEN} are allowed",
                id.len()
            ),
        ));
    }
    if id.starts_with('.') {
        return Err(ValidationError::new("id", "must not start with '.'"));
    }
    if id.trim() != id {
        return Err(ValidationError::new(
            "id",
            "must not start or end with whitespace",
        ));
    }
    if let Some((pos, c)) = id
        .char_indices()
        .find(|(_, c)| *c == '/' || c.is_control() || (c.is_whitespace() && *c != ' '))
    {
        return Err(ValidationError::new(
            "id",
            format!(
                "character {c:?} at byte {pos} is not allowed (no '/', control characters or \
                 whitespace other than a space, as in Druid)"
            ),
        ));
    }
    Ok(())
}

fn check_word(field: &str, value: &str, max: usize, allowed: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(ValidationError::new(
            field,
            format!("is {} bytes long; at most {max} are allowed", value.len()),
        ));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(ValidationError::new(
            field,
            "must start with an ASCII letter or digit",
        ));
    }
    if let Some((pos, c)) = value
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || "_-.".contains(*c)))
    {
        return Err(ValidationError::new(
            field,
            format!("character {c:?} at byte {pos} is not allowed; use {allowed}"),
        ));
    }
    Ok(())
}

fn check_tenant(tenant: &str) -> Result<(), ValidationError> {
    check_word(
        "tenant",
        tenant,
        MAX_TENANT_LEN,
        "letters, digits, '_', '-' and '.' (a Kubernetes label value)",
    )?;
    if !tenant.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(ValidationError::new(
            "tenant",
            "must end with an ASCII letter or digit (a Kubernetes label value)",
        ));
    }
    Ok(())
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.len() > max {
        return Err(ValidationError::new(
            field,
            format!("is {} bytes long; at most {max} are allowed", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ValidationError::new(field, "contains a control character"));
    }
    Ok(())
}

fn check_optional_name(field: &str, value: Option<&str>) -> Result<(), ValidationError> {
    match value {
        None => Ok(()),
        Some("") => Err(ValidationError::new(
            field,
            "must not be empty; leave it out instead",
        )),
        Some(value) => check_text(field, value, MAX_NAME_LEN),
    }
}

/// Returns the payload's compact JSON form (the digest input).
fn check_payload(payload: &str, limits: &InputLimits) -> Result<String, ValidationError> {
    if payload.len() > limits.max_payload_bytes {
        return Err(ValidationError::new(
            "payload",
            format!(
                "is {} bytes; at most {} are allowed",
                payload.len(),
                limits.max_payload_bytes
            ),
        ));
    }
    let value: serde_json::Value = serde_json::from_str(payload).map_err(|e| {
        ValidationError::new(
            "payload",
            format!("is not valid JSON ({e}); send the task document as a JSON object"),
        )
    })?;
    if !value.is_object() {
        return Err(ValidationError::new(
            "payload",
            "must be a JSON object (the task document)",
        ));
    }
    Ok(value.to_string())
}

fn check_pairs(
    field: &str,
    pairs: &Pairs,
    max_entries: usize,
    max_value: usize,
) -> Result<(), ValidationError> {
    if pairs.len() > max_entries {
        return Err(ValidationError::new(
            field,
            format!(
                "has {} entries; at most {max_entries} are allowed",
                pairs.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (key, value) in pairs {
        if key.is_empty() {
            return Err(ValidationError::new(field, "has an empty key"));
        }
        check_text(&format!("{field}.{key}"), key, MAX_KEY_LEN)?;
        check_text(&format!("{field}.{key}"), value, max_value)?;
        if !seen.insert(key.as_str()) {
            return Err(ValidationError::new(
                format!("{field}.{key}"),
                "appears more than once",
            ));
        }
    }
    Ok(())
}

/// sha256 over a length-prefixed encoding of every tenant-facing field.
fn submission_digest(task: &NewTask, canonical_payload: &str) -> String {
    let mut hasher = Sha256::new();
    let mut put = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    put(b"taskpod-submission-v1");
    put(task.tenant.as_bytes());
    put(task.kind.as_bytes());
    for optional in [&task.group_id, &task.datasource] {
        match optional {
            None => put(b"\0none"),
            Some(v) => put(format!("some:{v}").as_bytes()),
        }
    }
    put(canonical_payload.as_bytes());
    for pairs in [&task.labels, &task.tags] {
        put(&(pairs.len() as u64).to_be_bytes());
        for (k, v) in pairs {
            put(k.as_bytes());
            put(v.as_bytes());
        }
    }
    put(&task.priority.to_be_bytes());
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_task() -> NewTask {
        NewTask::new(
            "index_parallel_wiki_2024-01-01T00:00:00.000Z",
            "index_parallel",
            "team-a",
            r#"{"type":"index_parallel"}"#,
        )
    }

    #[test]
    fn accepts_druid_style_ids() {
        for id in [
            "index_parallel_wiki_2024-01-01T00:00:00.000Z",
            "compact_my datasource_abcdefgh_2024-01-01T00:00:00.000Z",
            "index_kafka_wikipédia_0a1b2c3d",
            "query-7f3c+shard:1",
        ] {
            let task = NewTask {
                id: id.to_string(),
                ..ok_task()
            };
            assert!(check(task, &InputLimits::default()).is_ok(), "{id}");
        }
    }

    #[test]
    fn names_the_failing_field() {
        let limits = InputLimits::default();
        let cases: Vec<(NewTask, &str)> = vec![
            (
                NewTask {
                    id: String::new(),
                    ..ok_task()
                },
                "id",
            ),
            (
                NewTask {
                    id: "a/b".into(),
                    ..ok_task()
                },
                "id",
            ),
            (
                NewTask {
                    id: "tab\there".into(),
                    ..ok_task()
                },
                "id",
            ),
            (
                NewTask {
                    id: " padded".into(),
                    ..ok_task()
                },
                "id",
            ),
            (
                NewTask {
                    id: "x".repeat(1025),
                    ..ok_task()
                },
                "id",
            ),
            (
                NewTask {
                    id: ".hidden".into(),
                    ..ok_task()
                },
                "id",
            ),
            (
                NewTask {
                    kind: "bad type".into(),
                    ..ok_task()
                },
                "type",
            ),
            (
                NewTask {
                    tenant: "team-".into(),
                    ..ok_task()
                },
                "tenant",
            ),
            (
                NewTask {
                    tenant: "t".repeat(64),
                    ..ok_task()
                },
                "tenant",
            ),
            (
                NewTask {
                    payload: "{not json".into(),
                    ..ok_task()
                },
                "payload",
            ),
            (
                NewTask {
                    payload: "[1,2]".into(),
                    ..ok_task()
                },
                "payload",
            ),
            (
                NewTask {
                    group_id: Some(String::new()),
                    ..ok_task()
                },
                "groupId",
            ),
            (
                NewTask {
                    datasource: Some("a\nb".into()),
                    ..ok_task()
                },
                "dataSource",
            ),
            (
                ok_task().with_label("team", "a").with_label("team", "b"),
                "labels.team",
            ),
            (ok_task().with_tag("", "a"), "tags"),
        ];
        for (task, field) in cases {
            let err = check(task.clone(), &limits).expect_err(&format!("{task:?} must fail"));
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn payload_digest_ignores_whitespace() {
        let limits = InputLimits::default();
        let a = check(
            NewTask {
                payload: r#"{"a": 1, "b": [1, 2]}"#.into(),
                ..ok_task()
            },
            &limits,
        )
        .unwrap();
        let b = check(
            NewTask {
                payload: "{\n \"a\":1,\"b\":[1,2]}".into(),
                ..ok_task()
            },
            &limits,
        )
        .unwrap();
        assert_eq!(a.payload_digest, b.payload_digest);
        assert_eq!(a.submission_digest, b.submission_digest);
        let c = check(ok_task().with_priority(5), &limits).unwrap();
        let d = check(ok_task(), &limits).unwrap();
        assert_ne!(c.submission_digest, d.submission_digest);
        assert_eq!(c.payload_digest, d.payload_digest);
    }

    #[test]
    fn payload_size_is_bounded() {
        let limits = InputLimits {
            max_payload_bytes: 16,
            ..InputLimits::default()
        };
        let err = check(
            NewTask {
                payload: r#"{"a":"0123456789abcdef"}"#.into(),
                ..ok_task()
            },
            &limits,
        )
        .unwrap_err();
        assert_eq!(err.field, "payload");
        assert!(err.problem.contains("at most 16"), "{err}");
    }
}
