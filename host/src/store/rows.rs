//! SQL queries that read the store, shared by the read pool and the writer thread, and the
//! mapping between rows and [`TaskRecord`]s.

use std::collections::BTreeMap;

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::error::{Result, StoreError};
use super::model::{
    AdapterRef, Counts, Cursor, HistoryEntry, ListQuery, LogSection, LogSlice, Order, Page, Pairs,
    Reason, ReasonCode, TaskRecord, TaskState,
};

/// The columns [`task_from_row`] reads, in order.
pub(crate) const TASK_COLUMNS: &str = "id, seq, tenant, kind, group_id, datasource, priority, \
     payload, payload_digest, submission_digest, labels, tags, state, reason_code, \
     reason_message, exit_code, job_name, adapter_name, adapter_version, adapter_digest, \
     attempt, created_at, updated_at, launched_at, started_at, finished_at, log_bytes, \
     log_truncated";

fn conversion(col: usize, err: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, Type::Text, Box::new(err))
}

pub(crate) fn state_at(row: &Row<'_>, col: usize) -> rusqlite::Result<TaskState> {
    let text: String = row.get(col)?;
    text.parse().map_err(|e| conversion(col, e))
}

fn opt_state_at(row: &Row<'_>, col: usize) -> rusqlite::Result<Option<TaskState>> {
    let text: Option<String> = row.get(col)?;
    text.map(|t| t.parse().map_err(|e| conversion(col, e)))
        .transpose()
}

fn reason_at(row: &Row<'_>, code_col: usize) -> rusqlite::Result<Option<Reason>> {
    let code: Option<String> = row.get(code_col)?;
    let Some(code) = code else { return Ok(None) };
    let code: ReasonCode = code.parse().map_err(|e| conversion(code_col, e))?;
    let message: Option<String> = row.get(code_col + 1)?;
    Ok(Some(Reason {
        code,
        message: message.unwrap_or_default(),
    }))
}

fn pairs_at(row: &Row<'_>, col: usize) -> rusqlite::Result<Pairs> {
    let text: String = row.get(col)?;
    serde_json::from_str(&text).map_err(|e| conversion(col, e))
}

/// Serialises labels or tags for their column.
pub(crate) fn pairs_json(pairs: &Pairs) -> String {
    serde_json::to_string(pairs).unwrap_or_else(|_| "[]".to_string())
}

