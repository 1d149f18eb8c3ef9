//! The teraslice adapter, property by property, against seed 003 (Teraslice's Kubernetes
//! backend): the three target constraints reproduce the seed's YAML blocks, legacy and new
//! resources follow the seed's precedence, and every object passes `kubernetes-validate`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Value, json};
use taskpod_adapter_sdk::{Adapter, AdapterError, Context, Limits, Task, names, payload};
use taskpod_adapter_teraslice::{TerasliceAdapter, dns_safe_job_name, resource_name};

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// The example master settings: `adapters[0].config` of examples/teraslice/taskpod.yaml.
fn example_config() -> Value {
    let text = std::fs::read_to_string(repo_file("examples/teraslice/taskpod.yaml")).unwrap();
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    doc["adapters"][0]["config"].clone()
}

/// The example execution (a taskpod envelope around the Teraslice job).
fn example_task() -> Task {
    let text =
        std::fs::read_to_string(repo_file("examples/teraslice/tasks/data-generator.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    Task {
        id: doc["id"].as_str().unwrap().to_owned(),
        kind: doc["type"].as_str().unwrap().to_owned(),
        tenant: doc["tenant"].as_str().unwrap().to_owned(),
        group_id: doc["groupId"].as_str().map(str::to_owned),
        datasource: None,
        payload: doc["payload"].to_string(),
        labels: vec![],
        tags: vec![],
    }
}

fn task(job: Value) -> Task {
    Task {
        id: "ex-0001".to_owned(),
        kind: "teraslice-execution".to_owned(),
        tenant: "default".to_owned(),
        payload: job.to_string(),
        ..Task::default()
    }
}

fn context(config: &Value, task: &Task) -> Context {
    Context {
        namespace: "ts-dev1".to_owned(),
        config: config.to_string(),
        job_name: names::job_name(&task.id),
        labels: vec![("team".into(), "search".into())],
        annotations: vec![("example.com/owner".into(), "data-platform".into())],
        limits: Limits {
            max_duration_seconds: 604_800,
            cleanup_delay_seconds: Some(86_400),
            termination_grace_period_seconds: None,
            max_inline_payload: payload::MAX_INLINE_PAYLOAD as u32,
        },
        ..Context::default()
    }
}

/// Job, Deployment, Service as JSON values.
struct Out {
    job: Value,
    deployment: Value,
    service: Value,
}

impl Out {
    fn exc_pod(&self) -> &Value {
        &self.job["spec"]["template"]["spec"]
    }
    fn wkr_pod(&self) -> &Value {
        &self.deployment["spec"]["template"]["spec"]
    }
}

fn adapt_with(config: &Value, job: Value) -> Result<Out, AdapterError> {
    let t = task(job);
    let out = TerasliceAdapter::adapt(&t, &context(config, &t))?;
    assert_eq!(out.companions.len(), 2);
    Ok(Out {
        job: serde_json::from_str(&out.job).unwrap(),
        deployment: serde_json::from_str(&out.companions[0]).unwrap(),
        service: serde_json::from_str(&out.companions[1]).unwrap(),
    })
}

fn adapt(job: Value) -> Out {
    adapt_with(&json!({}), job).unwrap()
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap()
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
}

#[test]
fn required_targets_reproduce_the_seed_block() {
    let out = adapt(json!({"name": "j", "targets": [
        {"key": "zone", "value": "west"},
        {"key": "region", "value": "texas", "constraint": "required"}
    ]}));
    let expected = yaml(
        r#"
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
      - matchExpressions:
        - key: zone
          operator: In
          values:
          - west
        - key: region
          operator: In
          values:
          - texas
"#,
    );
    for pod in [out.exc_pod(), out.wkr_pod()] {
        assert_eq!(json!({"affinity": pod["affinity"]}), expected);
        assert!(pod.get("tolerations").is_none());
    }
}

#[test]
fn preferred_targets_reproduce_the_seed_block() {
    let out = adapt(json!({"name": "j", "targets": [
        {"key": "zone", "value": "west", "constraint": "preferred"},
        {"key": "region", "value": "texas", "constraint": "preferred"}
    ]}));
    let expected = yaml(
        r#"
affinity:
  nodeAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 1
      preference:
        matchExpressions:
        - key: zone
          operator: In
          values:
          - west
    - weight: 1
      preference:
        matchExpressions:
        - key: region
          operator: In
          values:
          - texas
"#,
    );
    for pod in [out.exc_pod(), out.wkr_pod()] {
        assert_eq!(json!({"affinity": pod["affinity"]}), expected);
    }
}

#[test]
fn accepted_targets_reproduce_the_seed_block() {
    let out = adapt(json!({"name": "j", "targets": [
        {"key": "zone", "value": "west", "constraint": "accepted"},
        {"key": "region", "value": "texas", "constraint": "accepted"}
    ]}));
    let expected = yaml(
        r#"
tolerations:
- key: zone
  operator: Equal
  value: west
  effect: NoSchedule
- key: region
  operator: Equal
  value: texas
  effect: NoSchedule
"#,
    );
    for pod in [out.exc_pod(), out.wkr_pod()] {
        assert_eq!(json!({"tolerations": pod["tolerations"]}), expected);
        assert!(pod.get("affinity").is_none());
    }
}

#[test]
fn required_and_accepted_combine_as_the_seed_example() {
    let out = adapt(json!({"name": "j", "targets": [
        {"key": "zone", "value": "west", "constraint": "required"},
        {"key": "region", "value": "texas", "constraint": "accepted"}
    ]}));
    let pod = out.wkr_pod();
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"],
        json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["west"]}]}])
    );
    assert_eq!(
        pod["tolerations"],
        json!([{"key": "region", "operator": "Equal", "value": "texas", "effect": "NoSchedule"}])
    );
}

