//! The deploy/ manifests as an operator applies them: `kubectl kustomize` renders the base and
//! every overlay, `kubernetes-validate --strict` checks every object against the Kubernetes 1.37
//! schemas, the Role must grant exactly the API calls listed in deploy/rbac-calls.yaml, the
//! objects must refer to each other correctly (namespace, ServiceAccount, ConfigMap, probes,
//! store volume), and the ConfigMap's taskpod.yaml must be a config taskpod loads — the test
//! writes the ConfigMap out as the pod would see it, loads it with `taskpod::config`, loads its
//! adapters and renders the Druid example task through it. Missing tools fail, never skip.

#[allow(dead_code)]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser as _;
use serde::Deserialize;
use serde_json::Value;
use taskpod::config::Config;
use taskpod::render::Renderer;
use taskpod::task::SubmittedTask;

/// Every kustomization in deploy/, relative to the workspace.
const KUSTOMIZATIONS: &[&str] = &[
    "deploy/base",
    "deploy/overlays/druid",
    "deploy/overlays/teraslice",
    "deploy/overlays/samza",
    "deploy/overlays/ha",
];

/// The overlay with several replicas, the PostgreSQL store and leader election.
const HA: &str = "deploy/overlays/ha";

/// Kinds each kustomization must produce, one object each.
const KINDS: &[&str] = &[
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "StatefulSet",
    "Service",
];

/// Where the StatefulSet mounts the ConfigMap and where the store lives.
const CONFIG_DIR: &str = "/etc/taskpod";
const DATA_DIR: &str = "/var/lib/taskpod";

/// `kubectl kustomize DIR` → the rendered objects.
fn kustomize(dir: &str) -> Vec<Value> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(common::ws(dir))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "kubectl (1.27 or newer, with kustomize) is not installed ({e}): run scripts/setup"
            )
        });
    assert!(
        output.status.success(),
        "kubectl kustomize {dir} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8 YAML");
    let mut objects = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = Value::deserialize(document)
            .unwrap_or_else(|e| panic!("kubectl kustomize {dir}: not YAML: {e}"));
        if !value.is_null() {
            objects.push(value);
        }
    }
    objects
}

/// Runs `kubernetes-validate --strict` for Kubernetes 1.37 on `file`.
fn kubernetes_validate(file: &Path) {
    taskpod_test_support::kubernetes_validate_files(&file.display().to_string(), &[file]);
}

/// Writes `objects` as one multi-document YAML file and validates it; returns how many.
fn validate_all(dir: &Path, name: &str, objects: &[Value]) -> usize {
    let mut text = String::new();
    for object in objects {
        text.push_str("---\n");
        text.push_str(&serde_yaml::to_string(object).expect("YAML"));
    }
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, text).expect("write rendered objects");
    kubernetes_validate(&file);
    objects.len()
}

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

