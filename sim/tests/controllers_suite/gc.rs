//! The garbage collector: background, foreground and orphan propagation, dangling owners.

use anyhow::{Result, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, PropagationPolicy};
use serde_json::json;

use crate::controllers_common::*;

/// A running Job (one endless pod) plus a ConfigMap owned by it; returns the Job's uid.
async fn job_with_companion(client: &kube::Client, name: &str) -> Result<String> {
    let created = create(
        client,
        &job(
            name,
            json!({"sim.taskpod.dev/behavior": "{\"forever\": true}"}),
            json!({}),
        ),
    )
    .await?;
    let uid = created.metadata.uid.clone().expect("uid");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-config"), "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
            "blockOwnerDeletion": true
        }]},
        "data": {"k": "v"}
    }))?;
    create(client, &cm).await?;
    wait_for::<Job>(client, name, "one active pod", |j| {
        j.and_then(|j| j.status.as_ref()).and_then(|s| s.active) == Some(1)
    })
    .await?;
    Ok(uid)
}

async fn wait_no_pods(client: &kube::Client, job: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pods = job_pods(client, job).await?;
        if pods.is_empty() {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "pods of {job} not collected: {pods:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn background_deletion_collects_dependents() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    job_with_companion(&client, "bg").await?;
    let api: Api<Job> = Api::namespaced(client.clone(), "default");
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    api.delete("bg", &dp).await?;
    wait_for::<Job>(&client, "bg", "gone", |j| j.is_none()).await?;
    wait_for::<ConfigMap>(&client, "bg-config", "collected", |c| c.is_none()).await?;
    wait_no_pods(&client, "bg").await?;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn foreground_deletion_removes_dependents_before_the_owner() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    job_with_companion(&client, "fg").await?;
    let api: Api<Job> = Api::namespaced(client.clone(), "default");
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        ..DeleteParams::default()
    };
    let job = api
        .delete("fg", &dp)
        .await?
        .left()
        .expect("a foreground delete keeps the Job until its dependents are gone");
    assert!(job.metadata.deletion_timestamp.is_some());
    let finalizers = job.metadata.finalizers.clone().unwrap_or_default();
    assert!(
        finalizers.contains(&"foregroundDeletion".to_owned()),
        "{finalizers:?}"
    );
    // Watch the Job until it is gone: while it exists its dependents may exist; once it is gone
    // they must be gone already.
    wait_for::<Job>(&client, "fg", "gone", |j| j.is_none()).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let left = pods
        .list(&kube::api::ListParams::default().labels("batch.kubernetes.io/job-name=fg"))
        .await?;
    ensure!(
        left.items.is_empty(),
        "pods left after foreground deletion: {left:#?}"
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    ensure!(
        cms.get_opt("fg-config").await?.is_none(),
        "ConfigMap left after foreground deletion"
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_without_owner_references() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    job_with_companion(&client, "orphan").await?;
    let api: Api<Job> = Api::namespaced(client.clone(), "default");
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..DeleteParams::default()
    };
    api.delete("orphan", &dp).await?;
    wait_for::<Job>(&client, "orphan", "gone", |j| j.is_none()).await?;
    let cm = wait_for::<ConfigMap>(&client, "orphan-config", "owner reference removed", |c| {
        c.is_some_and(|c| {
            c.metadata
                .owner_references
                .as_ref()
                .is_none_or(|o| o.is_empty())
        })
    })
    .await?;
    assert!(cm.is_some());
    let pods = job_pods(&client, "orphan").await?;
    assert_eq!(pods.len(), 1, "the orphaned pod keeps running");
    assert!(
        pods[0]
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(|o| o.is_empty())
    );
    // Stays orphaned: nothing collects it later.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(job_pods(&client, "orphan").await?.len(), 1);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn objects_whose_owner_never_existed_are_collected() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "dangling", "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "Job", "name": "nothing",
            "uid": "00000000-0000-0000-0000-000000000001"
        }]}
    }))?;
    create(&client, &cm).await?;
    wait_for::<ConfigMap>(&client, "dangling", "collected", |c| c.is_none()).await?;
    sim.shutdown().await;
    Ok(())
}
