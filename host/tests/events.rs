//! Kubernetes Events on the Jobs taskpod creates, read back from the simulated cluster the way
//! `kubectl describe job` finds them (events.k8s.io/v1, `regarding` = the Job, by name and uid):
//! the adapter that shaped the Job with its version and digest, the scheduler's reason for a
//! launch timeout, a cancel, and a policy refusal (the hostile guest asking for a privileged pod)
//! regarding the Job that was never created.

mod ops;
mod runner;

use ::kube::api::{Api, ListParams};
use http::{Method, StatusCode};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use runner::{Env, eventually, task, wait_state, wait_terminal};
use taskpod::api::ApiState;
use taskpod::events::{REPORTING_CONTROLLER, reason};
use taskpod::runner::CancelMode;
use taskpod::store::{ReasonCode, TaskState};
use taskpod::task::SubmittedTask;

/// The Events regarding Job `name`.
async fn events_of(env: &Env, name: &str) -> Vec<Event> {
    Api::<Event>::namespaced(env.sim.client(), "default")
        .list(&ListParams::default().fields(&format!("regarding.name={name}")))
        .await
        .expect("list Events")
        .items
}

/// Waits (bounded) for an Event with `reason` regarding Job `name` and returns it.
async fn wait_event(env: &Env, name: &str, reason: &str) -> Event {
    eventually(10, &format!("Event {reason} on Job {name}"), || async {
        events_of(env, name)
            .await
            .iter()
            .any(|e| e.reason.as_deref() == Some(reason))
    })
    .await;
    events_of(env, name)
        .await
        .into_iter()
        .find(|e| e.reason.as_deref() == Some(reason))
        .expect("the Event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_carry_events_that_explain_what_taskpod_did() {
    let env = ops::env("k8sJobLaunchTimeout: 1500ms").await;
    let store = env.store();
    let runner = env.runner(store.clone()).await;
    let state = ApiState::new(runner.clone());

    // The adapter that shaped the Job: binding, adapter name, version and digest, on the Job's uid.
    runner.submit(task("ok-1", "index")).await.expect("submit");
    let done = wait_terminal(&store, "ok-1", 20).await;
    assert_eq!(done.state, TaskState::Succeeded);
    let job_name = done.job_name.clone().expect("job name");
    let job = Api::<Job>::namespaced(env.sim.client(), "default")
        .get(&job_name)
        .await
        .expect("the Job is kept until its TTL");
    let adapted = wait_event(&env, &job_name, reason::ADAPTED).await;
    let adapter = done.adapter.clone().expect("the task names its adapter");
    let note = adapted.note.clone().unwrap_or_default();
    assert_eq!(adapted.type_.as_deref(), Some("Normal"));
    assert!(note.contains("`tpl`"), "binding named: {note}");
    assert!(
        note.contains(&format!("{}@{}", adapter.name, adapter.version)),
        "adapter and version: {note}"
    );
    assert!(note.contains(&adapter.digest), "digest: {note}");
    assert!(adapter.digest.starts_with("sha256:"));
    let regarding = adapted.regarding.clone().expect("regarding");
    assert_eq!(regarding.kind.as_deref(), Some("Job"));
    assert_eq!(regarding.api_version.as_deref(), Some("batch/v1"));
    assert_eq!(regarding.namespace.as_deref(), Some("default"));
    assert_eq!(regarding.uid, job.metadata.uid, "the Event is on this Job");
    assert_eq!(
        adapted.reporting_controller.as_deref(),
        Some(REPORTING_CONTROLLER)
    );
    assert!(adapted.event_time.is_some() && adapted.action.is_some());
    let (status, body) = ops::call(&state, Method::GET, "/v1/tasks/ok-1", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(&job_name), "{body}");

    // A pod that never starts: the launch timeout's Warning carries the scheduler's reason.
    runner
        .submit(task("stuck-1", "stuck"))
        .await
        .expect("submit");
    let stuck = wait_terminal(&store, "stuck-1", 20).await;
    let stuck_job = stuck.job_name.clone().expect("job name");
    let timeout = wait_event(&env, &stuck_job, reason::LAUNCH_TIMEOUT).await;
    let note = timeout.note.clone().unwrap_or_default();
    assert_eq!(timeout.type_.as_deref(), Some("Warning"));
    assert!(
        note.contains("launch timeout")
            && (note.contains("Unschedulable") || note.contains("FailedScheduling")),
        "the scheduler's reason: {note}"
    );
    assert_eq!(
        note.trim_end_matches("; deleting the Job"),
        stuck.reason.expect("reason").message,
        "the Event says what the task's reason says"
    );
    assert!(
        timeout.regarding.and_then(|r| r.uid).is_some(),
        "the Job existed: the Event names its uid"
    );

    // A cancel.
    runner.submit(task("long-1", "long")).await.expect("submit");
    let running = wait_state(&store, "long-1", 20, |s| s == TaskState::Running).await;
    runner
        .cancel("long-1", CancelMode::Graceful)
        .await
        .expect("cancel");
    let canceled = wait_event(&env, &running.job_name.expect("job name"), reason::CANCELED).await;
    assert!(
        canceled
            .note
            .unwrap_or_default()
            .contains("canceled by user"),
        "who canceled"
    );

    // A policy refusal happens before any Job exists: the Event regards the Job that would
    // have been created, without a uid, and names the rule and the field path.
    runner
        .submit(
            SubmittedTask::parse(
                r#"{"id": "refused-1", "type": "hostile", "payload": {"mode": "privileged"}}"#,
            )
            .expect("task"),
        )
        .await
        .expect("submit");
    let refused_task = wait_terminal(&store, "refused-1", 20).await;
    assert_eq!(
        refused_task.reason.as_ref().map(|r| r.code),
        Some(ReasonCode::Policy)
    );
    let would_be = taskpod_adapter_sdk::names::job_name("refused-1");
    let refused = wait_event(&env, &would_be, reason::POLICY_REFUSED).await;
    assert_eq!(refused.type_.as_deref(), Some("Warning"));
    let note = refused.note.unwrap_or_default();
    assert!(
        note.contains("adapter hostile") && note.contains("securityContext.privileged"),
        "{note}"
    );
    assert_eq!(refused.regarding.and_then(|r| r.uid), None);
    assert!(
        Api::<Job>::namespaced(env.sim.client(), "default")
            .get_opt(&would_be)
            .await
            .expect("get")
            .is_none(),
        "the refused Job was never created"
    );
    runner.shutdown().await;
}
