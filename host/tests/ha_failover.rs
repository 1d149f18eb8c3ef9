//! High availability end to end: three `taskpod serve` replicas (the real binary) share a
//! PostgreSQL store (started by `scripts/postgres`) and elect a leader through a Lease on the
//! simulated cluster. Tasks are submitted through a follower (redirected to the leader), the
//! leader is SIGKILLed while tasks run and wait, and a follower must take over within the lease
//! duration and finish every task: nothing lost (all tasks succeed) and nothing duplicated (the
//! sim saw exactly one create per Job).

#[path = "support/postgres.rs"]
mod pg;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use taskpod::client::Client;
use taskpod::store::{ListQuery, Store, StoreOptions, TaskState};
use taskpod_sim::controllers::behavior::Behavior;
use taskpod_sim::{ControllerConfig, Sim, SimOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const LEASE: &str = "taskpod-ha";
const LEASE_SECONDS: i64 = 3;
const RETRY_MS: i64 = 300;
const TASKS: usize = 10;

const BEHAVIOR: &str = r#"
default:
  runSeconds: 2
  logs: ["working", "done"]
"#;

const TEMPLATE: &str = r#"
apiVersion: v1
kind: PodTemplate
template:
  spec:
    containers:
      - name: main
        image: example.com/task:1
    restartPolicy: Never
"#;

struct Replica {
    identity: String,
    url: String,
    child: Child,
}

async fn start_replica(
    identity: &str,
    config: &std::path::Path,
    kubeconfig: &std::path::Path,
    log: &std::path::Path,
) -> Result<Replica> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_taskpod"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("POD_NAME", identity)
        .env("TASKPOD_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .kill_on_drop(true)
        .spawn()
        .context("starting taskpod serve")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .with_context(|| format!("replica {identity} did not print its address in 60 s"))??
        .with_context(|| {
            format!(
                "replica {identity} exited before listening: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        })?;
    let url = line
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .with_context(|| format!("unexpected first line {line:?}"))?
        .to_string();
    Ok(Replica {
        identity: identity.to_string(),
        url,
        child,
    })
}

/// The Lease's holder and its acquire and renew times, once it has a holder.
async fn lease(api: &kube::Api<Lease>) -> Option<(String, Timestamp, Timestamp)> {
    let lease = api.get_opt(LEASE).await.ok()??;
    let spec = lease.spec?;
    Some((
        spec.holder_identity?,
        spec.acquire_time?.0,
        spec.renew_time?.0,
    ))
}

async fn wait_for<T, F: Future<Output = Option<T>>>(
    what: &str,
    secs: u64,
    mut probe: impl FnMut() -> F,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn states(store: &Store) -> Result<BTreeMap<String, TaskState>> {
    let page = store
        .list(ListQuery {
            limit: 1000,
            ..ListQuery::default()
        })
        .await?;
    Ok(page.tasks.into_iter().map(|t| (t.id, t.state)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_takes_over_within_the_lease_duration_and_nothing_is_lost_or_duplicated()
-> Result<()> {
    let server = pg::Server::start()?;
    let url = server.fresh_database("ha").await?;
    let sim = Sim::start(SimOptions {
        controllers: ControllerConfig {
            behavior: Behavior::from_yaml_str(BEHAVIOR, "ha test")?,
            ..ControllerConfig::default()
        },
        ..SimOptions::default()
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, sim.kubeconfig_yaml("default"))?;
    std::fs::write(dir.path().join("template.yaml"), TEMPLATE)?;
    let config = dir.path().join("taskpod.yaml");
    std::fs::write(
        &config,
        format!(
            "namespace: default\ninstance: ha\ncacheDir: {cache}\n\
             adapters:\n  - name: tpl\n    component: builtin:pod-template\n    templates:\n      base: template.yaml\n\
             routing:\n  default: tpl\nrunner:\n  capacity: 4\n\
             storeBackend:\n  kind: postgres\n  url: {url}\n  pool: 4\n\
             ha:\n  enabled: true\n  leaseName: {LEASE}\n  leaseDuration: {LEASE_SECONDS}s\n  renewDeadline: 2s\n  retryPeriod: {RETRY_MS}ms\n",
            cache = dir.path().join("cache").display(),
        ),
    )?;

    let mut replicas = Vec::new();
    for i in 0..3 {
        let identity = format!("replica-{i}");
        let log = dir.path().join(format!("{identity}.log"));
        replicas.push(start_replica(&identity, &config, &kubeconfig, &log).await?);
    }
    let leases: kube::Api<Lease> = kube::Api::namespaced(sim.client(), "default");
    let (leader, _, _) = wait_for("a leader", 30, || lease(&leases)).await?;
    let leader_at = replicas
        .iter()
        .position(|r| r.identity == leader)
        .context("the Lease names one of the replicas")?;
    let follower = &replicas[(leader_at + 1) % 3];
    let leader_client = Client::new(&replicas[leader_at].url)?;
    wait_for("the leader to be ready", 60, || async {
        leader_client.ready().await.ok().filter(|r| *r)
    })
    .await?;

    // A follower redirects a write to the leader's advertised URL (307 keeps method and body).
    let raw = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let probe = http::Request::post(format!("{}/v1/tasks", follower.url))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))?;
    let answer = raw.request(probe).await?;
    assert_eq!(answer.status(), http::StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        answer.headers()[http::header::LOCATION],
        format!("{}/v1/tasks", replicas[leader_at].url).as_str()
    );

    // Submit through the follower (the client follows the redirect), wait until tasks run.
    let client = Client::new(&follower.url)?;
    for i in 0..TASKS {
        client
            .submit(&format!(
                r#"{{"id": "ha-{i}", "type": "index", "payload": {{"dataSource": "wiki"}}}}"#
            ))
            .await?;
    }
    let store = Store::connect_postgres(&url, StoreOptions::default()).await?;
    wait_for("a running task", 30, || async {
        let s = states(&store).await.ok()?;
        s.values().any(|st| *st == TaskState::Running).then_some(())
    })
    .await?;

    // SIGKILL the leader mid-run.
    let (_, _, renewed_before_kill) = lease(&leases).await.context("lease")?;
    let before = states(&store).await?;
    replicas[leader_at].child.kill().await?;
    let killed_at = Timestamp::now();
    assert!(
        before.values().any(|s| !s.is_terminal()),
        "the leader must die with work in flight: {before:?}"
    );

    let (new_leader, acquired, _) = wait_for("a new leader", 30, || async {
        lease(&leases)
            .await
            .filter(|(holder, _, _)| *holder != leader)
    })
    .await?;
    assert_ne!(new_leader, leader);
    let lease_duration = SignedDuration::from_secs(LEASE_SECONDS);
    let retry = SignedDuration::from_millis(RETRY_MS);
    // Nobody took the Lease before it expired…
    assert!(
        acquired >= renewed_before_kill.checked_add(lease_duration)?,
        "taken over at {acquired}, before the old claim (renewed {renewed_before_kill}) expired"
    );
    // …and a follower took it as soon as it had (one retry period to notice, one to spare).
    let takeover = acquired.duration_since(killed_at);
    eprintln!("leader {leader} killed; {new_leader} took the Lease {takeover:?} later");
    assert!(
        takeover <= lease_duration + retry + retry,
        "takeover {takeover:?} after the kill exceeds the lease duration {lease_duration:?} \
         plus retries"
    );

    // Every task finishes, each Job was created exactly once.
    let done = wait_for("every task to finish", 90, || async {
        let s = states(&store).await.ok()?;
        (s.len() == TASKS && s.values().all(|st| st.is_terminal())).then_some(s)
    })
    .await?;
    assert!(
        done.values().all(|s| *s == TaskState::Succeeded),
        "{done:?}"
    );
    let counters = sim.counters();
    assert_eq!(counters.distinct_creates("Job"), TASKS);
    assert_eq!(
        counters.max_creates_per_name("Job"),
        1,
        "a Job was created twice"
    );

    // The new leader serves writes; the remaining follower redirects to it.
    let survivor = replicas
        .iter()
        .find(|r| r.identity != leader && r.identity != new_leader)
        .context("third replica")?;
    let submitted = Client::new(&survivor.url)?
        .submit(r#"{"id": "after", "type": "index", "payload": {}}"#)
        .await?;
    assert_eq!(submitted.task.id, "after");
    for replica in &mut replicas {
        let _ = replica.child.kill().await;
    }
    sim.shutdown().await;
    Ok(())
}
