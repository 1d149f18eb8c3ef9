//! The Job controller (kube-controller-manager's `job-controller`): creates a Job's pods from its
//! template with a controller ownerReference, keeps `parallelism` of them active until
//! `completions` succeed (NonIndexed) or every completion index has succeeded (Indexed, with the
//! completion-index annotation, label, hostname and `JOB_COMPLETION_INDEX`), replaces failed pods
//! with exponential back-off up to `backoffLimit` (or `backoffLimitPerIndex` per index), applies
//! `podFailurePolicy`, `activeDeadlineSeconds` and `suspend`, and writes the status as Kubernetes
//! ≥ 1.31 does: counters, `startTime`, `completionTime`, the interim `SuccessCriteriaMet` /
//! `FailureTarget` condition while remaining pods terminate, then `Complete` / `Failed`.
//!
//! Finished pods are counted exactly once per pod uid, in memory (a real controller uses the
//! `batch.kubernetes.io/job-tracking` pod finalizer for that; the simulated one does not add it).
//! Like the real controller it keeps "expectations" of the pods it created or deleted and does
//! not act on a Job again until its watch has observed them, so that no pod is created twice.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use rand::Rng;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::cache::{Change, ObjKey, key_of};
use super::events::EventType;
use super::owned::OwnedPods;
use super::queue::{WorkQueue, spawn_workers};
use super::{Context, ControllerError, from_time, is_terminal, lock, pod_condition_true, to_time};

const COMPONENT: &str = "job-controller";
/// Annotation and label carrying a pod's completion index.
pub(crate) const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// At most this many pods are created or deleted per sync, as the real controller's burst.
const MAX_BATCH: usize = 500;

/// What the Job is heading to once its remaining pods have terminated.
#[derive(Clone, Debug, PartialEq)]
struct Target {
    complete: bool,
    reason: String,
    message: String,
}

/// In-memory bookkeeping of one Job (by uid). Counters here are authoritative: the cached Job
/// may lag behind the controller's own status writes.
#[derive(Debug, Default)]
struct JobState {
    succeeded: i32,
    failed: i32,
    counted: HashSet<String>,
    suspend_deleted: HashSet<String>,
    succeeded_indexes: BTreeSet<i32>,
    failed_indexes: BTreeSet<i32>,
    index_failures: HashMap<i32, i32>,
    last_failure: Option<Instant>,
    start_time: Option<DateTime<Utc>>,
    target: Option<Target>,
    finished: bool,
    suspended: bool,
}

#[derive(Debug)]
struct Inner {
    ctx: Arc<Context>,
    queue: WorkQueue<ObjKey>,
    timer: Mutex<Option<JoinHandle<()>>>,
    /// The pods of each Job (by uid) and what it expects of them.
    pods: OwnedPods,
    /// Last versions of deleted pods, by Job uid, until the next sync counts them.
    tombstones: Mutex<HashMap<String, Vec<Arc<Pod>>>>,
    states: Mutex<HashMap<String, JobState>>,
}

/// The Job controller (cheap to clone).
#[derive(Clone, Debug)]
pub(crate) struct JobController {
    inner: Arc<Inner>,
}

/// The controlling Job of a pod: (uid, name).
fn controller_job(pod: &Pod) -> Option<(String, String)> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "Job" && o.api_version == "batch/v1")
        .map(|o| (o.uid.clone(), o.name.clone()))
}

/// The completion index of a pod (annotation first, then label).
pub(crate) fn pod_index(pod: &Pod) -> Option<i32> {
    let from = |m: Option<&std::collections::BTreeMap<String, String>>| {
        m.and_then(|m| m.get(COMPLETION_INDEX))
            .and_then(|v| v.parse::<i32>().ok())
    };
    from(pod.metadata.annotations.as_ref()).or_else(|| from(pod.metadata.labels.as_ref()))
}

/// `[0,1,2,4]` → `"0-2,4"` (the format of `completedIndexes` and `failedIndexes`).
pub(crate) fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(if end == start {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

fn parse_indexes(s: Option<&str>) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in s.unwrap_or_default().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    set.extend(a..=b);
                }
            }
            None => {
                if let Ok(i) = part.parse() {
                    set.insert(i);
                }
            }
        }
    }
    set
}

