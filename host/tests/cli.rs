//! The CLI and configuration: `adapter check` on the example user adapter, `render` through a
//! config that routes to it, config errors naming the key, and the Druid properties importer.

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};

use clap::Parser as _;
use k8s_openapi::api::batch::v1::Job;
use taskpod::adapters::guests;
use taskpod::cli::{Cli, CliError, run};
use taskpod::config::{Config, ConfigError, druid};

fn cli(args: &[&str]) -> Result<String, CliError> {
    let mut argv = vec!["taskpod"];
    argv.extend_from_slice(args);
    let parsed = Cli::try_parse_from(argv).expect("arguments parse");
    let mut out = Vec::new();
    run(parsed, &mut out)?;
    Ok(String::from_utf8(out).expect("UTF-8"))
}

fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// examples/druid/team-labels.yaml with the component path of this build.
fn team_labels_config(dir: &Path) -> PathBuf {
    let example = std::fs::read_to_string(common::ws("examples/druid/team-labels.yaml"))
        .expect("example config");
    let text = example
        .replace(
            "../../target/guests/wasm32-wasip2/release/taskpod_example_team_labels.wasm",
            guests::TEAM_LABELS_PATH,
        )
        .replace(
            "pod-templates/base.yaml",
            s(&common::ws("examples/druid/pod-templates/base.yaml")),
        );
    assert_ne!(text, example, "the example names the component path");
    let path = dir.join("team-labels.yaml");
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn adapter_check_prints_the_example_adapters_info() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("team.yaml");
    std::fs::write(&config, "image: busybox:1.36\nteam: Data Platform\n").expect("write");
    let out = cli(&[
        "adapter",
        "check",
        guests::TEAM_LABELS_PATH,
        "--config",
        s(&config),
    ])
    .expect("check passes");
    assert!(out.contains("name:        team-labels"), "{out}");
    assert!(out.contains("config:      valid"), "{out}");
    assert!(out.contains("digest:      sha256:"), "{out}");
}

#[test]
fn adapter_check_refuses_a_bad_config_naming_the_adapter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.yaml");
    std::fs::write(&config, "image: busybox\nteam: x\ncolour: blue\n").expect("write");
    let err = cli(&[
        "adapter",
        "check",
        guests::TEAM_LABELS_PATH,
        "--config",
        s(&config),
    ])
    .expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("taskpod_example_team_labels"), "{text}");
    assert!(text.contains("colour"), "{text}");
}

#[test]
fn adapter_check_refuses_a_file_that_is_not_a_component() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("junk.wasm");
    std::fs::write(&file, b"\0asm junk").expect("write");
    let err = cli(&["adapter", "check", s(&file)]).expect_err("refused");
    assert!(err.to_string().contains("junk.wasm"), "{err}");
}

#[test]
fn render_uses_the_example_user_adapter_through_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = team_labels_config(dir.path());
    let task = common::ws("examples/druid/tasks/index-parallel.json");
    let yaml = cli(&["render", "--config", s(&config), "--task", s(&task)]).expect("render");
    let job: Job = serde_yaml::from_str(&yaml).expect("a Job");
    let labels = job.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels["taskpod.dev/type"], "index_parallel");
    let annotations = job.metadata.annotations.as_ref().expect("annotations");
    assert!(annotations["taskpod.dev/adapter"].starts_with("team-labels@"));
    let pod = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod");
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("apache/druid:30.0.0")
    );
    let file = dir.path().join("job.yaml");
    std::fs::write(&file, &yaml).expect("write");
    taskpod_test_support::kubernetes_validate_files("the rendered Job", &[&file]);

    // Other task types go to the default, the built-in pod-template adapter.
    let compact = dir.path().join("compact.json");
    std::fs::write(
        &compact,
        r#"{"id":"compact_wiki_1","type":"compact","dataSource":"wiki"}"#,
    )
    .expect("write");
    let yaml = cli(&["render", "--config", s(&config), "--task", s(&compact)]).expect("render");
    assert!(
        yaml.contains("taskpod.dev/adapter: pod-template@"),
        "{yaml}"
    );
}

