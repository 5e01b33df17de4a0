//! Query-string parsing with Consul's rules (`agent/http.go`): flags count by presence
//! (`?recurse`, `?recurse=1` and even `?recurse=false` all enable recursion), numbers and
//! durations are validated with Consul's error texts.

use std::time::Duration;

use axum::http::{HeaderMap, Uri};

use crate::duration::parse_go_duration;
use crate::replication::consensus::Consistency;
use crate::Error;

/// Decoded query parameters; repeated parameters keep every value.
#[derive(Debug, Default, Clone)]
pub struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl QueryParams {
    /// Parses the query string of `uri`.
    pub fn from_uri(uri: &Uri) -> Self {
        uri.query().map(Self::from_query).unwrap_or_default()
    }

    /// Parses a raw query string (the part after `?`).
    pub fn from_query(query: &str) -> Self {
        QueryParams {
            pairs: form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect(),
        }
    }

    /// Whether `name` is present at all.
    pub fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == name)
    }

    /// Every parameter, in request order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable parameter (`?tag=a&tag=b`).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Parses `name` as an unsigned integer; `what` names it in the error.
    pub fn u64(&self, name: &str, what: &str) -> Result<Option<u64>, Error> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.parse::<u64>().map(Some).map_err(|_| Error::BadRequest(format!("Invalid {what}: {v:?}"))),
        }
    }

    /// `?pretty`.
    pub fn pretty(&self) -> bool {
        self.has("pretty")
    }

    /// The consistency mode; `stale` with `consistent` is refused like Consul does.
    /// `max_stale=<duration>` is a bounded `stale` (past the bound this server is too far
    /// behind and the read goes through the leader).
    pub fn consistency(&self) -> Result<Consistency, Error> {
        let max_stale = match self.get("max_stale").filter(|v| !v.is_empty()) {
            Some(v) => {
                Some(parse_go_duration(v).map_err(|_| Error::BadRequest(format!("Invalid max_stale value {v:?}")))?)
            }
            None => None,
        };
        let stale = self.has("stale") || self.has("max_stale");
        let consistent = self.has("consistent");
        match (stale, consistent) {
            (true, true) => {
                Err(Error::BadRequest("Cannot specify ?stale with ?consistent, conflicting semantics.".into()))
            }
            (true, false) if !self.has("stale") => Ok(Consistency::MaxStale(max_stale.unwrap_or(Duration::MAX))),
            (true, false) => Ok(Consistency::Stale),
            (false, true) => Ok(Consistency::Consistent),
            (false, false) => Ok(Consistency::Default),
        }
    }

    /// `?dc`: accepted when it names this datacenter. A request for another datacenter the
    /// WAN pool knows is forwarded before any handler runs (`remote`), so a handler sees a
    /// foreign `dc` only when there is no path to it: Consul's 500 "No path to datacenter".
    pub fn check_dc(&self, local: &str) -> Result<(), Error> {
        match self.get("dc") {
            Some(dc) if !dc.is_empty() && !dc.eq_ignore_ascii_case(local) => {
                Err(Error::NoPathToDatacenter(dc.to_string()))
            }
            _ => Ok(()),
        }
    }
}

/// Blocking-query parameters (`?index`, `?wait`) plus the consistency mode.
#[derive(Debug, Clone, Copy)]
pub struct ReadParams {
    /// `?index`; 0 means a plain (non-blocking) read.
    pub index: u64,
    /// `?wait`, clamped to `max_query_time`; `default_query_time` when absent.
    pub wait: Duration,
    /// Consistency mode.
    pub consistency: Consistency,
}

impl ReadParams {
    /// Parses and validates the read parameters.
    pub fn parse(q: &QueryParams, default_wait: Duration, max_wait: Duration) -> Result<Self, Error> {
        let index = match q.get("index") {
            None | Some("") => 0,
            Some(v) => v.parse::<u64>().map_err(|_| Error::BadRequest("Invalid index".into()))?,
        };
        let wait = match q.get("wait") {
            None | Some("") => default_wait,
            Some(v) => {
                let d = parse_go_duration(v).map_err(|_| Error::BadRequest("Invalid wait time".into()))?;
                if d.is_zero() {
                    default_wait
                } else {
                    d.min(max_wait)
                }
            }
        };
        Ok(ReadParams { index, wait, consistency: q.consistency()? })
    }
}

/// The ACL token of a request: `?token=` wins, then `X-Consul-Token`, then
/// `Authorization: Bearer`. Accepted now, enforced once ACLs exist.
pub fn token(q: &QueryParams, headers: &HeaderMap) -> Option<String> {
    if let Some(t) = q.get("token").filter(|t| !t.is_empty()) {
        return Some(t.to_string());
    }
    if let Some(t) = headers.get("X-Consul-Token").and_then(|v| v.to_str().ok()).filter(|t| !t.is_empty()) {
        return Some(t.to_string());
    }
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> QueryParams {
        QueryParams::from_uri(&format!("/v1/kv/x?{s}").parse().expect("uri"))
    }

    #[test]
    fn presence_flags_and_numbers() {
        let p = q("recurse&flags=42&key%2Fx=a%20b");
        assert!(p.has("recurse"));
        assert_eq!(p.u64("flags", "flags").ok().flatten(), Some(42));
        assert_eq!(p.get("key/x"), Some("a b"));
        assert!(q("flags=x").u64("flags", "flags").is_err());
    }

    #[test]
    fn read_params() {
        let d = Duration::from_secs(300);
        let m = Duration::from_secs(600);
        let p = ReadParams::parse(&q("index=5&wait=20m"), d, m).expect("parse");
        assert_eq!((p.index, p.wait), (5, m));
        assert!(ReadParams::parse(&q("index=abc"), d, m).is_err());
        assert!(ReadParams::parse(&q("wait=5"), d, m).is_err());
        assert!(ReadParams::parse(&q("stale&consistent"), d, m).is_err());
        assert_eq!(ReadParams::parse(&q("stale"), d, m).map(|p| p.consistency).ok(), Some(Consistency::Stale));
    }

    /// `?max_stale=d` is a bounded `?stale` (Consul's `QueryOptions.MaxStaleDuration`); a bare
    /// `?max_stale` is unbounded; `?stale` wins over it; a bad duration is a 400.
    #[test]
    fn max_stale_bounds_stale_reads() {
        assert_eq!(q("max_stale=5s").consistency().ok(), Some(Consistency::MaxStale(Duration::from_secs(5))));
        assert_eq!(q("max_stale").consistency().ok(), Some(Consistency::MaxStale(Duration::MAX)));
        assert_eq!(q("stale&max_stale=5s").consistency().ok(), Some(Consistency::Stale));
        assert!(matches!(q("max_stale=soon").consistency(), Err(Error::BadRequest(m)) if m.contains("max_stale")));
        assert!(q("max_stale=1s&consistent").consistency().is_err());
    }

    #[test]
    fn token_sources() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer abc".parse().expect("header"));
        assert_eq!(token(&q(""), &h).as_deref(), Some("abc"));
        h.insert("x-consul-token", "def".parse().expect("header"));
        assert_eq!(token(&q(""), &h).as_deref(), Some("def"));
        assert_eq!(token(&q("token=ghi"), &h).as_deref(), Some("ghi"));
    }

    #[test]
    fn dc_check() {
        assert!(q("dc=dc1").check_dc("dc1").is_ok());
        assert!(q("dc=DC1").check_dc("dc1").is_ok());
        assert!(matches!(q("dc=other").check_dc("dc1"), Err(Error::NoPathToDatacenter(_))));
    }
}
