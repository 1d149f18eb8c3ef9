//! `taskpod adapter check|test|bench|new`: the tools of an adapter author.
//!
//! - `check COMPONENT [--config FILE]`: loads a component the way `serve` does and prints what
//!   it says about itself (name, version, the contract version it was built against, config
//!   schema), then validates a configuration.
//! - `test COMPONENT [--config FILE] --cases DIR`: renders every case's task through the real
//!   render path (the sandbox, then the host's Job contract) and compares the result with the
//!   case's expectation — a whole Job YAML, YAML fragments that must be contained, or an error
//!   text — printing a readable diff; fails when any case does.
//! - `bench COMPONENT [--config FILE] [--task FILE]`: latency percentiles of `adapt` with a fresh
//!   instance per call, as `serve` runs it.
//! - `new NAME --lang rust|python|js [--dir DIR]`: scaffolds an adapter project (see
//!   [`super::adapter_new`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::Value;

use super::{CliError, read_task};
use crate::adapters::{self, AdapterSpec, ComponentSource, LoadedAdapter, Runtime, RuntimeOptions};
use crate::config::Config;
use crate::contract::ANNOTATION_ADAPTER_DIGEST;
use crate::render::Renderer;

pub use super::adapter_new::{Lang, NewArgs};

/// What `adapter test` writes in place of the component's digest annotation before comparing:
/// the digest changes with every build of a component, the cases should not.
pub const DIGEST_PLACEHOLDER: &str = "(component digest)";

/// `taskpod adapter …`
#[derive(Debug, Subcommand)]
pub enum AdapterCommand {
    /// Load a component, print its info (name, version, contract version, config schema) and
    /// validate a configuration.
    Check {
        /// The component (.wasm).
        component: PathBuf,
        /// The adapter's configuration (YAML or JSON); `{}` when absent.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Render test cases with a component and compare them with the expected Jobs.
    Test(TestArgs),
    /// Latency percentiles of `adapt`, with a fresh instance per call.
    Bench(BenchArgs),
    /// Create a new adapter project (Rust, Python or JavaScript).
    New(NewArgs),
    /// Ask a running server to load an adapter again (ends its quarantine; admin token).
    Reload {
        /// The adapter's name in the server's config.
        name: String,
        /// The server.
        #[command(flatten)]
        server: super::ServerArg,
    },
}

/// The component and the host settings shared by `adapter test` and `adapter bench`.
#[derive(Debug, Args)]
pub struct Harness {
    /// The component (.wasm).
    pub component: PathBuf,
    /// The adapter's configuration (YAML or JSON); `{}` when absent.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A pod template handed to the adapter, as `NAME=FILE` (a `v1/PodTemplate`, YAML or JSON);
    /// repeat for several.
    #[arg(long = "template", value_name = "NAME=FILE")]
    pub templates: Vec<String>,
    /// The namespace the Jobs are rendered for.
    #[arg(long, default_value = "default")]
    pub namespace: String,
}

/// `taskpod adapter test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Component, configuration and templates.
    #[command(flatten)]
    pub harness: Harness,
    /// The cases: each `NAME.json` task (a taskpod task or a raw Druid task) with `NAME.yaml`
    /// (the whole expected output: the Job, then any companions), `NAME.contains.yaml`
    /// (fragments each rendered document of the same kind must contain) and/or `NAME.error`
    /// (text the render error must contain).
    #[arg(long, value_name = "DIR")]
    pub cases: PathBuf,
    /// Write the rendered output to `NAME.yaml` for each case that has no `NAME.contains.yaml`
    /// or `NAME.error`, instead of comparing (for new cases; review the files before
    /// committing them).
    #[arg(long)]
    pub bless: bool,
}

/// `taskpod adapter bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Component, configuration and templates.
    #[command(flatten)]
    pub harness: Harness,
    /// The task (a taskpod task or a raw Druid task, JSON); default: a small built-in task.
    #[arg(long, value_name = "FILE")]
    pub task: Option<PathBuf>,
    /// Measured calls.
    #[arg(long, default_value_t = 200)]
    pub iterations: usize,
    /// Unmeasured calls first.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
}

/// The task `adapter bench` runs when given none.
const BENCH_TASK: &str = r#"{"id": "bench-task-0001", "type": "bench", "tenant": "bench",
  "payload": {"source": "s3://bucket/input", "rows": 1000}}"#;

