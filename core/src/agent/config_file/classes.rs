//! Every configuration key Consul 1.16–1.22 reads, in exactly one of three classes, with the
//! reason — the one place the README's table is generated from and checked against:
//!
//! - [`HONOURED`]: the agent does what the key says;
//! - [`NO_EFFECT`]: accepted and logged once at start ("accepted, no effect here"), only where
//!   ignoring the key cannot leave the agent less secure, or keeping less data, than asked;
//! - [`REFUSED`]: the key bears on security or data safety and is not supported, so a value
//!   that asks for something stops the agent at start with a message naming the key (a value
//!   that asks for nothing — `false`, `""`, an empty list, or the value the reason names — is
//!   accepted).
//!
//! A key that is in none of the tables is refused as unknown, as Consul refuses it.
//!
//! Keys are dotted paths; `{a,b}` in a pattern stands for each alternative. Keys with
//! value-dependent rules (`addresses.*`, `limits.*`, `connect.ca_provider`, …) have their own
//! code; every other key is walked by [`Settings::apply_classified`] from these tables alone.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

use super::{Ctx, Result, Settings};

/// What the agent does with a configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyClass {
    /// The agent does what the key says.
    Honoured,
    /// Accepted and logged once at start; ignoring it cannot make the agent less secure or keep
    /// less data than asked.
    NoEffect,
    /// Refused at start when it asks for something (the reason says what is accepted).
    Refused,
}

impl KeyClass {
    /// The label used in the README table.
    pub fn label(self) -> &'static str {
        match self {
            KeyClass::Honoured => "honoured",
            KeyClass::NoEffect => "no effect",
            KeyClass::Refused => "refused",
        }
    }
}

/// Keys sharing one reason (patterns may use `{a,b}`).
#[derive(Debug)]
pub struct KeyGroup {
    /// Dotted key patterns.
    pub keys: &'static [&'static str],
    /// Why (one line; also the README's reason column and, for refused keys, the error).
    pub reason: &'static str,
}

const fn group(keys: &'static [&'static str], reason: &'static str) -> KeyGroup {
    KeyGroup { keys, reason }
}

