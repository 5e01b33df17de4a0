//! `NativeClient`: one agent's HTTP API. Every method answers through its trailing callback
//! (see [`crate::call`]); argument types were already checked by `index.js`, values are checked
//! here or by the SDK and come back as `INVALID_ARGUMENT`.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use consul_sdk::{
    Client, ClientConfig, Discovery, Error, EventFilter, HealthFilter, LeaderElection, Lock, LockOptions, PutOptions,
    QueryOptions, Registration, WatchOptions, WatchSpec,
};
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;

use crate::call::{js_err, spawn, spawn_weak, Callback, Result};
use crate::convert::{
    consistency, millis, opt_millis, whole, JsHealthCheck, JsKvPair, JsMember, JsNode, JsRegistration, JsService,
    JsServiceEntry, JsUserEvent,
};
use crate::handles::{NativeDiscovery, NativeElection, NativeLock, NativeRegistration, NativeWatch};

/// Where the client connects.
#[napi(object)]
pub struct ClientOptions {
    pub address: Option<String>,
    pub token: Option<String>,
    /// A file holding the ACL token (beats `token`).
    pub token_file: Option<String>,
    pub datacenter: Option<String>,
    pub timeout_ms: Option<f64>,
    /// PEM file of the CAs to trust (default `CONSUL_CACERT`).
    pub ca_file: Option<String>,
    /// Directory of PEM CA files (default `CONSUL_CAPATH`).
    pub ca_path: Option<String>,
    /// PEM client certificate (default `CONSUL_CLIENT_CERT`).
    pub client_cert: Option<String>,
    /// Its private key (default `CONSUL_CLIENT_KEY`).
    pub client_key: Option<String>,
    /// The name the agent's certificate must carry (default `CONSUL_TLS_SERVER_NAME`).
    pub tls_server_name: Option<String>,
    /// Accept any agent certificate (default: `CONSUL_HTTP_SSL_VERIFY=false`).
    pub insecure_skip_verify: Option<bool>,
    /// Whether a bare `host:port` is HTTPS (default `CONSUL_HTTP_SSL`).
    pub https: Option<bool>,
}

/// KV write options.
#[napi(object)]
pub struct PutOpts {
    pub cas: Option<f64>,
    pub flags: Option<f64>,
    pub acquire: Option<String>,
    pub release: Option<String>,
}

/// Lock options.
#[napi(object)]
pub struct LockOpts {
    pub ttl_ms: f64,
    pub lock_delay_ms: Option<f64>,
    pub wait_ms: Option<f64>,
    /// Whether the pending acquisition may let Node exit (leader elections that were `unref()`'d).
    pub weak: bool,
}

/// Watch options.
#[napi(object)]
pub struct WatchOpts {
    pub wait_ms: Option<f64>,
    pub consistency: Option<String>,
}

fn query(c: &str) -> Result<QueryOptions> {
    Ok(QueryOptions { consistency: consistency(c).map_err(js_err)?, ..QueryOptions::default() })
}

/// A connection to one agent's HTTP API.
#[napi]
pub struct NativeClient {
    client: Client,
}

#[napi]
impl NativeClient {
    /// A client for `opts.address` (default `CONSUL_HTTP_ADDR`, else `127.0.0.1:8500`).
    #[napi(constructor, catch_unwind)]
    pub fn new(opts: ClientOptions) -> Result<Self> {
        let mut config = ClientConfig::default();
        if let Some(a) = opts.address {
            config.address = a;
        }
        // The SDK resolves tokenFile > token > CONSUL_HTTP_TOKEN_FILE > CONSUL_HTTP_TOKEN.
        config.token = opts.token;
        config.token_file = opts.token_file;
        config.datacenter = opts.datacenter;
        // TLS options left unset fall back to Consul's variables in the SDK.
        config.ca_file = opts.ca_file;
        config.ca_path = opts.ca_path;
        config.client_cert = opts.client_cert;
        config.client_key = opts.client_key;
        config.tls_server_name = opts.tls_server_name;
        config.insecure_skip_verify = opts.insecure_skip_verify.unwrap_or(false);
        config.https = opts.https;
        if let Some(t) = opts.timeout_ms {
            config.timeout = millis("timeoutMs", t).map_err(js_err)?;
            if config.timeout.is_zero() {
                return Err(js_err(Error::invalid("timeoutMs", "must be positive")));
            }
        }
        Ok(NativeClient { client: Client::new(config).map_err(js_err)? })
    }

    /// The agent's base URL.
    #[napi(getter)]
    pub fn address(&self) -> String {
        self.client.address().to_string()
    }

    // ---- KV ----

