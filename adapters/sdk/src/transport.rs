//! Payload transport: how the task document reaches the pod — inline, or spilled into a
//! ConfigMap companion when it is too large for an annotation or environment variable.
//!
//! Druid carries the task as gzip+base64 text in the pod annotation `task`, read by the peon
//! through `TASK_JSON` (a `fieldRef` to the annotation). Linux limits one environment string to
//! 128 KiB, which is why Druid stops at [`crate::payload::MAX_INLINE_PAYLOAD`] characters. Above
//! that limit this module moves the same gzip+base64 text into a ConfigMap named after the Job
//! (`{job-name}-payload`), which the host creates owned by the Job; the ConfigMap is mounted
//! read-only at [`SPILL_MOUNT_PATH`] and the main container gets `TASK_JSON_PATH` (the file's
//! path, [`SPILL_FILE_PATH`]) instead of `TASK_JSON`. A peon entry script reads it with
//! `base64 -d < "$TASK_JSON_PATH" | gzip -d`. Above the ConfigMap limit of 1 MiB of data the
//! task is refused with both sizes in the message.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, PodSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::error::invalid_task;
use crate::k8s;
use crate::types::AdapterError;

/// Pod annotation that carries an inline payload (Druid's `task`).
pub const ANNOTATION_TASK: &str = "task";
/// Environment variable holding the inline payload (a `fieldRef` to the `task` annotation).
pub const ENV_TASK_JSON: &str = "TASK_JSON";
/// Environment variable holding the path of a spilled payload file.
pub const ENV_TASK_JSON_PATH: &str = "TASK_JSON_PATH";
/// Key of the payload in the spill ConfigMap (the file name inside the mount).
pub const SPILL_KEY: &str = "task";
/// Name of the pod volume that mounts the spill ConfigMap.
pub const SPILL_VOLUME: &str = "taskpod-payload";
/// Directory the spill ConfigMap is mounted at in the main container.
pub const SPILL_MOUNT_PATH: &str = "/var/run/taskpod/payload";
/// Path of the spilled payload file (`{SPILL_MOUNT_PATH}/{SPILL_KEY}`).
pub const SPILL_FILE_PATH: &str = "/var/run/taskpod/payload/task";
/// Suffix of the spill ConfigMap's name after the Job name.
pub const SPILL_SUFFIX: &str = "-payload";
/// Largest total size of a ConfigMap's data that the API server accepts (1 MiB).
pub const MAX_CONFIGMAP_DATA: usize = 1024 * 1024;

/// How the payload travels to the pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Carrier {
    /// In the pod's `task` annotation; `TASK_JSON` reads it.
    Inline(String),
    /// In this ConfigMap (a companion of the Job), mounted into the main container.
    ConfigMap(Box<ConfigMap>),
}

/// Name of the ConfigMap a payload spills into for the Job `job_name`.
pub fn spill_name(job_name: &str) -> String {
    format!("{job_name}{SPILL_SUFFIX}")
}

/// Chooses the carrier for an already encoded (gzip+base64) payload: inline up to
/// `max_inline` characters, else a ConfigMap named [`spill_name`] in `namespace` carrying
/// `labels`; an [`AdapterError::InvalidTask`] naming both sizes when even the ConfigMap would be
/// over [`MAX_CONFIGMAP_DATA`].
pub fn choose(
    task_id: &str,
    encoded: String,
    max_inline: usize,
    job_name: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Result<Carrier, AdapterError> {
    if encoded.len() <= max_inline {
        return Ok(Carrier::Inline(encoded));
    }
    let data_size = encoded.len() + SPILL_KEY.len();
    if data_size > MAX_CONFIGMAP_DATA {
        return Err(invalid_task(format!(
            "payload: task `{task_id}` is {} characters as gzip+base64, over both the inline limit of {max_inline} and the ConfigMap data limit of {MAX_CONFIGMAP_DATA} bytes; shrink the task (e.g. move inline data or specs to files the task reads)",
            encoded.len()
        )));
    }
    Ok(Carrier::ConfigMap(Box::new(ConfigMap {
        metadata: ObjectMeta {
            name: Some(spill_name(job_name)),
            namespace: Some(namespace.to_owned()),
            labels: (!labels.is_empty()).then(|| labels.clone()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(SPILL_KEY.to_owned(), encoded)])),
        immutable: Some(true),
        ..ConfigMap::default()
    })))
}

