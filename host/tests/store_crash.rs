//! Crash safety: a child process writes to the store as fast as it can and is killed with
//! SIGKILL mid-stream, several times over the same file; after each kill every write the
//! child saw acknowledged must be there and the file must pass SQLite's integrity checks.
//!
//! The test binary re-executes itself as the child (selected by an environment variable);
//! the child prints one line per acknowledged write, after the acknowledgement.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use taskpod::store::{
    NewTask, ReasonCode, Store, StoreOptions, Synchronous, TaskState, Transition,
};

const CHILD_ENV: &str = "TASKPOD_STORE_CRASH_CHILD_DB";
const ROUND_ENV: &str = "TASKPOD_STORE_CRASH_ROUND";
const TEST_NAME: &str = "acknowledged_writes_survive_sigkill";
const ROUNDS: u32 = 6;
const WORKERS: usize = 16;

/// The child: drives tasks through submit, launch, log, run and (every other task) success,
/// printing `ACK …` after each acknowledged write. Stops by itself after a bounded time in
/// case the parent is gone.
fn run_child(db: &str, round: u32) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store = Store::open(
            db,
            StoreOptions {
                synchronous: Synchronous::Full,
                ..StoreOptions::default()
            },
        )?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut workers = Vec::new();
        for w in 0..WORKERS {
            let store = store.clone();
            workers.push(tokio::spawn(async move {
                let ack = |line: String| {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(line.as_bytes());
                    let _ = out.flush();
                };
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let id = format!("r{round}-w{w}-{i}");
                    let payload = format!(r#"{{"type":"noop","n":{i}}}"#);
                    store
                        .submit(NewTask::new(
                            &id,
                            "noop",
                            format!("tenant-{}", w % 3),
                            payload,
                        ))
                        .await?;
                    ack(format!("ACK S {id}\n"));
                    store
                        .transition(
                            Transition::new(&id, TaskState::Pending, TaskState::Launching)
                                .job_name(format!("job-{id}")),
                        )
                        .await?;
                    ack(format!("ACK T {id} launching\n"));
                    let log = store
                        .append_log(&id, format!("{id} started\n").into_bytes())
                        .await?;
                    ack(format!("ACK L {id} {}\n", log.end_offset));
                    store
                        .transition(Transition::new(
                            &id,
                            TaskState::Launching,
                            TaskState::Running,
                        ))
                        .await?;
                    ack(format!("ACK T {id} running\n"));
                    if i % 2 == 1 {
                        store
                            .transition(
                                Transition::new(&id, TaskState::Running, TaskState::Succeeded)
                                    .reason(ReasonCode::Completed, "")
                                    .exit_code(0),
                            )
                            .await?;
                        ack(format!("ACK T {id} succeeded\n"));
                    }
                    i += 1;
                }
                anyhow::Ok(())
            }));
        }
        for worker in workers {
            worker.await??;
        }
        anyhow::Ok(())
    })
}

#[derive(Debug, Default)]
struct Acked {
    submitted: bool,
    states: Vec<TaskState>,
    log_end: u64,
}

fn seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1
}

fn next_random(state: &mut u64) -> u64 {
    // xorshift64
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Runs one child until it has acknowledged `kill_after` writes, SIGKILLs it and returns every
/// complete ACK line it printed.
fn run_and_kill(db: &str, round: u32, kill_after: usize) -> Result<Vec<String>> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, db)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("re-executing the test binary as the writer child")?;
    let mut reader = BufReader::new(child.stdout.take().context("child stdout")?);
    let mut acks = Vec::new();
    let mut line = String::new();
    let mut killed = false;
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            break;
        }
        // A line cut by the kill has no newline and was not fully acknowledged to us. The
        // test harness may print its own text ahead of the first line.
        if let Some(at) = line.find("ACK ")
            && line.ends_with('\n')
        {
            acks.push(line[at..].trim_end().to_string());
        }
        if !killed && acks.len() >= kill_after {
            child.kill()?; // SIGKILL
            killed = true;
        }
    }
    let status = child.wait()?;
    if !killed {
        bail!("the child exited by itself ({status}) before {kill_after} acknowledgements");
    }
    Ok(acks)
}

fn verify(db: &str, expected: &HashMap<String, Acked>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = Store::open(db, StoreOptions::default())?;
        store.check_integrity().await?;
        for (id, acked) in expected {
            let task = store
                .get(id)
                .await?
                .with_context(|| format!("acknowledged task {id} is missing"))?;
            ensure!(
                acked.submitted,
                "{id}: transition acknowledged without a submit"
            );
            let history = store.history(id).await?;
            ensure!(
                history.last().map(|h| h.to) == Some(task.state),
                "{id}: history ends in {:?} but the task is {}",
                history.last(),
                task.state
            );
            for state in &acked.states {
                ensure!(
                    history.iter().any(|h| h.to == *state),
                    "{id}: acknowledged transition to {state} is missing (history {history:?})"
                );
            }
            ensure!(
                task.log_bytes >= acked.log_end,
                "{id}: log has {} bytes, {} were acknowledged",
                task.log_bytes,
                acked.log_end
            );
            if acked.log_end > 0 {
                let log = store.read_log(id, 0, 1 << 16).await?;
                ensure!(
                    log.data == format!("{id} started\n").into_bytes(),
                    "{id}: log content"
                );
            }
        }
        store.close().await;
        Ok(())
    })
}

#[test]
fn acknowledged_writes_survive_sigkill() -> Result<()> {
    if let Ok(db) = std::env::var(CHILD_ENV) {
        let round: u32 = std::env::var(ROUND_ENV)?.parse()?;
        return run_child(&db, round);
    }
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("crash.db");
    let db = db.to_str().context("utf-8 temp path")?;
    let seed = seed();
    let mut rng = seed;
    let mut expected: HashMap<String, Acked> = HashMap::new();
    let mut total_acks = 0;
    for round in 0..ROUNDS {
        let kill_after = 200 + (next_random(&mut rng) % 1500) as usize;
        let acks = run_and_kill(db, round, kill_after)
            .with_context(|| format!("round {round} (seed {seed})"))?;
        ensure!(
            acks.len() >= kill_after,
            "round {round}: only {} acks",
            acks.len()
        );
        total_acks += acks.len();
        for ack in &acks {
            let parts: Vec<&str> = ack.split(' ').collect();
            let entry = expected.entry(parts[2].to_string()).or_default();
            match parts[1] {
                "S" => entry.submitted = true,
                "T" => entry.states.push(parts[3].parse()?),
                "L" => entry.log_end = entry.log_end.max(parts[3].parse()?),
                other => bail!("unexpected ack kind {other} in {ack:?}"),
            }
        }
        verify(db, &expected).with_context(|| format!("after round {round} (seed {seed})"))?;
    }
    eprintln!(
        "store crash test: {ROUNDS} SIGKILLs, {total_acks} acknowledged writes on {} tasks, all present (seed {seed})",
        expected.len()
    );
    Ok(())
}
