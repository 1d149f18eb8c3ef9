//! The client commands — `submit [--wait]`, `status`, `list`, `cancel`, `logs [-f]`,
//! `capacity` — which talk to a running `taskpod serve` through its HTTP API
//! ([`crate::client`]), plus the error type shared by every command that runs a service
//! (`serve`, `demo`, `sim`).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::api::{EventView, TaskView};
use crate::client::{Client, ClientError, DEFAULT_SERVER, ListFilter};
use crate::store::TaskState;
use crate::task::SubmittedTask;

/// Why a service or client command failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Talking to the API failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A file could not be read or written.
    #[error("{what}: {error}")]
    Io {
        /// Which file or stream, and what was being done.
        what: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The task document is invalid.
    #[error("task {origin}: {error}")]
    Task {
        /// Where it came from.
        origin: String,
        /// What is wrong.
        error: crate::task::TaskError,
    },
    /// A task submitted with `--wait` ended without success.
    #[error("task `{id}` ended {state}{}", reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    TaskEnded {
        /// The task.
        id: String,
        /// Its final state.
        state: TaskState,
        /// Its reason.
        reason: Option<String>,
    },
    /// The service could not start or failed while running.
    #[error("{0}")]
    Start(String),
    /// The demo's outcome differed from what its sample tasks are built to show.
    #[error("the demo did not end as expected: {0}")]
    Demo(String),
}

impl ServiceError {
    /// An I/O error with its context.
    pub(crate) fn io(what: impl Into<String>, error: std::io::Error) -> ServiceError {
        ServiceError::Io {
            what: what.into(),
            error,
        }
    }
}

/// `--server URL` (env `TASKPOD_SERVER`).
#[derive(Debug, Clone, Args)]
pub struct ServerArg {
    /// The taskpod API to talk to.
    #[arg(long, env = "TASKPOD_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// API token (tenant or admin), sent as `Authorization: Bearer`; needed when the server
    /// has tenants or an admin token configured.
    #[arg(long, env = "TASKPOD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl ServerArg {
    /// A client for this server, with the token.
    pub fn client(&self) -> Result<Client, ServiceError> {
        Ok(Client::new(&self.server)?.with_token(self.token.as_deref()))
    }
}

/// `taskpod submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The task file (a taskpod task envelope or a raw Druid task, JSON); `-` reads stdin.
    pub task: PathBuf,
    /// Wait until the task ends, printing each state change; exits non-zero unless it succeeded.
    #[arg(long)]
    pub wait: bool,
    /// The server.
    #[command(flatten)]
    pub server: ServerArg,
}

/// `taskpod status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The task id.
    pub id: String,
    /// Print the API's JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The server.
    #[command(flatten)]
    pub server: ServerArg,
}

/// `taskpod list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only these states (comma separated: pending,launching,running,succeeded,failed,canceled).
    #[arg(long)]
    pub state: Option<String>,
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this task type.
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Page size (1 to 1000; default 100).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Continue after this cursor (printed at the end of the previous page).
    #[arg(long)]
    pub after: Option<String>,
    /// Oldest first instead of newest first.
    #[arg(long)]
    pub oldest_first: bool,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The server.
    #[command(flatten)]
    pub server: ServerArg,
}

/// `taskpod cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The task id.
    pub id: String,
    /// Delete the Job's pods at once (grace period 0).
    #[arg(long)]
    pub force: bool,
    /// The server.
    #[command(flatten)]
    pub server: ServerArg,
}

/// `taskpod logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The task id.
    pub id: String,
    /// Keep streaming until the task has ended.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The server.
    #[command(flatten)]
    pub server: ServerArg,
}

/// `taskpod capacity`.
#[derive(Debug, Args)]
pub struct CapacityArgs {
    /// Set the capacity (most Jobs in flight) instead of showing it.
    #[arg(long)]
    pub set: Option<usize>,
    /// The server.
    #[command(flatten)]
    pub server: ServerArg,
}

/// Runs `fut` on a small runtime of its own (the CLI is synchronous).
pub(crate) fn block_on<T>(
    fut: impl std::future::Future<Output = Result<T, ServiceError>>,
) -> Result<T, ServiceError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ServiceError::io("cannot start the async runtime", e))?;
    runtime.block_on(fut)
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<(), ServiceError> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| ServiceError::io("standard output", e))
}