/// Runs an `adapter` subcommand.
pub fn run(command: AdapterCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match command {
        AdapterCommand::Check { component, config } => check(&component, config.as_deref(), out),
        AdapterCommand::Test(args) => test(&args, out),
        AdapterCommand::Bench(args) => bench(&args, out),
        AdapterCommand::New(args) => super::adapter_new::new(&args, out),
        AdapterCommand::Reload { name, server } => {
            Ok(super::remote::reload_adapter(&name, &server, out)?)
        }
    }
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<(), CliError> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|error| CliError::Write {
            what: "standard output".to_owned(),
            error,
        })
}

/// Reads an adapter configuration file (YAML or JSON) as JSON text; `{}` when none.
fn read_adapter_config(config_file: Option<&Path>) -> Result<Value, CliError> {
    let Some(path) = config_file else {
        return Ok(Value::Object(serde_json::Map::new()));
    };
    let fail = |message: String| CliError::AdapterConfig {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    serde_yaml::from_str(&text).map_err(|e| fail(format!("not YAML/JSON: {e}")))
}

fn component_name(component: &Path) -> String {
    component
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "adapter".to_owned())
}

fn check(
    component: &Path,
    config_file: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let config = read_adapter_config(config_file)?;
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let adapter = runtime.load(AdapterSpec {
        name: component_name(component),
        source: ComponentSource::File(component.to_path_buf()),
        config: config.to_string(),
        limits: adapters::Limits::default(),
    })?;
    let info = adapter.info();
    let schema = serde_json::from_str::<Value>(&info.config_schema)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| info.config_schema.clone());
    let text = format!(
        "component:   {}\ndigest:      {}\nname:        {}\nversion:     {}\n\
         contract:    taskpod:adapter@{} (this taskpod implements {})\ndescription: {}\n\
         task types:  {}\nconfig:      valid\nconfig schema:\n{}\n",
        component.display(),
        adapter.digest(),
        info.name,
        info.version,
        adapter.contract_version(),
        adapters::CONTRACT_VERSION,
        info.description,
        if info.task_types.is_empty() {
            "(any)".to_owned()
        } else {
            info.task_types.join(", ")
        },
        indent(&schema, "  "),
    );
    write_out(out, &text)
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|l| format!("{prefix}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Loads the component and builds a renderer whose only adapter it is (the default route).
fn renderer_for(harness: &Harness) -> Result<Renderer, CliError> {
    let adapter_config = read_adapter_config(harness.config.as_deref())?;
    let mut templates = BTreeMap::new();
    for spec in &harness.templates {
        let Some((name, file)) = spec.split_once('=') else {
            return Err(CliError::Usage(format!(
                "--template {spec:?}: expected NAME=FILE, e.g. --template base=pod-templates/base.yaml"
            )));
        };
        templates.insert(name.to_owned(), PathBuf::from(file));
    }
    let runtime = Runtime::new(RuntimeOptions::default())?;
    // Load once to learn the adapter's own name; the renderer's load below hits the runtime's
    // in-memory compilation cache.
    let probe = runtime.load(AdapterSpec {
        name: component_name(&harness.component),
        source: ComponentSource::File(harness.component.clone()),
        config: adapter_config.to_string(),
        limits: adapters::Limits::default(),
    })?;
    let name = probe.info().name.clone();
    let component = harness
        .component
        .canonicalize()
        .map_err(|error| CliError::Usage(format!("{}: {error}", harness.component.display())))?;
    let binding = serde_json::json!({
        "name": name,
        "component": component,
        "config": adapter_config,
        "templates": templates,
    });
    let mut config = Config {
        namespace: harness.namespace.clone(),
        adapters: vec![serde_json::from_value(binding).map_err(|e| {
            CliError::Usage(format!("cannot bind the component as an adapter: {e}"))
        })?],
        base_dir: PathBuf::from("."),
        ..Config::default()
    };
    config.routing.default = Some(name);
    config.validate()?;
    Ok(Renderer::new(config, runtime)?)
}

/// One case of `adapter test`: a task file and what is expected of it.
#[derive(Debug)]
struct Case {
    name: String,
    task: PathBuf,
    whole: Option<PathBuf>,
    contains: Option<PathBuf>,
    error: Option<PathBuf>,
}

fn find_cases(dir: &Path) -> Result<Vec<Case>, CliError> {
    let entries = std::fs::read_dir(dir).map_err(|error| {
        CliError::Usage(format!(
            "--cases {}: cannot read the directory: {error}",
            dir.display()
        ))
    })?;
    let mut cases = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let Some(name) = file.strip_suffix(".json") else {
            continue;
        };
        let existing = |suffix: &str| {
            let p = dir.join(format!("{name}{suffix}"));
            p.is_file().then_some(p)
        };
        cases.push(Case {
            name: name.to_owned(),
            task: path.clone(),
            whole: existing(".yaml"),
            contains: existing(".contains.yaml"),
            error: existing(".error"),
        });
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    if cases.is_empty() {
        return Err(CliError::Usage(format!(
            "--cases {}: no cases (a case is a NAME.json task with NAME.yaml, NAME.contains.yaml \
             or NAME.error beside it)",
            dir.display()
        )));
    }
    Ok(cases)
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Parses multi-document YAML into JSON values (empty documents skipped).
fn yaml_documents(text: &str, origin: &Path) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = <Value as serde::Deserialize>::deserialize(doc).map_err(|e| {
            format!(
                "{} (document {}): not YAML: {e}",
                origin.display(),
                index + 1
            )
        })?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// The rendered documents, with the digest annotation replaced by [`DIGEST_PLACEHOLDER`].
fn rendered_documents(manifests: &crate::contract::Manifests) -> Result<Vec<Value>, String> {
    let mut docs = manifests.to_values().map_err(|e| e.to_string())?;
    for doc in &mut docs {
        if let Some(annotations) = doc
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
            && annotations.contains_key(ANNOTATION_ADAPTER_DIGEST)
        {
            annotations.insert(
                ANNOTATION_ADAPTER_DIGEST.to_owned(),
                Value::String(DIGEST_PLACEHOLDER.to_owned()),
            );
        }
    }
    Ok(docs)
}

/// The same value with every object's keys in order, so YAML text of equal values is equal.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

fn to_yaml(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| serde_yaml::to_string(&sorted(d)).unwrap_or_else(|e| format!("# {e}\n")))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// A line diff of `expected` against `actual` (longest common subsequence), with `context`
/// unchanged lines around each change: `-` expected only, `+` rendered only.
pub fn line_diff(expected: &str, actual: &str, context: usize) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // On a tie the expected line goes first: `-` before `+`, as diff(1) shows them.
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| *op != ' ')
        .map(|(k, _)| k)
        .collect();
    let mut text = String::new();
    let mut last_shown: Option<usize> = None;
    for (k, (op, line)) in ops.iter().enumerate() {
        let near = changed
            .iter()
            .any(|&c| c + context >= k && k + context >= c);
        if !near {
            continue;
        }
        if last_shown.is_some_and(|l| l + 1 != k) || (last_shown.is_none() && k > 0) {
            text.push_str("  ...\n");
        }
        let _ = writeln!(text, "{op} {line}");
        last_shown = Some(k);
    }
    if last_shown.is_some_and(|l| l + 1 < ops.len()) {
        text.push_str("  ...\n");
    }
    text
}

