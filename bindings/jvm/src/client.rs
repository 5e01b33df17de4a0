//! `FfiClient`: one agent's HTTP API, every call a Kotlin `suspend` function.
use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use consul_sdk::{
    Client, ClientConfig, Discovery, EventFilter, HealthFilter, LeaderElection, Lock, LockOptions, PutOptions,
    QueryOptions, Registration, WatchOptions, WatchSpec,
};
use serde_json::{json, Value};

use crate::convert::*;
use crate::error::{err, invalid, FfiResult};
use crate::handles::{FfiDiscovery, FfiElection, FfiLock, FfiRegistration, FfiWatch};
use crate::runtime::{entered, run};

/// How to reach an agent. Options left unset fall back to Consul's environment variables
/// (`CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN`, `CONSUL_HTTP_SSL`, `CONSUL_CACERT`, …), resolved
/// by the SDK as for every binding.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ClientOptions {
    /// `host:port`, `http(s)://host:port` or `unix:///path` (default `CONSUL_HTTP_ADDR`, else
    /// `127.0.0.1:8500`).
    pub address: Option<String>,
    /// ACL token.
    pub token: Option<String>,
    /// A file holding the ACL token.
    pub token_file: Option<String>,
    /// Datacenter for every request.
    pub datacenter: Option<String>,
    /// Timeout of a non-blocking request, in seconds.
    pub timeout_secs: f64,
    /// CA file.
    pub ca_file: Option<String>,
    /// CA directory.
    pub ca_path: Option<String>,
    /// Client certificate.
    pub client_cert: Option<String>,
    /// Client key.
    pub client_key: Option<String>,
    /// The name the agent's certificate must carry.
    pub tls_server_name: Option<String>,
    /// Accept any certificate (tests only).
    pub insecure_skip_verify: bool,
    /// HTTPS for a bare `host:port` (default `CONSUL_HTTP_SSL`).
    pub https: Option<bool>,
}

/// A connection to one agent's HTTP API.
#[derive(Debug, uniffi::Object)]
pub struct FfiClient {
    pub(crate) client: Client,
}

/// One KV operation of a transaction (Consul's `KVTxnOp`): `verb` is `set`, `cas`, `get`,
/// `get-tree`, `check-index`, `check-session`, `check-not-exists`, `delete`, `delete-tree`,
/// `delete-cas`, `lock` or `unlock`.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiTxnOp {
    /// The verb.
    pub verb: String,
    /// The key.
    pub key: String,
    /// The value (`set`, `cas`, `lock`, `unlock`).
    pub value: Option<Vec<u8>>,
    /// Flags to store.
    pub flags: Option<u64>,
    /// The ModifyIndex a `cas`, `check-index` or `delete-cas` expects.
    pub index: Option<u64>,
    /// The session (`lock`, `unlock`, `check-session`).
    pub session: Option<String>,
}

fn query(consistency: &str, index: Option<u64>, wait_secs: Option<f64>) -> FfiResult<QueryOptions> {
    Ok(QueryOptions {
        consistency: crate::convert::consistency(consistency)?,
        index,
        wait: opt_secs("wait", wait_secs)?,
        ..QueryOptions::default()
    })
}

/// A Go duration string for Consul's session body.
fn go_secs(secs: f64) -> String {
    format!("{secs}s")
}

/// The KV entries of a transaction's answer, in operation order (`None` for results that carry
/// no entry).
fn txn_results(v: &Value) -> FfiResult<Vec<Option<FfiKvPair>>> {
    let Some(results) = v.get("Results").and_then(Value::as_array) else { return Ok(vec![]) };
    results
        .iter()
        .map(|r| {
            let Some(kv) = r.get("KV").filter(|kv| !kv.is_null()) else { return Ok(None) };
            let num = |k: &str| kv.get(k).and_then(Value::as_u64).unwrap_or(0);
            let value = match kv.get("Value").and_then(Value::as_str) {
                Some(b64) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|e| err(consul_sdk::ErrorCode::Internal, format!("txn answer: {e}")))?,
                ),
                None => None,
            };
            Ok(Some(FfiKvPair {
                key: kv.get("Key").and_then(Value::as_str).unwrap_or_default().to_string(),
                value,
                flags: num("Flags"),
                create_index: num("CreateIndex"),
                modify_index: num("ModifyIndex"),
                lock_index: num("LockIndex"),
                session: kv.get("Session").and_then(Value::as_str).map(str::to_string),
            }))
        })
        .collect()
}

