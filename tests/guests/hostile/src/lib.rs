//! A pod adapter that misbehaves on purpose, for the host's sandbox tests.
//!
//! `info` and `validate-config` behave; `adapt` does whatever its *mode* says. The mode and its
//! parameters come from the adapter configuration (`{"mode": "loop"}`), and a task may override
//! them with the same keys at the top level of its payload (`{"mode": "trap"}`), so one loaded
//! instance can exercise every mode.
//!
//! | mode | what `adapt` does |
//! |---|---|
//! | `ok` | returns a valid small Job (`busybox`, one container), named and placed as the host asked |
//! | `loop` | spins forever (needs the host's wall-time deadline) |
//! | `memory-bomb` | allocates and touches 1 MiB blocks without end (needs the memory cap) |
//! | `trap` | executes `unreachable` |
//! | `panic` | panics with the message `hostile adapter panicked on purpose` |
//! | `deep-recursion` | recurses with 1 KiB frames until the stack overflows |
//! | `huge-output` | returns a Job JSON of exactly `size` bytes (default 100 MB), padded in an annotation |
//! | `invalid-json` | returns the Job text `{not json` |
//! | `bad-name` | returns a Job named `Bad_Name!` |
//! | `bad-label` | returns a Job whose pod has the label value `not a valid value!` |
//! | `not-a-job` | returns a `v1` Pod |
//! | `no-containers` | returns a Job whose pod has no containers |
//! | `other-namespace` | returns a Job in namespace `kube-system` |
//! | `privileged` | returns a Job whose container is `securityContext.privileged: true` |
//! | `add-capabilities` | returns a Job whose container adds the `SYS_ADMIN` capability |
//! | `host-path` | returns a Job mounting the node's `/` through a `hostPath` volume |
//! | `host-network` | returns a Job with `hostNetwork: true` |
//! | `host-pid` | returns a Job with `hostPID: true` |
//! | `service-account` | returns a Job with `serviceAccountName: cluster-admin` |
//! | `image` | returns a Job whose container runs `image` (default `evil.example.com/miner:latest`) |
//! | `restart-always` | returns a Job with `backoffLimit: 100`, `restartPolicy: OnFailure` and no deadline |
//! | `companion-privileged` | returns the `ok` Job plus a Deployment companion whose pod is privileged |
//! | `service-load-balancer` | returns the `ok` Job plus a Service companion of type `LoadBalancer` |
//! | `invalid-companion` | returns the `ok` Job plus the companion text `{not json` |
//! | `many-companions` | returns the `ok` Job plus `count` (default 10 000) ConfigMap companions |
//! | `log-flood` | logs `count` (default 100 000) messages, then returns the `ok` Job |
//! | `error` | returns the adapter error `kind` (`invalid-task`, `invalid-config` or `internal`) with `message` |
//! | `probe` | tries the environment, filesystem, clock and stdout, and reports what it saw in annotations `probe.*` of the `ok` Job |
//!
//! `validate-config` accepts `{"mode": M, ...}` for every mode above and rejects an unknown mode,
//! a configuration that is not an object, and — to test load-time failures — the modes
//! `reject-config` (returns an invalid-config error) and `validate-loop` (spins forever inside
//! `validate-config`).
//!
//! Loops, allocations and recursion go through [`std::hint::black_box`] so that the optimiser
//! cannot remove them.

use std::collections::BTreeMap;
use std::hint::black_box;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, Container, HostPathVolumeSource, Pod, PodSpec, PodTemplateSpec,
    SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde_json::{Map, Value};
use taskpod_adapter_sdk::error::{internal, invalid_config, invalid_task};
use taskpod_adapter_sdk::{
    Adapter, AdapterError, AdapterInfo, AdapterOutput, Context, Task, k8s, log,
};

