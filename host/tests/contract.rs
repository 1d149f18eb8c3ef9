//! The Job contract on hand-written adapter outputs: each rejection (with its path and rule) and
//! each forced field.

use serde_json::{Value, json};
use taskpod::contract::{self, ContractError, JobContract, RestartRule, Rule};
use taskpod_adapter_sdk::AdapterOutput;

fn contract() -> JobContract {
    JobContract {
        adapter: "test-adapter".to_owned(),
        adapter_ref: "test-adapter@1.2.3".to_owned(),
        adapter_digest: "sha256:abcd".to_owned(),
        namespace: "druid".to_owned(),
        job_name: "indexparallel-0123456789abcdef".to_owned(),
        instance: "taskpod-a".to_owned(),
        task_id: "index_parallel_wiki_2026-11-23T10:15:02.117Z".to_owned(),
        tenant: "Team A!".to_owned(),
        task_type: "index_parallel".to_owned(),
        labels: [("team".to_owned(), "analytics".to_owned())].into(),
        annotations: [("example.com/owner".to_owned(), "data".to_owned())].into(),
        max_duration_seconds: 14400,
        cleanup_delay_seconds: Some(172_800),
        termination_grace_period_seconds: Some(45),
        restart: RestartRule::default(),
    }
}

fn job() -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "whatever", "namespace": "elsewhere", "labels": {"app": "x"}},
        "spec": {
            "backoffLimit": 5,
            "template": {
                "metadata": {"labels": {"team": "adapter-choice"}},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [{"name": "main", "image": "busybox:1"}],
                    "initContainers": [{"name": "init", "image": "busybox:1"}]
                }
            }
        }
    })
}

fn enforce(job: Value, companions: Vec<Value>) -> Result<contract::Manifests, ContractError> {
    enforce_with(job, companions, &contract())
}

fn enforce_with(
    job: Value,
    companions: Vec<Value>,
    contract: &JobContract,
) -> Result<contract::Manifests, ContractError> {
    let output = AdapterOutput {
        job: job.to_string(),
        companions: companions.iter().map(Value::to_string).collect(),
    };
    contract::enforce(&output, contract)
}

fn rejects(job: Value, path: &str, rule: Rule) -> ContractError {
    let err = enforce(job, Vec::new()).expect_err("must be rejected");
    assert_eq!(err.rule, rule, "{err}");
    assert_eq!(err.path, path, "{err}");
    assert_eq!(err.adapter, "test-adapter");
    let text = err.to_string();
    assert!(
        text.contains("test-adapter") && text.contains(path),
        "{text}"
    );
    err
}

#[test]
fn forced_fields_are_set() {
    let m = enforce(job(), Vec::new()).expect("valid");
    let meta = &m.job.metadata;
    assert_eq!(meta.name.as_deref(), Some("indexparallel-0123456789abcdef"));
    assert_eq!(meta.namespace.as_deref(), Some("druid"));
    let labels = meta.labels.as_ref().expect("labels");
    assert_eq!(labels["taskpod.dev/task"], "indexparallel-0123456789abcdef");
    assert_eq!(labels["taskpod.dev/instance"], "taskpod-a");
    assert_eq!(labels["taskpod.dev/tenant"], "TeamA");
    assert_eq!(labels["taskpod.dev/type"], "index_parallel");
    assert_eq!(labels["app"], "x", "the adapter's labels are kept");
    assert_eq!(labels["team"], "analytics", "configured labels are added");
    let annotations = meta.annotations.as_ref().expect("annotations");
    assert_eq!(
        annotations["taskpod.dev/task-id"],
        "index_parallel_wiki_2026-11-23T10:15:02.117Z"
    );
    assert_eq!(annotations["taskpod.dev/adapter"], "test-adapter@1.2.3");
    assert_eq!(annotations["taskpod.dev/adapter-digest"], "sha256:abcd");
    assert_eq!(annotations["example.com/owner"], "data");

    let spec = m.job.spec.as_ref().expect("spec");
    assert_eq!(spec.active_deadline_seconds, Some(14400));
    assert_eq!(spec.ttl_seconds_after_finished, Some(172_800));
    assert_eq!(spec.backoff_limit, Some(0));
    let template_meta = spec.template.metadata.as_ref().expect("pod metadata");
    let pod_labels = template_meta.labels.as_ref().expect("pod labels");
    assert_eq!(
        pod_labels["taskpod.dev/task"],
        "indexparallel-0123456789abcdef"
    );
    assert_eq!(pod_labels["taskpod.dev/instance"], "taskpod-a");
    assert_eq!(
        pod_labels["team"], "adapter-choice",
        "an adapter's own value wins"
    );
    let pod = spec.template.spec.as_ref().expect("pod spec");
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.termination_grace_period_seconds, Some(45));
}

