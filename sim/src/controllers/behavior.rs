//! What simulated containers do: the behaviour rules of the simulated kubelets.
//!
//! A [`Behavior`] is a default rule plus an ordered list of rules; each container of a pod takes
//! the first rule whose `match` fits it (by pod labels, namespace, image glob and container name),
//! else the default. Pod annotations then override single fields, so that a test can shape one
//! pod without a rules file. The result is a [`PodPlan`]: one [`ContainerPlan`] per container,
//! which the kubelets play out over (scalable, fractional) time.
//!
//! Rules file (`taskpod sim --behavior FILE`, [`Behavior::from_yaml_file`]):
//! ```yaml
//! default:                 # optional; when absent: run 1 s, exit 0, 3 generated log lines
//!   runSeconds: 0.5
//!   logLines: 2
//! rules:
//!   - match: { image: "*/druid:*", container: main, labels: { app: druid } }
//!     then: { runSeconds: 2, exitCode: 0, logs: ["starting", "done"] }
//!   - match: { image: "broken/*" }
//!     then: { imagePullError: true }
//!   - match: { container: sidecar }
//!     then: { forever: true }
//! ```
//! Fields of `then` (all optional; unset fields come from the default rule): `runSeconds`
//! (float), `forever` (never exits by itself), `exitCode`, `logs` (explicit lines, written when the
//! container starts), `logLines` (N generated lines spread over the run), `logIntervalSeconds`
//! (spacing of generated lines; default: the run time divided by N, or 1 s for endless
//! containers), `imagePullError` (`ErrImagePull` then `ImagePullBackOff`; the pod stays
//! `Pending`), `oomKilled` (ends with exit code 137, reason `OOMKilled`), `crashAfterSeconds`
//! (ends after that time with `exitCode`, or 1 when that is 0, reason `Error`, even when
//! `forever`), `failTimes` (the first N runs of this container — counted per Job and completion
//! index, or per pod for pods without a Job — end with `exitCode`, or 1 when that is 0; later runs
//! exit 0), and the pod-level `evictAfterSeconds` (the pod is evicted: `Failed`, reason `Evicted`)
//! and `neverSchedule` (the scheduler never binds the pod).
//!
//! Pod annotations (put them on a Job's pod template):
//! - `sim.taskpod.dev/run-seconds: "2.5"` and `sim.taskpod.dev/exit-code: "3"` — for every
//!   regular container (`spec.containers`);
//! - `sim.taskpod.dev/behavior: '{"exitCode": 1, "containers": {"sidecar": {"forever": true}}}'`
//!   — JSON: the fields of `then` for every regular container, plus `containers`, a map from
//!   container name (regular, init or sidecar) to fields for that container only.
//!
//! Precedence, lowest first: default rule, matching rule, `run-seconds`/`exit-code`, the
//! `behavior` annotation's pod-wide fields, its per-container fields. Native sidecars (init
//! containers with `restartPolicy: Always`) run until the regular containers end unless a
//! matching rule or annotation gives them an end of their own.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde::{Deserialize, Serialize};

/// Annotation: run time in seconds of every regular container.
pub const ANNOTATION_RUN_SECONDS: &str = "sim.taskpod.dev/run-seconds";
/// Annotation: exit code of every regular container.
pub const ANNOTATION_EXIT_CODE: &str = "sim.taskpod.dev/exit-code";
/// Annotation: JSON behaviour, pod-wide fields plus a per-container `containers` map.
pub const ANNOTATION_BEHAVIOR: &str = "sim.taskpod.dev/behavior";

