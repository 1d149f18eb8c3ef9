//! Typed Kubernetes helpers for adapters: PodTemplates in, `batch/v1` Jobs out.
//!
//! Adapters receive PodTemplates (and the host's own pod) as JSON text and must return a Job as
//! JSON text. This module owns the typed round trip through `k8s-openapi` (re-exported as
//! [`k8s_openapi`] so that every adapter uses the host's version): parsing with errors that name
//! the template, choosing the main container, setting environment variables, merging labels and
//! annotations, wrapping a pod template into a Job, applying the host's limits and serialising
//! the output.

use std::collections::BTreeMap;

pub use k8s_openapi;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec, PodTemplate, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::error::{ErrorContext as _, invalid_config};
use crate::types::{AdapterError, AdapterOutput, Limits, Pairs};

/// Name of the container treated as the main one when no name is configured.
pub const DEFAULT_MAIN_CONTAINER: &str = "main";

/// Looks up a value by key in ordered pairs (templates, labels, tags).
pub fn lookup<'a>(pairs: &'a Pairs, key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Parses a `v1/PodTemplate` given as JSON and returns its `template`.
///
/// `name` is the template's name in `ctx.templates`; errors are
/// [`AdapterError::InvalidConfig`] naming `templates.{name}` and the field.
pub fn parse_pod_template(name: &str, json: &str) -> Result<PodTemplateSpec, AdapterError> {
    let path = format!("templates.{name}");
    let template: PodTemplate = serde_json::from_str(json).invalid_config_at(&path)?;
    let spec = template.template.ok_or_else(|| {
        invalid_config(format!(
            "{path}: the PodTemplate has no `template` field; put the pod's metadata and spec under `template:`"
        ))
    })?;
    match &spec.spec {
        Some(pod) if !pod.containers.is_empty() => Ok(spec),
        _ => Err(invalid_config(format!(
            "{path}.template.spec.containers: the PodTemplate defines no container; add at least one"
        ))),
    }
}

/// Index of the main container: the one named `name` when given (an error names the containers
/// that exist otherwise), else the one named [`DEFAULT_MAIN_CONTAINER`], else the first.
pub fn main_container_index(spec: &PodSpec, name: Option<&str>) -> Result<usize, AdapterError> {
    if spec.containers.is_empty() {
        return Err(invalid_config(
            "spec.containers: the pod has no container; add at least one",
        ));
    }
    match name {
        Some(wanted) => spec
            .containers
            .iter()
            .position(|c| c.name == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
                invalid_config(format!(
                    "mainContainer: no container named `{wanted}` in the pod (containers: {}); set mainContainer to one of them",
                    names.join(", ")
                ))
            }),
        None => Ok(spec
            .containers
            .iter()
            .position(|c| c.name == DEFAULT_MAIN_CONTAINER)
            .unwrap_or(0)),
    }
}

/// The main container, chosen as by [`main_container_index`].
pub fn main_container_mut<'a>(
    spec: &'a mut PodSpec,
    name: Option<&str>,
) -> Result<&'a mut Container, AdapterError> {
    let i = main_container_index(spec, name)?;
    Ok(&mut spec.containers[i])
}

