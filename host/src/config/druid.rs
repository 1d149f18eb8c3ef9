//! The importer of Druid's `druid.indexer.runner.*` runtime properties (the overlord's
//! `runtime.properties` of Druid's MM-less Kubernetes task runner).
//!
//! An operator points taskpod at the properties they already run with and gets the same Jobs:
//! [`import`] maps every property of the Kubernetes runner onto a [`Config`] with one built-in
//! adapter — `overlordSingleContainer` (Druid's default) → `overlord-single`,
//! `overlordMultiContainer` (or the deprecated `sidecarSupport=true`) → `overlord-multi`,
//! `customTemplateAdapter` → `pod-template` — and the runner keys (durations in ISO-8601, as
//! Druid writes them). The adapter's own keys (`javaOptsArray`, `peonMonitors`,
//! `primaryContainerName`, `kubexitImage`, `cpuCoreInMicro`, plus Druid's
//! `druid.indexer.task.baseTaskDir` and `druid.enableTlsPort`) go into the adapter's config.
//!
//! Nothing is dropped silently: a property taskpod does not use becomes a warning that names it
//! and says why (e.g. `overlordNamespace`, `k8sAndWorker.workerTaskRunnerType`, pod templates
//! given to an overlord adapter), and a property taskpod cannot honour is an error naming it —
//! `javaOpts` (a string; Druid's runner needs `javaOptsArray`), an unknown adapter or runner
//! type, `k8sAndWorker.sendAllTasksToWorkerTaskRunner=true` with nowhere to send tasks, malformed
//! values. Properties outside `druid.` are not Druid's and are ignored, except taskpod's own:
//! `taskpod.basePod`, the file of the overlord's pod for the overlord adapters when taskpod does
//! not run in that pod (see [`super::base_pod`]), and `taskpod.workerUrl` /
//! `taskpod.workerStatusUrl`, the worker task runner of migration mode (`type=k8sAndWorker`:
//! `routing.workers`, and `routing.toWorker.all` when `sendAllTasksToWorkerTaskRunner=true`).
//! Paths are resolved against the properties file's directory. Druid runs peons as the
//! overlord's service account, so the service account of that pod file is added to
//! `policy.serviceAccounts`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{AdapterBinding, AdapterLimits, Config, ConfigDuration, ConfigError, parse_duration};

const PREFIX: &str = "druid.indexer.runner.";

/// taskpod's own property naming the overlord's pod file (`basePod` of the adapter binding).
pub const BASE_POD_PROPERTY: &str = "taskpod.basePod";

/// taskpod's own properties for migration routing (`type=k8sAndWorker`): where tasks for the
/// worker task runner are POSTed, and where their status is read (`{id}` = the task id).
pub const WORKER_URL_PROPERTY: &str = "taskpod.workerUrl";
/// See [`WORKER_URL_PROPERTY`].
pub const WORKER_STATUS_URL_PROPERTY: &str = "taskpod.workerStatusUrl";
/// The worker runner's name in the imported `routing.workers`.
pub const IMPORTED_WORKER: &str = "druid-workers";

/// Druid's adapter types and the built-in adapter each maps to.
const ADAPTER_TYPES: &[(&str, &str)] = &[
    ("overlordSingleContainer", "overlord-single"),
    ("overlordMultiContainer", "overlord-multi"),
    ("customTemplateAdapter", "pod-template"),
];

/// Every `druid.indexer.runner.*` key the importer knows (besides `k8s.podTemplate.*` and
/// `k8sAndWorker.*`), for the warning on an unknown one.
const KNOWN: &[&str] = &[
    "type",
    "namespace",
    "overlordNamespace",
    "capacity",
    "labels",
    "annotations",
    "javaOptsArray",
    "javaOpts",
    "peonMonitors",
    "primaryContainerName",
    "kubexitImage",
    "sidecarSupport",
    "cpuCoreInMicro",
    "maxTaskDuration",
    "taskCleanupDelay",
    "taskCleanupInterval",
    "K8sjobLaunchTimeout",
    "debugJobs",
    "graceTerminationPeriodSeconds",
    "disableClientProxy",
    "k8s.adapter.type",
];

/// A config imported from Druid properties, with the warnings to show the user.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The resulting configuration (validated).
    pub config: Config,
    /// One line per property that was not imported, naming it and saying why.
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

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{key}={value}: expected true or false")),
    }
}

