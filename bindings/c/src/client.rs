//! `consul_client`: KV, transactions, status, catalog and health queries, agent endpoints,
//! sessions and events, all blocking the calling thread until the agent answers.
//!
//! Catalog and health answers are Consul's own JSON (`char *`, freed with
//! `consul_string_free`): a small, stable ABI that any C JSON parser reads.

use std::ffi::c_char;
use std::time::Duration;

use bytes::Bytes;
use consul_sdk::{Client, ClientConfig, EventFilter, HealthFilter};

use crate::error::{consul_error, consul_status, CError, CResult};
use crate::ffi::{self, Handle};
use crate::types::{
    consul_kv_list, consul_kv_pair, consul_put_options, consul_query_options, consul_string_list, put_options,
    query_options, KvListC, KvPairC,
};

/// A connection to one agent's HTTP API. Thread-safe: any number of threads may use one client
/// at once (requests run concurrently). Free it once, after its last use; watches, discoveries,
/// locks and registrations made from it keep working after it is freed.
pub struct consul_client {
    _opaque: [u8; 0],
}

/// What a `consul_client` holds.
#[derive(Debug)]
pub(crate) struct ClientC {
    pub(crate) client: Client,
    address: std::ffi::CString,
}

impl Handle for consul_client {
    type Target = ClientC;
    const MAGIC: u64 = 0xC0_5E_E7_70_0E_77_00_10;
    const NAME: &'static str = "consul_client";
}

/// Borrows a client argument.
///
/// # Safety
/// `c` is NULL or a live `consul_client`.
pub(crate) unsafe fn client<'a>(c: *const consul_client) -> CResult<&'a Client> {
    // SAFETY: forwarded contract.
    unsafe { ffi::borrow::<consul_client>(c, "client") }.map(|c| &c.client)
}

/// Hands a client to C.
pub(crate) fn new_client_handle(c: Client) -> *mut consul_client {
    let address = ffi::cstring_lossy(c.address());
    ffi::into_handle::<consul_client>(ClientC { client: c, address })
}

/// Makes a client for the agent at `address` (`host:port` or `http://host:port`; NULL =
/// `$CONSUL_HTTP_ADDR`, else `127.0.0.1:8500`) with ACL `token`, sent as `X-Consul-Token` on
/// every request (NULL or "" = the file named by `$CONSUL_HTTP_TOKEN_FILE`, else
/// `$CONSUL_HTTP_TOKEN`, if set). Nothing is sent until the first request. A refusal by the
/// agent's ACLs (HTTP 401/403) is `CONSUL_E_PERMISSION_DENIED` with the agent's message.
///
/// # Safety
/// String arguments are NULL or NUL-terminated; `out` is writable; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_client_new(
    address: *const c_char,
    token: *const c_char,
    out: *mut *mut consul_client,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        ffi::need_out(out, "out")?;
        let mut config = ClientConfig::default();
        // SAFETY: forwarded contract.
        if let Some(a) = unsafe { ffi::opt_str_arg(address, "address") }? {
            config.address = a.to_string();
        }
        // SAFETY: forwarded contract.
        if let Some(t) = unsafe { ffi::opt_str_arg(token, "token") }? {
            config.token = Some(t.to_string()).filter(|t| !t.is_empty());
        }
        let c = Client::new(config)?;
        // SAFETY: checked non-NULL above.
        unsafe { ffi::write_out(out, new_client_handle(c)) };
        Ok(())
    })
}

