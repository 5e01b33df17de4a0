//! Embedding a full consul-rs node in the calling process.
//!
//! An [`EmbeddedAgent`] owns its own tokio runtime, so it keeps serving whatever the host
//! program's threads do, shuts down cleanly, and several can run side by side (a whole cluster
//! in one process). It is the same [`consul_core::agent::Agent`] the `consul-rs` binary runs.

use std::net::SocketAddr;
use std::time::Duration;

use consul_core::agent::Agent;
pub use consul_core::api::authz::{AclSettings, AgentTokens, DownPolicy};
pub use consul_core::config::{AgentConfig, Ports};
use serde::Deserialize;

use crate::client::{Client, ClientConfig};
use crate::error::{Error, ErrorCode, Result};
use crate::types::AgentMember;
use crate::watch_plan::ConfigWatches;

/// A node running inside this process.
#[derive(Debug)]
pub struct EmbeddedAgent {
    runtime: Option<tokio::runtime::Runtime>,
    agent: Option<Agent>,
    http_addr: SocketAddr,
    serf_addr: SocketAddr,
    dns_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    node_name: String,
    pid: u32,
    /// The token the agent's own calls (join, members, leave) send: `acl.tokens.initial_management`
    /// when ACLs are enabled, so they work under `default_policy = "deny"`.
    own_token: Option<String>,
    /// How [`EmbeddedAgent::client`] reaches the API: plain HTTP, or HTTPS for an HTTPS-only
    /// agent (with the agent's own CA and certificate).
    client_config: ClientConfig,
    /// The configuration's `watches`, running until shutdown.
    watches: Option<ConfigWatches>,
}

/// How an agent's own tools (its config `watches`, an embedder's client) reach its API: plain
/// HTTP; for an HTTPS-only agent HTTPS with the agent's own CA and certificate; for an agent
/// serving HTTP only on a Unix socket, that socket.
pub fn own_client_config(agent: &Agent) -> ClientConfig {
    let config = agent.config();
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
    match (config.ports.http, agent.https_addr(), agent.http_unix_socket()) {
        (Some(_), _, _) => ClientConfig {
            address: format!("http://{}", agent.http_addr()),
            https: Some(false),
            ..ClientConfig::default()
        },
        // The agent's own calls present its certificate (Consul's `tls cert create` makes
        // server certificates for client auth too), so they pass `verify_incoming`; the
        // agent's certificate must name the address they use (127.0.0.1 does, in Consul's).
        (None, Some(https), _) => {
            let tls = config.tls.https();
            ClientConfig {
                address: format!("https://{https}"),
                https: Some(true),
                ca_file: path(&tls.ca_file),
                ca_path: path(&tls.ca_path),
                client_cert: path(&tls.cert_file),
                client_key: path(&tls.key_file),
                ..ClientConfig::default()
            }
        }
        // HTTP only on a Unix socket.
        (None, None, Some(socket)) => {
            ClientConfig { address: format!("unix://{}", socket.display()), ..ClientConfig::default() }
        }
        (None, None, None) => ClientConfig {
            address: format!("http://{}", agent.http_addr()),
            https: Some(false),
            ..ClientConfig::default()
        },
    }
}

/// A client made from [`own_client_config`]: of the environment only the ACL token
/// (`CONSUL_HTTP_TOKEN`, `CONSUL_HTTP_TOKEN_FILE`) is read; `CONSUL_HTTP_SSL`, `CONSUL_CACERT`
/// and the like describe some other agent.
pub fn own_client(config: ClientConfig) -> Result<Client> {
    Client::with_env(config, |k| match k {
        "CONSUL_HTTP_TOKEN" | "CONSUL_HTTP_TOKEN_FILE" => std::env::var(k).ok(),
        _ => None,
    })
}

