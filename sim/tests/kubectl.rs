//! The simulated cluster driven by `kubectl` (1.32, installed on every build machine) as a
//! subprocess with a written kubeconfig: create, apply, get (table, JSON, YAML, watch), describe,
//! logs, wait for Job completion (the simulated Job controller and kubelets run), and delete.
//!
//! The OpenAPI document is not served, so `create`/`apply` run with `--validate=false`; the
//! server still validates (and the test proves an invalid Job is refused with the server's
//! message).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use taskpod_sim::{ControllerConfig, ControllerMode, Sim, SimOptions};
use tokio::process::Command;

const JOB_YAML: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: hello
  labels:
    app: hello
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox:1.36
        command: ["echo", "hello"]
"#;

const BAD_JOB_YAML: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: bad
spec:
  template:
    spec:
      restartPolicy: Always
      containers:
      - name: main
        image: busybox:1.36
"#;

const CM_YAML: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  level: info
"#;

struct Kubectl {
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    fn new(sim: &Sim) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, sim.kubeconfig_yaml("default"))?;
        Ok(Self { kubeconfig, dir })
    }

    fn file(&self, name: &str, text: &str) -> Result<PathBuf> {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text)?;
        Ok(p)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("HOME", self.dir.path())
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Runs kubectl to completion (bounded by a 90 s timeout).
    async fn run(&self, args: &[&str]) -> Result<Out> {
        let child = self.command(args).spawn().context("kubectl is installed")?;
        let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
            .await
            .with_context(|| format!("kubectl {args:?} did not finish in 90 s"))??;
        Ok(Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    async fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args).await?;
        if !out.ok {
            bail!(
                "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
                out.stdout,
                out.stderr
            );
        }
        Ok(out.stdout)
    }

    /// Runs a command that does not end by itself (`get -w`) for `for_how_long`, then stops it
    /// and returns what it printed.
    async fn run_for(&self, args: &[&str], for_how_long: Duration) -> Result<String> {
        let mut child = self.command(args).spawn().context("kubectl is installed")?;
        let mut stdout = child.stdout.take().context("stdout is piped")?;
        let reader = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut buf).await;
            buf
        });
        tokio::time::sleep(for_how_long).await;
        child.kill().await?;
        let buf = tokio::time::timeout(Duration::from_secs(10), reader).await??;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

fn kubectl_available() -> bool {
    std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success())
}

