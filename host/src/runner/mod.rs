//! The task runner: from a durable, acknowledged task to a finished Kubernetes Job.
//!
//! [`Runner`] owns the launch loop (queue → adapter → contract → Job + companions), one watch
//! stream per kind (Jobs, Pods, companion Deployments) selected by this instance's label, the status mapping (Job
//! conditions and the main container's terminated state → the task's end and reason), the launch
//! timeout and max-duration checks, log capture, cancel, the reaper and restore after a restart.
//! The store is the source of truth: every transition is committed before it is acted on, so a
//! crash at any point loses nothing and creates no Job twice (Job names are deterministic and an
//! `AlreadyExists` carrying our task id counts as ours). No thread or poll loop exists per Job:
//! the watchers, one timer loop and a bounded set of log followers serve every task.

pub mod bench;
pub mod companions;
mod logs;
pub mod status;
mod watch;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Semaphore, watch as signal};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::adapters::{Runtime, RuntimeOptions};
use crate::config::Config;
use crate::contract::ANNOTATION_TASK_ID;
use crate::events::{Events, JobRef};
use crate::kube::{self as k8s, Kube, KubeError};
use crate::metrics::Metrics;
use crate::queue::{FairShare, LaunchPolicy, PriorityOrder, Queue, QueuedTask};
use crate::render::{Quarantine, RenderError, Renderer};
use crate::store::{NewTask, ReasonCode, Store, StoreError, TaskRecord, TaskState, Transition};
use crate::task::SubmittedTask;
use crate::tenants::{self, TenantSwitches, Tenants};

pub use crate::store::Submitted;

/// The span every log line about one task is in: `task{task_id=…}`, from the API's submit
/// through the launch (adapter call included) to what the watchers see and the task's end.
pub fn task_span(id: &str) -> tracing::Span {
    tracing::info_span!("task", task_id = %id)
}

/// Store meta key holding the capacity set at run time.
pub const META_CAPACITY: &str = "runner.capacity";

/// How a running task is canceled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CancelMode {
    /// Delete the Job with background propagation; pods get their grace period.
    #[default]
    Graceful,
    /// Delete the Job and its pods with grace period 0.
    Force,
}

/// Why a runner call failed. The API maps the variants to 400, 409, 404 and 503/500.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The input is invalid: `field` names what is wrong (HTTP 400).
    #[error("field `{field}`: {problem}")]
    Invalid {
        /// The field path.
        field: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// The request conflicts with the task's current state or an existing task (HTTP 409).
    #[error("task `{id}`: {problem}")]
    Conflict {
        /// The task id.
        id: String,
        /// What conflicts.
        problem: String,
    },
    /// No such task (HTTP 404).
    #[error("task `{id}` not found")]
    NotFound {
        /// The task id.
        id: String,
    },
    /// A tenant's quota refuses the submission (HTTP 429).
    #[error("{0}")]
    QuotaExceeded(String),
    /// The tenant is draining: it takes no new task (HTTP 409).
    #[error("{0}")]
    Draining(String),
    /// The runner is shutting down or a dependency is unavailable (HTTP 503).
    #[error("the runner is unavailable: {0}")]
    Unavailable(String),
    /// The store failed (HTTP 500).
    #[error(transparent)]
    Store(StoreError),
    /// Anything else that should not happen (HTTP 500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<RenderError> for RunnerError {
    /// The configuration's adapters could not be loaded at start-up.
    fn from(error: RenderError) -> Self {
        RunnerError::Internal(format!("cannot load the configured adapters: {error}"))
    }
}

impl From<KubeError> for RunnerError {
    /// The Kubernetes API could not be reached at start-up (restore lists the Jobs).
    fn from(error: KubeError) -> Self {
        RunnerError::Unavailable(error.to_string())
    }
}

impl From<StoreError> for RunnerError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Invalid(v) => RunnerError::Invalid {
                field: v.field,
                problem: v.problem,
            },
            StoreError::Conflict { id, fields } => RunnerError::Conflict {
                problem: format!(
                    "already exists with a different submission (differs in: {}); resubmit the \
                     identical task to get the existing one, or use a new id",
                    fields.join(", ")
                ),
                id,
            },
            StoreError::NotFound { id } => RunnerError::NotFound { id },
            StoreError::Closed => RunnerError::Unavailable("the task store is closed".to_owned()),
            other => RunnerError::Store(other),
        }
    }
}

/// Tuning of a runner: [`Runner::start`] takes the first two from the configuration
/// (`runner.launchConcurrency`, `runner.maxLogFollowers`).
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Launches (adapter call + Job create) running at once. Default 64.
    pub launch_concurrency: usize,
    /// Pods whose log is followed live at once; other pods' logs are captured when they end.
    /// Default 256.
    pub max_log_followers: usize,
    /// Attempts of a transient Kubernetes failure before a launch fails. Default 30.
    pub create_attempts: u32,
}

impl RunnerOptions {
    /// The options the configuration's `runner` section sets; the rest default.
    pub fn from_config(runner: &crate::config::Runner) -> RunnerOptions {
        RunnerOptions {
            launch_concurrency: runner.launch_concurrency as usize,
            max_log_followers: runner.max_log_followers as usize,
            ..RunnerOptions::default()
        }
    }
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            launch_concurrency: 64,
            max_log_followers: 256,
            create_attempts: 30,
        }
    }
}

