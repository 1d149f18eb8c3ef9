//! The Teraslice master's Kubernetes settings: the `teraslice` adapter's configuration.
//!
//! The keys are the ones a Teraslice operator already has in the master's `teraslice` section
//! (seed 003, "Kubernetes Specific Configuration Settings"), spelt the same way, so the block can
//! be copied from `teraslice-master.yaml` into the adapter binding's `config`. Unknown keys are
//! rejected so a misspelt setting never silently falls back to a default. The namespace is the
//! host's (`kubernetes_namespace` is accepted for copy-paste compatibility and must match it when
//! given); `kubernetes_api_poll_delay` is accepted and unused, because the host watches Jobs
//! instead of polling.

use std::collections::BTreeMap;

use serde::Deserialize;
use taskpod_adapter_sdk::AdapterError;
use taskpod_adapter_sdk::error::{self, invalid_config};

use crate::job::{Quantity, Target};

/// Default image when neither the job nor the master names one (Teraslice's default).
pub const DEFAULT_IMAGE: &str = "teraslice:k8sdev";
/// Default cluster name (`teraslice.name`).
pub const DEFAULT_CLUSTER_NAME: &str = "teraslice";
/// Default execution controller CPU, in Kubernetes CPU units.
pub const DEFAULT_CPU_EXECUTION_CONTROLLER: f64 = 0.5;
/// Default execution controller memory, in bytes (512 MB).
pub const DEFAULT_MEMORY_EXECUTION_CONTROLLER: u64 = 512_000_000;
/// Default shutdown timeout in milliseconds (`terminationGracePeriodSeconds` = this / 1000).
pub const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 60_000;

/// JSON Schema of [`Config`], returned by `info`.
pub const CONFIG_SCHEMA: &str = r##"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "teraslice adapter configuration (the Teraslice master's Kubernetes settings)",
  "type": "object",
  "additionalProperties": false,
  "$defs": {
    "quantity": { "oneOf": [ { "type": "number", "exclusiveMinimum": 0 }, { "type": "string", "minLength": 1 } ] },
    "target": {
      "type": "object", "additionalProperties": false, "required": ["key", "value"],
      "properties": {
        "key": { "type": "string", "minLength": 1 },
        "value": { "type": "string" },
        "constraint": { "enum": ["required", "preferred", "accepted"] }
      }
    }
  },
  "properties": {
    "name": { "description": "Teraslice cluster name (app.kubernetes.io/instance label, default ConfigMap name).", "type": "string", "minLength": 1, "default": "teraslice" },
    "assets_volume": { "description": "PersistentVolumeClaim shared by all pods for Teraslice assets; needs assets_directory.", "type": "string", "minLength": 1 },
    "assets_directory": { "description": "Where assets_volume is mounted.", "type": "string", "minLength": 1 },
    "cpu": { "description": "Legacy worker CPU (requests = limits), overridden by the job's cpu.", "$ref": "#/$defs/quantity" },
    "memory": { "description": "Legacy worker memory in bytes (requests = limits), overridden by the job's memory.", "$ref": "#/$defs/quantity" },
    "cpu_execution_controller": { "description": "Execution controller CPU request and limit.", "$ref": "#/$defs/quantity", "default": 0.5 },
    "memory_execution_controller": { "description": "Execution controller memory request and limit, bytes.", "$ref": "#/$defs/quantity", "default": 512000000 },
    "execution_controller_targets": { "description": "Required node affinity plus toleration for execution controllers.", "type": "array", "items": { "$ref": "#/$defs/target" } },
    "env_vars": { "description": "Environment of every pod; the job's env_vars win.", "type": "object", "additionalProperties": { "type": "string" } },
    "kubernetes_api_poll_delay": { "description": "Accepted for compatibility; unused (the host watches).", "type": "integer" },
    "kubernetes_image": { "description": "Image of Teraslice pods when the job names none.", "type": "string", "minLength": 1, "default": "teraslice:k8sdev" },
    "kubernetes_image_pull_secret": { "description": "Secret used to pull the image.", "type": "string", "minLength": 1 },
    "kubernetes_config_map_name": { "description": "ConfigMap with teraslice.yaml mounted at /app/config; default <name>-worker.", "type": "string", "minLength": 1 },
    "kubernetes_namespace": { "description": "Must equal the host's namespace when given.", "type": "string" },
    "kubernetes_overrides_enabled": { "description": "Allow jobs' pod_spec_override.", "type": "boolean", "default": false },
    "kubernetes_priority_class_name": { "description": "Priority class of execution controllers and stateful workers.", "type": "string", "minLength": 1 },
    "kubernetes_worker_antiaffinity": { "description": "Spread workers over nodes (preferred pod anti-affinity).", "type": "boolean", "default": false },
    "shutdown_timeout": { "description": "Milliseconds a pod gets to stop (terminationGracePeriodSeconds = /1000).", "type": "integer", "minimum": 0, "default": 60000 }
  }
}"##;

