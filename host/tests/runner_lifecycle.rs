//! The runner end to end against the in-process simulated cluster: success with logs after the
//! pod is gone, failure with exit code, OOM, launch timeout with the scheduler's reason, max
//! duration, cancel, TTL and the reaper, debugJobs, a Job deleted outside, and restore after a
//! restart on the same store.

mod runner;

use std::time::Duration;

use ::kube::api::{Api, DeleteParams, ListParams};
use k8s_openapi::api::batch::v1::Job;
use runner::{Env, eventually, task, wait_state, wait_terminal};
use taskpod::runner::{CancelMode, RunnerError};
use taskpod::store::{ReasonCode, TaskState};

fn jobs(env: &Env) -> Api<Job> {
    Api::namespaced(env.sim.client(), "default")
}

async fn job_count(env: &Env) -> usize {
    jobs(env)
        .list(&ListParams::default().labels("taskpod.dev/instance=test"))
        .await
        .expect("list Jobs")
        .items
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_keeps_the_log_after_the_pod_is_gone() {
    let env = Env::start("taskCleanupDelay: 1s\ntaskCleanupInterval: 1h").await;
    let store = env.store();
    let runner = env.runner(store.clone()).await;
    let submitted = runner.submit(task("ok-1", "index")).await.expect("submit");
    assert!(submitted.created);
    let again = runner
        .submit(task("ok-1", "index"))
        .await
        .expect("resubmit");
    assert!(
        !again.created,
        "the same document again is the existing task"
    );
    let done = wait_terminal(&store, "ok-1", 20).await;
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}");
    assert_eq!(done.exit_code, Some(0));
    let history: Vec<TaskState> = store
        .history("ok-1")
        .await
        .expect("history")
        .into_iter()
        .map(|h| h.to)
        .collect();
    assert!(history.contains(&TaskState::Running), "{history:?}");
    // The TTL controller removes the Job (ttlSecondsAfterFinished = 1) and its pod.
    eventually(15, "Job removed after its TTL", || async {
        job_count(&env).await == 0
    })
    .await;
    let log = store.read_log("ok-1", 0, 1 << 20).await.expect("log");
    let text = String::from_utf8_lossy(&log.data).to_string();
    assert!(text.contains("hello from the task"), "{text:?}");
    assert!(text.contains("done"), "{text:?}");
    assert_eq!(
        text.matches("hello from the task").count(),
        1,
        "the log is stored once: {text:?}"
    );
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_carry_exit_code_and_reason() {
    let env = Env::start("debugJobs: true").await;
    let store = env.store();
    let runner = env.runner(store.clone()).await;
    runner.submit(task("bad-1", "fail")).await.expect("submit");
    runner.submit(task("oom-1", "oom")).await.expect("submit");
    let bad = wait_terminal(&store, "bad-1", 20).await;
    assert_eq!(bad.state, TaskState::Failed);
    assert_eq!(bad.exit_code, Some(3));
    assert_eq!(
        bad.reason.as_ref().map(|r| r.code),
        Some(ReasonCode::ExitCode)
    );
    let log = store.read_log("bad-1", 0, 1 << 20).await.expect("log");
    assert!(String::from_utf8_lossy(&log.data).contains("about to fail"));
    let oom = wait_terminal(&store, "oom-1", 20).await;
    assert_eq!(
        oom.reason.as_ref().map(|r| r.code),
        Some(ReasonCode::OomKilled)
    );
    assert_eq!(oom.exit_code, Some(137));
    // debugJobs keeps the Jobs, also through a reaper pass.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(job_count(&env).await, 2);
    let unknown = runner.submit(task("x", "index")).await;
    assert!(unknown.is_ok());
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_timeout_reports_the_schedulers_reason() {
    let env = Env::start("k8sJobLaunchTimeout: 1500ms").await;
    let store = env.store();
    let runner = env.runner(store.clone()).await;
    runner
        .submit(task("stuck-1", "stuck"))
        .await
        .expect("submit");
    let done = wait_terminal(&store, "stuck-1", 20).await;
    let reason = done.reason.expect("reason");
    assert_eq!(done.state, TaskState::Failed);
    assert_eq!(reason.code, ReasonCode::LaunchTimeout);
    assert!(
        reason.message.contains("Unschedulable") || reason.message.contains("FailedScheduling"),
        "the scheduler's reason is kept: {}",
        reason.message
    );
    eventually(10, "timed-out Job deleted", || async {
        job_count(&env).await == 0
    })
    .await;
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_duration_kills_the_task() {
    let env = Env::start("maxTaskDuration: 2s").await;
    let store = env.store();
    let runner = env.runner(store.clone()).await;
    runner.submit(task("long-1", "long")).await.expect("submit");
    let done = wait_terminal(&store, "long-1", 20).await;
    assert_eq!(done.state, TaskState::Failed);
    assert_eq!(
        done.reason.clone().map(|r| r.code),
        Some(ReasonCode::MaxDuration),
        "{:?}",
        done.reason
    );
    eventually(10, "overdue Job deleted", || async {
        job_count(&env).await == 0
    })
    .await;
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_deletes_the_job() {
    let env = Env::start("").await;
    let store = env.store();
    let runner = env.runner(store.clone()).await;
    runner.submit(task("long-2", "long")).await.expect("submit");
    wait_state(&store, "long-2", 20, |s| s == TaskState::Running).await;
    // The live follower stores log lines while the task runs.
    eventually(10, "live log stored", || async {
        store
            .read_log("long-2", 0, 1 << 20)
            .await
            .is_ok_and(|l| !l.data.is_empty())
    })
    .await;
    let canceled = runner
        .cancel("long-2", CancelMode::Force)
        .await
        .expect("cancel");
    assert_eq!(canceled.state, TaskState::Canceled);
    assert!(matches!(
        runner.cancel("long-2", CancelMode::Graceful).await,
        Err(RunnerError::Conflict { .. })
    ));
    assert!(matches!(
        runner.cancel("nope", CancelMode::Graceful).await,
        Err(RunnerError::NotFound { .. })
    ));
    eventually(10, "canceled Job deleted", || async {
        job_count(&env).await == 0
    })
    .await;
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_deleted_outside_fails_the_task() {
    let env = Env::start("").await;
    let store = env.store();
    let runner = env.runner(store.clone()).await;
    runner.submit(task("long-3", "long")).await.expect("submit");
    let running = wait_state(&store, "long-3", 20, |s| s == TaskState::Running).await;
    let name = running.job_name.expect("job name");
    jobs(&env)
        .delete(&name, &DeleteParams::background())
        .await
        .expect("delete");
    let done = wait_terminal(&store, "long-3", 20).await;
    assert_eq!(done.state, TaskState::Failed);
    let code = done.reason.map(|r| r.code);
    assert!(
        matches!(code, Some(ReasonCode::JobDeleted | ReasonCode::PodDeleted)),
        "{code:?}"
    );
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaper_removes_jobs_past_a_shortened_cleanup_delay() {
    // Created with a 1 h cleanup delay, the Job's own TTL keeps it; after a restart with a
    // 1 s delay only the reaper can remove it.
    let env = Env::start("taskCleanupDelay: 1h").await;
    let store = env.store();
    let runner = env.runner(store.clone()).await;
    runner
        .submit(task("reap-1", "index"))
        .await
        .expect("submit");
    wait_terminal(&store, "reap-1", 20).await;
    runner.shutdown().await;
    assert_eq!(job_count(&env).await, 1);
    let mut config = (*env.config).clone();
    config.runner.task_cleanup_delay.0 = Duration::from_secs(1);
    config.runner.task_cleanup_interval.0 = Duration::from_millis(300);
    let runner =
        taskpod::runner::Runner::start(std::sync::Arc::new(config), store, env.sim.client())
            .await
            .expect("runner");
    eventually(15, "reaper deleted the Job", || async {
        job_count(&env).await == 0
    })
    .await;
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_after_restart_loses_nothing_and_creates_nothing_twice() {
    let env = Env::start("capacity: 2").await;
    let store = env.store();
    let runner = env.runner(store.clone()).await;
    runner.set_capacity(3).await.expect("capacity");
    for i in 0..8 {
        runner
            .submit(task(&format!("r-{i}"), "index"))
            .await
            .expect("submit");
    }
    wait_state(&store, "r-0", 20, |s| s != TaskState::Pending).await;
    runner.shutdown().await;
    // A new runner on the same store finishes everything; capacity survives the restart.
    let runner = env.runner(store.clone()).await;
    assert_eq!(runner.capacity(), 3);
    for i in 0..8 {
        let done = wait_terminal(&store, &format!("r-{i}"), 30).await;
        assert_eq!(done.state, TaskState::Succeeded, "{done:?}");
    }
    let counters = env.sim.counters();
    assert_eq!(
        counters.max_creates_per_name("Job"),
        1,
        "no Job created twice"
    );
    assert_eq!(counters.distinct_creates("Job"), 8);
    runner.shutdown().await;
}
