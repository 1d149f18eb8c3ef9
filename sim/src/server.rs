//! The HTTP face of the simulated API server: routing of Kubernetes REST paths, discovery,
//! create/get/list/watch/update/patch/delete with kube-apiserver's semantics, the `status`,
//! `log` and `binding` subresources, Table output for kubectl, and the `/sim/…` control endpoints
//! (faults, compaction, counters).
//!
//! Requests are routed by hand from the path (`/api/v1/namespaces/{ns}/pods/{name}/log`) rather
//! than by one axum route per resource, because every resource shares one generic implementation
//! over the JSON store; resource-specific rules live in [`crate::validation`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use chrono::{SecondsFormat, Utc};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::counters::Counters;
use crate::faults::{FaultConfig, Faults};
use crate::logs::PodLogs;
use crate::patch::{self, PatchType};
use crate::resources::{self, RESOURCES, ResourceType};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{ApiError, FieldError};
use crate::store::{Change, EventType, ListQuery, Since, Store, Stored};
use crate::table;
use crate::validation::{self, Ctx};

/// Largest accepted request body (kube-apiserver's limit is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// Settings of the HTTP layer.
#[derive(Clone, Debug)]
pub(crate) struct ServerSettings {
    /// Interval between watch bookmarks (when the client allows them).
    pub bookmark_interval: Duration,
    /// Watch lifetime when the client gives no `timeoutSeconds`.
    pub default_watch_timeout: Duration,
}

/// Shared state of the server.
#[derive(Debug)]
pub(crate) struct App {
    pub store: Arc<Store>,
    pub logs: PodLogs,
    pub faults: Faults,
    pub counters: Counters,
    pub settings: ServerSettings,
}

/// The axum router of the whole server.
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/api", get(api_versions))
        .route("/apis", get(api_groups))
        .route("/sim/faults", get(get_faults).put(put_faults))
        .route("/sim/compact", post(compact))
        .route("/sim/counters", get(get_counters))
        .fallback(dispatch)
        .with_state(app)
}