#[test]
fn debug_jobs_have_no_ttl() {
    let mut c = contract();
    c.cleanup_delay_seconds = None;
    let m = enforce_with(job(), Vec::new(), &c).expect("valid");
    assert_eq!(m.job.spec.expect("spec").ttl_seconds_after_finished, None);
}

#[test]
fn restart_on_failure_only_when_allowed_and_bounded() {
    let mut c = contract();
    c.restart = RestartRule {
        allow_on_failure: true,
        max_backoff_limit: 6,
    };
    let m = enforce_with(job(), Vec::new(), &c).expect("5 <= 6");
    let spec = m.job.spec.expect("spec");
    assert_eq!(spec.backoff_limit, Some(5));
    assert_eq!(
        spec.template.spec.expect("pod").restart_policy.as_deref(),
        Some("OnFailure")
    );
    c.restart.max_backoff_limit = 2;
    let err = enforce_with(job(), Vec::new(), &c).expect_err("5 > 2");
    assert_eq!(err.rule, Rule::RestartPolicy);
    assert_eq!(err.path, "spec.backoffLimit");
}

#[test]
fn not_json_is_rejected() {
    let output = AdapterOutput {
        job: "{not json".to_owned(),
        companions: Vec::new(),
    };
    let err = contract::enforce(&output, &contract()).expect_err("rejected");
    assert_eq!(err.rule, Rule::NotJson);
}

#[test]
fn not_a_job_is_rejected() {
    let mut pod = job();
    pod["kind"] = json!("Pod");
    pod["apiVersion"] = json!("v1");
    rejects(pod, "kind", Rule::WrongKind);
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    let mut j = job();
    j["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    rejects(
        j,
        "spec.template.spec.containers[0].imagePullPolicyy",
        Rule::UnknownField,
    );
    let mut j = job();
    j["spex"] = json!({});
    rejects(j, "spex", Rule::UnknownField);
}

#[test]
fn wrong_types_are_rejected() {
    let mut j = job();
    j["spec"]["backoffLimit"] = json!("many");
    let err = enforce(j, Vec::new()).expect_err("rejected");
    assert_eq!(err.rule, Rule::Malformed);
}

#[test]
fn no_containers_is_rejected() {
    let mut j = job();
    j["spec"]["template"]["spec"]["containers"] = json!([]);
    rejects(j, "spec.template.spec.containers", Rule::NoContainers);
}

