//! The taskpod adapter SDK: everything a Rust pod adapter needs, so that one is a few dozen
//! lines.
//!
//! A pod adapter turns one task plus its configuration into the Kubernetes Job that runs it. It
//! is compiled to a WebAssembly component (`wasm32-wasip2`) implementing the `pod-adapter` world
//! of `wit/adapter.wit`, and the taskpod host runs it sandboxed. With this SDK an adapter is
//! plain Rust written against [`types`] — so the same logic compiles natively for unit tests —
//! plus one line, [`export_adapter!`], that turns it into a component.
//!
//! | module | what it gives |
//! |---|---|
//! | [`types`] | [`Task`], [`Context`], [`Limits`], [`AdapterOutput`], [`AdapterError`] and the [`Adapter`] trait |
//! | [`names`] | DNS-1123 names, label values and keys, Druid's deterministic [`names::job_name`] |
//! | [`payload`] | gzip+base64 task payloads (Druid's `task` annotation) |
//! | [`k8s`] | typed PodTemplate → Job helpers on `k8s-openapi` (re-exported as [`k8s::k8s_openapi`]) |
//! | [`transport`] | payload inline (annotation + `TASK_JSON`) or spilled into a ConfigMap companion |
//! | [`error`] | error constructors and [`error::ErrorContext`] to name the failing field |
//! | [`log`] | logging through the host (natively: a buffer tests can read) |
//!
//! # A complete adapter
//!
//! ```
//! use taskpod_adapter_sdk::k8s::{self, k8s_openapi::api::core::v1::PodTemplateSpec};
//! use taskpod_adapter_sdk::{error, names, Adapter, AdapterError, AdapterInfo, AdapterOutput, Context, Task};
//!
//! /// Runs every task with the `main` container of the `base` template, labelled by tenant.
//! pub struct Minimal;
//!
//! impl Adapter for Minimal {
//!     fn info() -> AdapterInfo {
//!         AdapterInfo {
//!             name: "minimal".into(),
//!             version: "0.1.0".into(),
//!             description: "Job from the base PodTemplate".into(),
//!             config_schema: r#"{"type":"object","additionalProperties":false}"#.into(),
//!             task_types: vec![],
//!         }
//!     }
//!
//!     fn validate_config(config: &str) -> Result<(), AdapterError> {
//!         let map: serde_json::Map<String, serde_json::Value> = error::parse_config(config)?;
//!         match map.keys().next() {
//!             Some(key) => Err(error::invalid_config(format!("config.{key}: unknown key; this adapter takes none"))),
//!             None => Ok(()),
//!         }
//!     }
//!
//!     fn adapt(task: &Task, ctx: &Context) -> Result<AdapterOutput, AdapterError> {
//!         let base = k8s::lookup(&ctx.templates, "base")
//!             .ok_or_else(|| error::invalid_config("templates.base: required"))?;
//!         let template: PodTemplateSpec = k8s::parse_pod_template("base", base)?;
//!         let mut job = k8s::job_from_template(&ctx.job_name, &ctx.namespace, template);
//!         let spec = job.spec.as_mut().expect("job_from_template sets a spec");
//!         k8s::merge_labels(
//!             spec.template.metadata.get_or_insert_with(Default::default),
//!             [("tenant", names::sanitize_label_value(&task.tenant))],
//!         );
//!         let pod = spec.template.spec.as_mut().expect("parse_pod_template checks the spec");
//!         let main = k8s::main_container_mut(pod, None)?;
//!         k8s::set_env(main, k8s::env_value("TASK_ID", task.id.as_str()));
//!         k8s::apply_limits(&mut job, &ctx.limits);
//!         k8s::job_output(&job)
//!     }
//! }
//!
//! // In the adapter's crate (`crate-type = ["cdylib", "rlib"]`), this makes it a component
//! // when built with `cargo build --release --target wasm32-wasip2` (natively it only checks
//! // that `Minimal` implements `Adapter`):
//! taskpod_adapter_sdk::export_adapter!(Minimal);
//! # fn main() {
//! #     let ctx = Context {
//! #         namespace: "ns".into(), job_name: "t-1".into(),
//! #         templates: vec![("base".into(), r#"{"apiVersion":"v1","kind":"PodTemplate","template":{"spec":{"containers":[{"name":"main","image":"busybox"}]}}}"#.into())],
//! #         ..Context::default()
//! #     };
//! #     let out = Minimal::adapt(&Task { id: "t".into(), tenant: "Acme Corp".into(), ..Task::default() }, &ctx).unwrap();
//! #     assert!(out.job.contains(r#""tenant":"AcmeCorp""#));
//! #     assert!(Minimal::validate_config(r#"{"x":1}"#).is_err());
//! # }
//! ```
//!
//! Native builds of the same crate are ordinary Rust libraries: test the adapter by calling
//! `<Minimal as Adapter>::adapt` directly, and read its log messages with [`log::take`].
//!
//! # From a new project to a running adapter
//!
//! `taskpod adapter new my-adapter --lang rust` creates a crate with a starter adapter, its
//! configuration and a test case; then, in it:
//!
//! ```text
//! cargo test                                                     # natively
//! cargo build --target wasm32-wasip2 --release --target-dir target
//! taskpod adapter check target/wasm32-wasip2/release/my_adapter.wasm --config config.yaml
//! taskpod adapter test  target/wasm32-wasip2/release/my_adapter.wasm --config config.yaml --cases cases
//! taskpod demo --adapter target/wasm32-wasip2/release/my_adapter.wasm --adapter-config config.yaml
//! ```
//!
//! `adapter test` renders each case's task exactly as the host would create the Job and
//! compares it with the expected YAML (whole, or fragments that must be contained);
//! `adapter bench` prints the call's latency percentiles. The walk-through, with the Python and
//! JavaScript SDKs beside this one, is `docs/writing-an-adapter.md` in the taskpod repository.
//!
//! # Performance
//!
//! The host runs every call in a fresh instance, so nothing is cached between calls and every
//! page of linear memory the call touches is a new page fault on the host. Parse only the
//! template you use, avoid large zero-initialised buffers (this is why [`payload::encode`] has
//! its own small gzip encoder), and prefer building typed objects once over repeated
//! serialisation. Small allocations come from a bump arena ([`heap`], the `arena` feature),
//! so freeing costs nothing; keep whole-call buffers large rather than many small ones
//! that are freed. Link with an initial memory large enough for a call (the built-ins use
//! `-Clink-arg=--initial-memory=4194304`): a call that has to grow its memory pays an
//! `mprotect` on the host for each growth. `BENCHMARKS.md` has the current figures of the
//! built-in `pod-template` adapter natively and in a fresh sandbox.

