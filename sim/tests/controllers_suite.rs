//! The simulated controllers and kubelets, driven through the real `kube` client against a
//! simulated cluster started per test: Deployments (replicas, availability, scaling), Jobs
//! (completion, back-off, Indexed mode, deadline, suspend, per-index back-off, pod failure
//! policy, OnFailure restarts, TTL), the garbage collector (background, foreground, orphan,
//! dangling owners), the scheduler and kubelets (unschedulable pods, selectors and taints, image
//! pull back-off, OOM kills, eviction, sidecars, kubexit, init containers, logs, graceful
//! deletion), and the controller modes and pause.

mod controllers_common;

#[path = "controllers_suite/deployments.rs"]
mod deployments;
#[path = "controllers_suite/faults.rs"]
mod faults;
#[path = "controllers_suite/gc.rs"]
mod gc;
#[path = "controllers_suite/jobs.rs"]
mod jobs;
#[path = "controllers_suite/modes.rs"]
mod modes;
#[path = "controllers_suite/pods.rs"]
mod pods;
