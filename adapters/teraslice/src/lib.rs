//! The built-in `teraslice` adapter: Teraslice's Kubernetes backend (seed 003).
//!
//! Input: a Teraslice job (the task payload, as `teraslice-cli` would register it) and the
//! Teraslice master's Kubernetes settings (the adapter configuration, [`config::Config`]). Output:
//! what Teraslice's backend creates for one execution —
//!
//! - the **execution controller** `batch/v1` Job (named by the host: `ctx.job_name`), whose
//!   single container is named as Teraslice names the Job, `ts-exc-<jobName>-<jobId>`;
//! - companion 0, the **worker** `apps/v1` Deployment `ts-wkr-<jobName>-<jobId>` with
//!   `replicas = workers`;
//! - companion 1, the **Service** `svc-ts-exc-<jobName>-<jobId>` the workers reach the execution
//!   controller through (port 45680).
//!
//! `<jobName>` is the job name made DNS-safe as Teraslice does (lowercased, every character
//! outside `[a-z0-9-]` replaced by `-`, a leading non-letter replaced by `a`, a trailing
//! non-alphanumeric by `0`, at most 63 characters, then cut to 35 in resource names); `<jobId>` is
//! the first 13 characters of the job id. Teraslice keeps `.` in the name; here it becomes `-`,
//! because Service and container names may not contain dots.
//!
//! Every job property of seed 003 is applied in Teraslice's order: job `labels` (prefixed
//! `job.teraslice.terascope.io/`), `targets` (required → one nodeSelectorTerm, preferred → weight
//! 1 preferences, accepted → `Equal`/`NoSchedule` tolerations), resources (workers: the new
//! `resources_*` properties, or — only when none of them is set — the legacy `cpu`/`memory` of the
//! job, then of the master, as requests = limits; execution controller: `cpu_execution_controller`
//! / `memory_execution_controller` of the job, then of the master, then 0.5 CPU / 512 MB), `volumes`
//! and the master's `assets_volume`, the image pull secret, `ephemeral_storage`, `external_ports`,
//! the priority class (execution controller always, workers when `stateful`, which also labels
//! them `job-property.teraslice.terascope.io/stateful: "true"`), worker anti-affinity, the master's
//! `execution_controller_targets` (execution controller only), and last `pod_spec_override` —
//! merged as lodash's `_.merge` onto both pod specs, and refused with an invalid-task error unless
//! the master sets `kubernetes_overrides_enabled`.
//!
//! Each container gets Teraslice's environment: `NODE_TYPE`, `EX` (the execution as base64 JSON),
//! `POD_IP`, `NODE_OPTIONS=--max-old-space-size=<90% of the memory limit in MiB>` when a memory
//! limit is known, then the master's and the job's `env_vars`.

pub mod config;
pub mod job;

use base64::Engine as _;
use serde_json::{Map, Value, json};
use taskpod_adapter_sdk::error::{internal, invalid_config, invalid_task};
use taskpod_adapter_sdk::k8s::{
    self,
    k8s_openapi::api::{apps::v1::Deployment, batch::v1::Job, core::v1::Service},
};
use taskpod_adapter_sdk::{Adapter, AdapterError, AdapterInfo, AdapterOutput, Context, Task};

pub use config::Config;
use job::{Constraint, ExternalPort, Quantity, Target, TerasliceJob};

/// Port the execution controller listens on and workers connect to.
pub const CONTROLLER_PORT: i32 = 45680;
/// Prefix of the labels made from a job's `labels`.
pub const JOB_LABEL_PREFIX: &str = "job.teraslice.terascope.io";
/// Prefix of the labels made from job properties (`stateful`).
pub const JOB_PROPERTY_LABEL_PREFIX: &str = "job-property.teraslice.terascope.io";
/// Label: always `teraslice`.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// Label: `execution_controller` or `worker`.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Label: the Teraslice cluster name.
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// Label: the execution id.
pub const LABEL_EX_ID: &str = "teraslice.terascope.io/exId";
/// Label: the job id.
pub const LABEL_JOB_ID: &str = "teraslice.terascope.io/jobId";
/// Label: the DNS-safe job name.
pub const LABEL_JOB_NAME: &str = "teraslice.terascope.io/jobName";
/// Mount path of the `ephemeral_storage` emptyDir.
pub const EPHEMERAL_PATH: &str = "/ephemeral0";

