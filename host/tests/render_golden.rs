//! Golden test of `taskpod render` on Druid's example PodTemplate and an index_parallel task,
//! through the real CLI code path: the output is pinned in
//! tests/data/expected/druid-index-parallel.yaml (`TASKPOD_BLESS=1` rewrites it), every field of
//! the Druid customTemplateAdapter contract is asserted, and the manifest is checked with
//! `kubernetes-validate --strict` against the Kubernetes 1.37 schemas.

#[allow(dead_code)]
mod common;

use std::path::Path;

use clap::Parser as _;
use k8s_openapi::api::batch::v1::Job;
use taskpod::cli::{Cli, run};
use taskpod_adapter_sdk::{names, payload};

const EXPECTED: &str = "tests/data/expected/druid-index-parallel.yaml";

fn render(args: &[&str]) -> String {
    let mut argv = vec!["taskpod", "render"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).expect("arguments parse");
    let mut out = Vec::new();
    run(cli, &mut out).unwrap_or_else(|e| panic!("render failed: {:#}", anyhow::Error::from(e)));
    String::from_utf8(out).expect("UTF-8 YAML")
}

fn render_example() -> String {
    let config = common::ws("examples/druid/taskpod.yaml");
    let task = common::ws("examples/druid/tasks/index-parallel.json");
    render(&[
        "--config",
        config.to_str().expect("utf-8 path"),
        "--task",
        task.to_str().expect("utf-8 path"),
    ])
}

/// Runs `kubernetes-validate --strict` for Kubernetes 1.37 on `file`; fails (never skips)
/// when the tool is missing.
pub fn kubernetes_validate(file: &Path) {
    taskpod_test_support::kubernetes_validate_files(&file.display().to_string(), &[file]);
}

/// The digest of the embedded pod-template component changes with every rebuild of the guest,
/// so the golden file holds a placeholder; the digest itself is checked against the bytes.
const DIGEST_PLACEHOLDER: &str = "sha256:<digest of the built-in pod-template component>";

fn mask_digest(yaml: &str) -> String {
    use sha2::Digest as _;
    let digest = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(
            taskpod::adapters::guests::POD_TEMPLATE
        ))
    );
    assert!(
        yaml.contains(&format!("taskpod.dev/adapter-digest: {digest}")),
        "the Job carries the digest of the embedded component"
    );
    yaml.replace(&digest, DIGEST_PLACEHOLDER)
}

#[test]
fn druid_index_parallel_matches_the_golden_file() {
    let yaml = mask_digest(&render_example());
    let expected_path = common::ws(EXPECTED);
    if std::env::var_os("TASKPOD_BLESS").is_some() {
        std::fs::write(&expected_path, &yaml).expect("write golden file");
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with TASKPOD_BLESS=1 to create it",
            expected_path.display()
        )
    });
    assert_eq!(
        yaml, expected,
        "render output differs from {EXPECTED}; if the change is intended, rerun with \
         TASKPOD_BLESS=1 and review the diff"
    );
}

