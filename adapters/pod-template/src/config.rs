//! The pod-template adapter's configuration: its schema, defaults and template selection.
//!
//! The configuration is one JSON object (the adapter binding's `config` in the host's YAML).
//! Unknown keys are rejected so a misspelt key never silently falls back to a default. Template
//! selection is a strategy (`podTemplateSelectStrategy`, as Druid's dynamic execution config)
//! so that further strategies can be added as new variants without touching the Job builder.

use std::collections::BTreeMap;

use serde::Deserialize;
use taskpod_adapter_sdk::error::{self, invalid_config};
use taskpod_adapter_sdk::{AdapterError, Pairs, Task};

/// Default `TASK_DIR`: Druid's `druid.indexer.task.baseTaskDir` in the example PodTemplate.
pub const DEFAULT_BASE_TASK_DIR: &str = "/druid/data";

/// Name of the template every task falls back to; it must always be given.
pub const BASE_TEMPLATE: &str = "base";

/// JSON Schema of [`Config`], returned by `info`.
pub const CONFIG_SCHEMA: &str = r##"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "pod-template adapter configuration",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "baseTaskDir": {
      "description": "Value of TASK_DIR in the main container (Druid's druid.indexer.task.baseTaskDir).",
      "type": "string", "minLength": 1, "default": "/druid/data"
    },
    "tlsEnabled": {
      "description": "Value of the tls.enabled annotation (Druid's druid.enableTlsPort).",
      "type": "boolean", "default": false
    },
    "taskSelectionKey": {
      "description": "Task context key (in the task JSON's `context`) whose string value names the template to use, overriding the strategy; absent: tasks cannot choose.",
      "type": "string", "minLength": 1
    },
    "mainContainer": {
      "description": "Name of the container that runs the peon; default: the container named 'main', else the first.",
      "type": "string", "minLength": 1
    },
    "podTemplateSelectStrategy": {
      "description": "How a task's template is chosen among the named templates; 'base' is the fallback.",
      "oneOf": [
        {
          "type": "object", "additionalProperties": false, "required": ["type"],
          "properties": { "type": { "const": "taskType" } }
        },
        {
          "type": "object", "additionalProperties": false, "required": ["type", "selectors"],
          "properties": {
            "type": { "const": "selectorBased" },
            "selectors": {
              "type": "array",
              "items": {
                "type": "object", "additionalProperties": false, "required": ["selectionKey"],
                "properties": {
                  "selectionKey": { "type": "string", "minLength": 1 },
                  "type": { "type": "array", "items": { "type": "string" } },
                  "dataSource": { "type": "array", "items": { "type": "string" } },
                  "tenant": { "type": "array", "items": { "type": "string" } },
                  "context.tags": { "type": "object", "additionalProperties": { "type": "array", "items": { "type": "string" } } },
                  "labels": { "type": "object", "additionalProperties": { "type": "array", "items": { "type": "string" } } }
                }
              }
            }
          }
        }
      ],
      "default": { "type": "taskType" }
    }
  }
}"##;

/// The adapter's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// `TASK_DIR` in the main container (default [`DEFAULT_BASE_TASK_DIR`]).
    #[serde(default = "default_base_task_dir")]
    pub base_task_dir: String,
    /// The container that runs the task; default: `main`, else the first container.
    #[serde(default)]
    pub main_container: Option<String>,
    /// How the template is chosen (default: by task type).
    #[serde(default)]
    pub pod_template_select_strategy: SelectStrategy,
    /// Value of the `tls.enabled` annotation.
    #[serde(default)]
    pub tls_enabled: bool,
    /// Task context key whose value names the template, when tasks may choose (default: they
    /// may not).
    #[serde(default)]
    pub task_selection_key: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            base_task_dir: default_base_task_dir(),
            main_container: None,
            pod_template_select_strategy: SelectStrategy::default(),
            tls_enabled: false,
            task_selection_key: None,
        }
    }
}

fn default_base_task_dir() -> String {
    DEFAULT_BASE_TASK_DIR.to_owned()
}

/// How a task's template is chosen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum SelectStrategy {
    /// The template named exactly like the task type, else `base` (Druid's
    /// `druid.indexer.runner.k8s.podTemplate.{taskType}`). Druid's dynamic config calls it
    /// `default`, accepted as an alias.
    #[default]
    #[serde(alias = "default")]
    TaskType,
    /// The first selector that matches names the template; `base` when none matches (Druid's
    /// `selectorBased` strategy, extended with tenant and label conditions).
    SelectorBased {
        /// Selectors, tried in order.
        selectors: Vec<Selector>,
    },
}

