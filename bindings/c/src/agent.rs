//! `consul_agent`: a full consul-rs node inside the calling process (the SDK's
//! [`consul_sdk::EmbeddedAgent`], on its own runtime), configured with Consul's config-file JSON.
//!
//! The configuration is read by the same code as the `consul-rs` binary's config files
//! ([`consul_core::config_file::Settings`]), so the keys, defaults and error messages are the
//! same; only the defaults an embedded node needs differ (see [`agent_config`]).

use std::ffi::{c_char, CString};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use consul_core::config::{AgentConfig, Ports};
use consul_core::config_file::Settings;
use consul_sdk::{Client, ClientConfig, EmbeddedAgent};
use serde_json::Value;

use crate::client::{consul_client, new_client_handle};
use crate::error::{consul_error, consul_status, CError, CResult};
use crate::ffi::{self, Handle};

/// Reads an embedded agent's configuration: Consul's config-file JSON keys (`node_name`,
/// `datacenter`, `server`, `bootstrap_expect`, `data_dir`, `bind_addr`, `client_addr`,
/// `advertise_addr`, `ports {http, dns, server, serf_lan}`, `retry_join`, `retry_interval`,
/// `performance {raft_multiplier}`, `services`, `checks`, `dns_config`, `limits`, …; each key
/// honoured, accepted without effect or refused exactly as by the binary — the README's
/// "Configuration keys" table), plus one key of its own:
///
/// - `"dev"` (bool): an in-memory server that elects itself at once, like `consul agent -dev`.
///   Default: true unless `data_dir` is given or `server` is false. Without `dev`, `server`
///   defaults to false as in Consul (a client agent, which joins servers through `retry_join`
///   or `consul_agent_join`), and `data_dir` is required.
///
/// Defaults that differ from the binary's, because a library shares its host's machine: every
/// port 0 (each listener picks a free port; read them back with `consul_agent_http_addr`, …),
/// `bind_addr` and `client_addr` 127.0.0.1, `retry_interval` 1 s. `log_level`, `log_json` and
/// `pid_file` are accepted and ignored: the library writes no logs and no files of its own.
///
/// `acl` takes Consul's `acl { … }` keys: `{"enabled": true, "default_policy": "deny",
/// "down_policy", "token_ttl", "policy_ttl", "role_ttl", "enable_key_list_policy",
/// "enable_token_persistence", "tokens": {"initial_management", "agent", "default",
/// "agent_recovery", "replication", "config_file_service_registration", "dns"}}`. With ACLs on,
/// clients of the node pass a token (`consul_agent_client` then `consul_client_with_token`).
///
/// `tls` takes Consul's `tls { defaults { ca_file, cert_file, key_file, verify_incoming, … },
/// https { … }, internal_rpc { … } }`, and `ports.https` an HTTPS port (0: any free one);
/// `"ports": {"http": -1}` makes the node HTTPS-only: `consul_agent_http_addr` is then the
/// HTTPS address, and `consul_agent_client` speaks HTTPS with the node's own CA and certificate.
pub(crate) fn agent_config(text: Option<&str>) -> CResult<AgentConfig> {
    let mut v = match text {
        None => Value::Object(Default::default()),
        Some(t) if t.trim().is_empty() => Value::Object(Default::default()),
        Some(t) => ffi::parse_json(t, "config_json")?,
    };
    let obj = v.as_object_mut().ok_or_else(|| CError::invalid("config_json", "must be a JSON object"))?;
    let dev = match obj.remove("dev") {
        // A client agent (`"server": false`) is never a dev server: it needs a data_dir.
        None => !obj.contains_key("data_dir") && obj.get("server") != Some(&Value::Bool(false)),
        Some(Value::Bool(b)) => b,
        Some(other) => return Err(CError::invalid("config_json", format!("dev: expected true or false, got {other}"))),
    };
    let mut s = Settings::new(dev);
    s.agent.ports = Ports::any();
    // Like every other port of an embedded node, the WAN pool's is any free one unless
    // `ports.serf_wan` names it: several nodes share one host.
    s.agent.wan.port = Some(0);
    s.agent.bind_addr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    s.agent.client_addr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    s.agent.retry_interval = Duration::from_secs(1);
    s.apply_value(&v, "config_json").map_err(|e| CError::invalid("config_json", e))?;
    s.finish().map_err(|e| CError::invalid("config_json", e))?;
    s.agent.validate().map_err(|e| CError::invalid("config_json", e))?;
    Ok(s.agent)
}

/// A node running in this process. Thread-safe: every function may be called from any thread;
/// calls that talk to the node (join, members, leave) run one at a time. After
/// `consul_agent_shutdown` (or `leave`) the handle stays valid until freed; calls then answer
/// `CONSUL_E_SHUTDOWN`.
pub struct consul_agent {
    _opaque: [u8; 0],
}

