//! The Druid properties importer on a runtime.properties holding every `druid.indexer.runner.*`
//! key taskpod imports (examples/druid/runtime-overlord.properties), on unsupported and invalid
//! properties, and end to end: `taskpod render --druid-properties` through the built-in
//! overlord adapters, the output checked with `kubernetes-validate --strict` for Kubernetes 1.37.

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};

use clap::Parser as _;
use taskpod::cli::{Cli, run};
use taskpod::config::druid;

fn full_properties() -> PathBuf {
    common::ws("examples/druid/runtime-overlord.properties")
}

fn render(args: &[&str]) -> String {
    let mut argv = vec!["taskpod", "render"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).expect("arguments parse");
    let mut out = Vec::new();
    run(cli, &mut out).unwrap_or_else(|e| panic!("render failed: {:#}", anyhow::Error::from(e)));
    String::from_utf8(out).expect("UTF-8 YAML")
}

fn kubernetes_validate(file: &Path) {
    taskpod_test_support::kubernetes_validate_files(&file.display().to_string(), &[file]);
}

#[test]
fn every_runner_property_is_imported_or_named() {
    let imported = druid::import_file(&full_properties()).expect("imports");
    let c = &imported.config;
    assert_eq!(c.namespace, "druid");
    assert_eq!(c.runner.capacity, 50);
    assert_eq!(c.labels["team"], "analytics");
    assert_eq!(c.annotations["example.com/owner"], "data-platform");
    assert_eq!(c.runner.max_task_duration.0.as_secs(), 4 * 3600);
    assert_eq!(c.runner.task_cleanup_delay.0.as_secs(), 2 * 86400);
    assert_eq!(c.runner.task_cleanup_interval.0.as_secs(), 600);
    assert_eq!(c.runner.k8s_job_launch_timeout.0.as_secs(), 3600);
    assert!(!c.runner.debug_jobs);
    assert_eq!(c.runner.grace_termination_period_seconds, Some(30));
    assert!(c.runner.disable_client_proxy);
    assert_eq!(c.adapters.len(), 1);
    let a = &c.adapters[0];
    assert_eq!(a.component, "builtin:overlord-multi");
    assert_eq!(a.base_pod.as_deref(), Some(Path::new("overlord-pod.yaml")));
    assert!(a.templates.is_empty());
    assert_eq!(
        c.policy.service_accounts,
        ["default", "druid-overlord"],
        "peons run as the overlord's service account, as in Druid: the policy allows it"
    );
    assert_eq!(
        a.config,
        serde_json::json!({
            "baseTaskDir": "/druid/data",
            "enableTlsPort": false,
            "primaryContainerName": "druid-overlord",
            "kubexitImage": "karlkfi/kubexit:v0.3.2",
            "javaOptsArray": ["-server", "-Xms1g", "-Xmx2g", "-XX:MaxDirectMemorySize=1g", "-Duser.timezone=UTC", "-Dfile.encoding=UTF-8"],
            "peonMonitors": ["org.apache.druid.java.util.metrics.JvmMonitor"],
            "cpuCoreInMicro": 2000
        })
    );
    // Only the keys taskpod has no use for are named, each once.
    let w = &imported.warnings;
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("k8sAndWorker.workerTaskRunnerType=httpRemote"),
        "{w:?}"
    );
}

