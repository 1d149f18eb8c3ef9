//! Set-up shared by the operations tests (metrics, Events, logging): the runner tests'
//! simulated cluster and container behaviours, a configuration with two adapters — `tpl`
//! (built-in pod-template, the default) and `hostile` (the misbehaving test guest, for task type
//! `hostile`, its mode taken from the task's payload) — and calls to the API router.

use std::sync::Arc;

use axum::body::Body;
use http::{Method, Request, StatusCode};
use taskpod::api::{self, ApiState};
use taskpod::config::Config;
use tower::ServiceExt;

use super::runner::Env;

/// Starts the runner tests' environment (`runner` is YAML for the `runner:` section), then
/// points it at a configuration that also has the `hostile` adapter.
pub async fn env(runner: &str) -> Env {
    let mut env = Env::start(runner).await;
    let text = format!(
        "namespace: default\ninstance: test\ncacheDir: {cache}\nadapters:\n  - name: tpl\n    component: builtin:pod-template\n    templates:\n      base: template.yaml\n  - name: hostile\n    component: {hostile}\nrouting:\n  default: tpl\n  byType:\n    hostile: hostile\nrunner:\n  {runner}\n",
        cache = env.dir.path().join("cache").display(),
        hostile = taskpod::adapters::guests::HOSTILE_PATH,
    );
    let path = env.dir.path().join("taskpod-ops.yaml");
    std::fs::write(&path, text).expect("config");
    env.config = Arc::new(Config::load(&path).expect("valid test config"));
    env
}

/// Calls the API router (no socket): the status and the body as text.
pub async fn call(state: &ApiState, method: Method, uri: &str, body: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request");
    let response = api::router(state.clone())
        .oneshot(request)
        .await
        .expect("the router answers");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}
