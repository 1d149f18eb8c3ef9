//! The runner's Prometheus metrics: counters and histograms of what happened to tasks, adapters
//! and the Kubernetes API since the process started.
//!
//! [`Metrics`] is owned by one [`crate::runner::Runner`] (and shared with its Kubernetes access
//! and Event recorder), written where things happen (a transition stored, an adapter call
//! returned, a request refused, a watch restarted) and rendered as Prometheus text by `/metrics`,
//! after the gauges the API reads from the store (tasks by state and tenant, queue depth,
//! capacity in use). Durations come from the times the store recorded (submitted, launched,
//! started, finished), so what a metric says matches what `GET /v1/tasks/{id}` says.
//!
//! Families (all names start with `taskpod_`):
//! - `pod_startup_seconds` (histogram): from `launching` (Job being created) to the pod started,
//!   Druid's `k8s/peon/startup/time`.
//! - `task_pending_seconds` (histogram): from submission to `launching`.
//! - `task_duration_seconds{state}` (histogram): from the pod start to the task's end, by end state.
//! - `task_ends_total{state,reason}` (counter): tasks that ended, by state and reason code.
//! - `adapter_call_seconds{adapter}` (histogram), `adapter_failures_total{adapter,reason}` (counter).
//! - `kube_api_errors_total{verb,resource,code}` (counter): failed Kubernetes API requests.
//! - `watch_restarts_total{kind}` (counter): Job/Pod/Deployment watch streams interrupted and
//!   resumed.
//! - `events_published_total{reason}` (counter): Kubernetes Events written on Jobs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::render::RenderError;
use crate::store::{ReasonCode, TaskRecord};

/// Buckets (seconds) for the time a pod takes to start: image pulls and scheduling.
const STARTUP_BUCKETS: &[f64] = &[
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// Buckets (seconds) for the time a task waits for capacity.
const PENDING_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
];
/// Buckets (seconds) for how long a task runs.
const DURATION_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
];
/// Buckets (seconds) for one adapter call (a fresh sandbox per call).
const ADAPTER_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The metrics of one runner. Cheap to update from any thread (one short lock per update).
#[derive(Debug)]
pub struct Metrics {
    pod_startup: HistogramVec,
    task_pending: HistogramVec,
    task_duration: HistogramVec,
    task_ends: CounterVec,
    adapter_calls: HistogramVec,
    adapter_failures: CounterVec,
    kube_errors: CounterVec,
    watch_restarts: CounterVec,
    events: CounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Empty metrics (every counter zero, every histogram empty).
    pub fn new() -> Metrics {
        Metrics {
            pod_startup: HistogramVec::new(
                "taskpod_pod_startup_seconds",
                "Time from launching a task (creating its Job) to its pod starting, \
                 as Druid's k8s/peon/startup/time.",
                &[],
                STARTUP_BUCKETS,
            ),
            task_pending: HistogramVec::new(
                "taskpod_task_pending_seconds",
                "Time from a task's submission to its launch (waiting for capacity).",
                &[],
                PENDING_BUCKETS,
            ),
            task_duration: HistogramVec::new(
                "taskpod_task_duration_seconds",
                "Time from a task's pod starting to the task's end, by end state.",
                &["state"],
                DURATION_BUCKETS,
            ),
            task_ends: CounterVec::new(
                "taskpod_task_ends_total",
                "Tasks that ended, by end state and reason code.",
                &["state", "reason"],
            ),
            adapter_calls: HistogramVec::new(
                "taskpod_adapter_call_seconds",
                "Latency of adapter calls made to launch tasks (sandbox, adapt and Job \
                 contract), by adapter.",
                &["adapter"],
                ADAPTER_BUCKETS,
            ),
            adapter_failures: CounterVec::new(
                "taskpod_adapter_failures_total",
                "Adapter calls that failed a task's launch, by adapter and reason.",
                &["adapter", "reason"],
            ),
            kube_errors: CounterVec::new(
                "taskpod_kube_api_errors_total",
                "Failed Kubernetes API requests, by verb, resource and HTTP status \
                 (`connection` when no status was received).",
                &["verb", "resource", "code"],
            ),
            watch_restarts: CounterVec::new(
                "taskpod_watch_restarts_total",
                "Job, Pod and Deployment watch streams that were interrupted and resumed (or relisted).",
                &["kind"],
            ),
            events: CounterVec::new(
                "taskpod_events_published_total",
                "Kubernetes Events written on Jobs, by reason.",
                &["reason"],
            ),
        }
    }

