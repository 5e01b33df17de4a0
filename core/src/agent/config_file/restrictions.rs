//! Keys whose class depends on their value — an address equal to `client_addr`, the built-in
//! CA provider, a limit that does not restrict, a handshake timeout no stricter than the fixed
//! one — and the checks that need every source first (addresses against the final
//! `client_addr`/`bind_addr`, `ports.https` against the final certificates). Their class and
//! reason live in [`super::classes`] like every other key's.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Map, Value};

use super::classes::{class_of, index};
use super::{parse_ip_list_first, Ctx, Result, Settings};
use crate::api::http::unix_socket::UnixSocketConfig;
use crate::error::Error;

/// The agent's fixed HTTPS handshake timeout: a configured timeout at least this long, or 0
/// (none), asks for nothing stricter than what happens.
fn fixed_handshake_timeout() -> Duration {
    crate::api::http::HTTPS_HANDSHAKE_TIMEOUT
}

/// A statsd/DogStatsD destination, `host:port` (a name is resolved once, when the configuration
/// is read); "" unsets.
fn udp_target(ctx: &Ctx<'_>, key: &str, v: &Value) -> Result<Option<std::net::SocketAddr>> {
    use std::net::ToSocketAddrs;
    let s = ctx.string(key, v)?;
    if s.is_empty() {
        return Ok(None);
    }
    let mut addrs =
        s.to_socket_addrs().map_err(|e| ctx.bad(key, &format!("{s:?} is not a host:port address ({e})")))?;
    addrs.next().map(Some).ok_or_else(|| ctx.bad(key, &format!("{s:?} resolves to no address")))
}

/// The reason of a listed key (for errors raised outside the generic walk).
fn reason(key: &str) -> &'static str {
    class_of(key).map_or("not supported", |(_, r)| r)
}