/// Checks that `actual` contains `expected`: every key of an expected object present with a
/// containing value, every element of an expected list contained in some element of the
/// rendered list (order free), scalars equal. Appends one line per mismatch to `problems`.
pub fn contains(actual: &Value, expected: &Value, path: &str, problems: &mut Vec<String>) {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (key, want) in e {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match a.get(key) {
                    Some(got) => contains(got, want, &child, problems),
                    None => problems.push(format!("{child}: missing (expected {})", compact(want))),
                }
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            for (index, want) in e.iter().enumerate() {
                if a.iter().any(|got| {
                    let mut scratch = Vec::new();
                    contains(got, want, path, &mut scratch);
                    scratch.is_empty()
                }) {
                    continue;
                }
                // Name the closest element: the one with the same `name`, else the same index.
                let same_name = want
                    .get("name")
                    .and_then(|name| a.iter().position(|got| got.get("name") == Some(name)));
                match same_name.or((index < a.len()).then_some(index)) {
                    Some(at) => {
                        let label = match want.get("name").and_then(Value::as_str) {
                            Some(name) => format!("{path}[name={name}]"),
                            None => format!("{path}[{at}]"),
                        };
                        contains(&a[at], want, &label, problems);
                    }
                    None => problems.push(format!(
                        "{path}: no element contains {} (the list has {} elements)",
                        compact(want),
                        a.len()
                    )),
                }
            }
        }
        (got, want) if got == want => {}
        (got, want) => problems.push(format!(
            "{}: expected {}, got {}",
            if path.is_empty() { "(document)" } else { path },
            compact(want),
            compact(got)
        )),
    }
}

fn compact(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 120 {
        format!("{}…", text.chars().take(120).collect::<String>())
    } else {
        text
    }
}

