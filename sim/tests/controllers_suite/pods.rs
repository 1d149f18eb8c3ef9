//! The scheduler and the simulated kubelets.

use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use taskpod_sim::controllers::{
    Behavior, ContainerBehavior, ControllerConfig, NodeSpec, RuleMatch,
};

use crate::controllers_common::*;

fn scheduled_to(pod: Option<&Pod>) -> Option<String> {
    pod?.spec.as_ref()?.node_name.clone()
}

fn condition<'a>(
    pod: &'a Pod,
    type_: &str,
) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

#[tokio::test]
async fn pod_that_fits_nowhere_is_unschedulable_until_capacity_frees() -> Result<()> {
    let nodes = (1..=3)
        .map(|i| NodeSpec::new(format!("small-{i}"), 1000, 1 << 30))
        .collect();
    let sim = start(ControllerConfig { nodes, ..fast() }).await?;
    let client = sim.client();
    let huge = json!({"containers": [{"name": "main", "image": "busybox",
        "resources": {"requests": {"cpu": "4"}}}]});
    create(&client, &pod("huge", huge, json!({}))).await?;
    let pending = wait_for::<Pod>(&client, "huge", "Unschedulable", |p| {
        p.and_then(|p| condition(p, "PodScheduled"))
            .is_some_and(|c| c.reason.as_deref() == Some("Unschedulable"))
    })
    .await?
    .expect("pod");
    let cond = condition(&pending, "PodScheduled").expect("condition");
    assert_eq!(cond.status, "False");
    assert!(
        cond.message
            .as_deref()
            .unwrap_or_default()
            .starts_with("0/3 nodes are available: 3 Insufficient cpu."),
        "{cond:?}"
    );
    assert_eq!(phase(Some(&pending)).as_deref(), Some("Pending"));
    let event = wait_event(&client, "huge", "FailedScheduling").await?;
    assert_eq!(event.type_.as_deref(), Some("Warning"));

    // Fill every node, then free one: the waiting pod is scheduled when capacity frees.
    for i in 1..=3 {
        let spec = json!({"containers": [{"name": "main", "image": "busybox",
            "resources": {"requests": {"cpu": "800m"}}}]});
        let run = if i == 1 { "0.3" } else { "30" };
        create(
            &client,
            &pod(
                &format!("filler-{i}"),
                spec,
                json!({"sim.taskpod.dev/run-seconds": run}),
            ),
        )
        .await?;
    }
    let waiting_spec = json!({"containers": [{"name": "main", "image": "busybox",
        "resources": {"requests": {"cpu": "500m"}}}]});
    create(&client, &pod("waiting", waiting_spec, json!({}))).await?;
    let waiting = wait_for::<Pod>(&client, "waiting", "scheduled after filler-1 ends", |p| {
        scheduled_to(p).is_some()
    })
    .await?
    .expect("pod");
    let filler1 = Api::<Pod>::namespaced(client.clone(), "default")
        .get("filler-1")
        .await?;
    assert_eq!(
        phase(Some(&filler1)).as_deref(),
        Some("Succeeded"),
        "it waited for filler-1"
    );
    assert_eq!(scheduled_to(Some(&waiting)), scheduled_to(Some(&filler1)));
    let scheduled = condition(&waiting, "PodScheduled").expect("PodScheduled");
    assert_eq!(scheduled.status, "True");
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn node_selector_affinity_and_taints_choose_the_node() -> Result<()> {
    let nodes = vec![
        NodeSpec::new("plain", 4000, 8 << 30).with_label("disk", "hdd"),
        NodeSpec::new("gpu", 4000, 8 << 30)
            .with_label("disk", "ssd")
            .with_taint("dedicated", "gpu", "NoSchedule"),
    ];
    let sim = start(ControllerConfig { nodes, ..fast() }).await?;
    let client = sim.client();
    // Wants ssd but does not tolerate the taint: nothing fits.
    create(
        &client,
        &pod(
            "intolerant",
            json!({"nodeSelector": {"disk": "ssd"}}),
            json!({}),
        ),
    )
    .await?;
    let p = wait_for::<Pod>(&client, "intolerant", "Unschedulable", |p| {
        p.and_then(|p| condition(p, "PodScheduled"))
            .is_some_and(|c| c.status == "False")
    })
    .await?
    .expect("pod");
    let message = condition(&p, "PodScheduled")
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.starts_with("0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: gpu}."),
        "{message}"
    );
    // Tolerates it and requires ssd through node affinity: lands on gpu.
    let tolerant = json!({
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]
        }}}
    });
    create(&client, &pod("tolerant", tolerant, json!({}))).await?;
    let p = wait_for::<Pod>(&client, "tolerant", "scheduled", |p| {
        scheduled_to(p).is_some()
    })
    .await?;
    assert_eq!(scheduled_to(p.as_ref()).as_deref(), Some("gpu"));
    // No selector, no toleration: only the untainted node.
    create(&client, &pod("anywhere", json!({}), json!({}))).await?;
    let p = wait_for::<Pod>(&client, "anywhere", "scheduled", |p| {
        scheduled_to(p).is_some()
    })
    .await?;
    assert_eq!(scheduled_to(p.as_ref()).as_deref(), Some("plain"));
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn never_schedule_rule_keeps_a_pod_pending() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    create(
        &client,
        &pod(
            "never",
            json!({}),
            json!({"sim.taskpod.dev/behavior": "{\"neverSchedule\": true}"}),
        ),
    )
    .await?;
    let p = wait_for::<Pod>(&client, "never", "Unschedulable", |p| {
        p.and_then(|p| condition(p, "PodScheduled"))
            .is_some_and(|c| c.status == "False")
    })
    .await?
    .expect("pod");
    assert_eq!(scheduled_to(Some(&p)), None);
    assert_eq!(phase(Some(&p)).as_deref(), Some("Pending"));
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn pod_runs_through_its_lifecycle_with_status_and_logs() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    let behavior = json!({"runSeconds": 0.4, "logs": ["hello from main"], "logLines": 2});
    create(
        &client,
        &pod(
            "life",
            json!({}),
            json!({"sim.taskpod.dev/behavior": behavior.to_string()}),
        ),
    )
    .await?;
    let running = wait_for::<Pod>(&client, "life", "Running", |p| {
        phase(p).as_deref() == Some("Running")
    })
    .await?
    .expect("pod");
    let status = running.status.clone().expect("status");
    assert!(status.pod_ip.is_some() && status.host_ip.is_some() && status.start_time.is_some());
    assert!(container_state(&running, "main")["running"]["startedAt"].is_string());
    assert_eq!(
        condition(&running, "Ready").map(|c| c.status.as_str()),
        Some("True")
    );
    let live = sim
        .logs()
        .read("default", "life", "main", None)
        .expect("log while running");
    assert_eq!(
        live.lines.first().map(String::as_str),
        Some("hello from main")
    );
    assert!(!live.finished, "the log is open while the container runs");
    let done = wait_for::<Pod>(&client, "life", "Succeeded", |p| {
        phase(p).as_deref() == Some("Succeeded")
    })
    .await?
    .expect("pod");
    let term = container_state(&done, "main")["terminated"].clone();
    assert_eq!(term["exitCode"], 0);
    assert_eq!(term["reason"], "Completed");
    assert!(term["finishedAt"].is_string());
    let logs = sim
        .logs()
        .read("default", "life", "main", None)
        .expect("log exists");
    assert!(logs.finished);
    assert_eq!(logs.lines[0], "hello from main");
    assert_eq!(logs.lines.len(), 3, "{:?}", logs.lines);
    // Served by the API server too, after the pod ended.
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let text = api.logs("life", &Default::default()).await?;
    assert!(text.contains("hello from main"), "{text}");
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn image_pull_failure_backs_off_and_stays_pending() -> Result<()> {
    let behavior = Behavior::default().with_rule(
        RuleMatch {
            image: Some("broken/*".into()),
            ..RuleMatch::default()
        },
        ContainerBehavior {
            image_pull_error: Some(true),
            ..ContainerBehavior::default()
        },
    );
    let sim = start(ControllerConfig { behavior, ..fast() }).await?;
    let client = sim.client();
    create(
        &client,
        &pod(
            "pull",
            json!({"containers": [{"name": "main", "image": "broken/app:1"}]}),
            json!({}),
        ),
    )
    .await?;
    let p = wait_for::<Pod>(&client, "pull", "ErrImagePull", |p| {
        p.is_some_and(|p| container_state(p, "main")["waiting"]["reason"] == "ErrImagePull")
    })
    .await?
    .expect("pod");
    assert_eq!(phase(Some(&p)).as_deref(), Some("Pending"));
    let p = wait_for::<Pod>(&client, "pull", "ImagePullBackOff", |p| {
        p.is_some_and(|p| container_state(p, "main")["waiting"]["reason"] == "ImagePullBackOff")
    })
    .await?
    .expect("pod");
    assert_eq!(phase(Some(&p)).as_deref(), Some("Pending"));
    assert!(
        container_state(&p, "main")["waiting"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("broken/app:1")
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn oom_killed_container_fails_the_pod_with_137() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    create(
        &client,
        &pod(
            "oom",
            json!({}),
            json!({"sim.taskpod.dev/behavior": "{\"runSeconds\": 0.1, \"oomKilled\": true}"}),
        ),
    )
    .await?;
    let p = wait_for::<Pod>(&client, "oom", "Failed", |p| {
        phase(p).as_deref() == Some("Failed")
    })
    .await?
    .expect("pod");
    let term = container_state(&p, "main")["terminated"].clone();
    assert_eq!(term["reason"], "OOMKilled");
    assert_eq!(term["exitCode"], 137);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn eviction_fails_the_pod_with_reason_evicted() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    create(
        &client,
        &pod(
            "evict",
            json!({}),
            json!({"sim.taskpod.dev/behavior": "{\"forever\": true, \"evictAfterSeconds\": 0.2}"}),
        ),
    )
    .await?;
    let p = wait_for::<Pod>(&client, "evict", "Failed", |p| {
        phase(p).as_deref() == Some("Failed")
    })
    .await?
    .expect("pod");
    let status = p.status.clone().expect("status");
    assert_eq!(status.reason.as_deref(), Some("Evicted"));
    assert!(
        status
            .message
            .unwrap_or_default()
            .contains("low on resource")
    );
    let disruption = condition(&p, "DisruptionTarget").expect("DisruptionTarget");
    assert_eq!(disruption.reason.as_deref(), Some("TerminationByKubelet"));
    assert!(container_state(&p, "main")["terminated"]["exitCode"].is_i64());
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn regular_sidecar_that_never_exits_keeps_the_pod_running() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    let spec = json!({"containers": [
        {"name": "main", "image": "busybox"},
        {"name": "sidecar", "image": "envoy"}
    ]});
    let behavior = json!({"runSeconds": 0.1, "containers": {"sidecar": {"forever": true}}});
    create(
        &client,
        &pod(
            "sidecar",
            spec,
            json!({"sim.taskpod.dev/behavior": behavior.to_string()}),
        ),
    )
    .await?;
    let p = wait_for::<Pod>(&client, "sidecar", "main terminated", |p| {
        p.is_some_and(|p| container_state(p, "main")["terminated"]["exitCode"] == 0)
    })
    .await?
    .expect("pod");
    assert_eq!(phase(Some(&p)).as_deref(), Some("Running"));
    assert!(container_state(&p, "sidecar")["running"].is_object());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let p = Api::<Pod>::namespaced(client.clone(), "default")
        .get("sidecar")
        .await?;
    assert_eq!(phase(Some(&p)).as_deref(), Some("Running"), "still running");
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn init_containers_run_first_and_native_sidecars_stop_with_the_pod() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    let spec = json!({
        "initContainers": [
            {"name": "setup", "image": "busybox"},
            {"name": "proxy", "image": "envoy", "restartPolicy": "Always"}
        ],
        "containers": [{"name": "main", "image": "busybox"}]
    });
    let behavior = json!({"runSeconds": 0.2, "containers": {"setup": {"runSeconds": 0.2}}});
    create(
        &client,
        &pod(
            "init",
            spec,
            json!({"sim.taskpod.dev/behavior": behavior.to_string()}),
        ),
    )
    .await?;
    let running = wait_for::<Pod>(&client, "init", "main running", |p| {
        p.is_some_and(|p| container_state(p, "main")["running"].is_object())
    })
    .await?
    .expect("pod");
    assert_eq!(
        container_state(&running, "setup")["terminated"]["reason"],
        "Completed"
    );
    assert!(
        container_state(&running, "proxy")["running"].is_object(),
        "native sidecar runs alongside"
    );
    assert_eq!(
        condition(&running, "Initialized").map(|c| c.status.as_str()),
        Some("True")
    );
    let done = wait_for::<Pod>(&client, "init", "Succeeded", |p| {
        phase(p).as_deref() == Some("Succeeded")
    })
    .await?
    .expect("pod");
    assert!(
        container_state(&done, "proxy")["terminated"].is_object(),
        "sidecar stopped at the end"
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn graceful_deletion_stops_containers_then_removes_the_pod() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    create(
        &client,
        &pod(
            "graceful",
            json!({}),
            json!({"sim.taskpod.dev/behavior": "{\"forever\": true}"}),
        ),
    )
    .await?;
    wait_for::<Pod>(&client, "graceful", "Running", |p| {
        phase(p).as_deref() == Some("Running")
    })
    .await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Watch the pod until it is gone: the last version has the container stopped by SIGTERM.
    let stream = watcher::watcher(
        api.clone(),
        watcher::Config::default().fields("metadata.name=graceful"),
    );
    let last = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Ok(Some(event)) = tokio::time::timeout(WAIT, stream.next()).await {
            if let Ok(watcher::Event::Delete(pod)) = event {
                return Some(pod);
            }
        }
        None
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let deleted = api.delete("graceful", &DeleteParams::default()).await?;
    let marked = deleted.left().expect("a running pod is deleted gracefully");
    assert!(marked.metadata.deletion_timestamp.is_some());
    let last = last.await?.expect("the pod was deleted");
    let term = container_state(&last, "main")["terminated"].clone();
    assert_eq!(term["exitCode"], 143, "{last:#?}");
    assert_eq!(phase(Some(&last)).as_deref(), Some("Failed"));
    assert!(api.get_opt("graceful").await?.is_none());
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn crash_ends_an_endless_container_with_its_exit_code() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    let behavior = json!({"forever": true, "crashAfterSeconds": 0.1, "exitCode": 2});
    create(
        &client,
        &pod(
            "crash",
            json!({}),
            json!({"sim.taskpod.dev/behavior": behavior.to_string()}),
        ),
    )
    .await?;
    let p = wait_for::<Pod>(&client, "crash", "Failed", |p| {
        phase(p).as_deref() == Some("Failed")
    })
    .await?
    .expect("pod");
    let term = container_state(&p, "main")["terminated"].clone();
    assert_eq!(term["exitCode"], 2);
    assert_eq!(term["reason"], "Error");
    sim.shutdown().await;
    Ok(())
}

/// A container wired as Druid's overlord-multi wires it for kubexit: `KUBEXIT_NAME`,
/// `KUBEXIT_GRAVEYARD=/graveyard` on the `graveyard` volume, its command wrapped in
/// `/kubexit/kubexit`, optionally `KUBEXIT_DEATH_DEPS` and a trailing `|| true`.
fn kubexit_container(name: &str, deps: Option<&str>, wrapped: bool, or_true: bool) -> Value {
    let mut env = vec![
        json!({"name": "KUBEXIT_NAME", "value": name}),
        json!({"name": "KUBEXIT_GRAVEYARD", "value": "/graveyard"}),
    ];
    if let Some(deps) = deps {
        env.push(json!({"name": "KUBEXIT_DEATH_DEPS", "value": deps}));
    }
    let mut line = if wrapped {
        "/kubexit/kubexit /bin/sh -c \"run\"".to_owned()
    } else {
        "run".to_owned()
    };
    if or_true {
        line.push_str(" || true");
    }
    json!({
        "name": name,
        "image": "busybox",
        "command": ["/bin/sh", "-c"],
        "args": [line],
        "env": env,
        "volumeMounts": [
            {"name": "graveyard", "mountPath": "/graveyard"},
            {"name": "kubexit", "mountPath": "/kubexit"}
        ]
    })
}

/// A pod with a kubexit-wrapped `main` (0.2 s) and a `sidecar` that never exits on its own.
fn kubexit_pod(name: &str, sidecar: Value) -> Pod {
    let spec = json!({
        "volumes": [
            {"name": "graveyard", "emptyDir": {"medium": "Memory"}},
            {"name": "kubexit", "emptyDir": {}}
        ],
        "initContainers": [{
            "name": "kubexit", "image": "karlkfi/kubexit:latest",
            "command": ["cp", "/bin/kubexit", "/kubexit/kubexit"],
            "volumeMounts": [{"name": "kubexit", "mountPath": "/kubexit"}]
        }],
        "containers": [kubexit_container("main", None, true, false), sidecar]
    });
    let behavior = json!({"runSeconds": 0.2, "containers": {"sidecar": {"forever": true}}});
    pod(
        name,
        spec,
        json!({"sim.taskpod.dev/behavior": behavior.to_string()}),
    )
}

#[tokio::test]
async fn kubexit_stops_a_sidecar_when_its_death_dependency_dies() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    // Druid's wiring: the sidecar dies with main, and `|| true` makes it exit 0.
    create(
        &client,
        &kubexit_pod(
            "kx-druid",
            kubexit_container("sidecar", Some("main"), true, true),
        ),
    )
    .await?;
    // Without `|| true`: kubexit's SIGTERM ends the sidecar with 143, so the pod fails.
    create(
        &client,
        &kubexit_pod(
            "kx-plain",
            kubexit_container("sidecar", Some("main"), true, false),
        ),
    )
    .await?;
    // A sidecar whose command is not wrapped by kubexit never learns that main died.
    create(
        &client,
        &kubexit_pod(
            "kx-unwrapped",
            kubexit_container("sidecar", Some("main"), false, true),
        ),
    )
    .await?;
    let done = wait_for::<Pod>(&client, "kx-druid", "Succeeded", |p| {
        phase(p).as_deref() == Some("Succeeded")
    })
    .await?
    .expect("pod");
    assert_eq!(
        container_state(&done, "sidecar")["terminated"]["exitCode"],
        0
    );
    assert_eq!(container_state(&done, "main")["terminated"]["exitCode"], 0);
    let plain = wait_for::<Pod>(&client, "kx-plain", "Failed", |p| {
        phase(p).as_deref() == Some("Failed")
    })
    .await?
    .expect("pod");
    assert_eq!(
        container_state(&plain, "sidecar")["terminated"]["exitCode"],
        143
    );
    let unwrapped = wait_for::<Pod>(&client, "kx-unwrapped", "main terminated", |p| {
        p.is_some_and(|p| container_state(p, "main")["terminated"]["exitCode"] == 0)
    })
    .await?
    .expect("pod");
    assert!(container_state(&unwrapped, "sidecar")["running"].is_object());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let unwrapped = Api::<Pod>::namespaced(client.clone(), "default")
        .get("kx-unwrapped")
        .await?;
    assert_eq!(phase(Some(&unwrapped)).as_deref(), Some("Running"));
    sim.shutdown().await;
    Ok(())
}
