//! Schema migrations: a new file, a file at every older version (with data written by that
//! version), a file from a newer taskpod, and files that are not stores at all.

use std::path::Path;

use anyhow::Result;
use rusqlite::{Connection, params};
use taskpod::store::schema::{LATEST_VERSION, MIGRATIONS, apply_migrations, schema_version};
use taskpod::store::{NewTask, ReasonCode, Store, StoreError, StoreOptions, TaskState, Transition};

#[tokio::test]
async fn creates_a_new_file_at_the_latest_version() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("new.db"), StoreOptions::default())?;
    assert_eq!(store.schema_version().await?, LATEST_VERSION);
    const {
        assert!(
            LATEST_VERSION >= 2,
            "the upgrade test needs an older version to start from"
        )
    };
    store.submit(NewTask::new("a", "noop", "t", "{}")).await?;
    store.check_integrity().await?;
    Ok(())
}

/// Writes one task (with history and a log chunk) using only the columns of `version`.
fn seed_task_at(conn: &Connection, version: u32) -> Result<()> {
    if version == 0 {
        return Ok(());
    }
    conn.execute(
        "INSERT INTO tasks (id, seq, tenant, kind, priority, payload, payload_digest, \
         submission_digest, labels, tags, state, reason_code, reason_message, job_name, attempt, \
         created_at, updated_at, launched_at, started_at, log_bytes) \
         VALUES ('old-task', 7, 'team-a', 'index_parallel', 2, '{}', ?1, ?1, '[[\"team\",\"a\"]]', \
         '[]', 'running', NULL, NULL, 'old-task-1a2b', 1, 1000, 2000, 1500, 2000, 5)",
        params!["d".repeat(64)],
    )?;
    conn.execute(
        "INSERT INTO task_history (task_id, seq, from_state, to_state, reason_code, \
         reason_message, at) VALUES ('old-task', 1, NULL, 'pending', 'submitted', '', 1000)",
        [],
    )?;
    conn.execute(
        "INSERT INTO task_logs (task_id, start_offset, data) VALUES ('old-task', 0, ?1)",
        params![b"hello".to_vec()],
    )?;
    Ok(())
}

fn prepare(path: &Path, version: u32) -> Result<()> {
    let mut conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA journal_mode = WAL;")?;
    let reached = apply_migrations(&mut conn, path, version)?;
    assert_eq!(reached, version);
    seed_task_at(&conn, version)?;
    Ok(())
}

#[tokio::test]
async fn upgrades_from_every_older_version_keeping_data() -> Result<()> {
    for version in 0..LATEST_VERSION {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(format!("v{version}.db"));
        prepare(&path, version)?;
        let store = Store::open(&path, StoreOptions::default())?;
        assert_eq!(
            store.schema_version().await?,
            LATEST_VERSION,
            "from v{version}"
        );
        store.check_integrity().await?;
        if version >= 1 {
            let task = store
                .get("old-task")
                .await?
                .expect("task kept by the upgrade");
            assert_eq!(task.state, TaskState::Running);
            assert_eq!(task.labels, vec![("team".to_string(), "a".to_string())]);
            assert_eq!(task.job_name.as_deref(), Some("old-task-1a2b"));
            assert!(!task.log_truncated);
            assert_eq!(store.read_log("old-task", 0, 100).await?.data, b"hello");
            // The upgraded file keeps working: new seqs continue after the old ones.
            let new = store
                .submit(NewTask::new("new-task", "noop", "t", "{}"))
                .await?;
            assert_eq!(new.task.seq, 8);
            let done = store
                .transition(
                    Transition::new("old-task", TaskState::Running, TaskState::Succeeded)
                        .reason(ReasonCode::Completed, ""),
                )
                .await?;
            assert_eq!(done.attempt, 1);
            assert_eq!(store.history("old-task").await?.len(), 2);
        }
        store.set_meta("k", "v").await?;
        store.close().await;
    }
    Ok(())
}

#[test]
fn every_step_applies_alone_and_leaves_a_consistent_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("steps.db");
    let mut conn = Connection::open(&path)?;
    for step in MIGRATIONS {
        assert_eq!(
            apply_migrations(&mut conn, &path, step.version)?,
            step.version
        );
        assert_eq!(schema_version(&conn)?, step.version);
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        assert_eq!(check, "ok", "after step {}", step.version);
    }
    // Applying again is a no-op.
    assert_eq!(
        apply_migrations(&mut conn, &path, LATEST_VERSION)?,
        LATEST_VERSION
    );
    Ok(())
}

#[test]
fn refuses_a_file_from_a_newer_taskpod() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("future.db");
    {
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "user_version", LATEST_VERSION + 1)?;
    }
    let err = Store::open(&path, StoreOptions::default()).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, supported, .. }
            if found == LATEST_VERSION + 1 && supported == LATEST_VERSION),
        "{err}"
    );
    assert!(err.to_string().contains("future.db"), "{err}");
    Ok(())
}

#[test]
fn explains_files_that_are_not_stores() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x42u8; 8192])?;
    let err = Store::open(&garbage, StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains("garbage.db"), "{err}");

    let missing = dir.path().join("no-such-dir").join("tasks.db");
    let err = Store::open(&missing, StoreOptions::default()).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    Ok(())
}

#[test]
fn a_failed_step_leaves_the_previous_version() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("clash.db");
    let mut conn = Connection::open(&path)?;
    apply_migrations(&mut conn, &path, 1)?;
    // Something already occupies the name step 2 creates: the step must fail as a whole.
    conn.execute_batch("CREATE TABLE host_meta (x INTEGER);")?;
    let err = apply_migrations(&mut conn, &path, LATEST_VERSION).unwrap_err();
    assert!(
        matches!(err, StoreError::Migration { version: 2, .. }),
        "{err}"
    );
    assert_eq!(schema_version(&conn)?, 1);
    let cols: i64 = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('tasks') WHERE name = 'log_truncated'",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(cols, 0, "step 2's ALTER TABLE was rolled back with it");
    Ok(())
}