#[test]
fn missing_image_is_rejected() {
    let mut j = job();
    j["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .expect("container")
        .remove("image");
    rejects(
        j,
        "spec.template.spec.containers[0].image",
        Rule::MissingImage,
    );
}

#[test]
fn duplicate_container_names_are_rejected() {
    let mut j = job();
    j["spec"]["template"]["spec"]["initContainers"][0]["name"] = json!("main");
    rejects(
        j,
        "spec.template.spec.initContainers[0].name",
        Rule::DuplicateContainerName,
    );
}

#[test]
fn invalid_container_names_are_rejected() {
    let mut j = job();
    j["spec"]["template"]["spec"]["containers"][0]["name"] = json!("Main_Container");
    rejects(
        j,
        "spec.template.spec.containers[0].name",
        Rule::InvalidName,
    );
}

#[test]
fn invalid_job_names_from_the_adapter_are_rejected() {
    let mut j = job();
    j["metadata"]["name"] = json!("Bad_Name!");
    rejects(j, "metadata.name", Rule::InvalidName);
}

#[test]
fn a_host_job_name_too_long_for_the_job_name_label_is_rejected() {
    let mut c = contract();
    c.job_name = "a".repeat(64);
    let err = enforce_with(job(), Vec::new(), &c).expect_err("rejected");
    assert_eq!(err.rule, Rule::InvalidName);
    assert!(err.detail.contains("job-name"), "{err}");
}

#[test]
fn invalid_labels_are_rejected() {
    let mut j = job();
    j["metadata"]["labels"]["bad key!"] = json!("v");
    rejects(j, "metadata.labels[\"bad key!\"]", Rule::InvalidLabel);
    let mut j = job();
    j["spec"]["template"]["metadata"]["labels"]["ok"] = json!("x".repeat(64));
    rejects(
        j,
        "spec.template.metadata.labels[\"ok\"]",
        Rule::InvalidLabel,
    );
    let mut j = job();
    j["metadata"]["labels"]["example.com/ok"] = json!("-starts-with-dash");
    rejects(j, "metadata.labels[\"example.com/ok\"]", Rule::InvalidLabel);
}

#[test]
fn oversized_annotations_are_rejected() {
    let mut j = job();
    j["metadata"]["annotations"] = json!({"big": "x".repeat(256 * 1024)});
    rejects(j, "metadata.annotations", Rule::InvalidAnnotations);
    let mut j = job();
    j["metadata"]["annotations"] = json!({"not a key": "v"});
    rejects(
        j,
        "metadata.annotations[\"not a key\"]",
        Rule::InvalidAnnotations,
    );
}

#[test]
fn companions_get_the_namespace_and_labels_and_are_checked() {
    let config_map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "task-payload", "namespace": "kube-system"},
        "data": {"task.json": "{}"}
    });
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "peon"},
        "spec": {"ports": [{"port": 8100}]}
    });
    let m = enforce(job(), vec![config_map.clone(), service]).expect("valid");
    assert_eq!(m.companions.len(), 2);
    for companion in &m.companions {
        let meta = companion.metadata();
        assert_eq!(meta.namespace.as_deref(), Some("druid"));
        let labels = meta.labels.as_ref().expect("labels");
        assert_eq!(labels["taskpod.dev/task"], "indexparallel-0123456789abcdef");
    }
    let yaml = m.to_yaml().expect("yaml");
    assert_eq!(yaml.matches("\n---\n").count(), 2, "{yaml}");

    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
    let err = enforce(job(), vec![secret]).expect_err("rejected");
    assert_eq!(err.rule, Rule::WrongKind);
    assert_eq!(err.object, "companion[0]");

    let mut bad = config_map;
    bad["metadata"]["name"] = json!("Not_Valid");
    let err = enforce(job(), vec![bad]).expect_err("rejected");
    assert_eq!(err.rule, Rule::InvalidName);
    assert_eq!(err.object, "companion[0] (ConfigMap)");

    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "sidecar"},
        "spec": {
            "selector": {"matchLabels": {"app": "s"}},
            "template": {"metadata": {"labels": {"app": "s"}}, "spec": {"containers": []}}
        }
    });
    let err = enforce(job(), vec![deployment.clone()]).expect_err("rejected");
    assert_eq!(err.rule, Rule::NoContainers);
    assert_eq!(err.object, "companion[0] (Deployment)");

    // The Job's pod rules hold inside a Deployment's pod template too, with the path.
    let mut no_image = deployment.clone();
    no_image["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "worker", "image": "w:1"}, {"name": "helper"}]);
    let err = enforce(job(), vec![no_image]).expect_err("rejected");
    assert_eq!(err.rule, Rule::MissingImage);
    assert_eq!(err.path, "spec.template.spec.containers[1].image");
    let mut twice = deployment.clone();
    twice["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "worker", "image": "w:1"}, {"name": "worker", "image": "w:2"}]);
    let err = enforce(job(), vec![twice]).expect_err("rejected");
    assert_eq!(err.rule, Rule::DuplicateContainerName);
    let mut bad_label = deployment;
    bad_label["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "worker", "image": "w:1"}]);
    bad_label["spec"]["template"]["metadata"]["labels"]["bad key!"] = json!("x");
    let err = enforce(job(), vec![bad_label]).expect_err("rejected");
    assert_eq!(err.rule, Rule::InvalidLabel);
    assert_eq!(err.path, "spec.template.metadata.labels[\"bad key!\"]");
    assert_eq!(err.object, "companion[0] (Deployment)");
}

#[test]
fn subdomain_names_are_checked_as_kubernetes_does() {
    use taskpod::contract::is_dns1123_subdomain;
    // A Deployment or ConfigMap name may be longer than one 63-character label.
    assert!(is_dns1123_subdomain(&"a".repeat(100)));
    assert!(is_dns1123_subdomain("job-1.companion"));
    assert!(!is_dns1123_subdomain(&"a".repeat(254)));
    assert!(!is_dns1123_subdomain("a..b"));
    assert!(!is_dns1123_subdomain("-a"));
    assert!(!is_dns1123_subdomain("a.b-"));
    assert!(!is_dns1123_subdomain("Upper"));
}

#[test]
fn unknown_fields_of_companions_and_non_objects_are_named() {
    let companion = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "payload", "labelz": {"a": "b"}},
        "data": {"task.json": "{}"}
    });
    let err = enforce(job(), vec![companion]).expect_err("rejected");
    assert_eq!(err.rule, Rule::UnknownField, "{err}");
    assert_eq!(err.path, "metadata.labelz", "{err}");
    // Valid JSON that is not a manifest at all is a wrong kind, not "not JSON".
    let err = enforce(json!(["a", "list"]), Vec::new()).expect_err("rejected");
    assert_eq!(err.rule, Rule::WrongKind, "{err}");
}
