//! Kubernetes access for the runner: Jobs, Pods, Events and the companion objects, in the
//! configured namespace.
//!
//! This module owns every request taskpod makes to the API server, so the rules about them live in
//! one place: which errors are worth retrying (429, 5xx, connection failures), what a create that
//! finds an existing object means (`AlreadyExists` carrying our task id is ours), how companions are
//! owned by their Job (an ownerReference with the Job's uid, so the garbage collector deletes them
//! with it; the host also deletes them itself when it ends a task) and how the scheduler's or
//! kubelet's reason for a pod that never started is read back from Events.

use std::sync::Arc;
use std::time::Duration;

use ::kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, PropagationPolicy};
use ::kube::{Client, Resource};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::contract::{ANNOTATION_TASK_ID, Companion, LABEL_INSTANCE, LABEL_TASK};
use crate::metrics::Metrics;

/// Result alias of this module.
pub type Result<T, E = KubeError> = std::result::Result<T, E>;

/// Why a Kubernetes request failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The API server refused the request for good (4xx other than 409/429): retrying the same
    /// request cannot succeed.
    #[error("the Kubernetes API refused {what}: {message}")]
    Refused {
        /// What was requested (`create Job x`).
        what: String,
        /// The API server's message.
        message: String,
    },
    /// A Job with our deterministic name exists but carries another task id.
    #[error(
        "Job {name} already exists and belongs to task `{owner}`; delete it or use another task id"
    )]
    NameTaken {
        /// The Job name.
        name: String,
        /// The task id in its annotation (empty when it has none).
        owner: String,
    },
    /// A transient failure (429, 5xx, connection): worth retrying.
    #[error("Kubernetes API request {what} failed: {message}")]
    Transient {
        /// What was requested.
        what: String,
        /// The error.
        message: String,
    },
}

impl KubeError {
    /// True when retrying the same request may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, KubeError::Transient { .. })
    }

    fn from_kube(what: impl Into<String>, error: ::kube::Error) -> KubeError {
        let what = what.into();
        match &error {
            ::kube::Error::Api(status) if status.code == 429 || status.code >= 500 => {
                KubeError::Transient {
                    what,
                    message: status.message.clone(),
                }
            }
            ::kube::Error::Api(status) => KubeError::Refused {
                what,
                message: format!("{} ({})", status.message, status.reason),
            },
            other => KubeError::Transient {
                what,
                message: other.to_string(),
            },
        }
    }
}

