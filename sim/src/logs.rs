//! Container logs of simulated pods.
//!
//! The simulated kubelets write lines with [`PodLogs::append`] and close a container's log with
//! [`PodLogs::finish`]; the API server reads them for `GET /api/v1/namespaces/{ns}/pods/{name}/log`
//! (`container`, `tailLines`, `follow`). A log stays readable after its container ends, for as long
//! as the pod object exists: when the pod is deleted the server calls [`PodLogs::remove_pod`], as a
//! real kubelet discards the logs of a removed pod (a client that wants to keep a log must read it
//! before the pod goes, exactly as against a real cluster). The handle is a cheap clone shared by the
//! server and the kubelets in one process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

/// Identifies one container's log: namespace, pod name, container name.
type Key = (String, String, String);

/// The log of one container's current run: its lines so far, whether it has ended, a signal
/// for followers, which run it is, and the previous run's lines (a container restarted in
/// place starts a new log, as a kubelet does; `previous=true` reads the one before).
#[derive(Debug)]
struct ContainerLog {
    lines: Vec<String>,
    finished: bool,
    /// Bumped on every append and on finish; followers wait on it.
    changed: watch::Sender<u64>,
    /// 0 for the first run, +1 per restart in place.
    run: u32,
    previous: Option<Vec<String>>,
}

impl ContainerLog {
    fn new() -> Self {
        let (changed, _) = watch::channel(0);
        Self {
            lines: Vec::new(),
            finished: false,
            changed,
            run: 0,
            previous: None,
        }
    }
}

/// Shared store of container logs of simulated pods (see the module documentation).
#[derive(Clone, Debug, Default)]
pub struct PodLogs {
    inner: Arc<Mutex<HashMap<Key, ContainerLog>>>,
}

/// A snapshot of one container's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSnapshot {
    /// The selected lines (all of them, or the last `tailLines`).
    pub lines: Vec<String>,
    /// Index (in the whole log) just after the last line of `lines`: where a follower continues.
    pub next: usize,
    /// True when the container's log is closed (the container has terminated).
    pub finished: bool,
}