/// One line describing a task: `ID  STATE  (reason: message, exit code N)`.
pub fn describe(task: &TaskView) -> String {
    let mut text = format!("{}  {}", task.id, task.state);
    let mut details = Vec::new();
    if let Some(reason) = &task.reason {
        match &task.message {
            Some(message) => details.push(format!("{reason}: {message}")),
            None => details.push(reason.clone()),
        }
    }
    if let Some(code) = task.exit_code {
        details.push(format!("exit code {code}"));
    }
    if let Some(job) = &task.job_name {
        details.push(format!("job {job}"));
    }
    if !details.is_empty() {
        text.push_str(&format!("  ({})", details.join(", ")));
    }
    text
}

/// One line for an event seen while waiting.
pub fn describe_event(event: &EventView) -> Option<String> {
    let id = event.id.as_deref()?;
    let to = event.to?;
    let mut text = match event.from {
        Some(from) => format!("{id}  {from} → {to}"),
        None => format!("{id}  {to}"),
    };
    if let Some(reason) = &event.reason
        && reason != "submitted"
    {
        text.push_str(&format!("  ({reason}"));
        if let Some(message) = &event.message {
            text.push_str(&format!(": {message}"));
        }
        text.push(')');
    }
    Some(text)
}

/// `taskpod submit`.
pub fn submit(args: &SubmitArgs, out: &mut dyn Write) -> Result<(), ServiceError> {
    let (origin, text) = if args.task.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| ServiceError::io("standard input", e))?;
        ("<stdin>".to_owned(), text)
    } else {
        let text = std::fs::read_to_string(&args.task).map_err(|e| {
            ServiceError::io(format!("cannot read task file {}", args.task.display()), e)
        })?;
        (args.task.display().to_string(), text)
    };
    // Validate locally first: the same checks the server makes, with the file named.
    let parsed =
        SubmittedTask::parse(&text).map_err(|error| ServiceError::Task { origin, error })?;
    let client = args.server.client()?;
    block_on(async {
        let mut feed = if args.wait {
            Some(client.events(Some(&parsed.id)).await?)
        } else {
            None
        };
        let submitted = client.submit(&text).await?;
        let note = if submitted.created {
            "submitted"
        } else {
            "already submitted"
        };
        write_out(out, &format!("{}  ({note})\n", describe(&submitted.task)))?;
        let Some(feed) = feed.as_mut() else {
            return Ok(());
        };
        // The feed was opened before the submit, so no change after it is missed; read the
        // task once more in case it moved on before the feed existed (a resubmission).
        let mut last = client.get(&parsed.id).await?.task;
        if last.state != submitted.task.state {
            write_out(out, &format!("{}\n", describe(&last)))?;
        }
        while !last.state.is_terminal() {
            match feed.next().await? {
                Some(event) if event.kind == "transition" => {
                    if let Some(line) = describe_event(&event) {
                        write_out(out, &format!("{line}\n"))?;
                    }
                    if event.to.is_some_and(TaskState::is_terminal) {
                        last = client.get(&parsed.id).await?.task;
                    }
                }
                Some(event) if event.kind == "lagged" => {
                    last = client.get(&parsed.id).await?.task;
                }
                Some(_) => {}
                None => {
                    // The server closed the feed (restart): reconnect and re-read the task.
                    *feed = client.events(Some(&parsed.id)).await?;
                    last = client.get(&parsed.id).await?.task;
                }
            }
        }
        write_out(out, &format!("{}\n", describe(&last)))?;
        if last.state == TaskState::Succeeded {
            Ok(())
        } else {
            Err(ServiceError::TaskEnded {
                id: last.id,
                state: last.state,
                reason: last.reason,
            })
        }
    })
}

/// `taskpod status`.
pub fn status(args: &StatusArgs, out: &mut dyn Write) -> Result<(), ServiceError> {
    let client = args.server.client()?;
    let detail = block_on(async { Ok(client.get(&args.id).await?) })?;
    if args.json {
        let text = serde_json::to_string_pretty(&detail).unwrap_or_default();
        return write_out(out, &format!("{text}\n"));
    }
    let mut text = format!("{}\n", describe(&detail.task));
    let t = &detail.task;
    text.push_str(&format!(
        "  type {}  tenant {}  priority {}  attempt {}  log {} bytes\n",
        t.kind, t.tenant, t.priority, t.attempt, t.log_bytes
    ));
    for h in &detail.history {
        let from = h.from.map(|f| format!("{f} → ")).unwrap_or_default();
        let reason = h
            .reason
            .as_ref()
            .map(|r| match &h.message {
                Some(m) => format!("  ({r}: {m})"),
                None => format!("  ({r})"),
            })
            .unwrap_or_default();
        text.push_str(&format!(
            "  {}  {from}{}{reason}\n",
            format_ms(h.at_ms),
            h.to
        ));
    }
    write_out(out, &text)
}

