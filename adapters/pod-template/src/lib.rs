//! The built-in `pod-template` adapter: Druid's `customTemplateAdapter`.
//!
//! Every task runs from a `v1/PodTemplate` the operator provides: the template named like the
//! task type when there is one, else `base` (or the template a selector names, with the
//! `selectorBased` strategy of [`config`]). The adapter wraps the template's pod into a
//! `batch/v1` Job and adds exactly what Druid's `PodTemplateTaskAdapter` adds, so peons,
//! dashboards and scripts written for Druid see the same Jobs:
//!
//! - labels on the Job and its pod: `druid.k8s.peons: "true"`, `druid.task.id`,
//!   `druid.task.type`, `druid.task.group.id`, `druid.task.datasource` (sanitised label values),
//!   after the host's configured labels;
//! - annotations on the Job and its pod: `task.id` (the original id), `task.type`,
//!   `task.group.id`, `task.datasource`, `task.jobTemplate`, after the host's configured
//!   annotations; on the pod also `task`, the gzip+base64 task payload;
//! - on the main container: `TASK_ID`, `TASK_DIR`, `TASK_JSON` (a `fieldRef` to the pod's `task`
//!   annotation) and `DRUID_POD_TEMPLATE`, replacing variables of the same name and keeping the
//!   template's others;
//! - `backoffLimit: 0`, `restartPolicy: Never`, `activeDeadlineSeconds`,
//!   `ttlSecondsAfterFinished` and `terminationGracePeriodSeconds` from the host's limits.
//!
//! Everything else in the template (volumes, tolerations, security context, sidecars …) is kept.
//! A payload whose gzip+base64 form exceeds the inline limit is refused as an invalid task.
//!
//! The logic is plain Rust so that it also runs natively: the host calls
//! `<PodTemplateAdapter as Adapter>::adapt` directly for its native benchmark baseline.

pub mod config;

use serde::de::IgnoredAny;
use taskpod_adapter_sdk::error::{ErrorContext as _, invalid_task};
use taskpod_adapter_sdk::k8s::{self, k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta};
use taskpod_adapter_sdk::{
    Adapter, AdapterError, AdapterInfo, AdapterOutput, Context, Task, log, names, payload,
};

pub use config::Config;

/// Label set to `"true"` on every Druid peon Job and pod.
pub const LABEL_PEONS: &str = "druid.k8s.peons";
/// Label: the task id, sanitised.
pub const LABEL_TASK_ID: &str = "druid.task.id";
/// Label: the task type, sanitised.
pub const LABEL_TASK_TYPE: &str = "druid.task.type";
/// Label: the task group id, sanitised.
pub const LABEL_TASK_GROUP_ID: &str = "druid.task.group.id";
/// Label: the datasource, sanitised.
pub const LABEL_TASK_DATASOURCE: &str = "druid.task.datasource";
/// Annotation: the original task id.
pub const ANNOTATION_TASK_ID: &str = "task.id";
/// Annotation: the task type.
pub const ANNOTATION_TASK_TYPE: &str = "task.type";
/// Annotation: the group id.
pub const ANNOTATION_TASK_GROUP_ID: &str = "task.group.id";
/// Annotation: the datasource.
pub const ANNOTATION_TASK_DATASOURCE: &str = "task.datasource";
/// Annotation: the name of the template the Job was built from.
pub const ANNOTATION_JOB_TEMPLATE: &str = "task.jobTemplate";
/// Pod annotation holding the gzip+base64 task payload.
pub const ANNOTATION_TASK: &str = "task";
/// Environment variable: the task id.
pub const ENV_TASK_ID: &str = "TASK_ID";
/// Environment variable: the task directory.
pub const ENV_TASK_DIR: &str = "TASK_DIR";
/// Environment variable: the task payload (from the `task` annotation).
pub const ENV_TASK_JSON: &str = "TASK_JSON";
/// Environment variable: the name of the template used.
pub const ENV_POD_TEMPLATE: &str = "DRUID_POD_TEMPLATE";

/// Druid's `customTemplateAdapter` as a taskpod adapter (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct PodTemplateAdapter;

