//! The launch queue: which pending task gets the next free Job slot.
//!
//! The queue is in memory and is a cache of the store, never the source of truth: every task
//! in it is already committed as `pending` (or, for in-flight slots, `launching`/`running`),
//! and [`Queue::from_store`] rebuilds it after a restart. It owns two things: the order of
//! pending tasks (priority, higher first, then submission age, older first) and the global
//! capacity — the number of Jobs in flight (`launching` + `running`), Druid's `capacity`.
//! Capacity can be changed at run time; lowering it never stops running tasks, it only holds
//! back new launches until enough slots free up.
//!
//! How the runner uses it:
//! 1. after [`crate::store::Store::submit`] returns a new task, [`Queue::push`] it;
//! 2. a launcher loop awaits [`Queue::next`] (cancel-safe), which moves the chosen task into an
//!    in-flight slot, then stores `pending → launching`; if that compare-and-set fails because
//!    the task was canceled meanwhile, it calls [`Queue::finish`];
//! 3. when a task reaches a terminal state, [`Queue::finish`] frees its slot (idempotent) and
//!    wakes the launcher;
//! 4. to cancel a pending task, store `pending → canceled`, then [`Queue::remove_pending`].
//!
//! Per-tenant quotas and fair share plug in through [`LaunchPolicy`]: the queue keeps one
//! ordered sub-queue per tenant and asks the policy which tenant's head task goes next. The
//! default, [`PriorityOrder`], ignores tenants and takes the global best; [`FairShare`] (used
//! when tenants are configured) applies each tenant's [`TenantRule`]: held tenants and tenants
//! at `maxRunning` wait; among the others, tenants below their weighted share of the capacity
//! go first (higher tenant priority first, then the least served), so one tenant's flood
//! cannot starve another. Submissions beyond a tenant's `maxQueued` are refused by
//! [`Queue::admit`]. Every count is rebuilt from the store on start, so quotas hold across
//! restarts.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::Notify;

use crate::store::{Store, StoreError, TaskRecord, TaskState};

/// What the queue knows about a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedTask {
    /// The task id.
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// Its type.
    pub kind: String,
    /// Higher launches first.
    pub priority: i32,
    /// Submission sequence from the store; lower (older) launches first among equal priorities.
    pub seq: i64,
    /// The record as stored when the task was queued, so that its launch need not read it
    /// again; `None` for tasks queued from the store (restore) or with a large payload.
    pub snapshot: Option<Arc<TaskRecord>>,
}

/// Largest payload kept in a queued task's snapshot: bigger tasks are read at launch, so a long
/// queue of large tasks does not stay in memory.
pub const MAX_SNAPSHOT_PAYLOAD: usize = 16 * 1024;

impl QueuedTask {
    /// Keeps `record` with the queued task when its payload is at most
    /// [`MAX_SNAPSHOT_PAYLOAD`] bytes.
    pub fn with_snapshot(mut self, record: &TaskRecord) -> QueuedTask {
        if record.payload.len() <= MAX_SNAPSHOT_PAYLOAD {
            self.snapshot = Some(Arc::new(record.clone()));
        }
        self
    }
}

impl From<&TaskRecord> for QueuedTask {
    fn from(task: &TaskRecord) -> Self {
        QueuedTask {
            id: task.id.clone(),
            tenant: task.tenant.clone(),
            kind: task.kind.clone(),
            priority: task.priority,
            seq: task.seq,
            snapshot: None,
        }
    }
}

/// One tenant's share of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TenantUsage {
    /// Tasks waiting.
    pub pending: usize,
    /// Jobs in flight.
    pub in_flight: usize,
}

/// A tenant's best pending task, offered to a [`LaunchPolicy`].
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The task at the head of the tenant's sub-queue.
    pub task: &'a QueuedTask,
    /// The tenant's current usage.
    pub usage: TenantUsage,
}