/// What the runner keeps in memory per in-flight task (a few hundred bytes).
#[derive(Debug)]
struct Tracked {
    job_name: String,
    /// The Job's uid, once created or found (Events refer to it).
    job_uid: Option<String>,
    state: TaskState,
    /// When the task entered `launching` (launch timeout).
    launched: Instant,
    /// When the Job was confirmed to exist (a relist without it means it was deleted).
    confirmed: Option<Instant>,
    /// When the pod started (max duration).
    started: Option<Instant>,
    pod: Option<String>,
    main_container: Option<String>,
    /// Restarts in place of the pod's main container (a new run writes a new log).
    restarts: i32,
    waiting: Option<(ReasonCode, String)>,
    /// An end is being recorded; later observations are ignored.
    finishing: bool,
    follower: Option<logs::Follower>,
    /// What the task's companions report (a Deployment's available replicas).
    progress: Option<String>,
}

#[derive(Debug, Default)]
struct Tracking {
    tasks: HashMap<String, Tracked>,
    jobs: HashMap<String, String>,
}

pub(crate) struct Inner {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Store,
    queue: Queue,
    renderer: Renderer,
    pub(crate) kube: Kube,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) events: Events,
    tenants: Arc<Tenants>,
    options: RunnerOptions,
    tracking: Mutex<Tracking>,
    followers: Arc<Semaphore>,
    launches: Arc<Semaphore>,
    restored: AtomicBool,
    jobs_synced: AtomicBool,
    pods_synced: AtomicBool,
    stop: signal::Sender<bool>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    /// HTTP client to the worker runners of migration routing.
    workers: worker::Workers,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("instance", &self.config.instance)
            .field("namespace", &self.config.namespace)
            .finish_non_exhaustive()
    }
}

/// The runner handle: cheap to clone, shared by the API and the CLI.
#[derive(Clone, Debug)]
pub struct Runner {
    inner: Arc<Inner>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The `Instant` that was `ms_ago` milliseconds ago (restore of stored wall-clock times).
fn instant_of(at_ms: Option<i64>) -> Instant {
    let ago = at_ms.map(|at| (now_ms() - at).max(0) as u64).unwrap_or(0);
    Instant::now()
        .checked_sub(Duration::from_millis(ago))
        .unwrap_or_else(Instant::now)
}

fn to_submitted(record: &TaskRecord) -> SubmittedTask {
    SubmittedTask {
        id: record.id.clone(),
        kind: record.kind.clone(),
        tenant: record.tenant.clone(),
        group_id: record.group_id.clone(),
        datasource: record.datasource.clone(),
        payload: record.payload.clone(),
        labels: record.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
        tags: record.tags.clone(),
        priority: record.priority,
    }
}

impl Runner {
    /// Restores (lists this instance's Jobs, re-attaches, records outcomes, resumes pending),
    /// starts the watchers (one per kind), the launch loop and the reaper.
    pub async fn start(
        config: Arc<Config>,
        store: Store,
        client: ::kube::Client,
    ) -> Result<Runner, RunnerError> {
        let options = RunnerOptions::from_config(&config.runner);
        Runner::start_with(config, store, client, options).await
    }

    /// [`Runner::start`] with explicit tuning.
    pub async fn start_with(
        config: Arc<Config>,
        store: Store,
        client: ::kube::Client,
        options: RunnerOptions,
    ) -> Result<Runner, RunnerError> {
        let runtime = Runtime::new(RuntimeOptions {
            cache_dir: config.cache_dir.clone(),
            ..RuntimeOptions::default()
        })
        .map_err(RenderError::from)?;
        // Loading compiles or reads components: keep it off the async runtime.
        let renderer = {
            let config = (*config).clone();
            tokio::task::spawn_blocking(move || Renderer::new(config, runtime))
                .await
                .map_err(|e| RunnerError::Internal(format!("adapter loading panicked: {e}")))??
        };
        restore_quarantines(&renderer, &store).await?;
        let capacity = match store.get_meta(META_CAPACITY).await? {
            Some(text) => text
                .parse::<usize>()
                .unwrap_or(config.runner.capacity as usize),
            None => config.runner.capacity as usize,
        };
        let tenants = Arc::new(Tenants::new(&config.admin, &config.tenants));
        for tenant in &config.tenants {
            if let Some(text) = store.get_meta(&tenants::meta_key(&tenant.name)).await? {
                tenants.set_switches(&tenant.name, TenantSwitches::from_meta(&text));
            }
        }
        let policy: Box<dyn LaunchPolicy> = if tenants.configured() {
            Box::new(FairShare::new(tenants.rules()))
        } else {
            Box::new(PriorityOrder)
        };
        let queue = Queue::from_store(&store, capacity, policy).await?;
        let (stop, _) = signal::channel(false);
        let metrics = Arc::new(Metrics::new());
        // Events name this host: its pod when it runs in one, else the instance.
        let reporter = std::env::var("POD_NAME")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| config.instance.clone());
        let inner = Arc::new(Inner {
            events: Events::new(
                client.clone(),
                &config.namespace,
                &reporter,
                Arc::clone(&metrics),
            ),
            kube: Kube::new(client, &config.namespace).with_metrics(Arc::clone(&metrics)),
            metrics,
            followers: Arc::new(Semaphore::new(options.max_log_followers)),
            launches: Arc::new(Semaphore::new(options.launch_concurrency.max(1))),
            config,
            store,
            queue,
            renderer,
            tenants,
            options,
            tracking: Mutex::new(Tracking::default()),
            restored: AtomicBool::new(false),
            jobs_synced: AtomicBool::new(false),
            pods_synced: AtomicBool::new(false),
            stop,
            handles: Mutex::new(Vec::new()),
            workers: worker::Workers::new(),
        });
        let relaunch = inner.restore().await?;
        let runner = Runner { inner };
        let inner = &runner.inner;
        inner.spawn_long(watch::watch_jobs(Arc::clone(inner)));
        inner.spawn_long(watch::watch_pods(Arc::clone(inner)));
        inner.spawn_long(companions::watch_deployments(Arc::clone(inner)));
        inner.spawn_long(Arc::clone(inner).launch_loop());
        inner.spawn_long(Arc::clone(inner).timer_loop());
        inner.spawn_long(crate::reaper::run(Arc::clone(inner)));
        inner.spawn_long(Arc::clone(inner).poll_workers());
        for task in relaunch {
            let worker = Arc::clone(inner);
            inner.spawn(async move { worker.launch(task).await });
        }
        inner.restored.store(true, Ordering::SeqCst);
        Ok(runner)
    }

