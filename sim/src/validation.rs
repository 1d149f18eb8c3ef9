//! Validation and defaulting of objects on create and update, as strict as kube-apiserver for
//! everything taskpod creates.
//!
//! Each rule names the Kubernetes source it follows (paths in kubernetes/kubernetes unless said
//! otherwise); sim/FIDELITY.md lists them. Messages reuse the apiserver's wording so that a client
//! sees the same `Invalid` causes it would see from a real cluster. Defaulting runs before
//! validation, as the real decode → PrepareForCreate → Validate sequence does.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use crate::resources::{self, ResourceType};
use crate::status::FieldError;

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// Total size limit of `metadata.annotations` (apimachinery/pkg/api/validation/objectmeta.go
/// `TotalAnnotationSizeLimitB`).
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
/// Maximum length of a generated name's random suffix plus prefix
/// (apiserver/pkg/storage/names/generate.go).
const MAX_GENERATED_NAME_LENGTH: usize = 63 - 5;

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| is_lower_alnum(c) || c == '-')
        && s.starts_with(is_lower_alnum)
        && s.ends_with(is_lower_alnum)
}

/// DNS-1123 label errors (apimachinery/pkg/util/validation/validation.go `IsDNS1123Label`).
pub fn dns1123_label_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_owned());
    }
    if !is_dns1123_label(s) {
        errs.push(DNS1123_LABEL_MSG.to_owned());
    }
    errs
}

/// DNS-1123 subdomain errors (`IsDNS1123Subdomain`).
pub fn dns1123_subdomain_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push("must be no more than 253 characters".to_owned());
    }
    if s.is_empty() || !s.split('.').all(is_dns1123_label) {
        errs.push(DNS1123_SUBDOMAIN_MSG.to_owned());
    }
    errs
}

/// DNS-1035 label errors (`IsDNS1035Label`), used for Service names.
pub fn dns1035_label_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_owned());
    }
    if !(is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())) {
        errs.push(DNS1035_LABEL_MSG.to_owned());
    }
    errs
}

fn is_label_body(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    s.chars()
        .all(|c| alnum(c) || c == '-' || c == '_' || c == '.')
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

/// Qualified name errors (`IsQualifiedName`): label and annotation keys, finalizers.
pub fn qualified_name_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_owned());
            } else {
                for e in dns1123_subdomain_errors(prefix) {
                    errs.push(format!("prefix part {e}"));
                }
            }
            name
        }
        _ => {
            errs.push(format!("a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName'); {s:?} has more than one '/'"));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else {
        if name.len() > 63 {
            errs.push("name part must be no more than 63 characters".to_owned());
        }
        if !is_label_body(name) {
            errs.push(QUALIFIED_NAME_MSG.to_owned());
        }
    }
    errs
}

/// Label value errors (`IsValidLabelValue`).
pub fn label_value_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_owned());
    }
    if !s.is_empty() && !is_label_body(s) {
        errs.push(LABEL_VALUE_MSG.to_owned());
    }
    errs
}

/// Environment variable name check (`IsEnvVarName`, relaxed since Kubernetes 1.30 to any
/// printable ASCII except `=`).
fn env_var_name_errors(s: &str) -> Vec<String> {
    if s.is_empty() || s.contains('=') || !s.chars().all(|c| (' '..='~').contains(&c)) {
        vec!["a valid environment variable name must consist only of printable ASCII characters other than '='".to_owned()]
    } else {
        Vec::new()
    }
}

/// ConfigMap key check (`IsConfigMapKey`).
fn config_map_key_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push("must be no more than 253 characters".to_owned());
    }
    if s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        errs.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_owned());
    }
    if s == "." || s == ".." || s.starts_with("..") {
        errs.push("must not be '.' or '..' and must not start with '..'".to_owned());
    }
    errs
}

/// Accumulates field errors.
#[derive(Debug, Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }

    fn each(&mut self, field: &str, value: &str, msgs: Vec<String>) {
        for m in msgs {
            self.push(FieldError::invalid(field, value, m));
        }
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v.get(key).is_some_and(Value::is_object) {
        v[key] = json!({});
    }
    v[key].as_object_mut().expect("just made an object")
}

fn set_default(v: &mut Value, key: &str, default: Value) {
    if let Some(m) = v.as_object_mut()
        && m.get(key).is_none_or(Value::is_null)
    {
        m.insert(key.to_owned(), default);
    }
}