fn json_response(code: StatusCode, body: impl Into<Body>) -> Response {
    let mut r = (code, body.into()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn json_value(code: StatusCode, v: &Value) -> Response {
    json_response(code, serde_json::to_vec(v).unwrap_or_default())
}

async fn version() -> Response {
    json_value(
        StatusCode::OK,
        &json!({
            "major": "1", "minor": "37", "gitVersion": "v1.37.0", "gitCommit": "taskpod-sim",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25",
            "compiler": "gc", "platform": "linux/amd64"
        }),
    )
}

async fn api_versions() -> Response {
    json_value(
        StatusCode::OK,
        &json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
    )
}

async fn api_groups() -> Response {
    let groups: Vec<Value> = resources::group_versions()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json_value(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

fn resource_list(group: &str, version: &str) -> Value {
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    let mut list = Vec::new();
    for rt in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut main = json!({
            "name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        });
        if !rt.short_names.is_empty() {
            main["shortNames"] = json!(rt.short_names);
        }
        if !rt.categories.is_empty() {
            main["categories"] = json!(rt.categories);
        }
        list.push(main);
        if rt.has_status {
            list.push(
                json!({"name": format!("{}/status", rt.plural), "singularName": "",
                "namespaced": rt.namespaced, "kind": rt.kind, "verbs": ["get", "patch", "update"]}),
            );
        }
        for sub in resources::extra_subresources(rt) {
            let (kind, verbs) = match *sub {
                "log" => ("Pod", json!(["get"])),
                _ => ("Binding", json!(["create"])),
            };
            list.push(
                json!({"name": format!("{}/{sub}", rt.plural), "singularName": "",
                "namespaced": rt.namespaced, "kind": kind, "verbs": verbs}),
            );
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list})
}

async fn get_faults(State(app): State<Arc<App>>) -> Response {
    json_value(
        StatusCode::OK,
        &serde_json::to_value(app.faults.get()).unwrap_or_default(),
    )
}

async fn put_faults(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let config: FaultConfig = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return ApiError::bad_request(format!("PUT /sim/faults: invalid body: {e}"))
                .into_response();
        }
    };
    match app.faults.set(config) {
        Ok(()) => json_value(
            StatusCode::OK,
            &serde_json::to_value(app.faults.get()).unwrap_or_default(),
        ),
        Err(e) => ApiError::bad_request(format!("PUT /sim/faults: {e}")).into_response(),
    }
}

async fn compact(State(app): State<Arc<App>>) -> Response {
    app.faults.compact();
    json_value(
        StatusCode::OK,
        &json!({"compactedTo": app.store.revision().to_string()}),
    )
}

async fn get_counters(State(app): State<Arc<App>>) -> Response {
    json_value(
        StatusCode::OK,
        &serde_json::to_value(app.counters.snapshot()).unwrap_or_default(),
    )
}

/// A parsed resource path.
#[derive(Debug)]
struct Target {
    rt_id: usize,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

impl Target {
    fn rt(&self) -> &'static ResourceType {
        &RESOURCES[self.rt_id]
    }

    fn ns(&self) -> &str {
        self.ns.as_deref().unwrap_or("")
    }

    fn counter_resource(&self) -> String {
        let rt = self.rt();
        let base = if rt.group.is_empty() {
            rt.plural.to_owned()
        } else {
            format!("{}.{}", rt.plural, rt.group)
        };
        match &self.sub {
            Some(s) => format!("{base}/{s}"),
            None => base,
        }
    }
}

enum Route {
    Discovery(String, String),
    Resource(Target, bool),
}

fn parse_path(path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, mut rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", v, rest),
        ["apis", g, v, rest @ ..] => (g, v, rest),
        _ => return Err(ApiError::no_route(path)),
    };
    if !resources::group_versions().contains(&(group, version)) {
        return Err(ApiError::no_route(path));
    }
    if rest.is_empty() {
        return Ok(Route::Discovery(group.to_owned(), version.to_owned()));
    }
    let mut legacy_watch = false;
    if rest[0] == "watch" {
        legacy_watch = true;
        rest = &rest[1..];
    }
    let find = |plural: &str| resources::id_of(group, version, plural);
    let (rt_id, ns, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if find(plural).is_some_and(|id| RESOURCES[id].namespaced) =>
        {
            (find(plural).unwrap_or(0), Some(ns.to_string()), tail)
        }
        [plural, tail @ ..] => match find(plural) {
            Some(id) => (id, None, tail),
            None => return Err(ApiError::no_route(path)),
        },
        [] => return Err(ApiError::no_route(path)),
    };
    let (name, sub) = match tail {
        [] => (None, None),
        [name] => (Some(name.to_string()), None),
        [name, sub] => (Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(ApiError::no_route(path)),
    };
    let rt = &RESOURCES[rt_id];
    if let Some(s) = &sub {
        let ok = (s == "status" && rt.has_status)
            || resources::extra_subresources(rt).contains(&s.as_str());
        if !ok {
            return Err(ApiError::no_route(path));
        }
    }
    if rt.namespaced && name.is_some() && ns.is_none() {
        return Err(ApiError::no_route(path));
    }
    Ok(Route::Resource(
        Target {
            rt_id,
            ns,
            name,
            sub,
        },
        legacy_watch,
    ))
}

type Query = HashMap<String, String>;

fn flag(q: &Query, key: &str) -> bool {
    q.get(key).is_some_and(|v| v == "true" || v == "1")
}

fn verb_of(method: &Method, t: &Target, q: &Query, legacy_watch: bool) -> &'static str {
    match (method.as_str(), t.name.is_some(), t.sub.as_deref()) {
        ("GET", false, _) if legacy_watch || flag(q, "watch") => "watch",
        ("GET", false, _) => "list",
        ("GET", true, _) if legacy_watch => "watch",
        ("GET", true, _) => "get",
        ("POST", _, _) => "create",
        ("PUT", _, _) => "update",
        ("PATCH", _, _) => "patch",
        ("DELETE", false, _) => "deletecollection",
        ("DELETE", true, _) => "delete",
        _ => "unknown",
    }
}

/// The generic handler of every `/api/…` and `/apis/…` path.
async fn dispatch(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let q: Query = serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).unwrap_or_default();
    let route = match parse_path(&path) {
        Ok(r) => r,
        Err(e) => {
            app.counters.request("get", "nonResource");
            return e.into_response();
        }
    };
    let (target, legacy_watch) = match route {
        Route::Discovery(g, v) => {
            app.counters.request("get", "discovery");
            return json_value(StatusCode::OK, &resource_list(&g, &v));
        }
        Route::Resource(t, w) => (t, w),
    };
    let verb = verb_of(&parts.method, &target, &q, legacy_watch);
    app.counters.request(verb, &target.counter_resource());
    let latency = app.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(err) = app.faults.inject(verb) {
        app.counters.fault(format!("{} {verb}", err.code));
        return err.into_response();
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return ApiError::too_large(MAX_BODY).into_response(),
    };
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let result = handle(&app, verb, &target, &q, &parts.headers, &body, &accept).await;
    match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(
    app: &Arc<App>,
    verb: &str,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    body: &Bytes,
    accept: &str,
) -> Result<Response, ApiError> {
    let sub = t.sub.as_deref();
    match (verb, sub) {
        ("watch", _) => watch(app, t, q, accept),
        ("list", _) => list(app, t, q, accept),
        ("get", Some("log")) => pod_log(app, t, q).await,
        ("get", _) => {
            let name = t.name.as_deref().unwrap_or("");
            let stored = app
                .store
                .get(t.rt_id, t.ns(), name)
                .ok_or_else(|| ApiError::not_found(t.rt(), name))?;
            if table::wants_table(accept) {
                let v = table::table(
                    t.rt(),
                    std::iter::once(&stored.value),
                    json!({"resourceVersion": stored.rv.to_string()}),
                    q.get("includeObject").map(String::as_str) == Some("Object"),
                );
                return Ok(json_value(StatusCode::OK, &v));
            }
            if table::wants_metadata(accept) {
                return Ok(json_value(StatusCode::OK, &table::partial(&stored.value)));
            }
            Ok(json_response(StatusCode::OK, stored.bytes.clone()))
        }
        ("create", Some("binding")) => {
            let obj = decode_body(headers, body)?;
            bind(app, t, &obj)
        }
        ("create", None) if t.name.is_none() => {
            let obj = decode_body(headers, body)?;
            let (stored, warnings) = create(app, t, obj, q)?;
            Ok(with_warnings(
                json_response(StatusCode::CREATED, stored.bytes.clone()),
                &warnings,
            ))
        }
        ("update", None | Some("status")) if t.name.is_some() => {
            let obj = decode_body(headers, body)?;
            let (stored, warnings, created) = update(app, t, obj, q)?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(with_warnings(
                json_response(code, stored.bytes.clone()),
                &warnings,
            ))
        }
        ("patch", None | Some("status")) if t.name.is_some() => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let kind = PatchType::from_content_type(ct)
                .ok_or_else(|| ApiError::unsupported_media_type(ct))?;
            let patch_body: Value = if kind == PatchType::Apply {
                serde_yaml::from_slice(body).map_err(|e| {
                    ApiError::bad_request(format!("error decoding YAML apply patch: {e}"))
                })?
            } else {
                serde_json::from_slice(body).map_err(|e| {
                    ApiError::bad_request(format!("error decoding patch body as JSON: {e}"))
                })?
            };
            let (stored, warnings, created) = patch_object(app, t, kind, &patch_body, q)?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(with_warnings(
                json_response(code, stored.bytes.clone()),
                &warnings,
            ))
        }
        ("delete", None) => {
            let opts = delete_options(q, body)?;
            let (stored, gone, warnings) = delete(app, t, &opts)?;
            let code = if gone {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            Ok(with_warnings(
                json_response(code, stored.bytes.clone()),
                &warnings,
            ))
        }
        ("deletecollection", None) => delete_collection(app, t, q, body),
        _ => Err(ApiError::method_not_allowed(&format!(
            "{verb} {}",
            t.counter_resource()
        ))),
    }
}

fn with_warnings(mut r: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let v = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(h) = HeaderValue::from_str(&v) {
            r.headers_mut().append("Warning", h);
        }
    }
    r
}

fn decode_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let base = ct.split(';').next().unwrap_or("").trim();
    let v: Value = match base {
        "application/json" | "" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?,
        "application/yaml" => serde_yaml::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; yaml parse error: {e}"))
        })?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(v)
}

