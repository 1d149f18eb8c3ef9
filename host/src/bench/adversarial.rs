//! `taskpod bench adversarial`: hostile adapters next to a well-behaved one (R3).
//!
//! One [`Renderer`] — the code path `serve` launches every task through (adapter call in a
//! fresh sandbox, Job contract, output policy) — holds two adapters: the built-in pod-template
//! adapter on Druid's example template (the well-behaved tenant) and the hostile test guest
//! (`tests/guests/hostile`, built with the host; limits 64 MiB, 500 ms and one call at a time —
//! the per-tenant concurrency limit is what keeps a flood of hostile calls to its share of the
//! CPU). The benchmark
//! measures (1) how long each hostile component takes to be refused, with the reason, (2) the
//! well-behaved adapter's render latency quiet, and (3) the same while `hostile_threads` threads
//! render hostile tasks without pause (loops, memory bombs, deep recursion, traps, 100 MB
//! outputs, privileged pods …). The goal is a p99 under load within 2× of the quiet p99.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{BenchError, Latency, latency};
use crate::adapters::{Runtime, RuntimeOptions};
use crate::config::Config;
use crate::render::{RenderError, Renderer};
use crate::task::SubmittedTask;

const BASE_TEMPLATE: &str = include_str!("../../../examples/druid/pod-templates/base.yaml");
const TASK: &str = include_str!("../../../examples/druid/tasks/index-parallel.json");

/// The hostile modes measured, each refused by the sandbox, the contract or the policy.
pub const HOSTILE_MODES: &[&str] = &[
    "loop",
    "memory-bomb",
    "deep-recursion",
    "trap",
    "huge-output",
    "invalid-json",
    "other-namespace",
    "privileged",
    "host-path",
    "host-network",
    "service-account",
    "companion-privileged",
    "service-load-balancer",
];

/// Time to refusal of one hostile mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The mode.
    pub mode: &'static str,
    /// From the start of the render to the error.
    pub took: Duration,
    /// The start of the error message (which rule or limit).
    pub reason: String,
}

/// The benchmark's result.
#[derive(Debug, Clone, PartialEq)]
pub struct AdversarialReport {
    /// Renders measured per phase.
    pub iterations: usize,
    /// Threads rendering hostile tasks in the loaded phase.
    pub hostile_threads: usize,
    /// Each hostile mode, rendered alone.
    pub refusals: Vec<Refusal>,
    /// The well-behaved adapter alone.
    pub quiet: Latency,
    /// The well-behaved adapter while the hostile ones run.
    pub loaded: Latency,
    /// Hostile renders completed (all refused) during the loaded phase.
    pub hostile_refused: u64,
}

impl AdversarialReport {
    /// Loaded p99 / quiet p99 (goal ≤ 2).
    pub fn p99_ratio(&self) -> f64 {
        self.loaded.p99.as_secs_f64() / self.quiet.p99.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for AdversarialReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        writeln!(
            f,
            "hostile components, each rendered alone (sandbox + contract + policy), time to refusal:"
        )?;
        for r in &self.refusals {
            writeln!(f, "  {:<22} {:>8.1} ms   {}", r.mode, ms(r.took), r.reason)?;
        }
        writeln!(
            f,
            "well-behaved adapter (pod-template, Druid example), {} renders per phase:",
            self.iterations
        )?;
        writeln!(
            f,
            "  quiet:                        p50 {:>7.2} ms   p99 {:>7.2} ms",
            ms(self.quiet.p50),
            ms(self.quiet.p99)
        )?;
        writeln!(
            f,
            "  with {} hostile threads:       p50 {:>7.2} ms   p99 {:>7.2} ms   ({} hostile renders refused meanwhile)",
            self.hostile_threads,
            ms(self.loaded.p50),
            ms(self.loaded.p99),
            self.hostile_refused
        )?;
        writeln!(
            f,
            "  p99 loaded / quiet: {:.2}x (goal <= 2x)",
            self.p99_ratio()
        )
    }
}

