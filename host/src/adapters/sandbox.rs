//! One sandboxed call: the generated bindings of the `pod-adapter` world, the per-call store
//! state (empty WASI, fixed clocks and randomness, memory limiter, log budget) and the mapping
//! of wasmtime's outcomes to the module's typed errors.
//!
//! The adapter contract promises adapters no filesystem, network, environment, clock or
//! randomness. WASI p2 is still linked (Rust's `wasm32-wasip2` standard library imports it), but
//! with an empty context: no preopened directories, environment, arguments or sockets, stdin
//! closed, stdout discarded, stderr captured (bounded) for panic messages, the wall and monotonic
//! clocks fixed at zero and both random generators a fixed-seed sequence.

use std::time::Duration;

use taskpod_adapter_sdk as sdk;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap, WasmBacktrace};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::engine::EPOCH_TICK;
use super::{CONTRACT_VERSION, Error, LoadedAdapter};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "pod-adapter",
});

use self::taskpod::adapter::log::Level;
use self::taskpod::adapter::types as wit;

/// The pre-linked, type-checked form of an adapter component.
pub(crate) type AdapterPre = PodAdapterPre<SandboxState>;

/// Largest stderr kept per call (panic messages).
const STDERR_CAPACITY: usize = 8 << 10;
/// Log messages an adapter may emit per call; further ones are counted and dropped.
const LOG_MESSAGES_PER_CALL: u32 = 64;
/// Bytes of log messages an adapter may emit per call.
const LOG_BYTES_PER_CALL: usize = 64 << 10;
/// Longest single log message kept (longer ones are cut).
const LOG_MESSAGE_MAX: usize = 4 << 10;

/// The data of one call's store.
pub(crate) struct SandboxState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    log: LogBudget,
}

impl WasiView for SandboxState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps linear memory growth and remembers that the cap was hit (to report out-of-memory
/// rather than the abort it causes in the guest).
struct MemoryLimiter {
    cap: usize,
    /// The size asked for when growth was refused.
    refused: Option<usize>,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Table elements are pointers; hold tables to the same budget as memory.
        Ok(desired.saturating_mul(std::mem::size_of::<usize>()) <= self.cap)
    }
}

/// Per-call log budget and the fields every record carries.
struct LogBudget {
    adapter: String,
    task: String,
    messages_left: u32,
    bytes_left: usize,
    dropped: u32,
}

