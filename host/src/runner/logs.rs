//! Task logs: the main container's log followed live for a bounded number of pods, and every
//! pod's whole log captured into the store when it ends, so it stays readable after the pod is
//! gone.
//!
//! A follower streams `GET …/log?follow=true&container=MAIN` into the store, whole lines at a
//! time, after skipping what this pod's log has stored already. At most
//! `max_log_followers` run at once (a semaphore): with 10,000 running Jobs taskpod holds at most
//! that many log connections, never one per Job. When the task ends,
//! [`capture`] lets the follower drain (its stream ends with the container), then reads the
//! whole log once and stores what is not stored yet, so the stored log is complete whether or
//! not the pod was followed and nothing is stored twice across a host restart. The store
//! records which pod's log it holds last and where that part begins (in the same commit as the
//! bytes), so "stored yet" is counted per pod, exactly: when the pod captured is not the one
//! stored last (a Job of several pods: retries, Samza's containers), or its main container was
//! restarted in place since (a new run, a new log), its whole log follows the other's, even
//! when they printed the same lines. Logs stored without a source (by an older taskpod) are
//! matched by content: the longest start of the pod's log that the stored log ends with.
//!
//! A container restarted in place ends its follower with its run; the next pod event starts a
//! follower for the new run. A run that no follower caught to its end (shorter than the pod
//! watch's reaction, or no follower slot free) is read back as the kubelet keeps it
//! (`previous=true`) before the next run's log is stored, by that run's follower or by
//! [`capture`]. The kubelet keeps one run before the current one: earlier runs that no follower
//! caught are gone, as with `kubectl logs --previous`.

use std::sync::Arc;
use std::time::Duration;

use ::kube::api::LogParams;
use futures::AsyncBufReadExt;
use tokio::task::JoinHandle;

use super::Inner;

/// A running log follower.
#[derive(Debug)]
pub(super) struct Follower {
    handle: JoinHandle<()>,
}

impl Follower {
    /// True once its stream ended (the container's run ended, or the log could not be read).
    pub(super) fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Stops it at once.
    pub(super) fn abort(self) {
        self.handle.abort();
    }
}

/// What the store records as the source of a part of the log: the pod, and the run of its main
/// container (a container restarted in place writes a new log, as `kubectl logs` shows it).
fn source(pod: &str, restarts: i32) -> String {
    format!("{pod}#{restarts}")
}

/// Starts following `container` of `pod` (restarted `restarts` times) for task `id` if a
/// follower slot is free and the task has no follower still streaming (one whose run ended, a
/// container restarted in place, is replaced by one for the new run). The follower is
/// registered under the tracking lock before it runs, so two pod events never start two.
pub(super) fn follow(inner: &Arc<Inner>, id: &str, pod: &str, container: &str, restarts: i32) {
    let mut tracking = inner.lock();
    let Some(t) = tracking.tasks.get_mut(id) else {
        return;
    };
    if t.finishing || t.follower.as_ref().is_some_and(|f| !f.is_finished()) {
        return;
    }
    let Ok(permit) = Arc::clone(&inner.followers).try_acquire_owned() else {
        return;
    };
    let worker = Arc::clone(inner);
    let (task, pod, container) = (id.to_owned(), pod.to_owned(), container.to_owned());
    let from = source(&pod, restarts);
    let handle = tokio::spawn(async move {
        let _permit = permit;
        // A run before this one that its own follower did not catch to its end.
        if restarts > 0 {
            store_previous_run(&worker, &task, &pod, &container, restarts - 1).await;
        }
        // What this pod's log has stored already (an earlier follower's, before a restart of
        // the host) is skipped; another pod's log before it is not this one's.
        let Some(mut skip) = stored_of_pod(&worker, &task, &from, &pod, &container, None).await
        else {
            return;
        };
        let params = LogParams {
            container: Some(container),
            follow: true,
            ..LogParams::default()
        };
        let Ok(reader) = worker.kube.pods().log_stream(&pod, &params).await else {
            return;
        };
        futures::pin_mut!(reader);
        // Only whole lines are stored while the pod runs, so that the stored log always ends
        // at a line break and a later resume or capture finds where this pod's log stands; an
        // unfinished last line is left to `capture` when the pod ends.
        let mut partial: Vec<u8> = Vec::new();
        loop {
            let mut chunk = match reader.fill_buf().await {
                Ok([]) | Err(_) => return,
                Ok(bytes) => bytes.to_vec(),
            };
            reader.consume_unpin(chunk.len());
            if skip > 0 {
                let n = skip.min(chunk.len());
                chunk.drain(..n);
                skip -= n;
                if chunk.is_empty() {
                    continue;
                }
            }
            partial.extend_from_slice(&chunk);
            let Some(end) = partial.iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            let rest = partial.split_off(end + 1);
            let lines = std::mem::replace(&mut partial, rest);
            if worker
                .store
                .append_pod_log(&task, &from, lines)
                .await
                .is_err()
            {
                return;
            }
        }
    });
    t.follower = Some(Follower { handle });
}