/// Makes a client from JSON: `{"address": "127.0.0.1:8500", "token": "…", "token_file": "/path",
/// "datacenter": "dc1", "timeout_ms": 10000}` (every key optional; unknown keys are an error
/// naming them). The ACL token is `token_file`'s content, else `token`, else
/// `$CONSUL_HTTP_TOKEN_FILE`'s, else `$CONSUL_HTTP_TOKEN`; an unreadable file is
/// `CONSUL_E_INVALID_ARGUMENT` naming it.
///
/// HTTPS, as Consul's client: `"address": "https://host:8501"`, `"ca_file"`, `"ca_path"`,
/// `"client_cert"`, `"client_key"` (for agents with `verify_incoming`), `"tls_server_name"`,
/// `"insecure_skip_verify"` (bool) and `"https"` (bool: a bare `host:port` is HTTPS). Each one
/// left out falls back to `$CONSUL_CACERT`, `$CONSUL_CAPATH`, `$CONSUL_CLIENT_CERT`,
/// `$CONSUL_CLIENT_KEY`, `$CONSUL_TLS_SERVER_NAME`, `$CONSUL_HTTP_SSL_VERIFY=false` and
/// `$CONSUL_HTTP_SSL`. A file that cannot be used is `CONSUL_E_INVALID_ARGUMENT` naming it; an
/// untrusted agent certificate, or a client certificate the agent refuses, makes requests fail
/// with `CONSUL_E_CONNECTION` saying so.
///
/// # Safety
/// `config_json` is NULL or NUL-terminated; `out` is writable; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_client_new_json(
    config_json: *const c_char,
    out: *mut *mut consul_client,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        ffi::need_out(out, "out")?;
        // SAFETY: forwarded contract.
        let text = unsafe { ffi::str_arg(config_json, "config_json") }?;
        let v = ffi::parse_json(text, "config_json")?;
        let obj = v.as_object().ok_or_else(|| CError::invalid("config_json", "must be a JSON object"))?;
        let mut config = ClientConfig::default();
        for (k, v) in obj {
            let s = || v.as_str().map(str::to_string).ok_or_else(|| CError::invalid(k, "must be a string"));
            let b = || v.as_bool().ok_or_else(|| CError::invalid(k, "must be true or false"));
            match k.as_str() {
                "address" => config.address = s()?,
                "token" => config.token = Some(s()?).filter(|t| !t.is_empty()),
                "token_file" => config.token_file = Some(s()?).filter(|t| !t.is_empty()),
                "datacenter" => config.datacenter = Some(s()?),
                "ca_file" => config.ca_file = Some(s()?),
                "ca_path" => config.ca_path = Some(s()?),
                "client_cert" => config.client_cert = Some(s()?),
                "client_key" => config.client_key = Some(s()?),
                "tls_server_name" => config.tls_server_name = Some(s()?),
                "insecure_skip_verify" => config.insecure_skip_verify = b()?,
                "https" => config.https = Some(b()?),
                "timeout_ms" => {
                    let ms = v
                        .as_u64()
                        .filter(|ms| *ms > 0)
                        .ok_or_else(|| CError::invalid("timeout_ms", "must be a positive integer"))?;
                    config.timeout = Duration::from_millis(ms);
                }
                other => return Err(CError::invalid("config_json", format!("unknown key {other:?}"))),
            }
        }
        let c = Client::new(config)?;
        // SAFETY: checked non-NULL above.
        unsafe { ffi::write_out(out, new_client_handle(c)) };
        Ok(())
    })
}

/// The agent's base URL (`http://host:port`): borrowed, valid until the client is freed.
///
/// # Safety
/// `c` is NULL or a live `consul_client`.
#[no_mangle]
pub unsafe extern "C" fn consul_client_address(c: *const consul_client) -> *const c_char {
    ffi::catch_or(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        unsafe { ffi::borrow::<consul_client>(c, "client") }.map_or(std::ptr::null(), |c| c.address.as_ptr())
    })
}

/// Makes `*out`, a client like `c` (same agent, datacenter, timeout and connection pool) that sends
/// ACL `token` instead (NULL or "" = no token): the per-call token override. Free both clients
/// independently.
///
/// # Safety
/// `c` is a live client; `token` is NULL or NUL-terminated; `out` is writable; `err` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn consul_client_with_token(
    c: *const consul_client,
    token: *const c_char,
    out: *mut *mut consul_client,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        ffi::need_out(out, "out")?;
        // SAFETY: forwarded contract.
        let c = unsafe { ffi::borrow::<consul_client>(c, "client") }?;
        // SAFETY: forwarded contract.
        let token = unsafe { ffi::opt_str_arg(token, "token") }?;
        let copy = c.client.with_token(token)?;
        // SAFETY: checked non-NULL above.
        unsafe { ffi::write_out(out, new_client_handle(copy)) };
        Ok(())
    })
}