#[test]
fn execution_controller_targets_apply_to_the_controller_only() {
    let config =
        json!({"execution_controller_targets": [{"key": "node-pool", "value": "controllers"}]});
    let out = adapt_with(
        &config,
        json!({"name": "j", "targets": [{"key": "zone", "value": "west"}]}),
    )
    .unwrap();
    let exc = out.exc_pod();
    assert_eq!(
        exc["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"],
        json!([
            {"key": "zone", "operator": "In", "values": ["west"]},
            {"key": "node-pool", "operator": "In", "values": ["controllers"]}
        ])
    );
    assert_eq!(
        exc["tolerations"],
        json!([{"key": "node-pool", "operator": "Equal", "value": "controllers", "effect": "NoSchedule"}])
    );
    let wkr = out.wkr_pod();
    assert_eq!(
        wkr["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"],
        json!([{"key": "zone", "operator": "In", "values": ["west"]}])
    );
    assert!(wkr.get("tolerations").is_none());
}

fn worker_resources(config: Value, job: Value) -> Value {
    let out = adapt_with(&config, job).unwrap();
    out.wkr_pod()["containers"][0]
        .get("resources")
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn new_resources_set_requests_and_limits_separately() {
    let r = worker_resources(
        json!({}),
        json!({"name": "j", "resources_requests_cpu": 0.25, "resources_limits_cpu": 1,
               "resources_requests_memory": 128000000, "resources_limits_memory": 536870912}),
    );
    assert_eq!(
        r,
        json!({"requests": {"cpu": "0.25", "memory": "128000000"}, "limits": {"cpu": "1", "memory": "536870912"}})
    );
    // Any subset may be given.
    let r = worker_resources(
        json!({}),
        json!({"name": "j", "resources_limits_memory": 536870912}),
    );
    assert_eq!(r, json!({"limits": {"memory": "536870912"}}));
}

#[test]
fn legacy_resources_are_ignored_when_any_new_one_is_set() {
    // The job's legacy cpu/memory and the master's are all ignored once resources_* is set,
    // even for the resource the new properties do not mention.
    let r = worker_resources(
        json!({"cpu": 4, "memory": 4294967296u64}),
        json!({"name": "j", "cpu": 2, "memory": 2147483648u64, "resources_requests_cpu": 0.25}),
    );
    assert_eq!(r, json!({"requests": {"cpu": "0.25"}}));
}

#[test]
fn legacy_resources_job_over_master() {
    let r = worker_resources(
        json!({"cpu": 4, "memory": 4294967296u64}),
        json!({"name": "j", "cpu": 1}),
    );
    assert_eq!(
        r,
        json!({"requests": {"cpu": "1", "memory": "4294967296"}, "limits": {"cpu": "1", "memory": "4294967296"}})
    );
    let r = worker_resources(json!({}), json!({"name": "j", "memory": 2147483648u64}));
    assert_eq!(
        r,
        json!({"requests": {"memory": "2147483648"}, "limits": {"memory": "2147483648"}})
    );
    // Nothing anywhere: no resources at all.
    assert_eq!(
        worker_resources(json!({}), json!({"name": "j"})),
        Value::Null
    );
}

#[test]
fn execution_controller_resources_defaults_and_overrides() {
    let out = adapt(json!({"name": "j"}));
    let c = &out.exc_pod()["containers"][0];
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "0.5", "memory": "512000000"}, "limits": {"cpu": "0.5", "memory": "512000000"}})
    );
    // 90% of 512000000 bytes in MiB, rounded.
    assert_eq!(
        env(c, "NODE_OPTIONS").unwrap()["value"],
        "--max-old-space-size=439"
    );
    let config = json!({"cpu_execution_controller": 1, "memory_execution_controller": 1073741824});
    let out = adapt_with(&config, json!({"name": "j"})).unwrap();
    assert_eq!(
        out.exc_pod()["containers"][0]["resources"]["limits"],
        json!({"cpu": "1", "memory": "1073741824"})
    );
    let out = adapt_with(
        &config,
        json!({"name": "j", "cpu_execution_controller": 0.25}),
    )
    .unwrap();
    assert_eq!(
        out.exc_pod()["containers"][0]["resources"]["requests"],
        json!({"cpu": "0.25", "memory": "1073741824"})
    );
    // The worker gets NODE_OPTIONS from its memory limit.
    let out = adapt(json!({"name": "j", "resources_limits_memory": 536870912}));
    assert_eq!(
        env(&out.wkr_pod()["containers"][0], "NODE_OPTIONS").unwrap()["value"],
        "--max-old-space-size=461"
    );
}