/// Every mode `adapt` understands.
pub const MODES: &[&str] = &[
    "ok",
    "loop",
    "memory-bomb",
    "trap",
    "panic",
    "deep-recursion",
    "huge-output",
    "invalid-json",
    "bad-name",
    "bad-label",
    "not-a-job",
    "no-containers",
    "other-namespace",
    "privileged",
    "add-capabilities",
    "host-path",
    "host-network",
    "host-pid",
    "service-account",
    "image",
    "restart-always",
    "companion-privileged",
    "service-load-balancer",
    "invalid-companion",
    "many-companions",
    "log-flood",
    "error",
    "probe",
];

/// Modes that only affect `validate-config`.
pub const VALIDATE_MODES: &[&str] = &["reject-config", "validate-loop"];

/// Default `size` of `huge-output`: 100 MB.
pub const DEFAULT_HUGE_OUTPUT: u64 = 100 * 1000 * 1000;

/// The misbehaving adapter (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct Hostile;

impl Adapter for Hostile {
    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "hostile".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "Misbehaves on purpose (loops, traps, allocates, returns bad Jobs) to test the host's sandbox".to_owned(),
            config_schema: r#"{"type":"object","required":["mode"],"properties":{"mode":{"type":"string"},"size":{"type":"integer","minimum":0},"count":{"type":"integer","minimum":0},"kind":{"type":"string"},"message":{"type":"string"},"image":{"type":"string"}}}"#.to_owned(),
            task_types: Vec::new(),
        }
    }

    fn validate_config(config: &str) -> Result<(), AdapterError> {
        let params = parse_object(config, "config").map_err(invalid_config)?;
        let mode = mode_of(&params).map_err(invalid_config)?;
        match mode.as_str() {
            "reject-config" => Err(invalid_config(
                "config.mode: `reject-config` rejects every configuration on purpose",
            )),
            "validate-loop" => spin(),
            _ => Ok(()),
        }
    }

    fn adapt(task: &Task, ctx: &Context) -> Result<AdapterOutput, AdapterError> {
        let mut params = parse_object(&ctx.config, "config").map_err(invalid_config)?;
        if let Ok(overrides) = parse_object(&task.payload, "payload") {
            params.extend(overrides);
        }
        let mode = mode_of(&params).map_err(invalid_task)?;
        run(&mode, &params, task, ctx)
    }
}

fn parse_object(text: &str, what: &str) -> Result<Map<String, Value>, String> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(format!(
            "{what}: must be a JSON object such as {{\"mode\": \"ok\"}}"
        )),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

fn mode_of(params: &Map<String, Value>) -> Result<String, String> {
    let mode = match params.get("mode") {
        None => "ok",
        Some(Value::String(m)) => m.as_str(),
        Some(other) => return Err(format!("mode: expected a string, got {other}")),
    };
    if MODES.contains(&mode) || VALIDATE_MODES.contains(&mode) {
        Ok(mode.to_owned())
    } else {
        Err(format!(
            "mode: unknown mode `{mode}`; use one of {}",
            MODES.join(", ")
        ))
    }
}

fn param_u64(params: &Map<String, Value>, key: &str, default: u64) -> u64 {
    params.get(key).and_then(Value::as_u64).unwrap_or(default)
}

fn param_str<'a>(params: &'a Map<String, Value>, key: &str, default: &'a str) -> &'a str {
    params.get(key).and_then(Value::as_str).unwrap_or(default)
}

