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

impl std::str::FromStr for DownPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "extend-cache" => Ok(DownPolicy::ExtendCache),
            "async-cache" => Ok(DownPolicy::AsyncCache),
            "allow" => Ok(DownPolicy::Allow),
            "deny" => Ok(DownPolicy::Deny),
            other => Err(format!(
                "invalid acl.down_policy {other:?}: use extend-cache, async-cache, allow or deny"
            )),
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
