//! The simulated Kubernetes API server (in progress).