impl Adapter for PodTemplateAdapter {
    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "pod-template".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "Druid's customTemplateAdapter: a Job from a PodTemplate per task type (base as fallback), with Druid's labels, annotations and task env".to_owned(),
            config_schema: config::CONFIG_SCHEMA.to_owned(),
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

/// Builds the Job for `task` with an already parsed configuration.
pub fn build(task: &Task, ctx: &Context, config: &Config) -> Result<AdapterOutput, AdapterError> {
    if task.id.is_empty() {
        return Err(invalid_task("id: the task has no id"));
    }
    serde_json::from_str::<IgnoredAny>(&task.payload).invalid_task_at("payload")?;

    let encoded = payload::encode(&task.payload);
    let limit = ctx.limits.max_inline_payload as usize;
    if encoded.len() > limit {
        return Err(invalid_task(format!(
            "payload: task `{}` is {} characters as gzip+base64, over the inline limit of {limit}; shrink the task or raise the host's max inline payload",
            task.id,
            encoded.len()
        )));
    }

    let (template_name, template_json) = config.select_template(task, &ctx.templates)?;
    log::debug(&format!(
        "task {} uses pod template {template_name}",
        task.id
    ));
    let template = k8s::parse_pod_template(template_name, template_json)?;

    let mut job = k8s::job_from_template(&ctx.job_name, &ctx.namespace, template);

    let mut labels: Vec<(&str, String)> = Vec::with_capacity(5);
    labels.push((LABEL_PEONS, "true".to_owned()));
    labels.push((LABEL_TASK_ID, names::task_id_label(&task.id)));
    labels.push((LABEL_TASK_TYPE, names::sanitize_label_value(&task.kind)));
    if let Some(group) = &task.group_id {
        labels.push((LABEL_TASK_GROUP_ID, names::task_id_label(group)));
    }
    if let Some(ds) = &task.datasource {
        labels.push((LABEL_TASK_DATASOURCE, names::sanitize_label_value(ds)));
    }

    let mut annotations: Vec<(&str, &str)> = Vec::with_capacity(5);
    annotations.push((ANNOTATION_TASK_ID, &task.id));
    annotations.push((ANNOTATION_TASK_TYPE, &task.kind));
    if let Some(group) = &task.group_id {
        annotations.push((ANNOTATION_TASK_GROUP_ID, group));
    }
    if let Some(ds) = &task.datasource {
        annotations.push((ANNOTATION_TASK_DATASOURCE, ds));
    }
    annotations.push((ANNOTATION_JOB_TEMPLATE, template_name));

    decorate(&mut job.metadata, ctx, &labels, &annotations);

    let spec = job
        .spec
        .as_mut()
        .expect("job_from_template always sets the Job spec");
    let pod_meta = spec
        .template
        .metadata
        .get_or_insert_with(ObjectMeta::default);
    decorate(pod_meta, ctx, &labels, &annotations);
    k8s::merge_annotations(pod_meta, [(ANNOTATION_TASK, encoded)]);

    let pod = spec
        .template
        .spec
        .as_mut()
        .expect("parse_pod_template checks the pod spec");
    let main =
        k8s::main_container_mut(pod, config.main_container.as_deref()).map_err(|e| match e {
            AdapterError::InvalidConfig(m) => {
                AdapterError::InvalidConfig(format!("templates.{template_name}: {m}"))
            }
            other => other,
        })?;
    k8s::set_env(main, k8s::env_value(ENV_TASK_ID, task.id.as_str()));
    k8s::set_env(
        main,
        k8s::env_value(ENV_TASK_DIR, config.base_task_dir.as_str()),
    );
    k8s::set_env(
        main,
        k8s::env_field_ref(ENV_TASK_JSON, "metadata.annotations['task']"),
    );
    k8s::set_env(main, k8s::env_value(ENV_POD_TEMPLATE, template_name));

    k8s::apply_limits(&mut job, &ctx.limits);
    k8s::job_output(&job)
}

/// Host labels and annotations first, then Druid's (which win on a clash).
fn decorate(
    meta: &mut ObjectMeta,
    ctx: &Context,
    labels: &[(&str, String)],
    annotations: &[(&str, &str)],
) {
    k8s::merge_labels(
        meta,
        ctx.labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(labels.iter().map(|(k, v)| (*k, v.as_str()))),
    );
    k8s::merge_annotations(
        meta,
        ctx.annotations
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(annotations.iter().copied()),
    );
}

taskpod_adapter_sdk::export_adapter!(PodTemplateAdapter);
