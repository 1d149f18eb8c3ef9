//! The scheduler (`default-scheduler`) over the configured node pool. It fits each unbound pod's
//! requests (sum of containers and native sidecars, or the largest init container if bigger;
//! a missing request counts as its limit, as API defaulting does), `nodeSelector`, required node
//! affinity (`In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt` on labels, `metadata.name` via
//! `matchFields`), taints (`NoSchedule`, `NoExecute`) against tolerations, and the node's pod
//! limit; it picks the least-allocated fitting node and binds with the `binding` subresource.
//! When nothing fits the pod stays `Pending` with `PodScheduled=False`, reason `Unschedulable`,
//! a message in Kubernetes' format ("0/3 nodes are available: 3 Insufficient cpu. preemption:
//! …") and a `FailedScheduling` Event; it is retried when a pod leaves a node and every
//! `unschedulable_retry`. Node usage is tracked incrementally from the pod watch, and a pod is
//! "assumed" on its node from the moment it is chosen, so that concurrent decisions never
//! overcommit a node.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use k8s_openapi::api::core::v1::{Container, Pod, PodCondition};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use taskpod_adapter_sdk::quantity;
use tokio::task::JoinHandle;

use super::cache::{Change, ObjKey, key_of};
use super::events::EventType;
use super::queue::{WorkQueue, spawn_workers};
use super::{Context, ControllerError, NodeSpec, is_terminal, lock, to_time};

const COMPONENT: &str = "default-scheduler";

/// CPU (millicores) and memory (bytes) requested.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Req {
    cpu: u64,
    mem: u64,
}

#[derive(Debug)]
struct NodeState {
    spec: NodeSpec,
    used: Req,
    pods: u32,
}

#[derive(Debug, Default)]
struct State {
    nodes: Vec<NodeState>,
    /// Pods that consume node resources: uid → (node index, request).
    bound: HashMap<String, (usize, Req)>,
    unschedulable: HashSet<ObjKey>,
    /// Last unschedulable message written for a pod (no repeat Events for the same message).
    reported: HashMap<ObjKey, String>,
}

impl State {
    fn release(&mut self, uid: &str) -> bool {
        if let Some((i, req)) = self.bound.remove(uid) {
            let n = &mut self.nodes[i];
            n.used.cpu = n.used.cpu.saturating_sub(req.cpu);
            n.used.mem = n.used.mem.saturating_sub(req.mem);
            n.pods = n.pods.saturating_sub(1);
            true
        } else {
            false
        }
    }

    fn assume(&mut self, uid: String, i: usize, req: Req) {
        if self.bound.contains_key(&uid) {
            return;
        }
        let n = &mut self.nodes[i];
        n.used.cpu += req.cpu;
        n.used.mem += req.mem;
        n.pods += 1;
        self.bound.insert(uid, (i, req));
    }
}

#[derive(Debug)]
struct Inner {
    ctx: Arc<Context>,
    queue: WorkQueue<ObjKey>,
    timer: Mutex<Option<JoinHandle<()>>>,
    state: Mutex<State>,
}

/// The scheduler (cheap to clone).
#[derive(Clone, Debug)]
pub(crate) struct Scheduler {
    inner: Arc<Inner>,
}

fn container_req(c: &Container) -> Req {
    let r = c.resources.as_ref();
    let get = |name: &str| {
        r.and_then(|r| r.requests.as_ref().and_then(|m| m.get(name)))
            .or_else(|| r.and_then(|r| r.limits.as_ref().and_then(|m| m.get(name))))
            .map(|q| q.0.clone())
    };
    Req {
        cpu: get("cpu")
            .and_then(|q| quantity::cpu_millis(&q))
            .unwrap_or(0),
        mem: get("memory")
            .and_then(|q| quantity::memory_bytes(&q))
            .unwrap_or(0),
    }
}

