//! The HTTP API driven through `api::router` with `tower::ServiceExt::oneshot` (no socket),
//! over a real runner, a real store in a temporary directory and the in-process simulated
//! cluster: error bodies name the field, lists page, logs read and follow, events stream,
//! capacity changes, metrics count, and tasks submitted through the API run to their end.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use axum::body::Body;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use taskpod::api::{self, ApiState};
use taskpod::config::Config;
use taskpod::runner::Runner;
use taskpod::store::{NewTask, ReasonCode, Store, StoreOptions, TaskState, Transition};
use tower::ServiceExt;

struct Harness {
    _dir: tempfile::TempDir,
    sim: taskpod_sim::Sim,
    state: ApiState,
}

impl Harness {
    async fn start() -> Result<Harness> {
        let dir = tempfile::tempdir()?;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let config = Config::load(&root.join("examples/druid/taskpod.yaml"))?;
        let sim = taskpod_sim::Sim::start(taskpod_sim::SimOptions::default()).await?;
        let ns: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": config.namespace}
        }))?;
        Api::<Namespace>::all(sim.client())
            .create(&PostParams::default(), &ns)
            .await?;
        let store = Store::open(dir.path().join("tasks.db"), StoreOptions::default())?;
        let runner = Runner::start(Arc::new(config), store, sim.client()).await?;
        Ok(Harness {
            _dir: dir,
            sim,
            state: ApiState::new(runner),
        })
    }

    fn store(&self) -> &Store {
        self.state.runner().store()
    }

    async fn call(&self, method: Method, uri: &str, body: &str) -> Result<(StatusCode, Value)> {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))?;
        let resp = api::router(self.state.clone()).oneshot(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, value))
    }

    async fn stop(self) {
        self.state.close_streams();
        self.state.runner().clone().shutdown().await;
        self.sim.shutdown().await;
    }
}

