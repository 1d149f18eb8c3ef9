//! The PostgreSQL backend of [`super::Store`], for several host replicas sharing one store
//! (high availability: one leader writes the lifecycle, every replica reads).
//!
//! It keeps the SQLite backend's semantics: a submission is acknowledged once committed, every
//! transition is a compare-and-set checked by the same rules ([`super::writer::apply_transition`])
//! on the row locked with `SELECT … FOR UPDATE`, committed together with its history entry;
//! logs are chunks with the same per-task cap; metadata is a key-value table. Each command is
//! one transaction on one of a small set of connections (PostgreSQL does its own group commit).
//! Committed-change events are broadcast in this process after the commit.
//!
//! The schema is a versioned list of steps like SQLite's ([`MIGRATIONS`]), recorded in
//! `taskpod_schema` and applied under an advisory lock so that replicas starting together
//! migrate once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{Mutex, broadcast};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row};

use super::error::{Result, StoreError};
use super::model::{
    AdapterRef, Counts, Cursor, HistoryEntry, ListQuery, LogAppend, LogSection, LogSlice, Order,
    Page, Pairs, Reason, ReasonCode, StoreEvent, Submitted, TaskRecord, TaskState, Transition,
};
use super::rows::pairs_json;
use super::validate::{Checked, InputLimits};
use super::writer::{Applied, apply_transition, differing_fields, new_record, now_ms};

/// One PostgreSQL schema step.
#[derive(Debug, Clone, Copy)]
pub struct PgMigration {
    /// The version the database has once this step is applied (1-based, consecutive).
    pub version: u32,
    /// What the step adds.
    pub description: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

/// Every PostgreSQL step, in order. Never edit a released step: add one at the end.
pub const MIGRATIONS: &[PgMigration] = &[
    PgMigration {
        version: 1,
        description: "tasks, state history, logs, host metadata",
        sql: r#"
CREATE SEQUENCE taskpod_task_seq;
CREATE TABLE tasks (
    id                TEXT    PRIMARY KEY,
    seq               BIGINT  NOT NULL UNIQUE,
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
    attempt           BIGINT  NOT NULL DEFAULT 0,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL,
    launched_at       BIGINT,
    started_at        BIGINT,
    finished_at       BIGINT,
    log_bytes         BIGINT  NOT NULL DEFAULT 0,
    log_truncated     BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX tasks_state_seq ON tasks (state, seq);
CREATE INDEX tasks_tenant_state_seq ON tasks (tenant, state, seq);
CREATE INDEX tasks_kind_seq ON tasks (kind, seq);
CREATE INDEX tasks_finished_at ON tasks (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE task_history (
    task_id        TEXT    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq            INTEGER NOT NULL,
    from_state     TEXT,
    to_state       TEXT    NOT NULL,
    reason_code    TEXT,
    reason_message TEXT,
    at             BIGINT  NOT NULL,
    PRIMARY KEY (task_id, seq)
);

CREATE TABLE task_logs (
    task_id      TEXT   NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    start_offset BIGINT NOT NULL,
    data         BYTEA  NOT NULL,
    PRIMARY KEY (task_id, start_offset)
);

CREATE TABLE host_meta (
    key        TEXT   PRIMARY KEY,
    value      TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
"#,
    },
    PgMigration {
        version: 2,
        description: "the pod whose log was stored last and where its part starts",
        sql: r#"
ALTER TABLE tasks ADD COLUMN log_pod TEXT;
ALTER TABLE tasks ADD COLUMN log_pod_start BIGINT NOT NULL DEFAULT 0;
"#,
    },
];

/// The PostgreSQL schema version this build writes.
pub const LATEST_VERSION: u32 = MIGRATIONS.len() as u32;

/// Key of the advisory lock held while migrating ("taskpod" in ASCII; shared by every replica).
const MIGRATION_LOCK: i64 = 0x0074_6173_6b70_6f64;

const TASK_COLUMNS: &str = super::rows::TASK_COLUMNS;

pub(crate) struct PgStore {
    /// `host:port/database` (never the password), for errors.
    target: String,
    url: String,
    conns: Vec<Mutex<Option<Client>>>,
    next: AtomicUsize,
    max_log_bytes: u64,
    limits: InputLimits,
    /// Set by [`PgStore::close`]: later writes fail with [`StoreError::Closed`].
    closed: AtomicBool,
    pub(crate) events: broadcast::Sender<StoreEvent>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

fn pg_err(context: impl Into<String>, e: tokio_postgres::Error) -> StoreError {
    // The error's Display is terse ("db error"); the server's message is in its source.
    let detail = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    };
    StoreError::Database {
        context: context.into(),
        detail,
    }
}

/// `host:port/database` of a connection string, without user or password.
pub(crate) fn describe_url(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(config) => {
            let host = config
                .get_hosts()
                .first()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .unwrap_or_else(|| "localhost".to_string());
            let port = config.get_ports().first().copied().unwrap_or(5432);
            let db = config.get_dbname().unwrap_or("(default database)");
            format!("postgres://{host}:{port}/{db}")
        }
        Err(_) => "(an unparsable PostgreSQL URL)".to_string(),
    }
}

async fn connect(url: &str, target: &str) -> Result<Client> {
    let (client, connection) =
        tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|e| StoreError::Connect {
                target: target.to_string(),
                problem: match e.as_db_error() {
                    Some(db) => db.message().to_string(),
                    None => e.to_string(),
                },
            })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL task store connection ended");
        }
    });
    Ok(client)
}

