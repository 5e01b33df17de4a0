//! Option parsing and registration validation, once for every binding.
//!
//! Python, Node and C each take options in their own shape (strings, numbers of seconds or
//! milliseconds, enums), but they all funnel them through here, so the same input is accepted or
//! refused with the same error text everywhere. `tests/validation_cases.json` is the table every
//! binding's test suite replays to prove it.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::discovery::Strategy;
use crate::error::{Error, Result};
use crate::types::{CheckDefinition, CheckKind, Consistency, ServiceRegistration};

impl FromStr for Consistency {
    type Err = Error;

    /// `""` or `default`, `stale`, `consistent`.
    fn from_str(s: &str) -> Result<Consistency> {
        Ok(match s {
            "" | "default" => Consistency::Default,
            "stale" => Consistency::Stale,
            "consistent" => Consistency::Consistent,
            other => return Err(Error::invalid("consistency", format!("unknown mode {other:?}"))),
        })
    }
}

impl Consistency {
    /// The mode as [`FromStr`] reads it (`default`, `stale`, `consistent`).
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Default => "default",
            Consistency::Stale => "stale",
            Consistency::Consistent => "consistent",
        }
    }
}

impl FromStr for Strategy {
    type Err = Error;

    /// `round_robin`, `random`, `weighted`, `consistent_hash`, `nearest` (dashes allowed).
    fn from_str(s: &str) -> Result<Strategy> {
        Strategy::parse(s)
    }
}

/// The kind of a check, without its target: what bindings name with a string or an enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckType {
    /// [`CheckKind::Http`].
    Http,
    /// [`CheckKind::Tcp`].
    Tcp,
    /// [`CheckKind::Grpc`].
    Grpc,
    /// [`CheckKind::Ttl`].
    Ttl,
}

impl FromStr for CheckType {
    type Err = Error;

    /// `http`, `tcp`, `grpc`, `ttl`.
    fn from_str(s: &str) -> Result<CheckType> {
        Ok(match s {
            "http" => CheckType::Http,
            "tcp" => CheckType::Tcp,
            "grpc" => CheckType::Grpc,
            "ttl" => CheckType::Ttl,
            other => return Err(Error::invalid("check", format!("unknown check kind {other:?}"))),
        })
    }
}

impl CheckType {
    /// The name [`FromStr`] reads.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckType::Http => "http",
            CheckType::Tcp => "tcp",
            CheckType::Grpc => "grpc",
            CheckType::Ttl => "ttl",
        }
    }

    /// What the target of this kind is called in error messages.
    fn target_name(self) -> &'static str {
        match self {
            CheckType::Http => "url",
            CheckType::Tcp => "address",
            CheckType::Grpc => "target",
            CheckType::Ttl => "ttl",
        }
    }
}

/// Go-duration parsing and formatting, re-exported from the core so there is one implementation.
pub mod duration {
    use std::time::Duration;

    use crate::error::{Error, Result};
    pub use consul_core::duration::{format_go_duration, parse_go_duration};

    /// A duration from a Go duration string (`"10s"`, `"1m30s"`, `"250ms"`); `arg` names the
    /// option in the error.
    pub fn parse(arg: &str, s: &str) -> Result<Duration> {
        parse_go_duration(s).map_err(|e| Error::invalid(arg, e))
    }

    /// A duration from a number of seconds (Python's and C's unit, Node's milliseconds / 1000).
    /// NaN, infinities and negative numbers are refused with one text whatever the unit.
    pub fn from_secs(arg: &str, secs: f64) -> Result<Duration> {
        if !secs.is_finite() || secs < 0.0 {
            return Err(Error::invalid(arg, "must be a finite, non-negative duration"));
        }
        Duration::try_from_secs_f64(secs).map_err(|_| Error::invalid(arg, "must be a finite, non-negative duration"))
    }

    /// [`from_secs`] for milliseconds.
    pub fn from_millis(arg: &str, ms: f64) -> Result<Duration> {
        from_secs(arg, ms / 1000.0)
    }
}

/// How a binding hands over a duration: a number of seconds or a Go duration string (in JSON: a
/// number or a string).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum DurationArg {
    /// Seconds.
    Secs(f64),
    /// A Go duration string.
    Text(String),
}

impl DurationArg {
    /// The duration, validated; `arg` names the option in the error.
    pub fn resolve(&self, arg: &str) -> Result<Duration> {
        match self {
            DurationArg::Secs(s) => duration::from_secs(arg, *s),
            DurationArg::Text(t) => duration::parse(arg, t),
        }
    }
}

impl CheckDefinition {
    /// A check from the pieces every binding has: the kind by name, the target (URL, address or
    /// gRPC target; ignored for TTL checks), the TTL (TTL checks only, required and positive)
    /// and the optional timings. Refuses what the agent would refuse or silently misread: an
    /// unknown kind, an empty target, a missing, zero or negative TTL.
    pub fn build(
        kind: &str,
        target: Option<&str>,
        ttl: Option<Duration>,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        deregister_critical_after: Option<Duration>,
    ) -> Result<CheckDefinition> {
        let ty: CheckType = kind.parse()?;
        let target = target.unwrap_or_default().to_string();
        let kind = match ty {
            CheckType::Http => CheckKind::Http { url: target },
            CheckType::Tcp => CheckKind::Tcp { address: target },
            CheckType::Grpc => CheckKind::Grpc { target },
            CheckType::Ttl => CheckKind::Ttl { ttl: ttl.ok_or_else(|| Error::invalid("ttl", "must be given"))? },
        };
        let def = CheckDefinition { kind, interval, timeout, deregister_critical_after };
        def.validate()?;
        Ok(def)
    }