/// Keys the agent acts on.
pub const HONOURED: &[KeyGroup] = &[
    group(
        &["watches"],
        "watch plans of every `consul watch` type with `args`/`handler` scripts or `handler_type = \"http\"` \
         handlers, fired once at start and on each change; restarted with the new definitions on reload",
    ),
    group(
        &["datacenter", "node_name", "node_id", "node_meta", "server", "bootstrap", "bootstrap_expect", "data_dir"],
        "identity and role of the agent (`node_meta` is the node's catalog metadata)",
    ),
    group(
        &["enable_debug"],
        "`/debug/pprof/*` served without ACLs: CPU and heap profiles (pprof format), the process's threads, \
         the agent's TRACE events as a Chrome trace; with ACLs on, operator-read tokens get them regardless",
    ),
    group(
        &["locality.{region,zone}"],
        "the node's `Locality` in the catalog, and the locality of services registered on this agent without one",
    ),
    group(
        &["bind_addr", "advertise_addr", "client_addr", "ports.{http,https,dns,server,serf_lan}"],
        "listeners (`-1` turns HTTP or DNS off; `ports.https` without any certificate opens no listener, logged)",
    ),
    group(
        &["ports.{sidecar_min_port,sidecar_max_port}"],
        "the range a `connect { sidecar_service {} }` proxy takes its port from when it gives none (`0` or `-1`: \
         no automatic assignment)",
    ),
    group(
        &["retry_join", "start_join", "retry_interval", "retry_max"],
        "joining the LAN pool (`start_join` is added to `retry_join`, as in Consul)",
    ),
    group(
        &[
            "ports.serf_wan",
            "serf_wan",
            "advertise_addr_wan",
            "{retry_join_wan,start_join_wan,retry_interval_wan,retry_max_wan,reconnect_timeout_wan}",
            "gossip_wan.{gossip_nodes,gossip_interval,probe_interval,probe_timeout,suspicion_mult,retransmit_mult}",
        ],
        "the servers' WAN pool across datacenters: its port (`-1`: none; when the default 8302 is taken and \
         none was set, the server runs without one and logs it), bind and advertised addresses, joins and timing",
    ),
    group(
        &["performance.{raft_multiplier,rpc_hold_timeout}", "raft_snapshot_threshold", "raft_trailing_logs"],
        "Raft timing and log compaction",
    ),
    group(
        &[
            "autopilot.{cleanup_dead_servers,last_contact_threshold,max_trailing_logs,min_quorum}",
            "autopilot.server_stabilization_time",
        ],
        "autopilot: seeds the replicated configuration on the first leader; new servers become voters \
         after `server_stabilization_time` of health, failed servers are removed while quorum and \
         `min_quorum` allow (`last_contact_threshold` is never below two Raft heartbeats)",
    ),
    group(
        &[
            "default_query_time",
            "max_query_time",
            "limits.{kv_max_value_size,txn_max_req_len}",
            "limits.{http_max_conns_per_client,rpc_max_conns_per_client}",
            "limits.rpc_handshake_timeout",
            "http_config.response_headers",
            "http_config.use_cache",
            "limits.{http_read_header_timeout,snapshot_max_size,snapshot_max_inflate_ratio}",
            "limits.{rpc_rate,rpc_max_burst}",
        ],
        "HTTP API: blocking-query waits, request size limits, extra response headers, the agent cache \
         for `?cached` reads; connections per \
         client IP on the HTTP(S) ports (Consul's default, 200) and on the server RPC and serf_lan TCP \
         ports (Consul's default, 100; 0 is no limit), the handshake deadline of the latter two (5 s; 0 \
         is none); consul-rs extensions: how long a request head may take to arrive and a keep-alive \
         connection may stay idle (30 s), and how large a restored snapshot may inflate (256 MiB, \
         200:1); a client agent's requests to the servers past `rpc_rate` (bursts of `rpc_max_burst`) \
         get 429",
    ),
    group(
        &[
            "telemetry.{disable_hostname,metrics_prefix,prefix_filter,filter_default}",
            "telemetry.{prometheus_retention_time,statsd_address,dogstatsd_addr,dogstatsd_tags}",
            "telemetry.disable_metrics",
        ],
        "metrics: names, filtering, `/v1/agent/metrics?format=prometheus` (needs a positive retention), \
         statsd and DogStatsD over UDP; `disable_metrics` (a consul-rs extension) records nothing",
    ),
    group(&["log_level", "log_json", "pid_file", "skip_leave_on_interrupt", "leave_on_terminate"], "the process"),
    group(
        &["log_file", "log_rotate_{bytes,duration,max_files}"],
        "the log also goes to this file, rotated by size and age and pruned as Consul does \
         (`consul-<unix nanos>.log`)",
    ),
    group(
        &[
            "encrypt",
            "encrypt_verify_{incoming,outgoing}",
            "disable_keyring_file",
            "reconnect_timeout",
            "gossip_lan.{gossip_nodes,gossip_interval,probe_interval,probe_timeout,suspicion_mult,retransmit_mult}",
        ],
        "LAN gossip, its encryption and timing",
    ),
    group(
        &[
            "service",
            "services",
            "check",
            "checks",
            "enable_script_checks",
            "enable_local_script_checks",
            "check_update_interval",
            "disable_coordinates",
            "ae_interval",
            "check_reap_interval",
            "check_deregister_interval_min",
            "sync_coordinate_interval_min",
            "sync_coordinate_rate_target",
        ],
        "the agent's services and checks, anti-entropy, network coordinates",
    ),
    group(
        &[
            "domain",
            "alt_domain",
            "recursors",
            "dns_config.{allow_stale,max_stale,node_ttl,service_ttl,only_passing,enable_truncate}",
            "dns_config.{udp_answer_limit,a_record_limit,recursor_timeout,enable_additional_node_meta_txt,soa}",
        ],
        "the DNS interface",
    ),
    group(
        &[
            "acl.{enabled,default_policy,down_policy,token_ttl,policy_ttl,role_ttl}",
            "acl.{enable_key_list_policy,enable_token_persistence}",
            "acl.tokens.{initial_management,master,agent,agent_recovery,agent_master,default,replication}",
            "acl.tokens.{config_file_service_registration,dns}",
            "primary_datacenter",
            "acl_{datacenter,default_policy,down_policy,ttl,enable_key_list_policy}",
            "acl_{master_token,token,agent_token,agent_master_token,replication_token}",
        ],
        "ACLs; the legacy spellings map as in Consul; the primary datacenter must be this one",
    ),
    group(
        &[
            "connect.enabled",
            "connect.ca_config.{cluster_id,leaf_cert_ttl,root_cert_ttl,intermediate_cert_ttl}",
            "connect.ca_config.{private_key_type,private_key_bits}",
        ],
        "the built-in Connect CA (roots, SPIFFE leaf certificates); keys are EC P-256 or P-384, \
         leaves are signed by the root without an intermediate",
    ),
    group(
        &[
            "tls.{defaults,internal_rpc,https}.{ca_file,ca_path,cert_file,key_file,verify_incoming}",
            "tls.{defaults,internal_rpc,https}.{tls_min_version,tls_cipher_suites,tls_prefer_server_cipher_suites}",
            "tls.{defaults,internal_rpc}.verify_outgoing",
            "tls.internal_rpc.verify_server_hostname",
            "{ca_file,ca_path,cert_file,key_file,tls_min_version,tls_cipher_suites,tls_prefer_server_cipher_suites}",
            "{verify_incoming,verify_incoming_rpc,verify_incoming_https,verify_outgoing,verify_server_hostname}",
        ],
        "TLS for HTTPS and the server RPC port; the pre-1.12 spellings map as in Consul",
    ),
    group(
        &[
            "ui",
            "ui_dir",
            "ui_content_path",
            "ui_config.{enabled,dir,content_path,metrics_provider}",
            "ui_config.{metrics_provider_files,metrics_provider_options_json,dashboard_url_templates}",
            "ui_config.metrics_proxy.{base_url,add_headers,path_allowlist}",
        ],
        "the web console at `content_path` (embedded in the binary, or read from `dir`), its metrics \
         providers (the files read at start and served as `assets/compiled-metrics-providers.js`), and the \
         metrics proxy at `/v1/internal/ui/metrics-proxy/`; `ui_config` wins over the legacy keys",
    ),
    group(
        &["unix_sockets.{group,mode,user}"],
        "the HTTP API's Unix socket (`addresses.http = \"unix:///path\"`, alone or beside the IP): owner \
         and group by ID or by name from /etc/passwd and /etc/group, mode as an octal string",
    ),
];