fn run(
    mode: &str,
    params: &Map<String, Value>,
    task: &Task,
    ctx: &Context,
) -> Result<AdapterOutput, AdapterError> {
    let job = |edit: &dyn Fn(&mut Job)| -> Result<AdapterOutput, AdapterError> {
        let mut job = ok_job(task, ctx);
        edit(&mut job);
        k8s::job_output(&job)
    };
    match mode {
        "ok" | "reject-config" | "validate-loop" => job(&|_| {}),
        "loop" => spin(),
        "memory-bomb" => memory_bomb(),
        "trap" => trap(),
        "panic" => panic!("hostile adapter panicked on purpose"),
        "deep-recursion" => Err(internal(format!(
            "recursion returned {}, which it never should",
            recurse(0)
        ))),
        "huge-output" => huge_output(task, ctx, param_u64(params, "size", DEFAULT_HUGE_OUTPUT)),
        "invalid-json" => Ok(AdapterOutput {
            job: "{not json".to_owned(),
            companions: Vec::new(),
        }),
        "bad-name" => job(&|j| j.metadata.name = Some("Bad_Name!".to_owned())),
        "bad-label" => job(&|j| {
            k8s::merge_labels(pod_meta(j), [("hostile", "not a valid value!")]);
        }),
        "not-a-job" => {
            let pod = Pod {
                metadata: ObjectMeta {
                    name: Some(ctx.job_name.clone()),
                    namespace: Some(ctx.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(ok_pod_spec()),
                status: None,
            };
            Ok(AdapterOutput {
                job: k8s::to_json(&pod, "job")?,
                companions: Vec::new(),
            })
        }
        "no-containers" => job(&|j| pod_spec(j).containers.clear()),
        "other-namespace" => job(&|j| j.metadata.namespace = Some("kube-system".to_owned())),
        "privileged" => job(&|j| {
            pod_spec(j).containers[0].security_context = Some(SecurityContext {
                privileged: Some(true),
                ..SecurityContext::default()
            });
        }),
        "add-capabilities" => job(&|j| {
            pod_spec(j).containers[0].security_context = Some(SecurityContext {
                capabilities: Some(Capabilities {
                    add: Some(vec!["SYS_ADMIN".to_owned()]),
                    drop: None,
                }),
                ..SecurityContext::default()
            });
        }),
        "host-path" => job(&|j| {
            let spec = pod_spec(j);
            spec.volumes = Some(vec![Volume {
                name: "host-root".to_owned(),
                host_path: Some(HostPathVolumeSource {
                    path: "/".to_owned(),
                    type_: None,
                }),
                ..Volume::default()
            }]);
            spec.containers[0].volume_mounts = Some(vec![VolumeMount {
                name: "host-root".to_owned(),
                mount_path: "/host".to_owned(),
                ..VolumeMount::default()
            }]);
        }),
        "host-network" => job(&|j| pod_spec(j).host_network = Some(true)),
        "host-pid" => job(&|j| pod_spec(j).host_pid = Some(true)),
        "service-account" => {
            job(&|j| pod_spec(j).service_account_name = Some("cluster-admin".to_owned()))
        }
        "image" => {
            let image = param_str(params, "image", "evil.example.com/miner:latest").to_owned();
            job(&move |j| pod_spec(j).containers[0].image = Some(image.clone()))
        }
        "restart-always" => job(&|j| {
            let spec = j.spec.as_mut().expect("ok_job sets a spec");
            spec.backoff_limit = Some(100);
            spec.active_deadline_seconds = None;
            spec.ttl_seconds_after_finished = None;
            pod_spec(j).restart_policy = Some("OnFailure".to_owned());
        }),
        "companion-privileged" => {
            let mut out = job(&|_| {})?;
            out.companions
                .push(k8s::to_json(&privileged_deployment(ctx), "companions[0]")?);
            Ok(out)
        }
        "service-load-balancer" => {
            let mut out = job(&|_| {})?;
            let service = Service {
                metadata: ObjectMeta {
                    name: Some(ctx.job_name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(ServiceSpec {
                    type_: Some("LoadBalancer".to_owned()),
                    ports: Some(vec![ServicePort {
                        port: 8080,
                        ..ServicePort::default()
                    }]),
                    ..ServiceSpec::default()
                }),
                ..Service::default()
            };
            out.companions
                .push(k8s::to_json(&service, "companions[0]")?);
            Ok(out)
        }
        "invalid-companion" => {
            let mut out = job(&|_| {})?;
            out.companions.push("{not json".to_owned());
            Ok(out)
        }
        "many-companions" => {
            let mut out = job(&|_| {})?;
            for i in 0..param_u64(params, "count", 10_000) {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(format!("{}-{i}", ctx.job_name)),
                        ..ObjectMeta::default()
                    },
                    data: Some(BTreeMap::from([("i".to_owned(), i.to_string())])),
                    ..ConfigMap::default()
                };
                out.companions.push(k8s::to_json(&cm, "companions")?);
            }
            Ok(out)
        }
        "log-flood" => {
            for i in 0..param_u64(params, "count", 100_000) {
                log::info(&format!("hostile log message {i}"));
            }
            job(&|_| {})
        }
        "error" => {
            let message =
                param_str(params, "message", "hostile adapter error on purpose").to_owned();
            Err(match param_str(params, "kind", "internal") {
                "invalid-task" => AdapterError::InvalidTask(message),
                "invalid-config" => AdapterError::InvalidConfig(message),
                _ => AdapterError::Internal(message),
            })
        }
        "probe" => {
            let probes = probe();
            job(&|j| {
                k8s::merge_annotations(
                    &mut j.metadata,
                    probes.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                )
            })
        }
        other => Err(internal(format!(
            "mode `{other}` is listed but not implemented"
        ))),
    }
}

/// The Job of mode `ok`: one `busybox` container that exits 0, named and placed as the host
/// asked, with the host's labels.
pub fn ok_job(task: &Task, ctx: &Context) -> Job {
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(ctx.labels.iter().cloned().collect()),
            ..ObjectMeta::default()
        }),
        spec: Some(ok_pod_spec()),
    };
    let mut job = k8s::job_from_template(&ctx.job_name, &ctx.namespace, template);
    k8s::merge_annotations(&mut job.metadata, [("hostile.task-id", task.id.as_str())]);
    k8s::apply_limits(&mut job, &ctx.limits);
    job
}

