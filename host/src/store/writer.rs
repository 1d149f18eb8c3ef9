//! The writer thread: the only connection that writes, batching concurrent requests into one
//! transaction (group commit).
//!
//! Callers send a [`Command`] with a oneshot reply channel and await the reply; the thread
//! takes the first waiting command, drains whatever else has queued up meanwhile (up to the
//! batch limit), runs each command inside its own savepoint (so one refused command does not
//! undo the others), commits once, and only then replies and broadcasts the events. With
//! `synchronous=FULL` a reply therefore means "on disk". While one batch is being committed
//! the next one accumulates, so the number of fsyncs per second stays constant as load grows
//! and throughput scales with concurrency instead of with disk latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{broadcast, oneshot};

use super::error::{Result, StoreError};
use super::model::{
    LogAppend, Reason, ReasonCode, StoreEvent, Submitted, TaskRecord, TaskState, Transition,
};
use super::rows;
use super::validate::Checked;

/// A write request.
#[derive(Debug)]
pub(crate) enum Command {
    Submit {
        task: Box<Checked>,
        reply: oneshot::Sender<Result<Submitted>>,
    },
    Transition {
        change: Box<Transition>,
        reply: oneshot::Sender<Result<TaskRecord>>,
    },
    AppendLog {
        id: String,
        /// The pod the chunk comes from, when known.
        pod: Option<String>,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<LogAppend>>,
    },
    SetMeta {
        key: String,
        value: String,
        reply: oneshot::Sender<Result<()>>,
    },
    Purge {
        finished_before_ms: i64,
        limit: usize,
        reply: oneshot::Sender<Result<usize>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// Counters kept by the writer.
#[derive(Debug, Default)]
pub(crate) struct WriterCounters {
    pub commits: AtomicU64,
    pub commands: AtomicU64,
    pub largest_batch: AtomicU64,
}

/// A command's outcome, held until the batch commits.
enum Done {
    Submit(oneshot::Sender<Result<Submitted>>, Result<Submitted>),
    Transition(oneshot::Sender<Result<TaskRecord>>, Result<TaskRecord>),
    Log(oneshot::Sender<Result<LogAppend>>, Result<LogAppend>),
    Meta(oneshot::Sender<Result<()>>, Result<()>),
    Purge(oneshot::Sender<Result<usize>>, Result<usize>),
}

impl Done {
    /// Turns a success into `err` (the commit failed, nothing was written).
    fn fail(&mut self, err: &StoreError) {
        match self {
            Done::Submit(_, r @ Ok(_)) => *r = Err(err.clone()),
            Done::Transition(_, r @ Ok(_)) => *r = Err(err.clone()),
            Done::Log(_, r @ Ok(_)) => *r = Err(err.clone()),
            Done::Meta(_, r @ Ok(_)) => *r = Err(err.clone()),
            Done::Purge(_, r @ Ok(_)) => *r = Err(err.clone()),
            _ => {}
        }
    }

    /// Replies; a caller that stopped waiting is not an error.
    fn send(self) {
        match self {
            Done::Submit(tx, r) => drop(tx.send(r)),
            Done::Transition(tx, r) => drop(tx.send(r)),
            Done::Log(tx, r) => drop(tx.send(r)),
            Done::Meta(tx, r) => drop(tx.send(r)),
            Done::Purge(tx, r) => drop(tx.send(r)),
        }
    }
}

/// The writer's state, owned by its thread.
pub(crate) struct Writer {
    pub conn: Connection,
    pub max_batch: usize,
    pub max_log_bytes: u64,
    pub events: broadcast::Sender<StoreEvent>,
    pub counters: Arc<WriterCounters>,
}

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Writer {
    /// Serves commands until every sender is gone or a `Close` arrives.
    pub fn run(mut self, rx: mpsc::Receiver<Command>) {
        let mut close = None;
        while close.is_none() {
            let Ok(first) = rx.recv() else { break };
            let mut batch = Vec::with_capacity(64);
            batch.push(first);
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                }
            }
            close = self.run_batch(batch);
        }
        // Closing the last connection checkpoints the WAL into the main file.
        drop(self.conn);
        if let Some(reply) = close {
            let _ = reply.send(());
        }
    }