/// Which name rule a resource's `metadata.name` follows.
fn name_errors(rt: &ResourceType, name: &str) -> Vec<String> {
    match (rt.group, rt.plural) {
        ("", "namespaces") => dns1123_label_errors(name),
        ("", "services") => dns1035_label_errors(name),
        _ => dns1123_subdomain_errors(name),
    }
}

/// Validates `metadata` (apimachinery/pkg/api/validation/objectmeta.go `ValidateObjectMeta`):
/// name per resource rule, labels, annotations (keys and total size), ownerReferences,
/// finalizers.
fn validate_meta(rt: &ResourceType, meta: &Value, errs: &mut Errors) {
    let name = str_at(meta, "name").unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        errs.each("metadata.name", name, name_errors(rt, name));
    }
    validate_labels(meta.get("labels"), "metadata.labels", errs);
    if let Some(ann) = meta.get("annotations").and_then(Value::as_object) {
        let mut total = 0usize;
        for (k, v) in ann {
            errs.each("metadata.annotations", k, qualified_name_errors(k));
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > TOTAL_ANNOTATION_SIZE_LIMIT {
            errs.push(FieldError::too_long(
                "metadata.annotations",
                TOTAL_ANNOTATION_SIZE_LIMIT,
            ));
        }
    }
    if let Some(refs) = meta.get("ownerReferences").and_then(Value::as_array) {
        let mut controllers = 0;
        for (i, r) in refs.iter().enumerate() {
            let path = format!("metadata.ownerReferences[{i}]");
            for key in ["apiVersion", "kind", "name", "uid"] {
                if str_at(r, key).unwrap_or("").is_empty() {
                    errs.push(FieldError::required(
                        format!("{path}.{key}"),
                        format!("{key} must not be empty"),
                    ));
                }
            }
            if r.get("controller").and_then(Value::as_bool) == Some(true) {
                controllers += 1;
            }
        }
        if controllers > 1 {
            errs.push(FieldError::invalid_raw(
                "metadata.ownerReferences",
                format!("{refs:?}"),
                "Only one reference can have Controller set to true",
            ));
        }
    }
    if let Some(fins) = meta.get("finalizers").and_then(Value::as_array) {
        for (i, f) in fins.iter().enumerate() {
            let f = f.as_str().unwrap_or("");
            errs.each(
                &format!("metadata.finalizers[{i}]"),
                f,
                qualified_name_errors(f),
            );
        }
    }
}

/// Validates a label map (apimachinery/pkg/apis/meta/v1/validation `ValidateLabels`).
fn validate_labels(labels: Option<&Value>, field: &str, errs: &mut Errors) {
    if let Some(labels) = labels.and_then(Value::as_object) {
        for (k, v) in labels {
            errs.each(field, k, qualified_name_errors(k));
            let v = v.as_str().unwrap_or("");
            errs.each(field, v, label_value_errors(v));
        }
    }
}

/// The context of a create or update, for rules that need more than the object.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The object's namespace (empty for cluster-scoped resources).
    pub namespace: &'a str,
    /// The object's uid (generated on create).
    pub uid: &'a str,
}

