//! Shared helpers of the host's integration tests: workspace paths, a runtime with a private
//! cache directory, the sample Druid task and context.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use taskpod::adapters::{
    AdapterSpec, ComponentSource, Limits, LoadedAdapter, Runtime, RuntimeOptions,
};
use taskpod_adapter_sdk as sdk;

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// A path inside the workspace.
pub fn ws(path: &str) -> PathBuf {
    workspace().join(path)
}

/// One runtime per test binary, caching compiled components in a temporary directory.
pub fn runtime() -> Runtime {
    static RUNTIME: OnceLock<(Runtime, tempfile::TempDir)> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let runtime = Runtime::new(RuntimeOptions {
                cache_dir: Some(dir.path().join("cache")),
                ..RuntimeOptions::default()
            })
            .expect("runtime");
            (runtime, dir)
        })
        .0
        .clone()
}

/// Loads the hostile test guest with `config`.
pub fn hostile(
    config: &str,
    limits: Limits,
) -> Result<Arc<LoadedAdapter>, taskpod::adapters::Error> {
    runtime().load(AdapterSpec {
        name: "hostile".to_owned(),
        source: ComponentSource::File(PathBuf::from(taskpod::adapters::guests::HOSTILE_PATH)),
        config: config.to_owned(),
        limits,
    })
}

/// A small task and context every adapter accepts.
pub fn sample() -> (sdk::Task, sdk::Context) {
    let task = sdk::Task {
        id: "index_parallel_wikipedia_2026-11-23T10:15:02.117Z".to_owned(),
        kind: "index_parallel".to_owned(),
        tenant: "default".to_owned(),
        group_id: Some("g1".to_owned()),
        datasource: Some("wikipedia".to_owned()),
        payload:
            r#"{"type":"index_parallel","id":"index_parallel_wikipedia_2026-11-23T10:15:02.117Z"}"#
                .to_owned(),
        labels: Vec::new(),
        tags: Vec::new(),
    };
    let template = std::fs::read_to_string(ws("examples/druid/pod-templates/base.yaml"))
        .expect("read base template");
    let template: serde_json::Value = serde_yaml::from_str(&template).expect("template YAML");
    let ctx = sdk::Context {
        namespace: "druid".to_owned(),
        config: "{}".to_owned(),
        base_pod: None,
        templates: vec![("base".to_owned(), template.to_string())],
        job_name: sdk::names::job_name(&task.id),
        labels: Vec::new(),
        annotations: Vec::new(),
        limits: sdk::Limits::default(),
    };
    (task, ctx)
}
