//! The Teraslice job (the task payload): the properties seed 003 adds for Kubernetes.
//!
//! A Teraslice job carries many keys the Kubernetes backend never reads (operations, assets,
//! lifecycle …), so unknown keys are kept out of the way rather than rejected; the keys read here
//! are checked for type and shape, and every error names the payload field and the fix.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use taskpod_adapter_sdk::AdapterError;
use taskpod_adapter_sdk::error::{ErrorContext as _, invalid_task};

/// Teraslice's default number of workers when a job does not say.
pub const DEFAULT_WORKERS: i32 = 5;

/// A CPU or memory amount: a JSON number (Kubernetes CPU units, or bytes) or a Kubernetes
/// quantity string such as `500m` or `1Gi`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Quantity {
    /// A plain number.
    Number(f64),
    /// A Kubernetes quantity string.
    Text(String),
}

impl Quantity {
    /// Checks that the amount is positive (numbers) or non-empty (strings).
    pub fn check(&self) -> Result<(), String> {
        match self {
            Quantity::Number(n) if !(n.is_finite() && *n > 0.0) => {
                Err(format!("{n} is not a positive amount"))
            }
            Quantity::Text(s) if s.trim().is_empty() => Err("empty quantity".to_owned()),
            _ => Ok(()),
        }
    }

    /// The Kubernetes quantity text: whole numbers without a fraction (`1`, `536870912`),
    /// others in shortest decimal form (`0.25`).
    pub fn to_k8s(&self) -> String {
        match self {
            Quantity::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => format!("{}", *n as i64),
            Quantity::Number(n) => format!("{n}"),
            Quantity::Text(s) => s.trim().to_owned(),
        }
    }

    /// The amount in bytes when it is a plain number (for `NODE_OPTIONS`).
    pub fn bytes(&self) -> Option<f64> {
        match self {
            Quantity::Number(n) => Some(*n),
            Quantity::Text(s) => s.trim().parse().ok(),
        }
    }
}

/// How a target constrains scheduling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Constraint {
    /// The pod runs only on nodes with the label (the default).
    #[default]
    Required,
    /// Nodes with the label are preferred (weight 1).
    Preferred,
    /// The pod tolerates the taint `key=value:NoSchedule`.
    Accepted,
}

/// One entry of `targets` (or of the master's `execution_controller_targets`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Node label (or taint) key.
    pub key: String,
    /// Node label (or taint) value.
    pub value: String,
    /// How the target applies; `required` when absent.
    #[serde(default)]
    pub constraint: Constraint,
}

impl Target {
    /// Checks the key is usable; the error starts with the field name (`key: …`).
    pub fn check(&self) -> Result<(), String> {
        if self.key.trim().is_empty() {
            return Err("key: empty; give the node label key, e.g. \"zone\"".to_owned());
        }
        Ok(())
    }
}

/// A PersistentVolumeClaim to mount (`volumes`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// The PersistentVolumeClaim's name (also the volume's name in the pod).
    pub name: String,
    /// Mount path in the containers.
    pub path: String,
}

/// One of `external_ports`: a bare number or `{name, port}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ExternalPort {
    /// `9090`
    Number(i32),
    /// `{"name": "metrics", "port": 3333}`
    Named {
        /// Port name.
        name: String,
        /// Port number.
        port: i32,
    },
}

/// The Kubernetes-related properties of a Teraslice job.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TerasliceJob {
    /// Job name (required): the `jobName` label and part of the resource names.
    pub name: String,
    /// Teraslice job id; default: the task's group id, else the task id.
    #[serde(default)]
    pub job_id: Option<String>,
    /// Execution id; default: the task id.
    #[serde(default)]
    pub ex_id: Option<String>,
    /// Number of workers (Deployment replicas).
    #[serde(default = "default_workers")]
    pub workers: i32,
    /// Node targets of workers and execution controller.
    #[serde(default)]
    pub targets: Vec<Target>,
    /// Worker CPU request.
    #[serde(default)]
    pub resources_requests_cpu: Option<Quantity>,
    /// Worker CPU limit.
    #[serde(default)]
    pub resources_limits_cpu: Option<Quantity>,
    /// Worker memory request (bytes).
    #[serde(default)]
    pub resources_requests_memory: Option<Quantity>,
    /// Worker memory limit (bytes).
    #[serde(default)]
    pub resources_limits_memory: Option<Quantity>,
    /// Legacy worker CPU (requests = limits).
    #[serde(default)]
    pub cpu: Option<Quantity>,
    /// Legacy worker memory (requests = limits).
    #[serde(default)]
    pub memory: Option<Quantity>,
    /// Execution controller CPU.
    #[serde(default)]
    pub cpu_execution_controller: Option<Quantity>,
    /// Execution controller memory (bytes).
    #[serde(default)]
    pub memory_execution_controller: Option<Quantity>,
    /// PersistentVolumeClaims to mount.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// An emptyDir at `/ephemeral0`.
    #[serde(default)]
    pub ephemeral_storage: bool,
    /// Extra container ports of every pod.
    #[serde(default)]
    pub external_ports: Vec<ExternalPort>,
    /// Labels, prefixed `job.teraslice.terascope.io/`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Stateful workers: priority class and the stateful label.
    #[serde(default)]
    pub stateful: bool,
    /// Image of this job's pods (wins over the master's).
    #[serde(default)]
    pub kubernetes_image: Option<String>,
    /// Environment variables (win over the master's).
    #[serde(default)]
    pub env_vars: BTreeMap<String, String>,
    /// Overlay merged onto every pod `.spec` (only with `kubernetes_overrides_enabled`).
    #[serde(default)]
    pub pod_spec_override: Option<Value>,
}

fn default_workers() -> i32 {
    DEFAULT_WORKERS
}

