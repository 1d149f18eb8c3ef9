//! Golden tests of the overlord-copy adapters (`overlord-single`, `overlord-multi`) on the example
//! overlord pod (`examples/druid/overlord-pod.yaml`) and example Druid tasks: one pinned Job per
//! mode, every output checked by `kubernetes-validate --strict` for Kubernetes 1.37, and the
//! field-level outcomes Druid's `K8sTaskAdapter` family produces asserted one by one.
//!
//! Regenerate the pinned Jobs after an intended change with
//! `TASKPOD_BLESS=1 cargo test -p taskpod-adapter-druid --test overlord` and review the diff.

use std::path::{Path, PathBuf};

use serde_json::Value;
use taskpod_adapter_druid::overlord::{self, Config, Mode};
use taskpod_adapter_sdk::{AdapterError, AdapterOutput, Context, Limits, Task, names, payload};

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn yaml_to_json(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: Value = serde_yaml::from_str(&text).unwrap();
    serde_json::to_string(&value).unwrap()
}

fn base_pod() -> String {
    yaml_to_json(&repo_file("examples/druid/overlord-pod.yaml"))
}

fn task_from(rel: &str) -> Task {
    let payload = std::fs::read_to_string(repo_file(rel)).unwrap();
    let v: Value = serde_json::from_str(&payload).unwrap();
    Task {
        id: v["id"].as_str().unwrap().to_owned(),
        kind: v["type"].as_str().unwrap().to_owned(),
        tenant: "analytics".to_owned(),
        group_id: v["groupId"].as_str().map(str::to_owned),
        datasource: v["dataSource"].as_str().map(str::to_owned),
        payload,
        labels: vec![],
        tags: vec![],
    }
}

fn index_parallel() -> Task {
    task_from("examples/druid/tasks/index-parallel.json")
}

fn context(task: &Task, config: &str) -> Context {
    Context {
        namespace: "druid".to_owned(),
        config: config.to_owned(),
        base_pod: Some(base_pod()),
        templates: vec![],
        job_name: names::job_name(&task.id),
        labels: vec![("team".into(), "analytics".into())],
        annotations: vec![("example.com/owner".into(), "data-platform".into())],
        limits: Limits {
            max_duration_seconds: 14_400,
            cleanup_delay_seconds: Some(172_800),
            termination_grace_period_seconds: Some(30),
            max_inline_payload: payload::MAX_INLINE_PAYLOAD as u32,
        },
    }
}

const CONFIG: &str = r#"{
    "primaryContainerName": "druid-overlord",
    "javaOptsArray": ["-server", "-Xms1g", "-Xmx2g", "-XX:MaxDirectMemorySize=1g", "-Duser.timezone=UTC"],
    "peonMonitors": ["org.apache.druid.java.util.metrics.JvmMonitor"]
}"#;

fn run(task: &Task, ctx: &Context, mode: Mode) -> Result<AdapterOutput, AdapterError> {
    let config = Config::parse(&ctx.config)?;
    overlord::build(task, ctx, &config, mode)
}

fn job_of(out: &AdapterOutput) -> Value {
    serde_json::from_str(&out.job).unwrap()
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

fn env_value<'a>(container: &'a Value, name: &str) -> &'a str {
    env(container, name)
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("no env {name} with a value in {container}"))
}

/// Runs `kubernetes-validate --strict` for Kubernetes 1.37 on the Job and every companion.
fn validate(out: &AdapterOutput, label: &str) {
    let docs: Vec<&String> = std::iter::once(&out.job).chain(&out.companions).collect();
    taskpod_test_support::kubernetes_validate(&format!("the {label} output"), &docs);
}

/// Compares the pretty-printed Job with `tests/data/{name}.job.json` (written with TASKPOD_BLESS).
fn golden(out: &AdapterOutput, name: &str) {
    let got = serde_json::to_string_pretty(&job_of(out)).unwrap() + "\n";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/{name}.job.json"));
    taskpod_test_support::golden(
        &path,
        &got,
        "cargo test -p taskpod-adapter-druid --test overlord",
    );
}

