//! The object store of the simulated API server: one ordered map per resource type, one global
//! resourceVersion counter (as etcd's revision), and a ring of recent change events that watches
//! read from.
//!
//! Every write bumps the counter by one and appends exactly one event, so the event of revision
//! `r` sits at ring index `r - first`: resuming a watch is an O(1) lookup, and a revision older
//! than the ring's first entry answers 410 Expired, as kube-apiserver does once etcd has compacted
//! it. Objects are kept as JSON with their serialised bytes, so reads and watch events never
//! re-serialise. Listing walks the ordered map of one resource (and one namespace, by range), never
//! the whole store.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::watch;

use crate::resources::{self, RESOURCES};
use crate::status::ApiError;

/// One stored version of an object.
#[derive(Debug)]
pub struct Stored {
    /// The object, `metadata.resourceVersion` included.
    pub value: Value,
    /// `value` serialised as JSON.
    pub bytes: Bytes,
    /// Its resourceVersion.
    pub rv: u64,
}

impl Stored {
    fn new(mut value: Value, rv: u64) -> Arc<Self> {
        value["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let bytes = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
        Arc::new(Self { value, bytes, rv })
    }

    /// `metadata.namespace` (empty for cluster-scoped objects).
    pub fn namespace(&self) -> &str {
        self.value["metadata"]["namespace"].as_str().unwrap_or("")
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }

    /// `metadata.labels`, if any.
    pub fn labels(&self) -> Option<&Value> {
        self.value["metadata"].get("labels")
    }
}

/// The type of a change event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// The object was created.
    Added,
    /// The object was changed.
    Modified,
    /// The object was removed.
    Deleted,
}