/// The single object of `kind` in `objects`.
fn one<'a>(objects: &'a [Value], dir: &str, wanted: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| kind(o) == wanted).collect();
    assert_eq!(
        found.len(),
        1,
        "{dir}: expected one {wanted}, found {}",
        found.len()
    );
    found[0]
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// The (group, resource, verb) triples a Role's rules grant.
fn granted(role: &Value, dir: &str) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for (i, rule) in role["rules"].as_array().expect("rules").iter().enumerate() {
        assert!(
            rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(),
            "{dir}: Role rules[{i}] uses resourceNames or nonResourceURLs, which rbac-calls.yaml \
             cannot express: list the calls there first"
        );
        let strings = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .unwrap_or_else(|| panic!("{dir}: Role rules[{i}].{key} is missing"))
                .iter()
                .map(|v| v.as_str().expect("string").to_owned())
                .collect()
        };
        for group in strings("apiGroups") {
            for resource in strings("resources") {
                for verb in strings("verbs") {
                    assert!(
                        group != "*" && resource != "*" && verb != "*",
                        "{dir}: Role rules[{i}] uses a wildcard; grant named calls only"
                    );
                    out.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    out
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallsFile {
    calls: Vec<Call>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Call {
    group: String,
    resource: String,
    verbs: Vec<String>,
    why: String,
}

/// deploy/rbac-calls.yaml as (group, resource, verb) triples.
fn calls() -> BTreeSet<(String, String, String)> {
    let path = common::ws("deploy/rbac-calls.yaml");
    let text = std::fs::read_to_string(&path).expect("read deploy/rbac-calls.yaml");
    let file: CallsFile =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = BTreeSet::new();
    for call in file.calls {
        assert!(
            !call.why.trim().is_empty(),
            "rbac-calls.yaml: {}/{} needs a `why`",
            call.group,
            call.resource
        );
        for verb in call.verbs {
            let triple = (call.group.clone(), call.resource.clone(), verb);
            assert!(
                out.insert(triple.clone()),
                "rbac-calls.yaml lists {triple:?} twice"
            );
        }
    }
    out
}

#[test]
fn every_rendered_object_is_valid_for_kubernetes_1_37() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut total = 0;
    for path in KUSTOMIZATIONS {
        let objects = kustomize(path);
        let kinds: Vec<&str> = objects.iter().map(kind).collect();
        let mut sorted = kinds.clone();
        sorted.sort_unstable();
        let mut expected = KINDS.to_vec();
        expected.sort_unstable();
        assert_eq!(sorted, expected, "{path}: rendered kinds");
        let count = validate_all(dir.path(), &path.replace('/', "-"), &objects);
        println!("{path}: {count} objects valid (kubernetes-validate --strict, Kubernetes 1.37.0)");
        total += count;
    }
    println!(
        "validated {total} objects from {} kustomizations",
        KUSTOMIZATIONS.len()
    );
    assert_eq!(total, KUSTOMIZATIONS.len() * KINDS.len());
}

#[test]
fn role_grants_exactly_the_calls_taskpod_makes() {
    let wanted = calls();
    for path in KUSTOMIZATIONS {
        let objects = kustomize(path);
        assert!(
            !objects
                .iter()
                .any(|o| kind(o) == "ClusterRole" || kind(o) == "ClusterRoleBinding"),
            "{path}: taskpod needs no cluster-wide permission"
        );
        let have = granted(one(&objects, path, "Role"), path);
        let extra: Vec<_> = have.difference(&wanted).collect();
        let missing: Vec<_> = wanted.difference(&have).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{path}: the Role must grant exactly deploy/rbac-calls.yaml.\n  granted but not \
             listed (remove from the Role, or list the call): {extra:?}\n  listed but not \
             granted (add to the Role): {missing:?}"
        );
    }
}

/// The env var `name` of `container` is the downward-API field `path`.
fn field_ref(container: &Value, name: &str) -> Option<String> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["valueFrom"]["fieldRef"]["fieldPath"]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn objects_refer_to_each_other() {
    for path in KUSTOMIZATIONS {
        let objects = kustomize(path);
        let namespace = one(&objects, path, "Role")["metadata"]["namespace"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: the Role has no namespace"))
            .to_owned();
        for object in &objects {
            assert_eq!(
                object["metadata"]["namespace"].as_str(),
                Some(namespace.as_str()),
                "{path}: {} {} is not in {namespace}",
                kind(object),
                name(object)
            );
        }
        let account = name(one(&objects, path, "ServiceAccount"));
        let binding = one(&objects, path, "RoleBinding");
        assert_eq!(binding["roleRef"]["kind"], "Role", "{path}: roleRef");
        assert_eq!(
            binding["roleRef"]["name"],
            name(one(&objects, path, "Role"))
        );
        let subjects = binding["subjects"].as_array().expect("subjects");
        assert_eq!(subjects.len(), 1, "{path}: one subject");
        assert_eq!(subjects[0]["kind"], "ServiceAccount");
        assert_eq!(subjects[0]["name"], account, "{path}: subject name");
        assert_eq!(
            subjects[0]["namespace"],
            namespace.as_str(),
            "{path}: subject namespace"
        );

        let set = one(&objects, path, "StatefulSet");
        let spec = &set["spec"];
        if *path == HA {
            let replicas = spec["replicas"].as_u64().expect("replicas");
            assert!(replicas > 1, "{path}: several replicas");
        } else {
            assert_eq!(spec["replicas"], 1, "{path}: SQLite allows one replica");
        }
        let service = one(&objects, path, "Service");
        assert_eq!(spec["serviceName"], name(service), "{path}: serviceName");
        let pod = &spec["template"]["spec"];
        let labels = &spec["template"]["metadata"]["labels"];
        for (key, value) in service["spec"]["selector"].as_object().expect("selector") {
            assert_eq!(
                &labels[key], value,
                "{path}: Service selector {key} matches the pod"
            );
        }
        assert_eq!(
            pod["serviceAccountName"], account,
            "{path}: pod's ServiceAccount"
        );
        let pod_security = &pod["securityContext"];
        assert_eq!(pod_security["runAsNonRoot"], true, "{path}: runAsNonRoot");
        assert_eq!(pod_security["seccompProfile"]["type"], "RuntimeDefault");
        let containers = pod["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1, "{path}: one container");
        let container = &containers[0];
        let security = &container["securityContext"];
        assert_eq!(
            security["readOnlyRootFilesystem"], true,
            "{path}: read-only root"
        );
        assert_eq!(security["allowPrivilegeEscalation"], false);
        assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert_eq!(
            field_ref(container, "POD_NAME").as_deref(),
            Some("metadata.name")
        );
        assert_eq!(
            field_ref(container, "POD_NAMESPACE").as_deref(),
            Some("metadata.namespace")
        );
        assert_eq!(container["ports"][0]["containerPort"], 8080);
        assert_eq!(container["ports"][0]["name"], "http");
        for (probe, route) in [
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
            ("startupProbe", "/healthz"),
        ] {
            assert_eq!(
                container[probe]["httpGet"]["path"], route,
                "{path}: {probe}"
            );
            assert_eq!(
                container[probe]["httpGet"]["port"], "http",
                "{path}: {probe}"
            );
        }
        for key in ["requests", "limits"] {
            assert!(
                container["resources"][key]["memory"].is_string(),
                "{path}: resources.{key}.memory"
            );
        }
        let args: Vec<&str> = container["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("string"))
            .collect();
        assert_eq!(args[0], "serve");
        // The container's arguments are ones the real CLI accepts.
        let argv = std::iter::once("taskpod").chain(args.iter().copied());
        if let Err(e) = taskpod::cli::Cli::try_parse_from(argv) {
            panic!("{path}: the StatefulSet's args {args:?} are refused by taskpod: {e}");
        }
        assert!(args.contains(&format!("--config={CONFIG_DIR}/taskpod.yaml").as_str()));
        if *path == HA {
            // The PostgreSQL URL comes from a Secret, the advertised URL from the pod IP; no
            // SQLite file, no volume claim.
            let env = container["env"].as_array().expect("env");
            let url = env
                .iter()
                .find(|e| e["name"] == "TASKPOD_STORE_URL")
                .unwrap_or_else(|| panic!("{path}: TASKPOD_STORE_URL"));
            assert!(
                url["valueFrom"]["secretKeyRef"]["name"].is_string(),
                "{path}: the store URL comes from a Secret"
            );
            assert_eq!(
                field_ref(container, "POD_IP").as_deref(),
                Some("status.podIP")
            );
            assert!(!args.iter().any(|a| a.starts_with("--store")), "{path}");
            assert!(spec["volumeClaimTemplates"].is_null(), "{path}: no PVC");
        } else {
            assert!(
                args.iter()
                    .any(|a| a.starts_with(&format!("--store={DATA_DIR}/")))
            );
        }

        // Volumes: the generated ConfigMap at CONFIG_DIR, the PVC at DATA_DIR, writable
        // emptyDirs for the cache and /tmp (the root filesystem is read-only).
        let mounts: BTreeMap<&str, &str> = container["volumeMounts"]
            .as_array()
            .expect("volumeMounts")
            .iter()
            .map(|m| {
                (
                    m["mountPath"].as_str().unwrap(),
                    m["name"].as_str().unwrap(),
                )
            })
            .collect();
        let volume = |name: &str| {
            pod["volumes"]
                .as_array()
                .expect("volumes")
                .iter()
                .find(|v| v["name"] == name)
                .cloned()
        };
        let config_volume = volume(mounts[CONFIG_DIR]).expect("config volume");
        assert_eq!(
            config_volume["configMap"]["name"],
            name(one(&objects, path, "ConfigMap")),
            "{path}: the pod mounts the generated ConfigMap"
        );
        if *path != HA {
            let claims = spec["volumeClaimTemplates"].as_array().expect("claims");
            assert_eq!(claims.len(), 1);
            assert_eq!(
                claims[0]["metadata"]["name"], mounts[DATA_DIR],
                "{path}: store on the PVC"
            );
        }
        for dir in ["/tmp", "/var/cache/taskpod"] {
            let v = volume(mounts[dir]).unwrap_or_else(|| panic!("{path}: {dir} volume"));
            assert!(v["emptyDir"].is_object(), "{path}: {dir} is an emptyDir");
        }
    }
}

/// Writes the ConfigMap's keys into `dir` as the pod sees them at CONFIG_DIR.
fn write_config_map(config_map: &Value, dir: &Path) -> PathBuf {
    for (key, value) in config_map["data"].as_object().expect("ConfigMap data") {
        std::fs::write(dir.join(key), value.as_str().expect("string data")).expect("write key");
    }
    dir.join("taskpod.yaml")
}

#[test]
fn config_map_holds_a_config_taskpod_loads() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let task_text = std::fs::read_to_string(common::ws("examples/druid/tasks/index-parallel.json"))
        .expect("read the example task");
    let task = SubmittedTask::parse(&task_text).expect("example task parses");
    let mut jobs = 0;
    for path in KUSTOMIZATIONS {
        let objects = kustomize(path);
        let dir = scratch.path().join(path.replace('/', "-"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = write_config_map(one(&objects, path, "ConfigMap"), &dir);
        let config = Config::load(&file)
            .unwrap_or_else(|e| panic!("{path}: taskpod rejects the ConfigMap's config: {e}"));
        assert_eq!(
            config.namespace,
            one(&objects, path, "Role")["metadata"]["namespace"]
                .as_str()
                .unwrap(),
            "{path}: the config's namespace must be the one the Role grants in"
        );
        assert_eq!(
            config.cache_dir.as_deref(),
            Some(Path::new("/var/cache/taskpod")),
            "{path}: compiled adapters go to the writable cache volume"
        );
        // Load every adapter as `serve` does (component, templates, validate-config).
        let renderer = Renderer::new(config, common::runtime())
            .unwrap_or_else(|e| panic!("{path}: the config's adapters do not load: {e}"));
        if renderer
            .config()
            .route(&task.kind)
            .map(|a| a.component.as_str())
            == Some("builtin:pod-template")
        {
            let manifests = renderer
                .render_blocking(&task)
                .unwrap_or_else(|e| panic!("{path}: rendering the Druid example failed: {e}"));
            let yaml = manifests.to_yaml().expect("YAML");
            let out = scratch
                .path()
                .join(format!("{}-job.yaml", path.replace('/', "-")));
            std::fs::write(&out, yaml).expect("write Job");
            kubernetes_validate(&out);
            jobs += 1;
        }
    }
    assert_eq!(
        jobs, 3,
        "the base, the Druid overlay and the HA overlay render the Druid example task"
    );
}

#[test]
fn druid_overlay_deploys_the_example_pod_template() {
    let deployed = std::fs::read(common::ws("deploy/overlays/druid/base.yaml")).expect("read");
    let example =
        std::fs::read(common::ws("examples/druid/pod-templates/base.yaml")).expect("read");
    assert!(
        deployed == example,
        "deploy/overlays/druid/base.yaml differs from examples/druid/pod-templates/base.yaml: \
         copy the example over it"
    );
}

// The Helm chart cannot be rendered here (no registry ships a helm binary: docs/deploy.md), so
// its untemplated parts are checked directly: the Role's rules and the default config.

const CHART: &str = "deploy/helm/taskpod";

#[test]
fn helm_chart_role_grants_exactly_the_calls_taskpod_makes() {
    let path = common::ws(&format!("{CHART}/templates/role.yaml"));
    let text = std::fs::read_to_string(&path).expect("read the chart's Role");
    let rules = &text[text.find("\nrules:").expect("the chart's Role has rules") + 1..];
    assert!(
        !rules.contains("{{"),
        "{}: the rules must stay untemplated (exactly deploy/rbac-calls.yaml)",
        path.display()
    );
    let role: Value = serde_yaml::from_str(rules).expect("rules are YAML");
    assert_eq!(
        granted(&role, CHART),
        calls(),
        "{CHART}: Role vs deploy/rbac-calls.yaml"
    );
}

#[test]
fn helm_chart_default_config_is_one_taskpod_loads() {
    let text = std::fs::read_to_string(common::ws(&format!("{CHART}/values.yaml")))
        .expect("read values.yaml");
    let values: Value = serde_yaml::from_str(&text).expect("values.yaml is YAML");
    let dir = tempfile::tempdir().expect("temp dir");
    // What templates/_helpers.tpl `taskpod.config` writes: the values' config with the release
    // namespace and the cache volume; the `files` beside it.
    let mut config = values["config"].clone();
    config["namespace"] = Value::from("taskpod");
    config["cacheDir"] = Value::from("/var/cache/taskpod");
    let file = dir.path().join("taskpod.yaml");
    std::fs::write(&file, serde_yaml::to_string(&config).expect("YAML")).expect("write");
    for (name, content) in values["files"].as_object().expect("files") {
        std::fs::write(dir.path().join(name), content.as_str().expect("string")).expect("write");
    }
    let config = Config::load(&file)
        .unwrap_or_else(|e| panic!("{CHART}/values.yaml: taskpod rejects `config`: {e}"));
    Renderer::new(config, common::runtime())
        .unwrap_or_else(|e| panic!("{CHART}/values.yaml: the adapters do not load: {e}"));
    let base = std::fs::read_to_string(common::ws("deploy/base/config/pod-template.yaml"))
        .expect("read the base PodTemplate");
    let chart = values["files"]["pod-template.yaml"]
        .as_str()
        .expect("pod-template.yaml");
    let strip = |t: &str| -> Value { serde_yaml::from_str(t).expect("PodTemplate YAML") };
    assert_eq!(
        strip(chart),
        strip(&base),
        "the chart's default PodTemplate and deploy/base/config/pod-template.yaml differ"
    );
}
