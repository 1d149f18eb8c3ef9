//! The host's own pod, which the overlord-copy adapters (`overlord-single`, `overlord-multi`)
//! turn into peon Jobs, as Druid's `overlordSingleContainer`/`overlordMultiContainer` do.
//!
//! Two sources, both returning the pod as JSON text for the adapter's `context.base-pod`:
//! a file named by the adapter binding's `basePod` key ([`from_file`]; what `render` and tests
//! use), or the Kubernetes API when taskpod itself runs in a pod ([`from_api`], [`from_env`]),
//! read by the `POD_NAME` and `POD_NAMESPACE` variables that the Deployment sets through the
//! downward API. Only `get` on `pods` is needed for the latter.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

/// Environment variable naming the pod taskpod runs in (downward API `metadata.name`).
pub const ENV_POD_NAME: &str = "POD_NAME";
/// Environment variable naming that pod's namespace (downward API `metadata.namespace`).
pub const ENV_POD_NAMESPACE: &str = "POD_NAMESPACE";

/// Why the host's pod could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BasePodError {
    /// The API server refused or failed the `get`.
    #[error(
        "cannot read the host's pod {namespace}/{name} through the Kubernetes API ({error}); the service account needs `get` on `pods`, and {ENV_POD_NAME}/{ENV_POD_NAMESPACE} must name this pod"
    )]
    Api {
        /// Namespace of the pod.
        namespace: String,
        /// Name of the pod.
        name: String,
        /// The client's message.
        error: String,
    },
    /// The pod could not be serialised (a bug).
    #[error("cannot serialise the host's pod: {0}")]
    Serialise(String),
}

/// Reads a `v1/Pod` YAML or JSON file and returns it as JSON text. The message of an error
/// names the file and the problem.
pub fn from_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read pod file {}: {e}", path.display()))?;
    let value: serde_json::Value = serde_yaml::from_str(&text)
        .map_err(|e| format!("pod file {} is not YAML/JSON: {e}", path.display()))?;
    let api = value.get("apiVersion").and_then(|v| v.as_str());
    let kind = value.get("kind").and_then(|v| v.as_str());
    if api != Some("v1") || kind != Some("Pod") {
        return Err(format!(
            "pod file {}: expected apiVersion v1, kind Pod (e.g. `kubectl get pod OVERLORD -o yaml`); found {api:?} {kind:?}",
            path.display()
        ));
    }
    let pod: Pod = serde_json::from_value(value)
        .map_err(|e| format!("pod file {} is not a valid Pod: {e}", path.display()))?;
    serde_json::to_string(&pod).map_err(|e| format!("pod file {}: {e}", path.display()))
}

/// Reads the pod `namespace/name` through the API and returns it as JSON text.
pub async fn from_api(
    client: kube::Client,
    namespace: &str,
    name: &str,
) -> Result<String, BasePodError> {
    let api: kube::Api<Pod> = kube::Api::namespaced(client, namespace);
    let pod = api.get(name).await.map_err(|e| BasePodError::Api {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        error: e.to_string(),
    })?;
    serde_json::to_string(&pod).map_err(|e| BasePodError::Serialise(e.to_string()))
}

/// The host's own pod as `(namespace, name)` from `POD_NAME` and `POD_NAMESPACE` (or
/// `default_namespace`); `None` when `POD_NAME` is unset, i.e. taskpod does not run in a pod.
pub fn own_pod_from_env(default_namespace: &str) -> Option<(String, String)> {
    let name = std::env::var(ENV_POD_NAME).ok().filter(|n| !n.is_empty())?;
    let namespace =
        std::env::var(ENV_POD_NAMESPACE).unwrap_or_else(|_| default_namespace.to_owned());
    Some((namespace, name))
}

/// Reads the pod named by `POD_NAME` in `POD_NAMESPACE` (or `default_namespace` when that is
/// unset); `Ok(None)` when `POD_NAME` is unset, i.e. taskpod does not run in a pod.
pub async fn from_env(
    client: kube::Client,
    default_namespace: &str,
) -> Result<Option<String>, BasePodError> {
    match own_pod_from_env(default_namespace) {
        Some((namespace, name)) => from_api(client, &namespace, &name).await.map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/druid/overlord-pod.yaml")
    }

    #[test]
    fn file_is_read_as_json() {
        let json = from_file(&example()).unwrap();
        let pod: Pod = serde_json::from_str(&json).unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("druid-overlord-0"));
        assert_eq!(pod.spec.unwrap().containers.len(), 2);
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.yaml");
        assert!(from_file(&missing).unwrap_err().contains("nope.yaml"));
        let template = dir.path().join("t.yaml");
        std::fs::write(&template, "apiVersion: v1\nkind: PodTemplate\n").unwrap();
        let err = from_file(&template).unwrap_err();
        assert!(
            err.contains("expected apiVersion v1, kind Pod") && err.contains("PodTemplate"),
            "{err}"
        );
        let bad = dir.path().join("b.yaml");
        std::fs::write(&bad, "apiVersion: v1\nkind: Pod\nspec: {containers: 3}\n").unwrap();
        assert!(
            from_file(&bad).unwrap_err().contains("not a valid Pod"),
            "bad spec accepted"
        );
    }

    #[tokio::test]
    async fn pod_is_read_through_the_api() {
        let sim = taskpod_sim::Sim::start(taskpod_sim::SimOptions::default())
            .await
            .unwrap();
        let client = sim.client();
        let text = std::fs::read_to_string(example()).unwrap();
        let mut pod: Pod = serde_yaml::from_str(&text).unwrap();
        pod.metadata.resource_version = None;
        pod.metadata.uid = None;
        pod.metadata.creation_timestamp = None;
        pod.metadata.owner_references = None;
        pod.metadata.namespace = Some("default".to_owned());
        pod.status = None;
        let api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), "default");
        api.create(&kube::api::PostParams::default(), &pod)
            .await
            .unwrap();
        let json = from_api(client.clone(), "default", "druid-overlord-0")
            .await
            .unwrap();
        let read: Pod = serde_json::from_str(&json).unwrap();
        assert_eq!(
            read.spec.unwrap().containers[1].name,
            "druid-overlord",
            "the containers arrive as written"
        );
        let err = from_api(client, "default", "absent").await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("default/absent") && msg.contains("POD_NAME"),
            "{msg}"
        );
    }
}