/// The outcomes both modes share, on `main` and the pod.
fn check_common(job: &Value, task: &Task) {
    assert_eq!(job["metadata"]["name"], names::job_name(&task.id));
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 14_400);
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 172_800);
    let pod_meta = &job["spec"]["template"]["metadata"];
    for meta in [&job["metadata"], pod_meta] {
        assert_eq!(meta["labels"]["druid.k8s.peons"], "true");
        assert_eq!(meta["labels"]["team"], "analytics");
        assert_eq!(meta["annotations"]["task.id"], task.id.as_str());
        assert_eq!(meta["annotations"]["tls.enabled"], "false");
        assert_eq!(meta["annotations"]["example.com/owner"], "data-platform");
        // Never the overlord's own labels: a Service selecting the overlord must not select peons.
        assert!(meta["labels"].get("app.kubernetes.io/component").is_none());
    }
    assert_eq!(
        payload::decode(pod_meta["annotations"]["task"].as_str().unwrap()).unwrap(),
        task.payload
    );
    let spec = &job["spec"]["template"]["spec"];
    assert!(spec.get("nodeName").is_none());
    assert_eq!(spec["hostname"], names::job_name(&task.id));
    assert_eq!(spec["restartPolicy"], "Never");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(spec["serviceAccountName"], "druid-overlord");
    assert_eq!(spec["initContainers"][0]["name"], "wait-for-zk");
    let main = &spec["containers"][0];
    assert_eq!(main["name"], "main");
    assert_eq!(main["image"], "apache/druid:30.0.0");
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        assert!(main.get(probe).is_none(), "{probe} kept");
    }
    assert_eq!(
        main["ports"],
        serde_json::json!([
            {"containerPort": 8091, "name": "druid-tls-port", "protocol": "TCP"},
            {"containerPort": 8100, "name": "druid-port", "protocol": "TCP"}
        ])
    );
    assert_eq!(env_value(main, "TASK_DIR"), "/druid/data");
    assert_eq!(env_value(main, "TASK_ID"), task.id);
    assert_eq!(
        env_value(main, "DRUID_XMX"),
        "4g",
        "the overlord's env is kept"
    );
    assert_eq!(
        env(main, "druid_host").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "status.podIP"
    );
    assert_eq!(
        env(main, "HOSTNAME").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env(main, "TASK_JSON").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.annotations['task']"
    );
    assert_eq!(
        env_value(main, "druid_monitoring_monitors"),
        r#"["org.apache.druid.java.util.metrics.JvmMonitor"]"#
    );
    let java = env_value(main, "JAVA_OPTS");
    assert!(
        java.starts_with("-server -Xms1g -Xmx2g -XX:MaxDirectMemorySize=1g -Duser.timezone=UTC"),
        "{java}"
    );
    assert!(
        java.ends_with(
            "-Ddruid.port=8100 -Ddruid.plaintextPort=8100 -Ddruid.tlsPort=-1 -Ddruid.task.executor.tlsPort=-1 -Ddruid.task.executor.enableTlsPort=false"
        ),
        "{java}"
    );
    // 1.2 × (2g + 1g), Druid's HumanReadableBytes (g = 10^9); cpu 1000m; ephemeral-storage kept.
    for side in ["requests", "limits"] {
        assert_eq!(main["resources"][side]["memory"], "3600000000");
        assert_eq!(main["resources"][side]["cpu"], "1000m");
        assert_eq!(main["resources"][side]["ephemeral-storage"], "10Gi");
    }
}

#[test]
fn single_container_job() {
    let task = index_parallel();
    let ctx = context(&task, CONFIG);
    let out = run(&task, &ctx, Mode::Single).unwrap();
    assert!(out.companions.is_empty());
    let job = job_of(&out);
    check_common(&job, &task);
    let spec = &job["spec"]["template"]["spec"];
    assert_eq!(spec["containers"].as_array().unwrap().len(), 1);
    let main = &spec["containers"][0];
    assert_eq!(main["command"], serde_json::json!(["sh", "-c"]));
    assert_eq!(
        main["args"],
        serde_json::json!([format!("/peon.sh /druid/data 1 --taskId {}", task.id)])
    );
    assert_eq!(spec["initContainers"].as_array().unwrap().len(), 1);
    validate(&out, "single");
    golden(&out, "single");
}

