//! `taskpod serve` (the host: store, runner, HTTP API) and `taskpod sim` (the simulated
//! cluster standalone, writing a kubeconfig for `serve --kubeconfig` and kubectl).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;

use super::remote::ServiceError;
use crate::api::{self, ApiState};
use crate::config::{Config, StoreKind};
use crate::runner::Runner;
use crate::store::{Store, StoreOptions};

/// `taskpod serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// taskpod config file (YAML).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "druid_properties"
    )]
    pub config: Option<PathBuf>,
    /// Druid runtime.properties to import instead of a taskpod config.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub druid_properties: Option<PathBuf>,
    /// Address the HTTP API listens on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// kubeconfig of the cluster (default: in-cluster config or ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The task store (SQLite file, created when absent); overrides the config's `store` key
    /// (default `taskpod.db`).
    #[arg(long, value_name = "FILE", env = "TASKPOD_STORE")]
    pub store: Option<PathBuf>,
}

/// `taskpod sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address the simulated API server listens on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Where to write the kubeconfig pointing at it.
    #[arg(long, value_name = "FILE", default_value = "taskpod-sim.kubeconfig")]
    pub kubeconfig: PathBuf,
    /// Run only the Job, TTL and garbage-collection controllers (no scheduler, no kubelets):
    /// pods move only when a client patches their status, as under envtest.
    #[arg(long)]
    pub controllers_only: bool,
    /// Concurrent workers per controller (0 = the default, 8).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub controller_workers: usize,
    /// Behaviour rules of the simulated containers (YAML; see sim's behavior module).
    #[arg(long, value_name = "FILE")]
    pub behavior: Option<PathBuf>,
}

/// A kube client from a kubeconfig file, or the default (in-cluster, then ~/.kube/config).
pub(crate) async fn kube_client(kubeconfig: Option<&Path>) -> Result<::kube::Client, ServiceError> {
    let fail = |what: String| ServiceError::Start(what);
    match kubeconfig {
        None => ::kube::Client::try_default().await.map_err(|e| {
            fail(format!(
                "no Kubernetes configuration found ({e}); give --kubeconfig FILE"
            ))
        }),
        Some(path) => {
            let kc = ::kube::config::Kubeconfig::read_from(path)
                .map_err(|e| fail(format!("kubeconfig {}: {e}", path.display())))?;
            let config = ::kube::Config::from_custom_kubeconfig(
                kc,
                &::kube::config::KubeConfigOptions::default(),
            )
            .await
            .map_err(|e| fail(format!("kubeconfig {}: {e}", path.display())))?;
            ::kube::Client::try_from(config)
                .map_err(|e| fail(format!("kubeconfig {}: {e}", path.display())))
        }
    }
}

/// When an overlord-copy adapter has no `basePod` file, reads the host's own pod
/// (`own_pod`: namespace and name, from `POD_NAMESPACE`/`POD_NAME` of the downward API)
/// through the API into [`Config::own_pod`], as Druid's overlord does. Fails start-up with what
/// to do when it cannot.
pub(crate) async fn read_own_pod(
    config: &mut Config,
    client: &::kube::Client,
    own_pod: Option<(String, String)>,
) -> Result<(), ServiceError> {
    let needing: Vec<String> = config
        .needs_own_pod()
        .iter()
        .map(|b| format!("`{}` ({})", b.name, b.component))
        .collect();
    if needing.is_empty() || config.own_pod.is_some() {
        return Ok(());
    }
    let Some((namespace, name)) = own_pod else {
        return Err(ServiceError::Start(format!(
            "adapter {} builds Jobs from the host's own pod, but POD_NAME is not set: run taskpod in a pod with POD_NAME and POD_NAMESPACE from the downward API (deploy/ does), or set `basePod` to a pod file in the adapter binding (Druid properties: taskpod.basePod)",
            needing.join(", ")
        )));
    };
    match crate::config::base_pod::from_api(client.clone(), &namespace, &name).await {
        Ok(pod) => {
            tracing::info!(adapters = %needing.join(", "), "read the host's own pod as the base of the overlord-copy adapters");
            // The peons run as the host's own service account, as Druid's do: the operator chose
            // it by deploying taskpod, so the output policy allows it (as the importer does for
            // the overlord pod file).
            let account = serde_json::from_str::<serde_json::Value>(&pod)
                .ok()
                .and_then(|p| p["spec"]["serviceAccountName"].as_str().map(str::to_owned));
            if let Some(account) = account
                && !config.policy.service_accounts.contains(&account)
            {
                tracing::info!(service_account = %account, "the host's own service account is allowed by the output policy for the overlord-copy adapters' Jobs");
                config.policy.service_accounts.push(account);
            }
            config.own_pod = Some(pod);
            Ok(())
        }
        Err(error) => Err(ServiceError::Start(format!(
            "adapter {} needs the host's own pod: {error}; check POD_NAME/POD_NAMESPACE and that the service account may get pods",
            needing.join(", ")
        ))),
    }
}

