//! Shared watch caches: one `kube` watcher per resource kind, feeding an in-memory map of the
//! kind's objects and notifying the controllers of each change (old and new object). This is the
//! informer layer of kube-controller-manager: every controller reads from these maps instead of
//! calling the API, and no kind is watched twice. A relist (after `410 Gone` or a dropped watch)
//! replaces the map atomically and reports only what changed.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Context;

/// Namespace (empty for cluster-scoped objects) and name.
pub(crate) type ObjKey = (String, String);

/// The key of an object.
pub(crate) fn key_of<K: Resource>(obj: &K) -> ObjKey {
    (
        obj.meta().namespace.clone().unwrap_or_default(),
        obj.meta().name.clone().unwrap_or_default(),
    )
}

/// A change seen by a watch.
#[derive(Debug)]
pub(crate) enum Change<K> {
    /// Added or modified (`old` is what the cache held before, if anything).
    Applied {
        /// Previous version.
        old: Option<Arc<K>>,
        /// New version.
        new: Arc<K>,
    },
    /// Deleted (the last version seen).
    Deleted(Arc<K>),
}

/// The kind of an object as the garbage collector needs it to address the object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct KindInfo {
    /// `apiVersion`, e.g. `batch/v1`.
    pub(crate) api_version: String,
    /// `kind`, e.g. `Job`.
    pub(crate) kind: String,
    /// Plural resource name, e.g. `jobs`.
    pub(crate) plural: String,
}

impl KindInfo {
    pub(crate) fn api_resource(&self) -> ApiResource {
        let (group, version) = match self.api_version.split_once('/') {
            Some((g, v)) => (g.to_owned(), v.to_owned()),
            None => (String::new(), self.api_version.clone()),
        };
        ApiResource {
            group,
            version,
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }
}

/// The metadata view of a change, for the garbage collector.
#[derive(Debug)]
pub(crate) struct MetaChange<'a> {
    pub(crate) kind: &'a KindInfo,
    pub(crate) meta: &'a ObjectMeta,
    pub(crate) deleted: bool,
}

impl<K: Resource> Change<K> {
    /// The object after the change (the last version for deletions).
    pub(crate) fn object(&self) -> &Arc<K> {
        match self {
            Change::Applied { new, .. } => new,
            Change::Deleted(old) => old,
        }
    }

    /// Metadata view for the garbage collector.
    pub(crate) fn meta_change<'a>(&'a self, kind: &'a KindInfo) -> MetaChange<'a> {
        MetaChange {
            kind,
            meta: self.object().meta(),
            deleted: matches!(self, Change::Deleted(_)),
        }
    }
}

type Subscriber<K> = Box<dyn Fn(&Change<K>) + Send + Sync>;

/// The cached objects of one kind, plus the controllers to notify of changes.
pub(crate) struct Cache<K> {
    pub(crate) kind: KindInfo,
    objects: RwLock<HashMap<ObjKey, Arc<K>>>,
    subscribers: RwLock<Vec<Subscriber<K>>>,
    synced: AtomicBool,
}

impl<K> Debug for Cache<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("kind", &self.kind.kind)
            .finish()
    }
}

