//! Adversarial suite (R3): hostile adapters through the real runner on the in-process simulated
//! cluster. Each hostile component — infinite loop, memory bomb, deep recursion, trap, 100 MB
//! output, invalid JSON, a Job in another namespace, a privileged pod, hostPath, hostNetwork,
//! another service account, a privileged pod hidden in a companion Deployment, a companion
//! Service of type LoadBalancer — ends its task
//! `failed` with a precise reason, no Job reaches the cluster, and a well-behaved adapter's tasks
//! in the same host still succeed; `POST /v1/render` answers hostile adapters with a 400 naming
//! the adapter, never a 5xx. How fast each fails is a benchmark figure (`taskpod bench
//! adversarial`), not asserted here.

#[allow(dead_code)]
mod runner;

use ::kube::api::{Api, ListParams};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use runner::{Env, wait_terminal};
use taskpod::store::{ReasonCode, TaskState};
use taskpod::task::SubmittedTask;

/// Config: the hostile guest for task type `hostile`, the built-in pod-template adapter for the
/// rest; the default (restrictive) policy.
/// The hostile adapter fails on purpose many times in a row: quarantine (tested in
/// tests/tenants.rs) is off so that every task shows its own precise reason.
fn config() -> String {
    format!(
        "adapters:\n  - name: hostile\n    component: {hostile}\n    config: {{mode: ok}}\n    \
         limits: {{memory: 64Mi, timeout: 500ms}}\n    quarantineAfter: 0\n  - name: tpl\n    component: builtin:pod-template\n    \
         templates:\n      base: template.yaml\nrouting:\n  default: tpl\n  byType:\n    hostile: hostile\n\
         runner:\n  taskCleanupInterval: 1h\n",
        hostile = taskpod::adapters::guests::HOSTILE_PATH,
    )
}

fn hostile_task(id: &str, mode: &str) -> SubmittedTask {
    SubmittedTask::parse(&format!(
        r#"{{"id": "{id}", "type": "hostile", "payload": {{"mode": "{mode}"}}}}"#
    ))
    .expect("valid task")
}