/// Wires a spill ConfigMap into the pod: a read-only volume [`SPILL_VOLUME`] from the
/// ConfigMap, its mount at [`SPILL_MOUNT_PATH`] in `main`, `TASK_JSON_PATH` set and any
/// `TASK_JSON` removed from `main`.
pub fn mount_spill(pod: &mut PodSpec, main: usize, config_map: &ConfigMap) {
    let name = config_map.metadata.name.clone().unwrap_or_default();
    pod.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: SPILL_VOLUME.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name,
            optional: Some(false),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    });
    let container: &mut Container = &mut pod.containers[main];
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: SPILL_VOLUME.to_owned(),
            mount_path: SPILL_MOUNT_PATH.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    if let Some(env) = container.env.as_mut() {
        env.retain(|e| e.name != ENV_TASK_JSON);
    }
    k8s::set_env(
        container,
        k8s::env_value(ENV_TASK_JSON_PATH, SPILL_FILE_PATH),
    );
}

/// The `TASK_JSON` variable of an inline payload: a `fieldRef` to the pod's `task` annotation.
pub fn inline_env() -> k8s_openapi::api::core::v1::EnvVar {
    k8s::env_field_ref(ENV_TASK_JSON, "metadata.annotations['task']")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Container;

    fn pod() -> PodSpec {
        let mut main = Container {
            name: "main".into(),
            ..Container::default()
        };
        k8s::set_env(&mut main, k8s::env_value(ENV_TASK_JSON, "old"));
        PodSpec {
            containers: vec![main],
            ..PodSpec::default()
        }
    }

    #[test]
    fn inline_up_to_the_limit() {
        let labels = BTreeMap::new();
        let c = choose("t", "x".repeat(10), 10, "job", "ns", &labels).unwrap();
        assert_eq!(c, Carrier::Inline("x".repeat(10)));
    }

    #[test]
    fn spills_above_the_limit_and_mounts() {
        let labels = BTreeMap::from([("a".to_owned(), "b".to_owned())]);
        let Carrier::ConfigMap(cm) = choose("t", "x".repeat(11), 10, "job", "ns", &labels).unwrap()
        else {
            panic!("expected a ConfigMap");
        };
        assert_eq!(cm.metadata.name.as_deref(), Some("job-payload"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(cm.data.as_ref().unwrap()[SPILL_KEY].len(), 11);
        let mut p = pod();
        mount_spill(&mut p, 0, &cm);
        let env = p.containers[0].env.as_ref().unwrap();
        assert_eq!(env.len(), 1);
        assert_eq!(env[0].name, ENV_TASK_JSON_PATH);
        assert_eq!(env[0].value.as_deref(), Some(SPILL_FILE_PATH));
        assert_eq!(
            p.volumes.as_ref().unwrap()[0]
                .config_map
                .as_ref()
                .unwrap()
                .name,
            "job-payload"
        );
        assert_eq!(
            p.containers[0].volume_mounts.as_ref().unwrap()[0].mount_path,
            SPILL_MOUNT_PATH
        );
    }

    #[test]
    fn over_the_configmap_limit_names_both_sizes() {
        let err = choose(
            "big",
            "x".repeat(MAX_CONFIGMAP_DATA),
            10,
            "job",
            "ns",
            &BTreeMap::new(),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("1048576 characters"), "{msg}");
        assert!(msg.contains("limit of 1048576 bytes"), "{msg}");
        assert!(msg.contains("`big`"), "{msg}");
    }
}
