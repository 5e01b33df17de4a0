//! Result handles (KV pairs and lists, string lists, service instances) and option structs.
//!
//! Result handles are immutable once made: any number of threads may read one at a time; free it
//! once, after the last read. Accessors answer a neutral value (NULL, 0) for a NULL or wrong
//! handle, since they have no status to return.

use std::ffi::{c_char, CString};

use base64::Engine;
use bytes::Bytes;
use consul_sdk::{Consistency, KvPair, PutOptions, QueryOptions, ServiceEntry};
use serde_json::{json, Value};

use crate::error::{CError, CResult};
use crate::ffi::{self, Handle, Tagged};

/// Consistency mode of a read (`consul_query_options.consistency`).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub enum consul_consistency {
    /// Leader-lease read (Consul's default).
    CONSUL_CONSISTENCY_DEFAULT = 0,
    /// Any server may answer (`?stale`).
    CONSUL_CONSISTENCY_STALE = 1,
    /// The leader confirms leadership with a quorum first (`?consistent`).
    CONSUL_CONSISTENCY_CONSISTENT = 2,
}

/// Options of a read. Pass NULL for the defaults; zero-initialise (`= {0}`) and set what you
/// need otherwise.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct consul_query_options {
    /// A `consul_consistency` value.
    pub consistency: u32,
    /// Blocking query: wait until the result's index is past this (0 = answer at once).
    pub index: u64,
    /// Longest wait of a blocking query in ms (0 = the agent's default, 5 min).
    pub wait_ms: u32,
    /// Datacenter (NULL = the client's or the agent's).
    pub datacenter: *const c_char,
}

/// Options of a KV write. Pass NULL for a plain write. `CONSUL_PUT_OPTIONS_INIT`-style
/// initialisation: `{ .cas = -1 }` (a zeroed struct means "cas = 0: only if absent").
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct consul_put_options {
    /// Check-and-set: -1 = none; 0 = write only if the key does not exist; N = only if the key's
    /// ModifyIndex is N.
    pub cas: i64,
    /// Opaque client flags stored with the value.
    pub flags: u64,
    /// Acquire the key's lock for this session ID (NULL = no).
    pub acquire: *const c_char,
    /// Release the key's lock held by this session ID (NULL = no).
    pub release: *const c_char,
}

/// The SDK's consistency mode for a `consul_consistency` value: the one mapping for reads and
/// watches.
pub(crate) fn consistency(n: u32) -> CResult<Consistency> {
    Ok(match n {
        0 => Consistency::Default,
        1 => Consistency::Stale,
        2 => Consistency::Consistent,
        n => return Err(CError::invalid("options.consistency", format!("{n} is not a consul_consistency"))),
    })
}

/// Reads `consul_query_options` (NULL = defaults).
///
/// # Safety
/// `q` is NULL or a readable `consul_query_options` whose `datacenter` is NULL or a string.
pub(crate) unsafe fn query_options(q: *const consul_query_options) -> CResult<QueryOptions> {
    if q.is_null() {
        return Ok(QueryOptions::default());
    }
    // SAFETY: non-NULL and readable per the contract; the struct is plain data.
    let q = unsafe { *q };
    let consistency = consistency(q.consistency)?;
    // SAFETY: forwarded contract on `datacenter`.
    let dc = unsafe { ffi::opt_str_arg(q.datacenter, "options.datacenter") }?;
    Ok(QueryOptions {
        consistency,
        index: (q.index > 0).then_some(q.index),
        wait: (q.wait_ms > 0).then(|| std::time::Duration::from_millis(u64::from(q.wait_ms))),
        datacenter: dc.map(str::to_string),
        near: None,
        token: None,
    })
}

/// Reads `consul_put_options` (NULL = a plain write).
///
/// # Safety
/// `o` is NULL or a readable `consul_put_options` whose strings are NULL or strings.
pub(crate) unsafe fn put_options(o: *const consul_put_options) -> CResult<PutOptions> {
    if o.is_null() {
        return Ok(PutOptions::default());
    }
    // SAFETY: non-NULL and readable per the contract.
    let o = unsafe { *o };
    let cas = match o.cas {
        -1 => None,
        n if n < -1 => return Err(CError::invalid("options.cas", format!("{n}: use -1 (none), 0 or an index"))),
        n => Some(n as u64),
    };
    // SAFETY: forwarded contract on the strings.
    let acquire = unsafe { ffi::opt_str_arg(o.acquire, "options.acquire") }?.map(str::to_string);
    // SAFETY: as above.
    let release = unsafe { ffi::opt_str_arg(o.release, "options.release") }?.map(str::to_string);
    Ok(PutOptions { cas, flags: (o.flags != 0).then_some(o.flags), acquire, release })
}

// ---- KV pairs ----

