//! `/metrics` on the simulated cluster: the Prometheus text parses (every sample belongs to a
//! family declared with HELP and TYPE, histograms are cumulative and end with `+Inf` = count),
//! and every family moves as tasks run — task gauges by state and tenant, queue depth, capacity
//! in use, pod startup, pending and run times, task ends, adapter latency and failures,
//! Kubernetes API errors and watch restarts. Figures are checked against what the store
//! recorded for the same tasks.

mod ops;
mod runner;

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Method, StatusCode};
use runner::{eventually, task, wait_state, wait_terminal};
use taskpod::api::ApiState;
use taskpod::runner::CancelMode;
use taskpod::store::{TaskRecord, TaskState};
use taskpod::task::SubmittedTask;

/// One scrape: samples by `name{label="value",…}` (labels sorted), and each family's type.
#[derive(Debug, Default)]
struct Scrape {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
}

/// The family a sample belongs to, given the declared families.
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        name.strip_suffix(suffix)
            .filter(|base| types.get(*base).is_some_and(|t| t == "histogram"))
    })
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<_> = labels.to_vec();
    labels.sort();
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    if inner.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", inner.join(","))
    }
}

/// Parses Prometheus text (format 0.0.4), panicking with the line on anything malformed.
fn parse(text: &str) -> Scrape {
    let mut scrape = Scrape::default();
    let mut helped = std::collections::BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or_else(|| panic!("{}", at()));
            assert!(!help.trim().is_empty(), "empty HELP at {}", at());
            assert!(helped.insert(name.to_owned()), "HELP twice at {}", at());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("{}", at()));
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "unknown type at {}",
                at()
            );
            assert!(helped.contains(name), "TYPE before HELP at {}", at());
            let previous = scrape.types.insert(name.to_owned(), kind.to_owned());
            assert!(previous.is_none(), "TYPE twice at {}", at());
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment at {}", at());
        if line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{}", at()));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|e| panic!("value {v:?}: {e} at {}", at())),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels at {}", at()));
                let mut labels = Vec::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let label: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    assert_eq!(
                        chars.next(),
                        Some('"'),
                        "label value not quoted at {}",
                        at()
                    );
                    let mut value = String::new();
                    loop {
                        match chars.next() {
                            Some('\\') => match chars.next() {
                                Some('n') => value.push('\n'),
                                Some(c) => value.push(c),
                                None => panic!("dangling escape at {}", at()),
                            },
                            Some('"') => break,
                            Some(c) => value.push(c),
                            None => panic!("unterminated label value at {}", at()),
                        }
                    }
                    assert!(
                        label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "bad label name {label:?} at {}",
                        at()
                    );
                    labels.push((label, value));
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                }
                (name, labels)
            }
        };
        assert!(
            name.starts_with("taskpod_"),
            "metric outside the taskpod_ namespace at {}",
            at()
        );
        assert!(
            family_of(name, &scrape.types).is_some(),
            "sample of an undeclared family at {}",
            at()
        );
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let previous = scrape.samples.insert(key(name, &pairs), value);
        assert!(previous.is_none(), "duplicate sample at {}", at());
    }
    scrape.check_histograms();
    scrape
}

impl Scrape {
    /// A sample's value; 0 when absent (a counter that never moved).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples.get(&key(name, labels)).copied().unwrap_or(0.0)
    }

    /// Every histogram series: buckets non-decreasing, `+Inf` equal to `_count`.
    fn check_histograms(&self) {
        for (family, kind) in &self.types {
            if kind != "histogram" {
                continue;
            }
            let count_prefix = format!("{family}_count");
            for (series, count) in self.samples.range(count_prefix.clone()..) {
                if !series.starts_with(&count_prefix) {
                    break;
                }
                let labels = &series[count_prefix.len()..];
                let inner = labels.trim_start_matches('{').trim_end_matches('}');
                let mut buckets: Vec<(f64, f64)> = self
                    .samples
                    .iter()
                    .filter_map(|(k, v)| {
                        let rest = k.strip_prefix(&format!("{family}_bucket{{"))?;
                        let rest = rest.strip_suffix('}')?;
                        let (le, others) = split_le(rest);
                        (others == inner).then(|| {
                            let le = if le == "+Inf" {
                                f64::INFINITY
                            } else {
                                le.parse().expect("le is a number")
                            };
                            (le, *v)
                        })
                    })
                    .collect();
                buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                assert!(buckets.len() >= 2, "{series}: histogram without buckets");
                assert!(
                    buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                    "{series}: buckets are not cumulative: {buckets:?}"
                );
                let last = buckets.last().expect("buckets");
                assert!(last.0.is_infinite(), "{series}: no +Inf bucket");
                assert_eq!(last.1, *count, "{series}: +Inf bucket differs from _count");
                assert!(
                    self.samples.contains_key(&format!("{family}_sum{labels}")),
                    "{series}: no _sum"
                );
            }
        }
    }
}

