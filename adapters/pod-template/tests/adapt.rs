//! The pod-template adapter on seed 000's example PodTemplate and a real Druid task: every field
//! of Druid's Job contract, template choice, configuration errors and payload limits.

use std::path::Path;

use serde_json::Value;
use taskpod_adapter_pod_template::{Config, PodTemplateAdapter};
use taskpod_adapter_sdk::{Adapter, AdapterError, Context, Limits, Task, names, payload};

use taskpod_test_support::repo_file;

/// Reads a YAML PodTemplate and returns it as JSON text (what the host hands the adapter).
fn template_json(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: Value = serde_yaml::from_str(&text).unwrap();
    serde_json::to_string(&value).unwrap()
}

fn base_template() -> String {
    template_json(&repo_file("examples/druid/pod-templates/base.yaml"))
}

fn index_parallel_template() -> String {
    template_json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/index_parallel.yaml"))
}

/// The example Druid task, as the host would pass it.
fn druid_task() -> Task {
    let payload =
        std::fs::read_to_string(repo_file("examples/druid/tasks/index-parallel.json")).unwrap();
    let v: Value = serde_json::from_str(&payload).unwrap();
    Task {
        id: v["id"].as_str().unwrap().to_owned(),
        kind: v["type"].as_str().unwrap().to_owned(),
        tenant: "analytics".to_owned(),
        group_id: v["groupId"].as_str().map(str::to_owned),
        datasource: v["dataSource"].as_str().map(str::to_owned),
        payload,
        labels: vec![],
        tags: vec![
            ("team".into(), "analytics".into()),
            ("priority".into(), "50".into()),
        ],
    }
}

fn context(task: &Task, templates: Vec<(String, String)>) -> Context {
    Context {
        namespace: "druid".to_owned(),
        config: r#"{"baseTaskDir": "/druid/data"}"#.to_owned(),
        base_pod: None,
        templates,
        job_name: names::job_name(&task.id),
        labels: vec![("team".into(), "analytics".into())],
        annotations: vec![("owner".into(), "data-platform@example.com".into())],
        limits: Limits {
            max_duration_seconds: 14_400,
            cleanup_delay_seconds: Some(172_800),
            termination_grace_period_seconds: Some(30),
            max_inline_payload: payload::MAX_INLINE_PAYLOAD as u32,
        },
    }
}

fn adapt(task: &Task, ctx: &Context) -> Value {
    let out = PodTemplateAdapter::adapt(task, ctx).unwrap();
    assert!(out.companions.is_empty());
    serde_json::from_str(&out.job).unwrap()
}

fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name} in {container}"))
}

