//! Helpers shared by the controller test suites: start a simulated cluster with given controller
//! settings, build Jobs and Pods from JSON, and wait (through watches, with a deadline) for an
//! object to reach a state.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use taskpod_sim::controllers::{ControllerConfig, Timing};
use taskpod_sim::{Sim, SimOptions};

/// How long a test waits for the simulated cluster to reach a state.
pub const WAIT: Duration = Duration::from_secs(20);

/// Starts a simulated cluster with these controller settings (fast timings unless set) and
/// waits until the controllers' watches have listed.
pub async fn start(config: ControllerConfig) -> Result<Sim> {
    let sim = Sim::start(SimOptions {
        controllers: config,
        ..SimOptions::default()
    })
    .await
    .context("starting the simulated cluster")?;
    tokio::time::timeout(WAIT, sim.controllers().ready())
        .await
        .context("controllers did not become ready")?;
    Ok(sim)
}

/// Controller settings with [`Timing::fast`].
pub fn fast() -> ControllerConfig {
    ControllerConfig {
        timing: Timing::fast(),
        ..ControllerConfig::default()
    }
}

/// A Job named `name` whose single container `main` runs `image`, with `spec` fields merged
/// over `restartPolicy: Never`, `backoffLimit: 0` and the pod template `annotations`.
pub fn job(name: &str, annotations: Value, spec: Value) -> Job {
    let mut base = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": name },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": { "annotations": annotations },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{ "name": "main", "image": "busybox:1.36" }]
                }
            }
        }
    });
    merge(&mut base["spec"], spec);
    serde_json::from_value(base).expect("valid Job JSON")
}

/// A bare pod.
pub fn pod(name: &str, spec: Value, annotations: Value) -> Pod {
    let mut base = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "annotations": annotations },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{ "name": "main", "image": "busybox:1.36" }]
        }
    });
    merge(&mut base["spec"], spec);
    serde_json::from_value(base).expect("valid Pod JSON")
}

/// JSON merge (objects merge, everything else replaces).
pub fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p,
    }
}

/// Creates an object in `default`.
pub async fn create<K>(client: &Client, obj: &K) -> Result<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), obj)
        .await
        .context("create")
}

/// Waits (watching) until the named object satisfies `cond`; returns it. `None` passed to
/// `cond` means the object does not exist.
pub async fn wait_for<K>(
    client: &Client,
    name: &str,
    what: &str,
    cond: impl Fn(Option<&K>) -> bool,
) -> Result<Option<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let api: Api<K> = Api::namespaced(client.clone(), "default");
    match tokio::time::timeout(WAIT, await_condition(api.clone(), name, cond)).await {
        Ok(result) => result.with_context(|| format!("watching {name} for {what}")),
        Err(_) => {
            let now = api.get_opt(name).await.ok().flatten();
            bail!("timed out waiting for {name}: {what}; last seen: {now:#?}")
        }
    }
}

/// True when the Job has condition `type_` with status True.
pub fn job_condition(job: Option<&Job>, type_: &str) -> bool {
    job.and_then(|j| j.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// The reason of the Job's condition `type_`.
pub fn job_condition_reason(job: &Job, type_: &str) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?
        .reason
        .clone()
}

/// The pods of a Job (by the `batch.kubernetes.io/job-name` label).
pub async fn job_pods(client: &Client, job: &str) -> Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let list = api
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await?;
    Ok(list.items)
}

/// Events about the named object.
pub async fn events_for(client: &Client, name: &str) -> Result<Vec<Event>> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = api.list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .collect())
}

/// Waits until an Event with `reason` about `name` exists (Events are written asynchronously).
pub async fn wait_event(client: &Client, name: &str, reason: &str) -> Result<Event> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let events = events_for(client, name).await?;
        if let Some(e) = events
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(reason))
        {
            return Ok(e);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no {reason} event about {name} within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The phase of a pod.
pub fn phase(pod: Option<&Pod>) -> Option<String> {
    pod?.status.as_ref()?.phase.clone()
}

/// The state of container `name` of a pod, as JSON (`{"running": …}`, `{"terminated": …}`, …).
pub fn container_state(pod: &Pod, name: &str) -> Value {
    let status = pod.status.clone().unwrap_or_default();
    status
        .container_statuses
        .into_iter()
        .flatten()
        .chain(status.init_container_statuses.into_iter().flatten())
        .find(|c| c.name == name)
        .and_then(|c| c.state)
        .map(|s| serde_json::to_value(s).expect("state serialises"))
        .unwrap_or(Value::Null)
}
