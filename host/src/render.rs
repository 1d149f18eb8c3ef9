//! From a submitted task to the manifests taskpod creates for it — the one code path shared by
//! `taskpod render` and `serve`.
//!
//! A [`Renderer`] holds the configuration and the adapters it names, loaded once (component
//! compiled or read from the cache, `info` and `validate-config` run, templates read). For each
//! task it routes to an adapter, builds the adapter's [`Context`] (namespace, config, templates,
//! the host's Job name, labels, annotations, limits), calls `adapt` in the sandbox, enforces
//! the Job contract on the result and then applies the output [`Policy`] (the tenant's, when
//! it has one).
//!
//! Tenants' own adapters (`tenants[i].adapters`) are loaded too; one that cannot be loaded
//! disables its tenant (the error is kept and logged) instead of failing the host. For task
//! launches ([`Renderer::render_for_launch`]) the renderer also counts each adapter's
//! consecutive failures and quarantines an adapter after its `quarantineAfter`: its tasks then
//! fail at once with that reason until [`Renderer::reload`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use taskpod_adapter_sdk::{self as sdk, Context, names};

use crate::adapters::{self, AdapterSpec, LoadedAdapter, Runtime};
use crate::config::{Config, ConfigError, TemplateFile};
use crate::contract::{self, JobContract, Manifests, RestartRule};
use crate::policy::{Policy, PolicyError};
use crate::task::SubmittedTask;

/// Why a task could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The configuration (or a template it names) is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Loading or calling the adapter failed, or its output broke the Job contract.
    #[error(transparent)]
    Adapter(#[from] adapters::Error),
    /// The output policy refused the adapter's output.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// No adapter takes this task type.
    #[error(
        "no adapter for task type `{task_type}`: add it to `routing.byType` or set `routing.default`"
    )]
    NoRoute {
        /// The task type.
        task_type: String,
    },
    /// A dynamic execution config or a reload names an adapter that is not configured.
    #[error("no adapter named `{name}` is configured (configured: {known})")]
    UnknownAdapter {
        /// The name given.
        name: String,
        /// The configured adapter names.
        known: String,
    },
    /// The tenant is disabled because one of its adapters could not be loaded.
    #[error(
        "tenant `{tenant}` is disabled: {message}; fix the adapter, then reload it with \
         POST /v1/adapters/{adapter}/reload (admin)"
    )]
    TenantDisabled {
        /// The tenant.
        tenant: String,
        /// The adapter that failed to load.
        adapter: String,
        /// Why it failed.
        message: String,
    },
    /// The adapter failed too many times in a row and is quarantined.
    #[error(
        "adapter `{adapter}` is quarantined after {failures} consecutive failures (last: \
         {last}); an admin reloads it with POST /v1/adapters/{adapter}/reload"
    )]
    Quarantined {
        /// The adapter.
        adapter: String,
        /// Consecutive failures counted.
        failures: u32,
        /// The last failure.
        last: String,
    },
}

impl RenderError {
    /// Whether this failure is the adapter's fault (counts towards its quarantine): a trap,
    /// timeout, memory or output overrun, panic, internal error, or an output the Job contract
    /// or the policy refused. A task the adapter refused as invalid is the task's fault and
    /// does not count.
    pub fn is_adapter_fault(&self) -> bool {
        match self {
            RenderError::Adapter(adapters::Error::InvalidTask { .. }) => false,
            RenderError::Adapter(adapters::Error::Cache(_) | adapters::Error::Engine(_)) => false,
            RenderError::Adapter(_) | RenderError::Policy(_) => true,
            _ => false,
        }
    }
}

/// The health of one loaded adapter (`GET /v1/adapters`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdapterHealth {
    /// Failed launch calls in a row.
    pub consecutive_failures: u32,
    /// Why it is quarantined, when it is.
    pub quarantined: Option<String>,
}

