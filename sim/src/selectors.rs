//! Label and field selectors of list and watch requests, parsed once per request and then
//! matched against every candidate object.
//!
//! Label selector syntax follows k8s.io/apimachinery/pkg/labels/selector.go (`=`, `==`, `!=`,
//! `in (…)`, `notin (…)`, `key` (exists), `!key` (does not exist), comma-separated = AND); field
//! selectors follow k8s.io/apimachinery/pkg/fields/selector.go (`=`, `==`, `!=` on the keys each
//! resource supports, see [`crate::resources::ResourceType::fields`]).

use serde_json::Value;

use crate::resources::ResourceType;
use crate::status::ApiError;
use crate::validation;

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum LabelOp {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

/// A parsed label selector (an AND of requirements). The empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<(String, LabelOp)>,
}

fn split_top_level(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth = depth.saturating_sub(1);
                cur.push(c);
            }
            ',' if depth == 0 => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    parts
}

fn bad_label(term: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!(
        "unable to parse requirement: {term:?}: {why} (label selectors look like \"app=web,tier in (a,b),!legacy\")"
    ))
}

fn check_key(term: &str, key: &str) -> Result<(), ApiError> {
    let errs = validation::qualified_name_errors(key);
    if let Some(e) = errs.first() {
        return Err(bad_label(term, &format!("invalid label key {key:?}: {e}")));
    }
    Ok(())
}

fn check_value(term: &str, value: &str) -> Result<(), ApiError> {
    let errs = validation::label_value_errors(value);
    if let Some(e) = errs.first() {
        return Err(bad_label(
            term,
            &format!("invalid label value {value:?}: {e}"),
        ));
    }
    Ok(())
}

fn parse_set(term: &str, rest: &str) -> Result<Vec<String>, ApiError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| bad_label(term, "expected a parenthesised set of values"))?;
    let mut values = Vec::new();
    for v in inner.split(',') {
        let v = v.trim();
        check_value(term, v)?;
        values.push(v.to_owned());
    }
    Ok(values)
}

impl LabelSelector {
    /// Parses a `labelSelector` query parameter.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self { reqs });
        }
        for term in split_top_level(s) {
            let t = term.trim();
            if t.is_empty() {
                return Err(bad_label(s, "empty requirement"));
            }
            if let Some(key) = t.strip_prefix('!') {
                let key = key.trim();
                check_key(t, key)?;
                reqs.push((key.to_owned(), LabelOp::DoesNotExist));
                continue;
            }
            // Set-based: `key in (a,b)` / `key notin (a,b)`.
            let words: Vec<&str> = t.splitn(2, char::is_whitespace).collect();
            if words.len() == 2 {
                let rest = words[1].trim_start();
                if let Some(r) = rest.strip_prefix("notin") {
                    check_key(t, words[0])?;
                    reqs.push((words[0].to_owned(), LabelOp::NotIn(parse_set(t, r)?)));
                    continue;
                }
                if let Some(r) = rest.strip_prefix("in")
                    && r.trim_start().starts_with('(')
                {
                    check_key(t, words[0])?;
                    reqs.push((words[0].to_owned(), LabelOp::In(parse_set(t, r)?)));
                    continue;
                }
            }
            let (key, op) = if let Some((k, v)) = t.split_once("!=") {
                (k, LabelOp::NotEq(v.trim().to_owned()))
            } else if let Some((k, v)) = t.split_once("==") {
                (k, LabelOp::Eq(v.trim().to_owned()))
            } else if let Some((k, v)) = t.split_once('=') {
                (k, LabelOp::Eq(v.trim().to_owned()))
            } else {
                (t, LabelOp::Exists)
            };
            let key = key.trim();
            check_key(t, key)?;
            if let LabelOp::Eq(v) | LabelOp::NotEq(v) = &op {
                check_value(t, v)?;
            }
            reqs.push((key.to_owned(), op));
        }
        Ok(Self { reqs })
    }

    /// True when the selector has no requirement.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// The `key=value` equality requirements (usable with an index).
    pub fn equalities(&self) -> impl Iterator<Item = (&str, &str)> {
        self.reqs.iter().filter_map(|(k, op)| match op {
            LabelOp::Eq(v) => Some((k.as_str(), v.as_str())),
            _ => None,
        })
    }

    /// Matches an object's `metadata.labels` (a JSON object or absent).
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.reqs.iter().all(|(k, op)| match op {
            LabelOp::Eq(v) => get(k) == Some(v.as_str()),
            LabelOp::NotEq(v) => get(k) != Some(v.as_str()),
            LabelOp::In(vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelOp::NotIn(vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            LabelOp::Exists => get(k).is_some(),
            LabelOp::DoesNotExist => get(k).is_none(),
        })
    }
}

