//! The launch queue: ordering, capacity changes at run time, cancel of a pending task,
//! rebuild from the store after a restart, and the tenant policy extension point.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use taskpod::queue::{Candidate, LaunchPolicy, PriorityOrder, Queue, QueuedTask};
use taskpod::store::{NewTask, ReasonCode, Store, StoreOptions, TaskState, Transition};

fn queued(id: &str, tenant: &str, priority: i32, seq: i64) -> QueuedTask {
    QueuedTask {
        id: id.to_string(),
        tenant: tenant.to_string(),
        kind: "index_parallel".to_string(),
        priority,
        seq,
        snapshot: None,
    }
}

fn drain(queue: &Queue) -> Vec<String> {
    std::iter::from_fn(|| queue.try_next().map(|t| t.id)).collect()
}

#[test]
fn orders_by_priority_then_age_across_tenants() {
    let queue = Queue::new(100);
    queue.push(queued("low-old", "a", 0, 1));
    queue.push(queued("high-new", "b", 10, 5));
    queue.push(queued("mid", "a", 5, 3));
    queue.push(queued("high-old", "c", 10, 2));
    queue.push(queued("low-new", "b", 0, 4));
    queue.push(queued("negative", "c", -3, 0));
    assert!(
        !queue.push(queued("mid", "a", 5, 3)),
        "a queued id is not queued twice"
    );
    assert_eq!(
        drain(&queue),
        vec![
            "high-old", "high-new", "mid", "low-old", "low-new", "negative"
        ]
    );
    assert!(
        !queue.push(queued("mid", "a", 5, 3)),
        "an in-flight id is not queued again"
    );
}

#[test]
fn capacity_limits_in_flight_and_changes_at_run_time() {
    let queue = Queue::new(2);
    for i in 0..6 {
        queue.push(queued(&format!("t{i}"), "a", 0, i));
    }
    assert_eq!(drain(&queue), vec!["t0", "t1"]);
    assert_eq!(queue.snapshot().in_flight, 2);

    // Raising capacity lets more launch.
    queue.set_capacity(4);
    assert_eq!(drain(&queue), vec!["t2", "t3"]);

    // Lowering it keeps everything that runs and holds back launches until enough finish.
    queue.set_capacity(1);
    let snap = queue.snapshot();
    assert_eq!((snap.capacity, snap.in_flight, snap.pending), (1, 4, 2));
    assert!(queue.try_next().is_none());
    for id in ["t0", "t1", "t2"] {
        assert!(queue.finish(id));
        assert!(
            queue.try_next().is_none(),
            "still at or over capacity after {id} finished"
        );
    }
    assert!(queue.finish("t3"));
    assert!(!queue.finish("t3"), "finishing twice is harmless");
    assert_eq!(drain(&queue), vec!["t4"]);

    // Capacity 0 pauses launching entirely.
    queue.finish("t4");
    queue.set_capacity(0);
    assert!(queue.try_next().is_none());
    queue.set_capacity(1);
    assert_eq!(drain(&queue), vec!["t5"]);
}

