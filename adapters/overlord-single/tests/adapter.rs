//! The `overlord-single` component's Rust side: its self-description, configuration checks and
//! that `adapt` is the shared overlord builder in single mode (the golden Jobs are pinned in
//! `adapters/druid/tests/overlord.rs`).

use taskpod_adapter_druid::overlord::{self, Config, Mode};
use taskpod_adapter_overlord_single::OverlordSingleAdapter as A;
use taskpod_adapter_sdk::{Adapter, Context, Task, names};

#[test]
fn info_and_config() {
    let info = A::info();
    assert_eq!(info.name, "overlord-single");
    assert!(names::is_dns1123_label(&info.name));
    let schema: serde_json::Value = serde_json::from_str(&info.config_schema).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    A::validate_config("{}").unwrap();
    let err = A::validate_config(r#"{"javaOpts": "-Xmx1g"}"#).unwrap_err();
    assert!(err.to_string().contains("javaOpts"), "{err}");
}

#[test]
fn adapt_is_the_single_builder() {
    let pod = r#"{"apiVersion":"v1","kind":"Pod","spec":{"containers":[
        {"name":"druid","image":"apache/druid:30.0.0"},
        {"name":"proxy","image":"envoy:1","command":["envoy"]}]}}"#;
    let task = Task {
        id: "kill_wiki_2026".into(),
        kind: "kill".into(),
        payload: r#"{"type":"kill","id":"kill_wiki_2026"}"#.into(),
        ..Task::default()
    };
    let ctx = Context {
        namespace: "druid".into(),
        config: r#"{"javaOptsArray": ["-Xmx2g"]}"#.into(),
        base_pod: Some(pod.into()),
        job_name: names::job_name(&task.id),
        ..Context::default()
    };
    let out = A::adapt(&task, &ctx).unwrap();
    let config = Config::parse(&ctx.config).unwrap();
    assert_eq!(
        out,
        overlord::build(&task, &ctx, &config, Mode::Single).unwrap()
    );
    let job: serde_json::Value = serde_json::from_str(&out.job).unwrap();
    let containers = job["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), if "single" == "single" { 1 } else { 2 });
}