/// Five characters from Kubernetes' name-suffix alphabet (no vowels, no confusable digits).
pub(crate) fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// `prefix` truncated to 58 characters plus a random suffix, as `generateName` does.
fn generated_name(prefix: &str) -> String {
    let mut p: String = prefix.chars().take(58).collect();
    p.push_str(&random_suffix());
    p
}

fn condition_true(status: &JobStatus, type_: &str) -> bool {
    status
        .conditions
        .as_ref()
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

fn find_condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Sets a condition, keeping its transition time when its status does not change.
fn set_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) {
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.status = status.to_owned();
            c.last_transition_time = Some(to_time(now));
            c.last_probe_time = Some(to_time(now));
        }
        c.reason = Some(reason.to_owned());
        c.message = Some(message.to_owned());
    } else {
        conditions.push(JobCondition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            last_probe_time: Some(to_time(now)),
            last_transition_time: Some(to_time(now)),
        });
    }
}

/// The exit code and container of the first container that terminated with a non-zero code.
fn failed_containers(pod: &Pod) -> Vec<(String, i32)> {
    let status = pod.status.as_ref();
    status
        .and_then(|s| s.init_container_statuses.as_ref())
        .into_iter()
        .flatten()
        .chain(
            status
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten(),
        )
        .filter_map(|cs| {
            let code = cs.state.as_ref()?.terminated.as_ref()?.exit_code;
            (code != 0).then(|| (cs.name.clone(), code))
        })
        .collect()
}

/// What `podFailurePolicy` says about a failed pod: the action and the message.
fn pod_failure_action(job: &Job, pod: &Pod) -> Option<(String, String)> {
    let policy = job.spec.as_ref()?.pod_failure_policy.as_ref()?;
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    for (i, rule) in policy.rules.iter().enumerate() {
        if let Some(req) = &rule.on_exit_codes {
            for (container, code) in failed_containers(pod) {
                if req.container_name.as_ref().is_some_and(|n| *n != container) {
                    continue;
                }
                let listed = req.values.contains(&code);
                let matched = match req.operator.as_str() {
                    "In" => listed,
                    "NotIn" => !listed,
                    _ => false,
                };
                if matched {
                    return Some((
                        rule.action.clone(),
                        format!(
                            "Container {container} for pod {ns}/{name} failed with exit code \
                             {code} matching {} rule at index {i}",
                            rule.action
                        ),
                    ));
                }
            }
        }
        if let Some(patterns) = &rule.on_pod_conditions {
            let conds = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .cloned()
                .unwrap_or_default();
            for p in patterns {
                let want = p.status.as_deref().unwrap_or("True");
                if conds.iter().any(|c| c.type_ == p.type_ && c.status == want) {
                    return Some((
                        rule.action.clone(),
                        format!(
                            "Pod {ns}/{name} has condition {} matching {} rule at index {i}",
                            p.type_, rule.action
                        ),
                    ));
                }
            }
        }
    }
    None
}

