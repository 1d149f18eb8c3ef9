//! What Kubernetes says about a task: pure functions from a Job or a Pod to the task's outcome.
//!
//! Kept apart from the watchers so the mapping (Job conditions, the main container's terminated
//! state, pod failure reasons, why a pod has not started) is tested without a cluster.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::store::ReasonCode;

/// How a task ended, as read from Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// True for success.
    pub succeeded: bool,
    /// The reason code (`completed` on success).
    pub code: ReasonCode,
    /// Details for humans.
    pub message: String,
    /// The main container's exit code, when known.
    pub exit_code: Option<i32>,
}

/// What one pod observation says about its task.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodView {
    /// The main container's name.
    pub main_container: String,
    /// The main container (or the pod) has started.
    pub started: bool,
    /// The task ended (main container terminated, or the pod failed as a whole).
    pub outcome: Option<Outcome>,
    /// Why the pod has not started yet (`Unschedulable: 0/3 nodes …`, `ImagePullBackOff: …`).
    pub waiting: Option<(ReasonCode, String)>,
}

/// How many times `container` of `pod` was restarted in place (0 when not reported).
pub fn restart_count(pod: &Pod, container: &str) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == container))
        .map_or(0, |c| c.restart_count)
}

/// The main container of a pod: `configured` if given, else `main` when present, else the first.
pub fn main_container(pod: &Pod, configured: Option<&str>) -> String {
    let names: Vec<&str> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    if let Some(name) = configured {
        return name.to_owned();
    }
    if names.contains(&"main") {
        return "main".to_owned();
    }
    names.first().copied().unwrap_or("main").to_owned()
}

/// Reads a pod: started, ended (with exit code and reason) or waiting (with the reason).
pub fn pod_view(pod: &Pod, configured_main: Option<&str>) -> PodView {
    let main = main_container(pod, configured_main);
    let status = pod.status.clone().unwrap_or_default();
    let mut view = PodView {
        main_container: main.clone(),
        ..PodView::default()
    };
    let phase = status.phase.as_deref().unwrap_or("Pending");
    let main_status: Option<&ContainerStatus> = status
        .container_statuses
        .as_ref()
        .and_then(|all| all.iter().find(|c| c.name == main));
    if phase == "Failed" && status.reason.as_deref() == Some("Evicted") {
        view.outcome = Some(Outcome {
            succeeded: false,
            code: ReasonCode::Evicted,
            message: format!(
                "pod evicted: {}",
                status.message.as_deref().unwrap_or("no message")
            ),
            exit_code: None,
        });
        return view;
    }
    if let Some(cs) = main_status {
        let state = cs.state.clone().unwrap_or_default();
        if let Some(t) = state.terminated {
            view.started = true;
            let reason = t.reason.clone().unwrap_or_default();
            view.outcome = Some(if t.exit_code == 0 {
                Outcome {
                    succeeded: true,
                    code: ReasonCode::Completed,
                    message: format!("main container `{main}` exited with code 0"),
                    exit_code: Some(0),
                }
            } else if reason == "OOMKilled" {
                Outcome {
                    succeeded: false,
                    code: ReasonCode::OomKilled,
                    message: format!(
                        "main container `{main}` was killed for exceeding its memory limit (OOMKilled, exit code {})",
                        t.exit_code
                    ),
                    exit_code: Some(t.exit_code),
                }
            } else {
                Outcome {
                    succeeded: false,
                    code: ReasonCode::ExitCode,
                    message: format!(
                        "main container `{main}` exited with code {}{}",
                        t.exit_code,
                        if reason.is_empty() {
                            String::new()
                        } else {
                            format!(" ({reason})")
                        }
                    ),
                    exit_code: Some(t.exit_code),
                }
            });
            return view;
        }
        if state.running.is_some() {
            view.started = true;
            return view;
        }
        if let Some(w) = state.waiting {
            let reason = w.reason.unwrap_or_default();
            let code = match reason.as_str() {
                "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" => ReasonCode::ImagePull,
                _ => ReasonCode::LaunchTimeout,
            };
            if !reason.is_empty() && reason != "ContainerCreating" {
                view.waiting = Some((code, format!("{reason}: {}", w.message.unwrap_or_default())));
            }
        }
    }
    if phase == "Running" || phase == "Succeeded" {
        view.started = true;
    }
    if view.waiting.is_none()
        && let Some(c) = status.conditions.as_ref().and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        })
    {
        view.waiting = Some((
            ReasonCode::Unschedulable,
            format!(
                "{}: {}",
                c.reason.as_deref().unwrap_or("Unschedulable"),
                c.message.as_deref().unwrap_or_default()
            ),
        ));
    }
    view
}