/// One rule of the `selectorBased` strategy: every condition given must hold (an absent or
/// empty list means "any").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selector {
    /// The template chosen when the selector matches.
    pub selection_key: String,
    /// Task types that match.
    #[serde(default, rename = "type")]
    pub task_type: Vec<String>,
    /// Datasources that match.
    #[serde(default)]
    pub data_source: Vec<String>,
    /// Tenants that match.
    #[serde(default)]
    pub tenant: Vec<String>,
    /// For each context tag, the values that match.
    #[serde(default, rename = "context.tags")]
    pub context_tags: BTreeMap<String, Vec<String>>,
    /// For each task label, the values that match.
    #[serde(default)]
    pub labels: BTreeMap<String, Vec<String>>,
}

impl Selector {
    fn matches(&self, task: &Task) -> bool {
        fn any_of(allowed: &[String], value: Option<&str>) -> bool {
            allowed.is_empty() || value.is_some_and(|v| allowed.iter().any(|a| a == v))
        }
        fn pairs_match(conds: &BTreeMap<String, Vec<String>>, pairs: &Pairs) -> bool {
            conds.iter().all(|(key, allowed)| {
                any_of(
                    allowed,
                    pairs
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.as_str()),
                )
            })
        }
        any_of(&self.task_type, Some(&task.kind))
            && any_of(&self.data_source, task.datasource.as_deref())
            && any_of(&self.tenant, Some(&task.tenant))
            && pairs_match(&self.context_tags, &task.tags)
            && pairs_match(&self.labels, &task.labels)
    }
}

