//! The Job contract: what the host enforces on every adapter's output, whatever the adapter did.
//!
//! An adapter returns a Job and companion objects as JSON. [`enforce`] parses them as typed
//! Kubernetes objects (rejecting fields the API does not know, with their path), checks the rules
//! every Job must follow (containers with images and unique DNS-1123 names, valid label keys and
//! values, annotations within 256 KiB, a name whose `job-name` pod label fits in 63 characters),
//! then forces what the host owns: name and namespace, taskpod's labels and annotations, the
//! deadlines, and the restart rule. Errors name the adapter, the object, the field path and the
//! [`Rule`] broken. Tenant output *policy* (privileged containers, host paths …) is a separate,
//! later step over the same typed [`Manifests`]; new rules are added as [`Rule`] variants and
//! checks in [`check_pod_spec`] or [`enforce`].

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::Value;
use taskpod_adapter_sdk::AdapterOutput;
use taskpod_adapter_sdk::names::sanitize_label_value;

/// Label: which task a Job belongs to (sanitised id + hash; the Job name).
pub const LABEL_TASK: &str = "taskpod.dev/task";
/// Label: which taskpod instance owns the Job.
pub const LABEL_INSTANCE: &str = "taskpod.dev/instance";
/// Label: the tenant that submitted the task (sanitised).
pub const LABEL_TENANT: &str = "taskpod.dev/tenant";
/// Label: the task type (sanitised).
pub const LABEL_TYPE: &str = "taskpod.dev/type";
/// Annotation: the full task id.
pub const ANNOTATION_TASK_ID: &str = "taskpod.dev/task-id";
/// Annotation: `name@version` of the adapter that shaped the Job.
pub const ANNOTATION_ADAPTER: &str = "taskpod.dev/adapter";
/// Annotation: `sha256:<hex>` of the adapter component.
pub const ANNOTATION_ADAPTER_DIGEST: &str = "taskpod.dev/adapter-digest";

/// Largest total size of an object's annotations (keys + values), as the API server enforces.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// The rule an output broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The text is not JSON.
    NotJson,
    /// The object is not of an accepted kind (`batch/v1` Job; ConfigMap, Service, Deployment).
    WrongKind,
    /// A field the Kubernetes API does not know.
    UnknownField,
    /// A field has the wrong type or shape.
    Malformed,
    /// The pod has no containers.
    NoContainers,
    /// A container has no image.
    MissingImage,
    /// Two containers share a name.
    DuplicateContainerName,
    /// A name is not a valid DNS-1123 name.
    InvalidName,
    /// A label key or value is invalid.
    InvalidLabel,
    /// An annotation key is invalid or the annotations are too large.
    InvalidAnnotations,
    /// The restart policy or backoff limit is not allowed for this adapter.
    RestartPolicy,
}

/// An adapter's output broke the Job contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("adapter `{adapter}` produced an invalid {object}: {}{detail}", at_path(.path))]
pub struct ContractError {
    /// The adapter's name.
    pub adapter: String,
    /// Which object: `Job`, or `companion[1] (ConfigMap)`.
    pub object: String,
    /// The field path inside it (`spec.template.spec.containers[0].image`).
    pub path: String,
    /// The rule broken.
    pub rule: Rule,
    /// What is wrong, for humans.
    pub detail: String,
}

fn at_path(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("`{path}`: ")
    }
}

/// Whether and how far an adapter may ask Kubernetes to restart a failed pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RestartRule {
    /// Keep an adapter's `restartPolicy: OnFailure` (else `Never` is forced).
    pub allow_on_failure: bool,
    /// Largest `backoffLimit` accepted with `OnFailure` (0 is forced otherwise).
    pub max_backoff_limit: i32,
}

/// Everything the host forces on one task's output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobContract {
    /// The adapter's name (for errors).
    pub adapter: String,
    /// `name@version` of the adapter.
    pub adapter_ref: String,
    /// `sha256:<hex>` of the adapter component.
    pub adapter_digest: String,
    /// Namespace of the Job and companions.
    pub namespace: String,
    /// The Job's name (deterministic from the task id; also the `taskpod.dev/task` label).
    pub job_name: String,
    /// This host's instance name (`taskpod.dev/instance`).
    pub instance: String,
    /// The full task id.
    pub task_id: String,
    /// The tenant (sanitised into `taskpod.dev/tenant`).
    pub tenant: String,
    /// The task type (sanitised into `taskpod.dev/type`).
    pub task_type: String,
    /// Configured labels added to the Job and pod template where the adapter did not set them.
    pub labels: BTreeMap<String, String>,
    /// Configured annotations added likewise.
    pub annotations: BTreeMap<String, String>,
    /// `activeDeadlineSeconds`.
    pub max_duration_seconds: i64,
    /// `ttlSecondsAfterFinished`; `None` keeps finished Jobs (debugJobs).
    pub cleanup_delay_seconds: Option<i32>,
    /// Pod `terminationGracePeriodSeconds`, when configured.
    pub termination_grace_period_seconds: Option<i64>,
    /// Restart rule of the adapter binding.
    pub restart: RestartRule,
}