impl taskpod::adapter::log::Host for SandboxState {
    fn log(&mut self, level: Level, mut message: String) {
        let budget = &mut self.log;
        if budget.messages_left == 0 || budget.bytes_left < message.len().min(LOG_MESSAGE_MAX) {
            budget.dropped += 1;
            return;
        }
        if message.len() > LOG_MESSAGE_MAX {
            let mut end = LOG_MESSAGE_MAX;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        budget.messages_left -= 1;
        budget.bytes_left -= message.len().min(budget.bytes_left);
        let (adapter, task) = (&budget.adapter, &budget.task);
        match level {
            Level::Trace => tracing::trace!(adapter, task, "{message}"),
            Level::Debug => tracing::debug!(adapter, task, "{message}"),
            Level::Info => tracing::info!(adapter, task, "{message}"),
            Level::Warn => tracing::warn!(adapter, task, "{message}"),
            Level::Error => tracing::error!(adapter, task, "{message}"),
        }
    }
}

impl taskpod::adapter::types::Host for SandboxState {}

/// Fixed wall clock: the Unix epoch.
struct FixedWallClock;

impl wasmtime_wasi::HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// Fixed monotonic clock: always zero.
struct FixedMonotonicClock;

impl wasmtime_wasi::HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A fixed-seed generator (splitmix64): the same sequence in every call.
struct FixedRng(u64);

impl rand_core::TryRng for FixedRng {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok((self.try_next_u64()? >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Ok(z ^ (z >> 31))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

/// The linker every adapter is instantiated with: WASI p2 (sync) and the `log` import.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<SandboxState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    PodAdapter::add_to_linker::<SandboxState, HasSelf<SandboxState>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// Type-checks `component` against the world and pre-links its imports.
pub(crate) fn instantiate_pre(
    linker: &Linker<SandboxState>,
    component: &Component,
) -> Result<AdapterPre, String> {
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| format!("{e:#}"))?;
    PodAdapterPre::new(pre).map_err(|e| format!("{e:#}"))
}

/// Checks the version of every `taskpod:adapter/…@X.Y.Z` import: same major version, and for
/// 0.x the same minor version, as [`CONTRACT_VERSION`]. Returns the version the component was
/// built against (`(unversioned)` when its imports carry none, `(none)` when it imports nothing
/// of the contract), or, as the error, the component's version when it is incompatible.
pub(crate) fn check_contract_version(
    engine: &Engine,
    component: &Component,
) -> Result<String, String> {
    let ty = component.component_type();
    let mut found: Option<String> = None;
    for (name, _) in ty.imports(engine) {
        let Some(rest) = name.strip_prefix("taskpod:adapter/") else {
            continue;
        };
        let version = rest.split_once('@').map(|(_, v)| v).unwrap_or("");
        let shown = if version.is_empty() {
            "(unversioned)".to_owned()
        } else {
            version.to_owned()
        };
        if !compatible(version, CONTRACT_VERSION) {
            return Err(shown);
        }
        found.get_or_insert(shown);
    }
    Ok(found.unwrap_or_else(|| "(none)".to_owned()))
}

/// Whether a component built against `theirs` may run on a host implementing `ours`.
fn compatible(theirs: &str, ours: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut parts = v.split(['.', '-', '+']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some((major, minor))
    };
    match (parse(theirs), parse(ours)) {
        (Some((0, a)), Some((0, b))) => a == b,
        (Some((a, _)), Some((b, _))) => a == b,
        _ => false,
    }
}

/// A store for one call of `adapter`, with a fresh empty WASI and the adapter's limits.
fn new_store(adapter: &LoadedAdapter, task: &str) -> (Store<SandboxState>, MemoryOutputPipe) {
    let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
    let wasi = WasiCtxBuilder::new()
        .stderr(stderr.clone())
        .wall_clock(FixedWallClock)
        .monotonic_clock(FixedMonotonicClock)
        .secure_random(FixedRng(0))
        .insecure_random(FixedRng(1))
        .insecure_random_seed(0)
        .build();
    let state = SandboxState {
        wasi,
        table: ResourceTable::new(),
        limiter: MemoryLimiter {
            cap: usize::try_from(adapter.limits.memory).unwrap_or(usize::MAX),
            refused: None,
        },
        log: LogBudget {
            adapter: adapter.name.clone(),
            task: task.to_owned(),
            messages_left: LOG_MESSAGES_PER_CALL,
            bytes_left: LOG_BYTES_PER_CALL,
            dropped: 0,
        },
    };
    let mut store = Store::new(&adapter.engine, state);
    store.limiter(|state| &mut state.limiter);
    let ticks = adapter
        .limits
        .timeout
        .as_nanos()
        .div_ceil(EPOCH_TICK.as_nanos())
        + 1;
    store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
    store.epoch_deadline_trap();
    (store, stderr)
}

/// Runs `call` in a fresh instance and maps failures to typed errors.
fn run<R>(
    adapter: &LoadedAdapter,
    call: &'static str,
    task: &str,
    f: impl FnOnce(&mut Store<SandboxState>, &PodAdapter) -> wasmtime::Result<R>,
) -> Result<R, Error> {
    let (mut store, stderr) = new_store(adapter, task);
    let result = adapter
        .pre
        .instantiate(&mut store)
        .and_then(|instance| f(&mut store, &instance));
    let dropped = store.data().log.dropped;
    if dropped > 0 {
        tracing::warn!(
            adapter = adapter.name,
            task,
            dropped,
            "adapter exceeded its log budget of {LOG_MESSAGES_PER_CALL} messages / \
             {LOG_BYTES_PER_CALL} bytes per call; messages dropped"
        );
    }
    match result {
        Ok(value) => {
            let printed = stderr.contents();
            if !printed.is_empty() {
                tracing::debug!(
                    adapter = adapter.name,
                    task,
                    stderr = %String::from_utf8_lossy(&printed),
                    "adapter wrote to stderr"
                );
            }
            Ok(value)
        }
        Err(err) => Err(classify(adapter, call, &store, &stderr, err)),
    }
}

fn classify(
    adapter: &LoadedAdapter,
    call: &'static str,
    store: &Store<SandboxState>,
    stderr: &MemoryOutputPipe,
    err: wasmtime::Error,
) -> Error {
    let name = adapter.name.clone();
    if let Some(requested) = store.data().limiter.refused {
        return Error::OutOfMemory {
            adapter: name,
            call,
            limit: adapter.limits.memory,
            requested: requested as u64,
        };
    }
    let trap = err.downcast_ref::<Trap>().copied();
    if trap == Some(Trap::Interrupt) {
        return Error::Timeout {
            adapter: name,
            call,
            limit: adapter.limits.timeout,
        };
    }
    let printed = String::from_utf8_lossy(&stderr.contents())
        .trim()
        .to_owned();
    if let Some(at) = printed.find("panicked at") {
        let message = &printed[at..];
        // Rust's hint about RUST_BACKTRACE means nothing inside the sandbox.
        let message = message
            .find("\nnote: run with `RUST_BACKTRACE")
            .map_or(message, |end| &message[..end]);
        return Error::Panic {
            adapter: name,
            call,
            message: message.trim().replace('\n', " "),
        };
    }
    let mut message = match trap {
        Some(trap) => trap.to_string(),
        None => format!("{err:#}"),
    };
    if let Some(backtrace) = err.downcast_ref::<WasmBacktrace>() {
        let frames: Vec<String> = backtrace
            .frames()
            .iter()
            .filter_map(|frame| frame.func_name())
            .take(3)
            .map(|name| format!("{:#}", rustc_demangle::demangle(name)))
            .collect();
        if !frames.is_empty() {
            message.push_str(&format!(" (in {})", frames.join(" ← ")));
        }
    }
    if !printed.is_empty() {
        message.push_str(&format!("; the adapter printed: {printed}"));
    }
    Error::Trap {
        adapter: name,
        call,
        message,
    }
}

/// Calls `info`.
pub(crate) fn info(adapter: &LoadedAdapter) -> Result<sdk::AdapterInfo, Error> {
    let info = run(adapter, "info", "", |store, instance| {
        instance.call_info(store)
    })?;
    Ok(sdk::AdapterInfo {
        name: info.name,
        version: info.version,
        description: info.description,
        config_schema: info.config_schema,
        task_types: info.task_types,
    })
}

/// Calls `validate-config` with `config`.
pub(crate) fn validate_config(adapter: &LoadedAdapter, config: &str) -> Result<(), Error> {
    let result = run(adapter, "validate-config", "", |store, instance| {
        instance.call_validate_config(store, config)
    })?;
    result.map_err(|e| Error::InvalidConfig {
        adapter: adapter.name.clone(),
        origin: adapter.origin.clone(),
        message: match e {
            wit::AdapterError::InvalidConfig(m) => m,
            wit::AdapterError::InvalidTask(m) => format!("(reported as invalid task) {m}"),
            wit::AdapterError::Internal(m) => format!("(internal adapter error) {m}"),
        },
    })
}

/// Calls `adapt`.
pub(crate) fn adapt(
    adapter: &LoadedAdapter,
    task: &sdk::Task,
    ctx: &sdk::Context,
) -> Result<sdk::AdapterOutput, Error> {
    let wit_task = wit::Task {
        id: task.id.clone(),
        kind: task.kind.clone(),
        tenant: task.tenant.clone(),
        group_id: task.group_id.clone(),
        datasource: task.datasource.clone(),
        payload: task.payload.clone(),
        labels: task.labels.clone(),
        tags: task.tags.clone(),
    };
    let wit_ctx = wit::Context {
        namespace: ctx.namespace.clone(),
        config: ctx.config.clone(),
        base_pod: ctx.base_pod.clone(),
        templates: ctx.templates.clone(),
        job_name: ctx.job_name.clone(),
        labels: ctx.labels.clone(),
        annotations: ctx.annotations.clone(),
        limits: wit::Limits {
            max_duration_seconds: ctx.limits.max_duration_seconds,
            cleanup_delay_seconds: ctx.limits.cleanup_delay_seconds,
            termination_grace_period_seconds: ctx.limits.termination_grace_period_seconds,
            max_inline_payload: ctx.limits.max_inline_payload,
        },
    };
    let result = run(adapter, "adapt", &task.id, |store, instance| {
        instance.call_adapt(store, &wit_task, &wit_ctx)
    })?;
    match result {
        Ok(output) => Ok(sdk::AdapterOutput {
            job: output.job,
            companions: output.companions,
        }),
        Err(wit::AdapterError::InvalidTask(message)) => Err(Error::InvalidTask {
            adapter: adapter.name.clone(),
            task: task.id.clone(),
            message,
        }),
        Err(wit::AdapterError::InvalidConfig(message)) => Err(Error::InvalidConfig {
            adapter: adapter.name.clone(),
            origin: adapter.origin.clone(),
            message,
        }),
        Err(wit::AdapterError::Internal(message)) => Err(Error::Internal {
            adapter: adapter.name.clone(),
            task: task.id.clone(),
            message,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::compatible;

    #[test]
    fn contract_versions_follow_semver_for_zero_major() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.3", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(!compatible("1.0.0", "0.1.0"));
        assert!(compatible("1.4.0", "1.0.0"));
        assert!(!compatible("", "0.1.0"));
    }

    #[test]
    fn contract_version_matches_the_wit_package() {
        let wit =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/adapter.wit"))
                .expect("read wit/adapter.wit");
        assert!(
            wit.contains(&format!(
                "package taskpod:adapter@{};",
                super::CONTRACT_VERSION
            )),
            "CONTRACT_VERSION must equal the package version in wit/adapter.wit"
        );
    }
}
