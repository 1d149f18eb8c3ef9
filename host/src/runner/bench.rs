//! `taskpod bench runner`: the runner's throughput, footprint, reaction time and restart time,
//! in one run against the in-process simulated cluster.
//!
//! - P2: submit → Job created, as tasks per second and as a ratio to a bare kube-client loop
//!   creating the identical Jobs with the same concurrency (API server only, no controllers),
//!   in three alternating rounds per side, each side's median round reported. A runner round
//!   lasts until its Jobs' `Adapted` Events are written too. A third side, alternating with
//!   them, is the same bare client making only a launch's requests to the API server: the Job,
//!   then its `Adapted` Event through the host's Event writer, while the runner's Job watch
//!   (kube-runtime's watcher, the runner's label selector) receives every Job. Every launch
//!   makes those requests (issues 4 and 8), so that rate is the most a runner can reach here,
//!   before its store, adapter and queue.
//! - P3: resident memory and thread count of the host with `jobs` running Jobs tracked, against
//!   the same figures before the runner started. For P3–P5 the simulated cluster runs in a child
//!   process (`taskpod sim --controllers-only`), as a real API server would, so that its objects
//!   are not counted as the host's; its own footprint is reported beside. They run before P2, so
//!   that what P2 allocated is not counted either.
//! - P4: p50/p99 from a pod's termination (the status write a kubelet would make) to the task's
//!   terminal state committed in the store, while the other Jobs keep running.
//! - P5: restart-to-reconciled: a new runner on the same store until restore is done and both
//!   watches are synced, with every Job re-attached.
//!
//! P2 also reports the CPU time the whole process (client, sim and, for the runner, adapter and
//! store) spent per task, which is where the ratio comes from on a machine whose cores are
//! shared by all of them.
//!
//! P3–P5 run the sim in controllers-only mode: the Job controller creates pods, and the
//! benchmark plays the kubelet by writing pod status, so the figures are the runner's and not a
//! simulated scheduler's.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ::kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use ::kube::runtime::watcher;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use taskpod_sim::{ControllerConfig, ControllerMode, Sim, SimOptions};

use super::{Runner, RunnerError, RunnerOptions};
use crate::config::Config;
use crate::store::{Store, StoreEvent, StoreOptions, TaskState};
use crate::task::SubmittedTask;

const TEMPLATE: &str = "apiVersion: v1\nkind: PodTemplate\ntemplate:\n  spec:\n    containers:\n      - name: main\n        image: example.com/task:1\n    restartPolicy: Never\n";

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunnerBenchError {
    /// Setting up (temporary files, sim, store) failed.
    #[error("benchmark set-up: {0}")]
    Setup(String),
    /// The runner failed.
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// A Kubernetes request of the benchmark itself failed.
    #[error("benchmark Kubernetes request: {0}")]
    Kube(String),
    /// The runner did not reach the expected state in time.
    #[error("timed out: {0}")]
    Timeout(String),
}

type Result<T, E = RunnerBenchError> = std::result::Result<T, E>;

/// The figures of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerReport {
    /// Tasks in the throughput phase.
    pub throughput_tasks: usize,
    /// Bare kube-client creates per second.
    pub baseline_per_s: f64,
    /// Submit → Job created, tasks per second.
    pub runner_per_s: f64,
    /// CPU time of the process per Job created by the bare client (client and sim).
    pub baseline_cpu_per_task: Duration,
    /// CPU time of the process per task launched by the runner (runner, store, adapter, sim).
    pub runner_cpu_per_task: Duration,
    /// Jobs per second of the same bare client making a launch's requests to the API server
    /// (the Job and its `Adapted` Event) while the runner's Job watch receives every Job: the
    /// most a runner could reach here before its store, adapter and queue.
    pub watched_per_s: f64,
    /// CPU time of the process per Job on that side (client, sim, Event writer and watch).
    pub watched_cpu_per_task: Duration,
    /// Each P2 round's rates: (bare client, a launch's Kubernetes requests alone, runner).
    pub rounds: Vec<(f64, f64, f64)>,
    /// Store writes (submits and transitions) during the runner's throughput phase.
    pub store_writes: u64,
    /// Transactions committed for them (group commit: writes per commit is the batch size).
    pub store_commits: u64,
    /// Running Jobs tracked in P3–P5.
    pub jobs: usize,
    /// RSS before the Jobs existed, bytes.
    pub rss_before: u64,
    /// RSS with a tenth of `jobs` running Jobs tracked, bytes.
    pub rss_tenth: u64,
    /// RSS with `jobs` running Jobs tracked, bytes.
    pub rss_after: u64,
    /// Threads before.
    pub threads_before: usize,
    /// Threads with a tenth of `jobs` running Jobs tracked.
    pub threads_tenth: usize,
    /// Threads with `jobs` running Jobs tracked.
    pub threads_after: usize,
    /// RSS of the simulated cluster's process holding the Jobs and pods, bytes.
    pub sim_rss: u64,
    /// Pod terminations measured.
    pub terminations: usize,
    /// Termination → stored, median.
    pub term_p50: Duration,
    /// Termination → stored, 99th percentile.
    pub term_p99: Duration,
    /// Restart → reconciled.
    pub restart: Duration,
}

