//! taskpod's configuration: one YAML file, typed, with documented defaults.
//!
//! Every key is a field of [`Config`] (camelCase in YAML, unknown keys rejected, every field
//! optional with the default its doc comment states); the reference page docs/config.md is
//! written from these doc comments. [`Config::load`] reads and parses a file and
//! [`Config::validate`] checks what serde cannot (references between keys, ranges, names),
//! returning errors that name the key. Durations accept ISO-8601 (`PT4H`, `P2D`, `PT30S`) and
//! short forms (`30s`, `4h`, `2d`, `500ms`); sizes accept bytes or `64Mi`/`64MiB`/`4M` forms.
//! [`druid`] imports Druid's `druid.indexer.runner.*` runtime properties into a [`Config`].

pub mod base_pod;
pub mod druid;
pub mod reference;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::adapters::{self, ComponentSource};
use crate::contract;
use crate::policy::Policy;
use crate::tenants::{self, AdminConfig, TenantConfig};

/// Result alias of this module.
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The YAML does not match the schema (unknown key, wrong type …).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde's message, which names the key and the line.
        message: String,
    },
    /// A value is out of range or refers to something missing.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// The key path, e.g. `adapters[0].limits.memory`.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A pod template file could not be read or is not a PodTemplate.
    #[error("config key `{key}`: pod template {path}: {message}")]
    Template {
        /// The key path.
        key: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A Druid runtime properties file could not be imported.
    #[error("{path}: {message}")]
    Druid {
        /// The properties file.
        path: PathBuf,
        /// What is wrong, naming the property.
        message: String,
    },
}

/// The taskpod configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Config {
    /// Namespace the Jobs are created in. Default `default`.
    pub namespace: String,
    /// Name of this taskpod instance, put in the `taskpod.dev/instance` label of every Job so
    /// several instances can share a namespace. A valid label value. Default `taskpod`.
    pub instance: String,
    /// Labels added to every Job and its pods (adapters receive them too). Default none.
    pub labels: BTreeMap<String, String>,
    /// Annotations added to every Job and its pods. Default none.
    pub annotations: BTreeMap<String, String>,
    /// Directory where compiled adapters are cached (created 0700). Default
    /// `$XDG_CACHE_HOME/taskpod/components` or `~/.cache/taskpod/components`.
    pub cache_dir: Option<PathBuf>,
    /// The task store: one SQLite file (created when absent; relative to the config file).
    /// `taskpod serve --store FILE` overrides it. Default `taskpod.db` in the working directory.
    pub store: Option<PathBuf>,
    /// The adapter instances tasks can be routed to. At least one is required.
    pub adapters: Vec<AdapterBinding>,
    /// Which adapter shapes which task.
    pub routing: Routing,
    /// How Jobs are run: durations, cleanup, capacity (Druid's `druid.indexer.runner.*`).
    pub runner: Runner,
    /// What adapters' outputs may ask for (privileges, host access, service accounts, images,
    /// resources); applied to every pod spec after the Job contract. Default: restrictive (see
    /// [`Policy`] and docs/security.md).
    pub policy: Policy,
    /// Which database holds the tasks: SQLite (default, the `store` file) or a shared
    /// PostgreSQL for several replicas.
    pub store_backend: StoreConfig,
    /// High availability: several replicas elect a leader through a Kubernetes Lease.
    pub ha: Ha,
    /// The admin's API tokens (hashed). With no admin token and no tenant, the API asks for no
    /// authentication (single-tenant mode).
    pub admin: AdminConfig,
    /// The tenants: tokens, own adapters and routing, quotas, priority, weight, policy. Default
    /// none (single-tenant mode: tasks name any tenant, default `default`).
    pub tenants: Vec<TenantConfig>,
    /// Directory relative paths (adapter components, templates) are resolved against: the
    /// config file's directory. Not a YAML key.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The host's own pod (JSON) when taskpod runs in a pod, read through the API at start-up
    /// (`POD_NAME`, `POD_NAMESPACE`): the base of the overlord-copy adapters whose binding names
    /// no `basePod` file. Not a YAML key.
    #[serde(skip)]
    pub own_pod: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            namespace: "default".to_owned(),
            instance: "taskpod".to_owned(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            cache_dir: None,
            store: None,
            adapters: Vec::new(),
            routing: Routing::default(),
            runner: Runner::default(),
            policy: Policy::default(),
            store_backend: StoreConfig::default(),
            ha: Ha::default(),
            admin: AdminConfig::default(),
            tenants: Vec::new(),
            base_dir: PathBuf::from("."),
            own_pod: None,
        }
    }
}