/// The outcome of one case: `Ok` or the report of what differs.
fn run_case(renderer: &Renderer, case: &Case, bless: bool) -> Result<(), String> {
    let task = read_task(&case.task).map_err(|e| e.to_string())?;
    let rendered = renderer.render_blocking(&task);
    if bless && case.contains.is_none() && case.error.is_none() {
        let manifests = rendered.map_err(|e| format!("render failed: {e:#}"))?;
        let docs = rendered_documents(&manifests)?;
        let path = case.task.with_file_name(format!("{}.yaml", case.name));
        return std::fs::write(&path, to_yaml(&docs))
            .map_err(|e| format!("cannot write {}: {e}", path.display()));
    }
    if case.whole.is_none() && case.contains.is_none() && case.error.is_none() {
        return Err(format!(
            "no expectation: add {0}.yaml (the whole output; `--bless` writes it), \
             {0}.contains.yaml (fragments) or {0}.error (an error text)",
            case.name
        ));
    }
    let mut report = String::new();
    match (&case.error, rendered) {
        (Some(error_file), Err(error)) => {
            let want = read_text(error_file)?;
            let want = want.trim();
            let got = format!("{:#}", anyhow::Error::from(error));
            if !got.contains(want) {
                let _ = writeln!(
                    report,
                    "  the error does not contain the text of {}\n    expected text: {want}\n    \
                     error:         {got}",
                    error_file.display()
                );
            }
        }
        (Some(error_file), Ok(_)) => {
            let _ = writeln!(
                report,
                "  expected an error containing the text of {}, but the task rendered",
                error_file.display()
            );
        }
        (None, Err(error)) => {
            let _ = writeln!(report, "  render failed: {:#}", anyhow::Error::from(error));
        }
        (None, Ok(manifests)) => {
            let docs = rendered_documents(&manifests)?;
            if let Some(whole) = &case.whole {
                let expected = yaml_documents(&read_text(whole)?, whole)?;
                if expected.iter().map(sorted).collect::<Vec<_>>()
                    != docs.iter().map(sorted).collect::<Vec<_>>()
                {
                    let _ = writeln!(
                        report,
                        "  the output differs from {} (- expected, + rendered):\n{}",
                        whole.display(),
                        indent(&line_diff(&to_yaml(&expected), &to_yaml(&docs), 3), "  ")
                    );
                }
            }
            if let Some(fragments) = &case.contains {
                let mut problems = Vec::new();
                for (index, want) in yaml_documents(&read_text(fragments)?, fragments)?
                    .iter()
                    .enumerate()
                {
                    let kind = want.get("kind").and_then(Value::as_str).unwrap_or("Job");
                    let candidates: Vec<&Value> = docs
                        .iter()
                        .filter(|d| d.get("kind").and_then(Value::as_str) == Some(kind))
                        .collect();
                    let mut best: Option<Vec<String>> = None;
                    for candidate in &candidates {
                        let mut found = Vec::new();
                        contains(candidate, want, "", &mut found);
                        if best.as_ref().is_none_or(|b| found.len() < b.len()) {
                            best = Some(found);
                        }
                    }
                    match best {
                        Some(found) => problems.extend(
                            found
                                .into_iter()
                                .map(|p| format!("document {} ({kind}): {p}", index + 1)),
                        ),
                        None => problems.push(format!(
                            "document {}: no rendered {kind} (rendered: {})",
                            index + 1,
                            docs.iter()
                                .filter_map(|d| d.get("kind").and_then(Value::as_str))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    }
                }
                if !problems.is_empty() {
                    let _ = writeln!(
                        report,
                        "  the output does not contain {}:\n{}",
                        fragments.display(),
                        problems
                            .iter()
                            .map(|p| format!("    {p}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    );
                }
            }
        }
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(report.trim_end().to_owned())
    }
}

fn test(args: &TestArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let cases = find_cases(&args.cases)?;
    let renderer = renderer_for(&args.harness)?;
    let adapter = renderer.adapters().next();
    if let Some(adapter) = &adapter {
        write_out(
            out,
            &format!(
                "testing {} {} ({}) with {} cases from {}\n",
                adapter.info().name,
                adapter.info().version,
                args.harness.component.display(),
                cases.len(),
                args.cases.display()
            ),
        )?;
    }
    let mut failed = Vec::new();
    for case in &cases {
        match run_case(&renderer, case, args.bless) {
            Ok(()) if args.bless && case.contains.is_none() && case.error.is_none() => {
                write_out(out, &format!("blessed {}.yaml\n", case.name))?
            }
            Ok(()) => write_out(out, &format!("case {} ... ok\n", case.name))?,
            Err(report) => {
                write_out(out, &format!("case {} ... FAILED\n{report}\n", case.name))?;
                failed.push(case.name.clone());
            }
        }
    }
    let passed = cases.len() - failed.len();
    write_out(
        out,
        &format!("adapter test: {passed} passed, {} failed\n", failed.len()),
    )?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::CasesFailed {
            failed: failed.len(),
            total: cases.len(),
            names: failed.join(", "),
        })
    }
}

/// Latency figures of `adapter bench`.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// The adapter's name and version.
    pub adapter: String,
    /// Measured calls.
    pub iterations: usize,
    /// Percentiles of `adapt` (fresh instance per call): p50, p90, p99, max.
    pub adapt: [Duration; 4],
    /// Percentiles of `info` (fresh instance, smallest call: the fixed cost of a call).
    pub info: [Duration; 4],
    /// Bytes of Job + companions one `adapt` returns.
    pub output_bytes: usize,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        writeln!(
            f,
            "adapter bench: {} — {} calls each, a fresh instance per call",
            self.adapter, self.iterations
        )?;
        for (what, p) in [("adapt", &self.adapt), ("info (call overhead)", &self.info)] {
            writeln!(
                f,
                "  {what:<21} p50 {:>9.1} µs   p90 {:>9.1} µs   p99 {:>9.1} µs   max {:>9.1} µs",
                us(p[0]),
                us(p[1]),
                us(p[2]),
                us(p[3])
            )?;
        }
        writeln!(
            f,
            "  output: {} bytes (Job + companions)",
            self.output_bytes
        )
    }
}

fn percentiles(mut samples: Vec<Duration>) -> [Duration; 4] {
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[index]
    };
    [at(0.50), at(0.90), at(0.99), at(1.0)]
}