impl EmbeddedAgent {
    /// Starts a node and returns once its listeners are up. Blocking: call it from a thread, not
    /// from inside an async runtime.
    pub fn start(config: AgentConfig) -> Result<EmbeddedAgent> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::new(
                ErrorCode::WouldDeadlock,
                "EmbeddedAgent::start blocks; call it outside an async runtime",
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("consul-agent")
            .enable_all()
            .build()
            .map_err(|e| Error::new(ErrorCode::Internal, format!("cannot start the agent runtime: {e}")))?;
        let own_token = config.acl.enabled.then(|| config.acl.tokens.initial_management.clone()).flatten();
        let config_watches = config.watches.clone();
        let agent = runtime.block_on(Agent::start(config))?;
        let client_config = own_client_config(&agent);
        // The `watches` of the configuration run on the agent's runtime, against its API.
        let watches = if config_watches.is_empty() {
            None
        } else {
            let client = match own_client(client_config.clone()) {
                Ok(c) => c,
                Err(e) => {
                    let _ = runtime.block_on(agent.shutdown());
                    return Err(e);
                }
            };
            let _in_runtime = runtime.enter();
            Some(ConfigWatches::start(&client, &config_watches))
        };
        Ok(EmbeddedAgent {
            client_config,
            watches,
            http_addr: agent.http_addr(),
            serf_addr: agent.serf_addr(),
            dns_addr: agent.dns_addr(),
            https_addr: agent.https_addr(),
            node_name: agent.node_name().to_string(),
            runtime: Some(runtime),
            agent: Some(agent),
            pid: std::process::id(),
            own_token,
        })
    }

    fn check_process(&self) -> Result<()> {
        if std::process::id() != self.pid {
            return Err(Error::new(
                ErrorCode::Forked,
                "this agent belongs to the parent process (fork); start a new one",
            ));
        }
        if self.agent.is_none() {
            return Err(Error::new(ErrorCode::Shutdown, "the agent is shut down"));
        }
        Ok(())
    }

    /// The HTTP API address (the HTTPS one for an HTTPS-only agent, `ports.http = -1`).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The HTTPS API address, when `ports.https` is set and a certificate is configured.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// How a client reaches this agent's API: plain HTTP, or for an HTTPS-only agent HTTPS with
    /// the agent's own CA and certificate. [`EmbeddedAgent::client`] uses it; bindings hand it
    /// to their own client types.
    pub fn client_config(&self) -> &ClientConfig {
        &self.client_config
    }

    /// The serf_lan address other agents join.
    pub fn serf_addr(&self) -> SocketAddr {
        self.serf_addr
    }

