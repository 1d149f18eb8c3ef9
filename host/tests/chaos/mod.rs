//! Shared harness of the crash-safety (R1) and fault-tolerance (R2) tests: the simulated cluster
//! in-process (it outlives every host), the real `taskpod serve` binary as a child process on a
//! store file, task submission over HTTP that survives the host being killed, SIGKILL at seeded
//! random points with a restart each time, and the end checks (every acknowledged task terminal
//! with its expected outcome, no Job created twice).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use taskpod::api::TaskView;
use taskpod::client::{Client, ListFilter};
use taskpod::store::{ReasonCode, TaskState};
use taskpod_sim::controllers::behavior::Behavior;
use taskpod_sim::{ControllerConfig, Sim, SimOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

/// Pods finish quickly: ~100 ms of run time; type `fail` exits 3.
const BEHAVIOR: &str = r#"
default:
  runSeconds: 0.1
  logs: ["hello from the task", "done"]
rules:
  - match: { labels: { taskpod.dev/type: fail } }
    then: { runSeconds: 0.1, exitCode: 3, logs: ["about to fail"] }
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

/// The instance label of the hosts under test.
pub const INSTANCE: &str = "chaos";

/// The seed of this run: `TASKPOD_CHAOS_SEED` when set (to replay a failure), else random.
pub fn seed() -> u64 {
    let seed = std::env::var("TASKPOD_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("chaos seed: {seed} (replay with TASKPOD_CHAOS_SEED={seed})");
    seed
}

/// The seeded generator of a run.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// The sim, the files the host uses, and the host's log (stderr of every run, appended).
pub struct Cluster {
    pub sim: Sim,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub kubeconfig: PathBuf,
    pub store: PathBuf,
    pub host_log: PathBuf,
    starts: u32,
}

impl Cluster {
    /// Starts the sim and writes the config (`store:` set in it) and the kubeconfig.
    pub async fn start(capacity: u32) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("template.yaml"), TEMPLATE).expect("template");
        let store = dir.path().join("tasks.db");
        let config = dir.path().join("taskpod.yaml");
        std::fs::write(
            &config,
            format!(
                "namespace: default\ninstance: {INSTANCE}\nstore: {store}\ncacheDir: {cache}\n\
                 adapters:\n  - name: tpl\n    component: builtin:pod-template\n    templates:\n      base: template.yaml\n\
                 routing:\n  default: tpl\n\
                 runner:\n  capacity: {capacity}\n  k8sJobLaunchTimeout: 2m\n",
                store = store.display(),
                cache = dir.path().join("cache").display(),
            ),
        )
        .expect("config");
        let controllers = ControllerConfig {
            behavior: Behavior::from_yaml_str(BEHAVIOR, "chaos tests").expect("behaviour"),
            ..ControllerConfig::default()
        };
        let sim = Sim::start(SimOptions {
            controllers,
            ..SimOptions::default()
        })
        .await
        .expect("sim");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, sim.kubeconfig_yaml("default")).expect("kubeconfig");
        let host_log = dir.path().join("host.log");
        Cluster {
            sim,
            dir,
            config,
            kubeconfig,
            store,
            host_log,
            starts: 0,
        }
    }

    /// Starts `taskpod serve` on the config (the store path comes from the config's `store`
    /// key) without waiting for it.
    pub fn spawn_host(&mut self) -> Child {
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.host_log)
            .expect("host log");
        use std::io::Write;
        writeln!(&log, "==== host start {} ====", self.starts).expect("host log");
        Command::new(env!("CARGO_BIN_EXE_taskpod"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env("TASKPOD_LOG", "warn")
            .env_remove("TASKPOD_STORE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn taskpod serve")
    }

    /// Starts `taskpod serve` and waits (bounded) for its listening line.
    pub async fn start_host(&mut self) -> Host {
        let mut child = self.spawn_host();
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "taskpod serve did not listen within 60 s; {}",
                    self.log_tail()
                )
            })
            .expect("read stdout");
        let Some(line) = line else {
            let status = child.wait().await.expect("wait");
            panic!(
                "taskpod serve exited ({status}) before listening; {}",
                self.log_tail()
            );
        };
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim()
            .to_owned();
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Host {
            client: Client::new(&url).expect("client"),
            url,
            child,
        }
    }

    /// The last lines of the hosts' stderr (for failure messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.host_log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!("host log tail:\n{}", lines[from..].join("\n"))
    }
}