impl fmt::Display for RunnerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "taskpod bench runner")?;
        writeln!(
            f,
            "P2 throughput ({} tasks): runner {:.0} tasks/s, bare client {:.0} Jobs/s, ratio {:.0} %  (goal >= 80 % and >= 1000/s)",
            self.throughput_tasks,
            self.runner_per_s,
            self.baseline_per_s,
            100.0 * self.runner_per_s / self.baseline_per_s.max(f64::MIN_POSITIVE)
        )?;
        writeln!(
            f,
            "   CPU per task (whole process: client, sim and, for the runner, adapter and store): runner {:.0} us, bare client {:.0} us",
            self.runner_cpu_per_task.as_secs_f64() * 1e6,
            self.baseline_cpu_per_task.as_secs_f64() * 1e6
        )?;
        let rounds: Vec<String> = self
            .rounds
            .iter()
            .map(|(b, w, r)| format!("{b:.0} / {w:.0} / {r:.0}"))
            .collect();
        writeln!(
            f,
            "   rounds (bare client / a launch's Kubernetes requests alone / runner, per second; the medians are reported): {}",
            rounds.join(", ")
        )?;
        writeln!(
            f,
            "   store during the runner's phase: {} writes in {} commits ({:.1} writes per commit)",
            self.store_writes,
            self.store_commits,
            self.store_writes as f64 / self.store_commits.max(1) as f64
        )?;
        writeln!(
            f,
            "   a launch's Kubernetes requests alone (bare client: Job + Adapted Event, under the runner's Job watch): {:.0} Jobs/s = {:.0} % of the bare client (CPU {:.0} us per Job): the most a runner can reach here before its store and adapter",
            self.watched_per_s,
            100.0 * self.watched_per_s / self.baseline_per_s.max(f64::MIN_POSITIVE),
            self.watched_cpu_per_task.as_secs_f64() * 1e6
        )?;
        writeln!(
            f,
            "P3 host footprint with {} running Jobs tracked: RSS {:.0} MB, threads {}; with {}: RSS {:.0} MB, threads {}; before the runner started: RSS {:.0} MB, threads {}  (goal <= 200 MB, threads independent of Jobs); the sim's process holding them: {:.0} MB",
            self.jobs,
            self.rss_after as f64 / 1e6,
            self.threads_after,
            (self.jobs / 10).max(1),
            self.rss_tenth as f64 / 1e6,
            self.threads_tenth,
            self.rss_before as f64 / 1e6,
            self.threads_before,
            self.sim_rss as f64 / 1e6
        )?;
        writeln!(
            f,
            "P4 pod termination -> task state stored ({} pods, {} running): p50 {:.1} ms, p99 {:.1} ms  (goal p99 <= 50 ms)",
            self.terminations,
            self.jobs,
            self.term_p50.as_secs_f64() * 1e3,
            self.term_p99.as_secs_f64() * 1e3
        )?;
        writeln!(
            f,
            "P5 restart -> reconciled with {} Jobs in flight: {:.2} s  (goal <= 10 s)",
            self.jobs.saturating_sub(self.terminations),
            self.restart.as_secs_f64()
        )
    }
}

fn setup<E: fmt::Display>(e: E) -> RunnerBenchError {
    RunnerBenchError::Setup(e.to_string())
}

fn kube_err<E: fmt::Display>(e: E) -> RunnerBenchError {
    RunnerBenchError::Kube(e.to_string())
}

/// The process's resident set size in bytes and thread count (Linux `/proc/self/status`).
pub fn process_footprint() -> (u64, usize) {
    footprint_of("self")
}

/// Resident set size and thread count of process `pid` (`self` for this one).
fn footprint_of(pid: &str) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:") * 1024, field("Threads:") as usize)
}

