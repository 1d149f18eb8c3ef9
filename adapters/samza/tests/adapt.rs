//! The samza adapter, property by property, against seed 002 (samza_kubernetes), on the example
//! job config examples/samza/wikipedia-feed.properties; every output passes `kubernetes-validate`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use taskpod_adapter_samza::{Config, SamzaAdapter};
use taskpod_adapter_sdk::{Adapter, AdapterError, Context, Limits, Task, names, payload};

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// The example's properties. The file uses only `key=value` lines and `#` comments, so this
/// reader is enough here; the host's `render --task x.properties` reads the full format.
fn example_properties() -> BTreeMap<String, String> {
    let text =
        std::fs::read_to_string(repo_file("examples/samza/wikipedia-feed.properties")).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

fn task(props: &BTreeMap<String, String>) -> Task {
    Task {
        id: "samza-wikipedia-feed-1".to_owned(),
        kind: "samza".to_owned(),
        tenant: "streams".to_owned(),
        payload: serde_json::to_string(props).unwrap(),
        ..Task::default()
    }
}

fn context(task: &Task, config: &str) -> Context {
    Context {
        namespace: "samza".to_owned(),
        config: config.to_owned(),
        job_name: names::job_name(&task.id),
        labels: vec![("team".into(), "streams".into())],
        annotations: vec![],
        limits: Limits {
            max_duration_seconds: 2_592_000,
            cleanup_delay_seconds: Some(86_400),
            termination_grace_period_seconds: Some(30),
            max_inline_payload: payload::MAX_INLINE_PAYLOAD as u32,
        },
        ..Context::default()
    }
}

fn adapt_props(props: &BTreeMap<String, String>) -> Result<Value, AdapterError> {
    let t = task(props);
    let out = SamzaAdapter::adapt(&t, &context(&t, r#"{"backoffLimit": 6}"#))?;
    assert!(out.companions.is_empty());
    Ok(serde_json::from_str(&out.job).unwrap())
}

fn with(key: &str, value: Option<&str>) -> BTreeMap<String, String> {
    let mut p = example_properties();
    match value {
        Some(v) => p.insert(key.to_owned(), v.to_owned()),
        None => p.remove(key),
    };
    p
}

fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name}"))
}

#[test]
fn pod_count_is_an_indexed_job_of_that_many_completions() {
    let job = adapt_props(&example_properties()).unwrap();
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(spec["completions"], 3);
    assert_eq!(spec["parallelism"], 3);
    let job = adapt_props(&with("kubernetes.pod.count", Some("8"))).unwrap();
    assert_eq!(job["spec"]["completions"], 8);
    assert_eq!(job["spec"]["parallelism"], 8);
}

#[test]
fn container_id_comes_from_the_completion_index() {
    let job = adapt_props(&example_properties()).unwrap();
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env(c, "SAMZA_CONTAINER_ID")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    );
}

#[test]
fn job_config_travels_in_samza_job_config() {
    let props = example_properties();
    let job = adapt_props(&props).unwrap();
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    let config: Value =
        serde_json::from_str(env(c, "SAMZA_JOB_CONFIG")["value"].as_str().unwrap()).unwrap();
    assert_eq!(config, json!({ "config": props }));
    assert_eq!(
        config["config"]["task.class"],
        "samza.examples.wikipedia.task.WikipediaFeedStreamTask"
    );
}

#[test]
fn image_memory_and_cpu_become_the_container_and_its_limits() {
    let job = adapt_props(&example_properties()).unwrap();
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["name"], "samza-container");
    assert_eq!(c["image"], "registry.example.com/hello-samza:0.9.1");
    assert_eq!(
        c["resources"],
        json!({"limits": {"memory": "1Gi", "cpu": "500m"}})
    );
    // Without them: no resources at all.
    let mut p = with("kubernetes.container.memory", None);
    p.remove("kubernetes.container.cpu.cores");
    let job = adapt_props(&p).unwrap();
    assert!(
        job["spec"]["template"]["spec"]["containers"][0]
            .get("resources")
            .is_none()
    );
    let job = adapt_props(&with("kubernetes.container.cpu.cores", Some("1"))).unwrap();
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"],
        "1"
    );
}

#[test]
fn node_selector_is_optional() {
    let job = adapt_props(&example_properties()).unwrap();
    assert_eq!(
        job["spec"]["template"]["spec"]["nodeSelector"],
        json!({"disktype": "ssd"})
    );
    let job = adapt_props(&with(
        "kubernetes.node.selector",
        Some("disktype=ssd,topology.kubernetes.io/zone=west"),
    ))
    .unwrap();
    assert_eq!(
        job["spec"]["template"]["spec"]["nodeSelector"],
        json!({"disktype": "ssd", "topology.kubernetes.io/zone": "west"})
    );
    let job = adapt_props(&with("kubernetes.node.selector", None)).unwrap();
    assert!(
        job["spec"]["template"]["spec"]
            .get("nodeSelector")
            .is_none()
    );
}

