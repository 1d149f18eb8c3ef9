//! The adapter runtime: loads pod adapters (WebAssembly components) and runs them sandboxed.
//!
//! This is the only module that imports wasmtime. It owns one [`Runtime`] per process — one
//! engine with the pooling allocator and epoch interruption, a cache of compiled components (in
//! memory and on disk, keyed by sha256 and the engine's compatibility hash) and the linker that
//! grants adapters nothing but the `log` import and an empty WASI. Loading an adapter
//! ([`Runtime::load`]) checks its contract version, type-checks it against the `pod-adapter`
//! world, runs `info` and `validate-config`; each call afterwards gets a fresh store bounded by
//! the adapter's [`Limits`] (memory, wall time, output size, concurrency), so a misbehaving adapter
//! ends in a typed [`Error`] and never leaks into the long-running host.

mod cache;
mod engine;
mod sandbox;

/// The WebAssembly guests built from this workspace by `host/build.rs`: the embedded built-in
/// adapters and the paths of the example and test guests.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use taskpod_adapter_sdk::{AdapterInfo, AdapterOutput, Context, Task};

pub use cache::CacheError;

use crate::contract::ContractError;

/// The contract version this host implements: the version of `package taskpod:adapter@…` in
/// `wit/adapter.wit`.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// Prefix of component references that name a built-in adapter (`builtin:pod-template`).
pub const BUILTIN_PREFIX: &str = "builtin:";

