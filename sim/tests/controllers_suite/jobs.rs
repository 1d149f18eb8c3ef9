//! The Job and TTL-after-finished controllers.

use anyhow::{Result, ensure};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use taskpod_sim::controllers::{Behavior, ContainerBehavior, ControllerConfig, RuleMatch};

use crate::controllers_common::*;

#[tokio::test]
async fn job_runs_pods_to_completion_with_status_and_events() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    create(
        &client,
        &job(
            "complete",
            json!({"sim.taskpod.dev/run-seconds": "0.2"}),
            json!({"parallelism": 2, "completions": 3}),
        ),
    )
    .await?;
    let done = wait_for::<Job>(&client, "complete", "Complete", |j| {
        job_condition(j, "Complete")
    })
    .await?
    .expect("job exists");
    let status = done.status.clone().expect("status");
    assert_eq!(status.succeeded, Some(3));
    assert_eq!(status.active, None, "no active pods once complete");
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    assert!(
        job_condition(Some(&done), "SuccessCriteriaMet"),
        "Kubernetes ≥ 1.31 sets SuccessCriteriaMet before Complete"
    );
    assert_eq!(
        job_condition_reason(&done, "Complete").as_deref(),
        Some("CompletionsReached")
    );

    let pods = job_pods(&client, "complete").await?;
    assert_eq!(
        pods.len(),
        3,
        "exactly completions pods, none created twice"
    );
    let uid = done.metadata.uid.clone().expect("uid");
    for p in &pods {
        let name = p.metadata.name.clone().expect("name");
        let suffix = name
            .strip_prefix("complete-")
            .expect("named <job>-<suffix>");
        assert_eq!(suffix.len(), 5, "{name}");
        let owner = &p.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Job", uid.as_str())
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
        let labels = p.metadata.labels.clone().expect("labels");
        assert_eq!(labels.get("batch.kubernetes.io/controller-uid"), Some(&uid));
        assert_eq!(labels.get("job-name").map(String::as_str), Some("complete"));
        assert_eq!(phase(Some(p)).as_deref(), Some("Succeeded"));
    }
    let created = wait_event(&client, "complete", "SuccessfulCreate").await?;
    assert!(
        created
            .message
            .unwrap_or_default()
            .starts_with("Created pod: complete-")
    );
    wait_event(&client, "complete", "Completed").await?;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn failing_pods_are_replaced_until_the_backoff_limit() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    create(
        &client,
        &job(
            "backoff",
            json!({"sim.taskpod.dev/run-seconds": "0.05", "sim.taskpod.dev/exit-code": "3"}),
            json!({"backoffLimit": 2}),
        ),
    )
    .await?;
    let failed = wait_for::<Job>(&client, "backoff", "Failed", |j| job_condition(j, "Failed"))
        .await?
        .expect("job");
    assert_eq!(
        job_condition_reason(&failed, "Failed").as_deref(),
        Some("BackoffLimitExceeded")
    );
    assert!(job_condition(Some(&failed), "FailureTarget"));
    let status = failed.status.clone().expect("status");
    assert_eq!(
        status.failed,
        Some(3),
        "backoffLimit 2 allows three attempts"
    );
    let pods = job_pods(&client, "backoff").await?;
    assert_eq!(pods.len(), 3);
    for p in &pods {
        assert_eq!(phase(Some(p)).as_deref(), Some("Failed"));
        assert_eq!(container_state(p, "main")["terminated"]["exitCode"], 3);
        assert_eq!(container_state(p, "main")["terminated"]["reason"], "Error");
    }
    wait_event(&client, "backoff", "BackoffLimitExceeded").await?;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn indexed_job_gives_each_pod_its_completion_index() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    create(
        &client,
        &job(
            "indexed",
            json!({"sim.taskpod.dev/run-seconds": "0.1"}),
            json!({"completionMode": "Indexed", "completions": 3, "parallelism": 3}),
        ),
    )
    .await?;
    let done = wait_for::<Job>(&client, "indexed", "Complete", |j| {
        job_condition(j, "Complete")
    })
    .await?
    .expect("job");
    assert_eq!(
        done.status
            .as_ref()
            .and_then(|s| s.completed_indexes.as_deref()),
        Some("0-2")
    );
    let mut indexes = Vec::new();
    for p in job_pods(&client, "indexed").await? {
        let name = p.metadata.name.clone().expect("name");
        let index = p.metadata.annotations.as_ref().expect("annotations")
            ["batch.kubernetes.io/job-completion-index"]
            .clone();
        assert_eq!(
            p.metadata.labels.as_ref().expect("labels")["batch.kubernetes.io/job-completion-index"],
            index
        );
        assert!(name.starts_with(&format!("indexed-{index}-")), "{name}");
        assert_eq!(name.len(), format!("indexed-{index}-").len() + 5);
        let spec = p.spec.clone().expect("spec");
        assert_eq!(
            spec.hostname.as_deref(),
            Some(format!("indexed-{index}").as_str())
        );
        let env = spec.containers[0].env.clone().unwrap_or_default();
        let var = env
            .iter()
            .find(|e| e.name == "JOB_COMPLETION_INDEX")
            .expect("JOB_COMPLETION_INDEX is set");
        let field = var
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .expect("fieldRef");
        assert_eq!(
            field.field_path,
            "metadata.labels['batch.kubernetes.io/job-completion-index']"
        );
        indexes.push(index);
    }
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn active_deadline_fails_the_job_and_kills_its_pods() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    create(
        &client,
        &job(
            "deadline",
            json!({"sim.taskpod.dev/behavior": "{\"forever\": true}"}),
            json!({"activeDeadlineSeconds": 1}),
        ),
    )
    .await?;
    let failed = wait_for::<Job>(&client, "deadline", "Failed", |j| {
        job_condition(j, "Failed")
    })
    .await?
    .expect("job");
    assert_eq!(
        job_condition_reason(&failed, "Failed").as_deref(),
        Some("DeadlineExceeded")
    );
    assert_eq!(
        job_condition_reason(&failed, "FailureTarget").as_deref(),
        Some("DeadlineExceeded")
    );
    let status = failed.status.clone().expect("status");
    assert_eq!(status.active, None);
    assert_eq!(status.failed, Some(1), "the killed pod counts as failed");
    // The killed pod was stopped by its kubelet (exit 143) and deleted.
    let pods = job_pods(&client, "deadline").await?;
    ensure!(pods.is_empty(), "pods left after the deadline: {pods:#?}");
    wait_event(&client, "deadline", "DeadlineExceeded").await?;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn suspended_job_creates_no_pods_until_resumed() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    create(
        &client,
        &job(
            "suspended",
            json!({"sim.taskpod.dev/run-seconds": "0.1"}),
            json!({"suspend": true}),
        ),
    )
    .await?;
    let job_now = wait_for::<Job>(&client, "suspended", "Suspended", |j| {
        job_condition(j, "Suspended")
    })
    .await?
    .expect("job");
    assert!(
        job_now
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .is_none()
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        job_pods(&client, "suspended").await?.is_empty(),
        "no pods while suspended"
    );
    let api: Api<Job> = Api::namespaced(client.clone(), "default");
    api.patch(
        "suspended",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await?;
    let done = wait_for::<Job>(&client, "suspended", "Complete", |j| {
        job_condition(j, "Complete")
    })
    .await?
    .expect("job");
    assert_eq!(
        job_condition_reason(&done, "Suspended").as_deref(),
        Some("JobResumed")
    );
    wait_event(&client, "suspended", "Resumed").await?;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn backoff_limit_per_index_fails_only_that_index() -> Result<()> {
    let behavior = Behavior::default().with_rule(
        RuleMatch {
            labels: [(
                "batch.kubernetes.io/job-completion-index".to_owned(),
                "1".to_owned(),
            )]
            .into(),
            ..RuleMatch::default()
        },
        ContainerBehavior {
            exit_code: Some(1),
            run_seconds: Some(0.05),
            ..ContainerBehavior::default()
        },
    );
    let sim = start(ControllerConfig { behavior, ..fast() }).await?;
    let client = sim.client();
    create(
        &client,
        &job(
            "perindex",
            json!({"sim.taskpod.dev/run-seconds": "0.1"}),
            json!({"completionMode": "Indexed", "completions": 3, "parallelism": 3,
                   "backoffLimit": null, "backoffLimitPerIndex": 1}),
        ),
    )
    .await?;
    let failed = wait_for::<Job>(&client, "perindex", "Failed", |j| {
        job_condition(j, "Failed")
    })
    .await?
    .expect("job");
    let status = failed.status.clone().expect("status");
    assert_eq!(
        job_condition_reason(&failed, "Failed").as_deref(),
        Some("FailedIndexes")
    );
    assert_eq!(status.failed_indexes.as_deref(), Some("1"));
    assert_eq!(status.completed_indexes.as_deref(), Some("0,2"));
    assert_eq!(
        status.failed,
        Some(2),
        "index 1 ran twice (backoffLimitPerIndex 1)"
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn pod_failure_policy_fail_job_on_exit_code() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    create(
        &client,
        &job(
            "pfp",
            json!({"sim.taskpod.dev/run-seconds": "0.05", "sim.taskpod.dev/exit-code": "42"}),
            json!({"backoffLimit": 5, "podFailurePolicy": {"rules": [
                {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}
            ]}}),
        ),
    )
    .await?;
    let failed = wait_for::<Job>(&client, "pfp", "Failed", |j| job_condition(j, "Failed"))
        .await?
        .expect("job");
    assert_eq!(
        job_condition_reason(&failed, "Failed").as_deref(),
        Some("PodFailurePolicy")
    );
    let message = failed
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| {
            c.iter()
                .find(|c| c.type_ == "Failed")
                .and_then(|c| c.message.clone())
        });
    assert!(
        message
            .unwrap_or_default()
            .contains("failed with exit code 42 matching FailJob rule at index 0")
    );
    assert_eq!(
        failed.status.as_ref().and_then(|s| s.failed),
        Some(1),
        "no retry"
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn on_failure_restarts_the_container_in_place() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    let mut j = job(
        "onfailure",
        json!({"sim.taskpod.dev/behavior": "{\"runSeconds\": 0.05, \"failTimes\": 2}"}),
        json!({"backoffLimit": 6}),
    );
    if let Some(spec) = j.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        spec.restart_policy = Some("OnFailure".into());
    }
    create(&client, &j).await?;
    wait_for::<Job>(&client, "onfailure", "Complete", |j| {
        job_condition(j, "Complete")
    })
    .await?;
    let pods = job_pods(&client, "onfailure").await?;
    assert_eq!(pods.len(), 1, "restarts happen in place, in the same pod");
    let cs = &pods[0]
        .status
        .as_ref()
        .expect("status")
        .container_statuses
        .as_ref()
        .expect("cs")[0];
    assert_eq!(cs.restart_count, 2);
    let last = cs
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("lastState");
    assert_eq!(last.exit_code, 1);
    assert_eq!(phase(Some(&pods[0])).as_deref(), Some("Succeeded"));
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn on_failure_restarts_count_towards_the_backoff_limit() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    let mut j = job(
        "crashloop",
        json!({"sim.taskpod.dev/run-seconds": "0.02", "sim.taskpod.dev/exit-code": "1"}),
        json!({"backoffLimit": 2}),
    );
    if let Some(spec) = j.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        spec.restart_policy = Some("OnFailure".into());
    }
    create(&client, &j).await?;
    let failed = wait_for::<Job>(&client, "crashloop", "Failed", |j| {
        job_condition(j, "Failed")
    })
    .await?
    .expect("job");
    assert_eq!(
        job_condition_reason(&failed, "Failed").as_deref(),
        Some("BackoffLimitExceeded")
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn ttl_after_finished_deletes_the_job_and_its_pods() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    create(
        &client,
        &job(
            "ttl",
            json!({"sim.taskpod.dev/run-seconds": "0.05"}),
            json!({"ttlSecondsAfterFinished": 1}),
        ),
    )
    .await?;
    wait_for::<Job>(&client, "ttl", "Complete", |j| job_condition(j, "Complete")).await?;
    assert_eq!(job_pods(&client, "ttl").await?.len(), 1);
    wait_for::<Job>(&client, "ttl", "deleted by TTL", |j| j.is_none()).await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !job_pods(&client, "ttl").await?.is_empty() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "pods not collected after TTL"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn indexed_on_failure_job_restarts_a_failing_index_and_completes() -> Result<()> {
    // As samza_kubernetes runs a job: one Indexed Job, one pod per container, restartPolicy
    // OnFailure; container 1 fails once and is restarted in place.
    let behavior = Behavior::default().with_rule(
        RuleMatch {
            labels: [(
                "batch.kubernetes.io/job-completion-index".to_owned(),
                "1".to_owned(),
            )]
            .into(),
            ..RuleMatch::default()
        },
        ContainerBehavior {
            run_seconds: Some(0.1),
            exit_code: Some(2),
            fail_times: Some(1),
            ..ContainerBehavior::default()
        },
    );
    let sim = start(ControllerConfig { behavior, ..fast() }).await?;
    let client = sim.client();
    let mut j = job(
        "samza-like",
        json!({"sim.taskpod.dev/run-seconds": "0.3"}),
        json!({"completionMode": "Indexed", "completions": 3, "parallelism": 3, "backoffLimit": 3}),
    );
    if let Some(spec) = j.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        spec.restart_policy = Some("OnFailure".into());
    }
    create(&client, &j).await?;
    let done = wait_for::<Job>(&client, "samza-like", "Complete", |j| {
        job_condition(j, "Complete") || job_condition(j, "Failed")
    })
    .await?
    .expect("job");
    assert!(job_condition(Some(&done), "Complete"), "{done:#?}");
    let status = done.status.clone().expect("status");
    assert_eq!(status.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!(status.succeeded, Some(3));
    assert_eq!(status.failed, None, "the failure was a restart in place");
    let pods = job_pods(&client, "samza-like").await?;
    assert_eq!(pods.len(), 3, "one pod per index, no replacement pod");
    let restarts = |index: &str| {
        pods.iter()
            .find(|p| {
                p.metadata.labels.as_ref().expect("labels")
                    ["batch.kubernetes.io/job-completion-index"]
                    == index
            })
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs[0].restart_count)
    };
    assert_eq!(restarts("1"), Some(1));
    assert_eq!(restarts("0"), Some(0));
    assert_eq!(restarts("2"), Some(0));
    sim.shutdown().await;
    Ok(())
}