/// The `fieldValidation` directive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

fn field_validation(q: &Query) -> Result<FieldValidation, ApiError> {
    match q.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some(other) => Err(ApiError::bad_request(format!(
            "fieldValidation parameter unsupported: {other:?}: use Ignore, Warn or Strict"
        ))),
    }
}

fn dry_run(q: &Query) -> Result<bool, ApiError> {
    match q.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "dryRun: unsupported value {other:?}: the only supported value is \"All\""
        ))),
    }
}

/// Paths of fields present in `input` but dropped by the typed round trip.
fn unknown_fields(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(tv) => unknown_fields(v, tv, &p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, tv)) in a.iter().zip(b.iter()).enumerate() {
                unknown_fields(v, tv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Decodes `obj` as resource `rt`: checks apiVersion/kind, type-checks through the typed struct,
/// and applies `fieldValidation` to unknown fields. Returns the decoded object (unknown fields
/// dropped, as the apiserver stores only what its schema knows) and any warnings.
fn decode_typed(
    rt: &ResourceType,
    obj: &Value,
    fv: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Object 'Kind' is missing in the request body: set \"kind\": {:?}",
            rt.kind
        )));
    }
    if api_version.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Object 'apiVersion' is missing in the request body: set \"apiVersion\": {:?}",
            rt.api_version()
        )));
    }
    if kind != rt.kind || api_version != rt.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) and kind ({kind}) do not match the expected {} {}",
            rt.api_version(),
            rt.kind
        )));
    }
    let typed = (rt.typed)(obj).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            rt.kind, rt.version, rt.kind
        ))
    })?;
    let mut unknown = Vec::new();
    unknown_fields(obj, &typed, "", &mut unknown);
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        let msgs: Vec<String> = unknown
            .iter()
            .map(|p| format!("unknown field \"{p}\""))
            .collect();
        match fv {
            FieldValidation::Strict => {
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    msgs.join(", ")
                )));
            }
            FieldValidation::Warn => warnings = msgs,
            FieldValidation::Ignore => {}
        }
    }
    Ok((typed, warnings))
}

fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn new_uid() -> String {
    use rand::Rng;
    let b: [u8; 16] = rand::rng().random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().expect("metadata object")
}

