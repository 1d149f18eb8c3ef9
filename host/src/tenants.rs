//! Tenancy: who may call the API, as whom, and what each tenant is allowed.
//!
//! The configuration's `tenants:` list names every tenant with its API tokens (stored as sha256
//! hex digests, never in clear), its own adapter instances and routing, its quotas (most tasks
//! running, most queued, CPU and memory ceilings per task), its priority and weight in the fair
//! share, and its output policy; `admin:` holds the admin tokens. [`Tenants`] is the run-time
//! view: it turns an `Authorization: Bearer` header into a [`Principal`] and holds each tenant's
//! hold/drain switch. With no tenant and no admin token configured, authentication is off and
//! every caller acts as the admin — taskpod's single-tenant behaviour.
//!
//! Tokens are compared by their sha256 digest only; no token, digest or `Authorization` header
//! is ever written to a log or an error message.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::AdapterBinding;
use crate::policy::{CpuQuantity, MemoryQuantity, Policy};
use crate::queue::TenantRule;

/// The `admin:` section: who may see every task and change capacity, holds and adapters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AdminConfig {
    /// sha256 (lower-case hex) of each admin API token; print one with `taskpod tenant
    /// hash-token`. Default none (no admin: with tenants configured, capacity and holds cannot
    /// be changed through the API).
    pub token_sha256: Vec<String>,
}

/// One tenant (`tenants[i]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TenantConfig {
    /// The tenant's name: the `tenant` of its tasks and the `taskpod.dev/tenant` label of its
    /// Jobs. Required; a DNS-1123 label.
    pub name: String,
    /// sha256 (lower-case hex) of each of the tenant's API tokens (several allow rotation);
    /// print one with `taskpod tenant hash-token`. Default none (the tenant cannot call the
    /// API; the admin can still submit for it).
    #[serde(default)]
    pub token_sha256: Vec<String>,
    /// The tenant's own adapter instances (same keys as `adapters[i]`; names unique across the
    /// whole file). Only this tenant's tasks can be routed to them. If one cannot be loaded at
    /// start-up, the tenant is disabled (its submissions are refused, its queued tasks fail)
    /// until the adapter is reloaded; the host keeps serving everyone else. Default none.
    #[serde(default)]
    pub adapters: Vec<AdapterBinding>,
    /// Which adapter (the tenant's own or a shared one from `adapters`) shapes which of the
    /// tenant's task types; types it does not name follow the top-level `routing`. Default
    /// none.
    #[serde(default)]
    pub routing: TenantRouting,
    /// Limits on the tenant's tasks.
    #[serde(default)]
    pub quotas: Quotas,
    /// Among tenants below their fair share, higher priority is offered a free slot first.
    /// Default 0.
    #[serde(default)]
    pub priority: i32,
    /// The tenant's weight in the fair share: under contention, each tenant with queued tasks
    /// gets about `capacity × weight / Σ weights` slots. 1 to 1000. Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// The tenant's output policy (the keys of the top-level `policy` section, replacing it
    /// for this tenant's tasks); default: the top-level policy. The quotas' CPU and memory
    /// ceilings apply on top of either.
    #[serde(default)]
    pub policy: Option<Policy>,
}

impl TenantConfig {
    /// The policy this tenant's tasks are checked with: its own or `global`, with the quotas'
    /// `maxCpu`/`maxMemory` where they are stricter.
    pub fn effective_policy(&self, global: &Policy) -> Policy {
        let mut policy = self.policy.clone().unwrap_or_else(|| global.clone());
        if let Some(cpu) = &self.quotas.max_cpu
            && policy
                .max_cpu
                .as_ref()
                .is_none_or(|p| cpu.millis < p.millis)
        {
            policy.max_cpu = Some(cpu.clone());
        }
        if let Some(memory) = &self.quotas.max_memory
            && policy
                .max_memory
                .as_ref()
                .is_none_or(|p| memory.bytes < p.bytes)
        {
            policy.max_memory = Some(memory.clone());
        }
        policy
    }
}

/// Which adapter shapes which of a tenant's task types (`tenants[i].routing`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TenantRouting {
    /// Adapter for the tenant's task types not in `byType`. Default: the top-level routing.
    pub default: Option<String>,
    /// Task type → adapter name. Default none.
    pub by_type: BTreeMap<String, String>,
}