/// Chooses which tenant launches next: the extension point for per-tenant quotas and fair
/// share.
///
/// Called under the queue's lock whenever a slot is free, so it must be quick and must not
/// block.
pub trait LaunchPolicy: Send + Sync + fmt::Debug {
    /// `candidates` holds the head task of every tenant with pending work, sorted by global
    /// order (priority, then age). Return the index of the one to launch, or `None` to launch
    /// nothing now (e.g. every tenant is at its quota); the queue asks again after the next
    /// change (a push, a finished task, a capacity change).
    fn choose(
        &self,
        candidates: &[Candidate<'_>],
        in_flight: usize,
        capacity: usize,
    ) -> Option<usize>;
}

/// The default policy: global priority then age, tenants ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct PriorityOrder;

impl LaunchPolicy for PriorityOrder {
    fn choose(&self, candidates: &[Candidate<'_>], _: usize, _: usize) -> Option<usize> {
        (!candidates.is_empty()).then_some(0)
    }
}

/// What the fair share knows about one tenant (from `tenants[i]` and its hold switch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRule {
    /// Most tasks in flight; `None`: only the global capacity.
    pub max_running: Option<usize>,
    /// Weight in the fair share (≥ 1).
    pub weight: u32,
    /// Higher is offered a free slot first among tenants below their share.
    pub priority: i32,
    /// Launch nothing of this tenant for now.
    pub held: bool,
}

impl Default for TenantRule {
    fn default() -> Self {
        TenantRule {
            max_running: None,
            weight: 1,
            priority: 0,
            held: false,
        }
    }
}

/// Fair share between tenants with quotas, priorities and holds.
///
/// For a free slot, it drops tenants that are held or at their `maxRunning`; each remaining
/// tenant's share is `capacity × weight / Σ weights` over the tenants with queued tasks. Tenants
/// below their share come first, ordered by tenant priority (higher first), then by how much of
/// their weight they use (`in_flight / weight`, lower first), then by their head task's priority
/// and age. When every tenant is at or above its share, the least served (by `in_flight /
/// weight`) launches, so capacity is never left idle while work waits. Tenants without a rule
/// (not configured) get the default rule.
#[derive(Debug, Clone, Default)]
pub struct FairShare {
    rules: Arc<RwLock<BTreeMap<String, TenantRule>>>,
}

impl FairShare {
    /// A policy reading `rules` (shared with [`crate::tenants::Tenants`], so holds apply at
    /// once; call [`Queue::rules_changed`] after a change).
    pub fn new(rules: Arc<RwLock<BTreeMap<String, TenantRule>>>) -> FairShare {
        FairShare { rules }
    }
}

impl LaunchPolicy for FairShare {
    fn choose(
        &self,
        candidates: &[Candidate<'_>],
        _in_flight: usize,
        capacity: usize,
    ) -> Option<usize> {
        let rules = self.rules.read().unwrap_or_else(|p| p.into_inner());
        let default = TenantRule::default();
        let rule_of = |c: &Candidate<'_>| rules.get(&c.task.tenant).unwrap_or(&default);
        let eligible: Vec<usize> = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                let rule = rule_of(c);
                !rule.held && rule.max_running.is_none_or(|max| c.usage.in_flight < max)
            })
            .map(|(i, _)| i)
            .collect();
        if eligible.is_empty() {
            return None;
        }
        let total_weight: u64 = candidates
            .iter()
            .map(|c| u64::from(rule_of(c).weight.max(1)))
            .sum();
        // in_flight / weight, compared exactly as in_flight × Σ / weight without division.
        let used = |c: &Candidate<'_>| {
            (c.usage.in_flight as u128 * 1_000_000) / u128::from(rule_of(c).weight.max(1))
        };
        let below_share = |c: &Candidate<'_>| {
            // in_flight < capacity × weight / Σ weights
            (c.usage.in_flight as u128) * u128::from(total_weight)
                < (capacity as u128) * u128::from(rule_of(c).weight.max(1))
        };
        let order = |&i: &usize| {
            let c = &candidates[i];
            let below = below_share(c);
            (
                !below,
                if below {
                    Reverse(rule_of(c).priority)
                } else {
                    Reverse(0)
                },
                used(c),
                Reverse(c.task.priority),
                c.task.seq,
            )
        };
        eligible.into_iter().min_by_key(order)
    }
}

