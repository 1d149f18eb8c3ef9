//! The reaper: every `taskCleanupInterval`, deletes this instance's Jobs that are done with.
//!
//! Kubernetes' TTL controller deletes finished Jobs after `ttlSecondsAfterFinished`; the reaper
//! is the host-side guarantee behind it (clusters without the controller, Jobs created before the
//! delay changed) and removes Jobs whose task taskpod already ended (canceled, timed out) when
//! their deletion failed at the time. With `debugJobs` finished Jobs are kept; Jobs of tasks
//! taskpod ended itself are still deleted, since their pods may still run.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;

use crate::runner::status;

/// What one pass decided for a Job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it.
    Keep,
    /// Delete it.
    Delete,
}

/// Decides one Job: `finished_for` is how long ago it finished (`None` while it runs),
/// `task_ended` whether its task is terminal in the store.
pub fn verdict(
    finished_for: Option<Duration>,
    task_ended: bool,
    cleanup_delay: Duration,
    debug_jobs: bool,
) -> Verdict {
    match finished_for {
        Some(age) if !debug_jobs && age >= cleanup_delay => Verdict::Delete,
        Some(_) => Verdict::Keep,
        None if task_ended => Verdict::Delete,
        None => Verdict::Keep,
    }
}

fn finished_for(job: &Job) -> Option<Duration> {
    if !status::job_finished(job) {
        return None;
    }
    let status = job.status.as_ref()?;
    let at = status.completion_time.clone().or_else(|| {
        status
            .conditions
            .as_ref()?
            .iter()
            .filter(|c| c.status == "True")
            .find_map(|c| c.last_transition_time.clone())
    });
    let Some(at) = at else {
        return Some(Duration::ZERO);
    };
    let finished: std::time::SystemTime = at.0.into();
    Some(finished.elapsed().unwrap_or(Duration::ZERO))
}

/// Runs passes every cleanup interval until the runner stops.
pub(crate) async fn run(inner: Arc<crate::runner::Inner>) {
    let interval = inner.config.runner.task_cleanup_interval.0;
    let mut timer = tokio::time::interval(interval.max(Duration::from_millis(100)));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer.tick().await;
    loop {
        timer.tick().await;
        match pass(&inner).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "reaper deleted Jobs"),
            Err(error) => tracing::warn!(%error, "reaper pass failed; next pass retries"),
        }
    }
}

/// One pass: lists the Jobs and deletes those [`verdict`] says to. Returns how many.
pub(crate) async fn pass(inner: &crate::runner::Inner) -> Result<usize, crate::kube::KubeError> {
    let runner = &inner.config.runner;
    let jobs = inner.kube.list_jobs(&inner.config.instance).await?;
    let mut deleted = 0;
    for job in jobs {
        let Some(name) = job.metadata.name.clone() else {
            continue;
        };
        let id = job
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::contract::ANNOTATION_TASK_ID))
            .cloned();
        let task_ended = match &id {
            Some(id) => matches!(inner.store.get(id).await, Ok(Some(r)) if r.state.is_terminal()),
            None => false,
        };
        let decision = verdict(
            finished_for(&job),
            task_ended,
            runner.task_cleanup_delay.0,
            runner.debug_jobs,
        );
        if decision == Verdict::Delete {
            inner.kube.delete_job(&name, false).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let delay = Duration::from_secs(60);
        let old = Some(Duration::from_secs(120));
        let young = Some(Duration::from_secs(1));
        assert_eq!(verdict(old, true, delay, false), Verdict::Delete);
        assert_eq!(verdict(young, true, delay, false), Verdict::Keep);
        assert_eq!(verdict(old, true, delay, true), Verdict::Keep);
        assert_eq!(verdict(None, false, delay, false), Verdict::Keep);
        assert_eq!(verdict(None, true, delay, true), Verdict::Delete);
    }
}
