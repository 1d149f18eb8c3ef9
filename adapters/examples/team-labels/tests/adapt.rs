//! The example adapter, natively: the Job it builds and the configurations it refuses.

use serde_json::Value;
use taskpod_adapter_sdk::{Adapter, AdapterError, Context, Task, names};
use taskpod_example_team_labels::TeamLabels;

fn task() -> Task {
    Task {
        id: "etl_2026-11-23T10:00:00Z".into(),
        kind: "etl".into(),
        tenant: "Acme Corp".into(),
        payload: r#"{"source":"s3://bucket/in","rows":100}"#.into(),
        ..Task::default()
    }
}

fn ctx(config: &str) -> Context {
    let t = task();
    Context {
        namespace: "team-data".into(),
        config: config.into(),
        job_name: names::job_name(&t.id),
        labels: vec![("taskpod.dev/instance".into(), "host-1".into())],
        annotations: vec![("owner".into(), "data@example.com".into())],
        ..Context::default()
    }
}

const CONFIG: &str = r#"{"image": "ghcr.io/acme/etl:1.4", "team": "Data Platform!", "command": ["etl", "run"], "cpu": "500m", "memory": "1Gi"}"#;

#[test]
fn builds_a_labelled_job() {
    let out = TeamLabels::adapt(&task(), &ctx(CONFIG)).unwrap();
    let job: Value = serde_json::from_str(&out.job).unwrap();
    assert_eq!(job["kind"], "Job");
    assert_eq!(
        job["metadata"]["name"],
        names::job_name(&task().id).as_str()
    );
    assert_eq!(job["metadata"]["namespace"], "team-data");
    for meta in [&job["metadata"], &job["spec"]["template"]["metadata"]] {
        assert_eq!(meta["labels"]["team"], "DataPlatform");
        assert_eq!(meta["labels"]["tenant"], "AcmeCorp");
        assert_eq!(meta["labels"]["taskpod.dev/instance"], "host-1");
        assert_eq!(meta["annotations"]["owner"], "data@example.com");
    }
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 4 * 3600);
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "ghcr.io/acme/etl:1.4");
    assert_eq!(c["command"], serde_json::json!(["etl", "run"]));
    assert_eq!(c["resources"]["limits"]["cpu"], "500m");
    assert_eq!(c["resources"]["requests"]["memory"], "1Gi");
    let env: Vec<(&str, &str)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert_eq!(
        env,
        [
            ("TASK_ID", "etl_2026-11-23T10:00:00Z"),
            ("TASK_TYPE", "etl"),
            ("TASK_PAYLOAD", r#"{"source":"s3://bucket/in","rows":100}"#)
        ]
    );
}

#[test]
fn minimal_config_has_no_resources_or_command() {
    let out = TeamLabels::adapt(&task(), &ctx(r#"{"image": "busybox", "team": "a"}"#)).unwrap();
    let job: Value = serde_json::from_str(&out.job).unwrap();
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert!(c.get("resources").is_none() && c.get("command").is_none());
}

#[test]
fn refuses_bad_configs() {
    assert!(TeamLabels::validate_config(CONFIG).is_ok());
    let err = TeamLabels::validate_config(r#"{"image": "x", "team": "a", "gpu": 1}"#).unwrap_err();
    assert!(matches!(err, AdapterError::InvalidConfig(_)));
    assert!(err.to_string().contains("gpu"), "{err}");
    let err = TeamLabels::validate_config(r#"{"image": "x"}"#).unwrap_err();
    assert!(err.to_string().contains("team"), "{err}");
    assert!(TeamLabels::validate_config(r#"{"image": "", "team": "a"}"#).is_err());
    assert!(TeamLabels::validate_config(r#"{"image": "x", "team": "!!!"}"#).is_err());
    assert_eq!(TeamLabels::info().name, "team-labels");
}

#[test]
fn refuses_oversize_payloads() {
    let mut t = task();
    let mut c = ctx(CONFIG);
    c.limits.max_inline_payload = 10;
    t.payload = "[1,2,3,4,5,6,7,8,9]".into();
    let err = TeamLabels::adapt(&t, &c).unwrap_err();
    assert!(matches!(err, AdapterError::InvalidTask(_)), "{err}");
}
