//! Work queues keyed by object, as client-go's rate-limited delaying work queue: a key queued
//! many times is processed once; a key is never processed by two workers at once (a key added
//! while it is being processed is processed again afterwards); delayed adds share one timer
//! wheel (`tokio_util::time::DelayQueue`) per queue, and failing keys are retried with a per-key
//! exponential back-off. Controllers keep no task or timer per object.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::time::DelayQueue;
use tokio_util::time::delay_queue;

use super::{Context, ControllerError};

/// First retry delay of a key whose processing failed; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(10);
/// Upper bound of the retry delay of a failing key.
const MAX_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct State<K> {
    queue: VecDeque<K>,
    dirty: HashSet<K>,
    processing: HashSet<K>,
    failures: HashMap<K, u32>,
}

/// A deduplicating work queue with delayed adds (cheap to clone).
#[derive(Debug)]
pub(crate) struct WorkQueue<K> {
    state: Arc<Mutex<State<K>>>,
    notify: Arc<Notify>,
    delayed: mpsc::UnboundedSender<(K, Instant)>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            notify: self.notify.clone(),
            delayed: self.delayed.clone(),
        }
    }
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> WorkQueue<K> {
    /// A new queue and the timer task that feeds its delayed adds (the caller keeps the task).
    pub(crate) fn new(ctx: &Context) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Self {
            state: Arc::new(Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
            })),
            notify: Arc::new(Notify::new()),
            delayed: tx,
        };
        let timer = tokio::spawn(run_timer(queue.clone(), rx, ctx.cancel.clone()));
        (queue, timer)
    }

    fn lock(&self) -> MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `key` (no-op when it is already queued).
    pub(crate) fn add(&self, key: K) {
        let mut s = self.lock();
        if !s.dirty.insert(key.clone()) {
            return;
        }
        if !s.processing.contains(&key) {
            s.queue.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Queues `key` after `delay` (an earlier pending delayed add of the same key wins).
    pub(crate) fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
        } else {
            // The receiver lives as long as the timer task; after shutdown nothing is processed.
            let _ = self.delayed.send((key, Instant::now() + delay));
        }
    }

    /// Queues `key` at `at` (now when `at` has passed).
    pub(crate) fn add_at(&self, key: K, at: Instant) {
        self.add_after(key, at.saturating_duration_since(Instant::now()));
    }

    async fn get(&self) -> K {
        loop {
            {
                let mut s = self.lock();
                if let Some(key) = s.queue.pop_front() {
                    s.dirty.remove(&key);
                    s.processing.insert(key.clone());
                    return key;
                }
            }
            self.notify.notified().await;
        }
    }

    fn done(&self, key: &K, failed: bool) -> Option<Duration> {
        let mut s = self.lock();
        s.processing.remove(key);
        let retry = if failed {
            let n = s.failures.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            Some((FIRST_RETRY * 2u32.saturating_pow((*n - 1).min(16))).min(MAX_RETRY))
        } else {
            s.failures.remove(key);
            None
        };
        if s.dirty.contains(key) {
            s.queue.push_back(key.clone());
            drop(s);
            self.notify.notify_one();
        }
        retry
    }

    /// Number of keys waiting (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().queue.len()
    }
}

async fn run_timer<K: Clone + Eq + Hash + Send + Sync + 'static>(
    queue: WorkQueue<K>,
    mut rx: mpsc::UnboundedReceiver<(K, Instant)>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut wheel: DelayQueue<K> = DelayQueue::new();
    let mut pending: HashMap<K, (delay_queue::Key, Instant)> = HashMap::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            msg = rx.recv() => {
                let Some((key, at)) = msg else { return };
                match pending.get(&key) {
                    Some((_, existing)) if *existing <= at => {}
                    Some((slot, _)) => {
                        let slot = *slot;
                        wheel.reset_at(&slot, at);
                        pending.insert(key, (slot, at));
                    }
                    None => {
                        let slot = wheel.insert_at(key.clone(), at);
                        pending.insert(key, (slot, at));
                    }
                }
            }
            Some(expired) = wheel.next(), if !wheel.is_empty() => {
                let key = expired.into_inner();
                pending.remove(&key);
                queue.add(key);
            }
        }
    }
}

