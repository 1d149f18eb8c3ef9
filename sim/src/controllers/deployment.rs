//! The Deployment controller, folded with the ReplicaSet controller it drives in
//! kube-controller-manager: it keeps `spec.replicas` pods of a Deployment's current template
//! running and writes the Deployment's status (`replicas`, `updatedReplicas`, `readyReplicas`,
//! `availableReplicas`, `unavailableReplicas`, `observedGeneration`, the `Available` and
//! `Progressing` conditions).
//!
//! There is no ReplicaSet layer: pods are owned by the Deployment itself (a controller
//! ownerReference, so deleting the Deployment collects them) and are named and labelled as a
//! ReplicaSet would name them — `<deployment>-<pod-template-hash>-<5 chars>`, label
//! `pod-template-hash`. A template change replaces every old pod at once (no rolling update).
//! A pod counts as available once it has been `Ready` for `minReadySeconds`. As the Job
//! controller, it keeps expectations of the pods it created or deleted and does not act on a
//! Deployment again until its watch has observed them.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::cache::{Change, ObjKey, key_of};
use super::events::EventType;
use super::job::{api_message, random_suffix};
use super::owned::OwnedPods;
use super::queue::{WorkQueue, spawn_workers};
use super::{Context, ControllerError, from_time, is_terminal, lock, to_time};

const COMPONENT: &str = "deployment-controller";
/// Label carrying the hash of the pod template a pod was made from.
pub(crate) const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// The controlling Deployment of a pod: (uid, name).
fn controller_deployment(pod: &Pod) -> Option<(String, String)> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| {
            o.controller == Some(true) && o.kind == "Deployment" && o.api_version == "apps/v1"
        })
        .map(|o| (o.uid.clone(), o.name.clone()))
}