impl PgStore {
    /// Connects, migrates and opens `pool` connections.
    pub(crate) async fn connect(
        url: &str,
        pool: usize,
        max_log_bytes: u64,
        event_buffer: usize,
        limits: InputLimits,
    ) -> Result<PgStore> {
        url.parse::<tokio_postgres::Config>()
            .map_err(|e| StoreError::Connect {
                target: "storeBackend.url".to_string(),
                problem: format!(
                    "{e}; write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE or \
                     `host=… port=… user=… dbname=…`"
                ),
            })?;
        let target = describe_url(url);
        let mut first = connect(url, &target).await?;
        migrate(&mut first, &target, LATEST_VERSION).await?;
        let mut conns = vec![Mutex::new(Some(first))];
        for _ in 1..pool.max(1) {
            conns.push(Mutex::new(Some(connect(url, &target).await?)));
        }
        let (events, _) = broadcast::channel(event_buffer.max(1));
        Ok(PgStore {
            target,
            url: url.to_string(),
            conns,
            next: AtomicUsize::new(0),
            max_log_bytes,
            limits,
            closed: AtomicBool::new(false),
            events,
        })
    }

    pub(crate) fn limits(&self) -> &InputLimits {
        &self.limits
    }

    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// Runs `f` on a pooled connection, reconnecting first if that connection broke.
    async fn with<T>(&self, f: impl AsyncFnOnce(&mut Client) -> Result<T>) -> Result<T> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        let mut slot = self.conns[i].lock().await;
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = Some(connect(&self.url, &self.target).await?);
        }
        let client = slot.as_mut().ok_or(StoreError::Closed)?;
        f(client).await
    }

    /// Refuses later writes (reads keep working), as the SQLite backend's close does.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    fn writable(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    fn publish(&self, events: Vec<StoreEvent>) {
        for event in events {
            let _ = self.events.send(event);
        }
    }

    pub(crate) async fn submit(&self, c: Checked) -> Result<Submitted> {
        self.writable()?;
        let now = now_ms();
        let id = c.task.id.clone();
        let context = || format!("storing task `{id}`");
        let outcome = self
            .with(async |client| {
                let t = &c.task;
                let labels = pairs_json(&t.labels);
                let tags = pairs_json(&t.tags);
                let tx = client
                    .transaction()
                    .await
                    .map_err(|e| pg_err(context(), e))?;
                let inserted = tx
                    .query_opt(
                        "INSERT INTO tasks (id, seq, tenant, kind, group_id, datasource, priority, \
                         payload, payload_digest, submission_digest, labels, tags, state, \
                         created_at, updated_at) VALUES ($1, nextval('taskpod_task_seq'), $2, $3, \
                         $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12, $12) \
                         ON CONFLICT (id) DO NOTHING RETURNING seq",
                        &[
                            &t.id,
                            &t.tenant,
                            &t.kind,
                            &t.group_id,
                            &t.datasource,
                            &t.priority,
                            &t.payload,
                            &c.payload_digest,
                            &c.submission_digest,
                            &labels,
                            &tags,
                            &now,
                        ],
                    )
                    .await
                    .map_err(|e| pg_err(context(), e))?;
                let Some(row) = inserted else {
                    let existing =
                        get_task(&tx, &id)
                            .await?
                            .ok_or_else(|| StoreError::Database {
                                context: context(),
                                detail:
                                    "the task existed and vanished during the submission; retry"
                                        .to_string(),
                            })?;
                    return Ok(Err(existing));
                };
                let seq: i64 = row.get(0);
                tx.execute(
                    "INSERT INTO task_history (task_id, seq, from_state, to_state, reason_code, \
                     reason_message, at) VALUES ($1, 1, NULL, 'pending', 'submitted', '', $2)",
                    &[&t.id, &now],
                )
                .await
                .map_err(|e| pg_err(context(), e))?;
                tx.commit().await.map_err(|e| pg_err(context(), e))?;
                Ok(Ok(seq))
            })
            .await?;
        match outcome {
            Ok(seq) => {
                let t = &c.task;
                self.publish(vec![StoreEvent::Submitted {
                    id: t.id.clone(),
                    tenant: t.tenant.clone(),
                    kind: t.kind.clone(),
                    priority: t.priority,
                    seq,
                }]);
                Ok(Submitted {
                    task: new_record(c, seq, now),
                    created: true,
                })
            }
            Err(existing) if existing.submission_digest == c.submission_digest => Ok(Submitted {
                task: existing,
                created: false,
            }),
            Err(existing) => Err(StoreError::Conflict {
                id,
                fields: differing_fields(&existing, &c),
            }),
        }
    }

    pub(crate) async fn transition(&self, change: Transition) -> Result<TaskRecord> {
        self.writable()?;
        let now = now_ms();
        let (task, event) = self
            .with(async |client| {
                let id = change.id.clone();
                let (from, to) = (change.from, change.to);
                let context = || format!("storing transition {from} → {to} of task `{id}`");
                let tx = client
                    .transaction()
                    .await
                    .map_err(|e| pg_err(context(), e))?;
                let row = tx
                    .query_opt(
                        &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1 FOR UPDATE"),
                        &[&id],
                    )
                    .await
                    .map_err(|e| pg_err(context(), e))?;
                let current = match row {
                    Some(row) => task_from_row(&row)?,
                    None => return Err(StoreError::NotFound { id }),
                };
                let Applied { task, from, reason } = apply_transition(current, change, now)?;
                let attempt = i64::from(task.attempt);
                tx.execute(
                    "UPDATE tasks SET state = $2, reason_code = $3, reason_message = $4, \
                     exit_code = $5, job_name = $6, adapter_name = $7, adapter_version = $8, \
                     adapter_digest = $9, attempt = $10, updated_at = $11, launched_at = $12, \
                     started_at = $13, finished_at = $14 WHERE id = $1",
                    &[
                        &id,
                        &task.state.as_str(),
                        &task.reason.as_ref().map(|r| r.code.as_str()),
                        &task.reason.as_ref().map(|r| r.message.as_str()),
                        &task.exit_code,
                        &task.job_name,
                        &task.adapter.as_ref().map(|a| a.name.as_str()),
                        &task.adapter.as_ref().map(|a| a.version.as_str()),
                        &task.adapter.as_ref().map(|a| a.digest.as_str()),
                        &attempt,
                        &task.updated_at_ms,
                        &task.launched_at_ms,
                        &task.started_at_ms,
                        &task.finished_at_ms,
                    ],
                )
                .await
                .map_err(|e| pg_err(context(), e))?;
                tx.execute(
                    "INSERT INTO task_history (task_id, seq, from_state, to_state, reason_code, \
                     reason_message, at) VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM \
                     task_history WHERE task_id = $1), $2, $3, $4, $5, $6)",
                    &[
                        &id,
                        &from.as_str(),
                        &to.as_str(),
                        &reason.as_ref().map(|r| r.code.as_str()),
                        &reason.as_ref().map(|r| r.message.as_str()),
                        &now,
                    ],
                )
                .await
                .map_err(|e| pg_err(context(), e))?;
                tx.commit().await.map_err(|e| pg_err(context(), e))?;
                let event = StoreEvent::Transitioned {
                    id,
                    tenant: task.tenant.clone(),
                    from,
                    to,
                    reason,
                };
                Ok((task, event))
            })
            .await?;
        self.publish(vec![event]);
        Ok(task)
    }

    pub(crate) async fn append_log(
        &self,
        id: &str,
        pod: Option<&str>,
        data: Vec<u8>,
    ) -> Result<LogAppend> {
        self.writable()?;
        let max_log_bytes = self.max_log_bytes;
        let context = || format!("appending to the log of task `{id}`");
        let appended = self
            .with(async |client| {
                let tx = client
                    .transaction()
                    .await
                    .map_err(|e| pg_err(context(), e))?;
                let head = tx
                    .query_opt(
                        "SELECT log_bytes, log_truncated, log_pod FROM tasks WHERE id = $1 \
                         FOR UPDATE",
                        &[&id],
                    )
                    .await
                    .map_err(|e| pg_err(context(), e))?;
                let Some(head) = head else {
                    return Err(StoreError::NotFound { id: id.to_string() });
                };
                let (log_bytes, was_truncated): (i64, bool) = (head.get(0), head.get(1));
                let last_pod: Option<String> = head.get(2);
                let offset = log_bytes.max(0) as u64;
                if let Some(pod) = pod.filter(|p| last_pod.as_deref() != Some(*p)) {
                    // Another pod's log begins here.
                    tx.execute(
                        "UPDATE tasks SET log_pod = $2, log_pod_start = $3 WHERE id = $1",
                        &[&id, &pod, &(offset as i64)],
                    )
                    .await
                    .map_err(|e| pg_err(context(), e))?;
                }
                let room = max_log_bytes.saturating_sub(offset) as usize;
                let take = data.len().min(room);
                let truncated = take < data.len();
                if take > 0 {
                    tx.execute(
                        "INSERT INTO task_logs (task_id, start_offset, data) VALUES ($1, $2, $3)",
                        &[&id, &(offset as i64), &&data[..take]],
                    )
                    .await
                    .map_err(|e| pg_err(context(), e))?;
                }
                if take > 0 || (truncated && !was_truncated) {
                    tx.execute(
                        "UPDATE tasks SET log_bytes = $2, log_truncated = $3 WHERE id = $1",
                        &[
                            &id,
                            &((offset + take as u64) as i64),
                            &(was_truncated || truncated),
                        ],
                    )
                    .await
                    .map_err(|e| pg_err(context(), e))?;
                }
                tx.commit().await.map_err(|e| pg_err(context(), e))?;
                Ok(LogAppend {
                    offset,
                    end_offset: offset + take as u64,
                    truncated,
                })
            })
            .await?;
        if appended.end_offset > appended.offset {
            self.publish(vec![StoreEvent::LogAppended {
                id: id.to_string(),
                end_offset: appended.end_offset,
            }]);
        }
        Ok(appended)
    }

    pub(crate) async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.writable()?;
        let now = now_ms();
        self.with(async |client| {
            client
                .execute(
                    "INSERT INTO host_meta (key, value, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                     updated_at = excluded.updated_at",
                    &[&key, &value, &now],
                )
                .await
                .map_err(|e| pg_err(format!("writing host metadata `{key}`"), e))
        })
        .await?;
        Ok(())
    }

    pub(crate) async fn purge_finished(
        &self,
        finished_before_ms: i64,
        limit: usize,
    ) -> Result<usize> {
        self.writable()?;
        let limit = limit as i64;
        let n = self
            .with(async |client| {
                client
                    .execute(
                        "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks \
                         WHERE finished_at IS NOT NULL AND finished_at < $1 \
                         AND state IN ('succeeded', 'failed', 'canceled') \
                         ORDER BY finished_at LIMIT $2)",
                        &[&finished_before_ms, &limit],
                    )
                    .await
                    .map_err(|e| pg_err("deleting finished tasks", e))
            })
            .await?;
        Ok(n as usize)
    }

    pub(crate) async fn get(&self, id: &str) -> Result<Option<TaskRecord>> {
        self.with(async |client| get_task(&*client, id).await).await
    }

    pub(crate) async fn history(&self, id: &str) -> Result<Vec<HistoryEntry>> {
        let context = || format!("reading the history of task `{id}`");
        self.with(async |client| {
            let rows = client
                .query(
                    "SELECT seq, from_state, to_state, reason_code, reason_message, at \
                     FROM task_history WHERE task_id = $1 ORDER BY seq",
                    &[&id],
                )
                .await
                .map_err(|e| pg_err(context(), e))?;
            rows.iter()
                .map(|row| {
                    let from: Option<String> = row.get(1);
                    Ok(HistoryEntry {
                        seq: row.get::<_, i32>(0).max(0) as u32,
                        from: from.map(|s| parse_state(&s)).transpose()?,
                        to: parse_state(row.get(2))?,
                        reason: reason_at(row, 3)?,
                        at_ms: row.get(5),
                    })
                })
                .collect()
        })
        .await
    }

    pub(crate) async fn list(&self, query: ListQuery) -> Result<Page> {
        let limit = match query.limit {
            0 => ListQuery::DEFAULT_LIMIT,
            n => n.min(ListQuery::MAX_LIMIT),
        };
        let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE TRUE");
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        if !query.states.is_empty() {
            let states: Vec<String> = query
                .states
                .iter()
                .map(|s| s.as_str().to_string())
                .collect();
            args.push(Box::new(states));
            sql.push_str(&format!(" AND state = ANY(${})", args.len()));
        }
        if let Some(tenant) = &query.tenant {
            args.push(Box::new(tenant.clone()));
            sql.push_str(&format!(" AND tenant = ${}", args.len()));
        }
        if let Some(kind) = &query.kind {
            args.push(Box::new(kind.clone()));
            sql.push_str(&format!(" AND kind = ${}", args.len()));
        }
        let (cmp, dir) = match query.order {
            Order::NewestFirst => ("<", "DESC"),
            Order::OldestFirst => (">", "ASC"),
        };
        if let Some(Cursor(after)) = query.after {
            args.push(Box::new(after));
            sql.push_str(&format!(" AND seq {cmp} ${}", args.len()));
        }
        args.push(Box::new((limit + 1) as i64));
        sql.push_str(&format!(" ORDER BY seq {dir} LIMIT ${}", args.len()));
        let mut tasks = self
            .with(async |client| {
                let params: Vec<&(dyn ToSql + Sync)> =
                    args.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
                let rows = client
                    .query(sql.as_str(), &params)
                    .await
                    .map_err(|e| pg_err("listing tasks", e))?;
                rows.iter().map(task_from_row).collect::<Result<Vec<_>>>()
            })
            .await?;
        let next = if tasks.len() > limit {
            tasks.truncate(limit);
            tasks.last().map(|t| Cursor(t.seq))
        } else {
            None
        };
        Ok(Page { tasks, next })
    }

    pub(crate) async fn counts(&self) -> Result<Counts> {
        let rows = self
            .with(async |client| {
                client
                    .query(
                        "SELECT tenant, state, COUNT(*) FROM tasks GROUP BY tenant, state",
                        &[],
                    )
                    .await
                    .map_err(|e| pg_err("counting tasks", e))
            })
            .await?;
        let mut counts = Counts::default();
        for row in rows {
            let tenant: String = row.get(0);
            let state = parse_state(row.get(1))?;
            let n = row.get::<_, i64>(2).max(0) as u64;
            *counts.by_state.entry(state).or_default() += n;
            *counts
                .by_tenant
                .entry(tenant)
                .or_insert_with(BTreeMap::new)
                .entry(state)
                .or_default() += n;
        }
        Ok(counts)
    }

    pub(crate) async fn non_terminal(&self) -> Result<Vec<TaskRecord>> {
        self.with(async |client| {
            let rows = client
                .query(
                    &format!(
                        "SELECT {TASK_COLUMNS} FROM tasks \
                         WHERE state IN ('pending', 'launching', 'running') ORDER BY seq"
                    ),
                    &[],
                )
                .await
                .map_err(|e| pg_err("reading unfinished tasks", e))?;
            rows.iter().map(task_from_row).collect()
        })
        .await
    }

    pub(crate) async fn read_log(
        &self,
        id: &str,
        offset: u64,
        max_bytes: usize,
    ) -> Result<LogSlice> {
        let context = || format!("reading the log of task `{id}`");
        self.with(async |client| {
            // One snapshot for the head and the chunks.
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(|e| pg_err(context(), e))?;
            let head = tx
                .query_opt(
                    "SELECT state, log_bytes, log_truncated FROM tasks WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(|e| pg_err(context(), e))?;
            let Some(head) = head else {
                return Err(StoreError::NotFound { id: id.to_string() });
            };
            let state = parse_state(head.get(0))?;
            let log_bytes = head.get::<_, i64>(1).max(0) as u64;
            let truncated: bool = head.get(2);
            let offset = offset.min(log_bytes);
            let mut data = Vec::new();
            if offset < log_bytes && max_bytes > 0 {
                let rows = tx
                    .query(
                        "SELECT start_offset, data FROM task_logs WHERE task_id = $1 AND \
                         start_offset >= COALESCE((SELECT MAX(start_offset) FROM task_logs \
                         WHERE task_id = $1 AND start_offset <= $2), 0) ORDER BY start_offset",
                        &[&id, &(offset as i64)],
                    )
                    .await
                    .map_err(|e| pg_err(context(), e))?;
                for row in rows {
                    let start = row.get::<_, i64>(0).max(0) as u64;
                    let chunk: &[u8] = row.get(1);
                    let skip = offset.saturating_sub(start) as usize;
                    if skip >= chunk.len() {
                        continue;
                    }
                    let room = max_bytes - data.len();
                    data.extend_from_slice(&chunk[skip..chunk.len().min(skip + room)]);
                    if data.len() >= max_bytes {
                        break;
                    }
                }
            }
            tx.commit().await.map_err(|e| pg_err(context(), e))?;
            let next_offset = offset + data.len() as u64;
            Ok(LogSlice {
                data,
                offset,
                next_offset,
                log_bytes,
                truncated,
                state,
            })
        })
        .await
    }

    pub(crate) async fn log_section(&self, id: &str) -> Result<LogSection> {
        self.with(async |client| {
            let row = client
                .query_opt(
                    "SELECT log_pod, log_pod_start, log_bytes FROM tasks WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(|e| pg_err(format!("reading the log of task `{id}`"), e))?;
            let row = row.ok_or_else(|| StoreError::NotFound { id: id.to_owned() })?;
            Ok(LogSection {
                pod: row.get(0),
                start: row.get::<_, i64>(1).max(0) as u64,
                end: row.get::<_, i64>(2).max(0) as u64,
            })
        })
        .await
    }

    pub(crate) async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        self.with(async |client| {
            let row = client
                .query_opt("SELECT value FROM host_meta WHERE key = $1", &[&key])
                .await
                .map_err(|e| pg_err(format!("reading host metadata `{key}`"), e))?;
            Ok(row.map(|r| r.get(0)))
        })
        .await
    }

    /// Checks that no history or log row refers to a missing task (PostgreSQL guards its own
    /// pages; the foreign keys make this a consistency check of the schema).
    pub(crate) async fn check_integrity(&self) -> Result<()> {
        let orphans: i64 = self
            .with(async |client| {
                let row = client
                    .query_one(
                        "SELECT (SELECT COUNT(*) FROM task_history h WHERE NOT EXISTS \
                         (SELECT 1 FROM tasks t WHERE t.id = h.task_id)) + (SELECT COUNT(*) FROM \
                         task_logs l WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = l.task_id))",
                        &[],
                    )
                    .await
                    .map_err(|e| pg_err("checking references", e))?;
                Ok(row.get(0))
            })
            .await?;
        if orphans != 0 {
            return Err(StoreError::Corrupt {
                detail: format!("{orphans} history or log rows refer to missing tasks"),
            });
        }
        Ok(())
    }

    pub(crate) async fn schema_version(&self) -> Result<u32> {
        self.with(async |client| schema_version(client, &self.target).await)
            .await
    }
}

