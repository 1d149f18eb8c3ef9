//! High availability: leader election between host replicas through a `coordination.k8s.io/v1`
//! Lease.
//!
//! Every replica runs an [`Elector`]. The Lease names the holder (`spec.holderIdentity`), when it
//! last renewed (`spec.renewTime`), how long a claim lasts (`spec.leaseDurationSeconds`) and,
//! in the annotation [`ANNOTATION_LEADER_URL`], where the leader serves the API so followers can
//! redirect writes to it. Every change is a `replace` carrying the `resourceVersion` that was
//! read, so when two candidates race for an expired Lease the API server accepts one write and
//! answers 409 Conflict to the other: there is never more than one leader.
//!
//! The leader renews every `retryPeriod`. A leader that has not renewed for `renewDeadline`
//! (shorter than the lease duration) steps down before anybody else can take the Lease over;
//! the host then exits so that Kubernetes restarts it as a follower (the runner's launch,
//! watch and reap loops are never run by two replicas at once). Followers try every
//! `retryPeriod` and take the Lease once `renewTime + leaseDurationSeconds` has passed.
//! Expiry is judged against the Lease's own timestamps, so replicas' clocks must agree to
//! well within the lease duration (NTP on the nodes).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;

/// Annotation on the Lease carrying the leader's API URL.
pub const ANNOTATION_LEADER_URL: &str = "taskpod.dev/leader-url";

/// What this replica knows about the leadership.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Leadership {
    /// True while this replica holds the Lease.
    pub leading: bool,
    /// The current holder's identity, if the Lease is held.
    pub holder: Option<String>,
    /// The current holder's advertised API URL, if known.
    pub leader_url: Option<String>,
}

/// Settings of an [`Elector`].
#[derive(Debug, Clone)]
pub struct ElectorOptions {
    /// Lease name.
    pub lease_name: String,
    /// This replica's identity.
    pub identity: String,
    /// URL the API is served at, for followers' redirects.
    pub advertise_url: String,
    /// How long a claim lasts without renewal.
    pub lease_duration: Duration,
    /// How long a leader may fail to renew before it steps down.
    pub renew_deadline: Duration,
    /// Renewal and retry interval.
    pub retry_period: Duration,
}

/// Why an [`Elector`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// The leader could not renew the Lease within the renew deadline, or another replica
    /// took it over.
    #[error(
        "lost the leadership of Lease `{lease}` ({why}); exiting so that this replica restarts \
         as a follower"
    )]
    Lost {
        /// The Lease.
        lease: String,
        /// What happened.
        why: String,
    },
}

/// Takes part in the election of one Lease.
#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    options: ElectorOptions,
    state: watch::Sender<Leadership>,
}

enum Attempt {
    /// We hold the Lease (acquired or renewed).
    Leading,
    /// Somebody else holds an unexpired Lease.
    Following,
}

fn micro_now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn lease_seconds(d: Duration) -> i32 {
    d.as_secs().clamp(1, i32::MAX as u64) as i32
}

