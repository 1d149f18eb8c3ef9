//! The Deployment controller: replicas kept running from the template (owned by the
//! Deployment, ReplicaSet-style names and `pod-template-hash`), status counters and conditions,
//! scaling, replacement of deleted pods, and collection of the pods with their Deployment.

use std::time::Duration;

use anyhow::{Result, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::controllers_common::*;

/// A Deployment `name` of `replicas` endless `worker` pods labelled `app=<name>`.
fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name},
                    "annotations": {"sim.taskpod.dev/behavior": "{\"forever\": true}"}
                },
                "spec": {"containers": [{"name": "worker", "image": "busybox:1.36"}]}
            }
        }
    }))
    .expect("valid Deployment JSON")
}

/// The live (not terminating) pods of Deployment `name`.
async fn live_pods(client: &kube::Client, name: &str) -> Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let list = api
        .list(&ListParams::default().labels(&format!("app={name}")))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

fn available(d: Option<&Deployment>) -> Option<i32> {
    d?.status.as_ref()?.available_replicas
}

fn condition(d: &Deployment, type_: &str) -> Option<(String, String)> {
    let c = d
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_.as_deref() == Some(type_))?;
    Some((
        c.status.clone().unwrap_or_default(),
        c.reason.clone().unwrap_or_default(),
    ))
}

#[tokio::test]
async fn deployment_keeps_its_replicas_running_and_reports_them_available() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    let created = create(&client, &deployment("workers", 3)).await?;
    let uid = created.metadata.uid.clone().expect("uid");
    let d = wait_for::<Deployment>(&client, "workers", "3 available", |d| {
        available(d) == Some(3)
    })
    .await?
    .expect("deployment");
    let status = d.status.clone().expect("status");
    assert_eq!(status.replicas, Some(3));
    assert_eq!(status.ready_replicas, Some(3));
    assert_eq!(status.updated_replicas, Some(3));
    assert_eq!(status.unavailable_replicas, None);
    assert_eq!(status.observed_generation, d.metadata.generation);
    assert_eq!(
        condition(&d, "Available"),
        Some(("True".into(), "MinimumReplicasAvailable".into()))
    );
    assert_eq!(
        condition(&d, "Progressing"),
        Some(("True".into(), "NewReplicaSetAvailable".into()))
    );
    let pods = live_pods(&client, "workers").await?;
    assert_eq!(pods.len(), 3);
    let hash = pods[0].metadata.labels.as_ref().expect("labels")["pod-template-hash"].clone();
    assert_eq!(hash.len(), 10);
    for p in &pods {
        let name = p.metadata.name.clone().expect("name");
        assert!(name.starts_with(&format!("workers-{hash}-")), "{name}");
        let owner = &p.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Deployment", uid.as_str(), Some(true))
        );
        assert_eq!(phase(Some(p)).as_deref(), Some("Running"));
    }
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn deployment_scales_and_replaces_deleted_pods() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    create(&client, &deployment("scaled", 2)).await?;
    wait_for::<Deployment>(&client, "scaled", "2 available", |d| {
        available(d) == Some(2)
    })
    .await?;
    // A deleted pod is replaced by a new one.
    let before = live_pods(&client, "scaled").await?;
    let victim = before[0].metadata.name.clone().expect("name");
    Api::<Pod>::namespaced(client.clone(), "default")
        .delete(&victim, &DeleteParams::default())
        .await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pods = live_pods(&client, "scaled").await?;
        let names: Vec<String> = pods
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        if pods.len() == 2 && !names.contains(&victim) {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "deleted pod {victim} not replaced: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for::<Deployment>(&client, "scaled", "2 available again", |d| {
        available(d) == Some(2)
    })
    .await?;
    // Scale up, then down.
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    api.patch(
        "scaled",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 4}})),
    )
    .await?;
    wait_for::<Deployment>(&client, "scaled", "4 available", |d| {
        available(d) == Some(4)
    })
    .await?;
    api.patch(
        "scaled",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await?;
    let d = wait_for::<Deployment>(&client, "scaled", "1 replica", |d| {
        d.and_then(|d| d.status.as_ref()).and_then(|s| s.replicas) == Some(1)
    })
    .await?
    .expect("deployment");
    assert_eq!(available(Some(&d)), Some(1));
    let deadline = tokio::time::Instant::now() + WAIT;
    while live_pods(&client, "scaled").await?.len() != 1 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "scaled down pods not deleted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn unschedulable_replicas_are_not_available() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    let mut d = deployment("stuck", 2);
    if let Some(meta) = d.spec.template.metadata.as_mut() {
        meta.annotations = Some(
            [(
                "sim.taskpod.dev/behavior".to_owned(),
                "{\"neverSchedule\": true}".to_owned(),
            )]
            .into(),
        );
    }
    create(&client, &d).await?;
    let d = wait_for::<Deployment>(&client, "stuck", "2 replicas, none available", |d| {
        d.and_then(|d| d.status.as_ref())
            .is_some_and(|s| s.replicas == Some(2) && s.unavailable_replicas == Some(2))
    })
    .await?
    .expect("deployment");
    assert_eq!(available(Some(&d)), None);
    assert_eq!(
        condition(&d, "Available"),
        Some(("False".into(), "MinimumReplicasUnavailable".into()))
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn deleting_a_deployment_collects_its_pods() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    create(&client, &deployment("doomed", 2)).await?;
    wait_for::<Deployment>(&client, "doomed", "2 available", |d| {
        available(d) == Some(2)
    })
    .await?;
    Api::<Deployment>::namespaced(client.clone(), "default")
        .delete("doomed", &DeleteParams::background())
        .await?;
    wait_for::<Deployment>(&client, "doomed", "gone", |d| d.is_none()).await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = api
            .list(&ListParams::default().labels("app=doomed"))
            .await?
            .items;
        if left.is_empty() {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "pods of a deleted Deployment not collected: {}",
            left.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.shutdown().await;
    Ok(())
}
