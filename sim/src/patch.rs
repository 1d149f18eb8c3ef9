//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch and
//! server-side apply.
//!
//! Merge and JSON patch are exact (the `json-patch` crate). Strategic merge patch is an
//! approximation of k8s.io/apimachinery/pkg/util/strategicpatch for what `kubectl apply` and
//! `kubectl patch` send: maps merge recursively, `null` deletes, lists whose Kubernetes patch
//! strategy is "merge" merge by their merge key (containers and volumes by `name`, ports by
//! `containerPort`/`port`, …, see [`merge_key`]), other lists are replaced; the directives
//! `$patch: delete|replace`, `$retainKeys`, `$deleteFromPrimitiveList/…` and
//! `$setElementOrder/…` are honoured or dropped. Server-side apply (`application/apply-patch+yaml`)
//! is approximated as a strategic merge of the applied configuration, without managedFields or
//! field-ownership conflicts.

use serde_json::{Map, Value};

/// The patch formats a PATCH request can carry, by `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// Parses a `Content-Type` header value.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let ct = ct.split(';').next().unwrap_or("").trim();
        match ct {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/json-patch+json" => Some(Self::Json),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Why a patch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The body is not valid for its patch type.
    #[error("invalid patch body: {0}")]
    Body(String),
    /// A JSON patch operation failed (path missing, test failed…).
    #[error("the JSON patch could not be applied: {0}")]
    Apply(String),
}

/// Applies `patch` (already decoded) to `target` according to `kind`.
pub fn apply(kind: PatchType, target: &Value, patch: &Value) -> Result<Value, PatchError> {
    match kind {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(PatchError::Body(
                    "a merge patch must be a JSON object".to_owned(),
                ));
            }
            let mut out = target.clone();
            json_patch::merge(&mut out, patch);
            Ok(out)
        }
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| PatchError::Body(format!("not a JSON patch operation list: {e}")))?;
            let mut out = target.clone();
            json_patch::patch(&mut out, &ops).map_err(|e| PatchError::Apply(e.to_string()))?;
            Ok(out)
        }
        PatchType::Strategic | PatchType::Apply => {
            if !patch.is_object() {
                return Err(PatchError::Body(
                    "a strategic merge patch must be a JSON object".to_owned(),
                ));
            }
            Ok(strategic_merge(target, patch, ""))
        }
    }
}

/// The merge key of a list field whose patch strategy is "merge" (from the `patchMergeKey` tags of
/// k8s.io/api), or `None` for lists that are replaced.
fn merge_key(parent: &str, field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "hostAliases"
        | "readinessGates" => match field {
            "hostAliases" => Some("ip"),
            "readinessGates" => Some("conditionType"),
            _ => Some("name"),
        },
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "ports" if parent == "spec" => Some("port"),
        "ports" => Some("containerPort"),
        "ownerReferences" => Some("uid"),
        "conditions" => Some("type"),
        "tolerations" | "topologySpreadConstraints" => None,
        _ => None,
    }
}

fn strategic_merge(target: &Value, patch: &Value, parent: &str) -> Value {
    let (Some(t), Some(p)) = (target.as_object(), patch.as_object()) else {
        return patch.clone();
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut out = p.clone();
        out.remove("$patch");
        return Value::Object(out);
    }
    let mut out: Map<String, Value> = t.clone();
    if let Some(retain) = p.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        out.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            let _ = field;
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Some(del)) = (out.get_mut(field), v.as_array()) {
                items.retain(|i| !del.contains(i));
            }
            continue;
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        let merged = match (out.get(k), v) {
            (Some(old @ Value::Object(_)), Value::Object(_)) => strategic_merge(old, v, k),
            (Some(Value::Array(old)), Value::Array(new)) => match merge_key(parent, k) {
                Some(key) => merge_list(old, new, key, k),
                None => Value::Array(new.clone()),
            },
            (None, Value::Object(_)) => strategic_merge(&Value::Object(Map::new()), v, k),
            _ => v.clone(),
        };
        out.insert(k.clone(), merged);
    }
    Value::Object(out)
}

fn merge_list(old: &[Value], new: &[Value], key: &str, field: &str) -> Value {
    let mut out: Vec<Value> = old.to_vec();
    for item in new {
        let id = item.get(key);
        let directive = item.get("$patch").and_then(Value::as_str);
        let pos = id.and_then(|id| out.iter().position(|o| o.get(key) == Some(id)));
        match (pos, directive) {
            (Some(i), Some("delete")) => {
                out.remove(i);
            }
            (None, Some("delete")) => {}
            (Some(i), _) => out[i] = strategic_merge(&out[i], item, field),
            (None, _) => out.push(strategic_merge(&Value::Object(Map::new()), item, field)),
        }
    }
    Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let target = json!({"spec": {"containers": [
            {"name": "main", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "side", "image": "s:1"}
        ], "tolerations": [{"key": "k"}]}});
        let patch = json!({"spec": {"containers": [
            {"name": "main", "image": "a:2", "env": [{"name": "Y", "value": "2"}]},
            {"name": "side", "$patch": "delete"}
        ], "tolerations": [{"key": "j"}]}});
        let out = apply(PatchType::Strategic, &target, &patch).expect("applies");
        assert_eq!(
            out,
            json!({"spec": {"containers": [
                {"name": "main", "image": "a:2", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}
            ], "tolerations": [{"key": "j"}]}})
        );
    }

    #[test]
    fn json_patch_failures_are_reported() {
        let target = json!({"metadata": {"labels": {"a": "1"}}});
        let ok = apply(
            PatchType::Json,
            &target,
            &json!([{"op": "replace", "path": "/metadata/labels/a", "value": "2"}]),
        )
        .expect("applies");
        assert_eq!(ok["metadata"]["labels"]["a"], "2");
        let err = apply(
            PatchType::Json,
            &target,
            &json!([{"op": "test", "path": "/metadata/labels/a", "value": "9"}]),
        );
        assert!(matches!(err, Err(PatchError::Apply(_))));
    }
}
