//! The store benchmark's driver with full durability: it must complete, store every task and
//! its transitions, and batch concurrent writes into shared commits. The figures are printed,
//! never asserted (they come from `taskpod::store::bench`, which `taskpod bench` runs too).
//! For figures at scale: `TASKPOD_STORE_BENCH_TASKS=20000 cargo test --release -p taskpod
//! --test store_throughput -- --nocapture`.

use anyhow::Result;
use taskpod::store::bench::{self, BenchSpec};
use taskpod::store::{ListQuery, Store, StoreOptions, Synchronous, TaskState};

fn tasks() -> usize {
    std::env::var("TASKPOD_STORE_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_500)
}

fn open(dir: &tempfile::TempDir) -> Result<Store> {
    Ok(Store::open(
        dir.path().join("bench.db"),
        StoreOptions {
            synchronous: Synchronous::Full,
            ..StoreOptions::default()
        },
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submits_are_group_committed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let n = tasks();
    let spec = BenchSpec {
        tasks: n,
        concurrency: 64,
        lifecycle: false,
        ..BenchSpec::default()
    };
    let report = bench::run(&store, &spec).await?;
    eprintln!("store bench, submit only, synchronous=FULL: {report}");
    assert_eq!(report.writes, n);
    assert_eq!(store.counts().await?.state(TaskState::Pending), n as u64);
    assert_eq!(store.non_terminal().await?.len(), n);
    assert!(store.stats().largest_batch > 1, "{:?}", store.stats());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lifecycles_are_group_committed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let n = tasks();
    let spec = BenchSpec {
        tasks: n,
        concurrency: 64,
        lifecycle: true,
        ..BenchSpec::default()
    };
    let report = bench::run(&store, &spec).await?;
    eprintln!("store bench, submit + 3 transitions, synchronous=FULL: {report}");

    assert_eq!(report.writes, n * 4);
    let counts = store.counts().await?;
    assert_eq!(counts.state(TaskState::Succeeded), n as u64);
    assert_eq!(counts.by_state.len(), 1, "{counts:?}");
    let stats = store.stats();
    assert_eq!(stats.commands, n as u64 * 4);
    assert!(
        stats.largest_batch > 1,
        "concurrent writes share commits: {stats:?}"
    );
    assert!(report.commits < report.writes as u64, "{report}");

    let page = store
        .list(ListQuery {
            limit: 5,
            ..ListQuery::default()
        })
        .await?;
    assert!(
        page.tasks
            .iter()
            .all(|t| t.attempt == 1 && t.exit_code == Some(0))
    );
    store.check_integrity().await?;
    Ok(())
}