    #[napi]
    pub fn kv_get(&self, key: String, consistency: String, cb: Callback<'_>) -> Result<()> {
        let (c, q) = (self.client.clone(), query(&consistency)?);
        spawn(cb, async move { Ok(c.kv_get(&key, &q).await?.1.map(JsKvPair::from)) })
    }

    #[napi]
    pub fn kv_list(&self, prefix: String, consistency: String, cb: Callback<'_>) -> Result<()> {
        let (c, q) = (self.client.clone(), query(&consistency)?);
        spawn(
            cb,
            async move { Ok(c.kv_list(&prefix, &q).await?.1.into_iter().map(JsKvPair::from).collect::<Vec<_>>()) },
        )
    }

    #[napi]
    pub fn kv_keys(
        &self,
        prefix: String,
        separator: Option<String>,
        consistency: String,
        cb: Callback<'_>,
    ) -> Result<()> {
        let (c, q) = (self.client.clone(), query(&consistency)?);
        spawn(cb, async move { Ok(c.kv_keys(&prefix, separator.as_deref(), &q).await?.1) })
    }

    #[napi]
    pub fn kv_put(&self, key: String, value: Buffer, opts: PutOpts, cb: Callback<'_>) -> Result<()> {
        let o = PutOptions {
            cas: whole("cas", opts.cas).map_err(js_err)?,
            flags: whole("flags", opts.flags).map_err(js_err)?,
            acquire: opts.acquire,
            release: opts.release,
        };
        // Copied here, on the JS thread: the JS buffer must not be touched from another thread.
        let value = Bytes::from(value.to_vec());
        let c = self.client.clone();
        spawn(cb, async move { c.kv_put(&key, value, &o).await })
    }

    #[napi]
    pub fn kv_delete(&self, key: String, recurse: bool, cas: Option<f64>, cb: Callback<'_>) -> Result<()> {
        let cas = whole("cas", cas).map_err(js_err)?;
        let c = self.client.clone();
        spawn(cb, async move { c.kv_delete(&key, recurse, cas).await })
    }

    /// `/v1/txn` with Consul's operation list as JSON text; answers JSON text.
    #[napi]
    pub fn txn(&self, ops_json: String, cb: Callback<'_>) -> Result<()> {
        let ops: serde_json::Value = serde_json::from_str(&ops_json).map_err(|e| js_err(Error::invalid("ops", e)))?;
        let c = self.client.clone();
        spawn(cb, async move { Ok(c.txn(&ops).await?.to_string()) })
    }

    // ---- status ----

    #[napi]
    pub fn status_leader(&self, cb: Callback<'_>) -> Result<()> {
        let c = self.client.clone();
        spawn(cb, async move { c.status_leader().await })
    }

    #[napi]
    pub fn status_peers(&self, cb: Callback<'_>) -> Result<()> {
        let c = self.client.clone();
        spawn(cb, async move { c.status_peers().await })
    }

    // ---- catalog and health ----

    #[napi]
    pub fn catalog_services(&self, consistency: String, cb: Callback<'_>) -> Result<()> {
        let (c, q) = (self.client.clone(), query(&consistency)?);
        spawn(cb, async move { Ok(c.catalog_services(&q).await?.1.into_iter().collect::<HashMap<_, _>>()) })
    }

    #[napi]
    pub fn catalog_nodes(&self, consistency: String, cb: Callback<'_>) -> Result<()> {
        let (c, q) = (self.client.clone(), query(&consistency)?);
        spawn(cb, async move { Ok(c.catalog_nodes(&q).await?.1.into_iter().map(JsNode::from).collect::<Vec<_>>()) })
    }

    /// `/v1/catalog/register` with Consul's JSON body as text.
    #[napi]
    pub fn catalog_register(&self, registration_json: String, cb: Callback<'_>) -> Result<()> {
        let v: serde_json::Value =
            serde_json::from_str(&registration_json).map_err(|e| js_err(Error::invalid("registration", e)))?;
        let c = self.client.clone();
        spawn(cb, async move { c.catalog_register(&v).await })
    }

    #[napi]
    pub fn health_service(
        &self,
        name: String,
        passing: bool,
        tag: Option<String>,
        consistency: String,
        cb: Callback<'_>,
    ) -> Result<()> {
        let (c, q) = (self.client.clone(), query(&consistency)?);
        let f = HealthFilter { passing, tag };
        spawn(cb, async move {
            Ok(c.health_service(&name, &f, &q).await?.1.into_iter().map(JsServiceEntry::from).collect::<Vec<_>>())
        })
    }

