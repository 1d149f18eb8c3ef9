//! The built-in `overlord-single` adapter: Druid's `overlordSingleContainer`.
//!
//! The Job is the host's own pod (the overlord's) reduced to its primary container, which runs
//! the peon; see [`taskpod_adapter_druid::overlord`] for every field it sets. The logic lives in
//! the shared Druid crate so that `overlord-single` and `overlord-multi` cannot drift apart.

use taskpod_adapter_druid::overlord::{self, CONFIG_SCHEMA, Config, Mode};
use taskpod_adapter_sdk::{Adapter, AdapterError, AdapterInfo, AdapterOutput, Context, Task};

/// Druid's `overlordSingleContainer` as a taskpod adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct OverlordSingleAdapter;

impl Adapter for OverlordSingleAdapter {
    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "overlord-single".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "Druid's overlordSingleContainer: a Job from the host's own pod, primary container only, with Druid's peon command, env, memory sizing, labels and annotations".to_owned(),
            config_schema: CONFIG_SCHEMA.to_owned(),
            task_types: Vec::new(),
        }
    }

    fn validate_config(config: &str) -> Result<(), AdapterError> {
        Config::parse(config).map(|_| ())
    }

    fn adapt(task: &Task, ctx: &Context) -> Result<AdapterOutput, AdapterError> {
        let config = Config::parse(&ctx.config)?;
        overlord::build(task, ctx, &config, Mode::Single)
    }
}

taskpod_adapter_sdk::export_adapter!(OverlordSingleAdapter);
