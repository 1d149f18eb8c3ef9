//! The dynamic execution config: what an operator changes at run time without a restart —
//! the global capacity and the pod-template selection strategy (Druid's
//! `KubernetesTaskRunnerDynamicConfig`, served by Druid at
//! `/druid/indexer/v1/k8s/taskrunner/executionconfig`) — with a history of every change
//! (who, when, what).
//!
//! Both survive a restart: the capacity through the runner's own record, the strategy and the
//! history in the store's metadata. A strategy is checked by the adapter itself
//! (`validate-config` in the sandbox) before it is used, so a bad selector is refused with the
//! adapter's own message and never reaches a launch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::render::RenderError;
use crate::runner::{Runner, RunnerError};
use crate::store::StoreError;

/// Metadata key of the strategies in force, by adapter binding name.
const META_STRATEGIES: &str = "execution.strategies";
/// Metadata key of the change history (a JSON array, oldest first).
const META_HISTORY: &str = "execution.history";
/// Changes kept in the history; older ones are dropped.
pub const HISTORY_LIMIT: usize = 1000;
/// The adapter config key holding the strategy (the pod-template adapter's, as Druid's).
const STRATEGY_KEY: &str = "podTemplateSelectStrategy";

/// Serialises read-modify-write of the execution config (one change at a time).
static CHANGES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The execution config as shown by `GET /v1/config/execution`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionView {
    /// Druid's config type (always `default`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Jobs in flight at most.
    pub capacity: usize,
    /// The selection strategy of the pod-template adapter(s), when exactly one is configured
    /// (Druid's shape); see `adapters` for each.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_template_select_strategy: Option<Value>,
    /// The strategy in force per pod-template adapter binding, and whether it was set at run
    /// time (`dynamic`) or comes from the config file.
    pub adapters: BTreeMap<String, StrategyView>,
}

/// One binding's strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StrategyView {
    /// The strategy (the adapter's default when the config names none).
    pub pod_template_select_strategy: Value,
    /// Set through the API (true) or from the config file (false).
    pub dynamic: bool,
}

/// A change request: every field is optional; a field given replaces the current value and a
/// strategy of `null` goes back to the config file's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Change {
    /// New capacity.
    pub capacity: Option<usize>,
    /// New strategy (`Some(None)`: back to the configured one).
    pub strategy: Option<Option<Value>>,
    /// Limit the strategy change to this binding (default: every pod-template binding).
    pub adapter: Option<String>,
}

/// Who made a change and why (from the request's author and comment headers).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Author {
    /// Who (the `X-Taskpod-Author` / `X-Druid-Author` header, or the authenticated identity).
    pub author: String,
    /// Why (the `X-Taskpod-Comment` / `X-Druid-Comment` header).
    pub comment: String,
}

/// One entry of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// When (RFC 3339, UTC).
    pub audit_time: String,
    /// Who and why.
    #[serde(flatten)]
    pub author: Author,
    /// What was asked (the fields of the request).
    pub change: Value,
    /// The execution config before the change.
    pub before: Value,
    /// The execution config after the change.
    pub after: Value,
}

/// Why a change was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecutionError {
    /// The request is wrong: `field` and what is wrong with it.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// The problem and the fix.
        message: String,
    },
    /// The adapter refused the strategy or the binding is unknown.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// Capacity could not be changed.
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &str, message: impl Into<String>) -> ExecutionError {
    ExecutionError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Parses a change from a request body: `{"type": "default", "capacity": N,
/// "podTemplateSelectStrategy": {...} | null}` (Druid's body, plus `capacity`).
pub fn parse_change(body: &[u8], adapter: Option<String>) -> Result<Change, ExecutionError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        invalid(
            "body",
            format!("not JSON ({e}); send {{\"podTemplateSelectStrategy\": {{...}}}} and/or {{\"capacity\": N}}"),
        )
    })?;
    let Some(object) = value.as_object() else {
        return Err(invalid("body", "must be a JSON object"));
    };
    let mut change = Change {
        adapter,
        ..Change::default()
    };
    for (key, value) in object {
        match key.as_str() {
            "type" => {
                if value.as_str() != Some("default") {
                    return Err(invalid(
                        "type",
                        format!(
                            "{value} is not a known execution config type; use \"default\" or leave it out"
                        ),
                    ));
                }
            }
            "capacity" => {
                let n = value
                    .as_u64()
                    .filter(|n| (1..=i32::MAX as u64).contains(n))
                    .ok_or_else(|| {
                        invalid(
                            "capacity",
                            format!("{value} is not an integer from 1 to {}", i32::MAX),
                        )
                    })?;
                change.capacity = Some(n as usize);
            }
            STRATEGY_KEY => {
                change.strategy = Some(match value {
                    Value::Null => None,
                    Value::Object(_) => Some(value.clone()),
                    other => {
                        return Err(invalid(
                            STRATEGY_KEY,
                            format!(
                                "{other} is not an object; give {{\"type\": \"taskType\"}} or {{\"type\": \"selectorBased\", \"selectors\": [...]}}, or null to go back to the config file's"
                            ),
                        ));
                    }
                });
            }
            other => {
                return Err(invalid(
                    other,
                    format!(
                        "unknown field; the execution config has `type`, `capacity` and `{STRATEGY_KEY}`"
                    ),
                ));
            }
        }
    }
    if change.capacity.is_none() && change.strategy.is_none() {
        return Err(invalid(
            "body",
            format!("nothing to change: give `capacity` and/or `{STRATEGY_KEY}`"),
        ));
    }
    Ok(change)
}

