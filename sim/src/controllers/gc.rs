//! The garbage collector, as kube-controller-manager's `garbagecollector`: it keeps a graph of
//! every watched object's `ownerReferences` (Jobs, Pods, ConfigMaps, Services, Deployments,
//! Leases) and
//! - deletes an object once all its owners are gone (checked against the API before acting, so
//!   that an owner the watch has not delivered yet is not mistaken for a missing one), and drops
//!   dangling references when only some owners are gone;
//! - for an owner deleted with `propagationPolicy: Foreground` (finalizer `foregroundDeletion`):
//!   deletes its dependents, waits until those with `blockOwnerDeletion: true` are gone, then
//!   removes the finalizer so that the server can delete the owner;
//! - for an owner deleted with `propagationPolicy: Orphan` (finalizer `orphan`): removes the
//!   owner from its dependents' `ownerReferences`, then removes the finalizer.
//!
//! `Background` deletion needs nothing special: the owner goes at once and its dependents are
//! collected as orphans.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use tokio::task::JoinHandle;

use super::cache::{KindInfo, MetaChange, ObjKey};
use super::queue::{WorkQueue, spawn_workers};
use super::{Context, ControllerError, lock};

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

/// One object in the ownership graph.
#[derive(Clone, Debug)]
struct Node {
    kind: KindInfo,
    key: ObjKey,
    owners: Vec<OwnerReference>,
    finalizers: Vec<String>,
    deleting: bool,
    resource_version: Option<String>,
}

#[derive(Debug, Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    /// Owner uid → dependent uids.
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    fn unlink(&mut self, uid: &str, owners: &[OwnerReference]) {
        for o in owners {
            if let Some(set) = self.dependents.get_mut(&o.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
        }
    }
}

#[derive(Debug)]
struct Inner {
    ctx: Arc<Context>,
    queue: WorkQueue<String>,
    timer: Mutex<Option<JoinHandle<()>>>,
    graph: Mutex<Graph>,
}

/// The garbage collector (cheap to clone).
#[derive(Clone, Debug)]
pub(crate) struct GarbageCollector {
    inner: Arc<Inner>,
}

