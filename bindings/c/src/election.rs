//! `consul_election`: leader election on a lock, the SDK's [`LeaderElection`] (the same one the
//! Python and Node packages use). A background task campaigns for the key, holds it while the
//! session lives and campaigns again when it is lost, until resigned; changes are pulled with
//! `consul_election_next`.

use std::ffi::c_char;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use consul_sdk::{ElectionEvent, LeaderElection, LockOptions};

use crate::client::{client, consul_client};
use crate::error::{consul_error, consul_status};
use crate::ffi::{self, Handle};

/// A change of leadership (`consul_election_next`).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum consul_election_event {
    /// Resigned: no more changes will come.
    CONSUL_ELECTION_RESIGNED = 0,
    /// This process became the leader.
    CONSUL_ELECTION_ELECTED = 1,
    /// This process lost leadership (session expired, key taken); it campaigns again.
    CONSUL_ELECTION_LOST = 2,
}

/// A running campaign for leadership of one key. Thread-safe. Free it once; freeing it resigns.
pub struct consul_election {
    _opaque: [u8; 0],
}

/// What a `consul_election` holds.
#[derive(Debug)]
pub(crate) struct ElectionC {
    election: Arc<LeaderElection>,
}

impl Handle for consul_election {
    type Target = ElectionC;
    const MAGIC: u64 = 0xC0_5E_E7_70_0E_77_00_42;
    const NAME: &'static str = "consul_election";
}

/// Starts campaigning for leadership of `key`, storing `len` bytes of `value` in it while
/// leader (`NULL, 0` = empty). The session's TTL is `ttl_ms` (0 = 15 s; Consul allows 10 s to
/// 24 h). Returns at once; the campaign runs on a library-owned thread.
///
/// # Safety
/// `c` is a live client; `key` is NUL-terminated; `value` is NULL or `len` readable bytes;
/// `out` is writable; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_election_start(
    c: *const consul_client,
    key: *const c_char,
    value: *const u8,
    len: usize,
    ttl_ms: u32,
    out: *mut *mut consul_election,
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
        let mut opts = LockOptions { value, ..LockOptions::default() };
        if ttl_ms > 0 {
            opts.ttl = Duration::from_millis(u64::from(ttl_ms));
        }
        // `start` spawns the campaign: it must run inside the SDK runtime.
        let election = ffi::run(async move { LeaderElection::start(&cl, &key, opts) })?;
        let handle = ffi::into_handle::<consul_election>(ElectionC { election: Arc::new(election) });
        // SAFETY: checked non-NULL.
        unsafe { ffi::write_out(out, handle) };
        Ok(())
    })
}

/// Whether this process holds leadership now (false for NULL).
///
/// # Safety
/// `e` is NULL or a live election.
#[no_mangle]
pub unsafe extern "C" fn consul_election_is_leader(e: *const consul_election) -> bool {
    ffi::catch_or(false, || {
        // SAFETY: forwarded contract.
        unsafe { ffi::borrow::<consul_election>(e, "election") }.is_ok_and(|e| e.election.is_leader())
    })
}

/// Waits for the next change of leadership and writes it to `out`: `CONSUL_ELECTION_ELECTED`,
/// `CONSUL_ELECTION_LOST`, or `CONSUL_ELECTION_RESIGNED` once resigned. `CONSUL_E_TIMEOUT`
/// when nothing changed within `timeout_ms` (-1 waits forever).
///
/// # Safety
/// `e` is a live election; `out` is writable; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_election_next(
    e: *const consul_election,
    timeout_ms: i32,
    out: *mut consul_election_event,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let election = unsafe { ffi::borrow::<consul_election>(e, "election") }?.election.clone();
        ffi::need_out(out, "out")?;
        let timeout = ffi::timeout_ms(timeout_ms);
        let next = ffi::run(async move {
            match timeout {
                None => Ok(election.next_event().await),
                Some(t) => tokio::time::timeout(t, election.next_event()).await.map_err(|_| {
                    consul_sdk::Error::new(consul_sdk::ErrorCode::Timeout, format!("no change within {t:?}"))
                }),
            }
        })?;
        let ev = match next {
            None => consul_election_event::CONSUL_ELECTION_RESIGNED,
            Some(ElectionEvent::Elected) => consul_election_event::CONSUL_ELECTION_ELECTED,
            Some(ElectionEvent::Lost) => consul_election_event::CONSUL_ELECTION_LOST,
        };
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { out.write(ev) };
        Ok(())
    })
}

/// Stops campaigning and gives up leadership (releases the key, destroys the session).
/// Idempotent.
///
/// # Safety
/// `e` is a live election; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_election_resign(
    e: *const consul_election,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let election = unsafe { ffi::borrow::<consul_election>(e, "election") }?.election.clone();
        ffi::run(async move { election.resign().await })
    })
}

/// Resigns (errors ignored) and frees the election. NULL-safe.
///
/// # Safety
/// `e` is NULL or a live election that no other thread uses any more.
#[no_mangle]
pub unsafe extern "C" fn consul_election_free(e: *mut consul_election) {
    ffi::catch_or((), || {
        // SAFETY: forwarded contract.
        if let Some(e) = unsafe { ffi::take::<consul_election>(e) } {
            let election = e.value.election.clone();
            let _ = ffi::run(async move { election.resign().await });
        }
    })
}
