//! The `taskpod` command line: argument types (clap derive) and what each command does.
//!
//! `main.rs` parses [`Cli`], sets up logging and calls [`run`]; tests call [`run`] with parsed
//! arguments and a buffer, so they exercise exactly the code users run.
//!
//! - `taskpod render (--config FILE | --druid-properties FILE) --task FILE [--out FILE]`: the
//!   Job and companions for one task, as multi-document YAML, exactly as `serve` creates them.
//! - `taskpod adapter check|test|bench|new`: the adapter author's tools (see [`adapter`]).
//! - `taskpod bench adapters`: the adapter-runtime benchmark (see [`crate::bench`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

pub mod adapter;
mod adapter_new;
mod demo;
mod ha;
pub mod logging;
mod remote;
mod serve;

pub use adapter::AdapterCommand;
pub use demo::DemoArgs;
pub use remote::{
    CancelArgs, CapacityArgs, ListArgs, LogsArgs, ServerArg, ServiceError, StatusArgs, SubmitArgs,
    TenantArgs,
};
pub(crate) use serve::kube_client;
pub use serve::{ServeArgs, SimArgs};

use crate::adapters::{self, Runtime, RuntimeOptions};
use crate::bench;
use crate::config::{self, Config, ConfigError};
use crate::render::{RenderError, Renderer};
use crate::task::{SubmittedTask, TaskError};

/// taskpod: runs data-platform tasks as Kubernetes Jobs shaped by sandboxed WebAssembly pod
/// adapters.
#[derive(Debug, Parser)]
#[command(name = "taskpod", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax, e.g. `info`, `taskpod=debug`).
    #[arg(long, global = true, env = "TASKPOD_LOG", default_value = "warn")]
    pub log: String,
    /// Log line format: `text`, or `json` (one object per line, with the task's span fields).
    #[arg(
        long,
        global = true,
        env = "TASKPOD_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: logging::LogFormat,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the Job (and companions) for one task as YAML, exactly as `serve` creates them.
    Render(RenderArgs),
    /// Work with adapter components.
    #[command(subcommand)]
    Adapter(AdapterCommand),
    /// Run the project's benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Run the host: task store, runner and HTTP API (until Ctrl-C or SIGTERM).
    Serve(ServeArgs),
    /// Start a simulated cluster and the host in-process, run the sample tasks, show the results.
    Demo(DemoArgs),
    /// Run the simulated Kubernetes cluster standalone, writing a kubeconfig for it.
    Sim(SimArgs),
    /// Submit a task to a running server (`--wait` follows it to its end).
    Submit(SubmitArgs),
    /// Show a task's state and history.
    Status(StatusArgs),
    /// List tasks (filters, pages).
    List(ListArgs),
    /// Cancel a task (its Job is deleted).
    Cancel(CancelArgs),
    /// Print a task's log (`-f` follows it live).
    Logs(LogsArgs),
    /// Show or change the capacity (most Jobs in flight).
    Capacity(CapacityArgs),
    /// Tenants: hash a token for the config, list tenants, hold/drain/resume one.
    #[command(subcommand)]
    Tenant(TenantCommand),
}

/// `taskpod tenant …`
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Print the sha256 of an API token, for `tokenSha256` in the config. Reads the token from
    /// standard input (so it stays out of the shell history) unless given.
    HashToken {
        /// The token; absent: the first line of standard input.
        token: Option<String>,
    },
    /// List the tenants with their queue, switches and quotas.
    List(TenantArgs),
    /// Stop launching a tenant's queued tasks (running ones continue).
    Hold(TenantArgs),
    /// Refuse a tenant's new submissions (queued and running ones continue).
    Drain(TenantArgs),
    /// Lift a tenant's hold and drain.
    Resume(TenantArgs),
}