fn hostile_task(id: u64, mode: &str) -> Result<SubmittedTask, BenchError> {
    SubmittedTask::parse(&format!(
        r#"{{"id": "hostile-{id}", "type": "hostile", "payload": {{"mode": "{mode}"}}}}"#
    ))
    .map_err(|e| BenchError::Inputs(e.to_string()))
}

/// A one-line reason: the rule or limit, without the adapter's long details.
fn short(error: &RenderError) -> String {
    let text = error.to_string();
    let cut: String = text.chars().take(110).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// Runs the benchmark (see the module documentation).
pub fn run(iterations: usize, hostile_threads: usize) -> Result<AdversarialReport, BenchError> {
    let dir = tempfile::tempdir().map_err(|e| BenchError::Inputs(e.to_string()))?;
    std::fs::write(dir.path().join("base.yaml"), BASE_TEMPLATE)
        .map_err(|e| BenchError::Inputs(e.to_string()))?;
    let config_text = format!(
        "namespace: druid\ncacheDir: {cache}\nadapters:\n  - name: tenant-good\n    component: builtin:pod-template\n    templates:\n      base: base.yaml\n  - name: tenant-hostile\n    component: {hostile}\n    config: {{mode: ok}}\n    limits: {{memory: 64Mi, timeout: 500ms, concurrency: 1}}\nrouting:\n  default: tenant-good\n  byType:\n    hostile: tenant-hostile\n",
        cache = dir.path().join("cache").display(),
        hostile = crate::adapters::guests::HOSTILE_PATH,
    );
    let path = dir.path().join("taskpod.yaml");
    std::fs::write(&path, config_text).map_err(|e| BenchError::Inputs(e.to_string()))?;
    let config = Config::load(&path).map_err(|e| BenchError::Inputs(e.to_string()))?;
    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: config.cache_dir.clone(),
        ..RuntimeOptions::default()
    })?;
    let renderer =
        Arc::new(Renderer::new(config, runtime).map_err(|e| BenchError::Inputs(e.to_string()))?);
    let good = SubmittedTask::parse(TASK).map_err(|e| BenchError::Inputs(e.to_string()))?;
    let render_good = |renderer: &Renderer| -> Result<Duration, BenchError> {
        let start = Instant::now();
        renderer
            .render_blocking(&good)
            .map_err(|e| BenchError::Inputs(format!("the well-behaved adapter failed: {e}")))?;
        Ok(start.elapsed())
    };
    for _ in 0..(iterations / 10).max(10) {
        render_good(&renderer)?;
    }

    let mut refusals = Vec::new();
    for (i, mode) in HOSTILE_MODES.iter().enumerate() {
        let task = hostile_task(i as u64, mode)?;
        let start = Instant::now();
        let result = renderer.render_blocking(&task);
        let took = start.elapsed();
        let Err(error) = result else {
            return Err(BenchError::Inputs(format!(
                "hostile mode {mode} was not refused"
            )));
        };
        refusals.push(Refusal {
            mode,
            took,
            reason: short(&error),
        });
    }

    let quiet = (0..iterations)
        .map(|_| render_good(&renderer))
        .collect::<Result<Vec<_>, _>>()?;

    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for t in 0..hostile_threads {
        let renderer = Arc::clone(&renderer);
        let stop = Arc::clone(&stop);
        let refused = Arc::clone(&refused);
        workers.push(std::thread::spawn(move || {
            let mut n = t as u64 * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                let mode = HOSTILE_MODES[n as usize % HOSTILE_MODES.len()];
                if let Ok(task) = hostile_task(n, mode)
                    && renderer.render_blocking(&task).is_err()
                {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
        }));
    }
    // Let the hostile threads get going before measuring.
    std::thread::sleep(Duration::from_millis(200));
    let loaded = (0..iterations)
        .map(|_| render_good(&renderer))
        .collect::<Result<Vec<_>, _>>();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    let loaded = loaded?;
    Ok(AdversarialReport {
        iterations,
        hostile_threads,
        refusals,
        quiet: latency(quiet),
        loaded: latency(loaded),
        hostile_refused: refused.load(Ordering::Relaxed),
    })
}
