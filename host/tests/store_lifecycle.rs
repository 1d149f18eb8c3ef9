//! The store's public API end to end: submission semantics, the lifecycle's compare-and-set
//! transitions and history, listing and counts, logs, metadata and events. Every scenario runs
//! on both backends: a real SQLite file (one test each), and a real PostgreSQL server started by
//! `scripts/postgres` (one test running every scenario, each in a fresh database).

#[path = "support/postgres.rs"]
mod pg;

use anyhow::Result;
use taskpod::store::{
    AdapterRef, Cursor, ListQuery, LogSection, NewTask, Order, ReasonCode, Store, StoreError,
    StoreEvent, StoreOptions, Synchronous, TaskState, Transition,
};

/// Where a scenario's store lives.
enum Where {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Where {
    fn sqlite() -> Where {
        Where::Sqlite(tempfile::tempdir().expect("temporary directory"))
    }

    async fn open_with(&self, options: StoreOptions) -> Store {
        match self {
            Where::Sqlite(dir) => Store::open(
                dir.path().join("tasks.db"),
                StoreOptions {
                    synchronous: Synchronous::Normal,
                    ..options
                },
            )
            .expect("open store"),
            Where::Postgres(url) => Store::connect_postgres(url, options)
                .await
                .expect("connect to the PostgreSQL store"),
        }
    }

