//! The store benchmark's driver at a small scale, with full durability: it must complete,
//! store every task and its transitions, and batch concurrent writes into shared commits.
//! The figures (printed) come from `taskpod::store::bench`, which `taskpod bench` runs at full
//! scale; no timing is asserted here.

use anyhow::Result;
use taskpod::store::bench::{self, BenchSpec};
use taskpod::store::{ListQuery, Store, StoreOptions, Synchronous, TaskState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lifecycles_are_group_committed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(
        dir.path().join("bench.db"),
        StoreOptions {
            synchronous: Synchronous::Full,
            ..StoreOptions::default()
        },
    )?;
    let spec = BenchSpec {
        tasks: 1_500,
        concurrency: 64,
        lifecycle: true,
        ..BenchSpec::default()
    };
    let report = bench::run(&store, &spec).await?;
    eprintln!("store bench (debug build, FULL): {report}");

    assert_eq!(report.tasks, 1_500);
    assert_eq!(report.writes, 1_500 * 4);
    let counts = store.counts().await?;
    assert_eq!(counts.state(TaskState::Succeeded), 1_500);
    assert_eq!(counts.by_state.len(), 1, "{counts:?}");
    let stats = store.stats();
    assert_eq!(stats.commands, 1_500 * 4);
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