    fn run_batch(&mut self, batch: Vec<Command>) -> Option<oneshot::Sender<()>> {
        let now = now_ms();
        let mut done = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        let mut close = None;
        let began = self.control("BEGIN IMMEDIATE");
        let began_err = began
            .err()
            .map(|e| StoreError::db("starting a write transaction", e));
        let commands = batch.len() as u64;
        for cmd in batch {
            if let Some(err) = &began_err {
                match cmd {
                    Command::Submit { reply, .. } => {
                        done.push(Done::Submit(reply, Err(err.clone())))
                    }
                    Command::Transition { reply, .. } => {
                        done.push(Done::Transition(reply, Err(err.clone())))
                    }
                    Command::AppendLog { reply, .. } => {
                        done.push(Done::Log(reply, Err(err.clone())))
                    }
                    Command::SetMeta { reply, .. } => {
                        done.push(Done::Meta(reply, Err(err.clone())))
                    }
                    Command::Purge { reply, .. } => done.push(Done::Purge(reply, Err(err.clone()))),
                    Command::Close { reply } => close = Some(reply),
                }
                continue;
            }
            match cmd {
                Command::Submit { task, reply } => {
                    let r = self.in_savepoint(&mut events, |w, ev| w.submit(*task, now, ev));
                    done.push(Done::Submit(reply, r));
                }
                Command::Transition { change, reply } => {
                    let r = self.in_savepoint(&mut events, |w, ev| w.transition(*change, now, ev));
                    done.push(Done::Transition(reply, r));
                }
                Command::AppendLog {
                    id,
                    pod,
                    data,
                    reply,
                } => {
                    let r = self.in_savepoint(&mut events, |w, ev| w.append_log(id, pod, data, ev));
                    done.push(Done::Log(reply, r));
                }
                Command::SetMeta { key, value, reply } => {
                    let r = self.in_savepoint(&mut events, |w, _| w.set_meta(&key, &value, now));
                    done.push(Done::Meta(reply, r));
                }
                Command::Purge {
                    finished_before_ms,
                    limit,
                    reply,
                } => {
                    let r =
                        self.in_savepoint(&mut events, |w, _| w.purge(finished_before_ms, limit));
                    done.push(Done::Purge(reply, r));
                }
                Command::Close { reply } => close = Some(reply),
            }
        }
        if began_err.is_none() {
            match self.control("COMMIT") {
                Ok(()) => {
                    self.counters.commits.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .commands
                        .fetch_add(commands, Ordering::Relaxed);
                    self.counters
                        .largest_batch
                        .fetch_max(commands, Ordering::Relaxed);
                    for event in events {
                        let _ = self.events.send(event);
                    }
                }
                Err(e) => {
                    let err = StoreError::db("committing a write transaction", e);
                    tracing::error!(error = %err, "task store commit failed; the batch is rolled back");
                    let _ = self.conn.execute_batch("ROLLBACK");
                    for d in &mut done {
                        d.fail(&err);
                    }
                }
            }
        }
        for d in done {
            d.send();
        }
        close
    }

    /// Runs a transaction-control statement (`BEGIN`, `COMMIT`, `SAVEPOINT`, `RELEASE`) from the
    /// statement cache: each batch runs two of them plus two per command, so parsing them
    /// every time was a visible share of the writer's work.
    fn control(&self, sql: &'static str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.raw_execute().map(drop)
    }

    /// Runs one command in a savepoint: on error its writes are undone and its events dropped.
    fn in_savepoint<T>(
        &mut self,
        events: &mut Vec<StoreEvent>,
        f: impl FnOnce(&mut Self, &mut Vec<StoreEvent>) -> Result<T>,
    ) -> Result<T> {
        self.control("SAVEPOINT command")
            .map_err(|e| StoreError::db("opening a savepoint", e))?;
        let mut local = Vec::new();
        let result = f(self, &mut local).and_then(|value| {
            self.control("RELEASE command")
                .map_err(|e| StoreError::db("releasing a savepoint", e))?;
            Ok(value)
        });
        match result {
            Ok(value) => {
                events.append(&mut local);
                Ok(value)
            }
            Err(err) => {
                if let Err(e) = self
                    .conn
                    .execute_batch("ROLLBACK TO command; RELEASE command")
                {
                    tracing::error!(error = %e, "task store: rolling back a savepoint failed");
                }
                Err(err)
            }
        }
    }