/// Applies create-time defaults for resource `rt` (registry `PrepareForCreate` + scheme
/// defaulting). `obj` is the whole object, metadata already complete.
pub fn default_on_create(rt_id: usize, obj: &mut Value, ctx: Ctx<'_>) {
    let rt = &resources::RESOURCES[rt_id];
    match (rt.group, rt.plural) {
        ("", "pods") => {
            default_pod_spec(obj_value(obj, "spec"));
            let qos = qos_class(&obj["spec"]);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        ("batch", "jobs") => {
            default_job(obj, ctx);
            obj["status"] = json!({});
        }
        ("apps", "deployments") => {
            default_deployment(obj);
            obj["status"] = json!({});
        }
        ("", "namespaces") => {
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
            obj_mut(&mut obj["metadata"], "labels")
                .insert("kubernetes.io/metadata.name".to_owned(), json!(name));
            set_default(obj_value(obj, "spec"), "finalizers", json!(["kubernetes"]));
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "services") => {
            default_service(obj, ctx);
            obj["status"] = json!({"loadBalancer": {}});
        }
        _ => {}
    }
}

/// Applies update-time defaults (scheme defaulting of the decoded body).
pub fn default_on_update(rt_id: usize, obj: &mut Value, old: &Value) {
    let rt = &resources::RESOURCES[rt_id];
    match (rt.group, rt.plural) {
        ("", "pods") => default_pod_spec(obj_value(obj, "spec")),
        ("batch", "jobs") => {
            // The generated selector and labels are part of the stored object; an update that
            // drops them (e.g. a client that did not read them) keeps the stored ones.
            if obj["spec"].get("selector").is_none() {
                obj["spec"]["selector"] = old["spec"]["selector"].clone();
            }
            default_job_fields(&mut obj["spec"]);
            if let Some(t) = obj["spec"].get_mut("template") {
                default_pod_spec(obj_value(t, "spec"));
            }
        }
        ("apps", "deployments") => default_deployment(obj),
        ("", "services") if obj["spec"].get("clusterIP").is_none() => {
            obj["spec"]["clusterIP"] = old["spec"]["clusterIP"].clone();
            obj["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
        }
        _ => {}
    }
}

fn obj_value<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    if !v.get(key).is_some_and(Value::is_object) {
        v[key] = json!({});
    }
    &mut v[key]
}

/// Pod spec defaults (pkg/apis/core/v1/defaults.go `SetDefaults_PodSpec`, `SetDefaults_Container`).
fn default_pod_spec(spec: &mut Value) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "enableServiceLinks", json!(true));
    for list in ["initContainers", "containers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                let image = str_at(c, "image").unwrap_or("").to_owned();
                set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(c, "terminationMessagePolicy", json!("File"));
                set_default(c, "imagePullPolicy", json!(default_pull_policy(&image)));
                set_default(c, "resources", json!({}));
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        set_default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// `Always` for `:latest` or untagged images, else `IfNotPresent` (SetDefaults_Container).
fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// QoS class of a pod (pkg/apis/core/helper/qos/qos.go), from requests and limits.
fn qos_class(spec: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for c in &containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        if req.is_some_and(|r| !r.is_empty()) || lim.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let l = lim.and_then(|l| l.get(res));
            let r = req.and_then(|r| r.get(res)).or(l);
            if l.is_none() || r != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn default_job_fields(spec: &mut Value) {
    if spec.get("completions").is_none() && spec.get("parallelism").is_none() {
        spec["completions"] = json!(1);
        spec["parallelism"] = json!(1);
    }
    set_default(spec, "parallelism", json!(1));
    if spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null())
    {
        set_default(spec, "backoffLimit", json!(i32::MAX));
    } else {
        set_default(spec, "backoffLimit", json!(6));
    }
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    let replacement = if spec.get("podFailurePolicy").is_some_and(|v| !v.is_null()) {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    set_default(spec, "podReplacementPolicy", json!(replacement));
}

/// Job defaults and the generated selector and labels (pkg/apis/batch/v1/defaults.go,
/// pkg/registry/batch/job/strategy.go `generateSelector`).
fn default_job(obj: &mut Value, ctx: Ctx<'_>) {
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let spec = obj_value(obj, "spec");
    default_job_fields(spec);
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    let template = obj_value(spec, "template");
    default_pod_spec(obj_value(template, "spec"));
    if !manual {
        let labels = obj_mut(obj_value(template, "metadata"), "labels");
        labels.insert(
            "batch.kubernetes.io/controller-uid".to_owned(),
            json!(ctx.uid),
        );
        labels.insert("batch.kubernetes.io/job-name".to_owned(), json!(name));
        labels.insert("controller-uid".to_owned(), json!(ctx.uid));
        labels.insert("job-name".to_owned(), json!(name));
    }
}

/// Deployment defaults (pkg/apis/apps/v1/defaults.go).
fn default_deployment(obj: &mut Value) {
    let spec = obj_value(obj, "spec");
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    set_default(
        spec,
        "strategy",
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
    );
    if let Some(t) = spec.get_mut("template") {
        default_pod_spec(obj_value(t, "spec"));
    }
}

/// Service defaults (pkg/apis/core/v1/defaults.go `SetDefaults_Service`) and a cluster IP from
/// 10.96.0.0/12 derived from the uid (the real allocator picks a free one at random).
fn default_service(obj: &mut Value, ctx: Ctx<'_>) {
    let spec = obj_value(obj, "spec");
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    if spec.get("clusterIP").is_none() {
        let h = ctx
            .uid
            .bytes()
            .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
        let ip = format!("10.96.{}.{}", (h >> 8) % 256, (h % 254) + 1);
        spec["clusterIP"] = json!(ip);
        spec["clusterIPs"] = json!([ip]);
    } else if spec.get("clusterIPs").is_none() {
        spec["clusterIPs"] = json!([spec["clusterIP"].clone()]);
    }
    set_default(spec, "ipFamilies", json!(["IPv4"]));
    set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            set_default(p, "protocol", json!("TCP"));
            let port = p.get("port").cloned().unwrap_or(Value::Null);
            set_default(p, "targetPort", port);
        }
    }
}

