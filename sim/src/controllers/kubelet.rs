//! Simulated kubelets for every node of the pool. A pod bound to a pool node is played out by
//! its [`PodPlan`](super::behavior::PodPlan): after `Timing::container_start` its init
//! containers run one by one (native sidecars — init containers with `restartPolicy: Always` —
//! start and keep running), then its regular containers all start; each container runs for its
//! planned time and terminates with its exit code (`Completed`, `Error`, `OOMKilled` with 137),
//! is restarted in place with crash-loop back-off and a growing `restartCount` when the pod's
//! `restartPolicy` (`OnFailure`, `Always`) says so, or waits in `ErrImagePull` then
//! `ImagePullBackOff` (the pod stays `Pending`). The pod phase follows the regular containers
//! only, so a regular sidecar that never exits keeps the pod `Running`; native sidecars are
//! stopped when the regular containers have ended; a container wired with kubexit
//! (`KUBEXIT_DEATH_DEPS`) is stopped when a container it depends on has terminated, as kubexit's
//! graveyard makes it. Eviction marks the pod `Failed`, reason
//! `Evicted`, with a `DisruptionTarget` condition. Log lines go to [`PodLogs`](crate::logs::PodLogs)
//! while containers run.
//!
//! Deletion works as with a real kubelet: the API server marks a bound pod with
//! `deletionTimestamp`, the kubelet stops its containers (exit code 143, as after `SIGTERM`),
//! writes the final status, then deletes the pod with grace period 0. A pod in a terminal phase
//! that gets a `deletionTimestamp` is deleted with grace 0 at once.
//!
//! All pods share one work queue and its timer wheel; each pod's state lives in a map and is
//! advanced, level-triggered, whenever the pod changes or its next planned moment comes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::behavior::{ContainerPlan, PodPlan};
use super::cache::{Change, ObjKey, key_of};
use super::job::pod_index;
use super::queue::{WorkQueue, spawn_workers};
use super::{Context, ControllerError, lock};

/// Exit code of a container stopped by `SIGTERM`.
const SIGTERM_EXIT: i32 = 143;
/// Exit code of a container killed by `SIGKILL` (OOM, eviction).
const SIGKILL_EXIT: i32 = 137;

/// A terminated run of a container.
#[derive(Clone, Debug)]
struct Term {
    exit_code: i32,
    reason: &'static str,
    message: Option<String>,
    started: Instant,
    finished: Instant,
}