impl Settings {
    /// Top-level keys with value-dependent rules. Returns false when `key` is none of them.
    pub(super) fn apply_special(&mut self, ctx: &Ctx<'_>, key: &str, v: &Value) -> Result<bool> {
        match key {
            "addresses" => {
                for block in ctx.blocks(key, v)? {
                    for (k, v) in block {
                        let path = format!("addresses.{k}");
                        match k.as_str() {
                            "http" => {
                                // A later source overrides an earlier one; "" unsets.
                                let (ip, unix) = http_address(ctx, &path, v)?;
                                match ip {
                                    Some(ip) => self.listener_addrs.insert(path, ip),
                                    None => self.listener_addrs.remove(&path),
                                };
                                self.http_unix = unix.map(|p| (p, ip.is_some()));
                            }
                            "dns" | "https" | "grpc" | "grpc_tls" => {
                                // A later source overrides an earlier one; "" unsets.
                                match address(ctx, &path, v)? {
                                    Some(ip) => self.listener_addrs.insert(path, ip),
                                    None => self.listener_addrs.remove(&path),
                                };
                            }
                            _ => return Err(ctx.unknown(&path)),
                        }
                    }
                }
            }
            "serf_lan" => self.serf_lan_addr = address(ctx, key, v)?,
            "unix_sockets" => {
                for block in ctx.blocks(key, v)? {
                    for (k, v) in block {
                        let path = format!("unix_sockets.{k}");
                        let text = ctx.string(&path, v)?;
                        let set = Some(text.clone()).filter(|s| !s.is_empty());
                        match k.as_str() {
                            "mode" => {
                                self.unix_socket_perms.0 = set
                                    .map(|m| UnixSocketConfig::parse_mode(&m))
                                    .transpose()
                                    .map_err(|e| ctx.bad(&path, &e))?
                            }
                            "user" => self.unix_socket_perms.1 = set,
                            "group" => self.unix_socket_perms.2 = set,
                            _ => return Err(ctx.unknown(&path)),
                        }
                    }
                }
            }
            "partition" => {
                let p = ctx.string(key, v)?;
                if !(p.is_empty() || p == "default") {
                    return Err(ctx.refused(key, reason(key)));
                }
            }
            "raft_protocol" => {
                let n = ctx.int(key, v)?;
                if n != 3 {
                    return Err(ctx.bad(key, &format!("version {n} is not supported (Consul 1.16 and later speak 3)")));
                }
                self.note_no_effect(key);
            }
            "check_output_max_size" => {
                let n = ctx.uint(key, v, u64::MAX)?;
                if n < crate::local::def::MAX_OUTPUT as u64 {
                    return Err(ctx.refused(key, reason(key)));
                }
                self.note_with(key, "check output is kept up to 4096 bytes, no more than asked");
            }
            "experiments" => {
                ctx.string_list(key, v)?;
                self.note_no_effect(key);
            }
            "server_rejoin_age_max"
            | "session_ttl_min"
            | "discovery_max_stale"
            | "advertise_reconnect_timeout"
            | "primary_gateways_interval" => {
                ctx.duration(key, v)?;
                self.note_no_effect(key);
            }
            "connect" => {
                for block in ctx.blocks(key, v)? {
                    self.apply_connect(ctx, block)?;
                }
            }
            "http_config" => {
                for block in ctx.blocks(key, v)? {
                    self.apply_http_config(ctx, block)?;
                }
            }
            "limits" => {
                for block in ctx.blocks(key, v)? {
                    self.apply_limits(ctx, block)?;
                }
            }
            "telemetry" => {
                for block in ctx.blocks(key, v)? {
                    self.apply_telemetry(ctx, block)?;
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Records a key accepted with no effect, with a reason of its own (value-dependent keys).
    pub(super) fn note_with(&mut self, key: &str, reason: &str) {
        self.no_effect.insert(key.to_string(), reason.to_string());
    }

    fn apply_connect(&mut self, ctx: &Ctx<'_>, block: &Map<String, Value>) -> Result<()> {
        for (k, v) in block {
            let path = format!("connect.{k}");
            match k.as_str() {
                "ca_provider" => {
                    let p = ctx.string(&path, v)?;
                    if !(p.is_empty() || p == "consul") {
                        return Err(ctx.refused(&path, reason(&path)));
                    }
                }
                "enabled" => self.agent.connect.enabled = ctx.bool(&path, v)?,
                // Consul translates both spellings (`leaf_cert_ttl`, `LeafCertTTL`) here.
                "ca_config" => {
                    for cfg in ctx.blocks(&path, v)? {
                        for (ck, cv) in cfg {
                            let canonical = ca_config_key(ck).ok_or_else(|| ctx.unknown(&format!("{path}.{ck}")))?;
                            let key = format!("{path}.{canonical}");
                            let c = &mut self.agent.connect;
                            match canonical {
                                "cluster_id" => c.cluster_id = Some(ctx.string(&key, cv)?).filter(|s| !s.is_empty()),
                                "leaf_cert_ttl" => c.leaf_cert_ttl = ctx.duration(&key, cv)?,
                                "root_cert_ttl" => c.root_cert_ttl = ctx.duration(&key, cv)?,
                                "intermediate_cert_ttl" => c.intermediate_cert_ttl = ctx.duration(&key, cv)?,
                                "private_key_type" => c.private_key_type = ctx.string(&key, cv)?,
                                "private_key_bits" => c.private_key_bits = ctx.uint(&key, cv, 16_384)?,
                                _ => self.apply_classified(ctx, &key, cv)?,
                            }
                        }
                    }
                }
                _ => self.apply_classified(ctx, &path, v)?,
            }
        }
        Ok(())
    }

    fn apply_http_config(&mut self, ctx: &Ctx<'_>, block: &Map<String, Value>) -> Result<()> {
        for (k, v) in block {
            let path = format!("http_config.{k}");
            match k.as_str() {
                "response_headers" => {
                    for headers in ctx.blocks(&path, v)? {
                        for (name, value) in headers {
                            let p = format!("{path}.{name}");
                            let value = ctx.string(&p, value)?;
                            axum::http::HeaderName::from_bytes(name.as_bytes())
                                .map_err(|_| ctx.bad(&p, "is not a valid HTTP header name"))?;
                            axum::http::HeaderValue::from_str(&value)
                                .map_err(|_| ctx.bad(&p, "is not a valid HTTP header value"))?;
                            let headers = &mut self.agent.http_response_headers;
                            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                            headers.push((name.clone(), value));
                        }
                    }
                }
                // false: `?cached` reads bypass the agent cache (answered as uncached reads).
                "use_cache" => self.agent.http_use_cache = ctx.bool(&path, v)?,
                "max_header_bytes" => {
                    if ctx.int(&path, v)? > 0 {
                        return Err(ctx.refused(&path, reason(&path)));
                    }
                }
                _ => self.apply_classified(ctx, &path, v)?,
            }
        }
        Ok(())
    }

    fn apply_telemetry(&mut self, ctx: &Ctx<'_>, block: &Map<String, Value>) -> Result<()> {
        for (k, v) in block {
            let path = format!("telemetry.{k}");
            let t = &mut self.agent.telemetry;
            match k.as_str() {
                "disable_hostname" => t.disable_hostname = ctx.bool(&path, v)?,
                "disable_metrics" => t.disabled = ctx.bool(&path, v)?,
                "metrics_prefix" => t.metrics_prefix = ctx.string(&path, v)?,
                "prefix_filter" => self.telemetry_filter.0 = ctx.string_list(&path, v)?,
                "filter_default" => self.telemetry_filter.1 = ctx.bool(&path, v)?,
                "prometheus_retention_time" => t.prometheus_retention = ctx.duration(&path, v)?,
                "statsd_address" => t.statsd_address = udp_target(ctx, &path, v)?,
                "dogstatsd_addr" => t.dogstatsd_addr = udp_target(ctx, &path, v)?,
                "dogstatsd_tags" => t.dogstatsd_tags = ctx.string_list(&path, v)?,
                _ => self.apply_classified(ctx, &path, v)?,
            }
        }
        // Rules and default may come from different sources: parse what is known so far, so a
        // bad rule names its source.
        let (rules, default_allow) = &self.telemetry_filter;
        self.agent.telemetry.filter = crate::metrics::PrefixFilter::new(rules, *default_allow)
            .map_err(|e| ctx.bad("telemetry.prefix_filter", &e.to_string()))?;
        Ok(())
    }

    fn apply_limits(&mut self, ctx: &Ctx<'_>, block: &Map<String, Value>) -> Result<()> {
        for (k, v) in block {
            let key = format!("limits.{k}");
            let l = &mut self.agent.limits;
            match k.as_str() {
                "kv_max_value_size" => l.kv_max_value_size = ctx.uint(&key, v, usize::MAX as u64)? as usize,
                "txn_max_req_len" => l.txn_max_req_len = ctx.uint(&key, v, usize::MAX as u64)? as usize,
                // 0 means no limit, as in Consul.
                "http_max_conns_per_client" => {
                    l.http_max_conns_per_client = ctx.uint(&key, v, u32::MAX as u64)? as usize
                }
                // A consul-rs extension (Consul's Go server has no such setting).
                "http_read_header_timeout" => {
                    l.http_read_header_timeout = ctx.duration(&key, v)?;
                    if l.http_read_header_timeout < std::time::Duration::from_millis(100) {
                        return Err(ctx.bad(&key, "must be at least 100ms"));
                    }
                }
                "rpc_max_conns_per_client" => l.rpc_max_conns_per_client = ctx.uint(&key, v, u32::MAX as u64)? as usize,
                // consul-rs extensions bounding what a snapshot restore may inflate to.
                "snapshot_max_size" => {
                    l.snapshot_max_size = ctx.uint(&key, v, u64::MAX)?;
                    if l.snapshot_max_size == 0 {
                        return Err(ctx.bad(&key, "must be at least 1 byte"));
                    }
                }
                "snapshot_max_inflate_ratio" => {
                    l.snapshot_max_inflate_ratio = ctx.uint(&key, v, 1_000_000)?;
                    if l.snapshot_max_inflate_ratio == 0 {
                        return Err(ctx.bad(&key, "must be at least 1"));
                    }
                }
                // Consul's default, -1, and 0 mean no limit (see `RateLimiter::new`).
                "rpc_rate" => {
                    let rate = ctx.float(&key, v)?;
                    if rate.is_nan() {
                        return Err(ctx.bad(&key, "must be a number"));
                    }
                    l.rpc_rate = rate;
                }
                // Honoured on the server RPC and serf_lan ports; 0 is Consul's "no deadline".
                "rpc_handshake_timeout" => l.rpc_handshake_timeout = ctx.duration(&key, v)?,
                "https_handshake_timeout" => {
                    let d = ctx.duration(&key, v)?;
                    let fixed = fixed_handshake_timeout();
                    if !d.is_zero() && d < fixed {
                        return Err(ctx.refused(&key, reason(&key)));
                    }
                    if !d.is_zero() {
                        self.note_with(&key, "the agent's fixed 5 s handshake timeout is at least as strict");
                    }
                }
                "rpc_client_timeout" => {
                    ctx.duration(&key, v)?;
                    self.note_no_effect(&key);
                }
                "rpc_max_burst" => {
                    l.rpc_max_burst = ctx.uint(&key, v, u32::MAX as u64)? as u32;
                }
                "request_limits" => {
                    for rl in ctx.blocks(&key, v)? {
                        self.apply_request_limits(ctx, rl)?;
                    }
                }
                _ => self.apply_classified(ctx, &key, v)?,
            }
        }
        Ok(())
    }

    fn apply_request_limits(&mut self, ctx: &Ctx<'_>, block: &Map<String, Value>) -> Result<()> {
        for (k, v) in block {
            let key = format!("limits.request_limits.{k}");
            match k.as_str() {
                "mode" => match ctx.string(&key, v)?.as_str() {
                    "" | "disabled" => {}
                    // Consul only logs what it would have rejected.
                    "permissive" => self.note_with(&key, "permissive mode rejects nothing"),
                    "enforcing" => return Err(ctx.refused(&key, reason(&key))),
                    other => {
                        return Err(ctx.bad(&key, &format!("{other:?} is not one of disabled, permissive, enforcing")))
                    }
                },
                "read_rate" | "write_rate" => {
                    ctx.float(&key, v)?;
                    self.note_no_effect(&key);
                }
                _ => self.apply_classified(ctx, &key, v)?,
            }
        }
        Ok(())
    }

    /// After all sources: per-listener addresses must be where the listeners bind anyway, and
    /// `ports.https` without any certificate opens no listener (there is nothing to serve TLS
    /// with) when HTTP is on.
    pub(super) fn settle_listeners(&mut self) -> Result<()> {
        let client = self.agent.client_addr;
        for (key, ip) in &self.listener_addrs {
            if *ip != client {
                return Err(Error::Config(format!(
                    "{key}: {ip} differs from client_addr {client}: {}; the agent refuses to start rather than ignore it",
                    reason(key)
                )));
            }
        }
        if let Some(ip) = self.serf_lan_addr {
            if ip != self.agent.bind_addr {
                return Err(Error::Config(format!(
                    "serf_lan: {ip} differs from bind_addr {}: {}; the agent refuses to start rather than ignore it",
                    self.agent.bind_addr,
                    reason("serf_lan")
                )));
            }
        }
        if let Some((path, with_ip)) = &self.http_unix {
            let (mode, user, group) = self.unix_socket_perms.clone();
            self.agent.http_unix_socket = Some(UnixSocketConfig { path: path.clone(), mode, user, group });
            // Only the socket named: no TCP listener for HTTP, as in Consul.
            if !with_ip {
                self.agent.ports.http = None;
            }
        } else if self.unix_socket_perms != (None, None, None) {
            self.note_with("unix_sockets", "no Unix socket listener is configured (addresses.http = \"unix://…\")");
        }
        let http_on = self.agent.ports.http.is_some() || self.agent.http_unix_socket.is_some();
        let ports = &mut self.agent.ports;
        if ports.https.is_some() && http_on && !self.agent.tls.https().has_cert() {
            ports.https = None;
            self.note_with(
                "ports.https",
                "no certificate (tls.https or tls.defaults cert_file/key_file): no HTTPS listener is opened",
            );
        }
        Ok(())
    }
}

/// A listener address: one IP (the first of a space-separated list, as `client_addr`); `None`
/// for an empty string. Unix sockets and go-sockaddr templates are refused by name.
fn address(ctx: &Ctx<'_>, key: &str, v: &Value) -> Result<Option<IpAddr>> {
    let s = ctx.string(key, v)?;
    if s.trim().is_empty() {
        return Ok(None);
    }
    if s.trim_start().starts_with("unix://") {
        return Err(ctx.refused(key, "Unix socket listeners are not supported"));
    }
    parse_ip_list_first(&s).map(Some).map_err(|e| ctx.bad(key, &e))
}

/// `addresses.http`: a space-separated list of at most one IP and one `unix:///path` socket.
fn http_address(ctx: &Ctx<'_>, key: &str, v: &Value) -> Result<(Option<IpAddr>, Option<std::path::PathBuf>)> {
    let s = ctx.string(key, v)?;
    let (mut ip, mut unix) = (None, None);
    for word in s.split_whitespace() {
        if let Some(path) = word.strip_prefix("unix://") {
            if path.is_empty() || unix.is_some() {
                return Err(ctx.bad(key, "name one Unix socket path, as unix:///path"));
            }
            unix = Some(std::path::PathBuf::from(path));
        } else if ip.is_none() {
            ip = Some(parse_ip_list_first(word).map_err(|e| ctx.bad(key, &e))?);
        }
    }
    Ok((ip, unix))
}

/// The listed `connect.ca_config` key `k` stands for, compared the way Consul translates them
/// (case and underscores ignored: `LeafCertTTL` is `leaf_cert_ttl`).
fn ca_config_key(k: &str) -> Option<&'static str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('_', "");
    let want = norm(k);
    index().keys().filter_map(|key| key.strip_prefix("connect.ca_config.")).find(|c| norm(c) == want)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn apply(v: Value) -> std::result::Result<Settings, String> {
        let mut s = Settings::new(false);
        s.apply_value(&v, "t.json").and_then(|()| s.finish()).map_err(|e| e.to_string())?;
        Ok(s)
    }

    fn err(v: Value) -> String {
        apply(v.clone()).err().unwrap_or_else(|| panic!("{v} was accepted"))
    }

    #[test]
    fn addresses_equal_to_client_addr_are_accepted_others_refused() {
        let s = apply(json!({"addresses": {"dns": "127.0.0.1", "http": "127.0.0.1", "https": "127.0.0.1",
            "grpc": "127.0.0.1", "grpc_tls": "127.0.0.1"}}))
        .expect("same as the default client_addr");
        assert!(s.no_effect.is_empty());
        // The comparison is with the final client_addr, whichever source sets it.
        apply(json!({"addresses": {"http": "10.1.2.3"}, "client_addr": "10.1.2.3"})).expect("set later");
        let mut s = Settings::new(false);
        s.apply_value(&json!({"addresses": {"http": "10.1.2.3"}}), "a.json").expect("a");
        s.apply_value(&json!({"client_addr": "10.1.2.3"}), "flags").expect("b");
        s.finish().expect("client_addr from a later source");

        let e = err(json!({"addresses": {"http": "10.1.2.3"}}));
        assert!(e.contains("addresses.http") && e.contains("client_addr"), "{e}");
        let e = err(json!({"addresses": {"dns": "unix:///tmp/dns.sock"}}));
        assert!(e.contains("addresses.dns") && e.contains("Unix"), "{e}");
        let e = err(json!({"addresses": {"https": "unix:///tmp/https.sock"}}));
        assert!(e.contains("addresses.https") && e.contains("Unix"), "{e}");
        let e = err(json!({"addresses": {"https": "{{ GetPrivateIP }}"}}));
        assert!(e.contains("addresses.https") && e.contains("template"), "{e}");
        assert!(err(json!({"addresses": {"rpc": "127.0.0.1"}})).contains("unknown key \"addresses.rpc\""));
        apply(json!({"addresses": {"http": ""}})).expect("empty asks for nothing");

        apply(json!({"serf_lan": "10.0.0.5", "bind_addr": "10.0.0.5"})).expect("serf_lan equal to bind_addr");
        let e = err(json!({"serf_lan": "10.0.0.5"}));
        assert!(e.contains("serf_lan") && e.contains("bind_addr"), "{e}");
    }

    #[test]
    fn http_on_a_unix_socket() {
        let s = apply(json!({"addresses": {"http": "unix:///tmp/consul-http.sock"},
            "unix_sockets": {"mode": "0700", "user": "0", "group": "root"}}))
        .expect("a socket alone");
        let u = s.agent.http_unix_socket.clone().expect("socket");
        assert_eq!(u.path, std::path::PathBuf::from("/tmp/consul-http.sock"));
        assert_eq!((u.mode, u.user.as_deref(), u.group.as_deref()), (Some(0o700), Some("0"), Some("root")));
        assert_eq!(s.agent.ports.http, None, "no TCP listener for HTTP");
        // (A default configuration lacks other things, e.g. a data_dir; HTTP is not among them.)
        let checked = s.agent.validate().map_err(|e| e.to_string());
        assert!(checked.as_ref().err().is_none_or(|e| !e.contains("ports.http")), "{checked:?}");

        // Consul's test harness also sets ports.https without a certificate: no HTTPS then.
        let s = apply(json!({"addresses": {"http": "unix:///tmp/x.sock"}, "ports": {"https": 8501}})).expect("https");
        assert_eq!((s.agent.ports.http, s.agent.ports.https), (None, None));
        let s = apply(json!({"addresses": {"http": "127.0.0.1 unix:///tmp/x.sock"}})).expect("both");
        assert!(s.agent.http_unix_socket.is_some() && s.agent.ports.http.is_some());
        let s = apply(json!({"unix_sockets": {"mode": "0700"}})).expect("no socket");
        assert!(s.no_effect.contains_key("unix_sockets"), "{:?}", s.no_effect);

        let e = err(json!({"unix_sockets": {"mode": "0800"}}));
        assert!(e.contains("unix_sockets.mode") && e.contains("octal"), "{e}");
        let e = err(json!({"addresses": {"http": "unix:// unix:///b"}}));
        assert!(e.contains("addresses.http"), "{e}");
        assert!(err(json!({"unix_sockets": {"owner": "x"}})).contains("unix_sockets.owner"));
    }

    #[test]
    fn connect_is_accepted_only_with_the_built_in_ca() {
        let s = apply(json!({"connect": {"enabled": true, "ca_provider": "consul",
            "ca_config": {"cluster_id": "11111111-2222-3333-4444-555555555555", "LeafCertTTL": "72h"}}}))
        .expect("built-in provider");
        assert!(s.agent.connect.enabled);
        assert_eq!(s.agent.connect.cluster_id.as_deref(), Some("11111111-2222-3333-4444-555555555555"));
        assert_eq!(s.agent.connect.leaf_cert_ttl, std::time::Duration::from_secs(72 * 3600));
        assert!(s.no_effect.is_empty(), "{:?}", s.no_effect);
        let s = apply(
            json!({"connect": {"enabled": false, "ca_config": {"PrivateKeyType": "ec", "private_key_bits": 384}}}),
        )
        .expect("P-384");
        assert!(!s.agent.connect.enabled);
        assert_eq!(s.agent.connect.private_key_bits, 384);
        for (v, want) in [
            (json!({"connect": {"ca_provider": "vault"}}), "connect.ca_provider"),
            (json!({"connect": {"ca_config": {"private_key": "-----BEGIN EC PRIVATE KEY-----"}}}), "private_key"),
            (json!({"connect": {"ca_config": {"RootCert": "-----BEGIN CERTIFICATE-----"}}}), "root_cert"),
            (json!({"connect": {"ca_config": {"token": "s.vault"}}}), "unknown key \"connect.ca_config.token\""),
            (json!({"connect": {"enable_bogus": true}}), "unknown key \"connect.enable_bogus\""),
        ] {
            let e = err(v.clone());
            assert!(e.contains(want), "{v}: {e}");
        }
    }

    #[test]
    fn limits_are_refused_only_when_they_restrict() {
        let s = apply(json!({"limits": {"http_max_conns_per_client": 0, "rpc_max_conns_per_client": 0,
            "rpc_rate": -1, "rpc_max_burst": 1000, "rpc_handshake_timeout": "5s", "https_handshake_timeout": "0s",
            "rpc_client_timeout": "60s", "request_limits": {"mode": "permissive", "read_rate": -1, "write_rate": 100}}}))
        .expect("nothing restricts");
        assert!(!s.no_effect.contains_key("limits.rpc_handshake_timeout"), "honoured");
        assert_eq!(s.agent.limits.rpc_handshake_timeout, Duration::from_secs(5));
        assert!(!s.no_effect.contains_key("limits.https_handshake_timeout"), "0 asks for nothing");
        assert!(s.no_effect.contains_key("limits.request_limits.mode"));
        let s = apply(json!({"limits": {"http_max_conns_per_client": 200, "rpc_max_conns_per_client": 100}}))
            .expect("connection limits are honoured");
        assert_eq!((s.agent.limits.http_max_conns_per_client, s.agent.limits.rpc_max_conns_per_client), (200, 100));
        let s = apply(json!({"limits": {"rpc_rate": 10.5, "rpc_max_burst": 20}})).expect("an RPC rate is honoured");
        assert_eq!((s.agent.limits.rpc_rate, s.agent.limits.rpc_max_burst), (10.5, 20));
        let s = apply(json!({"limits": {"rpc_handshake_timeout": "1s"}})).expect("a shorter deadline is honoured");
        assert_eq!(s.agent.limits.rpc_handshake_timeout, Duration::from_secs(1));
        for (v, want) in [
            (json!({"limits": {"http_max_conns_per_client": -1}}), "limits.http_max_conns_per_client"),
            (json!({"limits": {"https_handshake_timeout": "2391ms"}}), "limits.https_handshake_timeout"),
            (json!({"limits": {"request_limits": {"mode": "enforcing"}}}), "limits.request_limits.mode"),
            (json!({"limits": {"request_limits": {"mode": "strict"}}}), "limits.request_limits.mode"),
            (json!({"http_config": {"max_header_bytes": 10}}), "http_config.max_header_bytes"),
            (json!({"limits": {"bogus": 1}}), "unknown key \"limits.bogus\""),
        ] {
            let e = err(v.clone());
            assert!(e.contains(want), "{v}: {e}");
        }
    }

    #[test]
    fn telemetry_is_honoured() {
        let t = apply(json!({})).expect("defaults").agent.telemetry;
        assert_eq!(t, crate::metrics::TelemetrySettings::default());
        let s = apply(json!({"telemetry": {
            "disable_hostname": true,
            "metrics_prefix": "edge",
            "prefix_filter": ["+edge.raft", "-edge.kvs"],
            "filter_default": false,
            "prometheus_retention_time": "60s",
            "statsd_address": "127.0.0.1:8125",
            "dogstatsd_addr": "127.0.0.1:8126",
            "dogstatsd_tags": ["env:test"],
        }}))
        .expect("telemetry");
        let t = s.agent.telemetry;
        assert!(t.disable_hostname && !t.disabled);
        assert_eq!(t.metrics_prefix, "edge");
        assert!(t.filter.allows("edge.raft.apply") && !t.filter.allows("edge.kvs.apply"));
        assert!(!t.filter.allows("edge.txn.apply"), "filter_default = false");
        assert_eq!(t.prometheus_retention, Duration::from_secs(60));
        assert_eq!(t.statsd_address, Some("127.0.0.1:8125".parse().expect("addr")));
        assert_eq!(t.dogstatsd_addr, Some("127.0.0.1:8126".parse().expect("addr")));
        assert_eq!(t.dogstatsd_tags, ["env:test"]);
        assert!(!s.no_effect.contains_key("telemetry.disable_hostname"));
        assert!(err(json!({"telemetry": {"prefix_filter": ["consul.raft"]}})).contains("telemetry.prefix_filter"));
        assert!(err(json!({"telemetry": {"statsd_address": "nowhere"}})).contains("telemetry.statsd_address"));
        let s = apply(json!({"telemetry": {"statsite_address": "127.0.0.1:8125"}})).expect("no effect");
        assert!(s.no_effect.contains_key("telemetry.statsite_address"));
    }

    #[test]
    fn use_cache_is_honoured() {
        assert!(apply(json!({})).expect("defaults").agent.http_use_cache, "Consul's default: true");
        let s = apply(json!({"http_config": {"use_cache": false}})).expect("use_cache");
        assert!(!s.agent.http_use_cache && !s.agent.api_settings().use_cache);
    }

    #[test]
    fn response_headers_are_honoured_and_checked() {
        let mut s = Settings::new(false);
        s.apply_value(
            &json!({"http_config": {"response_headers": {"Access-Control-Allow-Origin": "*", "X-A": "1"}}}),
            "a",
        )
        .expect("a");
        s.apply_value(&json!({"http_config": {"response_headers": {"x-a": "2"}}}), "b").expect("b");
        let h = &s.agent.http_response_headers;
        assert!(h.contains(&("Access-Control-Allow-Origin".into(), "*".into())));
        assert!(h.contains(&("x-a".into(), "2".into())) && h.len() == 2, "later source wins: {h:?}");
        assert!(s.agent.api_settings().response_headers == *h);
        let e = err(json!({"http_config": {"response_headers": {"bad header": "x"}}}));
        assert!(e.contains("http_config.response_headers.bad header"), "{e}");
    }

    #[test]
    fn value_dependent_keys() {
        apply(json!({"partition": "", "segment": "", "segments": [], "read_replica": false})).expect("off");
        let s = apply(json!({"partition": "default", "raft_protocol": 3, "check_output_max_size": 8192,
            "experiments": ["resource-apis"], "server_rejoin_age_max": "168h"}))
        .expect("asks for nothing unsupported");
        assert!(s.no_effect.contains_key("raft_protocol") && s.no_effect.contains_key("experiments"));
        for (v, want) in [
            (json!({"partition": "team-a"}), "partition"),
            (json!({"segment": "alpha"}), "segment"),
            (json!({"segments": [{"name": "alpha", "port": 8303}]}), "segments"),
            (json!({"non_voting_server": true}), "non_voting_server"),
            (json!({"check_output_max_size": 1024}), "check_output_max_size"),
            (json!({"discard_check_output": true}), "discard_check_output"),
            (json!({"auto_reload_config": true}), "auto_reload_config"),
            (json!({"raft_logstore": {"verification": {"enabled": true}}}), "raft_logstore.verification.enabled"),
            (
                json!({"config_entries": {"bootstrap": [{"kind": "proxy-defaults", "name": "global"}]}}),
                "config_entries",
            ),
            (json!({"cloud": {"client_secret": "s"}}), "cloud.client_secret"),
            (json!({"auto_config": {"enabled": true}}), "auto_config.enabled"),
            (json!({"serf_lan_allowed_cidrs": ["10.0.0.0/8"]}), "serf_lan_allowed_cidrs"),
            (json!({"enable_agent_tls_for_checks": true}), "enable_agent_tls_for_checks"),
            (
                json!({"acl": {"tokens": {"managed_service_provider": [{"accessor_id": "a", "secret_id": "s"}]}}}),
                "acl.tokens.managed_service_provider",
            ),
        ] {
            let e = err(v.clone());
            assert!(e.contains(want) && e.contains("refuses to start"), "{v}: {e}");
        }
        for (v, want) in [
            (json!({"raft_protocol": 2}), "raft_protocol: version 2"),
            (json!({"experiments": [1]}), "experiments[0]"),
            (json!({"server_rejoin_age_max": 7}), "server_rejoin_age_max"),
        ] {
            let e = err(v.clone());
            assert!(e.contains(want), "{v}: {e}");
        }
    }

    #[test]
    fn https_without_a_certificate_opens_no_listener() {
        let s = apply(json!({"ports": {"https": 8501}})).expect("accepted");
        assert_eq!(s.agent.ports.https, None);
        assert!(s.no_effect.contains_key("ports.https"));
        let s = apply(json!({"ports": {"https": 8501}, "cert_file": "/c.pem", "key_file": "/k.pem"})).expect("tls");
        assert_eq!(s.agent.ports.https, Some(8501));
        assert!(!s.no_effect.contains_key("ports.https"));
        // HTTPS-only without a certificate stays an error (from AgentConfig::validate).
        let s = apply(json!({"ports": {"https": 8501, "http": -1}})).expect("parsed");
        assert!(s.agent.validate().is_err());
    }
}