/// Frees a client. NULL-safe. Requests still running on other threads finish first (the
/// client's connection pool is shared with them).
///
/// # Safety
/// `c` is NULL or a live `consul_client`, not used afterwards by this thread or any other.
#[no_mangle]
pub unsafe extern "C" fn consul_client_free(c: *mut consul_client) {
    // SAFETY: forwarded contract.
    ffi::catch_or((), || drop(unsafe { ffi::take::<consul_client>(c) }))
}

// ---- KV ----

/// Reads one key. `*out` gets the pair (free with `consul_kv_pair_free`), or NULL when the key
/// does not exist (still `CONSUL_OK`). `out_index` (may be NULL) gets the `X-Consul-Index`, for
/// a later blocking read through `options->index`.
///
/// # Safety
/// `c` is a live client; `key` is NUL-terminated; `options` is NULL or readable; `out` is
/// writable; `out_index` and `err` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_kv_get(
    c: *const consul_client,
    key: *const c_char,
    options: *const consul_query_options,
    out: *mut *mut consul_kv_pair,
    out_index: *mut u64,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let key = unsafe { ffi::str_arg(key, "key") }?.to_string();
        // SAFETY: forwarded contract.
        let q = unsafe { query_options(options) }?;
        ffi::need_out(out, "out")?;
        let (meta, pair) = ffi::run(async move { cl.kv_get(&key, &q).await })?;
        let handle = pair.map_or(std::ptr::null_mut(), |p| ffi::into_handle::<consul_kv_pair>(KvPairC::from_pair(p)));
        // SAFETY: `out` checked non-NULL; `out_index` NULL or writable.
        unsafe {
            ffi::write_out(out, handle);
            ffi::write_opt(out_index, meta.index);
        }
        Ok(())
    })
}

/// Reads every key under `prefix` (`""` = all). `*out` gets a list (possibly empty) to free
/// with `consul_kv_list_free`.
///
/// # Safety
/// As for `consul_kv_get`.
#[no_mangle]
pub unsafe extern "C" fn consul_kv_get_prefix(
    c: *const consul_client,
    prefix: *const c_char,
    options: *const consul_query_options,
    out: *mut *mut consul_kv_list,
    out_index: *mut u64,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let prefix = unsafe { ffi::str_arg(prefix, "prefix") }?.to_string();
        // SAFETY: forwarded contract.
        let q = unsafe { query_options(options) }?;
        ffi::need_out(out, "out")?;
        let (meta, pairs) = ffi::run(async move { cl.kv_list(&prefix, &q).await })?;
        let handle = ffi::into_handle::<consul_kv_list>(KvListC::from_pairs(pairs));
        // SAFETY: `out` checked non-NULL; `out_index` NULL or writable.
        unsafe {
            ffi::write_out(out, handle);
            ffi::write_opt(out_index, meta.index);
        }
        Ok(())
    })
}

/// Lists key names under `prefix`, folded at `separator` (NULL = no folding), like
/// `/v1/kv/<prefix>?keys&separator=`. Free `*out` with `consul_string_list_free`.
///
/// # Safety
/// As for `consul_kv_get`; `separator` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn consul_kv_keys(
    c: *const consul_client,
    prefix: *const c_char,
    separator: *const c_char,
    options: *const consul_query_options,
    out: *mut *mut consul_string_list,
    out_index: *mut u64,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let prefix = unsafe { ffi::str_arg(prefix, "prefix") }?.to_string();
        // SAFETY: forwarded contract.
        let sep = unsafe { ffi::opt_str_arg(separator, "separator") }?.map(str::to_string);
        // SAFETY: forwarded contract.
        let q = unsafe { query_options(options) }?;
        ffi::need_out(out, "out")?;
        let (meta, keys) = ffi::run(async move { cl.kv_keys(&prefix, sep.as_deref(), &q).await })?;
        let list: Vec<std::ffi::CString> = keys.into_iter().map(ffi::cstring_lossy).collect();
        // SAFETY: `out` checked non-NULL; `out_index` NULL or writable.
        unsafe {
            ffi::write_out(out, ffi::into_handle::<consul_string_list>(list));
            ffi::write_opt(out_index, meta.index);
        }
        Ok(())
    })
}