/// The pod's effective request.
fn pod_req(pod: &Pod) -> Req {
    let Some(spec) = pod.spec.as_ref() else {
        return Req::default();
    };
    let mut total = Req::default();
    for c in &spec.containers {
        let r = container_req(c);
        total.cpu += r.cpu;
        total.mem += r.mem;
    }
    let mut sidecars = Req::default();
    let mut init_max = Req::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_req(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.cpu += r.cpu;
            sidecars.mem += r.mem;
        } else {
            init_max.cpu = init_max.cpu.max(r.cpu + sidecars.cpu);
            init_max.mem = init_max.mem.max(r.mem + sidecars.mem);
        }
    }
    Req {
        cpu: (total.cpu + sidecars.cpu).max(init_max.cpu),
        mem: (total.mem + sidecars.mem).max(init_max.mem),
    }
}

fn effective_labels(node: &NodeSpec) -> BTreeMap<String, String> {
    let mut labels = node.labels.clone();
    labels
        .entry("kubernetes.io/hostname".into())
        .or_insert_with(|| node.name.clone());
    labels
        .entry("kubernetes.io/os".into())
        .or_insert_with(|| "linux".into());
    labels
        .entry("kubernetes.io/arch".into())
        .or_insert_with(|| "amd64".into());
    labels
}

/// Whether the node matches `nodeSelector` and required node affinity.
fn matches_selector(pod: &Pod, node: &NodeSpec) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let labels = effective_labels(node);
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let Some(required) = required else {
        return true;
    };
    required.node_selector_terms.iter().any(|term| {
        let exprs_ok = term.match_expressions.iter().flatten().all(|e| {
            let value = labels.get(&e.key);
            let values = e.values.clone().unwrap_or_default();
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                "Gt" | "Lt" => {
                    let (Some(v), Some(bound)) = (
                        value.and_then(|v| v.parse::<i64>().ok()),
                        values.first().and_then(|b| b.parse::<i64>().ok()),
                    ) else {
                        return false;
                    };
                    if e.operator == "Gt" {
                        v > bound
                    } else {
                        v < bound
                    }
                }
                _ => false,
            }
        });
        let fields_ok = term.match_fields.iter().flatten().all(|f| {
            let values = f.values.clone().unwrap_or_default();
            f.key == "metadata.name"
                && match f.operator.as_str() {
                    "In" => values.contains(&node.name),
                    "NotIn" => !values.contains(&node.name),
                    _ => false,
                }
        });
        let empty = term.match_expressions.as_ref().is_none_or(|v| v.is_empty())
            && term.match_fields.as_ref().is_none_or(|v| v.is_empty());
        !empty && exprs_ok && fields_ok
    })
}

/// The first taint of the node the pod does not tolerate.
fn untolerated_taint<'a>(pod: &Pod, node: &'a NodeSpec) -> Option<&'a super::NodeTaint> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    node.taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|taint| {
            !tolerations.iter().any(|tol| {
                let effect_ok = tol
                    .effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == taint.effect);
                let op = tol.operator.as_deref().unwrap_or("Equal");
                let key_ok = match tol.key.as_deref() {
                    None | Some("") => op == "Exists",
                    Some(k) => k == taint.key,
                };
                let value_ok = op == "Exists" || tol.value.as_deref().unwrap_or("") == taint.value;
                effect_ok && key_ok && value_ok
            })
        })
}

/// Kubernetes' unschedulable message from per-node failure reasons.
fn unschedulable_message(
    total: usize,
    per_node: &[Vec<String>],
    preemption_helps: usize,
) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for reasons in per_node {
        for r in reasons {
            *counts.entry(r.as_str()).or_insert(0) += 1;
        }
    }
    let list: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    let mut pre: Vec<String> = Vec::new();
    if preemption_helps > 0 {
        pre.push(format!(
            "{preemption_helps} No preemption victims found for incoming pod"
        ));
    }
    if total > preemption_helps {
        pre.push(format!(
            "{} Preemption is not helpful for scheduling",
            total - preemption_helps
        ));
    }
    format!(
        "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {}.",
        list.join(", "),
        pre.join(", ")
    )
}

