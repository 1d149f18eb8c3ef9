//! Tenancy end to end: a real `taskpod` API server on 127.0.0.1 (the real runner, store and
//! adapters) over the in-process simulated cluster, driven with the real HTTP client and
//! bearer tokens. Covers isolation (another tenant's task is a 404 for read, cancel, log and
//! events), admin-only operations, quotas (maxRunning, maxQueued → 429), hold and drain, quota
//! accounting across a restart, fair share under a flood, adapter quarantine and reload, and a
//! broken tenant adapter at start-up that disables only its tenant.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use taskpod::api::{self, ApiState, TaskView};
use taskpod::client::{Client, ClientError, ListFilter};
use taskpod::config::Config;
use taskpod::runner::Runner;
use taskpod::store::{Store, StoreOptions, TaskState};
use taskpod::tenants::hash_token;
use taskpod_sim::controllers::behavior::Behavior;
use taskpod_sim::{ControllerConfig, Sim, SimOptions};

const ADMIN: &str = "admin-token-0123";
const ACME: &str = "acme-token-4567";
const GLOBEX: &str = "globex-token-89ab";
const HOSTILE: &str = "hostile-token-cdef";
const BROKEN: &str = "broken-token-f00d";

/// Simulated containers, by task type: `long` never ends, `slow` takes 3 s, others 0.2 s.
const BEHAVIOR: &str = r#"
default:
  runSeconds: 0.2
  logs: ["hello", "done"]
rules:
  - match: { labels: { taskpod.dev/type: long } }
    then: { forever: true, logLines: 100, logIntervalSeconds: 0.2 }
  - match: { labels: { taskpod.dev/type: slow } }
    then: { runSeconds: 3 }
"#;

const TEMPLATE: &str = r#"
apiVersion: v1
kind: PodTemplate
template:
  spec:
    containers:
      - name: main
        image: example.com/task:1
        command: ["run-task"]
        resources:
          limits: {cpu: "1", memory: 1Gi}
    restartPolicy: Never
"#;

fn config_text(capacity: u32, broken_component: &Path) -> String {
    format!(
        r#"
namespace: default
instance: tenants-test
cacheDir: {cache}
adapters:
  - name: tpl
    component: builtin:pod-template
    templates:
      base: template.yaml
routing:
  default: tpl
runner:
  capacity: {capacity}
admin:
  tokenSha256: ["{admin}"]
tenants:
  - name: acme
    tokenSha256: ["{acme}"]
    quotas:
      maxRunning: 2
      maxQueued: 3
      maxCpu: "2"
      maxMemory: 4Gi
  - name: globex
    tokenSha256: ["{globex}"]
  - name: hostile-co
    tokenSha256: ["{hostile}"]
    adapters:
      - name: hostile
        component: {hostile_path}
        config: {{mode: ok}}
        quarantineAfter: 3
    routing:
      default: hostile
  - name: broken-co
    tokenSha256: ["{broken}"]
    adapters:
      - name: broken
        component: {broken_path}
    routing:
      default: broken
"#,
        // Compiled components are shared by the tests of this file (the cache is safe for
        // concurrent use), so each test does not compile the same guests again.
        cache = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("tenants-components")
            .display(),
        admin = hash_token(ADMIN),
        acme = hash_token(ACME),
        globex = hash_token(GLOBEX),
        hostile = hash_token(HOSTILE),
        broken = hash_token(BROKEN),
        hostile_path = taskpod::adapters::guests::HOSTILE_PATH,
        broken_path = broken_component.display(),
    )
}

/// The sim, a store, a runner and the API server on 127.0.0.1:0.
struct Host {
    _dir: tempfile::TempDir,
    sim: Sim,
    config: Arc<Config>,
    store: Store,
    broken_component: PathBuf,
    server: Option<Server>,
}

struct Server {
    runner: Runner,
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<()>,
}