/// The node a `consul_agent` runs; `None` once shut down. Shared with [`EMBEDDED`].
type AgentSlot = Mutex<Option<EmbeddedAgent>>;

/// Every agent `consul_agent_start` made in this process, for [`local_client`]. Weak: a freed
/// handle drops out by itself.
static EMBEDDED: Mutex<Vec<Weak<AgentSlot>>> = Mutex::new(Vec::new());

/// The client `consul_register` uses when given none, in the order the Python and Node packages
/// use too: the agent embedded in this process (the one started by `consul_agent_start` that
/// still runs), else `$CONSUL_HTTP_ADDR`, else `127.0.0.1:8500`. With several running, which one
/// is meant is unclear: `CONSUL_E_INVALID_ARGUMENT`, asking for a client.
pub(crate) fn local_client() -> CResult<Client> {
    // The weak list is copied out first: each agent's lock may be held by a long call (join), and
    // nothing may wait on one while holding the list.
    let slots: Vec<Arc<AgentSlot>> = {
        let mut all = EMBEDDED.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|w| w.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).collect()
    };
    let mut running = Vec::new();
    for slot in &slots {
        let guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = guard.as_ref().filter(|a| a.is_running()) {
            running.push(a.client()?);
        }
    }
    match running.len() {
        0 => Ok(Client::new(ClientConfig::default())?),
        1 => Ok(running.remove(0)),
        n => Err(CError::invalid(
            "client",
            format!("{n} embedded agents run in this process: pass the client of the one to register with"),
        )),
    }
}

/// What a `consul_agent` holds.
#[derive(Debug)]
pub(crate) struct AgentC {
    agent: Arc<AgentSlot>,
    http_addr: CString,
    serf_addr: CString,
    dns_addr: Option<CString>,
    node_name: CString,
}

impl Handle for consul_agent {
    type Target = AgentC;
    const MAGIC: u64 = 0xC0_5E_E7_70_0E_77_00_50;
    const NAME: &'static str = "consul_agent";
}

impl AgentC {
    fn lock(&self) -> MutexGuard<'_, Option<EmbeddedAgent>> {
        self.agent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the running agent.
    fn with<T>(&self, f: impl FnOnce(&mut EmbeddedAgent) -> consul_sdk::Result<T>) -> CResult<T> {
        let mut guard = self.lock();
        let agent =
            guard.as_mut().ok_or_else(|| CError::new(consul_status::CONSUL_E_SHUTDOWN, "the agent is shut down"))?;
        Ok(f(agent)?)
    }

    fn shutdown(&self) -> CResult<()> {
        // Taken out first, so other threads see "shut down" at once and never wait on the stop.
        let taken = self.lock().take();
        if let Some(mut a) = taken {
            a.shutdown()?;
        }
        Ok(())
    }
}

unsafe fn agent<'a>(a: *const consul_agent) -> CResult<&'a AgentC> {
    // SAFETY: forwarded contract.
    unsafe { ffi::borrow::<consul_agent>(a, "agent") }
}

/// Starts a node from Consul-style JSON configuration (NULL or `"{}"`: an in-memory dev server
/// on free 127.0.0.1 ports; see the README for the keys) and returns once its listeners are up
/// (a dev server has elected itself by then, or does within milliseconds: use
/// `consul_agent_wait_for_leader` to be sure). A bad key or value is `CONSUL_E_INVALID_ARGUMENT`
/// naming it.
///
/// # Safety
/// `config_json` is NULL or NUL-terminated; `out` is writable; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_agent_start(
    config_json: *const c_char,
    out: *mut *mut consul_agent,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let text = unsafe { ffi::opt_str_arg(config_json, "config_json") }?;
        ffi::need_out(out, "out")?;
        let config = agent_config(text)?;
        let a = EmbeddedAgent::start(config)?;
        let http_addr = ffi::cstring_lossy(a.http_addr().to_string());
        let serf_addr = ffi::cstring_lossy(a.serf_addr().to_string());
        let dns_addr = a.dns_addr().map(|d| ffi::cstring_lossy(d.to_string()));
        let node_name = ffi::cstring_lossy(a.node_name());
        let slot = Arc::new(Mutex::new(Some(a)));
        EMBEDDED.lock().unwrap_or_else(|p| p.into_inner()).push(Arc::downgrade(&slot));
        let handle =
            ffi::into_handle::<consul_agent>(AgentC { agent: slot, http_addr, serf_addr, dns_addr, node_name });
        // SAFETY: checked non-NULL.
        unsafe { ffi::write_out(out, handle) };
        Ok(())
    })
}

