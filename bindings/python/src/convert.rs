//! Conversions between Python arguments and SDK types: tuples and JSON text out, option
//! names and registrations in (parsed and validated by the SDK).
use std::time::Duration;

use consul_sdk::{
    AgentMember, CheckArgs, Consistency, DurationArg, Error, KvPair, QueryMeta, QueryOptions, RegistrationSpec,
    ServiceRegistration, Strategy, UserEvent,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::{error::*, runtime::*};

/// A KV pair as `(key, value, flags, create_index, modify_index, lock_index, session)`.
pub(crate) fn kv_tuple(py: Python<'_>, p: &KvPair) -> PyResult<Py<PyAny>> {
    let value = p.value.as_ref().map(|v| PyBytes::new(py, v));
    obj(py, (p.key.as_str(), value, p.flags, p.create_index, p.modify_index, p.lock_index, p.session.as_deref()))
}

pub(crate) fn kv_opt(py: Python<'_>, p: Option<&KvPair>) -> PyResult<Py<PyAny>> {
    match p {
        Some(p) => kv_tuple(py, p),
        None => Ok(py.None()),
    }
}

pub(crate) fn kv_list(py: Python<'_>, l: &[KvPair]) -> PyResult<Py<PyAny>> {
    let items = l.iter().map(|p| kv_tuple(py, p)).collect::<PyResult<Vec<_>>>()?;
    obj(py, items)
}

/// A member as `(name, addr, port, tags, status)`.
pub(crate) fn member_tuple(py: Python<'_>, m: &AgentMember) -> PyResult<Py<PyAny>> {
    obj(py, (m.name.as_str(), m.addr.as_str(), m.port, m.tags.clone(), m.status))
}

pub(crate) fn member_list(py: Python<'_>, l: &[AgentMember]) -> PyResult<Py<PyAny>> {
    let items = l.iter().map(|m| member_tuple(py, m)).collect::<PyResult<Vec<_>>>()?;
    obj(py, items)
}

/// A user event as `(id, name, payload, node_filter, service_filter, tag_filter, version, ltime)`.
pub(crate) fn event_tuple(py: Python<'_>, e: &UserEvent) -> PyResult<Py<PyAny>> {
    let payload = e.payload.as_ref().map(|p| PyBytes::new(py, p));
    obj(
        py,
        (
            e.id.as_str(),
            e.name.as_str(),
            payload,
            e.node_filter.as_str(),
            e.service_filter.as_str(),
            e.tag_filter.as_str(),
            e.version,
            e.ltime,
        ),
    )
}

pub(crate) fn event_list(py: Python<'_>, l: &[UserEvent]) -> PyResult<Py<PyAny>> {
    let items = l.iter().map(|e| event_tuple(py, e)).collect::<PyResult<Vec<_>>>()?;
    obj(py, items)
}

/// A consistency mode by name, parsed by the SDK.
pub(crate) fn consistency(c: &str) -> consul_sdk::Result<Consistency> {
    c.parse()
}

/// Seconds from Python, checked by the SDK.
pub(crate) fn secs(arg: &str, s: f64) -> consul_sdk::Result<Duration> {
    consul_sdk::duration::from_secs(arg, s)
}

pub(crate) fn opt_secs(arg: &str, s: Option<f64>) -> consul_sdk::Result<Option<Duration>> {
    s.map(|s| secs(arg, s)).transpose()
}

pub(crate) fn query(py: Python<'_>, c: &str, index: Option<u64>, wait: Option<f64>) -> PyResult<QueryOptions> {
    let q = (|| {
        Ok::<_, Error>(QueryOptions {
            consistency: consistency(c)?,
            index,
            wait: opt_secs("wait", wait)?,
            datacenter: None,
            near: None,
            token: None,
        })
    })();
    q.map_err(|e| to_py_err(py, e))
}

pub(crate) fn meta_index(m: &QueryMeta) -> u64 {
    m.index
}

/// A check as the Python layer passes it:
/// `(kind, target, ttl, interval, timeout, deregister_after)`, durations in seconds.
pub(crate) type CheckTuple = (String, String, Option<f64>, Option<f64>, Option<f64>, Option<f64>);

/// The SDK's neutral check arguments (validated by [`consul_sdk::CheckArgs::resolve`]).
pub(crate) fn check_args(c: CheckTuple) -> CheckArgs {
    let (kind, target, ttl, interval, timeout, dereg) = c;
    CheckArgs {
        kind,
        target: Some(target),
        ttl: ttl.map(DurationArg::Secs),
        interval: interval.map(DurationArg::Secs),
        timeout: timeout.map(DurationArg::Secs),
        deregister_critical_after: dereg.map(DurationArg::Secs),
    }
}

/// A registration from the Python layer's arguments, validated by the SDK.
pub(crate) fn build_registration(
    name: String,
    id: Option<String>,
    address: Option<String>,
    port: Option<u16>,
    tags: Vec<String>,
    meta: std::collections::BTreeMap<String, String>,
    checks: Vec<CheckTuple>,
) -> consul_sdk::Result<ServiceRegistration> {
    RegistrationSpec {
        name,
        id,
        address,
        port: port.map(f64::from),
        tags,
        meta,
        checks: checks.into_iter().map(check_args).collect(),
    }
    .resolve()
}

/// Seconds from a number of seconds or a Go duration string, parsed by the SDK (the one
/// implementation behind `consul_rs.parse_duration`).
#[pyfunction]
pub(crate) fn parse_duration(py: Python<'_>, value: &Bound<'_, PyAny>, name: &str) -> PyResult<f64> {
    let d = if let Ok(s) = value.extract::<String>() {
        consul_sdk::duration::parse(name, &s)
    } else {
        consul_sdk::duration::from_secs(name, value.extract::<f64>()?)
    };
    d.map(|d| d.as_secs_f64()).map_err(|e| to_py_err(py, e))
}

/// Checks one check's arguments as `register` will (raises `InvalidArgumentError`).
#[pyfunction]
#[pyo3(signature = (kind, target, ttl=None, interval=None, timeout=None, deregister_critical_after=None))]
pub(crate) fn validate_check(
    py: Python<'_>,
    kind: String,
    target: String,
    ttl: Option<f64>,
    interval: Option<f64>,
    timeout: Option<f64>,
    deregister_critical_after: Option<f64>,
) -> PyResult<()> {
    check_args((kind, target, ttl, interval, timeout, deregister_critical_after))
        .resolve()
        .map(|_| ())
        .map_err(|e| to_py_err(py, e))
}

/// Checks a registration's arguments as `register` will, without sending it.
#[pyfunction]
#[pyo3(signature = (name, id=None, address=None, port=None, tags=vec![], meta=Default::default(), checks=vec![]))]
// One argument per keyword of the Python `register()` signature it validates.
#[allow(clippy::too_many_arguments)]
pub(crate) fn validate_registration(
    py: Python<'_>,
    name: String,
    id: Option<String>,
    address: Option<String>,
    port: Option<u16>,
    tags: Vec<String>,
    meta: std::collections::BTreeMap<String, String>,
    checks: Vec<CheckTuple>,
) -> PyResult<()> {
    build_registration(name, id, address, port, tags, meta, checks).map(|_| ()).map_err(|e| to_py_err(py, e))
}

/// Checks an option by name as the SDK parses it: `kind` is `consistency`, `strategy` or
/// `check`.
#[pyfunction]
pub(crate) fn validate_option(py: Python<'_>, kind: &str, value: &str) -> PyResult<()> {
    let r = match kind {
        "consistency" => value.parse::<Consistency>().map(|_| ()),
        "strategy" => value.parse::<Strategy>().map(|_| ()),
        "check" => value.parse::<consul_sdk::CheckType>().map(|_| ()),
        other => Err(Error::invalid("kind", format!("unknown option kind {other:?}"))),
    };
    r.map_err(|e| to_py_err(py, e))
}
