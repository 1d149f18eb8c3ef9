//! The adapter sandbox against adapters that misbehave on purpose (tests/guests/hostile), plus
//! contract-version refusal, world type-checking and the compiled-component disk cache.

#[allow(dead_code)]
mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use taskpod::adapters::{
    AdapterSpec, ComponentSource, Error, Limits, Runtime, RuntimeOptions, guests,
};
use taskpod::contract::{self, JobContract, Rule};

fn limits() -> Limits {
    Limits {
        timeout: Duration::from_millis(200),
        ..Limits::default()
    }
}

/// Runs `adapt` of the hostile guest in `mode`, then checks the same runtime still serves a
/// good call.
fn adapt_mode(config: &str, limits: Limits) -> Result<taskpod_adapter_sdk::AdapterOutput, Error> {
    let adapter = common::hostile(config, limits).expect("the hostile guest loads");
    let (task, mut ctx) = common::sample();
    ctx.config = adapter.config().to_owned();
    let result = adapter.adapt_blocking(&task, &ctx);
    let ok = common::hostile(r#"{"mode":"ok"}"#, Limits::default()).expect("load ok mode");
    ctx.config = ok.config().to_owned();
    let good = ok
        .adapt_blocking(&task, &ctx)
        .expect("a good call after a bad one");
    assert!(
        good.job.contains("\"Job\""),
        "ok mode returns a Job: {}",
        good.job
    );
    result
}

fn contract_for(ctx: &taskpod_adapter_sdk::Context) -> JobContract {
    JobContract {
        adapter: "hostile".to_owned(),
        adapter_ref: "hostile@0.1.0".to_owned(),
        adapter_digest: "sha256:00".to_owned(),
        namespace: ctx.namespace.clone(),
        job_name: ctx.job_name.clone(),
        instance: "taskpod".to_owned(),
        task_id: "t".to_owned(),
        tenant: "default".to_owned(),
        task_type: "index_parallel".to_owned(),
        max_duration_seconds: 14400,
        cleanup_delay_seconds: Some(172_800),
        ..JobContract::default()
    }
}

#[test]
fn infinite_loop_is_stopped_at_the_deadline() {
    let start = Instant::now();
    let adapter = common::hostile(r#"{"mode":"loop"}"#, limits()).expect("load");
    let (task, mut ctx) = common::sample();
    ctx.config = adapter.config().to_owned();
    let loaded = start.elapsed();
    let call = Instant::now();
    let err = adapter
        .adapt_blocking(&task, &ctx)
        .expect_err("loop must fail");
    let took = call.elapsed();
    match &err {
        Error::Timeout {
            adapter,
            call,
            limit,
        } => {
            assert_eq!(adapter, "hostile");
            assert_eq!(*call, "adapt");
            assert_eq!(*limit, Duration::from_millis(200));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(err.to_string().contains("hostile"), "{err}");
    // Correctness bound (the deadline fired), not a benchmark: 200 ms limit, 5 ms ticks.
    assert!(
        took >= Duration::from_millis(190),
        "stopped too early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "deadline did not fire: {took:?} (load {loaded:?})"
    );
    // The runtime keeps serving.
    adapt_mode(r#"{"mode":"ok"}"#, Limits::default()).expect("ok after loop");
}

#[test]
fn memory_bomb_hits_the_memory_cap() {
    let err = adapt_mode(r#"{"mode":"memory-bomb"}"#, limits()).expect_err("must fail");
    match &err {
        Error::OutOfMemory {
            adapter,
            limit,
            requested,
            ..
        } => {
            assert_eq!(adapter, "hostile");
            assert_eq!(*limit, 64 << 20);
            assert!(*requested > *limit);
        }
        other => panic!("expected out of memory, got {other:?}"),
    }
    assert!(err.to_string().contains("memory limit"), "{err}");
}

#[test]
fn trap_is_reported_with_its_message() {
    let err = adapt_mode(r#"{"mode":"trap"}"#, limits()).expect_err("must fail");
    match &err {
        Error::Trap {
            adapter,
            call,
            message,
        } => {
            assert_eq!(adapter, "hostile");
            assert_eq!(*call, "adapt");
            assert!(message.contains("unreachable"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn panic_is_reported_with_the_panic_message() {
    let err = adapt_mode(r#"{"mode":"panic"}"#, limits()).expect_err("must fail");
    match &err {
        Error::Panic {
            adapter, message, ..
        } => {
            assert_eq!(adapter, "hostile");
            assert!(message.contains("panicked at"), "{message}");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
}

#[test]
fn deep_recursion_traps() {
    let err = adapt_mode(r#"{"mode":"deep-recursion"}"#, limits()).expect_err("must fail");
    match &err {
        Error::Trap {
            adapter, message, ..
        } => {
            assert_eq!(adapter, "hostile");
            assert!(
                message.contains("call stack exhausted") || message.contains("out of bounds"),
                "{message}"
            );
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn output_over_the_limit_is_refused() {
    // 8 MiB of Job fits the 64 MiB memory cap but not the 4 MiB output cap.
    let err = adapt_mode(r#"{"mode":"huge-output","size":8388608}"#, limits()).expect_err("fail");
    match &err {
        Error::OutputTooLarge {
            adapter,
            size,
            limit,
        } => {
            assert_eq!(adapter, "hostile");
            assert!(*size >= 8 << 20, "{size}");
            assert_eq!(*limit, 4 << 20);
        }
        other => panic!("expected output too large, got {other:?}"),
    }
}

#[test]
fn hundred_megabyte_output_cannot_even_be_built_within_the_memory_cap() {
    let err = adapt_mode(r#"{"mode":"huge-output"}"#, limits()).expect_err("must fail");
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err:?}");
}

#[test]
fn hundred_megabyte_output_with_room_to_build_it_is_refused_by_size() {
    let roomy = Limits {
        memory: 512 << 20,
        timeout: Duration::from_secs(10),
        ..Limits::default()
    };
    let err = adapt_mode(r#"{"mode":"huge-output","size":100000000}"#, roomy).expect_err("fail");
    assert!(
        matches!(err, Error::OutputTooLarge { size, .. } if size >= 100_000_000),
        "{err:?}"
    );
}

/// Output the sandbox returns but the Job contract refuses.
fn contract_error(mode: &str) -> contract::ContractError {
    let output = adapt_mode(&format!(r#"{{"mode":"{mode}"}}"#), limits()).expect("adapt succeeds");
    let (_, ctx) = common::sample();
    contract::enforce(&output, &contract_for(&ctx)).expect_err("the contract must refuse it")
}

#[test]
fn invalid_json_is_refused_by_the_contract() {
    let err = contract_error("invalid-json");
    assert_eq!(err.rule, Rule::NotJson);
    assert_eq!(err.adapter, "hostile");
}

#[test]
fn bad_job_name_is_refused_by_the_contract() {
    let err = contract_error("bad-name");
    assert_eq!(err.rule, Rule::InvalidName);
    assert_eq!(err.path, "metadata.name");
}

#[test]
fn a_pod_instead_of_a_job_is_refused() {
    let err = contract_error("not-a-job");
    assert_eq!(err.rule, Rule::WrongKind);
}

#[test]
fn a_job_without_containers_is_refused() {
    let err = contract_error("no-containers");
    assert_eq!(err.rule, Rule::NoContainers);
    assert_eq!(err.path, "spec.template.spec.containers");
}

#[test]
fn another_namespace_is_overridden() {
    let output = adapt_mode(r#"{"mode":"other-namespace"}"#, limits()).expect("adapt");
    let (_, ctx) = common::sample();
    let manifests = contract::enforce(&output, &contract_for(&ctx)).expect("enforced");
    assert_eq!(manifests.job.metadata.namespace.as_deref(), Some("druid"));
}

#[test]
fn invalid_config_is_refused_at_load_naming_the_adapter_and_file() {
    let err = common::hostile(r#"{"mode":"no-such-mode"}"#, limits()).expect_err("refused");
    match &err {
        Error::InvalidConfig {
            adapter, origin, ..
        } => {
            assert_eq!(adapter, "hostile");
            assert_eq!(origin, guests::HOSTILE_PATH);
        }
        other => panic!("expected invalid config, got {other:?}"),
    }
}

#[test]
fn missing_component_file_names_the_adapter_and_path() {
    let err = common::runtime()
        .load(AdapterSpec {
            name: "ghost".to_owned(),
            source: ComponentSource::File(PathBuf::from("/nonexistent/ghost.wasm")),
            config: "{}".to_owned(),
            limits: Limits::default(),
        })
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("ghost") && text.contains("/nonexistent/ghost.wasm"),
        "{text}"
    );
}

fn load_bytes(name: &str, bytes: &[u8]) -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).expect("write component");
    common::runtime()
        .load(AdapterSpec {
            name: name.to_owned(),
            source: ComponentSource::File(path),
            config: "{}".to_owned(),
            limits: Limits::default(),
        })
        .map(|_| ())
}

#[test]
fn a_component_built_against_another_contract_version_is_refused() {
    let wat = r#"(component
        (import "taskpod:adapter/log@0.2.0" (instance
            (export "log" (func (param "message" string)))))
    )"#;
    let bytes = wat::parse_str(wat).expect("valid WAT");
    let err = load_bytes("future", &bytes).expect_err("refused");
    match &err {
        Error::IncompatibleContract {
            adapter,
            component_version,
            host_version,
            ..
        } => {
            assert_eq!(adapter, "future");
            assert_eq!(component_version, "0.2.0");
            assert_eq!(host_version, taskpod::adapters::CONTRACT_VERSION);
        }
        other => panic!("expected an incompatible contract, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("0.2.0") && text.contains("0.1.0"), "{text}");
}

#[test]
fn a_component_that_is_not_an_adapter_is_refused() {
    let bytes = wat::parse_str("(component)").expect("valid WAT");
    let err = load_bytes("empty", &bytes).expect_err("refused");
    assert!(matches!(err, Error::NotAnAdapter { .. }), "{err:?}");
}

#[test]
fn garbage_bytes_are_not_a_component() {
    let err = load_bytes("garbage", b"definitely not wasm").expect_err("refused");
    assert!(matches!(err, Error::Compile { .. }), "{err:?}");
}

#[test]
fn second_runtime_reads_the_compiled_component_from_the_disk_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let spec = || AdapterSpec {
        name: "team-labels".to_owned(),
        source: ComponentSource::File(PathBuf::from(guests::TEAM_LABELS_PATH)),
        config: r#"{"image":"busybox:1.36","team":"Data Platform"}"#.to_owned(),
        limits: Limits::default(),
    };
    let options = || RuntimeOptions {
        cache_dir: Some(cache.clone()),
        ..RuntimeOptions::default()
    };
    let first = Runtime::new(options()).expect("runtime");
    let a = first.load(spec());
    assert_eq!(first.disk_cache_hits(), 0);
    let second = Runtime::new(options()).expect("runtime");
    let b = second.load(spec());
    assert_eq!(
        second.disk_cache_hits(),
        1,
        "the second load reads the .cwasm"
    );
    assert_eq!(a.is_ok(), b.is_ok());

    // The directory is private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&cache)
            .expect("cache dir")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    // A tampered entry is detected and recompiled, not loaded.
    for entry in std::fs::read_dir(&cache).expect("list cache") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "cwasm") {
            let mut bytes = std::fs::read(&path).expect("read");
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            std::fs::write(&path, bytes).expect("tamper");
        }
    }
    let third = Runtime::new(options()).expect("runtime");
    let c = third.load(spec());
    assert_eq!(
        third.disk_cache_hits(),
        0,
        "a tampered .cwasm is not loaded"
    );
    assert_eq!(a.is_ok(), c.is_ok());
}

#[test]
fn a_cache_directory_others_can_read_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("open");
    std::fs::create_dir(&cache).expect("mkdir");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = Runtime::new(RuntimeOptions {
            cache_dir: Some(cache.clone()),
            ..RuntimeOptions::default()
        })
        .expect_err("refused");
        assert!(err.to_string().contains("chmod 700"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_calls_run_off_the_runtime_workers_and_respect_the_deadline() {
    let adapter = common::hostile(r#"{"mode":"loop"}"#, limits()).expect("load");
    let ok = common::hostile(r#"{"mode":"ok"}"#, Limits::default()).expect("load");
    let (task, ctx) = common::sample();
    let slow = tokio::spawn({
        let adapter = adapter.clone();
        let task = task.clone();
        let mut ctx = ctx.clone();
        ctx.config = adapter.config().to_owned();
        async move { adapter.adapt(task, ctx).await }
    });
    // While the loop runs on a blocking thread, the async runtime still serves other calls.
    let good = ok
        .adapt(task.clone(), ctx.clone())
        .await
        .expect("good call");
    assert!(good.job.contains("Job"));
    let err = slow.await.expect("join").expect_err("timeout");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
}

#[test]
fn a_loop_inside_validate_config_is_stopped_at_load() {
    let start = Instant::now();
    let err = common::hostile(r#"{"mode":"validate-loop"}"#, limits()).expect_err("refused");
    assert!(
        matches!(&err, Error::Timeout { adapter, call: "validate-config", .. } if adapter == "hostile"),
        "{err:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn an_invalid_task_error_from_the_adapter_is_typed() {
    let err = adapt_mode(
        r#"{"mode":"error","kind":"invalid-task","message":"payload.spec is missing"}"#,
        limits(),
    )
    .expect_err("must fail");
    match &err {
        Error::InvalidTask {
            adapter,
            task,
            message,
        } => {
            assert_eq!(adapter, "hostile");
            assert!(task.starts_with("index_parallel"), "{task}");
            assert_eq!(message, "payload.spec is missing");
        }
        other => panic!("expected invalid task, got {other:?}"),
    }
}

#[test]
fn a_log_flood_is_cut_to_the_budget_and_the_call_succeeds() {
    // Generous time: each message still crosses the boundary before the budget drops it.
    let roomy = Limits {
        timeout: Duration::from_secs(20),
        ..Limits::default()
    };
    let output = adapt_mode(r#"{"mode":"log-flood","count":20000}"#, roomy).expect("adapt");
    assert!(output.job.contains("\"Job\""));
}

#[test]
fn the_sandbox_grants_no_environment_files_clock_or_stdout() {
    let output = adapt_mode(r#"{"mode":"probe"}"#, limits()).expect("adapt");
    let job: serde_json::Value = serde_json::from_str(&output.job).expect("job JSON");
    let annotations = &job["metadata"]["annotations"];
    assert_eq!(annotations["probe.env-count"], "0", "{annotations}");
    assert!(
        annotations["probe.fs-root"]
            .as_str()
            .is_some_and(|s| s.starts_with("denied")),
        "{annotations}"
    );
    assert_eq!(
        annotations["probe.clock-secs"], "0",
        "the wall clock is fixed at the epoch"
    );
}

#[test]
fn an_invalid_label_is_refused_by_the_contract() {
    let err = contract_error("bad-label");
    assert_eq!(err.rule, Rule::InvalidLabel);
    assert!(
        err.path.starts_with("spec.template.metadata.labels"),
        "{}",
        err.path
    );
}