#[test]
fn multi_container_job_with_kubexit() {
    let task = index_parallel();
    let ctx = context(&task, CONFIG);
    let out = run(&task, &ctx, Mode::Multi).unwrap();
    let job = job_of(&out);
    check_common(&job, &task);
    let spec = &job["spec"]["template"]["spec"];
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2);
    let (main, sidecar) = (&containers[0], &containers[1]);
    assert_eq!(sidecar["name"], "fluent-bit");
    assert_eq!(main["command"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(
        main["args"],
        serde_json::json!([format!(
            "/kubexit/kubexit /bin/sh -c \"/peon.sh /druid/data 1 --taskId {}\"",
            task.id
        )])
    );
    assert_eq!(sidecar["command"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(
        sidecar["args"],
        serde_json::json!([
            "/kubexit/kubexit /bin/sh -c \"/fluent-bit/bin/fluent-bit -c /fluent-bit/etc/fluent-bit.conf\" || true"
        ])
    );
    assert_eq!(env_value(main, "KUBEXIT_NAME"), "main");
    assert_eq!(env_value(sidecar, "KUBEXIT_NAME"), "fluent-bit");
    assert_eq!(env_value(sidecar, "KUBEXIT_DEATH_DEPS"), "main");
    assert!(env(main, "KUBEXIT_DEATH_DEPS").is_none());
    for c in containers {
        assert_eq!(env_value(c, "KUBEXIT_GRAVEYARD"), "/graveyard");
        let mounts = c["volumeMounts"].as_array().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m["name"] == "graveyard" && m["mountPath"] == "/graveyard")
        );
        assert!(
            mounts
                .iter()
                .any(|m| m["name"] == "kubexit" && m["mountPath"] == "/kubexit")
        );
    }
    let volumes = spec["volumes"].as_array().unwrap();
    let graveyard = volumes.iter().find(|v| v["name"] == "graveyard").unwrap();
    assert_eq!(graveyard["emptyDir"]["medium"], "Memory");
    assert!(
        volumes
            .iter()
            .any(|v| v["name"] == "kubexit" && v["emptyDir"] == serde_json::json!({}))
    );
    let init = spec["initContainers"].as_array().unwrap();
    let kubexit = init.last().unwrap();
    assert_eq!(kubexit["name"], "kubexit");
    assert_eq!(kubexit["image"], "karlkfi/kubexit:latest");
    assert_eq!(
        kubexit["command"],
        serde_json::json!(["cp", "/bin/kubexit", "/kubexit/kubexit"])
    );
    validate(&out, "multi-kubexit");
    golden(&out, "multi-kubexit");
}

#[test]
fn multi_container_job_with_native_sidecars() {
    let task = index_parallel();
    let config = CONFIG.replace('{', r#"{"sidecars": "native", "kubexitImage": "unused:1","#);
    let ctx = context(&task, &config);
    let out = run(&task, &ctx, Mode::Multi).unwrap();
    let job = job_of(&out);
    check_common(&job, &task);
    let spec = &job["spec"]["template"]["spec"];
    assert_eq!(spec["containers"].as_array().unwrap().len(), 1);
    let init = spec["initContainers"].as_array().unwrap();
    assert_eq!(init.len(), 2);
    assert_eq!(init[1]["name"], "fluent-bit");
    assert_eq!(init[1]["restartPolicy"], "Always");
    assert_eq!(
        init[1]["command"],
        serde_json::json!(["/fluent-bit/bin/fluent-bit"]),
        "native sidecars keep their command"
    );
    assert!(!job.to_string().contains("kubexit"));
    validate(&out, "multi-native");
    golden(&out, "multi-native");
}

#[test]
fn sidecar_with_args_but_no_command_is_refused_clearly() {
    let task = index_parallel();
    let mut ctx = context(&task, CONFIG);
    let mut pod: Value = serde_json::from_str(ctx.base_pod.as_deref().unwrap()).unwrap();
    pod["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("command");
    ctx.base_pod = Some(pod.to_string());
    let err = run(&task, &ctx, Mode::Multi).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, AdapterError::InvalidConfig(_)), "{msg}");
    for part in [
        "basePod.spec.containers[0] (`fluent-bit`)",
        "explicit `command`",
        "ENTRYPOINT",
        "Istio",
        "sidecars: native",
    ] {
        assert!(msg.contains(part), "`{part}` missing from: {msg}");
    }
    // Native sidecars need no explicit command, and single mode drops the sidecar.
    let native = CONFIG.replace('{', r#"{"sidecars": "native","#);
    ctx.config = native;
    assert!(run(&task, &ctx, Mode::Multi).is_ok());
    ctx.config = CONFIG.to_owned();
    assert!(run(&task, &ctx, Mode::Single).is_ok());
}

#[test]
fn big_payload_travels_in_a_configmap() {
    let mut task = index_parallel();
    let numbers: Vec<String> = (0..40_000u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) % 1_000_003).to_string())
        .collect();
    task.payload = format!(
        r#"{{"type":"index_parallel","id":"{}","blob":[{}]}}"#,
        task.id,
        numbers.join(",")
    );
    assert!(payload::encode(&task.payload).len() > payload::MAX_INLINE_PAYLOAD);
    let ctx = context(&task, CONFIG);
    let out = run(&task, &ctx, Mode::Multi).unwrap();
    assert_eq!(out.companions.len(), 1);
    let cm: Value = serde_json::from_str(&out.companions[0]).unwrap();
    assert_eq!(cm["apiVersion"], "v1");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], format!("{}-payload", ctx.job_name));
    assert_eq!(cm["immutable"], true);
    assert_eq!(
        payload::decode(cm["data"]["task"].as_str().unwrap()).unwrap(),
        task.payload
    );
    let job = job_of(&out);
    let spec = &job["spec"]["template"]["spec"];
    let main = &spec["containers"][0];
    assert!(env(main, "TASK_JSON").is_none());
    assert_eq!(
        env_value(main, "TASK_JSON_PATH"),
        "/var/run/taskpod/payload/task"
    );
    assert!(
        job["spec"]["template"]["metadata"]["annotations"]
            .get("task")
            .is_none()
    );
    let volume = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "taskpod-payload")
        .unwrap();
    assert_eq!(volume["configMap"]["name"], cm["metadata"]["name"]);
    // Only the main container mounts the payload.
    assert!(
        spec["containers"][1]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["name"] != "taskpod-payload")
    );
    validate(&out, "big-payload");
}