/// A submission admitted under a tenant's `maxQueued`: counts as queued until dropped (after
/// the task is stored and pushed, or the submission failed).
#[derive(Debug)]
pub struct Admission<'a> {
    queue: &'a Queue,
    tenant: String,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        if let Some(n) = state.admitting.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.admitting.remove(&self.tenant);
            }
        }
    }
}

/// A point-in-time view of the queue (for the API, metrics and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSnapshot {
    /// The global capacity.
    pub capacity: usize,
    /// Jobs in flight (may exceed capacity right after it was lowered).
    pub in_flight: usize,
    /// Tasks waiting.
    pub pending: usize,
    /// Per tenant.
    pub tenants: BTreeMap<String, TenantUsage>,
}

type Key = (Reverse<i32>, i64, String);

fn key(task: &QueuedTask) -> Key {
    (Reverse(task.priority), task.seq, task.id.clone())
}

#[derive(Debug, Default)]
struct TenantQueue {
    order: BTreeSet<Key>,
    in_flight: usize,
}

#[derive(Debug, Default)]
struct State {
    capacity: usize,
    pending: HashMap<String, QueuedTask>,
    /// In-flight task id → tenant.
    in_flight: HashMap<String, String>,
    tenants: HashMap<String, TenantQueue>,
    /// Submissions admitted but not yet pushed, by tenant.
    admitting: HashMap<String, usize>,
}

impl State {
    fn tenant_usage(&self, tenant: &str) -> TenantUsage {
        self.tenants
            .get(tenant)
            .map(|t| TenantUsage {
                pending: t.order.len(),
                in_flight: t.in_flight,
            })
            .unwrap_or_default()
    }

    fn drop_tenant_if_idle(&mut self, tenant: &str) {
        if self
            .tenants
            .get(tenant)
            .is_some_and(|t| t.order.is_empty() && t.in_flight == 0)
        {
            self.tenants.remove(tenant);
        }
    }
}

/// The launch queue; share it behind an `Arc`.
pub struct Queue {
    state: Mutex<State>,
    changed: Notify,
    policy: Box<dyn LaunchPolicy>,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("snapshot", &self.snapshot())
            .field("policy", &self.policy)
            .finish()
    }
}

impl Queue {
    /// An empty queue with the default policy.
    pub fn new(capacity: usize) -> Queue {
        Queue::with_policy(capacity, Box::new(PriorityOrder))
    }

    /// An empty queue with a tenant policy.
    pub fn with_policy(capacity: usize, policy: Box<dyn LaunchPolicy>) -> Queue {
        Queue {
            state: Mutex::new(State {
                capacity,
                ..State::default()
            }),
            changed: Notify::new(),
            policy,
        }
    }