/// A companion object the host creates owned by the Job (boxed: Kubernetes objects are large).
#[derive(Debug, Clone, PartialEq)]
pub enum Companion {
    /// A `v1` ConfigMap.
    ConfigMap(Box<ConfigMap>),
    /// A `v1` Service.
    Service(Box<Service>),
    /// An `apps/v1` Deployment.
    Deployment(Box<Deployment>),
}

impl Companion {
    /// The object's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Companion::ConfigMap(_) => "ConfigMap",
            Companion::Service(_) => "Service",
            Companion::Deployment(_) => "Deployment",
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Companion::ConfigMap(o) => &o.metadata,
            Companion::Service(o) => &o.metadata,
            Companion::Deployment(o) => &o.metadata,
        }
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Companion::ConfigMap(o) => &mut o.metadata,
            Companion::Service(o) => &mut o.metadata,
            Companion::Deployment(o) => &mut o.metadata,
        }
    }

    fn to_value(&self) -> Result<Value, serde_json::Error> {
        match self {
            Companion::ConfigMap(o) => serde_json::to_value(o),
            Companion::Service(o) => serde_json::to_value(o),
            Companion::Deployment(o) => serde_json::to_value(o),
        }
    }
}

/// The objects created for one task, after the contract was enforced.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifests {
    /// The Job.
    pub job: Job,
    /// Companions, created after the Job and owned by it.
    pub companions: Vec<Companion>,
}

impl Manifests {
    /// The Job and its companions as multi-document YAML (Job first).
    pub fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        let mut out = serde_yaml::to_string(&self.job)?;
        for companion in &self.companions {
            out.push_str("---\n");
            out.push_str(&match companion {
                Companion::ConfigMap(o) => serde_yaml::to_string(o)?,
                Companion::Service(o) => serde_yaml::to_string(o)?,
                Companion::Deployment(o) => serde_yaml::to_string(o)?,
            });
        }
        Ok(out)
    }

    /// The Job and its companions as JSON values (Job first).
    pub fn to_values(&self) -> Result<Vec<Value>, serde_json::Error> {
        let mut out = vec![serde_json::to_value(&self.job)?];
        for companion in &self.companions {
            out.push(companion.to_value()?);
        }
        Ok(out)
    }
}