impl<K> Cache<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    fn new(api_version: &str, kind: &str, plural: &str) -> Self {
        Self {
            kind: KindInfo {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
                plural: plural.to_owned(),
            },
            objects: RwLock::new(HashMap::new()),
            subscribers: RwLock::new(Vec::new()),
            synced: AtomicBool::new(false),
        }
    }

    /// Registers a change handler (called on the watch task; it must only enqueue work).
    pub(crate) fn subscribe(&self, f: impl Fn(&Change<K>) + Send + Sync + 'static) {
        self.subscribers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(f));
    }

    /// The cached object with this key.
    pub(crate) fn get(&self, key: &ObjKey) -> Option<Arc<K>> {
        self.objects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// True once the first list has completed.
    pub(crate) fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    fn notify(&self, changes: &[Change<K>]) {
        let subs = self.subscribers.read().unwrap_or_else(|p| p.into_inner());
        for change in changes {
            for s in subs.iter() {
                s(change);
            }
        }
    }

    fn apply(&self, obj: K) {
        let new = Arc::new(obj);
        let old = self
            .objects
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key_of(new.as_ref()), new.clone());
        self.notify(&[Change::Applied { old, new }]);
    }

    fn delete(&self, obj: K) {
        let key = key_of(&obj);
        let removed = self
            .objects
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        let last = removed.unwrap_or_else(|| Arc::new(obj));
        self.notify(&[Change::Deleted(last)]);
    }

    fn replace(&self, listed: HashMap<ObjKey, Arc<K>>) {
        let mut changes = Vec::new();
        {
            let mut objects = self.objects.write().unwrap_or_else(|p| p.into_inner());
            for (key, old) in objects.iter() {
                if !listed.contains_key(key) {
                    changes.push(Change::Deleted(old.clone()));
                }
            }
            for (key, new) in &listed {
                let old = objects.get(key).cloned();
                let unchanged = old.as_ref().is_some_and(|o| {
                    o.meta().resource_version == new.meta().resource_version
                        && o.meta().uid == new.meta().uid
                });
                if !unchanged {
                    changes.push(Change::Applied {
                        old,
                        new: new.clone(),
                    });
                }
            }
            *objects = listed;
        }
        self.notify(&changes);
        self.synced.store(true, Ordering::Release);
    }

    /// Runs the watch until shutdown.
    async fn run(self: Arc<Self>, api: Api<K>, ctx: Arc<Context>)
    where
        K::DynamicType: Default + Clone + Eq + std::hash::Hash,
    {
        let config = watcher::Config::default();
        let stream = watcher::watcher(api, config).default_backoff();
        self.consume(stream, ctx).await;
    }

    async fn consume(
        &self,
        stream: impl futures::Stream<Item = Result<Event<K>, watcher::Error>>,
        ctx: Arc<Context>,
    ) {
        let mut stream = std::pin::pin!(stream);
        let mut buffer: HashMap<ObjKey, Arc<K>> = HashMap::new();
        loop {
            let event = tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                event = stream.next() => event,
            };
            match event {
                None => return,
                Some(Ok(Event::Init)) => buffer = HashMap::new(),
                Some(Ok(Event::InitApply(obj))) => {
                    buffer.insert(key_of(&obj), Arc::new(obj));
                }
                Some(Ok(Event::InitDone)) => self.replace(std::mem::take(&mut buffer)),
                Some(Ok(Event::Apply(obj))) => self.apply(obj),
                Some(Ok(Event::Delete(obj))) => self.delete(obj),
                Some(Err(e)) => {
                    tracing::debug!(kind = %self.kind.kind, error = %e, "watch failed; retrying")
                }
            }
        }
    }
}

impl Cache<DynamicObject> {
    async fn run_dynamic(self: Arc<Self>, ctx: Arc<Context>) {
        let ar = self.kind.api_resource();
        let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &ar);
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        self.consume(stream, ctx).await;
    }
}

/// The caches of every kind the controllers watch.
#[derive(Debug)]
pub(crate) struct Caches {
    pub(crate) jobs: Arc<Cache<Job>>,
    pub(crate) pods: Arc<Cache<Pod>>,
    pub(crate) deployments: Arc<Cache<Deployment>>,
    /// Other kinds with owner references, watched for the garbage collector only.
    pub(crate) others: Vec<Arc<Cache<DynamicObject>>>,
}

impl Caches {
    pub(crate) fn new() -> Self {
        let others = [
            ("v1", "ConfigMap", "configmaps"),
            ("v1", "Service", "services"),
            ("coordination.k8s.io/v1", "Lease", "leases"),
        ]
        .into_iter()
        .map(|(v, k, p)| Arc::new(Cache::new(v, k, p)))
        .collect();
        Self {
            jobs: Arc::new(Cache::new("batch/v1", "Job", "jobs")),
            pods: Arc::new(Cache::new("v1", "Pod", "pods")),
            deployments: Arc::new(Cache::new("apps/v1", "Deployment", "deployments")),
            others,
        }
    }

    /// Every kind, for lookups by `apiVersion`/`kind`.
    pub(crate) fn kinds(&self) -> Vec<KindInfo> {
        let mut kinds = vec![
            self.jobs.kind.clone(),
            self.pods.kind.clone(),
            self.deployments.kind.clone(),
        ];
        kinds.extend(self.others.iter().map(|c| c.kind.clone()));
        kinds
    }

    /// Starts the watches; `ready` turns true when Jobs and Pods are listed and every other kind
    /// is listed or has failed to list for 5 s (a kind the server does not serve).
    pub(crate) fn run(
        &self,
        ctx: &Arc<Context>,
        ready: watch::Sender<bool>,
    ) -> Vec<JoinHandle<()>> {
        let client = ctx.client.clone();
        let mut tasks = vec![
            tokio::spawn(self.jobs.clone().run(Api::all(client.clone()), ctx.clone())),
            tokio::spawn(self.pods.clone().run(Api::all(client.clone()), ctx.clone())),
            tokio::spawn(self.deployments.clone().run(Api::all(client), ctx.clone())),
        ];
        for other in &self.others {
            tasks.push(tokio::spawn(other.clone().run_dynamic(ctx.clone())));
        }
        let (jobs, pods, others) = (self.jobs.clone(), self.pods.clone(), self.others.clone());
        let deployments = self.deployments.clone();
        let cancel = ctx.cancel.clone();
        tasks.push(tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            loop {
                let others_ok = (deployments.is_synced() && others.iter().all(|c| c.is_synced()))
                    || started.elapsed() > Duration::from_secs(5);
                if jobs.is_synced() && pods.is_synced() && others_ok {
                    ready.send_replace(true);
                    return;
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
        }));
        tasks
    }
}