fn ok_pod_spec() -> PodSpec {
    PodSpec {
        containers: vec![Container {
            name: "main".to_owned(),
            image: Some("busybox:1.36".to_owned()),
            command: Some(vec!["true".to_owned()]),
            ..Container::default()
        }],
        restart_policy: Some("Never".to_owned()),
        ..PodSpec::default()
    }
}

fn pod_spec(job: &mut Job) -> &mut PodSpec {
    job.spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .expect("ok_job sets a pod spec")
}

fn pod_meta(job: &mut Job) -> &mut ObjectMeta {
    job.spec
        .as_mut()
        .expect("ok_job sets a spec")
        .template
        .metadata
        .get_or_insert_with(ObjectMeta::default)
}

fn privileged_deployment(ctx: &Context) -> Deployment {
    let labels = BTreeMap::from([("app".to_owned(), "hostile-companion".to_owned())]);
    let mut spec = ok_pod_spec();
    spec.restart_policy = Some("Always".to_owned());
    spec.containers[0].security_context = Some(SecurityContext {
        privileged: Some(true),
        ..SecurityContext::default()
    });
    Deployment {
        metadata: ObjectMeta {
            name: Some(format!("{}-companion", ctx.job_name)),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(spec),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

/// A Job JSON of exactly `size` bytes (or the smallest valid Job when `size` is smaller).
fn huge_output(task: &Task, ctx: &Context, size: u64) -> Result<AdapterOutput, AdapterError> {
    let mut job = ok_job(task, ctx);
    k8s::merge_annotations(&mut job.metadata, [("hostile.pad", "")]);
    let base = k8s::to_json(&job, "job")?;
    let target = usize::try_from(size).unwrap_or(usize::MAX);
    let pad = target.saturating_sub(base.len());
    let marker = r#""hostile.pad":"""#;
    let at = base
        .find(marker)
        .ok_or_else(|| internal("padding annotation missing from the serialised Job"))?
        + marker.len()
        - 1;
    let mut bytes = Vec::with_capacity(base.len() + pad);
    bytes.extend_from_slice(&base.as_bytes()[..at]);
    bytes.resize(at + pad, b'x');
    bytes.extend_from_slice(&base.as_bytes()[at..]);
    let job =
        String::from_utf8(bytes).map_err(|e| internal(format!("padding broke UTF-8: {e}")))?;
    Ok(AdapterOutput {
        job: black_box(job),
        companions: Vec::new(),
    })
}

/// Spins forever.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates and touches 1 MiB blocks until the allocator gives up.
fn memory_bomb() -> ! {
    const BLOCK: usize = 1 << 20;
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; BLOCK];
        for i in (0..BLOCK).step_by(4096) {
            block[i] = (i >> 12) as u8 | 1;
        }
        hoard.push(black_box(block));
        black_box(&hoard);
    }
}

/// Recurses with a 1 KiB frame until the stack overflows.
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth as u8; 1024]);
    if black_box(depth != u64::MAX) {
        recurse(depth + 1).wrapping_add(u64::from(frame[depth as usize % 1024]))
    } else {
        u64::from(frame[0])
    }
}

