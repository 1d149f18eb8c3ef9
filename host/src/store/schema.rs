//! The store's schema as a versioned list of SQL steps.
//!
//! `PRAGMA user_version` holds the number of steps applied. [`apply_migrations`] runs the
//! missing ones, each in its own transaction together with the version bump, so a crash
//! mid-migration leaves the file at the previous version. Steps are never edited once
//! released: a change is a new step at the end of [`MIGRATIONS`].

use std::path::Path;

use rusqlite::Connection;

use super::error::{Result, StoreError};

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The version the file has once this step is applied (1-based, consecutive).
    pub version: u32,
    /// What the step adds.
    pub description: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

/// Every step, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "tasks, state history and logs",
        sql: r#"
CREATE TABLE tasks (
    id                TEXT    PRIMARY KEY NOT NULL,
    seq               INTEGER NOT NULL UNIQUE,
    tenant            TEXT    NOT NULL,
    kind              TEXT    NOT NULL,
    group_id          TEXT,
    datasource        TEXT,
    priority          INTEGER NOT NULL,
    payload           TEXT    NOT NULL,
    payload_digest    TEXT    NOT NULL,
    submission_digest TEXT    NOT NULL,
    labels            TEXT    NOT NULL,
    tags              TEXT    NOT NULL,
    state             TEXT    NOT NULL CHECK (state IN
                          ('pending','launching','running','succeeded','failed','canceled')),
    reason_code       TEXT,
    reason_message    TEXT,
    exit_code         INTEGER,
    job_name          TEXT,
    adapter_name      TEXT,
    adapter_version   TEXT,
    adapter_digest    TEXT,
    attempt           INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    launched_at       INTEGER,
    started_at        INTEGER,
    finished_at       INTEGER,
    log_bytes         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tasks_state_seq ON tasks (state, seq);
CREATE INDEX tasks_tenant_state_seq ON tasks (tenant, state, seq);
CREATE INDEX tasks_kind_seq ON tasks (kind, seq);

CREATE TABLE task_history (
    task_id        TEXT    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq            INTEGER NOT NULL,
    from_state     TEXT,
    to_state       TEXT    NOT NULL,
    reason_code    TEXT,
    reason_message TEXT,
    at             INTEGER NOT NULL,
    PRIMARY KEY (task_id, seq)
) WITHOUT ROWID;

CREATE TABLE task_logs (
    task_id      TEXT    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    start_offset INTEGER NOT NULL,
    data         BLOB    NOT NULL,
    UNIQUE (task_id, start_offset)
);
"#,
    },
    Migration {
        version: 2,
        description: "per-task log cap flag and host metadata (watch bookmarks, capacity)",
        sql: r#"
ALTER TABLE tasks ADD COLUMN log_truncated INTEGER NOT NULL DEFAULT 0;
CREATE TABLE host_meta (
    key        TEXT    PRIMARY KEY NOT NULL,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);
"#,
    },
    Migration {
        version: 3,
        description: "index of finished tasks for retention",
        sql: r#"
CREATE INDEX tasks_finished_at ON tasks (finished_at) WHERE finished_at IS NOT NULL;
"#,
    },
    Migration {
        version: 4,
        description: "the pod whose log was stored last and where its part starts",
        sql: r#"
ALTER TABLE tasks ADD COLUMN log_pod TEXT;
ALTER TABLE tasks ADD COLUMN log_pod_start INTEGER NOT NULL DEFAULT 0;
"#,
    },
];

/// The schema version this build writes.
pub const LATEST_VERSION: u32 = MIGRATIONS.len() as u32;

/// The schema version of an open database.
pub fn schema_version(conn: &Connection) -> Result<u32> {
    conn.query_row("PRAGMA user_version", [], |row| row.get::<_, u32>(0))
        .map_err(|e| StoreError::db("reading the schema version", e))
}

/// Applies the steps after the file's version up to `target` (at most [`LATEST_VERSION`]).
///
/// `path` only names the file in errors. Exposed so that tools and tests can prepare files at
/// older versions; [`super::Store::open`] calls it with [`LATEST_VERSION`].
pub fn apply_migrations(conn: &mut Connection, path: &Path, target: u32) -> Result<u32> {
    let found = schema_version(conn)?;
    if found > LATEST_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported: LATEST_VERSION,
        });
    }
    let target = target.min(LATEST_VERSION);
    for step in MIGRATIONS
        .iter()
        .filter(|m| m.version > found && m.version <= target)
    {
        let failed = |e: rusqlite::Error| StoreError::Migration {
            path: path.to_path_buf(),
            version: step.version,
            detail: e.to_string(),
        };
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
            .map_err(failed)?;
        tx.execute_batch(step.sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", step.version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(
            path = %path.display(),
            version = step.version,
            description = step.description,
            "task store schema migrated"
        );
    }
    schema_version(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.description);
        }
    }
}
