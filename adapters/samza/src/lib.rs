//! The built-in `samza` adapter: samza_kubernetes (seed 002) as one Indexed Job.
//!
//! Input: a Samza job config — the `.properties` file a Samza user already has, as the task
//! payload in the form of one JSON object of properties (`taskpod render --task job.properties`
//! converts the file; string values, numbers and booleans are accepted). The keys samza_kubernetes
//! introduced shape the Job:
//!
//! | property | Job |
//! |---|---|
//! | `kubernetes.container.image` (required) | the container's image |
//! | `kubernetes.container.memory` (e.g. `1Gi`) | `resources.limits.memory` |
//! | `kubernetes.container.cpu.cores` (e.g. `250m`) | `resources.limits.cpu` |
//! | `kubernetes.pod.count` (required, ≥ 1) | `completions` = `parallelism` |
//! | `kubernetes.node.selector` (`key=value[,key=value…]`, optional) | `nodeSelector` |
//! | `kubernetes.resources.out` | where `taskpod render` writes the YAML (not part of the Job) |
//!
//! Where samza_kubernetes made one ReplicationController of one replica per SamzaContainer, this
//! adapter makes one `completionMode: Indexed` Job: pod `i` is SamzaContainer `i`
//! (`SAMZA_CONTAINER_ID` comes from the pod's completion-index annotation), and a failed container
//! is restarted in place (`restartPolicy: OnFailure`, bounded by `backoffLimit`, the adapter's
//! `backoffLimit` setting, default 3 — the host binding must set `allowRestartOnFailure: true`).
//! Restarting in place keeps the pod's `/samza/state` emptyDir, so the local KV state survives a
//! container crash, as the seed intends. `SAMZA_JOB_CONFIG` carries the job config as the JSON
//! object `{"config": {…}}` — the `config` part of Samza's serialized JobModel; the
//! container-to-partition assignment is made by Samza itself when the containers start, because
//! taskpod does not reach ZooKeeper or Kafka when it renders the Job.
//!
//! Labels on the Job and its pods: `app.kubernetes.io/name: samza`, `app.kubernetes.io/instance`
//! (the sanitised `job.name`) and `samza.apache.org/job-id` (`job.id`, default `1`), after the
//! host's configured labels.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};
use taskpod_adapter_sdk::error::{self, ErrorContext as _, invalid_config, invalid_task};
use taskpod_adapter_sdk::k8s::{self, k8s_openapi::api::batch::v1::Job};
use taskpod_adapter_sdk::{
    Adapter, AdapterError, AdapterInfo, AdapterOutput, Context, Task, names,
};

/// Property: the Docker image.
pub const PROP_IMAGE: &str = "kubernetes.container.image";
/// Property: the memory limit.
pub const PROP_MEMORY: &str = "kubernetes.container.memory";
/// Property: the CPU limit.
pub const PROP_CPU: &str = "kubernetes.container.cpu.cores";
/// Property: the number of SamzaContainers.
pub const PROP_POD_COUNT: &str = "kubernetes.pod.count";
/// Property: the node selector.
pub const PROP_NODE_SELECTOR: &str = "kubernetes.node.selector";
/// Property: the file `taskpod render` writes the resources to.
pub const PROP_RESOURCES_OUT: &str = "kubernetes.resources.out";
/// Property: the job name.
pub const PROP_JOB_NAME: &str = "job.name";
/// Property: the job id.
pub const PROP_JOB_ID: &str = "job.id";
/// Environment variable: the SamzaContainer id (the completion index).
pub const ENV_CONTAINER_ID: &str = "SAMZA_CONTAINER_ID";
/// Environment variable: the job config.
pub const ENV_JOB_CONFIG: &str = "SAMZA_JOB_CONFIG";
/// Mount path of the state emptyDir.
pub const STATE_PATH: &str = "/samza/state";
/// Name of the SamzaContainer's container in the pod.
pub const CONTAINER_NAME: &str = "samza-container";
/// Label: the job id.
pub const LABEL_JOB_ID: &str = "samza.apache.org/job-id";
/// Default `backoffLimit` (restarts of failed containers, all indexes together).
pub const DEFAULT_BACKOFF_LIMIT: i32 = 3;
/// Largest pod count accepted (Kubernetes' limit on `completions` of an Indexed Job).
pub const MAX_POD_COUNT: i32 = 100_000;

/// JSON Schema of [`Config`], returned by `info`.
pub const CONFIG_SCHEMA: &str = r##"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "samza adapter configuration",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "backoffLimit": {
      "description": "How many container restarts (all SamzaContainers together) before the Job fails; must not exceed the binding's maxBackoffLimit.",
      "type": "integer", "minimum": 0, "default": 3
    }
  }
}"##;

