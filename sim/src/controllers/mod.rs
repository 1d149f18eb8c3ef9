//! Simulated controllers and kubelets (Job, TTL-after-finished, garbage collector,
//! scheduler, kubelets). They talk to the simulated API server over HTTP through the
//! real `kube` client, as real controllers talk to a real API server.
//!
//! Contract (to be implemented):
//! `pub struct ControllerConfig { pub mode: ControllerMode, pub nodes: Vec<NodeSpec>, pub behavior: Behavior, … }`
//! with `Default`, `pub enum ControllerMode { Full, ControllersOnly, Off }`, and
//! `pub fn spawn(client: kube::Client, logs: crate::logs::PodLogs, config: ControllerConfig) -> Controllers`
//! where `Controllers` has `pause()`, `resume()`, `is_paused()` and `async fn shutdown(self)`.
