//! Structured logging: with the binary's own set-up in JSON mode (`taskpod::cli::logging`),
//! every line about a task — the API's submit, the adapter's own log lines, the Job's creation,
//! what the watchers saw and the task's end — is one JSON object carrying the task's id in its
//! span (`span.task_id`), and lines about two tasks running at once never mix their ids.
//!
//! This binary installs the process-wide subscriber, so it holds this one test only.

mod ops;
mod runner;

use std::io::Write;
use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use runner::{eventually, task, wait_state, wait_terminal};
use serde_json::Value;
use taskpod::api::ApiState;
use taskpod::cli::logging::{self, LogFormat};
use taskpod::store::TaskState;
use tracing_subscriber::fmt::MakeWriter;

/// Log lines written to memory.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;

    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

impl Buffer {
    /// Every line so far, parsed (panics on a line that is not a JSON object).
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8(bytes)
            .expect("UTF-8 log")
            .lines()
            .map(|line| {
                let value: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
                assert!(value.is_object(), "{line}");
                value
            })
            .collect()
    }
}

fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

fn task_id(line: &Value) -> Option<&str> {
    line["span"]["task_id"].as_str()
}

/// The messages of the lines whose span carries task `id`.
fn messages_of(lines: &[Value], id: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|l| task_id(l) == Some(id))
        .map(|l| message(l).to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_carry_the_task_id_from_api_to_adapter_to_watcher() {
    let buffer = Buffer::default();
    logging::init("taskpod=info", LogFormat::Json, buffer.clone()).expect("logging set up");
    let env = ops::env("k8sJobLaunchTimeout: 30s").await;
    let store = env.store();
    let runner = env.runner(store.clone()).await;
    let state = ApiState::new(runner.clone());

    // Through the API: the hostile adapter in a mode that logs three lines, then shapes a Job.
    let (status, body) = ops::call(
        &state,
        Method::POST,
        "/v1/tasks",
        r#"{"id": "logged-1", "type": "hostile", "payload": {"mode": "log-flood", "count": 3}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    runner
        .submit(task("other-1", "index"))
        .await
        .expect("submit");
    let logged = wait_terminal(&store, "logged-1", 20).await;
    assert_eq!(logged.state, TaskState::Succeeded, "{:?}", logged.reason);
    wait_state(&store, "other-1", 20, |s| s.is_terminal()).await;
    eventually(10, "both tasks' end logged", || async {
        let lines = buffer.lines();
        ["logged-1", "other-1"]
            .iter()
            .all(|id| messages_of(&lines, id).iter().any(|m| m == "task ended"))
    })
    .await;
    runner.shutdown().await;

    let lines = buffer.lines();
    let logged = messages_of(&lines, "logged-1");
    for expected in [
        "task submitted",
        "hostile log message 0",
        "hostile log message 2",
        "Job created",
        "task ended",
    ] {
        assert!(
            logged.iter().any(|m| m == expected),
            "no `{expected}` line with task_id logged-1; its lines: {logged:?}"
        );
    }
    let adapter_line = lines
        .iter()
        .find(|l| message(l) == "hostile log message 0")
        .expect("the adapter's line");
    assert_eq!(adapter_line["span"]["name"], "task");
    assert_eq!(adapter_line["fields"]["adapter"], "hostile");
    let ended = lines
        .iter()
        .find(|l| task_id(l) == Some("logged-1") && message(l) == "task ended")
        .expect("end line");
    assert_eq!(ended["fields"]["state"], "succeeded");
    assert_eq!(ended["level"], "INFO");
    assert!(ended["timestamp"].is_string() && ended["target"].is_string());

    let other = messages_of(&lines, "other-1");
    assert!(
        other.iter().any(|m| m == "Job created") && !other.iter().any(|m| m.starts_with("hostile")),
        "other-1's lines are its own: {other:?}"
    );
    // Every line that names a task in its fields is inside that task's span.
    for line in &lines {
        if let Some(named) = line["fields"]["task"].as_str() {
            assert_eq!(
                task_id(line),
                Some(named),
                "line outside its task's span: {line}"
            );
        }
    }
}