/// A stable 10-character hash of the pod template, in Kubernetes' name-suffix alphabet.
fn template_hash(deployment: &Deployment) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let text = serde_json::to_string(&deployment.spec.template).unwrap_or_default();
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    let mut h = hasher.finish();
    (0..10)
        .map(|_| {
            let c = ALPHABET[(h % ALPHABET.len() as u64) as usize] as char;
            h /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// An absolute number, or a percentage of `total` rounded down.
fn scaled(v: &IntOrString, total: i32) -> i32 {
    match v {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => s
            .trim_end_matches('%')
            .parse::<i32>()
            .map(|pct| total * pct / 100)
            .unwrap_or(0),
    }
}

#[derive(Debug)]
struct Inner {
    ctx: Arc<Context>,
    queue: WorkQueue<ObjKey>,
    timer: Mutex<Option<JoinHandle<()>>>,
    /// The pods of each Deployment (by uid) and what it expects of them.
    pods: OwnedPods,
}

/// The Deployment controller (cheap to clone).
#[derive(Clone, Debug)]
pub(crate) struct DeploymentController {
    inner: Arc<Inner>,
}

impl DeploymentController {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        let (queue, timer) = WorkQueue::new(&ctx);
        Self {
            inner: Arc::new(Inner {
                ctx,
                queue,
                timer: Mutex::new(Some(timer)),
                pods: OwnedPods::default(),
            }),
        }
    }

    /// Deployment watch handler.
    pub(crate) fn on_deployment(&self, change: &Change<Deployment>) {
        let deployment = change.object();
        if let Change::Deleted(d) = change {
            if let Some(uid) = d.uid() {
                self.inner.pods.expectations.forget(&uid);
            }
            return;
        }
        self.inner.queue.add(key_of(deployment.as_ref()));
    }

    /// Pod watch handler: index by Deployment, observe expectations, queue the Deployment.
    pub(crate) fn on_pod(&self, change: &Change<Pod>) {
        let pod = change.object();
        let Some((uid, name)) = controller_deployment(pod) else {
            return;
        };
        self.inner.pods.observe(&uid, change);
        self.inner
            .queue
            .add((pod.namespace().unwrap_or_default(), name));
    }

    /// Starts the timer and the workers.
    pub(crate) fn run(&self, workers: usize) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<JoinHandle<()>> = lock(&self.inner.timer).take().into_iter().collect();
        let this = self.clone();
        tasks.extend(spawn_workers(
            "deployment",
            workers,
            self.inner.queue.clone(),
            self.inner.ctx.clone(),
            move |key| {
                let this = this.clone();
                async move { this.sync(key).await }
            },
        ));
        tasks
    }

    /// One sync: scale to `spec.replicas` pods of the current template, then write the status.
    async fn sync(&self, key: ObjKey) -> Result<(), ControllerError> {
        let ctx = &self.inner.ctx;
        let Some(deployment) = ctx.caches.deployments.get(&key) else {
            return Ok(());
        };
        let Some(uid) = deployment.uid() else {
            return Ok(());
        };
        if deployment.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        if !self
            .inner
            .pods
            .expectations
            .satisfied(&uid, ctx.config.timing.expectations_timeout)
        {
            self.inner
                .queue
                .add_after(key.clone(), ctx.config.timing.expectations_timeout);
            return Ok(());
        }
        let (ns, name) = key.clone();
        let spec = deployment.spec.clone();
        let desired = spec.replicas.unwrap_or(1).max(0);
        let min_ready = spec.min_ready_seconds.unwrap_or(0).max(0) as i64;
        let paused = spec.paused.unwrap_or(false);
        let hash = template_hash(&deployment);

        let keys = self.inner.pods.keys(&uid);
        let pods: Vec<Arc<Pod>> = keys
            .iter()
            .filter_map(|k| ctx.caches.pods.get(k))
            .filter(|p| controller_deployment(p).is_some_and(|(u, _)| u == uid))
            .collect();
        let active: Vec<&Arc<Pod>> = pods
            .iter()
            .filter(|p| !is_terminal(p) && p.metadata.deletion_timestamp.is_none())
            .collect();
        let is_current =
            |p: &Pod| p.labels().get(POD_TEMPLATE_HASH).map(String::as_str) == Some(hash.as_str());
        let (current, old): (Vec<&Arc<Pod>>, Vec<&Arc<Pod>>) =
            active.iter().partition(|p| is_current(p));

        let mut to_delete: Vec<Arc<Pod>> = Vec::new();
        let mut to_create = 0usize;
        if !paused {
            to_delete.extend(old.iter().map(|p| (*p).clone()));
            let have = current.len() as i32;
            if have < desired {
                to_create = (desired - have) as usize;
            } else if have > desired {
                let mut extra = current.clone();
                // Not-ready pods first, then the youngest, as the ReplicaSet controller does.
                extra.sort_by_key(|p| {
                    (
                        super::pod_condition_true(p, "Ready"),
                        std::cmp::Reverse(p.metadata.creation_timestamp.clone().map(|t| t.0)),
                    )
                });
                to_delete.extend(
                    extra
                        .into_iter()
                        .take((have - desired) as usize)
                        .map(|p| (*p).clone()),
                );
            }
        }
        if to_create > 0 || !to_delete.is_empty() {
            self.inner.pods.expectations.expect(
                &uid,
                to_create as i64,
                to_delete.iter().filter_map(|p| p.uid()),
            );
        }
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        for pod in &to_delete {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pod.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&pod.name_any(), &dp).await {
                Ok(_) => ctx.recorder.record(
                    deployment.as_ref(),
                    COMPONENT,
                    None,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", pod.name_any()),
                ),
                Err(e) => {
                    if let Some(u) = pod.uid() {
                        self.inner.pods.expectations.deletion_observed(&uid, &u);
                    }
                    tracing::debug!(pod = %pod.name_any(), error = %e, "deleting pod failed");
                }
            }
        }
        let mut create_error = None;
        for _ in 0..to_create {
            let pod = self.pod_for(&deployment, &uid, &hash);
            match api.create(&PostParams::default(), &pod).await {
                Ok(created) => ctx.recorder.record(
                    deployment.as_ref(),
                    COMPONENT,
                    None,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {}", created.name_any()),
                ),
                Err(e) => {
                    self.inner.pods.expectations.creation_observed(&uid);
                    ctx.recorder.record(
                        deployment.as_ref(),
                        COMPONENT,
                        None,
                        EventType::Warning,
                        "FailedCreate",
                        format!("Error creating: {}", api_message(&e)),
                    );
                    create_error = Some(e);
                    break;
                }
            }
        }

        // Status, from the pods as last observed.
        let now = Utc::now();
        let mut requeue_at: Option<Instant> = None;
        let ready_since = |p: &Pod| {
            p.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "Ready" && c.status == "True")
                .map(|c| {
                    c.last_transition_time
                        .as_ref()
                        .map(from_time)
                        .unwrap_or(now)
                })
        };
        let mut ready = 0;
        let mut available = 0;
        for p in &active {
            if let Some(since) = ready_since(p) {
                ready += 1;
                let at = since + chrono::Duration::seconds(min_ready);
                if at <= now {
                    available += 1;
                } else {
                    let left = (at - now).to_std().unwrap_or_default();
                    let t = Instant::now() + left;
                    requeue_at = Some(requeue_at.map_or(t, |r: Instant| r.min(t)));
                }
            }
        }
        let replicas = active.len() as i32;
        let updated = current.len() as i32;
        // maxUnavailable of the RollingUpdate strategy (25 % by default), rounded down.
        let max_unavailable = spec
            .strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.max_unavailable.as_ref())
            .map(|v| scaled(v, desired))
            .unwrap_or(desired / 4);
        let old_status = deployment.status.clone().unwrap_or_default();
        let old_conditions = old_status.conditions.clone().unwrap_or_default();
        let condition = |type_: &str, ok: bool, reason: &str, message: String| {
            let status = if ok { "True" } else { "False" };
            let previous = old_conditions
                .iter()
                .find(|c| c.type_.as_deref() == Some(type_));
            let unchanged = previous.is_some_and(|c| {
                c.status.as_deref() == Some(status) && c.reason.as_deref() == Some(reason)
            });
            DeploymentCondition {
                type_: Some(type_.to_owned()),
                status: Some(status.to_owned()),
                reason: Some(reason.to_owned()),
                message: Some(message),
                last_transition_time: if unchanged {
                    previous.and_then(|c| c.last_transition_time.clone())
                } else {
                    Some(to_time(now))
                },
                last_update_time: if unchanged {
                    previous.and_then(|c| c.last_update_time.clone())
                } else {
                    Some(to_time(now))
                },
            }
        };
        let minimum = available >= desired - max_unavailable;
        let rs_name = format!("{name}-{hash}");
        let complete = updated == desired && available == desired && replicas == desired;
        let conditions = vec![
            condition(
                "Available",
                minimum,
                if minimum {
                    "MinimumReplicasAvailable"
                } else {
                    "MinimumReplicasUnavailable"
                },
                if minimum {
                    "Deployment has minimum availability.".to_owned()
                } else {
                    "Deployment does not have minimum availability.".to_owned()
                },
            ),
            condition(
                "Progressing",
                true,
                if complete {
                    "NewReplicaSetAvailable"
                } else {
                    "ReplicaSetUpdated"
                },
                if complete {
                    format!("ReplicaSet \"{rs_name}\" has successfully progressed.")
                } else {
                    format!("ReplicaSet \"{rs_name}\" is progressing.")
                },
            ),
        ];
        let nonzero = |v: i32| (v != 0).then_some(v);
        let status = DeploymentStatus {
            observed_generation: deployment.metadata.generation,
            replicas: nonzero(replicas),
            updated_replicas: nonzero(updated),
            ready_replicas: nonzero(ready),
            available_replicas: nonzero(available),
            unavailable_replicas: nonzero((desired - available).max(0)),
            terminating_replicas: None,
            conditions: Some(conditions),
            collision_count: None,
        };
        if status != old_status {
            let mut body = serde_json::to_value(&status).map_err(ControllerError::Encode)?;
            let old_value = serde_json::to_value(&old_status).map_err(ControllerError::Encode)?;
            if let (Some(new_map), Some(old_map)) = (body.as_object_mut(), old_value.as_object()) {
                for k in old_map.keys() {
                    new_map.entry(k.clone()).or_insert(serde_json::Value::Null);
                }
            }
            let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
            deployments
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({ "status": body })),
                )
                .await?;
        }
        if let Some(at) = requeue_at {
            self.inner.queue.add_at(key, at);
        }
        if let Some(e) = create_error {
            return Err(e.into());
        }
        Ok(())
    }

    /// A new pod of the Deployment's current template.
    fn pod_for(&self, deployment: &Deployment, uid: &str, hash: &str) -> Pod {
        let name = deployment.name_any();
        let template = deployment.spec.template.clone();
        let mut meta = template.metadata.unwrap_or_default();
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.to_owned(), hash.to_owned());
        let prefix: String = format!("{name}-{hash}-").chars().take(58).collect();
        meta.name = Some(format!("{prefix}{}", random_suffix()));
        meta.generate_name = None;
        meta.namespace = deployment.namespace();
        meta.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name,
            uid: uid.to_owned(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        Pod {
            metadata: meta,
            spec: template.spec,
            status: None,
        }
    }
}