/// Validates a whole object of resource `rt_id` (after defaulting). `old` is the stored object
/// on update.
pub fn validate(rt_id: usize, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let rt = &resources::RESOURCES[rt_id];
    let mut errs = Errors::default();
    validate_meta(rt, &obj["metadata"], &mut errs);
    match (rt.group, rt.plural) {
        ("", "pods") => {
            validate_pod_spec(
                &obj["spec"],
                "spec",
                &["Always", "OnFailure", "Never"],
                &mut errs,
            );
            if let Some(old) = old {
                validate_pod_update(&old["spec"], &obj["spec"], &mut errs);
            }
        }
        ("batch", "jobs") => validate_job(obj, old, &mut errs),
        ("apps", "deployments") => validate_deployment(obj, &mut errs),
        ("", "services") => validate_service(&obj["spec"], &mut errs),
        ("", "configmaps") => validate_config_map(obj, &mut errs),
        ("coordination.k8s.io", "leases") => {
            if let Some(d) = obj
                .pointer("/spec/leaseDurationSeconds")
                .and_then(Value::as_i64)
                && d <= 0
            {
                errs.push(FieldError::invalid_raw(
                    "spec.leaseDurationSeconds",
                    d.to_string(),
                    "must be greater than 0",
                ));
            }
        }
        ("", "events") => {
            let ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
            if let Some(ins) = obj
                .pointer("/involvedObject/namespace")
                .and_then(Value::as_str)
                && !ins.is_empty()
                && ins != ns
            {
                errs.push(FieldError::invalid(
                    "involvedObject.namespace",
                    ins,
                    "does not match event.namespace",
                ));
            }
        }
        _ => {}
    }
    errs.0
}