    /// Stores the task (durable before `Ok`) and queues it. The same document again returns the
    /// existing task; a different document with the same id is a conflict.
    ///
    /// With tenants configured, the task's tenant must be one of them, not disabled (an adapter
    /// failed to load) and not draining, and below its `maxQueued`; an identical resubmission
    /// of an existing task is always answered.
    pub async fn submit(&self, task: SubmittedTask) -> Result<Submitted, RunnerError> {
        let span = task_span(&task.id);
        self.submit_task(task).instrument(span).await
    }

    async fn submit_task(&self, task: SubmittedTask) -> Result<Submitted, RunnerError> {
        if self
            .inner
            .config
            .route_for(&task.tenant, &task.kind)
            .is_none()
        {
            return Err(RunnerError::Invalid {
                field: "type".to_owned(),
                problem: format!(
                    "no adapter takes task type `{}`: add it to `routing.byType` or set `routing.default`",
                    task.kind
                ),
            });
        }
        if self.inner.is_stopping() {
            return Err(RunnerError::Unavailable(
                "the runner is shutting down".to_owned(),
            ));
        }
        let _admission = self.admit(&task).await?;
        let submitted = self
            .inner
            .store
            .submit(NewTask::from_submitted(&task))
            .await?;
        if submitted.created {
            tracing::info!(tenant = %task.tenant, r#type = %task.kind, "task submitted");
            self.inner
                .queue
                .push(QueuedTask::from(&submitted.task).with_snapshot(&submitted.task));
        }
        Ok(submitted)
    }

    /// The tenant checks of [`Runner::submit`]; `None` when tenants are not configured or the
    /// task exists already (the store answers the resubmission).
    async fn admit(
        &self,
        task: &SubmittedTask,
    ) -> Result<Option<crate::queue::Admission<'_>>, RunnerError> {
        let tenants = &self.inner.tenants;
        if !tenants.configured() {
            return Ok(None);
        }
        let Some(config) = tenants.get(&task.tenant) else {
            return Err(RunnerError::Invalid {
                field: "tenant".to_owned(),
                problem: format!(
                    "no tenant `{}` is configured; configured tenants: {}",
                    task.tenant,
                    tenants
                        .configs()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        };
        let exists = || async { self.inner.store.get(&task.id).await.map(|r| r.is_some()) };
        if let Some(disabled) = self.inner.renderer.tenant_disabled(&task.tenant) {
            return Err(RunnerError::Unavailable(disabled.to_string()));
        }
        if tenants.switches(&task.tenant).draining && !exists().await? {
            return Err(RunnerError::Draining(format!(
                "tenant `{}` is draining: it takes no new task until an admin resumes it \
                 (POST /v1/tenants/{}/resume)",
                task.tenant, task.tenant
            )));
        }
        let max_queued = config.quotas.max_queued.map(|n| n as usize);
        match self.inner.queue.admit(&task.tenant, max_queued) {
            Ok(admission) => Ok(Some(admission)),
            Err(_) if exists().await? => Ok(None),
            Err(waiting) => Err(RunnerError::QuotaExceeded(format!(
                "tenant `{}` has {waiting} tasks queued, its quota `tenants.{}.quotas.maxQueued` \
                 is {}: retry when some have started, or ask the operator to raise the quota",
                task.tenant,
                task.tenant,
                max_queued.unwrap_or(0)
            ))),
        }
    }

    /// The configured tenants (authentication, quotas, switches).
    pub fn tenants(&self) -> &Arc<Tenants> {
        &self.inner.tenants
    }

    /// Sets a tenant's hold and drain switches: persisted in the store's meta (they survive a
    /// restart), applied at once (lifting a hold wakes the launcher).
    pub async fn set_tenant_switches(
        &self,
        tenant: &str,
        switches: TenantSwitches,
    ) -> Result<(), RunnerError> {
        if self.inner.tenants.get(tenant).is_none() {
            return Err(RunnerError::NotFound {
                id: tenant.to_owned(),
            });
        }
        self.inner
            .store
            .set_meta(&tenants::meta_key(tenant), &switches.to_meta())
            .await?;
        self.inner.tenants.set_switches(tenant, switches);
        self.inner.queue.rules_changed();
        Ok(())
    }

    /// A tenant's queued and in-flight counts (rebuilt from the store on start).
    pub fn tenant_usage(&self, tenant: &str) -> crate::queue::TenantUsage {
        self.inner.queue.tenant_usage(tenant)
    }

    /// Reloads an adapter from the configuration (its component read anew), clearing its
    /// quarantine and re-enabling a tenant it disabled.
    pub async fn reload_adapter(&self, name: &str) -> Result<(), RenderError> {
        let inner = Arc::clone(&self.inner);
        let name = name.to_owned();
        let reloading = name.clone();
        let done = tokio::task::spawn_blocking(move || inner.renderer.reload(&reloading))
            .await
            .map_err(|e| {
                RenderError::Adapter(crate::adapters::Error::Engine(format!(
                    "reloading panicked: {e}"
                )))
            })?;
        self.inner.queue.rules_changed();
        if done.is_ok()
            && let Err(error) = self
                .inner
                .store
                .set_meta(&Quarantine::meta_key(&name), "")
                .await
        {
            tracing::error!(adapter = %name, %error, "cannot store that the quarantine ended; a restart would bring it back");
        }
        done
    }

    /// Cancels a task: a pending task leaves the queue; an in-flight task is stored `canceled`,
    /// then its Job is deleted (background propagation; `Force` = grace period 0).
    pub async fn cancel(&self, id: &str, mode: CancelMode) -> Result<TaskRecord, RunnerError> {
        let inner = &self.inner;
        let mut record = inner
            .store
            .get(id)
            .await?
            .ok_or_else(|| RunnerError::NotFound { id: id.to_owned() })?;
        loop {
            if record.state.is_terminal() {
                return Err(RunnerError::Conflict {
                    id: id.to_owned(),
                    problem: format!(
                        "the task already ended ({}); nothing to cancel",
                        record.state
                    ),
                });
            }
            let change = Transition::new(id, record.state, TaskState::Canceled).reason(
                ReasonCode::CanceledByUser,
                match mode {
                    CancelMode::Graceful => "canceled by user",
                    CancelMode::Force => "canceled by user (forced)",
                },
            );
            match inner.store.transition(change).await {
                Ok(updated) => {
                    let job = updated.job_name.clone();
                    inner.queue.remove_pending(id);
                    let tracked = inner.untrack(id);
                    inner.queue.finish(id);
                    inner.metrics.task_ended(&updated);
                    tracing::info!(parent: &task_span(id), forced = mode == CancelMode::Force, "task canceled");
                    if let Some(job) = job.as_ref().filter(|_| record.state.is_in_flight()) {
                        inner.events.canceled(
                            &JobRef {
                                name: job.clone(),
                                uid: tracked.and_then(|t| t.job_uid),
                            },
                            match mode {
                                CancelMode::Graceful => "canceled by user",
                                CancelMode::Force => "canceled by user (forced)",
                            },
                        );
                    }
                    if let Some(job) = job.filter(|_| record.state.is_in_flight()) {
                        if let Err(error) =
                            inner.kube.delete_job(&job, mode == CancelMode::Force).await
                        {
                            tracing::warn!(task = id, %error, "cancel: Job not deleted yet; the reaper retries");
                        }
                        companions::delete(inner, id, &job).await;
                    }
                    return Ok(updated);
                }
                Err(StoreError::StateMismatch { .. }) => {
                    record = inner
                        .store
                        .get(id)
                        .await?
                        .ok_or_else(|| RunnerError::NotFound { id: id.to_owned() })?;
                }
                Err(other) => return Err(other.into()),
            }
        }
    }

    /// The current capacity (most Jobs in flight).
    pub fn capacity(&self) -> usize {
        self.inner.queue.capacity()
    }

    /// Changes the capacity: persisted in the store's meta, applied at once. Lowering it never
    /// stops running tasks; it holds back launches until enough slots free up.
    pub async fn set_capacity(&self, n: usize) -> Result<(), RunnerError> {
        if n == 0 {
            return Err(RunnerError::Invalid {
                field: "capacity".to_owned(),
                problem: "must be at least 1".to_owned(),
            });
        }
        self.inner
            .store
            .set_meta(META_CAPACITY, &n.to_string())
            .await?;
        self.inner.queue.set_capacity(n);
        Ok(())
    }

    /// The task store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The adapters and configuration tasks are rendered with (`/v1/adapters`, `/v1/render`).
    pub fn renderer(&self) -> &Renderer {
        &self.inner.renderer
    }

    /// The runner's metrics (`/metrics` renders them).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Writes Events on this runner's Jobs (adapter used, policy refusals, timeouts).
    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    /// The launch queue (depth and slots in use, for metrics).
    pub fn queue(&self) -> &Queue {
        &self.inner.queue
    }

    /// What an in-flight task's companions report, e.g. `Deployment ts-wkr-x: 2/3 available`
    /// for a Teraslice execution's workers; `None` when the task has no watched companion or
    /// is not in flight. Kept in memory only: it is seen again after a restart once the watch
    /// has listed.
    pub fn progress(&self, id: &str) -> Option<String> {
        self.inner
            .lock()
            .tasks
            .get(id)
            .and_then(|t| t.progress.clone())
    }

    /// Tasks currently tracked in flight (launching or running).
    pub fn tracked(&self) -> usize {
        self.inner.lock().tasks.len()
    }

    /// True once restore is done and both watches are synced (`/readyz`).
    pub fn is_ready(&self) -> bool {
        self.inner.restored.load(Ordering::SeqCst)
            && self.inner.jobs_synced.load(Ordering::SeqCst)
            && self.inner.pods_synced.load(Ordering::SeqCst)
    }

    /// Stops the launch loop, the watchers, the timers and the reaper, then sends the Events
    /// still queued. Work in progress stops at its next await; what was stored stays, and the
    /// next start carries on from there.
    pub async fn shutdown(self) {
        let _ = self.inner.stop.send(true);
        let handles =
            std::mem::take(&mut *self.inner.handles.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in &handles {
            handle.abort();
        }
        for handle in handles {
            let _ = handle.await;
        }
        let followers: Vec<logs::Follower> = {
            let mut tracking = self.inner.lock();
            tracking
                .tasks
                .values_mut()
                .filter_map(|t| t.follower.take())
                .collect()
        };
        for follower in followers {
            follower.abort();
        }
        self.inner.events.close().await;
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Tracking> {
        self.tracking.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Spawns a loop that lives as long as the runner.
    fn spawn_long<F: std::future::Future<Output = ()> + Send + 'static>(&self, future: F) {
        let handle = tokio::spawn(future);
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }

    /// Spawns one piece of work that stops when the runner shuts down.
    fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, future: F) {
        let mut stop = self.stop.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                () = future => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        });
    }

    fn untrack(&self, id: &str) -> Option<Tracked> {
        let mut tracking = self.lock();
        let tracked = tracking.tasks.remove(id)?;
        tracking.jobs.remove(&tracked.job_name);
        Some(tracked)
    }

    fn track(&self, id: &str, job_name: &str, state: TaskState, record: &TaskRecord) {
        let mut tracking = self.lock();
        tracking.jobs.insert(job_name.to_owned(), id.to_owned());
        tracking.tasks.insert(
            id.to_owned(),
            Tracked {
                job_name: job_name.to_owned(),
                job_uid: None,
                state,
                launched: instant_of(record.launched_at_ms),
                confirmed: None,
                started: record.started_at_ms.map(|ms| instant_of(Some(ms))),
                pod: None,
                main_container: None,
                restarts: 0,
                waiting: None,
                finishing: false,
                follower: None,
                progress: None,
            },
        );
    }

    /// Restore: re-attach to this instance's Jobs and decide what to do with every unfinished
    /// task. Returns the `launching` tasks whose Job does not exist (re-launched by name).
    async fn restore(&self) -> Result<Vec<QueuedTask>, RunnerError> {
        let jobs = k8s::retry(self.options.create_attempts, || {
            self.kube.list_jobs(&self.config.instance)
        })
        .await?;
        let mut by_task: HashMap<String, &k8s_openapi::api::batch::v1::Job> = HashMap::new();
        for job in &jobs {
            if let Some(id) = job
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_TASK_ID))
            {
                by_task.insert(id.clone(), job);
            }
        }
        let mut relaunch = Vec::new();
        for record in self.store.non_terminal().await? {
            match record.state {
                TaskState::Pending => {}
                TaskState::Running if worker::worker_of(&record).is_some() => {
                    // Forwarded to a worker runner: its status loop carries on with it.
                    self.queue.finish(&record.id);
                }
                TaskState::Launching if worker::worker_of(&record).is_some() => {
                    // Crashed while forwarding: forward again (harmless when it arrived).
                    relaunch.push(QueuedTask::from(&record));
                }
                TaskState::Launching | TaskState::Running => {
                    let job_name = record
                        .job_name
                        .clone()
                        .unwrap_or_else(|| taskpod_adapter_sdk::names::job_name(&record.id));
                    if let Some(job) = by_task.remove(&record.id) {
                        self.track(&record.id, &job_name, record.state, &record);
                        if let Some(t) = self.lock().tasks.get_mut(&record.id) {
                            t.confirmed = Some(Instant::now());
                            t.job_uid = job.metadata.uid.clone();
                        }
                    } else if record.state == TaskState::Launching {
                        relaunch.push(QueuedTask::from(&record));
                    } else {
                        let change = Transition::new(
                            &record.id,
                            TaskState::Running,
                            TaskState::Failed,
                        )
                        .reason(
                            ReasonCode::JobDeleted,
                            format!(
                                "Job {job_name} was deleted outside taskpod while the host was down"
                            ),
                        );
                        match self.store.transition(change).await {
                            Ok(_) | Err(StoreError::StateMismatch { .. }) => {}
                            Err(other) => return Err(other.into()),
                        }
                        self.queue.finish(&record.id);
                    }
                }
                _ => {}
            }
        }
        // Jobs left: tasks that ended (or are unknown). Canceled or host-failed tasks whose Job
        // still runs have it deleted; unknown ones are left alone.
        for (id, job) in by_task {
            let name = job.metadata.name.clone().unwrap_or_default();
            match self.store.get(&id).await? {
                Some(record) if record.state.is_terminal() && !status::job_finished(job) => {
                    if let Err(error) = self.kube.delete_job(&name, false).await {
                        tracing::warn!(task = %id, %error, "restore: Job of an ended task not deleted; the reaper retries");
                    }
                }
                Some(_) => {}
                None => {
                    tracing::info!(job = %name, task = %id, "restore: Job of an unknown task left alone")
                }
            }
        }
        Ok(relaunch)
    }