/// Opens the store the config names: the SQLite file `sqlite_path` (default), or PostgreSQL at
/// `storeBackend.url` / `TASKPOD_STORE_URL`.
pub(crate) async fn open_store(config: &Config, sqlite_path: &Path) -> Result<Store, ServiceError> {
    match config.store_backend.kind {
        StoreKind::Sqlite => {
            let path = sqlite_path.to_path_buf();
            tokio::task::spawn_blocking(move || Store::open(&path, StoreOptions::default()))
                .await
                .map_err(|e| ServiceError::Start(format!("opening the store panicked: {e}")))?
                .map_err(|e| ServiceError::Start(e.to_string()))
        }
        StoreKind::Postgres => {
            let url = match &config.store_backend.url {
                Some(url) => url.clone(),
                None => std::env::var("TASKPOD_STORE_URL").map_err(|_| {
                    ServiceError::Start(
                        "config key `storeBackend.kind` is postgres but no URL is given: set `storeBackend.url` \
                         or the TASKPOD_STORE_URL environment variable (from a Secret)"
                            .to_owned(),
                    )
                })?,
            };
            let options = StoreOptions {
                read_pool: config.store_backend.pool.unwrap_or(8).max(1) as usize,
                ..StoreOptions::default()
            };
            Store::connect_postgres(&url, options)
                .await
                .map_err(|e| ServiceError::Start(e.to_string()))
        }
    }
}

/// Opens the store, starts the runner on `client` and returns the API state.
pub(crate) async fn start_host(
    config: Config,
    store_path: &Path,
    client: ::kube::Client,
) -> Result<ApiState, ServiceError> {
    let store = open_store(&config, store_path).await?;
    start_runner(config, store, client).await
}

