//! A minimal importer of Druid's `druid.indexer.runner.*` runtime properties.
//!
//! It understands the keys of the customTemplateAdapter example in Druid's "MM-less Druid in
//! K8s" documentation — `namespace`, `k8s.adapter.type=customTemplateAdapter`,
//! `k8s.podTemplate.base` and `k8s.podTemplate.{taskType}`, `labels` and `annotations` (JSON
//! objects), `maxTaskDuration`, `taskCleanupDelay` — and maps them onto a [`Config`] with the
//! built-in `pod-template` adapter. Any other `druid.indexer.runner.*` key becomes a warning
//! naming it (the full importer is later work); properties outside that prefix are not ours and
//! are ignored. Paths are resolved against the properties file's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{AdapterBinding, AdapterLimits, Config, ConfigError, parse_duration};

const PREFIX: &str = "druid.indexer.runner.";

/// Druid's adapter types and what taskpod does with each.
const ADAPTER_TYPES: &[(&str, Option<&str>)] = &[
    ("customTemplateAdapter", Some("pod-template")),
    ("overlordSingleContainer", None),
    ("overlordMultiContainer", None),
];

/// A config imported from Druid properties, with the warnings to show the user.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The resulting configuration (validated).
    pub config: Config,
    /// One line per property that was not imported.
    pub warnings: Vec<String>,
}

/// Reads and imports a Druid `runtime.properties` file.
pub fn import_file(path: &Path) -> Result<Imported, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    import(&text, &base).map_err(|message| ConfigError::Druid {
        path: path.to_path_buf(),
        message,
    })
}

/// Imports properties text; relative template paths are joined to `base`.
pub fn import(text: &str, base: &Path) -> Result<Imported, String> {
    let properties = parse_properties(text);
    let mut config = Config {
        base_dir: base.to_path_buf(),
        ..Config::default()
    };
    let mut warnings = Vec::new();
    let mut adapter_type: Option<String> = None;
    let mut templates: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (key, value) in &properties {
        let Some(short) = key.strip_prefix(PREFIX) else {
            continue;
        };
        let duration = |value: &str| {
            parse_duration(value)
                .map(super::ConfigDuration)
                .map_err(|e| format!("{key}: {e}"))
        };
        let json_map = |value: &str| -> Result<BTreeMap<String, String>, String> {
            serde_json::from_str(value).map_err(|e| {
                format!("{key}: expected a JSON object of strings like {{\"key\":\"value\"}}: {e}")
            })
        };
        match short {
            "namespace" => config.namespace = value.clone(),
            "type" if value == "k8s" => {}
            "k8s.adapter.type" => adapter_type = Some(value.clone()),
            "labels" => config.labels = json_map(value)?,
            "annotations" => config.annotations = json_map(value)?,
            "maxTaskDuration" => config.runner.max_task_duration = duration(value)?,
            "taskCleanupDelay" => config.runner.task_cleanup_delay = duration(value)?,
            _ => match short.strip_prefix("k8s.podTemplate.") {
                Some(task_type) if !task_type.is_empty() => {
                    templates.insert(task_type.to_owned(), PathBuf::from(value));
                }
                _ => warnings.push(format!(
                    "{key} is not imported yet (taskpod imports namespace, k8s.adapter.type, \
                     k8s.podTemplate.*, labels, annotations, maxTaskDuration, taskCleanupDelay); \
                     set the equivalent key in a taskpod config file instead"
                )),
            },
        }
    }
    let adapter_type = adapter_type.ok_or_else(|| {
        format!(
            "{PREFIX}k8s.adapter.type is not set (Druid then uses overlordSingleContainer, which \
             taskpod cannot import yet); set it to customTemplateAdapter"
        )
    })?;
    let builtin = match ADAPTER_TYPES.iter().find(|(name, _)| *name == adapter_type) {
        Some((_, Some(builtin))) => *builtin,
        Some((_, None)) => {
            return Err(format!(
                "{PREFIX}k8s.adapter.type={adapter_type} cannot be imported yet; only \
                 customTemplateAdapter is supported by this importer"
            ));
        }
        None => {
            return Err(format!(
                "{PREFIX}k8s.adapter.type={adapter_type} is not a Druid adapter type; known: {}",
                ADAPTER_TYPES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    };
    if !templates.contains_key("base") {
        return Err(format!(
            "{PREFIX}k8s.podTemplate.base is required with customTemplateAdapter (the path of \
             the base PodTemplate file)"
        ));
    }
    config.adapters.push(AdapterBinding {
        name: builtin.to_owned(),
        component: format!("{}{builtin}", crate::adapters::BUILTIN_PREFIX),
        config: serde_json::Value::Object(serde_json::Map::new()),
        templates,
        limits: AdapterLimits::default(),
        allow_restart_on_failure: false,
        max_backoff_limit: 3,
    });
    config.validate().map_err(|e| e.to_string())?;
    Ok(Imported { config, warnings })
}

/// Parses Java properties: `key=value` or `key: value` or `key value`, `#`/`!` comments,
/// backslash line continuations. Later keys win.
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut logical = String::new();
    for raw in text.lines() {
        let line = raw.trim_start();
        if logical.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
        {
            continue;
        }
        if let Some(stripped) = line.strip_suffix('\\') {
            logical.push_str(stripped);
            continue;
        }
        logical.push_str(line);
        let entry = std::mem::take(&mut logical);
        let split = entry
            .find(['=', ':'])
            .or_else(|| entry.find(char::is_whitespace));
        let (key, value) = match split {
            Some(at) => (&entry[..at], &entry[at + 1..]),
            None => (entry.as_str(), ""),
        };
        out.insert(key.trim().to_owned(), value.trim().to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_parse_like_java() {
        let p = parse_properties(
            "# comment\n! also\na=1\nb : two\nc three\nd=x\\\n  y\n\ne={\"k\": \"v\"}\n",
        );
        assert_eq!(p["a"], "1");
        assert_eq!(p["b"], "two");
        assert_eq!(p["c"], "three");
        assert_eq!(p["d"], "xy");
        assert_eq!(p["e"], "{\"k\": \"v\"}");
    }
}