fn create(
    app: &Arc<App>,
    t: &Target,
    obj: Value,
    q: &Query,
) -> Result<(Arc<Stored>, Vec<String>), ApiError> {
    let fv = field_validation(q)?;
    let dry = dry_run(q)?;
    let rt = t.rt();
    let (mut obj, warnings) = decode_typed(rt, &obj, fv)?;
    let ns = t.ns().to_owned();
    {
        let meta = meta_mut(&mut obj);
        if rt.namespaced {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(ApiError::bad_request(format!(
                        "the namespace of the provided object ({n}) does not match the namespace sent on the request ({ns})"
                    )));
                }
                _ => {
                    meta.insert("namespace".to_owned(), json!(ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty()
            && let Some(prefix) = meta
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
        {
            let generated = validation::generate_name(prefix);
            meta.insert("name".to_owned(), json!(generated));
        }
        for k in [
            "uid",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(k);
        }
        meta.insert("uid".to_owned(), json!(new_uid()));
        meta.insert("creationTimestamp".to_owned(), json!(now_rfc3339()));
        if rt.has_generation {
            meta.insert("generation".to_owned(), json!(1));
        } else {
            meta.remove("generation");
        }
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
    if rt.namespaced && app.store.get(resources::NAMESPACES, "", &ns).is_none() {
        return Err(ApiError::not_found(&RESOURCES[resources::NAMESPACES], &ns));
    }
    let uid = obj["metadata"]["uid"].as_str().unwrap_or("").to_owned();
    let mut errs: Vec<FieldError> = Vec::new();
    if t.rt_id == resources::JOBS
        && let Some(e) = validation::job_selector_on_create(&mut obj, &uid)
    {
        errs.push(e);
    }
    validation::default_on_create(
        t.rt_id,
        &mut obj,
        Ctx {
            namespace: &ns,
            uid: &uid,
        },
    );
    errs.extend(validation::validate(t.rt_id, &obj, None));
    if !errs.is_empty() {
        return Err(ApiError::invalid(rt, &name, &errs));
    }
    if dry {
        if app.store.get(t.rt_id, &ns, &name).is_some() {
            return Err(ApiError::already_exists(rt, &name));
        }
        let bytes = Bytes::from(serde_json::to_vec(&obj).unwrap_or_default());
        return Ok((
            Arc::new(Stored {
                value: obj,
                bytes,
                rv: 0,
            }),
            warnings,
        ));
    }
    let stored = app.store.create(t.rt_id, obj)?;
    app.counters.created(rt.kind, &ns, &name);
    Ok((stored, warnings))
}

/// Builds the new version of an object for an update (main resource or `/status`) and decides
/// what the store does; runs under the store lock.
fn prepare_update(
    t: &Target,
    cur: &Stored,
    new: Value,
    check_rv: bool,
) -> Result<Change, ApiError> {
    let rt = t.rt();
    let name = t.name.as_deref().unwrap_or("");
    let cur_v = &cur.value;
    let new_meta = new.get("metadata").cloned().unwrap_or(json!({}));
    if let Some(n) = new_meta.get("name").and_then(Value::as_str)
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    if check_rv
        && let Some(rv) = new_meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        && rv != cur.rv.to_string()
    {
        return Err(ApiError::stale(rt, name));
    }
    if let Some(uid) = new_meta
        .get("uid")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        && Some(uid) != cur_v["metadata"]["uid"].as_str()
    {
        return Err(ApiError::conflict(
            rt,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                cur_v["metadata"]["uid"].as_str().unwrap_or("")
            ),
        ));
    }
    let status_only = t.sub.as_deref() == Some("status");
    let mut obj = if status_only {
        let mut o = cur_v.clone();
        o["status"] = new.get("status").cloned().unwrap_or(json!({}));
        o
    } else {
        let mut o = new;
        if rt.has_status {
            match cur_v.get("status") {
                Some(s) => o["status"] = s.clone(),
                None => {
                    if let Some(m) = o.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        o
    };
    {
        let cur_meta = &cur_v["metadata"];
        let meta = meta_mut(&mut obj);
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
            "name",
        ] {
            match cur_meta.get(k) {
                Some(v) => {
                    meta.insert(k.to_owned(), v.clone());
                }
                None => {
                    meta.remove(k);
                }
            }
        }
        meta.remove("resourceVersion");
        meta.remove("managedFields");
        meta.remove("selfLink");
        if cur_meta.get("deletionTimestamp").is_some() {
            let old: Vec<&Value> = cur_meta
                .get("finalizers")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            let added: Vec<String> = meta
                .get("finalizers")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter(|f| !old.contains(f))
                        .map(|f| f.as_str().unwrap_or("").to_owned())
                        .collect()
                })
                .unwrap_or_default();
            if !added.is_empty() {
                return Err(ApiError::invalid(
                    rt,
                    name,
                    &[FieldError::forbidden(
                        "metadata.finalizers",
                        format!(
                            "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                        ),
                    )],
                ));
            }
        }
    }
    if !status_only {
        validation::default_on_update(t.rt_id, &mut obj, cur_v);
    }
    let errs = validation::validate(t.rt_id, &obj, Some(cur_v));
    if !errs.is_empty() {
        return Err(ApiError::invalid(rt, name, &errs));
    }
    if rt.has_generation && !status_only && obj.get("spec") != cur_v.get("spec") {
        let g = cur_v["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        obj["metadata"]["generation"] = json!(g);
    }
    if same_but_version(cur_v, &obj) {
        return Ok(Change::Keep);
    }
    let being_deleted = obj["metadata"].get("deletionTimestamp").is_some();
    let no_finalizers = obj["metadata"]
        .get("finalizers")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if being_deleted && no_finalizers && !graceful_pending(&obj) {
        return Ok(Change::Remove(obj));
    }
    Ok(Change::Put(obj))
}

/// Whether two versions of an object are equal apart from `metadata.resourceVersion` and
/// `metadata.managedFields` (a no-op write), without copying either.
fn same_but_version(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let skip = |k: &str| k == "resourceVersion" || k == "managedFields";
    let meta_eq = match (
        a.get("metadata").and_then(Value::as_object),
        b.get("metadata").and_then(Value::as_object),
    ) {
        (Some(ma), Some(mb)) => {
            ma.iter()
                .filter(|(k, _)| !skip(k))
                .all(|(k, v)| mb.get(k) == Some(v))
                && mb.keys().filter(|k| !skip(k)).count() == ma.keys().filter(|k| !skip(k)).count()
        }
        (ma, mb) => ma == mb,
    };
    meta_eq
        && a.len() == b.len()
        && a.iter()
            .filter(|(k, _)| k.as_str() != "metadata")
            .all(|(k, v)| b.get(k) == Some(v))
}

/// An object being deleted with a grace period still running (a bound pod waiting for its
/// kubelet): kube-apiserver removes an object during an update only when it has no finalizers
/// *and* a zero grace period (registry/generic/registry/store.go `ShouldDeleteDuringUpdate`).
fn graceful_pending(obj: &Value) -> bool {
    obj["metadata"]["deletionGracePeriodSeconds"]
        .as_i64()
        .unwrap_or(0)
        > 0
}

fn pod_terminal_or_unbound(obj: &Value) -> bool {
    let phase = obj.pointer("/status/phase").and_then(Value::as_str);
    let node = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    node.is_empty() || matches!(phase, Some("Succeeded") | Some("Failed"))
}

fn after_write(app: &App, t: &Target, stored: &Stored, event: Option<EventType>) {
    if event == Some(EventType::Deleted) {
        on_removed(app, t.rt_id, stored);
    }
}

fn on_removed(app: &App, rt_id: usize, stored: &Stored) {
    if rt_id == resources::PODS {
        app.logs.remove_pod(stored.namespace(), stored.name());
    }
}

fn update(
    app: &Arc<App>,
    t: &Target,
    obj: Value,
    q: &Query,
) -> Result<(Arc<Stored>, Vec<String>, bool), ApiError> {
    let fv = field_validation(q)?;
    let dry = dry_run(q)?;
    let rt = t.rt();
    let (obj, warnings) = decode_typed(rt, &obj, fv)?;
    let name = t.name.as_deref().unwrap_or("");
    if app.store.get(t.rt_id, t.ns(), name).is_none() && t.sub.is_none() {
        // The served kinds do not allow create-on-update (their registry strategies'
        // AllowCreateOnUpdate is false): a PUT on a missing object is NotFound.
        return Err(ApiError::not_found(rt, name));
    }
    if dry {
        let cur = app
            .store
            .get(t.rt_id, t.ns(), name)
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        return match prepare_update(t, &cur, obj, true)? {
            Change::Put(v) | Change::Remove(v) => {
                let bytes = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
                Ok((
                    Arc::new(Stored {
                        value: v,
                        bytes,
                        rv: cur.rv,
                    }),
                    warnings,
                    false,
                ))
            }
            Change::Keep => Ok((cur, warnings, false)),
        };
    }
    let (stored, event) = app.store.update(t.rt_id, t.ns(), name, |cur| {
        prepare_update(t, cur, obj, true)
    })?;
    after_write(app, t, &stored, event);
    Ok((stored, warnings, false))
}

fn patch_object(
    app: &Arc<App>,
    t: &Target,
    kind: PatchType,
    patch_body: &Value,
    q: &Query,
) -> Result<(Arc<Stored>, Vec<String>, bool), ApiError> {
    let fv = field_validation(q)?;
    let dry = dry_run(q)?;
    let rt = t.rt();
    let name = t.name.as_deref().unwrap_or("").to_owned();
    if kind == PatchType::Apply {
        if q.get("fieldManager").is_none_or(|m| m.is_empty()) {
            return Err(ApiError::bad_request(
                "PATCH with application/apply-patch+yaml requires the fieldManager query parameter",
            ));
        }
        if t.sub.is_none() && app.store.get(t.rt_id, t.ns(), &name).is_none() {
            let mut obj = patch_body.clone();
            meta_mut(&mut obj).insert("name".to_owned(), json!(name));
            let (stored, warnings) = create(app, t, obj, q)?;
            return Ok((stored, warnings, true));
        }
    }
    let mut warnings = Vec::new();
    let mut dry_result = None;
    let (stored, event) = app.store.update(t.rt_id, t.ns(), &name, |cur| {
        let patched = patch::apply(kind, &cur.value, patch_body)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let (typed, w) = decode_typed(rt, &patched, fv)?;
        warnings = w;
        // A patch may carry a resourceVersion precondition (kubectl apply --force-conflicts
        // aside, clients put it there on purpose); a patched object inherits the stored one.
        let explicit_rv = patch_body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .is_some();
        let change = prepare_update(t, cur, typed, explicit_rv)?;
        if dry {
            // dryRun=All: everything but the write.
            if let Change::Put(v) | Change::Remove(v) = change {
                dry_result = Some(v);
            }
            return Ok(Change::Keep);
        }
        Ok(change)
    })?;
    if let Some(mut v) = dry_result {
        v["metadata"]["resourceVersion"] = json!(stored.rv.to_string());
        let bytes = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
        let preview = Arc::new(Stored {
            value: v,
            bytes,
            rv: stored.rv,
        });
        return Ok((preview, warnings, false));
    }
    after_write(app, t, &stored, event);
    Ok((stored, warnings, false))
}

fn bind(app: &Arc<App>, t: &Target, binding: &Value) -> Result<Response, ApiError> {
    let name = t.name.as_deref().unwrap_or("");
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if node.is_empty() {
        return Err(ApiError::invalid(
            &RESOURCES[resources::PODS],
            name,
            &[FieldError::required("target.name", "the node to bind to")],
        ));
    }
    app.store.update(resources::PODS, t.ns(), name, |cur| {
        let mut pod = cur.value.clone();
        if let Some(existing) = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict(
                &RESOURCES[resources::PODS],
                name,
                &format!("pod {name} is already assigned to node {existing:?}"),
            ));
        }
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::conflict(
                &RESOURCES[resources::PODS],
                name,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        pod["spec"]["nodeName"] = json!(node);
        let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
            "lastTransitionTime": now_rfc3339()});
        let conds = pod["status"]
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut conds: Vec<Value> = conds
            .into_iter()
            .filter(|c| c["type"] != "PodScheduled")
            .collect();
        conds.push(cond);
        pod["status"]["conditions"] = Value::Array(conds);
        if let Some(m) = pod["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        Ok(Change::Put(pod))
    })?;
    Ok(json_value(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// Options of a DELETE (query parameters or a `DeleteOptions` body).
#[derive(Debug, Default)]
struct DeleteOpts {
    propagation: Option<String>,
    grace: Option<i64>,
    uid: Option<String>,
    rv: Option<String>,
    dry_run: bool,
}

fn delete_options(q: &Query, body: &Bytes) -> Result<DeleteOpts, ApiError> {
    let mut o = DeleteOpts {
        propagation: q.get("propagationPolicy").cloned(),
        grace: q
            .get("gracePeriodSeconds")
            .map(|g| {
                g.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!("gracePeriodSeconds: not an integer: {g:?}"))
                })
            })
            .transpose()?,
        dry_run: dry_run(q)?,
        ..Default::default()
    };
    if q.get("orphanDependents").map(String::as_str) == Some("true") && o.propagation.is_none() {
        o.propagation = Some("Orphan".to_owned());
    }
    if !body.is_empty() {
        let b: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("DeleteOptions body is not valid JSON: {e}"))
        })?;
        if let Some(p) = b.get("propagationPolicy").and_then(Value::as_str) {
            o.propagation = Some(p.to_owned());
        }
        if b.get("orphanDependents").and_then(Value::as_bool) == Some(true)
            && o.propagation.is_none()
        {
            o.propagation = Some("Orphan".to_owned());
        }
        if let Some(g) = b.get("gracePeriodSeconds").and_then(Value::as_i64) {
            o.grace = Some(g);
        }
        o.uid = b
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_owned);
        o.rv = b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if b.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
        {
            o.dry_run = true;
        }
    }
    if let Some(p) = &o.propagation
        && !["Orphan", "Background", "Foreground"].contains(&p.as_str())
    {
        return Err(ApiError::invalid(
            &RESOURCES[resources::NAMESPACES],
            "",
            &[FieldError::not_supported(
                "propagationPolicy",
                p,
                &["Foreground", "Background", "Orphan"],
            )],
        ));
    }
    Ok(o)
}