    async fn launch_loop(self: Arc<Self>) {
        loop {
            let Ok(permit) = Arc::clone(&self.launches).acquire_owned().await else {
                return;
            };
            let task = self.queue.next().await;
            let worker = Arc::clone(&self);
            self.spawn(async move {
                worker.launch(task).await;
                drop(permit);
            });
        }
    }

    /// Launches one task that holds an in-flight slot: adapter, contract, `pending → launching`
    /// stored, then the Job and its companions created (idempotently, by name).
    async fn launch(self: Arc<Self>, task: QueuedTask) {
        let span = task_span(&task.id);
        self.launch_task(task).instrument(span).await
    }

    async fn launch_task(self: Arc<Self>, mut task: QueuedTask) {
        let id = task.id.clone();
        // The record as submitted saves a read; a change since (a cancel racing this launch)
        // is caught by the compare-and-set `pending → launching` below.
        let snapshot = task.snapshot.take().map(Arc::unwrap_or_clone);
        let read = match snapshot {
            Some(record) => Ok(Some(record)),
            None => self.store.get(&id).await,
        };
        let record = match read {
            Ok(Some(record)) => record,
            Ok(None) => {
                self.queue.finish(&id);
                return;
            }
            Err(error) => {
                tracing::error!(task = %id, %error, "launch: cannot read the task; it stays queued");
                self.queue.finish(&id);
                self.queue.push(task);
                return;
            }
        };
        if !matches!(record.state, TaskState::Pending | TaskState::Launching) {
            self.queue.finish(&id);
            return;
        }
        // Migration routing: sent to another task runner instead of becoming a Job (a task
        // stored as forwarded keeps going there even if the routing changed since).
        let forwarded_to = worker::worker_of(&record).map(str::to_owned);
        let worker = match &forwarded_to {
            Some(name) => self
                .config
                .routing
                .workers
                .get_key_value(name.as_str())
                .map(|(n, b)| (n.as_str(), b)),
            None if record.state == TaskState::Pending => self.config.worker_for(&record.kind),
            None => None,
        };
        if let Some((name, backend)) = worker {
            let (name, backend) = (name.to_owned(), backend.clone());
            self.forward(record, &name, &backend).await;
            return;
        }
        let adapter_name = self
            .config
            .route_for(&record.tenant, &record.kind)
            .map_or_else(|| "none".to_owned(), |b| b.name.clone());
        let called = Instant::now();
        let rendered = self
            .renderer
            .render_for_launch(&to_submitted(&record))
            .await;
        self.metrics
            .adapter_call(&adapter_name, called.elapsed(), rendered.as_ref().err());
        if rendered.is_err() {
            self.store_new_quarantines().await;
        }
        let (manifests, adapter) = match rendered {
            Ok(rendered) => rendered,
            Err(error) => {
                tracing::warn!(adapter = %adapter_name, %error, "the adapter failed; the task fails");
                let code = match &error {
                    RenderError::Policy(refusal) => {
                        self.events.policy_refused(
                            &JobRef {
                                name: taskpod_adapter_sdk::names::job_name(&record.id),
                                uid: None,
                            },
                            &refusal.adapter,
                            &refusal.to_string(),
                        );
                        ReasonCode::Policy
                    }
                    _ => ReasonCode::AdapterError,
                };
                self.fail_untracked(&record, code, error.to_string()).await;
                return;
            }
        };
        let job_name = manifests.job.metadata.name.clone().unwrap_or_default();
        let mut state = record.state;
        if state == TaskState::Pending {
            let change = Transition::new(&id, TaskState::Pending, TaskState::Launching)
                .job_name(&job_name)
                .adapter(adapter.clone());
            match self.store.transition(change).await {
                Ok(updated) => {
                    self.metrics.task_launched(&updated);
                    state = TaskState::Launching;
                }
                Err(error) => {
                    if !matches!(error, StoreError::StateMismatch { .. }) {
                        tracing::error!(task = %id, %error, "launch: cannot store launching");
                    }
                    self.queue.finish(&id);
                    return;
                }
            }
        }
        self.track(&id, &job_name, state, &record);
        if record.state == TaskState::Pending
            && let Some(t) = self.lock().tasks.get_mut(&id)
        {
            t.launched = Instant::now();
        }
        let created = k8s::retry(self.options.create_attempts, || {
            self.kube.create_job(&manifests.job, &id)
        })
        .await;
        let uid = match created {
            Ok(created) => {
                tracing::info!(job = %job_name, existing = matches!(created, k8s::Created::Existing { .. }), "Job created");
                if matches!(created, k8s::Created::New { .. }) {
                    self.events.adapted(
                        &JobRef {
                            name: job_name.clone(),
                            uid: Some(created.uid().to_owned()),
                        },
                        &adapter_name,
                        &adapter.name,
                        &adapter.version,
                        &adapter.digest,
                    );
                }
                if let Some(t) = self.lock().tasks.get_mut(&id) {
                    t.job_uid = Some(created.uid().to_owned());
                }
                created.uid().to_owned()
            }
            Err(error) => {
                self.finish(
                    &id,
                    status::Outcome {
                        succeeded: false,
                        code: ReasonCode::LaunchError,
                        message: error.to_string(),
                        exit_code: None,
                    },
                    false,
                )
                .await;
                return;
            }
        };
        for companion in &manifests.companions {
            let result = k8s::retry(self.options.create_attempts, || {
                self.kube.create_companion(companion, &job_name, &uid)
            })
            .await;
            if let Err(error) = result {
                self.finish(
                    &id,
                    status::Outcome {
                        succeeded: false,
                        code: ReasonCode::LaunchError,
                        message: error.to_string(),
                        exit_code: None,
                    },
                    true,
                )
                .await;
                return;
            }
        }
        if let Some(t) = self.lock().tasks.get_mut(&id) {
            t.confirmed = Some(Instant::now());
        }
    }