/// Stores the rest of the task's log once its pod ended: waits (bounded) for the follower to
/// drain, then stores the bytes of the whole log that are not stored yet (by a follower, or
/// before the host restarted), so a log is never stored twice.
pub(super) async fn capture(
    inner: &Inner,
    id: &str,
    pod: &str,
    container: &str,
    restarts: i32,
    follower: Option<Follower>,
) {
    let from = source(pod, restarts);
    if let Some(Follower { mut handle, .. }) = follower
        && tokio::time::timeout(Duration::from_secs(2), &mut handle)
            .await
            .is_err()
    {
        handle.abort();
        let _ = handle.await;
    }
    if restarts > 0 {
        store_previous_run(inner, id, pod, container, restarts - 1).await;
    }
    match crate::kube::retry(5, || inner.kube.pod_log(pod, container)).await {
        Ok(Some(log)) => {
            // What is stored already may be this pod's log up to some point (a follower, this
            // host's or one before a restart) or another pod's (a Job of several pods): only
            // this pod's part is skipped.
            let start = stored_of_pod(inner, id, &from, pod, container, Some(&log))
                .await
                .unwrap_or(0);
            if start < log.len()
                && let Err(error) = inner
                    .store
                    .append_pod_log(id, &from, log[start..].to_vec())
                    .await
            {
                tracing::warn!(task = id, %error, "cannot store the task's log");
            }
        }
        Ok(None) => tracing::debug!(task = id, pod, "pod gone before its log was read"),
        Err(error) => tracing::warn!(task = id, pod, %error, "cannot read the task's log"),
    }
}

/// Stores what is missing of run `run` of `pod`'s main container, the run before the current
/// one, read back as the kubelet keeps it (`previous=true`): all of it when the store holds
/// nothing yet or an earlier run of this pod last, the rest of it when it holds the start. A run
/// no follower caught (shorter than the pod watch's reaction, or no follower slot free) is
/// stored so, before the next run's log. When another pod's log was stored last, whether this
/// run was stored before it is not known, and nothing is read (the run is not stored twice).
/// Runs before that one are gone from the node, as `kubectl logs --previous` shows.
async fn store_previous_run(inner: &Inner, id: &str, pod: &str, container: &str, run: i32) {
    let Ok(section) = inner.store.log_section(id).await else {
        return;
    };
    let from = source(pod, run);
    let stored = match section.pod.as_deref() {
        _ if section.end == 0 => 0,
        Some(last) if last == from => section.end.saturating_sub(section.start) as usize,
        Some(last) if run_of(last, pod).is_some_and(|r| r < run) => 0,
        _ => return,
    };
    match crate::kube::retry(5, || inner.kube.previous_pod_log(pod, container)).await {
        Ok(Some(log)) if stored < log.len() => {
            if let Err(error) = inner
                .store
                .append_pod_log(id, &from, log[stored..].to_vec())
                .await
            {
                tracing::warn!(task = id, %error, "cannot store the log of the container's previous run");
            }
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(task = id, pod, %error, "cannot read the log of the container's previous run")
        }
    }
}

/// The run recorded in a log source of `pod` (see [`source`]); `None` for another pod's.
fn run_of(source: &str, pod: &str) -> Option<i32> {
    source
        .strip_prefix(pod)
        .and_then(|rest| rest.strip_prefix('#'))
        .and_then(|run| run.parse().ok())
}