/// The protected namespaces that kube-apiserver refuses to delete.
const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

fn delete(
    app: &Arc<App>,
    t: &Target,
    o: &DeleteOpts,
) -> Result<(Arc<Stored>, bool, Vec<String>), ApiError> {
    let rt = t.rt();
    let name = t.name.as_deref().unwrap_or("").to_owned();
    let mut warnings = Vec::new();
    if t.rt_id == resources::NAMESPACES {
        if PROTECTED_NAMESPACES.contains(&name.as_str()) {
            return Err(ApiError {
                code: 403,
                reason: "Forbidden",
                message: format!(
                    "namespaces {name:?} is forbidden: this namespace may not be deleted"
                ),
                details: Some(json!({"name": name, "kind": "namespaces"})),
                retry_after: None,
            });
        }
        let cur = app
            .store
            .get(t.rt_id, "", &name)
            .ok_or_else(|| ApiError::not_found(rt, &name))?;
        if o.dry_run {
            return Ok((cur, true, warnings));
        }
        for pod in app.store.remove_namespace_contents(&name) {
            app.logs.remove_pod(&name, &pod);
        }
        let (stored, _) = app.store.update(t.rt_id, "", &name, |cur| {
            Ok(Change::Remove(cur.value.clone()))
        })?;
        return Ok((stored, true, warnings));
    }
    // batch/v1 Jobs default to orphaning their pods (pkg/registry/batch/job/strategy.go
    // DefaultGarbageCollectionPolicy), with a warning since Kubernetes 1.25.
    let policy = match &o.propagation {
        Some(p) => p.clone(),
        None if t.rt_id == resources::JOBS => {
            warnings.push("child pods are preserved by default when jobs are deleted; set propagationPolicy=Background to remove them or set propagationPolicy=Orphan to suppress this warning".to_owned());
            "Orphan".to_owned()
        }
        None => "Background".to_owned(),
    };
    let dry = o.dry_run;
    let mut dry_result = None;
    let (stored, event) = app.store.update(t.rt_id, t.ns(), &name, |cur| {
        let meta = &cur.value["metadata"];
        if let Some(uid) = &o.uid
            && meta["uid"].as_str() != Some(uid.as_str()) {
                return Err(ApiError::conflict(
                    rt,
                    &name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta["uid"].as_str().unwrap_or("")
                    ),
                ));
            }
        if let Some(rv) = &o.rv
            && *rv != cur.rv.to_string() {
                return Err(ApiError::conflict(
                    rt,
                    &name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        cur.rv
                    ),
                ));
            }
        let mut obj = cur.value.clone();
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        let mut finalizers: Vec<Value> = meta
            .get("finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let already = meta.get("deletionTimestamp").is_some();
        let gc_finalizer = match policy.as_str() {
            "Orphan" => Some("orphan"),
            "Foreground" => Some("foregroundDeletion"),
            _ => None,
        };
        // Only objects that can have dependents get the GC finalizers; kube-apiserver adds them
        // to any object, and the garbage collector removes them.
        if let Some(f) = gc_finalizer
            && !already && !finalizers.iter().any(|x| x == f) {
                finalizers.push(json!(f));
            }
        let mut grace = 0i64;
        if t.rt_id == resources::PODS && !pod_terminal_or_unbound(&cur.value) {
            grace = o.grace.unwrap_or_else(|| {
                cur.value
                    .pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(30)
            });
            if let Some(prev) = meta["deletionGracePeriodSeconds"].as_i64() {
                grace = grace.min(prev);
            }
        }
        if finalizers.is_empty() && grace <= 0 {
            if dry {
                dry_result = Some(obj);
                return Ok(Change::Keep);
            }
            return Ok(Change::Remove(obj));
        }
        let ts = if grace > 0 {
            (Utc::now() + chrono::Duration::seconds(grace))
                .to_rfc3339_opts(SecondsFormat::Secs, true)
        } else {
            meta.get("deletionTimestamp")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(now_rfc3339)
        };
        if !already || grace > 0 {
            obj["metadata"]["deletionTimestamp"] = json!(ts);
        }
        obj["metadata"]["deletionGracePeriodSeconds"] = json!(grace.max(0));
        obj["metadata"]["finalizers"] = Value::Array(finalizers);
        if rt.has_generation {
            let g = meta["generation"].as_i64().unwrap_or(0);
            if !already {
                obj["metadata"]["generation"] = json!(g + 1);
            }
        }
        if dry {
            dry_result = Some(obj);
            return Ok(Change::Keep);
        }
        if same_but_version(&cur.value, &obj) {
            return Ok(Change::Keep);
        }
        Ok(Change::Put(obj))
    })?;
    if let Some(v) = dry_result {
        let bytes = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
        return Ok((
            Arc::new(Stored {
                value: v,
                bytes,
                rv: stored.rv,
            }),
            false,
            warnings,
        ));
    }
    let gone = event == Some(EventType::Deleted);
    after_write(app, t, &stored, event);
    Ok((stored, gone, warnings))
}