/// Splits `le="…"` out of a sorted label list, returning it and the other labels.
fn split_le(labels: &str) -> (String, String) {
    let mut le = String::new();
    let mut others = Vec::new();
    for part in labels.split("\",") {
        let part = part.trim_end_matches('"');
        match part.strip_prefix("le=\"") {
            Some(value) => le = value.to_owned(),
            None => others.push(format!("{part}\"")),
        }
    }
    (le, others.join(","))
}

async fn scrape(state: &ApiState) -> Scrape {
    let (status, body) = ops::call(state, Method::GET, "/metrics", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    parse(&body)
}

fn hostile(id: &str, payload: &str) -> SubmittedTask {
    SubmittedTask::parse(&format!(
        r#"{{"id": "{id}", "type": "hostile", "payload": {payload}}}"#
    ))
    .expect("valid task")
}

#[test]
fn the_parser_refuses_what_prometheus_refuses() {
    let good = "# HELP taskpod_x An x.\n# TYPE taskpod_x counter\ntaskpod_x{a=\"q\\\"\"} 1\n";
    assert_eq!(parse(good).get("taskpod_x", &[("a", "q\"")]), 1.0);
    for bad in [
        "taskpod_x 1\n",
        "# HELP taskpod_x An x.\n# TYPE taskpod_x counter\ntaskpod_x{a=q} 1\n",
        "# HELP taskpod_x An x.\n# TYPE taskpod_x counter\ntaskpod_x one\n",
        "# HELP taskpod_h An h.\n# TYPE taskpod_h histogram\ntaskpod_h_bucket{le=\"1\"} 2\n\
         taskpod_h_bucket{le=\"+Inf\"} 1\ntaskpod_h_sum 1\ntaskpod_h_count 1\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse(bad)).is_err(),
            "accepted {bad:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_moves_as_tasks_run() {
    let env = ops::env("k8sJobLaunchTimeout: 1500ms").await;
    let store = env.store();
    let runner = env.runner(store.clone()).await;
    let state = ApiState::new(runner.clone());

    let start = scrape(&state).await;
    assert_eq!(start.get("taskpod_ready", &[]), 1.0);
    assert_eq!(start.get("taskpod_pod_startup_seconds_count", &[]), 0.0);
    assert_eq!(start.get("taskpod_task_pending_seconds_count", &[]), 0.0);

    // One slot: a long task holds it, the next waits in the queue.
    runner.set_capacity(1).await.expect("capacity");
    runner.submit(task("long-1", "long")).await.expect("submit");
    wait_state(&store, "long-1", 20, |s| s == TaskState::Running).await;
    runner.submit(task("ok-1", "index")).await.expect("submit");
    let busy = scrape(&state).await;
    assert_eq!(busy.get("taskpod_queue_depth", &[]), 1.0);
    assert_eq!(busy.get("taskpod_capacity", &[]), 1.0);
    assert_eq!(busy.get("taskpod_capacity_in_use", &[]), 1.0);
    assert_eq!(busy.get("taskpod_tasks", &[("state", "running")]), 1.0);
    assert_eq!(busy.get("taskpod_tasks", &[("state", "pending")]), 1.0);
    assert_eq!(
        busy.get(
            "taskpod_tenant_tasks",
            &[("tenant", "default"), ("state", "pending")]
        ),
        1.0
    );
    assert!(busy.get("taskpod_pod_startup_seconds_count", &[]) >= 1.0);

    runner
        .cancel("long-1", CancelMode::Force)
        .await
        .expect("cancel");
    wait_terminal(&store, "ok-1", 20).await;
    runner.set_capacity(10).await.expect("capacity");

    // A failing task, one that never starts, and an adapter that traps.
    runner.submit(task("fail-1", "fail")).await.expect("submit");
    runner
        .submit(task("stuck-1", "stuck"))
        .await
        .expect("submit");
    runner
        .submit(hostile("trap-1", r#"{"mode": "trap"}"#))
        .await
        .expect("submit");
    for id in ["fail-1", "stuck-1", "trap-1"] {
        wait_terminal(&store, id, 20).await;
    }

    // The API server refuses every create for a while: errors are counted, the task still runs.
    env.sim
        .faults()
        .set_error_rate("create", 1.0, 500)
        .expect("fault");
    runner.submit(task("ok-2", "index")).await.expect("submit");
    eventually(10, "Job create errors counted", || async {
        scrape(&state).await.get(
            "taskpod_kube_api_errors_total",
            &[("verb", "create"), ("resource", "jobs"), ("code", "500")],
        ) >= 1.0
    })
    .await;
    env.sim.faults().clear();
    let ok2 = wait_terminal(&store, "ok-2", 30).await;
    assert_eq!(ok2.state, TaskState::Succeeded);

    // Watches refused and dropped: every stream restarts.
    let faults = env.sim.faults();
    faults.set_error_rate("watch", 1.0, 500).expect("fault");
    faults.drop_watches_every(Some(Duration::from_millis(200)));
    eventually(15, "every watch restarted", || async {
        let s = scrape(&state).await;
        ["jobs", "pods", "deployments"]
            .iter()
            .all(|kind| s.get("taskpod_watch_restarts_total", &[("kind", kind)]) >= 1.0)
    })
    .await;
    faults.clear();
    faults.drop_watches_every(None);

    let end = scrape(&state).await;
    let records: Vec<TaskRecord> = {
        let mut all = Vec::new();
        for id in ["long-1", "ok-1", "fail-1", "stuck-1", "trap-1", "ok-2"] {
            all.push(store.get(id).await.expect("get").expect("task"));
        }
        all
    };
    assert!(records.iter().all(|r| r.state.is_terminal()));
    let count = |f: &dyn Fn(&TaskRecord) -> bool| records.iter().filter(|r| f(r)).count() as f64;
    assert_eq!(
        end.get("taskpod_pod_startup_seconds_count", &[]),
        count(&|r| r.started_at_ms.is_some()),
        "one startup per task whose pod started"
    );
    assert_eq!(
        end.get("taskpod_task_pending_seconds_count", &[]),
        count(&|r| r.launched_at_ms.is_some()),
        "one pending time per launched task"
    );
    for s in [TaskState::Succeeded, TaskState::Failed, TaskState::Canceled] {
        assert_eq!(
            end.get(
                "taskpod_task_duration_seconds_count",
                &[("state", s.as_str())]
            ),
            count(&|r| r.state == s && r.started_at_ms.is_some()),
            "run times of {s} tasks"
        );
    }
    let mut ends: BTreeMap<(String, String), f64> = BTreeMap::new();
    for r in &records {
        let reason = r.reason.as_ref().expect("a terminal task has a reason");
        *ends
            .entry((r.state.to_string(), reason.code.as_str().to_owned()))
            .or_default() += 1.0;
    }
    assert!(ends.contains_key(&("failed".to_owned(), "launch-timeout".to_owned())));
    assert!(ends.contains_key(&("failed".to_owned(), "adapter-error".to_owned())));
    for ((state, reason), n) in &ends {
        assert_eq!(
            end.get(
                "taskpod_task_ends_total",
                &[("state", state), ("reason", reason)]
            ),
            *n,
            "ends in {state}/{reason}"
        );
    }
    assert!(
        end.get("taskpod_adapter_call_seconds_count", &[("adapter", "tpl")]) >= 5.0,
        "five launches through tpl"
    );
    assert_eq!(
        end.get(
            "taskpod_adapter_call_seconds_count",
            &[("adapter", "hostile")]
        ),
        1.0
    );
    assert_eq!(
        end.get(
            "taskpod_adapter_failures_total",
            &[("adapter", "hostile"), ("reason", "trap")]
        ),
        1.0
    );
    assert_eq!(
        end.get(
            "taskpod_adapter_failures_total",
            &[("adapter", "tpl"), ("reason", "trap")]
        ),
        0.0
    );
    assert_eq!(end.get("taskpod_queue_depth", &[]), 0.0);
    assert_eq!(end.get("taskpod_capacity_in_use", &[]), 0.0);
    assert_eq!(end.get("taskpod_tasks", &[("state", "failed")]), 3.0);
    assert!(end.get("taskpod_events_published_total", &[("reason", "Adapted")]) >= 1.0);
    runner.shutdown().await;
}