#![warn(missing_docs)]

pub mod error;
pub mod k8s;
pub mod log;
pub mod names;
pub mod payload;
pub mod quantity;
pub mod transport;
pub mod types;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[allow(missing_docs)] // generated bindings
pub mod __guest {
    //! Re-export of the component glue for [`crate::export_adapter!`].
    pub use crate::guest::*;
}

#[cfg(target_arch = "wasm32")]
mod guest;

#[cfg(feature = "arena")]
#[allow(unsafe_code)] // A `GlobalAlloc` implementation; its invariants are argued in heap.rs.
pub mod heap;

/// The guest's allocator: a bump arena for small blocks (see [`heap`]); the `arena` feature
/// (on by default) installs it, turn it off to bring your own `#[global_allocator]`.
#[cfg(all(target_arch = "wasm32", feature = "arena"))]
#[global_allocator]
static HEAP: heap::Arena = heap::Arena::new();

pub use types::*;

/// Exports a type implementing [`Adapter`] as the component's `pod-adapter` world.
///
/// Use it once, at the top level of the adapter crate's `lib.rs`:
///
/// ```
/// # use taskpod_adapter_sdk::{Adapter, AdapterError, AdapterInfo, AdapterOutput, Context, Task};
/// # pub struct MyAdapter;
/// # impl Adapter for MyAdapter {
/// #     fn info() -> AdapterInfo { AdapterInfo::default() }
/// #     fn validate_config(_: &str) -> Result<(), AdapterError> { Ok(()) }
/// #     fn adapt(_: &Task, _: &Context) -> Result<AdapterOutput, AdapterError> { Ok(AdapterOutput::default()) }
/// # }
/// taskpod_adapter_sdk::export_adapter!(MyAdapter);
/// # fn main() {}
/// ```
///
/// Compiled for `wasm32`, it expands to a hidden type implementing the generated `Guest` trait by
/// converting the binding records to the plain [`types`] and calling `<MyAdapter as Adapter>`,
/// and to the canonical-ABI exports of `info`, `validate-config` and `adapt`. The crate needs
/// `crate-type = ["cdylib", "rlib"]`; `cargo build --release --target wasm32-wasip2` then
/// writes the component to `target/wasm32-wasip2/release/<crate_name>.wasm`.
///
/// Compiled natively (unit tests, the host's native baseline) it exports nothing and only checks
/// that the type implements [`Adapter`], so the same `lib.rs` builds for both targets.
#[cfg(target_arch = "wasm32")]
#[macro_export]
macro_rules! export_adapter {
    ($adapter:ty) => {
        const _: () = {
            #[doc(hidden)]
            struct __TaskpodAdapterExport;

            impl $crate::__guest::bindings::Guest for __TaskpodAdapterExport {
                fn info() -> $crate::__guest::bindings::taskpod::adapter::types::AdapterInfo {
                    $crate::__guest::info::<$adapter>()
                }

                fn validate_config(
                    config: ::std::string::String,
                ) -> ::std::result::Result<
                    (),
                    $crate::__guest::bindings::taskpod::adapter::types::AdapterError,
                > {
                    $crate::__guest::validate_config::<$adapter>(config)
                }

                fn adapt(
                    task: $crate::__guest::bindings::taskpod::adapter::types::Task,
                    ctx: $crate::__guest::bindings::taskpod::adapter::types::Context,
                ) -> ::std::result::Result<
                    $crate::__guest::bindings::taskpod::adapter::types::AdapterOutput,
                    $crate::__guest::bindings::taskpod::adapter::types::AdapterError,
                > {
                    $crate::__guest::adapt::<$adapter>(task, ctx)
                }
            }

            $crate::__guest::bindings::__export_pod_adapter!(
                __TaskpodAdapterExport with_types_in $crate::__guest::bindings
            );
        };
    };
}