#[derive(Clone, Debug)]
enum CState {
    /// Not created yet.
    Pending,
    /// Waiting, e.g. `ErrImagePull` until `until`, `ImagePullBackOff`, `CrashLoopBackOff`.
    Waiting {
        reason: &'static str,
        message: Option<String>,
        until: Option<Instant>,
    },
    /// Running since `since`; ends at `end` (if it ends by itself) with that exit code.
    Running {
        since: Instant,
        end: Option<(Instant, i32, &'static str)>,
    },
    /// Terminated.
    Terminated(Term),
}

#[derive(Debug)]
struct Container {
    name: String,
    image: String,
    /// Init container (native sidecar or not).
    init: bool,
    /// Native sidecar: an init container with `restartPolicy: Always`.
    sidecar: bool,
    plan: ContainerPlan,
    state: CState,
    restart_count: i32,
    last_term: Option<Term>,
    /// Terminated for good (no restart will follow).
    done: bool,
    /// Generated log lines written in the current run.
    lines_written: u32,
    container_id: Option<String>,
    /// kubexit wiring of this container, if its environment has any.
    kubexit: Option<Kubexit>,
}

/// What kubexit does in one container, read from its environment and command as the real
/// kubexit reads them: `KUBEXIT_NAME` names its tombstone, `KUBEXIT_GRAVEYARD` is the directory
/// of tombstones (a volume shared by the containers), `KUBEXIT_DEATH_DEPS` the comma-separated
/// names whose death makes kubexit stop its child.
#[derive(Clone, Debug, Default)]
struct Kubexit {
    /// `KUBEXIT_NAME`.
    name: Option<String>,
    /// Name of the volume mounted at `KUBEXIT_GRAVEYARD` (tombstones are seen only by
    /// containers that mount the same volume there).
    graveyard: Option<String>,
    /// The command line runs the kubexit binary (only then is a tombstone written).
    wrapped: bool,
    /// `KUBEXIT_DEATH_DEPS`.
    death_deps: Vec<String>,
    /// The command line ends in `|| true`: the shell exits 0 after kubexit stopped its child.
    or_true: bool,
}

impl Kubexit {
    /// The kubexit wiring of `c`, `None` when it has no `KUBEXIT_*` variables.
    fn of(c: &k8s_openapi::api::core::v1::Container) -> Option<Kubexit> {
        let env = |name: &str| {
            c.env
                .iter()
                .flatten()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        let name = env("KUBEXIT_NAME");
        let graveyard_path = env("KUBEXIT_GRAVEYARD");
        let deps = env("KUBEXIT_DEATH_DEPS");
        if name.is_none() && graveyard_path.is_none() && deps.is_none() {
            return None;
        }
        let trim = |p: &str| p.trim_end_matches('/').to_owned();
        let graveyard = graveyard_path.and_then(|path| {
            c.volume_mounts
                .iter()
                .flatten()
                .find(|m| trim(&m.mount_path) == trim(&path))
                .map(|m| m.name.clone())
        });
        let line: Vec<&str> = c
            .command
            .iter()
            .flatten()
            .chain(c.args.iter().flatten())
            .map(String::as_str)
            .collect();
        let line = line.join(" ");
        Some(Kubexit {
            name,
            graveyard,
            wrapped: line.contains("kubexit"),
            death_deps: deps
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect(),
            or_true: line.trim_end().ends_with("|| true"),
        })
    }
}

impl Container {
    fn running(&self) -> bool {
        matches!(self.state, CState::Running { .. })
    }