impl JobController {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        let (queue, timer) = WorkQueue::new(&ctx);
        Self {
            inner: Arc::new(Inner {
                ctx,
                queue,
                timer: Mutex::new(Some(timer)),
                pods: OwnedPods::default(),
                tombstones: Mutex::new(HashMap::new()),
                states: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Job watch handler.
    pub(crate) fn on_job(&self, change: &Change<Job>) {
        let job = change.object();
        if let Change::Deleted(job) = change
            && let Some(uid) = job.uid()
        {
            lock(&self.inner.states).remove(&uid);
            self.inner.pods.expectations.forget(&uid);
            lock(&self.inner.tombstones).remove(&uid);
            return;
        }
        self.inner.queue.add(key_of(job.as_ref()));
    }

    /// Pod watch handler: index by Job, observe expectations, queue the Job.
    pub(crate) fn on_pod(&self, change: &Change<Pod>) {
        let pod = change.object();
        let Some((job_uid, job_name)) = controller_job(pod) else {
            return;
        };
        self.inner.pods.observe(&job_uid, change);
        if let Change::Deleted(last) = change {
            // Keep the last version for the next sync of a Job that still exists (pods
            // collected after their Job was deleted need no counting).
            let owner = (pod.namespace().unwrap_or_default(), job_name.clone());
            let job_alive = self.inner.ctx.caches.jobs.get(&owner).is_some_and(|j| {
                j.uid().as_deref() == Some(job_uid.as_str())
                    && j.metadata.deletion_timestamp.is_none()
            });
            if job_alive {
                lock(&self.inner.tombstones)
                    .entry(job_uid)
                    .or_default()
                    .push(last.clone());
            }
        }
        self.inner
            .queue
            .add((pod.namespace().unwrap_or_default(), job_name));
    }

    /// Starts the workers.
    pub(crate) fn run(&self, workers: usize) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<JoinHandle<()>> = lock(&self.inner.timer).take().into_iter().collect();
        let this = self.clone();
        tasks.extend(spawn_workers(
            "job",
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

    fn initial_state(job: &Job) -> JobState {
        let status = job.status.clone().unwrap_or_default();
        let mut st = JobState {
            succeeded: status.succeeded.unwrap_or(0),
            failed: status.failed.unwrap_or(0),
            succeeded_indexes: parse_indexes(status.completed_indexes.as_deref()),
            failed_indexes: parse_indexes(status.failed_indexes.as_deref()),
            start_time: status.start_time.as_ref().map(from_time),
            finished: condition_true(&status, "Complete") || condition_true(&status, "Failed"),
            suspended: condition_true(&status, "Suspended"),
            ..JobState::default()
        };
        for (type_, complete) in [("SuccessCriteriaMet", true), ("FailureTarget", false)] {
            if let Some(c) = find_condition(&status, type_) {
                st.target = Some(Target {
                    complete,
                    reason: c.reason.clone().unwrap_or_default(),
                    message: c.message.clone().unwrap_or_default(),
                });
            }
        }
        st
    }

    /// One sync of one Job: count finished pods, decide, create/delete pods, write status.
    async fn sync(&self, key: ObjKey) -> Result<(), ControllerError> {
        let ctx = &self.inner.ctx;
        let Some(job) = ctx.caches.jobs.get(&key) else {
            return Ok(());
        };
        let Some(uid) = job.uid() else {
            return Ok(());
        };
        if job.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let mut st = lock(&self.inner.states)
            .remove(&uid)
            .unwrap_or_else(|| Self::initial_state(&job));
        let result = self.sync_job(&key, &job, &uid, &mut st).await;
        lock(&self.inner.states).insert(uid, st);
        result
    }

    async fn sync_job(
        &self,
        key: &ObjKey,
        job: &Arc<Job>,
        uid: &str,
        st: &mut JobState,
    ) -> Result<(), ControllerError> {
        let ctx = &self.inner.ctx;
        if st.finished {
            return Ok(());
        }
        if !self
            .inner
            .pods
            .expectations
            .satisfied(uid, ctx.config.timing.expectations_timeout)
        {
            // Look again when the expectations expire, in case an event never comes.
            self.inner
                .queue
                .add_after(key.clone(), ctx.config.timing.expectations_timeout);
            return Ok(());
        }
        let (ns, name) = key.clone();
        let spec = job.spec.clone().unwrap_or_default();
        let indexed = spec.completion_mode.as_deref() == Some("Indexed");
        let parallelism = spec.parallelism.unwrap_or(1).max(0);
        let completions = spec.completions;
        let backoff_limit = spec.backoff_limit.unwrap_or(6);
        let per_index_limit = spec.backoff_limit_per_index.filter(|_| indexed);
        let on_failure = spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            == Some("OnFailure");
        let suspend = spec.suspend.unwrap_or(false);
        let has_pfp = spec.pod_failure_policy.is_some();
        let now = Utc::now();

        // Current pods and the last versions of deleted ones.
        let keys = self.inner.pods.keys(uid);
        let pods: Vec<Arc<Pod>> = keys
            .iter()
            .filter_map(|k| ctx.caches.pods.get(k))
            .filter(|p| controller_job(p).is_some_and(|(u, _)| u == uid))
            .collect();
        let gone = lock(&self.inner.tombstones).remove(uid).unwrap_or_default();

        // Count newly finished pods exactly once.
        let mut new_failure = false;
        let mut fail_job: Option<String> = None;
        let failed_now = |p: &Pod| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            phase == Some("Failed")
                || (!has_pfp
                    && p.metadata.deletion_timestamp.is_some()
                    && phase != Some("Succeeded"))
        };
        let finished_pods = pods
            .iter()
            .map(|p| (p.clone(), false))
            .chain(gone.into_iter().map(|p| (p, true)));
        for (pod, deleted) in finished_pods {
            let Some(pod_uid) = pod.uid() else { continue };
            if st.counted.contains(&pod_uid) {
                continue;
            }
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            let index = pod_index(&pod);
            if phase == Some("Succeeded") {
                st.counted.insert(pod_uid);
                st.succeeded += 1;
                if let (true, Some(i)) = (indexed, index) {
                    st.succeeded_indexes.insert(i);
                }
                continue;
            }
            if !(deleted || failed_now(&pod)) {
                continue;
            }
            st.counted.insert(pod_uid.clone());
            if st.suspend_deleted.remove(&pod_uid) {
                continue;
            }
            let action = if phase == Some("Failed") {
                pod_failure_action(job, &pod)
            } else {
                None
            };
            match action.as_ref().map(|(a, m)| (a.as_str(), m)) {
                Some(("Ignore", _)) => continue,
                Some(("FailJob", message)) => {
                    fail_job.get_or_insert_with(|| message.clone());
                }
                Some(("FailIndex", _)) => {
                    if let Some(i) = index {
                        st.failed_indexes.insert(i);
                    }
                }
                _ => {}
            }
            st.failed += 1;
            new_failure = true;
            st.last_failure = Some(Instant::now());
            if let (Some(limit), Some(i)) = (per_index_limit, index) {
                let n = st.index_failures.entry(i).or_insert(0);
                *n += 1;
                if *n > limit {
                    st.failed_indexes.insert(i);
                }
            }
        }

        let is_active = |p: &Pod| !is_terminal(p) && p.metadata.deletion_timestamp.is_none();
        let active: Vec<&Arc<Pod>> = pods.iter().filter(|p| is_active(p)).collect();
        let terminating = pods
            .iter()
            .filter(|p| !is_terminal(p) && p.metadata.deletion_timestamp.is_some())
            .count() as i32;
        let ready = active
            .iter()
            .filter(|p| pod_condition_true(p, "Ready"))
            .count() as i32;

        // Decide whether the Job has reached its end.
        let mut requeue_at: Option<Instant> = None;
        if st.target.is_none() && !suspend {
            let restarts: i32 = if on_failure {
                active
                    .iter()
                    .filter_map(|p| p.status.as_ref())
                    .flat_map(|s| {
                        s.container_statuses
                            .iter()
                            .flatten()
                            .chain(s.init_container_statuses.iter().flatten())
                    })
                    .map(|cs| cs.restart_count)
                    .sum()
            } else {
                0
            };
            let past_backoff = if per_index_limit.is_some() {
                false
            } else if on_failure && restarts > 0 {
                if backoff_limit == 0 {
                    true
                } else {
                    restarts + st.failed >= backoff_limit
                }
            } else {
                new_failure && st.failed > backoff_limit
            };
            let deadline = match (spec.active_deadline_seconds, st.start_time) {
                (Some(secs), Some(start)) => Some(start + chrono::Duration::seconds(secs)),
                _ => None,
            };
            if let Some(message) = fail_job {
                st.target = Some(Target {
                    complete: false,
                    reason: "PodFailurePolicy".into(),
                    message,
                });
            } else if past_backoff {
                st.target = Some(Target {
                    complete: false,
                    reason: "BackoffLimitExceeded".into(),
                    message: "Job has reached the specified backoff limit".into(),
                });
            } else if deadline.is_some_and(|d| now >= d) {
                st.target = Some(Target {
                    complete: false,
                    reason: "DeadlineExceeded".into(),
                    message: "Job was active longer than specified deadline".into(),
                });
            } else if let (Some(max), true) = (spec.max_failed_indexes, per_index_limit.is_some())
                && st.failed_indexes.len() as i32 > max
            {
                st.target = Some(Target {
                    complete: false,
                    reason: "MaxFailedIndexesExceeded".into(),
                    message: "Job has exceeded the specified maximal number of failed indexes"
                        .into(),
                });
            } else if indexed {
                let total = completions.unwrap_or(0);
                let done = st.succeeded_indexes.len() + st.failed_indexes.len();
                if done as i32 >= total {
                    st.target = Some(if st.failed_indexes.is_empty() {
                        completed_target()
                    } else {
                        Target {
                            complete: false,
                            reason: "FailedIndexes".into(),
                            message: "Job has failed indexes".into(),
                        }
                    });
                }
            } else {
                let reached = match completions {
                    Some(c) => st.succeeded >= c,
                    None => st.succeeded > 0 && active.is_empty(),
                };
                if reached {
                    st.target = Some(completed_target());
                }
            }
            if st.target.is_none()
                && let Some(d) = deadline
            {
                let left = (d - now).to_std().unwrap_or_default();
                requeue_at = Some(Instant::now() + left);
            }
            if let Some(t) = &st.target
                && !t.complete
            {
                ctx.recorder.record(
                    job.as_ref(),
                    COMPONENT,
                    None,
                    EventType::Warning,
                    &t.reason,
                    t.message.clone(),
                );
            }
        }

        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let mut to_delete: Vec<Arc<Pod>> = Vec::new();
        let mut to_create: Vec<Option<i32>> = Vec::new();
        let mut finished_now = false;

        if st.target.is_some() {
            // Terminate what is left, then finish.
            to_delete.extend(active.iter().map(|p| (*p).clone()));
            if active.is_empty() && terminating == 0 {
                finished_now = true;
            }
        } else if suspend {
            if !st.suspended {
                st.suspended = true;
                st.start_time = None;
                ctx.recorder.record(
                    job.as_ref(),
                    COMPONENT,
                    None,
                    EventType::Normal,
                    "Suspended",
                    "Job suspended".into(),
                );
            }
            for p in &active {
                if let Some(u) = p.uid() {
                    st.suspend_deleted.insert(u);
                }
                to_delete.push((*p).clone());
            }
        } else {
            if st.suspended {
                st.suspended = false;
                ctx.recorder.record(
                    job.as_ref(),
                    COMPONENT,
                    None,
                    EventType::Normal,
                    "Resumed",
                    "Job resumed".into(),
                );
            }
            if st.start_time.is_none() {
                // Kept as `status.startTime` holds it, in whole seconds: Kubernetes' controller
                // counts `activeDeadlineSeconds` from the start time in its informer cache, so a
                // Job ends up to a second before `start + deadline` measured precisely.
                let start = from_time(&to_time(now));
                st.start_time = Some(start);
                if let Some(secs) = spec.active_deadline_seconds {
                    let left = (start + chrono::Duration::seconds(secs) - now)
                        .to_std()
                        .unwrap_or_default();
                    requeue_at = Some(Instant::now() + left);
                }
            }
            // Back-off after failures before creating replacements.
            let backoff_until = st.last_failure.map(|t| {
                let timing = &ctx.config.timing;
                let exp = (st.failed.max(1) - 1).min(20) as u32;
                t + (timing.job_backoff_base * 2u32.pow(exp)).min(timing.job_backoff_max)
            });
            let in_backoff = backoff_until.is_some_and(|t| t > Instant::now());
            if indexed {
                let total = completions.unwrap_or(0);
                let mut by_index: HashMap<i32, Vec<&Arc<Pod>>> = HashMap::new();
                for p in &active {
                    match pod_index(p) {
                        Some(i) if (0..total).contains(&i) => {
                            by_index.entry(i).or_default().push(p)
                        }
                        _ => to_delete.push((*p).clone()),
                    }
                }
                for (i, list) in &by_index {
                    let stop = st.succeeded_indexes.contains(i) || st.failed_indexes.contains(i);
                    let extra = if stop { 0 } else { 1 };
                    to_delete.extend(list.iter().skip(extra).map(|p| (*p).clone()));
                }
                let running = by_index
                    .keys()
                    .filter(|i| !st.succeeded_indexes.contains(i) && !st.failed_indexes.contains(i))
                    .count() as i32;
                let room = (parallelism - running).max(0) as usize;
                let missing = (0..total).filter(|i| {
                    !st.succeeded_indexes.contains(i)
                        && !st.failed_indexes.contains(i)
                        && !by_index.contains_key(i)
                });
                if !in_backoff {
                    to_create.extend(missing.take(room.min(MAX_BATCH)).map(Some));
                }
            } else {
                let want = match completions {
                    Some(c) => parallelism.min((c - st.succeeded).max(0)),
                    None if st.succeeded > 0 => 0,
                    None => parallelism,
                };
                let have = active.len() as i32;
                if want > have && !in_backoff {
                    to_create.extend(std::iter::repeat_n(
                        None,
                        ((want - have) as usize).min(MAX_BATCH),
                    ));
                } else if want < have {
                    let mut extra: Vec<&Arc<Pod>> = active.clone();
                    // Delete pods that are not running first, then the youngest.
                    extra.sort_by_key(|p| {
                        (
                            p.status.as_ref().and_then(|s| s.phase.clone())
                                == Some("Running".into()),
                            std::cmp::Reverse(p.metadata.creation_timestamp.clone().map(|t| t.0)),
                        )
                    });
                    to_delete.extend(extra.into_iter().take((have - want) as usize).cloned());
                }
            }
            if in_backoff && let Some(t) = backoff_until {
                requeue_at = Some(requeue_at.map_or(t, |r| r.min(t)));
            }
        }

        // Act: deletions and creations, recorded as expectations first.
        to_delete.retain(|p| p.metadata.deletion_timestamp.is_none());
        to_delete.truncate(MAX_BATCH);
        if !to_delete.is_empty() || !to_create.is_empty() {
            self.inner.pods.expectations.expect(
                uid,
                to_create.len() as i64,
                to_delete.iter().filter_map(|p| p.uid()),
            );
        }
        let deletions = to_delete.iter().map(|p| {
            let api = api.clone();
            async move {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: p.uid(),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                (p, api.delete(&p.name_any(), &dp).await)
            }
        });
        for (pod, result) in futures::future::join_all(deletions).await {
            match result {
                Ok(_) => ctx.recorder.record(
                    job.as_ref(),
                    COMPONENT,
                    None,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", pod.name_any()),
                ),
                Err(e) => {
                    if let Some(u) = pod.uid() {
                        self.inner.pods.expectations.deletion_observed(uid, &u);
                    }
                    if !is_not_found(&e) {
                        tracing::debug!(pod = %pod.name_any(), error = %e, "deleting pod failed");
                    }
                }
            }
        }
        let creations = to_create.iter().map(|index| {
            let pod = self.pod_for(job, uid, *index, st);
            let api = api.clone();
            async move { api.create(&PostParams::default(), &pod).await }
        });
        let mut create_error = None;
        for result in futures::future::join_all(creations).await {
            match result {
                Ok(pod) => ctx.recorder.record(
                    job.as_ref(),
                    COMPONENT,
                    None,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {}", pod.name_any()),
                ),
                Err(e) => {
                    self.inner.pods.expectations.creation_observed(uid);
                    ctx.recorder.record(
                        job.as_ref(),
                        COMPONENT,
                        None,
                        EventType::Warning,
                        "FailedCreate",
                        format!("Error creating: {}", api_message(&e)),
                    );
                    create_error = Some(e);
                }
            }
        }

        // Status.
        let active_count = (active.len() - to_delete.iter().filter(|p| is_active(p)).count())
            as i32
            + (to_create.len() as i32 - i32::from(create_error.is_some()));
        let old = job.status.clone().unwrap_or_default();
        let mut conditions = old.conditions.clone().unwrap_or_default();
        if st.suspended {
            set_condition(
                &mut conditions,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            );
        } else if conditions.iter().any(|c| c.type_ == "Suspended") {
            set_condition(
                &mut conditions,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                now,
            );
        }
        let mut completion_time = old.completion_time.clone();
        if let Some(t) = st.target.clone() {
            let interim = if t.complete {
                "SuccessCriteriaMet"
            } else {
                "FailureTarget"
            };
            set_condition(&mut conditions, interim, "True", &t.reason, &t.message, now);
            if finished_now {
                let fin = if t.complete { "Complete" } else { "Failed" };
                set_condition(&mut conditions, fin, "True", &t.reason, &t.message, now);
                if t.complete {
                    completion_time = Some(to_time(now));
                }
            }
        }
        let nonzero = |v: i32| (v != 0).then_some(v);
        let status = JobStatus {
            active: nonzero(if finished_now { 0 } else { active_count.max(0) }),
            ready: Some(if st.target.is_some() { 0 } else { ready }),
            terminating: Some(terminating + to_delete.len() as i32),
            succeeded: nonzero(st.succeeded),
            failed: nonzero(st.failed),
            start_time: st.start_time.map(to_time),
            completion_time,
            conditions: (!conditions.is_empty()).then_some(conditions),
            completed_indexes: indexed.then(|| format_indexes(&st.succeeded_indexes)),
            failed_indexes: per_index_limit.map(|_| format_indexes(&st.failed_indexes)),
            uncounted_terminated_pods: Some(UncountedTerminatedPods::default()),
        };
        if status != old {
            let mut body = serde_json::to_value(&status).map_err(ControllerError::Encode)?;
            // Null what the new status no longer has, so that the merge patch removes it.
            let old_value = serde_json::to_value(&old).map_err(ControllerError::Encode)?;
            if let (Some(new_map), Some(old_map)) = (body.as_object_mut(), old_value.as_object()) {
                for k in old_map.keys() {
                    new_map.entry(k.clone()).or_insert(serde_json::Value::Null);
                }
            }
            let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
            jobs.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "status": body })),
            )
            .await?;
        }
        // Only a written terminal condition ends the Job's syncs (a failed write is retried).
        if finished_now {
            st.finished = true;
            if st.target.as_ref().is_some_and(|t| t.complete) {
                ctx.recorder.record(
                    job.as_ref(),
                    COMPONENT,
                    None,
                    EventType::Normal,
                    "Completed",
                    "Job completed".into(),
                );
            }
        }
        if let Some(at) = requeue_at {
            self.inner.queue.add_at(key.clone(), at);
        }
        if let Some(e) = create_error {
            return Err(e.into());
        }
        Ok(())
    }

