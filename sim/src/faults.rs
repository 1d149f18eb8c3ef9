//! Fault injection, switchable at run time through the library ([`Faults`]) and the control
//! endpoint (`GET`/`PUT /sim/faults`, `POST /sim/compact`): errors per verb (500, or 429 with
//! `Retry-After`) at a given rate, added latency on every request, watch streams dropped every N
//! seconds, compaction that makes older resourceVersions answer 410 Expired, and pausing the
//! simulated controllers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::controllers::Controllers;
use crate::status::ApiError;
use crate::store::Store;

/// An injected error: which status, how often, and the `Retry-After` of 429s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorRule {
    /// Fraction of matching requests that fail, 0.0 to 1.0.
    pub rate: f64,
    /// HTTP status: 500 (InternalError) or 429 (TooManyRequests).
    #[serde(default = "default_code")]
    pub code: u16,
    /// `Retry-After` seconds of 429 answers.
    #[serde(default = "default_retry_after")]
    pub retry_after_seconds: u64,
}

fn default_code() -> u16 {
    500
}

fn default_retry_after() -> u64 {
    1
}

/// The whole fault configuration (also the JSON body of `PUT /sim/faults`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Error rules by verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, or `*`
    /// for every verb). Requests to `/sim/…` are never failed.
    pub errors: BTreeMap<String, ErrorRule>,
    /// Latency added to every API request, in milliseconds.
    pub latency_ms: u64,
    /// End every watch stream this many seconds after it started (the client must re-watch).
    pub drop_watch_after_seconds: Option<f64>,
    /// Pause the simulated controllers and kubelets.
    pub pause_controllers: bool,
}

/// Why a fault configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// A rule is out of range.
    #[error("fault rule errors.{verb}: {problem}")]
    Rule {
        /// The verb of the rule.
        verb: String,
        /// What is wrong.
        problem: String,
    },
}

impl FaultConfig {
    /// Checks ranges: rates in [0, 1], codes 429 or 500.
    pub fn validate(&self) -> Result<(), FaultError> {
        for (verb, r) in &self.errors {
            if !(0.0..=1.0).contains(&r.rate) {
                return Err(FaultError::Rule {
                    verb: verb.clone(),
                    problem: format!("rate {} must be between 0.0 and 1.0", r.rate),
                });
            }
            if r.code != 429 && r.code != 500 {
                return Err(FaultError::Rule {
                    verb: verb.clone(),
                    problem: format!("code {} must be 429 or 500", r.code),
                });
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Inner {
    config: Mutex<FaultConfig>,
    store: Arc<Store>,
    controllers: Mutex<Option<Controllers>>,
}

/// Handle to the fault injection of one simulated server (cheap clone).
#[derive(Clone, Debug)]
pub struct Faults {
    inner: Arc<Inner>,
}

impl Faults {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        Self {
            inner: Arc::new(Inner {
                config: Mutex::new(FaultConfig::default()),
                store,
                controllers: Mutex::new(None),
            }),
        }
    }

    fn config(&self) -> MutexGuard<'_, FaultConfig> {
        self.inner.config.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn attach_controllers(&self, controllers: Controllers) {
        if self.config().pause_controllers {
            controllers.pause();
        }
        *self
            .inner
            .controllers
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(controllers);
    }

    fn apply_pause(&self, pause: bool) {
        let guard = self
            .inner
            .controllers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(c) = guard.as_ref() {
            if pause {
                c.pause();
            } else {
                c.resume();
            }
        }
    }

    /// The current configuration.
    pub fn get(&self) -> FaultConfig {
        self.config().clone()
    }

    /// Replaces the whole configuration (pausing or resuming the controllers accordingly).
    pub fn set(&self, config: FaultConfig) -> Result<(), FaultError> {
        config.validate()?;
        let pause = config.pause_controllers;
        *self.config() = config;
        self.apply_pause(pause);
        Ok(())
    }

    /// Removes every fault and resumes the controllers.
    pub fn clear(&self) {
        *self.config() = FaultConfig::default();
        self.apply_pause(false);
    }

    /// Fails `rate` of the requests with `verb` (`*` = all) with `code` (429 or 500).
    pub fn set_error_rate(&self, verb: &str, rate: f64, code: u16) -> Result<(), FaultError> {
        let mut config = self.get();
        config.errors.insert(
            verb.to_owned(),
            ErrorRule {
                rate,
                code,
                retry_after_seconds: 1,
            },
        );
        self.set(config)
    }

    /// Adds `latency` to every API request.
    pub fn set_latency(&self, latency: Duration) {
        self.config().latency_ms = latency.as_millis() as u64;
    }

    /// Ends every watch stream `every` after it starts (`None` = never).
    pub fn drop_watches_every(&self, every: Option<Duration>) {
        self.config().drop_watch_after_seconds = every.map(|d| d.as_secs_f64());
    }

    /// Compacts the event history now: every watch or continue token older than the current
    /// resourceVersion gets 410 Expired.
    pub fn compact(&self) {
        self.inner.store.compact();
    }

    /// Pauses the simulated controllers and kubelets.
    pub fn pause_controllers(&self) {
        self.config().pause_controllers = true;
        self.apply_pause(true);
    }

    /// Resumes the simulated controllers and kubelets.
    pub fn resume_controllers(&self) {
        self.config().pause_controllers = false;
        self.apply_pause(false);
    }

    /// The latency to add to a request.
    pub(crate) fn latency(&self) -> Duration {
        Duration::from_millis(self.config().latency_ms)
    }

    /// How long a watch may live before it is dropped.
    pub(crate) fn watch_lifetime(&self) -> Option<Duration> {
        self.config()
            .drop_watch_after_seconds
            .filter(|s| *s > 0.0)
            .map(Duration::from_secs_f64)
    }

    /// Decides whether to fail a request with `verb`.
    pub(crate) fn inject(&self, verb: &str) -> Option<ApiError> {
        use rand::Rng;
        let rule = {
            let config = self.config();
            config
                .errors
                .get(verb)
                .or_else(|| config.errors.get("*"))
                .cloned()?
        };
        if rule.rate <= 0.0 || rand::rng().random::<f64>() >= rule.rate {
            return None;
        }
        Some(if rule.code == 429 {
            ApiError::too_many_requests(rule.retry_after_seconds)
        } else {
            ApiError::internal(format!("injected fault for verb {verb}"))
        })
    }
}