impl GarbageCollector {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        let (queue, timer) = WorkQueue::new(&ctx);
        Self {
            inner: Arc::new(Inner {
                ctx,
                queue,
                timer: Mutex::new(Some(timer)),
                graph: Mutex::new(Graph::default()),
            }),
        }
    }

    /// Watch handler for every kind: update the graph and queue what may need collecting.
    pub(crate) fn on_change(&self, change: MetaChange<'_>) {
        let meta: &ObjectMeta = change.meta;
        let Some(uid) = meta.uid.clone() else { return };
        let mut to_queue: Vec<String> = Vec::new();
        {
            let mut graph = lock(&self.inner.graph);
            let previous = graph.nodes.remove(&uid);
            if let Some(prev) = &previous {
                graph.unlink(&uid, &prev.owners);
            }
            if change.deleted {
                // Dependents may now be orphans; owners may be waiting for this one.
                if let Some(deps) = graph.dependents.get(&uid) {
                    to_queue.extend(deps.iter().cloned());
                }
                if let Some(prev) = previous {
                    to_queue.extend(prev.owners.iter().map(|o| o.uid.clone()));
                }
            } else {
                let node = Node {
                    kind: change.kind.clone(),
                    key: (
                        meta.namespace.clone().unwrap_or_default(),
                        meta.name.clone().unwrap_or_default(),
                    ),
                    owners: meta.owner_references.clone().unwrap_or_default(),
                    finalizers: meta.finalizers.clone().unwrap_or_default(),
                    deleting: meta.deletion_timestamp.is_some(),
                    resource_version: meta.resource_version.clone(),
                };
                for o in &node.owners {
                    graph
                        .dependents
                        .entry(o.uid.clone())
                        .or_default()
                        .insert(uid.clone());
                    if graph.nodes.get(&o.uid).is_some_and(|n| n.deleting) {
                        to_queue.push(o.uid.clone());
                    }
                }
                let gc_finalizer = node.deleting
                    && node
                        .finalizers
                        .iter()
                        .any(|f| f == FOREGROUND || f == ORPHAN);
                if !node.owners.is_empty() || gc_finalizer {
                    to_queue.push(uid.clone());
                }
                graph.nodes.insert(uid, node);
            }
        }
        for uid in to_queue {
            self.inner.queue.add(uid);
        }
    }

    /// Starts the workers once the caches are synced.
    pub(crate) fn run(&self, workers: usize) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<JoinHandle<()>> = lock(&self.inner.timer).take().into_iter().collect();
        let this = self.clone();
        let ctx = self.inner.ctx.clone();
        let queue = self.inner.queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut ready = ctx.ready.clone();
            tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                _ = ready.wait_for(|r| *r) => {}
            }
            let handles = spawn_workers("garbage-collector", workers, queue, ctx, move |uid| {
                let this = this.clone();
                async move { this.sync(uid).await }
            });
            for h in handles {
                let _ = h.await;
            }
        }));
        tasks
    }

    fn dynamic_api(&self, kind: &KindInfo, ns: &str) -> Api<DynamicObject> {
        let ar = kind.api_resource();
        let client = self.inner.ctx.client.clone();
        if ns.is_empty() {
            Api::all_with(client, &ar)
        } else {
            Api::namespaced_with(client, ns, &ar)
        }
    }

    async fn patch_meta(
        &self,
        node: &Node,
        meta: serde_json::Value,
    ) -> Result<(), ControllerError> {
        let api = self.dynamic_api(&node.kind, &node.key.0);
        match api
            .patch(
                &node.key.1,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "metadata": meta })),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn remove_finalizer(&self, node: &Node, finalizer: &str) -> Result<(), ControllerError> {
        let remaining: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
        self.patch_meta(
            node,
            serde_json::json!({
                "resourceVersion": node.resource_version,
                "finalizers": if remaining.is_empty() { serde_json::Value::Null } else { serde_json::json!(remaining) },
            }),
        )
        .await
    }

    async fn delete(
        &self,
        uid: &str,
        node: &Node,
        policy: PropagationPolicy,
    ) -> Result<(), ControllerError> {
        let api = self.dynamic_api(&node.kind, &node.key.0);
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&node.key.1, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether an owner still exists: from the graph, else by asking the API.
    async fn owner_exists(
        &self,
        dependent: &Node,
        owner: &OwnerReference,
    ) -> Result<bool, ControllerError> {
        if lock(&self.inner.graph).nodes.contains_key(&owner.uid) {
            return Ok(true);
        }
        let kinds = self.inner.ctx.caches.kinds();
        let Some(kind) = kinds
            .iter()
            .find(|k| k.api_version == owner.api_version && k.kind == owner.kind)
        else {
            // A kind the simulated cluster does not serve: leave the reference alone.
            return Ok(true);
        };
        let api = self.dynamic_api(kind, &dependent.key.0);
        match api.get_opt(&owner.name).await? {
            Some(obj) => Ok(obj.metadata.uid.as_deref() == Some(owner.uid.as_str())),
            None => Ok(false),
        }
    }

    async fn sync(&self, uid: String) -> Result<(), ControllerError> {
        let (node, deps) = {
            let graph = lock(&self.inner.graph);
            let Some(node) = graph.nodes.get(&uid).cloned() else {
                return Ok(());
            };
            let deps: Vec<(String, Node)> = graph
                .dependents
                .get(&uid)
                .into_iter()
                .flatten()
                .filter_map(|d| graph.nodes.get(d).map(|n| (d.clone(), n.clone())))
                .collect();
            (node, deps)
        };
        if node.deleting && node.finalizers.iter().any(|f| f == ORPHAN) {
            for (_, dep) in &deps {
                let remaining: Vec<&OwnerReference> =
                    dep.owners.iter().filter(|o| o.uid != uid).collect();
                self.patch_meta(
                    dep,
                    serde_json::json!({
                        "ownerReferences": if remaining.is_empty() { serde_json::Value::Null } else { serde_json::json!(remaining) }
                    }),
                )
                .await?;
            }
            return self.remove_finalizer(&node, ORPHAN).await;
        }
        if node.deleting && node.finalizers.iter().any(|f| f == FOREGROUND) {
            let mut blocking = 0;
            for (dep_uid, dep) in &deps {
                let blocks = dep
                    .owners
                    .iter()
                    .any(|o| o.uid == uid && o.block_owner_deletion == Some(true));
                if blocks {
                    blocking += 1;
                }
                if !dep.deleting {
                    let has_deps = lock(&self.inner.graph).dependents.contains_key(dep_uid);
                    let policy = if has_deps {
                        PropagationPolicy::Foreground
                    } else {
                        PropagationPolicy::Background
                    };
                    self.delete(dep_uid, dep, policy).await?;
                }
            }
            if blocking == 0 {
                return self.remove_finalizer(&node, FOREGROUND).await;
            }
            return Ok(());
        }
        if node.owners.is_empty() {
            return Ok(());
        }
        let mut absent = Vec::new();
        for owner in &node.owners {
            if !self.owner_exists(&node, owner).await? {
                absent.push(owner.uid.clone());
            }
        }
        if absent.is_empty() || node.deleting {
            return Ok(());
        }
        if absent.len() == node.owners.len() {
            self.delete(&uid, &node, PropagationPolicy::Background)
                .await
        } else {
            let remaining: Vec<&OwnerReference> = node
                .owners
                .iter()
                .filter(|o| !absent.contains(&o.uid))
                .collect();
            self.patch_meta(&node, serde_json::json!({ "ownerReferences": remaining }))
                .await
        }
    }
}