/// Keys accepted and logged at start, with no effect here.
pub const NO_EFFECT: &[KeyGroup] = &[
    group(&["log_sublevels", "enable_syslog", "syslog_facility"], "logs go to standard error and `log_file` only"),
    group(
        &[
            "telemetry.circonus_{api_app,api_token,api_url,broker_id,broker_select_tag,check_display_name}",
            "telemetry.circonus_{check_force_metric_activation,check_id,check_instance_id,check_search_tag}",
            "telemetry.circonus_{check_tags,submission_interval,submission_url}",
            "telemetry.{retry_failed_connection,statsite_address}",
            "telemetry.{enable_host_metrics,disable_per_tenancy_usage_metrics}",
        ],
        "metrics are served on `/v1/agent/metrics` and sent to statsd and DogStatsD only; no Circonus or \
         statsite sink, no host metrics, no per-tenancy usage metrics",
    ),
    group(
        &[
            "advertise_addr_wan_{ipv4,ipv6}",
            "translate_wan_addrs",
            "serf_wan_allowed_cidrs",
            "primary_gateways",
            "primary_gateways_interval",
            "connect.enable_mesh_gateway_wan_federation",
        ],
        "the WAN pool advertises one address per server and filters no sources; requests for another \
         datacenter go straight to its servers' RPC address, so there are no gateways nor translated addresses",
    ),
    group(
        &[
            "connect.ca_config.{rotation_period,csr_max_per_second,csr_max_concurrent}",
            "connect.test_ca_leaf_root_change_spread",
            "ports.{grpc,grpc_tls,expose_min_port,expose_max_port}",
            "ports.{proxy_min_port,proxy_max_port}",
            "tls.grpc.{ca_file,ca_path,cert_file,key_file,verify_incoming,verify_outgoing}",
            "tls.grpc.{tls_min_version,tls_cipher_suites,tls_prefer_server_cipher_suites}",
            "tls.https.verify_outgoing",
            "xds.update_max_per_second",
            "enable_central_service_config",
            "peering.{enabled,test_allow_peer_registrations}",
            "default_intention_policy",
        ],
        "no service mesh, gRPC/xDS server or peering: no listener is opened for these to configure, no \
         intermediate to rotate, no CSR to rate-limit (nor any outgoing HTTPS, for \
         `tls.https.verify_outgoing`; `default_intention_policy` has no intentions to decide)",
    ),
    group(
        &[
            "raft_protocol",
            "raft_snapshot_interval",
            "raft_logstore.{backend,disable_log_cache}",
            "raft_logstore.verification.interval",
            "raft_logstore.boltdb.no_freelist_sync",
            "raft_logstore.wal.segment_size_mb",
            "raft_boltdb",
            "consul.raft.{election_timeout,heartbeat_timeout,leader_lease_timeout}",
            "consul.coordinate.{update_batch_size,update_max_batches,update_period}",
            "consul.server.health_interval",
        ],
        "Raft storage and timing are this agent's own (timings from `performance.raft_multiplier`); \
         `raft_protocol` must be 3",
    ),
    group(
        &["autopilot.{disable_upgrade_migration,redundancy_zone_tag,upgrade_version_tag}", "server_rejoin_age_max"],
        "redundancy zones and upgrade migration are Consul Enterprise (the tags are stored and returned \
         by `/v1/operator/autopilot/configuration`); a returning server can only catch up, never \
         overwrite committed entries",
    ),
    group(
        &[
            "use_streaming_backend",
            "rpc.enable_streaming",
            "cache.{entry_fetch_max_burst,entry_fetch_rate}",
            "dns_config.{use_cache,cache_max_age}",
            "discovery_max_stale",
        ],
        "reads are answered by the servers (blocking queries), which streaming would not change; DNS \
         answers do not go through the agent cache; its fetches are not rate-limited",
    ),
    group(
        &[
            "tagged_addresses",
            "advertise_addr_{ipv4,ipv6}",
            "advertise_reconnect_timeout",
            "disable_host_node_id",
            "server_name",
        ],
        "node details this agent does not publish; servers are verified as `server.<dc>.<domain>` whatever \
         `server_name` says",
    ),
    group(
        &["disable_update_check", "disable_anonymous_signature", "disable_remote_exec", "rejoin_after_leave"],
        "no update check or remote exec exist here; the agent never rejoins on its own after leaving",
    ),
    group(
        &[
            "performance.leave_drain_time",
            "session_ttl_min",
            "limits.rpc_client_timeout",
            "limits.request_limits.{read_rate,write_rate}",
            "dns_config.{disable_compression,recursor_strategy}",
            "disable_http_unprintable_char_filter",
        ],
        "fixed here at Consul's defaults (session TTLs from 10 s, recursors in order, unprintable characters \
         in keys refused); the request-limit rates only apply in enforcing mode, which is refused",
    ),
    group(
        &["version", "version_prerelease", "version_metadata", "revision", "build_date", "protocol", "experiments"],
        "build metadata and experimental Consul features (v2 resource APIs, DNS server variants) that do \
         not exist here",
    ),
    group(
        &[
            "license_path",
            "license_{poll_base_time,poll_max_time,update_base_time,update_max_time}",
            "reporting.license.enabled",
            "snapshot_agent",
            "segment_limit",
            "segment_name_limit",
            "dns_config.prefer_namespace",
            "acl.disabled_ttl",
        ],
        "Enterprise licensing and tooling, removed settings",
    ),
];