/// True when this pod's end is its task's end: a pod that Kubernetes will not restart
/// (`restartPolicy: Never`) and that is the Job's only kind of pod (no completion index). For
/// the other pods — one of several of an Indexed Job (samza: one pod per container), or a pod
/// whose failed containers restart in place (`OnFailure`) — a terminated main container is not
/// the task's end: the Job's `Complete` or `Failed` condition is.
pub fn pod_ends_task(pod: &Pod) -> bool {
    const INDEX: &str = "batch.kubernetes.io/job-completion-index";
    let never = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .is_none_or(|p| p == "Never");
    let indexed = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(INDEX))
        || pod
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(INDEX));
    never && !indexed
}

/// The outcome a finished Job reports through its conditions, `None` while it runs.
pub fn job_outcome(job: &Job) -> Option<Outcome> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    for c in conditions.iter().filter(|c| c.status == "True") {
        match c.type_.as_str() {
            "Complete" => {
                return Some(Outcome {
                    succeeded: true,
                    code: ReasonCode::Completed,
                    message: "Job completed".to_owned(),
                    // A Job is Complete only once its pod Succeeded, and a pod Succeeds only when
                    // every container exited 0: the main container's exit code is known even when
                    // the Job's condition is seen before the pod's terminated state.
                    exit_code: Some(0),
                });
            }
            "Failed" => {
                let reason = c.reason.clone().unwrap_or_default();
                let message = c.message.clone().unwrap_or_default();
                let code = if reason == "DeadlineExceeded" {
                    ReasonCode::MaxDuration
                } else {
                    ReasonCode::JobFailed
                };
                return Some(Outcome {
                    succeeded: false,
                    code,
                    message: format!("Job failed: {reason}: {message}"),
                    exit_code: None,
                });
            }
            _ => {}
        }
    }
    None
}

/// True when the Job has finished (Complete or Failed).
pub fn job_finished(job: &Job) -> bool {
    job_outcome(job).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_single_never_restarted_pod_ends_its_task() {
        let never = pod(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "main"}]}
        }));
        assert!(pod_ends_task(&never));
        let on_failure = pod(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "main"}]}
        }));
        assert!(!pod_ends_task(&on_failure), "restarted in place");
        let indexed = pod(serde_json::json!({
            "metadata": {"name": "p", "annotations": {"batch.kubernetes.io/job-completion-index": "2"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "main"}]}
        }));
        assert!(!pod_ends_task(&indexed), "one pod of several");
    }

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("pod JSON")
    }

    #[test]
    fn main_container_prefers_config_then_main_then_first() {
        let p = pod(serde_json::json!({
            "spec": {"containers": [{"name": "side"}, {"name": "main"}]}
        }));
        assert_eq!(main_container(&p, None), "main");
        assert_eq!(main_container(&p, Some("side")), "side");
        let p = pod(serde_json::json!({"spec": {"containers": [{"name": "peon"}]}}));
        assert_eq!(main_container(&p, None), "peon");
    }

    #[test]
    fn terminated_main_container_gives_exit_code_and_reason() {
        let p = pod(serde_json::json!({
            "spec": {"containers": [{"name": "task"}]},
            "status": {"phase": "Failed", "containerStatuses": [{
                "name": "task", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}
        }));
        let view = pod_view(&p, None);
        let outcome = view.outcome.expect("ended");
        assert_eq!(outcome.code, ReasonCode::OomKilled);
        assert_eq!(outcome.exit_code, Some(137));
        let p = pod(serde_json::json!({
            "spec": {"containers": [{"name": "task"}]},
            "status": {"phase": "Failed", "containerStatuses": [{
                "name": "task", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}]}
        }));
        let outcome = pod_view(&p, None).outcome.expect("ended");
        assert_eq!(
            (outcome.code, outcome.exit_code),
            (ReasonCode::ExitCode, Some(3))
        );
    }

    #[test]
    fn unschedulable_and_image_pull_are_waiting_reasons() {
        let p = pod(serde_json::json!({
            "spec": {"containers": [{"name": "main"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": "0/3 nodes are available"}]}
        }));
        let (code, message) = pod_view(&p, None).waiting.expect("waiting");
        assert_eq!(code, ReasonCode::Unschedulable);
        assert!(message.contains("0/3 nodes"), "{message}");
        let p = pod(serde_json::json!({
            "spec": {"containers": [{"name": "main"}]},
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "back-off"}}}]}
        }));
        assert_eq!(
            pod_view(&p, None).waiting.map(|w| w.0),
            Some(ReasonCode::ImagePull)
        );
    }

    #[test]
    fn job_conditions_map_to_outcomes() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "status": {"conditions": [{"type": "Failed", "status": "True",
                "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline"}]}
        }))
        .expect("job");
        assert_eq!(
            job_outcome(&job).map(|o| o.code),
            Some(ReasonCode::MaxDuration)
        );
        let job: Job = serde_json::from_value(serde_json::json!({
            "status": {"conditions": [{"type": "Complete", "status": "True"}]}
        }))
        .expect("job");
        assert!(job_outcome(&job).expect("finished").succeeded);
        assert!(job_outcome(&Job::default()).is_none());
    }
}