#[test]
fn base_template_job_carries_druids_contract() {
    let task = druid_task();
    let ctx = context(&task, vec![("base".into(), base_template())]);
    let job = adapt(&task, &ctx);

    assert_eq!(job["apiVersion"], "batch/v1");
    assert_eq!(job["kind"], "Job");
    assert_eq!(
        job["metadata"]["name"],
        "indexparallelwikipediakfjdnkeh-2d8caab432039730470cee250a99d5dd"
    );
    assert_eq!(job["metadata"]["namespace"], "druid");

    let pod_meta = &job["spec"]["template"]["metadata"];
    for meta in [&job["metadata"], pod_meta] {
        let labels = &meta["labels"];
        assert_eq!(labels["druid.k8s.peons"], "true");
        assert_eq!(
            labels["druid.task.id"],
            "indexparallelwikipediakfjdnkeh20261123t101502117z"
        );
        assert_eq!(labels["druid.task.type"], "index_parallel");
        assert_eq!(
            labels["druid.task.group.id"],
            "indexparallelwikipediakfjdnkeh20261123t101502117z"
        );
        assert_eq!(labels["druid.task.datasource"], "wikipedia");
        assert_eq!(labels["team"], "analytics");
        for (k, v) in labels.as_object().unwrap() {
            names::check_label_key(k).unwrap();
            names::check_label_value(v.as_str().unwrap()).unwrap();
        }

        let ann = &meta["annotations"];
        assert_eq!(ann["task.id"], task.id.as_str());
        assert_eq!(ann["task.type"], "index_parallel");
        assert_eq!(ann["task.group.id"], task.id.as_str());
        assert_eq!(ann["task.datasource"], "wikipedia");
        assert_eq!(ann["task.jobTemplate"], "base");
        assert_eq!(ann["owner"], "data-platform@example.com");
    }
    // The template's own pod metadata is kept.
    assert_eq!(
        pod_meta["labels"]["app.kubernetes.io/name"],
        "druid-realtime-backend"
    );
    assert_eq!(pod_meta["annotations"]["sidecar.istio.io/proxyCPU"], "512m");
    // The payload travels in the pod's `task` annotation only, and decodes to the task.
    assert!(job["metadata"]["annotations"].get("task").is_none());
    let decoded = payload::decode(pod_meta["annotations"]["task"].as_str().unwrap()).unwrap();
    assert_eq!(decoded, task.payload);

    let spec = &job["spec"];
    assert_eq!(spec["backoffLimit"], 0);
    assert_eq!(spec["activeDeadlineSeconds"], 14_400);
    assert_eq!(spec["ttlSecondsAfterFinished"], 172_800);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    // Everything else of the template is kept.
    assert_eq!(pod["securityContext"]["fsGroup"], 1000);
    assert_eq!(pod["tolerations"].as_array().unwrap().len(), 2);
    assert_eq!(pod["volumes"].as_array().unwrap().len(), 3);
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"],
        "druid-tiny-cluster-peons-config"
    );

    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let main = &containers[0];
    assert_eq!(main["image"], "apache/druid:30.0.0");
    assert_eq!(main["resources"]["limits"]["memory"], "2400M");
    assert_eq!(main["volumeMounts"].as_array().unwrap().len(), 3);
    assert_eq!(env(main, "CUSTOM_ENV_VARIABLE")["value"], "hello");
    assert_eq!(env(main, "TASK_ID")["value"], task.id.as_str());
    assert_eq!(env(main, "TASK_DIR")["value"], "/druid/data");
    assert_eq!(env(main, "DRUID_POD_TEMPLATE")["value"], "base");
    let json = env(main, "TASK_JSON");
    assert!(json.get("value").is_none());
    assert_eq!(
        json["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.annotations['task']"
    );
    assert_eq!(main["env"].as_array().unwrap().len(), 5);
}

#[test]
fn output_passes_kubernetes_validate_strict() {
    let task = druid_task();
    let ctx = context(&task, vec![("base".into(), base_template())]);
    let out = PodTemplateAdapter::adapt(&task, &ctx).unwrap();
    taskpod_test_support::kubernetes_validate("the Job", &[&out.job]);
}

#[test]
fn task_type_template_wins_over_base() {
    let task = druid_task();
    let ctx = context(
        &task,
        vec![
            ("base".into(), base_template()),
            ("index_parallel".into(), index_parallel_template()),
        ],
    );
    let job = adapt(&task, &ctx);
    assert_eq!(
        job["metadata"]["annotations"]["task.jobTemplate"],
        "index_parallel"
    );
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "druid-peon");
    assert_eq!(
        pod["restartPolicy"], "Never",
        "template's OnFailure is overridden"
    );
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2);
    // The sidecar is untouched; the container named `main` gets the task env.
    assert!(containers[0].get("env").is_none());
    let main = &containers[1];
    let env_names: Vec<&str> = main["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        env_names,
        [
            "TASK_DIR",
            "JAVA_OPTS",
            "TASK_ID",
            "TASK_JSON",
            "DRUID_POD_TEMPLATE"
        ],
        "same-named variables are replaced in place"
    );
    assert_eq!(env(main, "TASK_DIR")["value"], "/druid/data");
    assert_eq!(env(main, "DRUID_POD_TEMPLATE")["value"], "index_parallel");

    // Another task type falls back to base.
    let mut compact = druid_task();
    compact.kind = "compact".into();
    let job = adapt(&compact, &ctx);
    assert_eq!(job["metadata"]["annotations"]["task.jobTemplate"], "base");
}

#[test]
fn main_container_can_be_configured() {
    let task = druid_task();
    let mut ctx = context(&task, vec![("base".into(), index_parallel_template())]);
    ctx.config = r#"{"mainContainer": "log-shipper", "baseTaskDir": "/tmp/druid"}"#.into();
    let job = adapt(&task, &ctx);
    let shipper = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(env(shipper, "TASK_DIR")["value"], "/tmp/druid");

    ctx.config = r#"{"mainContainer": "peon"}"#.into();
    let err = PodTemplateAdapter::adapt(&task, &ctx).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, AdapterError::InvalidConfig(_)));
    assert!(
        msg.contains("templates.base") && msg.contains("peon") && msg.contains("log-shipper, main"),
        "{msg}"
    );
}