/// The Teraslice master's Kubernetes settings (see the module documentation).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Cluster name: the `app.kubernetes.io/instance` label (as `clusterNameLabel`) and the
    /// default ConfigMap name `<name>-worker`.
    #[serde(default = "default_name")]
    pub name: String,
    /// PersistentVolumeClaim holding Teraslice assets, mounted in every pod.
    #[serde(default)]
    pub assets_volume: Option<String>,
    /// Mount path of [`Config::assets_volume`].
    #[serde(default)]
    pub assets_directory: Option<String>,
    /// Legacy worker CPU (requests = limits).
    #[serde(default)]
    pub cpu: Option<Quantity>,
    /// Legacy worker memory in bytes (requests = limits).
    #[serde(default)]
    pub memory: Option<Quantity>,
    /// Execution controller CPU (request and limit); the job's value wins.
    #[serde(default)]
    pub cpu_execution_controller: Option<Quantity>,
    /// Execution controller memory in bytes (request and limit); the job's value wins.
    #[serde(default)]
    pub memory_execution_controller: Option<Quantity>,
    /// Targets of every execution controller: each one a required node affinity term and a
    /// toleration.
    #[serde(default)]
    pub execution_controller_targets: Vec<Target>,
    /// Environment variables of every pod; the job's `env_vars` win.
    #[serde(default)]
    pub env_vars: BTreeMap<String, String>,
    /// Accepted for compatibility, unused.
    #[serde(default)]
    pub kubernetes_api_poll_delay: Option<u64>,
    /// Image when the job names none.
    #[serde(default = "default_image")]
    pub kubernetes_image: String,
    /// Image pull secret of every pod.
    #[serde(default)]
    pub kubernetes_image_pull_secret: Option<String>,
    /// ConfigMap holding `teraslice.yaml`; default `<name>-worker`.
    #[serde(default)]
    pub kubernetes_config_map_name: Option<String>,
    /// Must equal the host's namespace when given.
    #[serde(default)]
    pub kubernetes_namespace: Option<String>,
    /// Apply the jobs' `pod_spec_override` (refused otherwise).
    #[serde(default)]
    pub kubernetes_overrides_enabled: bool,
    /// Priority class of execution controllers and stateful workers.
    #[serde(default)]
    pub kubernetes_priority_class_name: Option<String>,
    /// Preferred pod anti-affinity between the cluster's workers.
    #[serde(default)]
    pub kubernetes_worker_antiaffinity: bool,
    /// Milliseconds a pod gets to stop.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: u64,
}

fn default_name() -> String {
    DEFAULT_CLUSTER_NAME.to_owned()
}

fn default_image() -> String {
    DEFAULT_IMAGE.to_owned()
}

fn default_shutdown_timeout() -> u64 {
    DEFAULT_SHUTDOWN_TIMEOUT_MS
}