fn delete_collection(
    app: &Arc<App>,
    t: &Target,
    q: &Query,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let rt = t.rt();
    let labels = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str), rt)?;
    let opts = delete_options(q, body)?;
    let lq = ListQuery {
        ns: t.ns.as_deref(),
        label: labels.equalities().next(),
        ..Default::default()
    };
    let page = app.store.list(t.rt_id, &lq, |s| {
        labels.matches(s.labels()) && fields.matches(&s.value)
    });
    let mut items = Vec::new();
    for s in page.items {
        let target = Target {
            rt_id: t.rt_id,
            ns: Some(s.namespace().to_owned()).filter(|n| !n.is_empty()),
            name: Some(s.name().to_owned()),
            sub: None,
        };
        match delete(app, &target, &opts) {
            Ok((stored, _, _)) => items.push(stored),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        StatusCode::OK,
        list_body(rt, &items, app.store.revision(), None, None),
    ))
}

fn list_body(
    rt: &ResourceType,
    items: &[Arc<Stored>],
    rv: u64,
    cont: Option<String>,
    remaining: Option<u64>,
) -> Vec<u8> {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    if let Some(r) = remaining {
        meta["remainingItemCount"] = json!(r);
    }
    let head = format!(
        "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
        rt.list_kind(),
        rt.api_version(),
        meta
    );
    let mut out =
        Vec::with_capacity(head.len() + items.iter().map(|i| i.bytes.len() + 1).sum::<usize>() + 2);
    out.extend_from_slice(head.as_bytes());
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&item.bytes);
    }
    out.extend_from_slice(b"]}");
    out
}

fn encode_continue(rv: u64, key: &(String, String)) -> String {
    let raw = json!({"rv": rv, "ns": key.0, "name": key.1}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> Result<(u64, (String, String)), ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "continue key is not valid: {token:?}: pass the metadata.continue value of the previous page unchanged"
        ))
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v["rv"].as_u64().ok_or_else(bad)?;
    let ns = v["ns"].as_str().ok_or_else(bad)?.to_owned();
    let name = v["name"].as_str().ok_or_else(bad)?.to_owned();
    Ok((rv, (ns, name)))
}

