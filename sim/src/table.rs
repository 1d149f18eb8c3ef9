//! The `meta.k8s.io/v1` `Table` rendering that `kubectl get` asks for (`Accept:
//! application/json;as=Table;v=v1;g=meta.k8s.io`), with the columns of kube-apiserver's printers
//! (pkg/printers/internalversion/printers.go) for pods, jobs, namespaces, events, services,
//! config maps, nodes, deployments and leases.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::resources::ResourceType;

/// Whether an `Accept` header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

/// Whether an `Accept` header asks for `PartialObjectMetadata` (kube's metadata-only get, list
/// and watch).
pub fn wants_metadata(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=PartialObjectMetadata"))
}

/// The `PartialObjectMetadata` of an object.
pub fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

fn col(name: &str, ty: &str, priority: u8) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
}

/// Column definitions for a resource.
pub fn columns(rt: &ResourceType) -> Value {
    let cols: Vec<Value> = match (rt.group, rt.plural) {
        ("", "pods") => vec![
            col("Name", "string", 0),
            col("Ready", "string", 0),
            col("Status", "string", 0),
            col("Restarts", "string", 0),
            col("Age", "string", 0),
            col("IP", "string", 1),
            col("Node", "string", 1),
        ],
        ("batch", "jobs") => vec![
            col("Name", "string", 0),
            col("Status", "string", 0),
            col("Completions", "string", 0),
            col("Duration", "string", 0),
            col("Age", "string", 0),
        ],
        ("", "namespaces") | ("", "nodes") => vec![
            col("Name", "string", 0),
            col("Status", "string", 0),
            col("Age", "string", 0),
        ],
        ("", "events") | ("events.k8s.io", "events") => vec![
            col("Last Seen", "string", 0),
            col("Type", "string", 0),
            col("Reason", "string", 0),
            col("Object", "string", 0),
            col("Message", "string", 0),
        ],
        ("", "services") => vec![
            col("Name", "string", 0),
            col("Type", "string", 0),
            col("Cluster-IP", "string", 0),
            col("Port(s)", "string", 0),
            col("Age", "string", 0),
        ],
        ("", "configmaps") => vec![
            col("Name", "string", 0),
            col("Data", "integer", 0),
            col("Age", "string", 0),
        ],
        ("coordination.k8s.io", "leases") => vec![
            col("Name", "string", 0),
            col("Holder", "string", 0),
            col("Age", "string", 0),
        ],
        _ => vec![col("Name", "string", 0), col("Age", "string", 0)],
    };
    Value::Array(cols)
}

/// Kubernetes' `HumanDuration` (k8s.io/apimachinery/pkg/util/duration).
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".to_owned();
    }
    let s = secs.max(0);
    let (m, h) = (s / 60, s / 3600);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{}d", h / 24)
        } else {
            format!("{}d{}h", h / 24, h % 24)
        }
    } else {
        format!("{}d", h / 24)
    }
}

fn parse_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    v.and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn age(obj: &Value, now: DateTime<Utc>) -> String {
    parse_time(obj.pointer("/metadata/creationTimestamp"))
        .map(|t| human_duration((now - t).num_seconds()))
        .unwrap_or_else(|| "<unknown>".to_owned())
}

fn s<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn pod_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let total = obj
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let statuses = obj
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ready = statuses
        .iter()
        .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    let restarts: i64 = statuses
        .iter()
        .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
        .sum();
    let mut reason = s(obj, "/status/reason").to_owned();
    if reason.is_empty() {
        reason = s(obj, "/status/phase").to_owned();
    }
    for c in &statuses {
        let waiting = s(c, "/state/waiting/reason");
        let terminated = s(c, "/state/terminated/reason");
        if !waiting.is_empty() {
            reason = waiting.to_owned();
        } else if !terminated.is_empty() && reason != "Running" {
            reason = terminated.to_owned();
        }
    }
    if obj.pointer("/metadata/deletionTimestamp").is_some() {
        reason = "Terminating".to_owned();
    }
    let ip = s(obj, "/status/podIP");
    let node = s(obj, "/spec/nodeName");
    vec![
        json!(s(obj, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts.to_string()),
        json!(age(obj, now)),
        json!(if ip.is_empty() { "<none>" } else { ip }),
        json!(if node.is_empty() { "<none>" } else { node }),
    ]
}