fn is_candidate(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    spec.is_some_and(|s| s.node_name.as_deref().unwrap_or("").is_empty())
        && spec
            .and_then(|s| s.scheduler_name.as_deref())
            .is_none_or(|n| n == COMPONENT)
        && pod.metadata.deletion_timestamp.is_none()
        && !is_terminal(pod)
}

impl Scheduler {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        let (queue, timer) = WorkQueue::new(&ctx);
        let nodes = ctx
            .config
            .effective_nodes()
            .into_iter()
            .map(|spec| NodeState {
                spec,
                used: Req::default(),
                pods: 0,
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                ctx,
                queue,
                timer: Mutex::new(Some(timer)),
                state: Mutex::new(State {
                    nodes,
                    ..State::default()
                }),
            }),
        }
    }

    /// Pod watch handler: node usage bookkeeping and the scheduling queue.
    pub(crate) fn on_pod(&self, change: &Change<Pod>) {
        let pod = change.object();
        let key = key_of(pod.as_ref());
        let Some(uid) = pod.uid() else { return };
        let mut freed = false;
        {
            let mut st = lock(&self.inner.state);
            match change {
                Change::Deleted(_) => {
                    freed = st.release(&uid);
                    st.unschedulable.remove(&key);
                    st.reported.remove(&key);
                }
                Change::Applied { new, .. } => {
                    let node = new.spec.as_ref().and_then(|s| s.node_name.clone());
                    let index = node.and_then(|n| st.nodes.iter().position(|x| x.spec.name == n));
                    match index {
                        Some(i) if !is_terminal(new) => st.assume(uid.clone(), i, pod_req(new)),
                        _ => freed = st.release(&uid),
                    }
                }
            }
        }
        if freed {
            let waiting: Vec<ObjKey> = lock(&self.inner.state).unschedulable.drain().collect();
            for k in waiting {
                self.inner.queue.add(k);
            }
        }
        if matches!(change, Change::Applied { .. }) && is_candidate(pod) {
            self.inner.queue.add(key);
        }
    }

    /// Starts the timer and the workers.
    pub(crate) fn run(&self) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<JoinHandle<()>> = lock(&self.inner.timer).take().into_iter().collect();
        let this = self.clone();
        tasks.extend(spawn_workers(
            "scheduler",
            4,
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
        let Some(pod) = ctx.caches.pods.get(&key) else {
            return Ok(());
        };
        if !is_candidate(&pod) {
            return Ok(());
        }
        let Some(uid) = pod.uid() else { return Ok(()) };
        let never = ctx
            .config
            .behavior
            .plan(&pod)
            .map(|p| p.never_schedule)
            .unwrap_or(false);
        let req = pod_req(&pod);
        let decision = {
            let mut st = lock(&self.inner.state);
            if st.bound.contains_key(&uid) {
                return Ok(());
            }
            let total = st.nodes.len();
            let mut per_node: Vec<Vec<String>> = Vec::new();
            let mut preemption_helps = 0;
            let mut best: Option<(usize, f64)> = None;
            for (i, n) in st.nodes.iter().enumerate() {
                let mut reasons = Vec::new();
                let mut unresolvable = false;
                if never {
                    reasons.push(
                        "node(s) were excluded by the sim.taskpod.dev never-schedule behaviour"
                            .to_owned(),
                    );
                    unresolvable = true;
                } else {
                    if !matches_selector(&pod, &n.spec) {
                        reasons
                            .push("node(s) didn't match Pod's node affinity/selector".to_owned());
                        unresolvable = true;
                    }
                    if let Some(t) = untolerated_taint(&pod, &n.spec) {
                        reasons.push(format!(
                            "node(s) had untolerated taint {{{}: {}}}",
                            t.key, t.value
                        ));
                        unresolvable = true;
                    }
                    if n.pods + 1 > n.spec.max_pods {
                        reasons.push("Too many pods".to_owned());
                    }
                    if n.used.cpu + req.cpu > n.spec.cpu_millis {
                        reasons.push("Insufficient cpu".to_owned());
                    }
                    if n.used.mem + req.mem > n.spec.memory_bytes {
                        reasons.push("Insufficient memory".to_owned());
                    }
                }
                if reasons.is_empty() {
                    // Least allocated: the mean free fraction of CPU and memory after placing.
                    let free = |used: u64, cap: u64| {
                        if cap == 0 {
                            0.0
                        } else {
                            1.0 - used as f64 / cap as f64
                        }
                    };
                    let score = (free(n.used.cpu + req.cpu, n.spec.cpu_millis)
                        + free(n.used.mem + req.mem, n.spec.memory_bytes))
                        / 2.0;
                    if best.is_none_or(|(_, s)| score > s) {
                        best = Some((i, score));
                    }
                } else {
                    if !unresolvable {
                        preemption_helps += 1;
                    }
                    per_node.push(reasons);
                }
            }
            match best {
                Some((i, _)) => {
                    st.assume(uid.clone(), i, req);
                    st.unschedulable.remove(&key);
                    st.reported.remove(&key);
                    Ok(st.nodes[i].spec.name.clone())
                }
                None => {
                    st.unschedulable.insert(key.clone());
                    let message = unschedulable_message(total, &per_node, preemption_helps);
                    let repeat = st.reported.get(&key) == Some(&message);
                    Err((message, repeat))
                }
            }
        };
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &key.0);
        match decision {
            Ok(node) => {
                let binding = serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": { "name": key.1, "namespace": key.0, "uid": uid },
                    "target": { "apiVersion": "v1", "kind": "Node", "name": node },
                });
                let bound: Result<serde_json::Value, _> = api
                    .create_subresource("binding", &key.1, &PostParams::default(), &binding)
                    .await;
                match bound {
                    Ok(_) => {
                        ctx.recorder.record(
                            pod.as_ref(),
                            COMPONENT,
                            None,
                            EventType::Normal,
                            "Scheduled",
                            format!("Successfully assigned {}/{} to {node}", key.0, key.1),
                        );
                        Ok(())
                    }
                    Err(e) => {
                        lock(&self.inner.state).release(&uid);
                        match e {
                            kube::Error::Api(s) if s.code == 404 => Ok(()),
                            other => Err(other.into()),
                        }
                    }
                }
            }
            Err((message, repeat)) => {
                self.inner
                    .queue
                    .add_after(key.clone(), ctx.config.timing.unschedulable_retry);
                if repeat {
                    return Ok(());
                }
                let mut conditions = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.clone())
                    .unwrap_or_default();
                conditions.retain(|c| c.type_ != "PodScheduled");
                conditions.push(PodCondition {
                    type_: "PodScheduled".into(),
                    status: "False".into(),
                    reason: Some("Unschedulable".into()),
                    message: Some(message.clone()),
                    last_transition_time: Some(to_time(Utc::now())),
                    ..PodCondition::default()
                });
                api.patch_status(
                    &key.1,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({
                        "status": { "phase": "Pending", "conditions": conditions }
                    })),
                )
                .await?;
                // Remembered only once written, so that a failed write is retried.
                lock(&self.inner.state)
                    .reported
                    .insert(key.clone(), message.clone());
                ctx.recorder.record(
                    pod.as_ref(),
                    COMPONENT,
                    None,
                    EventType::Warning,
                    "FailedScheduling",
                    message,
                );
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_has_kubernetes_format() {
        let m = unschedulable_message(3, &vec![vec!["Insufficient cpu".to_owned()]; 3], 3);
        assert_eq!(
            m,
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: \
             3 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn requests_count_sidecars_and_the_largest_init_container() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [
                    {"name": "init", "image": "i", "resources": {"requests": {"cpu": "3"}}},
                    {"name": "side", "image": "s", "restartPolicy": "Always",
                     "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}}
                ],
                "containers": [{"name": "main", "image": "m",
                                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}]
            }
        }))
        .expect("pod");
        let r = pod_req(&pod);
        assert_eq!(r.cpu, 3000);
        assert_eq!(r.mem, (1 << 30) + (64 << 20));
    }
}
