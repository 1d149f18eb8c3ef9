//! The TTL-after-finished controller: deletes a finished Job (`Complete` or `Failed`)
//! `ttlSecondsAfterFinished` seconds after it finished, with `propagationPolicy: Background`
//! and a uid precondition, as kube-controller-manager's `ttl-after-finished-controller` does.
//! The finish time is `status.completionTime`, else the `Complete`/`Failed` condition's
//! `lastTransitionTime`. Each Job waits in the queue's timer wheel, not in a task of its own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::cache::{Change, ObjKey, key_of};
use super::queue::{WorkQueue, spawn_workers};
use super::{Context, ControllerError, from_time};

#[derive(Debug)]
struct Inner {
    ctx: Arc<Context>,
    queue: WorkQueue<ObjKey>,
    timer: Mutex<Option<JoinHandle<()>>>,
}

/// The TTL-after-finished controller (cheap to clone).
#[derive(Clone, Debug)]
pub(crate) struct TtlController {
    inner: Arc<Inner>,
}

/// When a finished Job with a TTL expires; `None` if it has no TTL or has not finished.
fn expiry(job: &Job) -> Option<chrono::DateTime<Utc>> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let status = job.status.as_ref()?;
    let finished = status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?;
    let at = status
        .completion_time
        .as_ref()
        .map(from_time)
        .or_else(|| finished.last_transition_time.as_ref().map(from_time))
        .unwrap_or_else(Utc::now);
    Some(at + chrono::Duration::seconds(i64::from(ttl)))
}

impl TtlController {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        let (queue, timer) = WorkQueue::new(&ctx);
        Self {
            inner: Arc::new(Inner {
                ctx,
                queue,
                timer: Mutex::new(Some(timer)),
            }),
        }
    }

    /// Job watch handler: queue finished Jobs with a TTL that are not being deleted.
    pub(crate) fn on_job(&self, change: &Change<Job>) {
        if let Change::Applied { new, .. } = change
            && new.metadata.deletion_timestamp.is_none()
            && expiry(new).is_some()
        {
            self.inner.queue.add(key_of(new.as_ref()));
        }
    }

    /// Starts the timer and two workers.
    pub(crate) fn run(&self) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<JoinHandle<()>> = self
            .inner
            .timer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .into_iter()
            .collect();
        let this = self.clone();
        tasks.extend(spawn_workers(
            "ttl-after-finished",
            2,
            self.inner.queue.clone(),
            self.inner.ctx.clone(),
            move |key| {
                let this = this.clone();
                async move { this.sync(key).await }
            },
        ));
        tasks
    }

    async fn sync(&self, key: ObjKey) -> Result<(), ControllerError> {
        let ctx = &self.inner.ctx;
        let Some(job) = ctx.caches.jobs.get(&key) else {
            return Ok(());
        };
        if job.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Some(at) = expiry(&job) else {
            return Ok(());
        };
        let now = Utc::now();
        if at > now {
            let wait = (at - now).to_std().unwrap_or(Duration::ZERO);
            self.inner.queue.add_at(key, Instant::now() + wait);
            return Ok(());
        }
        let api: Api<Job> = Api::namespaced(ctx.client.clone(), &key.0);
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(Preconditions {
                uid: job.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&key.1, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
