//! `consul_discovery`: the live set of a service's passing instances (kept current by a watch)
//! and `pick`, answered locally without a request.

use std::ffi::c_char;
use std::sync::Arc;
use std::time::Duration;

use consul_sdk::{Discovery, Strategy};

use crate::client::{client, consul_client};
use crate::error::{consul_error, consul_status, CError};
use crate::ffi::{self, Handle};
use crate::types::{consul_instance, InstanceC};

/// How `consul_discovery_pick` chooses an instance.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub enum consul_pick_strategy {
    /// Each instance in turn.
    CONSUL_PICK_ROUND_ROBIN = 0,
    /// Uniformly at random.
    CONSUL_PICK_RANDOM = 1,
    /// At random, in proportion to each instance's `Weights.Passing`.
    CONSUL_PICK_WEIGHTED = 2,
    /// The same instance for the same `key` while it is there (rendezvous hashing).
    CONSUL_PICK_CONSISTENT_HASH = 3,
    /// Nearest by network coordinates (round-robin until coordinates exist).
    CONSUL_PICK_NEAREST = 4,
    /// The lower-latency of two instances by the latencies given to `consul_discovery_report`.
    CONSUL_PICK_LEAST_LATENCY = 5,
    /// The caller's zone first, then its region, then anywhere
    /// (`consul_discovery_set_locality_policy`).
    CONSUL_PICK_LOCALITY = 6,
}

/// The passing instances of one service. Thread-safe: pick from any number of threads at once.
/// Free once, after the last use.
pub struct consul_discovery {
    _opaque: [u8; 0],
}

impl Handle for consul_discovery {
    type Target = Arc<Discovery>;
    const MAGIC: u64 = 0xC0_5E_E7_70_0E_77_00_30;
    const NAME: &'static str = "consul_discovery";
}

/// Starts tracking the passing instances of `service` (with `tag`, unless NULL). Returns at
/// once; `consul_discovery_ready` waits for the first answer.
///
/// # Safety
/// `c` is a live client; `service` is NUL-terminated; `tag` is NULL or NUL-terminated; `out` is
/// writable; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_discovery_new(
    c: *const consul_client,
    service: *const c_char,
    tag: *const c_char,
    out: *mut *mut consul_discovery,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?;
        // SAFETY: forwarded contract.
        let service = unsafe { ffi::str_arg(service, "service") }?;
        // SAFETY: forwarded contract.
        let tag = unsafe { ffi::opt_str_arg(tag, "tag") }?;
        ffi::need_out(out, "out")?;
        let rt = consul_sdk::runtime::runtime()?;
        let d = {
            let _enter = rt.enter();
            Discovery::start(cl, service, tag)?
        };
        // SAFETY: checked non-NULL.
        unsafe { ffi::write_out(out, ffi::into_handle::<consul_discovery>(Arc::new(d))) };
        Ok(())
    })
}

/// Waits up to `timeout_ms` for the first answer (`CONSUL_E_TIMEOUT` otherwise).
///
/// # Safety
/// `d` is a live discovery; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_discovery_ready(
    d: *const consul_discovery,
    timeout_ms: u32,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let d = unsafe { ffi::borrow::<consul_discovery>(d, "discovery") }?.clone();
        let t = Duration::from_millis(u64::from(timeout_ms));
        ffi::run(async move { d.ready(t).await })
    })
}

