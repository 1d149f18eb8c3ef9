//! Migration routing (Druid's `k8sAndWorker`) end to end: tasks routed to a worker runner are
//! POSTed to it instead of becoming Jobs and end as the runner reports, other tasks still run as
//! Jobs on the simulated cluster, an unreachable runner fails the task with a clear reason, and a
//! forwarded task survives a host restart. The worker runner is a small HTTP server speaking
//! Druid's overlord task API on 127.0.0.1.

#[allow(dead_code)] // shared helpers; this suite starts its runners itself
mod runner;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::kube::api::{Api, ListParams};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use k8s_openapi::api::batch::v1::Job;
use runner::{Env, task, wait_state, wait_terminal};
use serde_json::{Value, json};
use taskpod::config::Config;
use taskpod::runner::Runner;
use taskpod::store::{ReasonCode, TaskState};

/// A Druid overlord's task API: accepts tasks, reports RUNNING twice then SUCCESS (FAILED for
/// ids containing "fails"; RUNNING while `hold` is set for ids containing "held").
#[derive(Default)]
struct Overlord {
    tasks: Mutex<HashMap<String, (Value, u32)>>,
    hold: AtomicBool,
}

async fn accept(State(o): State<Arc<Overlord>>, Json(task): Json<Value>) -> (StatusCode, String) {
    let id = task["id"].as_str().unwrap_or_default().to_owned();
    let mut tasks = o.tasks.lock().unwrap();
    if tasks.contains_key(&id) {
        return (
            StatusCode::BAD_REQUEST,
            format!("{{\"error\": \"Task[{id}] already exists!\"}}"),
        );
    }
    tasks.insert(id.clone(), (task, 0));
    (StatusCode::OK, json!({ "task": id }).to_string())
}

async fn status(
    State(o): State<Arc<Overlord>>,
    Path(id): Path<String>,
) -> (StatusCode, Json<Value>) {
    let mut tasks = o.tasks.lock().unwrap();
    let Some((_, polls)) = tasks.get_mut(&id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such task"})),
        );
    };
    *polls += 1;
    let code = if id.contains("fails") {
        "FAILED"
    } else if *polls <= 2 || (id.contains("held") && o.hold.load(Ordering::SeqCst)) {
        "RUNNING"
    } else {
        "SUCCESS"
    };
    let mut inner = json!({"id": id, "status": code, "statusCode": code});
    if code == "FAILED" {
        inner["errorMsg"] = json!("segment allocation failed");
    }
    (StatusCode::OK, Json(json!({"task": id, "status": inner})))
}

async fn overlord() -> (String, Arc<Overlord>) {
    let state = Arc::new(Overlord::default());
    let app = Router::new()
        .route("/druid/indexer/v1/task", post(accept))
        .route("/druid/indexer/v1/task/{id}/status", get(status))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), state)
}