#[test]
fn adapter_types_and_deprecated_sidecar_support() {
    let base = Path::new(".");
    let single = druid::import("druid.indexer.runner.type=k8s\n", base).unwrap();
    assert_eq!(
        single.config.adapters[0].component, "builtin:overlord-single",
        "Druid's default adapter"
    );
    let multi = druid::import("druid.indexer.runner.sidecarSupport=true\n", base).unwrap();
    assert_eq!(multi.config.adapters[0].component, "builtin:overlord-multi");
    assert!(multi.warnings[0].contains("sidecarSupport is deprecated"));
    let text = "druid.indexer.runner.k8s.adapter.type=overlordSingleContainer\n\
                druid.indexer.runner.sidecarSupport=true\n\
                druid.indexer.runner.kubexitImage=k:1\n\
                druid.indexer.runner.k8s.podTemplate.base=b.yaml\n\
                druid.indexer.runner.type=k8sAndWorker\n\
                druid.indexer.runner.overlordNamespace=druid-system\n\
                druid.indexer.runner.unknownThing=1\n\
                druid.indexer.task.encapsulatedTask=false\n";
    let imported = druid::import(text, base).unwrap();
    let w = imported.warnings.join("\n");
    for named in [
        "sidecarSupport=true is deprecated and ignored",
        "kubexitImage is only used by overlordMultiContainer",
        "k8s.podTemplate.base is only used by customTemplateAdapter",
        "type=k8sAndWorker",
        "overlordNamespace=druid-system",
        "druid.indexer.runner.unknownThing is not a property",
        "encapsulatedTask=false",
    ] {
        assert!(w.contains(named), "`{named}` not in:\n{w}");
    }
    assert_eq!(imported.warnings.len(), 7, "{w}");
    assert_eq!(
        imported.config.adapters[0].config,
        serde_json::json!({}),
        "ignored keys do not reach the adapter"
    );
}

#[test]
fn invalid_and_unsupported_properties_are_errors_naming_them() {
    let base = Path::new(".");
    let cases = [
        (
            "druid.indexer.runner.javaOpts=-Xmx1g -Xms1g\n",
            "druid.indexer.runner.javaOpts is no longer supported",
        ),
        (
            "druid.indexer.runner.javaOptsArray=-Xmx1g\n",
            "druid.indexer.runner.javaOptsArray: expected a JSON array",
        ),
        (
            "druid.indexer.runner.peonMonitors={}\n",
            "druid.indexer.runner.peonMonitors: expected a JSON array",
        ),
        (
            "druid.indexer.runner.capacity=many\n",
            "druid.indexer.runner.capacity=many",
        ),
        (
            "druid.indexer.runner.debugJobs=yes\n",
            "druid.indexer.runner.debugJobs=yes: expected true or false",
        ),
        (
            "druid.indexer.runner.taskCleanupInterval=10 minutes\n",
            "druid.indexer.runner.taskCleanupInterval=10 minutes",
        ),
        (
            "druid.indexer.runner.K8sjobLaunchTimeout=PT\n",
            "druid.indexer.runner.K8sjobLaunchTimeout=PT",
        ),
        (
            "druid.indexer.runner.graceTerminationPeriodSeconds=later\n",
            "druid.indexer.runner.graceTerminationPeriodSeconds=later",
        ),
        (
            "druid.indexer.runner.k8sAndWorker.sendAllTasksToWorkerTaskRunner=true\n",
            "sendAllTasksToWorkerTaskRunner=true",
        ),
        (
            "druid.indexer.runner.type=remote\n",
            "not a Kubernetes task runner",
        ),
        (
            "druid.indexer.runner.k8s.adapter.type=fancy\n",
            "fancy is not a Druid adapter type",
        ),
        (
            "druid.indexer.runner.k8s.adapter.type=customTemplateAdapter\n",
            "podTemplate.base is required",
        ),
        ("druid.enableTlsPort=maybe\n", "druid.enableTlsPort=maybe"),
    ];
    for (text, expected) in cases {
        let err = druid::import(text, base).expect_err(text);
        assert!(
            err.contains(expected),
            "{text:?}: {err:?} should contain {expected:?}"
        );
    }
    // ISO-8601 grace period as Druid's docs write it (PT30S) is accepted too.
    let imported = druid::import(
        "druid.indexer.runner.graceTerminationPeriodSeconds=PT45S\n",
        base,
    )
    .unwrap();
    assert_eq!(
        imported.config.runner.grace_termination_period_seconds,
        Some(45)
    );
}