    /// Stores the quarantines the renderer started, so that they hold across a restart.
    async fn store_new_quarantines(&self) {
        for (name, quarantine) in self.renderer.take_new_quarantines() {
            let value = serde_json::to_string(&quarantine).unwrap_or_default();
            if let Err(error) = self
                .store
                .set_meta(&Quarantine::meta_key(&name), &value)
                .await
            {
                tracing::error!(adapter = %name, %error, "cannot store the adapter's quarantine; a restart would lift it");
            }
        }
    }

    /// Fails a task that never got a Job (adapter or policy refusal).
    async fn fail_untracked(&self, record: &TaskRecord, code: ReasonCode, message: String) {
        let change =
            Transition::new(&record.id, record.state, TaskState::Failed).reason(code, message);
        match self.store.transition(change).await {
            Ok(updated) => {
                self.metrics.task_ended(&updated);
                tracing::info!(state = %updated.state, reason = code.as_str(), "task ended");
            }
            Err(StoreError::StateMismatch { .. }) => {}
            Err(error) => {
                tracing::error!(task = %record.id, %error, "cannot store the failed launch")
            }
        }
        self.queue.finish(&record.id);
    }

    /// Stores `launching → running` once the pod started.
    async fn mark_running(&self, id: &str) {
        self.mark_running_task(id).instrument(task_span(id)).await
    }

