//! Output policy: the security layer applied to every adapter's output after the Job contract.
//!
//! The contract ([`crate::contract`]) makes an adapter's output a well-formed Job owned by the
//! host; the [`Policy`] decides whether the pods it asks for may run at all. It walks every pod
//! spec the output carries — the Job's template and the template of every Deployment companion
//! — and refuses privileged containers, privilege escalation, host namespaces (network, PID,
//! IPC), `hostPath` volumes, added capabilities, host ports, service accounts outside the allowed
//! list, images outside the registry allowlist, resources above the ceilings, objects the
//! adapter placed in another namespace, and Service companions that expose pods beyond the
//! cluster (a type outside `serviceTypes`: `NodePort`, `LoadBalancer`, `ExternalName`) or claim
//! `externalIPs`, which let a Service intercept traffic to any address the nodes route. Every refusal is a [`PolicyError`] naming the
//! [`PolicyRule`], the object, the field path
//! (`spec.template.spec.containers[1].securityContext.privileged`) and the adapter; the task
//! then fails with reason `policy` and the cluster never sees the objects.
//!
//! The default [`Policy`] is restrictive: every rule refuses, the only allowed service account
//! is `default`, the only Service type `ClusterIP` (headless included), and there are no resource ceilings and no image restriction until configured
//! (both are site-specific). It can also inject hardening defaults where the adapter left the
//! field unset ([`PodDefaults`]: `runAsNonRoot`, seccomp `RuntimeDefault`, read-only root
//! filesystem); none is injected unless configured, so rendered Jobs stay what the adapter made.

use std::fmt;

use k8s_openapi::api::core::v1::{
    Container, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext, ServiceSpec,
};
use serde::{Deserialize, Deserializer};
use taskpod_adapter_sdk::AdapterOutput;
use taskpod_adapter_sdk::quantity::{cpu_millis, memory_bytes};

use crate::contract::{Companion, Manifests};

/// The service account a pod gets when it names none, always allowed.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// The Service type a Service naming none has.
pub const SERVICE_CLUSTER_IP: &str = "ClusterIP";

/// Every Service type Kubernetes knows.
pub const SERVICE_TYPES: [&str; 4] = [
    SERVICE_CLUSTER_IP,
    "NodePort",
    "LoadBalancer",
    "ExternalName",
];

/// What an adapter's output may ask for (the `policy:` section of the configuration).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Policy {
    /// Allow `securityContext.privileged: true` (and Windows `hostProcess`). Default false.
    pub allow_privileged: bool,
    /// Allow `securityContext.allowPrivilegeEscalation: true`. Default false.
    pub allow_privilege_escalation: bool,
    /// Allow `hostNetwork`, `hostPID` and `hostIPC`. Default false.
    pub allow_host_namespaces: bool,
    /// Allow `hostPath` volumes. Default false.
    pub allow_host_path: bool,
    /// Allow `ports[].hostPort`. Default false.
    pub allow_host_ports: bool,
    /// Capabilities containers may add (`NET_BIND_SERVICE` …; `ALL` allows any). Default none.
    pub allowed_capabilities: Vec<String>,
    /// Service accounts pods may run as; a pod naming none runs as `default`. Default
    /// `[default]`.
    pub service_accounts: Vec<String>,
    /// Image allowlist: each entry is `*` (any image), a registry (`docker.io`, `example.com`)
    /// or a repository prefix ending in `/` (`example.com/team/`). Images without a registry
    /// are Docker Hub's (`busybox` is `docker.io/library/busybox`). Default `["*"]`.
    pub images: Vec<String>,
    /// Service types companion Services may have (`ClusterIP`, `NodePort`, `LoadBalancer`,
    /// `ExternalName`); a Service naming none is `ClusterIP`. Default `[ClusterIP]`: reachable
    /// inside the cluster only.
    pub service_types: Vec<String>,
    /// Allow `spec.externalIPs` on companion Services. Default false.
    pub allow_external_ips: bool,
    /// Largest CPU one pod may ask for (the larger of request and limit, summed over its
    /// containers), e.g. `4` or `500m`. When set, every container must set a CPU limit.
    /// Default: no ceiling.
    pub max_cpu: Option<CpuQuantity>,
    /// Largest memory one pod may ask for, e.g. `16Gi`. When set, every container must set a
    /// memory limit. Default: no ceiling.
    pub max_memory: Option<MemoryQuantity>,
    /// Hardening defaults injected where the adapter left the field unset.
    pub defaults: PodDefaults,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allow_privileged: false,
            allow_privilege_escalation: false,
            allow_host_namespaces: false,
            allow_host_path: false,
            allow_host_ports: false,
            allowed_capabilities: Vec::new(),
            service_accounts: vec![DEFAULT_SERVICE_ACCOUNT.to_owned()],
            images: vec!["*".to_owned()],
            service_types: vec![SERVICE_CLUSTER_IP.to_owned()],
            allow_external_ips: false,
            max_cpu: None,
            max_memory: None,
            defaults: PodDefaults::default(),
        }
    }
}

/// Fields the policy sets where the adapter left them unset (never overriding a set value:
/// a value that breaks a rule is refused instead).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct PodDefaults {
    /// Pod `securityContext.runAsNonRoot: true`. Default false.
    pub run_as_non_root: bool,
    /// Pod `securityContext.seccompProfile.type: RuntimeDefault`. Default false.
    pub seccomp_runtime_default: bool,
    /// Every container's `securityContext.readOnlyRootFilesystem: true`. Default false.
    pub read_only_root_filesystem: bool,
    /// Every container's `securityContext.allowPrivilegeEscalation: false`. Default false.
    pub no_privilege_escalation: bool,
}

