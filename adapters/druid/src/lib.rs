//! Apache Druid's peon Job conventions, shared by taskpod's Druid adapters (`pod-template`,
//! `overlord-single`, `overlord-multi`).
//!
//! Druid's Kubernetes task runner marks every peon Job and pod the same way whatever adapter
//! built it — labels `druid.k8s.peons`, `druid.task.*`; annotations `task.id`, `task.type`,
//! `tls.enabled` …; the payload in the pod annotation `task` read through `TASK_JSON` — so that
//! the overlord, dashboards and scripts find them. This crate owns those names and the code that
//! applies them ([`peon_labels`], [`peon_annotations`], [`decorate`], [`attach_payload`]), so the
//! adapters cannot drift apart; [`overlord`] holds the overlord-copy Job builder used by both
//! `overlord-single` and `overlord-multi`.
//!
//! It is a plain library (no component exports), so that each adapter crate exports exactly one
//! `pod-adapter` world.

pub mod overlord;

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use taskpod_adapter_sdk::error::{ErrorContext as _, invalid_task};
use taskpod_adapter_sdk::transport::{self, Carrier};
use taskpod_adapter_sdk::{AdapterError, Context, Task, k8s, names, payload};

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
/// Annotation: whether the peon serves TLS (`"true"`/`"false"`), as Druid's `tls.enabled`.
pub const ANNOTATION_TLS_ENABLED: &str = "tls.enabled";
/// Annotation: the name of the template the Job was built from (pod-template only).
pub const ANNOTATION_JOB_TEMPLATE: &str = "task.jobTemplate";
/// Pod annotation holding the gzip+base64 task payload.
pub const ANNOTATION_TASK: &str = transport::ANNOTATION_TASK;
/// Environment variable: the task id.
pub const ENV_TASK_ID: &str = "TASK_ID";
/// Environment variable: the task directory.
pub const ENV_TASK_DIR: &str = "TASK_DIR";
/// Environment variable: the task payload (from the `task` annotation).
pub const ENV_TASK_JSON: &str = transport::ENV_TASK_JSON;
/// Environment variable: the path of a spilled payload (see [`transport`]).
pub const ENV_TASK_JSON_PATH: &str = transport::ENV_TASK_JSON_PATH;
/// Default task directory: Druid's `druid.indexer.task.baseTaskDir` in its examples.
pub const DEFAULT_BASE_TASK_DIR: &str = "/druid/data";

/// Druid's labels for `task`: `druid.k8s.peons`, `druid.task.id`, `druid.task.type`, and
/// `druid.task.group.id` / `druid.task.datasource` when the task has them (sanitised values).
pub fn peon_labels(task: &Task) -> Vec<(&'static str, String)> {
    let mut labels = Vec::with_capacity(5);
    labels.push((LABEL_PEONS, "true".to_owned()));
    labels.push((LABEL_TASK_ID, names::task_id_label(&task.id)));
    labels.push((LABEL_TASK_TYPE, names::sanitize_label_value(&task.kind)));
    if let Some(group) = &task.group_id {
        labels.push((LABEL_TASK_GROUP_ID, names::task_id_label(group)));
    }
    if let Some(ds) = &task.datasource {
        labels.push((LABEL_TASK_DATASOURCE, names::sanitize_label_value(ds)));
    }
    labels
}

/// Druid's annotations for `task`: `task.id`, `task.type`, `task.group.id` and `task.datasource`
/// when present, and `tls.enabled`.
pub fn peon_annotations(task: &Task, tls_enabled: bool) -> Vec<(&'static str, String)> {
    let mut annotations = Vec::with_capacity(6);
    annotations.push((ANNOTATION_TASK_ID, task.id.clone()));
    annotations.push((ANNOTATION_TASK_TYPE, task.kind.clone()));
    if let Some(group) = &task.group_id {
        annotations.push((ANNOTATION_TASK_GROUP_ID, group.clone()));
    }
    if let Some(ds) = &task.datasource {
        annotations.push((ANNOTATION_TASK_DATASOURCE, ds.clone()));
    }
    annotations.push((ANNOTATION_TLS_ENABLED, tls_enabled.to_string()));
    annotations
}

