//! `taskpod bench runner` at a small scale, through the binary: every phase runs (P3–P5 with
//! the simulated cluster in a child `taskpod sim` process) and the report carries each figure.

use std::process::Command;

/// The first number after `label` in `line`.
fn number_after(line: &str, label: &str) -> f64 {
    let rest = &line[line
        .find(label)
        .unwrap_or_else(|| panic!("`{label}` in {line:?}"))
        + label.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("a number after `{label}` in {line:?}"))
}

#[test]
fn bench_runner_reports_every_phase() {
    let output = Command::new(env!("CARGO_BIN_EXE_taskpod"))
        .args(["bench", "runner", "--tasks", "210", "--jobs", "30"])
        .args(["--terminations", "5"])
        .env("TASKPOD_LOG", "warn")
        .output()
        .expect("run taskpod bench runner");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // No Event is written to a simulated cluster that has already stopped.
    assert!(!stderr.contains("cannot write the Event"), "{stderr}");
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("a `{prefix}` line in {stdout}"))
            .to_owned()
    };
    let p2 = line("P2 throughput (210 tasks)");
    assert!(number_after(&p2, "runner") > 0.0, "{p2}");
    assert!(number_after(&p2, "bare client") > 0.0, "{p2}");
    let cpu = line("CPU per task");
    assert!(number_after(&cpu, "): runner") > 0.0, "{cpu}");
    // Three alternating rounds of 70 tasks a side, each round's three rates shown.
    let rounds = line("rounds (bare client /");
    let triples: Vec<&str> = rounds
        .split(": ")
        .nth(1)
        .unwrap_or_default()
        .split(", ")
        .collect();
    assert_eq!(triples.len(), 3, "{rounds}");
    for round in triples {
        let rates: Vec<f64> = round
            .split(" / ")
            .map(|r| r.trim().parse().unwrap_or_else(|_| panic!("{rounds}")))
            .collect();
        assert_eq!(rates.len(), 3, "{rounds}");
        assert!(rates.iter().all(|r| *r > 0.0), "{rounds}");
    }
    // Every task is stored twice before its Job exists: submitted, then launching.
    let store = line("store during the runner's phase");
    assert!(number_after(&store, "phase:") >= 420.0, "{store}");
    assert!(number_after(&store, "writes in") >= 1.0, "{store}");
    // A launch's Kubernetes requests alone: its rate, its share of the bare client's.
    let watched = line("a launch's Kubernetes requests alone");
    assert!(number_after(&watched, "Job watch):") > 0.0, "{watched}");
    assert!(number_after(&watched, "Jobs/s =") > 0.0, "{watched}");
    assert!(number_after(&watched, "(CPU") > 0.0, "{watched}");
    let p3 = line("P3 host footprint with 30 running Jobs tracked");
    assert!(number_after(&p3, "RSS") > 0.0, "{p3}");
    assert!(number_after(&p3, "threads") >= 2.0, "{p3}");
    assert!(number_after(&p3, "with 3: RSS") > 0.0, "{p3}");
    assert!(number_after(&p3, "holding them:") > 0.0, "{p3}");
    let p4 = line("P4 pod termination -> task state stored (5 pods, 30 running)");
    assert!(number_after(&p4, "p99") > 0.0, "{p4}");
    let p5 = line("P5 restart -> reconciled with 25 Jobs in flight");
    assert!(number_after(&p5, "flight:") > 0.0, "{p5}");
}