/// Writes `len` bytes at `value` (`NULL, 0` = empty) to `key`. `*out_ok` (may be NULL) gets
/// false when a `cas`, `acquire` or `release` condition of `options` failed (nothing written).
///
/// # Safety
/// `c` is a live client; `key` is NUL-terminated; `value` is NULL or `len` readable bytes;
/// `options` is NULL or readable; `out_ok` and `err` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_kv_put(
    c: *const consul_client,
    key: *const c_char,
    value: *const u8,
    len: usize,
    options: *const consul_put_options,
    out_ok: *mut bool,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let key = unsafe { ffi::str_arg(key, "key") }?.to_string();
        // SAFETY: forwarded contract.
        let value = Bytes::copy_from_slice(unsafe { ffi::bytes_arg(value, len, "value") }?);
        // SAFETY: forwarded contract.
        let o = unsafe { put_options(options) }?;
        let ok = ffi::run(async move { cl.kv_put(&key, value, &o).await })?;
        // SAFETY: NULL or writable.
        unsafe { ffi::write_opt(out_ok, ok) };
        Ok(())
    })
}

/// Deletes `key` (or with `recurse`, every key under that prefix). `cas` is -1 for none, or the
/// ModifyIndex the key must have. `*out_ok` (may be NULL) gets false when the cas failed.
///
/// # Safety
/// `c` is a live client; `key` is NUL-terminated; `out_ok` and `err` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_kv_delete(
    c: *const consul_client,
    key: *const c_char,
    recurse: bool,
    cas: i64,
    out_ok: *mut bool,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let key = unsafe { ffi::str_arg(key, "key") }?.to_string();
        let cas = match cas {
            -1 => None,
            n if n < -1 => return Err(CError::invalid("cas", format!("{n}: use -1 (none) or an index"))),
            n => Some(n as u64),
        };
        let ok = ffi::run(async move { cl.kv_delete(&key, recurse, cas).await })?;
        // SAFETY: NULL or writable.
        unsafe { ffi::write_opt(out_ok, ok) };
        Ok(())
    })
}

/// Runs a transaction: `ops_json` is Consul's `/v1/txn` operation list
/// (`[{"KV":{"Verb":"set","Key":"k","Value":"<base64>"}}, …]`); `*out_json` gets the answer
/// (`{"Results":[…],"Errors":null}`). A rolled-back transaction is `CONSUL_E_CONFLICT` with the
/// per-operation errors in the message.
///
/// # Safety
/// `c` is a live client; `ops_json` is NUL-terminated; `out_json` is writable; `err` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn consul_txn(
    c: *const consul_client,
    ops_json: *const c_char,
    out_json: *mut *mut c_char,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let ops = ffi::parse_json(unsafe { ffi::str_arg(ops_json, "ops_json") }?, "ops_json")?;
        if !ops.is_array() {
            return Err(CError::invalid("ops_json", "must be a JSON array of operations"));
        }
        ffi::need_out(out_json, "out_json")?;
        let answer = ffi::run(async move { cl.txn(&ops).await })?;
        // SAFETY: checked non-NULL.
        unsafe { ffi::write_out(out_json, ffi::json_string(&answer)?) };
        Ok(())
    })
}

// ---- JSON queries ----

/// Shared body of the calls that answer JSON text and an index.
fn json_query<F, Fut, T>(out_json: *mut *mut c_char, out_index: *mut u64, f: F) -> CResult<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = consul_sdk::Result<(u64, T)>> + Send + 'static,
    T: serde::Serialize + Send + 'static,
{
    ffi::need_out(out_json, "out_json")?;
    let (index, v) = ffi::run(f())?;
    let text = ffi::json_string(&v)?;
    // SAFETY: `out_json` checked non-NULL; `out_index` NULL or writable (callers' contracts).
    unsafe {
        ffi::write_out(out_json, text);
        ffi::write_opt(out_index, index);
    }
    Ok(())
}

/// The leader's server address (`"host:port"`, or `""` while there is none). Free `*out` with
/// `consul_string_free`.
///
/// # Safety
/// `c` is a live client; `out` is writable; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_status_leader(
    c: *const consul_client,
    out: *mut *mut c_char,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        ffi::need_out(out, "out")?;
        let leader = ffi::run(async move { cl.status_leader().await })?;
        // SAFETY: checked non-NULL.
        unsafe { ffi::write_out(out, ffi::out_string(leader)) };
        Ok(())
    })
}

