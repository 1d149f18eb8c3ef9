//! `cargo bench -p taskpod-sim --bench scale`: the simulated cluster's scale benchmark (10,000
//! Jobs with their pods, then a burst of mixed requests), printing the server-side request
//! rates. `TASKPOD_BENCH_JOBS`, `TASKPOD_BENCH_CONCURRENCY` and `TASKPOD_BENCH_WORKERS` (controller
//! workers) override the defaults.

use taskpod_sim::bench::{ScaleOptions, scale};

fn env_usize(key: &str) -> anyhow::Result<Option<usize>> {
    match std::env::var(key) {
        Ok(v) => Ok(Some(v.parse().map_err(|e| {
            anyhow::anyhow!("{key}={v:?} is not a positive integer: {e}")
        })?)),
        Err(_) => Ok(None),
    }
}

fn main() -> anyhow::Result<()> {
    let mut opts = ScaleOptions::default();
    if let Some(n) = env_usize("TASKPOD_BENCH_JOBS")? {
        opts.jobs = n;
    }
    if let Some(c) = env_usize("TASKPOD_BENCH_CONCURRENCY")? {
        opts.concurrency = c;
    }
    if let Some(w) = env_usize("TASKPOD_BENCH_WORKERS")? {
        opts.controller_workers = w;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(scale(opts))?;
    println!("{report}");
    Ok(())
}