#[test]
fn render_from_the_full_properties_builds_a_valid_multi_container_job() {
    let properties = full_properties();
    let task = common::ws("examples/druid/tasks/index-parallel.json");
    let yaml = render(&[
        "--druid-properties",
        properties.to_str().expect("utf-8"),
        "--task",
        task.to_str().expect("utf-8"),
    ]);
    let job: serde_json::Value = serde_yaml::from_str(&yaml).expect("one YAML document");
    let spec = &job["spec"]["template"]["spec"];
    let main = &spec["containers"][0];
    assert_eq!(main["name"], "main");
    assert_eq!(spec["containers"][1]["name"], "fluent-bit");
    assert_eq!(spec["initContainers"][1]["image"], "karlkfi/kubexit:v0.3.2");
    assert_eq!(main["resources"]["limits"]["memory"], "3600000000");
    assert_eq!(main["resources"]["limits"]["cpu"], "2000m");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(job["metadata"]["labels"]["druid.k8s.peons"], "true");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("job.yaml");
    std::fs::write(&file, &yaml).expect("write");
    kubernetes_validate(&file);
}

#[test]
fn overlord_adapter_without_a_base_pod_says_how_to_give_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let properties = dir.path().join("runtime.properties");
    std::fs::write(&properties, "druid.indexer.runner.namespace=druid\n").expect("write");
    let task = common::ws("examples/druid/tasks/index-parallel.json");
    let argv = vec![
        "taskpod",
        "render",
        "--druid-properties",
        properties.to_str().expect("utf-8"),
        "--task",
        task.to_str().expect("utf-8"),
    ];
    let cli = Cli::try_parse_from(argv).expect("arguments parse");
    let mut sink: Vec<u8> = Vec::new();
    let err = run(cli, &mut sink).expect_err("no base pod");
    let msg = format!("{:#}", anyhow::Error::from(err));
    assert!(msg.contains("basePod") && msg.contains("POD_NAME"), "{msg}");
}

#[test]
fn k8s_and_worker_routes_to_the_worker_runner_named_by_taskpod_properties() {
    let base = Path::new(".");
    let all = druid::import(
        "druid.indexer.runner.type=k8sAndWorker\n\
         druid.indexer.runner.k8sAndWorker.sendAllTasksToWorkerTaskRunner=true\n\
         taskpod.workerUrl=http://overlord:8090/druid/indexer/v1/task\n\
         taskpod.workerStatusUrl=http://overlord:8090/druid/indexer/v1/task/{id}/status\n",
        base,
    )
    .unwrap();
    let routing = &all.config.routing;
    let worker = &routing.workers[druid::IMPORTED_WORKER];
    assert_eq!(worker.url, "http://overlord:8090/druid/indexer/v1/task");
    assert_eq!(
        worker.status_url.as_deref(),
        Some("http://overlord:8090/druid/indexer/v1/task/{id}/status")
    );
    assert_eq!(
        routing.to_worker.all.as_deref(),
        Some(druid::IMPORTED_WORKER)
    );
    assert_eq!(
        all.config.worker_for("index_parallel").map(|(n, _)| n),
        Some(druid::IMPORTED_WORKER)
    );
    all.config.validate().unwrap();
    assert!(all.warnings.is_empty(), "{:?}", all.warnings);

    // Not sending all: the worker runner is known, nothing goes there by default (said so).
    let some = druid::import(
        "druid.indexer.runner.type=k8sAndWorker\n\
         taskpod.workerUrl=http://overlord:8090/druid/indexer/v1/task\n",
        base,
    )
    .unwrap();
    assert!(some.config.worker_for("index_parallel").is_none());
    let w = some.warnings.join("\n");
    assert!(w.contains("routing.toWorker.byType"), "{w}");
    assert!(w.contains("taskpod.workerStatusUrl"), "{w}");

    // Sending all with nowhere to send: an error saying which property to set.
    let error = druid::import(
        "druid.indexer.runner.type=k8sAndWorker\n\
         druid.indexer.runner.k8sAndWorker.sendAllTasksToWorkerTaskRunner=true\n",
        base,
    )
    .unwrap_err();
    assert!(error.contains("taskpod.workerUrl"), "{error}");

    // A bad URL is refused, naming the key.
    let error = druid::import(
        "druid.indexer.runner.type=k8sAndWorker\n\
         druid.indexer.runner.k8sAndWorker.sendAllTasksToWorkerTaskRunner=true\n\
         taskpod.workerUrl=overlord:8090\n",
        base,
    )
    .unwrap_err();
    assert!(
        error.contains("routing.workers.druid-workers.url"),
        "{error}"
    );
}
