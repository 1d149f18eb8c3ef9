//! Task logs: the main container's log followed live for a bounded number of pods, and every
//! pod's whole log captured into the store when it ends, so it stays readable after the pod is
//! gone.
//!
//! A follower streams `GET …/log?follow=true&container=MAIN` into the store and counts the bytes
//! it stored. At most `max_log_followers` run at once (a semaphore): with 10,000 running Jobs
//! taskpod holds at most that many log connections, never one per Job. When the task ends,
//! [`capture`] lets the follower drain (its stream ends with the container), then reads the
//! whole log once and stores what the follower had not, so the stored log is complete whether or
//! not the pod was followed. When the pod captured is not the one followed (a Job of several
//! pods, such as a Samza job), its whole log is stored after the followed one's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::kube::api::LogParams;
use futures::AsyncBufReadExt;
use tokio::task::JoinHandle;

use super::Inner;

/// A running log follower.
#[derive(Debug)]
pub(super) struct Follower {
    handle: JoinHandle<()>,
    stored: Arc<AtomicU64>,
    /// The pod followed (a Job of several pods may end with another one captured).
    pod: String,
}

impl Follower {
    /// Stops it at once.
    pub(super) fn abort(self) {
        self.handle.abort();
    }
}

/// Starts following `container` of `pod` for task `id` if a follower slot is free.
pub(super) fn follow(inner: &Arc<Inner>, id: &str, pod: &str, container: &str) {
    let Ok(permit) = Arc::clone(&inner.followers).try_acquire_owned() else {
        return;
    };
    let stored = Arc::new(AtomicU64::new(0));
    let worker = Arc::clone(inner);
    let followed = pod.to_owned();
    let (task, pod, container, count) = (
        id.to_owned(),
        pod.to_owned(),
        container.to_owned(),
        Arc::clone(&stored),
    );
    let handle = tokio::spawn(async move {
        let _permit = permit;
        let params = LogParams {
            container: Some(container),
            follow: true,
            ..LogParams::default()
        };
        // What an earlier follower (before a restart of the host) stored is not stored twice.
        let Ok(Some(record)) = worker.store.get(&task).await else {
            return;
        };
        let mut skip = record.log_bytes;
        let Ok(reader) = worker.kube.pods().log_stream(&pod, &params).await else {
            return;
        };
        futures::pin_mut!(reader);
        loop {
            let mut chunk = match reader.fill_buf().await {
                Ok([]) | Err(_) => return,
                Ok(bytes) => bytes.to_vec(),
            };
            reader.consume_unpin(chunk.len());
            if skip > 0 {
                let n = usize::try_from(skip).unwrap_or(usize::MAX).min(chunk.len());
                chunk.drain(..n);
                skip -= n as u64;
                if chunk.is_empty() {
                    continue;
                }
            }
            let len = chunk.len() as u64;
            if worker.store.append_log(&task, chunk).await.is_err() {
                return;
            }
            count.fetch_add(len, Ordering::SeqCst);
        }
    });
    let mut tracking = inner.lock();
    match tracking.tasks.get_mut(id) {
        Some(t) if t.follower.is_none() && !t.finishing => {
            t.follower = Some(Follower {
                handle,
                stored,
                pod: followed,
            });
        }
        _ => handle.abort(),
    }
}

/// Stores the rest of the task's log once its pod ended: waits (bounded) for the follower to
/// drain, then stores the bytes of the whole log that are not stored yet (by a follower, or
/// before the host restarted), so a log is never stored twice.
pub(super) async fn capture(
    inner: &Inner,
    id: &str,
    pod: &str,
    container: &str,
    follower: Option<Follower>,
) {
    let mut already = 0u64;
    if let Some(Follower {
        mut handle,
        stored,
        pod: followed,
    }) = follower
    {
        if tokio::time::timeout(Duration::from_secs(2), &mut handle)
            .await
            .is_err()
        {
            handle.abort();
            let _ = handle.await;
        }
        // What the follower stored is a prefix of this log only when it followed this pod.
        if followed == pod {
            already = stored.load(Ordering::SeqCst);
        }
    }
    // The store holds what every follower stored, this host's and those before a restart.
    if let Ok(Some(record)) = inner.store.get(id).await {
        already = already.max(record.log_bytes);
    }
    match crate::kube::retry(5, || inner.kube.pod_log(pod, container)).await {
        Ok(Some(log)) => {
            let start = usize::try_from(already)
                .unwrap_or(usize::MAX)
                .min(log.len());
            if start < log.len()
                && let Err(error) = inner.store.append_log(id, log[start..].to_vec()).await
            {
                tracing::warn!(task = id, %error, "cannot store the task's log");
            }
        }
        Ok(None) => tracing::debug!(task = id, pod, "pod gone before its log was read"),
        Err(error) => tracing::warn!(task = id, pod, %error, "cannot read the task's log"),
    }
}