/// `taskpod list`.
pub fn list(args: &ListArgs, out: &mut dyn Write) -> Result<(), ServiceError> {
    let client = args.server.client()?;
    let filter = ListFilter {
        state: args.state.clone(),
        tenant: args.tenant.clone(),
        kind: args.kind.clone(),
        limit: args.limit,
        after: args.after.clone(),
        order: args.oldest_first.then(|| "oldest-first".to_owned()),
    };
    let page = block_on(async { Ok(client.list(&filter).await?) })?;
    if args.json {
        let text = serde_json::to_string_pretty(&page).unwrap_or_default();
        return write_out(out, &format!("{text}\n"));
    }
    let mut text = String::new();
    for task in &page.tasks {
        text.push_str(&describe(task));
        text.push('\n');
    }
    if let Some(next) = &page.next {
        text.push_str(&format!("(more: --after {next})\n"));
    }
    write_out(out, &text)
}

/// `taskpod cancel`.
pub fn cancel(args: &CancelArgs, out: &mut dyn Write) -> Result<(), ServiceError> {
    let client = args.server.client()?;
    let task = block_on(async { Ok(client.cancel(&args.id, args.force).await?) })?;
    write_out(out, &format!("{}\n", describe(&task)))
}

/// `taskpod logs`.
pub fn logs(args: &LogsArgs, out: &mut dyn Write) -> Result<(), ServiceError> {
    let client = args.server.client()?;
    block_on(async {
        client
            .log(&args.id, args.follow, |chunk| {
                out.write_all(chunk)?;
                out.flush()
            })
            .await?;
        Ok(())
    })
}

/// `taskpod capacity`.
pub fn capacity(args: &CapacityArgs, out: &mut dyn Write) -> Result<(), ServiceError> {
    let client = args.server.client()?;
    let view = block_on(async {
        Ok(match args.set {
            Some(n) => client.set_capacity(n).await?,
            None => client.capacity().await?,
        })
    })?;
    write_out(
        out,
        &format!(
            "capacity {}  in flight {}  pending {}\n",
            view.capacity, view.in_flight, view.pending
        ),
    )
}

/// `YYYY-MM-DD HH:MM:SS.mmm` (UTC) for Unix milliseconds.
pub fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{millis:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `taskpod tenant list|hold|drain|resume`.
#[derive(Debug, Args)]
pub struct TenantArgs {
    /// The tenant (omit with `list`).
    pub name: Option<String>,
    /// The server.
    #[command(flatten)]
    pub server: ServerArg,
}

/// `taskpod tenant list` (`action` None) or `hold`/`drain`/`resume NAME`.
pub fn tenant(
    args: &TenantArgs,
    action: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), ServiceError> {
    let client = args.server.client()?;
    let views = block_on(async {
        Ok(match (action, &args.name) {
            (None, _) => client.tenants().await?,
            (Some(action), Some(name)) => vec![client.tenant_action(name, action).await?],
            (Some(action), None) => {
                return Err(ServiceError::Start(format!(
                    "`taskpod tenant {action}` needs the tenant's name"
                )));
            }
        })
    })?;
    let mut text = String::new();
    for v in views {
        let mut flags = Vec::new();
        if v.held {
            flags.push("held".to_owned());
        }
        if v.draining {
            flags.push("draining".to_owned());
        }
        if let Some(why) = &v.disabled {
            flags.push(format!("disabled: {why}"));
        }
        text.push_str(&format!(
            "{}  pending {}  in flight {}  priority {}  weight {}{}\n",
            v.name,
            v.pending,
            v.in_flight,
            v.priority,
            v.weight,
            if flags.is_empty() {
                String::new()
            } else {
                format!("  ({})", flags.join(", "))
            }
        ));
    }
    write_out(out, &text)
}

/// `taskpod adapter reload NAME`.
pub fn reload_adapter(
    name: &str,
    server: &ServerArg,
    out: &mut dyn Write,
) -> Result<(), ServiceError> {
    let client = server.client()?;
    block_on(async { Ok(client.reload_adapter(name).await?) })?;
    write_out(out, &format!("adapter {name} reloaded\n"))
}
