//! `taskpod demo`: the README's "run" command. Starts the simulated cluster and the host
//! (store, runner, HTTP API on a free loopback port) in-process, submits the sample tasks of all
//! three systems from `examples/` through the API (two Druid tasks, one succeeding and one
//! failing; a Teraslice execution with its worker Deployment; a Samza job of three containers,
//! one restarted), prints each state change, the final states, and where the Jobs' YAML and the
//! tasks' logs were written, then stops everything. Time-bounded, no setup: the example files are
//! compiled in and everything is written under one demo directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, PostParams};

use super::remote::{ServiceError, describe, describe_event};
use super::serve::start_host;
use crate::api;
use crate::client::Client;
use crate::config::Config;
use crate::store::TaskState;
use crate::task::SubmittedTask;

/// The example files the demo runs (path under the demo directory, contents).
const FILES: &[(&str, &str)] = &[
    (
        "taskpod.yaml",
        include_str!("../../../examples/demo/taskpod.yaml"),
    ),
    (
        "pod-templates/base.yaml",
        include_str!("../../../examples/druid/pod-templates/base.yaml"),
    ),
    (
        "tasks/index-parallel.json",
        include_str!("../../../examples/druid/tasks/index-parallel.json"),
    ),
    (
        "tasks/index-parallel-broken.json",
        include_str!("../../../examples/demo/tasks/index-parallel-broken.json"),
    ),
    (
        "tasks/data-generator.json",
        include_str!("../../../examples/teraslice/tasks/data-generator.json"),
    ),
    (
        "tasks/wikipedia-feed.properties",
        include_str!("../../../examples/samza/wikipedia-feed.properties"),
    ),
    (
        "sim-behavior.yaml",
        include_str!("../../../examples/demo/sim-behavior.yaml"),
    ),
];

/// The tasks submitted, in order, with the outcome each is built to show.
const TASKS: &[(&str, TaskState, Option<i32>)] = &[
    ("tasks/index-parallel.json", TaskState::Succeeded, None),
    (
        "tasks/index-parallel-broken.json",
        TaskState::Failed,
        Some(3),
    ),
    ("tasks/data-generator.json", TaskState::Succeeded, None),
    (
        "tasks/wikipedia-feed.properties",
        TaskState::Succeeded,
        None,
    ),
];

/// Labels on every simulated node: what the example Teraslice execution (`zone`, `disk`, the
/// execution controller's `node-pool`) and Samza job (`disktype`) select nodes by.
const NODE_LABELS: &[(&str, &str)] = &[
    ("zone", "west"),
    ("disk", "ssd"),
    ("node-pool", "controllers"),
    ("disktype", "ssd"),
];

/// `taskpod demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the store, kubeconfig, Job YAML and logs (default: a new directory under
    /// the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout_seconds: u64,
    /// Shape the Jobs with this adapter component (.wasm) instead of the built-in pod-template
    /// adapter: try an adapter of your own end to end. Only the task that should succeed is
    /// run (the failing one fails through a Druid label only the Druid adapters set).
    #[arg(long, value_name = "FILE")]
    pub adapter: Option<PathBuf>,
    /// The configuration of `--adapter` (YAML or JSON); `{}` when absent.
    #[arg(long, value_name = "FILE", requires = "adapter")]
    pub adapter_config: Option<PathBuf>,
}

/// The name `--adapter` is bound under in the demo's configuration.
const CUSTOM_ADAPTER: &str = "custom";

/// Replaces the demo configuration's adapters with the component of `--adapter`.
fn use_custom_adapter(
    config: &mut Config,
    component: &Path,
    adapter_config: Option<&Path>,
) -> Result<(), ServiceError> {
    let settings: serde_json::Value = match adapter_config {
        None => serde_json::json!({}),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ServiceError::io(
                    format!("cannot read --adapter-config {}", path.display()),
                    e,
                )
            })?;
            serde_yaml::from_str(&text).map_err(|e| {
                ServiceError::Start(format!(
                    "--adapter-config {}: not YAML/JSON: {e}",
                    path.display()
                ))
            })?
        }
    };
    let component = component
        .canonicalize()
        .map_err(|e| ServiceError::io(format!("--adapter {}", component.display()), e))?;
    let binding = serde_json::json!({
        "name": CUSTOM_ADAPTER,
        "component": component,
        "config": settings,
    });
    config.adapters =
        vec![serde_json::from_value(binding).map_err(|e| ServiceError::Start(e.to_string()))?];
    config.routing.default = Some(CUSTOM_ADAPTER.to_owned());
    config.routing.by_type.clear();
    config
        .validate()
        .map_err(|e| ServiceError::Start(e.to_string()))
}

