//! The component side of the SDK (compiled for `wasm32` only): the `wit-bindgen` bindings of
//! the `pod-adapter` world and the conversions between their records and the plain types of
//! [`crate::types`].
//!
//! Adapter authors never use this module directly: [`crate::export_adapter!`] expands to a
//! hidden type that implements the generated `Guest` trait by calling these functions, which
//! convert the arguments, call the adapter's [`Adapter`] implementation and convert the result
//! back. It is public only so that the macro can name it from the adapter's crate.

use crate::types::{Adapter, AdapterError, AdapterInfo, AdapterOutput, Context, Limits, Task};

/// Bindings generated from `wit/adapter.wit` (world `pod-adapter`).
#[allow(unsafe_code)] // wit-bindgen's generated canonical-ABI glue.
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "pod-adapter",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_pod_adapter",
        default_bindings_module: "taskpod_adapter_sdk::__guest::bindings",
    });
}

use bindings::taskpod::adapter::types as wit;

impl From<AdapterInfo> for wit::AdapterInfo {
    fn from(i: AdapterInfo) -> Self {
        wit::AdapterInfo {
            name: i.name,
            version: i.version,
            description: i.description,
            config_schema: i.config_schema,
            task_types: i.task_types,
        }
    }
}

impl From<AdapterError> for wit::AdapterError {
    fn from(e: AdapterError) -> Self {
        match e {
            AdapterError::InvalidTask(m) => wit::AdapterError::InvalidTask(m),
            AdapterError::InvalidConfig(m) => wit::AdapterError::InvalidConfig(m),
            AdapterError::Internal(m) => wit::AdapterError::Internal(m),
        }
    }
}

impl From<AdapterOutput> for wit::AdapterOutput {
    fn from(o: AdapterOutput) -> Self {
        wit::AdapterOutput {
            job: o.job,
            companions: o.companions,
        }
    }
}

impl From<wit::Task> for Task {
    fn from(t: wit::Task) -> Self {
        Task {
            id: t.id,
            kind: t.kind,
            tenant: t.tenant,
            group_id: t.group_id,
            datasource: t.datasource,
            payload: t.payload,
            labels: t.labels,
            tags: t.tags,
        }
    }
}

impl From<wit::Limits> for Limits {
    fn from(l: wit::Limits) -> Self {
        Limits {
            max_duration_seconds: l.max_duration_seconds,
            cleanup_delay_seconds: l.cleanup_delay_seconds,
            termination_grace_period_seconds: l.termination_grace_period_seconds,
            max_inline_payload: l.max_inline_payload,
        }
    }
}

impl From<wit::Context> for Context {
    fn from(c: wit::Context) -> Self {
        Context {
            namespace: c.namespace,
            config: c.config,
            base_pod: c.base_pod,
            templates: c.templates,
            job_name: c.job_name,
            labels: c.labels,
            annotations: c.annotations,
            limits: c.limits.into(),
        }
    }
}

/// `info` for adapter `A`, in binding types.
pub fn info<A: Adapter>() -> wit::AdapterInfo {
    A::info().into()
}

/// `validate-config` for adapter `A`, in binding types.
pub fn validate_config<A: Adapter>(config: String) -> Result<(), wit::AdapterError> {
    A::validate_config(&config).map_err(Into::into)
}

/// `adapt` for adapter `A`, in binding types.
pub fn adapt<A: Adapter>(
    task: wit::Task,
    ctx: wit::Context,
) -> Result<wit::AdapterOutput, wit::AdapterError> {
    A::adapt(&task.into(), &ctx.into())
        .map(Into::into)
        .map_err(Into::into)
}