    /// A task entered `launching`: records its pending time (submission to launch).
    pub fn task_launched(&self, record: &TaskRecord) {
        if let Some(launched) = record.launched_at_ms {
            self.task_pending
                .observe(&[], ms_between(record.created_at_ms, launched));
        }
    }

    /// A task's pod started: records the pod startup time (launch to start).
    pub fn task_started(&self, record: &TaskRecord) {
        if let (Some(launched), Some(started)) = (record.launched_at_ms, record.started_at_ms) {
            self.pod_startup.observe(&[], ms_between(launched, started));
        }
    }

    /// A task ended: counts it by state and reason and, when its pod had started, records how
    /// long it ran.
    pub fn task_ended(&self, record: &TaskRecord) {
        let reason = record
            .reason
            .as_ref()
            .map(|r| r.code.as_str())
            .unwrap_or(ReasonCode::Completed.as_str());
        self.task_ends.inc(&[record.state.as_str(), reason]);
        if let (Some(started), Some(finished)) = (record.started_at_ms, record.finished_at_ms) {
            self.task_duration
                .observe(&[record.state.as_str()], ms_between(started, finished));
        }
    }

    /// One adapter call made to launch a task: its latency, and its failure reason when it failed.
    pub fn adapter_call(&self, adapter: &str, took: Duration, error: Option<&RenderError>) {
        self.adapter_calls.observe(&[adapter], took.as_secs_f64());
        if let Some(error) = error {
            self.adapter_failures
                .inc(&[adapter, adapter_failure_reason(error)]);
        }
    }

    /// An adapter's output was refused after the call (the tenant's policy): counted as a
    /// failure of `adapter` with `reason` (e.g. `policy`).
    pub fn adapter_refused(&self, adapter: &str, reason: &str) {
        self.adapter_failures.inc(&[adapter, reason]);
    }

    /// A Kubernetes API request failed. `code` is the HTTP status, `None` when none was
    /// received (connection refused, timeout, bad response).
    pub fn kube_error(&self, verb: &str, resource: &str, code: Option<u16>) {
        let code = code.map_or_else(|| "connection".to_owned(), |c| c.to_string());
        self.kube_errors.inc(&[verb, resource, &code]);
    }

    /// A watch stream (`jobs` or `pods`) was interrupted and is being resumed.
    pub fn watch_restarted(&self, kind: &str) {
        self.watch_restarts.inc(&[kind]);
    }

    /// An Event with `reason` was written on a Job.
    pub fn event_published(&self, reason: &str) {
        self.events.inc(&[reason]);
    }

    /// Appends every family as Prometheus text (exposition format 0.0.4).
    pub fn render(&self, out: &mut String) {
        self.pod_startup.render(out);
        self.task_pending.render(out);
        self.task_duration.render(out);
        self.task_ends.render(out);
        self.adapter_calls.render(out);
        self.adapter_failures.render(out);
        self.kube_errors.render(out);
        self.watch_restarts.render(out);
        self.events.render(out);
    }
}

/// The `reason` label of a failed adapter call: the kind of failure, never its message.
pub fn adapter_failure_reason(error: &RenderError) -> &'static str {
    use crate::adapters::Error as E;
    match error {
        RenderError::Config(_) => "config",
        RenderError::NoRoute { .. } => "no-route",
        RenderError::UnknownAdapter { .. } => "unknown-adapter",
        RenderError::Policy(_) => "policy",
        RenderError::TenantDisabled { .. } => "tenant-disabled",
        RenderError::Quarantined { .. } => "quarantined",
        RenderError::Adapter(e) => match e {
            E::InvalidTask { .. } => "invalid-task",
            E::InvalidConfig { .. } => "invalid-config",
            E::Internal { .. } => "internal",
            E::Timeout { .. } => "timeout",
            E::OutOfMemory { .. } => "out-of-memory",
            E::Panic { .. } => "panic",
            E::Trap { .. } => "trap",
            E::OutputTooLarge { .. } => "output-too-large",
            E::InvalidOutput(_) => "contract",
            _ => "load",
        },
    }
}

/// Seconds between two Unix-millisecond times (zero when the clock went backwards).
fn ms_between(from: i64, to: i64) -> f64 {
    (to - from).max(0) as f64 / 1000.0
}