/// Keys refused at start when they ask for something.
pub const REFUSED: &[KeyGroup] = &[
    group(
        &[
            "auto_encrypt.{tls,dns_san,ip_san,allow_tls}",
            "auto_config.{enabled,intro_token,intro_token_file,server_addresses,dns_sans,ip_sans,authorization}",
        ],
        "certificates or settings fetched from the servers are not supported; give each agent its own \
         (`consul-rs tls cert create`)",
    ),
    group(
        &["connect.ca_provider", "connect.ca_config.{private_key,root_cert}"],
        "an operator's CA (a provider other than `consul`, or its own key and root) would not be used",
    ),
    group(
        &[
            "tls.{defaults,internal_rpc,https,grpc}.use_auto_cert",
            "tls.{defaults,https,grpc}.verify_server_hostname",
            "enable_agent_tls_for_checks",
        ],
        "TLS settings this agent cannot apply: auto certificates need the Connect CA, server hostnames \
         are verified in `tls.internal_rpc` only, checks do not present the agent's certificate",
    ),
    group(
        &[
            "acl.enable_token_replication",
            "enable_acl_replication",
            "acl.msp_disable_bootstrap",
            "acl.tokens.managed_service_provider",
            "acl_enforce_version_8",
        ],
        "ACL features not supported: token replication (one datacenter), Enterprise service-provider \
         tokens, ACL semantics removed in Consul 1.4",
    ),
    group(
        &[
            "http_config.{allow_write_http_from,block_endpoints,max_header_bytes}",
            "limits.request_limits.mode",
            "limits.https_handshake_timeout",
        ],
        "restrictions not implemented: refused when they restrict (`request_limits.mode` = enforcing; \
         an HTTPS handshake timeout below the fixed 5 s)",
    ),
    group(
        &["addresses.{dns,http,https,grpc,grpc_tls}", "serf_lan", "serf_lan_allowed_cidrs"],
        "per-listener addresses and gossip source filters are not supported: an address is accepted only \
         when equal to `client_addr` (`serf_lan`: `bind_addr`); `addresses.http` may also name a Unix \
         socket (`unix:///path`), which is served",
    ),
    group(&["audit.{enabled,sink}"], "audit logging is a Consul Enterprise feature this agent does not have"),
    group(
        &["partition", "segment", "segments", "read_replica", "non_voting_server"],
        "Enterprise partitions, network segments and non-voting servers are not supported (accepted: \
         empty, `default`, false)",
    ),
    group(
        &["cloud.{resource_id,client_id,client_secret,hostname,auth_url,scada_address,management_token}"],
        "HCP linking (and its management token) is not supported",
    ),
    group(&["config_entries.bootstrap"], "configuration entries (intentions, mesh, proxy defaults) are not supported"),
    group(
        &["raft_logstore.verification.enabled", "discard_check_output", "check_output_max_size", "auto_reload_config"],
        "not implemented: Raft log verification, discarding or shortening check output (at least 4096 \
         accepted), reloading on file change (send SIGHUP)",
    ),
];