#[test]
fn volumes_assets_and_ephemeral_storage() {
    let config = json!({"assets_volume": "teraslice-assets", "assets_directory": "/app/assets"});
    let out = adapt_with(
        &config,
        json!({"name": "j", "volumes": [{"name": "teraslice-data1", "path": "/data"}], "ephemeral_storage": true}),
    )
    .unwrap();
    for pod in [out.exc_pod(), out.wkr_pod()] {
        let volumes = pod["volumes"].as_array().unwrap();
        assert!(volumes.contains(&json!({"name": "teraslice-data1", "persistentVolumeClaim": {"claimName": "teraslice-data1"}})));
        assert!(volumes.contains(&json!({"name": "teraslice-assets", "persistentVolumeClaim": {"claimName": "teraslice-assets"}})));
        assert!(volumes.contains(&json!({"name": "ephemeral-volume", "emptyDir": {}})));
        let mounts = pod["containers"][0]["volumeMounts"].as_array().unwrap();
        assert!(mounts.contains(&json!({"name": "teraslice-data1", "mountPath": "/data"})));
        assert!(mounts.contains(&json!({"name": "teraslice-assets", "mountPath": "/app/assets"})));
        assert!(mounts.contains(&json!({"name": "ephemeral-volume", "mountPath": "/ephemeral0"})));
        assert!(mounts.contains(&json!({"name": "config", "mountPath": "/app/config"})));
    }
    // Without the properties: only the config volume.
    let out = adapt(json!({"name": "j"}));
    assert_eq!(out.wkr_pod()["volumes"].as_array().unwrap().len(), 1);
    assert_eq!(
        out.wkr_pod()["volumes"][0]["configMap"]["name"],
        "teraslice-worker"
    );
}

