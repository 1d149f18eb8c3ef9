//! `taskpod demo` as a user runs it: the binary, its embedded examples and simulated cluster;
//! every sample task of the three systems ends as the demo says it will, and exit status 0.

use std::process::Command;

#[test]
fn demo_runs_druid_teraslice_and_samza_tasks_to_their_expected_ends() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_taskpod"))
        .args(["demo", "--timeout-seconds", "90", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run taskpod demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "demo failed: {}\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("demo finished: every task ended as expected"),
        "{stdout}"
    );
    for file in [
        "tasks/index-parallel.json",
        "tasks/index-parallel-broken.json",
        "tasks/data-generator.json",
        "tasks/wikipedia-feed.properties",
    ] {
        assert!(stdout.contains(&format!("submitted {file}")), "{stdout}");
    }
    // One Job per task, written as YAML; the Teraslice one has the execution controller.
    let jobs: Vec<String> = std::fs::read_dir(dir.path().join("jobs"))
        .expect("jobs directory")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read Job YAML"))
        .collect();
    assert_eq!(jobs.len(), 4, "{stdout}");
    assert!(
        jobs.iter()
            .any(|j| j.contains("app.kubernetes.io/component: execution_controller")),
        "a Teraslice execution controller Job"
    );
    assert!(
        jobs.iter().any(|j| j.contains("completionMode: Indexed")),
        "a Samza Indexed Job"
    );
}