/// Escapes a Prometheus label value (backslash, quote, newline).
pub fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn write_labels(out: &mut String, names: &[&str], values: &[String], extra: Option<(&str, &str)>) {
    let mut pairs: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape_label(v)))
        .collect();
    if let Some((n, v)) = extra {
        pairs.push(format!("{n}=\"{v}\""));
    }
    if !pairs.is_empty() {
        let _ = write!(out, "{{{}}}", pairs.join(","));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A counter family with fixed label names.
#[derive(Debug)]
struct CounterVec {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    values: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl CounterVec {
    fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        CounterVec {
            name,
            help,
            labels,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    fn inc(&self, values: &[&str]) {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        let key = values.iter().map(|v| (*v).to_owned()).collect();
        *lock(&self.values).entry(key).or_insert(0) += 1;
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} counter", self.name);
        for (values, n) in lock(&self.values).iter() {
            out.push_str(self.name);
            write_labels(out, self.labels, values, None);
            let _ = writeln!(out, " {n}");
        }
    }
}

/// One histogram's state.
#[derive(Debug, Clone)]
struct Histogram {
    /// Observations at or below each bucket bound (not cumulative).
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

/// A histogram family with fixed label names and bucket bounds. A family without labels shows
/// its (empty) histogram before the first observation.
#[derive(Debug)]
struct HistogramVec {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    bounds: &'static [f64],
    values: Mutex<BTreeMap<Vec<String>, Histogram>>,
}

impl HistogramVec {
    fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        bounds: &'static [f64],
    ) -> Self {
        let mut values = BTreeMap::new();
        if labels.is_empty() {
            values.insert(Vec::new(), Histogram::new(bounds.len()));
        }
        HistogramVec {
            name,
            help,
            labels,
            bounds,
            values: Mutex::new(values),
        }
    }

    fn observe(&self, values: &[&str], seconds: f64) {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        let key = values.iter().map(|v| (*v).to_owned()).collect();
        let mut all = lock(&self.values);
        let h = all
            .entry(key)
            .or_insert_with(|| Histogram::new(self.bounds.len()));
        if let Some(i) = self.bounds.iter().position(|b| seconds <= *b) {
            h.buckets[i] += 1;
        }
        h.count += 1;
        h.sum += seconds;
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} histogram", self.name);
        for (values, h) in lock(&self.values).iter() {
            let mut cumulative = 0;
            for (bound, n) in self.bounds.iter().zip(&h.buckets) {
                cumulative += n;
                let _ = write!(out, "{}_bucket", self.name);
                write_labels(out, self.labels, values, Some(("le", &bound.to_string())));
                let _ = writeln!(out, " {cumulative}");
            }
            let _ = write!(out, "{}_bucket", self.name);
            write_labels(out, self.labels, values, Some(("le", "+Inf")));
            let _ = writeln!(out, " {}", h.count);
            let _ = write!(out, "{}_sum", self.name);
            write_labels(out, self.labels, values, None);
            let _ = writeln!(out, " {}", h.sum);
            let _ = write!(out, "{}_count", self.name);
            write_labels(out, self.labels, values, None);
            let _ = writeln!(out, " {}", h.count);
        }
    }
}

impl Histogram {
    fn new(buckets: usize) -> Self {
        Histogram {
            buckets: vec![0; buckets],
            count: 0,
            sum: 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_escape_labels() {
        let m = Metrics::new();
        m.adapter_call("a\"b", Duration::from_millis(3), None);
        m.adapter_call("a\"b", Duration::from_millis(30), None);
        m.adapter_call("a\"b", Duration::from_secs(60), None);
        m.watch_restarted("jobs");
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains(
                "taskpod_adapter_call_seconds_bucket{adapter=\"a\\\"b\",le=\"0.005\"} 1\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("taskpod_adapter_call_seconds_bucket{adapter=\"a\\\"b\",le=\"0.05\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("taskpod_adapter_call_seconds_bucket{adapter=\"a\\\"b\",le=\"5\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("taskpod_adapter_call_seconds_bucket{adapter=\"a\\\"b\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("taskpod_adapter_call_seconds_count{adapter=\"a\\\"b\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("taskpod_watch_restarts_total{kind=\"jobs\"} 1\n"),
            "{out}"
        );
        // An unlabelled histogram is shown before its first observation.
        assert!(
            out.contains("taskpod_pod_startup_seconds_count 0\n"),
            "{out}"
        );
    }
}