/// The adapter's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Job `backoffLimit` (default [`DEFAULT_BACKOFF_LIMIT`]).
    #[serde(default = "default_backoff")]
    pub backoff_limit: i32,
}

fn default_backoff() -> i32 {
    DEFAULT_BACKOFF_LIMIT
}

impl Default for Config {
    fn default() -> Self {
        Config {
            backoff_limit: DEFAULT_BACKOFF_LIMIT,
        }
    }
}

impl Config {
    /// Parses and checks a configuration; errors name the key and the fix.
    pub fn parse(config: &str) -> Result<Config, AdapterError> {
        let config: Config = error::parse_config(config)?;
        if config.backoff_limit < 0 {
            return Err(invalid_config(format!(
                "config.backoffLimit: {} is negative; give how many restarts are allowed (0 or more)",
                config.backoff_limit
            )));
        }
        Ok(config)
    }
}

/// samza_kubernetes as a taskpod adapter (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct SamzaAdapter;

impl Adapter for SamzaAdapter {
    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "samza".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "samza_kubernetes: one Indexed Job whose completion index is the SamzaContainer id, with image, memory, cpu, pod count and node selector from the job's properties".to_owned(),
            config_schema: CONFIG_SCHEMA.to_owned(),
            task_types: Vec::new(),
        }
    }

    fn validate_config(config: &str) -> Result<(), AdapterError> {
        Config::parse(config).map(|_| ())
    }

    fn adapt(task: &Task, ctx: &Context) -> Result<AdapterOutput, AdapterError> {
        let config = Config::parse(&ctx.config)?;
        build(task, ctx, &config)
    }
}

/// Reads the task payload as Samza properties: a JSON object whose values are strings (numbers
/// and booleans are turned into their text).
pub fn properties(payload: &str) -> Result<BTreeMap<String, String>, AdapterError> {
    let value: Value = serde_json::from_str(payload).invalid_task_at("payload")?;
    let Value::Object(map) = value else {
        return Err(invalid_task(
            "payload: a Samza job config must be a JSON object of properties (convert a .properties file with `taskpod render --task job.properties`)",
        ));
    };
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            Value::Number(n) => Ok((k, n.to_string())),
            Value::Bool(b) => Ok((k, b.to_string())),
            other => Err(invalid_task(format!(
                "payload.{k}: {other} is not a property value; give a string"
            ))),
        })
        .collect()
}

fn required<'a>(props: &'a BTreeMap<String, String>, key: &str) -> Result<&'a str, AdapterError> {
    match props.get(key).map(|s| s.trim()) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(invalid_task(format!(
            "payload.{key}: missing; samza_kubernetes jobs must set {key} in the job's .properties"
        ))),
    }
}

/// Parses `kubernetes.node.selector`: `key=value` pairs separated by commas.
pub fn node_selector(text: &str) -> Result<BTreeMap<String, String>, AdapterError> {
    let mut out = BTreeMap::new();
    for (i, pair) in text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(invalid_task(format!(
                "payload.{PROP_NODE_SELECTOR}: entry {i} {pair:?} is not key=value; write e.g. `disktype=ssd,zone=west`"
            )));
        };
        let (k, v) = (k.trim(), v.trim());
        names::check_label_key(k)
            .map_err(|e| invalid_task(format!("payload.{PROP_NODE_SELECTOR}: key {k:?}: {e}")))?;
        names::check_label_value(v).map_err(|e| {
            invalid_task(format!("payload.{PROP_NODE_SELECTOR}: value of {k:?}: {e}"))
        })?;
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

