//! Every built-in adapter end to end: the real runner (store, adapters in their sandbox, the
//! Job contract, watches) against the in-process simulated cluster, each task run to a terminal
//! state. Druid tasks through pod-template, overlord-single (base pod from a file) and
//! overlord-multi (kubexit with a sidecar that never exits on its own, and native sidecars); a
//! payload that spills into a ConfigMap owned by the Job; a Teraslice execution (Job, worker
//! Deployment and Service; workers available as the task's progress, also through
//! `GET /v1/tasks/{id}`; companions deleted with the Job and on cancel); a Samza job of three containers, one failing once and restarted.

#[allow(dead_code)] // shared runner-test helpers; this suite uses the waits only
mod runner;

use runner::wait_state;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ::kube::api::{Api, DeleteParams, ListParams, PostParams};
use axum::body::Body;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use taskpod::api::{self, ApiState};
use taskpod::config::Config;
use taskpod::runner::{CancelMode, Runner};
use taskpod::store::{Store, StoreOptions, TaskRecord, TaskState};
use taskpod::task::SubmittedTask;
use taskpod_sim::controllers::behavior::Behavior;
use taskpod_sim::controllers::{ControllerConfig, NodeSpec};
use taskpod_sim::{Sim, SimOptions};
use tower::ServiceExt;

/// What the simulated containers do: peons run half a second; Druid's log-shipping sidecar and
/// Teraslice's workers never exit on their own; the Teraslice execution controller runs long
/// enough for its workers to become available; SamzaContainer 1 fails once (each SamzaContainer
/// logs lines of its own).
const BEHAVIOR: &str = r#"
default:
  runSeconds: 0.5
  logs: ["task starting", "task done"]
rules:
  - match: { container: fluent-bit }
    then: { forever: true }
  - match: { labels: { app.kubernetes.io/component: worker } }
    then: { forever: true }
  - match: { labels: { app.kubernetes.io/component: execution_controller } }
    then: { runSeconds: 3, logs: ["execution controller up", "execution done"] }
  - match: { image: "*/retry-samza:*" }
    then: { runSeconds: 1.0, exitCode: 1, failTimes: 1, logs: ["same line each run", "same end each run"] }
  - match: { labels: { batch.kubernetes.io/job-completion-index: "0" } }
    then: { logs: ["samza 0 up", "samza 0 done"] }
  - match: { labels: { batch.kubernetes.io/job-completion-index: "1" } }
    then: { runSeconds: 0.3, exitCode: 1, failTimes: 1, logs: ["samza 1 up (fails on its first run)", "samza 1 done"] }
  - match: { labels: { batch.kubernetes.io/job-completion-index: "2" } }
    then: { logs: ["samza 2 up and running with a longer first line", "samza 2 done"] }
"#;

/// The simulated cluster, a store and the runner for one configuration.
struct Env {
    sim: Sim,
    _dir: tempfile::TempDir,
    store: Store,
    runner: Runner,
    namespace: String,
}