fn list(app: &Arc<App>, t: &Target, q: &Query, accept: &str) -> Result<Response, ApiError> {
    let rt = t.rt();
    let labels = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str), rt)?;
    let limit: usize = match q.get("limit") {
        Some(l) => l.parse().map_err(|_| {
            ApiError::bad_request(format!("limit: not a non-negative integer: {l:?}"))
        })?,
        None => 0,
    };
    let after = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (rv, key) = decode_continue(token)?;
            let (compacted, _) = app.store.window();
            if rv < compacted {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ));
            }
            Some(key)
        }
        None => None,
    };
    let selective = !labels.is_empty() || !fields.is_empty();
    let page = match (fields.name(), t.ns.as_deref()) {
        // A name pinned by the field selector is a point lookup, not a scan.
        (Some(name), ns) if ns.is_some() || !rt.namespaced => {
            let found = app.store.get(t.rt_id, t.ns(), name);
            crate::store::ListPage {
                items: found
                    .into_iter()
                    .filter(|s| labels.matches(s.labels()) && fields.matches(&s.value))
                    .collect(),
                rv: app.store.revision(),
                next: None,
                remaining: None,
            }
        }
        _ => {
            let lq = ListQuery {
                ns: t.ns.as_deref(),
                after: after.as_ref(),
                limit,
                count_remaining: !selective,
                label: labels.equalities().next(),
            };
            app.store.list(t.rt_id, &lq, |s| {
                labels.matches(s.labels()) && fields.matches(&s.value)
            })
        }
    };
    let cont = page.next.as_ref().map(|k| encode_continue(page.rv, k));
    if table::wants_table(accept) {
        let mut meta = json!({"resourceVersion": page.rv.to_string()});
        if let Some(c) = &cont {
            meta["continue"] = json!(c);
        }
        let v = table::table(
            rt,
            page.items.iter().map(|s| &s.value),
            meta,
            q.get("includeObject").map(String::as_str) == Some("Object"),
        );
        return Ok(json_value(StatusCode::OK, &v));
    }
    if table::wants_metadata(accept) {
        let mut meta = json!({"resourceVersion": page.rv.to_string()});
        if let Some(c) = &cont {
            meta["continue"] = json!(c);
        }
        let items: Vec<Value> = page
            .items
            .iter()
            .map(|s| table::partial(&s.value))
            .collect();
        let v = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
            "metadata": meta, "items": items});
        return Ok(json_value(StatusCode::OK, &v));
    }
    Ok(json_response(
        StatusCode::OK,
        list_body(rt, &page.items, page.rv, cont, page.remaining),
    ))
}