/// The three tables with their class.
pub const TABLES: [(KeyClass, &[KeyGroup]); 3] =
    [(KeyClass::Honoured, HONOURED), (KeyClass::NoEffect, NO_EFFECT), (KeyClass::Refused, REFUSED)];

/// Expands `{a,b}` alternatives (several groups multiply; no nesting).
pub fn expand(pattern: &str) -> Vec<String> {
    let Some(open) = pattern.find('{') else { return vec![pattern.to_string()] };
    let Some(close) = pattern[open..].find('}').map(|i| open + i) else { return vec![pattern.to_string()] };
    let (head, tail) = (&pattern[..open], &pattern[close + 1..]);
    let rests = expand(tail);
    pattern[open + 1..close]
        .split(',')
        .flat_map(|alt| rests.iter().map(move |rest| format!("{head}{alt}{rest}")))
        .collect()
}

/// Every key, expanded, with its class and reason.
pub fn index() -> &'static BTreeMap<String, (KeyClass, &'static str)> {
    static INDEX: OnceLock<BTreeMap<String, (KeyClass, &'static str)>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut m = BTreeMap::new();
        for (class, groups) in TABLES {
            for g in groups {
                for p in g.keys {
                    for key in expand(p) {
                        m.insert(key, (class, g.reason));
                    }
                }
            }
        }
        m
    })
}

/// The class and reason of a dotted key; `None` for a key Consul does not have.
pub fn class_of(key: &str) -> Option<(KeyClass, &'static str)> {
    index().get(key).copied()
}

/// Whether the tables list keys under `prefix` (so `prefix` is a block to walk, not a value).
pub(super) fn has_sub_keys(prefix: &str) -> bool {
    let p = format!("{prefix}.");
    index().range(p.clone()..).next().is_some_and(|(k, _)| k.starts_with(&p))
}

/// The README table (`| Keys | Class | Reason |`), one row per group.
pub fn markdown_table() -> String {
    let mut out = String::from("| Keys | Class | Reason |\n|---|---|---|\n");
    for (class, groups) in TABLES {
        for g in groups {
            let keys: Vec<String> = g.keys.iter().map(|k| format!("`{k}`")).collect();
            out.push_str(&format!("| {} | {} | {} |\n", keys.join(", "), class.label(), g.reason));
        }
    }
    out
}