fn default_weight() -> u32 {
    1
}

/// A tenant's quotas (`tenants[i].quotas`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Quotas {
    /// Most tasks of the tenant launching or running at once (under the global capacity).
    /// Default: no limit but the capacity.
    pub max_running: Option<u32>,
    /// Most tasks of the tenant waiting to launch; a submission beyond it is refused with HTTP
    /// 429. Default: no limit.
    pub max_queued: Option<u32>,
    /// Largest CPU one task's pod may ask for, as a Kubernetes quantity (`2`, `500m`):
    /// the output policy's `maxCpu` for this tenant (the stricter of the two applies).
    /// Default: no ceiling.
    pub max_cpu: Option<CpuQuantity>,
    /// Largest memory one task's pod may ask for (`4Gi`, `512Mi`): the output policy's
    /// `maxMemory` for this tenant (the stricter applies). Default: no ceiling.
    pub max_memory: Option<MemoryQuantity>,
}

/// The sha256 of a token as lower-case hex: what `tokenSha256` holds.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// Whether `text` is a sha256 digest in lower-case hex.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Sees and acts on every task; changes capacity, holds and adapters. Also every caller
    /// when authentication is off.
    Admin,
    /// Sees and acts only on this tenant's tasks.
    Tenant(String),
}

impl Principal {
    /// The tenant, for a tenant principal.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Principal::Admin => None,
            Principal::Tenant(name) => Some(name),
        }
    }

    /// Whether this principal may see a task of `tenant`.
    pub fn can_see(&self, tenant: &str) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Tenant(name) => name == tenant,
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Admin => f.write_str("admin"),
            Principal::Tenant(name) => write!(f, "tenant `{name}`"),
        }
    }
}

/// Why a request is not authenticated (HTTP 401). Never carries the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error(
        "this server requires authentication: send `Authorization: Bearer <token>` (the CLI \
         takes --token or TASKPOD_TOKEN)"
    )]
    Missing,
    /// The header is not `Bearer <token>`.
    #[error("the Authorization header must be `Bearer <token>`")]
    Malformed,
    /// The token matches no tenant and no admin.
    #[error(
        "the bearer token is not known: check the token, or ask the operator to add its sha256 \
         (`taskpod tenant hash-token`) to the configuration"
    )]
    Unknown,
}

/// A tenant's hold and drain switches (`GET /v1/tenants`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantSwitches {
    /// Queued tasks are not launched (running ones continue); submissions are accepted.
    pub held: bool,
    /// New submissions are refused (HTTP 409); queued and running tasks continue to their end.
    pub draining: bool,
}

impl TenantSwitches {
    /// The store meta value.
    pub fn to_meta(self) -> String {
        format!("held={},draining={}", self.held, self.draining)
    }

    /// Reads a store meta value (unknown text: both off).
    pub fn from_meta(text: &str) -> TenantSwitches {
        TenantSwitches {
            held: text.contains("held=true"),
            draining: text.contains("draining=true"),
        }
    }
}

/// Store meta key of a tenant's switches.
pub fn meta_key(tenant: &str) -> String {
    format!("tenant.{tenant}.switches")
}

/// The run-time view of the configured tenants: authentication, and the scheduling rules the
/// queue reads (shared, so that holds apply at once).
#[derive(Debug)]
pub struct Tenants {
    /// sha256 hex → principal.
    tokens: HashMap<String, Principal>,
    configs: BTreeMap<String, TenantConfig>,
    rules: Arc<RwLock<BTreeMap<String, TenantRule>>>,
    switches: RwLock<BTreeMap<String, TenantSwitches>>,
}

impl Tenants {
    /// The tenants of a validated configuration, all switches off.
    pub fn new(admin: &AdminConfig, tenants: &[TenantConfig]) -> Tenants {
        let mut tokens = HashMap::new();
        for digest in &admin.token_sha256 {
            tokens.insert(digest.to_ascii_lowercase(), Principal::Admin);
        }
        let mut configs = BTreeMap::new();
        let mut rules = BTreeMap::new();
        for tenant in tenants {
            for digest in &tenant.token_sha256 {
                tokens.insert(
                    digest.to_ascii_lowercase(),
                    Principal::Tenant(tenant.name.clone()),
                );
            }
            rules.insert(
                tenant.name.clone(),
                TenantRule {
                    max_running: tenant.quotas.max_running.map(|n| n as usize),
                    weight: tenant.weight.max(1),
                    priority: tenant.priority,
                    held: false,
                },
            );
            configs.insert(tenant.name.clone(), tenant.clone());
        }
        Tenants {
            tokens,
            configs,
            rules: Arc::new(RwLock::new(rules)),
            switches: RwLock::new(BTreeMap::new()),
        }
    }

