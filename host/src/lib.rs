//! taskpod: runs data-platform tasks as Kubernetes Jobs whose shape is decided by
//! sandboxed WebAssembly pod adapters.
//!
//! Modules, one per responsibility (see DESIGN.md); data flows one way:
//! API → store/queue → adapter runtime → contract/policy → kube → watcher → store.

pub mod adapters;
pub mod api;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod contract;
pub mod events;
pub mod execution;
pub mod ha;
pub mod kube;
pub mod metrics;
pub mod policy;
pub mod queue;
pub mod reaper;
pub mod render;
pub mod runner;
pub mod store;
pub mod task;
pub mod tenants;