fn job_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let cond = |t: &str| {
        obj.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| s(c, "/type") == t && s(c, "/status") == "True")
            })
    };
    let status = if cond("Complete") {
        "Complete"
    } else if cond("Failed") {
        "Failed"
    } else if obj.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if cond("FailureTarget") {
        "FailureTarget"
    } else if cond("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if cond("Suspended") {
        "Suspended"
    } else {
        "Running"
    };
    let succeeded = obj
        .pointer("/status/succeeded")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let completions = match obj.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let p = obj
                .pointer("/spec/parallelism")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            format!("{succeeded}/1 of {p}")
        }
    };
    let start = parse_time(obj.pointer("/status/startTime"));
    let end = parse_time(obj.pointer("/status/completionTime")).unwrap_or(now);
    let duration = start.map_or(String::new(), |st| human_duration((end - st).num_seconds()));
    vec![
        json!(s(obj, "/metadata/name")),
        json!(status),
        json!(completions),
        json!(duration),
        json!(age(obj, now)),
    ]
}

fn cells(rt: &ResourceType, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let name = json!(s(obj, "/metadata/name"));
    match (rt.group, rt.plural) {
        ("", "pods") => pod_cells(obj, now),
        ("batch", "jobs") => job_cells(obj, now),
        ("", "namespaces") => vec![name, json!(s(obj, "/status/phase")), json!(age(obj, now))],
        ("", "nodes") => {
            let ready = obj
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| s(c, "/type") == "Ready"))
                .map_or("Unknown", |c| {
                    if s(c, "/status") == "True" {
                        "Ready"
                    } else {
                        "NotReady"
                    }
                });
            vec![name, json!(ready), json!(age(obj, now))]
        }
        ("", "events") | ("events.k8s.io", "events") => {
            let (kind, oname) = if rt.group.is_empty() {
                (
                    s(obj, "/involvedObject/kind"),
                    s(obj, "/involvedObject/name"),
                )
            } else {
                (s(obj, "/regarding/kind"), s(obj, "/regarding/name"))
            };
            let last = parse_time(obj.pointer("/lastTimestamp"))
                .or_else(|| parse_time(obj.pointer("/eventTime")))
                .or_else(|| parse_time(obj.pointer("/metadata/creationTimestamp")))
                .map_or("<unknown>".to_owned(), |t| {
                    human_duration((now - t).num_seconds())
                });
            let message = if rt.group.is_empty() {
                s(obj, "/message")
            } else {
                s(obj, "/note")
            };
            vec![
                json!(last),
                json!(s(obj, "/type")),
                json!(s(obj, "/reason")),
                json!(format!("{}/{oname}", kind.to_lowercase())),
                json!(message),
            ]
        }
        ("", "services") => {
            let ports: Vec<String> = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            format!(
                                "{}/{}",
                                p.get("port").and_then(Value::as_i64).unwrap_or(0),
                                s(p, "/protocol")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            vec![
                name,
                json!(s(obj, "/spec/type")),
                json!(s(obj, "/spec/clusterIP")),
                json!(if ports.is_empty() {
                    "<none>".to_owned()
                } else {
                    ports.join(",")
                }),
                json!(age(obj, now)),
            ]
        }
        ("", "configmaps") => {
            let n = ["data", "binaryData"]
                .iter()
                .filter_map(|k| obj.get(*k).and_then(Value::as_object))
                .map(|m| m.len())
                .sum::<usize>();
            vec![name, json!(n), json!(age(obj, now))]
        }
        ("coordination.k8s.io", "leases") => {
            vec![
                name,
                json!(s(obj, "/spec/holderIdentity")),
                json!(age(obj, now)),
            ]
        }
        _ => vec![name, json!(age(obj, now))],
    }
}

/// One table row for an object; `include_object` selects `Object` (the whole object) or the
/// default `Metadata` (a `PartialObjectMetadata`).
pub fn row(rt: &ResourceType, obj: &Value, include_object: bool) -> Value {
    let now = Utc::now();
    let object = if include_object {
        obj.clone()
    } else {
        partial(obj)
    };
    json!({"cells": cells(rt, obj, now), "object": object})
}

/// A whole table of `objects`.
pub fn table<'a>(
    rt: &ResourceType,
    objects: impl Iterator<Item = &'a Value>,
    list_meta: Value,
    include_object: bool,
) -> Value {
    let rows: Vec<Value> = objects.map(|o| row(rt, o, include_object)).collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns(rt),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(50 * 3600), "2d2h");
    }
}
