//! Request and creation counters of the simulated API server, for tests and benchmarks.
//!
//! Every request is counted by verb (`get`, `list`, `watch`, `create`, `update`, `patch`,
//! `delete`, …, the verbs of Kubernetes audit logs) and resource (`pods`, `jobs.batch`, with
//! `/subresource` appended); every successful create is counted by (kind, namespace, name), so a
//! test can prove, for example, that no Job was ever created twice. Faults that reached a client
//! are counted too (injected errors by status and verb, watches dropped, watches ended with 410
//! Expired), so a fault-tolerance test can show the faults really happened.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, String), u64>,
    creates: BTreeMap<(String, String, String), u64>,
    /// Distinct objects created, by kind (kept beside `creates` so that reading it is O(1)).
    distinct: BTreeMap<String, usize>,
    faults: BTreeMap<String, u64>,
}

/// Shared counters (cheap clone).
#[derive(Clone, Debug, Default)]
pub struct Counters {
    inner: Arc<Mutex<Inner>>,
    total: Arc<AtomicU64>,
}

/// A copy of the counters, serialisable for `GET /sim/counters`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CountersSnapshot {
    /// All requests.
    pub total_requests: u64,
    /// Requests by `"verb resource"` (e.g. `"create jobs.batch"`).
    pub requests: BTreeMap<String, u64>,
    /// Successful creates by `"Kind namespace/name"` (cluster-scoped: `"Kind name"`).
    pub creates: BTreeMap<String, u64>,
    /// Faults served, by [`Counters::faults`] key.
    pub faults: BTreeMap<String, u64>,
}

impl Counters {
    /// Fresh counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one request.
    pub(crate) fn request(&self, verb: &str, resource: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.lock();
        if let Some(n) = inner
            .requests
            .get_mut(&(verb.to_owned(), resource.to_owned()))
        {
            *n += 1;
        } else {
            inner
                .requests
                .insert((verb.to_owned(), resource.to_owned()), 1);
        }
    }

    /// Counts one successful create.
    pub(crate) fn created(&self, kind: &str, ns: &str, name: &str) {
        let mut inner = self.lock();
        let count = inner
            .creates
            .entry((kind.to_owned(), ns.to_owned(), name.to_owned()))
            .or_default();
        *count += 1;
        if *count == 1 {
            *inner.distinct.entry(kind.to_owned()).or_default() += 1;
        }
    }

    /// Counts one fault served to a client.
    pub(crate) fn fault(&self, what: String) {
        *self.lock().faults.entry(what).or_default() += 1;
    }

    /// Faults served under `what`: `"<status> <verb>"` for injected errors (`"500 get"`,
    /// `"429 create"`), `"watch dropped"` for watches ended by `dropWatchAfterSeconds`, and
    /// `"watch expired"` for watches ended with 410 Expired (compacted history).
    pub fn faults(&self, what: &str) -> u64 {
        self.lock().faults.get(what).copied().unwrap_or(0)
    }

    /// Injected errors with HTTP status `code`, all verbs.
    pub fn injected_errors(&self, code: u16) -> u64 {
        let prefix = format!("{code} ");
        self.lock()
            .faults
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, n)| *n)
            .sum()
    }

    /// Total requests served (all verbs and resources, failures and injected faults included).
    pub fn total_requests(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Requests with this verb on this resource (`"pods"`, `"jobs.batch"`, `"pods/status"`).
    pub fn requests(&self, verb: &str, resource: &str) -> u64 {
        self.lock()
            .requests
            .get(&(verb.to_owned(), resource.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// How many times an object of `kind` named `ns/name` was created successfully (`ns` empty
    /// for cluster-scoped kinds).
    pub fn creates(&self, kind: &str, ns: &str, name: &str) -> u64 {
        self.lock()
            .creates
            .get(&(kind.to_owned(), ns.to_owned(), name.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// The largest number of creates of any single object of `kind` (1 means no name was ever
    /// created twice; 0 means none was created).
    pub fn max_creates_per_name(&self, kind: &str) -> u64 {
        self.lock()
            .creates
            .iter()
            .filter(|((k, _, _), _)| k == kind)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0)
    }

    /// Number of distinct objects of `kind` ever created.
    pub fn distinct_creates(&self, kind: &str) -> usize {
        self.lock().distinct.get(kind).copied().unwrap_or(0)
    }

    /// A serialisable copy of every counter.
    pub fn snapshot(&self) -> CountersSnapshot {
        let inner = self.lock();
        CountersSnapshot {
            total_requests: self.total_requests(),
            requests: inner
                .requests
                .iter()
                .map(|((v, r), n)| (format!("{v} {r}"), *n))
                .collect(),
            creates: inner
                .creates
                .iter()
                .map(|((k, ns, name), n)| {
                    let id = if ns.is_empty() {
                        format!("{k} {name}")
                    } else {
                        format!("{k} {ns}/{name}")
                    };
                    (id, *n)
                })
                .collect(),
            faults: inner.faults.clone(),
        }
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.requests.clear();
        inner.creates.clear();
        inner.distinct.clear();
        inner.faults.clear();
        self.total.store(0, Ordering::Relaxed);
    }
}