/// Errors loading or applying behaviour rules.
#[derive(Debug, thiserror::Error)]
pub enum BehaviorError {
    /// The rules file could not be read.
    #[error("cannot read behaviour rules file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The rules file is not valid YAML for the rules format.
    #[error(
        "behaviour rules in {origin} are invalid: {message} (expected `default:` and `rules:` \
         with `match`/`then` entries; see the sim::controllers::behavior documentation)"
    )]
    Parse {
        /// The file name, or `<string>`.
        origin: String,
        /// What the parser said, with line and column.
        message: String,
    },
    /// A value is out of range.
    #[error("behaviour rules in {origin}: {field} {message}")]
    Invalid {
        /// The file name, or `<string>`.
        origin: String,
        /// Field path, e.g. `rules[2].then.runSeconds`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A pod annotation could not be parsed.
    #[error("pod annotation {annotation}: {message}")]
    Annotation {
        /// The annotation key.
        annotation: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Which containers a rule applies to; every given field must match (an empty match matches all).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleMatch {
    /// Pod labels that must all be present with these values.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Pod namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Container image, as a glob (`*` any run of characters, `?` one character).
    #[serde(default)]
    pub image: Option<String>,
    /// Container name.
    #[serde(default)]
    pub container: Option<String>,
}

/// What a container does; every field is optional so that rules and annotations can overlay
/// each other (see the module documentation for each field's meaning).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerBehavior {
    /// Run time in seconds before the container exits.
    #[serde(default)]
    pub run_seconds: Option<f64>,
    /// The container never exits by itself.
    #[serde(default)]
    pub forever: Option<bool>,
    /// Exit code when the run time is over.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Lines written when the container starts.
    #[serde(default)]
    pub logs: Option<Vec<String>>,
    /// Number of generated lines spread over the run.
    #[serde(default)]
    pub log_lines: Option<u32>,
    /// Spacing of generated lines in seconds.
    #[serde(default)]
    pub log_interval_seconds: Option<f64>,
    /// The image cannot be pulled.
    #[serde(default)]
    pub image_pull_error: Option<bool>,
    /// The container is OOM-killed at the end of its run (exit code 137).
    #[serde(default)]
    pub oom_killed: Option<bool>,
    /// The container crashes after this many seconds.
    #[serde(default)]
    pub crash_after_seconds: Option<f64>,
    /// The first N runs fail.
    #[serde(default)]
    pub fail_times: Option<u32>,
    /// The pod is evicted after this many seconds of running (pod-level).
    #[serde(default)]
    pub evict_after_seconds: Option<f64>,
    /// The pod is never scheduled (pod-level).
    #[serde(default)]
    pub never_schedule: Option<bool>,
}

impl ContainerBehavior {
    /// Overlays `other`'s set fields onto `self`.
    fn overlay(&mut self, other: &ContainerBehavior) {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f.clone(); } )* };
        }
        take!(
            run_seconds,
            forever,
            exit_code,
            logs,
            log_lines,
            log_interval_seconds,
            image_pull_error,
            oom_killed,
            crash_after_seconds,
            fail_times,
            evict_after_seconds,
            never_schedule
        );
    }

    /// True when the behaviour says how (or whether) the container ends.
    fn sets_end(&self) -> bool {
        self.run_seconds.is_some()
            || self.forever.is_some()
            || self.crash_after_seconds.is_some()
            || self.fail_times.is_some()
    }

    fn validate(&self, origin: &str, path: &str) -> Result<(), BehaviorError> {
        let seconds = [
            ("runSeconds", self.run_seconds),
            ("logIntervalSeconds", self.log_interval_seconds),
            ("crashAfterSeconds", self.crash_after_seconds),
            ("evictAfterSeconds", self.evict_after_seconds),
        ];
        for (name, value) in seconds {
            if let Some(v) = value
                && (!v.is_finite() || !(0.0..=31_536_000.0).contains(&v))
            {
                return Err(BehaviorError::Invalid {
                    origin: origin.to_owned(),
                    field: format!("{path}.{name}"),
                    message: format!("is {v}; give a number of seconds between 0 and 31536000"),
                });
            }
        }
        if let Some(n) = self.log_lines
            && n > 1_000_000
        {
            return Err(BehaviorError::Invalid {
                origin: origin.to_owned(),
                field: format!("{path}.logLines"),
                message: format!("is {n}; at most 1000000 generated lines per container"),
            });
        }
        Ok(())
    }
}