#[test]
fn external_ports_reproduce_the_seed_snippet() {
    let out =
        adapt(json!({"name": "j", "external_ports": [9090, {"name": "metrics", "port": 3333}]}));
    let expected = yaml(
        r#"
ports:
- containerPort: 45680
  protocol: TCP
- containerPort: 9090
  protocol: TCP
- containerPort: 3333
  name: metrics
  protocol: TCP
"#,
    );
    for pod in [out.exc_pod(), out.wkr_pod()] {
        assert_eq!(json!({"ports": pod["containers"][0]["ports"]}), expected);
    }
}

#[test]
fn labels_standard_and_prefixed() {
    let config = json!({"name": "ts-dev1"});
    let mut job = json!({"name": "Data Generator", "job_id": "2e2e2ac3-87e5-4d46-9e23-fd1c2b1e6a6b",
                         "labels": {"key1": "value1", "bad key": "a/b"}});
    job["ex_id"] = json!("8a3b2f6c-3c1e-4a40-9e7b-5d7c3f1a2b90");
    let out = adapt_with(&config, job).unwrap();
    let std_labels = |component: &str| {
        json!({
            "app.kubernetes.io/name": "teraslice",
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/instance": "ts-dev1",
            "teraslice.terascope.io/exId": "8a3b2f6c-3c1e-4a40-9e7b-5d7c3f1a2b90",
            "teraslice.terascope.io/jobId": "2e2e2ac3-87e5-4d46-9e23-fd1c2b1e6a6b",
            "teraslice.terascope.io/jobName": "data-generator",
            "job.teraslice.terascope.io/key1": "value1",
            "job.teraslice.terascope.io/bad-key": "a-b",
            "team": "search",
        })
    };
    for (meta, component) in [
        (&out.job["metadata"], "execution_controller"),
        (
            &out.job["spec"]["template"]["metadata"],
            "execution_controller",
        ),
        (&out.deployment["metadata"], "worker"),
        (&out.deployment["spec"]["template"]["metadata"], "worker"),
    ] {
        assert_eq!(meta["labels"], std_labels(component), "{meta}");
        assert_eq!(meta["annotations"]["example.com/owner"], "data-platform");
    }
    assert_eq!(
        out.deployment["spec"]["selector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "teraslice", "app.kubernetes.io/component": "worker",
               "teraslice.terascope.io/exId": "8a3b2f6c-3c1e-4a40-9e7b-5d7c3f1a2b90"})
    );
    assert_eq!(
        out.service["spec"]["selector"],
        json!({"app.kubernetes.io/component": "execution_controller",
               "teraslice.terascope.io/exId": "8a3b2f6c-3c1e-4a40-9e7b-5d7c3f1a2b90"})
    );
    assert_eq!(
        out.service["metadata"]["labels"]["job.teraslice.terascope.io/key1"],
        "value1"
    );
}

#[test]
fn names_follow_teraslice_and_are_dns_safe() {
    assert_eq!(dns_safe_job_name("Data Generator"), "data-generator");
    assert_eq!(dns_safe_job_name("1st_job.v2!"), "ast-job-v20");
    assert_eq!(dns_safe_job_name(&"x".repeat(100)).len(), 63);
    let out =
        adapt(json!({"name": "Data Generator", "job_id": "2e2e2ac3-87e5-4d46-9e23-fd1c2b1e6a6b"}));
    assert_eq!(
        out.deployment["metadata"]["name"],
        "ts-wkr-data-generator-2e2e2ac3-87e5"
    );
    assert_eq!(
        out.service["metadata"]["name"],
        "svc-ts-exc-data-generator-2e2e2ac3-87e5"
    );
    assert_eq!(
        out.exc_pod()["containers"][0]["name"],
        "ts-exc-data-generator-2e2e2ac3-87e5"
    );
    assert_eq!(
        out.wkr_pod()["containers"][0]["name"],
        "ts-wkr-data-generator-2e2e2ac3-87e5"
    );
    // The Job keeps the host's name.
    assert_eq!(out.job["metadata"]["name"], names::job_name("ex-0001"));
    // Long, odd names stay DNS-1123 labels of at most 63 characters.
    let long = format!("{}_!", "Very.Long Job Name ".repeat(8));
    let name = resource_name("wkr", &dns_safe_job_name(&long), "ABC_DEF-123456789");
    assert!(name.len() <= 63, "{name}");
    names::check_label_value(&name).unwrap();
    assert!(
        name.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "{name}"
    );
    let out = adapt(json!({"name": long}));
    for n in [
        &out.deployment["metadata"]["name"],
        &out.service["metadata"]["name"],
    ] {
        let n = n.as_str().unwrap();
        assert!(
            n.len() <= 63 && !n.ends_with('-') && n.starts_with(|c: char| c.is_ascii_lowercase()),
            "{n}"
        );
    }
}