impl Default for Config {
    fn default() -> Self {
        error::parse_config("{}").expect("the empty configuration is valid")
    }
}

impl Config {
    /// Parses and checks a configuration; errors name the key and the fix.
    pub fn parse(config: &str) -> Result<Config, AdapterError> {
        let config: Config = error::parse_config(config)?;
        if config.name.trim().is_empty() {
            return Err(invalid_config(
                "config.name: the Teraslice cluster name is empty; set it as in teraslice.name",
            ));
        }
        if config.kubernetes_image.trim().is_empty() {
            return Err(invalid_config(
                "config.kubernetes_image: empty; name the Teraslice image or leave the key out",
            ));
        }
        match (&config.assets_volume, &config.assets_directory) {
            (Some(_), None) => {
                return Err(invalid_config(
                    "config.assets_directory: assets_volume is set but not where to mount it; add assets_directory (the master's assets path)",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid_config(
                    "config.assets_volume: assets_directory is set without the volume to mount there; add assets_volume (a PersistentVolumeClaim name)",
                ));
            }
            _ => {}
        }
        for (i, target) in config.execution_controller_targets.iter().enumerate() {
            target.check().map_err(|e| {
                invalid_config(format!("config.execution_controller_targets[{i}].{e}"))
            })?;
        }
        for (value, field) in [
            (&config.cpu, "cpu"),
            (&config.memory, "memory"),
            (&config.cpu_execution_controller, "cpu_execution_controller"),
            (
                &config.memory_execution_controller,
                "memory_execution_controller",
            ),
        ] {
            if let Some(q) = value {
                q.check()
                    .map_err(|e| invalid_config(format!("config.{field}: {e}")))?;
            }
        }
        Ok(config)
    }

    /// The ConfigMap mounted at `/app/config`: `kubernetes_config_map_name` or `<name>-worker`.
    pub fn config_map_name(&self) -> String {
        self.kubernetes_config_map_name
            .clone()
            .unwrap_or_else(|| format!("{}-worker", self.name))
    }

    /// The cluster name as a label value, as Teraslice's `clusterNameLabel`: characters outside
    /// `[A-Za-z0-9_.-]` become `_`, at most 63 characters (then trimmed to start and end
    /// alphanumeric, which Kubernetes requires).
    pub fn cluster_name_label(&self) -> String {
        let replaced: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .take(63)
            .collect();
        replaced
            .trim_matches(|c: char| !c.is_ascii_alphanumeric())
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_names() {
        let c = Config::parse("{}").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.kubernetes_image, "teraslice:k8sdev");
        assert_eq!(c.config_map_name(), "teraslice-worker");
        assert_eq!(c.shutdown_timeout, 60_000);
        let c = Config::parse(r#"{"name": "ts dev/1"}"#).unwrap();
        assert_eq!(c.cluster_name_label(), "ts_dev_1");
        assert_eq!(c.config_map_name(), "ts dev/1-worker");
        let schema: serde_json::Value = serde_json::from_str(CONFIG_SCHEMA).unwrap();
        assert_eq!(schema["additionalProperties"], false);
    }

    #[test]
    fn errors_name_the_key() {
        let err = Config::parse(r#"{"kubernetes_imag": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("kubernetes_imag"), "{err}");
        let err = Config::parse(r#"{"assets_volume": "assets"}"#).unwrap_err();
        assert!(err.to_string().contains("config.assets_directory"), "{err}");
        let err = Config::parse(r#"{"execution_controller_targets": [{"key": "", "value": "x"}]}"#)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("config.execution_controller_targets[0].key"),
            "{err}"
        );
        let err = Config::parse(r#"{"cpu_execution_controller": -1}"#).unwrap_err();
        assert!(
            err.to_string().contains("config.cpu_execution_controller"),
            "{err}"
        );
        let err = Config::parse(r#"{"name": " "}"#).unwrap_err();
        assert!(err.to_string().contains("config.name"), "{err}");
    }
}