/// One `taskpod serve` child process.
pub struct Host {
    pub child: Child,
    pub url: String,
    pub client: Client,
}

impl Host {
    /// SIGKILL, then reap.
    pub async fn kill(self) {
        sigkill(self.child).await;
    }

    /// Waits (bounded) until `/readyz` says ready.
    pub async fn wait_ready(&self, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Ok(true)) = timeout(Duration::from_secs(2), self.client.ready()).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// SIGKILL a host process (`Child::start_kill` sends SIGKILL on Unix), then reap it.
pub async fn sigkill(mut child: Child) {
    child.start_kill().expect("SIGKILL taskpod serve");
    let _ = timeout(Duration::from_secs(10), child.wait()).await;
}

/// What a task should end as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Succeeded, exit code 0.
    Success,
    /// Failed with reason `exit-code` and exit code 3.
    ExitCode3,
}

/// The tasks of a run: `n` tasks, every 7th one failing with exit code 3.
pub fn plan(n: usize) -> Vec<(String, Expect)> {
    (0..n)
        .map(|i| {
            let expect = if i % 7 == 3 {
                Expect::ExitCode3
            } else {
                Expect::Success
            };
            (format!("chaos-{i:04}"), expect)
        })
        .collect()
}

fn document(id: &str, expect: Expect) -> String {
    let kind = match expect {
        Expect::Success => "index",
        Expect::ExitCode3 => "fail",
    };
    format!(r#"{{"id": "{id}", "type": "{kind}", "payload": {{"dataSource": "wiki"}}}}"#)
}

/// Submits every task of `plan` over HTTP to whichever host `server` currently names, with
/// `workers` in parallel and a pause of `pace` between a worker's tasks. A submission that fails
/// (host killed, connection refused) is retried with the identical document until the API
/// acknowledges it. Returns the acknowledged ids (all of them, or the run panics on timeout).
pub async fn submit_all(
    plan: Arc<Vec<(String, Expect)>>,
    server: watch::Receiver<Option<Client>>,
    workers: usize,
    pace: Duration,
    within: Duration,
) -> BTreeSet<String> {
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = Instant::now() + within;
    let mut handles = Vec::new();
    for _ in 0..workers {
        let plan = Arc::clone(&plan);
        let acked = Arc::clone(&acked);
        let next = Arc::clone(&next);
        let mut server = server.clone();
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some((id, expect)) = plan.get(i) else {
                    return;
                };
                let doc = document(id, *expect);
                loop {
                    assert!(
                        Instant::now() < deadline,
                        "task {id} not acknowledged within {within:?}"
                    );
                    let client = server.borrow_and_update().clone();
                    let Some(client) = client else {
                        let _ = timeout(Duration::from_millis(200), server.changed()).await;
                        continue;
                    };
                    match timeout(Duration::from_secs(5), client.submit(&doc)).await {
                        Ok(Ok(view)) => {
                            assert_eq!(&view.task.id, id);
                            acked.lock().unwrap().insert(id.clone());
                            break;
                        }
                        Ok(Err(taskpod::client::ClientError::Api {
                            status, message, ..
                        })) if status < 500 => {
                            panic!("task {id} refused with {status}: {message}")
                        }
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                tokio::time::sleep(pace).await;
            }
        }));
    }
    for handle in handles {
        handle.await.expect("submitter");
    }
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

/// Every task the host knows, by id (all pages of `GET /v1/tasks`).
pub async fn list_all(client: &Client) -> BTreeMap<String, TaskView> {
    let mut out = BTreeMap::new();
    let mut after = None;
    loop {
        let filter = ListFilter {
            after: after.clone(),
            limit: Some(500),
            ..ListFilter::default()
        };
        let page = timeout(Duration::from_secs(10), client.list(&filter))
            .await
            .expect("list in time")
            .expect("list");
        for task in page.tasks {
            out.insert(task.id.clone(), task);
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return out,
        }
    }
}