/// One KV entry. Immutable; readable from any thread. Free with `consul_kv_pair_free` (only
/// those you own: pairs borrowed from a list or an event are freed with their owner).
pub struct consul_kv_pair {
    _opaque: [u8; 0],
}

/// What a `consul_kv_pair` holds.
#[derive(Debug)]
pub(crate) struct KvPairC {
    key: CString,
    value: Option<Bytes>,
    flags: u64,
    create_index: u64,
    modify_index: u64,
    lock_index: u64,
    session: Option<CString>,
}

impl Handle for consul_kv_pair {
    type Target = KvPairC;
    const MAGIC: u64 = 0xC0_5E_E7_70_0E_77_00_02;
    const NAME: &'static str = "consul_kv_pair";
}

impl KvPairC {
    pub(crate) fn from_pair(p: KvPair) -> KvPairC {
        KvPairC {
            key: ffi::cstring_lossy(p.key),
            value: p.value,
            flags: p.flags,
            create_index: p.create_index,
            modify_index: p.modify_index,
            lock_index: p.lock_index,
            session: p.session.map(ffi::cstring_lossy),
        }
    }

    /// Consul's JSON for the pair (`Value` in base64, as `/v1/kv` answers).
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "Key": self.key.to_string_lossy(),
            "Value": self.value.as_ref().map(|v| base64::engine::general_purpose::STANDARD.encode(v)),
            "Flags": self.flags,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
            "LockIndex": self.lock_index,
            "Session": self.session.as_ref().map(|s| s.to_string_lossy()),
        })
    }
}

/// Reads a pair handle for an accessor.
unsafe fn pair<'a>(p: *const consul_kv_pair) -> Option<&'a KvPairC> {
    // SAFETY: forwarded contract (NULL or a live handle).
    unsafe { ffi::borrow::<consul_kv_pair>(p, "pair") }.ok()
}

/// The key: borrowed, valid until the pair's owner is freed.
///
/// # Safety
/// `p` is NULL or a live `consul_kv_pair`.
#[no_mangle]
pub unsafe extern "C" fn consul_kv_pair_key(p: *const consul_kv_pair) -> *const c_char {
    // SAFETY: forwarded contract.
    ffi::catch_or(std::ptr::null(), || unsafe { pair(p) }.map_or(std::ptr::null(), |p| p.key.as_ptr()))
}

/// The value: borrowed bytes, valid until the pair's owner is freed; `*len` (if `len` is not
/// NULL) gets its length. NULL (length 0) when the key has no value.
///
/// # Safety
/// `p` is NULL or a live `consul_kv_pair`; `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_kv_pair_value(p: *const consul_kv_pair, len: *mut usize) -> *const u8 {
    ffi::catch_or(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        let v = unsafe { pair(p) }.and_then(|p| p.value.as_ref());
        // SAFETY: `len` is NULL or writable per the contract.
        unsafe { ffi::write_opt(len, v.map_or(0, |v| v.len())) };
        v.map_or(std::ptr::null(), |v| v.as_ptr())
    })
}

/// The client flags.
///
/// # Safety
/// `p` is NULL or a live `consul_kv_pair`.
#[no_mangle]
pub unsafe extern "C" fn consul_kv_pair_flags(p: *const consul_kv_pair) -> u64 {
    // SAFETY: forwarded contract.
    ffi::catch_or(0, || unsafe { pair(p) }.map_or(0, |p| p.flags))
}

/// The Raft index of the last write (what `cas` compares with).
///
/// # Safety
/// `p` is NULL or a live `consul_kv_pair`.
#[no_mangle]
pub unsafe extern "C" fn consul_kv_pair_modify_index(p: *const consul_kv_pair) -> u64 {
    // SAFETY: forwarded contract.
    ffi::catch_or(0, || unsafe { pair(p) }.map_or(0, |p| p.modify_index))
}

/// The Raft index of the key's creation.
///
/// # Safety
/// `p` is NULL or a live `consul_kv_pair`.
#[no_mangle]
pub unsafe extern "C" fn consul_kv_pair_create_index(p: *const consul_kv_pair) -> u64 {
    // SAFETY: forwarded contract.
    ffi::catch_or(0, || unsafe { pair(p) }.map_or(0, |p| p.create_index))
}

/// How many times the key's lock was acquired.
///
/// # Safety
/// `p` is NULL or a live `consul_kv_pair`.
#[no_mangle]
pub unsafe extern "C" fn consul_kv_pair_lock_index(p: *const consul_kv_pair) -> u64 {
    // SAFETY: forwarded contract.
    ffi::catch_or(0, || unsafe { pair(p) }.map_or(0, |p| p.lock_index))
}