impl Config {
    /// Parses and checks a configuration; errors name the key and the fix.
    pub fn parse(config: &str) -> Result<Config, AdapterError> {
        let config: Config = error::parse_config(config)?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), AdapterError> {
        if self.base_task_dir.is_empty() {
            return Err(invalid_config(
                "config.baseTaskDir: must not be empty; give the peon's task directory, e.g. \"/druid/data\"",
            ));
        }
        if self.main_container.as_deref() == Some("") {
            return Err(invalid_config(
                "config.mainContainer: must not be empty; name a container of the template or leave the key out",
            ));
        }
        if self.task_selection_key.as_deref() == Some("") {
            return Err(invalid_config(
                "config.taskSelectionKey: must not be empty; name a task context key (e.g. \"podTemplate\") or leave the key out",
            ));
        }
        if let SelectStrategy::SelectorBased { selectors } = &self.pod_template_select_strategy {
            for (i, s) in selectors.iter().enumerate() {
                if s.selection_key.is_empty() {
                    return Err(invalid_config(format!(
                        "config.podTemplateSelectStrategy.selectors[{i}].selectionKey: must name a template"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Chooses the template for `task` among `templates` (name → PodTemplate JSON), returning
    /// its name and JSON text.
    pub fn select_template<'a>(
        &self,
        task: &Task,
        templates: &'a Pairs,
    ) -> Result<(&'a str, &'a str), AdapterError> {
        let find = |name: &str| {
            templates
                .iter()
                .find(|(k, _)| k == name)
                .map(|(k, v)| (k.as_str(), v.as_str()))
        };
        if let Some(key) = &self.task_selection_key
            && let Some(wanted) = task_context_string(&task.payload, key)
        {
            return find(&wanted).ok_or_else(|| {
                taskpod_adapter_sdk::error::invalid_task(format!(
                    "payload.context.{key}: task `{id}` asks for pod template `{wanted}`, which is not configured (templates: [{names}]); use one of them or drop the key",
                    id = task.id,
                    names = templates.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ")
                ))
            });
        }
        let chosen = match &self.pod_template_select_strategy {
            SelectStrategy::TaskType => find(&task.kind),
            SelectStrategy::SelectorBased { selectors } => {
                match selectors.iter().find(|s| s.matches(task)) {
                    Some(s) => Some(find(&s.selection_key).ok_or_else(|| {
                        invalid_config(format!(
                            "templates.{key}: selector `{key}` matched task `{id}` but no template of that name was given; add podTemplate `{key}` to the adapter's templates",
                            key = s.selection_key,
                            id = task.id
                        ))
                    })?),
                    None => None,
                }
            }
        };
        match chosen {
            Some(found) => Ok(found),
            None => find(BASE_TEMPLATE).ok_or_else(|| {
                invalid_config(format!(
                    "templates.base: no `base` PodTemplate was given (templates: [{}]); the pod-template adapter needs one (Druid's druid.indexer.runner.k8s.podTemplate.base)",
                    templates.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ")
                ))
            }),
        }
    }
}

/// The string value of `context.{key}` in a task JSON, if present.
fn task_context_string(payload: &str, key: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        context: BTreeMap<String, serde_json::Value>,
    }
    let doc: Doc = serde_json::from_str(payload).ok()?;
    doc.context.get(key)?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(kind: &str, ds: Option<&str>) -> Task {
        Task {
            id: "t1".into(),
            kind: kind.into(),
            tenant: "acme".into(),
            datasource: ds.map(Into::into),
            tags: vec![("team".into(), "analytics".into())],
            ..Task::default()
        }
    }

    fn templates(names: &[&str]) -> Pairs {
        names
            .iter()
            .map(|n| (n.to_string(), format!("json-{n}")))
            .collect()
    }

    #[test]
    fn defaults() {
        let c = Config::parse("{}").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.base_task_dir, "/druid/data");
        let schema: serde_json::Value = serde_json::from_str(CONFIG_SCHEMA).unwrap();
        assert_eq!(schema["additionalProperties"], false);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse(r#"{"baseTaskdir": "/x"}"#).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, AdapterError::InvalidConfig(_)));
        assert!(
            msg.contains("baseTaskdir") && msg.contains("baseTaskDir"),
            "{msg}"
        );
        let err = Config::parse(
            r#"{"podTemplateSelectStrategy": {"type": "selectorBased", "selectors": [{"selectionKey": "a", "datasource": ["x"]}]}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("datasource"), "{err}");
        let err =
            Config::parse(r#"{"podTemplateSelectStrategy": {"type": "random"}}"#).unwrap_err();
        assert!(err.to_string().contains("random"), "{err}");
        let err = Config::parse(r#"{"mainContainer": ""}"#).unwrap_err();
        assert!(err.to_string().contains("config.mainContainer"), "{err}");
    }

    #[test]
    fn druids_default_strategy_name_is_the_task_type_strategy() {
        let c: Config =
            serde_json::from_str(r#"{"podTemplateSelectStrategy": {"type": "default"}}"#).unwrap();
        assert_eq!(c.pod_template_select_strategy, SelectStrategy::TaskType);
    }

    #[test]
    fn task_type_strategy() {
        let c = Config::default();
        let t = templates(&["base", "index_parallel"]);
        assert_eq!(
            c.select_template(&task("index_parallel", None), &t)
                .unwrap()
                .0,
            "index_parallel"
        );
        assert_eq!(
            c.select_template(&task("compact", None), &t).unwrap().0,
            "base"
        );
        let err = c
            .select_template(&task("compact", None), &templates(&["index_parallel"]))
            .unwrap_err();
        assert!(err.to_string().contains("templates.base"), "{err}");
        assert!(err.to_string().contains("index_parallel"), "{err}");
    }

    #[test]
    fn task_may_choose_its_template_only_when_allowed() {
        let t = templates(&["base", "big"]);
        let mut chooser = task("compact", None);
        chooser.payload = r#"{"type":"compact","context":{"podTemplate":"big"}}"#.into();
        assert_eq!(
            Config::default().select_template(&chooser, &t).unwrap().0,
            "base"
        );
        let c = Config::parse(r#"{"taskSelectionKey": "podTemplate"}"#).unwrap();
        assert_eq!(c.select_template(&chooser, &t).unwrap().0, "big");
        chooser.payload = r#"{"context":{"podTemplate":"huge"}}"#.into();
        let err = c.select_template(&chooser, &t).unwrap_err();
        assert!(matches!(err, AdapterError::InvalidTask(_)), "{err}");
        assert!(
            err.to_string().contains("payload.context.podTemplate"),
            "{err}"
        );
        assert!(Config::parse(r#"{"taskSelectionKey": ""}"#).is_err());
    }

    #[test]
    fn selector_strategy() {
        let c = Config::parse(
            r#"{"podTemplateSelectStrategy": {"type": "selectorBased", "selectors": [
                {"selectionKey": "big", "type": ["index_parallel"], "dataSource": ["wikipedia"], "context.tags": {"team": ["analytics"]}},
                {"selectionKey": "small", "tenant": ["acme"], "labels": {"size": ["s"]}},
                {"selectionKey": "missing", "type": ["kill"]}
            ]}}"#,
        )
        .unwrap();
        let t = templates(&["base", "big", "small"]);
        assert_eq!(
            c.select_template(&task("index_parallel", Some("wikipedia")), &t)
                .unwrap()
                .0,
            "big"
        );
        assert_eq!(
            c.select_template(&task("index_parallel", Some("other")), &t)
                .unwrap()
                .0,
            "base"
        );
        let mut labelled = task("compact", None);
        labelled.labels = vec![("size".into(), "s".into())];
        assert_eq!(c.select_template(&labelled, &t).unwrap().0, "small");
        let err = c.select_template(&task("kill", None), &t).unwrap_err();
        assert!(err.to_string().contains("templates.missing"), "{err}");
    }
}