#[tokio::test]
async fn next_waits_for_a_free_slot_and_wakes_on_changes() -> Result<()> {
    let queue = Arc::new(Queue::new(1));
    queue.push(queued("first", "a", 0, 1));
    queue.push(queued("second", "a", 0, 2));
    assert_eq!(queue.next().await.id, "first");

    // No slot: next() waits until one frees.
    let waiter = tokio::spawn({
        let queue = queue.clone();
        async move { queue.next().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "no slot is free yet");
    queue.finish("first");
    let got = tokio::time::timeout(Duration::from_secs(5), waiter).await??;
    assert_eq!(got.id, "second");

    // Slot free but nothing pending: next() waits for a push.
    queue.finish("second");
    let waiter = tokio::spawn({
        let queue = queue.clone();
        async move { queue.next().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    queue.push(queued("third", "a", 0, 3));
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await??
            .id,
        "third"
    );

    // Capacity raised while waiting.
    queue.push(queued("fourth", "a", 0, 4));
    let waiter = tokio::spawn({
        let queue = queue.clone();
        async move { queue.next().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    queue.set_capacity(2);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await??
            .id,
        "fourth"
    );

    // A dropped next() takes nothing.
    queue.push(queued("fifth", "a", 0, 5));
    let _ = tokio::time::timeout(Duration::from_millis(20), queue.next()).await;
    assert!(queue.is_pending("fifth"));
    Ok(())
}

#[tokio::test]
async fn cancel_of_a_pending_task_races_safely_with_launch() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("q.db"), StoreOptions::default())?;
    let queue = Queue::new(1);
    for id in ["keep", "drop"] {
        let submitted = store.submit(NewTask::new(id, "noop", "a", "{}")).await?;
        queue.push(QueuedTask::from(&submitted.task));
    }
    // Cancel: the store first, then the queue.
    store
        .transition(
            Transition::new("drop", TaskState::Pending, TaskState::Canceled)
                .reason(ReasonCode::CanceledByUser, "by test"),
        )
        .await?;
    assert_eq!(
        queue.remove_pending("drop").map(|t| t.id),
        Some("drop".to_string())
    );
    assert_eq!(queue.remove_pending("drop"), None);
    assert_eq!(drain(&queue), vec!["keep"]);

    // A cancel that lands after the launcher took the task: the launch CAS loses,
    // the launcher frees the slot.
    let submitted = store
        .submit(NewTask::new("late", "noop", "a", "{}"))
        .await?;
    queue.finish("keep");
    queue.push(QueuedTask::from(&submitted.task));
    let taken = queue.try_next().expect("late is launchable");
    store
        .transition(
            Transition::new("late", TaskState::Pending, TaskState::Canceled)
                .reason(ReasonCode::CanceledByUser, ""),
        )
        .await?;
    let lost = store
        .transition(
            Transition::new(&taken.id, TaskState::Pending, TaskState::Launching).job_name("j"),
        )
        .await;
    assert!(lost.is_err());
    assert!(queue.finish(&taken.id));
    assert_eq!(queue.snapshot().in_flight, 0);
    Ok(())
}

#[tokio::test]
async fn rebuilds_from_the_store_after_a_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("restart.db");
    {
        let store = Store::open(&path, StoreOptions::default())?;
        for (i, (tenant, priority)) in [("a", 0), ("a", 5), ("b", 0), ("b", 9), ("c", 1), ("c", 0)]
            .into_iter()
            .enumerate()
        {
            store
                .submit(NewTask::new(format!("t{i}"), "noop", tenant, "{}").with_priority(priority))
                .await?;
        }
        // t0 launching, t2 running, t4 succeeded, t5 canceled.
        store
            .transition(
                Transition::new("t0", TaskState::Pending, TaskState::Launching).job_name("j0"),
            )
            .await?;
        store
            .transition(
                Transition::new("t2", TaskState::Pending, TaskState::Launching).job_name("j2"),
            )
            .await?;
        store
            .transition(Transition::new(
                "t2",
                TaskState::Launching,
                TaskState::Running,
            ))
            .await?;
        store
            .transition(
                Transition::new("t4", TaskState::Pending, TaskState::Launching).job_name("j4"),
            )
            .await?;
        store
            .transition(
                Transition::new("t4", TaskState::Launching, TaskState::Succeeded)
                    .reason(ReasonCode::Completed, ""),
            )
            .await?;
        store
            .transition(
                Transition::new("t5", TaskState::Pending, TaskState::Canceled)
                    .reason(ReasonCode::CanceledByUser, ""),
            )
            .await?;
        store.close().await;
    }

    let store = Store::open(&path, StoreOptions::default())?;
    let queue = Queue::from_store(&store, 3, Box::new(PriorityOrder)).await?;
    let snap = queue.snapshot();
    assert_eq!((snap.in_flight, snap.pending), (2, 2), "{snap:?}");
    assert!(queue.is_in_flight("t0") && queue.is_in_flight("t2"));
    assert_eq!(snap.tenants["a"].in_flight, 1);
    assert_eq!(snap.tenants["b"].in_flight, 1);
    // Capacity 3 with 2 in flight: one launch, the highest priority.
    assert_eq!(drain(&queue), vec!["t3"]);
    queue.finish("t2");
    assert_eq!(drain(&queue), vec!["t1"]);
    assert!(!snap.tenants.contains_key("c"), "c has nothing unfinished");
    Ok(())
}

/// A per-tenant quota, written against the extension point (quotas themselves are a later
/// feature): no tenant may hold more than `max` slots.
#[derive(Debug)]
struct TenantQuota {
    max: usize,
}

impl LaunchPolicy for TenantQuota {
    fn choose(&self, candidates: &[Candidate<'_>], _: usize, _: usize) -> Option<usize> {
        candidates.iter().position(|c| c.usage.in_flight < self.max)
    }
}

#[test]
fn tenant_policy_decides_among_tenant_heads() {
    let queue = Queue::with_policy(10, Box::new(TenantQuota { max: 2 }));
    for i in 0..4 {
        queue.push(queued(&format!("big-{i}"), "big", 10, i));
    }
    queue.push(queued("small-0", "small", 0, 10));
    // big's two slots, then small despite its lower priority, then nothing: big is at quota.
    assert_eq!(drain(&queue), vec!["big-0", "big-1", "small-0"]);
    assert_eq!(queue.snapshot().tenants["big"].pending, 2);
    queue.finish("big-0");
    assert_eq!(drain(&queue), vec!["big-2"]);

    // An adopted Job counts against its tenant.
    let queue = Queue::with_policy(10, Box::new(TenantQuota { max: 1 }));
    assert!(queue.adopt_in_flight(queued("adopted", "t", 0, 1)));
    assert!(!queue.adopt_in_flight(queued("adopted", "t", 0, 1)));
    queue.push(queued("waiting", "t", 0, 2));
    assert!(queue.try_next().is_none());
    queue.finish("adopted");
    assert_eq!(drain(&queue), vec!["waiting"]);
    // Requeue puts an in-flight task back.
    queue.requeue(queued("waiting", "t", 0, 2));
    assert!(queue.is_pending("waiting") && !queue.is_in_flight("waiting"));
    assert_eq!(drain(&queue), vec!["waiting"]);
}
