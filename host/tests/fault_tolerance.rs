//! Fault tolerance (R2): the real `taskpod serve` binary runs 500 tasks submitted over HTTP while
//! the simulated API server fails 10 % of the requests of every verb (500 InternalError for
//! reads, watches and patches; 429 TooManyRequests with `Retry-After` for creates, lists and
//! deletes), ends every watch stream after two seconds, and compacts its history every few
//! seconds so that resuming watches get 410 Gone and relist. The host is also SIGKILLed and
//! restarted a few times. At the end every task is terminal with the outcome its type dictates
//! (succeeded with exit code 0, or failed with reason `exit-code` and exit code 3), every
//! succeeded task went through `running` (no missed transition), every log holds its pod's output
//! exactly once, and no Job was created twice.

mod chaos;

use std::sync::Arc;
use std::time::Duration;

use chaos::{Cluster, check_logs, check_outcomes, delay, plan, submit_all, wait_all_terminal};
use taskpod::store::TaskState;
use tokio::sync::watch;

const TASKS: usize = 500;
const KILLS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_dropped_watches_and_410_gone_miss_no_transition() {
    let seed = chaos::seed();
    let mut rng = chaos::rng(seed);
    let mut cluster = Cluster::start(64).await;
    let faults = cluster.sim.faults();
    for verb in ["get", "watch", "patch", "update"] {
        faults.set_error_rate(verb, 0.10, 500).expect("fault rule");
    }
    for verb in ["create", "list", "delete"] {
        faults.set_error_rate(verb, 0.10, 429).expect("fault rule");
    }
    faults.drop_watches_every(Some(Duration::from_secs(2)));
    let compactor = {
        let faults = faults.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(3_000)).await;
                faults.compact();
            }
        })
    };

    let plan = Arc::new(plan(TASKS));
    let (server, servers) = watch::channel(None);
    let mut host = cluster.start_host().await;
    server.send_replace(Some(host.client.clone()));
    let submitter = tokio::spawn(submit_all(
        Arc::clone(&plan),
        servers,
        4,
        Duration::from_millis(40),
        Duration::from_secs(150),
    ));
    for _ in 0..KILLS {
        tokio::time::sleep(delay(&mut rng, 2_000, 6_000)).await;
        server.send_replace(None);
        host.kill().await;
        host = cluster.start_host().await;
        server.send_replace(Some(host.client.clone()));
    }
    let acked = submitter.await.expect("submitter");
    assert_eq!(acked.len(), TASKS, "every task acknowledged");
    let tasks = wait_all_terminal(&cluster, &host, &plan, 120).await;
    compactor.abort();
    faults.clear();
    check_outcomes(&cluster, &plan, &acked, &tasks);
    check_logs(&host, &plan).await;
    // The faults really reached the clients.
    let counters = cluster.sim.counters();
    let faults = counters.snapshot().faults;
    eprintln!("faults served: {faults:?}");
    for (what, n) in [
        ("500 errors", counters.injected_errors(500)),
        ("429 errors", counters.injected_errors(429)),
        ("watch drops", counters.faults("watch dropped")),
        ("410 Expired watches", counters.faults("watch expired")),
        ("failed Job creates", counters.faults("429 create")),
    ] {
        assert!(n > 0, "no {what} were served: {faults:?}");
    }

    // No missed transition: every succeeded task was seen running.
    let mut missed = Vec::new();
    for (id, task) in &tasks {
        if task.state != TaskState::Succeeded {
            continue;
        }
        let detail = host.client.get(id).await.expect("task detail");
        let states: Vec<TaskState> = detail.history.iter().map(|h| h.to).collect();
        if !states.contains(&TaskState::Running) {
            missed.push(format!("{id}: {states:?}"));
        }
    }
    assert!(
        missed.is_empty(),
        "{} succeeded tasks never recorded running: {:?}",
        missed.len(),
        &missed[..missed.len().min(10)]
    );
    host.kill().await;
}