#[test]
fn render_reports_an_invalid_task_naming_the_file_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let task = dir.path().join("task.json");
    std::fs::write(&task, r#"{"type":"index_parallel"}"#).expect("write");
    let config = common::ws("examples/druid/taskpod.yaml");
    let err = cli(&["render", "--config", s(&config), "--task", s(&task)]).expect_err("fails");
    let text = err.to_string();
    assert!(
        text.contains("task.json") && text.contains("`id`"),
        "{text}"
    );
}

#[test]
fn render_needs_a_config_or_properties() {
    assert!(Cli::try_parse_from(["taskpod", "render", "--task", "t.json"]).is_err());
    assert!(
        Cli::try_parse_from([
            "taskpod",
            "render",
            "--config",
            "a",
            "--druid-properties",
            "b",
            "--task",
            "t"
        ])
        .is_err()
    );
}

fn config_error(yaml: &str) -> ConfigError {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("taskpod.yaml");
    std::fs::write(&path, yaml).expect("write");
    Config::load(&path).expect_err("config must be refused")
}

#[test]
fn config_errors_name_the_key() {
    let base = "adapters: [{name: pt, component: 'builtin:pod-template'}]\n";
    let cases: &[(&str, &str)] = &[
        ("namespce: x\n", "namespce"),
        (
            "adapters: [{name: pt, component: 'builtin:pod-template', colour: 1}]\n",
            "colour",
        ),
        (
            "runner: {maxTaskDuration: forever}\nADAPTERS",
            "invalid duration",
        ),
        ("namespace: Not_Valid\nADAPTERS", "namespace"),
        ("instance: 'has space'\nADAPTERS", "instance"),
        ("labels: {'bad key': v}\nADAPTERS", "labels.bad key"),
        ("", "adapters"),
        (
            "adapters: [{name: pt, component: 'builtin:nope'}]\n",
            "adapters[0].component",
        ),
        (
            "adapters: [{name: pt, component: 'builtin:pod-template', limits: {memory: 2Gi}}]\n",
            "adapters[0].limits.memory",
        ),
        (
            "adapters: [{name: pt, component: 'builtin:pod-template', limits: {timeout: 0s}}]\n",
            "adapters[0].limits.timeout",
        ),
        (
            "adapters: [{name: pt, component: 'builtin:pod-template', limits: {concurrency: 0}}]\n",
            "adapters[0].limits.concurrency",
        ),
        ("routing: {default: missing}\nADAPTERS", "routing.default"),
        (
            "routing: {byType: {compact: missing}}\nADAPTERS",
            "routing.byType.compact",
        ),
        (
            "adapters: [{name: a, component: 'builtin:pod-template'}, {name: b, component: 'builtin:pod-template'}]\n",
            "routing.default",
        ),
        (
            "adapters: [{name: a, component: 'builtin:pod-template'}, {name: a, component: 'builtin:pod-template'}]\nrouting: {default: a}\n",
            "adapters[1].name",
        ),
        ("runner: {capacity: 0}\nADAPTERS", "runner.capacity"),
    ];
    for (yaml, key) in cases {
        let yaml = yaml.replace("ADAPTERS", base);
        let err = config_error(&yaml).to_string();
        assert!(
            err.contains(key),
            "config {yaml:?}: error {err:?} should name {key:?}"
        );
    }
}

#[test]
fn config_defaults_are_druids() {
    let config = Config::from_yaml("adapters: [{name: pt, component: 'builtin:pod-template'}]")
        .expect("parses");
    config.validate().expect("valid");
    assert_eq!(config.namespace, "default");
    assert_eq!(config.instance, "taskpod");
    assert_eq!(config.runner.max_task_duration.0.as_secs(), 4 * 3600);
    assert_eq!(config.runner.task_cleanup_delay.0.as_secs(), 2 * 86400);
    assert_eq!(config.runner.task_cleanup_interval.0.as_secs(), 600);
    assert_eq!(config.runner.k8s_job_launch_timeout.0.as_secs(), 3600);
    assert!(!config.runner.debug_jobs);
    assert_eq!(config.adapters[0].limits.memory.0, 64 << 20);
    assert_eq!(config.adapters[0].limits.timeout.0.as_secs(), 1);
    assert_eq!(config.adapters[0].limits.max_output.0, 4 << 20);
    assert_eq!(
        config.route("anything").map(|a| a.name.as_str()),
        Some("pt")
    );
}