/// Starts the runner on an open store and returns the API state.
pub(crate) async fn start_runner(
    mut config: Config,
    store: Store,
    client: ::kube::Client,
) -> Result<ApiState, ServiceError> {
    let own_pod = crate::config::base_pod::own_pod_from_env(&config.namespace);
    read_own_pod(&mut config, &client, own_pod).await?;
    let runner = Runner::start(Arc::new(config), store, client)
        .await
        .map_err(|e| ServiceError::Start(format!("cannot start the runner: {e}")))?;
    crate::execution::restore(&runner)
        .await
        .map_err(|e| ServiceError::Start(format!("cannot restore the execution config: {e}")))?;
    Ok(ApiState::new(runner))
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// `taskpod serve`: runs until Ctrl-C or SIGTERM. Prints `listening on http://ADDR` once the
/// API accepts connections.
pub fn serve(args: &ServeArgs, out: &mut dyn Write) -> Result<(), ServiceError> {
    let config = super::load_config(args.config.as_deref(), args.druid_properties.as_deref())
        .map_err(|e| ServiceError::Start(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ServiceError::io("cannot start the async runtime", e))?;
    runtime.block_on(async {
        let client = kube_client(args.kubeconfig.as_deref()).await?;
        if config.ha.enabled {
            return super::ha::serve_replica(config, args.listen, client, out).await;
        }
        let store = args.store.clone().unwrap_or_else(|| config.store_path());
        let state = start_host(config, &store, client).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| ServiceError::io(format!("cannot listen on {}", args.listen), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ServiceError::io("listener address", e))?;
        writeln!(out, "listening on http://{addr}")
            .and_then(|()| out.flush())
            .map_err(|e| ServiceError::io("standard output", e))?;
        let runner = state.runner().clone();
        let served = api::serve(listener, state, shutdown_signal()).await;
        runner.shutdown().await;
        served.map_err(|e| ServiceError::io("the HTTP server failed", e))
    })
}

/// `taskpod sim`: runs until Ctrl-C or SIGTERM.
pub fn sim(args: &SimArgs, out: &mut dyn Write) -> Result<(), ServiceError> {
    let mut opts = taskpod_sim::SimOptions::default();
    if args.controllers_only {
        opts.controllers.mode = taskpod_sim::ControllerMode::ControllersOnly;
    }
    opts.controllers.workers = args.controller_workers;
    if let Some(path) = &args.behavior {
        opts.controllers.behavior =
            taskpod_sim::controllers::behavior::Behavior::from_yaml_file(path)
                .map_err(|e| ServiceError::Start(e.to_string()))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ServiceError::io("cannot start the async runtime", e))?;
    writeln!(
        out,
        "simulated cluster on http://{}; kubeconfig {} (Ctrl-C stops it)",
        args.listen,
        args.kubeconfig.display()
    )
    .and_then(|()| out.flush())
    .map_err(|e| ServiceError::io("standard output", e))?;
    runtime
        .block_on(taskpod_sim::serve_standalone(
            args.listen,
            &args.kubeconfig,
            opts,
            shutdown_signal(),
        ))
        .map_err(|e| ServiceError::Start(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use kube::api::{Api, PostParams};

    const CONFIG: &str = r#"
namespace: druid
adapters:
  - name: peons
    component: builtin:overlord-single
    config:
      primaryContainerName: druid-overlord
routing:
  default: peons
"#;

    /// The example overlord pod, as a client would create it (no server-set fields).
    fn overlord_pod() -> serde_json::Value {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/druid/overlord-pod.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let mut pod: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        pod.as_object_mut().unwrap().remove("status");
        let meta = pod["metadata"].as_object_mut().unwrap();
        meta.retain(|k, _| matches!(k.as_str(), "name" | "namespace" | "labels"));
        pod
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_hosts_own_pod_is_read_through_the_api_for_overlord_adapters() {
        let sim = taskpod_sim::Sim::start(taskpod_sim::SimOptions::default())
            .await
            .unwrap();
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "druid"}
        }))
        .unwrap();
        Api::<Namespace>::all(sim.client())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
        let pod: Pod = serde_json::from_value(overlord_pod()).unwrap();
        let name = pod.metadata.name.clone().unwrap();
        Api::<Pod>::namespaced(sim.client(), "druid")
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
        let config = Config::from_yaml(CONFIG).unwrap();
        assert_eq!(config.needs_own_pod().len(), 1);

        // Not in a pod: start-up stops and says what to do.
        let mut outside = config.clone();
        let error = read_own_pod(&mut outside, &sim.client(), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`peons` (builtin:overlord-single)"),
            "{error}"
        );
        assert!(
            error.contains("POD_NAME") && error.contains("basePod"),
            "{error}"
        );

        // A pod that does not exist: named in the error.
        let mut wrong = config.clone();
        let error = read_own_pod(
            &mut wrong,
            &sim.client(),
            Some(("druid".into(), "no-such-pod".into())),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(error.contains("no-such-pod"), "{error}");

        // In a pod: its spec is the base of the peon Job.
        let mut inside = config.clone();
        read_own_pod(&mut inside, &sim.client(), Some(("druid".into(), name)))
            .await
            .unwrap();
        let own = inside.own_pod.clone().unwrap();
        assert!(own.contains("druid-overlord"), "{own}");
        assert!(
            inside
                .policy
                .service_accounts
                .contains(&"druid-overlord".to_owned()),
            "the host's own service account is allowed for its peons"
        );
        let runtime =
            crate::adapters::Runtime::new(crate::adapters::RuntimeOptions::default()).unwrap();
        let renderer = crate::render::Renderer::new(inside, runtime).unwrap();
        let task = crate::task::SubmittedTask::parse(
            r#"{"type": "index_parallel", "id": "own_pod_task", "dataSource": "wiki"}"#,
        )
        .unwrap();
        let job = renderer.render_blocking(&task).unwrap().job;
        let spec = job.spec.unwrap().template.spec.unwrap();
        let image = spec.containers[0].image.clone().unwrap_or_default();
        let expected = pod_image(&overlord_pod(), "druid-overlord");
        assert_eq!(image, expected);
        assert_eq!(spec.containers[0].name, "main");
        sim.shutdown().await;
    }

    fn pod_image(pod: &serde_json::Value, container: &str) -> String {
        pod["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == container)
            .and_then(|c| c["image"].as_str())
            .unwrap()
            .to_owned()
    }
}