    /// The DNS address, unless DNS is disabled.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns_addr
    }

    /// The node name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Whether the agent is running.
    pub fn is_running(&self) -> bool {
        self.agent.is_some()
    }

    /// A client for this agent's HTTP API: over HTTPS for an HTTPS-only agent, trusting the
    /// agent's CA and presenting its certificate. Of the environment only the ACL token
    /// (`CONSUL_HTTP_TOKEN`, `CONSUL_HTTP_TOKEN_FILE`) is read: `CONSUL_HTTP_SSL`, `CONSUL_CACERT`
    /// and the like describe some other agent.
    pub fn client(&self) -> Result<Client> {
        own_client(self.client_config.clone())
    }

    /// Waits until the agent knows a cluster leader.
    pub fn wait_for_leader(&self, timeout: Duration) -> Result<()> {
        self.check_process()?;
        let (Some(rt), Some(agent)) = (&self.runtime, &self.agent) else {
            return Err(Error::new(ErrorCode::Shutdown, "the agent is shut down"));
        };
        rt.block_on(agent.wait_for_leader(timeout))
            .map_err(|_| Error::new(ErrorCode::Timeout, format!("no leader within {timeout:?}")))
    }

    /// Runs one HTTP call against this agent on its own runtime.
    fn call_self<T>(&self, f: impl AsyncFnOnce(Client) -> Result<T>) -> Result<T> {
        self.check_process()?;
        let Some(rt) = &self.runtime else {
            return Err(Error::new(ErrorCode::Shutdown, "the agent is shut down"));
        };
        let client = match &self.own_token {
            Some(t) => self.client()?.with_token(Some(t))?,
            None => self.client()?,
        };
        rt.block_on(f(client))
    }

    /// Joins the gossip pool of the agent at `address` (`host` or `host:port` of its serf_lan).
    pub fn join(&self, address: &str) -> Result<()> {
        self.call_self(async |c| c.agent_join(address, false).await)
    }

    /// Members of this agent's LAN gossip pool, itself included.
    pub fn members(&self) -> Result<Vec<AgentMember>> {
        self.call_self(async |c| c.agent_members(false).await)
    }

    /// Leaves the pool gracefully (others see `left`, not `failed`), then shuts down.
    pub fn leave(&mut self) -> Result<()> {
        self.call_self(async |c| c.agent_leave().await)?;
        self.shutdown()
    }

    /// Stops the agent. Idempotent.
    pub fn shutdown(&mut self) -> Result<()> {
        if std::process::id() != self.pid {
            // Never touch the parent's runtime threads from a forked child.
            if let Some(rt) = self.runtime.take() {
                std::mem::forget(rt);
            }
            if let Some(a) = self.agent.take() {
                std::mem::forget(a);
            }
            return Err(Error::new(ErrorCode::Forked, "this agent belongs to the parent process"));
        }
        let (runtime, agent, watches) = (self.runtime.take(), self.agent.take(), self.watches.take());
        if tokio::runtime::Handle::try_current().is_err() {
            return stop(runtime, agent, watches);
        }
        // Called (or dropped) on a thread that runs an async runtime, where tokio refuses to block
        // on another runtime or to shut one down: stop the agent from a plain thread instead. The
        // agent runs on its own runtime, so waiting here cannot deadlock on the caller's.
        std::thread::Builder::new()
            .name("consul-rs-agent-stop".into())
            .spawn(move || stop(runtime, agent, watches))
            .map_err(|e| Error::new(ErrorCode::Internal, format!("could not start a thread to stop the agent: {e}")))?
            .join()
            .map_err(|_| Error::new(ErrorCode::Internal, "stopping the embedded agent panicked"))?
    }
}

/// Stops the watches, then the agent, then its runtime (from a thread outside any runtime).
fn stop(runtime: Option<tokio::runtime::Runtime>, agent: Option<Agent>, watches: Option<ConfigWatches>) -> Result<()> {
    if let Some(w) = watches {
        w.stop();
    }
    let stopped = match (runtime.as_ref(), agent) {
        (Some(rt), Some(agent)) => rt.block_on(agent.shutdown()).map_err(Error::from),
        _ => Ok(()),
    };
    if let Some(rt) = runtime {
        rt.shutdown_timeout(Duration::from_secs(5));
    }
    stopped
}

impl Drop for EmbeddedAgent {
    fn drop(&mut self) {
        if self.agent.is_some() || self.runtime.is_some() {
            if let Err(e) = self.shutdown() {
                tracing::debug!(error = %e, "embedded agent dropped");
            }
        }
    }
}

/// Applies Consul configuration-file keys on top of an embedded agent's configuration, with the
/// `consul-rs` binary's own parser ([`consul_core::config_file::Settings`]): the same keys, the
/// same classes (honoured, no effect, refused — the README's table) and the same messages. The
/// Python and Node `Agent`s pass their `tls`, `ports.https` and free-form `config` options
/// through here, so an embedded node reads `tls { defaults { … } }` exactly as a config file.
/// `keys` must be a JSON object; an empty one changes nothing.
pub fn with_config_keys(config: AgentConfig, keys: &serde_json::Value) -> Result<AgentConfig> {
    // The parser's messages already name the source ("config: tls.defaults…").
    let invalid = |e: consul_core::error::Error| Error::new(ErrorCode::InvalidArgument, e.to_string());
    let mut s = consul_core::config_file::Settings::new(false);
    s.agent = config;
    s.apply_value(keys, "config").map_err(invalid)?;
    s.finish().map_err(invalid)?;
    s.agent.validate().map_err(invalid)?;
    Ok(s.agent)
}