/// The rule an output broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyRule {
    /// A privileged container (or a Windows host process).
    Privileged,
    /// `allowPrivilegeEscalation: true`.
    PrivilegeEscalation,
    /// `hostNetwork`, `hostPID` or `hostIPC`.
    HostNamespaces,
    /// A `hostPath` volume.
    HostPath,
    /// A capability added that is not allowed.
    Capabilities,
    /// A container port bound on the node.
    HostPort,
    /// A service account that is not allowed.
    ServiceAccount,
    /// An object placed in another namespace.
    Namespace,
    /// An image outside the allowlist.
    Image,
    /// CPU or memory above the ceiling, or no limit under a ceiling.
    Resources,
    /// A Service exposed beyond the cluster (a type not allowed) or claiming external IPs.
    ServiceExposure,
}

impl PolicyRule {
    /// The rule's name in errors and docs.
    pub fn name(self) -> &'static str {
        match self {
            PolicyRule::Privileged => "privileged",
            PolicyRule::PrivilegeEscalation => "privilege-escalation",
            PolicyRule::HostNamespaces => "host-namespaces",
            PolicyRule::HostPath => "host-path",
            PolicyRule::Capabilities => "capabilities",
            PolicyRule::HostPort => "host-port",
            PolicyRule::ServiceAccount => "service-account",
            PolicyRule::Namespace => "namespace",
            PolicyRule::Image => "image",
            PolicyRule::Resources => "resources",
            PolicyRule::ServiceExposure => "service-exposure",
        }
    }
}

impl fmt::Display for PolicyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The policy refused an adapter's output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy rule `{rule}` refused the {object} of adapter `{adapter}`: `{path}`: {detail}")]
pub struct PolicyError {
    /// The adapter's name.
    pub adapter: String,
    /// Which object: `Job`, or `companion[1] (Deployment)`.
    pub object: String,
    /// The field path inside it.
    pub path: String,
    /// The rule broken.
    pub rule: PolicyRule,
    /// What is wrong and how to allow it, for humans.
    pub detail: String,
}

/// A CPU quantity from the config (`4`, `500m`), kept with its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuQuantity {
    /// As written.
    pub text: String,
    /// In millicores.
    pub millis: u64,
}

/// A memory quantity from the config (`16Gi`, `512M`), kept with its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryQuantity {
    /// As written.
    pub text: String,
    /// In bytes.
    pub bytes: u64,
}

fn quantity_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Float(f64),
        Text(String),
    }
    Ok(match Raw::deserialize(deserializer)? {
        Raw::Int(n) => n.to_string(),
        Raw::Float(n) => n.to_string(),
        Raw::Text(t) => t,
    })
}

impl<'de> Deserialize<'de> for CpuQuantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = quantity_text(deserializer)?;
        let millis = cpu_millis(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid CPU quantity {text:?}: use cores (`2`, `0.5`) or millicores (`500m`)"
            ))
        })?;
        Ok(CpuQuantity { text, millis })
    }
}

impl<'de> Deserialize<'de> for MemoryQuantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = quantity_text(deserializer)?;
        let bytes = memory_bytes(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid memory quantity {text:?}: use bytes or a unit (`512Mi`, `16Gi`, `2G`)"
            ))
        })?;
        Ok(MemoryQuantity { text, bytes })
    }
}

/// `busybox` → `docker.io/library/busybox`; `team/app:1` → `docker.io/team/app:1`.
pub fn normalize_image(image: &str) -> String {
    let image = image.trim();
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => image.to_owned(),
        Some(_) => format!("docker.io/{image}"),
        None => format!("docker.io/library/{image}"),
    }
}

/// Whether `entry` of the allowlist admits `image`.
fn image_allowed(entry: &str, image: &str) -> bool {
    let normalized = normalize_image(image);
    if entry == "*" {
        return true;
    }
    if entry.ends_with('/') {
        return normalized.starts_with(entry);
    }
    // A registry: the part before the first '/'.
    normalized
        .split_once('/')
        .is_some_and(|(registry, _)| registry == entry)
}

