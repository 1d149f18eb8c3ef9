//! The overlord-copy Job builder: Druid's `overlordSingleContainer` and `overlordMultiContainer`
//! adapters (`SingleContainerTaskAdapter`, `MultiContainerTaskAdapter` over `K8sTaskAdapter`).
//!
//! The Job is built from the host's own pod (`ctx.base_pod`, a `v1/Pod` as JSON: read by the host
//! through the API by `POD_NAME`/namespace, or from the file its binding names). As Druid:
//!
//! - the primary container (`primaryContainerName`, default the first) is moved first and
//!   renamed `main`; its readiness, liveness and startup probes are removed; its ports become
//!   8091 `druid-tls-port` and 8100 `druid-port`; its command becomes
//!   `sh -c "/peon.sh {baseTaskDir} 1 [--loadBroadcastSegments true] --taskId {id}"`;
//! - env on `main`: `TASK_DIR`, `TASK_ID`, `JAVA_OPTS` (`javaOptsArray`, then the task's own
//!   `druid.indexer.runner.javaOpts` context value, then the `-D` properties Druid adds),
//!   `druid_host` (`status.podIP`), `HOSTNAME` (`metadata.name`), `TASK_JSON` (or
//!   `TASK_JSON_PATH` for a spilled payload, see [`crate::attach_payload`]) and
//!   `druid_monitoring_monitors` from `peonMonitors` when given;
//! - resources of `main`: memory request = limit = 1.2 × (heap + direct memory), from the last
//!   `-Xmx` and `-XX:MaxDirectMemorySize=` of the Java options (Druid's `HumanReadableBytes`:
//!   `k`/`m`/`g`/`t` are powers of 1000, `KiB`/`MiB`/`GiB` powers of 1024; defaults heap `1g`,
//!   direct = heap); cpu request = limit = `cpuCoreInMicro` millicores (default 1000m); other
//!   resource keys are kept;
//! - the pod: `nodeName` and ephemeral containers cleared, `hostname` = the Job name,
//!   `restartPolicy: Never`, fresh metadata carrying only the configured and Druid's labels and
//!   annotations (never the overlord's own, so Services selecting the overlord never select a
//!   peon); the overlord's init containers, volumes and pod settings are kept.
//!
//! Single mode keeps only `main`. Multi mode keeps the sidecars and stops them when `main`
//! exits: with `sidecars: kubexit` (Druid's wiring) or `sidecars: native` (Kubernetes ≥ 1.29:
//! sidecars become init containers with `restartPolicy: Always`, which the kubelet stops after
//! `main`; no extra image, and sidecars need no explicit command).

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, Pod, PodSpec, PodTemplateSpec,
    ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::Value;
use taskpod_adapter_sdk::error::{self, ErrorContext as _, invalid_config};
use taskpod_adapter_sdk::{AdapterError, AdapterOutput, Context, Task, k8s};

use crate::{DEFAULT_BASE_TASK_DIR, ENV_TASK_DIR, ENV_TASK_ID};

/// Port of the peon's TLS listener (`druid-tls-port`).
pub const TLS_PORT: i32 = 8091;
/// Port of the peon's plaintext listener (`druid-port`).
pub const PORT: i32 = 8100;
/// Name the primary container gets in the Job.
pub const MAIN_CONTAINER: &str = "main";
/// Default kubexit image (Druid's `druid.indexer.runner.kubexitImage`).
pub const DEFAULT_KUBEXIT_IMAGE: &str = "karlkfi/kubexit:latest";
/// Default peon launcher script.
pub const DEFAULT_PEON_SCRIPT: &str = "/peon.sh";
/// Default cpu, in millicores (Druid's `cpuCoreInMicro` default).
pub const DEFAULT_CPU_MILLIS: u64 = 1000;
/// Task context key with task-specific Java options (a string), as Druid's
/// `ForkingTaskRunnerConfig.JAVA_OPTS_PROPERTY`.
pub const TASK_JAVA_OPTS_CONTEXT: &str = "druid.indexer.runner.javaOpts";
/// Task types that serve queries, so their peon loads broadcast segments (Druid's
/// `Task.supportsQueries()`).
pub const QUERYABLE_TASK_TYPES: &[&str] = &[
    "index_kafka",
    "index_kinesis",
    "index_realtime",
    "index_realtime_appenderator",
];