/// Teraslice's Kubernetes backend as a taskpod adapter (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct TerasliceAdapter;

impl Adapter for TerasliceAdapter {
    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "teraslice".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "Teraslice's Kubernetes backend: execution controller Job, worker Deployment (replicas = workers) and Service, with targets, resources, volumes, ports, labels and overrides as Teraslice applies them".to_owned(),
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

/// The two kinds of Teraslice pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    ExecutionController,
    Worker,
}

impl Role {
    fn node_type(self) -> &'static str {
        match self {
            Role::ExecutionController => "execution_controller",
            Role::Worker => "worker",
        }
    }

    fn infix(self) -> &'static str {
        match self {
            Role::ExecutionController => "exc",
            Role::Worker => "wkr",
        }
    }
}

/// Names and ids shared by the three objects.
struct Names {
    ex_id: String,
    job_id: String,
    job_name_label: String,
    cluster_label: String,
}

impl Names {
    fn resource(&self, role: Role) -> String {
        resource_name(role.infix(), &self.job_name_label, &self.job_id)
    }

    fn labels(&self, role: Role) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(LABEL_NAME.into(), "teraslice".into());
        m.insert(LABEL_COMPONENT.into(), role.node_type().into());
        m.insert(LABEL_EX_ID.into(), label_value(&self.ex_id).into());
        m.insert(LABEL_JOB_ID.into(), label_value(&self.job_id).into());
        m.insert(LABEL_JOB_NAME.into(), self.job_name_label.clone().into());
        m.insert(LABEL_INSTANCE.into(), self.cluster_label.clone().into());
        m
    }
}

/// The Teraslice job name made DNS-safe (see the module documentation): lowercase, `[a-z0-9-]`,
/// a letter first, alphanumeric last, at most 63 characters.
pub fn dns_safe_job_name(name: &str) -> String {
    let mut chars: Vec<char> = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if chars.is_empty() {
        return "a0".to_owned();
    }
    if !chars[0].is_ascii_lowercase() {
        chars[0] = 'a';
    }
    let last = chars.len() - 1;
    if !chars[last].is_ascii_alphanumeric() {
        chars[last] = '0';
    }
    chars.into_iter().collect()
}

/// Teraslice's resource name `ts-<infix>-<jobName[..35]>-<jobId[..13]>`, every part DNS-safe.
pub fn resource_name(infix: &str, job_name_label: &str, job_id: &str) -> String {
    let name: String = job_name_label.chars().take(35).collect();
    let id: String = job_id
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(13)
        .collect();
    let id = id.trim_matches('-');
    let name = name.trim_end_matches('-');
    if id.is_empty() {
        format!("ts-{infix}-{name}")
    } else {
        format!("ts-{infix}-{name}-{id}")
    }
}