/// The voting servers' addresses as a JSON array (`["127.0.0.1:8300", …]`).
///
/// # Safety
/// `c` is a live client; `out_json` is writable; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_status_peers(
    c: *const consul_client,
    out_json: *mut *mut c_char,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        json_query(out_json, std::ptr::null_mut(), || async move { cl.status_peers().await.map(|v| (0, v)) })
    })
}

/// The healthy-or-not instances of `service` as Consul's `/v1/health/service/<service>` JSON
/// (`[{"Node":…,"Service":…,"Checks":[…]}]`); `passing_only` keeps instances whose every check
/// passes, `tag` (NULL = any) filters by tag.
///
/// # Safety
/// `c` is a live client; `service` is NUL-terminated; `tag` is NULL or NUL-terminated; `options`
/// is NULL or readable; `out_json` is writable; `out_index` and `err` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_health_service(
    c: *const consul_client,
    service: *const c_char,
    passing_only: bool,
    tag: *const c_char,
    options: *const consul_query_options,
    out_json: *mut *mut c_char,
    out_index: *mut u64,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let name = unsafe { ffi::str_arg(service, "service") }?.to_string();
        // SAFETY: forwarded contract.
        let tag = unsafe { ffi::opt_str_arg(tag, "tag") }?.map(str::to_string);
        // SAFETY: forwarded contract.
        let q = unsafe { query_options(options) }?;
        let f = HealthFilter { passing: passing_only, tag };
        json_query(
            out_json,
            out_index,
            || async move { cl.health_service(&name, &f, &q).await.map(|(m, v)| (m.index, v)) },
        )
    })
}

/// The checks of `service` (`/v1/health/checks/<service>` JSON).
///
/// # Safety
/// As for `consul_health_service`.
#[no_mangle]
pub unsafe extern "C" fn consul_health_checks(
    c: *const consul_client,
    service: *const c_char,
    options: *const consul_query_options,
    out_json: *mut *mut c_char,
    out_index: *mut u64,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let name = unsafe { ffi::str_arg(service, "service") }?.to_string();
        // SAFETY: forwarded contract.
        let q = unsafe { query_options(options) }?;
        json_query(out_json, out_index, || async move { cl.health_checks(&name, &q).await.map(|(m, v)| (m.index, v)) })
    })
}

/// Checks in `state` (`"any"`, `"passing"`, `"warning"`, `"critical"`), as
/// `/v1/health/state/<state>` JSON.
///
/// # Safety
/// As for `consul_health_service`.
#[no_mangle]
pub unsafe extern "C" fn consul_health_state(
    c: *const consul_client,
    state: *const c_char,
    options: *const consul_query_options,
    out_json: *mut *mut c_char,
    out_index: *mut u64,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let state = unsafe { ffi::str_arg(state, "state") }?.to_string();
        // SAFETY: forwarded contract.
        let q = unsafe { query_options(options) }?;
        json_query(out_json, out_index, || async move { cl.health_state(&state, &q).await.map(|(m, v)| (m.index, v)) })
    })
}

/// Service names with their tags (`/v1/catalog/services` JSON: `{"web":["v1"],…}`).
///
/// # Safety
/// `c` is a live client; `options` is NULL or readable; `out_json` is writable; `out_index` and
/// `err` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_catalog_services(
    c: *const consul_client,
    options: *const consul_query_options,
    out_json: *mut *mut c_char,
    out_index: *mut u64,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let q = unsafe { query_options(options) }?;
        json_query(out_json, out_index, || async move { cl.catalog_services(&q).await.map(|(m, v)| (m.index, v)) })
    })
}

/// Nodes (`/v1/catalog/nodes` JSON).
///
/// # Safety
/// As for `consul_catalog_services`.
#[no_mangle]
pub unsafe extern "C" fn consul_catalog_nodes(
    c: *const consul_client,
    options: *const consul_query_options,
    out_json: *mut *mut c_char,
    out_index: *mut u64,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let q = unsafe { query_options(options) }?;
        json_query(out_json, out_index, || async move { cl.catalog_nodes(&q).await.map(|(m, v)| (m.index, v)) })
    })
}