/// JSON Schema of [`Config`], returned by `info` of both overlord adapters.
pub const CONFIG_SCHEMA: &str = r##"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "overlord-single / overlord-multi adapter configuration",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "primaryContainerName": { "description": "Container of the base pod that runs the peon (Druid's primaryContainerName); default the first.", "type": "string", "minLength": 1 },
    "javaOptsArray": { "description": "Java options of the peon (Druid's javaOptsArray); -Xmx and -XX:MaxDirectMemorySize size the memory.", "type": "array", "items": { "type": "string" }, "default": [] },
    "peonMonitors": { "description": "Druid monitors of the peon (druid_monitoring_monitors); empty inherits the overlord's.", "type": "array", "items": { "type": "string" }, "default": [] },
    "baseTaskDir": { "description": "TASK_DIR and the peon script's task directory.", "type": "string", "minLength": 1, "default": "/druid/data" },
    "peonScript": { "description": "The peon launcher run by sh -c.", "type": "string", "minLength": 1, "default": "/peon.sh" },
    "cpuCoreInMicro": { "description": "cpu request and limit of the peon in millicores; 0 means the default.", "type": "integer", "minimum": 0, "default": 1000 },
    "enableTlsPort": { "description": "Whether the peon serves TLS on 8091 (tls.enabled annotation, -Ddruid.tlsPort).", "type": "boolean", "default": false },
    "kubexitImage": { "description": "Image of the kubexit init container (multi, sidecars: kubexit).", "type": "string", "minLength": 1, "default": "karlkfi/kubexit:latest" },
    "sidecars": { "description": "How sidecars are stopped after main (multi only).", "enum": ["kubexit", "native"], "default": "kubexit" }
  }
}"##;

/// Which Druid adapter is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `overlordSingleContainer`: only the primary container.
    Single,
    /// `overlordMultiContainer`: the primary container plus sidecars.
    Multi,
}

/// How sidecars are stopped after `main` exits (multi mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sidecars {
    /// Druid's kubexit wiring.
    #[default]
    Kubexit,
    /// Kubernetes native sidecars (init containers with `restartPolicy: Always`).
    Native,
}

/// Configuration of the overlord adapters (keys of Druid's `druid.indexer.runner.*`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Container of the base pod that runs the peon; default the first.
    #[serde(default)]
    pub primary_container_name: Option<String>,
    /// Java options of the peon.
    #[serde(default)]
    pub java_opts_array: Vec<String>,
    /// Druid monitors of the peon.
    #[serde(default)]
    pub peon_monitors: Vec<String>,
    /// The peon's task directory.
    #[serde(default = "default_base_task_dir")]
    pub base_task_dir: String,
    /// The peon launcher script.
    #[serde(default = "default_peon_script")]
    pub peon_script: String,
    /// cpu in millicores (0: [`DEFAULT_CPU_MILLIS`]).
    #[serde(default)]
    pub cpu_core_in_micro: u64,
    /// Whether the peon serves TLS.
    #[serde(default)]
    pub enable_tls_port: bool,
    /// Image of the kubexit init container.
    #[serde(default = "default_kubexit_image")]
    pub kubexit_image: String,
    /// How sidecars are stopped (multi mode).
    #[serde(default)]
    pub sidecars: Sidecars,
}

fn default_base_task_dir() -> String {
    DEFAULT_BASE_TASK_DIR.to_owned()
}
fn default_peon_script() -> String {
    DEFAULT_PEON_SCRIPT.to_owned()
}
fn default_kubexit_image() -> String {
    DEFAULT_KUBEXIT_IMAGE.to_owned()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            primary_container_name: None,
            java_opts_array: Vec::new(),
            peon_monitors: Vec::new(),
            base_task_dir: default_base_task_dir(),
            peon_script: default_peon_script(),
            cpu_core_in_micro: 0,
            enable_tls_port: false,
            kubexit_image: default_kubexit_image(),
            sidecars: Sidecars::default(),
        }
    }
}

