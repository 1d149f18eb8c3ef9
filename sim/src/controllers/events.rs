//! Kubernetes Events written by the simulated controllers (`SuccessfulCreate`,
//! `FailedScheduling`, `BackoffLimitExceeded`, …), as core/v1 Events through the API, the way
//! client-go's event recorder writes them: named `<object>.<hex nanoseconds>`, in the object's
//! namespace, with `involvedObject`, `source.component` and `reportingComponent`. Sending is
//! asynchronous (a bounded channel drained by one task) so that controllers never wait on it,
//! and a full channel drops the event, as client-go does under pressure.

use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Context, to_time};

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Normal,
    Warning,
}

/// Queues Events for writing.
#[derive(Debug)]
pub(crate) struct Recorder {
    tx: mpsc::Sender<Event>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<Event>>>,
}

impl Recorder {
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::channel(10_000);
        Self {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
        }
    }

    /// Records an event about `obj` from `component` (`job-controller`, `default-scheduler`,
    /// `kubelet`, …).
    pub(crate) fn record<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        component: &str,
        host: Option<&str>,
        kind: EventType,
        reason: &str,
        message: String,
    ) {
        let now = Utc::now();
        let name = obj.name_any();
        let involved = ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: Some(name.clone()),
            namespace: obj.namespace(),
            uid: obj.uid(),
            resource_version: obj.resource_version(),
            ..ObjectReference::default()
        };
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{name}.{:x}",
                    now.timestamp_nanos_opt().unwrap_or_default()
                )),
                namespace: Some(obj.namespace().unwrap_or_else(|| "default".to_owned())),
                ..ObjectMeta::default()
            },
            involved_object: involved,
            reason: Some(reason.to_owned()),
            message: Some(message),
            type_: Some(
                match kind {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            source: Some(EventSource {
                component: Some(component.to_owned()),
                host: host.map(str::to_owned),
            }),
            first_timestamp: Some(to_time(now)),
            last_timestamp: Some(to_time(now)),
            event_time: None::<MicroTime>,
            count: Some(1),
            reporting_component: Some(component.to_owned()),
            reporting_instance: Some(host.unwrap_or(component).to_owned()),
            ..Event::default()
        };
        if self.tx.try_send(event).is_err() {
            tracing::debug!(reason, "event dropped: recorder queue full");
        }
    }

    /// Starts the task that writes queued events (at most 4 requests at a time).
    pub(crate) fn run(&self, ctx: Arc<Context>) -> Option<JoinHandle<()>> {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        let client: Client = ctx.client.clone();
        Some(tokio::spawn(async move {
            let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
                .take_until(ctx.cancel.clone().cancelled_owned())
                .map(|event| {
                    let client = client.clone();
                    async move {
                        let ns = event.metadata.namespace.clone().unwrap_or_default();
                        let api: Api<Event> = Api::namespaced(client, &ns);
                        if let Err(e) = api.create(&PostParams::default(), &event).await {
                            tracing::debug!(error = %e, "writing event failed");
                        }
                    }
                })
                .buffer_unordered(4);
            stream.for_each(|()| async {}).await;
        }))
    }
}