/// Arguments of `taskpod render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// taskpod config file (YAML).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "druid_properties"
    )]
    pub config: Option<PathBuf>,
    /// Druid runtime.properties to import instead of a taskpod config.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub druid_properties: Option<PathBuf>,
    /// The task: a taskpod task envelope or a raw Druid task (JSON), or a Samza job config
    /// (a `.properties` file).
    #[arg(long, value_name = "FILE")]
    pub task: PathBuf,
    /// Write the YAML here instead of standard output (for a Samza job config, the file its
    /// `kubernetes.resources.out` names is the default, relative to the `.properties` file).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `taskpod bench …`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Latency of the pod-template adapter in a fresh sandbox per call vs natively compiled.
    Adapters {
        /// Measured calls per side.
        #[arg(long, default_value_t = 5000)]
        iterations: usize,
        /// Unmeasured calls first.
        #[arg(long, default_value_t = 500)]
        warmup: usize,
    },
    /// Hostile adapters (loops, memory bombs, privileged pods …) next to a well-behaved one:
    /// time to refusal of each, and the well-behaved adapter's p99 quiet vs under attack.
    /// Needs a source build (the hostile test guest is built with the host).
    Adversarial {
        /// Well-behaved renders measured per phase.
        #[arg(long, default_value_t = 500)]
        iterations: usize,
        /// Threads rendering hostile tasks without pause in the loaded phase.
        #[arg(long, default_value_t = 2)]
        hostile_threads: usize,
    },
    /// The runner against the simulated cluster: throughput against a bare client (P2, sim in
    /// process), the host's footprint with many running Jobs (P3), pod end → state stored (P4)
    /// and restart → reconciled (P5), these three with the sim in a child process.
    Runner {
        /// Tasks in the throughput phase.
        #[arg(long, default_value_t = 5000)]
        tasks: usize,
        /// Running Jobs tracked in the footprint, latency and restart phases.
        #[arg(long, default_value_t = 10_000)]
        jobs: usize,
        /// Pod terminations measured for the latency.
        #[arg(long, default_value_t = 1000)]
        terminations: usize,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Configuration error.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The task file could not be read.
    #[error("cannot read task file {path}: {error}")]
    ReadTask {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The task is invalid.
    #[error("task file {path}: {error}")]
    Task {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: TaskError,
    },
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// Loading or running an adapter failed.
    #[error(transparent)]
    Adapter(#[from] adapters::Error),
    /// An adapter config file is unusable.
    #[error("adapter config file {path}: {message}")]
    AdapterConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A command-line argument is unusable.
    #[error("{0}")]
    Usage(String),
    /// `adapter test`: some cases did not render as expected (the report is above).
    #[error("adapter test: {failed} of {total} cases failed: {names}")]
    CasesFailed {
        /// How many failed.
        failed: usize,
        /// How many ran.
        total: usize,
        /// The failed cases, comma separated.
        names: String,
    },
    /// Writing output failed.
    #[error("cannot write {what}: {error}")]
    Write {
        /// Where.
        what: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The benchmark failed.
    #[error(transparent)]
    Bench(#[from] bench::BenchError),
    /// A service (`serve`, `demo`, `sim`) or client command failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The runner benchmark failed.
    #[error(transparent)]
    RunnerBench(#[from] crate::runner::bench::RunnerBenchError),
}

/// Runs a parsed command, writing its normal output to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CliError> {
    match cli.command {
        Command::Render(args) => render(&args, out),
        Command::Serve(args) => Ok(serve::serve(&args, out)?),
        Command::Demo(args) => Ok(demo::demo(&args, out)?),
        Command::Sim(args) => Ok(serve::sim(&args, out)?),
        Command::Submit(args) => Ok(remote::submit(&args, out)?),
        Command::Status(args) => Ok(remote::status(&args, out)?),
        Command::List(args) => Ok(remote::list(&args, out)?),
        Command::Cancel(args) => Ok(remote::cancel(&args, out)?),
        Command::Logs(args) => Ok(remote::logs(&args, out)?),
        Command::Capacity(args) => Ok(remote::capacity(&args, out)?),
        Command::Adapter(command) => adapter::run(command, out),
        Command::Tenant(TenantCommand::HashToken { token }) => {
            let token = match token {
                Some(token) => token,
                None => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .map_err(|error| CliError::Write {
                            what: "the token from standard input".to_owned(),
                            error,
                        })?;
                    line
                }
            };
            if token.trim().is_empty() {
                return Err(CliError::Service(ServiceError::Start(
                    "no token given: pass it as an argument or on standard input".to_owned(),
                )));
            }
            writeln!(out, "{}", crate::tenants::hash_token(&token)).map_err(|error| {
                CliError::Write {
                    what: "standard output".to_owned(),
                    error,
                }
            })
        }
        Command::Tenant(TenantCommand::List(args)) => Ok(remote::tenant(&args, None, out)?),
        Command::Tenant(TenantCommand::Hold(args)) => Ok(remote::tenant(&args, Some("hold"), out)?),
        Command::Tenant(TenantCommand::Drain(args)) => {
            Ok(remote::tenant(&args, Some("drain"), out)?)
        }
        Command::Tenant(TenantCommand::Resume(args)) => {
            Ok(remote::tenant(&args, Some("resume"), out)?)
        }
        Command::Bench(BenchCommand::Runner {
            tasks,
            jobs,
            terminations,
        }) => {
            let runtime = tokio::runtime::Runtime::new().map_err(|error| CliError::Write {
                what: "the async runtime".to_owned(),
                error,
            })?;
            let report = runtime.block_on(crate::runner::bench::run(tasks, jobs, terminations))?;
            write!(out, "{report}").map_err(|error| CliError::Write {
                what: "standard output".to_owned(),
                error,
            })
        }
        Command::Bench(BenchCommand::Adversarial {
            iterations,
            hostile_threads,
        }) => {
            let report = bench::adversarial::run(iterations, hostile_threads)?;
            write!(out, "{report}").map_err(|error| CliError::Write {
                what: "standard output".to_owned(),
                error,
            })
        }
        Command::Bench(BenchCommand::Adapters { iterations, warmup }) => {
            let report = bench::adapters(iterations, warmup)?;
            write!(out, "{report}").map_err(|error| CliError::Write {
                what: "standard output".to_owned(),
                error,
            })
        }
    }
}

/// Loads the config named by the arguments (a taskpod config or imported Druid properties).
pub fn load_config(
    config: Option<&Path>,
    druid_properties: Option<&Path>,
) -> Result<Config, ConfigError> {
    match (config, druid_properties) {
        (_, Some(properties)) => {
            let imported = config::druid::import_file(properties)?;
            for warning in &imported.warnings {
                tracing::warn!("{}: {warning}", properties.display());
            }
            Ok(imported.config)
        }
        (Some(path), None) => Config::load(path),
        (None, None) => Err(ConfigError::Invalid {
            key: "--config".to_owned(),
            message: "give --config FILE or --druid-properties FILE".to_owned(),
        }),
    }
}

/// Reads and validates a task file: JSON, or a Samza job config when it ends in `.properties`.
pub fn read_task(path: &Path) -> Result<SubmittedTask, CliError> {
    let text = std::fs::read_to_string(path).map_err(|error| CliError::ReadTask {
        path: path.to_path_buf(),
        error,
    })?;
    let parsed = if path.extension().is_some_and(|e| e == "properties") {
        SubmittedTask::from_properties(&text)
    } else {
        SubmittedTask::parse(&text)
    };
    parsed.map_err(|error| CliError::Task {
        path: path.to_path_buf(),
        error,
    })
}

fn runtime_for(config: &Config) -> Result<Runtime, adapters::Error> {
    Runtime::new(RuntimeOptions {
        cache_dir: config.cache_dir.clone(),
        ..RuntimeOptions::default()
    })
}

fn render(args: &RenderArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let config = load_config(args.config.as_deref(), args.druid_properties.as_deref())?;
    let task = read_task(&args.task)?;
    let runtime = runtime_for(&config)?;
    let renderer = Renderer::new(config, runtime)?;
    let manifests = renderer.render_blocking(&task)?;
    let yaml = manifests.to_yaml().map_err(|e| CliError::Write {
        what: "YAML".to_owned(),
        error: std::io::Error::other(e),
    })?;
    // A Samza job config names its own resources file (samza_kubernetes'
    // `kubernetes.resources.out`), relative to the .properties file; --out wins.
    let resources_out = task.resources_out().map(|file| {
        let file = PathBuf::from(file);
        match args.task.parent() {
            Some(dir) if file.is_relative() => dir.join(file),
            _ => file,
        }
    });
    match (&args.out, resources_out) {
        (Some(path), _) => std::fs::write(path, yaml).map_err(|error| CliError::Write {
            what: path.display().to_string(),
            error,
        }),
        (None, Some(path)) => {
            std::fs::write(&path, yaml).map_err(|error| CliError::Write {
                what: path.display().to_string(),
                error,
            })?;
            writeln!(
                out,
                "wrote {} (kubernetes.resources.out); create the resources with: kubectl create -f {}",
                path.display(),
                path.display()
            )
            .map_err(|error| CliError::Write {
                what: "standard output".to_owned(),
                error,
            })
        }
        (None, None) => out
            .write_all(yaml.as_bytes())
            .map_err(|error| CliError::Write {
                what: "standard output".to_owned(),
                error,
            }),
    }
}
