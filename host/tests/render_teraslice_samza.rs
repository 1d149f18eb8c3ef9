//! `taskpod render` on the Teraslice and Samza examples, through the real CLI and the embedded
//! `teraslice` and `samza` components: `--out` writes every object as multi-document YAML for
//! `kubectl create -f`, a Samza `.properties` task is read as such and honours
//! `kubernetes.resources.out`, and every written file passes `kubernetes-validate --strict`.

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};

use clap::Parser as _;
use serde_json::Value;
use taskpod::cli::{Cli, run};

fn render(args: &[&str]) -> String {
    let mut argv = vec!["taskpod", "render"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).expect("arguments parse");
    let mut out = Vec::new();
    run(cli, &mut out).unwrap_or_else(|e| panic!("render failed: {:#}", anyhow::Error::from(e)));
    String::from_utf8(out).expect("UTF-8 output")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("taskpod-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The documents of a multi-document YAML file, as JSON values.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.split("\n---\n")
        .map(|doc| serde_yaml::from_str::<Value>(doc).unwrap())
        .collect()
}

/// Runs `kubernetes-validate --strict` for Kubernetes 1.37 on `file`; fails (never skips)
/// when the tool is missing.
fn kubernetes_validate(file: &Path) {
    taskpod_test_support::kubernetes_validate_files(&file.display().to_string(), &[file]);
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn teraslice_execution_renders_job_deployment_and_service() {
    let dir = temp_dir("render-teraslice");
    let out = dir.join("resources.yaml");
    let printed = render(&[
        "--config",
        path_str(&common::ws("examples/teraslice/taskpod.yaml")),
        "--task",
        path_str(&common::ws("examples/teraslice/tasks/data-generator.json")),
        "--out",
        path_str(&out),
    ]);
    assert!(
        printed.is_empty(),
        "--out writes nothing to standard output: {printed}"
    );
    let docs = documents(&out);
    let kinds: Vec<_> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Job", "Deployment", "Service"]);
    let (job, deployment, service) = (&docs[0], &docs[1], &docs[2]);
    for doc in &docs {
        assert_eq!(doc["metadata"]["namespace"], "ts-dev1");
        assert!(
            doc["metadata"]["labels"]["taskpod.dev/task"].is_string(),
            "{doc}"
        );
    }
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"],
        "execution_controller"
    );
    assert_eq!(
        deployment["metadata"]["name"],
        "ts-wkr-data-generator-2e2e2ac3-87e5"
    );
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        service["metadata"]["name"],
        "svc-ts-exc-data-generator-2e2e2ac3-87e5"
    );
    kubernetes_validate(&out);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Copies the Samza example into `dir`, with `kubernetes.resources.out` set to `resources_out`.
fn samza_properties(dir: &Path, resources_out: &str) -> PathBuf {
    let text =
        std::fs::read_to_string(common::ws("examples/samza/wikipedia-feed.properties")).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("kubernetes.resources.out=") {
                format!("kubernetes.resources.out={resources_out}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let path = dir.join("wikipedia-feed.properties");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn samza_properties_render_to_kubernetes_resources_out() {
    let dir = temp_dir("render-samza");
    let props = samza_properties(&dir, "wikipedia-feed.k8s.yaml");
    let printed = render(&[
        "--config",
        path_str(&common::ws("examples/samza/taskpod.yaml")),
        "--task",
        path_str(&props),
    ]);
    // A relative kubernetes.resources.out is next to the .properties file.
    let written = dir.join("wikipedia-feed.k8s.yaml");
    assert!(printed.contains("wikipedia-feed.k8s.yaml"), "{printed}");
    let docs = documents(&written);
    assert_eq!(docs.len(), 1);
    let job = &docs[0];
    assert_eq!(job["kind"], "Job");
    assert_eq!(job["metadata"]["namespace"], "samza");
    assert_eq!(
        job["metadata"]["annotations"]["taskpod.dev/task-id"],
        "wikipedia-feed-1"
    );
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    assert_eq!(job["spec"]["completions"], 3);
    assert_eq!(job["spec"]["parallelism"], 3);
    // The binding allows restarts on failure, bounded by its maxBackoffLimit.
    assert_eq!(
        job["spec"]["template"]["spec"]["restartPolicy"],
        "OnFailure"
    );
    assert_eq!(job["spec"]["backoffLimit"], 6);
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["resources"]["limits"]["memory"], "1Gi");
    kubernetes_validate(&written);

    // --out wins over kubernetes.resources.out.
    let out = dir.join("explicit.yaml");
    std::fs::remove_file(&written).unwrap();
    render(&[
        "--config",
        path_str(&common::ws("examples/samza/taskpod.yaml")),
        "--task",
        path_str(&props),
        "--out",
        path_str(&out),
    ]);
    assert!(out.exists() && !written.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn samza_properties_without_resources_out_print_the_yaml() {
    let dir = temp_dir("render-samza-stdout");
    let text = "job.name=tiny\nkubernetes.container.image=samza:1\nkubernetes.pod.count=2\n";
    let props = dir.join("tiny.properties");
    std::fs::write(&props, text).unwrap();
    let printed = render(&[
        "--config",
        path_str(&common::ws("examples/samza/taskpod.yaml")),
        "--task",
        path_str(&props),
    ]);
    let job: Value = serde_yaml::from_str(&printed).unwrap();
    assert_eq!(job["spec"]["completions"], 2);
    let _ = std::fs::remove_dir_all(&dir);
}