/// Exports a type implementing [`Adapter`] as the component's `pod-adapter` world.
///
/// Use it once, at the top level of the adapter crate's `lib.rs`:
///
/// ```
/// # use taskpod_adapter_sdk::{Adapter, AdapterError, AdapterInfo, AdapterOutput, Context, Task};
/// # pub struct MyAdapter;
/// # impl Adapter for MyAdapter {
/// #     fn info() -> AdapterInfo { AdapterInfo::default() }
/// #     fn validate_config(_: &str) -> Result<(), AdapterError> { Ok(()) }
/// #     fn adapt(_: &Task, _: &Context) -> Result<AdapterOutput, AdapterError> { Ok(AdapterOutput::default()) }
/// # }
/// taskpod_adapter_sdk::export_adapter!(MyAdapter);
/// # fn main() {}
/// ```
///
/// Compiled for `wasm32`, it expands to a hidden type implementing the generated `Guest` trait by
/// converting the binding records to the plain [`types`] and calling `<MyAdapter as Adapter>`,
/// and to the canonical-ABI exports of `info`, `validate-config` and `adapt`. The crate needs
/// `crate-type = ["cdylib", "rlib"]`; `cargo build --release --target wasm32-wasip2` then
/// writes the component to `target/wasm32-wasip2/release/<crate_name>.wasm`.
///
/// Compiled natively (unit tests, the host's native baseline) it exports nothing and only checks
/// that the type implements [`Adapter`], so the same `lib.rs` builds for both targets.
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! export_adapter {
    ($adapter:ty) => {
        const _: () = {
            fn __taskpod_assert_adapter<A: $crate::Adapter>() {}
            let _ = __taskpod_assert_adapter::<$adapter>;
        };
    };
}