#[test]
fn state_is_an_empty_dir_at_samza_state() {
    let job = adapt_props(&example_properties()).unwrap();
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"],
        json!([{"name": "samza-state", "emptyDir": {}}])
    );
    assert_eq!(
        pod["containers"][0]["volumeMounts"],
        json!([{"name": "samza-state", "mountPath": "/samza/state"}])
    );
}

#[test]
fn failed_containers_restart_in_place_bounded() {
    let job = adapt_props(&example_properties()).unwrap();
    assert_eq!(
        job["spec"]["template"]["spec"]["restartPolicy"],
        "OnFailure"
    );
    assert_eq!(job["spec"]["backoffLimit"], 6);
    let t = task(&example_properties());
    let out = SamzaAdapter::adapt(&t, &context(&t, "{}")).unwrap();
    let job: Value = serde_json::from_str(&out.job).unwrap();
    assert_eq!(job["spec"]["backoffLimit"], Config::default().backoff_limit);
    assert_eq!(job["spec"]["backoffLimit"], 3);
}

#[test]
fn labels_limits_and_name() {
    let t = task(&example_properties());
    let job = adapt_props(&example_properties()).unwrap();
    assert_eq!(job["metadata"]["name"], names::job_name(&t.id));
    assert_eq!(job["metadata"]["namespace"], "samza");
    for meta in [&job["metadata"], &job["spec"]["template"]["metadata"]] {
        assert_eq!(
            meta["labels"],
            json!({"app.kubernetes.io/name": "samza", "app.kubernetes.io/instance": "wikipedia-feed",
                   "samza.apache.org/job-id": "1", "team": "streams"})
        );
    }
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 2_592_000);
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 86_400);
    assert_eq!(
        job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        30
    );
}

#[test]
fn errors_name_the_property() {
    let err = adapt_props(&with("kubernetes.container.image", None)).unwrap_err();
    assert!(matches!(err, AdapterError::InvalidTask(_)));
    assert!(
        err.to_string()
            .contains("payload.kubernetes.container.image"),
        "{err}"
    );
    for bad in ["0", "three", "-1", "100001"] {
        let err = adapt_props(&with("kubernetes.pod.count", Some(bad))).unwrap_err();
        assert!(
            err.to_string().contains("payload.kubernetes.pod.count"),
            "{bad}: {err}"
        );
    }
    let err = adapt_props(&with("kubernetes.pod.count", None)).unwrap_err();
    assert!(
        err.to_string().contains("kubernetes.pod.count: missing"),
        "{err}"
    );
    let err = adapt_props(&with("kubernetes.node.selector", Some("ssd"))).unwrap_err();
    assert!(
        err.to_string().contains("payload.kubernetes.node.selector"),
        "{err}"
    );
    let err = adapt_props(&with("kubernetes.container.memory", Some(" "))).unwrap_err();
    assert!(
        err.to_string()
            .contains("payload.kubernetes.container.memory"),
        "{err}"
    );
    let t = task(&example_properties());
    let mut ctx = context(&t, "{}");
    ctx.limits.max_inline_payload = 200;
    let err = SamzaAdapter::adapt(&t, &ctx).unwrap_err();
    assert!(err.to_string().contains("inline limit of 200"), "{err}");
    let err = SamzaAdapter::validate_config(r#"{"backoff": 1}"#).unwrap_err();
    assert!(matches!(err, AdapterError::InvalidConfig(_)));
}

/// The example: golden YAML, regenerated with `TASKPOD_BLESS=1`.
#[test]
fn example_matches_golden_file() {
    let job = adapt_props(&example_properties()).unwrap();
    let text = serde_yaml::to_string(&job).unwrap();
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wikipedia-feed.expected.yaml");
    taskpod_test_support::golden(
        &golden,
        &text,
        "cargo test -p taskpod-adapter-samza --test adapt",
    );
}

#[test]
fn output_passes_kubernetes_validate_strict() {
    let mut minimal = BTreeMap::new();
    minimal.insert(
        "kubernetes.container.image".to_owned(),
        "samza:1".to_owned(),
    );
    minimal.insert("kubernetes.pod.count".to_owned(), "1".to_owned());
    let jobs: Vec<String> = [example_properties(), minimal]
        .iter()
        .map(|props| adapt_props(props).unwrap().to_string())
        .collect();
    taskpod_test_support::kubernetes_validate("the Samza Jobs", &jobs);
}