impl Config {
    /// Parses and checks a configuration; errors name the key and the fix.
    pub fn parse(config: &str) -> Result<Config, AdapterError> {
        let config: Config = error::parse_config(config)?;
        for (key, value) in [
            ("baseTaskDir", &config.base_task_dir),
            ("peonScript", &config.peon_script),
            ("kubexitImage", &config.kubexit_image),
        ] {
            if value.trim().is_empty() {
                return Err(invalid_config(format!(
                    "config.{key}: must not be empty; leave the key out for the default"
                )));
            }
        }
        if config.primary_container_name.as_deref() == Some("") {
            return Err(invalid_config(
                "config.primaryContainerName: must not be empty; name a container of the overlord's pod or leave the key out",
            ));
        }
        for (i, opt) in config.java_opts_array.iter().enumerate() {
            memory_option(opt)
                .transpose()
                .invalid_config_at(&format!("config.javaOptsArray[{i}]"))?;
        }
        Ok(config)
    }

    /// The peon's cpu in millicores.
    pub fn cpu_millis(&self) -> u64 {
        if self.cpu_core_in_micro == 0 {
            DEFAULT_CPU_MILLIS
        } else {
            self.cpu_core_in_micro
        }
    }
}

/// Parses a byte size as Druid's `HumanReadableBytes`: plain digits, or a number followed by
/// `k`/`m`/`g`/`t`/`p` (either case, powers of 1000) or `KiB`/`MiB`/`GiB`/`TiB`/`PiB` (powers of
/// 1024).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "`{text}` is not a size; write e.g. 1024m, 2g or 1GiB (k/m/g are powers of 1000, KiB/MiB/GiB of 1024)"
        )
    };
    let (digits, factor) = if let Some(stem) = t.strip_suffix("iB") {
        let (num, unit) = stem.split_at(stem.len().checked_sub(1).ok_or_else(bad)?);
        let power = match unit {
            "K" | "k" => 1,
            "M" | "m" => 2,
            "G" | "g" => 3,
            "T" | "t" => 4,
            "P" | "p" => 5,
            _ => return Err(bad()),
        };
        (num, 1024u64.pow(power))
    } else {
        match t.chars().last() {
            Some(c) if c.is_ascii_digit() => (t, 1),
            Some(c) => {
                let power = match c.to_ascii_lowercase() {
                    'k' => 1,
                    'm' => 2,
                    'g' => 3,
                    't' => 4,
                    'p' => 5,
                    _ => return Err(bad()),
                };
                (&t[..t.len() - 1], 1000u64.pow(power))
            }
            None => return Err(bad()),
        }
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// The size in a `-Xmx…` or `-XX:MaxDirectMemorySize=…` option; `None` for other options.
fn memory_option(opt: &str) -> Option<Result<u64, String>> {
    opt.strip_prefix("-Xmx")
        .or_else(|| opt.strip_prefix("-XX:MaxDirectMemorySize="))
        .map(parse_bytes)
}

/// Memory of the peon container in bytes, as Druid's `getContainerMemory`: 1.2 × (heap + direct
/// memory) from the last `-Xmx` and `-XX:MaxDirectMemorySize=` in `java_opts` (heap default
/// `1g` = 10⁹ bytes, direct default = heap).
pub fn container_memory(java_opts: &[String]) -> Result<u64, String> {
    let mut heap = None;
    let mut direct = None;
    for opt in java_opts {
        if let Some(v) = opt.strip_prefix("-Xmx") {
            heap = Some(parse_bytes(v)?);
        } else if let Some(v) = opt.strip_prefix("-XX:MaxDirectMemorySize=") {
            direct = Some(parse_bytes(v)?);
        }
    }
    let heap = heap.unwrap_or(1_000_000_000);
    let direct = direct.unwrap_or(heap);
    Ok(((heap as f64 + direct as f64) * 1.2) as u64)
}

/// Splits a Java options string on whitespace, keeping double- or single-quoted parts together
/// (Druid's `QuotableWhiteSpaceSplitter`; quotes are kept, as Druid does).
pub fn split_java_opts(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                cur.push(c);
            }
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                cur.push(c);
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            None => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Escapes text as Apache Commons' `StringEscapeUtils.escapeJava` (used by Druid when wrapping
/// commands in kubexit): backslash, double quote, control characters and non-ASCII characters.
pub fn escape_java(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The Java options of the peon for `task`: `javaOptsArray`, the task's own context options,
/// then the `-D` properties Druid adds (ports and TLS).
pub fn java_opts(config: &Config, payload: &Value) -> Vec<String> {
    let mut opts = config.java_opts_array.clone();
    if let Some(extra) = payload
        .get("context")
        .and_then(|c| c.get(TASK_JAVA_OPTS_CONTEXT))
        .and_then(Value::as_str)
    {
        opts.extend(split_java_opts(extra));
    }
    let tls = config.enable_tls_port;
    let tls_port = if tls { TLS_PORT } else { -1 };
    opts.push(format!("-Ddruid.port={PORT}"));
    opts.push(format!("-Ddruid.plaintextPort={PORT}"));
    opts.push(format!("-Ddruid.tlsPort={tls_port}"));
    opts.push(format!("-Ddruid.task.executor.tlsPort={tls_port}"));
    opts.push(format!("-Ddruid.task.executor.enableTlsPort={tls}"));
    opts
}

/// The peon command line run by `sh -c`.
pub fn peon_command(config: &Config, task: &Task) -> String {
    let mut cmd = format!("{} {} 1", config.peon_script, config.base_task_dir);
    if QUERYABLE_TASK_TYPES.contains(&task.kind.as_str()) {
        cmd.push_str(" --loadBroadcastSegments true");
    }
    cmd.push_str(" --taskId ");
    cmd.push_str(&task.id);
    cmd
}

/// Parses the host's pod from `ctx.base_pod`; errors name `basePod` and say how to provide it.
pub fn parse_base_pod(ctx: &Context, adapter: &str) -> Result<PodSpec, AdapterError> {
    let text = ctx.base_pod.as_deref().ok_or_else(|| {
        invalid_config(format!(
            "basePod: the {adapter} adapter builds Jobs from the host's own pod, but none was given; set `basePod: FILE` (a v1/Pod YAML or JSON) in the adapter binding, or run taskpod in a pod with POD_NAME and POD_NAMESPACE set"
        ))
    })?;
    let pod: Pod = serde_json::from_str(text).invalid_config_at("basePod")?;
    match pod.spec {
        Some(spec) if !spec.containers.is_empty() => Ok(spec),
        _ => Err(invalid_config(
            "basePod.spec.containers: the host's pod defines no container; give the overlord's pod",
        )),
    }
}

/// Builds the Job (and a payload ConfigMap when the payload spills) for `task`.
pub fn build(
    task: &Task,
    ctx: &Context,
    config: &Config,
    mode: Mode,
) -> Result<AdapterOutput, AdapterError> {
    crate::check_task(task)?;
    let adapter = match mode {
        Mode::Single => "overlord-single",
        Mode::Multi => "overlord-multi",
    };
    let payload_value: Value = serde_json::from_str(&task.payload).invalid_task_at("payload")?;
    let mut pod = parse_base_pod(ctx, adapter)?;

    // The primary container first, as Druid's massageSpec.
    let primary = match config.primary_container_name.as_deref() {
        None => 0,
        Some(wanted) => pod
            .containers
            .iter()
            .position(|c| c.name == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
                invalid_config(format!(
                    "config.primaryContainerName: no container named `{wanted}` in the host's pod (containers: {}); set it to the Druid container",
                    names.join(", ")
                ))
            })?,
    };
    if mode == Mode::Multi && config.sidecars == Sidecars::Kubexit {
        check_sidecar_commands(&pod, primary)?;
    }
    let main = pod.containers.remove(primary);
    pod.containers.insert(0, main);
    if mode == Mode::Single {
        pod.containers.truncate(1);
    }

    pod.node_name = None;
    pod.ephemeral_containers = None;
    pod.hostname = Some(ctx.job_name.clone());

    let java_opts = java_opts(config, &payload_value);
    let memory = container_memory(&java_opts).invalid_config_at("config.javaOptsArray")?;
    setup_main(&mut pod.containers[0], config, task, &java_opts, memory);

    if mode == Mode::Multi {
        match config.sidecars {
            Sidecars::Kubexit => kubexit(&mut pod, &config.kubexit_image)?,
            Sidecars::Native => native_sidecars(&mut pod),
        }
    }

    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta::default()),
        spec: Some(pod),
    };
    let mut job = k8s::job_from_template(&ctx.job_name, &ctx.namespace, template);
    let labels = crate::peon_labels(task);
    let annotations = crate::peon_annotations(task, config.enable_tls_port);
    crate::decorate(&mut job.metadata, ctx, &labels, &annotations);
    if let Some(spec) = job.spec.as_mut() {
        let meta = spec
            .template
            .metadata
            .get_or_insert_with(ObjectMeta::default);
        crate::decorate(meta, ctx, &labels, &annotations);
    }
    let companion = crate::attach_payload(&mut job, 0, task, ctx)?;
    k8s::apply_limits(&mut job, &ctx.limits);
    match companion {
        Some(cm) => k8s::output(&job, &[cm]),
        None => k8s::job_output(&job),
    }
}

