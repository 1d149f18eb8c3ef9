//! `taskpod serve` (the host: store, runner, HTTP API) and `taskpod sim` (the simulated
//! cluster standalone, writing a kubeconfig for `serve --kubeconfig` and kubectl).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;

use super::remote::ServiceError;
use crate::adapters::{Runtime, RuntimeOptions};
use crate::api::{self, ApiState};
use crate::config::Config;
use crate::render::Renderer;
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
    /// The task store (SQLite file, created when absent).
    #[arg(
        long,
        value_name = "FILE",
        env = "TASKPOD_STORE",
        default_value = "taskpod.db"
    )]
    pub store: PathBuf,
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

/// The renderer `/v1/render` and `/v1/adapters` use: the same configuration as the runner.
pub(crate) fn renderer_for(config: &Config) -> Result<Arc<Renderer>, ServiceError> {
    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: config.cache_dir.clone(),
        ..RuntimeOptions::default()
    })
    .map_err(|e| ServiceError::Start(e.to_string()))?;
    Renderer::new(config.clone(), runtime)
        .map(Arc::new)
        .map_err(|e| ServiceError::Start(e.to_string()))
}

/// Opens the store, starts the runner on `client` and returns the API state.
pub(crate) async fn start_host(
    config: Config,
    store_path: &Path,
    client: ::kube::Client,
) -> Result<ApiState, ServiceError> {
    let renderer = renderer_for(&config)?;
    let path = store_path.to_path_buf();
    let store = tokio::task::spawn_blocking(move || Store::open(&path, StoreOptions::default()))
        .await
        .map_err(|e| ServiceError::Start(format!("opening the store panicked: {e}")))?
        .map_err(|e| ServiceError::Start(e.to_string()))?;
    let runner = Runner::start(Arc::new(config), store, client)
        .await
        .map_err(|e| ServiceError::Start(format!("cannot start the runner: {e}")))?;
    Ok(ApiState::new(runner, Some(renderer)))
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
        let state = start_host(config, &args.store, client).await?;
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