/// The built-in adapters embedded in the binary, by name.
pub const BUILTINS: &[(&str, &[u8])] = &[
    ("pod-template", guests::POD_TEMPLATE),
    ("overlord-single", guests::OVERLORD_SINGLE),
    ("overlord-multi", guests::OVERLORD_MULTI),
    ("teraslice", guests::TERASLICE),
    ("samza", guests::SAMZA),
];

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why loading or calling an adapter failed. Every variant names the adapter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The adapter runtime itself could not be set up.
    #[error("cannot set up the WebAssembly runtime: {0}")]
    Engine(String),
    /// The component file could not be read.
    #[error("adapter `{adapter}`: cannot read component {path}: {error}")]
    Read {
        /// The adapter's name.
        adapter: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// `builtin:NAME` names no built-in adapter.
    #[error("adapter `{adapter}`: there is no built-in adapter `{builtin}`; built-ins: {known}")]
    UnknownBuiltin {
        /// The adapter's name.
        adapter: String,
        /// The name after `builtin:`.
        builtin: String,
        /// The built-in names, comma separated.
        known: String,
    },
    /// The bytes are not a WebAssembly component wasmtime can compile.
    #[error("adapter `{adapter}` ({origin}): not a valid WebAssembly component: {message}")]
    Compile {
        /// The adapter's name.
        adapter: String,
        /// `builtin:NAME` or the file path.
        origin: String,
        /// What the compiler said.
        message: String,
    },
    /// The component was built against an incompatible version of the contract.
    #[error(
        "adapter `{adapter}` ({origin}) was built against the adapter contract \
         taskpod:adapter@{component_version}, but this taskpod implements \
         taskpod:adapter@{host_version}; rebuild the adapter against this taskpod's wit/adapter.wit"
    )]
    IncompatibleContract {
        /// The adapter's name.
        adapter: String,
        /// `builtin:NAME` or the file path.
        origin: String,
        /// The version the component imports.
        component_version: String,
        /// [`CONTRACT_VERSION`].
        host_version: String,
    },
    /// The component does not implement the `pod-adapter` world (type-check failed).
    #[error(
        "adapter `{adapter}` ({origin}) does not implement the taskpod:adapter@{CONTRACT_VERSION} \
         `pod-adapter` world: {message}"
    )]
    NotAnAdapter {
        /// The adapter's name.
        adapter: String,
        /// `builtin:NAME` or the file path.
        origin: String,
        /// What did not match.
        message: String,
    },
    /// `info` returned something unusable (bad name or version).
    #[error("adapter `{adapter}` ({origin}): its `info` is unusable: {message}")]
    BadInfo {
        /// The adapter's name.
        adapter: String,
        /// `builtin:NAME` or the file path.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// The adapter refused its configuration (`validate-config`, or `invalid-config` from `adapt`).
    #[error("adapter `{adapter}` ({origin}) rejected its configuration: {message}")]
    InvalidConfig {
        /// The adapter's name.
        adapter: String,
        /// `builtin:NAME` or the file path.
        origin: String,
        /// The adapter's message (names the key).
        message: String,
    },
    /// The limits configured for the adapter are out of range.
    #[error("adapter `{adapter}`: invalid limits: {message}")]
    InvalidLimits {
        /// The adapter's name.
        adapter: String,
        /// What is wrong and the allowed range.
        message: String,
    },
    /// `adapt` said the task cannot be run as given.
    #[error("adapter `{adapter}` refused task `{task}`: {message}")]
    InvalidTask {
        /// The adapter's name.
        adapter: String,
        /// The task id.
        task: String,
        /// The adapter's message.
        message: String,
    },
    /// `adapt` reported an internal error.
    #[error("adapter `{adapter}` failed on task `{task}` (internal error): {message}")]
    Internal {
        /// The adapter's name.
        adapter: String,
        /// The task id.
        task: String,
        /// The adapter's message.
        message: String,
    },
    /// The call ran past the adapter's wall-time limit and was interrupted.
    #[error(
        "adapter `{adapter}` exceeded its time limit of {limit:?} in `{call}` and was stopped \
         (raise `limits.timeout` of this adapter if it is legitimately slow)"
    )]
    Timeout {
        /// The adapter's name.
        adapter: String,
        /// The export called (`info`, `validate-config`, `adapt`).
        call: &'static str,
        /// The limit.
        limit: Duration,
    },
    /// The call tried to grow its memory past the adapter's memory limit.
    #[error(
        "adapter `{adapter}` exceeded its memory limit of {limit} bytes in `{call}` \
         (it asked for {requested} bytes; raise `limits.memory` if that is legitimate)"
    )]
    OutOfMemory {
        /// The adapter's name.
        adapter: String,
        /// The export called.
        call: &'static str,
        /// The limit, bytes.
        limit: u64,
        /// The size the adapter asked its memory to grow to, bytes.
        requested: u64,
    },
    /// The adapter panicked (a Rust panic or similar abort with a message on stderr).
    #[error("adapter `{adapter}` panicked in `{call}`: {message}")]
    Panic {
        /// The adapter's name.
        adapter: String,
        /// The export called.
        call: &'static str,
        /// The panic message the adapter printed.
        message: String,
    },
    /// The adapter trapped (unreachable, out-of-bounds access, stack overflow …).
    #[error("adapter `{adapter}` trapped in `{call}`: {message}")]
    Trap {
        /// The adapter's name.
        adapter: String,
        /// The export called.
        call: &'static str,
        /// The trap and the innermost frames.
        message: String,
    },
    /// The Job and companions together exceed the adapter's output limit.
    #[error(
        "adapter `{adapter}` returned {size} bytes of output (Job + companions), over its limit of \
         {limit} bytes (`limits.maxOutput`)"
    )]
    OutputTooLarge {
        /// The adapter's name.
        adapter: String,
        /// Bytes returned.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The output broke the Job contract (names the adapter, the field path and the rule).
    #[error(transparent)]
    InvalidOutput(#[from] ContractError),
    /// The disk cache of compiled components could not be used.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Per-adapter bounds applied to every call. All configurable per adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory a call may use, bytes (default 64 MiB).
    pub memory: u64,
    /// Wall-time limit of one call (default 1 s).
    pub timeout: Duration,
    /// Largest output of one `adapt` call, Job plus companions, bytes (default 4 MiB).
    pub max_output: usize,
    /// How many calls of this adapter may run at once (default 4).
    pub concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 64 << 20,
            timeout: Duration::from_secs(1),
            max_output: 4 << 20,
            concurrency: 4,
        }
    }
}

/// How the runtime is set up (process-wide).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// Where compiled components are cached; `None` for the default (the user's cache
    /// directory, else the system temporary directory, `taskpod/components`).
    pub cache_dir: Option<PathBuf>,
    /// Whether compiled components are cached on disk at all.
    pub disk_cache: bool,
    /// How many adapter instances may exist at once across all adapters (pool size).
    pub max_instances: u32,
    /// The largest memory limit any adapter may be given, bytes (pool slot size).
    pub max_memory: u64,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            cache_dir: None,
            disk_cache: true,
            max_instances: 64,
            max_memory: 1 << 30,
        }
    }
}

/// Where an adapter's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentSource {
    /// A built-in adapter embedded in the binary, by name (`pod-template`).
    Builtin(String),
    /// A component file on disk.
    File(PathBuf),
}

impl ComponentSource {
    /// Parses a config reference: `builtin:NAME` or a path (relative paths are joined to `base`).
    pub fn parse(reference: &str, base: &Path) -> ComponentSource {
        match reference.strip_prefix(BUILTIN_PREFIX) {
            Some(name) => ComponentSource::Builtin(name.to_owned()),
            None => ComponentSource::File(base.join(reference)),
        }
    }