/// Waits (at most `secs`) until every task of `plan` is terminal on `host`; returns the views.
/// Panics naming the tasks still unfinished.
pub async fn wait_all_terminal(
    cluster: &Cluster,
    host: &Host,
    plan: &[(String, Expect)],
    secs: u64,
) -> BTreeMap<String, TaskView> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let tasks = list_all(&host.client).await;
        let open: Vec<String> = plan
            .iter()
            .filter(|(id, _)| !tasks.get(id).is_some_and(|t| t.state.is_terminal()))
            .map(|(id, _)| {
                format!(
                    "{id} ({})",
                    tasks
                        .get(id)
                        .map(|t| t.state.to_string())
                        .unwrap_or_else(|| "LOST".to_owned())
                )
            })
            .collect();
        if open.is_empty() {
            return tasks;
        }
        assert!(
            Instant::now() < deadline,
            "{} tasks not terminal after {secs} s: {:?}; {}",
            open.len(),
            &open[..open.len().min(20)],
            cluster.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Checks every acknowledged task's outcome and that no Job was created twice.
pub fn check_outcomes(
    cluster: &Cluster,
    plan: &[(String, Expect)],
    acked: &BTreeSet<String>,
    tasks: &BTreeMap<String, TaskView>,
) {
    let counters = cluster.sim.counters();
    let mut wrong = Vec::new();
    for (id, expect) in plan {
        assert!(acked.contains(id), "task {id} was never acknowledged");
        let task = tasks.get(id).unwrap_or_else(|| panic!("task {id} lost"));
        let ok = match expect {
            Expect::Success => task.state == TaskState::Succeeded && task.exit_code == Some(0),
            Expect::ExitCode3 => {
                task.state == TaskState::Failed
                    && task.exit_code == Some(3)
                    && task.reason.as_deref() == Some(ReasonCode::ExitCode.as_str())
            }
        };
        if !ok {
            wrong.push(format!(
                "{id}: expected {expect:?}, got {} ({:?}: {:?}, exit {:?})",
                task.state, task.reason, task.message, task.exit_code
            ));
        }
        let job = task
            .job_name
            .as_deref()
            .unwrap_or_else(|| panic!("task {id} ended without a Job name: {task:?}"));
        let creates = counters.creates("Job", "default", job);
        assert_eq!(
            creates, 1,
            "Job {job} of task {id} was created {creates} times"
        );
    }
    assert!(
        wrong.is_empty(),
        "{} tasks ended wrongly: {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(20)]
    );
    assert_eq!(
        counters.max_creates_per_name("Job"),
        1,
        "some Job was created more than once"
    );
    assert_eq!(
        counters.distinct_creates("Job"),
        plan.len(),
        "one Job per task, no others"
    );
}

/// Checks every task's log (read over HTTP): the lines its pod wrote, each stored once.
pub async fn check_logs(host: &Host, plan: &[(String, Expect)]) {
    let mut wrong = Vec::new();
    for (id, expect) in plan {
        let mut log = Vec::new();
        timeout(
            Duration::from_secs(10),
            host.client.log(id, false, |chunk| {
                log.extend_from_slice(chunk);
                Ok(())
            }),
        )
        .await
        .expect("log in time")
        .expect("log");
        let text = String::from_utf8_lossy(&log);
        let lines: &[&str] = match expect {
            Expect::Success => &["hello from the task", "done"],
            Expect::ExitCode3 => &["about to fail"],
        };
        if lines.iter().any(|line| text.matches(line).count() != 1) {
            wrong.push(format!("{id}: {text:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} task logs lost or stored twice: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
}

/// Random delay in `[lo, hi)` milliseconds.
pub fn delay(rng: &mut StdRng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(rng.random_range(lo..hi))
}