    /// A queue holding the given tasks: pending ones are queued, launching and running ones
    /// hold in-flight slots, terminal ones are ignored.
    pub fn from_records<'a>(
        capacity: usize,
        policy: Box<dyn LaunchPolicy>,
        tasks: impl IntoIterator<Item = &'a TaskRecord>,
    ) -> Queue {
        let queue = Queue::with_policy(capacity, policy);
        {
            let mut state = queue.lock();
            for task in tasks {
                match task.state {
                    TaskState::Pending => {
                        insert_pending(&mut state, QueuedTask::from(task));
                    }
                    TaskState::Launching | TaskState::Running => {
                        if state
                            .in_flight
                            .insert(task.id.clone(), task.tenant.clone())
                            .is_none()
                        {
                            state
                                .tenants
                                .entry(task.tenant.clone())
                                .or_default()
                                .in_flight += 1;
                        }
                    }
                    TaskState::Succeeded | TaskState::Failed | TaskState::Canceled => {}
                }
            }
        }
        queue
    }

    /// Rebuilds the queue from the store's unfinished tasks (start-up and restore).
    pub async fn from_store(
        store: &Store,
        capacity: usize,
        policy: Box<dyn LaunchPolicy>,
    ) -> Result<Queue, StoreError> {
        let tasks = store.non_terminal().await?;
        Ok(Queue::from_records(capacity, policy, &tasks))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every method updates it in
        // steps that cannot panic half-way, so a poisoned lock is safe to reuse.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a pending task. Returns false (and changes nothing) if the id is already pending
    /// or in flight.
    pub fn push(&self, task: QueuedTask) -> bool {
        let added = {
            let mut state = self.lock();
            if state.pending.contains_key(&task.id) || state.in_flight.contains_key(&task.id) {
                false
            } else {
                insert_pending(&mut state, task);
                true
            }
        };
        if added {
            self.changed.notify_waiters();
        }
        added
    }

    /// Admits one more submission of `tenant` if fewer than `max_queued` of its tasks wait
    /// (counting admissions in progress); otherwise returns how many wait. Hold the admission
    /// until the task is stored and pushed.
    pub fn admit(&self, tenant: &str, max_queued: Option<usize>) -> Result<Admission<'_>, usize> {
        let mut state = self.lock();
        let waiting =
            state.tenant_usage(tenant).pending + state.admitting.get(tenant).copied().unwrap_or(0);
        if let Some(max) = max_queued
            && waiting >= max
        {
            return Err(waiting);
        }
        *state.admitting.entry(tenant.to_owned()).or_default() += 1;
        Ok(Admission {
            queue: self,
            tenant: tenant.to_owned(),
        })
    }

    /// Wakes the launcher after the policy's rules changed (a hold lifted).
    pub fn rules_changed(&self) {
        self.changed.notify_waiters();
    }

    /// One tenant's usage.
    pub fn tenant_usage(&self, tenant: &str) -> TenantUsage {
        self.lock().tenant_usage(tenant)
    }

    /// Takes a pending task out of the queue (it was canceled). Returns it if it was pending.
    pub fn remove_pending(&self, id: &str) -> Option<QueuedTask> {
        let mut state = self.lock();
        let task = state.pending.remove(id)?;
        if let Some(tenant) = state.tenants.get_mut(&task.tenant) {
            tenant.order.remove(&key(&task));
        }
        state.drop_tenant_if_idle(&task.tenant);
        Some(task)
    }

    /// If a slot is free and the policy picks a task, moves that task into an in-flight slot and
    /// returns it.
    pub fn try_next(&self) -> Option<QueuedTask> {
        let mut state = self.lock();
        if state.in_flight.len() >= state.capacity || state.pending.is_empty() {
            return None;
        }
        let mut heads: Vec<&QueuedTask> = state
            .tenants
            .values()
            .filter_map(|t| t.order.first())
            .filter_map(|(_, _, id)| state.pending.get(id))
            .collect();
        heads.sort_by_key(|t| (Reverse(t.priority), t.seq));
        let candidates: Vec<Candidate<'_>> = heads
            .iter()
            .map(|task| Candidate {
                task,
                usage: state.tenant_usage(&task.tenant),
            })
            .collect();
        let chosen = self
            .policy
            .choose(&candidates, state.in_flight.len(), state.capacity)?;
        let id = candidates.get(chosen)?.task.id.clone();
        let task = state.pending.remove(&id)?;
        let tenant = state.tenants.entry(task.tenant.clone()).or_default();
        tenant.order.remove(&key(&task));
        tenant.in_flight += 1;
        state.in_flight.insert(task.id.clone(), task.tenant.clone());
        Some(task)
    }

    /// Waits until a task can be launched and returns it, holding an in-flight slot.
    ///
    /// Cancel-safe: if the future is dropped, no task is taken.
    pub async fn next(&self) -> QueuedTask {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(task) = self.try_next() {
                return task;
            }
            notified.await;
        }
    }

    /// Frees the in-flight slot of a task that ended (or whose launch was abandoned). Returns
    /// false if it held none; calling it twice is harmless.
    pub fn finish(&self, id: &str) -> bool {
        let freed = {
            let mut state = self.lock();
            match state.in_flight.remove(id) {
                Some(tenant) => {
                    if let Some(t) = state.tenants.get_mut(&tenant) {
                        t.in_flight = t.in_flight.saturating_sub(1);
                    }
                    state.drop_tenant_if_idle(&tenant);
                    true
                }
                None => false,
            }
        };
        if freed {
            self.changed.notify_waiters();
        }
        freed
    }

    /// Puts an in-flight task back in the queue (its launch was not stored and will be retried).
    pub fn requeue(&self, task: QueuedTask) {
        {
            let mut state = self.lock();
            if state.in_flight.remove(&task.id).is_some()
                && let Some(t) = state.tenants.get_mut(&task.tenant)
            {
                t.in_flight = t.in_flight.saturating_sub(1);
            }
            if !state.pending.contains_key(&task.id) {
                insert_pending(&mut state, task);
            }
        }
        self.changed.notify_waiters();
    }

    /// Counts a task as in flight without it having been queued (a Job adopted on restore).
    /// Returns false if it already was.
    pub fn adopt_in_flight(&self, task: QueuedTask) -> bool {
        let mut state = self.lock();
        if state.in_flight.contains_key(&task.id) {
            return false;
        }
        if let Some(pending) = state.pending.remove(&task.id)
            && let Some(t) = state.tenants.get_mut(&pending.tenant)
        {
            t.order.remove(&key(&pending));
        }
        state
            .tenants
            .entry(task.tenant.clone())
            .or_default()
            .in_flight += 1;
        state.in_flight.insert(task.id, task.tenant);
        true
    }

    /// Changes the global capacity. Raising it wakes the launcher; lowering it stops nothing
    /// that runs.
    pub fn set_capacity(&self, capacity: usize) {
        self.lock().capacity = capacity;
        self.changed.notify_waiters();
    }

    /// The global capacity.
    pub fn capacity(&self) -> usize {
        self.lock().capacity
    }

    /// Whether the task holds an in-flight slot.
    pub fn is_in_flight(&self, id: &str) -> bool {
        self.lock().in_flight.contains_key(id)
    }

    /// Whether the task is waiting.
    pub fn is_pending(&self, id: &str) -> bool {
        self.lock().pending.contains_key(id)
    }

    /// Current counts.
    pub fn snapshot(&self) -> QueueSnapshot {
        let state = self.lock();
        QueueSnapshot {
            capacity: state.capacity,
            in_flight: state.in_flight.len(),
            pending: state.pending.len(),
            tenants: state
                .tenants
                .keys()
                .map(|tenant| (tenant.clone(), state.tenant_usage(tenant)))
                .collect(),
        }
    }
}