#[test]
fn missing_base_template_is_a_config_error() {
    let task = druid_task();
    let mut compact = task.clone();
    compact.kind = "compact".into();
    let ctx = context(
        &task,
        vec![("index_parallel".into(), index_parallel_template())],
    );
    // The task-type template alone is enough for its own type …
    assert!(PodTemplateAdapter::adapt(&task, &ctx).is_ok());
    // … but any other type needs base.
    let err = PodTemplateAdapter::adapt(&compact, &ctx).unwrap_err();
    assert!(matches!(err, AdapterError::InvalidConfig(_)));
    assert!(err.to_string().contains("templates.base"), "{err}");

    let ctx = context(
        &task,
        vec![("base".into(), "{\"kind\": \"PodTemplate\"".into())],
    );
    let err = PodTemplateAdapter::adapt(&task, &ctx).unwrap_err();
    assert!(err.to_string().contains("templates.base"), "{err}");
}

#[test]
fn bad_config_keys_are_rejected_by_name() {
    let err = PodTemplateAdapter::validate_config(r#"{"baseTaskDir": "/d", "maincontainer": "x"}"#)
        .unwrap_err();
    assert!(matches!(err, AdapterError::InvalidConfig(_)));
    assert!(err.to_string().contains("maincontainer"), "{err}");
    assert!(PodTemplateAdapter::validate_config("{}").is_ok());
    assert!(PodTemplateAdapter::validate_config("").is_ok());
    assert!(PodTemplateAdapter::validate_config("[1]").is_err());

    let task = druid_task();
    let mut ctx = context(&task, vec![("base".into(), base_template())]);
    ctx.config = r#"{"taskDir": "/x"}"#.into();
    let err = PodTemplateAdapter::adapt(&task, &ctx).unwrap_err();
    assert!(err.to_string().contains("taskDir"), "{err}");
}

#[test]
fn info_describes_the_adapter() {
    let info = PodTemplateAdapter::info();
    assert_eq!(info.name, "pod-template");
    assert!(names::is_dns1123_label(&info.name));
    let schema: Value = serde_json::from_str(&info.config_schema).unwrap();
    assert!(schema["properties"]["baseTaskDir"].is_object());
}

#[test]
fn long_ids_give_valid_distinct_names_and_labels() {
    let base = base_template();
    let prefix = "coordinator-issued_compact_1234_telemetry_wikipedia_geteditfailuresinnorthamerica_agg_summ";
    let mut jobs = Vec::new();
    for n in [116, 117] {
        let mut task = druid_task();
        task.id = format!("{prefix}_{n}_pcgkebcl_2023-07-19T16:53:11.416Z");
        task.group_id = Some(task.id.clone());
        task.datasource = Some(
            "telemetry_wikipedia_geteditfailuresinnorthamerica_agg_summary_with_a_very_long_name"
                .into(),
        );
        let ctx = context(&task, vec![("base".into(), base.clone())]);
        let job = adapt(&task, &ctx);
        let name = job["metadata"]["name"].as_str().unwrap().to_owned();
        assert!(names::is_dns1123_label(&name), "{name}");
        for (k, v) in job["metadata"]["labels"].as_object().unwrap() {
            names::check_label_key(k).unwrap();
            names::check_label_value(v.as_str().unwrap()).unwrap_or_else(|e| panic!("{k}: {e}"));
        }
        assert_eq!(job["metadata"]["annotations"]["task.id"], task.id.as_str());
        jobs.push(name);
    }
    assert_ne!(jobs[0], jobs[1]);
}

#[test]
fn missing_group_and_datasource_are_left_out() {
    let mut task = druid_task();
    task.group_id = None;
    task.datasource = None;
    let ctx = context(&task, vec![("base".into(), base_template())]);
    let job = adapt(&task, &ctx);
    assert!(
        job["metadata"]["labels"]
            .get("druid.task.group.id")
            .is_none()
    );
    assert!(
        job["metadata"]["annotations"]
            .get("task.datasource")
            .is_none()
    );
}

#[test]
fn debug_jobs_have_no_ttl() {
    let task = druid_task();
    let mut ctx = context(&task, vec![("base".into(), base_template())]);
    ctx.limits.cleanup_delay_seconds = None;
    ctx.limits.termination_grace_period_seconds = None;
    let job = adapt(&task, &ctx);
    assert!(job["spec"].get("ttlSecondsAfterFinished").is_none());
    assert!(
        job["spec"]["template"]["spec"]
            .get("terminationGracePeriodSeconds")
            .is_none()
    );
}

/// A task of `n` distinct numbers: barely compressible, so its gzip+base64 form is large.
fn incompressible_task(n: u64) -> Task {
    let mut task = druid_task();
    let numbers: Vec<String> = (0..n)
        .map(|i| (i.wrapping_mul(2_654_435_761) % 1_000_003).to_string())
        .collect();
    task.payload = format!(
        r#"{{"type":"index_parallel","blob":[{}]}}"#,
        numbers.join(",")
    );
    task
}

#[test]
fn oversize_payload_spills_into_a_configmap() {
    let task = incompressible_task(10_000);
    let mut ctx = context(&task, vec![("base".into(), base_template())]);
    ctx.limits.max_inline_payload = 10_000;
    let out = PodTemplateAdapter::adapt(&task, &ctx).unwrap();
    assert_eq!(out.companions.len(), 1);
    let cm: Value = serde_json::from_str(&out.companions[0]).unwrap();
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], format!("{}-payload", ctx.job_name));
    assert_eq!(cm["metadata"]["labels"]["druid.k8s.peons"], "true");
    assert_eq!(
        payload::decode(cm["data"]["task"].as_str().unwrap()).unwrap(),
        task.payload
    );
    let job: Value = serde_json::from_str(&out.job).unwrap();
    let pod = &job["spec"]["template"];
    assert!(pod["metadata"]["annotations"].get("task").is_none());
    let main = &pod["spec"]["containers"][0];
    assert_eq!(
        env(main, "TASK_JSON_PATH")["value"],
        "/var/run/taskpod/payload/task"
    );
    assert!(
        main["env"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["name"] != "TASK_JSON")
    );
    let volume = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "taskpod-payload")
        .unwrap();
    assert_eq!(volume["configMap"]["name"], cm["metadata"]["name"]);
    assert!(
        main["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "taskpod-payload" && m["readOnly"] == true)
    );

    ctx.limits.max_inline_payload = payload::MAX_INLINE_PAYLOAD as u32;
    assert!(
        PodTemplateAdapter::adapt(&task, &ctx)
            .unwrap()
            .companions
            .is_empty()
    );
}