fn setup_main(
    main: &mut Container,
    config: &Config,
    task: &Task,
    java_opts: &[String],
    memory: u64,
) {
    main.name = MAIN_CONTAINER.to_owned();
    main.readiness_probe = None;
    main.liveness_probe = None;
    main.startup_probe = None;
    main.ports = Some(vec![
        ContainerPort {
            container_port: TLS_PORT,
            name: Some("druid-tls-port".to_owned()),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        },
        ContainerPort {
            container_port: PORT,
            name: Some("druid-port".to_owned()),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        },
    ]);
    main.command = Some(vec!["sh".to_owned(), "-c".to_owned()]);
    main.args = Some(vec![peon_command(config, task)]);

    k8s::set_env(
        main,
        k8s::env_value(ENV_TASK_DIR, config.base_task_dir.as_str()),
    );
    k8s::set_env(main, k8s::env_value(ENV_TASK_ID, task.id.as_str()));
    k8s::set_env(main, k8s::env_value("JAVA_OPTS", java_opts.join(" ")));
    k8s::set_env(main, k8s::env_field_ref("druid_host", "status.podIP"));
    k8s::set_env(main, k8s::env_field_ref("HOSTNAME", "metadata.name"));
    // TASK_JSON in Druid's position; attach_payload keeps it or swaps it for TASK_JSON_PATH.
    k8s::set_env(main, taskpod_adapter_sdk::transport::inline_env());
    if !config.peon_monitors.is_empty() {
        let monitors =
            serde_json::to_string(&config.peon_monitors).unwrap_or_else(|_| "[]".to_owned());
        k8s::set_env(main, k8s::env_value("druid_monitoring_monitors", monitors));
    }

    let resources = main
        .resources
        .get_or_insert_with(ResourceRequirements::default);
    let cpu = Quantity(format!("{}m", config.cpu_millis()));
    let mem = Quantity(memory.to_string());
    for map in [&mut resources.requests, &mut resources.limits] {
        let map = map.get_or_insert_with(Default::default);
        map.insert("cpu".to_owned(), cpu.clone());
        map.insert("memory".to_owned(), mem.clone());
    }
}

