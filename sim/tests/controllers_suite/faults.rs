//! The controllers against an unreliable API server: injected 500s, dropped watches, compaction.

use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::batch::v1::Job;
use serde_json::json;

use crate::controllers_common::*;

#[tokio::test]
async fn jobs_complete_exactly_once_despite_errors_and_dropped_watches() -> Result<()> {
    let sim = start(fast()).await?;
    let client = sim.client();
    let faults = sim.faults();
    for verb in ["create", "patch", "delete"] {
        faults.set_error_rate(verb, 0.3, 500)?;
    }
    faults.drop_watches_every(Some(Duration::from_millis(300)));
    // The test's own create must get through: retry it like any client would.
    let spec = job(
        "unreliable",
        json!({"sim.taskpod.dev/run-seconds": "0.1"}),
        json!({"parallelism": 3, "completions": 6}),
    );
    let mut attempts = 0;
    while create(&client, &spec).await.is_err() {
        attempts += 1;
        anyhow::ensure!(attempts < 50, "could not create the Job through the faults");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    faults.compact();
    let done = match wait_for::<Job>(&client, "unreliable", "Complete", |j| {
        job_condition(j, "Complete")
    })
    .await
    {
        Ok(j) => j.expect("job"),
        Err(e) => {
            faults.clear();
            for p in job_pods(&client, "unreliable").await? {
                eprintln!(
                    "POD {:?} node={:?} phase={:?} cs={:?}",
                    p.metadata.name,
                    p.spec.as_ref().and_then(|s| s.node_name.clone()),
                    phase(Some(&p)),
                    container_state(&p, "main")
                );
            }
            return Err(e);
        }
    };
    faults.clear();
    let status = done.status.clone().expect("status");
    assert_eq!(
        status.succeeded,
        Some(6),
        "each success counted once: {status:?}"
    );
    assert_eq!(status.failed, None);
    let counters = sim.counters();
    assert_eq!(
        counters.max_creates_per_name("Pod"),
        1,
        "no pod name created twice"
    );
    assert_eq!(
        counters.distinct_creates("Pod"),
        6,
        "exactly completions pods, although creates failed and watches dropped"
    );
    sim.shutdown().await;
    Ok(())
}
