//! Crash safety (R1): the real `taskpod serve` binary is killed with SIGKILL at seeded random
//! points — during start-up and restore as well as while serving — at least 20 times during a
//! run of 500 tasks submitted over HTTP, and restarted on the same store each time. At the end
//! every acknowledged task is terminal with the outcome its type dictates (succeeded, or failed
//! with exit code 3), none is lost, every task's log holds its pod's output exactly once, and the
//! simulated cluster's create counters show exactly one Job creation per task.

mod chaos;

use std::sync::Arc;
use std::time::Duration;

use chaos::{
    Cluster, check_logs, check_outcomes, delay, plan, sigkill, submit_all, wait_all_terminal,
};
use rand::Rng;
use tokio::sync::watch;

const TASKS: usize = 500;
const KILLS: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_no_task_and_creates_no_job_twice() {
    let seed = chaos::seed();
    let mut rng = chaos::rng(seed);
    let mut cluster = Cluster::start(64).await;
    let plan = Arc::new(plan(TASKS));
    let (server, servers) = watch::channel(None);
    let mut host = cluster.start_host().await;
    server.send_replace(Some(host.client.clone()));
    let submitter = tokio::spawn(submit_all(
        Arc::clone(&plan),
        servers,
        4,
        Duration::from_millis(60),
        Duration::from_secs(150),
    ));
    let mut early = 0;
    for kill in 0..KILLS {
        tokio::time::sleep(delay(&mut rng, 50, 1500)).await;
        server.send_replace(None);
        host.kill().await;
        // One restart in four is killed again during start-up (opening the store, restore),
        // before it listens.
        if rng.random_range(0..4) == 0 {
            let child = cluster.spawn_host();
            tokio::time::sleep(delay(&mut rng, 0, 400)).await;
            sigkill(child).await;
            early += 1;
        }
        host = cluster.start_host().await;
        server.send_replace(Some(host.client.clone()));
        eprintln!("kill {} done", kill + 1);
    }
    eprintln!("{KILLS} kills while serving, {early} more during start-up (seed {seed})");
    let acked = submitter.await.expect("submitter");
    assert_eq!(acked.len(), TASKS, "every task acknowledged");
    assert!(
        host.wait_ready(30).await,
        "the last host is not ready; {}",
        cluster.log_tail()
    );
    let tasks = wait_all_terminal(&cluster, &host, &plan, 90).await;
    check_outcomes(&cluster, &plan, &acked, &tasks);
    check_logs(&host, &plan).await;
    host.kill().await;
}