impl Env {
    /// Writes `config` (with `files` beside it) into a temporary directory, starts a sim whose
    /// nodes carry the labels the examples select on, and a runner on a fresh store.
    async fn start(config: &str, files: &[(&str, &str)]) -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            let path = dir.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("dir");
            }
            std::fs::write(path, text).expect("write file");
        }
        // This test's instance name and cache directory replace the example's own.
        let own: Vec<&str> = config
            .lines()
            .filter(|l| !l.starts_with("instance:") && !l.starts_with("cacheDir:"))
            .collect();
        let text = format!(
            "{}\ninstance: e2e\ncacheDir: {}\n",
            own.join("\n"),
            dir.path().join("cache").display()
        );
        let path = dir.path().join("taskpod.yaml");
        std::fs::write(&path, text).expect("config");
        let config = Config::load(&path).expect("valid config");
        let namespace = config.namespace.clone();
        let nodes = (1..=3)
            .map(|i| {
                NodeSpec::new(format!("sim-node-{i}"), 16_000, 64 << 30)
                    .with_label("zone", "west")
                    .with_label("disk", "ssd")
                    .with_label("disktype", "ssd")
                    .with_label("node-pool", "controllers")
            })
            .collect();
        let sim = Sim::start(SimOptions {
            controllers: ControllerConfig {
                behavior: Behavior::from_yaml_str(BEHAVIOR, "e2e").expect("behaviour"),
                nodes,
                ..ControllerConfig::default()
            },
            ..SimOptions::default()
        })
        .await
        .expect("sim");
        if namespace != "default" {
            let ns: Namespace = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}
            }))
            .expect("namespace");
            Api::<Namespace>::all(sim.client())
                .create(&PostParams::default(), &ns)
                .await
                .expect("create namespace");
        }
        let store =
            Store::open(dir.path().join("tasks.db"), StoreOptions::default()).expect("store");
        let runner = Runner::start(Arc::new(config), store.clone(), sim.client())
            .await
            .expect("runner starts");
        let env = Env {
            sim,
            _dir: dir,
            store,
            runner,
            namespace,
        };
        eventually(10, "runner ready", || async { env.runner.is_ready() }).await;
        env
    }

    fn api<K>(&self) -> Api<K>
    where
        K: ::kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.sim.client(), &self.namespace)
    }

    async fn submit(&self, task: SubmittedTask) -> String {
        let id = task.id.clone();
        self.runner.submit(task).await.expect("submit");
        id
    }

    /// The Job of task `id`, waiting (at most 10 s) for the launch to create it.
    async fn job(&self, id: &str) -> Job {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let record = self.store.get(id).await.expect("get").expect("task");
            if let Some(name) = &record.job_name
                && let Some(job) = self.api::<Job>().get_opt(name).await.expect("get Job")
            {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no Job for task {id}: {} {:?}",
                record.state,
                record.reason
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The pods of Job `job`.
    async fn pods(&self, job: &str) -> Vec<Pod> {
        self.api::<Pod>()
            .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
            .await
            .expect("list pods")
            .items
    }

    async fn stop(self) {
        self.runner.shutdown().await;
        self.sim.shutdown().await;
    }
}

async fn wait_terminal(store: &Store, id: &str) -> TaskRecord {
    runner::wait_terminal(store, id, 30).await
}

/// Waits (at most `secs`) until `check` returns true, polling every 50 ms.
async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not true after {secs} s");
}

fn example(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The example Druid task with another id.
fn druid_task(id: &str) -> SubmittedTask {
    let mut task: serde_json::Value =
        serde_json::from_str(&example("druid/tasks/index-parallel.json")).expect("task JSON");
    task["id"] = serde_json::json!(id);
    SubmittedTask::parse(&task.to_string()).expect("valid Druid task")
}

fn succeeded(record: &TaskRecord) {
    assert_eq!(
        record.state,
        TaskState::Succeeded,
        "{:?} {:?}",
        record.reason,
        record.exit_code
    );
    assert_eq!(record.exit_code, Some(0));
}

/// The terminated state of container `name` in `pod`, as (exit code, reason).
fn terminated(pod: &Pod, name: &str) -> Option<(i32, String)> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .find(|c| c.name == name)?
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| (t.exit_code, t.reason.clone().unwrap_or_default()))
}

const POD_TEMPLATE: &str = "namespace: druid
adapters:
  - name: pod-template
    component: builtin:pod-template
    templates:
      base: pod-templates/base.yaml
routing:
  default: pod-template
runner:
  taskCleanupDelay: PT1H";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn druid_task_through_pod_template_runs_to_completion() {
    let base = example("druid/pod-templates/base.yaml");
    let env = Env::start(POD_TEMPLATE, &[("pod-templates/base.yaml", &base)]).await;
    let id = env.submit(druid_task("pod-template-1")).await;
    let done = wait_terminal(&env.store, &id).await;
    succeeded(&done);
    let log = env.store.read_log(&id, 0, 1 << 20).await.expect("log");
    assert!(
        String::from_utf8_lossy(&log.data).contains("task done"),
        "the peon's log is kept"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_too_big_for_the_pod_spills_into_a_configmap_owned_by_the_job() {
    let base = example("druid/pod-templates/base.yaml");
    let env = Env::start(POD_TEMPLATE, &[("pod-templates/base.yaml", &base)]).await;
    // About 400 KB of hex digits: still over the inline limit after gzip and base64.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let noise: String = (0..50_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{x:016x}")
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut task: serde_json::Value =
        serde_json::from_str(&example("druid/tasks/index-parallel.json")).expect("task JSON");
    task["id"] = serde_json::json!("big-payload-1");
    task["context"]["noise"] = serde_json::json!(noise);
    let id = env
        .submit(SubmittedTask::parse(&task.to_string()).expect("valid task"))
        .await;
    wait_state(&env.store, &id, 30, |s| s != TaskState::Pending).await;
    let job = env.job(&id).await;
    let job_uid = job.metadata.uid.clone().expect("uid");
    // Companions are created right after the Job.
    let params = ListParams::default().labels(&format!(
        "taskpod.dev/task={}",
        job.metadata.name.clone().expect("name")
    ));
    eventually(10, "the payload ConfigMap exists", || async {
        !env.api::<ConfigMap>()
            .list(&params)
            .await
            .expect("list ConfigMaps")
            .items
            .is_empty()
    })
    .await;
    let config_maps = env
        .api::<ConfigMap>()
        .list(&params)
        .await
        .expect("list ConfigMaps")
        .items;
    assert_eq!(config_maps.len(), 1, "one payload ConfigMap");
    let owner = &config_maps[0]
        .metadata
        .owner_references
        .as_ref()
        .expect("owned")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Job", job_uid.as_str())
    );
    let entries = config_maps[0].data.as_ref().map_or(0, |d| d.len())
        + config_maps[0].binary_data.as_ref().map_or(0, |d| d.len());
    assert!(entries > 0, "the ConfigMap carries the payload");
    let done = wait_terminal(&env.store, &id).await;
    succeeded(&done);
    env.stop().await;
}

