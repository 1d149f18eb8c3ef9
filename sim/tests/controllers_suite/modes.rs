//! Controller modes (controllers-only, off) and pause/resume.

use std::time::Duration;

use anyhow::{Result, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use taskpod_sim::controllers::{ControllerConfig, ControllerMode};

use crate::controllers_common::*;

#[tokio::test]
async fn controllers_only_leaves_pods_pending_until_a_client_patches_them() -> Result<()> {
    let sim = start(ControllerConfig {
        mode: ControllerMode::ControllersOnly,
        ..fast()
    })
    .await?;
    let client = sim.client();
    create(&client, &job("envtest", json!({}), json!({}))).await?;
    wait_for::<Job>(&client, "envtest", "one active pod", |j| {
        j.and_then(|j| j.status.as_ref()).and_then(|s| s.active) == Some(1)
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let pods = job_pods(&client, "envtest").await?;
    ensure!(pods.len() == 1, "one pod: {pods:#?}");
    let pod = &pods[0];
    let name = pod.metadata.name.clone().expect("name");
    assert!(
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_none(),
        "not scheduled"
    );
    assert!(
        matches!(phase(Some(pod)).as_deref(), None | Some("Pending")),
        "{pod:#?}"
    );
    // The client plays the kubelet: the Job controller reacts to the patched status.
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
    )
    .await?;
    let done = wait_for::<Job>(&client, "envtest", "Complete", |j| {
        job_condition(j, "Complete")
    })
    .await?
    .expect("job");
    assert_eq!(done.status.as_ref().and_then(|s| s.succeeded), Some(1));
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn off_mode_runs_no_controller() -> Result<()> {
    let sim = start(ControllerConfig {
        mode: ControllerMode::Off,
        ..fast()
    })
    .await?;
    let client = sim.client();
    create(&client, &job("inert", json!({}), json!({}))).await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(job_pods(&client, "inert").await?.is_empty());
    let api: Api<Job> = Api::namespaced(client.clone(), "default");
    let j = api.get("inert").await?;
    assert!(
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .is_none()
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn pause_stops_all_activity_and_resume_catches_up() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    let controllers = sim.controllers().clone();
    controllers.pause();
    assert!(controllers.is_paused());
    create(
        &client,
        &job(
            "paused",
            json!({"sim.taskpod.dev/run-seconds": "0.1"}),
            json!({}),
        ),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        job_pods(&client, "paused").await?.is_empty(),
        "no pod while paused"
    );
    let api: Api<Job> = Api::namespaced(client.clone(), "default");
    let status = api.get("paused").await?.status.unwrap_or_default();
    assert!(
        status.start_time.is_none() && status.active.is_none(),
        "no status while paused"
    );
    controllers.resume();
    assert!(!controllers.is_paused());
    wait_for::<Job>(&client, "paused", "Complete", |j| {
        job_condition(j, "Complete")
    })
    .await?;
    // A pod already running when paused does not finish while paused.
    create(
        &client,
        &job(
            "midway",
            json!({"sim.taskpod.dev/run-seconds": "0.3"}),
            json!({}),
        ),
    )
    .await?;
    wait_for::<Job>(&client, "midway", "one ready pod", |j| {
        j.and_then(|j| j.status.as_ref()).and_then(|s| s.ready) == Some(1)
    })
    .await?;
    controllers.pause();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let pods = job_pods(&client, "midway").await?;
    assert_eq!(
        phase(pods.first()).as_deref(),
        Some("Running"),
        "frozen while paused"
    );
    controllers.resume();
    wait_for::<Job>(&client, "midway", "Complete", |j| {
        job_condition(j, "Complete")
    })
    .await?;
    sim.shutdown().await;
    Ok(())
}