/// Checks an adapter's output and forces the host's fields on it.
pub fn enforce(output: &AdapterOutput, contract: &JobContract) -> Result<Manifests, ContractError> {
    let fail = |object: &str, path: &str, rule: Rule, detail: String| ContractError {
        adapter: contract.adapter.clone(),
        object: object.to_owned(),
        path: path.to_owned(),
        rule,
        detail,
    };

    let mut job = parse_typed::<Job>(&output.job, "Job", "batch/v1", "Job")
        .map_err(|(path, rule, detail)| fail("Job", &path, rule, detail))?;

    // Rules on what the adapter produced.
    if let Some(name) = job.metadata.name.as_deref()
        && !is_dns1123_label(name)
    {
        return Err(fail(
            "Job",
            "metadata.name",
            Rule::InvalidName,
            format!(
                "{name:?} is not a DNS-1123 label (lowercase letters, digits, '-', at most 63); \
                 the host names Jobs itself, so leave the name out or use the context's job-name"
            ),
        ));
    }
    let spec = job
        .spec
        .as_mut()
        .ok_or_else(|| fail("Job", "spec", Rule::Malformed, "a Job needs a spec".into()))?;
    let pod = spec.template.spec.as_mut().ok_or_else(|| {
        fail(
            "Job",
            "spec.template.spec",
            Rule::Malformed,
            "a Job needs a pod template spec".into(),
        )
    })?;
    check_pod_spec(pod, "spec.template.spec").map_err(|(p, r, d)| fail("Job", &p, r, d))?;

    // Restart rule.
    let wants_on_failure = pod.restart_policy.as_deref() == Some("OnFailure");
    if contract.restart.allow_on_failure && wants_on_failure {
        let limit = spec
            .backoff_limit
            .unwrap_or(contract.restart.max_backoff_limit);
        if !(0..=contract.restart.max_backoff_limit).contains(&limit) {
            return Err(fail(
                "Job",
                "spec.backoffLimit",
                Rule::RestartPolicy,
                format!(
                    "backoffLimit {limit} is outside 0..={} allowed for this adapter",
                    contract.restart.max_backoff_limit
                ),
            ));
        }
        spec.backoff_limit = Some(limit);
    } else {
        pod.restart_policy = Some("Never".to_owned());
        spec.backoff_limit = Some(0);
    }

    // Forced fields.
    spec.active_deadline_seconds = Some(contract.max_duration_seconds);
    spec.ttl_seconds_after_finished = contract.cleanup_delay_seconds;
    if let Some(grace) = contract.termination_grace_period_seconds {
        pod.termination_grace_period_seconds = Some(grace);
    }
    let own_labels = own_labels(contract);
    let meta = &mut job.metadata;
    meta.name = Some(contract.job_name.clone());
    meta.generate_name = None;
    meta.namespace = Some(contract.namespace.clone());
    apply_labels(meta, &own_labels, &contract.labels);
    apply_annotations(meta, contract, true);
    let template_meta = spec
        .template
        .metadata
        .get_or_insert_with(ObjectMeta::default);
    template_meta.namespace = None;
    template_meta.name = None;
    apply_labels(template_meta, &own_labels, &contract.labels);
    apply_annotations(template_meta, contract, false);

    // Rules on the final Job.
    if !is_dns1123_label(&contract.job_name) {
        return Err(fail(
            "Job",
            "metadata.name",
            Rule::InvalidName,
            format!(
                "{:?} must be a DNS-1123 label of at most 63 characters, because Kubernetes \
                 copies it into the pods' `job-name` label",
                contract.job_name
            ),
        ));
    }
    check_meta(&job.metadata, "metadata").map_err(|(p, r, d)| fail("Job", &p, r, d))?;
    if let Some(template_meta) = job.spec.as_ref().and_then(|s| s.template.metadata.as_ref()) {
        check_meta(template_meta, "spec.template.metadata")
            .map_err(|(p, r, d)| fail("Job", &p, r, d))?;
    }

    let mut companions = Vec::with_capacity(output.companions.len());
    for (index, text) in output.companions.iter().enumerate() {
        let object = format!("companion[{index}]");
        let mut companion = parse_companion(text)
            .map_err(|(path, rule, detail)| fail(&object, &path, rule, detail))?;
        let object = format!("companion[{index}] ({})", companion.kind());
        let name = companion.metadata().name.clone().unwrap_or_default();
        let name_ok = match &companion {
            Companion::Service(_) => is_dns1035_label(&name),
            _ => is_dns1123_subdomain(&name),
        };
        if !name_ok {
            return Err(fail(
                &object,
                "metadata.name",
                Rule::InvalidName,
                format!(
                    "{name:?} is not a valid {} name (lowercase letters, digits, '-'{})",
                    companion.kind(),
                    if matches!(companion, Companion::Service(_)) {
                        ", starting with a letter, at most 63"
                    } else {
                        ", '.', at most 253"
                    }
                ),
            ));
        }
        if let Companion::Deployment(deployment) = &companion {
            let pod = deployment.spec.template.spec.as_ref().ok_or_else(|| {
                fail(
                    &object,
                    "spec.template.spec",
                    Rule::Malformed,
                    "a Deployment needs a pod template spec".into(),
                )
            })?;
            check_pod_spec(pod, "spec.template.spec")
                .map_err(|(p, r, d)| fail(&object, &p, r, d))?;
            if let Some(template_meta) = deployment.spec.template.metadata.as_ref() {
                check_meta(template_meta, "spec.template.metadata")
                    .map_err(|(p, r, d)| fail(&object, &p, r, d))?;
            }
        }
        let meta = companion.metadata_mut();
        meta.namespace = Some(contract.namespace.clone());
        meta.generate_name = None;
        apply_labels(meta, &own_labels, &BTreeMap::new());
        check_meta(companion.metadata(), "metadata")
            .map_err(|(p, r, d)| fail(&object, &p, r, d))?;
        companions.push(companion);
    }
    Ok(Manifests { job, companions })
}