fn say(out: &mut dyn Write, text: &str) -> Result<(), ServiceError> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| ServiceError::io("standard output", e))
}

fn write_file(path: &Path, contents: &[u8]) -> Result<(), ServiceError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| ServiceError::io(format!("cannot create {}", parent.display()), e))?;
    }
    std::fs::write(path, contents)
        .map_err(|e| ServiceError::io(format!("cannot write {}", path.display()), e))
}

/// A file name for a task id (ids may hold `:` and other characters).
fn file_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs the demo.
pub fn demo(args: &DemoArgs, out: &mut dyn Write) -> Result<(), ServiceError> {
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            std::env::temp_dir().join(format!("taskpod-demo-{}-{stamp}", std::process::id()))
        }
    };
    for (name, contents) in FILES {
        write_file(&dir.join(name), contents.as_bytes())?;
    }
    let mut config =
        Config::load(&dir.join("taskpod.yaml")).map_err(|e| ServiceError::Start(e.to_string()))?;
    let tasks = match &args.adapter {
        Some(component) => {
            use_custom_adapter(&mut config, component, args.adapter_config.as_deref())?;
            &TASKS[..1]
        }
        None => TASKS,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ServiceError::io("cannot start the async runtime", e))?;
    let limit = Duration::from_secs(args.timeout_seconds);
    runtime.block_on(async {
        match tokio::time::timeout(limit, run(&dir, config, tasks, out)).await {
            Ok(result) => result,
            Err(_) => Err(ServiceError::Demo(format!(
                "the tasks did not finish within {} s (see {})",
                args.timeout_seconds,
                dir.display()
            ))),
        }
    })
}

async fn run(
    dir: &Path,
    config: Config,
    tasks: &[(&str, TaskState, Option<i32>)],
    out: &mut dyn Write,
) -> Result<(), ServiceError> {
    let start = |e: String| ServiceError::Start(e);
    let behavior_path = dir.join("sim-behavior.yaml");
    let mut opts = taskpod_sim::SimOptions::default();
    opts.controllers.behavior = taskpod_sim::controllers::Behavior::from_yaml_file(&behavior_path)
        .map_err(|e| start(e.to_string()))?;
    opts.controllers.nodes = taskpod_sim::controllers::NodeSpec::default_pool()
        .into_iter()
        .map(|node| {
            NODE_LABELS
                .iter()
                .fold(node, |node, (k, v)| node.with_label(*k, *v))
        })
        .collect();
    let sim = taskpod_sim::Sim::start(opts)
        .await
        .map_err(|e| start(format!("cannot start the simulated cluster: {e}")))?;
    let kubeconfig = dir.join("kubeconfig");
    write_file(
        &kubeconfig,
        sim.kubeconfig_yaml(&config.namespace).as_bytes(),
    )?;
    let namespace = config.namespace.clone();
    let instance = config.instance.clone();
    if !matches!(
        namespace.as_str(),
        "default" | "kube-system" | "kube-public"
    ) {
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}
        }))
        .map_err(|e| start(e.to_string()))?;
        Api::<Namespace>::all(sim.client())
            .create(&PostParams::default(), &ns)
            .await
            .map_err(|e| start(format!("cannot create namespace {namespace}: {e}")))?;
    }
    say(
        out,
        &format!(
            "taskpod demo: simulated cluster at {} (kubeconfig {})\n",
            sim.base_url(),
            kubeconfig.display()
        ),
    )?;

    let state = start_host(config, &dir.join("taskpod.db"), sim.client()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| ServiceError::io("cannot listen on 127.0.0.1", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServiceError::io("listener address", e))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, state.clone(), async move {
        let _ = stop_rx.await;
    }));
    say(
        out,
        &format!(
            "taskpod API at http://{addr} (store {})\n\n",
            dir.join("taskpod.db").display()
        ),
    )?;

    let outcome = drive(dir, &format!("http://{addr}"), tasks, out).await;

    // Job YAML as the cluster holds it, whatever the outcome.
    let jobs_dir = dir.join("jobs");
    let jobs = Api::<Job>::namespaced(sim.client(), &namespace)
        .list(&ListParams::default().labels(&format!("taskpod.dev/instance={instance}")))
        .await;
    let mut written = 0;
    if let Ok(list) = jobs {
        for job in list.items {
            let name = job.metadata.name.clone().unwrap_or_default();
            if let Ok(yaml) = serde_yaml::to_string(&job) {
                write_file(&jobs_dir.join(format!("{name}.yaml")), yaml.as_bytes())?;
                written += 1;
            }
        }
    }

    let _ = stop_tx.send(());
    let _ = server.await;
    state.runner().clone().shutdown().await;
    sim.shutdown().await;

    let views = outcome?;
    say(
        out,
        &format!(
            "\nWhere to look (everything is under {}):\n  Job YAML ({written} Jobs): {}/\n  \
             task logs:            {}/\n  task store (SQLite):  {}\n\
             To run it against a cluster you keep: `taskpod sim --kubeconfig k.yaml` in one \
             terminal,\n  `kubectl --kubeconfig k.yaml create namespace druid`, then\n  `taskpod serve --config examples/druid/taskpod.yaml --kubeconfig k.yaml` in \
             another,\n  then `taskpod submit --wait examples/druid/tasks/index-parallel.json`, \
             `taskpod logs ID`,\n  `kubectl --kubeconfig k.yaml get jobs -A -o yaml`.\n",
            dir.display(),
            jobs_dir.display(),
            dir.join("logs").display(),
            dir.join("taskpod.db").display(),
        ),
    )?;
    for (task, (file, want_state, want_code)) in views.iter().zip(tasks) {
        if task.state != *want_state || (want_code.is_some() && task.exit_code != *want_code) {
            return Err(ServiceError::Demo(format!(
                "{file}: expected {want_state}{}, got {}",
                want_code
                    .map(|c| format!(" with exit code {c}"))
                    .unwrap_or_default(),
                describe(task)
            )));
        }
    }
    say(out, "\ndemo finished: every task ended as expected\n")
}