#[test]
fn workers_are_the_deployment_replicas() {
    assert_eq!(
        adapt(json!({"name": "j", "workers": 7})).deployment["spec"]["replicas"],
        7
    );
    assert_eq!(
        adapt(json!({"name": "j"})).deployment["spec"]["replicas"],
        5
    );
}

#[test]
fn stateful_priority_class_and_label() {
    let config = json!({"kubernetes_priority_class_name": "high-priority"});
    let out = adapt_with(&config, json!({"name": "j", "stateful": true})).unwrap();
    for pod_meta in [
        &out.job["spec"]["template"],
        &out.deployment["spec"]["template"],
    ] {
        assert_eq!(pod_meta["spec"]["priorityClassName"], "high-priority");
        assert_eq!(
            pod_meta["metadata"]["labels"]["job-property.teraslice.terascope.io/stateful"],
            "true"
        );
    }
    // Not stateful: only the execution controller gets the priority class, nobody the label.
    let out = adapt_with(&config, json!({"name": "j"})).unwrap();
    assert_eq!(out.exc_pod()["priorityClassName"], "high-priority");
    assert!(out.wkr_pod().get("priorityClassName").is_none());
    assert!(
        out.deployment["spec"]["template"]["metadata"]["labels"]
            .get("job-property.teraslice.terascope.io/stateful")
            .is_none()
    );
}

#[test]
fn worker_antiaffinity_image_and_pull_secret() {
    let config = json!({"name": "ts-dev1", "kubernetes_worker_antiaffinity": true,
                        "kubernetes_image": "terascope/teraslice:v2", "kubernetes_image_pull_secret": "regcred"});
    let out = adapt_with(&config, json!({"name": "j"})).unwrap();
    assert_eq!(
        out.wkr_pod()["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"],
        json!([{"weight": 1, "podAffinityTerm": {
            "labelSelector": {"matchExpressions": [
                {"key": "app.kubernetes.io/name", "operator": "In", "values": ["teraslice"]},
                {"key": "app.kubernetes.io/instance", "operator": "In", "values": ["ts-dev1"]}
            ]},
            "topologyKey": "kubernetes.io/hostname"
        }}])
    );
    assert!(out.exc_pod().get("affinity").is_none());
    for pod in [out.exc_pod(), out.wkr_pod()] {
        assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}]));
        assert_eq!(pod["containers"][0]["image"], "terascope/teraslice:v2");
    }
    let out = adapt_with(&config, json!({"name": "j", "kubernetes_image": "mine:1"})).unwrap();
    assert_eq!(out.wkr_pod()["containers"][0]["image"], "mine:1");
    assert_eq!(
        adapt(json!({"name": "j"})).wkr_pod()["containers"][0]["image"],
        "teraslice:k8sdev"
    );
}