impl EventType {
    /// The watch event type string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change: revision, resource id, type, the object after the change (for a deletion, the
/// last state with the deletion's revision) and the object before it.
#[derive(Debug)]
pub struct Event {
    /// The revision this change created.
    pub rv: u64,
    /// Resource id (index in [`RESOURCES`]).
    pub res: usize,
    /// Change type.
    pub kind: EventType,
    /// Object after the change.
    pub obj: Arc<Stored>,
    /// Object before the change (none for creations).
    pub prev: Option<Arc<Stored>>,
}

type Key = (String, String);

/// Label index of one resource: `(key, value)` → object keys carrying that label.
type LabelIndex = HashMap<(String, String), BTreeSet<Key>>;

#[derive(Debug)]
struct Inner {
    rv: u64,
    objects: Vec<BTreeMap<Key, Arc<Stored>>>,
    labels: Vec<LabelIndex>,
    ring: VecDeque<Arc<Event>>,
    window: usize,
    /// Revisions at or below this were compacted away (also when the ring is empty).
    compacted: u64,
}

fn label_pairs(v: &Value) -> Vec<(String, String)> {
    v["metadata"]
        .get("labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

impl Inner {
    fn index(&mut self, res: usize, key: &Key, old: Option<&Value>, new: Option<&Value>) {
        let old_pairs = old.map(label_pairs).unwrap_or_default();
        let new_pairs = new.map(label_pairs).unwrap_or_default();
        if old_pairs == new_pairs {
            return;
        }
        let index = &mut self.labels[res];
        for pair in &old_pairs {
            if !new_pairs.contains(pair)
                && let Some(set) = index.get_mut(pair)
            {
                set.remove(key);
                if set.is_empty() {
                    index.remove(pair);
                }
            }
        }
        for pair in new_pairs {
            if !old_pairs.contains(&pair) {
                index.entry(pair).or_default().insert(key.clone());
            }
        }
    }

    fn push(&mut self, event: Event) {
        if self.ring.len() >= self.window
            && let Some(e) = self.ring.pop_front()
        {
            self.compacted = e.rv;
        }
        self.ring.push_back(Arc::new(event));
    }
}

/// Result of a list: the page, the revision it reflects, the key to continue from, and how many
/// items remain after the page (when known).
#[derive(Debug)]
pub struct ListPage {
    /// Objects of the page, in (namespace, name) order.
    pub items: Vec<Arc<Stored>>,
    /// The store revision when the page was read.
    pub rv: u64,
    /// Where the next page starts (exclusive), if there is one.
    pub next: Option<(String, String)>,
    /// Number of matching objects after this page, when counted.
    pub remaining: Option<u64>,
}

/// What a list reads: namespace (all when `None`), the key to start after, at most `limit`
/// objects (0 = no limit), whether to count what remains, and an equality requirement of the
/// request's label selector: with it only objects carrying that label are visited, through the
/// label index, instead of every object of the resource.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListQuery<'a> {
    /// Namespace, or every namespace.
    pub ns: Option<&'a str>,
    /// Start after this (namespace, name) key.
    pub after: Option<&'a (String, String)>,
    /// Page size, 0 = unlimited.
    pub limit: usize,
    /// Count matching objects after the page.
    pub count_remaining: bool,
    /// A `key=value` label every result carries.
    pub label: Option<(&'a str, &'a str)>,
}

/// What watches read when they resume: the events after a revision, or the revision that is too
/// old.
#[derive(Debug)]
pub enum Since {
    /// The events after the requested revision (possibly none).
    Events(Vec<Arc<Event>>),
    /// The requested revision was compacted; the oldest revision still available is given.
    Expired {
        /// The oldest revision a watch can still resume from.
        oldest: u64,
    },
}

/// The object store (see the module documentation). Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    notify: watch::Sender<u64>,
}

/// What an update closure decides.
#[derive(Debug)]
pub enum Change {
    /// Store this new version (its resourceVersion is set by the store).
    Put(Value),
    /// Nothing changed: keep the stored version (no new revision, as kube-apiserver skips no-op
    /// writes).
    Keep,
    /// Remove the object now (the last finalizer is gone from an object being deleted).
    Remove(Value),
}

impl Store {
    /// An empty store retaining the last `window` change events for watches.
    pub fn new(window: usize) -> Self {
        let (notify, _) = watch::channel(0);
        Self {
            inner: Mutex::new(Inner {
                rv: 0,
                objects: RESOURCES.iter().map(|_| BTreeMap::new()).collect(),
                labels: RESOURCES.iter().map(|_| HashMap::new()).collect(),
                ring: VecDeque::new(),
                window: window.max(1),
                compacted: 0,
            }),
            notify,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Writers never leave the maps half-updated across a panic point.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current revision.
    pub fn revision(&self) -> u64 {
        self.lock().rv
    }

    /// A receiver that changes whenever a write happens (its value is the new revision).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// Reads one object.
    pub fn get(&self, res: usize, ns: &str, name: &str) -> Option<Arc<Stored>> {
        self.lock().objects[res]
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Number of stored objects of a resource.
    pub fn count(&self, res: usize) -> usize {
        self.lock().objects[res].len()
    }

    /// Lists objects of `res` that pass `filter`, as `q` says (see [`ListQuery`]).
    pub fn list(
        &self,
        res: usize,
        q: &ListQuery<'_>,
        filter: impl Fn(&Stored) -> bool,
    ) -> ListPage {
        use std::ops::Bound;
        let ListQuery {
            ns,
            after,
            limit,
            count_remaining,
            label,
        } = *q;
        let inner = self.lock();
        let map = &inner.objects[res];
        let lower = match (after, ns) {
            (Some(k), _) => Bound::Excluded(k.clone()),
            (None, Some(ns)) => Bound::Included((ns.to_owned(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let in_ns = |k: &Key| ns.is_none_or(|ns| k.0 == ns);
        let candidates: Box<dyn Iterator<Item = (&Key, &Arc<Stored>)>> = match label {
            Some((k, v)) => match inner.labels[res].get(&(k.to_owned(), v.to_owned())) {
                Some(set) => Box::new(
                    set.range((lower, Bound::Unbounded))
                        .take_while(move |k| in_ns(k))
                        .filter_map(move |k| map.get_key_value(k)),
                ),
                None => Box::new(std::iter::empty()),
            },
            None => Box::new(
                map.range((lower, Bound::Unbounded))
                    .take_while(move |(k, _)| in_ns(k)),
            ),
        };
        let mut items = Vec::new();
        let mut next = None;
        let mut remaining = None;
        let mut iter = candidates;
        for (k, v) in iter.by_ref() {
            if !filter(v) {
                continue;
            }
            items.push(v.clone());
            if limit > 0 && items.len() >= limit {
                next = Some(k.clone());
                break;
            }
        }
        if next.is_some() {
            let rest = iter.filter(|(_, v)| filter(v)).count() as u64;
            if rest == 0 {
                next = None;
            } else if count_remaining {
                remaining = Some(rest);
            }
        }
        ListPage {
            items,
            rv: inner.rv,
            next,
            remaining,
        }
    }

    /// Lists every object of `res` in `ns` (all namespaces when `None`) and returns them with the
    /// revision, under one lock, for a watch that starts with synthetic ADDED events.
    pub fn snapshot(&self, res: usize, ns: Option<&str>) -> (Vec<Arc<Stored>>, u64) {
        let page = self.list(
            res,
            &ListQuery {
                ns,
                ..Default::default()
            },
            |_| true,
        );
        (page.items, page.rv)
    }

    /// The oldest revision from which a watch can resume, and the current one.
    pub fn window(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.compacted, inner.rv)
    }

    /// The events after revision `rv` (for watches).
    pub fn since(&self, rv: u64) -> Since {
        let inner = self.lock();
        if rv < inner.compacted {
            return Since::Expired {
                oldest: inner.compacted,
            };
        }
        let Some(first) = inner.ring.front().map(|e| e.rv) else {
            return Since::Events(Vec::new());
        };
        let start = (rv + 1).saturating_sub(first) as usize;
        Since::Events(inner.ring.iter().skip(start).cloned().collect())
    }

    /// Drops every retained event: watches and continue tokens older than the current revision
    /// now get 410 Expired (etcd compaction).
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.ring.clear();
        inner.compacted = inner.rv;
    }

    fn bump(&self, inner: &mut Inner) -> u64 {
        inner.rv += 1;
        inner.rv
    }

    fn notify(&self, rv: u64) {
        self.notify.send_replace(rv);
    }

    /// Creates an object; `AlreadyExists` when the name is taken.
    pub fn create(&self, res: usize, value: Value) -> Result<Arc<Stored>, ApiError> {
        let ns = value["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let name = value["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let mut inner = self.lock();
        let key = (ns, name);
        if inner.objects[res].contains_key(&key) {
            return Err(ApiError::already_exists(&RESOURCES[res], &key.1));
        }
        let rv = self.bump(&mut inner);
        let stored = Stored::new(value, rv);
        inner.index(res, &key, None, Some(&stored.value));
        inner.objects[res].insert(key, stored.clone());
        inner.push(Event {
            rv,
            res,
            kind: EventType::Added,
            obj: stored.clone(),
            prev: None,
        });
        drop(inner);
        self.notify(rv);
        Ok(stored)
    }

    /// Reads, changes and writes one object atomically: `f` sees the stored version and decides
    /// (see [`Change`]). Returns the resulting version and the event written (`None` for
    /// [`Change::Keep`]). `NotFound` when absent.
    pub fn update(
        &self,
        res: usize,
        ns: &str,
        name: &str,
        f: impl FnOnce(&Arc<Stored>) -> Result<Change, ApiError>,
    ) -> Result<(Arc<Stored>, Option<EventType>), ApiError> {
        let mut inner = self.lock();
        let key = (ns.to_owned(), name.to_owned());
        let current = inner.objects[res]
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&RESOURCES[res], name))?;
        match f(&current)? {
            Change::Keep => Ok((current, None)),
            Change::Put(value) => {
                let rv = self.bump(&mut inner);
                let stored = Stored::new(value, rv);
                inner.index(res, &key, Some(&current.value), Some(&stored.value));
                inner.objects[res].insert(key, stored.clone());
                inner.push(Event {
                    rv,
                    res,
                    kind: EventType::Modified,
                    obj: stored.clone(),
                    prev: Some(current),
                });
                drop(inner);
                self.notify(rv);
                Ok((stored, Some(EventType::Modified)))
            }
            Change::Remove(value) => {
                let rv = self.bump(&mut inner);
                let stored = Stored::new(value, rv);
                inner.index(res, &key, Some(&current.value), None);
                inner.objects[res].remove(&key);
                inner.push(Event {
                    rv,
                    res,
                    kind: EventType::Deleted,
                    obj: stored.clone(),
                    prev: Some(current),
                });
                drop(inner);
                self.notify(rv);
                Ok((stored, Some(EventType::Deleted)))
            }
        }
    }

    /// Removes every object of every namespaced resource in namespace `ns` (namespace deletion),
    /// returning the removed pods' names (their logs are dropped by the caller).
    pub fn remove_namespace_contents(&self, ns: &str) -> Vec<String> {
        let mut inner = self.lock();
        let mut pods = Vec::new();
        let mut last = 0;
        for (res, rt) in RESOURCES.iter().enumerate() {
            if !rt.namespaced {
                continue;
            }
            let keys: Vec<Key> = inner.objects[res]
                .range((ns.to_owned(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(k, _)| k.clone())
                .collect();
            for key in keys {
                if let Some(current) = inner.objects[res].remove(&key) {
                    inner.index(res, &key, Some(&current.value), None);
                    if res == resources::PODS {
                        pods.push(key.1.clone());
                    }
                    let rv = self.bump(&mut inner);
                    let stored = Stored::new(current.value.clone(), rv);
                    inner.push(Event {
                        rv,
                        res,
                        kind: EventType::Deleted,
                        obj: stored,
                        prev: Some(current),
                    });
                    last = rv;
                }
            }
        }
        drop(inner);
        if last > 0 {
            self.notify(last);
        }
        pods
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}})
    }

    #[test]
    fn revisions_are_global_and_events_resume_by_revision() {
        let store = Store::new(3);
        let cms = resources::id_of("", "v1", "configmaps").expect("configmaps");
        for n in ["a", "b", "c", "d"] {
            store.create(cms, cm(n)).expect("created");
        }
        assert_eq!(store.revision(), 4);
        let Since::Events(evs) = store.since(2) else {
            panic!("revision 2 is retained")
        };
        assert_eq!(evs.iter().map(|e| e.rv).collect::<Vec<_>>(), vec![3, 4]);
        assert!(matches!(store.since(0), Since::Expired { oldest: 1 }));
        store.compact();
        assert!(matches!(store.since(3), Since::Expired { oldest: 4 }));
        let Since::Events(evs) = store.since(4) else {
            panic!("the current revision is always resumable")
        };
        assert!(evs.is_empty());
    }

    #[test]
    fn list_pages_by_key() {
        let store = Store::new(100);
        let cms = resources::id_of("", "v1", "configmaps").expect("configmaps");
        for n in ["a", "b", "c"] {
            store.create(cms, cm(n)).expect("created");
        }
        let q = ListQuery {
            ns: Some("default"),
            limit: 2,
            count_remaining: true,
            ..Default::default()
        };
        let p1 = store.list(cms, &q, |_| true);
        assert_eq!(p1.items.len(), 2);
        assert_eq!(p1.remaining, Some(1));
        let p2 = store.list(
            cms,
            &ListQuery {
                after: p1.next.as_ref(),
                ..q
            },
            |_| true,
        );
        assert_eq!(p2.items.len(), 1);
        assert!(p2.next.is_none());
        assert!(
            store
                .list(
                    cms,
                    &ListQuery {
                        ns: Some("other"),
                        ..Default::default()
                    },
                    |_| true
                )
                .items
                .is_empty()
        );
    }
}