async fn schema_version(client: &Client, target: &str) -> Result<u32> {
    let failed = |e| pg_err(format!("reading the schema version of {target}"), e);
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS taskpod_schema (version INTEGER NOT NULL)")
        .await
        .map_err(failed)?;
    let row = client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM taskpod_schema", &[])
        .await
        .map_err(failed)?;
    Ok(row.get::<_, i32>(0).max(0) as u32)
}

/// Applies the missing steps up to `target` (at most [`LATEST_VERSION`]), each in its own
/// transaction, under an advisory lock so that concurrent replicas migrate once.
async fn migrate(client: &mut Client, name: &str, target: u32) -> Result<u32> {
    let path = std::path::PathBuf::from(name);
    let failed = |version: u32| {
        let path = path.clone();
        move |e: tokio_postgres::Error| StoreError::Migration {
            path: path.clone(),
            version,
            detail: match e.as_db_error() {
                Some(db) => db.message().to_string(),
                None => e.to_string(),
            },
        }
    };
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(failed(0))?;
    let result = async {
        let found = schema_version(client, name).await?;
        if found > LATEST_VERSION {
            return Err(StoreError::SchemaTooNew {
                path: path.clone(),
                found,
                supported: LATEST_VERSION,
            });
        }
        for step in MIGRATIONS
            .iter()
            .filter(|m| m.version > found && m.version <= target.min(LATEST_VERSION))
        {
            let tx = client.transaction().await.map_err(failed(step.version))?;
            tx.batch_execute(step.sql)
                .await
                .map_err(failed(step.version))?;
            tx.execute(
                "INSERT INTO taskpod_schema (version) VALUES ($1)",
                &[&(step.version as i32)],
            )
            .await
            .map_err(failed(step.version))?;
            tx.commit().await.map_err(failed(step.version))?;
            tracing::info!(
                store = name,
                version = step.version,
                description = step.description,
                "task store schema migrated"
            );
        }
        schema_version(client, name).await
    }
    .await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result
}