#[uniffi::export]
impl FfiClient {
    /// A client for `options`.
    #[uniffi::constructor]
    pub fn new(options: ClientOptions) -> FfiResult<Arc<Self>> {
        let mut config = ClientConfig::default();
        if let Some(a) = options.address {
            config.address = a;
        }
        config.token = options.token;
        config.token_file = options.token_file;
        config.datacenter = options.datacenter;
        config.ca_file = options.ca_file;
        config.ca_path = options.ca_path;
        config.client_cert = options.client_cert;
        config.client_key = options.client_key;
        config.tls_server_name = options.tls_server_name;
        config.insecure_skip_verify = options.insecure_skip_verify;
        config.https = options.https;
        config.timeout = secs("timeout", options.timeout_secs)?;
        if config.timeout.is_zero() {
            return Err(invalid("timeout", "must be positive"));
        }
        Ok(Arc::new(FfiClient { client: Client::new(config)? }))
    }

    /// The agent's base URL.
    pub fn address(&self) -> String {
        self.client.address().to_string()
    }

    /// One key with the read's index.
    pub async fn kv_get(
        &self,
        key: String,
        consistency: String,
        index: Option<u64>,
        wait_secs: Option<f64>,
    ) -> FfiResult<FfiKvGet> {
        let q = query(&consistency, index, wait_secs)?;
        let c = self.client.clone();
        run(async move {
            let (m, p) = c.kv_get(&key, &q).await?;
            Ok(FfiKvGet { index: m.index, pair: p.as_ref().map(Into::into) })
        })
        .await
    }

    /// Every key under `prefix` with the read's index.
    pub async fn kv_list(
        &self,
        prefix: String,
        consistency: String,
        index: Option<u64>,
        wait_secs: Option<f64>,
    ) -> FfiResult<FfiKvList> {
        let q = query(&consistency, index, wait_secs)?;
        let c = self.client.clone();
        run(async move {
            let (m, l) = c.kv_list(&prefix, &q).await?;
            Ok(FfiKvList { index: m.index, pairs: l.iter().map(Into::into).collect() })
        })
        .await
    }

    /// Key names under `prefix`, folded at `separator`.
    pub async fn kv_keys(
        &self,
        prefix: String,
        separator: Option<String>,
        consistency: String,
    ) -> FfiResult<Vec<String>> {
        let q = query(&consistency, None, None)?;
        let c = self.client.clone();
        run(async move { Ok(c.kv_keys(&prefix, separator.as_deref(), &q).await?.1) }).await
    }

    /// Writes a key; `false` when a CAS or lock condition failed.
    pub async fn kv_put(
        &self,
        key: String,
        value: Vec<u8>,
        cas: Option<u64>,
        flags: Option<u64>,
        acquire: Option<String>,
        release: Option<String>,
    ) -> FfiResult<bool> {
        let c = self.client.clone();
        let o = PutOptions { cas, flags, acquire, release };
        run(async move { Ok(c.kv_put(&key, Bytes::from(value), &o).await?) }).await
    }

    /// Deletes a key or, with `recurse`, a prefix; `false` when a CAS failed.
    pub async fn kv_delete(&self, key: String, recurse: bool, cas: Option<u64>) -> FfiResult<bool> {
        let c = self.client.clone();
        run(async move { Ok(c.kv_delete(&key, recurse, cas).await?) }).await
    }

    /// Runs KV operations atomically (`/v1/txn`); answers the entries the operations return, in
    /// order. A rolled-back transaction is a `CONFLICT` naming the failed operations.
    pub async fn txn(&self, ops: Vec<FfiTxnOp>) -> FfiResult<Vec<Option<FfiKvPair>>> {
        if ops.is_empty() {
            return Err(invalid("ops", "must not be empty"));
        }
        let body: Vec<Value> = ops
            .into_iter()
            .map(|op| {
                let mut kv = json!({ "Verb": op.verb, "Key": op.key });
                if let Some(v) = op.value {
                    kv["Value"] = json!(base64::engine::general_purpose::STANDARD.encode(v));
                }
                if let Some(f) = op.flags {
                    kv["Flags"] = json!(f);
                }
                if let Some(i) = op.index {
                    kv["Index"] = json!(i);
                }
                if let Some(s) = op.session {
                    kv["Session"] = json!(s);
                }
                json!({ "KV": kv })
            })
            .collect();
        let c = self.client.clone();
        run(async move { txn_results(&c.txn(&Value::Array(body)).await?) }).await
    }

    /// The leader's address (`""` when there is none).
    pub async fn status_leader(&self) -> FfiResult<String> {
        let c = self.client.clone();
        run(async move { Ok(c.status_leader().await?) }).await
    }

    /// The voting servers.
    pub async fn status_peers(&self) -> FfiResult<Vec<String>> {
        let c = self.client.clone();
        run(async move { Ok(c.status_peers().await?) }).await
    }

    /// Service names and their tags.
    pub async fn catalog_services(&self, consistency: String) -> FfiResult<HashMap<String, Vec<String>>> {
        let q = query(&consistency, None, None)?;
        let c = self.client.clone();
        run(async move { Ok(c.catalog_services(&q).await?.1.into_iter().collect()) }).await
    }