#[test]
fn environment_of_every_pod() {
    let config = json!({"env_vars": {"TZ": "UTC", "LOG_LEVEL": "warn"}});
    let job = json!({"name": "j", "env_vars": {"LOG_LEVEL": "info"}});
    let out = adapt_with(&config, job.clone()).unwrap();
    for (pod, node_type) in [
        (out.exc_pod(), "execution_controller"),
        (out.wkr_pod(), "worker"),
    ] {
        let c = &pod["containers"][0];
        assert_eq!(env(c, "NODE_TYPE").unwrap()["value"], node_type);
        assert_eq!(
            env(c, "POD_IP").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
            "status.podIP"
        );
        assert_eq!(env(c, "TZ").unwrap()["value"], "UTC");
        assert_eq!(env(c, "LOG_LEVEL").unwrap()["value"], "info");
        let ex = env(c, "EX").unwrap()["value"].as_str().unwrap();
        let decoded: Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(ex)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(decoded["name"], "j");
        assert_eq!(decoded["ex_id"], "ex-0001");
        assert_eq!(decoded["job_id"], "ex-0001");
    }
    // Teraslice's pods: the controller's readiness probe, the workers' security context.
    assert_eq!(
        out.exc_pod()["containers"][0]["readinessProbe"]["httpGet"]["path"],
        "/health"
    );
    assert_eq!(out.wkr_pod()["securityContext"]["runAsNonRoot"], true);
    assert_eq!(out.wkr_pod()["terminationGracePeriodSeconds"], 60);
}

#[test]
fn job_contract_of_the_execution_controller() {
    let out = adapt(json!({"name": "j"}));
    assert_eq!(out.job["apiVersion"], "batch/v1");
    assert_eq!(out.job["metadata"]["namespace"], "ts-dev1");
    assert_eq!(out.job["spec"]["backoffLimit"], 0);
    assert_eq!(out.job["spec"]["activeDeadlineSeconds"], 604_800);
    assert_eq!(out.job["spec"]["ttlSecondsAfterFinished"], 86_400);
    assert_eq!(out.exc_pod()["restartPolicy"], "Never");
    assert_eq!(out.deployment["metadata"]["namespace"], "ts-dev1");
    assert_eq!(out.service["metadata"]["namespace"], "ts-dev1");
    assert_eq!(
        out.service["spec"]["ports"],
        json!([{"port": 45680, "targetPort": 45680, "protocol": "TCP"}])
    );
}

const OVERRIDE: &str = r#"{
  "initContainers": [
    { "name": "init-hello-world", "image": "busybox:1.28", "command": ["sh", "-c", "echo 'HELLO WORLD'"] }
  ]
}"#;