#[cfg(test)]
mod config_key_tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn config_keys_apply_through_the_binarys_parser() {
        let base = AgentConfig::dev();
        let c = with_config_keys(
            base.clone(),
            &json!({"ports": {"https": 0, "http": -1}, "tls": {"https": {
                "ca_file": "ca.pem", "cert_file": "c.pem", "key_file": "k.pem", "verify_incoming": true}}}),
        )
        .expect("https-only");
        assert_eq!(c.ports.http, None);
        assert_eq!(c.ports.https, Some(0));
        assert!(c.tls.https().verify_incoming);
        // Checked as the binary checks a config file.
        let e = with_config_keys(base.clone(), &json!({"tls": {"defaults": {"verify_incoming": true}}}))
            .expect_err("verify_incoming without a CA");
        assert!(e.message.contains("verify_incoming needs a CA"), "{e}");
        // Untouched settings keep the binding's values.
        assert_eq!(c.node_name, base.node_name);
        let same = with_config_keys(base.clone(), &json!({})).expect("empty");
        assert_eq!(same.ports.http, base.ports.http);
    }

    #[test]
    fn config_keys_are_refused_by_name() {
        let e = with_config_keys(AgentConfig::dev(), &json!({"tls": {"defualts": {}}})).expect_err("typo");
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.contains("tls.defualts"), "{e}");
        let e = with_config_keys(AgentConfig::dev(), &json!({"auto_encrypt": {"tls": true}})).expect_err("refused");
        assert!(e.message.contains("auto_encrypt.tls"), "{e}");
        let e = with_config_keys(AgentConfig::dev(), &json!(["x"])).expect_err("not an object");
        assert!(e.message.contains("object"), "{e}");
    }
}

/// The `acl` block as every binding hands it over (JSON; snake_case keys, camelCase accepted for
/// Node): `{"enabled": true, "default_policy": "deny", "down_policy": "extend-cache",
/// "token_ttl": "30s", "policy_ttl": 30, "role_ttl": "30s", "enable_key_list_policy": false,
/// "enable_token_persistence": false, "tokens": {"initial_management": "…", "default": "…",
/// "agent": "…", "agent_recovery": "…", "replication": "…",
/// "config_file_service_registration": "…", "dns": "…"}}` — Consul's `acl { … }` keys. TTLs are
/// seconds or Go duration strings. Unknown keys are refused, naming them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AclOptions {
    /// `enabled`.
    pub enabled: bool,
    /// `default_policy`: `allow` (default) or `deny`.
    #[serde(alias = "defaultPolicy")]
    pub default_policy: Option<String>,
    /// `down_policy`: `extend-cache` (default), `async-cache`, `allow`, `deny`.
    #[serde(alias = "downPolicy")]
    pub down_policy: Option<String>,
    /// `token_ttl`.
    #[serde(alias = "tokenTtl")]
    pub token_ttl: Option<crate::options::DurationArg>,
    /// `policy_ttl`.
    #[serde(alias = "policyTtl")]
    pub policy_ttl: Option<crate::options::DurationArg>,
    /// `role_ttl`.
    #[serde(alias = "roleTtl")]
    pub role_ttl: Option<crate::options::DurationArg>,
    /// `enable_key_list_policy`.
    #[serde(alias = "enableKeyListPolicy")]
    pub enable_key_list_policy: bool,
    /// `enable_token_persistence`.
    #[serde(alias = "enableTokenPersistence")]
    pub enable_token_persistence: bool,
    /// `tokens`.
    pub tokens: AclTokenOptions,
}

/// `acl.tokens` (see [`AclOptions`]); empty strings count as unset.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AclTokenOptions {
    /// `initial_management` (legacy `master`).
    #[serde(alias = "initialManagement", alias = "master")]
    pub initial_management: Option<String>,
    /// `default`.
    pub default: Option<String>,
    /// `agent`.
    pub agent: Option<String>,
    /// `agent_recovery` (legacy `agent_master`).
    #[serde(alias = "agentRecovery", alias = "agent_master")]
    pub agent_recovery: Option<String>,
    /// `replication`.
    pub replication: Option<String>,
    /// `config_file_service_registration`.
    #[serde(alias = "configFileServiceRegistration")]
    pub config_file_service_registration: Option<String>,
    /// `dns`.
    pub dns: Option<String>,
}