    /// The pod for one new replica (with its completion index in Indexed mode).
    fn pod_for(&self, job: &Job, uid: &str, index: Option<i32>, st: &JobState) -> Pod {
        let job_name = job.name_any();
        let spec = job.spec.clone().unwrap_or_default();
        let template = spec.template;
        let mut meta = template.metadata.unwrap_or_default();
        let mut pod_spec = template.spec.unwrap_or_default();
        let labels = meta.labels.get_or_insert_with(Default::default);
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", uid),
            ("batch.kubernetes.io/job-name", job_name.as_str()),
            ("controller-uid", uid),
            ("job-name", job_name.as_str()),
        ] {
            labels.entry(k.to_owned()).or_insert_with(|| v.to_owned());
        }
        let prefix = match index {
            Some(i) => {
                let annotations = meta.annotations.get_or_insert_with(Default::default);
                annotations.insert(COMPLETION_INDEX.to_owned(), i.to_string());
                if spec.backoff_limit_per_index.is_some() {
                    annotations.insert(
                        INDEX_FAILURE_COUNT.to_owned(),
                        st.index_failures.get(&i).copied().unwrap_or(0).to_string(),
                    );
                }
                labels.insert(COMPLETION_INDEX.to_owned(), i.to_string());
                if pod_spec.hostname.is_none() {
                    pod_spec.hostname = Some(
                        format!("{job_name}-{i}")
                            .chars()
                            .take(63)
                            .collect::<String>(),
                    )
                    .map(|h| h.trim_end_matches('-').to_owned());
                }
                let env = EnvVar {
                    name: "JOB_COMPLETION_INDEX".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            api_version: Some("v1".into()),
                            field_path: format!("metadata.labels['{COMPLETION_INDEX}']"),
                        }),
                        ..EnvVarSource::default()
                    }),
                };
                for c in pod_spec
                    .containers
                    .iter_mut()
                    .chain(pod_spec.init_containers.iter_mut().flatten())
                {
                    let vars = c.env.get_or_insert_with(Vec::new);
                    if !vars.iter().any(|v| v.name == env.name) {
                        vars.push(env.clone());
                    }
                }
                format!("{job_name}-{i}-")
            }
            None => format!("{job_name}-"),
        };
        meta.name = Some(generated_name(&prefix));
        meta.generate_name = None;
        meta.namespace = job.namespace();
        meta.owner_references = Some(vec![OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: job_name.clone(),
            uid: uid.to_owned(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        Pod {
            metadata: meta,
            spec: Some(pod_spec),
            status: None,
        }
    }
}

fn completed_target() -> Target {
    Target {
        complete: true,
        reason: "CompletionsReached".into(),
        message: "Reached expected number of succeeded pods".into(),
    }
}

/// True for a 404 API error.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The server's message for an API error, or the error itself.
pub(crate) fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_sets_format_and_parse_as_ranges() {
        let set: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into_iter().collect();
        assert_eq!(format_indexes(&set), "0-2,4,6-7");
        assert_eq!(parse_indexes(Some("0-2,4,6-7")), set);
        assert_eq!(format_indexes(&BTreeSet::new()), "");
    }

    #[test]
    fn generated_names_are_truncated_like_generate_name() {
        let long = "a".repeat(70);
        let n = generated_name(&format!("{long}-"));
        assert_eq!(n.len(), 63);
        assert!(
            random_suffix()
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
        );
    }
}