/// A raw Druid task (the whole document is what a worker runner receives).
fn druid_task(id: &str, kind: &str) -> taskpod::task::SubmittedTask {
    taskpod::task::SubmittedTask::parse(&format!(
        r#"{{"id": "{id}", "type": "{kind}", "dataSource": "wiki", "spec": {{}}}}"#
    ))
    .expect("valid Druid task")
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// The runner tests' config with migration routing added.
fn config(env: &Env, base: &str, down: u16) -> Arc<Config> {
    let text = std::fs::read_to_string(env.dir.path().join("taskpod.yaml")).unwrap();
    let routing = format!(
        "routing:\n  default: tpl\n  workers:\n    legacy:\n      url: {base}/druid/indexer/v1/task\n      statusUrl: {base}/druid/indexer/v1/task/{{id}}/status\n      pollInterval: PT0.2S\n    fire-and-forget:\n      url: {base}/druid/indexer/v1/task\n    down:\n      url: http://127.0.0.1:{down}/druid/indexer/v1/task\n      timeout: PT2S\n  toWorker:\n    byType:\n      index_hadoop: legacy\n      kill: fire-and-forget\n      index_down: down\n"
    );
    assert!(text.contains("routing:\n  default: tpl\n"), "{text}");
    let text = text.replace("routing:\n  default: tpl\n", &routing);
    let path = env.dir.path().join("routed.yaml");
    std::fs::write(&path, text).unwrap();
    Arc::new(Config::load(&path).expect("routing config is valid"))
}

async fn start(env: &Env, config: &Arc<Config>) -> Runner {
    let runner = Runner::start(Arc::clone(config), env.store(), env.sim.client())
        .await
        .expect("runner starts");
    for _ in 0..200 {
        if runner.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    runner
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_routed_to_a_worker_runner_are_forwarded_and_end_as_it_reports() {
    let env = Env::start("debugJobs: true").await;
    let (base, overlord) = overlord().await;
    let config = config(&env, &base, closed_port().await);
    let runner = start(&env, &config).await;
    let store = env.store();
    for (id, kind) in [
        ("as-job", "index"),
        ("hadoop-ok", "index_hadoop"),
        ("hadoop-fails", "index_hadoop"),
        ("kill-1", "kill"),
        ("down-1", "index_down"),
    ] {
        let submitted = if kind == "index" {
            task(id, kind)
        } else {
            druid_task(id, kind)
        };
        runner.submit(submitted).await.expect("submit");
    }

    let job = wait_terminal(&store, "as-job", 30).await;
    assert_eq!(job.state, TaskState::Succeeded, "{job:?}");

    let ok = wait_terminal(&store, "hadoop-ok", 30).await;
    assert_eq!(ok.state, TaskState::Succeeded, "{ok:?}");
    let reason = ok.reason.clone().unwrap();
    assert_eq!(reason.code, ReasonCode::Completed);
    assert!(
        reason.message.contains("`legacy` reported SUCCESS"),
        "{reason:?}"
    );
    assert_eq!(
        ok.adapter.as_ref().map(|a| a.name.as_str()),
        Some("worker/legacy")
    );
    let history: Vec<TaskState> = store
        .history("hadoop-ok")
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.to)
        .collect();
    assert!(history.contains(&TaskState::Running), "{history:?}");

    let failed = wait_terminal(&store, "hadoop-fails", 30).await;
    assert_eq!(failed.state, TaskState::Failed);
    let reason = failed.reason.unwrap();
    assert_eq!(reason.code, ReasonCode::WorkerFailed);
    assert!(
        reason.message.contains("segment allocation failed"),
        "{reason:?}"
    );

    let kill = wait_terminal(&store, "kill-1", 30).await;
    assert_eq!(kill.state, TaskState::Succeeded, "{kill:?}");
    assert!(
        kill.reason.unwrap().message.contains("no statusUrl"),
        "a runner without status URL: handed over"
    );

    let down = wait_terminal(&store, "down-1", 30).await;
    assert_eq!(down.state, TaskState::Failed);
    let reason = down.reason.unwrap();
    assert_eq!(reason.code, ReasonCode::LaunchError);
    assert!(
        reason
            .message
            .contains("worker runner `down` did not take the task"),
        "{reason:?}"
    );

    // The runner got the task documents; only the Kubernetes task became a Job.
    {
        let tasks = overlord.tasks.lock().unwrap();
        assert_eq!(tasks["hadoop-ok"].0["dataSource"], "wiki");
        assert!(tasks.contains_key("kill-1"));
        assert!(!tasks.contains_key("as-job"));
    }
    let jobs: Vec<String> = Api::<Job>::namespaced(env.sim.client(), "default")
        .list(&ListParams::default().labels("taskpod.dev/instance=test"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|j| {
            j.metadata
                .annotations
                .and_then(|a| a.get("taskpod.dev/task-id").cloned())
        })
        .collect();
    assert_eq!(jobs, vec!["as-job".to_owned()]);
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_task_is_followed_again_after_a_restart() {
    let env = Env::start("debugJobs: true").await;
    let (base, overlord) = overlord().await;
    overlord.hold.store(true, Ordering::SeqCst);
    let config = config(&env, &base, closed_port().await);
    let runner = start(&env, &config).await;
    let store = env.store();
    runner
        .submit(druid_task("held-1", "index_hadoop"))
        .await
        .expect("submit");
    wait_state(&store, "held-1", 20, |s| s == TaskState::Running).await;
    runner.shutdown().await;

    // Restarted: the task has no Job, and that is not a Job deleted outside taskpod.
    let runner = start(&env, &config).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let still = store.get("held-1").await.unwrap().unwrap();
    assert_eq!(still.state, TaskState::Running, "{still:?}");
    overlord.hold.store(false, Ordering::SeqCst);
    let done = wait_terminal(&store, "held-1", 20).await;
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}");
    assert_eq!(
        overlord.tasks.lock().unwrap().len(),
        1,
        "forwarded once, not again on restart"
    );
    runner.shutdown().await;
}
