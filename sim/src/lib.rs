//! The simulated Kubernetes API server (in progress).

pub mod controllers;
pub mod logs;