    /// The catalog's nodes.
    pub async fn catalog_nodes(&self, consistency: String) -> FfiResult<Vec<FfiNode>> {
        let q = query(&consistency, None, None)?;
        let c = self.client.clone();
        run(async move { Ok(c.catalog_nodes(&q).await?.1.iter().map(Into::into).collect()) }).await
    }

    /// Instances of a service with their nodes and checks.
    pub async fn health_service(
        &self,
        name: String,
        passing: bool,
        tag: Option<String>,
        consistency: String,
    ) -> FfiResult<Vec<FfiServiceEntry>> {
        let q = query(&consistency, None, None)?;
        let c = self.client.clone();
        let f = HealthFilter { passing, tag };
        run(async move { Ok(c.health_service(&name, &f, &q).await?.1.iter().map(Into::into).collect()) }).await
    }

    /// The checks of a service.
    pub async fn health_checks(&self, name: String) -> FfiResult<Vec<FfiHealthCheck>> {
        let c = self.client.clone();
        run(async move {
            Ok(c.health_checks(&name, &QueryOptions::default()).await?.1.iter().map(Into::into).collect())
        })
        .await
    }

    /// The checks in `state` (`any`, `passing`, `warning`, `critical`).
    pub async fn health_state(&self, state: String) -> FfiResult<Vec<FfiHealthCheck>> {
        let c = self.client.clone();
        run(async move {
            Ok(c.health_state(&state, &QueryOptions::default()).await?.1.iter().map(Into::into).collect())
        })
        .await
    }

    /// `/v1/agent/self` as JSON text.
    pub async fn agent_self(&self) -> FfiResult<String> {
        let c = self.client.clone();
        run(async move { Ok(c.agent_self().await?.to_string()) }).await
    }

    /// Registers a service with the agent (no keep-alive; see `register`).
    pub async fn service_register(&self, spec: FfiRegistrationSpec) -> FfiResult<()> {
        let reg = registration(spec)?;
        let c = self.client.clone();
        run(async move { Ok(c.service_register(&reg).await?) }).await
    }

    /// Deregisters a service from the agent.
    pub async fn service_deregister(&self, service_id: String) -> FfiResult<()> {
        let c = self.client.clone();
        run(async move { Ok(c.service_deregister(&service_id).await?) }).await
    }

    /// The IDs of the services registered on this agent.
    pub async fn agent_service_ids(&self) -> FfiResult<Vec<String>> {
        let c = self.client.clone();
        run(async move { Ok(c.agent_services().await?.into_keys().collect()) }).await
    }

    /// Reports a TTL check's status (`pass`, `warn`, `fail`).
    pub async fn check_update_ttl(&self, check_id: String, status: String, note: Option<String>) -> FfiResult<()> {
        let c = self.client.clone();
        run(async move { Ok(c.check_update_ttl(&check_id, &status, note.as_deref()).await?) }).await
    }

    /// Members of the agent's gossip pool.
    pub async fn agent_members(&self, wan: bool) -> FfiResult<Vec<FfiMember>> {
        let c = self.client.clone();
        run(async move { Ok(c.agent_members(wan).await?.iter().map(Into::into).collect()) }).await
    }

    /// Asks the agent to join the pool of the agent at `address`.
    pub async fn agent_join(&self, address: String, wan: bool) -> FfiResult<()> {
        let c = self.client.clone();
        run(async move { Ok(c.agent_join(&address, wan).await?) }).await
    }

    /// Asks the agent to leave its pool gracefully and stop.
    pub async fn agent_leave(&self) -> FfiResult<()> {
        let c = self.client.clone();
        run(async move { Ok(c.agent_leave().await?) }).await
    }

    /// Marks a failed member as left (`prune`: forget it).
    pub async fn agent_force_leave(&self, node: String, prune: bool) -> FfiResult<()> {
        let c = self.client.clone();
        run(async move { Ok(c.agent_force_leave(&node, prune).await?) }).await
    }

    /// Fires a user event.
    pub async fn event_fire(
        &self,
        name: String,
        payload: Vec<u8>,
        node: Option<String>,
        service: Option<String>,
        tag: Option<String>,
    ) -> FfiResult<FfiUserEvent> {
        let c = self.client.clone();
        let filter = EventFilter { node, service, tag };
        run(async move { Ok((&c.event_fire(&name, Bytes::from(payload), &filter).await?).into()) }).await
    }

    /// The agent's recent user events, oldest first.
    pub async fn event_list(&self, name: Option<String>) -> FfiResult<Vec<FfiUserEvent>> {
        let c = self.client.clone();
        run(async move {
            Ok(c.event_list(name.as_deref(), &QueryOptions::default()).await?.1.iter().map(Into::into).collect())
        })
        .await
    }