async fn full_sim() -> Result<Sim> {
    let opts = SimOptions {
        controllers: ControllerConfig {
            mode: ControllerMode::Full,
            ..Default::default()
        },
        ..Default::default()
    };
    Ok(Sim::start(opts).await?)
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

#[tokio::test]
async fn kubectl_create_get_wait_logs_describe_delete() -> Result<()> {
    assert!(
        kubectl_available(),
        "kubectl must be installed (scripts/setup installs it)"
    );
    let sim = full_sim().await?;
    let k = Kubectl::new(&sim)?;
    let job = k.file("job.yaml", JOB_YAML)?;
    let out = k
        .ok(&["create", "--validate=false", "-f", path_str(&job)])
        .await?;
    assert_eq!(out.trim(), "job.batch/hello created");

    // The server refuses what a real one refuses, and kubectl shows its message.
    let bad = k.file("bad.yaml", BAD_JOB_YAML)?;
    let out = k
        .run(&["create", "--validate=false", "-f", path_str(&bad)])
        .await?;
    assert!(!out.ok);
    assert!(
        out.stderr.contains(r#"The Job "bad" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Always""#),
        "{}",
        out.stderr
    );

    // Creating it again is AlreadyExists.
    let out = k
        .run(&["create", "--validate=false", "-f", path_str(&job)])
        .await?;
    assert!(!out.ok);
    assert!(out.stderr.contains("AlreadyExists"), "{}", out.stderr);

    let out = k
        .ok(&[
            "wait",
            "--for=condition=complete",
            "job/hello",
            "--timeout=60s",
        ])
        .await?;
    assert_eq!(out.trim(), "job.batch/hello condition met");

    // The default table, served as a meta.k8s.io Table.
    let out = k.ok(&["get", "jobs"]).await?;
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        "{out}"
    );
    assert!(
        out.contains("hello") && out.contains("Complete") && out.contains("1/1"),
        "{out}"
    );
    let out = k.ok(&["get", "pods", "-l", "job-name=hello"]).await?;
    assert!(
        out.contains("Completed") || out.contains("Succeeded"),
        "{out}"
    );
    assert!(
        out.lines().nth(1).unwrap_or("").starts_with("hello-"),
        "{out}"
    );

    // JSON and YAML output.
    let out = k.ok(&["get", "job", "hello", "-o", "json"]).await?;
    let v: Value = serde_json::from_str(&out)?;
    assert_eq!(v["spec"]["backoffLimit"], 6);
    assert!(v["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"].is_string());
    let out = k.ok(&["get", "job", "hello", "-o", "yaml"]).await?;
    assert!(out.contains("completionMode: NonIndexed"), "{out}");

    // Logs of the Job's pod (kubectl resolves job/NAME to a pod by the Job's selector).
    let out = k.ok(&["logs", "job/hello"]).await?;
    assert!(
        !out.trim().is_empty(),
        "the simulated container writes lines"
    );

    let out = k.ok(&["describe", "job", "hello"]).await?;
    assert!(out.contains("Name:") && out.contains("hello"), "{out}");
    assert!(out.contains("Pods Statuses:"), "{out}");
    assert!(
        out.contains("SuccessfulCreate"),
        "describe shows the Job's Events: {out}"
    );

    let out = k.ok(&["delete", "job", "hello"]).await?;
    assert_eq!(out.trim(), "job.batch \"hello\" deleted");
    let out = k.run(&["get", "job", "hello"]).await?;
    assert!(!out.ok);
    assert!(out.stderr.contains("NotFound"), "{}", out.stderr);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn kubectl_apply_and_watch() -> Result<()> {
    assert!(
        kubectl_available(),
        "kubectl must be installed (scripts/setup installs it)"
    );
    let sim = full_sim().await?;
    let k = Kubectl::new(&sim)?;
    let cm = k.file("cm.yaml", CM_YAML)?;
    let out = k
        .ok(&["apply", "--validate=false", "-f", path_str(&cm)])
        .await?;
    assert_eq!(out.trim(), "configmap/settings created");
    let changed = k.file("cm2.yaml", &CM_YAML.replace("level: info", "level: debug"))?;
    let out = k
        .ok(&["apply", "--validate=false", "-f", path_str(&changed)])
        .await?;
    assert_eq!(out.trim(), "configmap/settings configured");
    let out = k
        .ok(&[
            "get",
            "configmap",
            "settings",
            "-o",
            "jsonpath={.data.level}",
        ])
        .await?;
    assert_eq!(out, "debug");
    let out = k
        .ok(&["apply", "--validate=false", "-f", path_str(&changed)])
        .await?;
    assert_eq!(out.trim(), "configmap/settings unchanged");

    // get -w prints the Job's pod as it appears and changes.
    let watcher = {
        let k2 = Kubectl {
            kubeconfig: k.kubeconfig.clone(),
            dir: tempfile::tempdir()?,
        };
        tokio::spawn(async move {
            let out = k2
                .run_for(&["get", "pods", "-w"], Duration::from_secs(8))
                .await;
            (k2, out)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let job = k.file("job.yaml", JOB_YAML)?;
    k.ok(&["create", "--validate=false", "-f", path_str(&job)])
        .await?;
    let (_k2, out) = watcher.await?;
    let out = out?;
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("hello-")).collect();
    assert!(lines.len() >= 2, "the watch shows the pod's changes: {out}");
    assert!(
        out.lines().next().unwrap_or("").starts_with("NAME"),
        "{out}"
    );
    sim.shutdown().await;
    Ok(())
}