/// One adapter instance: a component plus its configuration, templates and limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdapterBinding {
    /// Name tasks are routed by (`routing.default`, `routing.byType`). Required; a DNS-1123 label.
    pub name: String,
    /// The component: `builtin:pod-template`, or the path of a `.wasm` component (relative to
    /// the config file). Required.
    pub component: String,
    /// The adapter's own configuration (any YAML; handed to the adapter as JSON). Default `{}`.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    /// Named pod templates: name → path of a `v1/PodTemplate` YAML or JSON file (relative to
    /// the config file). The host reads them and hands them to the adapter. Default none.
    #[serde(default)]
    pub templates: BTreeMap<String, PathBuf>,
    /// The host's own pod for the overlord-copy adapters (`builtin:overlord-single`,
    /// `builtin:overlord-multi`): path of a `v1/Pod` YAML or JSON file (relative to the config
    /// file), e.g. the output of `kubectl get pod OVERLORD -o yaml`. When absent and taskpod runs
    /// in a pod, the pod is read through the API by `POD_NAME` and `POD_NAMESPACE`
    /// ([`base_pod::from_api`]). Default none.
    #[serde(default)]
    pub base_pod: Option<PathBuf>,
    /// Bounds on every call of this adapter.
    #[serde(default)]
    pub limits: AdapterLimits,
    /// Keep an adapter's `restartPolicy: OnFailure` (for long-running containers); otherwise
    /// taskpod forces `Never` and `backoffLimit: 0`. Default false.
    #[serde(default)]
    pub allow_restart_on_failure: bool,
    /// Largest `backoffLimit` accepted with `allowRestartOnFailure`. Default 3.
    #[serde(default = "default_max_backoff")]
    pub max_backoff_limit: i32,
    /// Consecutive failed calls (trap, timeout, memory, bad output) after which the adapter is
    /// quarantined: its tasks fail at once with that reason until an admin reloads it
    /// (`POST /v1/adapters/{name}/reload`). 0 never quarantines. Default 5.
    #[serde(default = "default_quarantine_after")]
    pub quarantine_after: u32,
}

fn default_quarantine_after() -> u32 {
    5
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn default_max_backoff() -> i32 {
    3
}

/// Per-adapter call limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AdapterLimits {
    /// Largest memory one call may use: bytes or `64Mi`. Default `64Mi`.
    pub memory: ByteSize,
    /// Wall-time limit of one call. Default `1s`.
    pub timeout: ConfigDuration,
    /// Largest output (Job + companions JSON) of one call. Default `4Mi`.
    pub max_output: ByteSize,
    /// Calls of this adapter that may run at once. Default 4.
    pub concurrency: usize,
}

impl Default for AdapterLimits {
    fn default() -> Self {
        let limits = adapters::Limits::default();
        AdapterLimits {
            memory: ByteSize(limits.memory),
            timeout: ConfigDuration(limits.timeout),
            max_output: ByteSize(limits.max_output as u64),
            concurrency: limits.concurrency,
        }
    }
}

impl AdapterLimits {
    /// The runtime's form.
    pub fn to_runtime(&self) -> adapters::Limits {
        adapters::Limits {
            memory: self.memory.0,
            timeout: self.timeout.0,
            max_output: usize::try_from(self.max_output.0).unwrap_or(usize::MAX),
            concurrency: self.concurrency,
        }
    }
}

/// Which adapter shapes which task.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Routing {
    /// Adapter for task types not in `byType`. Default: the only adapter, when there is one.
    pub default: Option<String>,
    /// Task type → adapter name. Default none.
    pub by_type: BTreeMap<String, String>,
    /// Other task runners tasks can be sent to instead of becoming Jobs, by name (Druid's
    /// `k8sAndWorker` migration mode: the middle managers behind an existing overlord). Default
    /// none.
    pub workers: BTreeMap<String, WorkerBackend>,
    /// Which tasks go to a worker runner rather than to Kubernetes (the default for every task).
    pub to_worker: ToWorker,
}

/// A task runner reached over HTTP (e.g. a Druid overlord still running tasks on middle
/// managers): the task document is POSTed to `url`; its outcome is read from `statusUrl`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkerBackend {
    /// Where the task document is POSTed (JSON), e.g.
    /// `http://overlord:8090/druid/indexer/v1/task`. Required; http or https.
    pub url: String,
    /// Where the task's status is read, `{id}` replaced by the task id, e.g.
    /// `http://overlord:8090/druid/indexer/v1/task/{id}/status` (Druid's answer
    /// `{"status": {"status": "RUNNING|SUCCESS|FAILED", "errorMsg": …}}`). Default none: the
    /// task ends `succeeded` once the runner accepted it (its outcome is then tracked there).
    #[serde(default)]
    pub status_url: Option<String>,
    /// How often `statusUrl` is read for the tasks forwarded there. Default `PT10S`.
    #[serde(default = "default_worker_poll")]
    pub poll_interval: ConfigDuration,
    /// Longest a request to the runner may take. Default `PT10S`.
    #[serde(default = "default_worker_poll")]
    pub timeout: ConfigDuration,
}

fn default_worker_poll() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(10))
}

/// Which tasks are sent to a worker runner (names in `routing.workers`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ToWorker {
    /// Every task goes to this worker runner (Druid's
    /// `k8sAndWorker.sendAllTasksToWorkerTaskRunner=true`). Default none.
    pub all: Option<String>,
    /// Task type → worker runner name. Default none.
    pub by_type: BTreeMap<String, String>,
}