/// One rule: containers that `match` do what `then` says.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Optional name, for messages.
    #[serde(default)]
    pub name: Option<String>,
    /// Which containers the rule applies to.
    #[serde(default, rename = "match")]
    pub matches: RuleMatch,
    /// What they do.
    #[serde(default)]
    pub then: ContainerBehavior,
}

/// Behaviour rules of the simulated kubelets: a default plus ordered rules (first match wins).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behavior {
    /// What containers matched by no rule do.
    #[serde(default = "Behavior::builtin_default")]
    pub default: ContainerBehavior,
    /// Rules, first match wins.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            default: Self::builtin_default(),
            rules: Vec::new(),
        }
    }
}

/// The resolved plan of one container.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerPlan {
    /// Run time of one run; `None` = until stopped.
    pub run: Option<Duration>,
    /// Exit code at the end of a normal run.
    pub exit_code: i32,
    /// Lines written at start.
    pub logs: Vec<String>,
    /// Generated lines over the run.
    pub log_lines: u32,
    /// Spacing of generated lines.
    pub log_interval: Duration,
    /// The image cannot be pulled.
    pub image_pull_error: bool,
    /// OOM-killed at the end of the run.
    pub oom_killed: bool,
    /// Crash time (overrides `run`).
    pub crash_after: Option<Duration>,
    /// Number of failing runs before runs succeed.
    pub fail_times: u32,
}

/// The resolved plan of one pod.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PodPlan {
    /// Per container name (regular and init containers).
    pub containers: HashMap<String, ContainerPlan>,
    /// Eviction time after the pod starts running.
    pub evict_after: Option<Duration>,
    /// The scheduler never binds the pod.
    pub never_schedule: bool,
}

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v.max(0.0))
}

/// Glob match with `*` and `?`.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

impl Behavior {
    fn builtin_default() -> ContainerBehavior {
        ContainerBehavior {
            run_seconds: Some(1.0),
            exit_code: Some(0),
            log_lines: Some(3),
            ..ContainerBehavior::default()
        }
    }

