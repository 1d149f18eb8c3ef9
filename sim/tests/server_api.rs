//! The simulated API server driven by the real `kube` client (and raw HTTP where headers matter):
//! discovery, CRUD, Status errors, resourceVersion semantics, selectors, pagination, watch,
//! validation and defaulting, field validation, patches, the status subresource, finalizers and
//! deletion propagation, pod logs, binding, faults and counters.
//!
//! Controllers are off here (`ControllerMode::Off`) so that every observation is the server's own.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::Status;
use serde_json::{Value, json};
use taskpod_sim::{ControllerConfig, ControllerMode, Sim, SimOptions};

async fn sim() -> Result<Sim> {
    sim_with(|_| {}).await
}

async fn sim_with(f: impl FnOnce(&mut SimOptions)) -> Result<Sim> {
    let mut opts = SimOptions {
        controllers: ControllerConfig {
            mode: ControllerMode::Off,
            ..Default::default()
        },
        ..Default::default()
    };
    f(&mut opts);
    Ok(Sim::start(opts).await?)
}

fn api_status(err: kube::Error) -> Result<Box<Status>> {
    match err {
        kube::Error::Api(s) => Ok(s),
        other => bail!("expected an API Status error, got {other:?}"),
    }
}

fn cm(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"}
    }))
    .expect("valid ConfigMap")
}

fn job_json(name: &str) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox:1.36"}]}}}
    })
}

fn pod_json(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}
    })
}

/// A client that does not retry 429s by itself (the default kube client honours Retry-After and
/// retries up to 15 times), so that tests see the injected answers.
fn no_retry_client(sim: &Sim) -> Result<kube::Client> {
    let mut config = kube::Config::new(sim.base_url().parse()?);
    config.default_retry = false;
    Ok(kube::Client::try_from(config)?)
}

/// A raw request through the kube client's HTTP stack, returning status, headers and JSON body.
async fn raw(
    sim: &Sim,
    method: &str,
    path: &str,
    content_type: &str,
    body: Value,
) -> Result<(u16, http::HeaderMap, Value)> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(kube::client::Body::from(serde_json::to_vec(&body)?))?;
    let resp = no_retry_client(sim)?.send(req).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await?
        .to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok((status, headers, v))
}