/// Pod spec validation (pkg/apis/core/validation/validation.go `ValidatePodSpec`): at least one
/// container, DNS-1123 label names unique across init and regular containers, non-empty image
/// without surrounding whitespace, restart policy, ports, env names, volume names and mounts,
/// positive activeDeadlineSeconds, non-negative grace period.
fn validate_pod_spec(spec: &Value, path: &str, restart: &[&str], errs: &mut Errors) {
    let containers = spec.get("containers").and_then(Value::as_array);
    if containers.is_none_or(Vec::is_empty) {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut volumes = HashSet::new();
    if let Some(vs) = spec.get("volumes").and_then(Value::as_array) {
        for (i, v) in vs.iter().enumerate() {
            let name = str_at(v, "name").unwrap_or("");
            let field = format!("{path}.volumes[{i}].name");
            if name.is_empty() {
                errs.push(FieldError::required(field, ""));
            } else {
                errs.each(&field, name, dns1123_label_errors(name));
                if !volumes.insert(name.to_owned()) {
                    errs.push(FieldError::duplicate(field, name));
                }
            }
        }
    }
    let mut names = HashSet::new();
    for list in ["initContainers", "containers"] {
        let Some(cs) = spec.get(list).and_then(Value::as_array) else {
            continue;
        };
        for (i, c) in cs.iter().enumerate() {
            let cpath = format!("{path}.{list}[{i}]");
            let name = str_at(c, "name").unwrap_or("");
            if name.is_empty() {
                errs.push(FieldError::required(format!("{cpath}.name"), ""));
            } else {
                errs.each(&format!("{cpath}.name"), name, dns1123_label_errors(name));
                if !names.insert(name.to_owned()) {
                    errs.push(FieldError::duplicate(format!("{cpath}.name"), name));
                }
            }
            let image = str_at(c, "image").unwrap_or("");
            if image.is_empty() {
                errs.push(FieldError::required(format!("{cpath}.image"), ""));
            } else if image.trim() != image {
                errs.push(FieldError::invalid(
                    format!("{cpath}.image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
            if let Some(p) = str_at(c, "imagePullPolicy")
                && !["Always", "IfNotPresent", "Never"].contains(&p)
            {
                errs.push(FieldError::not_supported(
                    format!("{cpath}.imagePullPolicy"),
                    p,
                    &["Always", "IfNotPresent", "Never"],
                ));
            }
            if let Some(ports) = c.get("ports").and_then(Value::as_array) {
                for (j, p) in ports.iter().enumerate() {
                    let port = p.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
                    if !(1..=65535).contains(&port) {
                        errs.push(FieldError::invalid_raw(
                            format!("{cpath}.ports[{j}].containerPort"),
                            port.to_string(),
                            "must be between 1 and 65535, inclusive",
                        ));
                    }
                    if let Some(proto) = str_at(p, "protocol")
                        && !["TCP", "UDP", "SCTP"].contains(&proto)
                    {
                        errs.push(FieldError::not_supported(
                            format!("{cpath}.ports[{j}].protocol"),
                            proto,
                            &["SCTP", "TCP", "UDP"],
                        ));
                    }
                }
            }
            if let Some(env) = c.get("env").and_then(Value::as_array) {
                for (j, e) in env.iter().enumerate() {
                    let n = str_at(e, "name").unwrap_or("");
                    let field = format!("{cpath}.env[{j}].name");
                    if n.is_empty() {
                        errs.push(FieldError::required(field, ""));
                    } else {
                        errs.each(&field, n, env_var_name_errors(n));
                    }
                }
            }
            if let Some(mounts) = c.get("volumeMounts").and_then(Value::as_array) {
                for (j, m) in mounts.iter().enumerate() {
                    let n = str_at(m, "name").unwrap_or("");
                    if !volumes.contains(n) {
                        errs.push(FieldError {
                            kind: crate::status::FieldErrorKind::NotSupported,
                            field: format!("{cpath}.volumeMounts[{j}].name"),
                            value: Some(format!("{n:?}")),
                            detail: "not found in the pod's volumes".to_owned(),
                        });
                    }
                    if str_at(m, "mountPath").unwrap_or("").is_empty() {
                        errs.push(FieldError::required(
                            format!("{cpath}.volumeMounts[{j}].mountPath"),
                            "",
                        ));
                    }
                }
            }
        }
    }
    let policy = str_at(spec, "restartPolicy").unwrap_or("Always");
    if !restart.contains(&policy) {
        errs.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            policy,
            restart,
        ));
    }
    if let Some(d) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64)
        && d <= 0
    {
        errs.push(FieldError::invalid_raw(
            format!("{path}.activeDeadlineSeconds"),
            d.to_string(),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    if let Some(g) = spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        && g < 0
    {
        errs.push(FieldError::invalid_raw(
            format!("{path}.terminationGracePeriodSeconds"),
            g.to_string(),
            "must be greater than or equal to 0",
        ));
    }
}

/// Pod updates may change only container images, activeDeadlineSeconds, tolerations (add) and
/// terminationGracePeriodSeconds (pkg/apis/core/validation/validation.go `ValidatePodUpdate`).
fn validate_pod_update(old: &Value, new: &Value, errs: &mut Errors) {
    let strip = |spec: &Value| {
        let mut s = spec.clone();
        for list in ["containers", "initContainers"] {
            if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs {
                    if let Some(m) = c.as_object_mut() {
                        m.remove("image");
                    }
                }
            }
        }
        if let Some(m) = s.as_object_mut() {
            for k in [
                "activeDeadlineSeconds",
                "tolerations",
                "terminationGracePeriodSeconds",
            ] {
                m.remove(k);
            }
            // nodeName is set through the binding subresource; an update that carries the
            // stored value is not a change.
            m.remove("nodeName");
        }
        s
    };
    if strip(old) != strip(new) {
        errs.push(FieldError::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ));
    }
    if str_at(old, "nodeName").is_some() && str_at(old, "nodeName") != str_at(new, "nodeName") {
        errs.push(FieldError::forbidden(
            "spec.nodeName",
            "field is immutable once set",
        ));
    }
}

fn immutable(old: &Value, new: &Value, ptr: &str, field: &str, errs: &mut Errors) {
    if old.pointer(ptr) != new.pointer(ptr) {
        errs.push(FieldError::invalid_raw(
            field,
            new.pointer(ptr).map(Value::to_string).unwrap_or_default(),
            "field is immutable",
        ));
    }
}

fn non_negative(spec: &Value, key: &str, errs: &mut Errors) {
    if let Some(n) = spec.get(key).and_then(Value::as_i64)
        && n < 0
    {
        errs.push(FieldError::invalid_raw(
            format!("spec.{key}"),
            n.to_string(),
            "must be greater than or equal to 0",
        ));
    }
}

/// Job validation (pkg/apis/batch/validation/validation.go `ValidateJob`, `validateJobSpec`).
fn validate_job(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = &obj["spec"];
    for key in [
        "parallelism",
        "completions",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
    ] {
        non_negative(spec, key, errs);
    }
    if let Some(d) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64)
        && d <= 0
    {
        errs.push(FieldError::invalid_raw(
            "spec.activeDeadlineSeconds",
            d.to_string(),
            "must be greater than or equal to 1",
        ));
    }
    let mode = str_at(spec, "completionMode").unwrap_or("NonIndexed");
    if !["NonIndexed", "Indexed"].contains(&mode) {
        errs.push(FieldError::not_supported(
            "spec.completionMode",
            mode,
            &["NonIndexed", "Indexed"],
        ));
    }
    if mode == "Indexed" {
        match spec.get("completions").and_then(Value::as_i64) {
            None => errs.push(FieldError::required(
                "spec.completions",
                "when completion mode is Indexed",
            )),
            Some(c) if c > 100_000 => errs.push(FieldError::invalid_raw(
                "spec.completions",
                c.to_string(),
                "must be less than or equal to 100000 when completion mode is Indexed",
            )),
            _ => {}
        }
    } else if spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null())
    {
        errs.push(FieldError::forbidden(
            "spec.backoffLimitPerIndex",
            "requires indexed completion mode",
        ));
    }
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    let template_labels = spec.pointer("/template/metadata/labels");
    match spec.get("selector") {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => {
            if (manual || old.is_some())
                && let Some(ml) = sel.get("matchLabels").and_then(Value::as_object)
            {
                let ok = ml
                    .iter()
                    .all(|(k, v)| template_labels.and_then(|l| l.get(k)) == Some(v));
                if !ok {
                    errs.push(FieldError::invalid_raw(
                        "spec.template.metadata.labels",
                        template_labels.map(Value::to_string).unwrap_or_default(),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
    }
    match spec.get("template") {
        None => errs.push(FieldError::required("spec.template", "")),
        Some(t) => {
            validate_labels(t.pointer("/metadata/labels"), "spec.template.labels", errs);
            validate_pod_spec(
                &t["spec"],
                "spec.template.spec",
                &["OnFailure", "Never"],
                errs,
            );
        }
    }
    if let Some(old) = old {
        let old_spec = &old["spec"];
        immutable(old_spec, spec, "/selector", "spec.selector", errs);
        immutable(
            old_spec,
            spec,
            "/completionMode",
            "spec.completionMode",
            errs,
        );
        let suspended = old_spec.get("suspend").and_then(Value::as_bool) == Some(true);
        if !suspended {
            immutable(old_spec, spec, "/template", "spec.template", errs);
        }
        if old_spec.get("completions") != spec.get("completions")
            && !(mode == "Indexed" && spec.get("completions") == spec.get("parallelism"))
        {
            immutable(old_spec, spec, "/completions", "spec.completions", errs);
        }
    }
}

/// The selector-on-create rule (pkg/registry/batch/job/strategy.go): a client may not set
/// `spec.selector` unless `spec.manualSelector` is true; the server generates it.
pub fn job_selector_on_create(obj: &mut Value, uid: &str) -> Option<FieldError> {
    let spec = obj_value(obj, "spec");
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    if manual {
        return None;
    }
    if let Some(sel) = spec.get("selector").filter(|v| !v.is_null()) {
        return Some(FieldError::invalid_raw(
            "spec.selector",
            sel.to_string(),
            "`selector` will be auto-generated",
        ));
    }
    spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    None
}

/// Deployment validation (pkg/apis/apps/validation/validation.go `ValidateDeploymentSpec`).
fn validate_deployment(obj: &Value, errs: &mut Errors) {
    let spec = &obj["spec"];
    non_negative(spec, "replicas", errs);
    let sel = spec
        .pointer("/selector/matchLabels")
        .and_then(Value::as_object);
    let labels = spec.pointer("/template/metadata/labels");
    match sel {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(ml) => {
            if !ml
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            {
                errs.push(FieldError::invalid_raw(
                    "spec.template.metadata.labels",
                    labels.map(Value::to_string).unwrap_or_default(),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    validate_labels(labels, "spec.template.labels", errs);
    validate_pod_spec(
        &spec["template"]["spec"],
        "spec.template.spec",
        &["Always"],
        errs,
    );
}

/// Service validation (pkg/apis/core/validation/validation.go `ValidateService`): ports required
/// unless headless, valid unique port numbers, names required when there are several.
fn validate_service(spec: &Value, errs: &mut Errors) {
    let headless = str_at(spec, "clusterIP") == Some("None");
    let ports = spec
        .get("ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if ports.is_empty() && !headless && str_at(spec, "type") != Some("ExternalName") {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            errs.push(FieldError::invalid_raw(
                format!("spec.ports[{i}].port"),
                port.to_string(),
                "must be between 1 and 65535, inclusive",
            ));
        }
        let name = str_at(p, "name").unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(format!("spec.ports[{i}].name"), ""));
        }
        if !name.is_empty() {
            errs.each(
                &format!("spec.ports[{i}].name"),
                name,
                dns1123_label_errors(name),
            );
            if !names.insert(name.to_owned()) {
                errs.push(FieldError::duplicate(format!("spec.ports[{i}].name"), name));
            }
        }
    }
    let t = str_at(spec, "type").unwrap_or("ClusterIP");
    let types = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    if !types.contains(&t) {
        errs.push(FieldError::not_supported("spec.type", t, &types));
    }
}

/// ConfigMap validation (pkg/apis/core/validation/validation.go `ValidateConfigMap`): valid keys,
/// no key in both `data` and `binaryData`, total size ≤ 1 MiB.
fn validate_config_map(obj: &Value, errs: &mut Errors) {
    let mut total = 0usize;
    let mut keys = HashSet::new();
    for section in ["data", "binaryData"] {
        if let Some(m) = obj.get(section).and_then(Value::as_object) {
            for (k, v) in m {
                errs.each(section, k, config_map_key_errors(k));
                if !keys.insert(k.clone()) {
                    errs.push(FieldError::invalid(
                        section,
                        k,
                        "duplicate of key present in data",
                    ));
                }
                total += v.as_str().map_or(0, str::len);
            }
        }
    }
    if total > 1024 * 1024 {
        errs.push(FieldError::too_long("", 1024 * 1024));
    }
}

/// Shortens a `generateName` prefix and appends 5 random characters from the apiserver's
/// alphabet (apiserver/pkg/storage/names/generate.go, util/rand `String`).
pub fn generate_name(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut base: String = prefix.to_owned();
    if base.len() > MAX_GENERATED_NAME_LENGTH {
        base.truncate(MAX_GENERATED_NAME_LENGTH);
    }
    let mut rng = rand::rng();
    for _ in 0..5 {
        base.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        assert!(dns1123_label_errors("my-job").is_empty());
        assert!(!dns1123_label_errors("My-Job").is_empty());
        assert!(!dns1123_label_errors(&"a".repeat(64)).is_empty());
        assert!(dns1123_subdomain_errors("a.b-c").is_empty());
        assert!(!dns1123_subdomain_errors("a..b").is_empty());
        assert!(!dns1035_label_errors("1abc").is_empty());
        assert!(qualified_name_errors("taskpod.dev/task").is_empty());
        assert!(!qualified_name_errors("Bad_Prefix/x").is_empty());
        assert!(!qualified_name_errors("a/b/c").is_empty());
        assert!(label_value_errors("").is_empty());
        assert!(!label_value_errors("-x").is_empty());
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("reg:5000/busybox:1.36"), "IfNotPresent");
        assert_eq!(default_pull_policy("reg:5000/busybox"), "Always");
    }

    #[test]
    fn generated_names_fit_in_a_label() {
        let n = generate_name(&"x".repeat(80));
        assert_eq!(n.len(), 63);
        assert!(dns1123_label_errors(&n).is_empty());
    }
}
