//! The adapter author's tools through the real CLI: `adapter test` on the team-labels example
//! and its shared cases (pass, readable diff on a whole-Job mismatch, fragment paths, error
//! cases), `adapter bench`, `adapter check` showing the contract version, the refusal of a
//! component built against another contract major version, and `adapter new`.

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};

use clap::Parser as _;
use taskpod::adapters::guests;
use taskpod::cli::{Cli, CliError, run};

/// Runs the CLI; returns its output and its result.
fn cli(args: &[&str]) -> (String, Result<(), CliError>) {
    let mut argv = vec!["taskpod"];
    argv.extend_from_slice(args);
    let parsed = Cli::try_parse_from(argv).expect("arguments parse");
    let mut out = Vec::new();
    let result = run(parsed, &mut out);
    (String::from_utf8(out).expect("UTF-8"), result)
}

fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

fn example(file: &str) -> PathBuf {
    common::ws(&format!("adapters/examples/team-labels/{file}"))
}

/// A copy of the example's cases in a temporary directory, to break on purpose.
fn cases_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(example("cases")).expect("cases") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
    }
    dir
}

fn test_cases(cases: &Path) -> (String, Result<(), CliError>) {
    cli(&[
        "adapter",
        "test",
        guests::TEAM_LABELS_PATH,
        "--config",
        s(&example("config.yaml")),
        "--cases",
        s(cases),
    ])
}

#[test]
fn the_rust_example_passes_its_shared_cases() {
    let (out, result) = test_cases(&example("cases"));
    result.unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert!(out.contains("case etl ... ok"), "{out}");
    assert!(out.contains("case druid-index-parallel ... ok"), "{out}");
    assert!(out.contains("adapter test: 3 passed, 0 failed"), "{out}");
}

#[test]
fn a_whole_job_mismatch_fails_with_a_line_diff() {
    let dir = cases_copy();
    let expected = dir.path().join("etl.yaml");
    let text = std::fs::read_to_string(&expected).expect("etl.yaml");
    assert!(text.contains("image: ghcr.io/acme/etl:1.4"), "{text}");
    std::fs::write(
        &expected,
        text.replace("ghcr.io/acme/etl:1.4", "ghcr.io/acme/etl:2.0"),
    )
    .expect("write");
    let (out, result) = test_cases(dir.path());
    match result {
        Err(CliError::CasesFailed {
            failed: 1,
            total: 3,
            names,
        }) => assert_eq!(names, "etl"),
        other => panic!("expected one failed case, got {other:?}\n{out}"),
    }
    assert!(out.contains("case etl ... FAILED"), "{out}");
    assert!(
        out.contains("- ") && out.contains("image: ghcr.io/acme/etl:2.0"),
        "{out}"
    );
    assert!(
        out.contains("+ ") && out.contains("image: ghcr.io/acme/etl:1.4"),
        "{out}"
    );
    assert!(out.contains("adapter test: 2 passed, 1 failed"), "{out}");
}

#[test]
fn a_fragment_mismatch_names_the_field_path() {
    let dir = cases_copy();
    let fragments = dir.path().join("druid-index-parallel.contains.yaml");
    let text = std::fs::read_to_string(&fragments).expect("fragments");
    std::fs::write(
        &fragments,
        text.replace("value: index_parallel\n", "value: compact\n")
            .replace("team: DataPlatform", "team: Analytics"),
    )
    .expect("write");
    let (out, result) = test_cases(dir.path());
    assert!(result.is_err(), "{out}");
    assert!(
        out.contains(r#"metadata.labels.team: expected "Analytics", got "DataPlatform""#),
        "{out}"
    );
    assert!(
        out.contains(
            r#"spec.template.spec.containers[name=task].env[name=TASK_TYPE].value: expected "compact", got "index_parallel""#
        ),
        "{out}"
    );
}

#[test]
fn error_cases_match_the_render_error_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = "x".repeat(140_000);
    std::fs::write(
        dir.path().join("too-big.json"),
        format!(r#"{{"id": "big-1", "type": "etl", "payload": {{"blob": "{big}"}}}}"#),
    )
    .expect("write");
    std::fs::write(dir.path().join("too-big.error"), "over the inline limit\n").expect("write");
    let (out, result) = test_cases(dir.path());
    result.unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert!(out.contains("case too-big ... ok"), "{out}");

    // An error expected from a task that renders fails the case.
    std::fs::copy(example("cases/etl.json"), dir.path().join("fine.json")).expect("copy");
    std::fs::write(dir.path().join("fine.error"), "anything").expect("write");
    let (out, result) = test_cases(dir.path());
    assert!(result.is_err(), "{out}");
    assert!(out.contains("expected an error"), "{out}");
}

#[test]
fn a_case_without_expectation_is_a_failure_that_says_what_to_add() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(example("cases/etl.json"), dir.path().join("lonely.json")).expect("copy");
    let (out, result) = test_cases(dir.path());
    assert!(result.is_err(), "{out}");
    assert!(
        out.contains("lonely.yaml") && out.contains("--bless"),
        "{out}"
    );

    let (out, result) = cli(&[
        "adapter",
        "test",
        guests::TEAM_LABELS_PATH,
        "--config",
        s(&example("config.yaml")),
        "--cases",
        s(dir.path()),
        "--bless",
    ]);
    result.unwrap_or_else(|e| panic!("{e}\n{out}"));
    let blessed = std::fs::read_to_string(dir.path().join("lonely.yaml")).expect("blessed");
    assert!(blessed.contains("(component digest)"), "{blessed}");
    let (out, result) = test_cases(dir.path());
    result.unwrap_or_else(|e| panic!("{e}\n{out}"));
}