    async fn mark_running_task(&self, id: &str) {
        let change = Transition::new(id, TaskState::Launching, TaskState::Running);
        match self.store.transition(change).await {
            Ok(updated) => {
                self.metrics.task_started(&updated);
                tracing::info!(pod = ?updated.job_name, "pod started");
                if let Some(t) = self.lock().tasks.get_mut(id)
                    && t.state == TaskState::Launching
                {
                    t.state = TaskState::Running;
                }
            }
            Err(StoreError::StateMismatch { .. }) => {}
            Err(error) => tracing::error!(task = id, %error, "cannot store running"),
        }
    }

    /// Records a task's end: captures the main container's log, stores the terminal state
    /// (compare-and-set from what is stored), frees the slot, and deletes the Job when
    /// `delete_job` (host-decided ends: launch timeout, max duration, pod deleted).
    async fn finish(&self, id: &str, outcome: status::Outcome, delete_job: bool) {
        self.finish_task(id, outcome, delete_job)
            .instrument(task_span(id))
            .await
    }

    async fn finish_task(&self, id: &str, outcome: status::Outcome, delete_job: bool) {
        let (mut pod, mut container, mut restarts, follower, job_name, job_uid, mut from) = {
            let mut tracking = self.lock();
            let Some(t) = tracking.tasks.get_mut(id) else {
                return;
            };
            if t.finishing {
                return;
            }
            t.finishing = true;
            (
                t.pod.clone(),
                t.main_container.clone(),
                t.restarts,
                t.follower.take(),
                t.job_name.clone(),
                t.job_uid.clone(),
                t.state,
            )
        };
        let job = JobRef {
            name: job_name.clone(),
            uid: job_uid,
        };
        match outcome.code {
            ReasonCode::LaunchTimeout => self.events.launch_timeout(&job, &outcome.message),
            ReasonCode::MaxDuration if delete_job => {
                self.events.max_duration(&job, &outcome.message)
            }
            _ => {}
        }
        let mut outcome = outcome;
        // The pod may not have been seen (the Job's end observed first, or the task re-attached
        // after a restart): find it, for the log and, when the Job only says "failed", for the
        // main container's exit code and reason.
        let generic_failure = !outcome.succeeded && outcome.code == ReasonCode::JobFailed;
        if (pod.is_none() || generic_failure)
            && let Some(found) = self.pod_of(&job_name, pod.as_deref()).await
        {
            let view = status::pod_view(&found, self.config.runner.main_container.as_deref());
            if generic_failure && let Some(better) = view.outcome {
                outcome = better;
            }
            restarts = status::restart_count(&found, &view.main_container);
            pod = found.metadata.name.clone();
            container = Some(view.main_container);
        }
        if let (Some(pod), Some(container)) = (pod, container) {
            logs::capture(self, id, &pod, &container, restarts, follower).await;
        } else if let Some(follower) = follower {
            follower.abort();
        }
        let (to, code) = if outcome.succeeded {
            (TaskState::Succeeded, ReasonCode::Completed)
        } else {
            (TaskState::Failed, outcome.code)
        };
        // The main container ran (it has an exit code) but its start was never observed (the
        // host was down, or a relist showed only the end): record `running` first, so the
        // history shows every state the task went through.
        if from == TaskState::Launching && outcome.exit_code.is_some() {
            let change = Transition::new(id, TaskState::Launching, TaskState::Running);
            match self.store.transition(change).await {
                Ok(updated) => {
                    self.metrics.task_started(&updated);
                    from = TaskState::Running;
                }
                Err(StoreError::StateMismatch { actual, .. }) => from = actual,
                Err(error) => tracing::warn!(task = id, %error, "cannot store running"),
            }
        }
        let mut ended = from.is_terminal();
        while !ended {
            let mut change = Transition::new(id, from, to).reason(code, outcome.message.clone());
            if let Some(exit) = outcome.exit_code {
                change = change.exit_code(exit);
            }
            match self.store.transition(change).await {
                Ok(updated) => {
                    self.metrics.task_ended(&updated);
                    tracing::info!(state = %updated.state, reason = code.as_str(), "task ended");
                    ended = true;
                }
                Err(StoreError::StateMismatch { actual, .. }) => {
                    from = actual;
                    ended = actual.is_terminal();
                }
                Err(error) => {
                    tracing::error!(task = id, %error, "cannot store the task's end; retrying");
                    if self.is_stopping() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        self.untrack(id);
        self.queue.finish(id);
        if delete_job {
            if let Err(error) = self.kube.delete_job(&job_name, false).await {
                tracing::warn!(task = id, %error, "Job not deleted yet; the reaper retries");
            }
            companions::delete(self, id, &job_name).await;
        }
    }

    /// The pod of Job `job`: `known` by name, else the newest pod carrying the Job's label.
    /// `None` when it is gone or cannot be read (transient errors are retried).
    async fn pod_of(
        &self,
        job: &str,
        known: Option<&str>,
    ) -> Option<k8s_openapi::api::core::v1::Pod> {
        let attempts = self.options.create_attempts.min(10);
        let found = match known {
            Some(name) => k8s::retry(attempts, || self.kube.get_pod(name)).await,
            None => k8s::retry(attempts, || self.kube.pods_of_job(job))
                .await
                .map(|pods| {
                    pods.into_iter()
                        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
                }),
        };
        match found {
            Ok(pod) => pod,
            Err(error) => {
                tracing::warn!(job, %error, "cannot read the pod of a finished Job");
                None
            }
        }
    }

    /// One timer for every task: launch timeout and max duration.
    async fn timer_loop(self: Arc<Self>) {
        let runner = &self.config.runner;
        let launch_timeout = runner.k8s_job_launch_timeout.0;
        let max_duration = runner.max_task_duration.0;
        let tick = launch_timeout
            .min(max_duration)
            .div_f64(4.0)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let mut timed_out = Vec::new();
            let mut overdue = Vec::new();
            {
                let tracking = self.lock();
                for (id, t) in &tracking.tasks {
                    if t.finishing {
                        continue;
                    }
                    match (t.state, t.started) {
                        (TaskState::Launching, None) if t.launched.elapsed() > launch_timeout => {
                            timed_out.push((
                                id.clone(),
                                t.pod.clone(),
                                t.waiting.clone(),
                                t.job_name.clone(),
                            ));
                        }
                        (_, Some(started)) if started.elapsed() > max_duration => {
                            overdue.push(id.clone());
                        }
                        _ => {}
                    }
                }
            }
            for (id, pod, waiting, job) in timed_out {
                let worker = Arc::clone(&self);
                self.spawn(async move {
                    let why = match waiting {
                        Some((_, message)) => Some(message),
                        None => {
                            let subject = pod.unwrap_or(job);
                            worker.kube.latest_event(&subject).await.ok().flatten()
                        }
                    };
                    let message = format!(
                        "the pod did not start within the launch timeout ({}s): {}",
                        launch_timeout.as_secs_f64(),
                        why.unwrap_or_else(
                            || "no pod was created and no event explains why".to_owned()
                        )
                    );
                    let outcome = status::Outcome {
                        succeeded: false,
                        code: ReasonCode::LaunchTimeout,
                        message,
                        exit_code: None,
                    };
                    worker.finish(&id, outcome, true).await;
                });
            }
            for id in overdue {
                let worker = Arc::clone(&self);
                self.spawn(async move {
                    let outcome = status::Outcome {
                        succeeded: false,
                        code: ReasonCode::MaxDuration,
                        message: format!(
                            "the task ran longer than its maximum duration ({}s)",
                            max_duration.as_secs_f64()
                        ),
                        exit_code: None,
                    };
                    worker.finish(&id, outcome, true).await;
                });
            }
        }
    }
}

/// Puts back the adapter quarantines stored before a restart; one whose adapter is gone or
/// whose component changed since is lifted (and forgotten).
async fn restore_quarantines(renderer: &Renderer, store: &Store) -> Result<(), RunnerError> {
    for entry in renderer.adapter_entries() {
        let name = entry.adapter.name().to_owned();
        let key = Quarantine::meta_key(&name);
        let Some(text) = store.get_meta(&key).await? else {
            continue;
        };
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<Quarantine>(&text) {
            Ok(quarantine) if renderer.restore_quarantine(&name, &quarantine) => {
                tracing::warn!(adapter = %name, failures = quarantine.failures, last = %quarantine.last,
                    "adapter still quarantined from before the restart: its tasks fail until it is reloaded");
            }
            Ok(_) => {
                tracing::info!(adapter = %name, "adapter quarantine lifted: its component changed since");
                store.set_meta(&key, "").await?;
            }
            Err(error) => {
                tracing::warn!(adapter = %name, %error, "stored adapter quarantine unreadable; lifted");
                store.set_meta(&key, "").await?;
            }
        }
    }
    Ok(())
}