/// How Jobs are run (the keys of Druid's Kubernetes task runner).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Runner {
    /// Longest a task may run (Job `activeDeadlineSeconds`). Default `PT4H`.
    pub max_task_duration: ConfigDuration,
    /// How long finished Jobs are kept (Job `ttlSecondsAfterFinished`). Default `P2D`.
    pub task_cleanup_delay: ConfigDuration,
    /// How often finished Jobs are looked for and reaped. Default `PT10M`.
    pub task_cleanup_interval: ConfigDuration,
    /// How long a Job may take to start before its task fails. Default `PT1H`.
    pub k8s_job_launch_timeout: ConfigDuration,
    /// Keep finished Jobs (no `ttlSecondsAfterFinished`) for debugging. Default false.
    pub debug_jobs: bool,
    /// Pod `terminationGracePeriodSeconds`; unset keeps Kubernetes' default (30). Default unset.
    pub grace_termination_period_seconds: Option<u32>,
    /// Most Jobs in flight at once. Default 2147483647 (Druid's default: no limit).
    pub capacity: u32,
    /// Bypass a global HTTP(S) proxy when talking to the Kubernetes API. Default false.
    pub disable_client_proxy: bool,
    /// Name of the container whose log and exit code are the task's. Default: the container
    /// named `main`, else the first.
    pub main_container: Option<String>,
    /// Launches (adapter call plus Job create) running at once. Default 64.
    pub launch_concurrency: u32,
    /// Pods whose log is followed live at once; the logs of other pods are captured when they
    /// end. Default 256.
    pub max_log_followers: u32,
}

impl Default for Runner {
    fn default() -> Self {
        Runner {
            max_task_duration: ConfigDuration(Duration::from_secs(4 * 3600)),
            task_cleanup_delay: ConfigDuration(Duration::from_secs(2 * 24 * 3600)),
            task_cleanup_interval: ConfigDuration(Duration::from_secs(600)),
            k8s_job_launch_timeout: ConfigDuration(Duration::from_secs(3600)),
            debug_jobs: false,
            grace_termination_period_seconds: None,
            capacity: i32::MAX as u32,
            disable_client_proxy: false,
            main_container: None,
            launch_concurrency: 64,
            max_log_followers: 256,
        }
    }
}

/// Checks a worker runner URL: absolute http(s), and for a status URL, `{id}` in it.
fn check_worker_url(key: &str, url: &str, needs_id: bool) -> Result<()> {
    let invalid = |message: String| ConfigError::Invalid {
        key: key.to_owned(),
        message,
    };
    let probe = url.replace("{id}", "x");
    let uri: http::Uri = probe
        .parse()
        .map_err(|e| invalid(format!("{url:?} is not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(invalid(format!(
            "{url:?} must be an absolute http:// or https:// URL, e.g. http://overlord:8090/druid/indexer/v1/task"
        )));
    }
    if needs_id && !url.contains("{id}") {
        return Err(invalid(format!(
            "{url:?} must contain {{id}} where the task id goes, e.g. http://overlord:8090/druid/indexer/v1/task/{{id}}/status"
        )));
    }
    Ok(())
}

/// Which database backs the task store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One SQLite file (the `store` key or `taskpod serve --store FILE`): one replica.
    #[default]
    Sqlite,
    /// A PostgreSQL database shared by every replica (`storeBackend.url`).
    Postgres,
}

/// The task store's database.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct StoreConfig {
    /// `sqlite` or `postgres`. Default `sqlite`.
    pub kind: StoreKind,
    /// PostgreSQL connection URL (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`), for
    /// `kind: postgres`. Prefer the `TASKPOD_STORE_URL` environment variable (from a Secret),
    /// which is used when this key is absent, so no password sits in the config file. Default
    /// unset.
    pub url: Option<String>,
    /// Connections kept open to PostgreSQL. Default 8.
    pub pool: Option<u32>,
}

/// Leader election between replicas (see docs/deploy.md, high availability).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Ha {
    /// Elect a leader through a `coordination.k8s.io/v1` Lease: only the leader launches,
    /// watches and reaps; the others serve reads and redirect writes to it. Needs
    /// `storeBackend.kind: postgres`. Default false.
    pub enabled: bool,
    /// Name of the Lease (in `namespace`). Default: the `instance` name.
    pub lease_name: Option<String>,
    /// How long a leader's claim lasts without renewal; a follower takes over after it
    /// expires. Default `15s`.
    pub lease_duration: ConfigDuration,
    /// A leader that could not renew for this long steps down (exits, to be restarted as a
    /// follower). Shorter than `leaseDuration`. Default `10s`.
    pub renew_deadline: ConfigDuration,
    /// How often the Lease is renewed or, by followers, tried. Default `2s`.
    pub retry_period: ConfigDuration,
    /// This replica's identity in the Lease. Default: the `POD_NAME` environment variable,
    /// else the host name.
    pub identity: Option<String>,
    /// URL other replicas redirect writes to while this one leads
    /// (e.g. `http://10.0.0.7:8080`). Default: `TASKPOD_ADVERTISE_URL`, else
    /// `http://POD_IP:PORT` from the `POD_IP` environment variable and the listen port, else
    /// the listen address.
    pub advertise_url: Option<String>,
}

impl Default for Ha {
    fn default() -> Self {
        Ha {
            enabled: false,
            lease_name: None,
            lease_duration: ConfigDuration(Duration::from_secs(15)),
            renew_deadline: ConfigDuration(Duration::from_secs(10)),
            retry_period: ConfigDuration(Duration::from_secs(2)),
            identity: None,
            advertise_url: None,
        }
    }
}

