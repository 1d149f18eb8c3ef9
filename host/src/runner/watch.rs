//! The two watch streams (Jobs, Pods) of this instance and what their events change.
//!
//! Each is kube-runtime's `watcher` (list, then watch from the list's resourceVersion, resumed
//! after a dropped connection, relisted on 410 Gone, with backoff), label-selected by
//! `taskpod.dev/instance`. Events are handled in order by one loop per kind; anything that writes
//! to the store or the API runs in a spawned task so one slow write never holds the stream.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ::kube::runtime::watcher::Event;
use ::kube::runtime::{WatchStreamExt, watcher};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;

use super::{Inner, logs, status};
use crate::contract::ANNOTATION_TASK_ID;
use crate::kube::Kube;
use crate::store::{ReasonCode, TaskState};

fn config(inner: &Inner) -> watcher::Config {
    watcher::Config::default().labels(&Kube::instance_selector(&inner.config.instance))
}

/// Follows this instance's Jobs: terminal conditions end tasks; a Job gone (deleted, or absent
/// from a relist) ends its task as failed with `job-deleted`.
pub(super) async fn watch_jobs(inner: Arc<Inner>) {
    let stream = watcher(inner.kube.jobs(), config(&inner)).default_backoff();
    futures::pin_mut!(stream);
    let mut relist_started = Instant::now();
    let mut seen: HashSet<String> = HashSet::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => {
                relist_started = Instant::now();
                seen.clear();
            }
            Ok(Event::InitApply(job)) => {
                if let Some(name) = job.metadata.name.clone() {
                    seen.insert(name);
                }
                on_job(&inner, &job);
            }
            Ok(Event::InitDone) => {
                let gone: Vec<(String, String)> = {
                    let tracking = inner.lock();
                    tracking
                        .tasks
                        .iter()
                        .filter(|(_, t)| {
                            !t.finishing
                                && !seen.contains(&t.job_name)
                                && t.confirmed.is_some_and(|at| at < relist_started)
                        })
                        .map(|(id, t)| (id.clone(), t.job_name.clone()))
                        .collect()
                };
                for (id, job) in gone {
                    job_deleted(&inner, id, job);
                }
                seen = HashSet::new();
                inner.jobs_synced.store(true, Ordering::SeqCst);
            }
            Ok(Event::Apply(job)) => on_job(&inner, &job),
            Ok(Event::Delete(job)) => {
                let name = job.metadata.name.clone().unwrap_or_default();
                let id = {
                    let tracking = inner.lock();
                    tracking
                        .jobs
                        .get(&name)
                        .filter(|id| tracking.tasks.get(*id).is_some_and(|t| !t.finishing))
                        .cloned()
                };
                if let Some(id) = id {
                    match status::job_outcome(&job) {
                        Some(outcome) => finish(&inner, id, outcome, false),
                        None => job_deleted(&inner, id, name),
                    }
                }
            }
            Err(error) => {
                interrupted(&inner, "jobs", &error);
                tracing::warn!(%error, "Job watch interrupted; resuming")
            }
        }
    }
}

/// Counts an interrupted watch (`kind`: `jobs`, `pods` or `deployments`) and the API error
/// behind it.
pub(super) fn interrupted(inner: &Inner, kind: &str, error: &watcher::Error) {
    inner.metrics.watch_restarted(kind);
    let (verb, code) = match error {
        watcher::Error::InitialListFailed(e) => ("list", api_code(e)),
        watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            ("watch", api_code(e))
        }
        watcher::Error::WatchError(status) => ("watch", Some(status.code)),
        _ => ("watch", None),
    };
    inner.metrics.kube_error(verb, kind, code);
}