#[test]
fn long_ids_give_valid_names_hostnames_and_labels() {
    let mut task = index_parallel();
    task.id = format!(
        "index_parallel_{}_2026-11-23T10:15:02.117Z",
        "very_long_datasource_name".repeat(8)
    );
    task.group_id = Some(task.id.clone());
    task.datasource = Some("very_long_datasource_name".repeat(8));
    let ctx = context(&task, CONFIG);
    let out = run(&task, &ctx, Mode::Single).unwrap();
    let job = job_of(&out);
    let name = job["metadata"]["name"].as_str().unwrap();
    assert!(name.len() <= 63 && names::is_dns1123_label(name), "{name}");
    assert_eq!(job["spec"]["template"]["spec"]["hostname"], name);
    for (k, v) in job["metadata"]["labels"].as_object().unwrap() {
        names::check_label_key(k).unwrap();
        names::check_label_value(v.as_str().unwrap()).unwrap();
    }
    assert_eq!(job["metadata"]["annotations"]["task.id"], task.id.as_str());
    let mut other = task.clone();
    other.id.push('2');
    assert_ne!(names::job_name(&other.id), name);
    validate(&out, "long-id");
    golden(&out, "long-id");
}

#[test]
fn memory_scales_with_the_last_xmx_with_and_without_direct_memory() {
    let task = index_parallel();
    let cases = [
        // (javaOptsArray, expected bytes): defaults heap 1g, direct = heap.
        (r#"[]"#, "2400000000"),
        (r#"["-Xmx4g"]"#, "9600000000"),
        (r#"["-Xmx1g", "-Xmx2500m"]"#, "6000000000"),
        (
            r#"["-Xmx2g", "-XX:MaxDirectMemorySize=500m"]"#,
            "3000000000",
        ),
        (r#"["-XX:MaxDirectMemorySize=1GiB"]"#, "2488490188"),
    ];
    for (opts, want) in cases {
        let config = format!(
            r#"{{"primaryContainerName": "druid-overlord", "javaOptsArray": {opts}, "cpuCoreInMicro": 2500}}"#
        );
        let ctx = context(&task, &config);
        let out = run(&task, &ctx, Mode::Single).unwrap();
        let job = job_of(&out);
        let res = &job["spec"]["template"]["spec"]["containers"][0]["resources"];
        for side in ["requests", "limits"] {
            assert_eq!(res[side]["memory"], want, "{opts}");
            assert_eq!(res[side]["cpu"], "2500m", "{opts}");
        }
    }
    let err = run(
        &task,
        &context(&task, r#"{"javaOptsArray": ["-Xmx2x"]}"#),
        Mode::Single,
    )
    .unwrap_err();
    assert!(err.to_string().contains("config.javaOptsArray[0]"), "{err}");
}

#[test]
fn queryable_tasks_load_broadcast_segments_and_add_their_java_opts() {
    let task = task_from("examples/druid/tasks/index-kafka.json");
    let ctx = context(&task, &CONFIG.replace('{', r#"{"enableTlsPort": true,"#));
    let out = run(&task, &ctx, Mode::Single).unwrap();
    let job = job_of(&out);
    let main = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        main["args"][0],
        format!(
            "/peon.sh /druid/data 1 --loadBroadcastSegments true --taskId {}",
            task.id
        )
    );
    let java = env_value(main, "JAVA_OPTS");
    assert!(
        java.contains(r#"-Duser.timezone=UTC -Xmx3g -XX:MaxDirectMemorySize=1g -Dlog4j.configurationFile="/opt/druid/conf/log4j2 peon.xml" -Ddruid.port=8100"#),
        "{java}"
    );
    assert!(java.contains("-Ddruid.tlsPort=8091 -Ddruid.task.executor.tlsPort=8091 -Ddruid.task.executor.enableTlsPort=true"), "{java}");
    // The task's own -Xmx3g and direct 1g come last: 1.2 × 4e9.
    assert_eq!(main["resources"]["limits"]["memory"], "4800000000");
    assert_eq!(job["metadata"]["annotations"]["tls.enabled"], "true");
    validate(&out, "kafka");
}

#[test]
fn missing_or_bad_base_pod_and_primary_container_are_named() {
    let task = index_parallel();
    let mut ctx = context(&task, CONFIG);
    ctx.base_pod = None;
    let err = run(&task, &ctx, Mode::Single).unwrap_err();
    assert!(
        err.to_string()
            .contains("basePod: the overlord-single adapter"),
        "{err}"
    );
    assert!(err.to_string().contains("POD_NAME"), "{err}");
    ctx.base_pod = Some(r#"{"apiVersion":"v1","kind":"Pod","spec":{"containers":[]}}"#.into());
    let err = run(&task, &ctx, Mode::Multi).unwrap_err();
    assert!(err.to_string().contains("basePod.spec.containers"), "{err}");

    let ctx = context(&task, r#"{"primaryContainerName": "druid"}"#);
    let err = run(&task, &ctx, Mode::Single).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("config.primaryContainerName") && msg.contains("fluent-bit, druid-overlord"),
        "{msg}"
    );

    // Without primaryContainerName the first container runs the peon, as in Druid.
    let ctx = context(&task, "{}");
    let job = job_of(&run(&task, &ctx, Mode::Single).unwrap());
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        "fluent/fluent-bit:3.1"
    );
}