/// A quarantine as the store keeps it across restarts (host metadata, JSON): it holds only
/// while the adapter's component is the one that failed, so a new component (another digest)
/// starts without it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Quarantine {
    /// Failed launch calls in a row when it was quarantined.
    pub failures: u32,
    /// The last failure.
    pub last: String,
    /// The digest of the component that failed (`sha256:…`).
    pub digest: String,
}

impl Quarantine {
    /// The host-metadata key of adapter `name`'s quarantine.
    pub fn meta_key(name: &str) -> String {
        format!("adapter.quarantine.{name}")
    }
}

/// One adapter as [`Renderer::adapter_entries`] lists it.
#[derive(Debug, Clone)]
pub struct AdapterEntry {
    /// The loaded adapter.
    pub adapter: Arc<LoadedAdapter>,
    /// The tenant owning it, if any.
    pub tenant: Option<String>,
    /// Its health.
    pub health: AdapterHealth,
}

/// How often template files are checked for changes (a `stat` per file at most this often).
const TEMPLATE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The pod templates of one binding, re-read when their files change: an operator edits a
/// template and the next launch uses it, as Druid's template adapter does.
#[derive(Debug)]
struct Templates {
    files: Vec<TemplateFile>,
    state: Mutex<TemplateState>,
}

#[derive(Debug)]
struct TemplateState {
    pairs: sdk::Pairs,
    stamps: Vec<Option<(SystemTime, u64)>>,
    checked: Instant,
}

fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl Templates {
    fn load(files: Vec<TemplateFile>) -> Result<Templates, ConfigError> {
        let stamps = files.iter().map(|f| stamp(&f.path)).collect();
        let pairs = files
            .iter()
            .map(|f| Ok((f.name.clone(), f.read()?)))
            .collect::<Result<sdk::Pairs, ConfigError>>()?;
        Ok(Templates {
            files,
            state: Mutex::new(TemplateState {
                pairs,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The current templates. A file that changed is read again; one that became unreadable
    /// or invalid keeps its last good content (a half-written file must not fail launches)
    /// and the problem is logged with the file and what is wrong.
    fn current(&self) -> sdk::Pairs {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if self.files.is_empty() || state.checked.elapsed() < TEMPLATE_CHECK_INTERVAL {
            return state.pairs.clone();
        }
        state.checked = Instant::now();
        for (index, file) in self.files.iter().enumerate() {
            let now = stamp(&file.path);
            if now == state.stamps[index] {
                continue;
            }
            match file.read() {
                Ok(json) => {
                    tracing::info!(template = %file.name, path = %file.path.display(), "pod template changed on disk; using the new content");
                    state.pairs[index].1 = json;
                    state.stamps[index] = now;
                }
                Err(error) => {
                    tracing::warn!(%error, "pod template changed on disk but cannot be used; the previous content stays in use until the file is fixed");
                    // Not recorded as seen: it is read again at the next check.
                }
            }
        }
        state.pairs.clone()
    }
}

/// One configured adapter, loaded, with the context fields that do not depend on the task.
#[derive(Debug)]
struct Bound {
    adapter: Arc<LoadedAdapter>,
    templates: Templates,
    base_pod: Option<String>,
    restart: RestartRule,
    /// The adapter config in force when a dynamic execution config replaced the template
    /// selection strategy (`None`: the configured one).
    config_override: RwLock<Option<Arc<str>>>,
    /// The tenant owning it (`tenants[i].adapters`), or none for a shared adapter.
    tenant: Option<String>,
    /// Consecutive failures before quarantine (0: never).
    quarantine_after: u32,
}

impl Bound {
    fn config(&self) -> String {
        match &*self
            .config_override
            .read()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some(config) => config.to_string(),
            None => self.adapter.config().to_owned(),
        }
    }
}

/// Renders tasks with the adapters of one configuration.
#[derive(Debug)]
pub struct Renderer {
    config: Config,
    runtime: Runtime,
    /// Loaded adapters by name; an entry is replaced as a whole on reload.
    bound: RwLock<BTreeMap<String, Arc<Bound>>>,
    /// Disabled tenants: tenant → (adapter → why it failed to load).
    disabled: RwLock<BTreeMap<String, BTreeMap<String, String>>>,
    health: Mutex<HashMap<String, AdapterHealth>>,
    /// Adapters quarantined since [`Renderer::take_new_quarantines`] was last called, for the
    /// runner to store.
    new_quarantines: Mutex<Vec<(String, Quarantine)>>,
    labels: sdk::Pairs,
    annotations: sdk::Pairs,
    policy: Arc<Policy>,
    /// Each configured tenant's policy (its own or the top-level one, with its quota ceilings).
    tenant_policies: BTreeMap<String, Arc<Policy>>,
}

/// Everything one `adapt` call and its contract check need.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The adapter the task is routed to.
    pub adapter: Arc<LoadedAdapter>,
    /// The task record.
    pub task: sdk::Task,
    /// The context record.
    pub context: Context,
    /// What the host forces afterwards.
    pub contract: JobContract,
    /// What the output may ask for, checked after the contract.
    pub policy: Arc<Policy>,
}

impl Prepared {
    /// Enforces the contract on `output`, then applies the policy.
    pub fn finish(&self, output: &sdk::AdapterOutput) -> Result<Manifests, RenderError> {
        finish(output, &self.contract, &self.policy)
    }
}

fn finish(
    output: &sdk::AdapterOutput,
    contract: &JobContract,
    policy: &Policy,
) -> Result<Manifests, RenderError> {
    let mut manifests = contract::enforce(output, contract).map_err(adapters::Error::from)?;
    policy.apply(
        output,
        &mut manifests,
        &contract.namespace,
        &contract.adapter,
    )?;
    Ok(manifests)
}

/// Warns when the host's own pod, which the overlord-copy adapters copy, runs as a service
/// account the policy does not allow (every such Job would be refused).
fn warn_unless_allowed(policy: &Policy, pod_json: Option<&str>) {
    let account = pod_json
        .and_then(|pod| serde_json::from_str::<serde_json::Value>(pod).ok())
        .and_then(|pod| {
            pod.pointer("/spec/serviceAccountName")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        });
    if let Some(account) = account
        && !policy.service_accounts.contains(&account)
    {
        tracing::warn!(
            service_account = %account,
            "the overlord-copy adapters copy this pod's service account, which \
             policy.serviceAccounts does not allow: their Jobs will be refused until it is \
             listed there"
        );
    }
}

impl Renderer {
    /// Loads every adapter of `config` into `runtime`. A shared adapter that cannot be loaded
    /// is an error; a tenant's adapter that cannot be loaded disables that tenant (logged, and
    /// reported by [`Renderer::tenant_disabled`]).
    pub fn new(config: Config, runtime: Runtime) -> Result<Renderer, RenderError> {
        let pairs = |map: &BTreeMap<String, String>| {
            map.iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<sdk::Pairs>()
        };
        let tenant_policies = config
            .tenants
            .iter()
            .map(|t| (t.name.clone(), Arc::new(t.effective_policy(&config.policy))))
            .collect();
        let renderer = Renderer {
            labels: pairs(&config.labels),
            annotations: pairs(&config.annotations),
            bound: RwLock::new(BTreeMap::new()),
            disabled: RwLock::new(BTreeMap::new()),
            health: Mutex::new(HashMap::new()),
            new_quarantines: Mutex::new(Vec::new()),
            policy: Arc::new(config.policy.clone()),
            tenant_policies,
            config,
            runtime,
        };
        for (key, tenant, binding) in renderer.config.bindings() {
            match renderer.load_binding(&key, tenant, binding) {
                Ok(bound) => {
                    renderer
                        .write_bound()
                        .insert(binding.name.clone(), Arc::new(bound));
                }
                Err(error) => match tenant {
                    None => return Err(error),
                    Some(tenant) => {
                        tracing::error!(
                            tenant,
                            adapter = %binding.name,
                            %error,
                            "a tenant's adapter cannot be loaded: the tenant is disabled until \
                             the adapter is reloaded"
                        );
                        renderer
                            .disabled
                            .write()
                            .unwrap_or_else(PoisonError::into_inner)
                            .entry(tenant.to_owned())
                            .or_default()
                            .insert(
                                binding.name.clone(),
                                format!("its adapter `{}` cannot be loaded: {error}", binding.name),
                            );
                    }
                },
            }
        }
        Ok(renderer)
    }

    fn load_binding(
        &self,
        key: &str,
        tenant: Option<&str>,
        binding: &crate::config::AdapterBinding,
    ) -> Result<Bound, RenderError> {
        let templates = Templates::load(self.config.template_files_of(binding, key))?;
        let mut base_pod = self.config.read_base_pod_of(binding, key)?;
        if base_pod.is_none() && binding.component.starts_with("builtin:overlord-") {
            base_pod = self.config.own_pod.clone();
            let policy = tenant
                .and_then(|t| self.tenant_policies.get(t))
                .unwrap_or(&self.policy);
            warn_unless_allowed(policy, base_pod.as_deref());
        }
        let spec = AdapterSpec {
            name: binding.name.clone(),
            source: self.config.component_source(binding),
            config: binding.config.to_string(),
            limits: binding.limits.to_runtime(),
        };
        let adapter = self.runtime.load(spec)?;
        Ok(Bound {
            adapter,
            templates,
            base_pod,
            restart: RestartRule {
                allow_on_failure: binding.allow_restart_on_failure,
                max_backoff_limit: binding.max_backoff_limit,
            },
            config_override: RwLock::new(None),
            tenant: tenant.map(str::to_owned),
            quarantine_after: binding.quarantine_after,
        })
    }

    fn read_bound(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Bound>>> {
        self.bound.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_bound(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Bound>>> {
        self.bound.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_health(&self) -> std::sync::MutexGuard<'_, HashMap<String, AdapterHealth>> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bound(&self, name: &str) -> Result<Arc<Bound>, RenderError> {
        let bound = self.read_bound();
        bound
            .get(name)
            .cloned()
            .ok_or_else(|| RenderError::UnknownAdapter {
                name: name.to_owned(),
                known: bound.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// Loads an adapter again from the configuration (its component file is read anew),
    /// replacing the loaded one (a dynamic config override is kept) and clearing its
    /// quarantine; a tenant disabled by it is enabled again when none of its adapters still
    /// fails.
    pub fn reload(&self, name: &str) -> Result<(), RenderError> {
        let bindings = self.config.bindings();
        let Some((key, tenant, binding)) = bindings.iter().find(|(_, _, b)| b.name == name) else {
            return Err(RenderError::UnknownAdapter {
                name: name.to_owned(),
                known: bindings
                    .iter()
                    .map(|(_, _, b)| b.name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let bound = self.load_binding(key, *tenant, binding)?;
        if let Ok(previous) = self.bound(name) {
            let kept = previous
                .config_override
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            *bound
                .config_override
                .write()
                .unwrap_or_else(PoisonError::into_inner) = kept;
        }
        self.write_bound().insert(name.to_owned(), Arc::new(bound));
        self.lock_health().remove(name);
        if let Some(tenant) = tenant {
            let mut disabled = self
                .disabled
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(failed) = disabled.get_mut(*tenant) {
                failed.remove(name);
                if failed.is_empty() {
                    disabled.remove(*tenant);
                }
            }
        }
        tracing::info!(adapter = name, "adapter reloaded");
        Ok(())
    }

    /// Why `tenant` is disabled (an adapter of its could not be loaded), if it is.
    pub fn tenant_disabled(&self, tenant: &str) -> Option<RenderError> {
        let disabled = self.disabled.read().unwrap_or_else(PoisonError::into_inner);
        let (adapter, message) = disabled.get(tenant)?.iter().next()?;
        Some(RenderError::TenantDisabled {
            tenant: tenant.to_owned(),
            adapter: adapter.clone(),
            message: message.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The runtime the adapters run in.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The loaded adapters, by name.
    pub fn adapters(&self) -> impl Iterator<Item = Arc<LoadedAdapter>> + use<> {
        self.read_bound()
            .values()
            .map(|b| Arc::clone(&b.adapter))
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// The adapters quarantined since the last call, with what the store keeps of each.
    pub fn take_new_quarantines(&self) -> Vec<(String, Quarantine)> {
        std::mem::take(
            &mut *self
                .new_quarantines
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Puts back a quarantine stored before a restart. It is lifted instead (returns `false`)
    /// when the adapter is no longer configured or its component changed since (another
    /// digest): a new component is a reload.
    pub fn restore_quarantine(&self, name: &str, quarantine: &Quarantine) -> bool {
        let same = self
            .read_bound()
            .get(name)
            .is_some_and(|b| b.adapter.digest() == quarantine.digest);
        if same {
            self.lock_health().insert(
                name.to_owned(),
                AdapterHealth {
                    consecutive_failures: quarantine.failures,
                    quarantined: Some(quarantine.last.clone()),
                },
            );
        }
        same
    }

    /// The loaded adapters, by name, with their owner and health.
    pub fn adapter_entries(&self) -> Vec<AdapterEntry> {
        let health = self.lock_health();
        self.read_bound()
            .iter()
            .map(|(name, b)| AdapterEntry {
                adapter: Arc::clone(&b.adapter),
                tenant: b.tenant.clone(),
                health: health.get(name).cloned().unwrap_or_default(),
            })
            .collect()
    }

    /// The names of the bindings that use the built-in pod-template adapter (Druid's
    /// customTemplateAdapter): the ones a dynamic execution config applies to.
    pub fn template_adapters(&self) -> Vec<String> {
        self.config
            .adapters
            .iter()
            .filter(|b| b.component == "builtin:pod-template")
            .map(|b| b.name.clone())
            .collect()
    }

    /// The adapter config of binding `name` as in force now (with any dynamic override).
    pub fn adapter_config(&self, name: &str) -> Option<String> {
        self.read_bound().get(name).map(|b| b.config())
    }

    /// Replaces the adapter config of binding `name` at run time (the dynamic execution
    /// config), after the adapter itself accepted it through `validate-config`; `None` goes
    /// back to the configured one. Tasks launched afterwards use it.
    pub fn set_adapter_config(
        &self,
        name: &str,
        config: Option<String>,
    ) -> Result<(), RenderError> {
        let bound = self.bound(name)?;
        if let Some(config) = &config {
            bound.adapter.validate_config(config)?;
        }
        *bound
            .config_override
            .write()
            .unwrap_or_else(PoisonError::into_inner) = config.map(Arc::from);
        Ok(())
    }

    /// Routes `task` and builds the adapter's inputs and the contract.
    pub fn prepare(&self, task: &SubmittedTask) -> Result<Prepared, RenderError> {
        if let Some(disabled) = self.tenant_disabled(&task.tenant) {
            return Err(disabled);
        }
        let binding = self
            .config
            .route_for(&task.tenant, &task.kind)
            .ok_or_else(|| RenderError::NoRoute {
                task_type: task.kind.clone(),
            })?;
        let bound = self.bound(&binding.name)?;
        let runner = &self.config.runner;
        let job_name = names::job_name(&task.id);
        let cleanup_delay = (!runner.debug_jobs).then_some(runner.task_cleanup_delay.0.as_secs());
        let context = Context {
            namespace: self.config.namespace.clone(),
            config: bound.config(),
            base_pod: bound.base_pod.clone(),
            templates: bound.templates.current(),
            job_name: job_name.clone(),
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            limits: sdk::Limits {
                max_duration_seconds: runner.max_task_duration.0.as_secs(),
                cleanup_delay_seconds: cleanup_delay,
                termination_grace_period_seconds: runner
                    .grace_termination_period_seconds
                    .map(u64::from),
                max_inline_payload: sdk::payload::MAX_INLINE_PAYLOAD as u32,
            },
        };
        let info = bound.adapter.info();
        let contract = JobContract {
            adapter: bound.adapter.name().to_owned(),
            adapter_ref: format!("{}@{}", info.name, info.version),
            adapter_digest: bound.adapter.digest().to_owned(),
            namespace: self.config.namespace.clone(),
            job_name,
            instance: self.config.instance.clone(),
            task_id: task.id.clone(),
            tenant: task.tenant.clone(),
            task_type: task.kind.clone(),
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            max_duration_seconds: i64::try_from(runner.max_task_duration.0.as_secs())
                .unwrap_or(i64::MAX),
            cleanup_delay_seconds: cleanup_delay.map(|s| i32::try_from(s).unwrap_or(i32::MAX)),
            termination_grace_period_seconds: runner
                .grace_termination_period_seconds
                .map(i64::from),
            restart: bound.restart.clone(),
        };
        Ok(Prepared {
            adapter: Arc::clone(&bound.adapter),
            task: task.to_sdk(),
            context,
            contract,
            policy: Arc::clone(
                self.tenant_policies
                    .get(&task.tenant)
                    .unwrap_or(&self.policy),
            ),
        })
    }

    /// Renders on the current thread (CLI).
    pub fn render_blocking(&self, task: &SubmittedTask) -> Result<Manifests, RenderError> {
        let prepared = self.prepare(task)?;
        let output = prepared
            .adapter
            .adapt_blocking(&prepared.task, &prepared.context)?;
        prepared.finish(&output)
    }

    /// Renders for a launch: fails at once when the adapter is quarantined, and counts the
    /// adapter's consecutive failures, quarantining it at its `quarantineAfter`. Returns the
    /// adapter's identity (stored with the task, written in the Job's Event) with the manifests.
    pub async fn render_for_launch(
        &self,
        task: &SubmittedTask,
    ) -> Result<(Manifests, crate::store::AdapterRef), RenderError> {
        let prepared = self.prepare(task)?;
        let name = prepared.adapter.name().to_owned();
        let identity = {
            let info = prepared.adapter.info();
            crate::store::AdapterRef {
                name: info.name.clone(),
                version: info.version.clone(),
                digest: prepared.adapter.digest().to_owned(),
            }
        };
        if let Some(health) = self.lock_health().get(&name)
            && let Some(last) = &health.quarantined
        {
            return Err(RenderError::Quarantined {
                adapter: name,
                failures: health.consecutive_failures,
                last: last.clone(),
            });
        }
        let threshold = self
            .read_bound()
            .get(&name)
            .map(|b| b.quarantine_after)
            .unwrap_or(0);
        let Prepared {
            adapter,
            task,
            context,
            contract,
            policy,
        } = prepared;
        let result = match adapter.adapt(task, context).await {
            Ok(output) => finish(&output, &contract, &policy),
            Err(error) => Err(RenderError::from(error)),
        };
        let mut health = self.lock_health();
        match &result {
            Ok(_) => {
                health.remove(&name);
            }
            Err(error) if error.is_adapter_fault() => {
                let entry = health.entry(name.clone()).or_default();
                entry.consecutive_failures += 1;
                if threshold > 0 && entry.consecutive_failures >= threshold {
                    tracing::error!(
                        adapter = %name,
                        failures = entry.consecutive_failures,
                        %error,
                        "adapter quarantined: its tasks fail until it is reloaded"
                    );
                    entry.quarantined = Some(error.to_string());
                    let stored = Quarantine {
                        failures: entry.consecutive_failures,
                        last: error.to_string(),
                        digest: identity.digest.clone(),
                    };
                    self.new_quarantines
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((name.clone(), stored));
                }
            }
            Err(_) => {}
        }
        result.map(|manifests| (manifests, identity))
    }

    /// Renders without blocking the async runtime (the adapter runs on a blocking thread).
    pub async fn render(&self, task: &SubmittedTask) -> Result<Manifests, RenderError> {
        let Prepared {
            adapter,
            task,
            context,
            contract,
            policy,
        } = self.prepare(task)?;
        let output = adapter.adapt(task, context).await?;
        finish(&output, &contract, &policy)
    }
}
