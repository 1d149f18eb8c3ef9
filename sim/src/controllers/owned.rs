//! The pods a controller (Job, Deployment) owns, kept from the pod watch: their keys by the uid
//! of their owner, and the pods it created or deleted and has not yet seen through the watch
//! (Kubernetes' `ControllerExpectations`, pkg/controller/controller_utils.go). A sync waits until
//! those are observed, or until a timeout, so that it never counts a pod twice or misses one it
//! just made.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use tokio::time::Instant;

use super::cache::{Change, ObjKey, key_of};
use super::lock;

/// The pods of one controller's owners.
#[derive(Debug, Default)]
pub(crate) struct OwnedPods {
    by_owner: Mutex<HashMap<String, HashSet<ObjKey>>>,
    /// What each owner still expects to observe.
    pub(crate) expectations: Expectations,
}

impl OwnedPods {
    /// A change of a pod whose controlling owner has uid `owner`: indexes the pod and observes
    /// the owner's expectations.
    pub(crate) fn observe(&self, owner: &str, change: &Change<Pod>) {
        let key = key_of(change.object().as_ref());
        match change {
            Change::Applied { old, .. } => {
                lock(&self.by_owner)
                    .entry(owner.to_owned())
                    .or_default()
                    .insert(key);
                if old.is_none() {
                    self.expectations.creation_observed(owner);
                }
            }
            Change::Deleted(last) => {
                let mut by_owner = lock(&self.by_owner);
                if let Some(set) = by_owner.get_mut(owner) {
                    set.remove(&key);
                    if set.is_empty() {
                        by_owner.remove(owner);
                    }
                }
                drop(by_owner);
                if let Some(pod_uid) = last.uid() {
                    self.expectations.deletion_observed(owner, &pod_uid);
                }
            }
        }
    }

    /// The keys of `owner`'s pods.
    pub(crate) fn keys(&self, owner: &str) -> Vec<ObjKey> {
        lock(&self.by_owner)
            .get(owner)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// What one owner still expects to observe.
#[derive(Debug)]
struct Expected {
    adds: i64,
    deletes: HashSet<String>,
    since: Instant,
}

/// Expectations of every owner of one controller.
#[derive(Debug, Default)]
pub(crate) struct Expectations {
    by_owner: Mutex<HashMap<String, Expected>>,
}

impl Expectations {
    /// Expects `adds` more pod creations and the deletion of the pods `deletes` (uids) for
    /// `owner`; the timeout starts again.
    pub(crate) fn expect(&self, owner: &str, adds: i64, deletes: impl IntoIterator<Item = String>) {
        let mut map = lock(&self.by_owner);
        let e = map.entry(owner.to_owned()).or_insert_with(|| Expected {
            adds: 0,
            deletes: HashSet::new(),
            since: Instant::now(),
        });
        e.adds += adds;
        e.deletes.extend(deletes);
        e.since = Instant::now();
    }

    /// True when `owner` expects nothing more (or has waited longer than `timeout`, when its
    /// expectations are dropped): its next sync may count its pods.
    pub(crate) fn satisfied(&self, owner: &str, timeout: Duration) -> bool {
        let mut map = lock(&self.by_owner);
        match map.get(owner) {
            None => true,
            Some(e) => {
                let done = (e.adds <= 0 && e.deletes.is_empty()) || e.since.elapsed() > timeout;
                if done {
                    map.remove(owner);
                }
                done
            }
        }
    }

    /// A pod of `owner` was seen created, or its create failed (it will never be seen).
    pub(crate) fn creation_observed(&self, owner: &str) {
        if let Some(e) = lock(&self.by_owner).get_mut(owner) {
            e.adds -= 1;
        }
    }

    /// Pod `pod_uid` of `owner` was seen deleted, or its delete failed.
    pub(crate) fn deletion_observed(&self, owner: &str, pod_uid: &str) {
        if let Some(e) = lock(&self.by_owner).get_mut(owner) {
            e.deletes.remove(pod_uid);
        }
    }

    /// Forgets `owner` (deleted).
    pub(crate) fn forget(&self, owner: &str) {
        lock(&self.by_owner).remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    #[test]
    fn a_sync_waits_until_every_create_and_delete_is_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("job", LONG), "nothing expected");
        e.expect("job", 2, ["pod-a".to_owned()]);
        assert!(!e.satisfied("job", LONG));
        e.creation_observed("job");
        e.creation_observed("job");
        assert!(!e.satisfied("job", LONG), "the delete is not seen yet");
        e.deletion_observed("other", "pod-a");
        assert!(!e.satisfied("job", LONG), "another owner's pod");
        e.deletion_observed("job", "pod-a");
        assert!(e.satisfied("job", LONG));
    }

    #[test]
    fn expectations_end_with_the_timeout_or_the_owner() {
        let e = Expectations::default();
        e.expect("job", 1, []);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!e.satisfied("job", LONG), "still within the timeout");
        assert!(
            e.satisfied("job", Duration::from_millis(1)),
            "past the timeout"
        );
        assert!(e.satisfied("job", LONG), "dropped once timed out");
        e.expect("job", 1, []);
        e.forget("job");
        assert!(e.satisfied("job", LONG), "a deleted owner expects nothing");
    }
}
