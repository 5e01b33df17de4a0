//! Access control at the front ends: the agent's ACL settings and (with the resolver) the
//! authorizer each HTTP request and DNS query is checked against.

use std::time::Duration;

/// `acl { … }` as the API layer needs it (the agent builds it from its configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclSettings {
    /// `acl.enabled`: without it every request is allowed and `/v1/acl/*` answers 401.
    pub enabled: bool,
    /// `acl.default_policy`: `true` for "allow" (Consul's default), `false` for "deny".
    pub default_allow: bool,
    /// `acl.down_policy`: what a non-authoritative agent does when it cannot reach the servers
    /// (`extend-cache`, `async-cache`, `allow`, `deny`).
    pub down_policy: DownPolicy,
    /// `acl.token_ttl`, `policy_ttl`, `role_ttl`: how long a client agent caches what it
    /// resolved through a server.
    pub token_ttl: Duration,
    /// `acl.policy_ttl`.
    pub policy_ttl: Duration,
    /// `acl.role_ttl`.
    pub role_ttl: Duration,
    /// `acl.enable_key_list_policy`: `list` grants on keys are honoured (else list = read).
    pub enable_key_list_policy: bool,
    /// `acl.enable_token_persistence`: tokens set through `/v1/agent/token/*` are written to
    /// `<data_dir>/acl-tokens.json` and loaded at start.
    pub enable_token_persistence: bool,
    /// Tokens from `acl.tokens { … }` (and the legacy spellings).
    pub tokens: AgentTokens,
}

impl Default for AclSettings {
    fn default() -> Self {
        AclSettings {
            enabled: false,
            default_allow: true,
            down_policy: DownPolicy::ExtendCache,
            token_ttl: Duration::from_secs(30),
            policy_ttl: Duration::from_secs(30),
            role_ttl: Duration::from_secs(30),
            enable_key_list_policy: false,
            enable_token_persistence: false,
            tokens: AgentTokens::default(),
        }
    }
}

/// `acl.down_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DownPolicy {
    /// Keep using cached results past their TTL; deny what was never resolved (default).
    #[default]
    ExtendCache,
    /// As extend-cache, refreshing in the background.
    AsyncCache,
    /// Allow everything.
    Allow,
    /// Deny everything.
    Deny,
}

impl DownPolicy {
    /// The configuration spelling (`extend-cache`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            DownPolicy::ExtendCache => "extend-cache",
            DownPolicy::AsyncCache => "async-cache",
            DownPolicy::Allow => "allow",
            DownPolicy::Deny => "deny",
        }
    }
}

impl std::str::FromStr for DownPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "extend-cache" => Ok(DownPolicy::ExtendCache),
            "async-cache" => Ok(DownPolicy::AsyncCache),
            "allow" => Ok(DownPolicy::Allow),
            "deny" => Ok(DownPolicy::Deny),
            other => Err(format!("invalid acl.down_policy {other:?}: use extend-cache, async-cache, allow or deny")),
        }
    }
}

/// The agent's own tokens (`acl.tokens`), secrets as given. Empty means unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentTokens {
    /// `initial_management` (legacy `master`, `acl_master_token`): a management token the
    /// leader creates when ACLs are first initialised.
    pub initial_management: Option<String>,
    /// `default` (legacy `acl_token`): used for requests that carry no token, and for DNS.
    pub default: Option<String>,
    /// `agent` (legacy `acl_agent_token`): the agent's own operations (anti-entropy, coordinates).
    pub agent: Option<String>,
    /// `agent_recovery` (legacy `agent_master`, `acl_agent_master_token`): a token valid on
    /// this agent only, for `/v1/agent/*`, even when the servers are unreachable.
    pub agent_recovery: Option<String>,
    /// `replication` (legacy `acl_replication_token`).
    pub replication: Option<String>,
    /// `config_file_service_registration`: registers services and checks from config files.
    pub config_file_service_registration: Option<String>,
    /// `dns`: the token DNS queries are answered with (falls back to `default`).
    pub dns: Option<String>,
}

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::acl::authorizer::{Authorizer, Denied};
use crate::acl::rules::{Need, Resource, Scalar};
use crate::error::Error;