#[test]
fn bench_prints_percentiles_of_fresh_instances() {
    let (out, result) = cli(&[
        "adapter",
        "bench",
        guests::TEAM_LABELS_PATH,
        "--config",
        s(&example("config.yaml")),
        "--iterations",
        "5",
        "--warmup",
        "1",
    ]);
    result.unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert!(out.contains("team-labels 0.1.0"), "{out}");
    assert!(out.contains("a fresh instance per call"), "{out}");
    for p in ["p50", "p90", "p99"] {
        assert!(out.contains(p), "{out}");
    }
    assert!(!out.contains("output: 0 bytes"), "{out}");
}

#[test]
fn check_shows_the_contract_version_and_schema() {
    let (out, result) = cli(&[
        "adapter",
        "check",
        guests::TEAM_LABELS_PATH,
        "--config",
        s(&example("config.yaml")),
    ]);
    result.unwrap_or_else(|e| panic!("{e}\n{out}"));
    let contract = format!(
        "contract:    taskpod:adapter@{}",
        taskpod::adapters::CONTRACT_VERSION
    );
    assert!(out.contains(&contract), "{out}");
    assert!(out.contains("\"required\""), "{out}");
}

#[test]
fn a_component_built_against_another_major_version_is_refused_by_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("future.wasm");
    let bytes = wat::parse_str(
        r#"(component
            (import "taskpod:adapter/log@1.0.0" (instance
                (export "log" (func (param "message" string)))))
        )"#,
    )
    .expect("valid WAT");
    std::fs::write(&file, bytes).expect("write");
    let (_, result) = cli(&["adapter", "check", s(&file)]);
    let text = result.expect_err("refused").to_string();
    assert!(text.contains("taskpod:adapter@1.0.0"), "{text}");
    assert!(
        text.contains(&format!(
            "this taskpod implements taskpod:adapter@{}",
            taskpod::adapters::CONTRACT_VERSION
        )),
        "{text}"
    );
    assert!(text.contains("rebuild the adapter"), "{text}");
}

#[test]
fn new_scaffolds_a_project_per_language() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (lang, files) in [
        (
            "rust",
            &[
                "Cargo.toml",
                "Cargo.lock",
                "rust-toolchain.toml",
                "src/lib.rs",
            ][..],
        ),
        (
            "python",
            &["app.py", "taskpod_adapter.py", "wit/adapter.wit"][..],
        ),
        (
            "js",
            &[
                "app.js",
                "package.json",
                "taskpod-adapter.js",
                "wit/adapter.wit",
            ][..],
        ),
    ] {
        let project = dir.path().join(lang);
        let (out, result) = cli(&[
            "adapter",
            "new",
            "my-adapter",
            "--lang",
            lang,
            "--dir",
            s(&project),
        ]);
        result.unwrap_or_else(|e| panic!("{lang}: {e}"));
        assert!(out.contains("taskpod adapter test"), "{out}");
        for file in files.iter().chain(&[
            "config.yaml",
            "cases/example.json",
            "cases/example.contains.yaml",
        ]) {
            assert!(project.join(file).is_file(), "{lang}: {file} missing");
        }
        let all: String = files
            .iter()
            .map(|f| std::fs::read_to_string(project.join(f)).expect("read"))
            .collect();
        assert!(!all.contains("{{"), "{lang}: a placeholder was left");
    }
    let cargo = std::fs::read_to_string(dir.path().join("rust/Cargo.toml")).expect("Cargo.toml");
    let sdk = common::ws("adapters/sdk").canonicalize().expect("sdk");
    assert!(cargo.contains(&format!("path = {:?}", s(&sdk))), "{cargo}");
    let wit = std::fs::read_to_string(dir.path().join("python/wit/adapter.wit")).expect("wit");
    assert!(wit.contains(&format!(
        "package taskpod:adapter@{};",
        taskpod::adapters::CONTRACT_VERSION
    )));
}

#[test]
fn new_refuses_a_bad_name_and_a_non_empty_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, result) = cli(&[
        "adapter",
        "new",
        "My_Adapter",
        "--lang",
        "rust",
        "--dir",
        s(dir.path()),
    ]);
    let text = result.expect_err("bad name").to_string();
    assert!(
        text.contains("DNS-1123") && text.contains("my-adapter"),
        "{text}"
    );
    std::fs::write(dir.path().join("keep.txt"), "mine").expect("write");
    let (_, result) = cli(&[
        "adapter",
        "new",
        "ok",
        "--lang",
        "js",
        "--dir",
        s(dir.path()),
    ]);
    let text = result.expect_err("non-empty").to_string();
    assert!(text.contains("not empty"), "{text}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keep.txt")).expect("kept"),
        "mine"
    );
}

#[test]
fn demo_runs_a_task_through_a_custom_adapter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, result) = cli(&[
        "demo",
        "--dir",
        s(dir.path()),
        "--adapter",
        guests::TEAM_LABELS_PATH,
        "--adapter-config",
        s(&example("config.yaml")),
        "--timeout-seconds",
        "120",
    ]);
    result.unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert!(out.contains("demo finished"), "{out}");
    let jobs: Vec<PathBuf> = std::fs::read_dir(dir.path().join("jobs"))
        .expect("jobs written")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = std::fs::read_to_string(&jobs[0]).expect("job");
    assert!(
        job.contains("taskpod.dev/adapter: team-labels@0.1.0"),
        "{job}"
    );
    assert!(job.contains("image: ghcr.io/acme/etl:1.4"), "{job}");
}