type RuleFailure = (String, Rule, String);

/// Parses `text` as a `T` of `api_version`/`kind`, rejecting unknown fields by path.
fn parse_typed<T: DeserializeOwned>(
    text: &str,
    what: &str,
    api_version: &str,
    kind: &str,
) -> Result<T, RuleFailure> {
    let head = parse_head(text, what)?;
    check_kind(&head, api_version, kind)?;
    parse_strict::<T>(text)
}

/// `apiVersion` and `kind` of a manifest; the rest of the document is skipped, not built.
#[derive(Debug, Default, serde::Deserialize)]
struct Head<'a> {
    #[serde(rename = "apiVersion", default, borrow)]
    api_version: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

fn parse_head<'a>(text: &'a str, what: &str) -> Result<Head<'a>, RuleFailure> {
    match serde_json::from_str(text) {
        Ok(head) => Ok(head),
        // Valid JSON that is not an object with string `apiVersion`/`kind`: the kind check
        // names what is wrong.
        Err(e) if e.is_data() => Ok(Head::default()),
        Err(e) => Err((
            String::new(),
            Rule::NotJson,
            format!("the {what} is not valid JSON: {e}"),
        )),
    }
}

fn check_kind(head: &Head<'_>, api_version: &str, kind: &str) -> Result<(), RuleFailure> {
    let got_api = head.api_version.as_deref().unwrap_or("");
    let got_kind = head.kind.as_deref().unwrap_or("");
    if got_api != api_version || got_kind != kind {
        return Err((
            "kind".to_owned(),
            Rule::WrongKind,
            format!("expected a {api_version} {kind}, got {got_api:?} {got_kind:?}"),
        ));
    }
    Ok(())
}

/// Deserialises `text` into `T` in one pass, refusing fields the Kubernetes type does not have
/// (as a strict API server does): every key the type skips is reported with its path.
fn parse_strict<T: DeserializeOwned>(text: &str) -> Result<T, RuleFailure> {
    let mut unknown = Vec::new();
    let mut de = serde_json::Deserializer::from_str(text);
    let typed: T = serde_ignored::deserialize(&mut de, |path| unknown.push(path_text(&path)))
        .and_then(|typed| de.end().map(|()| typed))
        .map_err(|e| (String::new(), Rule::Malformed, e.to_string()))?;
    if let Some(first) = unknown.first() {
        let more = if unknown.len() > 1 {
            format!(
                " (and {} more: {})",
                unknown.len() - 1,
                unknown[1..].join(", ")
            )
        } else {
            String::new()
        };
        return Err((
            first.clone(),
            Rule::UnknownField,
            format!("unknown field: the Kubernetes API has no such field{more}"),
        ));
    }
    Ok(typed)
}