fn field_of(body: &Value) -> &str {
    body["error"]["field"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_answer_with_the_field_and_the_problem() -> Result<()> {
    let h = Harness::start().await?;
    let (status, body) = h.call(Method::POST, "/v1/tasks", "{not json").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(field_of(&body), "body");
    assert_eq!(body["error"]["code"], "invalid");

    let (status, body) = h
        .call(
            Method::POST,
            "/v1/tasks",
            r#"{"type": "index", "payload": {}}"#,
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(field_of(&body), "id", "{body}");

    let (status, body) = h.call(Method::GET, "/v1/tasks?state=runing", "").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(field_of(&body), "state");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("running"),
        "the message lists the accepted states: {body}"
    );

    let (status, body) = h.call(Method::GET, "/v1/tasks?limit=0", "").await?;
    assert_eq!(
        (status, field_of(&body)),
        (StatusCode::BAD_REQUEST, "limit")
    );
    let (status, body) = h.call(Method::GET, "/v1/tasks?colour=red", "").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, body) = h
        .call(Method::PUT, "/v1/capacity", r#"{"capacity": 0}"#)
        .await?;
    assert_eq!(
        (status, field_of(&body)),
        (StatusCode::BAD_REQUEST, "capacity")
    );
    let (status, body) = h
        .call(
            Method::PUT,
            "/v1/capacity",
            r#"{"capacity": 3, "speed": 1}"#,
        )
        .await?;
    assert_eq!(
        (status, field_of(&body)),
        (StatusCode::BAD_REQUEST, "speed")
    );

    let (status, body) = h.call(Method::GET, "/v1/tasks/nope", "").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not-found");
    let (status, _) = h.call(Method::GET, "/v1/tasks/nope/log", "").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = h.call(Method::GET, "/v2/whatever", "").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("/v2/whatever")
    );

    let (status, body) = h.call(Method::POST, "/v1/render", "{}").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid");
    h.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_list_show_stored_tasks_with_history_and_pages() -> Result<()> {
    let h = Harness::start().await?;
    // Tasks written straight to the store (as the runner would), capacity 0 effect is avoided
    // by choosing a task type no adapter is routed to; they stay visible whatever happens.
    for i in 0..5 {
        h.store()
            .submit(NewTask::new(format!("t{i}"), "noop", "team-a", "{}"))
            .await?;
    }
    h.store()
        .submit(NewTask::new("other", "noop", "team-b", "{}"))
        .await?;
    let (status, body) = h.call(Method::GET, "/v1/tasks/t3", "").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["task"]["id"], "t3");
    assert_eq!(body["task"]["tenant"], "team-a");
    assert_eq!(body["task"]["type"], "noop");
    assert_eq!(body["history"][0]["to"], "pending");

    let (status, body) = h
        .call(
            Method::GET,
            "/v1/tasks?tenant=team-a&limit=2&order=oldest-first",
            "",
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids: Vec<&str> = body["tasks"]
        .as_array()
        .context("tasks")?
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, ["t0", "t1"]);
    let next = body["next"].as_str().context("a next cursor")?.to_owned();
    let (_, body) = h
        .call(
            Method::GET,
            &format!("/v1/tasks?tenant=team-a&limit=2&order=oldest-first&after={next}"),
            "",
        )
        .await?;
    let ids: Vec<&str> = body["tasks"]
        .as_array()
        .context("tasks")?
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, ["t2", "t3"]);
    h.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_read_whole_and_followed_until_the_task_ends() -> Result<()> {
    let h = Harness::start().await?;
    let store = h.store().clone();
    store
        .submit(NewTask::new("logged", "noop", "team-a", "{}"))
        .await?;
    store.append_log("logged", b"line 1\n".to_vec()).await?;
    let (status, body) = h.call(Method::GET, "/v1/tasks/logged/log", "").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, Value::String("line 1\n".to_owned()));

    // Follow from the start while a writer appends and then ends the task.
    let req = Request::builder()
        .uri("/v1/tasks/logged/log?follow=true")
        .body(Body::empty())?;
    let resp = api::router(h.state.clone()).oneshot(req).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let writer = tokio::spawn(async move {
        for i in 2..=4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            store
                .append_log("logged", format!("line {i}\n").into_bytes())
                .await?;
        }
        store
            .transition(
                Transition::new("logged", TaskState::Pending, TaskState::Canceled)
                    .reason(ReasonCode::CanceledByUser, "test"),
            )
            .await?;
        anyhow::Ok(())
    });
    let bytes = tokio::time::timeout(Duration::from_secs(20), resp.into_body().collect())
        .await
        .context("the followed log did not end once the task ended")??
        .to_bytes();
    writer.await??;
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        "line 1\nline 2\nline 3\nline 4\n"
    );
    h.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_committed_changes_for_one_task() -> Result<()> {
    let h = Harness::start().await?;
    let store = h.store().clone();
    let req = Request::builder()
        .uri("/v1/events?task=watched")
        .body(Body::empty())?;
    let resp = api::router(h.state.clone()).oneshot(req).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()?
            .starts_with("text/event-stream")
    );
    let mut body = resp.into_body();
    store
        .submit(NewTask::new("ignored", "noop", "team-a", "{}"))
        .await?;
    store
        .submit(NewTask::new("watched", "noop", "team-a", "{}"))
        .await?;
    store
        .transition(
            Transition::new("watched", TaskState::Pending, TaskState::Canceled)
                .reason(ReasonCode::CanceledByUser, "by the test"),
        )
        .await?;
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !text.contains("event: transition") {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .context("no transition event within 20 s")?;
        let Some(frame) = frame else {
            bail!("the feed ended: {text}")
        };
        if let Ok(data) = frame?.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(text.contains("event: submitted"), "{text}");
    assert!(!text.contains("ignored"), "filtered by task: {text}");
    assert!(text.contains(r#""to":"canceled""#), "{text}");
    assert!(text.contains(r#""reason":"canceled-by-user""#), "{text}");
    h.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_and_metrics() -> Result<()> {
    let h = Harness::start().await?;
    let (status, body) = h
        .call(Method::PUT, "/v1/capacity", r#"{"capacity": 7}"#)
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["capacity"], 7);
    let (_, body) = h.call(Method::GET, "/v1/capacity", "").await?;
    assert_eq!(body["capacity"], 7);
    assert_eq!(h.state.runner().capacity(), 7);

    h.store()
        .submit(NewTask::new("m1", "noop", "team-a", "{}"))
        .await?;
    let (status, body) = h.call(Method::GET, "/metrics", "").await?;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().context("metrics are text")?;
    assert!(text.contains("taskpod_capacity 7"), "{text}");
    assert!(
        text.contains("taskpod_tasks{state=\"succeeded\"}"),
        "{text}"
    );
    assert!(
        text.contains("taskpod_tenant_tasks{tenant=\"team-a\""),
        "{text}"
    );
    assert!(text.contains("taskpod_capacity_in_use"), "{text}");
    let (status, _) = h.call(Method::GET, "/healthz", "").await?;
    assert_eq!(status, StatusCode::OK);
    h.stop().await;
    Ok(())
}

/// The Druid example task, submitted through the API, runs on the simulated cluster to
/// `succeeded`; its log stays readable; resubmitting it is idempotent, changing it is a 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_task_runs_to_success_and_resubmission_is_idempotent() -> Result<()> {
    let h = Harness::start().await?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let task = std::fs::read_to_string(root.join("examples/druid/tasks/index-parallel.json"))?;
    let id = "index_parallel_wikipedia_kfjdnkeh_2026-11-23T10:15:02.117Z";
    let (status, body) = h.call(Method::POST, "/v1/tasks", &task).await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["created"], true);
    assert_eq!(body["task"]["id"], id);

    let (status, body) = h.call(Method::POST, "/v1/tasks", &task).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["created"], false);

    let changed = task.replace(
        "\"maxNumConcurrentSubTasks\": 1",
        "\"maxNumConcurrentSubTasks\": 2",
    );
    assert_ne!(changed, task);
    let (status, body) = h.call(Method::POST, "/v1/tasks", &changed).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(field_of(&body), "id");

    let done = tokio::time::timeout(Duration::from_secs(60), h.store().wait_until_terminal(id))
        .await
        .context("the task did not end within 60 s")??;
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}");
    let (status, body) = h.call(Method::GET, &format!("/v1/tasks/{id}"), "").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["task"]["state"], "succeeded");
    assert!(body["task"]["jobName"].as_str().is_some(), "{body}");
    let states: Vec<&str> = body["history"]
        .as_array()
        .context("history")?
        .iter()
        .filter_map(|h| h["to"].as_str())
        .collect();
    assert_eq!(states.first(), Some(&"pending"));
    assert_eq!(states.last(), Some(&"succeeded"));
    let (status, log) = h
        .call(Method::GET, &format!("/v1/tasks/{id}/log"), "")
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !log.as_str().unwrap_or("").is_empty(),
        "the pod's log is kept: {log}"
    );
    h.stop().await;
    Ok(())
}