/// The session holding the key's lock (borrowed), or NULL.
///
/// # Safety
/// `p` is NULL or a live `consul_kv_pair`.
#[no_mangle]
pub unsafe extern "C" fn consul_kv_pair_session(p: *const consul_kv_pair) -> *const c_char {
    ffi::catch_or(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        unsafe { pair(p) }.and_then(|p| p.session.as_ref()).map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// Frees a pair returned by `consul_kv_get`. NULL-safe. Never pass a borrowed pair (from a list
/// or an event).
///
/// # Safety
/// `p` is NULL or a `consul_kv_pair` you own, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn consul_kv_pair_free(p: *mut consul_kv_pair) {
    // SAFETY: forwarded contract.
    ffi::catch_or((), || drop(unsafe { ffi::take::<consul_kv_pair>(p) }))
}

/// A list of KV entries, in key order. Immutable; readable from any thread.
pub struct consul_kv_list {
    _opaque: [u8; 0],
}

/// What a `consul_kv_list` holds: the pairs in place, so borrowed pair pointers stay valid.
#[derive(Debug)]
pub(crate) struct KvListC {
    pairs: Vec<Tagged<KvPairC>>,
}

impl Handle for consul_kv_list {
    type Target = KvListC;
    const MAGIC: u64 = 0xC0_5E_E7_70_0E_77_00_03;
    const NAME: &'static str = "consul_kv_list";
}

impl KvListC {
    pub(crate) fn from_pairs(pairs: Vec<KvPair>) -> KvListC {
        KvListC { pairs: pairs.into_iter().map(|p| Tagged::new::<consul_kv_pair>(KvPairC::from_pair(p))).collect() }
    }

    pub(crate) fn to_json(&self) -> Value {
        Value::Array(self.pairs.iter().map(|p| p.value.to_json()).collect())
    }
}

/// The number of entries (0 for NULL).
///
/// # Safety
/// `l` is NULL or a live `consul_kv_list`.
#[no_mangle]
pub unsafe extern "C" fn consul_kv_list_len(l: *const consul_kv_list) -> usize {
    // SAFETY: forwarded contract.
    ffi::catch_or(0, || unsafe { ffi::borrow::<consul_kv_list>(l, "list") }.map_or(0, |l| l.pairs.len()))
}

/// Entry `i` (borrowed from the list: do not free it), or NULL when out of range.
///
/// # Safety
/// `l` is NULL or a live `consul_kv_list`.
#[no_mangle]
pub unsafe extern "C" fn consul_kv_list_get(l: *const consul_kv_list, i: usize) -> *const consul_kv_pair {
    ffi::catch_or(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        match unsafe { ffi::borrow::<consul_kv_list>(l, "list") } {
            Ok(l) => l.pairs.get(i).map_or(std::ptr::null(), |p| p.as_handle::<consul_kv_pair>()),
            Err(_) => std::ptr::null(),
        }
    })
}

/// Frees a list you own (not one borrowed from an event). NULL-safe.
///
/// # Safety
/// `l` is NULL or a `consul_kv_list` you own, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn consul_kv_list_free(l: *mut consul_kv_list) {
    // SAFETY: forwarded contract.
    ffi::catch_or((), || drop(unsafe { ffi::take::<consul_kv_list>(l) }))
}

// ---- string lists ----

/// A list of strings (key names). Immutable; readable from any thread.
pub struct consul_string_list {
    _opaque: [u8; 0],
}

impl Handle for consul_string_list {
    type Target = Vec<CString>;
    const MAGIC: u64 = 0xC0_5E_E7_70_0E_77_00_04;
    const NAME: &'static str = "consul_string_list";
}

/// The number of strings (0 for NULL).
///
/// # Safety
/// `l` is NULL or a live `consul_string_list`.
#[no_mangle]
pub unsafe extern "C" fn consul_string_list_len(l: *const consul_string_list) -> usize {
    // SAFETY: forwarded contract.
    ffi::catch_or(0, || unsafe { ffi::borrow::<consul_string_list>(l, "list") }.map_or(0, |l| l.len()))
}

/// String `i` (borrowed from the list), or NULL when out of range.
///
/// # Safety
/// `l` is NULL or a live `consul_string_list`.
#[no_mangle]
pub unsafe extern "C" fn consul_string_list_get(l: *const consul_string_list, i: usize) -> *const c_char {
    ffi::catch_or(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        match unsafe { ffi::borrow::<consul_string_list>(l, "list") } {
            Ok(l) => l.get(i).map_or(std::ptr::null(), |s| s.as_ptr()),
            Err(_) => std::ptr::null(),
        }
    })
}

/// Frees a string list. NULL-safe.
///
/// # Safety
/// `l` is NULL or a live `consul_string_list`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn consul_string_list_free(l: *mut consul_string_list) {
    // SAFETY: forwarded contract.
    ffi::catch_or((), || drop(unsafe { ffi::take::<consul_string_list>(l) }))
}