#[test]
fn pod_spec_override_refused_unless_enabled() {
    let job =
        json!({"name": "j", "pod_spec_override": serde_json::from_str::<Value>(OVERRIDE).unwrap()});
    let err = adapt_with(&json!({}), job.clone()).err().unwrap();
    assert!(matches!(err, AdapterError::InvalidTask(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("payload.pod_spec_override")
            && msg.contains("kubernetes_overrides_enabled: true"),
        "{msg}"
    );

    let out = adapt_with(&json!({"kubernetes_overrides_enabled": true}), job).unwrap();
    for pod in [out.exc_pod(), out.wkr_pod()] {
        assert_eq!(pod["initContainers"][0]["name"], "init-hello-world");
        assert_eq!(
            pod["initContainers"][0]["command"],
            json!(["sh", "-c", "echo 'HELLO WORLD'"])
        );
    }
}

#[test]
fn pod_spec_override_merges_like_lodash_and_names_bad_fields() {
    let config = json!({"kubernetes_overrides_enabled": true});
    // Arrays merge by index: the first container gets an extra field, the rest is kept.
    let job = json!({"name": "j", "pod_spec_override": {
        "containers": [{"imagePullPolicy": "Always"}],
        "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["es.local"]}]
    }});
    let out = adapt_with(&config, job).unwrap();
    let c = &out.wkr_pod()["containers"][0];
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["image"], "teraslice:k8sdev");
    assert_eq!(out.exc_pod()["hostAliases"][0]["ip"], "10.0.0.1");
    // A field Kubernetes does not know is named, not dropped.
    let job = json!({"name": "j", "pod_spec_override": {"initContainer": []}});
    let err = adapt_with(&config, job).err().unwrap();
    assert!(matches!(err, AdapterError::InvalidTask(_)), "{err}");
    assert!(err.to_string().contains("initContainer"), "{err}");
    let job = json!({"name": "j", "pod_spec_override": {"containers": "x"}});
    let err = adapt_with(&config, job).err().unwrap();
    assert!(
        err.to_string().contains("payload.pod_spec_override"),
        "{err}"
    );
}

#[test]
fn config_and_task_errors_are_clear() {
    let err = adapt_with(
        &json!({"kubernetes_namespace": "other"}),
        json!({"name": "j"}),
    )
    .err()
    .unwrap();
    assert!(matches!(err, AdapterError::InvalidConfig(_)));
    assert!(
        err.to_string().contains("config.kubernetes_namespace"),
        "{err}"
    );
    assert!(
        adapt_with(
            &json!({"kubernetes_namespace": "ts-dev1"}),
            json!({"name": "j"})
        )
        .is_ok()
    );
    let err = adapt_with(&json!({}), json!({"workers": 2})).err().unwrap();
    assert!(err.to_string().contains("payload.name"), "{err}");
    let err =
        TerasliceAdapter::validate_config(r#"{"kubernetes_image_pul_secret": "x"}"#).unwrap_err();
    assert!(
        err.to_string().contains("kubernetes_image_pul_secret"),
        "{err}"
    );
    // A job too large for the EX variable.
    let t = task(json!({"name": "j", "big": "x".repeat(1000)}));
    let mut ctx = context(&json!({}), &t);
    ctx.limits.max_inline_payload = 500;
    let err = TerasliceAdapter::adapt(&t, &ctx).unwrap_err();
    assert!(err.to_string().contains("inline limit of 500"), "{err}");
}

/// The example: golden multi-document YAML, regenerated with `TASKPOD_BLESS=1`.
#[test]
fn example_execution_matches_golden_file() {
    let t = example_task();
    let out = TerasliceAdapter::adapt(&t, &context(&example_config(), &t)).unwrap();
    let mut docs = vec![serde_json::from_str::<Value>(&out.job).unwrap()];
    docs.extend(
        out.companions
            .iter()
            .map(|c| serde_json::from_str::<Value>(c).unwrap()),
    );
    let text = docs
        .iter()
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/data-generator.expected.yaml");
    taskpod_test_support::golden(
        &golden,
        &text,
        "cargo test -p taskpod-adapter-teraslice --test adapt",
    );
    // The example exercises the new-over-legacy precedence on the workers.
    assert_eq!(
        docs[1]["spec"]["template"]["spec"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "0.25", "memory": "128000000"}, "limits": {"cpu": "1", "memory": "536870912"}})
    );
    assert_eq!(docs[1]["spec"]["replicas"], 3);
}

#[test]
fn every_object_passes_kubernetes_validate_strict() {
    let t = example_task();
    let mut outputs = vec![TerasliceAdapter::adapt(&t, &context(&example_config(), &t)).unwrap()];
    let mut over = example_config();
    over["kubernetes_overrides_enabled"] = json!(true);
    let mut job: Value = serde_json::from_str(&t.payload).unwrap();
    job["pod_spec_override"] = serde_json::from_str(OVERRIDE).unwrap();
    job["targets"] = json!([{"key": "zone", "value": "west", "constraint": "preferred"}]);
    let t2 = task(job);
    outputs.push(TerasliceAdapter::adapt(&t2, &context(&over, &t2)).unwrap());
    let t3 = task(json!({"name": "minimal"}));
    outputs.push(TerasliceAdapter::adapt(&t3, &context(&json!({}), &t3)).unwrap());

    let docs: Vec<&String> = outputs
        .iter()
        .flat_map(|out| std::iter::once(&out.job).chain(&out.companions))
        .collect();
    taskpod_test_support::kubernetes_validate("the Teraslice objects", &docs);
}