/// How many bytes of `pod`'s log (the run of it named `from`, see [`source`]) the task's
/// stored log holds: counted exactly from where the store recorded that part to begin when it
/// was the one stored last, none when another pod's (or run's) log was stored last. A log
/// stored without a source (by an older taskpod) is matched by content instead (`log`, read
/// from the pod when not given). `None` when the task or the pod's log cannot be read.
async fn stored_of_pod(
    inner: &Inner,
    id: &str,
    from: &str,
    pod: &str,
    container: &str,
    log: Option<&[u8]>,
) -> Option<usize> {
    let section = inner.store.log_section(id).await.ok()?;
    match section.pod.as_deref() {
        _ if section.end == 0 => Some(0),
        Some(last) if last == from => Some(section.end.saturating_sub(section.start) as usize),
        Some(_) => Some(0),
        None => {
            let read;
            let log = match log {
                Some(log) => log,
                None => {
                    read = inner.kube.pod_log(pod, container).await.ok()??;
                    &read
                }
            };
            Some(stored_prefix(inner, id, section.end, log).await)
        }
    }
}

/// How much of a pod's `log` the task's stored log (`stored_bytes` long) ends with already.
async fn stored_prefix(inner: &Inner, id: &str, stored_bytes: u64, log: &[u8]) -> usize {
    let from = stored_bytes.saturating_sub(log.len() as u64);
    match inner.store.read_log(id, from, log.len()).await {
        Ok(tail) => stored_overlap(&tail.data, log),
        Err(_) => 0,
    }
}

/// The length of the longest start of `log` that `stored` ends with, ending at a line break (or
/// the whole of `log`): how much of a pod's log is stored already. Knuth–Morris–Pratt over
/// `stored` with `log` as the pattern, linear in both.
fn stored_overlap(stored: &[u8], log: &[u8]) -> usize {
    if log.is_empty() || stored.is_empty() {
        return 0;
    }
    let mut fail = vec![0usize; log.len()];
    let mut k = 0;
    for i in 1..log.len() {
        while k > 0 && log[i] != log[k] {
            k = fail[k - 1];
        }
        if log[i] == log[k] {
            k += 1;
        }
        fail[i] = k;
    }
    let mut matched = 0;
    for &b in stored {
        if matched == log.len() {
            matched = fail[matched - 1];
        }
        while matched > 0 && b != log[matched] {
            matched = fail[matched - 1];
        }
        if b == log[matched] {
            matched += 1;
        }
    }
    // Only whole lines (or all of it) count: a stored tail that happens to match the first
    // bytes of another pod's line is not that line.
    while matched > 0 && matched < log.len() && log[matched - 1] != b'\n' {
        matched = fail[matched - 1];
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::{run_of, source, stored_overlap};

    #[test]
    fn a_source_names_its_pods_run() {
        assert_eq!(run_of(&source("job-a-x1", 2), "job-a-x1"), Some(2));
        assert_eq!(run_of(&source("job-a-x1", 0), "job-a-x1"), Some(0));
        // Another pod, even one whose name starts with this one's.
        assert_eq!(run_of(&source("job-a-x12", 1), "job-a-x1"), None);
        assert_eq!(run_of(&source("job-b", 1), "job-a-x1"), None);
        assert_eq!(run_of("job-a-x1", "job-a-x1"), None);
    }

    #[test]
    fn overlap_is_the_stored_start_of_the_same_pods_log() {
        let log = b"one\ntwo\nthree\n";
        assert_eq!(stored_overlap(b"one\ntwo\n", log), 8);
        assert_eq!(stored_overlap(b"other pod\none\ntwo\n", log), 8);
        assert_eq!(stored_overlap(log, log), log.len());
        assert_eq!(stored_overlap(b"", log), 0);
    }

    #[test]
    fn another_pods_log_is_stored_whole() {
        let log = b"samza 0 up\nsamza 0 done\n";
        assert_eq!(stored_overlap(b"samza 1 up\nsamza 1 done\n", log), 0);
        // A stored tail equal to the first bytes of a line, not a whole line, is no overlap.
        assert_eq!(stored_overlap(b"x\nsamza 0", log), 0);
    }
}
