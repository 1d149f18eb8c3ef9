//! Shared set-up of the runner tests: an in-process simulated cluster with behaviour rules keyed
//! by task type, a configuration using the built-in pod-template adapter, a store in a temporary
//! directory, and helpers that wait for a task's end through store events (bounded).

use std::sync::Arc;
use std::time::Duration;

use taskpod::config::Config;
use taskpod::runner::Runner;
use taskpod::store::{Store, StoreOptions, TaskRecord, TaskState};
use taskpod::task::SubmittedTask;
use taskpod_sim::controllers::behavior::Behavior;
use taskpod_sim::{ControllerConfig, Sim, SimOptions};

/// Behaviour of the simulated containers, by task type (`taskpod.dev/type` label).
pub const BEHAVIOR: &str = r#"
default:
  runSeconds: 0.3
  logs: ["hello from the task", "done"]
rules:
  - match: { labels: { taskpod.dev/type: fail } }
    then: { runSeconds: 0.2, exitCode: 3, logs: ["about to fail"] }
  - match: { labels: { taskpod.dev/type: stuck } }
    then: { neverSchedule: true }
  - match: { labels: { taskpod.dev/type: long } }
    then: { forever: true, logLines: 100, logIntervalSeconds: 0.2 }
  - match: { labels: { taskpod.dev/type: oom } }
    then: { runSeconds: 0.2, oomKilled: true }
"#;

const TEMPLATE: &str = r#"
apiVersion: v1
kind: PodTemplate
template:
  spec:
    containers:
      - name: peon
        image: example.com/task:1
        command: ["run-task"]
    restartPolicy: Never
"#;

/// A test environment: the sim, a temporary directory, the config.
pub struct Env {
    pub sim: Sim,
    pub dir: tempfile::TempDir,
    pub config: Arc<Config>,
}

impl Env {
    /// Starts a sim and writes the config; `runner` is YAML for the `runner:` section.
    pub async fn start(runner: &str) -> Env {
        Env::start_with(runner, |_| {}).await
    }

    /// As [`Env::start`], letting the caller adjust the sim's controllers.
    pub async fn start_with(runner: &str, adjust: impl FnOnce(&mut ControllerConfig)) -> Env {
        let config = format!(
            "adapters:\n  - name: tpl\n    component: builtin:pod-template\n    templates:\n      base: template.yaml\nrouting:\n  default: tpl\nrunner:\n{runner}\n",
            runner = runner
                .lines()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        Env::start_config(&config, adjust).await
    }

    /// Starts a sim and writes a config made of `namespace: default`, `instance: test`, a
    /// private `cacheDir` and `rest` (YAML: adapters, routing, runner, policy …; `template.yaml`
    /// in the config's directory is the pod template of [`Env::start`]).
    pub async fn start_config(rest: &str, adjust: impl FnOnce(&mut ControllerConfig)) -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("template.yaml"), TEMPLATE).expect("template");
        let config_text = format!(
            "namespace: default\ninstance: test\ncacheDir: {cache}\n{rest}",
            cache = dir.path().join("cache").display(),
        );
        let path = dir.path().join("taskpod.yaml");
        std::fs::write(&path, config_text).expect("config");
        let config = Config::load(&path).expect("valid test config");
        let mut controllers = ControllerConfig {
            behavior: Behavior::from_yaml_str(BEHAVIOR, "runner tests").expect("behaviour"),
            ..ControllerConfig::default()
        };
        adjust(&mut controllers);
        let sim = Sim::start(SimOptions {
            controllers,
            ..SimOptions::default()
        })
        .await
        .expect("sim");
        Env {
            sim,
            dir,
            config: Arc::new(config),
        }
    }

    /// Opens (or reopens) the store of this environment.
    pub fn store(&self) -> Store {
        Store::open(self.dir.path().join("tasks.db"), StoreOptions::default()).expect("store")
    }

    /// Starts a runner on the store and waits until it is ready.
    pub async fn runner(&self, store: Store) -> Runner {
        let runner = Runner::start(Arc::clone(&self.config), store, self.sim.client())
            .await
            .expect("runner starts");
        for _ in 0..200 {
            if runner.is_ready() {
                return runner;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("runner not ready after 5 s");
    }
}

/// A task of type `kind` with id `id`.
pub fn task(id: &str, kind: &str) -> SubmittedTask {
    SubmittedTask::parse(&format!(
        r#"{{"id": "{id}", "type": "{kind}", "payload": {{"dataSource": "wiki"}}}}"#
    ))
    .expect("valid task")
}

/// Waits (at most `secs`) until task `id` is terminal and returns it.
pub async fn wait_terminal(store: &Store, id: &str, secs: u64) -> TaskRecord {
    wait_state(store, id, secs, |s| s.is_terminal()).await
}

/// Waits (at most `secs`) until task `id`'s state satisfies `done`.
pub async fn wait_state(
    store: &Store,
    id: &str,
    secs: u64,
    done: impl Fn(TaskState) -> bool,
) -> TaskRecord {
    let mut events = store.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let record = store.get(id).await.expect("get").expect("task exists");
        if done(record.state) {
            return record;
        }
        let now = tokio::time::Instant::now();
        assert!(
            now < deadline,
            "task {id} still {} after {secs} s: {:?}",
            record.state,
            record.reason
        );
        let _ = tokio::time::timeout(
            (deadline - now).min(Duration::from_millis(200)),
            events.recv(),
        )
        .await;
    }
}

/// Waits (at most `secs`) until `check` returns true, polling every 50 ms.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
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