    fn submit(&mut self, c: Checked, now: i64, ev: &mut Vec<StoreEvent>) -> Result<Submitted> {
        let id = c.task.id.clone();
        if let Some(existing) = rows::get_task(&self.conn, &id)? {
            if existing.submission_digest == c.submission_digest {
                return Ok(Submitted {
                    task: existing,
                    created: false,
                });
            }
            return Err(StoreError::Conflict {
                id,
                fields: differing_fields(&existing, &c),
            });
        }
        let t = &c.task;
        let labels = rows::pairs_json(&t.labels);
        let tags = rows::pairs_json(&t.tags);
        let context = || format!("storing task `{id}`");
        let seq: i64 = self
            .conn
            .prepare_cached(
                "INSERT INTO tasks (id, seq, tenant, kind, group_id, datasource, priority, payload, \
                 payload_digest, submission_digest, labels, tags, state, created_at, updated_at) \
                 VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM tasks), ?2, ?3, ?4, ?5, ?6, \
                 ?7, ?8, ?9, ?10, ?11, 'pending', ?12, ?12) RETURNING seq",
            )
            .and_then(|mut stmt| {
                stmt.query_row(
                    params![
                        t.id,
                        t.tenant,
                        t.kind,
                        t.group_id,
                        t.datasource,
                        t.priority,
                        t.payload,
                        c.payload_digest,
                        c.submission_digest,
                        labels,
                        tags,
                        now
                    ],
                    |row| row.get(0),
                )
            })
            .map_err(|e| StoreError::db(context(), e))?;
        self.conn
            .prepare_cached(
                "INSERT INTO task_history (task_id, seq, from_state, to_state, reason_code, \
                 reason_message, at) VALUES (?1, 1, NULL, 'pending', 'submitted', '', ?2)",
            )
            .and_then(|mut stmt| stmt.execute(params![t.id, now]))
            .map_err(|e| StoreError::db(context(), e))?;
        ev.push(StoreEvent::Submitted {
            id: t.id.clone(),
            tenant: t.tenant.clone(),
            kind: t.kind.clone(),
            priority: t.priority,
            seq,
        });
        Ok(Submitted {
            task: new_record(c, seq, now),
            created: true,
        })
    }