/// The strategy a binding's config holds (its `podTemplateSelectStrategy`, or the adapter's
/// default: by task type).
fn strategy_of(config: &str) -> Value {
    serde_json::from_str::<Value>(config)
        .ok()
        .and_then(|c| c.get(STRATEGY_KEY).cloned())
        .unwrap_or_else(|| serde_json::json!({ "type": "taskType" }))
}

/// The configured (file) config of a binding with `strategy` in place of its own.
fn with_strategy(runner: &Runner, name: &str, strategy: &Value) -> Result<String, ExecutionError> {
    let renderer = runner.renderer();
    let base = renderer
        .adapters()
        .find(|a| a.name() == name)
        .map(|a| a.config().to_owned())
        .unwrap_or_else(|| "{}".to_owned());
    let mut config: Value =
        serde_json::from_str(&base).unwrap_or_else(|_| Value::Object(Default::default()));
    let Some(object) = config.as_object_mut() else {
        return Err(invalid(
            "adapter",
            format!(
                "adapter `{name}` has a config that is not a JSON object; its strategy cannot be replaced"
            ),
        ));
    };
    object.insert(STRATEGY_KEY.to_owned(), strategy.clone());
    Ok(config.to_string())
}

/// The execution config in force.
pub async fn current(runner: &Runner) -> Result<ExecutionView, ExecutionError> {
    let dynamic = stored_strategies(runner).await?;
    let renderer = runner.renderer();
    let mut adapters = BTreeMap::new();
    for name in renderer.template_adapters() {
        let config = renderer.adapter_config(&name).unwrap_or_default();
        adapters.insert(
            name.clone(),
            StrategyView {
                pod_template_select_strategy: strategy_of(&config),
                dynamic: dynamic.contains_key(&name),
            },
        );
    }
    let single = (adapters.len() == 1)
        .then(|| {
            adapters
                .values()
                .next()
                .map(|s| s.pod_template_select_strategy.clone())
        })
        .flatten();
    Ok(ExecutionView {
        kind: "default".to_owned(),
        capacity: runner.capacity(),
        pod_template_select_strategy: single,
        adapters,
    })
}

async fn stored_strategies(runner: &Runner) -> Result<BTreeMap<String, Value>, ExecutionError> {
    Ok(match runner.store().get_meta(META_STRATEGIES).await? {
        Some(text) => serde_json::from_str(&text).unwrap_or_default(),
        None => BTreeMap::new(),
    })
}

/// The history, newest first, at most `count` entries.
pub async fn history(runner: &Runner, count: usize) -> Result<Vec<HistoryEntry>, ExecutionError> {
    let mut entries = stored_history(runner).await?;
    entries.reverse();
    entries.truncate(count);
    Ok(entries)
}

async fn stored_history(runner: &Runner) -> Result<Vec<HistoryEntry>, ExecutionError> {
    Ok(match runner.store().get_meta(META_HISTORY).await? {
        Some(text) => serde_json::from_str(&text).unwrap_or_default(),
        None => Vec::new(),
    })
}