fn status_code(error: &::kube::Error) -> Option<u16> {
    match error {
        ::kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// The Kubernetes objects of one namespace, as the runner uses them.
#[derive(Clone)]
pub struct Kube {
    client: Client,
    namespace: String,
    jobs: Api<Job>,
    pods: Api<Pod>,
    events: Api<Event>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Kube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kube")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// What a Job create found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The Job was created now.
    New {
        /// The Job's uid.
        uid: String,
    },
    /// The Job already existed and carries our task id (an earlier attempt created it).
    Existing {
        /// The Job's uid.
        uid: String,
    },
}

impl Created {
    /// The Job's uid.
    pub fn uid(&self) -> &str {
        match self {
            Created::New { uid } | Created::Existing { uid } => uid,
        }
    }
}

impl Kube {
    /// Access to `namespace` through `client`.
    pub fn new(client: Client, namespace: &str) -> Kube {
        Kube {
            jobs: Api::namespaced(client.clone(), namespace),
            pods: Api::namespaced(client.clone(), namespace),
            events: Api::namespaced(client.clone(), namespace),
            namespace: namespace.to_owned(),
            client,
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// Counts failed requests in `metrics` (`taskpod_kube_api_errors_total`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Kube {
        self.metrics = metrics;
        self
    }

    /// Counts a failed request and says what it means.
    fn fail(
        &self,
        verb: &str,
        resource: &str,
        what: impl Into<String>,
        error: ::kube::Error,
    ) -> KubeError {
        self.metrics.kube_error(verb, resource, status_code(&error));
        KubeError::from_kube(what, error)
    }

    /// The Jobs API (for the watcher).
    pub fn jobs(&self) -> Api<Job> {
        self.jobs.clone()
    }

    /// The Pods API (for the watcher and log streams).
    pub fn pods(&self) -> Api<Pod> {
        self.pods.clone()
    }

    /// The label selector of everything instance `instance` owns.
    pub fn instance_selector(instance: &str) -> String {
        format!("{LABEL_INSTANCE}={instance}")
    }

    /// Creates `job` for task `task_id`. An existing Job of the same name carrying the same task
    /// id is ours (an earlier attempt); one carrying another id is an error.
    pub async fn create_job(&self, job: &Job, task_id: &str) -> Result<Created> {
        let name = job.metadata.name.clone().unwrap_or_default();
        match self.jobs.create(&PostParams::default(), job).await {
            Ok(created) => Ok(Created::New {
                uid: created.metadata.uid.unwrap_or_default(),
            }),
            Err(error) if status_code(&error) == Some(409) => {
                let existing = self
                    .jobs
                    .get_opt(&name)
                    .await
                    .map_err(|e| self.fail("get", "jobs", format!("get Job {name}"), e))?;
                let Some(existing) = existing else {
                    return Err(KubeError::Transient {
                        what: format!("create Job {name}"),
                        message: "the existing Job was deleted meanwhile".to_owned(),
                    });
                };
                let owner = existing
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(ANNOTATION_TASK_ID))
                    .cloned()
                    .unwrap_or_default();
                if owner == task_id {
                    Ok(Created::Existing {
                        uid: existing.metadata.uid.unwrap_or_default(),
                    })
                } else {
                    Err(KubeError::NameTaken { name, owner })
                }
            }
            Err(error) => Err(self.fail("create", "jobs", format!("create Job {name}"), error)),
        }
    }

    /// Creates a companion owned by the Job `job_name` (uid `job_uid`); an existing one is kept.
    pub async fn create_companion(
        &self,
        companion: &Companion,
        job_name: &str,
        job_uid: &str,
    ) -> Result<()> {
        let owner = OwnerReference {
            api_version: "batch/v1".to_owned(),
            kind: "Job".to_owned(),
            name: job_name.to_owned(),
            uid: job_uid.to_owned(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let what = format!(
            "create {} {}",
            companion.kind(),
            companion.metadata().name.clone().unwrap_or_default()
        );
        let result = match companion.clone() {
            Companion::ConfigMap(mut o) => {
                o.metadata.owner_references = Some(vec![owner]);
                self.create_owned::<ConfigMap>(*o).await
            }
            Companion::Service(mut o) => {
                o.metadata.owner_references = Some(vec![owner]);
                self.create_owned::<Service>(*o).await
            }
            Companion::Deployment(mut o) => {
                o.metadata.owner_references = Some(vec![owner]);
                self.create_owned::<Deployment>(*o).await
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(error) if status_code(&error) == Some(409) => Ok(()),
            Err(error) => Err(self.fail("create", &companion.kind().to_lowercase(), what, error)),
        }
    }

    async fn create_owned<K>(&self, object: K) -> std::result::Result<(), ::kube::Error>
    where
        K: Resource<Scope = ::kube::core::NamespaceResourceScope>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        api.create(&PostParams::default(), &object)
            .await
            .map(|_| ())
    }

    /// The Deployments API (for the companion watcher).
    pub fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Deletes every companion (ConfigMap, Service, Deployment) of Job `job_name` created by
    /// instance `instance` (found by the `taskpod.dev/task` and `taskpod.dev/instance` labels),
    /// with background propagation so a Deployment's pods follow. Objects already gone are not
    /// an error.
    pub async fn delete_companions(&self, instance: &str, job_name: &str) -> Result<()> {
        let selector = format!("{LABEL_TASK}={job_name},{LABEL_INSTANCE}={instance}");
        self.delete_labelled::<ConfigMap>(&selector).await?;
        self.delete_labelled::<Service>(&selector).await?;
        self.delete_labelled::<Deployment>(&selector).await?;
        Ok(())
    }

    async fn delete_labelled<K>(&self, selector: &str) -> Result<()>
    where
        K: Resource<Scope = ::kube::core::NamespaceResourceScope>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let kind = K::kind(&K::DynamicType::default()).into_owned();
        let plural = K::plural(&K::DynamicType::default()).into_owned();
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        let list = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| self.fail("list", &plural, format!("list {kind}s {selector}"), e))?;
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        for object in list.items {
            let name = object.meta().name.clone().unwrap_or_default();
            match api.delete(&name, &params).await {
                Ok(_) => {}
                Err(error) if status_code(&error) == Some(404) => {}
                Err(error) => {
                    return Err(self.fail(
                        "delete",
                        &plural,
                        format!("delete {kind} {name}"),
                        error,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Deletes a Job with background propagation (its pods and companions follow); `force`
    /// gives grace period 0. A Job already gone is not an error.
    pub async fn delete_job(&self, name: &str, force: bool) -> Result<()> {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            grace_period_seconds: force.then_some(0),
            ..DeleteParams::default()
        };
        match self.jobs.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(error) if status_code(&error) == Some(404) => Ok(()),
            Err(error) => Err(self.fail("delete", "jobs", format!("delete Job {name}"), error)),
        }
    }

    /// Lists the Jobs of instance `instance`.
    pub async fn list_jobs(&self, instance: &str) -> Result<Vec<Job>> {
        let params = ListParams::default().labels(&Kube::instance_selector(instance));
        self.jobs
            .list(&params)
            .await
            .map(|list| list.items)
            .map_err(|e| self.fail("list", "jobs", "list Jobs", e))
    }

    /// Lists the pods of Job `job` (label `job-name`, set by the Job controller on every
    /// Kubernetes version).
    pub async fn pods_of_job(&self, job: &str) -> Result<Vec<Pod>> {
        let params = ListParams::default().labels(&format!("job-name={job}"));
        self.pods
            .list(&params)
            .await
            .map(|list| list.items)
            .map_err(|e| KubeError::from_kube(format!("list the pods of Job {job}"), e))
    }

    /// Gets a pod, `None` when it is gone.
    pub async fn get_pod(&self, name: &str) -> Result<Option<Pod>> {
        self.pods
            .get_opt(name)
            .await
            .map_err(|e| self.fail("get", "pods", format!("get Pod {name}"), e))
    }

    /// The whole log of `container` in pod `pod`, `None` when the pod is gone.
    pub async fn pod_log(&self, pod: &str, container: &str) -> Result<Option<Vec<u8>>> {
        self.read_log(pod, container, false).await
    }

    /// The whole log of the run before the current one of `container` in pod `pod` (a
    /// container restarted in place), as the kubelet keeps it (`previous=true`); `None` when
    /// the pod is gone or the container has no earlier run.
    pub async fn previous_pod_log(&self, pod: &str, container: &str) -> Result<Option<Vec<u8>>> {
        self.read_log(pod, container, true).await
    }

    async fn read_log(
        &self,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<Option<Vec<u8>>> {
        let params = LogParams {
            container: Some(container.to_owned()),
            previous,
            ..LogParams::default()
        };
        match self.pods.logs(pod, &params).await {
            Ok(text) => Ok(Some(text.into_bytes())),
            Err(error) if matches!(status_code(&error), Some(404 | 400)) => Ok(None),
            Err(error) => {
                let run = if previous { "previous run's " } else { "" };
                Err(self.fail(
                    "get",
                    "pods/log",
                    format!("read {run}log of Pod {pod}"),
                    error,
                ))
            }
        }
    }

    /// The most telling Event message about object `name` (the latest Warning, else the latest
    /// Event), as `Reason: message`.
    pub async fn latest_event(&self, name: &str) -> Result<Option<String>> {
        let params = ListParams::default().fields(&format!("involvedObject.name={name}"));
        let events = self
            .events
            .list(&params)
            .await
            .map_err(|e| self.fail("list", "events", format!("list Events of {name}"), e))?;
        // The API server lists in creation order: the last one is the latest.
        let items = events.items;
        let pick = items
            .iter()
            .rev()
            .find(|e| e.type_.as_deref() == Some("Warning"))
            .or_else(|| items.last());
        Ok(pick.map(|e| {
            format!(
                "{}: {}",
                e.reason.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default()
            )
        }))
    }
}

/// Retries `op` while it fails transiently, with exponential backoff from 50 ms to 2 s, until it
/// succeeds, fails for good, or `attempts` run out.
pub async fn retry<T, F, Fut>(attempts: u32, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut delay = Duration::from_millis(50);
    let mut left = attempts.max(1);
    loop {
        match op().await {
            Err(error) if error.is_transient() && left > 1 => {
                left -= 1;
                tracing::debug!(%error, "retrying Kubernetes request");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}