impl TerasliceJob {
    /// Parses the task payload; errors name the payload field.
    pub fn parse(payload: &str) -> Result<TerasliceJob, AdapterError> {
        let value: Value = serde_json::from_str(payload).invalid_task_at("payload")?;
        if !value.is_object() {
            return Err(invalid_task(
                "payload: a Teraslice job must be a JSON object (the job definition)",
            ));
        }
        if value.get("name").is_none() {
            return Err(invalid_task(
                "payload.name: the Teraslice job has no name; add \"name\"",
            ));
        }
        // Field by field, so that the error names the property.
        let job: TerasliceJob = serde_json::from_value(value.clone()).map_err(|e| {
            let field = value
                .as_object()
                .into_iter()
                .flat_map(|m| m.iter())
                .find(|(k, v)| {
                    let mut probe = serde_json::Map::new();
                    probe.insert("name".into(), Value::String("x".into()));
                    probe.insert((*k).clone(), (*v).clone());
                    serde_json::from_value::<TerasliceJob>(Value::Object(probe)).is_err()
                })
                .map(|(k, _)| k.clone());
            match field {
                Some(f) => invalid_task(format!("payload.{f}: {e}")),
                None => invalid_task(format!("payload: {e}")),
            }
        })?;
        job.check()?;
        Ok(job)
    }

    fn check(&self) -> Result<(), AdapterError> {
        if self.name.trim().is_empty() {
            return Err(invalid_task("payload.name: empty; name the Teraslice job"));
        }
        if self.workers < 0 {
            return Err(invalid_task(format!(
                "payload.workers: {} is negative; give the number of workers",
                self.workers
            )));
        }
        for (i, t) in self.targets.iter().enumerate() {
            t.check()
                .map_err(|e| invalid_task(format!("payload.targets[{i}].{e}")))?;
        }
        for (field, q) in [
            ("resources_requests_cpu", &self.resources_requests_cpu),
            ("resources_limits_cpu", &self.resources_limits_cpu),
            ("resources_requests_memory", &self.resources_requests_memory),
            ("resources_limits_memory", &self.resources_limits_memory),
            ("cpu", &self.cpu),
            ("memory", &self.memory),
            ("cpu_execution_controller", &self.cpu_execution_controller),
            (
                "memory_execution_controller",
                &self.memory_execution_controller,
            ),
        ] {
            if let Some(q) = q {
                q.check()
                    .map_err(|e| invalid_task(format!("payload.{field}: {e}")))?;
            }
        }
        for (i, v) in self.volumes.iter().enumerate() {
            if v.name.trim().is_empty() {
                return Err(invalid_task(format!(
                    "payload.volumes[{i}].name: empty; give the PersistentVolumeClaim's name"
                )));
            }
            if !v.path.starts_with('/') {
                return Err(invalid_task(format!(
                    "payload.volumes[{i}].path: {:?} is not an absolute path; give where to mount the volume, e.g. \"/data\"",
                    v.path
                )));
            }
        }
        for (i, p) in self.external_ports.iter().enumerate() {
            let port = match p {
                ExternalPort::Number(n) => *n,
                ExternalPort::Named { port, .. } => *port,
            };
            if !(1..=65_535).contains(&port) {
                return Err(invalid_task(format!(
                    "payload.external_ports[{i}]: port {port} is outside 1..=65535"
                )));
            }
        }
        if let Some(o) = &self.pod_spec_override
            && !o.is_object()
        {
            return Err(invalid_task(
                "payload.pod_spec_override: must be a JSON object laid over the pod .spec",
            ));
        }
        Ok(())
    }

    /// Whether any of the new `resources_*` properties is set (then the legacy `cpu`/`memory`
    /// of the job and of the master are ignored, as seed 003 says).
    pub fn uses_new_resources(&self) -> bool {
        self.resources_requests_cpu.is_some()
            || self.resources_limits_cpu.is_some()
            || self.resources_requests_memory.is_some()
            || self.resources_limits_memory.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(Quantity::Number(0.25).to_k8s(), "0.25");
        assert_eq!(Quantity::Number(1.0).to_k8s(), "1");
        assert_eq!(Quantity::Number(536_870_912.0).to_k8s(), "536870912");
        assert_eq!(Quantity::Text(" 1Gi ".into()).to_k8s(), "1Gi");
        assert!(Quantity::Number(0.0).check().is_err());
        assert!(Quantity::Text("".into()).check().is_err());
    }

    #[test]
    fn errors_name_the_property() {
        let err = TerasliceJob::parse(r#"{"workers": 2}"#).unwrap_err();
        assert!(err.to_string().contains("payload.name"), "{err}");
        let err = TerasliceJob::parse(r#"{"name": "a", "workers": "two"}"#).unwrap_err();
        assert!(err.to_string().contains("payload.workers"), "{err}");
        let err = TerasliceJob::parse(
            r#"{"name": "a", "targets": [{"key": "zone", "value": "w", "constraint": "maybe"}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("payload.targets"), "{err}");
        let err =
            TerasliceJob::parse(r#"{"name": "a", "volumes": [{"name": "v", "path": "data"}]}"#)
                .unwrap_err();
        assert!(err.to_string().contains("payload.volumes[0].path"), "{err}");
        let err = TerasliceJob::parse(r#"{"name": "a", "external_ports": [70000]}"#).unwrap_err();
        assert!(
            err.to_string().contains("payload.external_ports[0]"),
            "{err}"
        );
        let err = TerasliceJob::parse("[]").unwrap_err();
        assert!(err.to_string().contains("JSON object"), "{err}");
        let job = TerasliceJob::parse(r#"{"name": "a", "operations": [{"_op": "noop"}]}"#).unwrap();
        assert_eq!(job.workers, DEFAULT_WORKERS);
    }
}
