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
//!   `task.group.id`, `task.datasource`, `tls.enabled` (config `tlsEnabled`), `task.jobTemplate`,
//!   after the host's configured annotations; on the pod also `task`, the gzip+base64 task payload;
//! - on the main container: `TASK_ID`, `TASK_DIR`, `TASK_JSON` (a `fieldRef` to the pod's `task`
//!   annotation) and `DRUID_POD_TEMPLATE`, replacing variables of the same name and keeping the
//!   template's others;
//! - `backoffLimit: 0`, `restartPolicy: Never`, `activeDeadlineSeconds`,
//!   `ttlSecondsAfterFinished` and `terminationGracePeriodSeconds` from the host's limits.
//!
//! Everything else in the template (volumes, tolerations, security context, sidecars …) is kept.
//! A payload whose gzip+base64 form exceeds the inline limit travels in a ConfigMap companion
//! instead (`TASK_JSON_PATH` replaces `TASK_JSON`; see `taskpod_adapter_sdk::transport`); one
//! over the ConfigMap limit is refused as an invalid task. Names and the payload transport are
//! shared with the overlord adapters through `taskpod_adapter_druid`.
//!
//! The logic is plain Rust so that it also runs natively: the host calls
//! `<PodTemplateAdapter as Adapter>::adapt` directly for its native benchmark baseline.

pub mod config;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use taskpod_adapter_druid as druid;
use taskpod_adapter_sdk::{
    Adapter, AdapterError, AdapterInfo, AdapterOutput, Context, Task, k8s, log,
};

pub use config::Config;
pub use druid::{
    ANNOTATION_JOB_TEMPLATE, ANNOTATION_TASK, ANNOTATION_TASK_DATASOURCE, ANNOTATION_TASK_GROUP_ID,
    ANNOTATION_TASK_ID, ANNOTATION_TASK_TYPE, ANNOTATION_TLS_ENABLED, ENV_TASK_DIR, ENV_TASK_ID,
    ENV_TASK_JSON, ENV_TASK_JSON_PATH, LABEL_PEONS, LABEL_TASK_DATASOURCE, LABEL_TASK_GROUP_ID,
    LABEL_TASK_ID, LABEL_TASK_TYPE,
};

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

/// Builds the Job (and a payload ConfigMap when the payload spills) for `task` with an already
/// parsed configuration.
pub fn build(task: &Task, ctx: &Context, config: &Config) -> Result<AdapterOutput, AdapterError> {
    druid::check_task(task)?;

    let (template_name, template_json) = config.select_template(task, &ctx.templates)?;
    log::debug(&format!(
        "task {} uses pod template {template_name}",
        task.id
    ));
    let template = k8s::parse_pod_template(template_name, template_json)?;

    let mut job = k8s::job_from_template(&ctx.job_name, &ctx.namespace, template);

    let labels = druid::peon_labels(task);
    let mut annotations = druid::peon_annotations(task, config.tls_enabled);
    annotations.push((ANNOTATION_JOB_TEMPLATE, template_name.to_owned()));

    druid::decorate(&mut job.metadata, ctx, &labels, &annotations);

    let spec = job
        .spec
        .as_mut()
        .expect("job_from_template always sets the Job spec");
    let pod_meta = spec
        .template
        .metadata
        .get_or_insert_with(ObjectMeta::default);
    druid::decorate(pod_meta, ctx, &labels, &annotations);

    let pod = spec
        .template
        .spec
        .as_mut()
        .expect("parse_pod_template checks the pod spec");
    let main_index =
        k8s::main_container_index(pod, config.main_container.as_deref()).map_err(|e| match e {
            AdapterError::InvalidConfig(m) => {
                AdapterError::InvalidConfig(format!("templates.{template_name}: {m}"))
            }
            other => other,
        })?;
    let main = &mut pod.containers[main_index];
    k8s::set_env(main, k8s::env_value(ENV_TASK_ID, task.id.as_str()));
    k8s::set_env(
        main,
        k8s::env_value(ENV_TASK_DIR, config.base_task_dir.as_str()),
    );
    // Placeholder in Druid's position; attach_payload replaces it (or swaps it for
    // TASK_JSON_PATH when the payload spills).
    k8s::set_env(main, taskpod_adapter_sdk::transport::inline_env());
    k8s::set_env(main, k8s::env_value(ENV_POD_TEMPLATE, template_name));

    let companion = druid::attach_payload(&mut job, main_index, task, ctx)?;
    k8s::apply_limits(&mut job, &ctx.limits);
    match companion {
        Some(cm) => k8s::output(&job, &[cm]),
        None => k8s::job_output(&job),
    }
}

taskpod_adapter_sdk::export_adapter!(PodTemplateAdapter);