/// What one resolved token may do: its accessor (for denial messages) and its authorizer.
/// Shared between requests through the resolver's cache.
#[derive(Debug)]
pub struct Authz {
    accessor: String,
    authorizer: Arc<Authorizer>,
    /// Whether ACLs are on at all (off: everything is allowed and nothing is filtered).
    enabled: bool,
}

impl Authz {
    /// ACLs disabled: everything allowed.
    pub fn disabled() -> Arc<Authz> {
        Arc::new(Authz { accessor: String::new(), authorizer: Arc::new(Authorizer::management()), enabled: false })
    }

    /// A resolved token.
    pub fn new(accessor: impl Into<String>, authorizer: Arc<Authorizer>) -> Arc<Authz> {
        Arc::new(Authz { accessor: accessor.into(), authorizer, enabled: true })
    }

    /// The token's AccessorID (empty when ACLs are off).
    pub fn accessor(&self) -> &str {
        &self.accessor
    }

    /// Whether `need` on the resource `name` is granted.
    pub fn allows(&self, r: Resource, name: &str, need: Need) -> bool {
        self.authorizer.allows(r, name, need)
    }

    /// Whether `need` on a global permission is granted.
    pub fn allows_scalar(&self, s: Scalar, need: Need) -> bool {
        self.authorizer.allows_scalar(s, need)
    }

    /// `need` on the resource `name`, or a 403 naming both.
    pub fn require(&self, r: Resource, name: &str, need: Need) -> Result<(), Error> {
        if self.allows(r, name, need) {
            Ok(())
        } else {
            Err(Denied::resource(r, name, need).into_error(&self.accessor))
        }
    }

    /// `need` on a global permission, or a 403 naming it.
    pub fn require_scalar(&self, s: Scalar, need: Need) -> Result<(), Error> {
        if self.allows_scalar(s, need) {
            Ok(())
        } else {
            Err(Denied::scalar(s, need).into_error(&self.accessor))
        }
    }

    /// Write on every key under `prefix` (recursive deletes), or a 403.
    pub fn require_key_write_prefix(&self, prefix: &str) -> Result<(), Error> {
        if self.authorizer.allows_key_write_prefix(prefix) {
            Ok(())
        } else {
            Err(Denied::resource(Resource::Key, prefix, Need::Write).into_error(&self.accessor))
        }
    }

    /// Management rights (`acl = "write"`): snapshots, agent tokens, ACL writes.
    pub fn require_management(&self) -> Result<(), Error> {
        self.require_scalar(Scalar::Acl, Need::Write)
    }
}

/// The authorization of one HTTP request: the resolved token plus whether the answer left
/// anything out because of it (`X-Consul-Results-Filtered-By-ACLs`).
#[derive(Debug)]
pub struct RequestAcl {
    authz: Arc<Authz>,
    filtered: AtomicBool,
}

impl RequestAcl {
    /// Wraps a resolved token for one request.
    pub fn new(authz: Arc<Authz>) -> Self {
        RequestAcl { authz, filtered: AtomicBool::new(false) }
    }

    /// The resolved token.
    pub fn authz(&self) -> &Authz {
        &self.authz
    }

    /// Whether ACLs are enabled for this request.
    pub fn enabled(&self) -> bool {
        self.authz.enabled
    }

    /// For list filtering: whether the item named `name` may be shown; a hidden item marks the
    /// answer as filtered.
    pub fn visible(&self, r: Resource, name: &str) -> bool {
        let ok = self.authz.allows(r, name, Need::Read);
        if !ok {
            self.filtered.store(true, Ordering::Relaxed);
        }
        ok
    }

    /// Marks the answer as filtered (an item was left out by a check other than `visible`).
    pub fn mark_filtered(&self) {
        self.filtered.store(true, Ordering::Relaxed);
    }

    /// Whether anything was left out.
    pub fn was_filtered(&self) -> bool {
        self.enabled() && self.filtered.load(Ordering::Relaxed)
    }

    /// See [`Authz::require`].
    pub fn require(&self, r: Resource, name: &str, need: Need) -> Result<(), Error> {
        self.authz.require(r, name, need)
    }

    /// See [`Authz::require_scalar`].
    pub fn require_scalar(&self, s: Scalar, need: Need) -> Result<(), Error> {
        self.authz.require_scalar(s, need)
    }
}

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::acl::authorizer::DefaultPolicy;
use crate::acl::builtin::{self, GLOBAL_MANAGEMENT_POLICY_ID};
use crate::acl::rules::Rules;
use crate::state::acl::{AclTables, NodeIdentity, ServiceIdentity, TemplatedPolicyRef};