#[test]
fn druid_index_parallel_carries_every_contract_field_and_validates() {
    let yaml = render_example();
    let task_text = std::fs::read_to_string(common::ws("examples/druid/tasks/index-parallel.json"))
        .expect("task");
    let task: serde_json::Value = serde_json::from_str(&task_text).expect("task JSON");
    let id = task["id"].as_str().expect("id");
    let job: Job = serde_yaml::from_str(&yaml).expect("a single Job document");

    // Name: Druid's scheme, ≤ 63.
    let name = job.metadata.name.as_deref().expect("name");
    assert_eq!(name, names::job_name(id));
    assert!(name.len() <= 63);
    assert_eq!(job.metadata.namespace.as_deref(), Some("druid"));

    let spec = job.spec.as_ref().expect("spec");
    let template_meta = spec.template.metadata.as_ref().expect("pod metadata");
    let pod = spec.template.spec.as_ref().expect("pod spec");

    // Druid labels on the Job and the pod.
    for (what, labels) in [
        ("Job", job.metadata.labels.as_ref().expect("job labels")),
        ("pod", template_meta.labels.as_ref().expect("pod labels")),
    ] {
        assert_eq!(labels["druid.k8s.peons"], "true", "{what}");
        assert_eq!(labels["druid.task.id"], names::task_id_label(id), "{what}");
        assert_eq!(labels["druid.task.type"], "index_parallel", "{what}");
        assert_eq!(
            labels["druid.task.group.id"],
            names::task_id_label(id),
            "{what}"
        );
        assert_eq!(labels["druid.task.datasource"], "wikipedia", "{what}");
        assert_eq!(labels["team"], "analytics", "{what}: configured label");
        assert_eq!(labels["taskpod.dev/task"], name, "{what}");
        assert_eq!(labels["taskpod.dev/instance"], "taskpod", "{what}");
        assert_eq!(labels["taskpod.dev/tenant"], "default", "{what}");
        assert_eq!(labels["taskpod.dev/type"], "index_parallel", "{what}");
        for value in labels.values() {
            assert!(value.len() <= 63, "{what}: label value {value:?} too long");
        }
    }
    // Druid annotations on the Job and the pod.
    for (what, annotations) in [
        (
            "Job",
            job.metadata.annotations.as_ref().expect("job annotations"),
        ),
        (
            "pod",
            template_meta.annotations.as_ref().expect("pod annotations"),
        ),
    ] {
        assert_eq!(annotations["task.id"], id, "{what}");
        assert_eq!(annotations["task.type"], "index_parallel", "{what}");
        assert_eq!(annotations["task.group.id"], id, "{what}");
        assert_eq!(annotations["task.datasource"], "wikipedia", "{what}");
        assert_eq!(annotations["task.jobTemplate"], "base", "{what}");
        assert_eq!(
            annotations["example.com/owner"], "data-platform",
            "{what}: configured"
        );
    }
    let job_annotations = job.metadata.annotations.as_ref().expect("annotations");
    assert_eq!(job_annotations["taskpod.dev/task-id"], id);
    assert!(job_annotations["taskpod.dev/adapter"].starts_with("pod-template@"));
    assert!(job_annotations["taskpod.dev/adapter-digest"].starts_with("sha256:"));
    // The template's own pod annotation is kept.
    let pod_annotations = template_meta.annotations.as_ref().expect("pod annotations");
    assert_eq!(pod_annotations["sidecar.istio.io/proxyCPU"], "512m");
    // The task payload: gzip+base64 of the task JSON.
    let decoded = payload::decode(&pod_annotations["task"]).expect("payload decodes");
    let decoded: serde_json::Value = serde_json::from_str(&decoded).expect("payload JSON");
    assert_eq!(decoded, task);

    // Main container env.
    let main = pod
        .containers
        .iter()
        .find(|c| c.name == "main")
        .expect("main container");
    let env = main.env.as_ref().expect("env");
    let var = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    assert_eq!(var("TASK_ID").value.as_deref(), Some(id));
    assert_eq!(var("TASK_DIR").value.as_deref(), Some("/druid/data"));
    assert_eq!(var("DRUID_POD_TEMPLATE").value.as_deref(), Some("base"));
    assert_eq!(var("CUSTOM_ENV_VARIABLE").value.as_deref(), Some("hello"));
    let field = var("TASK_JSON")
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .expect("TASK_JSON fieldRef");
    assert_eq!(field.field_path, "metadata.annotations['task']");
    assert_eq!(main.image.as_deref(), Some("apache/druid:30.0.0"));

    // Job settings.
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(spec.active_deadline_seconds, Some(4 * 3600));
    assert_eq!(spec.ttl_seconds_after_finished, Some(2 * 24 * 3600));
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    // The rest of the template is kept.
    assert_eq!(pod.volumes.as_ref().map(Vec::len), Some(3));
    assert_eq!(pod.tolerations.as_ref().map(Vec::len), Some(2));
    assert_eq!(
        pod.security_context.as_ref().and_then(|s| s.run_as_user),
        Some(1000)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("job.yaml");
    std::fs::write(&file, &yaml).expect("write");
    kubernetes_validate(&file);
}

#[test]
fn druid_properties_render_the_same_job_as_the_equivalent_config() {
    let properties = common::ws("examples/druid/runtime.properties");
    let task = common::ws("examples/druid/tasks/index-parallel.json");
    let from_properties = render(&[
        "--druid-properties",
        properties.to_str().expect("utf-8"),
        "--task",
        task.to_str().expect("utf-8"),
    ]);
    assert_eq!(from_properties, render_example());
}

#[test]
fn render_writes_to_out_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("job.yaml");
    let config = common::ws("examples/druid/taskpod.yaml");
    let task = common::ws("examples/druid/tasks/index-parallel.json");
    let printed = render(&[
        "--config",
        config.to_str().expect("utf-8"),
        "--task",
        task.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(printed.is_empty());
    assert_eq!(
        std::fs::read_to_string(&out).expect("written"),
        render_example()
    );
}