#[test]
fn a_missing_template_file_names_the_key_and_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("taskpod.yaml");
    std::fs::write(
        &path,
        "adapters: [{name: pt, component: 'builtin:pod-template', templates: {base: nope.yaml}}]\n",
    )
    .expect("write");
    let task = common::ws("examples/druid/tasks/index-parallel.json");
    let err = cli(&["render", "--config", s(&path), "--task", s(&task)]).expect_err("fails");
    let text = err.to_string();
    assert!(
        text.contains("adapters[0].templates.base") && text.contains("nope.yaml"),
        "{text}"
    );
}

#[test]
fn druid_importer_maps_the_custom_template_keys() {
    let base = Path::new("/etc/druid");
    let imported = druid::import(
        "druid.indexer.runner.type=k8s\n\
         druid.indexer.runner.namespace=analytics\n\
         druid.indexer.runner.k8s.adapter.type=customTemplateAdapter\n\
         druid.indexer.runner.k8s.podTemplate.base=/etc/druid/base.yaml\n\
         druid.indexer.runner.k8s.podTemplate.index_parallel=ip.yaml\n\
         druid.indexer.runner.labels={\"team\":\"a\"}\n\
         druid.indexer.runner.annotations={\"x/y\":\"z\"}\n\
         druid.indexer.runner.maxTaskDuration=PT2H\n\
         druid.indexer.runner.taskCleanupDelay=P1D\n\
         druid.indexer.runner.capacity=10\n\
         druid.indexer.runner.javaOptsArray=[\"-Xmx1g\"]\n\
         druid.service=druid/overlord\n",
        base,
    )
    .expect("imports");
    let c = &imported.config;
    assert_eq!(c.namespace, "analytics");
    assert_eq!(c.labels["team"], "a");
    assert_eq!(c.annotations["x/y"], "z");
    assert_eq!(c.runner.max_task_duration.0.as_secs(), 7200);
    assert_eq!(c.runner.task_cleanup_delay.0.as_secs(), 86400);
    assert_eq!(c.adapters.len(), 1);
    assert_eq!(c.adapters[0].component, "builtin:pod-template");
    assert_eq!(
        c.adapters[0].templates["base"],
        PathBuf::from("/etc/druid/base.yaml")
    );
    assert_eq!(
        c.adapters[0].templates["index_parallel"],
        PathBuf::from("ip.yaml")
    );
    assert_eq!(c.base_dir, base);
    assert_eq!(c.runner.capacity, 10);
    // javaOptsArray shapes overlord-copy pods only: named as ignored for customTemplateAdapter.
    assert_eq!(imported.warnings.len(), 1, "{:?}", imported.warnings);
    assert!(
        imported.warnings[0].contains("druid.indexer.runner.javaOptsArray")
            && imported.warnings[0].contains("not used by customTemplateAdapter"),
        "{:?}",
        imported.warnings
    );
}

#[test]
fn druid_importer_errors_are_clear() {
    let base = Path::new(".");
    let cases = [
        (
            "druid.indexer.runner.javaOpts=-Xmx1g\n",
            "javaOpts is no longer supported",
        ),
        (
            "druid.indexer.runner.k8s.adapter.type=fancyAdapter\n",
            "fancyAdapter is not a Druid adapter type",
        ),
        (
            "druid.indexer.runner.type=remote\n",
            "not a Kubernetes task runner",
        ),
        (
            "druid.indexer.runner.k8s.adapter.type=customTemplateAdapter\n",
            "podTemplate.base is required",
        ),
        (
            "druid.indexer.runner.k8s.adapter.type=customTemplateAdapter\n\
             druid.indexer.runner.k8s.podTemplate.base=b.yaml\n\
             druid.indexer.runner.labels=[1]\n",
            "druid.indexer.runner.labels",
        ),
        (
            "druid.indexer.runner.k8s.adapter.type=customTemplateAdapter\n\
             druid.indexer.runner.k8s.podTemplate.base=b.yaml\n\
             druid.indexer.runner.maxTaskDuration=soon\n",
            "druid.indexer.runner.maxTaskDuration",
        ),
    ];
    for (text, expected) in cases {
        let err = druid::import(text, base).expect_err("refused");
        assert!(
            err.contains(expected),
            "{text:?}: {err:?} should contain {expected:?}"
        );
    }
}
