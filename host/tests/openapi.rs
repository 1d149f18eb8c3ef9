//! `/v1/openapi.json` describes exactly the routes the router serves: every documented path and
//! method reaches a handler (not the fallback, not 405), every other method on a documented
//! path is 405, and the paths given to `Router::route` in `host/src/api/mod.rs` are the
//! documented ones. Driven through `api::router` with `oneshot` over a real runner and the
//! in-process simulated cluster.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{Result, bail};
use axum::body::Body;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use taskpod::api::{self, ApiState, OPENAPI};
use taskpod::config::Config;
use taskpod::runner::Runner;
use taskpod::store::{Store, StoreOptions};
use tower::ServiceExt;

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// `(path, method)` pairs of the document, methods lowercase.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            assert!(METHODS.contains(&method.as_str()), "{path}: {method}");
            out.insert((path.clone(), method.clone()));
        }
    }
    out
}

/// The path literals given to `.route(` in the router's source.
fn routed_paths() -> BTreeSet<String> {
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/mod.rs"),
    )
    .expect("read src/api/mod.rs");
    let mut out = BTreeSet::new();
    for piece in source.split(".route(").skip(1) {
        let start = piece.find('"').expect("a path literal after .route(");
        let rest = &piece[start + 1..];
        let end = rest.find('"').expect("closing quote");
        out.insert(rest[..end].to_owned());
    }
    out
}

/// Sends one request; returns the status and whether it was the router's fallback.
async fn probe(state: &ApiState, method: &str, path: &str) -> Result<(StatusCode, bool)> {
    let uri = path.replace("{id}", "probe-task");
    let req = Request::builder()
        .method(Method::from_bytes(method.to_uppercase().as_bytes())?)
        .uri(&uri)
        .header("content-type", "application/json")
        .body(Body::empty())?;
    let resp = api::router(state.clone()).oneshot(req).await?;
    let status = resp.status();
    let mut fallback = false;
    if status == StatusCode::NOT_FOUND {
        let bytes = resp.into_body().collect().await?.to_bytes();
        let body: Value = serde_json::from_slice(&bytes)?;
        fallback = body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("no route");
    }
    Ok((status, fallback))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_routes_the_router_serves() -> Result<()> {
    let doc: Value = serde_json::from_str(OPENAPI)?;
    assert!(
        doc["openapi"].as_str().unwrap_or("").starts_with("3."),
        "an OpenAPI 3 document"
    );
    let documented = documented(&doc);
    let documented_paths: BTreeSet<String> = documented.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(
        routed_paths(),
        documented_paths,
        "the router's paths (left) and /v1/openapi.json's (right) differ: document the route \
         in host/src/api/openapi.json"
    );

    let dir = tempfile::tempdir()?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = Config::load(&root.join("examples/druid/taskpod.yaml"))?;
    let sim = taskpod_sim::Sim::start(taskpod_sim::SimOptions::default()).await?;
    let store = Store::open(dir.path().join("tasks.db"), StoreOptions::default())?;
    let runner = Runner::start(Arc::new(config), store, sim.client()).await?;
    let state = ApiState::new(runner);

    let mut problems = Vec::new();
    for path in &documented_paths {
        for method in METHODS {
            let (status, fallback) = probe(&state, method, path).await?;
            let listed = documented.contains(&(path.clone(), method.to_owned()));
            if listed && (status == StatusCode::METHOD_NOT_ALLOWED || fallback) {
                problems.push(format!(
                    "{method} {path} is documented but not served ({status})"
                ));
            }
            if !listed && status != StatusCode::METHOD_NOT_ALLOWED {
                problems.push(format!(
                    "{method} {path} is served ({status}) but not documented"
                ));
            }
        }
    }

    // The document itself is served.
    let req = Request::builder()
        .uri("/v1/openapi.json")
        .body(Body::empty())?;
    let resp = api::router(state.clone()).oneshot(req).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"].to_str()?, "application/json");
    let served: Value = serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?;
    assert_eq!(served, doc);

    state.close_streams();
    state.runner().clone().shutdown().await;
    sim.shutdown().await;
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}
