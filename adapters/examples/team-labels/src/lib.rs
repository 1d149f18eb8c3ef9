//! `team-labels`: an example user adapter, written only against the taskpod adapter SDK.
//!
//! It shows the whole pattern of a user adapter in a few dozen lines: a documented config
//! struct that rejects unknown keys, `validate_config`, and an `adapt` that builds a Job with the
//! SDK's typed helpers. Each task becomes a Job with one container running `image` (with
//! `command` when given), labelled with the owning team and the tenant, sized by `cpu` and
//! `memory` (requests = limits), and given the task id, type and payload JSON in the
//! environment (`TASK_ID`, `TASK_TYPE`, `TASK_PAYLOAD`).
//!
//! Configuration (JSON): `{"image": "ghcr.io/acme/etl:1.4", "team": "Data Platform",
//! "command": ["etl", "run"], "cpu": "500m", "memory": "1Gi"}` — `image` and `team` required.

use std::collections::BTreeMap;

use serde::Deserialize;
use taskpod_adapter_sdk::error::{invalid_config, invalid_task, parse_config};
use taskpod_adapter_sdk::k8s::k8s_openapi::api::core::v1::{
    Container, PodSpec, PodTemplateSpec, ResourceRequirements,
};
use taskpod_adapter_sdk::k8s::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use taskpod_adapter_sdk::k8s::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use taskpod_adapter_sdk::{
    Adapter, AdapterError, AdapterInfo, AdapterOutput, Context, Task, k8s, names,
};

/// The adapter's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Container image that runs every task.
    pub image: String,
    /// Owning team, put (sanitised) in the `team` label.
    pub team: String,
    /// Command, when the image's entrypoint is not the one to run.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// CPU request and limit, e.g. `500m`.
    #[serde(default)]
    pub cpu: Option<String>,
    /// Memory request and limit, e.g. `1Gi`.
    #[serde(default)]
    pub memory: Option<String>,
}

const SCHEMA: &str = r#"{"type":"object","additionalProperties":false,"required":["image","team"],"properties":{"image":{"type":"string","minLength":1},"team":{"type":"string","minLength":1},"command":{"type":"array","items":{"type":"string"}},"cpu":{"type":"string"},"memory":{"type":"string"}}}"#;

impl Config {
    fn parse(text: &str) -> Result<Config, AdapterError> {
        let c: Config = parse_config(text)?;
        if c.image.is_empty() || names::sanitize_label_value(&c.team).is_empty() {
            return Err(invalid_config(
                "config.image and config.team: must not be empty",
            ));
        }
        Ok(c)
    }
}

/// The example adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct TeamLabels;

impl Adapter for TeamLabels {
    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "team-labels".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Example: one container per task, labelled with its team".into(),
            config_schema: SCHEMA.into(),
            task_types: Vec::new(),
        }
    }

    fn validate_config(config: &str) -> Result<(), AdapterError> {
        Config::parse(config).map(|_| ())
    }

    fn adapt(task: &Task, ctx: &Context) -> Result<AdapterOutput, AdapterError> {
        let config = Config::parse(&ctx.config)?;
        if task.payload.len() > ctx.limits.max_inline_payload as usize {
            return Err(invalid_task(format!(
                "payload: {} bytes, over the inline limit of {}",
                task.payload.len(),
                ctx.limits.max_inline_payload
            )));
        }
        let sizes: BTreeMap<String, Quantity> = [("cpu", &config.cpu), ("memory", &config.memory)]
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), Quantity(v.clone()?))))
            .collect();
        let mut container = Container {
            name: "task".into(),
            image: Some(config.image),
            command: config.command,
            resources: (!sizes.is_empty()).then(|| ResourceRequirements {
                requests: Some(sizes.clone()),
                limits: Some(sizes),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        };
        k8s::set_env(&mut container, k8s::env_value("TASK_ID", task.id.as_str()));
        k8s::set_env(
            &mut container,
            k8s::env_value("TASK_TYPE", task.kind.as_str()),
        );
        k8s::set_env(
            &mut container,
            k8s::env_value("TASK_PAYLOAD", task.payload.as_str()),
        );

        let mut meta = ObjectMeta::default();
        let team = names::sanitize_label_value(&config.team);
        let tenant = names::sanitize_label_value(&task.tenant);
        let ours = [("team", team.as_str()), ("tenant", tenant.as_str())];
        k8s::merge_labels(
            &mut meta,
            ctx.labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain(ours),
        );
        k8s::merge_annotations(&mut meta, ctx.annotations.iter().cloned());
        let pod = PodSpec {
            containers: vec![container],
            ..PodSpec::default()
        };
        let template = PodTemplateSpec {
            metadata: Some(meta.clone()),
            spec: Some(pod),
        };

        let mut job = k8s::job_from_template(&ctx.job_name, &ctx.namespace, template);
        job.metadata.labels = meta.labels;
        job.metadata.annotations = meta.annotations;
        k8s::apply_limits(&mut job, &ctx.limits);
        k8s::job_output(&job)
    }
}

taskpod_adapter_sdk::export_adapter!(TeamLabels);
