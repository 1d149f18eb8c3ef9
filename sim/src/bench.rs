//! The scale benchmark of the simulated cluster: many Jobs run to completion with their pods,
//! with the controllers and kubelets on, then a burst of mixed API requests against the
//! populated store. It reports requests per second as counted by the server itself.
//!
//! Called by `cargo bench -p taskpod-sim --bench scale` (sim/benches/scale.rs) and meant for a
//! `taskpod bench sim` command. The goal (issue 3): 10,000 Jobs with their pods and ≥ 5,000
//! requests/s on loopback on a 2-core machine. A benchmark, never a test: nothing here asserts a
//! time.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

use crate::controllers::{Behavior, ControllerConfig, NodeSpec, Timing};
use crate::{Sim, SimError, SimOptions};

/// Parameters of the scale run.
#[derive(Clone, Debug)]
pub struct ScaleOptions {
    /// Number of Jobs (each with one pod).
    pub jobs: usize,
    /// Concurrent client requests while creating Jobs and during the burst.
    pub concurrency: usize,
    /// Simulated nodes (each with room for every pod).
    pub nodes: usize,
    /// Run time of each simulated container, in seconds.
    pub run_seconds: f64,
    /// Length of the mixed-request burst after the Jobs complete.
    pub burst: Duration,
    /// Give up waiting for completion after this long.
    pub timeout: Duration,
    /// Concurrent workers per simulated controller (0 = the controllers' default, 8).
    pub controller_workers: usize,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        Self {
            jobs: 10_000,
            concurrency: 32,
            nodes: 20,
            run_seconds: 0.5,
            burst: Duration::from_secs(5),
            timeout: Duration::from_secs(900),
            controller_workers: 32,
        }
    }
}

/// What the scale run measured.
#[derive(Clone, Debug)]
pub struct ScaleReport {
    /// Jobs created.
    pub jobs: usize,
    /// Jobs that reached `Complete`.
    pub completed: usize,
    /// Pods created (by the Job controller).
    pub pods_created: usize,
    /// The largest number of creates of any one Job name (1 = none created twice).
    pub max_creates_per_job: u64,
    /// Time to create every Job.
    pub create_time: Duration,
    /// Time from the first create to the last completion.
    pub lifecycle_time: Duration,
    /// Requests the server answered during the lifecycle phase (clients and controllers).
    pub lifecycle_requests: u64,
    /// Requests the server answered during the burst.
    pub burst_requests: u64,
    /// Length of the burst.
    pub burst_time: Duration,
    /// CPU time the whole process (server, controllers, clients) used during the lifecycle
    /// phase, when the platform reports it (Linux `/proc/self/stat`).
    pub lifecycle_cpu: Option<Duration>,
    /// CPU time the process used during the burst.
    pub burst_cpu: Option<Duration>,
}

/// CPU time (user + system, all threads) of this process so far, from `/proc/self/stat`
/// (fields 14 and 15, in USER_HZ = 100 ticks per second, fixed by the Linux ABI). `None`
/// elsewhere.
pub fn process_cpu_time() -> Option<Duration> {
    parse_proc_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// utime + stime of a `/proc/PID/stat` line.
fn parse_proc_stat(stat: &str) -> Option<Duration> {
    // The command name (field 2) is parenthesised and may contain spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn cpu_since(start: Option<Duration>) -> Option<Duration> {
    Some(process_cpu_time()?.saturating_sub(start?))
}

impl ScaleReport {
    /// Server-side requests per second over the lifecycle phase.
    pub fn lifecycle_rps(&self) -> f64 {
        self.lifecycle_requests as f64 / self.lifecycle_time.as_secs_f64().max(1e-9)
    }

    /// Server-side requests per second during the mixed burst.
    pub fn burst_rps(&self) -> f64 {
        self.burst_requests as f64 / self.burst_time.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for ScaleReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "jobs: {} created, {} complete, {} pods created, max creates per job name {}",
            self.jobs, self.completed, self.pods_created, self.max_creates_per_job
        )?;
        writeln!(
            f,
            "lifecycle: create {:.1} s, all complete after {:.1} s, {} requests, {:.0} requests/s",
            self.create_time.as_secs_f64(),
            self.lifecycle_time.as_secs_f64(),
            self.lifecycle_requests,
            self.lifecycle_rps()
        )?;
        writeln!(
            f,
            "burst (get, list by label, merge patch): {} requests in {:.1} s, {:.0} requests/s",
            self.burst_requests,
            self.burst_time.as_secs_f64(),
            self.burst_rps()
        )?;
        let per_cpu = |n: u64, cpu: Option<Duration>| {
            cpu.map_or("n/a".to_owned(), |c| {
                format!(
                    "{:.1} CPU-s, {:.0} requests per CPU-second",
                    c.as_secs_f64(),
                    n as f64 / c.as_secs_f64().max(1e-9)
                )
            })
        };
        write!(
            f,
            "process CPU: lifecycle {}; burst {}",
            per_cpu(self.lifecycle_requests, self.lifecycle_cpu),
            per_cpu(self.burst_requests, self.burst_cpu)
        )
    }
}

/// Why the scale run could not finish.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The simulated cluster did not start.
    #[error("starting the simulated cluster: {0}")]
    Sim(#[from] SimError),
    /// An API request failed.
    #[error("API request failed during the scale run: {0}")]
    Kube(#[from] kube::Error),
    /// The Jobs' watch failed.
    #[error("watching Jobs failed: {0}")]
    Watch(#[from] watcher::Error),
    /// Not every Job completed in time.
    #[error(
        "only {done} of {total} Jobs completed within {timeout:?}; raise ScaleOptions::timeout or lower jobs"
    )]
    Timeout {
        /// Jobs complete.
        done: usize,
        /// Jobs created.
        total: usize,
        /// The limit.
        timeout: Duration,
    },
}