    /// The kind's name.
    pub fn check_type(&self) -> CheckType {
        match self.kind {
            CheckKind::Http { .. } => CheckType::Http,
            CheckKind::Tcp { .. } => CheckType::Tcp,
            CheckKind::Grpc { .. } => CheckType::Grpc,
            CheckKind::Ttl { .. } => CheckType::Ttl,
        }
    }

    /// Checks a definition however it was built.
    pub fn validate(&self) -> Result<()> {
        let ty = self.check_type();
        match &self.kind {
            CheckKind::Http { url: t } | CheckKind::Tcp { address: t } | CheckKind::Grpc { target: t } => {
                if t.trim().is_empty() {
                    return Err(Error::invalid("check", format!("{} must not be empty", ty.target_name())));
                }
            }
            CheckKind::Ttl { ttl } => {
                if ttl.is_zero() {
                    return Err(Error::invalid("ttl", "must be positive"));
                }
            }
        }
        Ok(())
    }
}

impl ServiceRegistration {
    /// Checks a registration before it is sent: a non-empty name and valid checks.
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(Error::invalid("name", "must not be empty"));
        }
        self.checks.iter().try_for_each(CheckDefinition::validate)
    }
}

/// One check as a binding hands it over, before validation (see [`RegistrationSpec`]).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckArgs {
    /// `http`, `tcp`, `grpc` or `ttl`.
    pub kind: String,
    /// URL, address or gRPC target.
    pub target: Option<String>,
    /// TTL (TTL checks).
    pub ttl: Option<DurationArg>,
    /// Interval.
    pub interval: Option<DurationArg>,
    /// Timeout.
    pub timeout: Option<DurationArg>,
    /// Deregister after critical this long.
    pub deregister_critical_after: Option<DurationArg>,
}

impl CheckArgs {
    /// The validated definition.
    pub fn resolve(&self) -> Result<CheckDefinition> {
        let d = |v: &Option<DurationArg>, arg: &str| v.as_ref().map(|v| v.resolve(arg)).transpose();
        // The kind first: an unknown kind is the error, whatever else is wrong.
        let _: CheckType = self.kind.parse()?;
        CheckDefinition::build(
            &self.kind,
            self.target.as_deref(),
            d(&self.ttl, "ttl")?,
            d(&self.interval, "interval")?,
            d(&self.timeout, "timeout")?,
            d(&self.deregister_critical_after, "deregister_critical_after")?,
        )
    }
}

/// A registration in the bindings' neutral shape (the JSON of `validation_cases.json`, and of the
/// C library's `consul_register_spec`): `{"name", "id", "address", "port", "tags", "meta",
/// "checks": [{"kind", "target", "ttl", "interval", "timeout", "deregister_critical_after"}]}`
/// with durations as seconds or Go duration strings.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrationSpec {
    /// Service name.
    pub name: String,
    /// Instance ID.
    pub id: Option<String>,
    /// Address.
    pub address: Option<String>,
    /// Port.
    pub port: Option<f64>,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// Checks.
    pub checks: Vec<CheckArgs>,
}

impl RegistrationSpec {
    /// Reads the neutral JSON shape; unknown fields are refused.
    pub fn from_json(v: &serde_json::Value) -> Result<RegistrationSpec> {
        RegistrationSpec::deserialize(v).map_err(|e| Error::invalid("registration", e))
    }

    /// The validated registration.
    pub fn resolve(&self) -> Result<ServiceRegistration> {
        if self.name.is_empty() {
            return Err(Error::invalid("name", "must not be empty"));
        }
        let reg = ServiceRegistration {
            id: self.id.clone(),
            name: self.name.clone(),
            tags: self.tags.clone(),
            address: self.address.clone(),
            port: self.port.map(port).transpose()?,
            meta: self.meta.clone(),
            checks: self.checks.iter().map(CheckArgs::resolve).collect::<Result<_>>()?,
        };
        reg.validate()?;
        Ok(reg)
    }
}

/// A port from a binding's number type: a whole number in 0..=65535.
pub fn port(p: f64) -> Result<u16> {
    if p.fract() != 0.0 || !(0.0..=65535.0).contains(&p) {
        return Err(Error::invalid("port", format!("{p} is out of range 0-65535")));
    }
    Ok(p as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_with_one_text() {
        assert_eq!("stale".parse::<Consistency>().ok(), Some(Consistency::Stale));
        assert_eq!("".parse::<Consistency>().ok(), Some(Consistency::Default));
        assert_eq!(
            "quorum".parse::<Consistency>().map_err(|e| e.message).err().as_deref(),
            Some("consistency: unknown mode \"quorum\"")
        );
        assert_eq!("consistent-hash".parse::<Strategy>().ok(), Some(Strategy::ConsistentHash));
        assert_eq!("ttl".parse::<CheckType>().ok(), Some(CheckType::Ttl));
        assert!("script".parse::<CheckType>().is_err());
        assert_eq!(
            duration::from_secs("ttl", -1.0).map_err(|e| e.message).err().as_deref(),
            Some("ttl: must be a finite, non-negative duration")
        );
        assert_eq!(duration::parse("ttl", "1m30s").ok(), Some(Duration::from_secs(90)));
    }
}