/// Picks one passing instance by `strategy` (a `consul_pick_strategy`); `key` is required by
/// `CONSUL_PICK_CONSISTENT_HASH` and ignored otherwise. `*out` gets the instance (free with
/// `consul_instance_free`), or NULL when no instance is passing. Local: no request is made.
///
/// # Safety
/// `d` is a live discovery; `key` is NULL or NUL-terminated; `out` is writable; `err` is NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_discovery_pick(
    d: *const consul_discovery,
    strategy: u32,
    key: *const c_char,
    out: *mut *mut consul_instance,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let d = unsafe { ffi::borrow::<consul_discovery>(d, "discovery") }?;
        // SAFETY: forwarded contract.
        let key = unsafe { ffi::opt_str_arg(key, "key") }?;
        ffi::need_out(out, "out")?;
        let strategy = match strategy {
            0 => Strategy::RoundRobin,
            1 => Strategy::Random,
            2 => Strategy::Weighted,
            3 => Strategy::ConsistentHash,
            4 => Strategy::Nearest,
            5 => Strategy::LeastLatency,
            6 => Strategy::Locality,
            n => return Err(CError::invalid("strategy", format!("{n} is not a consul_pick_strategy"))),
        };
        let picked = d.pick(strategy, key)?;
        let handle = match picked {
            Some(e) => ffi::into_handle::<consul_instance>(InstanceC::from_entry(e)),
            None => std::ptr::null_mut(),
        };
        // SAFETY: checked non-NULL.
        unsafe { ffi::write_out(out, handle) };
        Ok(())
    })
}

/// Reports how a call to `inst` (from `consul_discovery_pick`) went: `latency_ms` and whether
/// it succeeded (`ok` non-zero). Drives `CONSUL_PICK_LEAST_LATENCY` and passive outlier
/// ejection: an instance that keeps failing is left out of every strategy's picks for a while.
///
/// # Safety
/// `d` is a live discovery; `inst` a live instance; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_discovery_report(
    d: *const consul_discovery,
    inst: *const consul_instance,
    latency_ms: f64,
    ok: i32,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let d = unsafe { ffi::borrow::<consul_discovery>(d, "discovery") }?;
        // SAFETY: forwarded contract.
        let inst = unsafe { ffi::borrow::<consul_instance>(inst, "inst") }?;
        let latency = consul_sdk::duration::from_millis("latency_ms", latency_ms)?;
        d.report(inst.entry(), latency, ok != 0);
        Ok(())
    })
}

/// Writes 1 to `*out` when `inst` is ejected (left out of picks for failing), else 0.
///
/// # Safety
/// `d` is a live discovery; `inst` a live instance; `out` is writable; `err` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn consul_discovery_is_ejected(
    d: *const consul_discovery,
    inst: *const consul_instance,
    out: *mut i32,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let d = unsafe { ffi::borrow::<consul_discovery>(d, "discovery") }?;
        // SAFETY: forwarded contract.
        let inst = unsafe { ffi::borrow::<consul_instance>(inst, "inst") }?;
        ffi::need_out(out, "out")?;
        // SAFETY: checked non-NULL.
        unsafe { ffi::write_out(out, i32::from(d.is_ejected(inst.entry()))) };
        Ok(())
    })
}

/// Tunes least-latency picks and ejection from a JSON object; absent fields keep their values:
/// `ewma_alpha`, `decay_half_life_ms`, `consecutive_failures`, `max_error_rate`,
/// `error_window_ms`, `min_requests`, `base_ejection_ms`, `max_ejection_ms`,
/// `max_ejected_share`. A bad value is `CONSUL_E_INVALID_ARGUMENT` naming it; nothing changes.
///
/// # Safety
/// `d` is a live discovery; `json` is NUL-terminated; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_discovery_configure_balancer(
    d: *const consul_discovery,
    json: *const c_char,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let d = unsafe { ffi::borrow::<consul_discovery>(d, "discovery") }?;
        // SAFETY: forwarded contract.
        let o = unsafe { ffi::json_object_arg(json, "json") }?;
        let mut c = d.balancer_config();
        for (k, v) in &o {
            let num = || v.as_f64().ok_or_else(|| CError::invalid(k, "expected a number"));
            let count =
                || v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| CError::invalid(k, "expected a count"));
            let ms = || -> crate::error::CResult<Duration> { Ok(consul_sdk::duration::from_millis(k, num()?)?) };
            match k.as_str() {
                "ewma_alpha" => c.ewma_alpha = num()?,
                "decay_half_life_ms" => c.decay_half_life = ms()?,
                "consecutive_failures" => c.consecutive_failures = count()?,
                "max_error_rate" => c.max_error_rate = num()?,
                "error_window_ms" => c.error_window = ms()?,
                "min_requests" => c.min_requests = count()?,
                "base_ejection_ms" => c.base_ejection = ms()?,
                "max_ejection_ms" => c.max_ejection = ms()?,
                "max_ejected_share" => c.max_ejected_share = num()?,
                other => return Err(CError::invalid(other, "unknown balancer setting")),
            }
        }
        d.set_balancer_config(c)?;
        Ok(())
    })
}

