//! The durable task store: every task, its state history and its logs, in one SQLite file (the
//! default) or in a shared PostgreSQL database (several replicas, high availability; see
//! [`postgres`]). Both backends sit behind the one [`Store`] handle with the same semantics;
//! what follows describes the SQLite one.
//!
//! The store is the host's memory. A task is acknowledged only once its row is committed
//! (WAL journal, `synchronous=FULL` by default), every state change is a compare-and-set
//! [`Transition`] stored together with its history entry before anyone acts on it, and on
//! start the runner rebuilds its queue and re-attaches to Jobs from what is here. Writes go
//! through one writer thread that commits concurrent requests together (group commit, see
//! `writer`), so callers on the tokio runtime await an acknowledgement and never block; reads
//! use a small pool of separate connections on the blocking pool (WAL lets them run beside
//! the writer).
//!
//! Schema changes are versioned steps in [`schema`]; [`Store::open`] applies the missing ones.

pub mod bench;
mod error;
mod follow;
mod model;
pub mod postgres;
mod rows;
pub mod schema;
mod validate;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{broadcast, oneshot};

pub use error::{Result, StoreError, ValidationError};
pub use follow::LogFollower;
pub use model::{
    AdapterRef, Counts, Cursor, HistoryEntry, ListQuery, LogAppend, LogSection, LogSlice, NewTask,
    Order, Page, Pairs, Reason, ReasonCode, StoreEvent, Submitted, TaskRecord, TaskState,
    Transition, UnknownName,
};
pub use validate::{InputLimits, MAX_ID_LEN, MAX_TENANT_LEN, MAX_TYPE_LEN};

use writer::{Command, Writer, WriterCounters};

/// Prepared statements the writer connection keeps: its own (about twenty) with room to spare.
const WRITER_STATEMENT_CACHE: usize = 64;

/// How hard SQLite works to make a commit survive a power loss (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync the WAL at every commit: an acknowledged task survives power loss (default).
    #[default]
    Full,
    /// fsync only at checkpoints: survives a process crash, may lose the last commits on power
    /// loss.
    Normal,
    /// Never fsync (tests and throwaway demos only).
    Off,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
            Synchronous::Off => "OFF",
        }
    }
}

/// Tuning of a [`Store`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Durability of each commit.
    pub synchronous: Synchronous,
    /// Most commands committed in one transaction.
    pub max_batch: usize,
    /// Read connections kept open.
    pub read_pool: usize,
    /// How long a connection waits for a lock held by another process.
    pub busy_timeout: Duration,
    /// Limits on submitted tasks.
    pub limits: InputLimits,
    /// Log bytes kept per task; output beyond is dropped and the log marked truncated.
    pub max_log_bytes_per_task: u64,
    /// Events buffered per subscriber before a slow one starts missing them.
    pub event_buffer: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            synchronous: Synchronous::Full,
            max_batch: 1024,
            read_pool: 4,
            busy_timeout: Duration::from_secs(5),
            limits: InputLimits::default(),
            max_log_bytes_per_task: 64 * 1024 * 1024,
            event_buffer: 4096,
        }
    }
}

/// Writer counters, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Transactions committed.
    pub commits: u64,
    /// Commands carried by them.
    pub commands: u64,
    /// The largest batch so far.
    pub largest_batch: u64,
}

/// A handle on the store; cheap to clone, shared by the runner, the API and the watchers.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(Arc<Inner>),
    Postgres(Arc<postgres::PgStore>),
}

struct Inner {
    path: PathBuf,
    options: StoreOptions,
    writer: mpsc::Sender<Command>,
    readers: Mutex<Vec<Connection>>,
    events: broadcast::Sender<StoreEvent>,
    counters: Arc<WriterCounters>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::Sqlite(inner) => f
                .debug_struct("Store")
                .field("path", &inner.path)
                .field("options", &inner.options)
                .finish_non_exhaustive(),
            Backend::Postgres(pg) => f
                .debug_struct("Store")
                .field("postgres", &pg.target())
                .finish_non_exhaustive(),
        }
    }
}