impl PodLogs {
    /// An empty log store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, ContainerLog>> {
        // A panic while holding the lock leaves the map consistent (every operation is a single
        // insert or push), so a poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key(ns: &str, pod: &str, container: &str) -> Key {
        (ns.to_owned(), pod.to_owned(), container.to_owned())
    }

    /// Appends one line (without its trailing newline) to a container's log, creating the log on
    /// first use. Lines appended after [`PodLogs::finish`] are ignored.
    pub fn append(&self, ns: &str, pod: &str, container: &str, line: &str) {
        let mut map = self.lock();
        let log = map
            .entry(Self::key(ns, pod, container))
            .or_insert_with(ContainerLog::new);
        if log.finished {
            return;
        }
        log.lines.push(line.to_owned());
        log.changed.send_modify(|v| *v += 1);
    }

    /// Marks a container's log as complete: no more lines will come and followers end after the
    /// last line. Creates an empty, finished log if the container never wrote anything.
    pub fn finish(&self, ns: &str, pod: &str, container: &str) {
        let mut map = self.lock();
        let log = map
            .entry(Self::key(ns, pod, container))
            .or_insert_with(ContainerLog::new);
        log.finished = true;
        log.changed.send_modify(|v| *v += 1);
    }

    /// A container restarted in place: its current run's log is finished (its followers end)
    /// and kept as the previous run's, and the new run writes a new log.
    pub fn restart(&self, ns: &str, pod: &str, container: &str) {
        self.finish(ns, pod, container);
        let mut map = self.lock();
        let Some(log) = map.get_mut(&Self::key(ns, pod, container)) else {
            return;
        };
        let run = log.run + 1;
        let ended = std::mem::replace(log, ContainerLog::new());
        log.run = run;
        log.previous = Some(ended.lines);
    }

    /// The previous run's log of a container restarted in place (`previous=true`); `None` when
    /// it has not been restarted.
    pub fn read_previous(&self, ns: &str, pod: &str, container: &str) -> Option<Vec<String>> {
        self.lock()
            .get(&Self::key(ns, pod, container))?
            .previous
            .clone()
    }

    /// Forgets every container log of a pod (called by the server when the pod object is deleted).
    /// Followers of those logs end.
    pub fn remove_pod(&self, ns: &str, pod: &str) {
        let mut map = self.lock();
        map.retain(|(n, p, _), log| {
            let keep = !(n == ns && p == pod);
            if !keep {
                log.finished = true;
                log.changed.send_modify(|v| *v += 1);
            }
            keep
        });
    }

    /// True when a log exists for this container (it has written a line or finished).
    pub fn exists(&self, ns: &str, pod: &str, container: &str) -> bool {
        self.lock().contains_key(&Self::key(ns, pod, container))
    }

    /// Reads a container's log: every line, or only the last `tail_lines` when given.
    /// Returns `None` when the container has no log yet.
    pub fn read(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        tail_lines: Option<usize>,
    ) -> Option<LogSnapshot> {
        let map = self.lock();
        let log = map.get(&Self::key(ns, pod, container))?;
        let start = tail_lines.map_or(0, |n| log.lines.len().saturating_sub(n));
        Some(LogSnapshot {
            lines: log.lines[start..].to_vec(),
            next: log.lines.len(),
            finished: log.finished,
        })
    }

    /// Lines from index `from` on, whether the log is finished, a receiver that changes on the
    /// next append or finish, and which run of the container the log is. Used by followers:
    /// read, wait for a change, read again.
    /// Returns `None` when the log does not exist (never written, or its pod was removed).
    pub fn read_from(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        from: usize,
    ) -> Option<(Vec<String>, bool, watch::Receiver<u64>, u32)> {
        let map = self.lock();
        let log = map.get(&Self::key(ns, pod, container))?;
        let from = from.min(log.lines.len());
        Some((
            log.lines[from..].to_vec(),
            log.finished,
            log.changed.subscribe(),
            log.run,
        ))
    }

    /// Follows a container's log from line index `from`: yields every later line as it is appended
    /// and ends when the log is finished or removed, or the container restarted (a follower
    /// follows one run, as against a kubelet). A log that does not exist yet is waited for
    /// by polling every 50 ms until it appears (bounded by the caller dropping the stream).
    pub fn follow(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        from: usize,
    ) -> impl futures::Stream<Item = String> + Send + 'static {
        let logs = self.clone();
        let (ns, pod, container) = (ns.to_owned(), pod.to_owned(), container.to_owned());
        futures::stream::unfold(
            (
                logs,
                from,
                Vec::<String>::new().into_iter(),
                false,
                None::<u32>,
            ),
            move |(logs, mut next, mut pending, mut done, mut run)| {
                let (ns, pod, container) = (ns.clone(), pod.clone(), container.clone());
                async move {
                    loop {
                        if let Some(line) = pending.next() {
                            return Some((line, (logs, next, pending, done, run)));
                        }
                        if done {
                            return None;
                        }
                        match logs.read_from(&ns, &pod, &container, next) {
                            Some((_, _, _, now)) if run.is_some_and(|r| r != now) => {
                                // The run followed ended and the container restarted since:
                                // the rest of that run's log (now the previous one), then end.
                                let rest = match run {
                                    Some(r) if r + 1 == now => logs
                                        .read_previous(&ns, &pod, &container)
                                        .map(|l| l.into_iter().skip(next).collect())
                                        .unwrap_or_default(),
                                    _ => Vec::new(),
                                };
                                done = true;
                                pending = rest.into_iter();
                            }
                            Some((lines, finished, mut rx, now)) => {
                                run = Some(now);
                                next += lines.len();
                                if finished {
                                    done = true;
                                } else if lines.is_empty() {
                                    // Nothing new: wait for the next append or finish. A closed
                                    // sender means the log was removed.
                                    if rx.changed().await.is_err() {
                                        done = true;
                                    }
                                }
                                pending = lines.into_iter();
                            }
                            None => {
                                if next > 0 {
                                    // The log existed and was removed with its pod.
                                    return None;
                                }
                                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            }
                        }
                    }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    /// Every line a follower yields; it must end within 5 s (`why`).
    async fn collect(follower: impl futures::Stream<Item = String>, why: &str) -> Vec<String> {
        tokio::time::timeout(std::time::Duration::from_secs(5), follower.collect())
            .await
            .expect(why)
    }

    #[test]
    fn tail_lines_selects_the_last_lines() {
        let logs = PodLogs::new();
        for i in 0..5 {
            logs.append("ns", "p", "c", &format!("line {i}"));
        }
        let snap = logs.read("ns", "p", "c", Some(2)).expect("log exists");
        assert_eq!(snap.lines, vec!["line 3", "line 4"]);
        assert_eq!(snap.next, 5);
        assert!(!snap.finished);
        assert!(logs.read("ns", "p", "other", None).is_none());
    }

    #[tokio::test]
    async fn follow_sees_new_lines_and_ends_on_finish() {
        let logs = PodLogs::new();
        logs.append("ns", "p", "c", "first");
        let follower = logs.follow("ns", "p", "c", 0);
        let writer = logs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            writer.append("ns", "p", "c", "second");
            writer.finish("ns", "p", "c");
            writer.append("ns", "p", "c", "ignored after finish");
        });
        let got = collect(follower, "follower ends after finish").await;
        assert_eq!(got, vec!["first", "second"]);
    }

    #[tokio::test]
    async fn removing_the_pod_ends_followers_and_forgets_logs() {
        let logs = PodLogs::new();
        logs.append("ns", "p", "c", "only");
        let follower = logs.follow("ns", "p", "c", 0);
        let remover = logs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            remover.remove_pod("ns", "p");
        });
        let got = collect(follower, "follower ends after removal").await;
        assert_eq!(got, vec!["only"]);
        assert!(!logs.exists("ns", "p", "c"));
    }

    #[tokio::test]
    async fn a_restart_in_place_starts_a_new_log_and_keeps_the_previous_one() {
        let logs = PodLogs::new();
        logs.append("ns", "p", "c", "run 0 up");
        let follower = logs.follow("ns", "p", "c", 0);
        let kubelet = logs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            kubelet.append("ns", "p", "c", "run 0 failed");
            kubelet.restart("ns", "p", "c");
            kubelet.append("ns", "p", "c", "run 1 up");
        });
        // A follower follows one run: it ends when that run ends.
        let got = collect(follower, "follower ends with its run").await;
        assert_eq!(got, vec!["run 0 up", "run 0 failed"]);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let now = logs.read("ns", "p", "c", None).expect("current run");
        assert_eq!(now.lines, vec!["run 1 up"]);
        assert!(!now.finished);
        assert_eq!(
            logs.read_previous("ns", "p", "c"),
            Some(vec!["run 0 up".to_owned(), "run 0 failed".to_owned()])
        );
        assert_eq!(logs.read_previous("ns", "p", "other"), None);
    }
}