/// `host:port` of the HTTP API (borrowed; valid until the agent is freed).
///
/// # Safety
/// `a` is NULL or a live agent.
#[no_mangle]
pub unsafe extern "C" fn consul_agent_http_addr(a: *const consul_agent) -> *const c_char {
    // SAFETY: forwarded contract.
    ffi::catch_or(std::ptr::null(), || unsafe { agent(a) }.map_or(std::ptr::null(), |a| a.http_addr.as_ptr()))
}

/// `host:port` of the serf_lan listener, what other agents join (borrowed).
///
/// # Safety
/// `a` is NULL or a live agent.
#[no_mangle]
pub unsafe extern "C" fn consul_agent_serf_addr(a: *const consul_agent) -> *const c_char {
    // SAFETY: forwarded contract.
    ffi::catch_or(std::ptr::null(), || unsafe { agent(a) }.map_or(std::ptr::null(), |a| a.serf_addr.as_ptr()))
}

/// `host:port` of the DNS listener (borrowed), or NULL when DNS is disabled (`ports.dns = -1`).
///
/// # Safety
/// `a` is NULL or a live agent.
#[no_mangle]
pub unsafe extern "C" fn consul_agent_dns_addr(a: *const consul_agent) -> *const c_char {
    ffi::catch_or(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        unsafe { agent(a) }.ok().and_then(|a| a.dns_addr.as_ref()).map_or(std::ptr::null(), |d| d.as_ptr())
    })
}

/// The node name (borrowed).
///
/// # Safety
/// `a` is NULL or a live agent.
#[no_mangle]
pub unsafe extern "C" fn consul_agent_node_name(a: *const consul_agent) -> *const c_char {
    // SAFETY: forwarded contract.
    ffi::catch_or(std::ptr::null(), || unsafe { agent(a) }.map_or(std::ptr::null(), |a| a.node_name.as_ptr()))
}

/// Whether the agent is running (false after shutdown or leave, and for NULL).
///
/// # Safety
/// `a` is NULL or a live agent.
#[no_mangle]
pub unsafe extern "C" fn consul_agent_is_running(a: *const consul_agent) -> bool {
    ffi::catch_or(false, || {
        // SAFETY: forwarded contract.
        unsafe { agent(a) }.is_ok_and(|a| a.lock().as_ref().is_some_and(|x| x.is_running()))
    })
}

/// A new client for this agent's HTTP API (free with `consul_client_free`). The client does not
/// keep the agent running: after shutdown its calls fail with `CONSUL_E_CONNECTION`. For an
/// HTTPS-only agent (`"ports": {"http": -1, "https": …}`) it speaks HTTPS, trusting the agent's
/// CA and presenting the agent's certificate; of the environment it reads only the ACL token.
///
/// # Safety
/// `a` is a live agent; `out` is writable; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_agent_client(
    a: *const consul_agent,
    out: *mut *mut consul_client,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let a = unsafe { agent(a) }?;
        ffi::need_out(out, "out")?;
        let c = a.with(|x| x.client())?;
        // SAFETY: checked non-NULL.
        unsafe { ffi::write_out(out, new_client_handle(c)) };
        Ok(())
    })
}

/// Waits up to `timeout_ms` until the agent knows a cluster leader (`CONSUL_E_TIMEOUT`
/// otherwise). Other threads may shut the agent down meanwhile (`CONSUL_E_SHUTDOWN`).
///
/// # Safety
/// `a` is a live agent; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_agent_wait_for_leader(
    a: *const consul_agent,
    timeout_ms: u32,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let a = unsafe { agent(a) }?;
        let deadline = Instant::now() + Duration::from_millis(u64::from(timeout_ms));
        // In short slices, so the agent lock is free for a shutdown from another thread.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match a.with(|x| x.wait_for_leader(left.min(Duration::from_millis(100)))) {
                Ok(()) => return Ok(()),
                Err(e) if e.status == consul_status::CONSUL_E_TIMEOUT && !left.is_zero() => {}
                Err(e) if e.status == consul_status::CONSUL_E_TIMEOUT => {
                    return Err(CError::new(e.status, format!("no leader within {timeout_ms} ms")))
                }
                Err(e) => return Err(e),
            }
        }
    })
}

/// Joins the gossip pool of the agent at `address` (`host` or `host:port` of its serf_lan; a
/// server joining servers also joins their Raft cluster, see `bootstrap_expect`).
///
/// # Safety
/// `a` is a live agent; `address` is NUL-terminated; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_agent_join(
    a: *const consul_agent,
    address: *const c_char,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let a = unsafe { agent(a) }?;
        // SAFETY: forwarded contract.
        let addr = unsafe { ffi::str_arg(address, "address") }?;
        if addr.is_empty() {
            return Err(CError::invalid("address", "must not be empty"));
        }
        a.with(|x| x.join(addr))
    })
}