/// Puts the host's configured labels and annotations on `meta`, then Druid's (which win on a
/// clash).
pub fn decorate(
    meta: &mut ObjectMeta,
    ctx: &Context,
    labels: &[(&str, String)],
    annotations: &[(&str, String)],
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
            .chain(annotations.iter().map(|(k, v)| (*k, v.as_str()))),
    );
}

/// Checks that the task has an id and a JSON payload; errors name the field.
pub fn check_task(task: &Task) -> Result<(), AdapterError> {
    if task.id.is_empty() {
        return Err(invalid_task("id: the task has no id"));
    }
    serde_json::from_str::<serde::de::IgnoredAny>(&task.payload).invalid_task_at("payload")?;
    Ok(())
}

/// Carries the task payload to the Job's main container (index `main`), as described in
/// [`transport`]: inline in the pod annotation `task` with `TASK_JSON` reading it, or, when the
/// gzip+base64 text is over `ctx.limits.max_inline_payload`, in a ConfigMap companion (returned)
/// labelled with the Job's labels and mounted into the main container with `TASK_JSON_PATH`.
pub fn attach_payload(
    job: &mut Job,
    main: usize,
    task: &Task,
    ctx: &Context,
) -> Result<Option<k8s_openapi::api::core::v1::ConfigMap>, AdapterError> {
    let encoded = payload::encode(&task.payload);
    let job_labels: BTreeMap<String, String> = job.metadata.labels.clone().unwrap_or_default();
    let carrier = transport::choose(
        &task.id,
        encoded,
        ctx.limits.max_inline_payload as usize,
        &ctx.job_name,
        &ctx.namespace,
        &job_labels,
    )?;
    let spec = job
        .spec
        .as_mut()
        .ok_or_else(|| taskpod_adapter_sdk::error::internal("job.spec: missing"))?;
    let pod: &mut PodSpec =
        spec.template.spec.as_mut().ok_or_else(|| {
            taskpod_adapter_sdk::error::internal("job.spec.template.spec: missing")
        })?;
    match carrier {
        Carrier::Inline(text) => {
            k8s::set_env(&mut pod.containers[main], transport::inline_env());
            let meta = spec
                .template
                .metadata
                .get_or_insert_with(ObjectMeta::default);
            k8s::merge_annotations(meta, [(ANNOTATION_TASK, text)]);
            Ok(None)
        }
        Carrier::ConfigMap(cm) => {
            transport::mount_spill(pod, main, &cm);
            taskpod_adapter_sdk::log::info(&format!(
                "task {} payload spills into ConfigMap {}",
                task.id,
                transport::spill_name(&ctx.job_name)
            ));
            Ok(Some(*cm))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_annotations_follow_druid() {
        let task = Task {
            id: "index_kafka_wiki_2026".into(),
            kind: "index_kafka".into(),
            datasource: Some("wiki".into()),
            ..Task::default()
        };
        let labels = peon_labels(&task);
        assert_eq!(labels[0], (LABEL_PEONS, "true".to_owned()));
        assert!(labels.iter().any(|(k, _)| *k == LABEL_TASK_DATASOURCE));
        assert!(!labels.iter().any(|(k, _)| *k == LABEL_TASK_GROUP_ID));
        let ann = peon_annotations(&task, true);
        assert!(ann.contains(&(ANNOTATION_TLS_ENABLED, "true".to_owned())));
        assert!(ann.contains(&(ANNOTATION_TASK_ID, task.id.clone())));
    }

    #[test]
    fn bad_tasks_are_named() {
        assert!(
            check_task(&Task::default())
                .unwrap_err()
                .to_string()
                .contains("id:")
        );
        let t = Task {
            id: "x".into(),
            payload: "{".into(),
            ..Task::default()
        };
        assert!(check_task(&t).unwrap_err().to_string().contains("payload:"));
    }
}
