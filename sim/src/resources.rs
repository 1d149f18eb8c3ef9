//! The resource types the simulated API server serves, with what discovery, routing, storage and
//! validation need to know about each: group/version/kind, plural, scope, subresources, whether
//! `metadata.generation` is tracked, which field selectors are supported, and the typed
//! k8s-openapi struct used to detect unknown fields.
//!
//! A resource is identified in the server by its index in [`RESOURCES`] (its "id").

use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

/// Round-trips a JSON object through a typed k8s-openapi struct: decoding errors become
/// `BadRequest`s; fields dropped by the round trip are unknown to the real schema.
pub type TypedRoundTrip = fn(&Value) -> Result<Value, serde_json::Error>;

fn roundtrip<T: for<'de> Deserialize<'de> + Serialize>(
    v: &Value,
) -> Result<Value, serde_json::Error> {
    let typed = T::deserialize(v)?;
    serde_json::to_value(typed)
}

/// Static description of one served resource type.
#[derive(Debug)]
pub struct ResourceType {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// API version (`v1`).
    pub version: &'static str,
    /// Kind (`Pod`).
    pub kind: &'static str,
    /// Plural resource name used in paths (`pods`).
    pub plural: &'static str,
    /// Singular name (`pod`).
    pub singular: &'static str,
    /// Namespaced (true) or cluster-scoped (false).
    pub namespaced: bool,
    /// Short names for kubectl (`po`).
    pub short_names: &'static [&'static str],
    /// Categories for kubectl (`all`).
    pub categories: &'static [&'static str],
    /// Has a `/status` subresource (main-resource writes ignore `status`).
    pub has_status: bool,
    /// `metadata.generation` is bumped on spec changes.
    pub has_generation: bool,
    /// Field selector keys supported beyond `metadata.name` and `metadata.namespace`.
    pub fields: &'static [&'static str],
    /// Typed round trip for unknown-field detection and type checking.
    pub typed: TypedRoundTrip,
}

impl ResourceType {
    /// `apiVersion` as written in objects (`v1`, `batch/v1`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Kind of the list object (`PodList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether `key` is a supported field selector for this resource.
    pub fn supports_field(&self, key: &str) -> bool {
        key == "metadata.name"
            || (self.namespaced && key == "metadata.namespace")
            || self.fields.contains(&key)
    }
}

use k8s_openapi::api::{apps, batch, coordination, core, events};

/// Index of Namespaces in [`RESOURCES`].
pub const NAMESPACES: usize = 0;
/// Index of Pods in [`RESOURCES`].
pub const PODS: usize = 1;
/// Index of core/v1 Events in [`RESOURCES`].
pub const EVENTS: usize = 4;
/// Index of Jobs in [`RESOURCES`].
pub const JOBS: usize = 6;

/// Every served resource type. The order is fixed: ids are indices.
pub static RESOURCES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        has_status: true,
        has_generation: false,
        fields: &["status.phase"],
        typed: roundtrip::<core::v1::Namespace>,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        has_status: true,
        has_generation: true,
        fields: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        typed: roundtrip::<core::v1::Pod>,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        has_status: false,
        has_generation: false,
        fields: &[],
        typed: roundtrip::<core::v1::ConfigMap>,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        singular: "service",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        has_status: true,
        has_generation: false,
        fields: &["spec.clusterIP", "spec.type"],
        typed: roundtrip::<core::v1::Service>,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        has_status: false,
        has_generation: false,
        fields: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        typed: roundtrip::<core::v1::Event>,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        has_status: true,
        has_generation: false,
        fields: &["spec.unschedulable"],
        typed: roundtrip::<core::v1::Node>,
    },
    ResourceType {
        group: "batch",
        version: "v1",
        kind: "Job",
        plural: "jobs",
        singular: "job",
        namespaced: true,
        short_names: &[],
        categories: &["all"],
        has_status: true,
        has_generation: true,
        fields: &["status.successful"],
        typed: roundtrip::<batch::v1::Job>,
    },
    ResourceType {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        has_status: true,
        has_generation: true,
        fields: &[],
        typed: roundtrip::<apps::v1::Deployment>,
    },
    ResourceType {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        namespaced: true,
        short_names: &[],
        categories: &[],
        has_status: false,
        has_generation: false,
        fields: &[],
        typed: roundtrip::<coordination::v1::Lease>,
    },
    ResourceType {
        group: "events.k8s.io",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        has_status: false,
        has_generation: false,
        fields: &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "reason",
            "reportingController",
            "type",
        ],
        typed: roundtrip::<events::v1::Event>,
    },
];

/// Looks a resource up by group and plural.
pub fn by_plural(group: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.plural == plural)
}

/// Id (index in [`RESOURCES`]) of a resource by group, version and plural.
pub fn id_of(group: &str, version: &str, plural: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Id of a resource by `apiVersion` and kind (for objects named in ownerReferences).
pub fn id_of_kind(api_version: &str, kind: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.api_version() == api_version && r.kind == kind)
}

/// The served group/versions: `(group, version)`, core first.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// Extra subresources served for a resource (beyond `status` when [`ResourceType::has_status`]).
pub fn extra_subresources(rt: &ResourceType) -> &'static [&'static str] {
    if rt.group.is_empty() && rt.plural == "pods" {
        &["log", "binding"]
    } else {
        &[]
    }
}
