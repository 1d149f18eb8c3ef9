//! Following a task: log tailing that sees output committed while it waits and ends with the
//! task, and waiting for a terminal state — with no polling, bounded by test timeouts.

use std::time::Duration;

use anyhow::Result;
use taskpod::store::{NewTask, ReasonCode, Store, StoreError, StoreOptions, TaskState, Transition};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_log_live_and_stops_when_the_task_ends() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("f.db"), StoreOptions::default())?;
    store.submit(NewTask::new("f1", "noop", "a", "{}")).await?;
    store.append_log("f1", b"before follow\n".to_vec()).await?;

    let mut follower = store.follow_log("f1", 0, 8);
    let writer = tokio::spawn({
        let store = store.clone();
        async move {
            for i in 0..5 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                store
                    .append_log("f1", format!("line {i}\n").into_bytes())
                    .await?;
            }
            store
                .transition(
                    Transition::new("f1", TaskState::Pending, TaskState::Launching).job_name("j"),
                )
                .await?;
            store
                .transition(
                    Transition::new("f1", TaskState::Launching, TaskState::Succeeded)
                        .reason(ReasonCode::Completed, ""),
                )
                .await?;
            anyhow::Ok(())
        }
    });

    let mut text = Vec::new();
    while let Some(slice) = timeout(LIMIT, follower.next_chunk()).await?? {
        assert!(slice.data.len() <= 8);
        assert_eq!(slice.offset as usize, text.len(), "pieces are contiguous");
        text.extend_from_slice(&slice.data);
    }
    writer.await??;
    let expected: String = std::iter::once("before follow\n".to_string())
        .chain((0..5).map(|i| format!("line {i}\n")))
        .collect();
    assert_eq!(String::from_utf8(text)?, expected);
    assert_eq!(follower.offset(), expected.len() as u64);
    assert!(timeout(LIMIT, follower.next_chunk()).await??.is_none());

    // Following a finished task from the middle returns the rest and ends.
    let mut late = store.follow_log("f1", 7, 1024);
    let rest = timeout(LIMIT, late.next_chunk()).await??.expect("the rest");
    assert_eq!(rest.data, &expected.as_bytes()[7..]);
    assert!(timeout(LIMIT, late.next_chunk()).await??.is_none());

    let mut missing = store.follow_log("nope", 0, 10);
    assert_eq!(
        missing.next_chunk().await.unwrap_err(),
        StoreError::NotFound { id: "nope".into() }
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_until_a_task_is_terminal() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("w.db"), StoreOptions::default())?;
    store.submit(NewTask::new("w1", "noop", "a", "{}")).await?;
    let waiter = tokio::spawn({
        let store = store.clone();
        async move { store.wait_until_terminal("w1").await }
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!waiter.is_finished());
    store
        .transition(Transition::new("w1", TaskState::Pending, TaskState::Launching).job_name("j"))
        .await?;
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!waiter.is_finished(), "launching is not terminal");
    store
        .transition(
            Transition::new("w1", TaskState::Launching, TaskState::Failed)
                .reason(ReasonCode::LaunchTimeout, "0/3 nodes are available"),
        )
        .await?;
    let task = timeout(LIMIT, waiter).await???;
    assert_eq!(task.state, TaskState::Failed);
    assert_eq!(task.reason.map(|r| r.code), Some(ReasonCode::LaunchTimeout));
    assert_eq!(
        store.wait_until_terminal("absent").await.unwrap_err(),
        StoreError::NotFound {
            id: "absent".into()
        }
    );
    Ok(())
}