#[tokio::test]
async fn discovery_lists_every_served_resource() -> Result<()> {
    let sim = sim().await?;
    let discovery = kube::Discovery::new(sim.client()).run().await?;
    let mut kinds = Vec::new();
    for group in discovery.groups() {
        for (ar, _caps) in group.recommended_resources() {
            kinds.push(format!("{}/{}", ar.api_version, ar.plural));
        }
    }
    for expected in [
        "v1/pods",
        "v1/namespaces",
        "v1/configmaps",
        "v1/services",
        "v1/events",
        "batch/v1/jobs",
        "apps/v1/deployments",
        "coordination.k8s.io/v1/leases",
    ] {
        assert!(
            kinds.contains(&expected.to_owned()),
            "{expected} missing from {kinds:?}"
        );
    }
    let version = sim.client().apiserver_version().await?;
    assert_eq!(version.major, "1");
    let namespaces: Api<Namespace> = Api::all(sim.client());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(names, vec!["default", "kube-public", "kube-system"]);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn crud_status_errors_and_optimistic_concurrency() -> Result<()> {
    let sim = sim().await?;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let created = api
        .create(&PostParams::default(), &cm("a", json!({})))
        .await?;
    let meta = &created.metadata;
    assert!(meta.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(meta.creation_timestamp.is_some());
    let rv1: u64 = meta.resource_version.as_deref().unwrap_or("").parse()?;

    let err = api_status(
        api.create(&PostParams::default(), &cm("a", json!({})))
            .await
            .unwrap_err(),
    )?;
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(err.message, "configmaps \"a\" already exists");

    let err = api_status(api.get("missing").await.unwrap_err())?;
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));

    // A second object gets a higher, globally ordered resourceVersion.
    let b = api
        .create(&PostParams::default(), &cm("b", json!({})))
        .await?;
    let rv_b: u64 = b
        .metadata
        .resource_version
        .as_deref()
        .unwrap_or("")
        .parse()?;
    assert!(rv_b > rv1);

    // Update with the current resourceVersion succeeds; with a stale one it conflicts.
    let mut fresh = created.clone();
    fresh.data = Some([("k".to_owned(), "w".to_owned())].into());
    let updated = api.replace("a", &PostParams::default(), &fresh).await?;
    assert_eq!(
        updated
            .data
            .as_ref()
            .and_then(|d| d.get("k"))
            .map(String::as_str),
        Some("w")
    );
    let err = api_status(
        api.replace("a", &PostParams::default(), &fresh)
            .await
            .unwrap_err(),
    )?;
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(err.message.contains("the object has been modified"));

    // A no-op update does not create a new revision.
    let same = api.replace("a", &PostParams::default(), &updated).await?;
    assert_eq!(
        same.metadata.resource_version,
        updated.metadata.resource_version
    );

    // Creating in a namespace that does not exist is NotFound for the namespace.
    let elsewhere: Api<ConfigMap> = Api::namespaced(sim.client(), "nowhere");
    let err = api_status(
        elsewhere
            .create(&PostParams::default(), &cm("x", json!({})))
            .await
            .unwrap_err(),
    )?;
    assert_eq!(err.code, 404);
    assert_eq!(err.message, "namespaces \"nowhere\" not found");

    // generateName appends five characters.
    let gen_obj: ConfigMap = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}}),
    )?;
    let generated = api.create(&PostParams::default(), &gen_obj).await?;
    let name = generated.metadata.name.unwrap_or_default();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn list_selectors_and_pagination() -> Result<()> {
    let sim = sim().await?;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    for (name, labels) in [
        ("c1", json!({"app": "web", "tier": "front"})),
        ("c2", json!({"app": "web", "tier": "back"})),
        ("c3", json!({"app": "db"})),
        ("c4", json!({})),
    ] {
        api.create(&PostParams::default(), &cm(name, labels))
            .await?;
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect()
    };
    let q = |s: &str| ListParams::default().labels(s);
    assert_eq!(names(api.list(&q("app=web")).await?), ["c1", "c2"]);
    assert_eq!(names(api.list(&q("app!=web")).await?), ["c3", "c4"]);
    assert_eq!(names(api.list(&q("tier in (front,x)")).await?), ["c1"]);
    assert_eq!(names(api.list(&q("app notin (web)")).await?), ["c3", "c4"]);
    assert_eq!(names(api.list(&q("tier")).await?), ["c1", "c2"]);
    assert_eq!(names(api.list(&q("!app")).await?), ["c4"]);
    let by_name = ListParams::default().fields("metadata.name=c3");
    assert_eq!(names(api.list(&by_name).await?), ["c3"]);
    let err = api_status(
        api.list(&ListParams::default().fields("data.k=v"))
            .await
            .unwrap_err(),
    )?;
    assert_eq!(err.code, 400);
    assert!(err.message.contains("field label not supported: data.k"));
    let err = api_status(api.list(&q("app=(bad")).await.unwrap_err())?;
    assert_eq!(err.code, 400);

    // limit/continue walks every item exactly once and reports what remains.
    let first = api.list(&ListParams::default().limit(3)).await?;
    assert_eq!(first.items.len(), 3);
    assert_eq!(first.metadata.remaining_item_count, Some(1));
    let token = first
        .metadata
        .continue_
        .clone()
        .context("a continue token")?;
    let second = api
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await?;
    assert_eq!(names(second.clone()), ["c4"]);
    assert!(
        second
            .metadata
            .continue_
            .as_deref()
            .unwrap_or("")
            .is_empty()
    );

    // A continue token older than the retained window is 410 Expired.
    api.create(&PostParams::default(), &cm("c5", json!({})))
        .await?;
    sim.faults().compact();
    let err = api_status(
        api.list(&ListParams::default().limit(3).continue_token(&token))
            .await
            .unwrap_err(),
    )?;
    assert_eq!((err.code, err.reason.as_str()), (410, "Expired"));

    // Pods support status.phase field selectors.
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod_json("p1"))?,
    )
    .await?;
    let pending = pods
        .list(&ListParams::default().fields("status.phase=Pending"))
        .await?;
    assert_eq!(pending.items.len(), 1);
    let running = pods
        .list(&ListParams::default().fields("status.phase=Running"))
        .await?;
    assert!(running.items.is_empty());
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn watch_events_bookmarks_timeout_and_expiry() -> Result<()> {
    let sim = sim_with(|o| o.bookmark_interval = Duration::from_millis(200)).await?;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let a = api
        .create(&PostParams::default(), &cm("w1", json!({"watch": "me"})))
        .await?;
    let start = a.metadata.resource_version.clone().unwrap_or_default();
    let wp = WatchParams::default().labels("watch=me").timeout(3);
    let mut stream = api.watch(&wp, &start).await?.boxed();
    api.create(&PostParams::default(), &cm("w2", json!({"watch": "me"})))
        .await?;
    api.create(&PostParams::default(), &cm("ignored", json!({})))
        .await?;
    api.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "changed"}})),
    )
    .await?;
    // w2 stops matching the selector: the watcher sees it as DELETED.
    api.patch(
        "w2",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"watch": "other"}}})),
    )
    .await?;
    api.delete("w1", &DeleteParams::default()).await?;
    let mut seen = Vec::new();
    let mut bookmarks = 0;
    // The stream ends by itself at timeoutSeconds.
    while let Some(ev) = stream.try_next().await? {
        match ev {
            WatchEvent::Added(c) => {
                seen.push(format!("ADDED {}", c.metadata.name.unwrap_or_default()))
            }
            WatchEvent::Modified(c) => {
                seen.push(format!("MODIFIED {}", c.metadata.name.unwrap_or_default()))
            }
            WatchEvent::Deleted(c) => {
                seen.push(format!("DELETED {}", c.metadata.name.unwrap_or_default()))
            }
            WatchEvent::Bookmark(_) => bookmarks += 1,
            WatchEvent::Error(e) => bail!("unexpected error event {e:?}"),
        }
    }
    assert_eq!(
        seen,
        ["ADDED w2", "MODIFIED w1", "DELETED w2", "DELETED w1"]
    );
    assert!(
        bookmarks >= 2,
        "bookmarks every 200 ms over 3 s: {bookmarks}"
    );

    // After compaction, resuming from the old version is an ERROR event with 410 Expired.
    sim.faults().compact();
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &start)
        .await?
        .boxed();
    match stream.try_next().await? {
        Some(WatchEvent::Error(e)) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
            assert!(e.message.starts_with("too old resource version"));
        }
        other => bail!("expected a 410 ERROR event, got {other:?}"),
    }

    // resourceVersion=0 starts with synthetic ADDED events for what exists.
    let mut stream = api
        .watch(&WatchParams::default().timeout(1), "0")
        .await?
        .boxed();
    match stream.try_next().await? {
        Some(WatchEvent::Added(c)) => assert_eq!(c.metadata.name.as_deref(), Some("ignored")),
        other => bail!("expected ADDED, got {other:?}"),
    }
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn job_defaults_and_generated_selector() -> Result<()> {
    let sim = sim().await?;
    let jobs: Api<Job> = Api::namespaced(sim.client(), "default");
    let job = jobs
        .create(
            &PostParams::default(),
            &serde_json::from_value(job_json("j1"))?,
        )
        .await?;
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let spec = job.spec.clone().context("spec")?;
    assert_eq!(spec.parallelism, Some(1));
    assert_eq!(spec.completions, Some(1));
    assert_eq!(spec.backoff_limit, Some(6));
    assert_eq!(spec.completion_mode.as_deref(), Some("NonIndexed"));
    assert_eq!(spec.suspend, Some(false));
    assert_eq!(job.metadata.generation, Some(1));
    let selector = spec
        .selector
        .and_then(|s| s.match_labels)
        .unwrap_or_default();
    assert_eq!(
        selector.get("batch.kubernetes.io/controller-uid"),
        Some(&uid)
    );
    let labels = spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .unwrap_or_default();
    assert_eq!(
        labels
            .get("batch.kubernetes.io/job-name")
            .map(String::as_str),
        Some("j1")
    );
    assert_eq!(labels.get("job-name").map(String::as_str), Some("j1"));
    assert_eq!(labels.get("controller-uid"), Some(&uid));
    let pod_spec = spec.template.spec.context("template spec")?;
    assert_eq!(pod_spec.termination_grace_period_seconds, Some(30));
    assert_eq!(pod_spec.dns_policy.as_deref(), Some("ClusterFirst"));
    assert_eq!(
        pod_spec.containers[0].image_pull_policy.as_deref(),
        Some("IfNotPresent")
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn job_validation_is_as_strict_as_the_apiserver() -> Result<()> {
    let sim = sim().await?;
    let jobs: Api<Job> = Api::namespaced(sim.client(), "default");
    let create = |v: Value| {
        let jobs = jobs.clone();
        async move {
            let job: Job = serde_json::from_value(v)?;
            let err = jobs
                .create(&PostParams::default(), &job)
                .await
                .err()
                .context("expected the create to fail")?;
            api_status(err)
        }
    };

    // restartPolicy Always is not allowed for Jobs.
    let mut v = job_json("always");
    v["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
    let err = create(v).await?;
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        err.message,
        r#"Job.batch "always" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#
    );
    let details = err.details.context("details")?;
    assert_eq!(details.causes[0].field, "spec.template.spec.restartPolicy");
    assert_eq!(details.causes[0].reason, "FieldValueNotSupported");

    // A 64-character name is a valid DNS subdomain but makes the job-name label too long.
    let long = "a".repeat(64);
    let err = create(job_json(&long)).await?;
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("spec.template.labels: Invalid value")
            && err.message.contains("must be no more than 63 characters"),
        "{}",
        err.message
    );

    // Names must be DNS-1123 subdomains.
    let err = create(job_json("Bad_Name")).await?;
    assert_eq!(err.code, 422);
    assert!(
        err.message
            .contains("metadata.name: Invalid value: \"Bad_Name\"")
    );

    // Containers are required, need an image and unique names.
    let mut v = job_json("noc");
    v["spec"]["template"]["spec"]["containers"] = json!([]);
    let err = create(v).await?;
    assert!(
        err.message
            .contains("spec.template.spec.containers: Required value")
    );
    let mut v = job_json("dup");
    v["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "a", "image": "x:1"}, {"name": "a"}]);
    let err = create(v).await?;
    assert!(
        err.message
            .contains("spec.template.spec.containers[1].name: Duplicate value: \"a\"")
    );
    assert!(
        err.message
            .contains("spec.template.spec.containers[1].image: Required value")
    );

    // Only the server generates the selector.
    let mut v = job_json("sel");
    v["spec"]["selector"] = json!({"matchLabels": {"a": "b"}});
    let err = create(v).await?;
    assert!(err.message.contains("`selector` will be auto-generated"));

    // Label syntax and annotation size.
    let mut v = job_json("labels");
    v["metadata"]["labels"] = json!({"bad key!": "v", "ok": "-bad-value"});
    let err = create(v).await?;
    assert_eq!(err.details.context("details")?.causes.len(), 2);
    let mut v = job_json("ann");
    v["metadata"]["annotations"] = json!({"big": "x".repeat(256 * 1024)});
    let err = create(v).await?;
    assert!(err.message.contains("metadata.annotations: Too long"));

    // Indexed Jobs need completions.
    let mut v = job_json("idx");
    v["spec"]["completionMode"] = json!("Indexed");
    v["spec"]["parallelism"] = json!(2);
    let err = create(v).await?;
    assert!(err.message.contains("spec.completions: Required value"));

    // The template of a running Job is immutable.
    let ok = jobs
        .create(
            &PostParams::default(),
            &serde_json::from_value(job_json("imm"))?,
        )
        .await?;
    let mut changed = ok.clone();
    if let Some(ts) = changed.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        ts.containers[0].image = Some("busybox:1.37".to_owned());
    }
    let err = api_status(
        jobs.replace("imm", &PostParams::default(), &changed)
            .await
            .unwrap_err(),
    )?;
    assert!(err.message.contains("spec.template: Invalid value"));
    assert!(err.message.contains("field is immutable"));
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn field_validation_strict_warn_ignore() -> Result<()> {
    let sim = sim().await?;
    let mut body = job_json("fv");
    body["spec"]["template"]["spec"]["containers"][0]["imagee"] = json!("typo");
    body["spec"]["bogus"] = json!(1);
    let path = "/apis/batch/v1/namespaces/default/jobs";
    let (code, _, status) = raw(
        &sim,
        "POST",
        &format!("{path}?fieldValidation=Strict"),
        "application/json",
        body.clone(),
    )
    .await?;
    assert_eq!(code, 400);
    assert_eq!(status["reason"], "BadRequest");
    let msg = status["message"].as_str().unwrap_or("");
    assert!(msg.contains(r#"unknown field "spec.bogus""#), "{msg}");
    assert!(
        msg.contains(r#"unknown field "spec.template.spec.containers[0].imagee""#),
        "{msg}"
    );

    let (code, headers, created) = raw(
        &sim,
        "POST",
        &format!("{path}?fieldValidation=Warn"),
        "application/json",
        body.clone(),
    )
    .await?;
    assert_eq!(code, 201);
    let warnings: Vec<&str> = headers
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(r#"unknown field \"spec.bogus\""#)),
        "{warnings:?}"
    );
    // Unknown fields are dropped, as the real server stores only what its schema knows.
    assert!(created["spec"].get("bogus").is_none());

    body["metadata"]["name"] = json!("fv2");
    let (code, headers, _) = raw(
        &sim,
        "POST",
        &format!("{path}?fieldValidation=Ignore"),
        "application/json",
        body,
    )
    .await?;
    assert_eq!(code, 201);
    assert!(headers.get("warning").is_none());

    // Wrong types are decoding errors.
    let mut bad = job_json("types");
    bad["spec"]["parallelism"] = json!("two");
    let (code, _, status) = raw(&sim, "POST", path, "application/json", bad).await?;
    assert_eq!(code, 400);
    assert!(
        status["message"]
            .as_str()
            .unwrap_or("")
            .contains("cannot be handled as a Job")
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn patches_status_subresource_and_generation() -> Result<()> {
    let sim = sim().await?;
    let jobs: Api<Job> = Api::namespaced(sim.client(), "default");
    jobs.create(
        &PostParams::default(),
        &serde_json::from_value(job_json("p"))?,
    )
    .await?;
    // Merge patch of metadata: no generation bump.
    let j = jobs
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})),
        )
        .await?;
    assert_eq!(j.metadata.generation, Some(1));
    // Spec change: generation bumps.
    let j = jobs
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"activeDeadlineSeconds": 60}})),
        )
        .await?;
    assert_eq!(j.metadata.generation, Some(2));
    // Status through the main resource is ignored …
    let j = jobs
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"active": 3}})),
        )
        .await?;
    assert_eq!(j.status.and_then(|s| s.active), None);
    // … and applied through /status, without a generation bump.
    let j = jobs
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"active": 3}})),
        )
        .await?;
    assert_eq!(j.status.as_ref().and_then(|s| s.active), Some(3));
    assert_eq!(j.metadata.generation, Some(2));
    // JSON patch, including a failing test operation.
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}
    ]))?;
    let j = jobs
        .patch("p", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await?;
    assert_eq!(
        j.metadata
            .annotations
            .and_then(|a| a.get("a").cloned())
            .as_deref(),
        Some("b")
    );
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/name", "value": "other"}
    ]))?;
    let err = api_status(
        jobs.patch("p", &PatchParams::default(), &Patch::Json::<()>(ops))
            .await
            .unwrap_err(),
    )?;
    assert_eq!(err.code, 400);
    // Strategic merge patch merges containers by name.
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    let mut pod = pod_json("sm");
    pod["spec"]["containers"] = json!([
        {"name": "main", "image": "a:1"}, {"name": "side", "image": "s:1"}
    ]);
    pods.create(&PostParams::default(), &serde_json::from_value(pod)?)
        .await?;
    let p = pods
        .patch(
            "sm",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"containers": [{"name": "side", "image": "s:2"}]}})),
        )
        .await?;
    let images: Vec<String> = p
        .spec
        .map(|s| s.containers.into_iter().filter_map(|c| c.image).collect())
        .unwrap_or_default();
    assert_eq!(images, ["a:1", "s:2"]);
    // Pod specs are otherwise immutable.
    let err = api_status(
        pods.patch(
            "sm",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"restartPolicy": "Never"}})),
        )
        .await
        .unwrap_err(),
    )?;
    assert_eq!(err.code, 422);
    assert!(err.message.contains("pod updates may not change fields"));
    // Server-side apply creates, then merges.
    let leases: Api<Lease> = Api::namespaced(sim.client(), "default");
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "leader"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}});
    let l = leases
        .patch(
            "leader",
            &PatchParams::apply("taskpod"),
            &Patch::Apply(&lease),
        )
        .await?;
    assert_eq!(l.spec.and_then(|s| s.holder_identity).as_deref(), Some("a"));
    let lease2 = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "leader"}, "spec": {"holderIdentity": "b"}});
    let l = leases
        .patch(
            "leader",
            &PatchParams::apply("taskpod"),
            &Patch::Apply(&lease2),
        )
        .await?;
    let spec = l.spec.context("lease spec")?;
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn finalizers_and_propagation_policies() -> Result<()> {
    let sim = sim().await?;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let mut c = cm("fin", json!({}));
    c.metadata.finalizers = Some(vec!["taskpod.dev/hold".to_owned()]);
    api.create(&PostParams::default(), &c).await?;
    // Delete with a finalizer: marked, not removed (202 Accepted with the object).
    let r = api.delete("fin", &DeleteParams::default()).await?;
    let marked = r
        .left()
        .context("the object is returned while finalizers remain")?;
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert!(api.get("fin").await?.metadata.deletion_timestamp.is_some());
    // New finalizers may not be added while deleting.
    let err = api_status(
        api.patch(
            "fin",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["taskpod.dev/hold", "x.dev/more"]}})),
        )
        .await
        .unwrap_err(),
    )?;
    assert_eq!(err.code, 422);
    // Removing the last finalizer removes the object.
    api.patch(
        "fin",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    assert!(api.get_opt("fin").await?.is_none());

    // Foreground adds foregroundDeletion; Orphan adds orphan; batch/v1 Jobs default to orphan.
    api.create(&PostParams::default(), &cm("fg", json!({})))
        .await?;
    api.delete("fg", &DeleteParams::foreground()).await?;
    let fg = api.get("fg").await?;
    assert_eq!(
        fg.metadata.finalizers,
        Some(vec!["foregroundDeletion".to_owned()])
    );
    api.create(&PostParams::default(), &cm("or", json!({})))
        .await?;
    api.delete("or", &DeleteParams::orphan()).await?;
    assert_eq!(
        api.get("or").await?.metadata.finalizers,
        Some(vec!["orphan".to_owned()])
    );
    api.create(&PostParams::default(), &cm("bg", json!({})))
        .await?;
    assert!(
        api.delete("bg", &DeleteParams::background())
            .await?
            .is_left()
    );
    assert!(api.get_opt("bg").await?.is_none());

    let jobs: Api<Job> = Api::namespaced(sim.client(), "default");
    jobs.create(
        &PostParams::default(),
        &serde_json::from_value(job_json("jd"))?,
    )
    .await?;
    let (code, headers, _) = raw(
        &sim,
        "DELETE",
        "/apis/batch/v1/namespaces/default/jobs/jd",
        "application/json",
        json!({}),
    )
    .await?;
    assert_eq!(code, 202);
    assert!(
        headers
            .get("warning")
            .and_then(|w| w.to_str().ok())
            .is_some_and(|w| w.contains("child pods are preserved by default"))
    );
    let jd = jobs.get("jd").await?;
    assert_eq!(jd.metadata.finalizers, Some(vec!["orphan".to_owned()]));
    assert_eq!(jd.metadata.generation, Some(2));

    // Bound, running pods are deleted gracefully; unbound pods at once.
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod_json("unbound"))?,
    )
    .await?;
    pods.delete("unbound", &DeleteParams::default()).await?;
    assert!(pods.get_opt("unbound").await?.is_none());
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod_json("bound"))?,
    )
    .await?;
    let (code, _, _) = raw(
        &sim,
        "POST",
        "/api/v1/namespaces/default/pods/bound/binding",
        "application/json",
        json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "bound"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}}),
    )
    .await?;
    assert_eq!(code, 201);
    let bound = pods.get("bound").await?;
    assert_eq!(
        bound.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some("node-1")
    );
    let (code, _, status) = raw(
        &sim,
        "POST",
        "/api/v1/namespaces/default/pods/bound/binding",
        "application/json",
        json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "bound"},
            "target": {"name": "node-2"}}),
    )
    .await?;
    assert_eq!((code, status["reason"].as_str()), (409, Some("Conflict")));
    pods.delete("bound", &DeleteParams::default()).await?;
    let terminating = pods.get("bound").await?;
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    // The kubelet's final delete with grace period 0 removes it.
    pods.delete("bound", &DeleteParams::default().grace_period(0))
        .await?;
    assert!(pods.get_opt("bound").await?.is_none());

    // Protected namespaces cannot be deleted; others take their content with them.
    let nss: Api<Namespace> = Api::all(sim.client());
    let err = api_status(
        nss.delete("default", &DeleteParams::default())
            .await
            .unwrap_err(),
    )?;
    assert_eq!(err.code, 403);
    let ns: Namespace = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tmp"}}),
    )?;
    nss.create(&PostParams::default(), &ns).await?;
    let tmp: Api<ConfigMap> = Api::namespaced(sim.client(), "tmp");
    tmp.create(&PostParams::default(), &cm("inside", json!({})))
        .await?;
    nss.delete("tmp", &DeleteParams::default()).await?;
    assert!(nss.get_opt("tmp").await?.is_none());
    assert!(tmp.list(&ListParams::default()).await?.items.is_empty());
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn pod_logs_tail_container_and_follow() -> Result<()> {
    let sim = sim().await?;
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    let mut pod = pod_json("logger");
    pod["spec"]["containers"] =
        json!([{"name": "main", "image": "a:1"}, {"name": "side", "image": "s:1"}]);
    pods.create(&PostParams::default(), &serde_json::from_value(pod)?)
        .await?;
    // No log yet and the pod is Pending: the container is waiting to start.
    let err = api_status(
        pods.logs(
            "logger",
            &LogParams {
                container: Some("main".to_owned()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err(),
    )?;
    assert_eq!(err.code, 400);
    assert!(err.message.contains("is waiting to start"));
    let logs = sim.logs();
    for i in 1..=5 {
        logs.append("default", "logger", "main", &format!("line {i}"));
    }
    logs.append("default", "logger", "side", "sidecar");
    // Two containers and none named: the server asks for one.
    let err = api_status(
        pods.logs("logger", &LogParams::default())
            .await
            .unwrap_err(),
    )?;
    assert!(err.message.contains("a container name must be specified"));
    let text = pods
        .logs(
            "logger",
            &LogParams {
                container: Some("main".to_owned()),
                tail_lines: Some(2),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(text, "line 4\nline 5\n");
    let side = pods
        .logs(
            "logger",
            &LogParams {
                container: Some("side".to_owned()),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(side, "sidecar\n");
    // Follow: existing lines, then new ones, ending when the container finishes.
    let stream = pods
        .log_stream(
            "logger",
            &LogParams {
                container: Some("main".to_owned()),
                follow: true,
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .await?;
    let writer = logs.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer.append("default", "logger", "main", "line 6");
        writer.finish("default", "logger", "main");
    });
    let lines: Vec<String> = tokio::time::timeout(
        Duration::from_secs(10),
        stream.lines().try_collect::<Vec<String>>(),
    )
    .await
    .context("follow ends when the container finishes")??;
    assert_eq!(lines, ["line 5", "line 6"]);
    // Logs stay readable after the container ends, and go with the pod.
    assert!(
        pods.logs(
            "logger",
            &LogParams {
                container: Some("main".to_owned()),
                ..Default::default()
            }
        )
        .await?
        .ends_with("line 6\n")
    );
    pods.delete("logger", &DeleteParams::default()).await?;
    assert!(!logs.exists("default", "logger", "main"));
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn faults_and_counters() -> Result<()> {
    let sim = sim().await?;
    let api: Api<ConfigMap> = Api::namespaced(no_retry_client(&sim)?, "default");
    api.create(&PostParams::default(), &cm("f", json!({})))
        .await?;

    // 429 with Retry-After on every get.
    sim.faults().set_error_rate("get", 1.0, 429)?;
    let (code, headers, status) = raw(
        &sim,
        "GET",
        "/api/v1/namespaces/default/configmaps/f",
        "application/json",
        Value::Null,
    )
    .await?;
    assert_eq!(code, 429);
    assert_eq!(status["reason"], "TooManyRequests");
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // Other verbs are unaffected.
    assert_eq!(api.list(&ListParams::default()).await?.items.len(), 1);
    sim.faults().set_error_rate("*", 1.0, 500)?;
    let err = api_status(api.list(&ListParams::default()).await.unwrap_err())?;
    assert_eq!((err.code, err.reason.as_str()), (500, "InternalError"));
    sim.faults().clear();

    // Latency is added to every request.
    sim.faults().set_latency(Duration::from_millis(150));
    let t0 = std::time::Instant::now();
    api.get("f").await?;
    assert!(t0.elapsed() >= Duration::from_millis(150));
    sim.faults().set_latency(Duration::ZERO);

    // Watches are dropped after the configured lifetime (long before their timeout).
    sim.faults()
        .drop_watches_every(Some(Duration::from_millis(300)));
    let t0 = std::time::Instant::now();
    let mut stream = api
        .watch(&WatchParams::default().timeout(30), "0")
        .await?
        .boxed();
    while stream.try_next().await?.is_some() {}
    assert!(t0.elapsed() < Duration::from_secs(10));
    sim.faults().clear();

    // The control endpoint reads and replaces the configuration.
    let (code, _, cfg) = raw(
        &sim,
        "PUT",
        "/sim/faults",
        "application/json",
        json!({"errors": {"create": {"rate": 1.0, "code": 429, "retryAfterSeconds": 7}}}),
    )
    .await?;
    assert_eq!(code, 200);
    assert_eq!(cfg["errors"]["create"]["retryAfterSeconds"], 7);
    let err = api_status(
        api.create(&PostParams::default(), &cm("g", json!({})))
            .await
            .unwrap_err(),
    )?;
    assert_eq!(err.code, 429);
    let (code, _, _) = raw(
        &sim,
        "PUT",
        "/sim/faults",
        "application/json",
        json!({"errors": {"create": {"rate": 2.0}}}),
    )
    .await?;
    assert_eq!(code, 400);
    let (code, _, _) = raw(&sim, "PUT", "/sim/faults", "application/json", json!({})).await?;
    assert_eq!(code, 200);

    // The default kube client retries 429s after Retry-After: at a 50% rate every call succeeds.
    sim.faults().set_error_rate("get", 0.5, 429)?;
    let retrying: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    for _ in 0..5 {
        retrying.get("f").await?;
    }
    sim.faults().clear();

    // Counters: creates per name (an AlreadyExists is not a create) and requests per verb.
    let _ = api
        .create(&PostParams::default(), &cm("f", json!({})))
        .await;
    let counters = sim.counters();
    assert_eq!(counters.creates("ConfigMap", "default", "f"), 1);
    assert_eq!(counters.max_creates_per_name("ConfigMap"), 1);
    assert!(counters.requests("create", "configmaps") >= 3);
    assert!(counters.requests("get", "configmaps") >= 2);
    let (_, _, snapshot) = raw(
        &sim,
        "GET",
        "/sim/counters",
        "application/json",
        Value::Null,
    )
    .await?;
    assert_eq!(snapshot["creates"]["ConfigMap default/f"], 1);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn standalone_server_writes_a_working_kubeconfig() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kubeconfig");
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    drop(listener);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let opts = SimOptions {
        controllers: ControllerConfig {
            mode: ControllerMode::Off,
            ..Default::default()
        },
        ..Default::default()
    };
    let p = path.clone();
    let server = tokio::spawn(async move {
        taskpod_sim::serve_standalone(addr, &p, opts, async {
            let _ = stopped.await;
        })
        .await
    });
    for _ in 0..100 {
        if path.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config)?;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &cm("standalone", json!({})))
        .await?;
    assert_eq!(api.list(&ListParams::default()).await?.items.len(), 1);
    let _ = stop.send(());
    server.await??;
    Ok(())
}

#[tokio::test]
async fn streaming_lists_and_metadata_only_requests() -> Result<()> {
    let sim = sim().await?;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    for n in ["m1", "m2"] {
        api.create(&PostParams::default(), &cm(n, json!({"set": "a"})))
            .await?;
    }
    // sendInitialEvents: ADDED for what exists, then a bookmark marking the end of the list.
    let wp = WatchParams::streaming_lists().timeout(2);
    let mut stream = api.watch(&wp, "").await?.boxed();
    let mut added = Vec::new();
    loop {
        match stream.try_next().await? {
            Some(WatchEvent::Added(c)) => added.push(c.metadata.name.unwrap_or_default()),
            Some(WatchEvent::Bookmark(b)) => {
                assert_eq!(
                    b.metadata
                        .annotations
                        .get("k8s.io/initial-events-end")
                        .map(String::as_str),
                    Some("true")
                );
                break;
            }
            other => bail!("unexpected event {other:?}"),
        }
    }
    assert_eq!(added, ["m1", "m2"]);
    // Metadata-only get and list (kube's metadata watcher and get_metadata).
    let meta = api.get_metadata("m1").await?;
    assert_eq!(meta.metadata.name.as_deref(), Some("m1"));
    let metas = api
        .list_metadata(&ListParams::default().labels("set=a"))
        .await?;
    assert_eq!(metas.items.len(), 2);
    // The label index follows label changes.
    api.patch(
        "m1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"set": "b"}}})),
    )
    .await?;
    let a = api.list(&ListParams::default().labels("set=a")).await?;
    let b = api.list(&ListParams::default().labels("set=b")).await?;
    assert_eq!(a.items.len(), 1);
    assert_eq!(b.items[0].metadata.name.as_deref(), Some("m1"));
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn pausing_controllers_through_the_control_endpoint() -> Result<()> {
    let sim = sim_with(|o| o.controllers.mode = ControllerMode::Full).await?;
    sim.controllers().ready().await;
    let (code, _, _) = raw(
        &sim,
        "PUT",
        "/sim/faults",
        "application/json",
        json!({"pauseControllers": true}),
    )
    .await?;
    assert_eq!(code, 200);
    assert!(sim.controllers().is_paused());
    let jobs: Api<Job> = Api::namespaced(sim.client(), "default");
    jobs.create(
        &PostParams::default(),
        &serde_json::from_value(job_json("paused"))?,
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lp = ListParams::default().labels("job-name=paused");
    assert!(
        pods.list(&lp).await?.items.is_empty(),
        "no pod while paused"
    );
    sim.faults().resume_controllers();
    assert!(!sim.controllers().is_paused());
    let mut created = false;
    for _ in 0..100 {
        if !pods.list(&lp).await?.items.is_empty() {
            created = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(created, "the Job controller creates the pod after resume");
    assert_eq!(sim.counters().creates("Job", "default", "paused"), 1);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn delete_collection_and_table_output() -> Result<()> {
    let sim = sim().await?;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    for (n, l) in [("d1", "x"), ("d2", "x"), ("keep", "y")] {
        api.create(&PostParams::default(), &cm(n, json!({"grp": l})))
            .await?;
    }
    // kubectl get asks for a meta.k8s.io Table.
    let req = http::Request::builder()
        .uri("/api/v1/namespaces/default/configmaps")
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(kube::client::Body::empty())?;
    let resp = no_retry_client(&sim)?.send(req).await?;
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await?
        .to_bytes();
    let table: Value = serde_json::from_slice(&bytes)?;
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["columnDefinitions"][0]["name"], "Name");
    assert_eq!(table["rows"].as_array().map(Vec::len), Some(3));
    assert_eq!(table["rows"][0]["cells"][0], "d1");
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");

    let deleted = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("grp=x"),
        )
        .await?;
    let names: Vec<String> = deleted
        .left()
        .context("the deleted objects are returned")?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(names, ["d1", "d2"]);
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(left, ["keep"]);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn dry_run_validates_without_writing() -> Result<()> {
    let sim = sim().await?;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let preview = api.create(&dry, &cm("dry", json!({}))).await?;
    assert_eq!(preview.metadata.name.as_deref(), Some("dry"));
    assert!(api.get_opt("dry").await?.is_none());
    let rev = sim.revision();
    api.create(&PostParams::default(), &cm("dry", json!({})))
        .await?;
    let patched = api
        .patch(
            "dry",
            &PatchParams::default().dry_run(),
            &Patch::Merge(json!({"data": {"k": "preview"}})),
        )
        .await?;
    assert_eq!(
        patched.data.and_then(|d| d.get("k").cloned()).as_deref(),
        Some("preview")
    );
    let stored = api.get("dry").await?;
    assert_eq!(
        stored.data.and_then(|d| d.get("k").cloned()).as_deref(),
        Some("v")
    );
    api.delete("dry", &DeleteParams::default().dry_run())
        .await?;
    assert!(api.get_opt("dry").await?.is_some());
    assert_eq!(sim.revision(), rev + 1, "only the real create wrote");
    // Invalid objects fail a dry run exactly as a real create.
    let err = api_status(api.create(&dry, &cm("Bad", json!({}))).await.unwrap_err())?;
    assert_eq!(err.code, 422);
    sim.shutdown().await;
    Ok(())
}