impl Policy {
    /// Checks what serde cannot: allowlist entries. Errors are `(key, message)`, the key relative
    /// to the `policy` section.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, entry) in self.images.iter().enumerate() {
            if entry.is_empty() || entry.contains(char::is_whitespace) {
                return Err((
                    format!("images[{i}]"),
                    format!(
                        "{entry:?} is not an image allowlist entry: use `*`, a registry \
                         (`example.com`) or a repository prefix ending in `/` (`example.com/team/`)"
                    ),
                ));
            }
        }
        for (i, kind) in self.service_types.iter().enumerate() {
            if !SERVICE_TYPES.contains(&kind.as_str()) {
                return Err((
                    format!("serviceTypes[{i}]"),
                    format!(
                        "{kind:?} is not a Service type: use {}",
                        SERVICE_TYPES.join(", ")
                    ),
                ));
            }
        }
        for (i, account) in self.service_accounts.iter().enumerate() {
            if !crate::contract::is_dns1123_subdomain(account) {
                return Err((
                    format!("serviceAccounts[{i}]"),
                    format!("{account:?} is not a valid service account name (DNS-1123 subdomain)"),
                ));
            }
        }
        Ok(())
    }

    /// Checks an adapter's contract-enforced output against the policy and injects the
    /// configured defaults. `output` is the adapter's raw output (for the namespace it asked
    /// for, which the contract overwrites), `namespace` the host's, `adapter` the adapter's name.
    pub fn apply(
        &self,
        output: &AdapterOutput,
        manifests: &mut Manifests,
        namespace: &str,
        adapter: &str,
    ) -> Result<(), PolicyError> {
        let fail = |object: &str, (path, rule, detail): Refusal| PolicyError {
            adapter: adapter.to_owned(),
            object: object.to_owned(),
            path,
            rule,
            detail,
        };
        check_namespace(&output.job, namespace).map_err(|r| fail("Job", r))?;
        for (index, text) in output.companions.iter().enumerate() {
            check_namespace(text, namespace).map_err(|r| {
                let kind = manifests
                    .companions
                    .get(index)
                    .map(Companion::kind)
                    .unwrap_or("object");
                fail(&format!("companion[{index}] ({kind})"), r)
            })?;
        }
        if let Some(pod) = manifests
            .job
            .spec
            .as_mut()
            .and_then(|s| s.template.spec.as_mut())
        {
            self.check_pod(pod, "spec.template.spec")
                .map_err(|r| fail("Job", r))?;
            self.inject_defaults(pod);
        }
        for (index, companion) in manifests.companions.iter_mut().enumerate() {
            let object = format!("companion[{index}] ({})", companion.kind());
            match companion {
                Companion::Deployment(deployment) => {
                    if let Some(pod) = deployment.spec.template.spec.as_mut() {
                        self.check_pod(pod, "spec.template.spec")
                            .map_err(|r| fail(&object, r))?;
                        self.inject_defaults(pod);
                    }
                }
                Companion::Service(service) => {
                    if let Some(spec) = &service.spec {
                        self.check_service(spec).map_err(|r| fail(&object, r))?;
                    }
                }
                Companion::ConfigMap(_) => {}
            }
        }
        Ok(())
    }

    /// Checks a companion Service's exposure: its type and external IPs.
    fn check_service(&self, spec: &ServiceSpec) -> Result<(), Refusal> {
        let kind = spec.type_.as_deref().unwrap_or(SERVICE_CLUSTER_IP);
        if !self.service_types.iter().any(|t| t == kind) {
            return Err(refuse(
                "spec.type".to_owned(),
                PolicyRule::ServiceExposure,
                format!(
                    "Service type `{kind}` is not allowed (allowed: {}): it exposes the task's \
                     pods beyond the cluster; use ClusterIP (or add `{kind}` to \
                     policy.serviceTypes)",
                    self.service_types.join(", ")
                ),
            ));
        }
        if !self.allow_external_ips
            && spec
                .external_ips
                .as_ref()
                .is_some_and(|ips| !ips.is_empty())
        {
            return Err(refuse(
                "spec.externalIPs".to_owned(),
                PolicyRule::ServiceExposure,
                "external IPs let a Service take traffic for addresses outside the cluster; \
                 remove `externalIPs` (or set policy.allowExternalIps)"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// Checks one pod spec at `path`.
    pub fn check_pod(&self, pod: &PodSpec, path: &str) -> Result<(), Refusal> {
        if !self.allow_host_namespaces {
            for (field, on) in [
                ("hostNetwork", pod.host_network),
                ("hostPID", pod.host_pid),
                ("hostIPC", pod.host_ipc),
            ] {
                if on == Some(true) {
                    return Err(refuse(
                        format!("{path}.{field}"),
                        PolicyRule::HostNamespaces,
                        format!(
                            "the pod asks to share the node's {} namespace; remove `{field}` \
                             (or set policy.allowHostNamespaces)",
                            match field {
                                "hostNetwork" => "network",
                                "hostPID" => "process",
                                _ => "IPC",
                            }
                        ),
                    ));
                }
            }
        }
        if !self.allow_host_path {
            for (i, volume) in pod.volumes.iter().flatten().enumerate() {
                if let Some(host_path) = &volume.host_path {
                    return Err(refuse(
                        format!("{path}.volumes[{i}].hostPath"),
                        PolicyRule::HostPath,
                        format!(
                            "volume {:?} mounts the node's {:?}; use an emptyDir, configMap or \
                             persistentVolumeClaim volume (or set policy.allowHostPath)",
                            volume.name, host_path.path
                        ),
                    ));
                }
            }
        }
        let account = pod
            .service_account_name
            .as_deref()
            .map(|a| ("serviceAccountName", a))
            .or_else(|| {
                pod.service_account
                    .as_deref()
                    .map(|a| ("serviceAccount", a))
            });
        if let Some((field, account)) = account
            && !account.is_empty()
            && !self.service_accounts.iter().any(|a| a == account)
        {
            return Err(refuse(
                format!("{path}.{field}"),
                PolicyRule::ServiceAccount,
                format!(
                    "service account {account:?} is not allowed (allowed: {}); add it to \
                     policy.serviceAccounts if tasks must run as it",
                    self.service_accounts.join(", ")
                ),
            ));
        }
        if let Some(context) = &pod.security_context
            && !self.allow_privileged
            && context
                .windows_options
                .as_ref()
                .and_then(|w| w.host_process)
                == Some(true)
        {
            return Err(refuse(
                format!("{path}.securityContext.windowsOptions.hostProcess"),
                PolicyRule::Privileged,
                "a Windows host process has the node's privileges; remove it (or set \
                 policy.allowPrivileged)"
                    .to_owned(),
            ));
        }
        let lists = [
            ("containers", &pod.containers[..]),
            (
                "initContainers",
                pod.init_containers.as_deref().unwrap_or_default(),
            ),
        ];
        for (list, containers) in lists {
            for (i, container) in containers.iter().enumerate() {
                self.check_container(container, &format!("{path}.{list}[{i}]"))?;
            }
        }
        for (i, container) in pod.ephemeral_containers.iter().flatten().enumerate() {
            let at = format!("{path}.ephemeralContainers[{i}]");
            self.check_security(container.security_context.as_ref(), &at)?;
            self.check_image(container.image.as_deref(), &at)?;
        }
        self.check_pod_resources(pod, path)
    }

    fn check_container(&self, container: &Container, at: &str) -> Result<(), Refusal> {
        self.check_security(container.security_context.as_ref(), at)?;
        if !self.allow_host_ports {
            for (j, port) in container.ports.iter().flatten().enumerate() {
                if let Some(host_port) = port.host_port.filter(|p| *p != 0) {
                    return Err(refuse(
                        format!("{at}.ports[{j}].hostPort"),
                        PolicyRule::HostPort,
                        format!(
                            "container {:?} binds port {host_port} on the node; remove hostPort \
                             and expose the port through a Service (or set policy.allowHostPorts)",
                            container.name
                        ),
                    ));
                }
            }
        }
        self.check_image(container.image.as_deref(), at)?;
        self.check_container_resources(container, at)
    }

    fn check_security(&self, context: Option<&SecurityContext>, at: &str) -> Result<(), Refusal> {
        let Some(context) = context else {
            return Ok(());
        };
        let at = format!("{at}.securityContext");
        if !self.allow_privileged {
            if context.privileged == Some(true) {
                return Err(refuse(
                    format!("{at}.privileged"),
                    PolicyRule::Privileged,
                    "a privileged container has every device and capability of the node; \
                     remove `privileged` (or set policy.allowPrivileged)"
                        .to_owned(),
                ));
            }
            if context
                .windows_options
                .as_ref()
                .and_then(|w| w.host_process)
                == Some(true)
            {
                return Err(refuse(
                    format!("{at}.windowsOptions.hostProcess"),
                    PolicyRule::Privileged,
                    "a Windows host process has the node's privileges; remove it (or set \
                     policy.allowPrivileged)"
                        .to_owned(),
                ));
            }
        }
        if !self.allow_privilege_escalation && context.allow_privilege_escalation == Some(true) {
            return Err(refuse(
                format!("{at}.allowPrivilegeEscalation"),
                PolicyRule::PrivilegeEscalation,
                "processes may gain more privileges than their parent; set it to false or \
                 remove it (or set policy.allowPrivilegeEscalation)"
                    .to_owned(),
            ));
        }
        let allow_all = self.allowed_capabilities.iter().any(|c| c == "ALL");
        let added = context
            .capabilities
            .as_ref()
            .and_then(|c| c.add.as_deref())
            .unwrap_or_default();
        for (k, capability) in added.iter().enumerate() {
            let bare = capability.trim_start_matches("CAP_");
            let allowed = allow_all
                || self
                    .allowed_capabilities
                    .iter()
                    .any(|a| a.trim_start_matches("CAP_") == bare);
            if !allowed {
                return Err(refuse(
                    format!("{at}.capabilities.add[{k}]"),
                    PolicyRule::Capabilities,
                    format!(
                        "capability {capability:?} is not allowed{}; remove it (or add it to \
                         policy.allowedCapabilities)",
                        if self.allowed_capabilities.is_empty() {
                            String::new()
                        } else {
                            format!(" (allowed: {})", self.allowed_capabilities.join(", "))
                        }
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_image(&self, image: Option<&str>, at: &str) -> Result<(), Refusal> {
        let Some(image) = image else {
            return Ok(());
        };
        if self.images.iter().any(|entry| image_allowed(entry, image)) {
            return Ok(());
        }
        Err(refuse(
            format!("{at}.image"),
            PolicyRule::Image,
            format!(
                "image {image:?} ({}) is outside the allowlist ({}); use an allowed registry \
                 or add it to policy.images",
                normalize_image(image),
                if self.images.is_empty() {
                    "empty".to_owned()
                } else {
                    self.images.join(", ")
                }
            ),
        ))
    }

    fn check_container_resources(&self, container: &Container, at: &str) -> Result<(), Refusal> {
        for (resource, ceiling) in self.ceilings() {
            let (amount, field) = container_amount(container, resource);
            let Some(amount) = amount else {
                return Err(refuse(
                    format!("{at}.resources.limits.{resource}"),
                    PolicyRule::Resources,
                    format!(
                        "container {:?} sets no {resource} limit, so it could use the whole node; \
                         set resources.limits.{resource} to at most {}",
                        container.name, ceiling.0
                    ),
                ));
            };
            if amount > ceiling.1 {
                return Err(refuse(
                    format!("{at}.resources.{field}.{resource}"),
                    PolicyRule::Resources,
                    format!(
                        "container {:?} asks for {} of {resource}, over the ceiling {} \
                         (policy.max{})",
                        container.name,
                        show(resource, amount),
                        ceiling.0,
                        if resource == "cpu" { "Cpu" } else { "Memory" }
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_pod_resources(&self, pod: &PodSpec, path: &str) -> Result<(), Refusal> {
        for (resource, ceiling) in self.ceilings() {
            let sum: u64 = pod
                .containers
                .iter()
                .map(|c| container_amount(c, resource).0.unwrap_or(0))
                .sum();
            let init = pod
                .init_containers
                .iter()
                .flatten()
                .map(|c| container_amount(c, resource).0.unwrap_or(0))
                .max()
                .unwrap_or(0);
            let total = sum.max(init);
            if total > ceiling.1 {
                return Err(refuse(
                    format!("{path}.containers"),
                    PolicyRule::Resources,
                    format!(
                        "the pod's containers together ask for {} of {resource}, over the \
                         ceiling {} (policy.max{})",
                        show(resource, total),
                        ceiling.0,
                        if resource == "cpu" { "Cpu" } else { "Memory" }
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `(resource, (ceiling as written, ceiling in base units))` for each configured ceiling.
    fn ceilings(&self) -> Vec<(&'static str, (&str, u64))> {
        let mut out = Vec::new();
        if let Some(cpu) = &self.max_cpu {
            out.push(("cpu", (cpu.text.as_str(), cpu.millis)));
        }
        if let Some(memory) = &self.max_memory {
            out.push(("memory", (memory.text.as_str(), memory.bytes)));
        }
        out
    }

    fn inject_defaults(&self, pod: &mut PodSpec) {
        let d = &self.defaults;
        if d.run_as_non_root || d.seccomp_runtime_default {
            let context = pod
                .security_context
                .get_or_insert_with(PodSecurityContext::default);
            if d.run_as_non_root && context.run_as_non_root.is_none() {
                context.run_as_non_root = Some(true);
            }
            if d.seccomp_runtime_default && context.seccomp_profile.is_none() {
                context.seccomp_profile = Some(SeccompProfile {
                    type_: "RuntimeDefault".to_owned(),
                    ..SeccompProfile::default()
                });
            }
        }
        if d.read_only_root_filesystem || d.no_privilege_escalation {
            let containers = pod
                .containers
                .iter_mut()
                .chain(pod.init_containers.iter_mut().flatten());
            for container in containers {
                let context = container
                    .security_context
                    .get_or_insert_with(SecurityContext::default);
                if d.read_only_root_filesystem && context.read_only_root_filesystem.is_none() {
                    context.read_only_root_filesystem = Some(true);
                }
                if d.no_privilege_escalation && context.allow_privilege_escalation.is_none() {
                    context.allow_privilege_escalation = Some(false);
                }
            }
        }
    }
}

/// A refusal before the object and adapter are known: `(path, rule, detail)`.
pub type Refusal = (String, PolicyRule, String);

fn refuse(path: String, rule: PolicyRule, detail: String) -> Refusal {
    (path, rule, detail)
}

/// The larger of a container's request and limit for `resource`, and the field it came from;
/// `None` when the container sets no limit (a request alone does not bound usage).
fn container_amount(container: &Container, resource: &str) -> (Option<u64>, &'static str) {
    let parse = |q: &str| {
        if resource == "cpu" {
            cpu_millis(q)
        } else {
            memory_bytes(q)
        }
    };
    let resources = container.resources.as_ref();
    let get = |field: &str| {
        resources
            .and_then(|r| match field {
                "limits" => r.limits.as_ref(),
                _ => r.requests.as_ref(),
            })
            .and_then(|m| m.get(resource))
            // An unparseable quantity is refused by the API server; count it as unbounded.
            .map(|q| parse(&q.0).unwrap_or(u64::MAX))
    };
    let limit = get("limits");
    let request = get("requests");
    match (limit, request) {
        (Some(l), Some(r)) if r > l => (Some(r), "requests"),
        (Some(l), _) => (Some(l), "limits"),
        (None, _) => (None, "limits"),
    }
}

fn show(resource: &str, amount: u64) -> String {
    if resource == "cpu" {
        format!("{amount}m")
    } else if amount.is_multiple_of(1 << 20) {
        format!("{}Mi", amount >> 20)
    } else {
        format!("{amount} bytes")
    }
}

/// Refuses an object whose `metadata.namespace` names another namespace than the host's (the
/// contract would move it silently; an adapter asking for another namespace is hostile or
/// misconfigured).
/// Only `metadata.namespace` of a manifest; the rest is skipped, not built.
#[derive(serde::Deserialize)]
struct Placed<'a> {
    #[serde(default, borrow)]
    metadata: Option<PlacedMeta<'a>>,
}

#[derive(serde::Deserialize)]
struct PlacedMeta<'a> {
    #[serde(default, borrow)]
    namespace: Option<std::borrow::Cow<'a, str>>,
}

fn check_namespace(text: &str, namespace: &str) -> Result<(), Refusal> {
    let Ok(placed) = serde_json::from_str::<Placed<'_>>(text) else {
        return Ok(()); // the contract already refused text that is not a JSON manifest
    };
    match placed.metadata.and_then(|m| m.namespace).as_deref() {
        Some(asked) if !asked.is_empty() && asked != namespace => Err(refuse(
            "metadata.namespace".to_owned(),
            PolicyRule::Namespace,
            format!(
                "the adapter placed the object in namespace {asked:?}, but this taskpod creates \
                 objects only in {namespace:?}; leave metadata.namespace out or use the context's \
                 namespace"
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{JobContract, enforce};
    use serde_json::{Value, json};

    fn contract() -> JobContract {
        JobContract {
            adapter: "tenant-a".to_owned(),
            adapter_ref: "tenant-a@1".to_owned(),
            adapter_digest: "sha256:00".to_owned(),
            namespace: "tasks".to_owned(),
            job_name: "job-1".to_owned(),
            instance: "taskpod".to_owned(),
            task_id: "t1".to_owned(),
            tenant: "a".to_owned(),
            task_type: "index".to_owned(),
            max_duration_seconds: 60,
            ..JobContract::default()
        }
    }

    fn pod() -> Value {
        json!({
            "containers": [
                {"name": "main", "image": "example.com/task:1",
                 "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
                {"name": "side", "image": "example.com/side:1",
                 "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}}}
            ]
        })
    }

    fn job(pod: Value) -> String {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {},
               "spec": {"template": {"spec": pod}}})
        .to_string()
    }

    fn output(pod: Value) -> AdapterOutput {
        AdapterOutput {
            job: job(pod),
            companions: Vec::new(),
        }
    }

    fn run(policy: &Policy, output: &AdapterOutput) -> Result<Manifests, PolicyError> {
        let mut manifests = enforce(output, &contract()).expect("contract accepts the output");
        policy.apply(output, &mut manifests, "tasks", "tenant-a")?;
        Ok(manifests)
    }

    fn edited(edit: impl FnOnce(&mut Value)) -> AdapterOutput {
        let mut p = pod();
        edit(&mut p);
        output(p)
    }

    fn refused(policy: &Policy, output: &AdapterOutput) -> PolicyError {
        run(policy, output).expect_err("the policy refuses the output")
    }

    fn assert_refused(out: &AdapterOutput, rule: PolicyRule, path: &str) -> PolicyError {
        let err = refused(&Policy::default(), out);
        assert_eq!(err.rule, rule, "{err}");
        assert_eq!(err.path, path, "{err}");
        assert_eq!(err.adapter, "tenant-a");
        let text = err.to_string();
        assert!(text.contains(rule.name()), "{text}");
        assert!(text.contains(path), "{text}");
        assert!(text.contains("tenant-a"), "{text}");
        err
    }

    #[test]
    fn a_plain_pod_passes_the_default_policy_unchanged() {
        let out = output(pod());
        let before = enforce(&out, &contract()).expect("contract");
        let after = run(&Policy::default(), &out).expect("allowed");
        assert_eq!(before, after, "no default is injected unless configured");
    }

    #[test]
    fn privileged_container_is_refused_with_its_path() {
        let out = edited(|p| p["containers"][1]["securityContext"] = json!({"privileged": true}));
        let err = assert_refused(
            &out,
            PolicyRule::Privileged,
            "spec.template.spec.containers[1].securityContext.privileged",
        );
        assert_eq!(err.object, "Job");
        let allowed = Policy {
            allow_privileged: true,
            ..Policy::default()
        };
        run(&allowed, &out).expect("allowed when configured");
    }

    #[test]
    fn privileged_init_container_and_host_process_are_refused() {
        let out = edited(|p| {
            p["initContainers"] = json!([{"name": "init", "image": "example.com/i:1",
                "securityContext": {"privileged": true}}])
        });
        assert_refused(
            &out,
            PolicyRule::Privileged,
            "spec.template.spec.initContainers[0].securityContext.privileged",
        );
        let out = edited(|p| {
            p["securityContext"] = json!({"windowsOptions": {"hostProcess": true}});
            p["hostNetwork"] = json!(false);
        });
        assert_refused(
            &out,
            PolicyRule::Privileged,
            "spec.template.spec.securityContext.windowsOptions.hostProcess",
        );
    }

    #[test]
    fn privilege_escalation_is_refused_but_false_is_fine() {
        let out = edited(|p| {
            p["containers"][0]["securityContext"] = json!({"allowPrivilegeEscalation": true})
        });
        assert_refused(
            &out,
            PolicyRule::PrivilegeEscalation,
            "spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation",
        );
        let out = edited(|p| {
            p["containers"][0]["securityContext"] = json!({"allowPrivilegeEscalation": false})
        });
        run(&Policy::default(), &out).expect("false is allowed");
    }

    #[test]
    fn host_namespaces_are_refused() {
        for field in ["hostNetwork", "hostPID", "hostIPC"] {
            let out = edited(|p| p[field] = json!(true));
            assert_refused(
                &out,
                PolicyRule::HostNamespaces,
                &format!("spec.template.spec.{field}"),
            );
        }
        let out = edited(|p| p["hostNetwork"] = json!(true));
        let allowed = Policy {
            allow_host_namespaces: true,
            ..Policy::default()
        };
        run(&allowed, &out).expect("allowed when configured");
    }

    #[test]
    fn host_path_volume_is_refused() {
        let out = edited(|p| {
            p["volumes"] = json!([{"name": "scratch", "emptyDir": {}},
                                  {"name": "root", "hostPath": {"path": "/"}}])
        });
        let err = assert_refused(
            &out,
            PolicyRule::HostPath,
            "spec.template.spec.volumes[1].hostPath",
        );
        assert!(err.detail.contains("\"/\""), "{err}");
    }

    #[test]
    fn added_capabilities_are_refused_unless_allowed() {
        let out = edited(|p| {
            p["containers"][0]["securityContext"] =
                json!({"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "SYS_ADMIN"]}})
        });
        assert_refused(
            &out,
            PolicyRule::Capabilities,
            "spec.template.spec.containers[0].securityContext.capabilities.add[0]",
        );
        let some = Policy {
            allowed_capabilities: vec!["NET_BIND_SERVICE".to_owned()],
            ..Policy::default()
        };
        let err = refused(&some, &out);
        assert_eq!(
            err.path,
            "spec.template.spec.containers[0].securityContext.capabilities.add[1]"
        );
        assert!(err.detail.contains("SYS_ADMIN"), "{err}");
        let all = Policy {
            allowed_capabilities: vec!["ALL".to_owned()],
            ..Policy::default()
        };
        run(&all, &out).expect("ALL allows any");
        let dropped_only = edited(|p| {
            p["containers"][0]["securityContext"] = json!({"capabilities": {"drop": ["ALL"]}})
        });
        run(&Policy::default(), &dropped_only).expect("dropping is always fine");
    }

    #[test]
    fn host_port_is_refused() {
        let out = edited(|p| {
            p["containers"][1]["ports"] = json!([{"containerPort": 8080},
                                                 {"containerPort": 22, "hostPort": 22}])
        });
        assert_refused(
            &out,
            PolicyRule::HostPort,
            "spec.template.spec.containers[1].ports[1].hostPort",
        );
    }

    #[test]
    fn only_allowed_service_accounts_pass() {
        let out = edited(|p| p["serviceAccountName"] = json!("cluster-admin"));
        let err = assert_refused(
            &out,
            PolicyRule::ServiceAccount,
            "spec.template.spec.serviceAccountName",
        );
        assert!(err.detail.contains("cluster-admin"), "{err}");
        let legacy = edited(|p| p["serviceAccount"] = json!("cluster-admin"));
        assert_refused(
            &legacy,
            PolicyRule::ServiceAccount,
            "spec.template.spec.serviceAccount",
        );
        run(
            &Policy::default(),
            &edited(|p| p["serviceAccountName"] = json!("default")),
        )
        .expect("default is allowed");
        let listed = Policy {
            service_accounts: vec!["druid-overlord".to_owned()],
            ..Policy::default()
        };
        run(
            &listed,
            &edited(|p| p["serviceAccountName"] = json!("druid-overlord")),
        )
        .expect("a listed account is allowed");
    }

    #[test]
    fn another_namespace_is_refused_before_the_contract_moves_it() {
        let mut out = output(pod());
        let mut value: Value = serde_json::from_str(&out.job).expect("json");
        value["metadata"]["namespace"] = json!("kube-system");
        out.job = value.to_string();
        let err = assert_refused(&out, PolicyRule::Namespace, "metadata.namespace");
        assert!(err.detail.contains("kube-system"), "{err}");
        value["metadata"]["namespace"] = json!("tasks");
        out.job = value.to_string();
        run(&Policy::default(), &out).expect("the host's namespace is fine");
    }

    #[test]
    fn images_outside_the_allowlist_are_refused() {
        let policy = Policy {
            images: vec!["example.com".to_owned(), "docker.io/library/".to_owned()],
            ..Policy::default()
        };
        run(&policy, &output(pod())).expect("example.com is allowed");
        let out = edited(|p| p["containers"][1]["image"] = json!("evil.example.org/miner:1"));
        let err = refused(&policy, &out);
        assert_eq!(err.rule, PolicyRule::Image);
        assert_eq!(err.path, "spec.template.spec.containers[1].image");
        assert!(err.detail.contains("evil.example.org/miner:1"), "{err}");
        run(
            &policy,
            &edited(|p| p["containers"][1]["image"] = json!("busybox:1.36")),
        )
        .expect("official Docker Hub images match docker.io/library/");
        let err = refused(
            &policy,
            &edited(|p| p["containers"][1]["image"] = json!("someone/busybox")),
        );
        assert!(err.detail.contains("docker.io/someone/busybox"), "{err}");
        // A registry entry is not a prefix of another host name.
        let err = refused(
            &policy,
            &edited(|p| p["containers"][0]["image"] = json!("example.com.evil.io/x:1")),
        );
        assert_eq!(err.rule, PolicyRule::Image);
    }

    #[test]
    fn resources_over_the_ceilings_are_refused() {
        let policy: Policy =
            serde_yaml::from_str("maxCpu: 2\nmaxMemory: 1Gi").expect("policy YAML");
        run(&policy, &output(pod())).expect_err("1Gi + 256Mi of memory is over 1Gi in total");
        let policy: Policy =
            serde_yaml::from_str("maxCpu: 1500m\nmaxMemory: 2Gi").expect("policy YAML");
        run(&policy, &output(pod())).expect("within the ceilings");

        let big = edited(|p| p["containers"][0]["resources"]["limits"]["memory"] = json!("3Gi"));
        let err = refused(&policy, &big);
        assert_eq!(err.rule, PolicyRule::Resources);
        assert_eq!(
            err.path,
            "spec.template.spec.containers[0].resources.limits.memory"
        );
        assert!(
            err.detail.contains("3072Mi") && err.detail.contains("2Gi"),
            "{err}"
        );

        let total = edited(|p| p["containers"][1]["resources"]["limits"]["cpu"] = json!("1"));
        let err = refused(&policy, &total);
        assert_eq!(err.path, "spec.template.spec.containers");
        assert!(err.detail.contains("2000m"), "{err}");

        let request = edited(|p| p["containers"][0]["resources"]["requests"] = json!({"cpu": "4"}));
        let err = refused(&policy, &request);
        assert_eq!(
            err.path,
            "spec.template.spec.containers[0].resources.requests.cpu"
        );

        let unbounded = edited(|p| p["containers"][1]["resources"] = json!({}));
        let err = refused(&policy, &unbounded);
        assert_eq!(
            err.path,
            "spec.template.spec.containers[1].resources.limits.cpu"
        );
        assert!(err.detail.contains("no cpu limit"), "{err}");
    }

    #[test]
    fn a_privileged_pod_hidden_in_a_companion_deployment_is_refused() {
        let mut privileged = pod();
        privileged["containers"][0]["securityContext"] = json!({"privileged": true});
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "helper"},
            "spec": {"selector": {"matchLabels": {"app": "x"}},
                     "template": {"metadata": {"labels": {"app": "x"}}, "spec": privileged}}
        });
        let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": "cfg"}, "data": {}});
        let out = AdapterOutput {
            job: job(pod()),
            companions: vec![config_map.to_string(), deployment.to_string()],
        };
        let err = assert_refused(
            &out,
            PolicyRule::Privileged,
            "spec.template.spec.containers[0].securityContext.privileged",
        );
        assert_eq!(err.object, "companion[1] (Deployment)");
        assert!(err.to_string().contains("companion[1] (Deployment)"));
    }

    fn with_service(spec: Value) -> AdapterOutput {
        let service = json!({"apiVersion": "v1", "kind": "Service",
                             "metadata": {"name": "ex"}, "spec": spec});
        AdapterOutput {
            job: job(pod()),
            companions: vec![service.to_string()],
        }
    }

    #[test]
    fn a_service_exposed_beyond_the_cluster_is_refused() {
        let ports = json!([{"port": 45680, "targetPort": 45680}]);
        // ClusterIP, named or not, and headless Services pass the default policy.
        for spec in [
            json!({"ports": ports}),
            json!({"type": "ClusterIP", "ports": ports}),
            json!({"clusterIP": "None", "ports": ports}),
        ] {
            run(&Policy::default(), &with_service(spec)).expect("in-cluster Service allowed");
        }
        for kind in ["NodePort", "LoadBalancer", "ExternalName"] {
            let out = with_service(json!({"type": kind, "ports": ports}));
            let err = assert_refused(&out, PolicyRule::ServiceExposure, "spec.type");
            assert_eq!(err.object, "companion[0] (Service)");
            assert!(err.detail.contains(kind), "{err}");
            assert!(err.detail.contains("policy.serviceTypes"), "{err}");
            let allowed = Policy {
                service_types: vec![SERVICE_CLUSTER_IP.to_owned(), kind.to_owned()],
                ..Policy::default()
            };
            run(&allowed, &out).expect("allowed when configured");
        }
        let out = with_service(json!({"ports": ports, "externalIPs": ["203.0.113.7"]}));
        let err = assert_refused(&out, PolicyRule::ServiceExposure, "spec.externalIPs");
        assert!(err.detail.contains("policy.allowExternalIps"), "{err}");
        let allowed = Policy {
            allow_external_ips: true,
            ..Policy::default()
        };
        run(&allowed, &out).expect("allowed when configured");
    }

    #[test]
    fn service_types_must_be_kubernetes_service_types() {
        let policy: Policy =
            serde_yaml::from_str("serviceTypes: [ClusterIP, NodePort]").expect("parses");
        policy.validate().expect("valid");
        let policy: Policy =
            serde_yaml::from_str("serviceTypes: [ClusterIP, Nodeport]").expect("parses");
        let (key, message) = policy.validate().expect_err("a misspelt type");
        assert_eq!(key, "serviceTypes[1]");
        assert!(
            message.contains("\"Nodeport\" is not a Service type"),
            "{message}"
        );
        assert!(message.contains("NodePort"), "{message}");
    }

    #[test]
    fn defaults_are_injected_only_where_unset() {
        let policy: Policy = serde_yaml::from_str(
            "defaults: {runAsNonRoot: true, seccompRuntimeDefault: true, \
             readOnlyRootFilesystem: true, noPrivilegeEscalation: true}",
        )
        .expect("policy YAML");
        let out = edited(|p| {
            p["containers"][1]["securityContext"] = json!({"readOnlyRootFilesystem": false})
        });
        let manifests = run(&policy, &out).expect("allowed");
        let spec = manifests
            .job
            .spec
            .expect("spec")
            .template
            .spec
            .expect("pod");
        let pod_context = spec.security_context.expect("pod securityContext");
        assert_eq!(pod_context.run_as_non_root, Some(true));
        assert_eq!(
            pod_context.seccomp_profile.map(|s| s.type_).as_deref(),
            Some("RuntimeDefault")
        );
        let main = spec.containers[0].security_context.as_ref().expect("ctx");
        assert_eq!(main.read_only_root_filesystem, Some(true));
        assert_eq!(main.allow_privilege_escalation, Some(false));
        let side = spec.containers[1].security_context.as_ref().expect("ctx");
        assert_eq!(
            side.read_only_root_filesystem,
            Some(false),
            "a value the adapter set is kept"
        );
    }

    #[test]
    fn policy_yaml_rejects_unknown_keys_and_bad_quantities() {
        let err = serde_yaml::from_str::<Policy>("allowPriviliged: true").expect_err("typo");
        assert!(err.to_string().contains("allowPriviliged"), "{err}");
        let err = serde_yaml::from_str::<Policy>("maxMemory: lots").expect_err("bad quantity");
        assert!(err.to_string().contains("invalid memory quantity"), "{err}");
        let bad = Policy {
            images: vec!["exa mple.com".to_owned()],
            ..Policy::default()
        };
        let (key, message) = bad.validate().expect_err("bad entry");
        assert_eq!(key, "images[0]");
        assert!(message.contains("allowlist entry"), "{message}");
    }

    #[test]
    fn quantities_and_image_names_are_normalised() {
        assert_eq!(cpu_millis("500m"), Some(500));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(cpu_millis("0.25"), Some(250));
        assert_eq!(memory_bytes("1Gi"), Some(1 << 30));
        assert_eq!(memory_bytes("128M"), Some(128_000_000));
        assert_eq!(memory_bytes("1e3"), Some(1000));
        assert_eq!(memory_bytes("-1"), None);
        assert_eq!(memory_bytes("12x"), None);
        assert_eq!(normalize_image("busybox"), "docker.io/library/busybox");
        assert_eq!(normalize_image("team/app:1"), "docker.io/team/app:1");
        assert_eq!(normalize_image("localhost/app"), "localhost/app");
        assert_eq!(normalize_image("reg:5000/app"), "reg:5000/app");
        assert_eq!(
            normalize_image("ghcr.io/o/app@sha256:ab"),
            "ghcr.io/o/app@sha256:ab"
        );
    }
}
