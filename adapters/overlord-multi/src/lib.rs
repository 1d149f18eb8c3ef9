//! The built-in `overlord-multi` adapter: Druid's `overlordMultiContainer`.
//!
//! The Job is the host's own pod (the overlord's) with its primary container running the peon and
//! its sidecars kept, stopped when the peon exits — with Druid's kubexit wiring (`sidecars:
//! kubexit`, the default; every sidecar needs an explicit `command`) or as Kubernetes native
//! sidecars (`sidecars: native`, Kubernetes ≥ 1.29). See [`taskpod_adapter_druid::overlord`].

use taskpod_adapter_druid::overlord::{self, CONFIG_SCHEMA, Config, Mode};
use taskpod_adapter_sdk::{Adapter, AdapterError, AdapterInfo, AdapterOutput, Context, Task};

/// Druid's `overlordMultiContainer` as a taskpod adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct OverlordMultiAdapter;

impl Adapter for OverlordMultiAdapter {
    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "overlord-multi".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "Druid's overlordMultiContainer: a Job from the host's own pod keeping its sidecars, stopped after the peon by kubexit or as native sidecars".to_owned(),
            config_schema: CONFIG_SCHEMA.to_owned(),
            task_types: Vec::new(),
        }
    }

    fn validate_config(config: &str) -> Result<(), AdapterError> {
        Config::parse(config).map(|_| ())
    }

    fn adapt(task: &Task, ctx: &Context) -> Result<AdapterOutput, AdapterError> {
        let config = Config::parse(&ctx.config)?;
        overlord::build(task, ctx, &config, Mode::Multi)
    }
}

taskpod_adapter_sdk::export_adapter!(OverlordMultiAdapter);