    #[napi]
    pub fn health_checks(&self, name: String, cb: Callback<'_>) -> Result<()> {
        let c = self.client.clone();
        spawn(cb, async move {
            let q = QueryOptions::default();
            Ok(c.health_checks(&name, &q).await?.1.into_iter().map(JsHealthCheck::from).collect::<Vec<_>>())
        })
    }

    #[napi]
    pub fn health_state(&self, state: String, cb: Callback<'_>) -> Result<()> {
        let c = self.client.clone();
        spawn(cb, async move {
            let q = QueryOptions::default();
            Ok(c.health_state(&state, &q).await?.1.into_iter().map(JsHealthCheck::from).collect::<Vec<_>>())
        })
    }

    // ---- agent ----

    /// `/v1/agent/self` as JSON text.
    #[napi]
    pub fn agent_self(&self, cb: Callback<'_>) -> Result<()> {
        let c = self.client.clone();
        spawn(cb, async move { Ok(c.agent_self().await?.to_string()) })
    }

    #[napi]
    pub fn agent_services(&self, cb: Callback<'_>) -> Result<()> {
        let c = self.client.clone();
        spawn(cb, async move {
            Ok(c.agent_services().await?.into_iter().map(|(k, v)| (k, JsService::from(v))).collect::<HashMap<_, _>>())
        })
    }

    #[napi]
    pub fn agent_checks(&self, cb: Callback<'_>) -> Result<()> {
        let c = self.client.clone();
        spawn(cb, async move {
            Ok(c.agent_checks().await?.into_iter().map(|(k, v)| (k, JsHealthCheck::from(v))).collect::<HashMap<_, _>>())
        })
    }

    #[napi]
    pub fn agent_members(&self, wan: bool, cb: Callback<'_>) -> Result<()> {
        let c = self.client.clone();
        spawn(cb, async move { Ok(c.agent_members(wan).await?.into_iter().map(JsMember::from).collect::<Vec<_>>()) })
    }

    #[napi]
    pub fn agent_join(&self, address: String, wan: bool, cb: Callback<'_>) -> Result<()> {
        let c = self.client.clone();
        spawn(cb, async move { c.agent_join(&address, wan).await })
    }

    #[napi]
    pub fn agent_leave(&self, cb: Callback<'_>) -> Result<()> {
        let c = self.client.clone();
        spawn(cb, async move { c.agent_leave().await })
    }

    #[napi]
    pub fn agent_force_leave(&self, node: String, prune: bool, cb: Callback<'_>) -> Result<()> {
        let c = self.client.clone();
        spawn(cb, async move { c.agent_force_leave(&node, prune).await })
    }

    #[napi]
    pub fn service_register(&self, reg: JsRegistration, cb: Callback<'_>) -> Result<()> {
        let reg = reg.into_sdk().map_err(js_err)?;
        let c = self.client.clone();
        spawn(cb, async move { c.service_register(&reg).await })
    }

    #[napi]
    pub fn service_deregister(&self, service_id: String, cb: Callback<'_>) -> Result<()> {
        let c = self.client.clone();
        spawn(cb, async move { c.service_deregister(&service_id).await })
    }

    /// Reports a TTL check's status (`pass`, `warn`, `fail`).
    #[napi]
    pub fn check_update(&self, check_id: String, status: String, note: Option<String>, cb: Callback<'_>) -> Result<()> {
        let c = self.client.clone();
        spawn(cb, async move { c.check_update_ttl(&check_id, &status, note.as_deref()).await })
    }

    // ---- sessions ----

    /// Creates a session from Consul's JSON body; answers its ID.
    #[napi]
    pub fn session_create(&self, body_json: String, cb: Callback<'_>) -> Result<()> {
        let v: serde_json::Value =
            serde_json::from_str(&body_json).map_err(|e| js_err(Error::invalid("session", e)))?;
        let c = self.client.clone();
        spawn(cb, async move { c.session_create(&v).await })
    }

    #[napi]
    pub fn session_destroy(&self, id: String, cb: Callback<'_>) -> Result<()> {
        let c = self.client.clone();
        spawn(cb, async move { c.session_destroy(&id).await })
    }

    #[napi]
    pub fn session_renew(&self, id: String, cb: Callback<'_>) -> Result<()> {
        let c = self.client.clone();
        spawn(cb, async move { c.session_renew(&id).await })
    }

    // ---- events ----

    #[napi]
    pub fn event_fire(
        &self,
        name: String,
        payload: Buffer,
        node: Option<String>,
        service: Option<String>,
        tag: Option<String>,
        cb: Callback<'_>,
    ) -> Result<()> {
        let payload = Bytes::from(payload.to_vec());
        let filter = EventFilter { node, service, tag };
        let c = self.client.clone();
        spawn(cb, async move { Ok(JsUserEvent::from(c.event_fire(&name, payload, &filter).await?)) })
    }