impl Host {
    async fn start(capacity: u32) -> Host {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("template.yaml"), TEMPLATE).expect("template");
        let broken_component = dir.path().join("missing-adapter.wasm");
        let path = dir.path().join("taskpod.yaml");
        std::fs::write(&path, config_text(capacity, &broken_component)).expect("config");
        let config = Arc::new(Config::load(&path).expect("valid tenant config"));
        let sim = Sim::start(SimOptions {
            controllers: ControllerConfig {
                behavior: Behavior::from_yaml_str(BEHAVIOR, "tenant tests").expect("behaviour"),
                ..ControllerConfig::default()
            },
            ..SimOptions::default()
        })
        .await
        .expect("sim");
        let store =
            Store::open(dir.path().join("tasks.db"), StoreOptions::default()).expect("store");
        let mut host = Host {
            _dir: dir,
            sim,
            config,
            store,
            broken_component,
            server: None,
        };
        host.serve().await;
        host
    }

    /// Starts a runner on the store and serves the API.
    async fn serve(&mut self) {
        let runner = Runner::start(
            Arc::clone(&self.config),
            self.store.clone(),
            self.sim.client(),
        )
        .await
        .expect("the host starts even with a broken tenant adapter");
        for _ in 0..200 {
            if runner.is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(runner.is_ready(), "runner not ready after 5 s");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = ApiState::new(runner.clone());
        let served = tokio::spawn(async move {
            let _ = api::serve(listener, state, async move {
                let _ = stopped.await;
            })
            .await;
        });
        self.server = Some(Server {
            runner,
            url,
            stop,
            served,
        });
    }

    /// Stops the server and the runner (the store stays open, as after a crash of the process
    /// the file would).
    async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(5), server.served).await;
            server.runner.shutdown().await;
        }
    }

    fn runner(&self) -> &Runner {
        &self.server.as_ref().expect("serving").runner
    }

    fn client(&self, token: Option<&str>) -> Client {
        let url = &self.server.as_ref().expect("serving").url;
        Client::new(url).expect("client").with_token(token)
    }

    async fn finish(mut self) {
        self.stop().await;
        self.sim.shutdown().await;
    }
}

/// The status of a bodiless request sent with `token` over a plain TCP connection.
async fn raw_status(host: &Host, method: &str, path: &str, token: &str) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let url = &host.server.as_ref().expect("serving").url;
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answer within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