    fn exit_code(&self) -> Option<i32> {
        match &self.state {
            CState::Terminated(t) => Some(t.exit_code),
            _ => None,
        }
    }
}

/// The simulated state of one pod on its node.
#[derive(Debug)]
struct PodRun {
    uid: String,
    ns: String,
    name: String,
    restart_policy: String,
    /// Where `failTimes` attempts are counted: Job uid and completion index, or the pod uid.
    attempt_scope: String,
    plan_error: Option<String>,
    evict_after: Option<Duration>,
    seen_at: Instant,
    pod_ip: String,
    host_ip: String,
    containers: Vec<Container>,
    running_since: Option<Instant>,
    phase: &'static str,
    reason: Option<&'static str>,
    message: Option<String>,
    condition_times: HashMap<&'static str, (bool, Instant)>,
    last_written: Option<Value>,
}

#[derive(Debug)]
struct Inner {
    ctx: Arc<Context>,
    queue: WorkQueue<ObjKey>,
    timer: Mutex<Option<JoinHandle<()>>>,
    pods: Mutex<HashMap<ObjKey, PodRun>>,
    nodes: HashMap<String, usize>,
    /// Runs started per (attempt scope, container), for `failTimes`.
    attempts: Mutex<HashMap<(String, String), u32>>,
    next_ip: Mutex<u32>,
    base: (Instant, DateTime<Utc>),
}

/// The simulated kubelets of the whole pool (cheap to clone).
#[derive(Clone, Debug)]
pub(crate) struct Kubelets {
    inner: Arc<Inner>,
}

fn nonzero(code: i32) -> i32 {
    if code == 0 { 1 } else { code }
}

impl Kubelets {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        let (queue, timer) = WorkQueue::new(&ctx);
        let nodes = ctx
            .config
            .effective_nodes()
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n.name, i))
            .collect();
        Self {
            inner: Arc::new(Inner {
                ctx,
                queue,
                timer: Mutex::new(Some(timer)),
                pods: Mutex::new(HashMap::new()),
                nodes,
                attempts: Mutex::new(HashMap::new()),
                next_ip: Mutex::new(2),
                base: (Instant::now(), Utc::now()),
            }),
        }
    }

    fn wall(&self, at: Instant) -> String {
        let (base_i, base_w) = self.inner.base;
        let offset = at.saturating_duration_since(base_i);
        let t = base_w + chrono::Duration::from_std(offset).unwrap_or_default();
        t.to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    /// Pod watch handler.
    pub(crate) fn on_pod(&self, change: &Change<Pod>) {
        let pod = change.object();
        let key = key_of(pod.as_ref());
        match change {
            Change::Deleted(_) => {
                lock(&self.inner.pods).remove(&key);
            }
            Change::Applied { new, .. } => {
                let node = new.spec.as_ref().and_then(|s| s.node_name.as_deref());
                if node.is_some_and(|n| self.inner.nodes.contains_key(n)) {
                    self.inner.queue.add(key);
                }
            }
        }
    }

    /// Starts the timer and the workers.
    pub(crate) fn run(&self, workers: usize) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<JoinHandle<()>> = lock(&self.inner.timer).take().into_iter().collect();
        let this = self.clone();
        tasks.extend(spawn_workers(
            "kubelet",
            workers,
            self.inner.queue.clone(),
            self.inner.ctx.clone(),
            move |key| {
                let this = this.clone();
                async move { this.sync(key).await }
            },
        ));
        tasks
    }

    fn new_run(&self, pod: &Pod, node: &str) -> PodRun {
        let ctx = &self.inner.ctx;
        let (plan, plan_error) = match ctx.config.behavior.plan(pod) {
            Ok(p) => (p, None),
            Err(e) => (PodPlan::default(), Some(e.to_string())),
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let mut containers = Vec::new();
        let default_plan = |name: &str| {
            plan.containers
                .get(name)
                .cloned()
                .unwrap_or_else(|| ContainerPlan {
                    run: Some(Duration::from_secs(1)),
                    exit_code: 0,
                    logs: Vec::new(),
                    log_lines: 0,
                    log_interval: Duration::from_secs(1),
                    image_pull_error: false,
                    oom_killed: false,
                    crash_after: None,
                    fail_times: 0,
                })
        };
        for (c, init) in spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| (c, true))
            .chain(spec.containers.iter().map(|c| (c, false)))
        {
            containers.push(Container {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                init,
                sidecar: init && c.restart_policy.as_deref() == Some("Always"),
                plan: default_plan(&c.name),
                state: CState::Pending,
                restart_count: 0,
                last_term: None,
                done: false,
                lines_written: 0,
                container_id: None,
                kubexit: Kubexit::of(c),
            });
        }
        let node_index = self.inner.nodes.get(node).copied().unwrap_or(0);
        let n = {
            let mut next = lock(&self.inner.next_ip);
            *next = next.wrapping_add(1);
            *next
        };
        let attempt_scope = match pod
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
        {
            Some(o) => format!("{}/{}", o.uid, pod_index(pod).unwrap_or(-1)),
            None => pod.uid().unwrap_or_default(),
        };
        PodRun {
            uid: pod.uid().unwrap_or_default(),
            ns: pod.namespace().unwrap_or_default(),
            name: pod.name_any(),
            restart_policy: spec.restart_policy.unwrap_or_else(|| "Always".into()),
            attempt_scope,
            plan_error,
            evict_after: plan.evict_after,
            seen_at: Instant::now(),
            pod_ip: format!("10.{}.{}.{}", 244 + (n >> 16) % 8, (n >> 8) & 255, n & 255),
            host_ip: format!(
                "192.168.{}.{}",
                10 + node_index / 250,
                10 + node_index % 250
            ),
            containers,
            running_since: None,
            phase: "Pending",
            reason: None,
            message: None,
            condition_times: HashMap::new(),
            last_written: None,
        }
    }

    async fn sync(&self, key: ObjKey) -> Result<(), ControllerError> {
        let ctx = &self.inner.ctx;
        let Some(pod) = ctx.caches.pods.get(&key) else {
            lock(&self.inner.pods).remove(&key);
            return Ok(());
        };
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            return Ok(());
        };
        if !self.inner.nodes.contains_key(&node) {
            return Ok(());
        }
        let uid = pod.uid().unwrap_or_default();
        let existing = lock(&self.inner.pods).remove(&key);
        let mut run = match existing {
            Some(r) if r.uid == uid => r,
            _ => {
                if pod.metadata.deletion_timestamp.is_none()
                    && matches!(
                        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
                {
                    // Finished before this kubelet knew it (e.g. status patched by a client).
                    return Ok(());
                }
                self.new_run(&pod, &node)
            }
        };
        let now = Instant::now();
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let next = self.advance(&mut run, now, deleting);
        let status = self.status(&mut run, &pod, now);
        let result = self.write(&run, status.clone()).await;
        if result.is_ok() {
            run.last_written = Some(status);
        }
        let delete = deleting && matches!(run.phase, "Succeeded" | "Failed") && result.is_ok();
        let outcome = if delete {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &run.ns);
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(run.uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&run.name, &dp).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
                Err(e) => Err(e.into()),
            }
        } else {
            result
        };
        if let Some(at) = next {
            self.inner.queue.add_at(key.clone(), at);
        }
        if ctx.caches.pods.get(&key).is_some() {
            lock(&self.inner.pods).insert(key, run);
        }
        outcome
    }

    /// Writes the status unless it is what was last written.
    async fn write(&self, run: &PodRun, status: Value) -> Result<(), ControllerError> {
        if run.last_written.as_ref() == Some(&status) {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.inner.ctx.client.clone(), &run.ns);
        match api
            .patch_status(
                &run.name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn log(&self, run: &PodRun, container: &str, line: &str) {
        self.inner
            .ctx
            .logs
            .append(&run.ns, &run.name, container, line);
    }

    fn finish_log(&self, run: &PodRun, container: &str) {
        self.inner.ctx.logs.finish(&run.ns, &run.name, container);
    }

    /// Starts a run of container `i` at `at`.
    fn start(&self, run: &mut PodRun, i: usize, at: Instant) {
        let attempt = {
            let mut attempts = lock(&self.inner.attempts);
            let n = attempts
                .entry((run.attempt_scope.clone(), run.containers[i].name.clone()))
                .or_insert(0);
            *n += 1;
            *n
        };
        let c = &mut run.containers[i];
        let p = &c.plan;
        let failing = attempt <= p.fail_times;
        let end = if let Some(crash) = p.crash_after {
            Some((at + crash, nonzero(p.exit_code), "Error"))
        } else if let Some(len) = p.run {
            Some(if p.oom_killed {
                (at + len, SIGKILL_EXIT, "OOMKilled")
            } else if failing {
                (at + len, nonzero(p.exit_code), "Error")
            } else if p.fail_times > 0 {
                (at + len, 0, "Completed")
            } else {
                (
                    at + len,
                    p.exit_code,
                    if p.exit_code == 0 {
                        "Completed"
                    } else {
                        "Error"
                    },
                )
            })
        } else {
            None
        };
        c.state = CState::Running { since: at, end };
        c.lines_written = 0;
        c.container_id = Some(format!(
            "containerd://{:016x}{:08x}",
            rand::random::<u64>(),
            attempt
        ));
        let lines = c.plan.logs.clone();
        let name = c.name.clone();
        for line in lines {
            self.log(run, &name, &line);
        }
    }

    /// Writes generated log lines due by `upto` (all of them when `all`).
    fn emit_lines(&self, run: &mut PodRun, i: usize, upto: Instant, all: bool) -> Option<Instant> {
        let (since, n, interval, name) = {
            let c = &run.containers[i];
            let CState::Running { since, .. } = c.state else {
                return None;
            };
            (since, c.plan.log_lines, c.plan.log_interval, c.name.clone())
        };
        let mut next = None;
        while run.containers[i].lines_written < n {
            let k = run.containers[i].lines_written + 1;
            let due = since + interval * k;
            if !all && due > upto {
                next = Some(due);
                break;
            }
            let line = format!(
                "{} {}/{}: log line {k} of {n}",
                self.wall(due),
                run.name,
                name
            );
            self.log(run, &name, &line);
            run.containers[i].lines_written = k;
        }
        next
    }

    /// Terminates container `i` (if running) at `at` with `code`.
    fn kill(&self, run: &mut PodRun, i: usize, at: Instant, code: i32, reason: &'static str) {
        let c = &mut run.containers[i];
        match &c.state {
            CState::Running { since, .. } => {
                c.state = CState::Terminated(Term {
                    exit_code: code,
                    reason,
                    message: None,
                    started: *since,
                    finished: at,
                });
            }
            CState::Terminated(_) => {}
            _ => {
                if let Some(t) = c.last_term.clone() {
                    c.state = CState::Terminated(t);
                }
            }
        }
        c.done = true;
        let name = c.name.clone();
        self.finish_log(run, &name);
    }

    fn backoff(&self, restarts: i32) -> Duration {
        let t = &self.inner.ctx.config.timing;
        (t.crash_loop_backoff_base * 2u32.saturating_pow(restarts.clamp(0, 16) as u32))
            .min(t.crash_loop_backoff_max)
    }

    /// Advances container `i` up to `now`; returns its next planned moment.
    fn step(&self, run: &mut PodRun, i: usize, now: Instant, start_at: Instant) -> Option<Instant> {
        let policy = if run.containers[i].sidecar {
            "Always".to_owned()
        } else {
            run.restart_policy.clone()
        };
        loop {
            let state = run.containers[i].state.clone();
            match state {
                CState::Pending => {
                    let c = &mut run.containers[i];
                    if let Some(err) = &run.plan_error {
                        c.state = CState::Waiting {
                            reason: "CreateContainerConfigError",
                            message: Some(err.clone()),
                            until: None,
                        };
                        return None;
                    }
                    if c.plan.image_pull_error {
                        let until = start_at + self.inner.ctx.config.timing.image_pull_backoff;
                        c.state = CState::Waiting {
                            reason: "ErrImagePull",
                            message: Some(format!(
                                "failed to pull and unpack image \"{}\": failed to resolve \
                                 reference \"{}\": not found (simulated image pull failure)",
                                c.image, c.image
                            )),
                            until: Some(until),
                        };
                        continue;
                    }
                    self.start(run, i, start_at);
                }
                CState::Waiting {
                    reason,
                    until: Some(until),
                    ..
                } => {
                    if now < until {
                        return Some(until);
                    }
                    let c = &mut run.containers[i];
                    if reason == "ErrImagePull" {
                        c.state = CState::Waiting {
                            reason: "ImagePullBackOff",
                            message: Some(format!("Back-off pulling image \"{}\"", c.image)),
                            until: None,
                        };
                        return None;
                    }
                    // CrashLoopBackOff is over: restart in place, with a new log.
                    c.restart_count += 1;
                    let name = c.name.clone();
                    self.inner.ctx.logs.restart(&run.ns, &run.name, &name);
                    self.start(run, i, until);
                }
                CState::Waiting { until: None, .. } => return None,
                CState::Running { end, .. } => {
                    let next_line = self.emit_lines(run, i, now, false);
                    let Some((at, code, reason)) = end else {
                        return next_line;
                    };
                    if now < at {
                        return Some(next_line.map_or(at, |l| l.min(at)));
                    }
                    if code == 0 {
                        self.emit_lines(run, i, at, true);
                    }
                    let c = &mut run.containers[i];
                    let CState::Running { since, .. } = c.state else {
                        return None;
                    };
                    let term = Term {
                        exit_code: code,
                        reason,
                        message: None,
                        started: since,
                        finished: at,
                    };
                    let restart = policy == "Always" || (policy == "OnFailure" && code != 0);
                    if restart {
                        let wait = self.backoff(c.restart_count);
                        c.last_term = Some(term.clone());
                        c.state = CState::Waiting {
                            reason: "CrashLoopBackOff",
                            message: Some(format!(
                                "back-off {}s restarting failed container={} pod={}_{}({})",
                                wait.as_secs().max(1),
                                c.name,
                                run.name,
                                run.ns,
                                run.uid
                            )),
                            until: Some(at + wait),
                        };
                        // The run's log ends with it (its followers end); the restart starts a
                        // new one.
                        let name = c.name.clone();
                        self.finish_log(run, &name);
                        continue;
                    }
                    c.state = CState::Terminated(term);
                    c.done = true;
                    let name = c.name.clone();
                    self.finish_log(run, &name);
                    return None;
                }
                CState::Terminated(_) => return None,
            }
        }
    }

    /// kubexit: a running regular container whose death dependency has a tombstone marked dead
    /// in its graveyard (a kubexit-wrapped container with that `KUBEXIT_NAME`, sharing the
    /// graveyard volume, that has terminated) is stopped as kubexit stops its child: `SIGTERM`,
    /// exit 143 — or 0 when the command line ends in `|| true`, as Druid's wiring does.
    /// Containers stopped this way are not restarted.
    fn kubexit_deaths(&self, run: &mut PodRun, now: Instant) {
        let dead: Vec<(String, String)> = run
            .containers
            .iter()
            .filter(|c| !c.init && matches!(c.state, CState::Terminated(_)))
            .filter_map(|c| {
                let k = c.kubexit.as_ref().filter(|k| k.wrapped)?;
                Some((k.name.clone()?, k.graveyard.clone()?))
            })
            .collect();
        if dead.is_empty() {
            return;
        }
        for i in 0..run.containers.len() {
            let c = &run.containers[i];
            if c.init || !c.running() {
                continue;
            }
            let Some(k) = c.kubexit.as_ref().filter(|k| k.wrapped) else {
                continue;
            };
            let Some(graveyard) = k.graveyard.as_deref() else {
                continue;
            };
            let died = k
                .death_deps
                .iter()
                .any(|dep| dead.iter().any(|(n, g)| n == dep && g == graveyard));
            if died {
                let (code, reason) = if k.or_true {
                    (0, "Completed")
                } else {
                    (SIGTERM_EXIT, "Error")
                };
                self.kill(run, i, now, code, reason);
            }
        }
    }

    /// Advances the whole pod to `now`; returns the next moment something is planned.
    fn advance(&self, run: &mut PodRun, now: Instant, deleting: bool) -> Option<Instant> {
        if matches!(run.phase, "Succeeded" | "Failed") {
            return None;
        }
        if deleting {
            for i in 0..run.containers.len() {
                if !run.containers[i].done {
                    self.kill(run, i, now, SIGTERM_EXIT, "Error");
                }
            }
            let all_ok = run
                .containers
                .iter()
                .filter(|c| !c.init)
                .all(|c| c.exit_code() == Some(0));
            run.phase = if all_ok { "Succeeded" } else { "Failed" };
            return None;
        }
        let start_at = run.seen_at + self.inner.ctx.config.timing.container_start;
        if now < start_at {
            return Some(start_at);
        }
        let mut next: Option<Instant> = None;
        let mut merge = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        // Eviction.
        if let (Some(after), Some(since)) = (run.evict_after, run.running_since) {
            let at = since + after;
            if now >= at {
                for i in 0..run.containers.len() {
                    if !run.containers[i].done {
                        self.kill(run, i, at, SIGKILL_EXIT, "Error");
                    }
                }
                run.phase = "Failed";
                run.reason = Some("Evicted");
                run.message = Some(
                    "The node was low on resource: memory. Threshold quantity: 100Mi, available: \
                     64Mi. (simulated eviction)"
                        .into(),
                );
                return None;
            }
            merge(Some(at));
        }
        // Init containers, in order.
        let mut initialized = true;
        let mut init_failed = false;
        for i in 0..run.containers.len() {
            if !run.containers[i].init {
                continue;
            }
            merge(self.step(run, i, now, now));
            let c = &run.containers[i];
            if c.sidecar {
                if !c.running() && c.restart_count == 0 && c.last_term.is_none() {
                    initialized = false;
                    break;
                }
                continue;
            }
            match c.exit_code() {
                Some(0) => continue,
                Some(_) if c.done => {
                    init_failed = true;
                    initialized = false;
                    break;
                }
                _ => {
                    initialized = false;
                    break;
                }
            }
        }
        if init_failed {
            for i in 0..run.containers.len() {
                if !run.containers[i].done {
                    self.kill(run, i, now, SIGTERM_EXIT, "Error");
                }
            }
            run.phase = "Failed";
            return None;
        }
        if initialized {
            for i in 0..run.containers.len() {
                if run.containers[i].init {
                    continue;
                }
                merge(self.step(run, i, now, now));
            }
            self.kubexit_deaths(run, now);
            let regular = || run.containers.iter().filter(|c| !c.init);
            let all_started = regular().all(|c| {
                !matches!(
                    c.state,
                    CState::Pending
                        | CState::Waiting {
                            reason: "ErrImagePull"
                                | "ImagePullBackOff"
                                | "CreateContainerConfigError",
                            ..
                        }
                )
            });
            if all_started {
                if run.running_since.is_none() {
                    run.running_since = Some(now);
                    if let Some(after) = run.evict_after {
                        merge(Some(now + after));
                    }
                }
                run.phase = "Running";
            }
            if regular().all(|c| c.done) {
                let ok = regular().all(|c| c.exit_code() == Some(0));
                for i in 0..run.containers.len() {
                    if run.containers[i].sidecar && !run.containers[i].done {
                        self.kill(run, i, now, 0, "Completed");
                    }
                }
                run.phase = if ok { "Succeeded" } else { "Failed" };
                return None;
            }
        }
        next
    }

    fn container_status(&self, c: &Container) -> Value {
        let term = |t: &Term, id: &Option<String>| {
            let mut v = json!({
                "exitCode": t.exit_code,
                "reason": t.reason,
                "startedAt": self.wall(t.started),
                "finishedAt": self.wall(t.finished),
            });
            if let Some(id) = id {
                v["containerID"] = json!(id);
            }
            if let Some(m) = &t.message {
                v["message"] = json!(m);
            }
            v
        };
        let state = match &c.state {
            CState::Pending => {
                json!({ "waiting": { "reason": if c.init { "PodInitializing" } else { "ContainerCreating" } } })
            }
            CState::Waiting {
                reason, message, ..
            } => {
                let mut w = json!({ "reason": reason });
                if let Some(m) = message {
                    w["message"] = json!(m);
                }
                json!({ "waiting": w })
            }
            CState::Running { since, .. } => {
                json!({ "running": { "startedAt": self.wall(*since) } })
            }
            CState::Terminated(t) => json!({ "terminated": term(t, &c.container_id) }),
        };
        let last = match &c.last_term {
            Some(t) if !matches!(c.state, CState::Terminated(_)) || c.restart_count > 0 => {
                json!({ "terminated": term(t, &None) })
            }
            _ => json!({}),
        };
        let mut v = json!({
            "name": c.name,
            "image": c.image,
            "imageID": if c.container_id.is_some() { json!(format!("sim.taskpod.dev/{}@sha256:{:064x}", c.image, 0)) } else { json!("") },
            "ready": c.running() && (!c.init || c.sidecar),
            "started": c.running(),
            "restartCount": c.restart_count,
            "state": state,
            "lastState": last,
        });
        if let Some(id) = &c.container_id {
            v["containerID"] = json!(id);
        }
        v
    }

    fn condition(
        &self,
        times: &mut HashMap<&'static str, (bool, Instant)>,
        type_: &'static str,
        ok: bool,
        reason: Option<&str>,
        message: Option<String>,
        now: Instant,
    ) -> Value {
        let entry = times.entry(type_).or_insert((ok, now));
        if entry.0 != ok {
            *entry = (ok, now);
        }
        let mut v = json!({
            "type": type_,
            "status": if ok { "True" } else { "False" },
            "lastProbeTime": Value::Null,
            "lastTransitionTime": self.wall(entry.1),
        });
        if let Some(r) = reason {
            v["reason"] = json!(r);
        }
        if let Some(m) = message {
            v["message"] = json!(m);
        }
        v
    }

    /// The pod status as a kubelet reports it.
    fn status(&self, run: &mut PodRun, pod: &Pod, now: Instant) -> Value {
        let mut times = std::mem::take(&mut run.condition_times);
        let started = now >= run.seen_at + self.inner.ctx.config.timing.container_start;
        let terminal = matches!(run.phase, "Succeeded" | "Failed");
        let inits_done = run.containers.iter().filter(|c| c.init).all(|c| {
            if c.sidecar {
                c.running() || c.done
            } else {
                c.exit_code() == Some(0)
            }
        });
        let unready: Vec<&str> = run
            .containers
            .iter()
            .filter(|c| !c.init && !c.running())
            .map(|c| c.name.as_str())
            .collect();
        let incomplete: Vec<&str> = run
            .containers
            .iter()
            .filter(|c| c.init && !(c.exit_code() == Some(0) || c.running() && c.sidecar))
            .map(|c| c.name.as_str())
            .collect();
        let ready = !terminal && unready.is_empty() && run.phase == "Running";
        let (ready_reason, ready_msg) = if ready {
            (None, None)
        } else if terminal {
            (Some("PodCompleted"), None)
        } else {
            (
                Some("ContainersNotReady"),
                Some(format!(
                    "containers with unready status: [{}]",
                    unready.join(" ")
                )),
            )
        };
        let mut conditions = vec![
            self.condition(
                &mut times,
                "PodReadyToStartContainers",
                started,
                None,
                None,
                now,
            ),
            self.condition(
                &mut times,
                "Initialized",
                inits_done,
                (!inits_done).then_some("ContainersNotInitialized"),
                (!inits_done).then(|| {
                    format!(
                        "containers with incomplete status: [{}]",
                        incomplete.join(" ")
                    )
                }),
                now,
            ),
            self.condition(
                &mut times,
                "Ready",
                ready,
                ready_reason,
                ready_msg.clone(),
                now,
            ),
            self.condition(
                &mut times,
                "ContainersReady",
                ready,
                ready_reason,
                ready_msg,
                now,
            ),
        ];
        if run.reason == Some("Evicted") {
            conditions.push(self.condition(
                &mut times,
                "DisruptionTarget",
                true,
                Some("TerminationByKubelet"),
                Some("The node was low on resource: memory.".into()),
                now,
            ));
        }
        // Keep conditions other components own (PodScheduled, …).
        let own: HashSet<&str> = [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "DisruptionTarget",
        ]
        .into_iter()
        .collect();
        if let Some(existing) = pod.status.as_ref().and_then(|s| s.conditions.as_ref()) {
            for c in existing.iter().filter(|c| !own.contains(c.type_.as_str())) {
                if let Ok(v) = serde_json::to_value(c) {
                    conditions.push(v);
                }
            }
        }
        let init_statuses: Vec<Value> = run
            .containers
            .iter()
            .filter(|c| c.init)
            .map(|c| self.container_status(c))
            .collect();
        let statuses: Vec<Value> = run
            .containers
            .iter()
            .filter(|c| !c.init)
            .map(|c| self.container_status(c))
            .collect();
        let qos = qos_class(pod);
        let mut status = json!({
            "phase": run.phase,
            "conditions": conditions,
            "hostIP": run.host_ip,
            "hostIPs": [{ "ip": run.host_ip }],
            "podIP": run.pod_ip,
            "podIPs": [{ "ip": run.pod_ip }],
            "startTime": self.wall(run.seen_at),
            "containerStatuses": statuses,
            "qosClass": qos,
        });
        if !init_statuses.is_empty() {
            status["initContainerStatuses"] = json!(init_statuses);
        }
        status["reason"] = run.reason.map_or(Value::Null, |r| json!(r));
        status["message"] = run.message.as_ref().map_or(Value::Null, |m| json!(m));
        run.condition_times = times;
        status
    }
}

/// `BestEffort` without any request or limit, `Guaranteed` when every container's requests
/// equal its limits for CPU and memory, else `Burstable`.
fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "BestEffort";
    };
    let all: Vec<_> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let any = all.iter().any(|c| {
        c.resources.as_ref().is_some_and(|r| {
            r.requests.as_ref().is_some_and(|m| !m.is_empty())
                || r.limits.as_ref().is_some_and(|m| !m.is_empty())
        })
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = all.iter().all(|c| {
        let r = c.resources.clone().unwrap_or_default();
        let limits: BTreeMap<_, _> = r.limits.unwrap_or_default();
        let requests = r.requests.unwrap_or_default();
        ["cpu", "memory"].iter().all(|k| {
            limits.contains_key(*k) && requests.get(*k).is_none_or(|q| Some(q) == limits.get(*k))
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}
