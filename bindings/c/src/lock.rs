//! `consul_lock` (Consul's lock recipe on a TTL session renewed in the background) and
//! `consul_registration` (a service registered by this process, its TTL checks kept passing).

use std::ffi::{c_char, CString};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use consul_sdk::{Client, Lock, LockOptions, Registration, RegistrationSpec};

use crate::client::{client, consul_client};
use crate::error::{consul_error, consul_status, CError, CResult};
use crate::ffi::{self, Handle};

// ---- locks ----

/// A held lock. Thread-safe. Free it once; freeing a still-held lock releases it first.
pub struct consul_lock {
    _opaque: [u8; 0],
}

/// What a `consul_lock` holds.
#[derive(Debug)]
pub(crate) struct LockC {
    lock: Arc<Lock>,
    key: CString,
    session: CString,
}

impl Handle for consul_lock {
    type Target = LockC;
    const MAGIC: u64 = 0xC0_5E_E7_70_0E_77_00_40;
    const NAME: &'static str = "consul_lock";
}

/// Acquires the lock on `key`, storing `len` bytes of `value` in it while held (`NULL, 0` =
/// empty). The session's TTL is `ttl_ms` (0 = 15 s; Consul allows 10 s to 24 h), renewed every
/// TTL/2 in the background. Waits while another session holds the key: `wait_ms` -1 waits
/// forever, otherwise `CONSUL_E_TIMEOUT` after that long.
///
/// # Safety
/// `c` is a live client; `key` is NUL-terminated; `value` is NULL or `len` readable bytes;
/// `out` is writable; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_lock_acquire(
    c: *const consul_client,
    key: *const c_char,
    value: *const u8,
    len: usize,
    ttl_ms: u32,
    wait_ms: i32,
    out: *mut *mut consul_lock,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let key = unsafe { ffi::str_arg(key, "key") }?.to_string();
        // SAFETY: forwarded contract.
        let value = Bytes::copy_from_slice(unsafe { ffi::bytes_arg(value, len, "value") }?);
        ffi::need_out(out, "out")?;
        let mut opts = LockOptions { value, wait: ffi::timeout_ms(wait_ms), ..LockOptions::default() };
        if ttl_ms > 0 {
            opts.ttl = Duration::from_millis(u64::from(ttl_ms));
        }
        let k = key.clone();
        let lock = ffi::run(async move { Lock::acquire(&cl, &k, opts).await })?;
        let session = ffi::cstring_lossy(lock.session());
        let handle =
            ffi::into_handle::<consul_lock>(LockC { lock: Arc::new(lock), key: ffi::cstring_lossy(key), session });
        // SAFETY: checked non-NULL.
        unsafe { ffi::write_out(out, handle) };
        Ok(())
    })
}

/// Whether the lock is still held (false once released, or when its session was lost).
///
/// # Safety
/// `l` is NULL or a live lock.
#[no_mangle]
pub unsafe extern "C" fn consul_lock_is_held(l: *const consul_lock) -> bool {
    ffi::catch_or(false, || {
        // SAFETY: forwarded contract.
        unsafe { ffi::borrow::<consul_lock>(l, "lock") }.is_ok_and(|l| l.lock.is_held())
    })
}

/// The locked key (borrowed).
///
/// # Safety
/// `l` is NULL or a live lock.
#[no_mangle]
pub unsafe extern "C" fn consul_lock_key(l: *const consul_lock) -> *const c_char {
    ffi::catch_or(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        unsafe { ffi::borrow::<consul_lock>(l, "lock") }.map_or(std::ptr::null(), |l| l.key.as_ptr())
    })
}

/// The ID of the session holding the lock (borrowed).
///
/// # Safety
/// `l` is NULL or a live lock.
#[no_mangle]
pub unsafe extern "C" fn consul_lock_session(l: *const consul_lock) -> *const c_char {
    ffi::catch_or(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        unsafe { ffi::borrow::<consul_lock>(l, "lock") }.map_or(std::ptr::null(), |l| l.session.as_ptr())
    })
}

/// Releases the key and destroys the session. Idempotent.
///
/// # Safety
/// `l` is a live lock; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_lock_release(l: *const consul_lock, err: *mut *mut consul_error) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let lock = unsafe { ffi::borrow::<consul_lock>(l, "lock") }?.lock.clone();
        ffi::run(async move { lock.release().await })
    })
}

/// Releases the lock if still held (errors ignored) and frees it. NULL-safe.
///
/// # Safety
/// `l` is NULL or a live lock that no other thread uses any more.
#[no_mangle]
pub unsafe extern "C" fn consul_lock_free(l: *mut consul_lock) {
    ffi::catch_or((), || {
        // SAFETY: forwarded contract.
        if let Some(l) = unsafe { ffi::take::<consul_lock>(l) } {
            let lock = l.value.lock.clone();
            let _ = ffi::run(async move { lock.release().await });
        }
    })
}

// ---- registrations ----

/// A service registered by this process and kept alive: every TTL check of the registration
/// is reported passing three times per TTL from a background task, and the service is
/// registered again if the agent forgot it. Thread-safe. Freeing it deregisters the service.
pub struct consul_registration {
    _opaque: [u8; 0],
}

