//! The taskpod adapter SDK: everything a Rust pod adapter needs, so that one is a few
//! dozen lines. (Work in progress: see the module list.)

pub mod names;
pub mod payload;
pub mod types;

pub use types::*;