/// Everything a watch filter needs.
struct WatchFilter {
    rt_id: usize,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl WatchFilter {
    fn matches(&self, s: &Stored) -> bool {
        self.ns.as_deref().is_none_or(|ns| s.namespace() == ns)
            && self.labels.matches(s.labels())
            && self.fields.matches(&s.value)
    }
}

fn event_line(kind: &str, obj: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(obj.len() + 32);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(obj);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

/// How watch events are encoded: the object itself, its `PartialObjectMetadata`, or a one-row
/// Table for kubectl.
#[derive(Clone, Copy)]
struct WatchEncoding {
    table: bool,
    metadata: bool,
    include_object: bool,
}

fn encode_event(rt: &ResourceType, enc: WatchEncoding, kind: &str, s: &Stored) -> Bytes {
    if enc.table {
        let t = table::table(
            rt,
            std::iter::once(&s.value),
            json!({"resourceVersion": s.rv.to_string()}),
            enc.include_object,
        );
        event_line(kind, &serde_json::to_vec(&t).unwrap_or_default())
    } else if enc.metadata {
        event_line(
            kind,
            &serde_json::to_vec(&table::partial(&s.value)).unwrap_or_default(),
        )
    } else {
        event_line(kind, &s.bytes)
    }
}

fn bookmark(rt: &ResourceType, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let obj = json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": meta});
    event_line("BOOKMARK", &serde_json::to_vec(&obj).unwrap_or_default())
}

fn error_event(err: &ApiError) -> Bytes {
    event_line(
        "ERROR",
        &serde_json::to_vec(&err.to_status()).unwrap_or_default(),
    )
}

fn watch(app: &Arc<App>, t: &Target, q: &Query, accept: &str) -> Result<Response, ApiError> {
    let rt = t.rt();
    let mut fields_str = q.get("fieldSelector").cloned().unwrap_or_default();
    if let Some(name) = &t.name {
        // Legacy `/watch/…/{name}` paths watch one object.
        if !fields_str.is_empty() {
            fields_str.push(',');
        }
        fields_str.push_str(&format!("metadata.name={name}"));
    }
    let filter = WatchFilter {
        rt_id: t.rt_id,
        ns: t.ns.clone(),
        labels: LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))?,
        fields: FieldSelector::parse(&fields_str, rt)?,
    };
    let timeout = match q.get("timeoutSeconds") {
        Some(s) => Duration::from_secs(s.parse().map_err(|_| {
            ApiError::bad_request(format!("timeoutSeconds: not an integer: {s:?}"))
        })?),
        None => app.settings.default_watch_timeout,
    };
    let bookmarks = flag(q, "allowWatchBookmarks");
    let send_initial = flag(q, "sendInitialEvents");
    let rv_param = q.get("resourceVersion").cloned().unwrap_or_default();
    if send_initial && q.get("resourceVersionMatch").map(String::as_str) != Some("NotOlderThan") {
        return Err(ApiError::invalid(
            rt,
            "",
            &[FieldError::forbidden(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            )],
        ));
    }
    let enc = WatchEncoding {
        table: table::wants_table(accept),
        metadata: table::wants_metadata(accept),
        include_object: q.get("includeObject").map(String::as_str) == Some("Object"),
    };
    let mut notify = app.store.subscribe();
    notify.borrow_and_update();
    let mut initial: Vec<Bytes> = Vec::new();
    let start_rv = if rv_param.is_empty() || rv_param == "0" || send_initial {
        let (items, rv) = app.store.snapshot(t.rt_id, t.ns.as_deref());
        for s in items.iter().filter(|s| filter.matches(s)) {
            initial.push(encode_event(rt, enc, "ADDED", s));
        }
        if send_initial {
            initial.push(bookmark(rt, rv, true));
        }
        rv
    } else {
        rv_param.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "resourceVersion: {rv_param:?} is not a valid resource version: pass a value read from metadata.resourceVersion"
            ))
        })?
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let store = app.store.clone();
    let faults = app.faults.clone();
    let counters = app.counters.clone();
    let bookmark_every = app.settings.bookmark_interval;
    tokio::spawn(async move {
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        let mut pos = start_rv;
        let mut next_bookmark = started + bookmark_every;
        loop {
            match store.since(pos) {
                Since::Expired { oldest } => {
                    let err =
                        ApiError::expired(format!("too old resource version: {pos} ({oldest})"));
                    counters.fault("watch expired".to_owned());
                    let _ = tx.send(error_event(&err)).await;
                    return;
                }
                Since::Events(events) => {
                    for ev in events {
                        pos = ev.rv;
                        if ev.res != filter.rt_id {
                            continue;
                        }
                        let now = filter.matches(&ev.obj);
                        let before = ev.prev.as_ref().is_some_and(|p| filter.matches(p));
                        let kind = match (ev.kind, before, now) {
                            (EventType::Added, _, true) => "ADDED",
                            (EventType::Modified, true, true) => "MODIFIED",
                            (EventType::Modified, false, true) => "ADDED",
                            (EventType::Modified, true, false) => "DELETED",
                            (EventType::Deleted, b, n) if b || n => "DELETED",
                            _ => continue,
                        };
                        if tx.send(encode_event(rt, enc, kind, &ev.obj)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let drop_at = faults.watch_lifetime().map(|l| started + l);
            let wake = [Some(deadline), drop_at, bookmarks.then_some(next_bookmark)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(deadline);
            tokio::select! {
                changed = notify.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return;
                    }
                    if drop_at.is_some_and(|d| now >= d) {
                        counters.fault("watch dropped".to_owned());
                        return;
                    }
                    if bookmarks && now >= next_bookmark {
                        next_bookmark = now + bookmark_every;
                        if tx.send(bookmark(rt, pos, false)).await.is_err() {
                            return;
                        }
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<Bytes, Infallible>);
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    Ok(r)
}

async fn pod_log(app: &Arc<App>, t: &Target, q: &Query) -> Result<Response, ApiError> {
    let name = t.name.as_deref().unwrap_or("");
    let ns = t.ns();
    let pods = &RESOURCES[resources::PODS];
    let pod = app
        .store
        .get(resources::PODS, ns, name)
        .ok_or_else(|| ApiError::not_found(pods, name))?;
    let containers: Vec<String> = ["initContainers", "containers"]
        .iter()
        .filter_map(|k| pod.value["spec"].get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let main: Vec<String> = pod.value["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let container = match q.get("container").filter(|c| !c.is_empty()) {
        Some(c) => {
            if !containers.contains(c) {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            c.clone()
        }
        None if main.len() == 1 => main[0].clone(),
        None => {
            let default = pod
                .value
                .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
                .and_then(Value::as_str);
            match default {
                Some(d) if containers.iter().any(|c| c == d) => d.to_owned(),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "a container name must be specified for pod {name}, choose one of: [{}]",
                        main.join(" ")
                    )));
                }
            }
        }
    };
    let tail = match q.get("tailLines") {
        Some(n) => Some(
            n.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("tailLines: not an integer: {n:?}")))?,
        ),
        None => None,
    };
    let tail = tail.map(|n| n.max(0) as usize);
    let follow = flag(q, "follow");
    if flag(q, "previous") {
        // The run before a restart in place; a kubelet answers 400 when there is none.
        let Some(lines) = app.logs.read_previous(ns, name, &container) else {
            return Err(ApiError::bad_request(format!(
                "previous terminated container {container:?} in pod {name:?} not found"
            )));
        };
        let start = tail.map_or(0, |n| lines.len().saturating_sub(n));
        let mut text = String::new();
        for l in &lines[start..] {
            text.push_str(l);
            text.push('\n');
        }
        return Ok(text_response(Body::from(text)));
    }
    let snapshot = app.logs.read(ns, name, &container, tail);
    let Some(snapshot) = snapshot else {
        let reason = pod
            .value
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["name"] == container.as_str()))
            .and_then(|c| c.pointer("/state/waiting/reason"))
            .and_then(Value::as_str)
            .unwrap_or("ContainerCreating")
            .to_owned();
        let running = pod.value.pointer("/status/phase").and_then(Value::as_str) != Some("Pending");
        if running {
            // The container started but has written nothing yet.
            return Ok(text_response(Body::empty()));
        }
        return Err(ApiError::bad_request(format!(
            "container {container:?} in pod {name:?} is waiting to start: {reason}"
        )));
    };
    let mut head = String::new();
    for l in &snapshot.lines {
        head.push_str(l);
        head.push('\n');
    }
    if !follow || snapshot.finished {
        return Ok(text_response(Body::from(head)));
    }
    let rest = app
        .logs
        .follow(ns, name, &container, snapshot.next)
        .map(|l| Ok::<Bytes, Infallible>(Bytes::from(format!("{l}\n"))));
    let stream = futures::stream::once(async move { Ok::<Bytes, Infallible>(Bytes::from(head)) })
        .chain(rest);
    Ok(text_response(Body::from_stream(stream)))
}

fn text_response(body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Creates the namespaces every cluster starts with.
pub(crate) fn bootstrap(app: &Arc<App>) -> Result<(), ApiError> {
    for ns in PROTECTED_NAMESPACES {
        let t = Target {
            rt_id: resources::NAMESPACES,
            ns: None,
            name: None,
            sub: None,
        };
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        create(app, &t, obj, &Query::new())?;
    }
    Ok(())
}