/// Starts `workers` tasks that take keys from `queue` and run `reconcile` on each, honouring
/// the pause gate and shutdown. A failed key is logged and retried with back-off.
pub(crate) fn spawn_workers<K, F, Fut>(
    name: &'static str,
    workers: usize,
    queue: WorkQueue<K>,
    ctx: Arc<Context>,
    reconcile: F,
) -> Vec<JoinHandle<()>>
where
    K: Clone + Eq + Hash + Send + Sync + std::fmt::Debug + 'static,
    F: Fn(K) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ControllerError>> + Send,
{
    (0..workers.max(1))
        .map(|_| {
            let (queue, ctx, reconcile) = (queue.clone(), ctx.clone(), reconcile.clone());
            tokio::spawn(async move {
                loop {
                    let key = tokio::select! {
                        _ = ctx.cancel.cancelled() => return,
                        key = queue.get() => key,
                    };
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => return,
                        _ = ctx.gate.wait_running() => {}
                    }
                    if ctx.cancel.is_cancelled() {
                        return;
                    }
                    let result = reconcile(key.clone()).await;
                    let failed = match &result {
                        Ok(()) => false,
                        Err(e) => {
                            tracing::debug!(controller = name, key = ?key, error = %e, "retrying");
                            true
                        }
                    };
                    if let Some(retry) = queue.done(&key, failed) {
                        queue.add_after(key, retry);
                    }
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed() -> (WorkQueue<u32>, tokio_util::sync::CancellationToken) {
        let (tx, rx) = mpsc::unbounded_channel();
        let q = WorkQueue {
            state: Arc::new(Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
            })),
            notify: Arc::new(Notify::new()),
            delayed: tx,
        };
        let cancel = tokio_util::sync::CancellationToken::new();
        tokio::spawn(run_timer(q.clone(), rx, cancel.clone()));
        (q, cancel)
    }

    #[tokio::test]
    async fn delayed_adds_fire_and_the_earliest_wins() {
        let (q, cancel) = timed();
        for round in 0..20u32 {
            q.add_after(1, Duration::from_millis(40));
            q.add_after(1, Duration::from_millis(5));
            q.add_after(2, Duration::from_millis(5 + u64::from(round % 3)));
            let start = Instant::now();
            let a = tokio::time::timeout(Duration::from_secs(2), q.get())
                .await
                .expect("fires");
            let b = tokio::time::timeout(Duration::from_secs(2), q.get())
                .await
                .expect("fires");
            assert!(
                start.elapsed() < Duration::from_millis(35),
                "earliest wake wins"
            );
            let mut got = [a, b];
            got.sort();
            assert_eq!(got, [1, 2]);
            q.done(&1, false);
            q.done(&2, false);
            // The later wake of key 1 was dropped, not left pending.
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(q.len(), 0, "round {round}");
        }
        cancel.cancel();
    }

    fn bare() -> WorkQueue<u32> {
        let (tx, _rx) = mpsc::unbounded_channel();
        WorkQueue {
            state: Arc::new(Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
            })),
            notify: Arc::new(Notify::new()),
            delayed: tx,
        }
    }

    #[tokio::test]
    async fn deduplicates_and_requeues_keys_added_while_processing() {
        let q = bare();
        q.add(1);
        q.add(1);
        q.add(2);
        assert_eq!(q.len(), 2);
        let k = q.get().await;
        assert_eq!(k, 1);
        q.add(1); // while processing: not queued twice, requeued on done
        assert_eq!(q.len(), 1);
        assert_eq!(q.done(&1, false), None);
        assert_eq!(q.len(), 2);
        let _ = q.get().await;
        let k = q.get().await;
        assert_eq!(k, 1);
        assert_eq!(q.done(&1, true), Some(FIRST_RETRY));
    }
}
