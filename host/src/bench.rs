//! `taskpod bench adapters`: what a sandboxed adapter call costs compared with native code.
//!
//! One run measures the built-in pod-template adapter on Druid's example PodTemplate and task
//! (both embedded from examples/druid at build time): (1) through the same runtime path `serve`
//! uses — a fresh store and instance per call, after a warm-up — and (2) the same Rust
//! transformation compiled natively (`<PodTemplateAdapter as Adapter>::adapt` from the rlib),
//! with the same inputs. It reports p50/p99 of each and the ratio of the medians. Figures belong
//! in benchmarks, never in timed tests.

pub mod adversarial;

use std::fmt;
use std::time::{Duration, Instant};

use taskpod_adapter_pod_template::PodTemplateAdapter;
use taskpod_adapter_sdk::{self as sdk, Adapter as _};

use crate::adapters::{self, AdapterSpec, ComponentSource, Runtime, RuntimeOptions};
use crate::task::SubmittedTask;

const BASE_TEMPLATE: &str = include_str!("../../examples/druid/pod-templates/base.yaml");
const TASK: &str = include_str!("../../examples/druid/tasks/index-parallel.json");

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The embedded inputs are unusable (a build problem).
    #[error("benchmark inputs: {0}")]
    Inputs(String),
    /// The adapter failed.
    #[error(transparent)]
    Adapter(#[from] adapters::Error),
    /// The native adapter failed.
    #[error("native pod-template adapter: {0}")]
    Native(sdk::AdapterError),
    /// The sandboxed and native outputs differ, so the comparison would be meaningless.
    #[error("the sandboxed and native adapters produced different Jobs")]
    Mismatch,
}

/// Latency percentiles of one side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Mean.
    pub mean: Duration,
}

/// The benchmark's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Measured calls per side.
    pub iterations: usize,
    /// Fresh sandboxed instance per call.
    pub sandboxed: Latency,
    /// Native call.
    pub native: Latency,
    /// A fresh instance and the smallest call (`info`): the fixed cost of isolation.
    pub overhead: Latency,
}

impl Report {
    /// Sandboxed p50 / native p50.
    pub fn ratio(&self) -> f64 {
        self.sandboxed.p50.as_secs_f64() / self.native.p50.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        writeln!(
            f,
            "adapter pod-template, Druid example PodTemplate + index_parallel task, {} calls each",
            self.iterations
        )?;
        writeln!(
            f,
            "  sandboxed (fresh instance per call): p50 {:>8.1} µs   p99 {:>8.1} µs   mean {:>8.1} µs",
            us(self.sandboxed.p50),
            us(self.sandboxed.p99),
            us(self.sandboxed.mean)
        )?;
        writeln!(
            f,
            "  native (same Rust code):             p50 {:>8.1} µs   p99 {:>8.1} µs   mean {:>8.1} µs",
            us(self.native.p50),
            us(self.native.p99),
            us(self.native.mean)
        )?;
        writeln!(
            f,
            "  sandbox overhead (fresh instance + `info` call): p50 {:>8.1} µs   p99 {:>8.1} µs",
            us(self.overhead.p50),
            us(self.overhead.p99)
        )?;
        writeln!(f, "  ratio sandboxed/native (p50): {:.2}x", self.ratio())?;
        writeln!(
            f,
            "  goal: p50 <= 100 µs and <= 2.5x native: {}",
            if us(self.sandboxed.p50) <= 100.0 && self.ratio() <= 2.5 {
                "met"
            } else {
                "NOT met"
            }
        )
    }
}

/// The task and context the benchmark uses.
pub fn inputs() -> Result<(sdk::Task, sdk::Context), BenchError> {
    let template: serde_json::Value =
        serde_yaml::from_str(BASE_TEMPLATE).map_err(|e| BenchError::Inputs(e.to_string()))?;
    let task = SubmittedTask::parse(TASK)
        .map_err(|e| BenchError::Inputs(e.to_string()))?
        .to_sdk();
    let context = sdk::Context {
        namespace: "druid".to_owned(),
        config: "{}".to_owned(),
        base_pod: None,
        templates: vec![("base".to_owned(), template.to_string())],
        job_name: sdk::names::job_name(&task.id),
        labels: vec![("team".to_owned(), "analytics".to_owned())],
        annotations: Vec::new(),
        limits: sdk::Limits::default(),
    };
    Ok((task, context))
}

/// Runs the benchmark: `warmup` unmeasured then `iterations` measured calls per side.
pub fn adapters(iterations: usize, warmup: usize) -> Result<Report, BenchError> {
    let iterations = iterations.max(10);
    let (task, ctx) = inputs()?;
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let adapter = runtime.load(AdapterSpec {
        name: "pod-template".to_owned(),
        source: ComponentSource::Builtin("pod-template".to_owned()),
        config: "{}".to_owned(),
        limits: adapters::Limits::default(),
    })?;

    let sandboxed_output = adapter.adapt_blocking(&task, &ctx)?;
    let native_output = PodTemplateAdapter::adapt(&task, &ctx).map_err(BenchError::Native)?;
    if sandboxed_output != native_output {
        return Err(BenchError::Mismatch);
    }

    for _ in 0..warmup {
        std::hint::black_box(adapter.adapt_blocking(&task, &ctx)?);
    }
    let mut sandboxed = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        std::hint::black_box(adapter.adapt_blocking(&task, &ctx)?);
        sandboxed.push(start.elapsed());
    }

    for _ in 0..warmup {
        std::hint::black_box(PodTemplateAdapter::adapt(&task, &ctx).map_err(BenchError::Native)?);
    }
    let mut native = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        std::hint::black_box(PodTemplateAdapter::adapt(&task, &ctx).map_err(BenchError::Native)?);
        native.push(start.elapsed());
    }

    let mut overhead = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        std::hint::black_box(adapter.call_info()?);
        overhead.push(start.elapsed());
    }

    Ok(Report {
        iterations,
        sandboxed: latency(sandboxed),
        native: latency(native),
        overhead: latency(overhead),
    })
}

fn latency(mut samples: Vec<Duration>) -> Latency {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let total: Duration = samples.iter().sum();
    Latency {
        p50: at(0.50),
        p99: at(0.99),
        mean: total / samples.len() as u32,
    }
}