/// A duration in the config: ISO-8601 (`PT4H`, `P2D`, `PT0.5S`) or short (`30s`, `4h`, `2d`,
/// `500ms`), or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Seconds(s) => Ok(ConfigDuration(Duration::from_secs(s))),
            Raw::Text(t) => parse_duration(&t)
                .map(ConfigDuration)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Parses `PT4H`, `P2D`, `P1DT2H30M`, `PT0.5S`, `P1W`, `30s`, `4h`, `2d`, `10m`, `500ms`.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "invalid duration {text:?}: use ISO-8601 (PT4H, P2D, PT30S) or a number with a unit \
             (30s, 10m, 4h, 2d, 500ms)"
        )
    };
    if let Some(iso) = t.strip_prefix('P').or_else(|| t.strip_prefix('p')) {
        let mut total = 0f64;
        let mut in_time = false;
        let mut number = String::new();
        let mut any = false;
        for c in iso.chars() {
            match c.to_ascii_uppercase() {
                'T' if !in_time && number.is_empty() => in_time = true,
                '0'..='9' | '.' => number.push(c),
                unit => {
                    let n: f64 = number.parse().map_err(|_| bad())?;
                    number.clear();
                    let seconds = match (unit, in_time) {
                        ('W', false) => 7.0 * 86400.0,
                        ('D', false) => 86400.0,
                        ('H', true) => 3600.0,
                        ('M', true) => 60.0,
                        ('S', true) => 1.0,
                        _ => return Err(bad()),
                    };
                    total += n * seconds;
                    any = true;
                }
            }
        }
        if !number.is_empty() || !any {
            return Err(bad());
        }
        return Ok(Duration::from_secs_f64(total));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = t.split_at(split);
    let n: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs_f64(n * seconds))
}

