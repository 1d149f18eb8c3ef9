//! Native latency of the pod-template adapter on seed 000's PodTemplate and the example Druid
//! task: p50/p99 of `adapt` (the whole call: config parse, template parse, gzip+base64, Job
//! serialisation). The host's `taskpod bench adapters` compares this with the component.
//!
//! Run: `cargo bench -p taskpod-adapter-pod-template`.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use taskpod_adapter_pod_template::PodTemplateAdapter;
use taskpod_adapter_sdk::{Adapter, Context, Task, names};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let yaml = std::fs::read_to_string(root.join("examples/druid/pod-templates/base.yaml"))
        .expect("examples/druid/pod-templates/base.yaml");
    let template: serde_json::Value = serde_yaml::from_str(&yaml).expect("base.yaml is YAML");
    let payload = std::fs::read_to_string(root.join("examples/druid/tasks/index-parallel.json"))
        .expect("examples/druid/tasks/index-parallel.json");
    let raw: serde_json::Value = serde_json::from_str(&payload).expect("task JSON");
    let id = raw["id"].as_str().expect("task id").to_owned();
    let task = Task {
        kind: raw["type"].as_str().expect("task type").to_owned(),
        group_id: raw["groupId"].as_str().map(str::to_owned),
        datasource: raw["dataSource"].as_str().map(str::to_owned),
        tenant: "default".to_owned(),
        payload,
        id: id.clone(),
        ..Task::default()
    };
    let ctx = Context {
        namespace: "druid".to_owned(),
        config: "{}".to_owned(),
        templates: vec![("base".to_owned(), template.to_string())],
        job_name: names::job_name(&id),
        ..Context::default()
    };

    for _ in 0..1_000 {
        black_box(PodTemplateAdapter::adapt(black_box(&task), black_box(&ctx)).expect("adapt"));
    }
    let runs = 20_000;
    let mut micros = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let out = PodTemplateAdapter::adapt(black_box(&task), black_box(&ctx)).expect("adapt");
        micros.push(start.elapsed().as_secs_f64() * 1e6);
        black_box(out);
    }
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((runs as f64 * q) as usize).min(runs - 1)];
    println!(
        "pod-template adapt (native): p50 {:.1} µs, p99 {:.1} µs over {runs} calls",
        at(0.50),
        at(0.99)
    );
}