fn parse_state(text: &str) -> Result<TaskState> {
    text.parse().map_err(|e| StoreError::Database {
        context: "reading a task state".to_string(),
        detail: format!("{e}"),
    })
}

fn reason_at(row: &Row, code_col: usize) -> Result<Option<Reason>> {
    let code: Option<String> = row.get(code_col);
    let Some(code) = code else { return Ok(None) };
    let code: ReasonCode = code.parse().map_err(|e| StoreError::Database {
        context: "reading a reason code".to_string(),
        detail: format!("{e}"),
    })?;
    let message: Option<String> = row.get(code_col + 1);
    Ok(Some(Reason {
        code,
        message: message.unwrap_or_default(),
    }))
}

fn pairs_at(row: &Row, col: usize) -> Result<Pairs> {
    let text: &str = row.get(col);
    serde_json::from_str(text).map_err(|e| StoreError::Database {
        context: "reading labels or tags".to_string(),
        detail: e.to_string(),
    })
}

fn task_from_row(row: &Row) -> Result<TaskRecord> {
    let adapter_name: Option<String> = row.get(17);
    let adapter = adapter_name.map(|name| AdapterRef {
        name,
        version: row.get::<_, Option<String>>(18).unwrap_or_default(),
        digest: row.get::<_, Option<String>>(19).unwrap_or_default(),
    });
    Ok(TaskRecord {
        id: row.get(0),
        seq: row.get(1),
        tenant: row.get(2),
        kind: row.get(3),
        group_id: row.get(4),
        datasource: row.get(5),
        priority: row.get(6),
        payload: row.get(7),
        payload_digest: row.get(8),
        submission_digest: row.get(9),
        labels: pairs_at(row, 10)?,
        tags: pairs_at(row, 11)?,
        state: parse_state(row.get(12))?,
        reason: reason_at(row, 13)?,
        exit_code: row.get(15),
        job_name: row.get(16),
        adapter,
        attempt: row.get::<_, i64>(20).clamp(0, i64::from(u32::MAX)) as u32,
        created_at_ms: row.get(21),
        updated_at_ms: row.get(22),
        launched_at_ms: row.get(23),
        started_at_ms: row.get(24),
        finished_at_ms: row.get(25),
        log_bytes: row.get::<_, i64>(26).max(0) as u64,
        log_truncated: row.get(27),
    })
}

async fn get_task(
    client: &impl tokio_postgres::GenericClient,
    id: &str,
) -> Result<Option<TaskRecord>> {
    let row = client
        .query_opt(
            &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(|e| pg_err(format!("reading task `{id}`"), e))?;
    row.as_ref().map(task_from_row).transpose()
}