/// Registers a node (and optionally a service and checks) directly in the catalog, from Consul's
/// `/v1/catalog/register` JSON.
///
/// # Safety
/// `c` is a live client; `registration_json` is NUL-terminated; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_catalog_register(
    c: *const consul_client,
    registration_json: *const c_char,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let text = unsafe { ffi::str_arg(registration_json, "registration_json") }?;
        let v = ffi::parse_json(text, "registration_json")?;
        ffi::run(async move { cl.catalog_register(&v).await })
    })
}

// ---- agent endpoints ----

/// Registers a service with the agent from Consul's own JSON (the body of
/// `/v1/agent/service/register`: `{"Name":"web","Port":8080,"Check":{"TTL":"10s"}}`). Nothing
/// keeps TTL checks alive: use `consul_register` for that.
///
/// # Safety
/// `c` is a live client; `registration_json` is NUL-terminated; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_service_register(
    c: *const consul_client,
    registration_json: *const c_char,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let text = unsafe { ffi::str_arg(registration_json, "registration_json") }?;
        let v = ffi::parse_json(text, "registration_json")?;
        ffi::run(async move { cl.service_register_json(&v).await })
    })
}

/// Deregisters a service instance from the agent (`CONSUL_E_NOT_FOUND` if unknown).
///
/// # Safety
/// `c` is a live client; `service_id` is NUL-terminated; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_service_deregister(
    c: *const consul_client,
    service_id: *const c_char,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let id = unsafe { ffi::str_arg(service_id, "service_id") }?.to_string();
        ffi::run(async move { cl.service_deregister(&id).await })
    })
}

/// Reports a TTL check's status: `status` is `"pass"`, `"warn"` or `"fail"`; `note` (NULL =
/// none) becomes the check's output.
///
/// # Safety
/// `c` is a live client; strings are NUL-terminated (`note` may be NULL); `err` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn consul_check_update_ttl(
    c: *const consul_client,
    check_id: *const c_char,
    status: *const c_char,
    note: *const c_char,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let id = unsafe { ffi::str_arg(check_id, "check_id") }?.to_string();
        // SAFETY: forwarded contract.
        let st = unsafe { ffi::str_arg(status, "status") }?.to_string();
        // SAFETY: forwarded contract.
        let note = unsafe { ffi::opt_str_arg(note, "note") }?.map(str::to_string);
        ffi::run(async move { cl.check_update_ttl(&id, &st, note.as_deref()).await })
    })
}

/// `/v1/agent/self` as JSON.
///
/// # Safety
/// `c` is a live client; `out_json` is writable; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_agent_self(
    c: *const consul_client,
    out_json: *mut *mut c_char,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        json_query(out_json, std::ptr::null_mut(), || async move { cl.agent_self().await.map(|v| (0, v)) })
    })
}

/// Members of the agent's gossip pool (`/v1/agent/members` JSON; `wan` for the WAN pool).
///
/// # Safety
/// `c` is a live client; `out_json` is writable; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_agent_members(
    c: *const consul_client,
    wan: bool,
    out_json: *mut *mut c_char,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        json_query(out_json, std::ptr::null_mut(), || async move { cl.agent_members(wan).await.map(|v| (0, v)) })
    })
}

/// Asks the agent to join the pool of the agent at `address` (`host` or `host:port` of its
/// serf_lan listener).
///
/// # Safety
/// `c` is a live client; `address` is NUL-terminated; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_agent_join_address(
    c: *const consul_client,
    address: *const c_char,
    wan: bool,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let addr = unsafe { ffi::str_arg(address, "address") }?.to_string();
        ffi::run(async move { cl.agent_join(&addr, wan).await })
    })
}

/// Marks a failed member as left (`prune`: forget it entirely).
///
/// # Safety
/// `c` is a live client; `node` is NUL-terminated; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_agent_force_leave(
    c: *const consul_client,
    node: *const c_char,
    prune: bool,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let node = unsafe { ffi::str_arg(node, "node") }?.to_string();
        ffi::run(async move { cl.agent_force_leave(&node, prune).await })
    })
}

// ---- sessions ----