/// A label value as Teraslice writes one: characters outside `[A-Za-z0-9._-]` become `-`, at
/// most 63 characters, trimmed to start and end alphanumeric (Kubernetes requires it).
pub fn label_value(value: &str) -> String {
    let replaced: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    replaced
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// Builds the execution controller Job, worker Deployment and Service for one execution.
pub fn build(task: &Task, ctx: &Context, config: &Config) -> Result<AdapterOutput, AdapterError> {
    if task.id.is_empty() {
        return Err(invalid_task("id: the task has no id"));
    }
    let job = TerasliceJob::parse(&task.payload)?;
    if job.pod_spec_override.is_some() && !config.kubernetes_overrides_enabled {
        return Err(invalid_task(
            "payload.pod_spec_override: pod spec overrides are disabled on this Teraslice cluster; remove pod_spec_override from the job, or have the operator set kubernetes_overrides_enabled: true in the teraslice adapter's config",
        ));
    }
    if let Some(ns) = &config.kubernetes_namespace
        && ns != &ctx.namespace
    {
        return Err(invalid_config(format!(
            "config.kubernetes_namespace: {ns:?} differs from the namespace taskpod runs this adapter's Jobs in ({:?}); remove the key or make them equal",
            ctx.namespace
        )));
    }

    let names = Names {
        ex_id: job.ex_id.clone().unwrap_or_else(|| task.id.clone()),
        job_id: job
            .job_id
            .clone()
            .or_else(|| task.group_id.clone())
            .unwrap_or_else(|| task.id.clone()),
        job_name_label: dns_safe_job_name(&job.name),
        cluster_label: config.cluster_name_label(),
    };

    // EX: the execution (the job with its ids) as base64 JSON, as Teraslice's safeEncode.
    let mut execution: Value =
        serde_json::from_str(&task.payload).map_err(|e| internal(format!("payload: {e}")))?;
    if let Some(obj) = execution.as_object_mut() {
        obj.entry("ex_id")
            .or_insert_with(|| names.ex_id.clone().into());
        obj.entry("job_id")
            .or_insert_with(|| names.job_id.clone().into());
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(execution.to_string());
    let limit = ctx.limits.max_inline_payload as usize;
    if encoded.len() > limit {
        return Err(invalid_task(format!(
            "payload: Teraslice job `{}` is {} characters as base64 (the EX environment variable), over the inline limit of {limit}; shrink the job or raise the host's max inline payload",
            job.name,
            encoded.len()
        )));
    }

    let exc_name = names.resource(Role::ExecutionController);
    let wkr_name = names.resource(Role::Worker);

    // Execution controller Job.
    let exc_pod = pod_template(
        Role::ExecutionController,
        &exc_name,
        &names,
        &job,
        config,
        ctx,
        &encoded,
    );
    let job_value = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_meta(&ctx.job_name, Role::ExecutionController, &names, &job, ctx),
        "spec": { "backoffLimit": 0, "template": exc_pod },
    });
    let mut exc_job: Job = typed(job_value, "Job", job.pod_spec_override.is_some())?;
    k8s::apply_limits(&mut exc_job, &ctx.limits);

    // Worker Deployment.
    let wkr_pod = pod_template(Role::Worker, &wkr_name, &names, &job, config, ctx, &encoded);
    let deployment_value = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(&wkr_name, Role::Worker, &names, &job, ctx),
        "spec": {
            "replicas": job.workers,
            "selector": { "matchLabels": {
                LABEL_NAME: "teraslice",
                LABEL_COMPONENT: Role::Worker.node_type(),
                LABEL_EX_ID: label_value(&names.ex_id),
            }},
            "template": wkr_pod,
        },
    });
    let deployment: Deployment = typed(
        deployment_value,
        "Deployment",
        job.pod_spec_override.is_some(),
    )?;

    // Service of the execution controller.
    let mut svc_meta = object_meta(
        &format!("svc-{exc_name}"),
        Role::ExecutionController,
        &names,
        &job,
        ctx,
    );
    svc_meta["labels"]
        .as_object_mut()
        .expect("object_meta always has labels")
        .remove(LABEL_JOB_NAME);
    let service_value = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": svc_meta,
        "spec": {
            "selector": {
                LABEL_COMPONENT: Role::ExecutionController.node_type(),
                LABEL_EX_ID: label_value(&names.ex_id),
            },
            "ports": [{ "port": CONTROLLER_PORT, "targetPort": CONTROLLER_PORT, "protocol": "TCP" }],
        },
    });
    let service: Service = typed(service_value, "Service", false)?;

    let companions = [
        k8s::to_json(&deployment, "companions[0]")?,
        k8s::to_json(&service, "companions[1]")?,
    ];
    Ok(AdapterOutput {
        job: k8s::to_json(&exc_job, "job")?,
        companions: companions.into(),
    })
}

/// Object metadata: name, namespace, the host's labels then Teraslice's and the job's (which win
/// on a clash), the host's annotations.
fn object_meta(name: &str, role: Role, names: &Names, job: &TerasliceJob, ctx: &Context) -> Value {
    let mut meta = json!({
        "name": name,
        "namespace": ctx.namespace,
        "labels": all_labels(role, names, job, ctx, false),
    });
    add_annotations(&mut meta, ctx);
    meta
}

/// The host's annotations, when it has any (no empty map otherwise).
fn add_annotations(meta: &mut Value, ctx: &Context) {
    if !ctx.annotations.is_empty() {
        meta["annotations"] = ctx
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect::<Map<_, _>>()
            .into();
    }
}