/// A parsed field selector (an AND of `key=value` / `key!=value`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    reqs: Vec<(String, bool, String)>,
}

/// The value of a selectable field of an object, as the apiserver's field set renders it.
pub fn field_value(obj: &Value, key: &str) -> String {
    let pointer = format!("/{}", key.replace('.', "/"));
    match obj.pointer(&pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        // `status.successful` of a Job without successes is "0"; a missing bool is "false".
        None if key == "status.successful" => "0".to_owned(),
        None if key == "spec.hostNetwork" || key == "spec.unschedulable" => "false".to_owned(),
        _ => String::new(),
    }
}

impl FieldSelector {
    /// Parses a `fieldSelector` query parameter for resource `rt`; unsupported keys are a
    /// `BadRequest`, as from kube-apiserver.
    pub fn parse(s: &str, rt: &ResourceType) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self { reqs });
        }
        for term in s.split(',') {
            let t = term.trim();
            let (k, eq, v) = if let Some((k, v)) = t.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = t.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = t.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: {t:?}: a field selector term must be key=value, key==value or key!=value"
                )));
            };
            let k = k.trim();
            if !rt.supports_field(k) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {k} (resource {} supports metadata.name{}{})",
                    rt.plural,
                    if rt.namespaced {
                        ", metadata.namespace"
                    } else {
                        ""
                    },
                    rt.fields
                        .iter()
                        .map(|f| format!(", {f}"))
                        .collect::<String>()
                )));
            }
            reqs.push((k.to_owned(), eq, v.trim().to_owned()));
        }
        Ok(Self { reqs })
    }

    /// True when the selector has no requirement.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// The value required for `metadata.name`, if the selector pins it.
    pub fn name(&self) -> Option<&str> {
        self.reqs
            .iter()
            .find(|(k, eq, _)| *eq && k == "metadata.name")
            .map(|(_, _, v)| v.as_str())
    }

    /// Matches an object.
    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs
            .iter()
            .all(|(k, eq, v)| (field_value(obj, k) == *v) == *eq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_operators() {
        let labels = json!({"app": "web", "tier": "front", "env": "prod"});
        let m = |s: &str| {
            LabelSelector::parse(s)
                .expect("valid selector")
                .matches(Some(&labels))
        };
        assert!(m("app=web"));
        assert!(m("app==web,tier!=back"));
        assert!(m("tier in (front, back)"));
        assert!(!m("tier notin (front)"));
        assert!(m("env"));
        assert!(m("!legacy"));
        assert!(!m("!env"));
        assert!(m("missing notin (x)"));
        assert!(!m("missing in (x)"));
        assert!(LabelSelector::parse("app=we b").is_err());
        assert!(LabelSelector::parse("in valid key=1").is_err());
    }

    #[test]
    fn field_selector_supports_only_known_keys() {
        let pods = crate::resources::by_plural("", "pods").expect("pods");
        let pod = json!({"metadata": {"name": "p"}, "status": {"phase": "Running"}});
        let sel = FieldSelector::parse("status.phase=Running,metadata.name!=q", pods).unwrap();
        assert!(sel.matches(&pod));
        let err = FieldSelector::parse("spec.foo=1", pods).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(err.message.contains("field label not supported: spec.foo"));
    }
}
