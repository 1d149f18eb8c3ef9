//! From a submitted task to the manifests taskpod creates for it — the one code path shared by
//! `taskpod render` and `serve`.
//!
//! A [`Renderer`] holds the configuration and the adapters it names, loaded once (component
//! compiled or read from the cache, `info` and `validate-config` run, templates read). For each
//! task it routes to an adapter, builds the adapter's [`Context`] (namespace, config, templates,
//! the host's Job name, labels, annotations, limits), calls `adapt` in the sandbox and enforces
//! the Job contract on the result.

use std::collections::BTreeMap;
use std::sync::Arc;

use taskpod_adapter_sdk::{self as sdk, Context, names};

use crate::adapters::{self, AdapterSpec, LoadedAdapter, Runtime};
use crate::config::{Config, ConfigError};
use crate::contract::{self, JobContract, Manifests, RestartRule};
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
    /// No adapter takes this task type.
    #[error(
        "no adapter for task type `{task_type}`: add it to `routing.byType` or set `routing.default`"
    )]
    NoRoute {
        /// The task type.
        task_type: String,
    },
}

/// One configured adapter, loaded, with the context fields that do not depend on the task.
#[derive(Debug)]
struct Bound {
    adapter: Arc<LoadedAdapter>,
    templates: sdk::Pairs,
    base_pod: Option<String>,
    restart: RestartRule,
}

/// Renders tasks with the adapters of one configuration.
#[derive(Debug)]
pub struct Renderer {
    config: Config,
    runtime: Runtime,
    bound: BTreeMap<String, Bound>,
    labels: sdk::Pairs,
    annotations: sdk::Pairs,
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
}

impl Renderer {
    /// Loads every adapter of `config` into `runtime`.
    pub fn new(config: Config, runtime: Runtime) -> Result<Renderer, RenderError> {
        let mut bound = BTreeMap::new();
        for (index, binding) in config.adapters.iter().enumerate() {
            let templates = config.read_templates(index)?;
            let base_pod = config.read_base_pod(index)?;
            let spec = AdapterSpec {
                name: binding.name.clone(),
                source: config.component_source(binding),
                config: binding.config.to_string(),
                limits: binding.limits.to_runtime(),
            };
            let adapter = runtime.load(spec)?;
            bound.insert(
                binding.name.clone(),
                Bound {
                    adapter,
                    templates,
                    base_pod,
                    restart: RestartRule {
                        allow_on_failure: binding.allow_restart_on_failure,
                        max_backoff_limit: binding.max_backoff_limit,
                    },
                },
            );
        }
        let pairs = |map: &BTreeMap<String, String>| {
            map.iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<sdk::Pairs>()
        };
        Ok(Renderer {
            labels: pairs(&config.labels),
            annotations: pairs(&config.annotations),
            config,
            runtime,
            bound,
        })
    }

    /// Gives the host's own pod (JSON, e.g. from [`crate::config::base_pod::from_env`]) to the
    /// built-in overlord-copy adapters whose binding names no `basePod` file, for when taskpod
    /// runs in a pod.
    pub fn set_own_pod(&mut self, pod_json: &str) {
        for binding in &self.config.adapters {
            let overlord = binding.component.starts_with("builtin:overlord-");
            if let Some(bound) = self.bound.get_mut(&binding.name)
                && overlord
                && bound.base_pod.is_none()
            {
                bound.base_pod = Some(pod_json.to_owned());
            }
        }
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
    pub fn adapters(&self) -> impl Iterator<Item = &Arc<LoadedAdapter>> {
        self.bound.values().map(|b| &b.adapter)
    }

    /// Routes `task` and builds the adapter's inputs and the contract.
    pub fn prepare(&self, task: &SubmittedTask) -> Result<Prepared, RenderError> {
        let binding = self
            .config
            .route(&task.kind)
            .ok_or_else(|| RenderError::NoRoute {
                task_type: task.kind.clone(),
            })?;
        let bound = &self.bound[&binding.name];
        let runner = &self.config.runner;
        let job_name = names::job_name(&task.id);
        let cleanup_delay = (!runner.debug_jobs).then_some(runner.task_cleanup_delay.0.as_secs());
        let context = Context {
            namespace: self.config.namespace.clone(),
            config: bound.adapter.config().to_owned(),
            base_pod: bound.base_pod.clone(),
            templates: bound.templates.clone(),
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
        })
    }

    /// Renders on the current thread (CLI).
    pub fn render_blocking(&self, task: &SubmittedTask) -> Result<Manifests, RenderError> {
        let prepared = self.prepare(task)?;
        let output = prepared
            .adapter
            .adapt_blocking(&prepared.task, &prepared.context)?;
        Ok(contract::enforce(&output, &prepared.contract).map_err(adapters::Error::from)?)
    }

    /// Renders without blocking the async runtime (the adapter runs on a blocking thread).
    pub async fn render(&self, task: &SubmittedTask) -> Result<Manifests, RenderError> {
        let prepared = self.prepare(task)?;
        let output = prepared
            .adapter
            .adapt(prepared.task, prepared.context)
            .await?;
        Ok(contract::enforce(&output, &prepared.contract).map_err(adapters::Error::from)?)
    }
}