    #[napi]
    pub fn event_list(&self, name: Option<String>, cb: Callback<'_>) -> Result<()> {
        let c = self.client.clone();
        spawn(cb, async move {
            let q = QueryOptions::default();
            Ok(c.event_list(name.as_deref(), &q).await?.1.into_iter().map(JsUserEvent::from).collect::<Vec<_>>())
        })
    }

    // ---- watches, discovery, locks, registration ----

    /// Starts a watch: `kind` is `key`, `keyPrefix`, `service`, `checks`, `services`, `nodes` or
    /// `events`.
    #[napi(catch_unwind)]
    pub fn watch(
        &self,
        kind: String,
        target: String,
        passing: bool,
        tag: Option<String>,
        opts: WatchOpts,
    ) -> Result<NativeWatch> {
        let named = |what: &str| {
            if target.is_empty() {
                Err(js_err(Error::invalid(what, "must not be empty")))
            } else {
                Ok(target.clone())
            }
        };
        let spec = match kind.as_str() {
            "key" => WatchSpec::Key(named("key")?),
            "keyPrefix" => WatchSpec::KeyPrefix(target.clone()),
            "service" => WatchSpec::Service { name: named("name")?, passing_only: passing, tag },
            "checks" => WatchSpec::Checks { service: named("service")? },
            "services" => WatchSpec::Services,
            "nodes" => WatchSpec::Nodes,
            "events" => WatchSpec::Events { name: Some(target.clone()).filter(|t| !t.is_empty()) },
            other => return Err(js_err(Error::invalid("kind", format!("unknown watch kind {other:?}")))),
        };
        let mut o = WatchOptions::default();
        if let Some(w) = opts.wait_ms {
            o.wait = millis("waitMs", w).map_err(js_err)?;
            if o.wait.is_zero() {
                return Err(js_err(Error::invalid("waitMs", "must be positive")));
            }
        }
        if let Some(c) = opts.consistency {
            o.consistency = consistency(&c).map_err(js_err)?;
        }
        let rt = consul_sdk::runtime::runtime().map_err(js_err)?;
        let _enter = rt.enter();
        Ok(NativeWatch::new(self.client.watch(spec, o)))
    }

    /// Starts tracking a service's passing instances.
    #[napi(catch_unwind)]
    pub fn discover(&self, service: String, tag: Option<String>) -> Result<NativeDiscovery> {
        let rt = consul_sdk::runtime::runtime().map_err(js_err)?;
        let _enter = rt.enter();
        let d = Discovery::start(&self.client, &service, tag.as_deref()).map_err(js_err)?;
        Ok(NativeDiscovery::new(d))
    }

    /// Starts campaigning for leadership of `key` (the SDK's election, on the SDK runtime).
    #[napi(catch_unwind)]
    pub fn elect(&self, key: String, value: Buffer, ttl_ms: f64) -> Result<NativeElection> {
        let o = LockOptions {
            value: Bytes::from(value.to_vec()),
            ttl: millis("ttl", ttl_ms).map_err(js_err)?,
            ..LockOptions::default()
        };
        let rt = consul_sdk::runtime::runtime().map_err(js_err)?;
        let _enter = rt.enter();
        Ok(NativeElection::new(LeaderElection::start(&self.client, &key, o).map_err(js_err)?))
    }

    /// Acquires a lock on `key` (a session renewed in the background); answers a `NativeLock`.
    #[napi]
    pub fn lock(&self, key: String, value: Buffer, opts: LockOpts, cb: Callback<'_>) -> Result<()> {
        let o = LockOptions {
            value: Bytes::from(value.to_vec()),
            ttl: millis("ttl", opts.ttl_ms).map_err(js_err)?,
            lock_delay: opt_millis("lockDelay", opts.lock_delay_ms).map_err(js_err)?,
            wait: opt_millis("waitMs", opts.wait_ms).map_err(js_err)?,
            ..LockOptions::default()
        };
        let c = self.client.clone();
        let acquire = async move { Ok(NativeLock::new(Arc::new(Lock::acquire(&c, &key, o).await?))) };
        if opts.weak {
            spawn_weak(cb, acquire)
        } else {
            spawn(cb, acquire)
        }
    }

    /// Registers a service and keeps its TTL checks passing until closed; answers a
    /// `NativeRegistration`.
    #[napi]
    pub fn register(&self, reg: JsRegistration, cb: Callback<'_>) -> Result<()> {
        let reg = reg.into_sdk().map_err(js_err)?;
        let c = self.client.clone();
        spawn(cb, async move { Ok(NativeRegistration::new(Registration::start(&c, reg).await?)) })
    }
}