/// An environment variable with a plain value.
pub fn env_value(name: impl Into<String>, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// An environment variable read from a field of the pod (`valueFrom.fieldRef`), e.g.
/// `metadata.annotations['task']`.
pub fn env_field_ref(name: impl Into<String>, field_path: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: field_path.into(),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// Sets `var` on the container: a variable of the same name is replaced in place (keeping the
/// order of the others), otherwise `var` is appended.
pub fn set_env(container: &mut Container, var: EnvVar) {
    let env = container.env.get_or_insert_with(Vec::new);
    match env.iter_mut().find(|e| e.name == var.name) {
        Some(slot) => *slot = var,
        None => env.push(var),
    }
}

/// Inserts every pair into the map, creating it when absent; later pairs win over earlier ones
/// and over keys already present.
pub fn merge_map<K, V>(
    target: &mut Option<BTreeMap<String, String>>,
    pairs: impl IntoIterator<Item = (K, V)>,
) where
    K: Into<String>,
    V: Into<String>,
{
    let map = target.get_or_insert_with(BTreeMap::new);
    for (k, v) in pairs {
        map.insert(k.into(), v.into());
    }
}

/// Adds labels to an object's metadata (see [`merge_map`]).
pub fn merge_labels<K: Into<String>, V: Into<String>>(
    meta: &mut ObjectMeta,
    pairs: impl IntoIterator<Item = (K, V)>,
) {
    merge_map(&mut meta.labels, pairs);
}

/// Adds annotations to an object's metadata (see [`merge_map`]).
pub fn merge_annotations<K: Into<String>, V: Into<String>>(
    meta: &mut ObjectMeta,
    pairs: impl IntoIterator<Item = (K, V)>,
) {
    merge_map(&mut meta.annotations, pairs);
}

/// Wraps a pod template into a `batch/v1` Job named `name` in `namespace`, with one attempt per
/// task: `backoffLimit: 0` and the pod's `restartPolicy: Never`. The template is kept otherwise
/// unchanged (volumes, tolerations, security context …).
pub fn job_from_template(name: &str, namespace: &str, mut template: PodTemplateSpec) -> Job {
    if let Some(spec) = template.spec.as_mut() {
        spec.restart_policy = Some("Never".to_owned());
    }
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            template,
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// Copies the host's limits into the Job: `activeDeadlineSeconds`, `ttlSecondsAfterFinished`
/// (removed when the host keeps finished Jobs) and the pod's `terminationGracePeriodSeconds`
/// (when configured). Values beyond `i64`/`i32` are clamped.
pub fn apply_limits(job: &mut Job, limits: &Limits) {
    let spec = job.spec.get_or_insert_with(JobSpec::default);
    spec.active_deadline_seconds = Some(clamp_i64(limits.max_duration_seconds));
    spec.ttl_seconds_after_finished = limits
        .cleanup_delay_seconds
        .map(|s| i32::try_from(s).unwrap_or(i32::MAX));
    if let Some(grace) = limits.termination_grace_period_seconds {
        let pod = spec.template.spec.get_or_insert_with(PodSpec::default);
        pod.termination_grace_period_seconds = Some(clamp_i64(grace));
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Serialises a Kubernetes object (or any serialisable value) to JSON text; `what` names it in
/// the error, which is [`AdapterError::Internal`] (serialising typed objects fails only on a bug).
pub fn to_json<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<String, AdapterError> {
    serde_json::to_string(value).internal_at(what)
}

/// Builds the adapter output from a typed Job and typed companion objects.
pub fn output<C: Serialize>(job: &Job, companions: &[C]) -> Result<AdapterOutput, AdapterError> {
    let job = to_json(job, "job")?;
    let companions = companions
        .iter()
        .enumerate()
        .map(|(i, c)| to_json(c, &format!("companions[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AdapterOutput { job, companions })
}

/// Builds the adapter output from a typed Job with no companion objects.
pub fn job_output(job: &Job) -> Result<AdapterOutput, AdapterError> {
    Ok(AdapterOutput {
        job: to_json(job, "job")?,
        companions: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"{
        "apiVersion": "v1", "kind": "PodTemplate",
        "template": {
            "metadata": {"labels": {"app": "x"}},
            "spec": {
                "containers": [
                    {"name": "sidecar", "image": "busybox"},
                    {"name": "main", "image": "apache/druid:30.0.0",
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
                ],
                "restartPolicy": "OnFailure",
                "volumes": [{"name": "data", "emptyDir": {}}]
            }
        }
    }"#;

    #[test]
    fn parses_and_builds_a_job() {
        let tpl = parse_pod_template("base", TEMPLATE).unwrap();
        let mut job = job_from_template("n-1", "druid", tpl);
        let pod = job.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        let main = main_container_mut(pod, None).unwrap();
        assert_eq!(main.name, "main");
        set_env(main, env_value("B", "two"));
        set_env(main, env_field_ref("C", "metadata.annotations['task']"));
        merge_labels(
            job.spec
                .as_mut()
                .unwrap()
                .template
                .metadata
                .as_mut()
                .unwrap(),
            [("team", "t")],
        );
        apply_limits(
            &mut job,
            &Limits {
                termination_grace_period_seconds: Some(30),
                ..Limits::default()
            },
        );
        let out = job_output(&job).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.job).unwrap();
        assert_eq!(v["apiVersion"], "batch/v1");
        assert_eq!(v["kind"], "Job");
        assert_eq!(v["metadata"]["name"], "n-1");
        assert_eq!(v["metadata"]["namespace"], "druid");
        assert_eq!(v["spec"]["backoffLimit"], 0);
        assert_eq!(v["spec"]["activeDeadlineSeconds"], 4 * 3600);
        assert_eq!(v["spec"]["ttlSecondsAfterFinished"], 2 * 24 * 3600);
        let pod = &v["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod["volumes"][0]["name"], "data");
        let env = &pod["containers"][1]["env"];
        assert_eq!(env[0]["value"], "1");
        assert_eq!(env[1]["name"], "B");
        assert_eq!(env[1]["value"], "two");
        assert_eq!(
            env[2]["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.annotations['task']"
        );
        let labels = &v["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["app"], "x");
        assert_eq!(labels["team"], "t");
    }

    #[test]
    fn no_cleanup_delay_means_no_ttl() {
        let tpl = parse_pod_template("base", TEMPLATE).unwrap();
        let mut job = job_from_template("n", "ns", tpl);
        apply_limits(
            &mut job,
            &Limits {
                cleanup_delay_seconds: None,
                ..Limits::default()
            },
        );
        assert_eq!(job.spec.unwrap().ttl_seconds_after_finished, None);
    }

    #[test]
    fn main_container_choice() {
        let tpl = parse_pod_template("base", TEMPLATE).unwrap();
        let pod = tpl.spec.unwrap();
        assert_eq!(main_container_index(&pod, Some("sidecar")).unwrap(), 0);
        let err = main_container_index(&pod, Some("peon"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("peon") && err.contains("sidecar, main"),
            "{err}"
        );
        let mut first_only = pod.clone();
        first_only.containers[1].name = "other".into();
        assert_eq!(main_container_index(&first_only, None).unwrap(), 0);
    }

    #[test]
    fn template_errors_name_the_template() {
        let err = parse_pod_template("compact", "{").unwrap_err();
        assert!(matches!(err, AdapterError::InvalidConfig(_)));
        assert!(err.to_string().contains("templates.compact"), "{err}");
        let err = parse_pod_template("base", r#"{"apiVersion":"v1","kind":"Pod"}"#).unwrap_err();
        assert!(err.to_string().contains("PodTemplate"), "{err}");
        let err =
            parse_pod_template("base", r#"{"apiVersion":"v1","kind":"PodTemplate"}"#).unwrap_err();
        assert!(err.to_string().contains("no `template`"), "{err}");
        let err = parse_pod_template(
            "base",
            r#"{"apiVersion":"v1","kind":"PodTemplate","template":{"spec":{"containers":[]}}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("containers"), "{err}");
    }

    #[test]
    fn lookup_finds_pairs() {
        let pairs: Pairs = vec![("base".into(), "a".into()), ("compact".into(), "b".into())];
        assert_eq!(lookup(&pairs, "compact"), Some("b"));
        assert_eq!(lookup(&pairs, "x"), None);
    }
}