/// Refuses a sidecar (any container but the primary, at index `primary` of the host's pod)
/// without an explicit command: kubexit wraps the command line, and an image's ENTRYPOINT
/// cannot be known from the pod spec.
fn check_sidecar_commands(pod: &PodSpec, primary: usize) -> Result<(), AdapterError> {
    for (i, c) in pod.containers.iter().enumerate() {
        if i != primary && c.command.as_ref().is_none_or(Vec::is_empty) {
            return Err(invalid_config(format!(
                "basePod.spec.containers[{i}] (`{}`): a sidecar needs an explicit `command` for overlord-multi with kubexit: its command line is wrapped by kubexit and the image's ENTRYPOINT cannot be known from the pod spec (args alone are not enough). Add `command: [...]` to this sidecar in the overlord's pod spec — even for sidecars injected by a service mesh such as Istio — or set the adapter's `sidecars: native` (Kubernetes ≥ 1.29)",
                c.name
            )));
        }
    }
    Ok(())
}

/// Druid's kubexit wiring (`MultiContainerTaskAdapter.addSideCarTerminationSupport`).
fn kubexit(pod: &mut PodSpec, image: &str) -> Result<(), AdapterError> {
    let volumes = pod.volumes.get_or_insert_with(Vec::new);
    for taken in ["graveyard", "kubexit"] {
        if volumes.iter().any(|v| v.name == taken) {
            return Err(invalid_config(format!(
                "basePod.spec.volumes: the host's pod already has a volume named `{taken}`, which the kubexit wiring needs; rename it"
            )));
        }
    }
    volumes.push(Volume {
        name: "graveyard".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".to_owned()),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    });
    volumes.push(Volume {
        name: "kubexit".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    });
    let mount = |name: &str| VolumeMount {
        name: name.to_owned(),
        mount_path: format!("/{name}"),
        ..VolumeMount::default()
    };
    for (i, c) in pod.containers.iter_mut().enumerate() {
        let name = c.name.clone();
        k8s::set_env(c, k8s::env_value("KUBEXIT_NAME", name));
        k8s::set_env(c, k8s::env_value("KUBEXIT_GRAVEYARD", "/graveyard"));
        let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
        mounts.push(mount("graveyard"));
        mounts.push(mount("kubexit"));
        let primary = i == 0;
        if !primary {
            k8s::set_env(c, k8s::env_value("KUBEXIT_DEATH_DEPS", MAIN_CONTAINER));
        }
        rejig_command(c, primary);
    }
    pod.init_containers
        .get_or_insert_with(Vec::new)
        .push(Container {
            name: "kubexit".to_owned(),
            image: Some(image.to_owned()),
            command: Some(vec![
                "cp".to_owned(),
                "/bin/kubexit".to_owned(),
                "/kubexit/kubexit".to_owned(),
            ]),
            volume_mounts: Some(vec![mount("kubexit")]),
            ..Container::default()
        });
    Ok(())
}

/// Wraps a container's command in kubexit, as Druid's `reJiggerArgsAndCommand`.
fn rejig_command(c: &mut Container, primary: bool) {
    let command = c.command.take().unwrap_or_default();
    let args = c.args.take().unwrap_or_default();
    let inner = if primary {
        args.join(" ")
    } else {
        command
            .into_iter()
            .chain(args)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut run = format!("/kubexit/kubexit /bin/sh -c \"{}\"", escape_java(&inner));
    if !primary {
        run.push_str(" || true");
    }
    c.command = Some(vec!["/bin/sh".to_owned(), "-c".to_owned()]);
    c.args = Some(vec![run]);
}

/// Kubernetes native sidecars: every container after `main` becomes an init container with
/// `restartPolicy: Always`, after the pod's own init containers.
fn native_sidecars(pod: &mut PodSpec) {
    let sidecars: Vec<Container> = pod.containers.drain(1..).collect();
    let init = pod.init_containers.get_or_insert_with(Vec::new);
    for mut c in sidecars {
        c.restart_policy = Some("Always".to_owned());
        init.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_as_druid() {
        assert_eq!(parse_bytes("1g").unwrap(), 1_000_000_000);
        assert_eq!(parse_bytes("1024M").unwrap(), 1_024_000_000);
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 * 1024 * 1024 * 1024);
        assert_eq!(parse_bytes("512k").unwrap(), 512_000);
        assert_eq!(parse_bytes("123").unwrap(), 123);
        for bad in ["", "g", "1x", "1.5g", "-1g", "GiB", "1XiB"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_from_the_last_options() {
        assert_eq!(container_memory(&[]).unwrap(), 2_400_000_000);
        let opts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            container_memory(&opts(&["-Xmx1g", "-Xmx2g"])).unwrap(),
            4_800_000_000
        );
        assert_eq!(
            container_memory(&opts(&["-Xmx2g", "-XX:MaxDirectMemorySize=500m"])).unwrap(),
            3_000_000_000
        );
        assert!(container_memory(&opts(&["-Xmxlots"])).is_err());
    }

    #[test]
    fn java_opts_split_and_escape() {
        assert_eq!(
            split_java_opts(r#" -Xmx2g  -Dx="a b" -Dy='c d'"#),
            vec!["-Xmx2g", r#"-Dx="a b""#, "-Dy='c d'"]
        );
        assert_eq!(escape_java("a \"b\" \\ é\n"), "a \\\"b\\\" \\\\ \\u00E9\\n");
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = Config::parse(r#"{"javaOptsArray": ["-Xmx2q"]}"#).unwrap_err();
        assert!(err.to_string().contains("config.javaOptsArray[0]"), "{err}");
        let err = Config::parse(r#"{"javaOpts": "-Xmx1g"}"#).unwrap_err();
        assert!(err.to_string().contains("javaOpts"), "{err}");
        let err = Config::parse(r#"{"sidecars": "istio"}"#).unwrap_err();
        assert!(err.to_string().contains("istio"), "{err}");
        assert_eq!(Config::parse("{}").unwrap(), Config::default());
        assert_eq!(Config::default().cpu_millis(), 1000);
    }
}
