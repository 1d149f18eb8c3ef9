//! Simulated controllers and kubelets: the Job controller, the Deployment controller, the
//! TTL-after-finished controller, the garbage collector, the scheduler and the simulated kubelets of a configurable node pool.
//!
//! They talk to the simulated API server over HTTP through the real `kube` client, exactly as
//! kube-controller-manager, kube-scheduler and the kubelet talk to a real API server: one watch
//! per resource kind feeds shared in-memory caches ([`cache`]), controllers react through work
//! queues keyed by object with a single timer wheel each ([`queue`]), and every change they make
//! goes back through the API (pod creation, `binding`, `/status` patches, deletes, Events). No
//! controller polls, and no task or timer exists per object, so 10,000 Jobs stay workable.
//!
//! [`spawn`] starts what [`ControllerConfig::mode`] asks for and returns a [`Controllers`]
//! handle to pause, resume and shut them down. What each simulated pod does is decided by the
//! [`Behavior`] rules (see [`behavior`]).

pub mod behavior;
mod cache;
mod deployment;
mod events;
mod gc;
mod job;
mod kubelet;
mod owned;
mod queue;
mod scheduler;
mod ttl;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kube::Client;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use behavior::{Behavior, BehaviorError, ContainerBehavior, Rule, RuleMatch};

use crate::logs::PodLogs;

/// What runs inside the simulated cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ControllerMode {
    /// Job, Deployment, TTL-after-finished and garbage-collection controllers, the scheduler and
    /// the simulated kubelets: pods are scheduled, run and finish by themselves.
    #[default]
    Full,
    /// Job, Deployment, TTL-after-finished and garbage-collection controllers only, as under
    /// envtest: no scheduler and no kubelets, so pods stay unbound and `Pending` until a client
    /// patches their `status` subresource.
    ControllersOnly,
    /// Nothing runs: the API server alone.
    Off,
}