/// The client argument of a registration, or for NULL the local agent's
/// ([`crate::agent::local_client`]). Arguments are checked before this runs, so a bad value is
/// reported the same way whichever agent would have answered.
///
/// # Safety
/// `c` is NULL or a live `consul_client`.
unsafe fn client_or_local(c: *const consul_client) -> CResult<Client> {
    if c.is_null() {
        return crate::agent::local_client();
    }
    // SAFETY: forwarded contract.
    Ok(unsafe { client(c) }?.clone())
}

/// What a `consul_registration` holds.
#[derive(Debug)]
pub(crate) struct RegistrationC {
    reg: Arc<Registration>,
    service_id: CString,
}

impl Handle for consul_registration {
    type Target = RegistrationC;
    const MAGIC: u64 = 0xC0_5E_E7_70_0E_77_00_41;
    const NAME: &'static str = "consul_registration";
}

/// Registers a service from Consul's registration JSON (the body of
/// `/v1/agent/service/register`, e.g. `{"Name":"web","ID":"web-1","Port":8080,
/// "Check":{"TTL":"10s"}}`) and keeps its TTL checks passing until closed. Returns once the
/// service is registered and its TTL checks are passing.
///
/// `c` NULL registers with the local agent, in the order the Python and Node packages use: the
/// node embedded in this process by `consul_agent_start` (the one still running; with several,
/// `CONSUL_E_INVALID_ARGUMENT`: pass a client), else `$CONSUL_HTTP_ADDR`, else `127.0.0.1:8500`.
///
/// # Safety
/// `c` is NULL or a live client; `registration_json` is NUL-terminated; `out` is writable; `err`
/// is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_register(
    c: *const consul_client,
    registration_json: *const c_char,
    out: *mut *mut consul_registration,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let text = unsafe { ffi::str_arg(registration_json, "registration_json") }?;
        let body = ffi::parse_json(text, "registration_json")?;
        if !body.is_object() {
            return Err(CError::invalid("registration_json", "must be a JSON object"));
        }
        ffi::need_out(out, "out")?;
        // SAFETY: forwarded contract.
        let cl = unsafe { client_or_local(c) }?;
        let reg = ffi::run(async move { Registration::start_json(&cl, body).await })?;
        let service_id = ffi::cstring_lossy(reg.service_id());
        let handle = ffi::into_handle::<consul_registration>(RegistrationC { reg: Arc::new(reg), service_id });
        // SAFETY: checked non-NULL.
        unsafe { ffi::write_out(out, handle) };
        Ok(())
    })
}

/// Like `consul_register`, from the bindings' neutral JSON shape (see
/// `consul_registration_spec_validate`), validated by the same rules as the Python and Node
/// packages: `{"name":"web","port":8080,"checks":[{"kind":"ttl","ttl":"10s"}]}`. `c` NULL: the
/// local agent, as for `consul_register`.
///
/// # Safety
/// `c` is NULL or a live client; `spec_json` is NUL-terminated; `out` is writable; `err` is NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_register_spec(
    c: *const consul_client,
    spec_json: *const c_char,
    out: *mut *mut consul_registration,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let text = unsafe { ffi::str_arg(spec_json, "spec_json") }?;
        let reg = RegistrationSpec::from_json(&ffi::parse_json(text, "spec_json")?)?.resolve()?;
        ffi::need_out(out, "out")?;
        // SAFETY: forwarded contract.
        let cl = unsafe { client_or_local(c) }?;
        let reg = ffi::run(async move { Registration::start(&cl, reg).await })?;
        let service_id = ffi::cstring_lossy(reg.service_id());
        let handle = ffi::into_handle::<consul_registration>(RegistrationC { reg: Arc::new(reg), service_id });
        // SAFETY: checked non-NULL.
        unsafe { ffi::write_out(out, handle) };
        Ok(())
    })
}

/// The registered service ID (borrowed).
///
/// # Safety
/// `r` is NULL or a live registration.
#[no_mangle]
pub unsafe extern "C" fn consul_registration_service_id(r: *const consul_registration) -> *const c_char {
    ffi::catch_or(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        unsafe { ffi::borrow::<consul_registration>(r, "registration") }
            .map_or(std::ptr::null(), |r| r.service_id.as_ptr())
    })
}

/// Stops the heartbeats and deregisters the service. Idempotent.
///
/// # Safety
/// `r` is a live registration; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_registration_close(
    r: *const consul_registration,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let reg = unsafe { ffi::borrow::<consul_registration>(r, "registration") }?.reg.clone();
        ffi::run(async move { reg.close().await })
    })
}

/// Closes the registration if still open (errors ignored) and frees it. NULL-safe.
///
/// # Safety
/// `r` is NULL or a live registration that no other thread uses any more.
#[no_mangle]
pub unsafe extern "C" fn consul_registration_free(r: *mut consul_registration) {
    ffi::catch_or((), || {
        // SAFETY: forwarded contract.
        if let Some(r) = unsafe { ffi::take::<consul_registration>(r) } {
            let reg = r.value.reg.clone();
            if !reg.is_closed() {
                let _ = ffi::run(async move { reg.close().await });
            }
        }
    })
}