/// A field path as the contract's errors spell it: `spec.template.spec.containers[0].image`.
fn path_text(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", path_text(parent)),
        Path::Map { parent, key } => {
            let parent = path_text(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => path_text(parent),
    }
}

fn parse_companion(text: &str) -> Result<Companion, RuleFailure> {
    let head = parse_head(text, "companion")?;
    let api = head.api_version.as_deref().unwrap_or("");
    let kind = head.kind.as_deref().unwrap_or("");
    match (api, kind) {
        ("v1", "ConfigMap") => Ok(Companion::ConfigMap(Box::new(parse_strict(text)?))),
        ("v1", "Service") => Ok(Companion::Service(Box::new(parse_strict(text)?))),
        ("apps/v1", "Deployment") => Ok(Companion::Deployment(Box::new(parse_strict(text)?))),
        _ => Err((
            "kind".to_owned(),
            Rule::WrongKind,
            format!(
                "companions may be v1 ConfigMap, v1 Service or apps/v1 Deployment, got {api:?} {kind:?}"
            ),
        )),
    }
}

/// Rules on a pod spec (Job or Deployment): containers exist, have images, unique DNS-1123 names.
pub fn check_pod_spec(pod: &PodSpec, path: &str) -> Result<(), RuleFailure> {
    if pod.containers.is_empty() {
        return Err((
            format!("{path}.containers"),
            Rule::NoContainers,
            "the pod has no containers".to_owned(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let groups = [
        ("containers", pod.containers.as_slice()),
        (
            "initContainers",
            pod.init_containers.as_deref().unwrap_or(&[]),
        ),
    ];
    for (field, containers) in groups {
        for (index, container) in containers.iter().enumerate() {
            let at = format!("{path}.{field}[{index}]");
            if !is_dns1123_label(&container.name) {
                return Err((
                    format!("{at}.name"),
                    Rule::InvalidName,
                    format!(
                        "container name {:?} is not a DNS-1123 label (lowercase letters, digits, \
                         '-', at most 63)",
                        container.name
                    ),
                ));
            }
            if !seen.insert(container.name.as_str()) {
                return Err((
                    format!("{at}.name"),
                    Rule::DuplicateContainerName,
                    format!("container name {:?} is used twice", container.name),
                ));
            }
            if container
                .image
                .as_deref()
                .is_none_or(|i| i.trim().is_empty())
            {
                return Err((
                    format!("{at}.image"),
                    Rule::MissingImage,
                    format!("container {:?} has no image", container.name),
                ));
            }
        }
    }
    Ok(())
}

/// Label keys and values, annotation keys and total annotation size.
fn check_meta(meta: &ObjectMeta, path: &str) -> Result<(), RuleFailure> {
    for (key, value) in meta.labels.iter().flatten() {
        if !is_qualified_name(key) {
            return Err((
                format!("{path}.labels[{key:?}]"),
                Rule::InvalidLabel,
                "label key must be [prefix/]name: prefix a DNS-1123 subdomain, name at most 63 \
                 of [A-Za-z0-9-_.] starting and ending alphanumeric"
                    .to_owned(),
            ));
        }
        if !is_label_value(value) {
            return Err((
                format!("{path}.labels[{key:?}]"),
                Rule::InvalidLabel,
                format!(
                    "label value {value:?} must be at most 63 of [A-Za-z0-9-_.], starting and \
                     ending alphanumeric (or empty)"
                ),
            ));
        }
    }
    let mut total = 0;
    for (key, value) in meta.annotations.iter().flatten() {
        if !is_qualified_name(key) {
            return Err((
                format!("{path}.annotations[{key:?}]"),
                Rule::InvalidAnnotations,
                "annotation key must be [prefix/]name like a label key".to_owned(),
            ));
        }
        total += key.len() + value.len();
    }
    if total > MAX_ANNOTATIONS_BYTES {
        return Err((
            format!("{path}.annotations"),
            Rule::InvalidAnnotations,
            format!("annotations total {total} bytes, over the {MAX_ANNOTATIONS_BYTES}-byte limit"),
        ));
    }
    Ok(())
}

fn own_labels(contract: &JobContract) -> [(&'static str, String); 4] {
    [
        (LABEL_TASK, contract.job_name.clone()),
        (LABEL_INSTANCE, contract.instance.clone()),
        (LABEL_TENANT, sanitize_label_value(&contract.tenant)),
        (LABEL_TYPE, sanitize_label_value(&contract.task_type)),
    ]
}

/// Forces taskpod's labels and adds configured ones the adapter did not set.
fn apply_labels(
    meta: &mut ObjectMeta,
    own: &[(&'static str, String)],
    configured: &BTreeMap<String, String>,
) {
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    for (key, value) in configured {
        labels.entry(key.clone()).or_insert_with(|| value.clone());
    }
    for (key, value) in own {
        labels.insert((*key).to_owned(), value.clone());
    }
}

/// Forces taskpod's annotations (on the Job only) and adds configured ones.
fn apply_annotations(meta: &mut ObjectMeta, contract: &JobContract, own: bool) {
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    for (key, value) in &contract.annotations {
        annotations
            .entry(key.clone())
            .or_insert_with(|| value.clone());
    }
    if own {
        annotations.insert(ANNOTATION_TASK_ID.to_owned(), contract.task_id.clone());
        annotations.insert(ANNOTATION_ADAPTER.to_owned(), contract.adapter_ref.clone());
        annotations.insert(
            ANNOTATION_ADAPTER_DIGEST.to_owned(),
            contract.adapter_digest.clone(),
        );
    }
    if annotations.is_empty() {
        meta.annotations = None;
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Dot-separated DNS-1123 labels, at most 253 characters in all (as Kubernetes checks it, the
/// parts have no length limit of their own).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// A DNS-1123 label that starts with a letter (Service names).
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// A label value: empty, or at most 63 of `[A-Za-z0-9-_.]` starting and ending alphanumeric.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_name_part(s)
}

fn is_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// A label or annotation key: `[prefix/]name`, prefix a DNS-1123 subdomain.
pub fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns1123_subdomain(prefix) && is_name_part(name),
        None => is_name_part(s),
    }
}