fn insert_pending(state: &mut State, task: QueuedTask) {
    state
        .tenants
        .entry(task.tenant.clone())
        .or_default()
        .order
        .insert(key(&task));
    state.pending.insert(task.id.clone(), task);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, tenant: &str, priority: i32, seq: i64) -> QueuedTask {
        QueuedTask {
            id: id.to_owned(),
            tenant: tenant.to_owned(),
            kind: "index".to_owned(),
            priority,
            seq,
            snapshot: None,
        }
    }

    fn fair(
        capacity: usize,
        rules: &[(&str, TenantRule)],
    ) -> (Queue, Arc<RwLock<BTreeMap<String, TenantRule>>>) {
        let rules = Arc::new(RwLock::new(
            rules
                .iter()
                .map(|(n, r)| ((*n).to_owned(), r.clone()))
                .collect(),
        ));
        let queue = Queue::with_policy(capacity, Box::new(FairShare::new(Arc::clone(&rules))));
        (queue, rules)
    }

    /// Launches everything the queue gives now; returns the tenants in launch order.
    fn drain(queue: &Queue) -> Vec<String> {
        std::iter::from_fn(|| queue.try_next().map(|t| t.tenant)).collect()
    }

    #[test]
    fn a_flood_gets_only_its_share_while_another_tenant_waits() {
        let (queue, _) = fair(4, &[]);
        for i in 0..20 {
            queue.push(task(&format!("a{i}"), "a", 0, i));
        }
        queue.push(task("b0", "b", 0, 100));
        queue.push(task("b1", "b", 0, 101));
        let launched = drain(&queue);
        assert_eq!(
            launched.iter().filter(|t| *t == "b").count(),
            2,
            "{launched:?}"
        );
        assert_eq!(launched.len(), 4);
    }

    #[test]
    fn weights_split_the_capacity() {
        let heavy = TenantRule {
            weight: 3,
            ..TenantRule::default()
        };
        let (queue, _) = fair(8, &[("a", heavy)]);
        for i in 0..10 {
            queue.push(task(&format!("a{i}"), "a", 0, i));
            queue.push(task(&format!("b{i}"), "b", 0, 100 + i));
        }
        let launched = drain(&queue);
        assert_eq!(
            launched.iter().filter(|t| *t == "a").count(),
            6,
            "{launched:?}"
        );
        assert_eq!(
            launched.iter().filter(|t| *t == "b").count(),
            2,
            "{launched:?}"
        );
    }

    #[test]
    fn max_running_and_holds_stop_launches_and_capacity_is_not_left_idle() {
        let capped = TenantRule {
            max_running: Some(1),
            ..TenantRule::default()
        };
        let (queue, rules) = fair(4, &[("a", capped)]);
        for i in 0..3 {
            queue.push(task(&format!("a{i}"), "a", 0, i));
            queue.push(task(&format!("b{i}"), "b", 0, 10 + i));
        }
        let launched = drain(&queue);
        // a: 1 (its maxRunning); b takes the rest although above its share of 2.
        assert_eq!(
            launched.iter().filter(|t| *t == "a").count(),
            1,
            "{launched:?}"
        );
        assert_eq!(
            launched.iter().filter(|t| *t == "b").count(),
            3,
            "{launched:?}"
        );
        // Hold b: when a slot frees, only a's next task may use it, and a is at its quota.
        rules
            .write()
            .unwrap()
            .entry("b".to_owned())
            .or_default()
            .held = true;
        queue.push(task("b9", "b", 0, 99));
        assert!(queue.finish("b0"));
        assert_eq!(queue.try_next(), None, "b is held and a is at maxRunning");
        assert!(queue.finish("a0"));
        assert_eq!(queue.try_next().map(|t| t.id), Some("a1".to_owned()));
    }

    #[test]
    fn tenant_priority_orders_tenants_below_their_share() {
        let urgent = TenantRule {
            priority: 10,
            ..TenantRule::default()
        };
        let (queue, _) = fair(4, &[("u", urgent)]);
        queue.push(task("n0", "n", 5, 0));
        queue.push(task("u0", "u", 0, 1));
        assert_eq!(queue.try_next().map(|t| t.tenant), Some("u".to_owned()));
        assert_eq!(queue.try_next().map(|t| t.tenant), Some("n".to_owned()));
    }

    #[test]
    fn admissions_count_against_max_queued() {
        let queue = Queue::new(1);
        queue.push(task("a0", "a", 0, 0));
        let first = queue.admit("a", Some(2)).expect("one more fits");
        assert_eq!(queue.admit("a", Some(2)).unwrap_err(), 2);
        drop(first);
        assert!(queue.admit("a", Some(2)).is_ok());
        assert!(queue.admit("b", Some(1)).is_ok(), "quotas are per tenant");
    }
}