fn open_error(path: &Path, problem: impl Into<String>) -> StoreError {
    StoreError::Open {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

impl Store {
    /// Opens (or creates) the store at `path`, migrates it to the current schema and starts the
    /// writer thread.
    ///
    /// Blocking (file I/O and migrations): call it at start-up, before serving, or from
    /// `spawn_blocking`.
    pub fn open(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
            && !parent.is_dir()
        {
            return Err(open_error(
                &path,
                format!(
                    "directory {} does not exist; create it or choose another store path",
                    parent.display()
                ),
            ));
        }
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(&path, e.to_string()))?;
        conn.busy_timeout(options.busy_timeout)
            .map_err(|e| open_error(&path, e.to_string()))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(|e| {
                open_error(
                    &path,
                    format!("{e}; is this a taskpod store file (SQLite database)?"),
                )
            })?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_error(
                &path,
                format!(
                    "the file system refused write-ahead logging (journal mode stayed `{mode}`); \
                     put the store on a local disk or a PersistentVolume with file locking"
                ),
            ));
        }
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {}; PRAGMA foreign_keys = ON;",
            options.synchronous.pragma()
        ))
        .map_err(|e| open_error(&path, e.to_string()))?;
        schema::apply_migrations(&mut conn, &path, schema::LATEST_VERSION)?;
        // Room for every statement the writer runs, so none is evicted and parsed again.
        conn.set_prepared_statement_cache_capacity(WRITER_STATEMENT_CACHE);

        let (events, _) = broadcast::channel(options.event_buffer.max(1));
        let counters = Arc::new(WriterCounters::default());
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            conn,
            max_batch: options.max_batch.max(1),
            max_log_bytes: options.max_log_bytes_per_task,
            events: events.clone(),
            counters: counters.clone(),
        };
        std::thread::Builder::new()
            .name("taskpod-store-writer".to_string())
            .spawn(move || writer.run(rx))
            .map_err(|e| open_error(&path, format!("cannot start the writer thread: {e}")))?;

        let inner = Arc::new(Inner {
            path,
            options,
            writer: tx,
            readers: Mutex::new(Vec::new()),
            events,
            counters,
        });
        // Open one reader now so that a file readers cannot use fails here, not on first use.
        let reader = inner.open_reader()?;
        inner.put_reader(reader);
        Ok(Store {
            backend: Backend::Sqlite(inner),
        })
    }

    /// Connects to a PostgreSQL store (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`), migrates
    /// it to the current schema (once, even when several replicas start together) and opens
    /// `options.read_pool` connections. `options.synchronous`, `max_batch` and `busy_timeout`
    /// are SQLite's and do not apply.
    pub async fn connect_postgres(url: &str, options: StoreOptions) -> Result<Store> {
        let pg = postgres::PgStore::connect(
            url,
            options.read_pool,
            options.max_log_bytes_per_task,
            options.event_buffer,
            options.limits.clone(),
        )
        .await?;
        Ok(Store {
            backend: Backend::Postgres(Arc::new(pg)),
        })
    }

    /// Which backend this is: `sqlite FILE` or `postgres postgres://HOST:PORT/DATABASE` (never
    /// credentials), for logs.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Sqlite(inner) => format!("sqlite {}", inner.path.display()),
            Backend::Postgres(pg) => format!("postgres {}", pg.target()),
        }
    }

    fn sqlite(&self) -> Option<&Arc<Inner>> {
        match &self.backend {
            Backend::Sqlite(inner) => Some(inner),
            Backend::Postgres(_) => None,
        }
    }

    /// The file this store lives in (`None` for PostgreSQL).
    pub fn path(&self) -> Option<&Path> {
        self.sqlite().map(|inner| inner.path.as_path())
    }

    /// Subscribes to committed changes (each event is sent after its transaction committed).
    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        match &self.backend {
            Backend::Sqlite(inner) => inner.events.subscribe(),
            Backend::Postgres(pg) => pg.events.subscribe(),
        }
    }

    /// Writer counters (zero for PostgreSQL, which has no writer thread).
    pub fn stats(&self) -> StoreStats {
        let Some(inner) = self.sqlite() else {
            return StoreStats {
                commits: 0,
                commands: 0,
                largest_batch: 0,
            };
        };
        let c = &inner.counters;
        StoreStats {
            commits: c.commits.load(Ordering::Relaxed),
            commands: c.commands.load(Ordering::Relaxed),
            largest_batch: c.largest_batch.load(Ordering::Relaxed),
        }
    }

    /// Validates and stores a new task in state `pending`; returns once it is committed.
    ///
    /// The same id with an identical submission returns the stored task with
    /// `created == false`; the same id with any tenant-facing field different fails with
    /// [`StoreError::Conflict`] naming the fields.
    pub async fn submit(&self, task: NewTask) -> Result<Submitted> {
        let limits = match &self.backend {
            Backend::Sqlite(inner) => &inner.options.limits,
            Backend::Postgres(pg) => pg.limits(),
        };
        let checked = validate::check(task, limits)?;
        if let Backend::Postgres(pg) = &self.backend {
            return pg.submit(checked).await;
        }
        self.request(|reply| Command::Submit {
            task: Box::new(checked),
            reply,
        })
        .await
    }

    /// Applies a compare-and-set state change and its history entry; returns the updated task
    /// once committed.
    ///
    /// Fails with [`StoreError::StateMismatch`] if the task is not in `change.from`,
    /// [`StoreError::IllegalTransition`] if the lifecycle forbids the move, and
    /// [`StoreError::BadTransition`] if a terminal state lacks a fitting reason or `launching`
    /// lacks the Job name.
    pub async fn transition(&self, change: Transition) -> Result<TaskRecord> {
        if let Backend::Postgres(pg) = &self.backend {
            return pg.transition(change).await;
        }
        self.request(|reply| Command::Transition {
            change: Box::new(change),
            reply,
        })
        .await
    }

    /// Appends a chunk to a task's log; returns once committed.
    pub async fn append_log(&self, id: &str, data: Vec<u8>) -> Result<LogAppend> {
        self.append(id, None, data).await
    }

    /// Appends a chunk of pod `pod`'s log to the task's log and records, in the same commit,
    /// where that pod's part begins when it is not the pod stored last ([`Store::log_section`]).
    pub async fn append_pod_log(&self, id: &str, pod: &str, data: Vec<u8>) -> Result<LogAppend> {
        self.append(id, Some(pod.to_owned()), data).await
    }

    async fn append(&self, id: &str, pod: Option<String>, data: Vec<u8>) -> Result<LogAppend> {
        if let Backend::Postgres(pg) = &self.backend {
            return pg.append_log(id, pod.as_deref(), data).await;
        }
        let id = id.to_string();
        self.request(|reply| Command::AppendLog {
            id,
            pod,
            data,
            reply,
        })
        .await
    }

    /// Which pod the end of the task's stored log comes from, and where its part starts.
    pub async fn log_section(&self, id: &str) -> Result<LogSection> {
        if let Backend::Postgres(pg) = &self.backend {
            return pg.log_section(id).await;
        }
        let id = id.to_string();
        self.read(move |conn| rows::log_section(conn, &id)).await
    }

    /// Stores a host metadata value (watch resourceVersions, capacity set at run time …).
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        if let Backend::Postgres(pg) = &self.backend {
            return pg.set_meta(key, value).await;
        }
        let (key, value) = (key.to_string(), value.to_string());
        self.request(|reply| Command::SetMeta { key, value, reply })
            .await
    }

    /// Deletes up to `limit` tasks that reached a terminal state before `finished_before_ms`
    /// (Unix milliseconds), with their history and logs; returns how many. Call it repeatedly
    /// from a retention loop until it returns less than `limit`.
    pub async fn purge_finished(&self, finished_before_ms: i64, limit: usize) -> Result<usize> {
        if let Backend::Postgres(pg) = &self.backend {
            return pg.purge_finished(finished_before_ms, limit).await;
        }
        self.request(|reply| Command::Purge {
            finished_before_ms,
            limit,
            reply,
        })
        .await
    }

    /// Waits for the writer to finish the commands already sent, then stops it. Later writes
    /// fail with [`StoreError::Closed`]; reads keep working.
    pub async fn close(&self) {
        let inner = match &self.backend {
            Backend::Sqlite(inner) => inner,
            Backend::Postgres(pg) => return pg.close(),
        };
        let (tx, rx) = oneshot::channel();
        if inner.writer.send(Command::Close { reply: tx }).is_ok() {
            let _ = rx.await;
        }
    }

    /// One task.
    pub async fn get(&self, id: &str) -> Result<Option<TaskRecord>> {
        if let Backend::Postgres(pg) = &self.backend {
            return pg.get(id).await;
        }
        let id = id.to_string();
        self.read(move |conn| rows::get_task(conn, &id)).await
    }

    /// A task's state history, oldest first (empty if the task does not exist).
    pub async fn history(&self, id: &str) -> Result<Vec<HistoryEntry>> {
        if let Backend::Postgres(pg) = &self.backend {
            return pg.history(id).await;
        }
        let id = id.to_string();
        self.read(move |conn| rows::history(conn, &id)).await
    }

    /// A page of tasks matching `query`.
    pub async fn list(&self, query: ListQuery) -> Result<Page> {
        if let Backend::Postgres(pg) = &self.backend {
            return pg.list(query).await;
        }
        self.read(move |conn| rows::list(conn, &query)).await
    }

    /// Task counts by state and by tenant and state.
    pub async fn counts(&self) -> Result<Counts> {
        if let Backend::Postgres(pg) = &self.backend {
            return pg.counts().await;
        }
        self.read(rows::counts).await
    }

    /// Every pending, launching and running task, oldest first (what restore works from).
    pub async fn non_terminal(&self) -> Result<Vec<TaskRecord>> {
        if let Backend::Postgres(pg) = &self.backend {
            return pg.non_terminal().await;
        }
        self.read(rows::non_terminal).await
    }

    /// Up to `max_bytes` of a task's log starting at `offset`.
    pub async fn read_log(&self, id: &str, offset: u64, max_bytes: usize) -> Result<LogSlice> {
        if let Backend::Postgres(pg) = &self.backend {
            return pg.read_log(id, offset, max_bytes).await;
        }
        let id = id.to_string();
        self.read(move |conn| rows::read_log(conn, &id, offset, max_bytes))
            .await
    }

    /// A host metadata value.
    pub async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        if let Backend::Postgres(pg) = &self.backend {
            return pg.get_meta(key).await;
        }
        let key = key.to_string();
        self.read(move |conn| rows::get_meta(conn, &key)).await
    }

    /// Runs SQLite's integrity and foreign-key checks.
    pub async fn check_integrity(&self) -> Result<()> {
        if let Backend::Postgres(pg) = &self.backend {
            return pg.check_integrity().await;
        }
        self.read(rows::check_integrity).await
    }

    /// The file's schema version.
    pub async fn schema_version(&self) -> Result<u32> {
        if let Backend::Postgres(pg) = &self.backend {
            return pg.schema_version().await;
        }
        self.read(schema::schema_version).await
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        let inner = self.sqlite().ok_or(StoreError::Closed)?;
        let (tx, rx) = oneshot::channel();
        inner
            .writer
            .send(make(tx))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.sqlite().ok_or(StoreError::Closed)?.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner.take_reader()?;
            let result = f(&conn);
            inner.put_reader(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Database {
            context: "running a read on the blocking pool".to_string(),
            detail: e.to_string(),
        })?
    }
}

impl Inner {
    fn open_reader(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(&self.path, e.to_string()))?;
        conn.busy_timeout(self.options.busy_timeout)
            .and_then(|()| conn.execute_batch("PRAGMA query_only = ON;"))
            .map_err(|e| open_error(&self.path, e.to_string()))?;
        Ok(conn)
    }

    fn take_reader(&self) -> Result<Connection> {
        let pooled = self.readers.lock().ok().and_then(|mut pool| pool.pop());
        match pooled {
            Some(conn) => Ok(conn),
            None => self.open_reader(),
        }
    }

    fn put_reader(&self, conn: Connection) {
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < self.options.read_pool.max(1)
        {
            pool.push(conn);
        }
    }
}