    /// Whether callers must authenticate (any tenant or admin token configured).
    pub fn auth_enabled(&self) -> bool {
        !self.tokens.is_empty() || !self.configs.is_empty()
    }

    /// Whether tenants are configured (submissions must name one of them).
    pub fn configured(&self) -> bool {
        !self.configs.is_empty()
    }

    /// Resolves an `Authorization` header value. With authentication off, every caller is the
    /// admin.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        if !self.auth_enabled() {
            return Ok(Principal::Admin);
        }
        let header = header.ok_or(AuthError::Missing)?;
        let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthError::Malformed);
        }
        self.tokens
            .get(&hash_token(token))
            .cloned()
            .ok_or(AuthError::Unknown)
    }

    /// A configured tenant.
    pub fn get(&self, name: &str) -> Option<&TenantConfig> {
        self.configs.get(name)
    }

    /// The configured tenants, by name.
    pub fn configs(&self) -> impl Iterator<Item = &TenantConfig> {
        self.configs.values()
    }

    /// The scheduling rules the queue's fair-share policy reads.
    pub fn rules(&self) -> Arc<RwLock<BTreeMap<String, TenantRule>>> {
        Arc::clone(&self.rules)
    }

    /// A tenant's switches.
    pub fn switches(&self, name: &str) -> TenantSwitches {
        self.switches
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied()
            .unwrap_or_default()
    }

    /// Sets a tenant's switches in memory (the runner persists them first).
    pub fn set_switches(&self, name: &str, switches: TenantSwitches) {
        self.switches
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), switches);
        let mut rules = self.rules.write().unwrap_or_else(|p| p.into_inner());
        rules.entry(name.to_owned()).or_default().held = switches.held;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_resolve_by_digest_and_errors_never_echo_them() {
        let admin = AdminConfig {
            token_sha256: vec![hash_token("admin-secret")],
        };
        let tenant = TenantConfig {
            name: "acme".to_owned(),
            token_sha256: vec![hash_token("acme-secret")],
            adapters: Vec::new(),
            routing: TenantRouting::default(),
            quotas: Quotas::default(),
            priority: 0,
            weight: 1,
            policy: None,
        };
        let tenants = Tenants::new(&admin, &[tenant]);
        assert_eq!(
            tenants.authenticate(Some("Bearer admin-secret")),
            Ok(Principal::Admin)
        );
        assert_eq!(
            tenants.authenticate(Some("bearer acme-secret")),
            Ok(Principal::Tenant("acme".to_owned()))
        );
        assert_eq!(tenants.authenticate(None), Err(AuthError::Missing));
        assert_eq!(
            tenants.authenticate(Some("Basic YWNtZQ==")),
            Err(AuthError::Malformed)
        );
        let err = tenants.authenticate(Some("Bearer guess")).unwrap_err();
        assert_eq!(err, AuthError::Unknown);
        assert!(!err.to_string().contains("guess"));
        let off = Tenants::new(&AdminConfig::default(), &[]);
        assert_eq!(off.authenticate(None), Ok(Principal::Admin));
    }

    #[test]
    fn digests_are_lower_case_sha256_hex() {
        assert!(is_sha256_hex(&hash_token("x")));
        assert!(!is_sha256_hex("ABC"));
    }

    #[test]
    fn quota_ceilings_tighten_the_policy() {
        let tenant: TenantConfig = serde_yaml::from_str(
            "name: a\nquotas: {maxCpu: 500m, maxMemory: 8Gi}\npolicy: {maxMemory: 4Gi}\n",
        )
        .expect("tenant");
        let policy = tenant.effective_policy(&Policy::default());
        assert_eq!(policy.max_cpu.map(|c| c.millis), Some(500));
        assert_eq!(
            policy.max_memory.map(|m| m.bytes),
            Some(4 << 30),
            "the stricter wins"
        );
    }
}
