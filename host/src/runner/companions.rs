//! Companion objects after launch: the one Deployment watch stream of this instance (label
//! `taskpod.dev/instance`), whose status becomes the task's progress (a Teraslice execution's
//! workers available), and the explicit deletion of a task's companions when the host ends it
//! (cancel, launch timeout, max duration) — not left to the garbage collector alone.

use std::sync::Arc;

use ::kube::runtime::watcher::Event;
use ::kube::runtime::{WatchStreamExt, watcher};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;

use super::Inner;
use crate::contract::LABEL_TASK;
use crate::kube::Kube;

/// What a companion Deployment's status says, for humans: `Deployment NAME: 2/3 available`.
pub fn deployment_progress(deployment: &Deployment) -> String {
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    let desired = deployment.spec.replicas.unwrap_or(1);
    let available = deployment
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    format!("Deployment {name}: {available}/{desired} available")
}

/// Follows this instance's companion Deployments and records their availability as the
/// progress of the task owning them (found by the `taskpod.dev/task` label, the Job's name).
pub(super) async fn watch_deployments(inner: Arc<Inner>) {
    let config =
        watcher::Config::default().labels(&Kube::instance_selector(&inner.config.instance));
    let stream = watcher(inner.kube.deployments(), config).default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::InitApply(d) | Event::Apply(d)) => record(&inner, &d),
            Ok(Event::Init | Event::InitDone | Event::Delete(_)) => {}
            Err(error) => {
                super::watch::interrupted(&inner, "deployments", &error);
                tracing::warn!(%error, "Deployment watch interrupted; resuming")
            }
        }
    }
}

fn record(inner: &Inner, deployment: &Deployment) {
    let Some(job) = deployment
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_TASK))
    else {
        return;
    };
    let mut tracking = inner.lock();
    let Some(id) = tracking.jobs.get(job).cloned() else {
        return;
    };
    if let Some(t) = tracking.tasks.get_mut(&id) {
        t.progress = Some(deployment_progress(deployment));
    }
}

/// Deletes the companions of Job `job` (owned by this instance), logging what could not be
/// deleted: the garbage collector removes them with the Job in any case.
pub(super) async fn delete(inner: &Inner, task: &str, job: &str) {
    if let Err(error) = inner
        .kube
        .delete_companions(&inner.config.instance, job)
        .await
    {
        tracing::warn!(task, %error, "companions not deleted yet; the garbage collector removes them with the Job");
    }
}