/// Where `enable_token_persistence` keeps tokens set through `/v1/agent/token/*`.
const PERSISTED_TOKENS_FILE: &str = "acl-tokens.json";

/// Most resolved tokens kept; past it the cache starts over (tokens are few in practice, and a
/// flood of random secrets must not grow memory without bound).
const CACHE_LIMIT: usize = 4096;

/// Turns request tokens into [`Authz`], from the replicated ACL tables, with a cache keyed by
/// secret and invalidated by any change to the tables (their highest index).
#[derive(Debug)]
pub struct AclResolver {
    settings: AclSettings,
    datacenter: String,
    node_name: String,
    /// Tokens set at runtime through `/v1/agent/token/*` (they override the configured ones).
    agent_tokens: parking_lot::RwLock<AgentTokens>,
    cache: Mutex<HashMap<String, (u64, Arc<Authz>)>>,
    /// Client agents: what the servers answered per secret, and when.
    remote_cache: Mutex<HashMap<String, RemoteEntry>>,
    disabled: Arc<Authz>,
}

/// A client agent's cached resolution (`None`: the servers said the token does not exist).
#[derive(Debug, Clone)]
struct RemoteEntry {
    fetched: std::time::Instant,
    authz: Option<Arc<Authz>>,
}

impl RemoteEntry {
    fn answer(&self) -> Result<Arc<Authz>, Error> {
        self.authz.clone().ok_or(Error::AclNotFound)
    }
}