fn parse_u64(key: &str, value: &str) -> Result<u64, String> {
    value
        .parse::<u64>()
        .map_err(|_| format!("{key}={value}: expected a non-negative whole number"))
}

fn parse_duration_at(key: &str, value: &str) -> Result<ConfigDuration, String> {
    parse_duration(value)
        .map(ConfigDuration)
        .map_err(|e| format!("{key}={value}: {e}; write an ISO-8601 duration such as PT4H or P2D"))
}

fn json_map(key: &str, value: &str) -> Result<BTreeMap<String, String>, String> {
    serde_json::from_str(value).map_err(|e| {
        format!("{key}: expected a JSON object of strings like {{\"key\":\"value\"}}: {e}")
    })
}

fn json_strings(key: &str, value: &str) -> Result<Vec<String>, String> {
    serde_json::from_str(value).map_err(|e| {
        format!("{key}: expected a JSON array of strings like [\"-Xmx1g\", \"-Duser.timezone=UTC\"]: {e}")
    })
}

/// Imports properties text; relative paths (templates, `taskpod.basePod`) are joined to `base`
/// when the config is used. Errors name the property.
pub fn import(text: &str, base: &Path) -> Result<Imported, String> {
    let properties = parse_properties(text);
    let mut config = Config {
        base_dir: base.to_path_buf(),
        ..Config::default()
    };
    let mut warnings = Vec::new();
    let mut adapter_type: Option<String> = None;
    let mut sidecar_support = false;
    let mut templates: BTreeMap<String, PathBuf> = BTreeMap::new();
    // Adapter configuration keys, by the adapters that take them.
    let mut overlord = serde_json::Map::new();
    let mut template_config = serde_json::Map::new();
    let mut worker_runner: Option<(String, String)> = None;
    let mut send_all_to_worker = false;
    let mut k8s_and_worker = false;
    let mut overlord_namespace: Option<String> = None;

    if let Some(dir) = properties.get("druid.indexer.task.baseTaskDir") {
        overlord.insert("baseTaskDir".into(), dir.clone().into());
        template_config.insert("baseTaskDir".into(), dir.clone().into());
    }
    if let Some(tls) = properties.get("druid.enableTlsPort") {
        let tls = parse_bool("druid.enableTlsPort", tls)?;
        overlord.insert("enableTlsPort".into(), tls.into());
        template_config.insert("tlsEnabled".into(), tls.into());
    }
    if let Some(v) = properties.get("druid.indexer.task.encapsulatedTask")
        && !parse_bool("druid.indexer.task.encapsulatedTask", v)?
    {
        warnings.push(
            "druid.indexer.task.encapsulatedTask=false: Druid's Kubernetes runner requires true (the peon reads its task from TASK_JSON); set it to true for the peons".to_owned(),
        );
    }

    for (key, value) in &properties {
        let Some(short) = key.strip_prefix(PREFIX) else {
            continue;
        };
        match short {
            "type" => match value.as_str() {
                "k8s" => {}
                "k8sAndWorker" => k8s_and_worker = true,
                other => {
                    return Err(format!(
                        "{key}={other}: not a Kubernetes task runner; taskpod imports type=k8s (or k8sAndWorker)"
                    ));
                }
            },
            "namespace" => config.namespace = value.clone(),
            "overlordNamespace" => overlord_namespace = Some(value.clone()),
            "capacity" => {
                config.runner.capacity =
                    u32::try_from(parse_u64(key, value)?).unwrap_or(u32::MAX).min(i32::MAX as u32)
            }
            "labels" => config.labels = json_map(key, value)?,
            "annotations" => config.annotations = json_map(key, value)?,
            "javaOptsArray" => {
                overlord.insert("javaOptsArray".into(), json_strings(key, value)?.into());
            }
            "javaOpts" => {
                return Err(format!(
                    "{key} is no longer supported: Druid's Kubernetes task runner (and taskpod) needs the Java options as an array, because -Xmx and -XX:MaxDirectMemorySize size the peon's memory; write {PREFIX}javaOptsArray=[\"-Xmx1g\", …] instead"
                ));
            }
            "peonMonitors" => {
                overlord.insert("peonMonitors".into(), json_strings(key, value)?.into());
            }
            "primaryContainerName" => {
                overlord.insert("primaryContainerName".into(), value.clone().into());
            }
            "kubexitImage" => {
                overlord.insert("kubexitImage".into(), value.clone().into());
            }
            "cpuCoreInMicro" => {
                overlord.insert("cpuCoreInMicro".into(), parse_u64(key, value)?.into());
            }
            "sidecarSupport" => sidecar_support = parse_bool(key, value)?,
            "maxTaskDuration" => config.runner.max_task_duration = parse_duration_at(key, value)?,
            "taskCleanupDelay" => config.runner.task_cleanup_delay = parse_duration_at(key, value)?,
            "taskCleanupInterval" => {
                config.runner.task_cleanup_interval = parse_duration_at(key, value)?
            }
            "K8sjobLaunchTimeout" | "k8sjobLaunchTimeout" | "k8sJobLaunchTimeout" => {
                config.runner.k8s_job_launch_timeout = parse_duration_at(key, value)?
            }
            "debugJobs" => config.runner.debug_jobs = parse_bool(key, value)?,
            "graceTerminationPeriodSeconds" => {
                let seconds = match value.parse::<u64>() {
                    Ok(s) => s,
                    Err(_) => parse_duration_at(key, value)?.0.as_secs(),
                };
                config.runner.grace_termination_period_seconds =
                    Some(u32::try_from(seconds).map_err(|_| format!("{key}={value}: too large"))?);
            }
            "disableClientProxy" => config.runner.disable_client_proxy = parse_bool(key, value)?,
            "k8s.adapter.type" => adapter_type = Some(value.clone()),
            "k8sAndWorker.workerTaskRunnerType" => {
                worker_runner = Some((key.clone(), value.clone()));
            }
            "k8sAndWorker.sendAllTasksToWorkerTaskRunner" => {
                send_all_to_worker = parse_bool(key, value)?;
            }
            _ => match short.strip_prefix("k8s.podTemplate.") {
                Some(task_type) if !task_type.is_empty() => {
                    templates.insert(task_type.to_owned(), PathBuf::from(value));
                }
                _ => warnings.push(format!(
                    "{key} is not a property of Druid's Kubernetes task runner that taskpod knows; it is ignored (known: {}, k8s.podTemplate.*, k8sAndWorker.*)",
                    KNOWN.join(", ")
                )),
            },
        }
    }

    let worker_url = properties.get(WORKER_URL_PROPERTY).cloned();
    let worker_status_url = properties.get(WORKER_STATUS_URL_PROPERTY).cloned();
    match (&worker_url, k8s_and_worker) {
        (Some(url), true) => {
            config.routing.workers.insert(
                IMPORTED_WORKER.to_owned(),
                super::WorkerBackend {
                    url: url.clone(),
                    status_url: worker_status_url.clone(),
                    poll_interval: ConfigDuration(std::time::Duration::from_secs(10)),
                    timeout: ConfigDuration(std::time::Duration::from_secs(10)),
                },
            );
            if send_all_to_worker {
                config.routing.to_worker.all = Some(IMPORTED_WORKER.to_owned());
            } else {
                warnings.push(format!(
                    "{PREFIX}type=k8sAndWorker with sendAllTasksToWorkerTaskRunner=false: every task runs as a Kubernetes Job; to send some task types to the worker runner at {url}, add them to `routing.toWorker.byType` in a taskpod config"
                ));
            }
            if worker_status_url.is_none() {
                warnings.push(format!(
                    "{WORKER_URL_PROPERTY} is set without {WORKER_STATUS_URL_PROPERTY}: forwarded tasks end `succeeded` once the worker runner accepts them; set it (e.g. http://overlord:8090/druid/indexer/v1/task/{{id}}/status) to follow their outcome"
                ));
            }
        }
        (None, true) if send_all_to_worker => {
            return Err(format!(
                "{PREFIX}k8sAndWorker.sendAllTasksToWorkerTaskRunner=true sends every task to the worker task runner, but taskpod does not know where it is: set {WORKER_URL_PROPERTY} (where tasks are POSTed, e.g. http://overlord:8090/druid/indexer/v1/task) and {WORKER_STATUS_URL_PROPERTY}, or set it to false"
            ));
        }
        (None, true) => warnings.push(format!(
            "{PREFIX}type=k8sAndWorker: no {WORKER_URL_PROPERTY} is set, so no task is routed to a worker runner and every task runs as a Kubernetes Job; set it (and {WORKER_STATUS_URL_PROPERTY}) to route tasks there"
        )),
        (Some(_), false) => warnings.push(format!(
            "{WORKER_URL_PROPERTY} is only used with {PREFIX}type=k8sAndWorker; it is ignored"
        )),
        (None, false) => {
            if send_all_to_worker {
                return Err(format!(
                    "{PREFIX}k8sAndWorker.sendAllTasksToWorkerTaskRunner=true needs {PREFIX}type=k8sAndWorker (and {WORKER_URL_PROPERTY}); set it to false or use type=k8sAndWorker"
                ));
            }
        }
    }
    if let Some((key, value)) = worker_runner {
        warnings.push(format!(
            "{key}={value}: Druid's way of reaching middle managers; taskpod reaches the worker runner over HTTP at {WORKER_URL_PROPERTY} instead"
        ));
    }
    if let Some(ns) = overlord_namespace
        && ns != config.namespace
    {
        warnings.push(format!(
            "{PREFIX}overlordNamespace={ns}: taskpod reads its own pod from POD_NAMESPACE (or the file in {BASE_POD_PROPERTY}), not from this namespace"
        ));
    }

    let adapter_type = match (adapter_type, sidecar_support) {
        (Some(t), true) if t != "overlordMultiContainer" => {
            warnings.push(format!(
                "{PREFIX}sidecarSupport=true is deprecated and ignored because {PREFIX}k8s.adapter.type={t}"
            ));
            t
        }
        (Some(t), _) => t,
        (None, true) => {
            warnings.push(format!(
                "{PREFIX}sidecarSupport is deprecated; imported as {PREFIX}k8s.adapter.type=overlordMultiContainer"
            ));
            "overlordMultiContainer".to_owned()
        }
        (None, false) => "overlordSingleContainer".to_owned(),
    };
    let builtin = ADAPTER_TYPES
        .iter()
        .find(|(name, _)| *name == adapter_type)
        .map(|(_, builtin)| *builtin)
        .ok_or_else(|| {
            format!(
                "{PREFIX}k8s.adapter.type={adapter_type} is not a Druid adapter type; known: {}",
                ADAPTER_TYPES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;

    let base_pod = properties.get(BASE_POD_PROPERTY).map(PathBuf::from);
    let adapter_config = if builtin == "pod-template" {
        if !templates.contains_key("base") {
            return Err(format!(
                "{PREFIX}k8s.podTemplate.base is required with customTemplateAdapter (the path of the base PodTemplate file)"
            ));
        }
        for key in overlord.keys() {
            if key != "baseTaskDir" && key != "enableTlsPort" {
                warnings.push(format!(
                    "{PREFIX}{key} is not used by customTemplateAdapter (the pod templates define the peon's pod); it is ignored"
                ));
            }
        }
        if base_pod.is_some() {
            warnings.push(format!(
                "{BASE_POD_PROPERTY} is not used by customTemplateAdapter; it is ignored"
            ));
        }
        template_config
    } else {
        for task_type in templates.keys() {
            warnings.push(format!(
                "{PREFIX}k8s.podTemplate.{task_type} is only used by customTemplateAdapter; {adapter_type} builds Jobs from the overlord's pod, so it is ignored"
            ));
        }
        templates.clear();
        // Druid runs peons as the overlord's service account; allow it in the output policy.
        if let Some(pod) = &base_pod
            && let Ok(json) = super::base_pod::from_file(&base.join(pod))
            && let Ok(value) = serde_json::from_str::<serde_json::Value>(&json)
            && let Some(account) = value
                .pointer("/spec/serviceAccountName")
                .or_else(|| value.pointer("/spec/serviceAccount"))
                .and_then(serde_json::Value::as_str)
            && !config.policy.service_accounts.iter().any(|a| a == account)
        {
            config.policy.service_accounts.push(account.to_owned());
        }
        if builtin == "overlord-single" && overlord.contains_key("kubexitImage") {
            warnings.push(format!(
                "{PREFIX}kubexitImage is only used by overlordMultiContainer; it is ignored"
            ));
            overlord.remove("kubexitImage");
        }
        overlord
    };

    config.adapters.push(AdapterBinding {
        name: builtin.to_owned(),
        component: format!("{}{builtin}", crate::adapters::BUILTIN_PREFIX),
        config: serde_json::Value::Object(adapter_config),
        templates,
        base_pod: if builtin == "pod-template" {
            None
        } else {
            base_pod
        },
        limits: AdapterLimits::default(),
        allow_restart_on_failure: false,
        max_backoff_limit: 3,
        quarantine_after: 5,
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