/// The first setting under `key` that asks for something (a true flag, a non-empty string or
/// list, any number), as a dotted path; `None` when every value is off or empty.
pub(super) fn asks_for_something(key: &str, v: &Value) -> Option<String> {
    match v {
        Value::Bool(b) => b.then(|| key.to_string()),
        Value::String(s) if s == "false" || s.is_empty() => None,
        Value::String(_) | Value::Number(_) => Some(key.to_string()),
        Value::Null => None,
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            // A repeated HCL block is a list of objects: keep the block's own key.
            let path = if item.is_object() { key.to_string() } else { format!("{key}[{i}]") };
            asks_for_something(&path, item)
        }),
        Value::Object(m) => m.iter().find_map(|(k, item)| asks_for_something(&format!("{key}.{k}"), item)),
    }
}

impl Ctx<'_> {
    /// The error for a refused key: its path, the reason, and that the agent will not start.
    pub(super) fn refused(&self, path: &str, reason: &str) -> crate::error::Error {
        self.bad(path, &format!("{reason}; the agent refuses to start rather than ignore it"))
    }
}

impl Settings {
    /// Records a key accepted with no effect, with its reason from [`NO_EFFECT`].
    pub(super) fn note_no_effect(&mut self, key: &str) {
        let reason = match class_of(key) {
            Some((KeyClass::NoEffect, reason)) => reason,
            _ => "accepted, no effect here",
        };
        self.no_effect.insert(key.to_string(), reason.to_string());
    }