fn is_complete(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        })
}

/// Runs the scale benchmark (see the module documentation).
pub async fn scale(opts: ScaleOptions) -> Result<ScaleReport, BenchError> {
    let nodes = (0..opts.nodes.max(1))
        .map(|i| {
            NodeSpec::new(format!("bench-node-{i}"), 10_000_000, 1 << 44)
                .with_max_pods(u32::try_from(opts.jobs).unwrap_or(u32::MAX).max(110))
        })
        .collect();
    let mut behavior = Behavior::default();
    behavior.default.run_seconds = Some(opts.run_seconds);
    behavior.default.log_lines = Some(2);
    let sim = Sim::start(SimOptions {
        controllers: ControllerConfig {
            nodes,
            behavior,
            timing: Timing::fast(),
            workers: opts.controller_workers,
            ..Default::default()
        },
        ..Default::default()
    })
    .await?;
    let result = run(&sim, &opts).await;
    sim.shutdown().await;
    result
}

async fn run(sim: &Sim, opts: &ScaleOptions) -> Result<ScaleReport, BenchError> {
    sim.controllers().ready().await;
    let client = sim.client();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let counters = sim.counters();
    counters.reset();

    // Completion is observed through one watch, as taskpod's host observes its Jobs.
    let watch_api = jobs.clone();
    let total = opts.jobs;
    let completion = tokio::spawn(async move {
        let mut done = HashSet::new();
        let mut stream =
            watcher(watch_api, watcher::Config::default().labels("bench=scale")).boxed();
        while let Some(ev) = stream.try_next().await? {
            match ev {
                watcher::Event::Apply(j) | watcher::Event::InitApply(j) if is_complete(&j) => {
                    done.insert(j.metadata.name.unwrap_or_default());
                }
                _ => {}
            }
            if done.len() >= total {
                break;
            }
        }
        Ok::<usize, watcher::Error>(done.len())
    });

    let started = Instant::now();
    let cpu_start = process_cpu_time();
    let creates = futures::stream::iter(0..opts.jobs)
        .map(|i| {
            let jobs = jobs.clone();
            async move {
                let job: Job = serde_json::from_value(json!({
                    "apiVersion": "batch/v1", "kind": "Job",
                    "metadata": {"name": format!("bench-{i:05}"), "labels": {"bench": "scale"}},
                    "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
                        "containers": [{"name": "main", "image": "busybox:1.36"}]}}}
                }))
                .map_err(kube::Error::SerdeError)?;
                jobs.create(&PostParams::default(), &job).await.map(|_| ())
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .try_collect::<Vec<()>>();
    creates.await?;
    let create_time = started.elapsed();
    let completed =
        match tokio::time::timeout(opts.timeout.saturating_sub(create_time), completion).await {
            Ok(Ok(r)) => r?,
            Ok(Err(join)) => {
                tracing::error!(error = %join, "the completion watcher panicked");
                0
            }
            Err(_) => 0,
        };
    let lifecycle_time = started.elapsed();
    let lifecycle_cpu = cpu_since(cpu_start);
    let lifecycle_requests = counters.total_requests();
    if completed < opts.jobs {
        return Err(BenchError::Timeout {
            done: completed,
            total: opts.jobs,
            timeout: opts.timeout,
        });
    }
    let pods_created = counters.distinct_creates("Pod");
    let max_creates_per_job = counters.max_creates_per_name("Job");

    // Burst: gets, label-selected lists and merge patches over the populated store.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let before = counters.total_requests();
    let burst_start = Instant::now();
    let burst_cpu_start = process_cpu_time();
    let deadline = burst_start + opts.burst;
    let workers = (0..opts.concurrency.max(1)).map(|w| {
        let jobs = jobs.clone();
        let pods = pods.clone();
        let n = opts.jobs.max(1);
        async move {
            let mut i = w;
            while Instant::now() < deadline {
                let name = format!("bench-{:05}", i % n);
                match i % 4 {
                    0 | 1 => {
                        jobs.get(&name).await?;
                    }
                    2 => {
                        pods.list(&ListParams::default().labels(&format!("job-name={name}")))
                            .await?;
                    }
                    _ => {
                        jobs.patch(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"metadata": {"annotations": {"bench/touched": i.to_string()}}})),
                        )
                        .await?;
                    }
                }
                i += opts.concurrency.max(1);
            }
            Ok::<(), kube::Error>(())
        }
    });
    futures::future::try_join_all(workers).await?;
    let burst_time = burst_start.elapsed();
    let burst_cpu = cpu_since(burst_cpu_start);
    let burst_requests = counters.total_requests() - before;
    Ok(ScaleReport {
        jobs: opts.jobs,
        completed,
        pods_created,
        max_creates_per_job,
        create_time,
        lifecycle_time,
        lifecycle_requests,
        burst_requests,
        burst_time,
        lifecycle_cpu,
        burst_cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_cpu_fields_are_read_after_the_command_name() {
        let line =
            "4242 (scale bench) R 1 4242 4242 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_proc_stat(line), Some(Duration::from_millis(3250)));
        assert_eq!(parse_proc_stat("garbage"), None);
    }
}