fn api_code(error: &::kube::Error) -> Option<u16> {
    match error {
        ::kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

fn job_deleted(inner: &Arc<Inner>, id: String, job: String) {
    finish(
        inner,
        id,
        status::Outcome {
            succeeded: false,
            code: ReasonCode::JobDeleted,
            message: format!("Job {job} was deleted outside taskpod"),
            exit_code: None,
        },
        false,
    );
}

fn finish(inner: &Arc<Inner>, id: String, outcome: status::Outcome, delete_job: bool) {
    let worker = Arc::clone(inner);
    inner.spawn(async move { worker.finish(&id, outcome, delete_job).await });
}

fn on_job(inner: &Arc<Inner>, job: &Job) {
    let Some(outcome) = status::job_outcome(job) else {
        return;
    };
    let name = job.metadata.name.clone().unwrap_or_default();
    let id = {
        let tracking = inner.lock();
        tracking.jobs.get(&name).cloned().or_else(|| {
            job.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_TASK_ID))
                .filter(|id| tracking.tasks.contains_key(*id))
                .cloned()
        })
    };
    let Some(id) = id else { return };
    // A failed Job: `finish` reads the pod's terminated state, which says more (exit code,
    // OOMKilled).
    let delete = outcome.code == ReasonCode::MaxDuration;
    finish(inner, id, outcome, delete);
}

/// Follows this instance's pods: start, end, why not started, deleted outside.
pub(super) async fn watch_pods(inner: Arc<Inner>) {
    let stream = watcher(inner.kube.pods(), config(&inner)).default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => {}
            Ok(Event::InitApply(pod) | Event::Apply(pod)) => on_pod(&inner, &pod),
            Ok(Event::InitDone) => inner.pods_synced.store(true, Ordering::SeqCst),
            Ok(Event::Delete(pod)) => on_pod_deleted(&inner, &pod),
            Err(error) => {
                interrupted(&inner, "pods", &error);
                tracing::warn!(%error, "Pod watch interrupted; resuming")
            }
        }
    }
}

fn job_of(pod: &Pod) -> Option<String> {
    let labels = pod.metadata.labels.as_ref()?;
    labels
        .get("batch.kubernetes.io/job-name")
        .or_else(|| labels.get("job-name"))
        .cloned()
}

/// How coarse Kubernetes' timestamps are (`status.startTime` and the like: whole seconds).
const START_TIME_GRANULARITY: Duration = Duration::from_secs(1);

/// Reads a pod's failure against the task's maximum duration, the pod's task having run `ran`
/// since its launch: `activeDeadlineSeconds` kills the pod, so a failure past the maximum is
/// the maximum duration, not an exit code. Kubernetes counts the deadline from the Job's
/// `status.startTime`, kept in whole seconds, so it may end the pod up to a second before the
/// runner's own count reaches the maximum: a failure that close to it is left to the Job's
/// condition, which follows (`DeadlineExceeded`, or the backoff limit for a failure of the
/// pod's own), and `outcome` is cleared. True when it was.
fn against_deadline(outcome: &mut Option<status::Outcome>, ran: Duration, max: Duration) -> bool {
    let Some(failed) = outcome.as_mut().filter(|o| !o.succeeded) else {
        return false;
    };
    if ran >= max {
        failed.code = ReasonCode::MaxDuration;
        failed.message = format!(
            "the task ran longer than its maximum duration ({}s); {}",
            max.as_secs_f64(),
            failed.message
        );
        false
    } else if ran + START_TIME_GRANULARITY >= max {
        *outcome = None;
        true
    } else {
        false
    }
}