    async fn open(&self) -> Store {
        self.open_with(StoreOptions::default()).await
    }
}

fn task(id: &str) -> NewTask {
    NewTask::new(
        id,
        "index_parallel",
        "team-a",
        r#"{"type":"index_parallel","spec":{}}"#,
    )
}

async fn submit_is_durable_idempotent_and_detects_conflicts(at: &Where) -> Result<()> {
    let store = at.open().await;
    let first = store
        .submit(
            task("t1")
                .with_label("team", "a")
                .with_priority(3)
                .with_datasource("wiki"),
        )
        .await?;
    assert!(first.created);
    assert_eq!(first.task.state, TaskState::Pending);
    assert_eq!(first.task.attempt, 0);
    assert_eq!(first.task.payload_digest.len(), 64);

    // Same submission with different JSON whitespace: the existing task.
    let mut again = task("t1")
        .with_label("team", "a")
        .with_priority(3)
        .with_datasource("wiki");
    again.payload = "{ \"type\": \"index_parallel\", \"spec\": {} }".to_string();
    let second = store.submit(again).await?;
    assert!(!second.created);
    assert_eq!(second.task, first.task);

    // Different payload and priority: Conflict naming both fields.
    let mut changed = task("t1")
        .with_label("team", "a")
        .with_priority(4)
        .with_datasource("wiki");
    changed.payload = r#"{"type":"index_parallel","spec":{"x":1}}"#.to_string();
    match store.submit(changed).await {
        Err(StoreError::Conflict { id, fields }) => {
            assert_eq!(id, "t1");
            assert_eq!(fields, vec!["payload", "priority"]);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    // Validation errors name the field.
    match store.submit(task("bad/id")).await {
        Err(StoreError::Invalid(e)) => assert_eq!(e.field, "id"),
        other => panic!("expected invalid id, got {other:?}"),
    }
    let mut not_json = task("t2");
    not_json.payload = "not json".into();
    let err = store.submit(not_json).await.unwrap_err();
    assert!(err.to_string().contains("field `payload`"), "{err}");

    // Reopen: the acknowledged task is there, the refused ones are not.
    store.close().await;
    let store = at.open().await;
    assert_eq!(store.get("t1").await?.map(|t| t.seq), Some(first.task.seq));
    assert_eq!(store.get("t2").await?, None);
    assert_eq!(store.counts().await?.state(TaskState::Pending), 1);
    Ok(())
}

async fn transitions_are_compare_and_set_with_history(at: &Where) -> Result<()> {
    let store = at.open().await;
    store.submit(task("job-1")).await?;

    // Wrong `from`: StateMismatch naming the actual state.
    let err = store
        .transition(
            Transition::new("job-1", TaskState::Running, TaskState::Succeeded)
                .reason(ReasonCode::Completed, ""),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::StateMismatch {
            id: "job-1".into(),
            expected: TaskState::Running,
            actual: TaskState::Pending
        }
    );
    // Not in the table.
    let err = store
        .transition(Transition::new(
            "job-1",
            TaskState::Pending,
            TaskState::Running,
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::IllegalTransition { .. }), "{err}");
    // Launching needs the Job name.
    let err = store
        .transition(Transition::new(
            "job-1",
            TaskState::Pending,
            TaskState::Launching,
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Job name"), "{err}");
    // Unknown task.
    let err = store
        .transition(Transition::new("nope", TaskState::Pending, TaskState::Launching).job_name("j"))
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound { id: "nope".into() });

    let adapter = AdapterRef {
        name: "pod-template".into(),
        version: "0.1.0".into(),
        digest: "ab".repeat(32),
    };
    let launched = store
        .transition(
            Transition::new("job-1", TaskState::Pending, TaskState::Launching)
                .job_name("job-1-3f2a")
                .adapter(adapter.clone()),
        )
        .await?;
    assert_eq!(launched.attempt, 1);
    assert_eq!(launched.job_name.as_deref(), Some("job-1-3f2a"));
    assert!(launched.launched_at_ms.is_some());
    let running = store
        .transition(Transition::new(
            "job-1",
            TaskState::Launching,
            TaskState::Running,
        ))
        .await?;
    assert!(running.started_at_ms.is_some());

    // Terminal states need a fitting reason.
    let err = store
        .transition(Transition::new(
            "job-1",
            TaskState::Running,
            TaskState::Failed,
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("needs a reason"), "{err}");
    let err = store
        .transition(
            Transition::new("job-1", TaskState::Running, TaskState::Failed)
                .reason(ReasonCode::Completed, "exit 0"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::BadTransition { .. }), "{err}");

    let long = "x".repeat(10_000);
    let failed = store
        .transition(
            Transition::new("job-1", TaskState::Running, TaskState::Failed)
                .reason(ReasonCode::ExitCode, long)
                .exit_code(137),
        )
        .await?;
    assert_eq!(failed.exit_code, Some(137));
    assert!(failed.finished_at_ms.is_some());
    assert_eq!(failed.adapter, Some(adapter));
    let reason = failed.reason.clone().expect("reason");
    assert_eq!(reason.code, ReasonCode::ExitCode);
    assert_eq!(reason.message.len(), 4096);

    // Nothing leaves a terminal state.
    for to in TaskState::ALL {
        let err = store
            .transition(
                Transition::new("job-1", TaskState::Failed, to)
                    .job_name("x")
                    .reason(ReasonCode::HostError, ""),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::IllegalTransition { .. }),
            "{to}: {err}"
        );
    }

    let history = store.history("job-1").await?;
    let path: Vec<_> = history.iter().map(|h| (h.seq, h.from, h.to)).collect();
    assert_eq!(
        path,
        vec![
            (1, None, TaskState::Pending),
            (2, Some(TaskState::Pending), TaskState::Launching),
            (3, Some(TaskState::Launching), TaskState::Running),
            (4, Some(TaskState::Running), TaskState::Failed),
        ]
    );
    assert_eq!(
        history[0].reason.as_ref().map(|r| r.code),
        Some(ReasonCode::Submitted)
    );
    assert_eq!(
        history[3].reason.as_ref().map(|r| r.code),
        Some(ReasonCode::ExitCode)
    );
    Ok(())
}

async fn concurrent_compare_and_set_has_exactly_one_winner(at: &Where) -> Result<()> {
    let store = at.open().await;
    for i in 0..50 {
        store.submit(task(&format!("race-{i}"))).await?;
    }
    // For each task a launcher and a canceller race; exactly one of them must win.
    let mut handles = Vec::new();
    for i in 0..50 {
        let id = format!("race-{i}");
        let (a, b) = (store.clone(), store.clone());
        let id2 = id.clone();
        handles.push(tokio::spawn(async move {
            a.transition(
                Transition::new(&id, TaskState::Pending, TaskState::Launching).job_name("j"),
            )
            .await
            .is_ok()
        }));
        handles.push(tokio::spawn(async move {
            b.transition(
                Transition::new(&id2, TaskState::Pending, TaskState::Canceled)
                    .reason(ReasonCode::CanceledByUser, "by test"),
            )
            .await
            .is_ok()
        }));
    }
    let mut wins = Vec::new();
    for h in handles {
        wins.push(h.await?);
    }
    for pair in wins.chunks(2) {
        assert!(
            pair[0] ^ pair[1],
            "exactly one transition of a pair succeeds: {pair:?}"
        );
    }
    let counts = store.counts().await?;
    assert_eq!(
        counts.state(TaskState::Launching) + counts.state(TaskState::Canceled),
        50
    );
    for i in 0..50 {
        assert_eq!(store.history(&format!("race-{i}")).await?.len(), 2);
    }
    Ok(())
}

async fn lists_with_filters_and_keyset_pages(at: &Where) -> Result<()> {
    let store = at.open().await;
    for i in 0..25 {
        let tenant = if i % 2 == 0 { "even" } else { "odd" };
        let kind = if i % 5 == 0 {
            "compact"
        } else {
            "index_parallel"
        };
        store
            .submit(NewTask::new(format!("l-{i:02}"), kind, tenant, "{}"))
            .await?;
    }
    for i in [0, 1, 2] {
        store
            .transition(
                Transition::new(format!("l-{i:02}"), TaskState::Pending, TaskState::Canceled)
                    .reason(ReasonCode::CanceledByUser, ""),
            )
            .await?;
    }

    // Newest first, pages of 10, following cursors.
    let mut ids = Vec::new();
    let mut after: Option<Cursor> = None;
    let mut pages = 0;
    loop {
        let page = store
            .list(ListQuery {
                limit: 10,
                after,
                ..ListQuery::default()
            })
            .await?;
        pages += 1;
        ids.extend(page.tasks.iter().map(|t| t.id.clone()));
        match page.next {
            Some(cursor) => after = Some(cursor.to_string().parse()?),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).rev().map(|i| format!("l-{i:02}")).collect();
    assert_eq!(ids, expected);

    // Oldest first with filters.
    let page = store
        .list(ListQuery {
            states: vec![TaskState::Pending],
            tenant: Some("even".into()),
            kind: Some("compact".into()),
            order: Order::OldestFirst,
            ..ListQuery::default()
        })
        .await?;
    let ids: Vec<_> = page.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, vec!["l-10", "l-20"]);
    assert_eq!(page.next, None);

    let counts = store.counts().await?;
    assert_eq!(counts.state(TaskState::Pending), 22);
    assert_eq!(counts.state(TaskState::Canceled), 3);
    assert_eq!(counts.tenant_state("even", TaskState::Canceled), 2);
    assert_eq!(counts.tenant_state("odd", TaskState::Pending), 11);

    let unfinished = store.non_terminal().await?;
    assert_eq!(unfinished.len(), 22);
    assert!(unfinished.windows(2).all(|w| w[0].seq < w[1].seq));
    Ok(())
}

async fn logs_append_in_order_and_read_from_any_offset(at: &Where) -> Result<()> {
    let store = at
        .open_with(StoreOptions {
            max_log_bytes_per_task: 40,
            ..StoreOptions::default()
        })
        .await;
    store.submit(task("logged")).await?;
    let a = store.append_log("logged", b"line one\n".to_vec()).await?;
    let b = store.append_log("logged", b"line two\n".to_vec()).await?;
    assert_eq!(
        (a.offset, a.end_offset, b.offset, b.end_offset),
        (0, 9, 9, 18)
    );

    let all = store.read_log("logged", 0, 1 << 20).await?;
    assert_eq!(all.data, b"line one\nline two\n");
    assert!(!all.is_complete(), "the task is still pending");
    // An offset inside the first chunk, spanning into the second, with a byte limit.
    let mid = store.read_log("logged", 5, 8).await?;
    assert_eq!(mid.data, b"one\nline");
    assert_eq!(mid.next_offset, 13);
    let end = store.read_log("logged", 18, 100).await?;
    assert!(end.data.is_empty());

    // The cap keeps the first 40 bytes and marks the log truncated.
    let c = store.append_log("logged", vec![b'z'; 30]).await?;
    assert_eq!((c.end_offset, c.truncated), (40, true));
    let d = store.append_log("logged", b"more".to_vec()).await?;
    assert_eq!((d.offset, d.end_offset, d.truncated), (40, 40, true));
    let capped = store.read_log("logged", 0, 1000).await?;
    assert_eq!(capped.data.len(), 40);
    assert!(capped.truncated);

    // Logs outlive the task's end and a follower sees the end.
    store
        .transition(
            Transition::new("logged", TaskState::Pending, TaskState::Failed)
                .reason(ReasonCode::AdapterError, "invalid task: no spec"),
        )
        .await?;
    let last = store.read_log("logged", 40, 100).await?;
    assert!(last.is_complete());
    let err = store.read_log("missing", 0, 10).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::NotFound {
            id: "missing".into()
        }
    );
    let err = store
        .append_log("missing", b"x".to_vec())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::NotFound {
            id: "missing".into()
        }
    );
    Ok(())
}

/// Each pod's part of a task's log is recorded with the bytes, so that a follower resuming after
/// a restart counts exactly what its own pod stored, even when two pods printed the same lines.
async fn each_pods_part_of_the_log_is_recorded(at: &Where) -> Result<()> {
    let store = at.open().await;
    store.submit(task("retried")).await?;
    let section = |pod: Option<&str>, start: u64, end: u64| LogSection {
        pod: pod.map(str::to_owned),
        start,
        end,
    };
    assert_eq!(store.log_section("retried").await?, section(None, 0, 0));
    store
        .append_pod_log("retried", "job-a", b"starting\n".to_vec())
        .await?;
    store
        .append_pod_log("retried", "job-a", b"failed\n".to_vec())
        .await?;
    assert_eq!(
        store.log_section("retried").await?,
        section(Some("job-a"), 0, 16)
    );
    // The retry prints the same lines: its part starts where the first pod's ended.
    store
        .append_pod_log("retried", "job-b", b"starting\n".to_vec())
        .await?;
    assert_eq!(
        store.log_section("retried").await?,
        section(Some("job-b"), 16, 25)
    );
    // A chunk without a pod name extends the current part.
    store.append_log("retried", b"failed\n".to_vec()).await?;
    assert_eq!(
        store.log_section("retried").await?,
        section(Some("job-b"), 16, 32)
    );
    let all = store.read_log("retried", 0, 1 << 20).await?;
    assert_eq!(all.data, b"starting\nfailed\nstarting\nfailed\n");
    // Kept across a reopen of the store.
    drop(store);
    let store = at.open().await;
    assert_eq!(
        store.log_section("retried").await?,
        section(Some("job-b"), 16, 32)
    );
    let err = store.log_section("missing").await.unwrap_err();
    assert_eq!(
        err,
        StoreError::NotFound {
            id: "missing".into()
        }
    );
    Ok(())
}

async fn events_follow_commits_and_meta_persists(at: &Where) -> Result<()> {
    let store = at.open().await;
    let mut events = store.subscribe();
    store.submit(task("e1")).await?;
    store.submit(task("e1")).await?; // idempotent: no second event
    store
        .transition(
            Transition::new("e1", TaskState::Pending, TaskState::Launching).job_name("e1-job"),
        )
        .await?;
    let _ = store
        .transition(
            Transition::new("e1", TaskState::Pending, TaskState::Launching).job_name("e1-job"),
        )
        .await
        .unwrap_err(); // refused: no event
    store.append_log("e1", b"hi".to_vec()).await?;

    let got: Vec<StoreEvent> = (0..3).map(|_| events.try_recv().expect("event")).collect();
    assert!(matches!(&got[0], StoreEvent::Submitted { id, .. } if id == "e1"));
    assert!(matches!(
        &got[1],
        StoreEvent::Transitioned {
            to: TaskState::Launching,
            ..
        }
    ));
    assert!(matches!(
        &got[2],
        StoreEvent::LogAppended { end_offset: 2, .. }
    ));
    assert!(events.try_recv().is_err(), "no further events");

    store
        .set_meta("watch.jobs.resourceVersion", "12345")
        .await?;
    store
        .set_meta("watch.jobs.resourceVersion", "12399")
        .await?;
    store.close().await;
    let err = store.submit(task("after-close")).await.unwrap_err();
    assert_eq!(err, StoreError::Closed);

    let store = at.open().await;
    assert_eq!(
        store
            .get_meta("watch.jobs.resourceVersion")
            .await?
            .as_deref(),
        Some("12399")
    );
    assert_eq!(store.get_meta("absent").await?, None);
    store.check_integrity().await?;
    Ok(())
}

async fn a_parsed_druid_task_round_trips_to_the_adapter_record(at: &Where) -> Result<()> {
    let store = at.open().await;
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/druid/tasks/index-parallel.json"),
    )?;
    let parsed = taskpod::task::SubmittedTask::parse(&text)?;
    let stored = store.submit(NewTask::from_submitted(&parsed)).await?;
    assert!(stored.created);
    assert_eq!(stored.task.to_sdk(), parsed.to_sdk());
    let reread = store.get(&parsed.id).await?.expect("stored");
    assert_eq!(reread.to_sdk(), parsed.to_sdk());
    // Resubmitting the same document is idempotent.
    let again = store.submit(NewTask::from_submitted(&parsed)).await?;
    assert!(!again.created);
    Ok(())
}

async fn purge_removes_only_old_finished_tasks_with_their_history_and_logs(
    at: &Where,
) -> Result<()> {
    let store = at.open().await;
    for i in 0..5 {
        let id = format!("p{i}");
        store.submit(task(&id)).await?;
        store.append_log(&id, b"output\n".to_vec()).await?;
    }
    for i in 0..3 {
        store
            .transition(
                Transition::new(format!("p{i}"), TaskState::Pending, TaskState::Canceled)
                    .reason(ReasonCode::CanceledByUser, ""),
            )
            .await?;
    }
    // Nothing finished before a time in the past.
    assert_eq!(store.purge_finished(0, 100).await?, 0);
    let later = i64::MAX;
    assert_eq!(
        store.purge_finished(later, 2).await?,
        2,
        "bounded by the limit"
    );
    assert_eq!(store.purge_finished(later, 100).await?, 1);
    assert_eq!(store.purge_finished(later, 100).await?, 0);
    for i in 0..3 {
        let id = format!("p{i}");
        assert_eq!(store.get(&id).await?, None);
        assert!(store.history(&id).await?.is_empty());
    }
    // Unfinished tasks and their logs stay.
    assert_eq!(store.non_terminal().await?.len(), 2);
    assert_eq!(store.read_log("p4", 0, 100).await?.data, b"output\n");
    store.check_integrity().await?;
    Ok(())
}

// One test per scenario on SQLite.

#[tokio::test]
async fn sqlite_submit_is_durable_idempotent_and_detects_conflicts() -> Result<()> {
    submit_is_durable_idempotent_and_detects_conflicts(&Where::sqlite()).await
}

#[tokio::test]
async fn sqlite_transitions_are_compare_and_set_with_history() -> Result<()> {
    transitions_are_compare_and_set_with_history(&Where::sqlite()).await
}

#[tokio::test]
async fn sqlite_concurrent_compare_and_set_has_exactly_one_winner() -> Result<()> {
    concurrent_compare_and_set_has_exactly_one_winner(&Where::sqlite()).await
}

#[tokio::test]
async fn sqlite_lists_with_filters_and_keyset_pages() -> Result<()> {
    lists_with_filters_and_keyset_pages(&Where::sqlite()).await
}

#[tokio::test]
async fn sqlite_logs_append_in_order_and_read_from_any_offset() -> Result<()> {
    logs_append_in_order_and_read_from_any_offset(&Where::sqlite()).await
}

#[tokio::test]
async fn sqlite_each_pods_part_of_the_log_is_recorded() -> Result<()> {
    each_pods_part_of_the_log_is_recorded(&Where::sqlite()).await
}

#[tokio::test]
async fn sqlite_events_follow_commits_and_meta_persists() -> Result<()> {
    events_follow_commits_and_meta_persists(&Where::sqlite()).await
}

#[tokio::test]
async fn sqlite_a_parsed_druid_task_round_trips_to_the_adapter_record() -> Result<()> {
    a_parsed_druid_task_round_trips_to_the_adapter_record(&Where::sqlite()).await
}

#[tokio::test]
async fn sqlite_purge_removes_only_old_finished_tasks_with_their_history_and_logs() -> Result<()> {
    purge_removes_only_old_finished_tasks_with_their_history_and_logs(&Where::sqlite()).await
}

/// Every scenario on PostgreSQL, each in a database of its own on one private server.
#[tokio::test]
async fn postgres_passes_every_scenario() -> Result<()> {
    let server = pg::Server::start()?;
    let url = server.fresh_database("scenario1").await?;
    submit_is_durable_idempotent_and_detects_conflicts(&Where::Postgres(url)).await?;
    let url = server.fresh_database("scenario2").await?;
    transitions_are_compare_and_set_with_history(&Where::Postgres(url)).await?;
    let url = server.fresh_database("scenario3").await?;
    concurrent_compare_and_set_has_exactly_one_winner(&Where::Postgres(url)).await?;
    let url = server.fresh_database("scenario4").await?;
    lists_with_filters_and_keyset_pages(&Where::Postgres(url)).await?;
    let url = server.fresh_database("scenario5").await?;
    logs_append_in_order_and_read_from_any_offset(&Where::Postgres(url)).await?;
    let url = server.fresh_database("scenario6").await?;
    events_follow_commits_and_meta_persists(&Where::Postgres(url)).await?;
    let url = server.fresh_database("scenario7").await?;
    a_parsed_druid_task_round_trips_to_the_adapter_record(&Where::Postgres(url)).await?;
    let url = server.fresh_database("scenario8").await?;
    purge_removes_only_old_finished_tasks_with_their_history_and_logs(&Where::Postgres(url))
        .await?;
    let url = server.fresh_database("scenario9").await?;
    each_pods_part_of_the_log_is_recorded(&Where::Postgres(url)).await?;
    Ok(())
}