/// Labels of an object (`pod: false`) or of a pod template (`pod: true`, which adds the stateful
/// label to both roles' pods of a stateful job).
fn all_labels(role: Role, names: &Names, job: &TerasliceJob, ctx: &Context, pod: bool) -> Value {
    let mut labels: Map<String, Value> = ctx
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    labels.extend(names.labels(role));
    for (k, v) in &job.labels {
        labels.insert(
            format!("{JOB_LABEL_PREFIX}/{}", label_value(k)),
            label_value(v).into(),
        );
    }
    if pod && job.stateful {
        labels.insert(
            format!("{JOB_PROPERTY_LABEL_PREFIX}/stateful"),
            "true".into(),
        );
    }
    Value::Object(labels)
}

/// The pod template of one role, with every job property applied (Teraslice's order).
fn pod_template(
    role: Role,
    container_name: &str,
    names: &Names,
    job: &TerasliceJob,
    config: &Config,
    ctx: &Context,
    encoded: &str,
) -> Value {
    let image = job
        .kubernetes_image
        .clone()
        .unwrap_or_else(|| config.kubernetes_image.clone());
    let mut container = json!({
        "name": container_name,
        "image": image,
        "ports": [{ "containerPort": CONTROLLER_PORT, "protocol": "TCP" }],
        "volumeMounts": [{ "name": "config", "mountPath": "/app/config" }],
        "env": [
            { "name": "NODE_TYPE", "value": role.node_type() },
            { "name": "EX", "value": encoded },
            { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
        ],
    });
    let mut pod = json!({
        "volumes": [{
            "name": "config",
            "configMap": {
                "name": config.config_map_name(),
                "items": [{ "key": "teraslice.yaml", "path": "teraslice.yaml" }],
            },
        }],
        // Teraslice: Math.round(shutdown_timeout / 1000).
        "terminationGracePeriodSeconds": config.shutdown_timeout.saturating_add(500) / 1000,
    });
    match role {
        Role::ExecutionController => {
            container["readinessProbe"] = json!({
                "httpGet": { "path": "/health", "port": CONTROLLER_PORT },
                "initialDelaySeconds": 3, "periodSeconds": 10, "timeoutSeconds": 1,
                "successThreshold": 1, "failureThreshold": 3,
            });
            pod["restartPolicy"] = "Never".into();
        }
        Role::Worker => {
            container["securityContext"] = json!({
                "allowPrivilegeEscalation": false,
                "capabilities": { "drop": ["ALL"] },
                "readOnlyRootFilesystem": true,
                "runAsNonRoot": true,
                "runAsUser": 10001,
            });
            pod["securityContext"] = json!({
                "runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                "fsGroupChangePolicy": "OnRootMismatch",
                "seccompProfile": { "type": "RuntimeDefault" },
            });
        }
    }

    // targets
    for target in &job.targets {
        match target.constraint {
            Constraint::Required => add_required(&mut pod, target),
            Constraint::Preferred => add_preferred(&mut pod, target),
            Constraint::Accepted => add_toleration(&mut pod, target),
        }
    }

    // resources and NODE_OPTIONS
    let (resources, max_memory) = resources(role, job, config);
    if !resources.as_object().is_some_and(Map::is_empty) {
        container["resources"] = resources;
    }
    let mut env: Vec<(String, String)> = Vec::new();
    if let Some(mem) = max_memory.as_ref().and_then(Quantity::bytes)
        && mem > 0.0
    {
        let mib = (0.9 * (mem / 1024.0 / 1024.0)).round() as u64;
        env.push(("NODE_OPTIONS".into(), format!("--max-old-space-size={mib}")));
    }
    for (k, v) in config.env_vars.iter().chain(job.env_vars.iter()) {
        match env.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    let env_list = container["env"].as_array_mut().expect("env is a list");
    for (name, value) in env {
        env_list.retain(|e| e["name"] != name.as_str());
        env_list.push(json!({ "name": name, "value": value }));
    }

    // volumes
    for v in &job.volumes {
        push(
            &mut pod["volumes"],
            json!({ "name": v.name, "persistentVolumeClaim": { "claimName": v.name } }),
        );
        push(
            &mut container["volumeMounts"],
            json!({ "name": v.name, "mountPath": v.path }),
        );
    }
    if let (Some(volume), Some(dir)) = (&config.assets_volume, &config.assets_directory) {
        push(
            &mut pod["volumes"],
            json!({ "name": volume, "persistentVolumeClaim": { "claimName": volume } }),
        );
        push(
            &mut container["volumeMounts"],
            json!({ "name": volume, "mountPath": dir }),
        );
    }
    if let Some(secret) = &config.kubernetes_image_pull_secret {
        pod["imagePullSecrets"] = json!([{ "name": secret }]);
    }
    if job.ephemeral_storage {
        push(
            &mut container["volumeMounts"],
            json!({ "name": "ephemeral-volume", "mountPath": EPHEMERAL_PATH }),
        );
        push(
            &mut pod["volumes"],
            json!({ "name": "ephemeral-volume", "emptyDir": {} }),
        );
    }
    for port in &job.external_ports {
        let entry = match port {
            ExternalPort::Number(n) => json!({ "containerPort": n, "protocol": "TCP" }),
            ExternalPort::Named { name, port } => {
                json!({ "containerPort": port, "name": name, "protocol": "TCP" })
            }
        };
        push(&mut container["ports"], entry);
    }
    if let Some(class) = &config.kubernetes_priority_class_name
        && (role == Role::ExecutionController || job.stateful)
    {
        pod["priorityClassName"] = class.as_str().into();
    }
    if role == Role::Worker && config.kubernetes_worker_antiaffinity {
        let list =
            pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
                .take();
        let mut list = if list.is_array() { list } else { json!([]) };
        push(
            &mut list,
            json!({
                "weight": 1,
                "podAffinityTerm": {
                    "labelSelector": { "matchExpressions": [
                        { "key": LABEL_NAME, "operator": "In", "values": ["teraslice"] },
                        { "key": LABEL_INSTANCE, "operator": "In", "values": [names.cluster_label] },
                    ]},
                    "topologyKey": "kubernetes.io/hostname",
                },
            }),
        );
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] =
            list;
    }
    if role == Role::ExecutionController {
        for target in &config.execution_controller_targets {
            add_required(&mut pod, target);
            add_toleration(&mut pod, target);
        }
    }

    pod["containers"] = json!([container]);
    if let Some(overlay) = &job.pod_spec_override
        && config.kubernetes_overrides_enabled
    {
        lodash_merge(&mut pod, overlay);
    }

    let mut meta = json!({ "labels": all_labels(role, names, job, ctx, true) });
    add_annotations(&mut meta, ctx);
    json!({ "metadata": meta, "spec": pod })
}

/// Worker or execution controller resources, and the memory limit that sizes `NODE_OPTIONS`.
fn resources(role: Role, job: &TerasliceJob, config: &Config) -> (Value, Option<Quantity>) {
    let mut requests = Map::new();
    let mut limits = Map::new();
    let max_memory = match role {
        Role::Worker if job.uses_new_resources() => {
            let set = |m: &mut Map<String, Value>, key: &str, q: &Option<Quantity>| {
                if let Some(q) = q {
                    m.insert(key.into(), q.to_k8s().into());
                }
            };
            set(&mut requests, "cpu", &job.resources_requests_cpu);
            set(&mut limits, "cpu", &job.resources_limits_cpu);
            set(&mut requests, "memory", &job.resources_requests_memory);
            set(&mut limits, "memory", &job.resources_limits_memory);
            job.resources_limits_memory.clone()
        }
        Role::Worker => {
            if let Some(cpu) = job.cpu.as_ref().or(config.cpu.as_ref()) {
                requests.insert("cpu".into(), cpu.to_k8s().into());
                limits.insert("cpu".into(), cpu.to_k8s().into());
            }
            let memory = job.memory.as_ref().or(config.memory.as_ref());
            if let Some(memory) = memory {
                requests.insert("memory".into(), memory.to_k8s().into());
                limits.insert("memory".into(), memory.to_k8s().into());
            }
            memory.cloned()
        }
        Role::ExecutionController => {
            let cpu = job
                .cpu_execution_controller
                .clone()
                .or_else(|| config.cpu_execution_controller.clone())
                .unwrap_or(Quantity::Number(config::DEFAULT_CPU_EXECUTION_CONTROLLER));
            let memory = job
                .memory_execution_controller
                .clone()
                .or_else(|| config.memory_execution_controller.clone())
                .unwrap_or(Quantity::Number(
                    config::DEFAULT_MEMORY_EXECUTION_CONTROLLER as f64,
                ));
            for m in [&mut requests, &mut limits] {
                m.insert("cpu".into(), cpu.to_k8s().into());
                m.insert("memory".into(), memory.to_k8s().into());
            }
            Some(memory)
        }
    };
    let mut out = Map::new();
    if !limits.is_empty() {
        out.insert("limits".into(), Value::Object(limits));
    }
    if !requests.is_empty() {
        out.insert("requests".into(), Value::Object(requests));
    }
    (Value::Object(out), max_memory)
}

fn push(list: &mut Value, item: Value) {
    if !list.is_array() {
        *list = json!([]);
    }
    list.as_array_mut().expect("just made a list").push(item);
}

fn expression(target: &Target) -> Value {
    json!({ "key": target.key, "operator": "In", "values": [target.value] })
}

/// A `required` target: one more matchExpression in the first (only) nodeSelectorTerm.
fn add_required(pod: &mut Value, target: &Target) {
    let required =
        &mut pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
    if required.is_null() {
        *required = json!({ "nodeSelectorTerms": [{ "matchExpressions": [] }] });
    }
    push(
        &mut required["nodeSelectorTerms"][0]["matchExpressions"],
        expression(target),
    );
}

/// A `preferred` target: one more preference of weight 1.
fn add_preferred(pod: &mut Value, target: &Target) {
    push(
        &mut pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"],
        json!({ "weight": 1, "preference": { "matchExpressions": [expression(target)] } }),
    );
}

/// An `accepted` target: a toleration of the taint `key=value:NoSchedule`.
fn add_toleration(pod: &mut Value, target: &Target) {
    push(
        &mut pod["tolerations"],
        json!({ "key": target.key, "operator": "Equal", "value": target.value, "effect": "NoSchedule" }),
    );
}

/// Deep merge as lodash's `_.merge`: objects merge key by key, arrays element by element (by
/// index), anything else in `overlay` replaces the value in `base`.
pub fn lodash_merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) => lodash_merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(o)) => {
            for (i, v) in o.iter().enumerate() {
                match b.get_mut(i) {
                    Some(slot) => lodash_merge(slot, v),
                    None => b.push(v.clone()),
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// Converts a built object to its typed form. Fields the typed form does not know (which only a
/// `pod_spec_override` can bring in) are reported instead of silently dropped.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(
    value: Value,
    kind: &str,
    overridden: bool,
) -> Result<T, AdapterError> {
    let blame = |detail: String| {
        if overridden {
            invalid_task(format!(
                "payload.pod_spec_override: the {kind}'s pod spec with the override applied is not valid: {detail}; fix the override so it maps onto a Kubernetes pod .spec"
            ))
        } else {
            internal(format!("{kind}: {detail}"))
        }
    };
    let object: T = serde_json::from_value(value.clone()).map_err(|e| blame(e.to_string()))?;
    let back = serde_json::to_value(&object).map_err(|e| internal(format!("{kind}: {e}")))?;
    if let Some(path) = first_unknown(&value, &back, String::new()) {
        return Err(blame(format!("unknown field `{path}`")));
    }
    Ok(object)
}

/// The first path present in `built` but missing from its typed round trip `back`.
fn first_unknown(built: &Value, back: &Value, path: String) -> Option<String> {
    match (built, back) {
        (Value::Object(b), Value::Object(r)) => b.iter().find_map(|(k, v)| {
            let sub = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match r.get(k) {
                None if !v.is_null() => Some(sub),
                None => None,
                Some(rv) => first_unknown(v, rv, sub),
            }
        }),
        (Value::Array(b), Value::Array(r)) => b
            .iter()
            .zip(r)
            .enumerate()
            .find_map(|(i, (v, rv))| first_unknown(v, rv, format!("{path}[{i}]"))),
        _ => None,
    }
}

taskpod_adapter_sdk::export_adapter!(TerasliceAdapter);