/// Members of the agent's LAN gossip pool, itself included, as `/v1/agent/members` JSON.
///
/// # Safety
/// `a` is a live agent; `out_json` is writable; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_agent_members_json(
    a: *const consul_agent,
    out_json: *mut *mut c_char,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let a = unsafe { agent(a) }?;
        ffi::need_out(out_json, "out_json")?;
        let members = a.with(|x| x.members())?;
        let text = ffi::json_string(&members)?;
        // SAFETY: checked non-NULL.
        unsafe { ffi::write_out(out_json, text) };
        Ok(())
    })
}

/// Leaves the cluster gracefully (other members see it `left`, not `failed`), then shuts the
/// node down. Idempotent after the first success.
///
/// # Safety
/// `a` is a live agent; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_agent_leave(a: *const consul_agent, err: *mut *mut consul_error) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let a = unsafe { agent(a) }?;
        let taken = a.lock().take();
        match taken {
            None => Ok(()),
            Some(mut x) => match x.leave() {
                Ok(()) => Ok(()),
                Err(e) => {
                    // The leave request failed: stop the node anyway, report the failure.
                    let _ = x.shutdown();
                    Err(e.into())
                }
            },
        }
    })
}

/// Stops the node: listeners closed, Raft and gossip stopped, its runtime's threads joined.
/// Idempotent; other members see it as failed (use `consul_agent_leave` to leave cleanly).
///
/// # Safety
/// `a` is a live agent; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_agent_shutdown(a: *const consul_agent, err: *mut *mut consul_error) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        unsafe { agent(a) }?.shutdown()
    })
}

/// Shuts the node down if still running and frees the handle. NULL-safe.
///
/// # Safety
/// `a` is NULL or a live agent that no other thread uses any more.
#[no_mangle]
pub unsafe extern "C" fn consul_agent_free(a: *mut consul_agent) {
    ffi::catch_or((), || {
        // SAFETY: forwarded contract.
        if let Some(a) = unsafe { ffi::take::<consul_agent>(a) } {
            let _ = a.value.shutdown();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_and_consul_keys() {
        let c = agent_config(None).expect("defaults");
        assert!(c.dev && c.bootstrap);
        assert_eq!(c.ports, Ports::any());
        assert_eq!(c.bind_addr, IpAddr::V4(Ipv4Addr::LOCALHOST));

        let c = agent_config(Some(
            r#"{"node_name":"n1","data_dir":"/tmp/x","server":true,"bootstrap_expect":3,"ports":{"http":8600,"dns":-1},
                "retry_join":["127.0.0.1:1"],"performance":{"raft_multiplier":1},"log_level":"debug"}"#,
        ))
        .expect("server config");
        assert!(!c.dev && c.server);
        assert_eq!(c.node_name, "n1");
        // Without `server`, a data_dir means a client agent (Consul's default), which joins.
        let cl = agent_config(Some(r#"{"data_dir":"/tmp/x","retry_join":["127.0.0.1:1"]}"#)).expect("client");
        assert!(!cl.dev && !cl.server);
        let cl = agent_config(Some(r#"{"server":false,"data_dir":"/tmp/x"}"#)).expect("client");
        assert!(!cl.server);
        let e = agent_config(Some(r#"{"server":false}"#)).expect_err("a client needs a data_dir");
        assert!(e.message.contains("data_dir"), "{}", e.message);
        assert_eq!(c.bootstrap_expect, 3);
        assert_eq!(c.ports.http, Some(8600));
        assert!(!c.dns.enabled);
        assert_eq!(c.retry_join, vec!["127.0.0.1:1"]);
    }

    #[test]
    fn errors_name_the_key() {
        let e = agent_config(Some(r#"{"portz":{}}"#)).expect_err("unknown key");
        assert!(e.message.contains("portz"), "{}", e.message);
        let e = agent_config(Some(r#"{"ports":{"http":"x"}}"#)).expect_err("bad value");
        assert!(e.message.contains("ports.http"), "{}", e.message);
        let e = agent_config(Some(r#"{"dev":false}"#)).expect_err("no data_dir");
        assert!(e.message.contains("data_dir"), "{}", e.message);
        assert!(agent_config(Some("[1]")).is_err());
        assert!(agent_config(Some("{")).is_err());
        assert_eq!(agent_config(Some("{")).expect_err("json").status, consul_status::CONSUL_E_INVALID_ARGUMENT);
    }
}