const OVERLORD: &str = "namespace: druid
adapters:
  - name: overlord
    component: builtin:ADAPTER
    basePod: overlord-pod.yaml
    config:
      primaryContainerName: druid-overlord
      javaOptsArray: [\"-Xmx1g\"]
      SIDECARS
routing:
  default: overlord
runner:
  taskCleanupDelay: PT1H
# Druid runs peons as the overlord's service account; the policy must allow it.
policy:
  serviceAccounts: [default, druid-overlord]";

async fn overlord_env(adapter: &str, sidecars: &str) -> Env {
    let pod = example("druid/overlord-pod.yaml");
    let config = OVERLORD
        .replace("ADAPTER", adapter)
        .replace("SIDECARS", sidecars);
    Env::start(&config, &[("overlord-pod.yaml", &pod)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn druid_task_through_overlord_single_runs_to_completion() {
    let env = overlord_env("overlord-single", "").await;
    let id = env.submit(druid_task("single-1")).await;
    let done = wait_terminal(&env.store, &id).await;
    succeeded(&done);
    let job = env.job(&id).await;
    let containers: Vec<String> = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    assert_eq!(
        containers,
        ["main"],
        "only the peon, from the base pod's file"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlord_multi_with_kubexit_stops_a_sidecar_that_never_exits() {
    let env = overlord_env("overlord-multi", "sidecars: kubexit").await;
    let id = env.submit(druid_task("multi-kubexit-1")).await;
    let done = wait_terminal(&env.store, &id).await;
    succeeded(&done);
    // The log-shipping sidecar runs forever on its own; kubexit ended it after the peon.
    let job = env.job(&id).await;
    let pods = env.pods(&job.metadata.name.clone().expect("name")).await;
    assert_eq!(pods.len(), 1);
    let pod = &pods[0];
    assert_eq!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded")
    );
    assert_eq!(terminated(pod, "main").map(|t| t.0), Some(0));
    assert_eq!(
        terminated(pod, "fluent-bit").map(|t| t.0),
        Some(0),
        "stopped by kubexit, `|| true` makes it exit 0"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlord_multi_with_native_sidecars_runs_to_completion() {
    let env = overlord_env("overlord-multi", "sidecars: native").await;
    let id = env.submit(druid_task("multi-native-1")).await;
    let done = wait_terminal(&env.store, &id).await;
    succeeded(&done);
    let job = env.job(&id).await;
    let spec = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("pod spec");
    let sidecar = spec
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == "fluent-bit")
        .expect("fluent-bit is a native sidecar");
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    let pods = env.pods(&job.metadata.name.clone().expect("name")).await;
    assert!(
        terminated(&pods[0], "fluent-bit").is_some(),
        "the native sidecar was stopped when main ended"
    );
    env.stop().await;
}

const TERASLICE_CONFIG: &str = "runner:
  taskCleanupDelay: PT1H";

/// The Teraslice example configuration (its `runner:` section replaced for the test).
fn teraslice_config() -> String {
    let text = example("teraslice/taskpod.yaml");
    let cut = text.find("runner:").expect("runner section");
    format!("{}{TERASLICE_CONFIG}", &text[..cut])
}

fn teraslice_task(id: &str) -> SubmittedTask {
    let mut task: serde_json::Value =
        serde_json::from_str(&example("teraslice/tasks/data-generator.json")).expect("task JSON");
    task["id"] = serde_json::json!(id);
    task["payload"]["ex_id"] = serde_json::json!(id);
    SubmittedTask::parse(&task.to_string()).expect("valid Teraslice task")
}

/// The companions of Job `job` (by label), as (Deployments, Services).
async fn companions(env: &Env, job: &str) -> (Vec<Deployment>, Vec<Service>) {
    let params = ListParams::default().labels(&format!("taskpod.dev/task={job}"));
    let deployments = env
        .api::<Deployment>()
        .list(&params)
        .await
        .expect("list Deployments")
        .items;
    let services = env
        .api::<Service>()
        .list(&params)
        .await
        .expect("list Services")
        .items;
    (deployments, services)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teraslice_execution_runs_with_its_workers_and_its_companions_go_with_the_job() {
    let env = Env::start(&teraslice_config(), &[]).await;
    let id = env.submit(teraslice_task("ex-0001")).await;
    wait_state(&env.store, &id, 30, |s| s == TaskState::Running).await;
    let job = env.job(&id).await;
    let job_name = job.metadata.name.clone().expect("name");
    let job_uid = job.metadata.uid.clone().expect("uid");
    let (deployments, services) = companions(&env, &job_name).await;
    assert_eq!((deployments.len(), services.len()), (1, 1));
    for owners in [
        deployments[0].metadata.owner_references.clone(),
        services[0].metadata.owner_references.clone(),
    ] {
        let owner = &owners.expect("owned by the Job")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Job", job_uid.as_str())
        );
    }
    // The workers become available, and the task shows it while it runs.
    let workers = deployments[0].metadata.name.clone().expect("name");
    let want = format!("Deployment {workers}: 3/3 available");
    eventually(20, "3 workers available in the task's progress", || async {
        env.runner.progress(&id).as_deref() == Some(want.as_str())
    })
    .await;
    // The same through the HTTP API: GET /v1/tasks/{id} carries it as `progress`.
    let state = ApiState::new(env.runner.clone());
    let request = Request::builder()
        .method(Method::GET)
        .uri(format!("/v1/tasks/{id}"))
        .body(Body::empty())
        .expect("request");
    let response = api::router(state.clone())
        .oneshot(request)
        .await
        .expect("GET task");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON body");
    assert_eq!(body["progress"], serde_json::json!(want), "{body}");
    state.close_streams();
    let worker_pods = env
        .api::<Pod>()
        .list(&ListParams::default().labels("app.kubernetes.io/component=worker"))
        .await
        .expect("list workers")
        .items;
    assert_eq!(worker_pods.len(), 3);
    let done = wait_terminal(&env.store, &id).await;
    succeeded(&done);
    eventually(5, "no progress once the task ended", || async {
        env.runner.progress(&id).is_none()
    })
    .await;
    // Deleting the execution controller's Job removes the Deployment, its pods and the Service.
    env.api::<Job>()
        .delete(&job_name, &DeleteParams::background())
        .await
        .expect("delete Job");
    eventually(
        20,
        "companions and workers collected with the Job",
        || async {
            let (d, s) = companions(&env, &job_name).await;
            let workers = env
                .api::<Pod>()
                .list(&ListParams::default().labels("app.kubernetes.io/component=worker"))
                .await
                .expect("list workers")
                .items;
            d.is_empty() && s.is_empty() && workers.is_empty()
        },
    )
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_a_teraslice_execution_deletes_its_companions() {
    let env = Env::start(&teraslice_config(), &[]).await;
    let id = env.submit(teraslice_task("ex-cancel")).await;
    wait_state(&env.store, &id, 30, |s| s == TaskState::Running).await;
    let job_name = env.job(&id).await.metadata.name.expect("name");
    eventually(20, "workers available", || async {
        env.runner
            .progress(&id)
            .is_some_and(|p| p.ends_with("3/3 available"))
    })
    .await;
    // With the cluster's controllers (the garbage collector among them) paused, only taskpod's
    // own deletion can remove the companions.
    env.sim.controllers().pause();
    let canceled = env
        .runner
        .cancel(&id, CancelMode::Graceful)
        .await
        .expect("cancel");
    assert_eq!(canceled.state, TaskState::Canceled);
    let (deployments, services) = companions(&env, &job_name).await;
    assert!(
        deployments.is_empty() && services.is_empty(),
        "companions deleted on cancel: {} Deployments, {} Services",
        deployments.len(),
        services.len()
    );
    env.sim.controllers().resume();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samza_job_of_three_containers_restarts_a_failed_one_and_completes() {
    let config = example("samza/taskpod.yaml");
    let env = Env::start(&config, &[]).await;
    let task = SubmittedTask::from_properties(&example("samza/wikipedia-feed.properties"))
        .expect("Samza job config");
    let id = env.submit(task).await;
    let done = wait_terminal(&env.store, &id).await;
    succeeded(&done);
    let job = env.job(&id).await;
    let status = job.status.clone().expect("Job status");
    assert_eq!(status.completed_indexes.as_deref(), Some("0-2"));
    let pods = env.pods(&job.metadata.name.clone().expect("name")).await;
    assert_eq!(pods.len(), 3, "one pod per SamzaContainer, none replaced");
    let mut restarts: Vec<(String, i32)> = pods
        .iter()
        .map(|p| {
            let index = p.metadata.labels.as_ref().expect("labels")
                ["batch.kubernetes.io/job-completion-index"]
                .clone();
            let count = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map_or(0, |cs| cs[0].restart_count);
            (index, count)
        })
        .collect();
    restarts.sort();
    assert_eq!(
        restarts,
        [("0".into(), 0), ("1".into(), 1), ("2".into(), 0)],
        "container 1 failed once and was restarted in place"
    );
    // The stored log holds whole lines, whichever of the pods (and runs) it was read from.
    let log = env.store.read_log(&id, 0, 1 << 20).await.expect("log");
    let text = String::from_utf8_lossy(&log.data).to_string();
    let known = [
        "samza 0 up",
        "samza 0 done",
        "samza 1 up (fails on its first run)",
        "samza 1 done",
        "samza 2 up and running with a longer first line",
        "samza 2 done",
    ];
    assert!(text.contains(" done"), "{text:?}");
    for line in text.lines().filter(|l| !l.is_empty()) {
        assert!(known.contains(&line), "a cut line {line:?} in {text:?}");
    }
    env.stop().await;
}

/// Runs one SamzaContainer whose first run fails after printing exactly what the second
/// prints, with `config`; asserts that both runs' logs are stored once, in order, and that the
/// container was restarted in place (one pod). Returns the environment for more checks.
async fn run_a_container_restarted_in_place(config: &str) -> Env {
    let env = Env::start(config, &[]).await;
    let properties = example("samza/wikipedia-feed.properties")
        .replace("kubernetes.pod.count=3", "kubernetes.pod.count=1")
        .replace(
            "registry.example.com/hello-samza:0.9.1",
            "registry.example.com/retry-samza:1",
        );
    let task = SubmittedTask::from_properties(&properties).expect("Samza job config");
    let id = env.submit(task).await;
    let done = wait_terminal(&env.store, &id).await;
    succeeded(&done);
    let job = env.job(&id).await;
    let pods = env.pods(&job.metadata.name.clone().expect("name")).await;
    assert_eq!(pods.len(), 1, "restarted in place, not replaced");
    let log = env.store.read_log(&id, 0, 1 << 20).await.expect("log");
    assert_eq!(
        String::from_utf8_lossy(&log.data),
        "same line each run\nsame end each run\nsame line each run\nsame end each run\n"
    );
    env
}

/// Each run's log is stored once, in order: the second run's is not taken for the first's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_restarted_in_place_keeps_the_log_of_each_run_even_when_they_match() {
    let env = run_a_container_restarted_in_place(&example("samza/taskpod.yaml")).await;
    env.stop().await;
}

/// The same container, with no log follower at all (`maxLogFollowers: 0`): nothing streamed
/// its first run, so when the task ends the runner reads that run back as the kubelet keeps it
/// (`previous=true`) and stores it before the final run's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_no_follower_caught_is_read_back_from_the_previous_log() {
    let config = example("samza/taskpod.yaml")
        .replace("  capacity: 20", "  capacity: 20\n  maxLogFollowers: 0");
    assert!(config.contains("maxLogFollowers: 0"), "{config}");
    let env = run_a_container_restarted_in_place(&config).await;
    env.stop().await;
}