#[cfg(target_arch = "wasm32")]
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn trap() -> ! {
    std::process::abort()
}

/// What the sandbox lets the component see: environment, filesystem, clock and stdout.
fn probe() -> Vec<(String, String)> {
    let env = std::env::vars().count().to_string();
    let fs = match std::fs::read_dir("/") {
        Ok(entries) => format!("readable ({} entries)", entries.count()),
        Err(e) => format!("denied: {e}"),
    };
    let clock = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs().to_string(),
        Err(e) => format!("error: {e}"),
    };
    let stdout = {
        use std::io::Write as _;
        match std::io::stdout().write_all(b"hostile probe\n") {
            Ok(()) => "written".to_owned(),
            Err(e) => format!("error: {e}"),
        }
    };
    vec![
        ("probe.env-count".to_owned(), env),
        ("probe.fs-root".to_owned(), fs),
        ("probe.clock-secs".to_owned(), clock),
        ("probe.stdout".to_owned(), stdout),
    ]
}

taskpod_adapter_sdk::export_adapter!(Hostile);

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(mode: &str) -> Context {
        Context {
            namespace: "tenant-a".into(),
            config: format!(r#"{{"mode": "{mode}"}}"#),
            job_name: "t-1".into(),
            labels: vec![("taskpod.dev/tenant".into(), "a".into())],
            ..Context::default()
        }
    }

    fn task() -> Task {
        Task {
            id: "t".into(),
            payload: "{}".into(),
            ..Task::default()
        }
    }

    fn job(mode: &str) -> Value {
        let out = Hostile::adapt(&task(), &ctx(mode)).unwrap();
        serde_json::from_str(&out.job).unwrap()
    }

    #[test]
    fn validate_config_accepts_modes_and_rejects_others() {
        for mode in MODES {
            Hostile::validate_config(&format!(r#"{{"mode": "{mode}", "size": 10}}"#)).unwrap();
        }
        let err = Hostile::validate_config(r#"{"mode": "explode"}"#).unwrap_err();
        assert!(err.to_string().contains("explode"), "{err}");
        assert!(Hostile::validate_config("[]").is_err());
        assert!(matches!(
            Hostile::validate_config(r#"{"mode": "reject-config"}"#),
            Err(AdapterError::InvalidConfig(_))
        ));
        assert_eq!(Hostile::info().name, "hostile");
    }

    #[test]
    fn ok_is_a_valid_job() {
        let j = job("ok");
        assert_eq!(j["kind"], "Job");
        assert_eq!(j["metadata"]["name"], "t-1");
        assert_eq!(j["metadata"]["namespace"], "tenant-a");
        assert_eq!(
            j["spec"]["template"]["spec"]["containers"][0]["image"],
            "busybox:1.36"
        );
        assert_eq!(
            j["spec"]["template"]["metadata"]["labels"]["taskpod.dev/tenant"],
            "a"
        );
    }

    #[test]
    fn bad_jobs_are_bad_in_the_documented_way() {
        assert_eq!(job("bad-name")["metadata"]["name"], "Bad_Name!");
        assert_eq!(job("not-a-job")["kind"], "Pod");
        assert_eq!(
            job("other-namespace")["metadata"]["namespace"],
            "kube-system"
        );
        let pod = |m: &str| job(m)["spec"]["template"]["spec"].clone();
        assert!(
            pod("no-containers")["containers"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            pod("privileged")["containers"][0]["securityContext"]["privileged"],
            true
        );
        assert_eq!(
            pod("add-capabilities")["containers"][0]["securityContext"]["capabilities"]["add"][0],
            "SYS_ADMIN"
        );
        assert_eq!(pod("host-path")["volumes"][0]["hostPath"]["path"], "/");
        assert_eq!(pod("host-network")["hostNetwork"], true);
        assert_eq!(pod("host-pid")["hostPID"], true);
        assert_eq!(
            pod("service-account")["serviceAccountName"],
            "cluster-admin"
        );
        assert_eq!(
            pod("image")["containers"][0]["image"],
            "evil.example.com/miner:latest"
        );
        assert_eq!(pod("restart-always")["restartPolicy"], "OnFailure");
        assert_eq!(
            job("bad-label")["spec"]["template"]["metadata"]["labels"]["hostile"],
            "not a valid value!"
        );
    }

    #[test]
    fn companions_and_raw_outputs() {
        let out = Hostile::adapt(&task(), &ctx("companion-privileged")).unwrap();
        let dep: Value = serde_json::from_str(&out.companions[0]).unwrap();
        assert_eq!(dep["kind"], "Deployment");
        assert_eq!(
            dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"],
            true
        );
        let out = Hostile::adapt(&task(), &ctx("service-load-balancer")).unwrap();
        let service: Value = serde_json::from_str(&out.companions[0]).unwrap();
        assert_eq!(service["kind"], "Service");
        assert_eq!(service["spec"]["type"], "LoadBalancer");
        let out = Hostile::adapt(&task(), &ctx("invalid-json")).unwrap();
        assert_eq!(out.job, "{not json");
        let out = Hostile::adapt(&task(), &ctx("invalid-companion")).unwrap();
        assert_eq!(out.companions, ["{not json"]);
    }

    #[test]
    fn payload_overrides_config() {
        let mut t = task();
        t.payload = r#"{"mode": "many-companions", "count": 3}"#.into();
        let out = Hostile::adapt(&t, &ctx("ok")).unwrap();
        assert_eq!(out.companions.len(), 3);

        t.payload = r#"{"mode": "huge-output", "size": 5000}"#.into();
        let out = Hostile::adapt(&t, &ctx("ok")).unwrap();
        assert_eq!(out.job.len(), 5000);
        let v: Value = serde_json::from_str(&out.job).unwrap();
        assert_eq!(v["kind"], "Job");

        t.payload = r#"{"mode": "error", "kind": "invalid-task", "message": "m"}"#.into();
        assert_eq!(
            Hostile::adapt(&t, &ctx("ok")).unwrap_err(),
            AdapterError::InvalidTask("m".into())
        );

        t.payload = r#"{"mode": "log-flood", "count": 5}"#.into();
        let _ = log::take();
        Hostile::adapt(&t, &ctx("ok")).unwrap();
        assert_eq!(log::take().len(), 5);
    }

    #[test]
    fn probe_reports_annotations() {
        let j = job("probe");
        let ann = &j["metadata"]["annotations"];
        for key in [
            "probe.env-count",
            "probe.fs-root",
            "probe.clock-secs",
            "probe.stdout",
        ] {
            assert!(ann[key].is_string(), "{key} missing: {ann}");
        }
    }

    #[test]
    fn unknown_mode_in_payload_is_an_invalid_task() {
        let mut t = task();
        t.payload = r#"{"mode": "nope"}"#.into();
        assert!(matches!(
            Hostile::adapt(&t, &ctx("ok")),
            Err(AdapterError::InvalidTask(_))
        ));
    }
}