    fn transition(
        &mut self,
        change: Transition,
        now: i64,
        ev: &mut Vec<StoreEvent>,
    ) -> Result<TaskRecord> {
        let current =
            rows::get_task(&self.conn, &change.id)?.ok_or_else(|| StoreError::NotFound {
                id: change.id.clone(),
            })?;
        let Applied { task, from, reason } = apply_transition(current, change, now)?;
        let (id, to) = (task.id.clone(), task.state);
        let context = || format!("storing transition {from} → {to} of task `{id}`");
        self.conn
            .prepare_cached(
                "UPDATE tasks SET state = ?2, reason_code = ?3, reason_message = ?4, exit_code = ?5, \
                 job_name = ?6, adapter_name = ?7, adapter_version = ?8, adapter_digest = ?9, \
                 attempt = ?10, updated_at = ?11, launched_at = ?12, started_at = ?13, \
                 finished_at = ?14 WHERE id = ?1",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    id,
                    task.state.as_str(),
                    task.reason.as_ref().map(|r| r.code.as_str()),
                    task.reason.as_ref().map(|r| r.message.as_str()),
                    task.exit_code,
                    task.job_name,
                    task.adapter.as_ref().map(|a| a.name.as_str()),
                    task.adapter.as_ref().map(|a| a.version.as_str()),
                    task.adapter.as_ref().map(|a| a.digest.as_str()),
                    task.attempt,
                    task.updated_at_ms,
                    task.launched_at_ms,
                    task.started_at_ms,
                    task.finished_at_ms,
                ])
            })
            .map_err(|e| StoreError::db(context(), e))?;
        self.conn
            .prepare_cached(
                "INSERT INTO task_history (task_id, seq, from_state, to_state, reason_code, \
                 reason_message, at) VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM \
                 task_history WHERE task_id = ?1), ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    id,
                    from.as_str(),
                    to.as_str(),
                    reason.as_ref().map(|r| r.code.as_str()),
                    reason.as_ref().map(|r| r.message.as_str()),
                    now
                ])
            })
            .map_err(|e| StoreError::db(context(), e))?;
        ev.push(StoreEvent::Transitioned {
            id,
            tenant: task.tenant.clone(),
            from,
            to,
            reason,
        });
        Ok(task)
    }

    fn append_log(
        &mut self,
        id: String,
        pod: Option<String>,
        data: Vec<u8>,
        ev: &mut Vec<StoreEvent>,
    ) -> Result<LogAppend> {
        let context = || format!("appending to the log of task `{id}`");
        let head: Option<(i64, bool, Option<String>)> = self
            .conn
            .prepare_cached("SELECT log_bytes, log_truncated, log_pod FROM tasks WHERE id = ?1")
            .and_then(|mut stmt| {
                stmt.query_row([&id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                    .optional()
            })
            .map_err(|e| StoreError::db(context(), e))?;
        let Some((log_bytes, was_truncated, last_pod)) = head else {
            return Err(StoreError::NotFound { id });
        };
        let offset = log_bytes.max(0) as u64;
        if let Some(pod) = pod.filter(|p| last_pod.as_ref() != Some(p)) {
            // Another pod's log begins here.
            self.conn
                .prepare_cached("UPDATE tasks SET log_pod = ?2, log_pod_start = ?3 WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute(params![id, pod, offset as i64]))
                .map_err(|e| StoreError::db(context(), e))?;
        }
        let room = self.max_log_bytes.saturating_sub(offset) as usize;
        let take = data.len().min(room);
        let truncated = take < data.len();
        if take > 0 {
            self.conn
                .prepare_cached(
                    "INSERT INTO task_logs (task_id, start_offset, data) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut stmt| stmt.execute(params![id, offset as i64, &data[..take]]))
                .map_err(|e| StoreError::db(context(), e))?;
        }
        if take > 0 || (truncated && !was_truncated) {
            self.conn
                .prepare_cached("UPDATE tasks SET log_bytes = ?2, log_truncated = ?3 WHERE id = ?1")
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        id,
                        (offset + take as u64) as i64,
                        was_truncated || truncated
                    ])
                })
                .map_err(|e| StoreError::db(context(), e))?;
        }
        let end_offset = offset + take as u64;
        if take > 0 {
            ev.push(StoreEvent::LogAppended { id, end_offset });
        }
        Ok(LogAppend {
            offset,
            end_offset,
            truncated,
        })
    }

    fn purge(&mut self, finished_before_ms: i64, limit: usize) -> Result<usize> {
        self.conn
            .prepare_cached(
                "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks \
                 WHERE finished_at IS NOT NULL AND finished_at < ?1 \
                 AND state IN ('succeeded', 'failed', 'canceled') \
                 ORDER BY finished_at LIMIT ?2)",
            )
            .and_then(|mut stmt| stmt.execute(params![finished_before_ms, limit as i64]))
            .map_err(|e| StoreError::db("deleting finished tasks", e))
    }

    fn set_meta(&mut self, key: &str, value: &str, now: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO host_meta (key, value, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 updated_at = excluded.updated_at",
            )
            .and_then(|mut stmt| stmt.execute(params![key, value, now]))
            .map_err(|e| StoreError::db(format!("writing host metadata `{key}`"), e))?;
        Ok(())
    }
}

/// The record of a task just stored with `seq` at `now`.
pub(crate) fn new_record(c: Checked, seq: i64, now: i64) -> TaskRecord {
    let Checked {
        task,
        payload_digest,
        submission_digest,
    } = c;
    TaskRecord {
        id: task.id,
        seq,
        tenant: task.tenant,
        kind: task.kind,
        group_id: task.group_id,
        datasource: task.datasource,
        priority: task.priority,
        payload: task.payload,
        payload_digest,
        submission_digest,
        labels: task.labels,
        tags: task.tags,
        state: TaskState::Pending,
        reason: None,
        exit_code: None,
        job_name: None,
        adapter: None,
        attempt: 0,
        created_at_ms: now,
        updated_at_ms: now,
        launched_at_ms: None,
        started_at_ms: None,
        finished_at_ms: None,
        log_bytes: 0,
        log_truncated: false,
    }
}