#[test]
fn payload_over_the_configmap_limit_is_an_invalid_task() {
    let task = incompressible_task(400_000);
    let ctx = context(&task, vec![("base".into(), base_template())]);
    let err = PodTemplateAdapter::adapt(&task, &ctx).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, AdapterError::InvalidTask(_)), "{msg}");
    assert!(
        msg.contains("gzip+base64") && msg.contains("130048") && msg.contains("1048576"),
        "{msg}"
    );
}

#[test]
fn invalid_tasks_are_named() {
    let mut task = druid_task();
    task.payload = "{not json".into();
    let ctx = context(&task, vec![("base".into(), base_template())]);
    let err = PodTemplateAdapter::adapt(&task, &ctx).unwrap_err();
    assert!(matches!(err, AdapterError::InvalidTask(_)));
    assert!(err.to_string().contains("payload"), "{err}");

    let mut task = druid_task();
    task.id.clear();
    let err = PodTemplateAdapter::adapt(&task, &ctx).unwrap_err();
    assert!(err.to_string().contains("id"), "{err}");
}

#[test]
fn build_with_a_parsed_config_matches_adapt() {
    let task = druid_task();
    let ctx = context(&task, vec![("base".into(), base_template())]);
    let config = Config::parse(&ctx.config).unwrap();
    let a = taskpod_adapter_pod_template::build(&task, &ctx, &config).unwrap();
    let b = PodTemplateAdapter::adapt(&task, &ctx).unwrap();
    assert_eq!(a, b);
}

/// The whole Job for seed 000's template and the example task, pinned byte for byte in
/// `tests/data/index-parallel.job.json` (pretty-printed). After an intended change, regenerate it
/// with `TASKPOD_BLESS=1 cargo test -p taskpod-adapter-pod-template --test adapt golden` and
/// review the diff.
#[test]
fn golden_job() {
    let task = druid_task();
    let ctx = context(&task, vec![("base".into(), base_template())]);
    let out = PodTemplateAdapter::adapt(&task, &ctx).unwrap();
    let job: Value = serde_json::from_str(&out.job).unwrap();
    let got = serde_json::to_string_pretty(&job).unwrap() + "\n";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/index-parallel.job.json");
    taskpod_test_support::golden(
        &path,
        &got,
        "cargo test -p taskpod-adapter-pod-template --test adapt golden",
    );
}