/// Tunes `CONSUL_PICK_LOCALITY` from a JSON object; absent fields keep their values:
/// `min_healthy` (fewest passing, not-ejected instances a ring needs before picks widen),
/// `zone_strategy`, `region_strategy`, `other_strategy` (strategy names such as
/// `"consistent_hash"`, `"round_robin"`, `"least_latency"`; not `"locality"`), `locality`
/// (`{"region": ..., "zone": ...}`, the caller's; `null`: the local agent's). A bad value is
/// `CONSUL_E_INVALID_ARGUMENT` naming it; nothing changes.
///
/// # Safety
/// `d` is a live discovery; `json` is NUL-terminated; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_discovery_set_locality_policy(
    d: *const consul_discovery,
    json: *const c_char,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let d = unsafe { ffi::borrow::<consul_discovery>(d, "discovery") }?;
        // SAFETY: forwarded contract.
        let o = unsafe { ffi::json_object_arg(json, "json") }?;
        let mut p = d.locality_policy();
        for (k, v) in &o {
            let strategy = || -> crate::error::CResult<Strategy> {
                Ok(v.as_str().ok_or_else(|| CError::invalid(k, "expected a strategy name"))?.parse()?)
            };
            match k.as_str() {
                "min_healthy" => {
                    p.min_healthy = v
                        .as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| CError::invalid(k, "expected a count"))?
                }
                "zone_strategy" => p.zone = strategy()?,
                "region_strategy" => p.region = strategy()?,
                "other_strategy" => p.other = strategy()?,
                "locality" if v.is_null() => p.locality = None,
                "locality" => {
                    let part = |name: &str| -> crate::error::CResult<String> {
                        match v.get(name) {
                            None | Some(serde_json::Value::Null) => Ok(String::new()),
                            Some(serde_json::Value::String(s)) => Ok(s.clone()),
                            Some(_) => Err(CError::invalid(&format!("locality.{name}"), "expected a string")),
                        }
                    };
                    if !v.is_object() {
                        return Err(CError::invalid(k, "expected {\"region\": ..., \"zone\": ...} or null"));
                    }
                    let l = consul_sdk::Locality { region: part("region")?, zone: part("zone")? };
                    p.locality = (!l.region.is_empty() || !l.zone.is_empty()).then_some(l);
                }
                other => return Err(CError::invalid(other, "unknown locality setting")),
            }
        }
        d.set_locality_policy(p)?;
        Ok(())
    })
}

/// The current passing instances as Consul's `/v1/health/service` JSON.
///
/// # Safety
/// `d` is a live discovery; `out_json` is writable; `out_index` and `err` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_discovery_instances(
    d: *const consul_discovery,
    out_json: *mut *mut c_char,
    out_index: *mut u64,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let d = unsafe { ffi::borrow::<consul_discovery>(d, "discovery") }?;
        ffi::need_out(out_json, "out_json")?;
        let index = d.index();
        let text = ffi::json_string(&d.instances())?;
        // SAFETY: `out_json` checked non-NULL; `out_index` NULL or writable.
        unsafe {
            ffi::write_out(out_json, text);
            ffi::write_opt(out_index, index);
        }
        Ok(())
    })
}

/// Stops tracking and frees. NULL-safe.
///
/// # Safety
/// `d` is NULL or a live discovery that no other thread uses any more.
#[no_mangle]
pub unsafe extern "C" fn consul_discovery_free(d: *mut consul_discovery) {
    ffi::catch_or((), || {
        // SAFETY: forwarded contract.
        if let Some(d) = unsafe { ffi::take::<consul_discovery>(d) } {
            d.value.close();
        }
    })
}