impl Elector {
    /// An elector for the Lease `options.lease_name` in `namespace`.
    pub fn new(client: kube::Client, namespace: &str, options: ElectorOptions) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            options,
            state: watch::channel(Leadership::default()).0,
        }
    }

    /// Follows the leadership as it changes.
    pub fn subscribe(&self) -> watch::Receiver<Leadership> {
        self.state.subscribe()
    }

    /// Runs the election until this replica, having led, loses the Lease (the only way it
    /// returns). Publishes every change through [`Elector::subscribe`].
    pub async fn run(self) -> ElectionError {
        let mut last_renewed: Option<Instant> = None;
        loop {
            let attempt = self.try_acquire_or_renew().await;
            match (attempt, last_renewed) {
                (Ok(Attempt::Leading), _) => {
                    if last_renewed.is_none() {
                        tracing::info!(
                            lease = %self.options.lease_name,
                            identity = %self.options.identity,
                            "became the leader"
                        );
                    }
                    last_renewed = Some(Instant::now());
                }
                (Ok(Attempt::Following), Some(_)) => {
                    return ElectionError::Lost {
                        lease: self.options.lease_name.clone(),
                        why: "another replica holds it".to_string(),
                    };
                }
                (Ok(Attempt::Following), None) => {}
                (Err(error), Some(at)) => {
                    tracing::warn!(error = %error, "renewing the leader Lease failed");
                    if at.elapsed() >= self.options.renew_deadline {
                        return ElectionError::Lost {
                            lease: self.options.lease_name.clone(),
                            why: format!(
                                "not renewed for {:?} (renew deadline): {error}",
                                at.elapsed()
                            ),
                        };
                    }
                }
                (Err(error), None) => {
                    tracing::warn!(error = %error, "reading the leader Lease failed");
                }
            }
            tokio::time::sleep(self.options.retry_period).await;
            if let Some(at) = last_renewed
                && at.elapsed() >= self.options.renew_deadline
            {
                return ElectionError::Lost {
                    lease: self.options.lease_name.clone(),
                    why: format!("not renewed for {:?} (renew deadline)", at.elapsed()),
                };
            }
        }
    }

    fn publish(&self, leadership: Leadership) {
        self.state.send_if_modified(|current| {
            if *current == leadership {
                false
            } else {
                *current = leadership;
                true
            }
        });
    }

    fn our_spec(&self, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let now = micro_now();
        let ours = previous
            .and_then(|s| s.holder_identity.as_deref())
            .is_some_and(|h| h == self.options.identity);
        let transitions = previous.and_then(|s| s.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.options.identity.clone()),
            lease_duration_seconds: Some(lease_seconds(self.options.lease_duration)),
            acquire_time: if ours {
                previous.and_then(|s| s.acquire_time.clone())
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if ours || previous.is_none() {
                transitions
            } else {
                transitions + 1
            }),
            ..LeaseSpec::default()
        }
    }

    fn with_url(&self, meta: &mut ObjectMeta) {
        meta.annotations
            .get_or_insert_with(Default::default)
            .insert(
                ANNOTATION_LEADER_URL.to_string(),
                self.options.advertise_url.clone(),
            );
    }

    async fn try_acquire_or_renew(&self) -> Result<Attempt, kube::Error> {
        let name = &self.options.lease_name;
        let Some(mut lease) = self.api.get_opt(name).await? else {
            let mut meta = ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            };
            self.with_url(&mut meta);
            let lease = Lease {
                metadata: meta,
                spec: Some(self.our_spec(None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    self.lead();
                    Ok(Attempt::Leading)
                }
                // Another replica created it first: look again next round.
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Following),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.options.identity.as_str());
        if !ours && holder.is_some() && !expired(&spec) {
            self.publish(Leadership {
                leading: false,
                holder,
                leader_url: lease
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(ANNOTATION_LEADER_URL))
                    .cloned(),
            });
            return Ok(Attempt::Following);
        }
        // Ours to renew, or free to take: replace with the resourceVersion just read, so that
        // of two candidates only one succeeds.
        lease.spec = Some(self.our_spec(Some(&spec)));
        self.with_url(&mut lease.metadata);
        match self.api.replace(name, &PostParams::default(), &lease).await {
            Ok(_) => {
                if !ours {
                    tracing::info!(
                        lease = %name,
                        previous = holder.as_deref().unwrap_or("(none)"),
                        "took over the expired leader Lease"
                    );
                }
                self.lead();
                Ok(Attempt::Leading)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Following),
            Err(e) => Err(e),
        }
    }

    fn lead(&self) {
        self.publish(Leadership {
            leading: true,
            holder: Some(self.options.identity.clone()),
            leader_url: Some(self.options.advertise_url.clone()),
        });
    }
}

/// Gives up the Lease if `identity` holds it (a leader stopping cleanly), so that a follower
/// takes over at its next try instead of waiting for the claim to expire. Returns whether it
/// was released.
pub async fn release(
    client: kube::Client,
    namespace: &str,
    lease_name: &str,
    identity: &str,
) -> Result<bool, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let Some(mut lease) = api.get_opt(lease_name).await? else {
        return Ok(false);
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(false);
    };
    if spec.holder_identity.as_deref() != Some(identity) {
        return Ok(false);
    }
    spec.holder_identity = None;
    spec.renew_time = Some(micro_now());
    spec.lease_duration_seconds = Some(1);
    match api
        .replace(lease_name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        // Changed meanwhile: it is no longer ours to release.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// True once `renewTime + leaseDurationSeconds` has passed (or the Lease lacks them).
fn expired(spec: &LeaseSpec) -> bool {
    let (Some(MicroTime(renewed)), Some(seconds)) =
        (spec.renew_time.as_ref(), spec.lease_duration_seconds)
    else {
        return true;
    };
    match renewed.checked_add(SignedDuration::from_secs(i64::from(seconds.max(0)))) {
        Ok(until) => Timestamp::now() > until,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_after_its_duration_from_the_last_renewal() {
        let mut spec = LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(10),
            renew_time: Some(MicroTime(Timestamp::now() - SignedDuration::from_secs(5))),
            ..LeaseSpec::default()
        };
        assert!(!expired(&spec));
        spec.renew_time = Some(MicroTime(Timestamp::now() - SignedDuration::from_secs(11)));
        assert!(expired(&spec));
        spec.renew_time = None;
        assert!(expired(&spec));
    }
}