    /// A key no handler took: walked by its class alone. Blocks the tables list sub-keys of are
    /// walked key by key; a no-effect key is noted; a refused key fails when it asks for
    /// something; anything else (an unknown key) fails with its name.
    pub(super) fn apply_classified(&mut self, ctx: &Ctx<'_>, path: &str, v: &Value) -> Result<()> {
        if has_sub_keys(path) {
            for block in ctx.blocks(path, v)? {
                for (k, sub) in block {
                    self.apply_classified(ctx, &format!("{path}.{k}"), sub)?;
                }
            }
            return Ok(());
        }
        match class_of(path) {
            Some((KeyClass::NoEffect, _)) => {
                self.note_no_effect(path);
                Ok(())
            }
            Some((KeyClass::Refused, reason)) => match asks_for_something(path, v) {
                Some(p) => Err(ctx.refused(&p, reason)),
                None => Ok(()),
            },
            // Honoured keys are taken by their own handlers before this point.
            Some((KeyClass::Honoured, _)) | None => Err(ctx.unknown(path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde_json::{json, Value};

    use super::*;

    #[test]
    fn patterns_expand() {
        assert_eq!(expand("a.{b,c}.d"), ["a.b.d", "a.c.d"]);
        assert_eq!(expand("{x,y}.{1,2}"), ["x.1", "x.2", "y.1", "y.2"]);
        assert_eq!(expand("plain"), ["plain"]);
    }

    #[test]
    fn every_key_is_in_exactly_one_class() {
        let mut seen: BTreeMap<String, KeyClass> = BTreeMap::new();
        for (class, groups) in TABLES {
            for g in groups {
                assert!(!g.reason.contains('|') && !g.reason.is_empty(), "{:?}", g.keys);
                for p in g.keys {
                    for key in expand(p) {
                        assert!(!key.contains(['{', '}', ',', ' ']), "bad pattern {p}");
                        if let Some(other) = seen.insert(key.clone(), class) {
                            panic!("{key} is both {} and {}", other.label(), class.label());
                        }
                    }
                }
            }
        }
        // A key is either a value or a block of listed keys, never both.
        for key in seen.keys() {
            assert!(!has_sub_keys(key), "{key} is listed and has listed sub-keys");
        }
    }

    /// README.md, and where the table between the markers starts and ends in it.
    fn readme() -> (std::path::PathBuf, String, std::ops::Range<usize>) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let text = std::fs::read_to_string(&path).expect("README.md next to the workspace");
        let (begin, end) = ("<!-- config-keys:begin -->\n", "<!-- config-keys:end -->");
        let start = text.find(begin).expect("README has the config-keys:begin marker") + begin.len();
        let stop = text[start..].find(end).expect("README has the config-keys:end marker") + start;
        (path, text, start..stop)
    }

    fn parse_table(table: &str) -> BTreeMap<String, String> {
        let mut keys = BTreeMap::new();
        for line in table.lines().skip(2).filter(|l| l.starts_with('|')) {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 3, "README row with other than 3 cells: {line}");
            for (i, part) in cells[0].split('`').enumerate() {
                if i % 2 == 1 {
                    for key in expand(part) {
                        keys.insert(key, cells[1].to_string());
                    }
                }
            }
        }
        keys
    }

    /// The README table lists exactly the keys of the code's tables, each with its class, and
    /// reads exactly as [`markdown_table`] renders it. `UPDATE_README=1` rewrites it.
    #[test]
    fn readme_table_matches_the_code() {
        let (path, text, range) = readme();
        let section = &text[range.clone()];
        let want = markdown_table();
        if section != want && std::env::var_os("UPDATE_README").is_some() {
            let updated = format!("{}{want}{}", &text[..range.start], &text[range.end..]);
            std::fs::write(&path, updated).expect("write README.md");
            return;
        }
        let in_readme = parse_table(section);
        let in_code: BTreeMap<String, String> =
            index().iter().map(|(k, (class, _))| (k.clone(), class.label().to_string())).collect();
        let missing: Vec<&String> = in_code.keys().filter(|k| !in_readme.contains_key(*k)).collect();
        let extra: Vec<&String> = in_readme.keys().filter(|k| !in_code.contains_key(*k)).collect();
        assert!(missing.is_empty(), "keys missing from the README table: {missing:?}");
        assert!(extra.is_empty(), "keys in the README table the code does not list: {extra:?}");
        for (key, class) in &in_code {
            assert_eq!(Some(class), in_readme.get(key), "class of {key} in the README");
        }
        assert_eq!(
            section, want,
            "README table differs from the code: run UPDATE_README=1 cargo test -p consul-core --lib readme"
        );
    }

    /// `{"a": {"b": v}}` from `a.b`.
    fn nested(path: &str, v: Value) -> Value {
        path.rsplit('.').fold(v, |inner, k| json!({ k: inner }))
    }

    fn candidates() -> Vec<Value> {
        vec![
            json!(true),
            json!(false),
            json!(3),
            json!(-1),
            json!("x"),
            json!(""),
            json!("1s"),
            json!("8h"),
            json!("127.0.0.1"),
            json!("TLSv1_2"),
            json!("deny"),
            json!("extend-cache"),
            json!("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
            json!("11111111-2222-3333-4444-555555555555"),
            json!("pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="),
            json!(["x"]),
            json!([]),
            json!({}),
            json!({"name": "x"}),
            json!({"name": "x", "ttl": "10s"}),
            Value::Null,
        ]
    }

    /// Each listed key behaves as its class says, through the real parser: a no-effect key is
    /// accepted and noted for some value, an honoured key accepted without a note, a refused
    /// key refused with its name for some value.
    #[test]
    fn the_parser_treats_every_key_as_its_class_says() {
        let mut wrong = BTreeSet::new();
        for (key, (class, _)) in index() {
            let outcomes: Vec<std::result::Result<Settings, String>> = candidates()
                .into_iter()
                .map(|c| {
                    let mut s = Settings::new(false);
                    s.apply_value(&nested(key, c), "probe")
                        .and_then(|()| s.finish())
                        .map(|()| s)
                        .map_err(|e| e.to_string())
                })
                .collect();
            let ok = match class {
                KeyClass::NoEffect => outcomes.iter().any(|o| o.as_ref().is_ok_and(|s| s.no_effect.contains_key(key))),
                KeyClass::Honoured => outcomes.iter().any(|o| o.as_ref().is_ok_and(|s| !s.no_effect.contains_key(key))),
                KeyClass::Refused => outcomes.iter().any(|o| o.as_ref().is_err_and(|e| e.contains(key.as_str()))),
            };
            if !ok {
                wrong.insert(format!("{key} ({})", class.label()));
            }
        }
        assert!(wrong.is_empty(), "keys the parser does not treat as their class says: {wrong:?}");
    }

    #[test]
    fn unknown_keys_are_refused_by_name_at_every_level() {
        for (v, want) in [
            (json!({"telemetry": {"statsd_adress": "x"}}), "telemetry.statsd_adress"),
            (json!({"autopilot": {"bogus": 1}}), "autopilot.bogus"),
            (json!({"raft_logstore": {"verification": {"bogus": true}}}), "raft_logstore.verification.bogus"),
            (json!({"cloud": {"bogus": "x"}}), "cloud.bogus"),
            (json!({"connect": {"ca_config": {"address": "https://vault"}}}), "connect.ca_config.address"),
            (json!({"bogus_top": 1}), "bogus_top"),
        ] {
            let e = Settings::new(false).apply_value(&v, "t.json").expect_err("unknown").to_string();
            assert!(e.contains(want) && e.contains("unknown key"), "{v}: {e}");
        }
    }
}