fn on_pod(inner: &Arc<Inner>, pod: &Pod) {
    let Some(job) = job_of(pod) else { return };
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut view = status::pod_view(pod, inner.config.runner.main_container.as_deref());
    if !status::pod_ends_task(pod) {
        // One of several pods, or restarted in place: the Job's condition ends the task.
        view.outcome = None;
    }
    let mut mark_running = None;
    let mut follow = None;
    let max_duration = inner.config.runner.max_task_duration.0;
    let id = {
        let mut tracking = inner.lock();
        let Some(id) = tracking.jobs.get(&job).cloned() else {
            return;
        };
        let Some(t) = tracking.tasks.get_mut(&id) else {
            return;
        };
        if t.finishing {
            return;
        }
        t.pod = Some(name.clone());
        let deferred = against_deadline(&mut view.outcome, t.launched.elapsed(), max_duration);
        t.main_container = Some(view.main_container.clone());
        t.restarts = status::restart_count(pod, &view.main_container);
        if view.waiting.is_some() {
            t.waiting = view.waiting.clone();
        }
        if view.started {
            if t.started.is_none() {
                t.started = Some(Instant::now());
            }
            if t.state == TaskState::Launching {
                mark_running = Some(id.clone());
            }
            if view.outcome.is_none()
                && !deferred
                && t.follower.as_ref().is_none_or(|f| f.is_finished())
            {
                follow = Some((id.clone(), view.main_container.clone(), t.restarts));
            }
        }
        id
    };
    if let Some(outcome) = view.outcome {
        let delete = outcome.code == ReasonCode::MaxDuration;
        finish(inner, id, outcome, delete);
        return;
    }
    if let Some(id) = mark_running {
        let worker = Arc::clone(inner);
        inner.spawn(async move { worker.mark_running(&id).await });
    }
    if let Some((id, container, restarts)) = follow {
        logs::follow(inner, &id, &name, &container, restarts);
    }
}

fn on_pod_deleted(inner: &Arc<Inner>, pod: &Pod) {
    let Some(job) = job_of(pod) else { return };
    if !status::pod_ends_task(pod) {
        // The Job controller replaces it or counts it; the Job's condition ends the task.
        return;
    }
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut view = status::pod_view(pod, inner.config.runner.main_container.as_deref());
    let max_duration = inner.config.runner.max_task_duration.0;
    let id = {
        let tracking = inner.lock();
        let Some(id) = tracking.jobs.get(&job).cloned() else {
            return;
        };
        match tracking.tasks.get(&id) {
            Some(t) if !t.finishing && t.pod.as_deref().is_none_or(|p| p == name) => {
                if against_deadline(&mut view.outcome, t.launched.elapsed(), max_duration) {
                    return;
                }
                id
            }
            _ => return,
        }
    };
    let outcome = view.outcome.unwrap_or_else(|| status::Outcome {
        succeeded: false,
        code: ReasonCode::PodDeleted,
        message: format!("pod {name} was deleted outside taskpod before its task ended"),
        exit_code: None,
    });
    let delete = outcome.code == ReasonCode::PodDeleted;
    finish(inner, id, outcome, delete);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Option<status::Outcome> {
        Some(status::Outcome {
            succeeded: false,
            code: ReasonCode::ExitCode,
            message: "main container `main` exited with code 143 (Error)".to_owned(),
            exit_code: Some(143),
        })
    }

    #[test]
    fn a_pod_failing_at_its_deadline_is_the_max_duration_or_left_to_the_job() {
        let max = Duration::from_secs(60);
        // Past the maximum: the deadline killed it.
        let mut outcome = failed();
        assert!(!against_deadline(&mut outcome, max, max));
        let outcome = outcome.expect("kept");
        assert_eq!(outcome.code, ReasonCode::MaxDuration);
        assert!(
            outcome.message.contains("maximum duration (60s)"),
            "{}",
            outcome.message
        );
        assert!(outcome.message.contains("code 143"), "{}", outcome.message);
        // Within the second Kubernetes' whole-second start time may take off: the Job says.
        let mut outcome = failed();
        assert!(against_deadline(
            &mut outcome,
            max - Duration::from_millis(400),
            max
        ));
        assert_eq!(outcome, None);
        // Well before: the pod's own failure.
        let mut outcome = failed();
        assert!(!against_deadline(
            &mut outcome,
            Duration::from_secs(30),
            max
        ));
        assert_eq!(outcome.map(|o| o.code), Some(ReasonCode::ExitCode));
        // A success is a success, whenever it comes.
        let mut outcome = failed().map(|o| status::Outcome {
            succeeded: true,
            code: ReasonCode::Completed,
            ..o
        });
        assert!(!against_deadline(
            &mut outcome,
            max - Duration::from_millis(400),
            max
        ));
        assert_eq!(outcome.map(|o| o.code), Some(ReasonCode::Completed));
    }
}