impl AclOptions {
    /// Reads the neutral JSON shape (`null` is "ACLs off").
    pub fn from_json(v: &serde_json::Value) -> Result<AclOptions> {
        if v.is_null() {
            return Ok(AclOptions::default());
        }
        AclOptions::deserialize(v).map_err(|e| Error::invalid("acl", e))
    }

    /// The agent's [`AclSettings`], validated (`default_policy`, `down_policy`, TTLs).
    pub fn resolve(&self) -> Result<AclSettings> {
        let mut s = AclSettings { enabled: self.enabled, ..AclSettings::default() };
        s.default_allow = match self.default_policy.as_deref() {
            None | Some("") | Some("allow") => true,
            Some("deny") => false,
            Some(other) => {
                return Err(Error::invalid("acl.default_policy", format!("{other:?}: use allow or deny")));
            }
        };
        if let Some(d) = self.down_policy.as_deref().filter(|d| !d.is_empty()) {
            s.down_policy = d.parse().map_err(|e: String| Error::new(ErrorCode::InvalidArgument, e))?;
        }
        for (arg, v, slot) in [
            ("acl.token_ttl", &self.token_ttl, &mut s.token_ttl),
            ("acl.policy_ttl", &self.policy_ttl, &mut s.policy_ttl),
            ("acl.role_ttl", &self.role_ttl, &mut s.role_ttl),
        ] {
            if let Some(v) = v {
                *slot = v.resolve(arg)?;
            }
        }
        s.enable_key_list_policy = self.enable_key_list_policy;
        s.enable_token_persistence = self.enable_token_persistence;
        let t = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        s.tokens = AgentTokens {
            initial_management: t(&self.tokens.initial_management),
            default: t(&self.tokens.default),
            agent: t(&self.tokens.agent),
            agent_recovery: t(&self.tokens.agent_recovery),
            replication: t(&self.tokens.replication),
            config_file_service_registration: t(&self.tokens.config_file_service_registration),
            dns: t(&self.tokens.dns),
        };
        Ok(s)
    }
}

/// [`AclOptions::from_json`] then [`AclOptions::resolve`]: what each binding calls.
pub fn acl_settings(v: &serde_json::Value) -> Result<AclSettings> {
    AclOptions::from_json(v)?.resolve()
}

#[cfg(test)]
mod acl_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn acl_block_maps_onto_settings() {
        let s = acl_settings(&json!({
            "enabled": true, "default_policy": "deny", "down_policy": "async-cache", "token_ttl": "1m",
            "policy_ttl": 5, "enable_key_list_policy": true,
            "tokens": {"initial_management": "root", "agent": "a", "default": ""}
        }))
        .expect("settings");
        assert!(s.enabled && !s.default_allow && s.enable_key_list_policy);
        assert_eq!(s.down_policy, DownPolicy::AsyncCache);
        assert_eq!(s.token_ttl, Duration::from_secs(60));
        assert_eq!(s.policy_ttl, Duration::from_secs(5));
        assert_eq!(s.role_ttl, Duration::from_secs(30));
        assert_eq!(s.tokens.initial_management.as_deref(), Some("root"));
        assert_eq!(s.tokens.agent.as_deref(), Some("a"));
        assert_eq!(s.tokens.default, None);
        let camel =
            acl_settings(&json!({"enabled": true, "defaultPolicy": "deny", "tokens": {"initialManagement": "r"}}))
                .expect("camel");
        assert!(!camel.default_allow && camel.tokens.initial_management.as_deref() == Some("r"));
        assert_eq!(acl_settings(&serde_json::Value::Null).expect("off"), AclSettings::default());
        assert!(acl_settings(&json!({"default_policy": "maybe"})).is_err());
        assert!(acl_settings(&json!({"down_policy": "x"})).is_err());
        let e = acl_settings(&json!({"enabeld": true})).expect_err("typo");
        assert!(e.message.contains("enabeld"), "{}", e.message);
        assert!(acl_settings(&json!({"token_ttl": -1})).is_err());
    }
}