/// A taint on a simulated node (`spec.taints[]` of a real Node).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeTaint {
    /// Taint key, e.g. `dedicated`.
    pub key: String,
    /// Taint value (may be empty).
    #[serde(default)]
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`. `PreferNoSchedule` never blocks
    /// scheduling, as in Kubernetes.
    pub effect: String,
}

/// One node of the simulated pool: its name, allocatable resources, labels and taints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// Node name (what `spec.nodeName` of the pods bound to it says).
    pub name: String,
    /// Allocatable CPU in millicores (`4000` = 4 CPUs).
    pub cpu_millis: u64,
    /// Allocatable memory in bytes.
    pub memory_bytes: u64,
    /// Maximum number of pods on the node (110 on a default kubelet).
    #[serde(default = "default_max_pods")]
    pub max_pods: u32,
    /// Node labels, matched by `nodeSelector` and required node affinity. The scheduler adds
    /// `kubernetes.io/hostname=<name>` and `kubernetes.io/os=linux` when absent.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Node taints, matched against pod tolerations.
    #[serde(default)]
    pub taints: Vec<NodeTaint>,
}

fn default_max_pods() -> u32 {
    110
}

impl NodeSpec {
    /// A node with the given allocatable CPU (millicores) and memory (bytes), 110 pods, no
    /// extra labels and no taints.
    pub fn new(name: impl Into<String>, cpu_millis: u64, memory_bytes: u64) -> Self {
        Self {
            name: name.into(),
            cpu_millis,
            memory_bytes,
            max_pods: default_max_pods(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
        }
    }

    /// Adds a label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds a taint.
    pub fn with_taint(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
        effect: impl Into<String>,
    ) -> Self {
        self.taints.push(NodeTaint {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
        });
        self
    }

    /// Sets the pod limit.
    pub fn with_max_pods(mut self, max_pods: u32) -> Self {
        self.max_pods = max_pods;
        self
    }

    /// The pool used when [`ControllerConfig::nodes`] is empty: three nodes `sim-node-1..3`
    /// with 8 CPUs, 32 GiB and 110 pods each.
    pub fn default_pool() -> Vec<NodeSpec> {
        (1..=3)
            .map(|i| NodeSpec::new(format!("sim-node-{i}"), 8_000, 32 << 30))
            .collect()
    }
}

/// Delays of the simulated cluster. Kubernetes' own delays (Job back-off, crash-loop back-off,
/// image-pull back-off) are kept in proportion but shortened ten times by default, so that tests
/// finish quickly; [`Timing::fast`] shortens them further for unit-style tests.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// Time a kubelet takes from seeing a pod bound to its node to starting its containers
    /// (pod sandbox and image pull). Default 100 ms.
    pub container_start: Duration,
    /// First delay before the Job controller replaces a failed pod; doubles with every failure
    /// (Kubernetes: 10 s). Default 1 s.
    pub job_backoff_base: Duration,
    /// Upper bound of the Job back-off (Kubernetes: 6 min). Default 36 s.
    pub job_backoff_max: Duration,
    /// First crash-loop back-off before a kubelet restarts a failed container of an
    /// `OnFailure`/`Always` pod; doubles with every restart (Kubernetes: 10 s). Default 1 s.
    pub crash_loop_backoff_base: Duration,
    /// Upper bound of the crash-loop back-off (Kubernetes: 5 min). Default 30 s.
    pub crash_loop_backoff_max: Duration,
    /// Time a container spends in `ErrImagePull` before `ImagePullBackOff`. Default 1 s.
    pub image_pull_backoff: Duration,
    /// How often the scheduler retries unschedulable pods even without a cluster change
    /// (Kubernetes: 5 min). Default 30 s. Pods are retried at once when capacity frees up.
    pub unschedulable_retry: Duration,
    /// How long the Job controller waits to observe pods it created or deleted before it
    /// stops waiting (Kubernetes: 5 min). Default 30 s.
    pub expectations_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            container_start: Duration::from_millis(100),
            job_backoff_base: Duration::from_secs(1),
            job_backoff_max: Duration::from_secs(36),
            crash_loop_backoff_base: Duration::from_secs(1),
            crash_loop_backoff_max: Duration::from_secs(30),
            image_pull_backoff: Duration::from_secs(1),
            unschedulable_retry: Duration::from_secs(30),
            expectations_timeout: Duration::from_secs(30),
        }
    }
}

impl Timing {
    /// Delays of a few tens of milliseconds, for tests that exercise back-offs.
    pub fn fast() -> Self {
        Self {
            container_start: Duration::from_millis(20),
            job_backoff_base: Duration::from_millis(50),
            job_backoff_max: Duration::from_millis(400),
            crash_loop_backoff_base: Duration::from_millis(50),
            crash_loop_backoff_max: Duration::from_millis(400),
            image_pull_backoff: Duration::from_millis(200),
            unschedulable_retry: Duration::from_secs(2),
            expectations_timeout: Duration::from_secs(10),
        }
    }
}

/// Configuration of the simulated controllers and kubelets.
#[derive(Clone, Debug, Default)]
pub struct ControllerConfig {
    /// What runs (default: everything).
    pub mode: ControllerMode,
    /// The node pool; empty means [`NodeSpec::default_pool`].
    pub nodes: Vec<NodeSpec>,
    /// What the simulated containers do.
    pub behavior: Behavior,
    /// Delays of the simulated cluster.
    pub timing: Timing,
    /// Concurrent workers per controller (default 0 = 8). More workers issue more API requests
    /// at once; each object is still handled by one worker at a time.
    pub workers: usize,
}

impl ControllerConfig {
    fn effective_workers(&self) -> usize {
        if self.workers == 0 { 8 } else { self.workers }
    }

    fn effective_nodes(&self) -> Vec<NodeSpec> {
        if self.nodes.is_empty() {
            NodeSpec::default_pool()
        } else {
            self.nodes.clone()
        }
    }
}

/// A gate that stops controller work while paused (shared by every worker).
#[derive(Clone, Debug)]
pub(crate) struct PauseGate {
    rx: watch::Receiver<bool>,
}

impl PauseGate {
    /// Waits until the controllers are not paused (returns at once when running).
    pub(crate) async fn wait_running(&self) {
        let mut rx = self.rx.clone();
        // An error means the handle is gone (shutdown): nothing to wait for.
        let _ = rx.wait_for(|paused| !*paused).await;
    }
}

/// Everything the controller tasks share: the API client, caches, logs and configuration.
pub(crate) struct Context {
    pub(crate) client: Client,
    pub(crate) logs: PodLogs,
    pub(crate) config: ControllerConfig,
    pub(crate) gate: PauseGate,
    pub(crate) cancel: CancellationToken,
    pub(crate) caches: cache::Caches,
    pub(crate) recorder: events::Recorder,
    /// Turns true once every watch has listed its kind.
    pub(crate) ready: watch::Receiver<bool>,
}

/// Why one sync of one object failed (the object is retried with back-off).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ControllerError {
    /// An API request failed.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// An object could not be encoded as JSON.
    #[error("cannot encode object as JSON: {0}")]
    Encode(#[source] serde_json::Error),
}

/// True when the pod has finished (`Succeeded` or `Failed`).
/// Locks `m`, taking over a lock poisoned by a panicking holder (the data stays usable: every
/// critical section leaves it consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn is_terminal(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// True when the pod has the condition with status `True`.
pub(crate) fn pod_condition_true(pod: &k8s_openapi::api::core::v1::Pod, type_: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Inner {
    mode: ControllerMode,
    paused: watch::Sender<bool>,
    cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    ready: watch::Receiver<bool>,
}

/// Handle to the running controllers and kubelets (cheap to clone). Dropping every clone does
/// not stop them; call [`Controllers::shutdown`].
#[derive(Clone, Debug)]
pub struct Controllers {
    inner: Arc<Inner>,
}

impl Controllers {
    /// The mode they were started in.
    pub fn mode(&self) -> ControllerMode {
        self.inner.mode
    }

    /// Stops all controller activity: no pod is created, scheduled, started, finished or
    /// deleted and no status is written until [`Controllers::resume`]. Watches keep the caches
    /// current meanwhile, and timers that fall due while paused act on resume.
    pub fn pause(&self) {
        self.inner.paused.send_replace(true);
    }

    /// Restarts controller activity after [`Controllers::pause`].
    pub fn resume(&self) {
        self.inner.paused.send_replace(false);
    }

    /// True while paused.
    pub fn is_paused(&self) -> bool {
        *self.inner.paused.borrow()
    }

    /// Waits until every watch has listed its resources once (returns at once in
    /// [`ControllerMode::Off`]).
    pub async fn ready(&self) {
        let mut rx = self.inner.ready.clone();
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// Stops every controller task and waits for them to end.
    pub async fn shutdown(self) {
        self.inner.cancel.cancel();
        // Wake paused workers so that they see the cancellation.
        self.inner.paused.send_replace(false);
        let tasks = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// Starts the controllers (and, in [`ControllerMode::Full`], the scheduler and kubelets) against
/// the API server `client` points at. Must be called inside a Tokio runtime. Returns at once;
/// the watches list their resources in the background (see [`Controllers::ready`]).
pub fn spawn(client: Client, logs: PodLogs, config: ControllerConfig) -> Controllers {
    let (paused, paused_rx) = watch::channel(false);
    let cancel = CancellationToken::new();
    let (ready_tx, ready) = watch::channel(false);
    let mode = config.mode;
    let mut tasks = Vec::new();
    if mode == ControllerMode::Off {
        ready_tx.send_replace(true);
    } else {
        let caches = cache::Caches::new();
        let recorder = events::Recorder::new();
        let ctx = Arc::new(Context {
            client,
            logs,
            config,
            gate: PauseGate { rx: paused_rx },
            cancel: cancel.clone(),
            caches,
            recorder,
            ready: ready.clone(),
        });
        tasks = start(ctx, ready_tx);
    }
    Controllers {
        inner: Arc::new(Inner {
            mode,
            paused,
            cancel,
            tasks: Mutex::new(tasks),
            ready,
        }),
    }
}

/// Wires the controllers to the watches and starts every task.
fn start(ctx: Arc<Context>, ready: watch::Sender<bool>) -> Vec<JoinHandle<()>> {
    let full = ctx.config.mode == ControllerMode::Full;
    let workers = ctx.config.effective_workers();
    let mut tasks = Vec::new();

    let jobs = job::JobController::new(ctx.clone());
    let deployments = deployment::DeploymentController::new(ctx.clone());
    let ttl = ttl::TtlController::new(ctx.clone());
    let gc = gc::GarbageCollector::new(ctx.clone());
    let scheduler = full.then(|| scheduler::Scheduler::new(ctx.clone()));
    let kubelet = full.then(|| kubelet::Kubelets::new(ctx.clone()));

    // Route every watch event to the controllers interested in it.
    {
        let (jobs, ttl, gc) = (jobs.clone(), ttl.clone(), gc.clone());
        let kind = ctx.caches.jobs.kind.clone();
        ctx.caches.jobs.subscribe(move |change| {
            jobs.on_job(change);
            ttl.on_job(change);
            gc.on_change(change.meta_change(&kind));
        });
    }
    {
        let (deployments, gc) = (deployments.clone(), gc.clone());
        let kind = ctx.caches.deployments.kind.clone();
        ctx.caches.deployments.subscribe(move |change| {
            deployments.on_deployment(change);
            gc.on_change(change.meta_change(&kind));
        });
    }
    {
        let (jobs, deployments, gc) = (jobs.clone(), deployments.clone(), gc.clone());
        let (scheduler, kubelet) = (scheduler.clone(), kubelet.clone());
        let kind = ctx.caches.pods.kind.clone();
        ctx.caches.pods.subscribe(move |change| {
            jobs.on_pod(change);
            deployments.on_pod(change);
            gc.on_change(change.meta_change(&kind));
            if let Some(s) = &scheduler {
                s.on_pod(change);
            }
            if let Some(k) = &kubelet {
                k.on_pod(change);
            }
        });
    }
    for dynamic in &ctx.caches.others {
        let gc = gc.clone();
        let kind = dynamic.kind.clone();
        dynamic.subscribe(move |change| gc.on_change(change.meta_change(&kind)));
    }

    tasks.extend(ctx.recorder.run(ctx.clone()));
    tasks.extend(ctx.caches.run(&ctx, ready));
    tasks.extend(jobs.run(workers));
    tasks.extend(deployments.run(workers));
    tasks.extend(ttl.run());
    tasks.extend(gc.run(workers));
    if let Some(s) = scheduler {
        tasks.extend(s.run());
    }
    if let Some(k) = kubelet {
        tasks.extend(k.run(workers));
    }
    tasks
}

/// A `chrono` time as a Kubernetes `Time`.
pub(crate) fn to_time(
    t: chrono::DateTime<chrono::Utc>,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    let ts = k8s_openapi::jiff::Timestamp::from_second(t.timestamp())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts)
}

/// A Kubernetes `Time` as a `chrono` time.
pub(crate) fn from_time(
    t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(t.0.as_second(), 0).unwrap_or_default()
}
