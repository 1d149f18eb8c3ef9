//! Throughput of the store under concurrent load: the figures behind the runner's
//! "≥ 1,000 submitted tasks/s with FULL durability" goal, for `taskpod bench`.
//!
//! Each of `concurrency` tokio tasks submits tasks (and, in lifecycle mode, drives each one
//! `pending → launching → running → succeeded`) as fast as the store acknowledges them, the
//! way concurrent API requests and watch events do. Latencies are per acknowledged write.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{NewTask, ReasonCode, Result, Store, TaskState, Transition};

/// What to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchSpec {
    /// Tasks to submit.
    pub tasks: usize,
    /// Concurrent submitters.
    pub concurrency: usize,
    /// Also store the three transitions of a successful run for every task.
    pub lifecycle: bool,
    /// Payload of every task (JSON object); ids are made unique by the benchmark.
    pub payload: String,
    /// Prefix of the generated task ids (lets several runs share one file).
    pub id_prefix: String,
}

impl Default for BenchSpec {
    fn default() -> Self {
        BenchSpec {
            tasks: 10_000,
            concurrency: 64,
            lifecycle: false,
            payload: r#"{"type":"index_parallel","spec":{"dataSchema":{"dataSource":"wikipedia"},"ioConfig":{"type":"index_parallel"},"tuningConfig":{"maxNumConcurrentSubTasks":2}}}"#.to_string(),
            id_prefix: "bench".to_string(),
        }
    }
}

/// Measured figures.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// Tasks submitted (and driven to the end in lifecycle mode).
    pub tasks: usize,
    /// Acknowledged writes (submits + transitions).
    pub writes: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Tasks per second.
    pub tasks_per_second: f64,
    /// Writes per second.
    pub writes_per_second: f64,
    /// Commits made (one fsync each with FULL durability).
    pub commits: u64,
    /// Median acknowledgement latency of a write.
    pub p50: Duration,
    /// 99th percentile acknowledgement latency of a write.
    pub p99: Duration,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} tasks, {} writes in {:.3}s: {:.0} tasks/s, {:.0} writes/s, {} commits \
             ({:.1} writes/commit), ack latency p50 {:.2} ms p99 {:.2} ms",
            self.tasks,
            self.writes,
            self.elapsed.as_secs_f64(),
            self.tasks_per_second,
            self.writes_per_second,
            self.commits,
            self.writes as f64 / self.commits.max(1) as f64,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
        )
    }
}

/// Runs the benchmark against `store` (which should be freshly opened for clean figures).
pub async fn run(store: &Store, spec: &BenchSpec) -> Result<BenchReport> {
    let next = Arc::new(AtomicUsize::new(0));
    let commits_before = store.stats().commits;
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..spec.concurrency.max(1) {
        let store = store.clone();
        let next = next.clone();
        let spec = spec.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= spec.tasks {
                    break;
                }
                let id = format!("{}-{i:08}", spec.id_prefix);
                let t = Instant::now();
                store
                    .submit(NewTask::new(
                        &id,
                        "index_parallel",
                        format!("tenant-{}", i % 8),
                        spec.payload.as_str(),
                    ))
                    .await?;
                latencies.push(t.elapsed());
                if spec.lifecycle {
                    let steps = [
                        Transition::new(&id, TaskState::Pending, TaskState::Launching)
                            .job_name(format!("job-{i:08}")),
                        Transition::new(&id, TaskState::Launching, TaskState::Running),
                        Transition::new(&id, TaskState::Running, TaskState::Succeeded)
                            .reason(ReasonCode::Completed, "")
                            .exit_code(0),
                    ];
                    for step in steps {
                        let t = Instant::now();
                        store.transition(step).await?;
                        latencies.push(t.elapsed());
                    }
                }
            }
            Ok::<_, super::StoreError>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(spec.tasks * 4);
    for worker in workers {
        let mut part = worker.await.map_err(|e| super::StoreError::Database {
            context: "running a benchmark worker".to_string(),
            detail: e.to_string(),
        })??;
        latencies.append(&mut part);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    let secs = elapsed.as_secs_f64().max(1e-9);
    Ok(BenchReport {
        tasks: spec.tasks,
        writes: latencies.len(),
        elapsed,
        tasks_per_second: spec.tasks as f64 / secs,
        writes_per_second: latencies.len() as f64 / secs,
        commits: store.stats().commits - commits_before,
        p50: pick(0.5),
        p99: pick(0.99),
    })
}