/// Builds the Indexed Job for one Samza job config.
pub fn build(task: &Task, ctx: &Context, config: &Config) -> Result<AdapterOutput, AdapterError> {
    if task.id.is_empty() {
        return Err(invalid_task("id: the task has no id"));
    }
    let props = properties(&task.payload)?;
    let image = required(&props, PROP_IMAGE)?;
    let count_text = required(&props, PROP_POD_COUNT)?;
    let count: i32 = count_text
        .parse()
        .ok()
        .filter(|n| (1..=MAX_POD_COUNT).contains(n))
        .ok_or_else(|| {
            invalid_task(format!(
                "payload.{PROP_POD_COUNT}: {count_text:?} is not a whole number of SamzaContainers in 1..={MAX_POD_COUNT}"
            ))
        })?;
    let selector = match props.get(PROP_NODE_SELECTOR) {
        Some(text) => node_selector(text)?,
        None => BTreeMap::new(),
    };
    let mut limits = serde_json::Map::new();
    for (key, resource) in [(PROP_MEMORY, "memory"), (PROP_CPU, "cpu")] {
        if let Some(v) = props.get(key) {
            let v = v.trim();
            if v.is_empty() {
                return Err(invalid_task(format!(
                    "payload.{key}: empty; give a Kubernetes quantity (e.g. 1Gi, 250m) or leave the property out"
                )));
            }
            limits.insert(resource.into(), v.into());
        }
    }

    let job_config = json!({ "config": props }).to_string();
    let limit = ctx.limits.max_inline_payload as usize;
    if job_config.len() > limit {
        return Err(invalid_task(format!(
            "payload: the job config is {} characters in {ENV_JOB_CONFIG}, over the inline limit of {limit}; remove unused properties or raise the host's max inline payload",
            job_config.len()
        )));
    }

    let job_name = props
        .get(PROP_JOB_NAME)
        .map(String::as_str)
        .unwrap_or(&task.id);
    let job_id = props.get(PROP_JOB_ID).map(String::as_str).unwrap_or("1");
    let mut labels: serde_json::Map<String, Value> = ctx
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    labels.insert("app.kubernetes.io/name".into(), "samza".into());
    labels.insert(
        "app.kubernetes.io/instance".into(),
        names::sanitize_label_value(job_name).into(),
    );
    labels.insert(
        LABEL_JOB_ID.into(),
        names::sanitize_label_value(job_id).into(),
    );
    let annotations: serde_json::Map<String, Value> = ctx
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();

    let mut container = json!({
        "name": CONTAINER_NAME,
        "image": image,
        "env": [
            { "name": ENV_CONTAINER_ID, "valueFrom": { "fieldRef": {
                "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']" } } },
            { "name": ENV_JOB_CONFIG, "value": job_config },
        ],
        "volumeMounts": [{ "name": "samza-state", "mountPath": STATE_PATH }],
    });
    if !limits.is_empty() {
        container["resources"] = json!({ "limits": limits });
    }
    let mut pod = json!({
        "restartPolicy": "OnFailure",
        "containers": [container],
        "volumes": [{ "name": "samza-state", "emptyDir": {} }],
    });
    if !selector.is_empty() {
        pod["nodeSelector"] = json!(selector);
    }
    let mut meta = json!({ "name": ctx.job_name, "namespace": ctx.namespace, "labels": labels });
    let mut pod_meta = json!({ "labels": labels });
    if !annotations.is_empty() {
        meta["annotations"] = Value::Object(annotations.clone());
        pod_meta["annotations"] = Value::Object(annotations);
    }
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "completionMode": "Indexed",
            "completions": count,
            "parallelism": count,
            "backoffLimit": config.backoff_limit,
            "template": {
                "metadata": pod_meta,
                "spec": pod,
            },
        },
    });
    let mut job: Job = serde_json::from_value(job).internal_at("job")?;
    k8s::apply_limits(&mut job, &ctx.limits);
    k8s::job_output(&job)
}

taskpod_adapter_sdk::export_adapter!(SamzaAdapter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_errors() {
        assert_eq!(Config::parse("{}").unwrap(), Config::default());
        let err = Config::parse(r#"{"backofLimit": 2}"#).unwrap_err();
        assert!(err.to_string().contains("backofLimit"), "{err}");
        let err = Config::parse(r#"{"backoffLimit": -1}"#).unwrap_err();
        assert!(err.to_string().contains("config.backoffLimit"), "{err}");
    }

    #[test]
    fn node_selector_pairs() {
        let s = node_selector("disktype=ssd, zone = west").unwrap();
        assert_eq!(s["disktype"], "ssd");
        assert_eq!(s["zone"], "west");
        assert!(node_selector("").unwrap().is_empty());
        let err = node_selector("disktype").unwrap_err();
        assert!(err.to_string().contains("not key=value"), "{err}");
        let err = node_selector("bad key=x").unwrap_err();
        assert!(err.to_string().contains("bad key"), "{err}");
    }

    #[test]
    fn properties_from_json() {
        let p = properties(r#"{"a": "x", "b": 3, "c": true}"#).unwrap();
        assert_eq!(p["b"], "3");
        assert_eq!(p["c"], "true");
        assert!(
            properties(r#"{"a": [1]}"#)
                .unwrap_err()
                .to_string()
                .contains("payload.a")
        );
        assert!(properties("[]").is_err());
    }
}