    /// Creates a session; answers its ID. `behavior` is `release` or `delete`.
    pub async fn session_create(
        &self,
        name: String,
        ttl_secs: Option<f64>,
        behavior: String,
        lock_delay_secs: Option<f64>,
    ) -> FfiResult<String> {
        if behavior != "release" && behavior != "delete" {
            return Err(invalid("behavior", "use release or delete"));
        }
        let mut body = json!({ "Name": name, "Behavior": behavior });
        if let Some(t) = opt_secs("ttl", ttl_secs)? {
            body["TTL"] = json!(go_secs(t.as_secs_f64()));
        }
        if let Some(d) = opt_secs("lock_delay", lock_delay_secs)? {
            body["LockDelay"] = json!(go_secs(d.as_secs_f64()));
        }
        let c = self.client.clone();
        run(async move { Ok(c.session_create(&body).await?) }).await
    }

    /// Destroys a session.
    pub async fn session_destroy(&self, session_id: String) -> FfiResult<()> {
        let c = self.client.clone();
        run(async move { Ok(c.session_destroy(&session_id).await?) }).await
    }

    /// Renews a session.
    pub async fn session_renew(&self, session_id: String) -> FfiResult<()> {
        let c = self.client.clone();
        run(async move { Ok(c.session_renew(&session_id).await?) }).await
    }

    /// Starts a watch: `kind` is `key`, `key_prefix`, `service`, `checks`, `services`, `nodes`
    /// or `events` (`target`: the event name, `""` for every event).
    pub fn watch(
        &self,
        kind: String,
        target: String,
        passing: bool,
        tag: Option<String>,
        wait_secs: f64,
        consistency: String,
    ) -> FfiResult<Arc<FfiWatch>> {
        let spec = match kind.as_str() {
            "key" => WatchSpec::Key(target.clone()),
            "key_prefix" => WatchSpec::KeyPrefix(target.clone()),
            "service" => WatchSpec::Service { name: target.clone(), passing_only: passing, tag },
            "checks" => WatchSpec::Checks { service: target.clone() },
            "services" => WatchSpec::Services,
            "nodes" => WatchSpec::Nodes,
            "events" => WatchSpec::Events { name: Some(target.clone()).filter(|t| !t.is_empty()) },
            other => return Err(invalid("kind", format!("unknown watch kind {other:?}"))),
        };
        if matches!(kind.as_str(), "key" | "service" | "checks") && target.is_empty() {
            return Err(invalid(if kind == "key" { "key" } else { "name" }, "must not be empty"));
        }
        let opts = WatchOptions {
            wait: secs("wait", wait_secs)?,
            consistency: crate::convert::consistency(&consistency)?,
            ..WatchOptions::default()
        };
        entered(|| Ok(Arc::new(FfiWatch::new(self.client.watch(spec, opts)))))
    }

    /// Starts tracking a service's passing instances.
    pub fn discover(&self, service: String, tag: Option<String>) -> FfiResult<Arc<FfiDiscovery>> {
        entered(|| Ok(Arc::new(FfiDiscovery::new(Discovery::start(&self.client, &service, tag.as_deref())?))))
    }

    /// Acquires a lock on `key` (a session with `ttl_secs`, renewed in the background), waiting
    /// while another session holds it (at most `wait_secs`, then `TIMEOUT`).
    pub async fn lock(
        &self,
        key: String,
        value: Vec<u8>,
        ttl_secs: f64,
        lock_delay_secs: Option<f64>,
        wait_secs: Option<f64>,
    ) -> FfiResult<Arc<FfiLock>> {
        let opts = LockOptions {
            value: Bytes::from(value),
            ttl: secs("ttl", ttl_secs)?,
            lock_delay: opt_secs("lock_delay", lock_delay_secs)?,
            wait: opt_secs("wait", wait_secs)?,
            ..LockOptions::default()
        };
        let c = self.client.clone();
        run(async move { Ok(Arc::new(FfiLock::new(Lock::acquire(&c, &key, opts).await?))) }).await
    }

    /// Starts campaigning for leadership of `key` on the SDK runtime.
    pub fn elect(&self, key: String, value: Vec<u8>, ttl_secs: f64) -> FfiResult<Arc<FfiElection>> {
        let opts = LockOptions { value: Bytes::from(value), ttl: secs("ttl", ttl_secs)?, ..LockOptions::default() };
        entered(|| Ok(Arc::new(FfiElection::new(LeaderElection::start(&self.client, &key, opts)?))))
    }

    /// Registers a service and keeps its TTL checks passing until closed.
    pub async fn register(&self, spec: FfiRegistrationSpec) -> FfiResult<Arc<FfiRegistration>> {
        let reg = registration(spec)?;
        let c = self.client.clone();
        run(async move { Ok(Arc::new(FfiRegistration::new(Registration::start(&c, reg).await?))) }).await
    }
}