/// Each hostile mode, the reason code it must end with and words its message must contain.
const CASES: &[(&str, ReasonCode, &[&str])] = &[
    (
        "loop",
        ReasonCode::AdapterError,
        &["adapter `hostile`", "exceeded its time limit of 500ms"],
    ),
    (
        "memory-bomb",
        ReasonCode::AdapterError,
        &[
            "adapter `hostile`",
            "exceeded its memory limit of 67108864 bytes",
        ],
    ),
    (
        "deep-recursion",
        ReasonCode::AdapterError,
        &["adapter `hostile` trapped in `adapt`"],
    ),
    (
        "trap",
        ReasonCode::AdapterError,
        &["adapter `hostile` trapped in `adapt`", "unreachable"],
    ),
    (
        // 100 MB cannot even be built within the 64 MiB memory cap.
        "huge-output",
        ReasonCode::AdapterError,
        &["adapter `hostile`", "exceeded its memory limit"],
    ),
    (
        "invalid-json",
        ReasonCode::AdapterError,
        &[
            "adapter `hostile` produced an invalid Job",
            "not valid JSON",
        ],
    ),
    (
        "other-namespace",
        ReasonCode::Policy,
        &[
            "policy rule `namespace`",
            "adapter `hostile`",
            "`metadata.namespace`",
            "\"kube-system\"",
        ],
    ),
    (
        "privileged",
        ReasonCode::Policy,
        &[
            "policy rule `privileged`",
            "the Job of adapter `hostile`",
            "`spec.template.spec.containers[0].securityContext.privileged`",
        ],
    ),
    (
        "host-path",
        ReasonCode::Policy,
        &[
            "policy rule `host-path`",
            "`spec.template.spec.volumes[0].hostPath`",
        ],
    ),
    (
        "host-network",
        ReasonCode::Policy,
        &[
            "policy rule `host-namespaces`",
            "`spec.template.spec.hostNetwork`",
        ],
    ),
    (
        "host-pid",
        ReasonCode::Policy,
        &[
            "policy rule `host-namespaces`",
            "`spec.template.spec.hostPID`",
        ],
    ),
    (
        "add-capabilities",
        ReasonCode::Policy,
        &[
            "policy rule `capabilities`",
            "`spec.template.spec.containers[0].securityContext.capabilities.add[0]`",
            "SYS_ADMIN",
        ],
    ),
    (
        "service-account",
        ReasonCode::Policy,
        &[
            "policy rule `service-account`",
            "`spec.template.spec.serviceAccountName`",
            "\"cluster-admin\"",
        ],
    ),
    (
        "companion-privileged",
        ReasonCode::Policy,
        &[
            "policy rule `privileged`",
            "the companion[0] (Deployment) of adapter `hostile`",
            "`spec.template.spec.containers[0].securityContext.privileged`",
        ],
    ),
    (
        "service-load-balancer",
        ReasonCode::Policy,
        &[
            "policy rule `service-exposure`",
            "the companion[0] (Service) of adapter `hostile`",
            "`spec.type`",
            "`LoadBalancer`",
        ],
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_component_fails_its_task_with_a_precise_reason() {
    let env = Env::start_config(&config(), |_| {}).await;
    let store = env.store();
    let runner = env.runner(store.clone()).await;
    for (mode, _, _) in CASES {
        runner
            .submit(hostile_task(&format!("hostile-{mode}"), mode))
            .await
            .expect("submit");
    }
    runner
        .submit(runner::task("good-1", "index"))
        .await
        .expect("submit");

    for (mode, code, words) in CASES {
        let id = format!("hostile-{mode}");
        let done = wait_terminal(&store, &id, 60).await;
        assert_eq!(done.state, TaskState::Failed, "{mode}: {done:?}");
        let reason = done.reason.expect("a failed task has a reason");
        assert_eq!(reason.code, *code, "{mode}: {}", reason.message);
        for word in *words {
            assert!(
                reason.message.contains(word),
                "{mode}: reason {:?} lacks {word:?}",
                reason.message
            );
        }
        assert!(done.job_name.is_none(), "{mode}: no Job was recorded");
    }

    // The well-behaved adapter's task in the same host ran to completion.
    let good = wait_terminal(&store, "good-1", 30).await;
    assert_eq!(good.state, TaskState::Succeeded, "{good:?}");

    // Nothing a hostile adapter asked for reached the cluster: one Job (the good one), no
    // Deployment, nothing in kube-system.
    let jobs: Api<Job> = Api::all(env.sim.client());
    let listed = jobs.list(&ListParams::default()).await.expect("list Jobs");
    let names: Vec<_> = listed
        .items
        .iter()
        .map(|j| {
            (
                j.metadata.namespace.clone().unwrap_or_default(),
                j.metadata.labels.clone().unwrap_or_default()["taskpod.dev/type"].clone(),
            )
        })
        .collect();
    assert_eq!(names, [("default".to_owned(), "index".to_owned())]);
    let deployments: Api<Deployment> = Api::all(env.sim.client());
    let deployments = deployments
        .list(&ListParams::default())
        .await
        .expect("list Deployments");
    assert!(deployments.items.is_empty(), "no Deployment was created");
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_policy_lets_through_what_it_allows_and_injects_defaults() {
    let rest = format!(
        "{}policy:\n  allowHostNamespaces: true\n  defaults:\n    runAsNonRoot: true\n    \
         seccompRuntimeDefault: true\n",
        config()
    );
    let env = Env::start_config(&rest, |_| {}).await;
    let store = env.store();
    let runner = env.runner(store.clone()).await;
    runner
        .submit(hostile_task("hostnet-1", "host-network"))
        .await
        .expect("submit");
    runner
        .submit(hostile_task("priv-1", "privileged"))
        .await
        .expect("submit");
    let priv_task = wait_terminal(&store, "priv-1", 30).await;
    assert_eq!(
        priv_task.reason.map(|r| r.code),
        Some(ReasonCode::Policy),
        "privileged pods are still refused"
    );
    let jobs: Api<Job> = Api::namespaced(env.sim.client(), "default");
    runner::eventually(30, "the hostNetwork Job is created", || async {
        jobs.list(&ListParams::default().labels("taskpod.dev/type=hostile"))
            .await
            .map(|l| !l.items.is_empty())
            .unwrap_or(false)
    })
    .await;
    let job = jobs
        .list(&ListParams::default().labels("taskpod.dev/type=hostile"))
        .await
        .expect("list")
        .items
        .remove(0);
    let pod = job.spec.expect("spec").template.spec.expect("pod spec");
    assert_eq!(pod.host_network, Some(true));
    let context = pod.security_context.expect("injected pod securityContext");
    assert_eq!(context.run_as_non_root, Some(true));
    assert_eq!(
        context.seccomp_profile.map(|s| s.type_).as_deref(),
        Some("RuntimeDefault")
    );
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendering_through_the_api_answers_hostile_adapters_with_4xx_not_5xx() {
    use axum::body::Body;
    use http::{Method, Request, StatusCode};
    use http_body_util::BodyExt;
    use taskpod::api::{self, ApiState};
    use tower::ServiceExt;

    let env = Env::start_config(&config(), |_| {}).await;
    let runner = env.runner(env.store()).await;
    let state = ApiState::new(runner.clone());
    for (mode, field) in [
        ("loop", "adapter"),
        ("memory-bomb", "adapter"),
        ("trap", "adapter"),
        ("panic", "adapter"),
        ("deep-recursion", "adapter"),
        ("invalid-json", "job"),
        ("privileged", "job"),
    ] {
        let body = format!(
            r#"{{"id": "render-{mode}", "type": "hostile", "payload": {{"mode": "{mode}"}}}}"#
        );
        let req = Request::builder()
            .method(Method::POST)
            .uri("/v1/render")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("request");
        let resp = api::router(state.clone())
            .oneshot(req)
            .await
            .expect("response");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON error body");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{mode}: {value}");
        assert_eq!(value["error"]["field"], field, "{mode}: {value}");
        assert!(
            value["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("hostile"),
            "{mode}: the message names the adapter: {value}"
        );
    }
    state.close_streams();
    runner.shutdown().await;
}
