//! The one wasmtime `Engine` with taskpod's defaults, its epoch ticker, the shared linker and the
//! in-memory table of compiled components.
//!
//! Engine settings: component model, cranelift optimising for speed, the pooling instance
//! allocator (bounded: total instances and memories, per-memory maximum) so that a fresh instance
//! per call is cheap, and epoch interruption driven by one background thread that ticks every
//! [`EPOCH_TICK`] — the wall-time deadline of each call is counted in those ticks.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
};

use super::cache::{CacheError, DiskCache};
use super::sandbox::{self, AdapterPre, SandboxState};
use super::{Error, RuntimeOptions};

/// Period of the epoch ticker; call deadlines have this granularity.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Core instances, memories and tables a component may have (a Rust `wasm32-wasip2` component
/// has a handful of core modules: the program, the WASI adapter and glue).
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
const MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_COMPONENT: u32 = 4;
/// Bytes of each linear memory kept resident between instances (see `pagemap_scan`).
const KEEP_RESIDENT: usize = 4 << 20;

/// Why a component could not be produced.
#[derive(Debug)]
pub(crate) enum CompileError {
    /// wasmtime refused the bytes.
    Compile(String),
    /// The disk cache failed in a way that is not a simple miss.
    Cache(CacheError),
}

/// State shared by every clone of a [`super::Runtime`].
pub(crate) struct RuntimeInner {
    pub(crate) options: RuntimeOptions,
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<SandboxState>,
    pub(crate) cache: DiskCache,
    compiled: Mutex<HashMap<[u8; 32], Component>>,
}

impl RuntimeInner {
    pub(crate) fn new(options: RuntimeOptions) -> Result<RuntimeInner, Error> {
        let max_memory = usize::try_from(options.max_memory)
            .map_err(|_| Error::Engine("max_memory does not fit in usize".to_owned()))?;
        let instances = options.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            .total_core_instances(instances * CORE_INSTANCES_PER_COMPONENT)
            .total_memories(instances * MEMORIES_PER_COMPONENT)
            .total_tables(instances * TABLES_PER_COMPONENT)
            .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(MEMORIES_PER_COMPONENT)
            .max_tables_per_component(TABLES_PER_COMPONENT)
            .max_memory_size(max_memory)
            // Reset reused slots by restoring only the pages a call dirtied (PAGEMAP_SCAN, Linux
            // 6.7+) and keep them resident: a fresh instance per call then costs neither page
            // faults nor a memset of the whole slot. Without PAGEMAP_SCAN the first
            // `KEEP_RESIDENT` bytes are memset and the rest is decommitted.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(1 << 16);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .cranelift_opt_level(OptLevel::Speed)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| Error::Engine(format!("{e:#}")))?;
        let linker = sandbox::linker(&engine).map_err(|e| Error::Engine(format!("{e:#}")))?;
        let cache = if options.disk_cache {
            DiskCache::open(options.cache_dir.clone(), &engine)?
        } else {
            DiskCache::disabled()
        };
        start_epoch_ticker(&engine)?;
        Ok(RuntimeInner {
            options,
            engine,
            linker,
            cache,
            compiled: Mutex::new(HashMap::new()),
        })
    }

    /// The compiled component for `bytes` (whose sha256 is `digest`): from memory, else from
    /// the disk cache, else compiled now (and stored in both).
    pub(crate) fn component(
        &self,
        bytes: &[u8],
        digest: [u8; 32],
    ) -> Result<Component, CompileError> {
        if let Some(component) = self.lock_compiled().get(&digest) {
            return Ok(component.clone());
        }
        let component = match self.cache.load(&self.engine, &digest) {
            Some(component) => component,
            None => {
                let compiled = self
                    .engine
                    .precompile_component(bytes)
                    .map_err(|e| CompileError::Compile(format!("{e:#}")))?;
                self.cache
                    .store(&digest, &compiled)
                    .map_err(CompileError::Cache)?;
                DiskCache::deserialize_fresh(&self.engine, &compiled)
                    .map_err(|e| CompileError::Compile(format!("{e:#}")))?
            }
        };
        self.lock_compiled().insert(digest, component.clone());
        Ok(component)
    }

    /// Type-checks `component` against the world and pre-links it.
    pub(crate) fn instantiate_pre(&self, component: &Component) -> Result<AdapterPre, String> {
        sandbox::instantiate_pre(&self.linker, component)
    }

    pub(crate) fn compiled_count(&self) -> usize {
        self.lock_compiled().len()
    }

    fn lock_compiled(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Component>> {
        // A panic while holding the lock leaves the map consistent (single insert/get).
        self.compiled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Starts the thread that advances the engine's epoch every [`EPOCH_TICK`]; it stops by itself
/// once the engine is dropped.
fn start_epoch_ticker(engine: &Engine) -> Result<(), Error> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("taskpod-epoch".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .map(|_| ())
        .map_err(|e| Error::Engine(format!("cannot start the epoch ticker thread: {e}")))
}