fn task(id: &str, kind: &str) -> String {
    format!(r#"{{"id": "{id}", "type": "{kind}", "payload": {{"dataSource": "wiki"}}}}"#)
}

fn status_of(err: &ClientError) -> u16 {
    match err {
        ClientError::Api { status, .. } => *status,
        other => panic!("expected an API error, got {other}"),
    }
}

/// Polls (bounded) until task `id`, read with `client`, satisfies `done`.
async fn wait_for(
    client: &Client,
    id: &str,
    secs: u64,
    done: impl Fn(&TaskView) -> bool,
) -> TaskView {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let view = client.get(id).await.expect("get task").task;
        if done(&view) {
            return view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {id} still {} ({:?}) after {secs} s",
            view.state,
            view.message
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

async fn list_ids(client: &Client, tenant: Option<&str>, state: Option<&str>) -> Vec<String> {
    let filter = ListFilter {
        tenant: tenant.map(str::to_owned),
        state: state.map(str::to_owned),
        limit: Some(1000),
        ..ListFilter::default()
    };
    client
        .list(&filter)
        .await
        .expect("list")
        .tasks
        .into_iter()
        .map(|t| t.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_authenticate_and_tenants_never_see_each_others_tasks() {
    let host = Host::start(10).await;
    let acme = host.client(Some(ACME));
    let globex = host.client(Some(GLOBEX));
    let admin = host.client(Some(ADMIN));

    // No token, an unknown token: 401, and the answer never repeats the token.
    let err = host
        .client(None)
        .list(&ListFilter::default())
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 401, "{err}");
    assert!(err.to_string().contains("Bearer"), "{err}");
    let err = host
        .client(Some("guessed-secret"))
        .get("x")
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 401);
    assert!(!err.to_string().contains("guessed-secret"), "{err}");
    // Health and readiness stay open.
    assert!(host.client(None).ready().await.expect("readyz"));

    // A tenant's submission is its own, whatever the document says.
    let submitted = acme.submit(&task("acme-1", "long")).await.expect("submit");
    assert_eq!(submitted.task.tenant, "acme");
    let err = acme
        .submit(r#"{"id": "acme-x", "type": "index", "tenant": "globex", "payload": {}}"#)
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    assert!(err.to_string().contains("tenant"), "{err}");
    wait_for(&acme, "acme-1", 20, |t| t.state == TaskState::Running).await;
    globex
        .submit(&task("globex-1", "index"))
        .await
        .expect("submit");

    // Another tenant's task: read, cancel, log and events answer 404 like a missing task.
    for err in [
        globex.get("acme-1").await.map(|_| ()).unwrap_err(),
        globex
            .cancel("acme-1", false)
            .await
            .map(|_| ())
            .unwrap_err(),
        globex
            .log("acme-1", false, |_| Ok(()))
            .await
            .map(|_| ())
            .unwrap_err(),
        globex.events(Some("acme-1")).await.map(|_| ()).unwrap_err(),
    ] {
        assert_eq!(status_of(&err), 404, "{err}");
        assert!(err.to_string().contains("not found"), "{err}");
    }
    // A resubmission of another tenant's id is a conflict that says nothing about its owner.
    let err = globex.submit(&task("acme-1", "long")).await.unwrap_err();
    assert_eq!(status_of(&err), 409, "{err}");
    assert!(err.to_string().contains("already in use"), "{err}");
    assert!(!err.to_string().contains("tenant"), "{err}");
    // Lists are filtered; asking for another tenant's is refused.
    assert_eq!(
        list_ids(&globex, None, None).await,
        vec!["globex-1".to_owned()]
    );
    let err = globex
        .list(&ListFilter {
            tenant: Some("acme".to_owned()),
            ..ListFilter::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 403);
    // The admin sees both, and the acme task is still running: globex's cancel did nothing.
    let all = list_ids(&admin, None, None).await;
    assert!(all.contains(&"acme-1".to_owned()) && all.contains(&"globex-1".to_owned()));
    assert_eq!(
        admin.get("acme-1").await.expect("admin reads").task.state,
        TaskState::Running
    );

    // The event feed of a tenant carries only its own tasks' events.
    let mut feed = globex.events(None).await.expect("events");
    acme.submit(&task("acme-2", "index")).await.expect("submit");
    globex
        .submit(&task("globex-2", "index"))
        .await
        .expect("submit");
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let event = tokio::time::timeout_at(deadline, feed.next())
            .await
            .expect("globex-2 ends within 20 s")
            .expect("feed")
            .expect("feed open");
        if let Some(id) = event.id.clone() {
            seen.push(id.clone());
            if id == "globex-2" && event.to.is_some_and(TaskState::is_terminal) {
                break;
            }
        }
    }
    assert!(
        seen.iter().all(|id| id.starts_with("globex-")),
        "globex's feed showed another tenant's events: {seen:?}"
    );

    // Admin-only operations.
    let err = acme.set_capacity(1).await.unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    assert_eq!(admin.set_capacity(12).await.expect("admin").capacity, 12);
    let err = acme.tenant_action("globex", "hold").await.unwrap_err();
    assert_eq!(status_of(&err), 403);
    let err = acme.reload_adapter("tpl").await.unwrap_err();
    assert_eq!(status_of(&err), 403);
    for path in [
        "/v1/config/execution",
        "/druid/indexer/v1/k8s/taskrunner/executionconfig",
    ] {
        assert_eq!(raw_status(&host, "GET", path, ACME).await, 403, "{path}");
        assert_eq!(raw_status(&host, "GET", path, ADMIN).await, 200, "{path}");
    }
    assert_eq!(raw_status(&host, "GET", "/metrics", ACME).await, 403);
    assert_eq!(raw_status(&host, "GET", "/metrics", ADMIN).await, 200);
    let tenants = acme.tenants().await.expect("tenants");
    assert_eq!(tenants.len(), 1, "a tenant sees only itself");
    assert_eq!(tenants[0].quotas.max_cpu.as_deref(), Some("2"));
    assert_eq!(admin.tenants().await.expect("tenants").len(), 4);

    // The owner cancels its own task.
    let canceled = acme.cancel("acme-1", false).await.expect("cancel");
    assert_eq!(canceled.state, TaskState::Canceled);
    host.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_hold_and_drain_apply_per_tenant_and_survive_a_restart() {
    let mut host = Host::start(10).await;
    let acme = host.client(Some(ACME));
    // maxRunning 2: two of five long tasks run, three wait; maxQueued 3: a sixth is refused.
    for i in 0..5 {
        acme.submit(&task(&format!("q-{i}"), "long"))
            .await
            .expect("within quota");
    }
    wait_for(&acme, "q-0", 20, |t| t.state == TaskState::Running).await;
    wait_for(&acme, "q-1", 20, |t| t.state == TaskState::Running).await;
    let err = acme.submit(&task("q-5", "long")).await.unwrap_err();
    assert_eq!(status_of(&err), 429, "{err}");
    assert!(err.to_string().contains("maxQueued"), "{err}");
    // An identical resubmission of a queued task is still answered.
    let again = acme
        .submit(&task("q-4", "long"))
        .await
        .expect("resubmission");
    assert!(!again.created);
    assert_eq!(
        list_ids(&acme, None, Some("launching,running")).await.len(),
        2,
        "maxRunning 2 holds"
    );
    assert_eq!(list_ids(&acme, None, Some("pending")).await.len(), 3);

    // Another tenant is unaffected by acme's quota.
    let globex = host.client(Some(GLOBEX));
    globex.submit(&task("g-0", "long")).await.expect("submit");
    wait_for(&globex, "g-0", 20, |t| t.state == TaskState::Running).await;

    // Hold globex: its queued task waits; drain it: submissions are refused (409).
    let admin = host.client(Some(ADMIN));
    let view = admin.tenant_action("globex", "hold").await.expect("hold");
    assert!(view.held);
    globex
        .submit(&task("g-1", "index"))
        .await
        .expect("held tenants still queue");
    admin.tenant_action("globex", "drain").await.expect("drain");
    let err = globex.submit(&task("g-2", "index")).await.unwrap_err();
    assert_eq!(status_of(&err), 409, "{err}");
    assert!(err.to_string().contains("draining"), "{err}");

    // Restart: counts come back from the store, not from memory.
    host.stop().await;
    host.serve().await;
    let acme = host.client(Some(ACME));
    let globex = host.client(Some(GLOBEX));
    let admin = host.client(Some(ADMIN));
    let usage = host.runner().tenant_usage("acme");
    assert_eq!((usage.in_flight, usage.pending), (2, 3), "{usage:?}");
    let err = acme.submit(&task("q-5", "long")).await.unwrap_err();
    assert_eq!(
        status_of(&err),
        429,
        "maxQueued still holds after a restart: {err}"
    );
    let switches = admin
        .tenants()
        .await
        .expect("tenants")
        .into_iter()
        .find(|t| t.name == "globex")
        .expect("globex");
    assert!(switches.held && switches.draining, "{switches:?}");
    assert_eq!(
        globex.get("g-1").await.expect("get").task.state,
        TaskState::Pending,
        "a held tenant's task is not launched after a restart"
    );
    // Ending one running acme task lets exactly one queued one start.
    acme.cancel("q-0", false).await.expect("cancel");
    wait_for(&acme, "q-2", 20, |t| t.state == TaskState::Running).await;
    assert_eq!(
        list_ids(&acme, None, Some("launching,running")).await.len(),
        2
    );
    // Resume globex: its held task launches.
    admin
        .tenant_action("globex", "resume")
        .await
        .expect("resume");
    wait_for(&globex, "g-1", 20, |t| t.state.is_terminal()).await;
    host.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_flood_does_not_starve_another() {
    // Capacity 4; globex floods 16 tasks of 3 s before acme submits 2. In submission order,
    // acme would launch only after the 12 queued flood tasks. With fair share acme is below
    // its share (2 of 4) and takes the next free slots: no flood task launches between acme's
    // submission and the launch of acme's tasks. (acme's maxRunning 2 equals its share, so the
    // quota does not stand in for the fair share.)
    let host = Host::start(4).await;
    let globex = host.client(Some(GLOBEX));
    for i in 0..16 {
        globex
            .submit(&task(&format!("flood-{i}"), "slow"))
            .await
            .expect("flood");
    }
    wait_for(&globex, "flood-3", 20, |t| t.state != TaskState::Pending).await;
    let acme = host.client(Some(ACME));
    let mut submitted_at = 0;
    for i in 0..2 {
        let view = acme
            .submit(&task(&format!("fair-{i}"), "slow"))
            .await
            .expect("submit");
        submitted_at = view.task.created_at_ms;
    }
    let mut acme_launched = 0;
    for i in 0..2 {
        let id = format!("fair-{i}");
        wait_for(&acme, &id, 30, |t| t.state != TaskState::Pending).await;
        acme_launched = acme_launched.max(launched_at(&acme, &id).await);
    }
    let admin = host.client(Some(ADMIN));
    let mut overtaking = Vec::new();
    for i in 0..16 {
        let id = format!("flood-{i}");
        let at = launched_at(&admin, &id).await;
        if at > submitted_at && at < acme_launched {
            overtaking.push(id);
        }
    }
    assert!(
        overtaking.len() <= 1,
        "flood tasks launched after acme's submission and before acme's tasks: {overtaking:?}"
    );
    host.finish().await;
}

/// When task `id` was stored `launching` (Unix ms), or `i64::MAX` when it has not launched.
async fn launched_at(client: &Client, id: &str) -> i64 {
    client
        .get(id)
        .await
        .expect("get")
        .history
        .iter()
        .find(|h| h.to == TaskState::Launching)
        .map_or(i64::MAX, |h| h.at_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_adapter_is_quarantined_until_reloaded_even_across_restarts() {
    let mut host = Host::start(10).await;
    let hostile = host.client(Some(HOSTILE));
    let admin = host.client(Some(ADMIN));
    // quarantineAfter 3: three traps in a row quarantine the adapter.
    for i in 0..3 {
        hostile
            .submit(&format!(
                r#"{{"id": "trap-{i}", "type": "index", "payload": {{"mode": "trap"}}}}"#
            ))
            .await
            .expect("submit");
        let done = wait_for(&hostile, &format!("trap-{i}"), 20, |t| {
            t.state.is_terminal()
        })
        .await;
        assert_eq!(done.state, TaskState::Failed);
        assert_eq!(done.reason.as_deref(), Some("adapter-error"));
        assert!(
            done.message.as_deref().unwrap_or("").contains("trapped"),
            "{done:?}"
        );
    }
    // A well-behaved task of the quarantined adapter fails at once, saying why.
    hostile
        .submit(r#"{"id": "after", "type": "index", "payload": {"mode": "ok"}}"#)
        .await
        .expect("submit");
    let done = wait_for(&hostile, "after", 20, |t| t.state.is_terminal()).await;
    assert_eq!(done.state, TaskState::Failed);
    let message = done.message.unwrap_or_default();
    assert!(
        message.contains("quarantined") && message.contains("reload"),
        "{message}"
    );
    let adapters = admin.adapters().await.expect("adapters");
    let entry = adapters
        .iter()
        .find(|a| a.name == "hostile")
        .expect("hostile listed");
    assert!(entry.quarantined.is_some(), "{entry:?}");
    assert_eq!(entry.tenant.as_deref(), Some("hostile-co"));
    // A tenant sees the shared adapters and its own only.
    let seen: Vec<String> = host
        .client(Some(ACME))
        .adapters()
        .await
        .expect("adapters")
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(seen, vec!["tpl".to_owned()]);
    // Other tenants' adapters keep working.
    let acme = host.client(Some(ACME));
    acme.submit(&task("acme-ok", "index"))
        .await
        .expect("submit");
    let done = wait_for(&acme, "acme-ok", 20, |t| t.state.is_terminal()).await;
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}");
    // The quarantine holds across a restart of the host.
    host.stop().await;
    host.serve().await;
    let hostile = host.client(Some(HOSTILE));
    let admin = host.client(Some(ADMIN));
    let listed = admin.adapters().await.expect("adapters");
    let entry = listed.iter().find(|a| a.name == "hostile").expect("listed");
    assert!(
        entry
            .quarantined
            .as_deref()
            .unwrap_or("")
            .contains("trapped"),
        "{entry:?}"
    );
    hostile
        .submit(r#"{"id": "after-restart", "type": "index", "payload": {"mode": "ok"}}"#)
        .await
        .expect("submit");
    let done = wait_for(&hostile, "after-restart", 20, |t| t.state.is_terminal()).await;
    assert_eq!(done.state, TaskState::Failed, "{done:?}");
    assert!(
        done.message.unwrap_or_default().contains("quarantined"),
        "the restarted host keeps the quarantine"
    );
    // The admin reloads it; its tasks run again, also after another restart.
    admin.reload_adapter("hostile").await.expect("reload");
    hostile
        .submit(r#"{"id": "reloaded", "type": "index", "payload": {"mode": "ok"}}"#)
        .await
        .expect("submit");
    let done = wait_for(&hostile, "reloaded", 20, |t| t.state.is_terminal()).await;
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}");
    host.stop().await;
    host.serve().await;
    let hostile = host.client(Some(HOSTILE));
    hostile
        .submit(r#"{"id": "reloaded-restarted", "type": "index", "payload": {"mode": "ok"}}"#)
        .await
        .expect("submit");
    let done = wait_for(&hostile, "reloaded-restarted", 20, |t| {
        t.state.is_terminal()
    })
    .await;
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}");
    host.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_tenant_adapter_disables_only_that_tenant() {
    let host = Host::start(10).await;
    let broken = host.client(Some(BROKEN));
    let admin = host.client(Some(ADMIN));
    // The host started; the tenant whose adapter is missing is disabled with the reason.
    let err = broken.submit(&task("b-1", "index")).await.unwrap_err();
    assert_eq!(status_of(&err), 503, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("broken-co")
            && text.contains("`broken`")
            && text.contains("missing-adapter.wasm"),
        "{text}"
    );
    let view = admin
        .tenants()
        .await
        .expect("tenants")
        .into_iter()
        .find(|t| t.name == "broken-co")
        .expect("listed");
    assert!(view.disabled.is_some(), "{view:?}");
    // Everyone else is served.
    let acme = host.client(Some(ACME));
    acme.submit(&task("a-1", "index")).await.expect("submit");
    assert_eq!(
        wait_for(&acme, "a-1", 20, |t| t.state.is_terminal())
            .await
            .state,
        TaskState::Succeeded
    );
    // Install the component, reload: the tenant is enabled again.
    std::fs::copy(
        taskpod::adapters::guests::HOSTILE_PATH,
        &host.broken_component,
    )
    .expect("install the component");
    admin.reload_adapter("broken").await.expect("reload");
    broken
        .submit(&task("b-2", "index"))
        .await
        .expect("enabled again");
    let done = wait_for(&broken, "b-2", 20, |t| t.state.is_terminal()).await;
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}");
    host.finish().await;
}

#[test]
fn hash_token_prints_the_digest_the_config_takes() {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_taskpod"))
        .args(["tenant", "hash-token"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run taskpod");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"s3cret-token\n")
        .expect("write the token");
    let out = child.wait_with_output().expect("taskpod ends");
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(printed.trim(), hash_token("s3cret-token"));
    assert!(taskpod::tenants::is_sha256_hex(printed.trim()));
    assert!(!printed.contains("s3cret"));
}