impl AclResolver {
    /// A resolver for an agent with these settings, in `datacenter`, named `node_name`.
    pub fn new(settings: AclSettings, datacenter: &str, node_name: &str) -> Self {
        AclResolver {
            agent_tokens: parking_lot::RwLock::new(settings.tokens.clone()),
            settings,
            datacenter: datacenter.to_string(),
            node_name: node_name.to_string(),
            cache: Mutex::new(HashMap::new()),
            remote_cache: Mutex::new(HashMap::new()),
            disabled: Authz::disabled(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &AclSettings {
        &self.settings
    }

    /// Whether ACLs are enforced.
    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// The agent's tokens as they stand (config, then `/v1/agent/token/*` updates).
    pub fn agent_tokens(&self) -> AgentTokens {
        self.agent_tokens.read().clone()
    }

    /// Replaces one of the agent's tokens (`/v1/agent/token/<kind>`); unknown kinds are refused.
    pub fn set_agent_token(&self, kind: &str, secret: Option<String>) -> Result<(), Error> {
        let mut t = self.agent_tokens.write();
        let slot = match kind {
            "default" | "acl_token" => &mut t.default,
            "agent" | "acl_agent_token" => &mut t.agent,
            "agent_recovery" | "agent_master" | "acl_agent_master_token" => &mut t.agent_recovery,
            "replication" | "acl_replication_token" => &mut t.replication,
            "config_file_service_registration" => &mut t.config_file_service_registration,
            "dns" => &mut t.dns,
            other => return Err(Error::NotFound(format!("Token {other:?} is unknown"))),
        };
        *slot = secret.filter(|s| !s.is_empty());
        Ok(())
    }

    /// Writes the runtime-set agent tokens to `<dir>/acl-tokens.json` (Consul's
    /// `enable_token_persistence`), mode 0600: they are secrets.
    pub fn persist_agent_tokens(&self, dir: &std::path::Path) -> Result<(), Error> {
        let t = self.agent_tokens();
        let body = serde_json::json!({
            "default": t.default, "agent": t.agent, "agent_recovery": t.agent_recovery,
            "replication": t.replication, "config_file_service_registration": t.config_file_service_registration,
            "dns": t.dns,
        });
        let path = dir.join(PERSISTED_TOKENS_FILE);
        let tmp = dir.join(format!("{PERSISTED_TOKENS_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp)?;
            f.write_all(body.to_string().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| Error::Storage(format!("writing {}: {e}", path.display())))
    }

    /// Loads tokens persisted by [`AclResolver::persist_agent_tokens`] (they override the
    /// configured ones, as in Consul). A missing file is fine; a corrupt one is an error.
    pub fn load_persisted_tokens(&self, dir: &std::path::Path) -> Result<(), Error> {
        let path = dir.join(PERSISTED_TOKENS_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::Storage(format!("reading {}: {e}", path.display()))),
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Config(format!("{}: not valid JSON: {e}", path.display())))?;
        for kind in ["default", "agent", "agent_recovery", "replication", "config_file_service_registration", "dns"] {
            if let Some(secret) = v.get(kind).and_then(serde_json::Value::as_str) {
                self.set_agent_token(kind, Some(secret.to_string()))?;
            }
        }
        Ok(())
    }

    /// The authorization of a request carrying `secret` (`None`: the agent's default token,
    /// else anonymous). An unknown or expired secret is `AclNotFound` (`AclNotBootstrapped`
    /// while the ACL system has not been bootstrapped).
    pub fn resolve(&self, secret: Option<&str>, tables: &AclTables, now_ms: u64) -> Result<Arc<Authz>, Error> {
        if !self.settings.enabled {
            return Ok(self.disabled.clone());
        }
        let (secret, recovery) = self.effective_secret(secret);
        // The agent recovery token works on this agent alone, without the servers' tables.
        if recovery {
            return Ok(self.recovery());
        }
        let version = tables.max_index();
        if let Some((v, authz)) = self.cache.lock().get(&secret) {
            if *v == version {
                return Ok(authz.clone());
            }
        }
        let authz = match self.compile(&secret, tables, now_ms) {
            // Consul tells a server's caller why no token can be found yet.
            Err(Error::AclNotFound) if !tables.bootstrap.bootstrapped => return Err(Error::AclNotBootstrapped),
            other => other?,
        };
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(secret, (version, authz.clone()));
        Ok(authz)
    }

    /// The secret a request is judged by: its own, else the agent's default token, else the
    /// anonymous token.
    /// With whether it is the agent recovery token (one look at the agent's tokens).
    fn effective_secret(&self, secret: Option<&str>) -> (String, bool) {
        let tokens = self.agent_tokens.read();
        let secret = secret
            .map(str::to_string)
            .or_else(|| tokens.default.clone())
            .unwrap_or_else(|| builtin::ANONYMOUS_TOKEN_SECRET_ID.into());
        let recovery = tokens.agent_recovery.as_deref() == Some(secret.as_str());
        (secret, recovery)
    }

    /// A client agent's resolution: it holds no ACL tables, so `fetch` asks a server for what
    /// the token needs (see `AclTables::for_secret`); answers are cached for the shortest of
    /// `token_ttl`/`policy_ttl`/`role_ttl`. When no server answers, `down_policy` decides:
    /// `extend-cache` and `async-cache` keep using the last answer (and deny a token never
    /// resolved), `allow` allows everything, `deny` denies everything.
    pub async fn resolve_remote<F, Fut>(&self, secret: Option<&str>, now_ms: u64, fetch: F) -> Result<Arc<Authz>, Error>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<Option<AclTables>, Error>>,
    {
        if !self.settings.enabled {
            return Ok(self.disabled.clone());
        }
        let (secret, recovery) = self.effective_secret(secret);
        if recovery {
            return Ok(self.recovery());
        }
        let ttl = self.settings.token_ttl.min(self.settings.policy_ttl).min(self.settings.role_ttl);
        let cached = self.remote_cache.lock().get(&secret).cloned();
        if let Some(entry) = cached.as_ref().filter(|e| e.fetched.elapsed() < ttl) {
            return entry.answer();
        }
        match fetch(secret.clone()).await {
            Ok(tables) => {
                let tables = tables.unwrap_or_default();
                let authz = match self.compile(&secret, &tables, now_ms) {
                    Ok(a) => Some(a),
                    Err(Error::AclNotFound) => None,
                    Err(e) => return Err(e),
                };
                let entry = RemoteEntry { fetched: std::time::Instant::now(), authz };
                let mut cache = self.remote_cache.lock();
                if cache.len() >= CACHE_LIMIT {
                    cache.clear();
                }
                cache.insert(secret, entry.clone());
                entry.answer()
            }
            Err(e) => {
                tracing::warn!(error = %e, policy = ?self.settings.down_policy, "ACL token resolution: no server answered");
                let fixed = |default| {
                    let authorizer = Authorizer::new(Rules::default(), default, false);
                    Ok(Authz::new("acl-down-policy", Arc::new(authorizer)))
                };
                match self.settings.down_policy {
                    DownPolicy::ExtendCache | DownPolicy::AsyncCache => match cached {
                        Some(entry) => entry.answer(),
                        None => fixed(DefaultPolicy::Deny),
                    },
                    DownPolicy::Allow => fixed(DefaultPolicy::Allow),
                    DownPolicy::Deny => fixed(DefaultPolicy::Deny),
                }
            }
        }
    }

    /// The resolver's answer for a token that is not in the tables: the anonymous token before
    /// the leader created it is treated as having no policies.
    fn compile(&self, secret: &str, tables: &AclTables, now_ms: u64) -> Result<Arc<Authz>, Error> {
        let default = if self.settings.default_allow { DefaultPolicy::Allow } else { DefaultPolicy::Deny };
        let Some(token) = tables.token_by_secret(secret, now_ms) else {
            // The configured initial management token is management from the start, before the
            // leader has written it to the tables (clients started with it must not race that).
            if self.settings.tokens.initial_management.as_deref() == Some(secret) {
                return Ok(Authz::new("initial-management", Arc::new(Authorizer::management())));
            }
            if secret == builtin::ANONYMOUS_TOKEN_SECRET_ID {
                let authorizer = Authorizer::new(Rules::default(), default, self.settings.enable_key_list_policy);
                return Ok(Authz::new(builtin::ANONYMOUS_TOKEN_ACCESSOR_ID, Arc::new(authorizer)));
            }
            return Err(Error::AclNotFound);
        };
        let mut rules = Rules::default();
        let mut policy_ids: Vec<&str> = token.policies.iter().map(|l| l.id.as_str()).collect();
        let mut services: Vec<&ServiceIdentity> = token.service_identities.iter().collect();
        let mut nodes: Vec<&NodeIdentity> = token.node_identities.iter().collect();
        let mut templated: Vec<&TemplatedPolicyRef> = token.templated_policies.iter().collect();
        for link in &token.roles {
            if let Some(role) = tables.role(&link.id) {
                policy_ids.extend(role.policies.iter().map(|l| l.id.as_str()));
                services.extend(role.service_identities.iter());
                nodes.extend(role.node_identities.iter());
                templated.extend(role.templated_policies.iter());
            }
        }
        for id in policy_ids {
            if id == GLOBAL_MANAGEMENT_POLICY_ID {
                return Ok(Authz::new(token.accessor_id.clone(), Arc::new(Authorizer::management())));
            }
            let Some(policy) = tables.policy(id) else { continue };
            if !self.applies_here(&policy.datacenters) {
                continue;
            }
            // Stored rules were validated on write; a policy that no longer parses (a rules
            // change between versions) grants nothing rather than failing every request.
            match Rules::parse(&policy.rules) {
                Ok(r) => rules.merge(&r),
                Err(e) => tracing::warn!(policy = %policy.name, error = %e, "ACL policy rules do not parse; ignored"),
            }
        }
        for s in services {
            if let Ok(r) = builtin::service_identity_rules(&s.service_name, &s.datacenters, &self.datacenter) {
                rules.merge(&r);
            }
        }
        for n in nodes {
            if let Ok(r) = builtin::node_identity_rules(&n.node_name, &n.datacenter, &self.datacenter) {
                rules.merge(&r);
            }
        }
        for t in templated {
            if !self.applies_here(&t.datacenters) {
                continue;
            }
            if let Some(r) =
                builtin::templated_policy(&t.template_name).and_then(|p| p.rules(t.name_var.as_deref()).ok())
            {
                rules.merge(&r);
            }
        }
        let authorizer = Authorizer::new(rules, default, self.settings.enable_key_list_policy);
        Ok(Authz::new(token.accessor_id.clone(), Arc::new(authorizer)))
    }

    fn applies_here(&self, datacenters: &[String]) -> bool {
        datacenters.is_empty() || datacenters.contains(&self.datacenter)
    }

    /// The agent recovery token: write on this agent, read on every node (Consul's
    /// `agentRecoveryAuthorizer`), nothing else.
    fn recovery(&self) -> Arc<Authz> {
        let text = format!(
            "agent {name:?} {{ policy = \"write\" }}\nnode_prefix \"\" {{ policy = \"read\" }}\n",
            name = self.node_name
        );
        let rules = Rules::parse(&text).unwrap_or_default();
        Authz::new("agent-recovery-token", Arc::new(Authorizer::new(rules, DefaultPolicy::Deny, false)))
    }
}

impl crate::replication::backend::AgentTokenSource for AclResolver {
    fn agent_write_token(&self) -> Option<String> {
        let t = self.agent_tokens.read();
        t.agent.clone().or_else(|| t.default.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::acl::{AclLink, AclPolicy, AclToken};

    /// Server-side tables holding one token with `key_prefix "app/"` write.
    fn tables() -> AclTables {
        let mut t = AclTables::default();
        t.policies.insert(
            "p1".into(),
            AclPolicy {
                id: "p1".into(),
                name: "app".into(),
                rules: r#"key_prefix "app/" { policy = "write" }"#.into(),
                ..Default::default()
            },
        );
        t.tokens.insert(
            "acc".into(),
            AclToken {
                accessor_id: "acc".into(),
                secret_id: "sec".into(),
                policies: vec![AclLink { id: "p1".into(), ..Default::default() }],
                ..Default::default()
            },
        );
        t.tokens_index = 5;
        t.rebuild();
        t
    }

    fn client(down: DownPolicy, ttl: Duration) -> AclResolver {
        let settings = AclSettings {
            enabled: true,
            default_allow: false,
            down_policy: down,
            token_ttl: ttl,
            ..AclSettings::default()
        };
        AclResolver::new(settings, "dc1", "cli")
    }

    async fn up(r: &AclResolver, secret: &str) -> Result<Arc<Authz>, Error> {
        r.resolve_remote(Some(secret), 0, |s| async move { Ok(tables().for_secret(&s, 0)) }).await
    }

    async fn down(r: &AclResolver, secret: &str) -> Result<Arc<Authz>, Error> {
        r.resolve_remote(Some(secret), 0, |_| async { Err(Error::Rpc("no server".into())) }).await
    }

    #[tokio::test]
    async fn a_client_compiles_what_a_server_sends_and_caches_it_for_the_ttl() {
        let r = client(DownPolicy::ExtendCache, Duration::from_secs(60));
        let a = up(&r, "sec").await.expect("known token");
        assert!(a.allows(Resource::Key, "app/x", Need::Write) && !a.allows(Resource::Key, "other", Need::Read));
        assert!(matches!(up(&r, "nope").await, Err(Error::AclNotFound)));
        // Within the TTL the server is not asked again (it is down now, and the answer holds).
        let cached = r.resolve_remote(Some("sec"), 0, |_| async { panic!("asked the server") }).await;
        assert!(cached.is_ok());
    }

    #[tokio::test]
    async fn down_policy_decides_when_no_server_answers() {
        let extend = client(DownPolicy::ExtendCache, Duration::ZERO);
        up(&extend, "sec").await.expect("resolved once");
        let a = down(&extend, "sec").await.expect("extend-cache keeps the last answer");
        assert!(a.allows(Resource::Key, "app/x", Need::Write));
        let never = down(&extend, "other").await.expect("a fixed answer");
        assert!(!never.allows(Resource::Key, "app/x", Need::Read), "a token never resolved is denied");

        let allow = down(&client(DownPolicy::Allow, Duration::ZERO), "x").await.expect("allow");
        assert!(allow.allows(Resource::Key, "any", Need::Write));
        let deny = client(DownPolicy::Deny, Duration::ZERO);
        up(&deny, "sec").await.expect("resolved once");
        let d = down(&deny, "sec").await.expect("deny");
        assert!(!d.allows(Resource::Key, "app/x", Need::Read), "deny ignores the cache");
    }

    #[tokio::test]
    async fn the_recovery_token_needs_no_server() {
        let mut settings = AclSettings { enabled: true, default_allow: false, ..AclSettings::default() };
        settings.tokens.agent_recovery = Some("rec".into());
        let r = AclResolver::new(settings, "dc1", "cli");
        let a = down(&r, "rec").await.expect("recovery");
        assert!(a.allows(Resource::Agent, "cli", Need::Write));
    }
}
