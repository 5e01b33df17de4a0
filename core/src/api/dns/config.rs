//! DNS settings, in Consul's terms.

use std::time::Duration;

/// DNS settings (Consul's `domain`, `alt_domain`, `recursors`, `dns_config`, `ports.dns`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Serve DNS at all (`ports.dns = -1` turns it off).
    pub enabled: bool,
    /// `domain` (default `consul.`), always with a trailing dot, lower case.
    pub domain: String,
    /// `alt_domain`: a second domain answered the same way.
    pub alt_domain: Option<String>,
    /// `recursors`: upstream servers for names outside our domains; empty refuses them.
    pub recursors: Vec<std::net::SocketAddr>,
    /// `dns_config.recursor_timeout` (2 s).
    pub recursor_timeout: Duration,
    /// `dns_config.node_ttl` (0).
    pub node_ttl: Duration,
    /// `dns_config.service_ttl`: service name or `prefix*` or `*` → TTL.
    pub service_ttl: std::collections::BTreeMap<String, Duration>,
    /// `dns_config.allow_stale` (true): answer from any server's local state.
    pub allow_stale: bool,
    /// `dns_config.max_stale` (87600h): beyond this lag behind the leader, read through it.
    pub max_stale: Duration,
    /// `dns_config.only_passing` (false): drop warning instances too.
    pub only_passing: bool,
    /// `dns_config.enable_truncate` (false): set TC when a UDP answer was cut.
    pub enable_truncate: bool,
    /// `dns_config.udp_answer_limit` (3): most answers in a UDP reply without EDNS.
    pub udp_answer_limit: usize,
    /// `dns_config.a_record_limit` (0 = unlimited): most A/AAAA answers in any reply.
    pub a_record_limit: usize,
    /// `dns_config.enable_additional_node_meta_txt` (true).
    pub node_meta_txt: bool,
    /// `dns_config.soa`: refresh, retry, expire, min_ttl in seconds.
    pub soa: (u32, u32, u32, u32),
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            enabled: true,
            domain: "consul.".into(),
            alt_domain: None,
            recursors: Vec::new(),
            recursor_timeout: Duration::from_secs(2),
            node_ttl: Duration::ZERO,
            service_ttl: Default::default(),
            allow_stale: true,
            max_stale: Duration::from_secs(87600 * 3600),
            only_passing: false,
            enable_truncate: false,
            udp_answer_limit: 3,
            a_record_limit: 0,
            node_meta_txt: true,
            soa: (3600, 600, 86400, 0),
        }
    }
}