/// Maps a row selected with [`TASK_COLUMNS`].
pub(crate) fn task_from_row(row: &Row<'_>) -> rusqlite::Result<TaskRecord> {
    let adapter_name: Option<String> = row.get(17)?;
    let adapter = match adapter_name {
        Some(name) => Some(AdapterRef {
            name,
            version: row.get::<_, Option<String>>(18)?.unwrap_or_default(),
            digest: row.get::<_, Option<String>>(19)?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(TaskRecord {
        id: row.get(0)?,
        seq: row.get(1)?,
        tenant: row.get(2)?,
        kind: row.get(3)?,
        group_id: row.get(4)?,
        datasource: row.get(5)?,
        priority: row.get(6)?,
        payload: row.get(7)?,
        payload_digest: row.get(8)?,
        submission_digest: row.get(9)?,
        labels: pairs_at(row, 10)?,
        tags: pairs_at(row, 11)?,
        state: state_at(row, 12)?,
        reason: reason_at(row, 13)?,
        exit_code: row.get(15)?,
        job_name: row.get(16)?,
        adapter,
        attempt: row.get(20)?,
        created_at_ms: row.get(21)?,
        updated_at_ms: row.get(22)?,
        launched_at_ms: row.get(23)?,
        started_at_ms: row.get(24)?,
        finished_at_ms: row.get(25)?,
        log_bytes: row.get::<_, i64>(26)?.max(0) as u64,
        log_truncated: row.get(27)?,
    })
}

/// One task by id.
pub(crate) fn get_task(conn: &Connection, id: &str) -> Result<Option<TaskRecord>> {
    conn.prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))
        .and_then(|mut stmt| stmt.query_row([id], task_from_row).optional())
        .map_err(|e| StoreError::db(format!("reading task `{id}`"), e))
}

/// A task's state history, oldest first.
pub(crate) fn history(conn: &Connection, id: &str) -> Result<Vec<HistoryEntry>> {
    let context = || format!("reading the history of task `{id}`");
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, from_state, to_state, reason_code, reason_message, at \
             FROM task_history WHERE task_id = ?1 ORDER BY seq",
        )
        .map_err(|e| StoreError::db(context(), e))?;
    let rows = stmt
        .query_map([id], |row| {
            Ok(HistoryEntry {
                seq: row.get(0)?,
                from: opt_state_at(row, 1)?,
                to: state_at(row, 2)?,
                reason: reason_at(row, 3)?,
                at_ms: row.get(5)?,
            })
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| StoreError::db(context(), e))?;
    Ok(rows)
}

/// A page of tasks.
pub(crate) fn list(conn: &Connection, query: &ListQuery) -> Result<Page> {
    let limit = match query.limit {
        0 => ListQuery::DEFAULT_LIMIT,
        n => n.min(ListQuery::MAX_LIMIT),
    };
    let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE 1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if !query.states.is_empty() {
        let marks: Vec<String> = query
            .states
            .iter()
            .map(|state| {
                args.push(state.as_str().to_string().into());
                format!("?{}", args.len())
            })
            .collect();
        sql.push_str(&format!(" AND state IN ({})", marks.join(", ")));
    }
    if let Some(tenant) = &query.tenant {
        args.push(tenant.clone().into());
        sql.push_str(&format!(" AND tenant = ?{}", args.len()));
    }
    if let Some(kind) = &query.kind {
        args.push(kind.clone().into());
        sql.push_str(&format!(" AND kind = ?{}", args.len()));
    }
    let (cmp, dir) = match query.order {
        Order::NewestFirst => ("<", "DESC"),
        Order::OldestFirst => (">", "ASC"),
    };
    if let Some(Cursor(after)) = query.after {
        args.push(after.into());
        sql.push_str(&format!(" AND seq {cmp} ?{}", args.len()));
    }
    // One extra row tells whether another page follows.
    args.push(((limit + 1) as i64).into());
    sql.push_str(&format!(" ORDER BY seq {dir} LIMIT ?{}", args.len()));

    let mut tasks = conn
        .prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(rusqlite::params_from_iter(args), task_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(|e| StoreError::db("listing tasks", e))?;
    let next = if tasks.len() > limit {
        tasks.truncate(limit);
        tasks.last().map(|t| Cursor(t.seq))
    } else {
        None
    };
    Ok(Page { tasks, next })
}

/// Counts per state and per tenant and state.
pub(crate) fn counts(conn: &Connection) -> Result<Counts> {
    let mut counts = Counts::default();
    let rows = conn
        .prepare_cached("SELECT tenant, state, COUNT(*) FROM tasks GROUP BY tenant, state")
        .and_then(|mut stmt| {
            stmt.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    state_at(row, 1)?,
                    row.get::<_, i64>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(|e| StoreError::db("counting tasks", e))?;
    for (tenant, state, n) in rows {
        let n = n.max(0) as u64;
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

/// Every pending, launching or running task, oldest first.
pub(crate) fn non_terminal(conn: &Connection) -> Result<Vec<TaskRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks \
         WHERE state IN ('pending', 'launching', 'running') ORDER BY seq"
    ))
    .and_then(|mut stmt| {
        stmt.query_map([], task_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(|e| StoreError::db("reading unfinished tasks", e))
}

/// Up to `max_bytes` of a task's log from `offset`.
pub(crate) fn read_log(
    conn: &Connection,
    id: &str,
    offset: u64,
    max_bytes: usize,
) -> Result<LogSlice> {
    let context = || format!("reading the log of task `{id}`");
    let head = conn
        .prepare_cached("SELECT state, log_bytes, log_truncated FROM tasks WHERE id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([id], |row| {
                Ok((
                    state_at(row, 0)?,
                    row.get::<_, i64>(1)?.max(0) as u64,
                    row.get::<_, bool>(2)?,
                ))
            })
            .optional()
        })
        .map_err(|e| StoreError::db(context(), e))?;
    let Some((state, log_bytes, truncated)) = head else {
        return Err(StoreError::NotFound { id: id.to_string() });
    };
    let offset = offset.min(log_bytes);
    let mut data = Vec::new();
    if offset < log_bytes && max_bytes > 0 {
        let mut stmt = conn
            .prepare_cached(
                "SELECT start_offset, data FROM task_logs WHERE task_id = ?1 AND start_offset >= \
                 COALESCE((SELECT MAX(start_offset) FROM task_logs \
                           WHERE task_id = ?1 AND start_offset <= ?2), 0) \
                 ORDER BY start_offset",
            )
            .map_err(|e| StoreError::db(context(), e))?;
        let mut rows = stmt
            .query(params![id, offset as i64])
            .map_err(|e| StoreError::db(context(), e))?;
        while let Some(row) = rows.next().map_err(|e| StoreError::db(context(), e))? {
            let start = row
                .get::<_, i64>(0)
                .map_err(|e| StoreError::db(context(), e))? as u64;
            let chunk = row
                .get_ref(1)
                .and_then(|v| v.as_blob().map_err(rusqlite::Error::from))
                .map_err(|e| StoreError::db(context(), e))?;
            let skip = offset.saturating_sub(start) as usize;
            if skip >= chunk.len() {
                continue;
            }
            let room = max_bytes - data.len();
            let piece = &chunk[skip..chunk.len().min(skip + room)];
            data.extend_from_slice(piece);
            if data.len() >= max_bytes {
                break;
            }
        }
    }
    let next_offset = offset + data.len() as u64;
    Ok(LogSlice {
        data,
        offset,
        next_offset,
        log_bytes,
        truncated,
        state,
    })
}

/// A host metadata value.
pub(crate) fn get_meta(conn: &Connection, key: &str) -> Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM host_meta WHERE key = ?1")
        .and_then(|mut stmt| stmt.query_row([key], |row| row.get(0)).optional())
        .map_err(|e| StoreError::db(format!("reading host metadata `{key}`"), e))
}

/// `PRAGMA integrity_check` and `PRAGMA foreign_key_check`.
pub(crate) fn check_integrity(conn: &Connection) -> Result<()> {
    let results = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut stmt| {
            stmt.query_map([], |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(|e| StoreError::db("checking integrity", e))?;
    if results != ["ok"] {
        return Err(StoreError::Corrupt {
            detail: results.join("; "),
        });
    }
    let orphans: i64 = conn
        .query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |row| {
            row.get(0)
        })
        .map_err(|e| StoreError::db("checking foreign keys", e))?;
    if orphans != 0 {
        return Err(StoreError::Corrupt {
            detail: format!("{orphans} history or log rows refer to missing tasks"),
        });
    }
    Ok(())
}

/// Which pod the end of task `id`'s stored log comes from ([`LogSection`]).
pub(crate) fn log_section(conn: &Connection, id: &str) -> Result<LogSection> {
    conn.prepare_cached("SELECT log_pod, log_pod_start, log_bytes FROM tasks WHERE id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([id], |row| {
                Ok(LogSection {
                    pod: row.get(0)?,
                    start: row.get::<_, i64>(1)?.max(0) as u64,
                    end: row.get::<_, i64>(2)?.max(0) as u64,
                })
            })
            .optional()
        })
        .map_err(|e| StoreError::db(format!("reading the log of task `{id}`"), e))?
        .ok_or_else(|| StoreError::NotFound { id: id.to_owned() })
}
