//! `{{name}}`: a taskpod pod adapter. Each task becomes a Job with one container, `main`,
//! running the configured image with the task's id and payload in its environment, labelled
//! with the tenant and sized by `cpu` and `memory` (requests = limits).
//!
//! Build the component: `cargo build --target wasm32-wasip2 --release`
//! (writes target/wasm32-wasip2/release/{{crate}}.wasm).

use std::collections::BTreeMap;

use serde::Deserialize;
use taskpod_adapter_sdk::error::{invalid_config, parse_config};
use taskpod_adapter_sdk::k8s::k8s_openapi::api::core::v1::{
    Container, PodSpec, PodTemplateSpec, ResourceRequirements,
};
use taskpod_adapter_sdk::k8s::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use taskpod_adapter_sdk::k8s::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use taskpod_adapter_sdk::{
    Adapter, AdapterError, AdapterInfo, AdapterOutput, Context, Task, k8s, names,
};

/// The adapter's configuration (`config:` of its entry in the taskpod config).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Container image that runs every task.
    pub image: String,
    /// CPU request and limit, e.g. `250m`.
    #[serde(default)]
    pub cpu: Option<String>,
    /// Memory request and limit, e.g. `256Mi`.
    #[serde(default)]
    pub memory: Option<String>,
}

const SCHEMA: &str = r#"{"type":"object","additionalProperties":false,"required":["image"],"properties":{"image":{"type":"string","minLength":1},"cpu":{"type":"string"},"memory":{"type":"string"}}}"#;

fn parse(text: &str) -> Result<Config, AdapterError> {
    let config: Config = parse_config(text)?;
    if config.image.is_empty() {
        return Err(invalid_config("config.image: must not be empty"));
    }
    Ok(config)
}

/// The adapter.
#[derive(Debug)]
pub struct MyAdapter;

impl Adapter for MyAdapter {
    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "One container per task running the configured image".into(),
            config_schema: SCHEMA.into(),
            task_types: Vec::new(),
        }
    }

    fn validate_config(config: &str) -> Result<(), AdapterError> {
        parse(config).map(|_| ())
    }

    fn adapt(task: &Task, ctx: &Context) -> Result<AdapterOutput, AdapterError> {
        let config = parse(&ctx.config)?;
        let sizes: BTreeMap<String, Quantity> = [("cpu", &config.cpu), ("memory", &config.memory)]
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), Quantity(v.clone()?))))
            .collect();
        let mut main = Container {
            name: "main".into(),
            image: Some(config.image),
            resources: (!sizes.is_empty()).then(|| ResourceRequirements {
                requests: Some(sizes.clone()),
                limits: Some(sizes),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        };
        k8s::set_env(&mut main, k8s::env_value("TASK_ID", task.id.as_str()));
        k8s::set_env(&mut main, k8s::env_value("TASK_PAYLOAD", task.payload.as_str()));

        let mut meta = ObjectMeta::default();
        let tenant = names::sanitize_label_value(&task.tenant);
        k8s::merge_labels(
            &mut meta,
            ctx.labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain([("tenant", tenant.as_str())]),
        );
        let template = PodTemplateSpec {
            metadata: Some(meta.clone()),
            spec: Some(PodSpec {
                containers: vec![main],
                ..PodSpec::default()
            }),
        };
        let mut job = k8s::job_from_template(&ctx.job_name, &ctx.namespace, template);
        job.metadata.labels = meta.labels;
        k8s::apply_limits(&mut job, &ctx.limits);
        k8s::job_output(&job)
    }
}

taskpod_adapter_sdk::export_adapter!(MyAdapter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_the_configured_image() {
        let ctx = Context {
            namespace: "ns".into(),
            job_name: "job-1".into(),
            config: r#"{"image": "busybox:1.36"}"#.into(),
            ..Context::default()
        };
        let task = Task {
            id: "t-1".into(),
            tenant: "Acme".into(),
            ..Task::default()
        };
        let out = MyAdapter::adapt(&task, &ctx).unwrap();
        let job: serde_json::Value = serde_json::from_str(&out.job).unwrap();
        let main = &job["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(main["image"], "busybox:1.36");
        assert_eq!(job["metadata"]["labels"]["tenant"], "Acme");
        assert!(MyAdapter::validate_config(r#"{"image": "x", "colour": "red"}"#).is_err());
    }
}