/// The task id and the API request body for a task file: a JSON task as it is; a Samza job
/// config (`.properties`) as a task envelope of type `samza` whose payload is the properties,
/// as `taskpod render` reads such a file.
fn submission(file: &str, text: &str) -> Result<(String, String), ServiceError> {
    let invalid = |error| ServiceError::Task {
        origin: file.to_owned(),
        error,
    };
    if !file.ends_with(".properties") {
        let id = SubmittedTask::parse(text).map_err(invalid)?.id;
        return Ok((id, text.to_owned()));
    }
    let task = SubmittedTask::from_properties(text).map_err(invalid)?;
    let payload: serde_json::Value =
        serde_json::from_str(&task.payload).map_err(|e| ServiceError::Demo(e.to_string()))?;
    let body = serde_json::json!({
        "id": task.id, "type": task.kind, "tenant": task.tenant, "payload": payload
    });
    Ok((task.id, body.to_string()))
}

/// Submits the tasks through the API, prints their progress until all have ended, prints the
/// final states and writes their logs; returns the final views in `tasks` order.
async fn drive(
    dir: &Path,
    server: &str,
    tasks: &[(&str, TaskState, Option<i32>)],
    out: &mut dyn Write,
) -> Result<Vec<crate::api::TaskView>, ServiceError> {
    let client = Client::new(server)?;
    let mut feed = client.events(None).await?;
    let mut ids = Vec::new();
    for (file, _, _) in tasks {
        let text = std::fs::read_to_string(dir.join(file))
            .map_err(|e| ServiceError::io(format!("cannot read {file}"), e))?;
        let (id, body) = submission(file, &text)?;
        let submitted = client.submit(&body).await?;
        say(
            out,
            &format!("submitted {file}\n  {}\n", describe(&submitted.task)),
        )?;
        ids.push(id);
    }
    say(out, "\nprogress:\n")?;
    let mut ended = std::collections::BTreeSet::new();
    for id in &ids {
        if client.get(id).await?.task.state.is_terminal() {
            ended.insert(id.clone());
        }
    }
    while ended.len() < ids.len() {
        let Some(event) = feed.next().await? else {
            return Err(ServiceError::Demo(
                "the API closed the event feed before the tasks ended".to_owned(),
            ));
        };
        let Some(id) = event.id.clone().filter(|id| ids.contains(id)) else {
            continue;
        };
        if event.kind == "transition" {
            if let Some(line) = describe_event(&event) {
                say(out, &format!("  {line}\n"))?;
            }
            if event.to.is_some_and(TaskState::is_terminal) {
                ended.insert(id);
            }
        }
    }
    say(out, "\nfinal states:\n")?;
    let mut views = Vec::new();
    for id in &ids {
        let task = client.get(id).await?.task;
        say(out, &format!("  {}\n", describe(&task)))?;
        let mut log = Vec::new();
        client
            .log(id, false, |chunk| {
                log.extend_from_slice(chunk);
                Ok(())
            })
            .await?;
        write_file(
            &dir.join("logs").join(format!("{}.log", file_name(id))),
            &log,
        )?;
        let text = String::from_utf8_lossy(&log);
        let last = text.lines().last().unwrap_or("(empty log)");
        say(
            out,
            &format!("    log: {} bytes, last line: {last}\n", log.len()),
        )?;
        views.push(task);
    }
    Ok(views)
}