    /// `builtin:NAME` or the file path, for messages.
    pub fn origin(&self) -> String {
        match self {
            ComponentSource::Builtin(name) => format!("{BUILTIN_PREFIX}{name}"),
            ComponentSource::File(path) => path.display().to_string(),
        }
    }
}

/// What [`Runtime::load`] needs to load one adapter instance.
#[derive(Debug, Clone)]
pub struct AdapterSpec {
    /// The name this instance is known by (config `adapters[].name`).
    pub name: String,
    /// The component.
    pub source: ComponentSource,
    /// The adapter's configuration, JSON text (`{}` when none).
    pub config: String,
    /// Bounds applied to every call.
    pub limits: Limits,
}

/// The process-wide adapter runtime: engine, linker and compiled-component cache.
///
/// Cheap to clone (shared state).
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<engine::RuntimeInner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Creates the engine (pooling allocator, epoch ticker thread), linker and caches.
    pub fn new(options: RuntimeOptions) -> Result<Runtime> {
        Ok(Runtime {
            inner: Arc::new(engine::RuntimeInner::new(options)?),
        })
    }

    /// The options the runtime was created with.
    pub fn options(&self) -> &RuntimeOptions {
        &self.inner.options
    }

    /// The directory compiled components are cached in, when the disk cache is on.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.inner.cache.dir()
    }

    /// Loads one adapter instance: reads (or finds) the component, compiles it (or reads the
    /// cached compilation), checks the contract version and the world, runs `info` and
    /// `validate-config`. A bad adapter is refused with an error naming it and its file.
    pub fn load(&self, spec: AdapterSpec) -> Result<Arc<LoadedAdapter>> {
        let origin = spec.source.origin();
        if spec.limits.memory > self.inner.options.max_memory {
            return Err(Error::InvalidLimits {
                adapter: spec.name,
                message: format!(
                    "memory limit {} bytes is over the runtime's largest ({} bytes)",
                    spec.limits.memory, self.inner.options.max_memory
                ),
            });
        }
        if spec.limits.concurrency == 0 || spec.limits.timeout.is_zero() {
            return Err(Error::InvalidLimits {
                adapter: spec.name,
                message: "concurrency and timeout must be greater than zero".to_owned(),
            });
        }
        let bytes: std::borrow::Cow<'static, [u8]> = match &spec.source {
            ComponentSource::Builtin(name) => {
                match BUILTINS.iter().find(|(builtin, _)| builtin == name) {
                    Some((_, bytes)) => std::borrow::Cow::Borrowed(bytes),
                    None => {
                        return Err(Error::UnknownBuiltin {
                            adapter: spec.name,
                            builtin: name.clone(),
                            known: BUILTINS
                                .iter()
                                .map(|(n, _)| *n)
                                .collect::<Vec<_>>()
                                .join(", "),
                        });
                    }
                }
            }
            ComponentSource::File(path) => {
                std::borrow::Cow::Owned(std::fs::read(path).map_err(|error| Error::Read {
                    adapter: spec.name.clone(),
                    path: path.clone(),
                    error,
                })?)
            }
        };
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let component = self.inner.component(&bytes, digest).map_err(|e| match e {
            engine::CompileError::Compile(message) => Error::Compile {
                adapter: spec.name.clone(),
                origin: origin.clone(),
                message,
            },
            engine::CompileError::Cache(e) => Error::Cache(e),
        })?;
        let contract_version = sandbox::check_contract_version(&self.inner.engine, &component)
            .map_err(|component_version| Error::IncompatibleContract {
                adapter: spec.name.clone(),
                origin: origin.clone(),
                component_version,
                host_version: CONTRACT_VERSION.to_owned(),
            })?;
        let pre =
            self.inner
                .instantiate_pre(&component)
                .map_err(|message| Error::NotAnAdapter {
                    adapter: spec.name.clone(),
                    origin: origin.clone(),
                    message,
                })?;
        let mut adapter = LoadedAdapter {
            name: spec.name,
            origin,
            info: AdapterInfo::default(),
            digest: format!("sha256:{}", hex::encode(digest)),
            contract_version,
            config: spec.config,
            semaphore: Arc::new(tokio::sync::Semaphore::new(spec.limits.concurrency)),
            limits: spec.limits,
            pre,
            engine: self.inner.engine.clone(),
        };
        let info = adapter.call_info()?;
        check_info(&adapter, &info)?;
        adapter.info = info;
        adapter.call_validate_config()?;
        Ok(Arc::new(adapter))
    }

    /// Number of compiled components held in memory.
    pub fn compiled_in_memory(&self) -> usize {
        self.inner.compiled_count()
    }

    /// How many components were read from the disk cache (instead of compiled) so far.
    pub fn disk_cache_hits(&self) -> u64 {
        self.inner.cache.hits()
    }
}