// ---- service instances ----

/// One service instance (a `/v1/health/service` entry), from `consul_discovery_pick`.
/// Immutable; readable from any thread.
pub struct consul_instance {
    _opaque: [u8; 0],
}

/// What a `consul_instance` holds. The JSON form is made on first request only: `pick` is on
/// the hot path of a caller choosing where to connect.
#[derive(Debug)]
pub(crate) struct InstanceC {
    id: CString,
    service: CString,
    address: CString,
    node: CString,
    port: u16,
    entry: ServiceEntry,
    json: std::sync::OnceLock<CString>,
}

impl Handle for consul_instance {
    type Target = InstanceC;
    const MAGIC: u64 = 0xC0_5E_E7_70_0E_77_00_05;
    const NAME: &'static str = "consul_instance";
}

impl InstanceC {
    /// The instance as the SDK has it.
    pub(crate) fn entry(&self) -> &ServiceEntry {
        &self.entry
    }

    pub(crate) fn from_entry(e: ServiceEntry) -> InstanceC {
        InstanceC {
            id: ffi::cstring_lossy(e.service.id.as_str()),
            service: ffi::cstring_lossy(e.service.service.as_str()),
            address: ffi::cstring_lossy(e.address()),
            node: ffi::cstring_lossy(e.node.node.as_str()),
            port: e.service.port,
            entry: e,
            json: std::sync::OnceLock::new(),
        }
    }
}

unsafe fn instance<'a>(p: *const consul_instance) -> Option<&'a InstanceC> {
    // SAFETY: forwarded contract.
    unsafe { ffi::borrow::<consul_instance>(p, "instance") }.ok()
}

/// The instance (service) ID. Borrowed.
///
/// # Safety
/// `p` is NULL or a live `consul_instance`.
#[no_mangle]
pub unsafe extern "C" fn consul_instance_id(p: *const consul_instance) -> *const c_char {
    // SAFETY: forwarded contract.
    ffi::catch_or(std::ptr::null(), || unsafe { instance(p) }.map_or(std::ptr::null(), |i| i.id.as_ptr()))
}

/// The service name. Borrowed.
///
/// # Safety
/// `p` is NULL or a live `consul_instance`.
#[no_mangle]
pub unsafe extern "C" fn consul_instance_service(p: *const consul_instance) -> *const c_char {
    // SAFETY: forwarded contract.
    ffi::catch_or(std::ptr::null(), || unsafe { instance(p) }.map_or(std::ptr::null(), |i| i.service.as_ptr()))
}

/// The address to connect to: the service's, else its node's. Borrowed.
///
/// # Safety
/// `p` is NULL or a live `consul_instance`.
#[no_mangle]
pub unsafe extern "C" fn consul_instance_address(p: *const consul_instance) -> *const c_char {
    // SAFETY: forwarded contract.
    ffi::catch_or(std::ptr::null(), || unsafe { instance(p) }.map_or(std::ptr::null(), |i| i.address.as_ptr()))
}

/// The node the instance runs on. Borrowed.
///
/// # Safety
/// `p` is NULL or a live `consul_instance`.
#[no_mangle]
pub unsafe extern "C" fn consul_instance_node(p: *const consul_instance) -> *const c_char {
    // SAFETY: forwarded contract.
    ffi::catch_or(std::ptr::null(), || unsafe { instance(p) }.map_or(std::ptr::null(), |i| i.node.as_ptr()))
}

/// The service port (0 for NULL).
///
/// # Safety
/// `p` is NULL or a live `consul_instance`.
#[no_mangle]
pub unsafe extern "C" fn consul_instance_port(p: *const consul_instance) -> u16 {
    // SAFETY: forwarded contract.
    ffi::catch_or(0, || unsafe { instance(p) }.map_or(0, |i| i.port))
}

/// The whole entry as Consul's JSON (`{"Node":…,"Service":…,"Checks":[…]}`). Borrowed; made on
/// first call.
///
/// # Safety
/// `p` is NULL or a live `consul_instance`.
#[no_mangle]
pub unsafe extern "C" fn consul_instance_json(p: *const consul_instance) -> *const c_char {
    ffi::catch_or(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        let Some(i) = (unsafe { instance(p) }) else { return std::ptr::null() };
        i.json
            .get_or_init(|| ffi::cstring_lossy(serde_json::to_string(&i.entry).unwrap_or_else(|_| "null".into())))
            .as_ptr()
    })
}

/// Frees an instance. NULL-safe.
///
/// # Safety
/// `p` is NULL or a live `consul_instance`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn consul_instance_free(p: *mut consul_instance) {
    // SAFETY: forwarded contract.
    ffi::catch_or((), || drop(unsafe { ffi::take::<consul_instance>(p) }))
}