/// A size in bytes: a number, or `64Mi`, `64MiB`, `512Ki`, `1Gi`, `4M`, `100k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bytes(b) => Ok(ByteSize(b)),
            Raw::Text(t) => parse_size(&t)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Parses a byte size (`64Mi`, `64MiB`, `4M`, `1024`).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| {
        format!("invalid size {text:?}: use bytes or a unit (64Mi, 4MiB, 512Ki, 1G)")
    })?;
    let factor: u64 = match unit.trim().trim_end_matches(['B', 'b']) {
        "" => 1,
        "k" | "K" => 1000,
        "Ki" => 1 << 10,
        "M" => 1_000_000,
        "Mi" => 1 << 20,
        "G" => 1_000_000_000,
        "Gi" => 1 << 30,
        _ => {
            return Err(format!(
                "invalid size {text:?}: unknown unit {unit:?} (use Ki, Mi, Gi, k, M, G)"
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

impl Config {
    /// Reads, parses and validates a config file; relative paths in it are resolved against
    /// its directory.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let mut config = Config::from_yaml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        config.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        config.validate()?;
        Ok(config)
    }

    /// Parses YAML text (no validation, `base_dir` = `.`).
    pub fn from_yaml(text: &str) -> std::result::Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks references, ranges and names; errors name the key.
    pub fn validate(&self) -> Result<()> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.to_owned(),
            message,
        };
        if !contract::is_dns1123_label(&self.namespace) {
            return Err(invalid(
                "namespace",
                format!(
                    "{:?} is not a valid namespace (DNS-1123 label)",
                    self.namespace
                ),
            ));
        }
        if self.instance.is_empty() || !contract::is_label_value(&self.instance) {
            return Err(invalid(
                "instance",
                format!(
                    "{:?} must be a non-empty label value (at most 63 of [A-Za-z0-9-_.])",
                    self.instance
                ),
            ));
        }
        for (key, value) in &self.labels {
            if !contract::is_qualified_name(key) || !contract::is_label_value(value) {
                return Err(invalid(
                    &format!("labels.{key}"),
                    format!("{key:?}: {value:?} is not a valid Kubernetes label"),
                ));
            }
        }
        for key in self.annotations.keys() {
            if !contract::is_qualified_name(key) {
                return Err(invalid(
                    &format!("annotations.{key}"),
                    format!("{key:?} is not a valid annotation key"),
                ));
            }
        }
        self.policy
            .validate()
            .map_err(|(key, message)| invalid(&format!("policy.{key}"), message))?;
        if let Some(url) = &self.store_backend.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "storeBackend.url",
                "must be a PostgreSQL URL: postgres://USER:PASSWORD@HOST:PORT/DATABASE".to_owned(),
            ));
        }
        if self.store_backend.url.is_some() && self.store_backend.kind != StoreKind::Postgres {
            return Err(invalid(
                "storeBackend.url",
                "is only used with `storeBackend.kind: postgres`; set the kind or remove the url"
                    .to_owned(),
            ));
        }
        if self.store_backend.pool == Some(0) {
            return Err(invalid(
                "storeBackend.pool",
                "must be at least 1".to_owned(),
            ));
        }
        if self.store_backend.kind == StoreKind::Postgres && self.store.is_some() {
            return Err(invalid(
                "store",
                "is the SQLite file, unused with `storeBackend.kind: postgres`; remove it"
                    .to_owned(),
            ));
        }
        if self.ha.enabled {
            if self.store_backend.kind != StoreKind::Postgres {
                return Err(invalid(
                    "ha.enabled",
                    "replicas must share the task store: set `storeBackend.kind: postgres` (SQLite is \
                     one file on one replica's volume)"
                        .to_owned(),
                ));
            }
            let (lease, renew, retry) = (
                self.ha.lease_duration.0,
                self.ha.renew_deadline.0,
                self.ha.retry_period.0,
            );
            if lease < Duration::from_secs(1) {
                return Err(invalid(
                    "ha.leaseDuration",
                    "must be at least 1s (the Lease counts whole seconds)".to_owned(),
                ));
            }
            if renew >= lease || retry.is_zero() || retry >= renew {
                return Err(invalid(
                    "ha.renewDeadline",
                    format!(
                        "need retryPeriod < renewDeadline < leaseDuration (now {retry:?}, \
                         {renew:?}, {lease:?})"
                    ),
                ));
            }
            if let Some(name) = &self.ha.lease_name
                && !contract::is_dns1123_subdomain(name)
            {
                return Err(invalid(
                    "ha.leaseName",
                    format!("{name:?} must be a DNS-1123 subdomain"),
                ));
            }
        }
        let tenant_adapters = self.tenants.iter().map(|t| t.adapters.len()).sum::<usize>();
        if self.adapters.is_empty() && tenant_adapters == 0 {
            return Err(invalid(
                "adapters",
                "no adapter configured: add one, e.g. `adapters: [{name: pod-template, component: \
                 builtin:pod-template, templates: {base: pod-template.yaml}}]`"
                    .to_owned(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, adapter) in self.adapters.iter().enumerate() {
            validate_adapter(&format!("adapters[{i}]"), adapter, &mut names, true)?;
        }
        for (t, tenant) in self.tenants.iter().enumerate() {
            for (i, adapter) in tenant.adapters.iter().enumerate() {
                validate_adapter(
                    &format!("tenants[{t}].adapters[{i}]"),
                    adapter,
                    &mut names,
                    false,
                )?;
            }
        }
        let known = |name: &str| self.adapters.iter().any(|a| a.name == name);
        if let Some(default) = &self.routing.default
            && !known(default)
        {
            return Err(invalid(
                "routing.default",
                format!("no adapter named {default:?} in `adapters`"),
            ));
        }
        if self.routing.default.is_none() && self.adapters.len() > 1 {
            return Err(invalid(
                "routing.default",
                "several adapters are configured: say which one takes task types not in \
                 `routing.byType`"
                    .to_owned(),
            ));
        }
        for (task_type, name) in &self.routing.by_type {
            if !known(name) {
                return Err(invalid(
                    &format!("routing.byType.{task_type}"),
                    format!("no adapter named {name:?} in `adapters`"),
                ));
            }
        }
        for (name, worker) in &self.routing.workers {
            let key = format!("routing.workers.{name}");
            check_worker_url(&format!("{key}.url"), &worker.url, false)?;
            if let Some(status) = &worker.status_url {
                check_worker_url(&format!("{key}.statusUrl"), status, true)?;
            }
            if worker.poll_interval.0.is_zero() || worker.timeout.0.is_zero() {
                return Err(invalid(
                    &format!("{key}.pollInterval"),
                    "pollInterval and timeout must be longer than zero".to_owned(),
                ));
            }
        }
        let known_worker = |name: &str| self.routing.workers.contains_key(name);
        let worker_refs = self
            .routing
            .to_worker
            .all
            .iter()
            .map(|name| ("routing.toWorker.all".to_owned(), name))
            .chain(
                self.routing
                    .to_worker
                    .by_type
                    .iter()
                    .map(|(t, name)| (format!("routing.toWorker.byType.{t}"), name)),
            );
        for (key, name) in worker_refs {
            if !known_worker(name) {
                return Err(invalid(
                    &key,
                    format!(
                        "no worker runner named {name:?} in `routing.workers` (add it with its url)"
                    ),
                ));
            }
        }
        self.validate_tenants()?;
        let runner = &self.runner;
        if runner.max_task_duration.0.as_secs() == 0 {
            return Err(invalid(
                "runner.maxTaskDuration",
                "must be at least one second".to_owned(),
            ));
        }
        if runner.task_cleanup_delay.0.as_secs() > i32::MAX as u64 {
            return Err(invalid(
                "runner.taskCleanupDelay",
                "too long (Kubernetes takes at most 2147483647 seconds)".to_owned(),
            ));
        }
        if runner.capacity == 0 {
            return Err(invalid("runner.capacity", "must be at least 1".to_owned()));
        }
        if !(1..=4096).contains(&runner.launch_concurrency) {
            return Err(invalid(
                "runner.launchConcurrency",
                format!("{} must be between 1 and 4096", runner.launch_concurrency),
            ));
        }
        if runner.max_log_followers > 65_536 {
            return Err(invalid(
                "runner.maxLogFollowers",
                format!(
                    "{} must be at most 65536 (0 captures every log when its pod ends)",
                    runner.max_log_followers
                ),
            ));
        }
        if let Some(main) = &runner.main_container
            && !contract::is_dns1123_label(main)
        {
            return Err(invalid(
                "runner.mainContainer",
                format!("{main:?} is not a container name (DNS-1123 label)"),
            ));
        }
        Ok(())
    }

    /// The task store file: `store` resolved against the config file's directory, else
    /// `taskpod.db` in the working directory.
    pub fn store_path(&self) -> PathBuf {
        match &self.store {
            Some(path) => self.base_dir.join(path),
            None => PathBuf::from("taskpod.db"),
        }
    }

    /// Checks `admin` and `tenants`: names, token digests, weights, quotas and the tenants'
    /// routing (own adapters or shared ones).
    fn validate_tenants(&self) -> Result<()> {
        let invalid = |key: String, message: String| ConfigError::Invalid { key, message };
        let mut digests: std::collections::HashMap<String, String> =
            std::collections::HashMap::new();
        let mut check_digest = |key: String, digest: &str| -> Result<()> {
            if !tenants::is_sha256_hex(digest) {
                return Err(invalid(
                    key,
                    "not a sha256 digest (64 lower-case hex digits); store the token's hash, \
                     printed by `taskpod tenant hash-token`, never the token itself"
                        .to_owned(),
                ));
            }
            if let Some(first) = digests.insert(digest.to_owned(), key.clone()) {
                return Err(invalid(
                    key,
                    format!(
                        "the same token is already given at `{first}`; every token must identify one principal"
                    ),
                ));
            }
            Ok(())
        };
        for (i, digest) in self.admin.token_sha256.iter().enumerate() {
            check_digest(format!("admin.tokenSha256[{i}]"), digest)?;
        }
        let mut seen = std::collections::HashSet::new();
        for (t, tenant) in self.tenants.iter().enumerate() {
            let key = format!("tenants[{t}]");
            if !contract::is_dns1123_label(&tenant.name) {
                return Err(invalid(
                    format!("{key}.name"),
                    format!(
                        "{:?} must be a DNS-1123 label (lower-case letters, digits, `-`)",
                        tenant.name
                    ),
                ));
            }
            if !seen.insert(tenant.name.as_str()) {
                return Err(invalid(
                    format!("{key}.name"),
                    format!("tenant {:?} is configured twice", tenant.name),
                ));
            }
            for (i, digest) in tenant.token_sha256.iter().enumerate() {
                check_digest(format!("{key}.tokenSha256[{i}]"), digest)?;
            }
            if tenant.weight == 0 || tenant.weight > 1000 {
                return Err(invalid(
                    format!("{key}.weight"),
                    format!("{} is outside 1..=1000", tenant.weight),
                ));
            }
            let quotas = &tenant.quotas;
            if quotas.max_running == Some(0) {
                return Err(invalid(
                    format!("{key}.quotas.maxRunning"),
                    "must be at least 1 (use a hold to stop launches)".to_owned(),
                ));
            }
            if let Some(policy) = &tenant.policy {
                policy
                    .validate()
                    .map_err(|(k, message)| invalid(format!("{key}.policy.{k}"), message))?;
            }
            let usable = |name: &str| {
                self.adapters.iter().any(|a| a.name == name)
                    || tenant.adapters.iter().any(|a| a.name == name)
            };
            let why = |name: &str| {
                if self
                    .tenants
                    .iter()
                    .any(|o| o.adapters.iter().any(|a| a.name == name))
                {
                    format!(
                        "adapter {name:?} belongs to another tenant; use a shared one from `adapters` or one of this tenant's `adapters`"
                    )
                } else {
                    format!(
                        "no adapter named {name:?} in `adapters` or in this tenant's `adapters`"
                    )
                }
            };
            if let Some(default) = &tenant.routing.default
                && !usable(default)
            {
                return Err(invalid(format!("{key}.routing.default"), why(default)));
            }
            for (task_type, name) in &tenant.routing.by_type {
                if !usable(name) {
                    return Err(invalid(
                        format!("{key}.routing.byType.{task_type}"),
                        why(name),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every adapter binding: the shared ones, then each tenant's, with their key paths and
    /// owning tenant.
    pub fn bindings(&self) -> Vec<(String, Option<&str>, &AdapterBinding)> {
        let mut out: Vec<(String, Option<&str>, &AdapterBinding)> = self
            .adapters
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("adapters[{i}]"), None, b))
            .collect();
        for (t, tenant) in self.tenants.iter().enumerate() {
            for (i, b) in tenant.adapters.iter().enumerate() {
                out.push((
                    format!("tenants[{t}].adapters[{i}]"),
                    Some(tenant.name.as_str()),
                    b,
                ));
            }
        }
        out
    }

    /// The adapter a task of `tenant` and `task_type` is routed to: the tenant's `routing`
    /// first (its `byType`, then its `default`), then the top-level routing.
    pub fn route_for(&self, tenant: &str, task_type: &str) -> Option<&AdapterBinding> {
        if let Some(config) = self.tenants.iter().find(|t| t.name == tenant) {
            let name = config
                .routing
                .by_type
                .get(task_type)
                .or(config.routing.default.as_ref());
            if let Some(name) = name {
                return self
                    .adapters
                    .iter()
                    .chain(config.adapters.iter())
                    .find(|a| &a.name == name);
            }
        }
        self.route(task_type)
    }

    /// The adapter a task of `task_type` is routed to.
    pub fn route(&self, task_type: &str) -> Option<&AdapterBinding> {
        let name = self
            .routing
            .by_type
            .get(task_type)
            .or(self.routing.default.as_ref());
        match name {
            Some(name) => self.adapters.iter().find(|a| &a.name == name),
            None if self.adapters.len() == 1 => self.adapters.first(),
            None => None,
        }
    }

    /// The worker runner a task of `task_type` is sent to instead of Kubernetes, if any
    /// (`routing.toWorker`: by type first, then `all`).
    pub fn worker_for(&self, task_type: &str) -> Option<(&str, &WorkerBackend)> {
        let name = self.routing.to_worker.by_type.get(task_type).or(self
            .routing
            .to_worker
            .all
            .as_ref())?;
        self.routing
            .workers
            .get_key_value(name)
            .map(|(name, backend)| (name.as_str(), backend))
    }

    /// Where an adapter's component comes from, with paths resolved.
    pub fn component_source(&self, binding: &AdapterBinding) -> ComponentSource {
        ComponentSource::parse(&binding.component, &self.base_dir)
    }

    /// Reads an adapter's base pod (`basePod`) as JSON, when the binding names one.
    pub fn read_base_pod(&self, index: usize) -> Result<Option<String>> {
        self.read_base_pod_of(&self.adapters[index], &format!("adapters[{index}]"))
    }

    /// Reads a binding's base pod; `key` is the binding's path (`tenants[0].adapters[1]`).
    pub fn read_base_pod_of(&self, binding: &AdapterBinding, key: &str) -> Result<Option<String>> {
        let Some(file) = &binding.base_pod else {
            return Ok(None);
        };
        let key = format!("{key}.basePod");
        base_pod::from_file(&self.base_dir.join(file))
            .map(Some)
            .map_err(|message| ConfigError::Invalid { key, message })
    }

    /// Reads an adapter's templates as JSON, in name order. YAML or JSON files are accepted;
    /// each must be a `v1` `PodTemplate`.
    pub fn read_templates(&self, index: usize) -> Result<Vec<(String, String)>> {
        self.template_files(index)
            .into_iter()
            .map(|file| Ok((file.name.clone(), file.read()?)))
            .collect()
    }

    /// The adapter bindings that build Jobs from the host's own pod (the overlord-copy adapters)
    /// and name no `basePod` file: they need [`Config::own_pod`].
    pub fn needs_own_pod(&self) -> Vec<&AdapterBinding> {
        self.adapters
            .iter()
            .chain(self.tenants.iter().flat_map(|t| t.adapters.iter()))
            .filter(|b| b.component.starts_with("builtin:overlord-") && b.base_pod.is_none())
            .collect()
    }

    /// The pod template files of adapter `index`, by template name, for reading (and re-reading
    /// when they change, as `serve` does).
    pub fn template_files(&self, index: usize) -> Vec<TemplateFile> {
        self.template_files_of(&self.adapters[index], &format!("adapters[{index}]"))
    }

    /// The pod template files of a binding; `key` is the binding's path
    /// (`tenants[0].adapters[1]`).
    pub fn template_files_of(&self, binding: &AdapterBinding, key: &str) -> Vec<TemplateFile> {
        binding
            .templates
            .iter()
            .map(|(name, file)| TemplateFile {
                name: name.clone(),
                key: format!("{key}.templates.{name}"),
                path: self.base_dir.join(file),
            })
            .collect()
    }
}

/// One pod template file named by an adapter binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateFile {
    /// The template's name (a task type, `base`, or a selector's key).
    pub name: String,
    /// The config key naming the file (for errors).
    pub key: String,
    /// The file, resolved against the config's directory.
    pub path: PathBuf,
}

impl TemplateFile {
    /// Reads the file: a `v1` `PodTemplate` in YAML or JSON, returned as compact JSON.
    pub fn read(&self) -> Result<String> {
        let fail = |message: String| ConfigError::Template {
            key: self.key.clone(),
            path: self.path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&self.path).map_err(|e| fail(e.to_string()))?;
        let value: serde_json::Value =
            serde_yaml::from_str(&text).map_err(|e| fail(format!("not YAML/JSON: {e}")))?;
        let api = value.get("apiVersion").and_then(|v| v.as_str());
        let kind = value.get("kind").and_then(|v| v.as_str());
        if api != Some("v1") || kind != Some("PodTemplate") {
            return Err(fail(format!(
                "expected apiVersion v1, kind PodTemplate; found {api:?} {kind:?}"
            )));
        }
        serde_json::to_string(&value).map_err(|e| fail(e.to_string()))
    }
}

/// Checks one adapter binding (`key` is its path, e.g. `adapters[0]`); `names` collects the
/// names seen so far, which must be unique across the file. `check_builtin` refuses an unknown
/// `builtin:` name here (a tenant's adapter is checked when it is loaded instead, so that a
/// missing one disables only that tenant).
fn validate_adapter<'a>(
    key: &str,
    adapter: &'a AdapterBinding,
    names: &mut std::collections::HashSet<&'a str>,
    check_builtin: bool,
) -> Result<()> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        key: key.to_owned(),
        message,
    };
    if !contract::is_dns1123_label(&adapter.name) {
        return Err(invalid(
            &format!("{key}.name"),
            format!("{:?} must be a DNS-1123 label", adapter.name),
        ));
    }
    if !names.insert(adapter.name.as_str()) {
        return Err(invalid(
            &format!("{key}.name"),
            format!("adapter name {:?} is used twice", adapter.name),
        ));
    }
    if adapter.component.trim().is_empty() {
        return Err(invalid(
            &format!("{key}.component"),
            "empty: use `builtin:pod-template` or the path of a .wasm component".to_owned(),
        ));
    }
    if let Some(name) = adapter.component.strip_prefix(adapters::BUILTIN_PREFIX)
        && check_builtin
        && !adapters::BUILTINS.iter().any(|(b, _)| *b == name)
    {
        return Err(invalid(
            &format!("{key}.component"),
            format!(
                "no built-in adapter {name:?}; built-ins: {}",
                adapters::BUILTINS
                    .iter()
                    .map(|(b, _)| format!("builtin:{b}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let limits = &adapter.limits;
    if limits.memory.0 < (1 << 20) || limits.memory.0 > (1 << 30) {
        return Err(invalid(
            &format!("{key}.limits.memory"),
            format!("{} bytes is outside 1Mi..=1Gi", limits.memory.0),
        ));
    }
    if limits.timeout.0.is_zero() || limits.timeout.0 > Duration::from_secs(60) {
        return Err(invalid(
            &format!("{key}.limits.timeout"),
            format!("{} is outside (0s, 60s]", limits.timeout),
        ));
    }
    if limits.max_output.0 == 0 || limits.max_output.0 > (256 << 20) {
        return Err(invalid(
            &format!("{key}.limits.maxOutput"),
            format!("{} bytes is outside 1..=256Mi", limits.max_output.0),
        ));
    }
    if limits.concurrency == 0 || limits.concurrency > 1024 {
        return Err(invalid(
            &format!("{key}.limits.concurrency"),
            format!("{} is outside 1..=1024", limits.concurrency),
        ));
    }
    if adapter.max_backoff_limit < 0 {
        return Err(invalid(
            &format!("{key}.maxBackoffLimit"),
            "must not be negative".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_iso_and_short_forms() {
        assert_eq!(parse_duration("PT4H"), Ok(Duration::from_secs(14400)));
        assert_eq!(parse_duration("P2D"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("PT10M"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("PT30S"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("P1DT2H"), Ok(Duration::from_secs(93_600)));
        assert_eq!(parse_duration("PT0.5S"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("4h"), Ok(Duration::from_secs(14400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["", "P", "PT", "4", "4 parsecs", "P4H", "PT2D", "PTxS"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn sizes_accept_units() {
        assert_eq!(parse_size("64Mi"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("4M"), Ok(4_000_000));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("12parsecs").is_err());
        assert!(parse_size("Mi").is_err());
    }
}

#[cfg(test)]
mod tenant_tests {
    use super::*;

    fn load(tenants: &str) -> Result<Config> {
        let text =
            format!("adapters:\n  - name: tpl\n    component: builtin:pod-template\n{tenants}");
        let config = Config::from_yaml(&text).map_err(|message| ConfigError::Parse {
            path: PathBuf::from("test.yaml"),
            message,
        })?;
        config.validate().map(|()| config)
    }

    fn key_of(result: Result<Config>) -> String {
        match result {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    #[test]
    fn tenants_are_checked_and_errors_name_the_key() {
        let digest = crate::tenants::hash_token("t");
        assert!(
            load(&format!(
                "tenants:\n  - name: acme\n    tokenSha256: [{digest}]\n"
            ))
            .is_ok()
        );
        assert_eq!(
            key_of(load(
                "tenants:\n  - name: acme\n    tokenSha256: [my-plain-token]\n"
            )),
            "tenants[0].tokenSha256[0]"
        );
        assert_eq!(
            key_of(load(&format!(
                "admin:\n  tokenSha256: [{digest}]\ntenants:\n  - name: acme\n    tokenSha256: [{digest}]\n"
            ))),
            "tenants[0].tokenSha256[0]",
            "one token, two principals"
        );
        assert_eq!(
            key_of(load("tenants:\n  - name: Acme\n")),
            "tenants[0].name"
        );
        assert_eq!(
            key_of(load("tenants:\n  - name: a\n  - name: a\n")),
            "tenants[1].name"
        );
        assert!(load("tenants:\n  - name: a\n    quotas: {maxCpu: lots}\n").is_err());
        assert_eq!(
            key_of(load("tenants:\n  - name: a\n    weight: 0\n")),
            "tenants[0].weight"
        );
        // A tenant may route to shared adapters and its own, never to another tenant's.
        let two = "tenants:\n  - name: a\n    adapters: [{name: mine, component: builtin:pod-template}]\n    routing: {default: mine}\n  - name: b\n    routing: {byType: {index: mine}}\n";
        assert_eq!(key_of(load(two)), "tenants[1].routing.byType.index");
        // A tenant's adapter naming an unknown built-in is left to load time (it disables only
        // the tenant), but adapter names stay unique across the file.
        assert!(
            load("tenants:\n  - name: a\n    adapters: [{name: x, component: builtin:nope}]\n")
                .is_ok()
        );
        assert_eq!(
            key_of(load(
                "tenants:\n  - name: a\n    adapters: [{name: tpl, component: builtin:pod-template}]\n"
            )),
            "tenants[0].adapters[0].name"
        );
    }

    #[test]
    fn tenants_route_their_own_types_first() {
        let config = load(
            "tenants:\n  - name: a\n    adapters: [{name: mine, component: builtin:pod-template}]\n    routing: {byType: {special: mine}}\n",
        )
        .expect("valid");
        assert_eq!(
            config.route_for("a", "special").map(|b| b.name.as_str()),
            Some("mine")
        );
        assert_eq!(
            config.route_for("a", "index").map(|b| b.name.as_str()),
            Some("tpl")
        );
        assert_eq!(
            config.route_for("b", "special").map(|b| b.name.as_str()),
            Some("tpl")
        );
    }
}