/// Applies `change` and records it in the history. The strategy is validated by every adapter
/// it applies to before any of them uses it: either all take it or none does.
pub async fn apply(
    runner: &Runner,
    change: Change,
    author: Author,
) -> Result<ExecutionView, ExecutionError> {
    let _one_at_a_time = CHANGES.lock().await;
    let before = current(runner).await?;
    let renderer = runner.renderer();
    let targets = match &change.adapter {
        Some(name) => {
            if !renderer.template_adapters().contains(name) {
                return Err(invalid(
                    "adapter",
                    format!(
                        "`{name}` is not a pod-template adapter binding (those with a template selection strategy: {})",
                        renderer.template_adapters().join(", ")
                    ),
                ));
            }
            vec![name.clone()]
        }
        None => renderer.template_adapters(),
    };
    let mut strategies = stored_strategies(runner).await?;
    if let Some(strategy) = &change.strategy {
        if targets.is_empty() {
            return Err(invalid(
                STRATEGY_KEY,
                "no adapter binding uses builtin:pod-template, so there is no template selection to change",
            ));
        }
        // Validate everything first (in the sandbox, off the async threads).
        let mut configs = Vec::new();
        for name in &targets {
            let config = match strategy {
                Some(strategy) => Some(with_strategy(runner, name, strategy)?),
                None => None,
            };
            configs.push((name.clone(), config));
        }
        for (name, config) in &configs {
            if let Some(config) = config {
                let adapter = renderer
                    .adapters()
                    .find(|a| a.name() == name)
                    .ok_or_else(|| invalid("adapter", format!("`{name}` is not loaded")))?;
                let config = config.clone();
                tokio::task::spawn_blocking(move || adapter.validate_config(&config))
                    .await
                    .map_err(|e| invalid("adapter", format!("validation did not complete: {e}")))?
                    .map_err(RenderError::from)?;
            }
        }
        for (name, config) in configs {
            renderer.set_adapter_config(&name, config)?;
            match strategy {
                Some(strategy) => strategies.insert(name, strategy.clone()),
                None => strategies.remove(&name),
            };
        }
        runner
            .store()
            .set_meta(
                META_STRATEGIES,
                &serde_json::to_string(&strategies).unwrap_or_default(),
            )
            .await?;
    }
    if let Some(n) = change.capacity {
        runner.set_capacity(n).await?;
    }
    let after = current(runner).await?;
    let mut asked = serde_json::Map::new();
    if let Some(n) = change.capacity {
        asked.insert("capacity".into(), n.into());
    }
    if let Some(strategy) = &change.strategy {
        asked.insert(STRATEGY_KEY.into(), strategy.clone().unwrap_or(Value::Null));
    }
    if let Some(adapter) = &change.adapter {
        asked.insert("adapter".into(), adapter.clone().into());
    }
    let mut entries = stored_history(runner).await?;
    entries.push(HistoryEntry {
        audit_time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        author,
        change: Value::Object(asked),
        before: serde_json::to_value(&before).unwrap_or_default(),
        after: serde_json::to_value(&after).unwrap_or_default(),
    });
    if entries.len() > HISTORY_LIMIT {
        let excess = entries.len() - HISTORY_LIMIT;
        entries.drain(..excess);
    }
    runner
        .store()
        .set_meta(
            META_HISTORY,
            &serde_json::to_string(&entries).unwrap_or_default(),
        )
        .await?;
    Ok(after)
}

/// Puts back the strategies set at run time before a restart (called once the runner has
/// started). A stored strategy the adapter no longer accepts (its config file changed) is
/// dropped with a warning naming the adapter and the problem; the configured one applies.
pub async fn restore(runner: &Runner) -> Result<(), ExecutionError> {
    let strategies = stored_strategies(runner).await?;
    let renderer = runner.renderer();
    for (name, strategy) in strategies {
        if !renderer.template_adapters().contains(&name) {
            tracing::warn!(adapter = %name, "execution config: a strategy was set at run time for an adapter that is no longer configured; ignored");
            continue;
        }
        let config = with_strategy(runner, &name, &strategy)?;
        let adapter = renderer.adapters().find(|a| a.name() == name);
        let checked = match adapter {
            Some(adapter) => {
                let probe = config.clone();
                tokio::task::spawn_blocking(move || adapter.validate_config(&probe))
                    .await
                    .map_err(|e| invalid("adapter", e.to_string()))?
                    .map_err(RenderError::from)
            }
            None => continue,
        };
        match checked.and_then(|()| renderer.set_adapter_config(&name, Some(config))) {
            Ok(()) => {
                tracing::info!(adapter = %name, "execution config: template selection strategy set at run time restored")
            }
            Err(error) => {
                tracing::warn!(adapter = %name, %error, "execution config: the strategy set at run time is refused by the adapter now; the config file's applies")
            }
        }
    }
    Ok(())
}