/// Creates a session from Consul's `/v1/session/create` JSON (`"{}"` for the defaults;
/// `{"TTL":"15s","Behavior":"delete"}` …). `*out_id` gets its ID (free with
/// `consul_string_free`).
///
/// # Safety
/// `c` is a live client; `body_json` is NUL-terminated; `out_id` is writable; `err` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn consul_session_create(
    c: *const consul_client,
    body_json: *const c_char,
    out_id: *mut *mut c_char,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let body = ffi::parse_json(unsafe { ffi::str_arg(body_json, "body_json") }?, "body_json")?;
        ffi::need_out(out_id, "out_id")?;
        let id = ffi::run(async move { cl.session_create(&body).await })?;
        // SAFETY: checked non-NULL.
        unsafe { ffi::write_out(out_id, ffi::out_string(id)) };
        Ok(())
    })
}

/// Destroys a session (locks it holds are released).
///
/// # Safety
/// `c` is a live client; `session_id` is NUL-terminated; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_session_destroy(
    c: *const consul_client,
    session_id: *const c_char,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let id = unsafe { ffi::str_arg(session_id, "session_id") }?.to_string();
        ffi::run(async move { cl.session_destroy(&id).await })
    })
}

/// Renews a TTL session (`CONSUL_E_NOT_FOUND` once it is gone).
///
/// # Safety
/// `c` is a live client; `session_id` is NUL-terminated; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_session_renew(
    c: *const consul_client,
    session_id: *const c_char,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let id = unsafe { ffi::str_arg(session_id, "session_id") }?.to_string();
        ffi::run(async move { cl.session_renew(&id).await })
    })
}

// ---- events ----

/// Fires a user event `name` with `len` bytes of payload (`NULL, 0` = none; at most 512), for
/// the nodes, services and tags matching the regexes `node_filter`, `service_filter`,
/// `tag_filter` (each NULL = any). `*out_id` (may be NULL) gets the event's ID.
///
/// # Safety
/// `c` is a live client; strings are NULL or NUL-terminated (`name` required); `payload` is NULL
/// or `len` readable bytes; `out_id` and `err` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_event_fire(
    c: *const consul_client,
    name: *const c_char,
    payload: *const u8,
    len: usize,
    node_filter: *const c_char,
    service_filter: *const c_char,
    tag_filter: *const c_char,
    out_id: *mut *mut c_char,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let name = unsafe { ffi::str_arg(name, "name") }?.to_string();
        // SAFETY: forwarded contract.
        let payload = Bytes::copy_from_slice(unsafe { ffi::bytes_arg(payload, len, "payload") }?);
        let filter = EventFilter {
            // SAFETY: forwarded contract.
            node: unsafe { ffi::opt_str_arg(node_filter, "node_filter") }?.map(str::to_string),
            // SAFETY: forwarded contract.
            service: unsafe { ffi::opt_str_arg(service_filter, "service_filter") }?.map(str::to_string),
            // SAFETY: forwarded contract.
            tag: unsafe { ffi::opt_str_arg(tag_filter, "tag_filter") }?.map(str::to_string),
        };
        let ev = ffi::run(async move { cl.event_fire(&name, payload, &filter).await })?;
        if !out_id.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { ffi::write_out(out_id, ffi::out_string(ev.id)) };
        }
        Ok(())
    })
}

/// The agent's recent user events (only those named `name`, unless NULL), oldest first, as
/// Consul's `/v1/event/list` JSON (payloads in base64).
///
/// # Safety
/// `c` is a live client; `name` is NULL or NUL-terminated; `options` is NULL or readable;
/// `out_json` is writable; `out_index` and `err` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_event_list(
    c: *const consul_client,
    name: *const c_char,
    options: *const consul_query_options,
    out_json: *mut *mut c_char,
    out_index: *mut u64,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let name = unsafe { ffi::opt_str_arg(name, "name") }?.map(str::to_string);
        // SAFETY: forwarded contract.
        let q = unsafe { query_options(options) }?;
        json_query(out_json, out_index, || async move {
            cl.event_list(name.as_deref(), &q)
                .await
                .map(|(m, v)| (m.index, v.iter().map(crate::watch::event_json).collect::<Vec<_>>()))
        })
    })
}