fn check_info(adapter: &LoadedAdapter, info: &AdapterInfo) -> Result<()> {
    let bad = |message: String| Error::BadInfo {
        adapter: adapter.name.clone(),
        origin: adapter.origin.clone(),
        message,
    };
    if !crate::contract::is_dns1123_label(&info.name) {
        return Err(bad(format!(
            "name {:?} is not a DNS-1123 label (lowercase letters, digits, '-', at most 63)",
            info.name
        )));
    }
    if info.version.is_empty()
        || info.version.len() > 64
        || info.version.contains(char::is_whitespace)
    {
        return Err(bad(format!(
            "version {:?} is not a semver version",
            info.version
        )));
    }
    if serde_json::from_str::<serde_json::Value>(&info.config_schema).is_err() {
        return Err(bad("config-schema is not JSON".to_owned()));
    }
    Ok(())
}

/// One loaded adapter instance: a type-checked, pre-linked component plus its configuration
/// and limits. Calls are safe to make concurrently (up to `limits.concurrency` at once).
pub struct LoadedAdapter {
    name: String,
    origin: String,
    info: AdapterInfo,
    digest: String,
    contract_version: String,
    config: String,
    limits: Limits,
    semaphore: Arc<tokio::sync::Semaphore>,
    pre: sandbox::AdapterPre,
    engine: wasmtime::Engine,
}

impl std::fmt::Debug for LoadedAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedAdapter")
            .field("name", &self.name)
            .field("origin", &self.origin)
            .field("info", &self.info)
            .field("digest", &self.digest)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl LoadedAdapter {
    /// The name this instance is known by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `builtin:NAME` or the component's path.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// What the adapter said about itself.
    pub fn info(&self) -> &AdapterInfo {
        &self.info
    }

    /// `sha256:<hex>` of the component bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The version of the adapter contract (`taskpod:adapter@…`, the WIT package) the component
    /// was built against, read from its imports.
    pub fn contract_version(&self) -> &str {
        &self.contract_version
    }

    /// The configuration (JSON) this instance was validated with.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// The limits applied to each call.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Runs `adapt` on a blocking thread (never on the async runtime's workers), carrying the
    /// current tracing span; waits for a concurrency permit first.
    pub async fn adapt(self: &Arc<Self>, task: Task, ctx: Context) -> Result<AdapterOutput> {
        let permit = Arc::clone(&self.semaphore)
            .acquire_owned()
            .await
            .map_err(|_| Error::Engine("the adapter's concurrency limiter was closed".into()))?;
        let this = Arc::clone(self);
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let _permit = permit;
            this.run_adapt(&task, &ctx)
        })
        .await
        .map_err(|e| Error::Engine(format!("the adapter call's thread failed: {e}")))?
    }

    /// Runs `adapt` on the current thread (CLI, benchmarks); waits for a concurrency permit.
    pub fn adapt_blocking(&self, task: &Task, ctx: &Context) -> Result<AdapterOutput> {
        let _permit = block_on_permit(&self.semaphore)?;
        self.run_adapt(task, ctx)
    }

    /// Calls `validate-config` on `config` (another configuration than the loaded one).
    pub fn validate_config(&self, config: &str) -> Result<()> {
        let _permit = block_on_permit(&self.semaphore)?;
        sandbox::validate_config(self, config)
    }

    /// Calls `info` in a fresh instance, as every call runs: the smallest round trip through
    /// the sandbox (benchmarks use it to measure the per-call cost of isolation).
    pub fn call_info(&self) -> Result<AdapterInfo> {
        sandbox::info(self)
    }

    fn call_validate_config(&self) -> Result<()> {
        sandbox::validate_config(self, &self.config)
    }

    fn run_adapt(&self, task: &Task, ctx: &Context) -> Result<AdapterOutput> {
        let output = sandbox::adapt(self, task, ctx)?;
        let size = output.job.len() + output.companions.iter().map(String::len).sum::<usize>();
        if size > self.limits.max_output {
            return Err(Error::OutputTooLarge {
                adapter: self.name.clone(),
                size,
                limit: self.limits.max_output,
            });
        }
        Ok(output)
    }
}

/// Waits for a permit without an async runtime (the semaphore's future is runtime-agnostic).
fn block_on_permit(semaphore: &tokio::sync::Semaphore) -> Result<tokio::sync::SemaphorePermit<'_>> {
    if let Ok(permit) = semaphore.try_acquire() {
        return Ok(permit);
    }
    futures::executor::block_on(semaphore.acquire())
        .map_err(|_| Error::Engine("the adapter's concurrency limiter was closed".into()))
}
