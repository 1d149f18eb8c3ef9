//! Container logs of simulated pods (owned by the server side; written by the simulated
//! kubelets, read by `GET …/pods/{name}/log`).
//!
//! Contract (to be implemented): a cheap-to-clone handle,
//! `PodLogs::append(&self, namespace, pod, container, line: &str)`,
//! `PodLogs::finish(&self, namespace, pod, container)` (no more lines will come; followers end),
//! `PodLogs::remove_pod(&self, namespace, pod)` is NOT called on pod deletion by the
//! kubelet (the server decides what happens to logs of deleted pods), plus read/follow
//! functions used by the HTTP handler.