/// Runs `adapter bench` and returns its figures.
pub fn bench_report(args: &BenchArgs) -> Result<BenchReport, CliError> {
    if args.iterations == 0 {
        return Err(CliError::Usage(
            "--iterations: must be at least 1".to_owned(),
        ));
    }
    let renderer = renderer_for(&args.harness)?;
    let task = match &args.task {
        Some(path) => read_task(path)?,
        None => crate::task::SubmittedTask::parse(BENCH_TASK).map_err(|error| CliError::Task {
            path: PathBuf::from("(built-in bench task)"),
            error,
        })?,
    };
    let prepared = renderer.prepare(&task)?;
    let adapter: &LoadedAdapter = &prepared.adapter;
    let mut output_bytes = 0;
    let mut adapt = Vec::with_capacity(args.iterations);
    let mut info = Vec::with_capacity(args.iterations);
    for round in 0..args.warmup + args.iterations {
        let start = Instant::now();
        let output = adapter.adapt_blocking(&prepared.task, &prepared.context)?;
        let took = start.elapsed();
        let start = Instant::now();
        adapter.call_info()?;
        let info_took = start.elapsed();
        if round >= args.warmup {
            adapt.push(took);
            info.push(info_took);
        }
        output_bytes = output.job.len() + output.companions.iter().map(String::len).sum::<usize>();
    }
    Ok(BenchReport {
        adapter: format!("{} {}", adapter.info().name, adapter.info().version),
        iterations: args.iterations,
        adapt: percentiles(adapt),
        info: percentiles(info),
        output_bytes,
    })
}

fn bench(args: &BenchArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let report = bench_report(args)?;
    write_out(out, &report.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containment_names_the_path_of_each_difference() {
        let actual = json!({"spec": {"containers": [
            {"name": "a", "image": "x:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "b", "image": "y:1"}
        ]}});
        let mut problems = Vec::new();
        contains(
            &actual,
            &json!({"spec": {"containers": [{"name": "b", "image": "y:1"}]}}),
            "",
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        contains(
            &actual,
            &json!({"spec": {"containers": [{"name": "a", "image": "x:2", "cpu": 1}]}}),
            "",
            &mut problems,
        );
        // One line per difference; their order follows the JSON map's key order, which depends
        // on serde_json's features in the build, so compare them sorted.
        problems.sort();
        assert_eq!(
            problems,
            [
                "spec.containers[name=a].cpu: missing (expected 1)",
                "spec.containers[name=a].image: expected \"x:2\", got \"x:1\"",
            ]
        );
    }

    #[test]
    fn line_diff_marks_changed_lines_with_context() {
        let diff = line_diff("a\nb\nc\nd\ne\nf\ng\n", "a\nb\nc\nD\ne\nf\ng\n", 1);
        assert_eq!(diff, "  ...\n  c\n- d\n+ D\n  e\n  ...\n");
    }

    #[test]
    fn percentiles_pick_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let p = percentiles(samples);
        assert_eq!(p, [50, 90, 99, 100].map(Duration::from_micros));
    }
}
