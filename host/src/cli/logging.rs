//! Logging set-up of the `taskpod` binary: a tracing subscriber writing human-readable text
//! (the default) or one JSON object per line (`--log-format json`, or `TASKPOD_LOG_FORMAT=json`),
//! filtered by `--log` (`TASKPOD_LOG`).
//!
//! In JSON mode every line carries the span it was written in: a line about a task has
//! `"span": {"name": "task", "task_id": "…"}` (and `spans` lists every enclosing span), from the
//! API's submit through the adapter call to what the watchers saw and the task's end
//! ([`crate::runner::task_span`]), so `jq 'select(.span.task_id == "ID")'` shows one task's story.

use std::io::Write;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable text (with span fields inline).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (the message and the
    /// event's fields), `span` (the current span's name and fields) and `spans`.
    Json,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The filter is not tracing `EnvFilter` syntax.
    #[error("invalid --log filter {filter:?}: {message}; use e.g. `info` or `taskpod=debug,warn`")]
    Filter {
        /// The filter given.
        filter: String,
        /// The parser's message.
        message: String,
    },
    /// A global subscriber was already installed.
    #[error("logging was already set up in this process")]
    AlreadySet,
}

/// Installs the process-wide subscriber: `filter` (EnvFilter syntax), `format`, lines written
/// to `writer` (standard error for the binary; tests pass a buffer).
pub fn init<W>(filter: &str, format: LogFormat, writer: W) -> Result<(), LoggingError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let env_filter = EnvFilter::try_new(filter).map_err(|e| LoggingError::Filter {
        filter: filter.to_owned(),
        message: e.to_string(),
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(writer);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
    result.map_err(|_| LoggingError::AlreadySet)
}

/// [`init`] for the binary: lines to standard error; an invalid filter is reported and `warn`
/// used instead, so a typo in `TASKPOD_LOG` never stops the host.
pub fn init_stderr(filter: &str, format: LogFormat) {
    if let Err(error) = init(filter, format, std::io::stderr) {
        let _ = writeln!(std::io::stderr(), "taskpod: {error}; logging at `warn`");
        let _ = init("warn", format, std::io::stderr);
    }
}