    /// Parses rules from YAML text (`origin` names it in errors).
    pub fn from_yaml_str(text: &str, origin: &str) -> Result<Self, BehaviorError> {
        let behavior: Behavior = serde_yaml::from_str(text).map_err(|e| BehaviorError::Parse {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        behavior.validate(origin)?;
        Ok(behavior)
    }

    /// Loads rules from a YAML file.
    pub fn from_yaml_file(path: &Path) -> Result<Self, BehaviorError> {
        let text = std::fs::read_to_string(path).map_err(|source| BehaviorError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml_str(&text, &path.display().to_string())
    }

    /// Adds a rule at the end (builder style, for tests).
    pub fn with_rule(mut self, matches: RuleMatch, then: ContainerBehavior) -> Self {
        self.rules.push(Rule {
            name: None,
            matches,
            then,
        });
        self
    }

    /// Checks value ranges.
    pub fn validate(&self, origin: &str) -> Result<(), BehaviorError> {
        self.default.validate(origin, "default")?;
        for (i, rule) in self.rules.iter().enumerate() {
            rule.then.validate(origin, &format!("rules[{i}].then"))?;
        }
        Ok(())
    }

    fn matching_rule(&self, pod: &Pod, container: &Container) -> Option<&Rule> {
        let labels = pod.metadata.labels.as_ref();
        self.rules.iter().find(|rule| {
            let m = &rule.matches;
            m.labels
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
                && m.namespace
                    .as_ref()
                    .is_none_or(|ns| pod.metadata.namespace.as_ref() == Some(ns))
                && m.container.as_ref().is_none_or(|c| *c == container.name)
                && m.image.as_ref().is_none_or(|glob| {
                    glob_match(glob, container.image.as_deref().unwrap_or_default())
                })
        })
    }

    /// Resolves what every container of `pod` does. Annotation errors are returned so that the
    /// kubelet can report them; callers fall back to the rules without annotations.
    pub fn plan(&self, pod: &Pod) -> Result<PodPlan, BehaviorError> {
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        let mut pod_wide = ContainerBehavior::default();
        if let Some(v) = annotations.get(ANNOTATION_RUN_SECONDS) {
            let secs: f64 = v.trim().parse().map_err(|_| BehaviorError::Annotation {
                annotation: ANNOTATION_RUN_SECONDS,
                message: format!("{v:?} is not a number of seconds"),
            })?;
            pod_wide.run_seconds = Some(secs);
        }
        if let Some(v) = annotations.get(ANNOTATION_EXIT_CODE) {
            let code: i32 = v.trim().parse().map_err(|_| BehaviorError::Annotation {
                annotation: ANNOTATION_EXIT_CODE,
                message: format!("{v:?} is not an integer exit code"),
            })?;
            pod_wide.exit_code = Some(code);
        }
        let mut per_container: BTreeMap<String, ContainerBehavior> = BTreeMap::new();
        if let Some(v) = annotations.get(ANNOTATION_BEHAVIOR) {
            let mut map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(v)
                .map_err(|e| BehaviorError::Annotation {
                    annotation: ANNOTATION_BEHAVIOR,
                    message: format!("invalid JSON object: {e}"),
                })?;
            if let Some(containers) = map.remove("containers") {
                per_container =
                    serde_json::from_value(containers).map_err(|e| BehaviorError::Annotation {
                        annotation: ANNOTATION_BEHAVIOR,
                        message: format!("invalid `containers` map: {e}"),
                    })?;
            }
            let fields: ContainerBehavior = serde_json::from_value(serde_json::Value::Object(map))
                .map_err(|e| BehaviorError::Annotation {
                    annotation: ANNOTATION_BEHAVIOR,
                    message: format!("invalid pod-wide field: {e}"),
                })?;
            pod_wide.overlay(&fields);
        }
        pod_wide
            .validate("annotations", ANNOTATION_BEHAVIOR)
            .map_err(|e| BehaviorError::Annotation {
                annotation: ANNOTATION_BEHAVIOR,
                message: e.to_string(),
            })?;

        let spec = pod.spec.clone().unwrap_or_default();
        let mut plan = PodPlan::default();
        let init = spec.init_containers.unwrap_or_default();
        let regular = spec.containers;
        let all = init
            .iter()
            .map(|c| (c, false))
            .chain(regular.iter().map(|c| (c, true)));
        for (container, is_regular) in all {
            let sidecar = !is_regular && container.restart_policy.as_deref() == Some("Always");
            let rule = self.matching_rule(pod, container);
            let mut b = self.default.clone();
            let mut explicit = ContainerBehavior::default();
            if let Some(rule) = rule {
                explicit.overlay(&rule.then);
            }
            if is_regular {
                explicit.overlay(&pod_wide);
            }
            if let Some(own) = per_container.get(&container.name) {
                explicit.overlay(own);
            }
            b.overlay(&explicit);
            if sidecar && !explicit.sets_end() {
                b.forever = Some(true);
            }
            if b.evict_after_seconds.is_some() && plan.evict_after.is_none() {
                plan.evict_after = b.evict_after_seconds.map(secs);
            }
            if b.never_schedule == Some(true) {
                plan.never_schedule = true;
            }
            let run = if b.forever == Some(true) {
                None
            } else {
                Some(secs(b.run_seconds.unwrap_or(1.0)))
            };
            let log_lines = b.log_lines.unwrap_or(0);
            let log_interval = match (b.log_interval_seconds, run) {
                (Some(s), _) => secs(s),
                (None, Some(run)) if log_lines > 0 => run / (log_lines + 1),
                _ => Duration::from_secs(1),
            };
            plan.containers.insert(
                container.name.clone(),
                ContainerPlan {
                    run,
                    exit_code: b.exit_code.unwrap_or(0),
                    logs: b.logs.clone().unwrap_or_default(),
                    log_lines,
                    log_interval,
                    image_pull_error: b.image_pull_error == Some(true),
                    oom_killed: b.oom_killed == Some(true),
                    crash_after: b.crash_after_seconds.map(secs),
                    fail_times: b.fail_times.unwrap_or(0),
                },
            );
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("valid pod")
    }

    #[test]
    fn glob_matches_like_a_shell() {
        assert!(glob_match("*/druid:*", "apache/druid:30.0"));
        assert!(glob_match("busybox", "busybox"));
        assert!(glob_match("b?sy*", "busybox:1"));
        assert!(!glob_match("busybox", "busybox:1"));
        assert!(!glob_match("*druid", "druid:1"));
    }

    #[test]
    fn rules_file_parses_and_rejects_unknown_fields() {
        let b = Behavior::from_yaml_str(
            "rules:\n  - match: {image: 'broken/*'}\n    then: {imagePullError: true}\n",
            "t.yaml",
        )
        .expect("parses");
        assert_eq!(b.rules.len(), 1);
        assert_eq!(b.default.run_seconds, Some(1.0));
        let err = Behavior::from_yaml_str("rules:\n  - then: {runSecs: 1}\n", "t.yaml")
            .expect_err("unknown field");
        assert!(err.to_string().contains("runSecs"), "{err}");
        let err =
            Behavior::from_yaml_str("default: {runSeconds: -1}\n", "t.yaml").expect_err("negative");
        assert!(err.to_string().contains("default.runSeconds"), "{err}");
    }

    #[test]
    fn precedence_rule_then_annotations_then_per_container() {
        let b = Behavior::default().with_rule(
            RuleMatch {
                container: Some("main".into()),
                ..RuleMatch::default()
            },
            ContainerBehavior {
                exit_code: Some(4),
                run_seconds: Some(9.0),
                ..ContainerBehavior::default()
            },
        );
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "annotations": {
                "sim.taskpod.dev/run-seconds": "0.25",
                "sim.taskpod.dev/behavior": "{\"logLines\": 7, \"containers\": {\"side\": {\"forever\": true}}}"
            }},
            "spec": {
                "initContainers": [{"name": "native", "image": "x", "restartPolicy": "Always"}],
                "containers": [{"name": "main", "image": "a"}, {"name": "side", "image": "b"}]
            }
        }));
        let plan = b.plan(&p).expect("plan");
        let main = &plan.containers["main"];
        assert_eq!(main.exit_code, 4);
        assert_eq!(main.run, Some(Duration::from_millis(250)));
        assert_eq!(main.log_lines, 7);
        assert_eq!(plan.containers["side"].run, None);
        assert_eq!(
            plan.containers["native"].run, None,
            "native sidecar runs on"
        );
    }

    #[test]
    fn rules_load_from_a_file_and_missing_files_are_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("rules.yaml");
        std::fs::write(
            &path,
            "default: {runSeconds: 0.5}\nrules:\n  - name: sidecars\n    match: {container: proxy}\n    then: {forever: true}\n",
        )
        .expect("write rules");
        let b = Behavior::from_yaml_file(&path).expect("loads");
        assert_eq!(b.default.run_seconds, Some(0.5));
        assert_eq!(b.rules[0].name.as_deref(), Some("sidecars"));
        let missing = dir.path().join("nope.yaml");
        let err = Behavior::from_yaml_file(&missing).expect_err("missing file");
        assert!(err.to_string().contains("nope.yaml"), "{err}");
    }

    #[test]
    fn bad_annotation_is_reported() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "annotations": {"sim.taskpod.dev/behavior": "{\"nope\": 1}"}},
            "spec": {"containers": [{"name": "main", "image": "a"}]}
        }));
        let err = Behavior::default().plan(&p).expect_err("unknown field");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