/// A transition checked against the stored task and applied to it (not yet written).
pub(crate) struct Applied {
    /// The task as it is after the transition.
    pub task: TaskRecord,
    /// The state it left.
    pub from: TaskState,
    /// The reason stored with the history entry (message cut to its maximum length).
    pub reason: Option<Reason>,
}

/// Checks a compare-and-set transition against the task as stored (`current`) and returns the
/// task as it is once the transition is written: the lifecycle rules every store backend applies.
pub(crate) fn apply_transition(
    mut task: TaskRecord,
    change: Transition,
    now: i64,
) -> Result<Applied> {
    let Transition {
        id,
        from,
        to,
        reason,
        job_name,
        adapter,
        exit_code,
    } = change;
    if task.state != from {
        return Err(StoreError::StateMismatch {
            id,
            expected: from,
            actual: task.state,
        });
    }
    if !from.can_transition_to(to) {
        return Err(StoreError::IllegalTransition { id, from, to });
    }
    let bad = |problem: String| StoreError::BadTransition {
        id: id.clone(),
        to,
        problem,
    };
    let reason = reason.map(|mut r| {
        cut_message(&mut r);
        r
    });
    match &reason {
        None if to.is_terminal() => {
            return Err(bad(format!("needs a reason ({})", fitting_codes(to))));
        }
        Some(r) if !r.code.fits(to) => {
            return Err(bad(format!(
                "cannot have reason `{}`; use {}",
                r.code,
                fitting_codes(to)
            )));
        }
        _ => {}
    }
    // A task forwarded to a worker runner (migration routing) has no Job.
    let forwarded = reason
        .as_ref()
        .is_some_and(|r| r.code == ReasonCode::Forwarded);
    if to == TaskState::Launching {
        match &job_name {
            Some(name) if !name.is_empty() && name.len() <= 253 => {}
            None if forwarded => {}
            _ => {
                return Err(bad(
                    "needs the Job name (1 to 253 characters), stored before the Job is created"
                        .to_string(),
                ));
            }
        }
        task.attempt += 1;
        task.launched_at_ms = Some(now);
    }
    if to == TaskState::Running && task.started_at_ms.is_none() {
        task.started_at_ms = Some(now);
    }
    if to.is_terminal() {
        task.finished_at_ms = Some(now);
    }
    task.state = to;
    task.updated_at_ms = now;
    if reason.is_some() {
        task.reason = reason.clone();
    }
    if job_name.is_some() {
        task.job_name = job_name;
    }
    if adapter.is_some() {
        task.adapter = adapter;
    }
    if exit_code.is_some() {
        task.exit_code = exit_code;
    }
    Ok(Applied { task, from, reason })
}

/// The submit-JSON names of the fields where a resubmission differs from the stored task.
pub(crate) fn differing_fields(existing: &TaskRecord, new: &Checked) -> Vec<&'static str> {
    let t = &new.task;
    let mut fields = Vec::new();
    if existing.tenant != t.tenant {
        fields.push("tenant");
    }
    if existing.kind != t.kind {
        fields.push("type");
    }
    if existing.group_id != t.group_id {
        fields.push("groupId");
    }
    if existing.datasource != t.datasource {
        fields.push("dataSource");
    }
    if existing.payload_digest != new.payload_digest {
        fields.push("payload");
    }
    if existing.labels != t.labels {
        fields.push("labels");
    }
    if existing.tags != t.tags {
        fields.push("tags");
    }
    if existing.priority != t.priority {
        fields.push("priority");
    }
    if fields.is_empty() {
        fields.push("submission digest");
    }
    fields
}

fn fitting_codes(to: TaskState) -> String {
    let codes: Vec<&str> = ReasonCode::ALL
        .into_iter()
        .filter(|c| c.fits(to))
        .map(ReasonCode::as_str)
        .collect();
    format!("one of: {}", codes.join(", "))
}

fn cut_message(reason: &mut Reason) {
    if reason.message.len() > Reason::MAX_MESSAGE_BYTES {
        let mut end = Reason::MAX_MESSAGE_BYTES;
        while !reason.message.is_char_boundary(end) {
            end -= 1;
        }
        reason.message.truncate(end);
    }
}