/// CPU time (user + system) all threads of this process have used so far
/// (`CLOCK_PROCESS_CPUTIME_ID`, to the nanosecond; threads that have exited included).
#[allow(unsafe_code)]
pub fn process_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` only writes the `timespec` it is given, which lives on this stack
    // frame for the whole call; the clock id is a constant every Linux kernel knows.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    if status != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// The simulated cluster of P3–P5 in a child process (`taskpod sim --controllers-only`).
struct SimProcess {
    child: tokio::process::Child,
    client: ::kube::Client,
}

impl SimProcess {
    async fn start(dir: &std::path::Path) -> Result<SimProcess> {
        let exe = std::env::current_exe().map_err(setup)?;
        let kubeconfig = dir.join("sim.kubeconfig");
        let mut child = tokio::process::Command::new(exe)
            .arg("sim")
            .args(["--listen", "127.0.0.1:0", "--controllers-only"])
            .args(["--controller-workers", "32"])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| setup(format!("cannot start `taskpod sim`: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().map_err(setup)? {
                return Err(setup(format!(
                    "`taskpod sim` exited at start-up ({status})"
                )));
            }
            if let Ok(client) = crate::cli::kube_client(Some(&kubeconfig)).await {
                let namespaces: Api<k8s_openapi::api::core::v1::Namespace> =
                    Api::all(client.clone());
                if namespaces
                    .list(&ListParams::default().limit(1))
                    .await
                    .is_ok()
                {
                    return Ok(SimProcess { child, client });
                }
            }
            if Instant::now() > deadline {
                return Err(RunnerBenchError::Timeout(
                    "`taskpod sim` to serve".to_owned(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn footprint(&self) -> (u64, usize) {
        self.child
            .id()
            .map(|pid| footprint_of(&pid.to_string()))
            .unwrap_or_default()
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn config(dir: &std::path::Path, capacity: usize) -> Result<Arc<Config>> {
    std::fs::write(dir.join("template.yaml"), TEMPLATE).map_err(setup)?;
    let text = format!(
        "namespace: default\ninstance: bench\ncacheDir: {}\nadapters:\n  - name: tpl\n    component: builtin:pod-template\n    templates:\n      base: template.yaml\n    limits:\n      concurrency: 8\nrouting:\n  default: tpl\nrunner:\n  capacity: {capacity}\n  taskCleanupInterval: 1h\n",
        dir.join("cache").display()
    );
    let path = dir.join("taskpod.yaml");
    std::fs::write(&path, text).map_err(setup)?;
    Ok(Arc::new(Config::load(&path).map_err(setup)?))
}

fn task(id: &str) -> SubmittedTask {
    SubmittedTask {
        id: id.to_owned(),
        kind: "index".to_owned(),
        tenant: crate::task::DEFAULT_TENANT.to_owned(),
        group_id: None,
        datasource: Some("wiki".to_owned()),
        payload: r#"{"type":"index","dataSource":"wiki"}"#.to_owned(),
        labels: Default::default(),
        tags: Vec::new(),
        priority: 0,
    }
}

/// The in-process API server of P2 (no controllers: only the creates are measured).
async fn api_server() -> Result<Sim> {
    Sim::start(SimOptions {
        controllers: ControllerConfig {
            mode: ControllerMode::Off,
            ..ControllerConfig::default()
        },
        ..SimOptions::default()
    })
    .await
    .map_err(setup)
}

/// Submits tasks `{prefix}-{i}` for every `i` in `range`, 256 at a time.
async fn submit_all(runner: &Runner, prefix: &str, range: std::ops::Range<usize>) -> Result<()> {
    let results: Vec<_> = futures::stream::iter(range)
        .map(|i| runner.submit(task(&format!("{prefix}-{i}"))))
        .buffer_unordered(256)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(())
}

async fn wait_for<F: FnMut() -> bool>(secs: u64, what: &str, mut done: F) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        if Instant::now() > deadline {
            return Err(RunnerBenchError::Timeout(what.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// P2's figures.
struct Throughput {
    /// Tasks per side over all rounds.
    tasks: usize,
    baseline_per_s: f64,
    baseline_cpu: Duration,
    runner_per_s: f64,
    runner_cpu: Duration,
    watched_per_s: f64,
    watched_cpu: Duration,
    rounds: Vec<(f64, f64, f64)>,
    /// Store writes and commits during the runner's rounds.
    store_writes: u64,
    store_commits: u64,
}

/// P2 alternates the bare client and the runner this many times, so that a change in the
/// machine's load or the heap's state during the run weighs on both sides alike.
const P2_ROUNDS: usize = 3;

/// One side of one round: rate (per second) and CPU per task.
type Round = (f64, Duration);

/// A round of `n` tasks that began at `started` with the process's CPU at `cpu` (a
/// [`process_cpu`] reading): its rate and CPU per task, now.
fn round_of(started: Instant, cpu: Duration, n: usize) -> Round {
    let per_task = process_cpu().saturating_sub(cpu) / u32::try_from(n.max(1)).unwrap_or(u32::MAX);
    (n as f64 / started.elapsed().as_secs_f64(), per_task)
}

/// The median of the rounds' rates and the CPU per task of that round.
fn median(mut rounds: Vec<Round>) -> Round {
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    rounds.get(rounds.len() / 2).copied().unwrap_or_default()
}

/// P2: the runner against a bare client loop, `n` tasks each, in [`P2_ROUNDS`] alternating
/// rounds; each side's figure is the median round. A runner round ends when every Job is
/// created and its `Adapted` Event written (Events written later would otherwise fall into
/// the next bare round).
async fn throughput(n: usize, concurrency: usize) -> Result<Throughput> {
    let per_round = n.div_ceil(P2_ROUNDS).max(1);
    let dir = tempfile::tempdir().map_err(setup)?;
    let config = config(dir.path(), per_round * P2_ROUNDS + 1)?;
    // Baseline: the same Job the runner would create, under distinct names, on its own API
    // server (the runner's watch must not see it).
    let base = api_server().await?;
    let renderer = crate::render::Renderer::new(
        (*config).clone(),
        crate::adapters::Runtime::new(Default::default()).map_err(setup)?,
    )
    .map_err(setup)?;
    let template = renderer.render(&task("template")).await.map_err(setup)?.job;
    let jobs: Api<Job> = Api::namespaced(base.client(), "default");

    let sim = api_server().await?;
    let store = Store::open(dir.path().join("p2.db"), StoreOptions::default()).map_err(setup)?;
    let runner = Runner::start_with(
        config,
        store.clone(),
        sim.client(),
        RunnerOptions {
            launch_concurrency: concurrency,
            ..RunnerOptions::default()
        },
    )
    .await?;
    // The same bare client making a launch's requests to the API server (the Job, then its
    // `Adapted` Event through the host's Event writer) on a third API server, on which the
    // runner's Job watch (the same kube-runtime watcher and label selector) receives every Job.
    let watched = api_server().await?;
    let watched_jobs: Api<Job> = Api::namespaced(watched.client(), "default");
    let watched_counters = watched.counters();
    let events = crate::events::Events::new(
        watched.client(),
        "default",
        "bench",
        Arc::new(crate::metrics::Metrics::new()),
    );
    let seen = Arc::new(AtomicUsize::new(0));
    let watch = {
        let seen = Arc::clone(&seen);
        let selector = crate::kube::Kube::instance_selector("bench");
        let stream = watcher(
            watched_jobs.clone(),
            watcher::Config::default().labels(&selector),
        );
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if let Ok(watcher::Event::Apply(_) | watcher::Event::InitApply(_)) = event {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let identity = crate::store::AdapterRef {
        name: "pod-template".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        digest: format!("sha256:{}", "0".repeat(64)),
    };
    let counters = sim.counters();
    let stats = store.stats();
    let (mut bare, mut under_watch, mut ran) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..P2_ROUNDS {
        let done = per_round * (round + 1);
        let cpu = process_cpu();
        let started = Instant::now();
        let prefix = format!("baseline-{round}");
        create_all(&jobs, &template, &prefix, per_round, concurrency, None).await?;
        bare.push(round_of(started, cpu, per_round));

        let cpu = process_cpu();
        let started = Instant::now();
        let prefix = format!("watched-{round}");
        let adapted = Some((&events, &identity));
        create_all(
            &watched_jobs,
            &template,
            &prefix,
            per_round,
            concurrency,
            adapted,
        )
        .await?;
        wait_for(
            120,
            "the Job watch to receive every Job and the Events written",
            || {
                seen.load(Ordering::Relaxed) >= done
                    && watched_counters.distinct_creates("Event") >= done
            },
        )
        .await?;
        under_watch.push(round_of(started, cpu, per_round));

        let cpu = process_cpu();
        let started = Instant::now();
        let prefix = format!("p2-{round}");
        let submit = submit_all(&runner, &prefix, 0..per_round);
        let created = wait_for(120, "P2 Jobs created and their Events written", || {
            counters.distinct_creates("Job") >= done && counters.distinct_creates("Event") >= done
        });
        let (s, c) = tokio::join!(submit, created);
        s?;
        c?;
        ran.push(round_of(started, cpu, per_round));
    }
    let after = store.stats();
    runner.shutdown().await;
    watch.abort();
    events.close().await;
    sim.shutdown().await;
    watched.shutdown().await;
    base.shutdown().await;
    let rounds = bare
        .iter()
        .zip(&under_watch)
        .zip(&ran)
        .map(|((b, w), r)| (b.0, w.0, r.0))
        .collect();
    let (baseline_per_s, baseline_cpu) = median(bare);
    let (watched_per_s, watched_cpu) = median(under_watch);
    let (runner_per_s, runner_cpu) = median(ran);
    Ok(Throughput {
        tasks: per_round * P2_ROUNDS,
        baseline_per_s,
        baseline_cpu,
        watched_per_s,
        watched_cpu,
        runner_per_s,
        runner_cpu,
        rounds,
        store_writes: after.commands - stats.commands,
        store_commits: after.commits - stats.commits,
    })
}

/// Creates `n` copies of `template` named `{prefix}-{i}`, `concurrency` at a time, as a bare
/// kube-client loop does; with `adapted`, each created Job's `Adapted` Event is queued on that
/// Event writer, naming that adapter, as a launch does.
async fn create_all(
    jobs: &Api<Job>,
    template: &Job,
    prefix: &str,
    n: usize,
    concurrency: usize,
    adapted: Option<(&crate::events::Events, &crate::store::AdapterRef)>,
) -> Result<()> {
    let results: Vec<_> = futures::stream::iter(0..n)
        .map(|i| {
            let mut job = template.clone();
            job.metadata.name = Some(format!("{prefix}-{i}"));
            async move {
                let created = jobs.create(&PostParams::default(), &job).await?;
                if let Some((events, adapter)) = adapted {
                    let job = crate::events::JobRef {
                        name: created.metadata.name.unwrap_or_default(),
                        uid: created.metadata.uid,
                    };
                    let (name, version, digest) =
                        (&adapter.name, &adapter.version, &adapter.digest);
                    events.adapted(&job, "tpl", name, version, digest);
                }
                Ok::<_, ::kube::Error>(())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for r in results {
        r.map_err(kube_err)?;
    }
    Ok(())
}

/// Writes pod status as a kubelet would: running, or terminated with exit code 0.
async fn set_pod(pods: &Api<Pod>, name: &str, terminated: bool) -> Result<()> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let state = if terminated {
        serde_json::json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}})
    } else {
        serde_json::json!({"running": {"startedAt": now}})
    };
    let status = serde_json::json!({"status": {
        "phase": if terminated { "Succeeded" } else { "Running" },
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [{"name": "main", "image": "example.com/task:1", "imageID": "",
            "ready": !terminated, "restartCount": 0, "started": !terminated, "state": state}]
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(kube_err)?;
    Ok(())
}

/// Wait before a footprint reading: longer than the 10 s an idle thread of Tokio's blocking
/// pool lives, so that threads started for a burst of submissions have ended and the count is
/// the host's steady state with the Jobs tracked.
const SETTLE: Duration = Duration::from_secs(11);

/// Submits tasks `p3-{range}`, waits for their pods, reports them running as a kubelet would
/// and waits until the store has them all `running`; appends the pods' names to `names`.
async fn run_up(
    runner: &Runner,
    store: &Store,
    pods: &Api<Pod>,
    selector: &ListParams,
    range: std::ops::Range<usize>,
    concurrency: usize,
    names: &mut Vec<String>,
) -> Result<()> {
    let total = range.end;
    submit_all(runner, "p3", range).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let new = loop {
        // Metadata only: the benchmark's own allocations stay small next to the host's.
        let list = pods.list_metadata(selector).await.map_err(kube_err)?;
        if list.items.len() >= total {
            let known: std::collections::HashSet<&String> = names.iter().collect();
            break list
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .filter(|n| !known.contains(n))
                .collect::<Vec<_>>();
        }
        if Instant::now() > deadline {
            return Err(RunnerBenchError::Timeout(
                "pods of the running Jobs".to_owned(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let started: Vec<_> = futures::stream::iter(new.iter())
        .map(|n| set_pod(pods, n, false))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for r in started {
        r?;
    }
    names.extend(new);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let running = store
            .counts()
            .await
            .map(|c| c.state(TaskState::Running) as usize)
            .unwrap_or(0);
        if running >= total {
            break;
        }
        if Instant::now() > deadline {
            return Err(RunnerBenchError::Timeout("tasks running".to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Runs the whole benchmark: `throughput_tasks` for P2, `jobs` running Jobs for P3–P5,
/// `terminations` measured pod ends for P4.
pub async fn run(
    throughput_tasks: usize,
    jobs: usize,
    terminations: usize,
) -> Result<RunnerReport> {
    let concurrency = 64;
    let dir = tempfile::tempdir().map_err(setup)?;
    let config = config(dir.path(), jobs + 1)?;
    let sim = SimProcess::start(dir.path()).await?;
    let (rss_before, threads_before) = process_footprint();
    let store = Store::open(dir.path().join("p3.db"), StoreOptions::default()).map_err(setup)?;
    let options = RunnerOptions {
        launch_concurrency: concurrency,
        ..RunnerOptions::default()
    };
    let runner = Runner::start_with(
        Arc::clone(&config),
        store.clone(),
        sim.client.clone(),
        options.clone(),
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(sim.client.clone(), "default");
    let selector = ListParams::default().labels("taskpod.dev/instance=bench");
    // A tenth of the Jobs first, then all of them: the host's threads must not grow with them.
    let tenth = (jobs / 10).max(1);
    let mut names = Vec::with_capacity(jobs);
    run_up(
        &runner,
        &store,
        &pods,
        &selector,
        0..tenth,
        concurrency,
        &mut names,
    )
    .await?;
    tokio::time::sleep(SETTLE).await;
    let (rss_tenth, threads_tenth) = process_footprint();
    run_up(
        &runner,
        &store,
        &pods,
        &selector,
        tenth..jobs,
        concurrency,
        &mut names,
    )
    .await?;
    tokio::time::sleep(SETTLE).await;
    let (rss_after, threads_after) = process_footprint();
    let (sim_rss, _) = sim.footprint();

    // P4: end pods one after another while the others keep running.
    let mut events = store.subscribe();
    let mut latencies = Vec::with_capacity(terminations);
    let by_pod: std::collections::HashMap<String, String> = {
        let list = pods.list_metadata(&selector).await.map_err(kube_err)?;
        list.items
            .into_iter()
            .filter_map(|p| {
                let job = p.metadata.labels.as_ref()?.get("job-name")?.clone();
                Some((p.metadata.name?, job))
            })
            .collect()
    };
    for name in names.iter().take(terminations) {
        let job = by_pod.get(name).cloned().unwrap_or_default();
        let sent = Instant::now();
        set_pod(&pods, name, true).await?;
        let deadline = sent + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.recv()).await {
                Ok(Ok(StoreEvent::Transitioned { id, to, .. }))
                    if to.is_terminal() && taskpod_adapter_sdk::names::job_name(&id) == job =>
                {
                    latencies.push(sent.elapsed());
                    break;
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(RunnerBenchError::Timeout(format!(
                        "task of pod {name} stored"
                    )));
                }
            }
        }
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    let (term_p50, term_p99) = (pct(0.50), pct(0.99));

    // P5: restart on the same store with the Jobs in flight.
    runner.shutdown().await;
    let in_flight = jobs - terminations;
    let restarted = Instant::now();
    let runner = Runner::start_with(config, store.clone(), sim.client.clone(), options).await?;
    let r = runner.clone();
    wait_for(60, "restart reconciled", move || {
        r.is_ready() && r.tracked() >= in_flight
    })
    .await?;
    let restart = restarted.elapsed();
    runner.shutdown().await;
    sim.stop().await;
    drop(store);

    let p2 = throughput(throughput_tasks, concurrency).await?;
    Ok(RunnerReport {
        throughput_tasks: p2.tasks,
        baseline_per_s: p2.baseline_per_s,
        runner_per_s: p2.runner_per_s,
        baseline_cpu_per_task: p2.baseline_cpu,
        runner_cpu_per_task: p2.runner_cpu,
        rounds: p2.rounds,
        store_writes: p2.store_writes,
        store_commits: p2.store_commits,
        watched_per_s: p2.watched_per_s,
        watched_cpu_per_task: p2.watched_cpu,
        sim_rss,
        jobs,
        rss_before,
        rss_tenth,
        rss_after,
        threads_before,
        threads_tenth,
        threads_after,
        terminations: latencies.len(),
        term_p50,
        term_p99,
        restart,
    })
}
