//! Consul-style agent configuration keys, walked onto [`AgentConfig`].
//!
//! One source (a parsed JSON or HCL file, the command-line flags turned into the same key shape,
//! or an embedder's JSON) is a `serde_json::Value`, walked key by key so that an unknown key or a
//! value of the wrong type is reported by its dotted name and the source it came from, as Consul
//! does. A later source overrides the scalars of an earlier one; lists (`retry_join`) are
//! appended, and blocks (`ports { … }`) merge key by key, matching Consul's merge rules.
//!
//! It lives in the core (not the `consul-rs` binary, which adds file and HCL loading on top) so
//! that every embedder — the binary, the C library's `consul_agent_start_json`, other bindings —
//! accepts exactly the same keys with the same errors.
//!
//! Every key Consul 1.16–1.22 reads is in one of three classes ([`classes`]): honoured;
//! accepted with no effect (remembered in [`Settings::no_effect`] with the reason, so the agent
//! logs each once at start); or refused at start, naming the key, when it bears on security or
//! data safety and asks for something this agent does not do. Unknown keys are refused.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::agent::config::AgentConfig;
use crate::duration::parse_go_duration;
use crate::error::Error;

pub mod classes;
pub use check::KeyProblem;
mod check;
mod restrictions;
mod security;
mod ui;

/// Results of this module; errors are [`Error::Config`] naming the key and the source.
type Result<T> = std::result::Result<T, Error>;

/// The fully merged configuration: what the core needs plus what only the binary acts on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// What [`crate::agent::Agent::start`] receives.
    pub agent: AgentConfig,
    /// `log_level` (trace, debug, info, warn, err/error); `info` by default.
    pub log_level: String,
    /// `log_json`: log as JSON lines.
    pub log_json: bool,
    /// `pid_file`: where the agent writes its process id.
    pub pid_file: Option<PathBuf>,
    /// `log_file`: also write the log to this file (a directory when it ends in `/`).
    pub log_file: Option<PathBuf>,
    /// `log_rotate_bytes`: rotate the log file at this size (0: by age only).
    pub log_rotate_bytes: u64,
    /// `log_rotate_duration`: rotate the log file at this age (Consul's default, 24h).
    pub log_rotate_duration: Duration,
    /// `log_rotate_max_files`: rotated log files kept (0: all; -1: none).
    pub log_rotate_max_files: i64,
    /// `skip_leave_on_interrupt` (servers: true, clients: false).
    pub skip_leave_on_interrupt: bool,
    /// `leave_on_terminate` (servers: false, clients: true).
    pub leave_on_terminate: bool,
    /// Whether the two above were set explicitly (else they follow `server`).
    leave_flags_set: (bool, bool),
    /// `enable_script_checks` (also copied into [`AgentConfig::enable_script_checks`]).
    pub enable_script_checks: bool,
    /// `ports.dns = -1`: DNS disabled. The core has no switch for this yet, so it is carried here.
    pub dns_disabled: bool,
    /// `ui_config { … }` and its legacy spellings as read so far (settled in [`Settings::finish`]).
    ui_keys: ui::UiKeys,
    /// Keys seen that are accepted with no effect here (dotted names), with the reason: the
    /// agent logs each once at start ("accepted, no effect here").
    pub no_effect: BTreeMap<String, String>,
    /// `primary_datacenter` / `acl_datacenter`: the ACL authority, checked in [`Settings::finish`].
    acl_primary_datacenter: Option<String>,
    /// `telemetry.prefix_filter` and `telemetry.filter_default` as read so far (parsed together).
    telemetry_filter: (Vec<String>, bool),
    /// `addresses.*`: checked against the final `client_addr` in [`Settings::finish`].
    listener_addrs: BTreeMap<String, IpAddr>,
    /// `serf_lan`: checked against the final `bind_addr` in [`Settings::finish`].
    serf_lan_addr: Option<IpAddr>,
    /// `addresses.http` naming a Unix socket: its path, and whether an IP was listed too (else
    /// HTTP has no TCP listener); settled with `unix_sockets` in [`Settings::finish`].
    http_unix: Option<(std::path::PathBuf, bool)>,
    /// `unix_sockets { mode, user, group }`.
    unix_socket_perms: (Option<u32>, Option<String>, Option<String>),
}

impl Settings {
    /// The rotating log file `log_file` and `log_rotate_*` ask for, if any.
    pub fn log_file_config(&self) -> Option<crate::logs::file::LogFileConfig> {
        Some(crate::logs::file::LogFileConfig {
            path: self.log_file.clone()?,
            rotate_bytes: self.log_rotate_bytes,
            rotate_duration: self.log_rotate_duration,
            rotate_max_files: self.log_rotate_max_files,
        })
    }

    /// Defaults: Consul's (or `-dev`'s when `dev`) before any file or flag is applied.
    pub fn new(dev: bool) -> Self {
        Settings {
            agent: if dev { AgentConfig::dev() } else { AgentConfig::default() },
            log_level: "info".to_string(),
            log_json: false,
            pid_file: None,
            log_file: None,
            log_rotate_bytes: 0,
            log_rotate_duration: crate::logs::file::DEFAULT_ROTATE_DURATION,
            log_rotate_max_files: 0,
            skip_leave_on_interrupt: true,
            leave_on_terminate: false,
            leave_flags_set: (false, false),
            enable_script_checks: false,
            dns_disabled: false,
            ui_keys: Default::default(),
            no_effect: BTreeMap::new(),
            acl_primary_datacenter: None,
            telemetry_filter: (Vec::new(), true),
            listener_addrs: BTreeMap::new(),
            serf_lan_addr: None,
            http_unix: None,
            unix_socket_perms: (None, None, None),
        }
    }

    /// Merges one parsed source; `source` names it in error messages.
    pub fn apply_value(&mut self, value: &Value, source: &str) -> Result<()> {
        let ctx = Ctx { source };
        let Value::Object(map) = value else {
            return Err(Error::Config(format!("{source}: the top level must be an object, got {}", describe(value))));
        };
        for (key, v) in map {
            self.apply_top(&ctx, key, v)?;
        }
        Ok(())
    }

    fn apply_top(&mut self, ctx: &Ctx<'_>, key: &str, v: &Value) -> Result<()> {
        let a = &mut self.agent;
        match key {
            "datacenter" => a.datacenter = ctx.string(key, v)?.to_lowercase(),
            "node_name" => a.node_name = ctx.string(key, v)?,
            // Merged across sources key by key, as Consul merges maps.
            "node_meta" => {
                for block in ctx.blocks(key, v)? {
                    for (k, value) in block {
                        let value = ctx.string(&format!("{key}.{k}"), value)?;
                        self.agent.node_meta.insert(k.clone(), value);
                    }
                }
                crate::agent::config::validate_node_meta(&self.agent.node_meta).map_err(|e| ctx.bad(key, &e))?;
            }
            // Merged across sources key by key, as Consul merges blocks.
            "locality" => {
                for block in ctx.blocks(key, v)? {
                    for (k, value) in block {
                        let value = ctx.string(&format!("{key}.{k}"), value)?;
                        let l = self.agent.locality.get_or_insert_with(Default::default);
                        match k.as_str() {
                            "region" => l.region = value,
                            "zone" => l.zone = value,
                            _ => {
                                return Err(ctx.bad(&format!("{key}.{k}"), "unknown key (locality has region and zone)"))
                            }
                        }
                    }
                }
            }
            "node_id" => {
                let s = ctx.string(key, v)?;
                // Consul insists on the canonical 8-4-4-4-12 form; the uuid parser alone would
                // also take the braced and URN forms.
                if s.len() != 36 {
                    return Err(ctx.bad(key, &format!("{s:?} is not a UUID like 8-4-4-4-12 hex digits")));
                }
                a.node_id = Some(s.parse().map_err(|e| ctx.bad(key, &format!("{s:?} is not a valid UUID: {e}")))?);
            }
            "server" => a.server = ctx.bool(key, v)?,
            "bootstrap" => a.bootstrap = ctx.bool(key, v)?,
            "bootstrap_expect" => a.bootstrap_expect = ctx.uint(key, v, u32::MAX.into())? as u32,
            "data_dir" => {
                let s = ctx.string(key, v)?;
                if s.is_empty() {
                    return Err(ctx.bad(key, "must not be empty"));
                }
                a.data_dir = Some(PathBuf::from(s));
            }
            "bind_addr" => a.bind_addr = ctx.ip(key, v)?,
            "advertise_addr" => a.advertise_addr = Some(ctx.ip(key, v)?),
            "client_addr" => a.client_addr = ctx.ip(key, v)?,
            "ports" => {
                for block in ctx.blocks(key, v)? {
                    self.apply_ports(ctx, block)?;
                }
            }
            // `start_join` is deprecated in Consul, which appends it to `retry_join` too.
            "retry_join" | "start_join" => {
                let list = ctx.string_list(key, v)?;
                self.agent.retry_join.extend(list);
            }
            "retry_interval" => a.retry_interval = ctx.duration(key, v)?,
            "retry_max" => a.retry_max = ctx.uint(key, v, u32::MAX.into())? as u32,
            // `start_join_wan` is deprecated in Consul like `start_join`, and joins the same way.
            "retry_join_wan" | "start_join_wan" => {
                let list = ctx.string_list(key, v)?;
                self.agent.wan.retry_join.extend(list);
            }
            "retry_interval_wan" => a.wan.retry_interval = ctx.duration(key, v)?,
            "retry_max_wan" => a.wan.retry_max = ctx.uint(key, v, u32::MAX.into())? as u32,
            "advertise_addr_wan" => a.wan.advertise_addr = Some(ctx.ip(key, v)?),
            "serf_wan" => a.wan.bind_addr = Some(ctx.ip(key, v)?),
            "reconnect_timeout_wan" => {
                let d = ctx.duration(key, v)?;
                if d < Duration::from_secs(8 * 3600) {
                    return Err(ctx.bad(key, "must be at least 8h"));
                }
                a.wan.gossip.reconnect_timeout = d;
            }
            "gossip_wan" => {
                for block in ctx.blocks(key, v)? {
                    apply_gossip_block(ctx, "gossip_wan", &mut self.agent.wan.gossip, block)?;
                }
            }
            "performance" => {
                for block in ctx.blocks(key, v)? {
                    self.apply_performance(ctx, block)?;
                }
            }
            "autopilot" => {
                for block in ctx.blocks(key, v)? {
                    self.apply_autopilot(ctx, block)?;
                }
            }
            "raft_snapshot_threshold" => {
                a.raft.snapshot_threshold = ctx.uint(key, v, u64::MAX)?;
            }
            "raft_trailing_logs" => a.raft.trailing_logs = ctx.uint(key, v, u64::MAX)?,
            "raft_snapshot_interval" => {
                // Validated so a typo fails now; the core snapshots by threshold only.
                ctx.duration(key, v)?;
                self.note_no_effect(key);
            }
            "default_query_time" => a.default_query_time = ctx.duration(key, v)?,
            "max_query_time" => a.max_query_time = ctx.duration(key, v)?,
            "log_level" => self.log_level = ctx.string(key, v)?,
            "log_json" => self.log_json = ctx.bool(key, v)?,
            "pid_file" => self.pid_file = Some(PathBuf::from(ctx.string(key, v)?)),
            "log_file" => {
                self.log_file = Some(PathBuf::from(ctx.string(key, v)?)).filter(|p| !p.as_os_str().is_empty())
            }
            "log_rotate_bytes" => self.log_rotate_bytes = ctx.uint(key, v, u64::MAX)?,
            "log_rotate_duration" => self.log_rotate_duration = ctx.duration(key, v)?,
            "log_rotate_max_files" => self.log_rotate_max_files = ctx.int(key, v)?,
            "encrypt" => {
                let k = ctx.string(key, v)?;
                crate::membership::gossip::keyring::decode_key(&k).map_err(|e| ctx.bad(key, &e.to_string()))?;
                a.encrypt = Some(k);
            }
            "encrypt_verify_incoming" => a.encrypt_verify_incoming = ctx.bool(key, v)?,
            "encrypt_verify_outgoing" => a.encrypt_verify_outgoing = ctx.bool(key, v)?,
            "disable_keyring_file" => a.disable_keyring_file = ctx.bool(key, v)?,
            "reconnect_timeout" => {
                let d = ctx.duration(key, v)?;
                // Consul's floor: failed nodes must get a real chance to come back.
                if d < Duration::from_secs(8 * 3600) {
                    return Err(ctx.bad(key, "must be at least 8h"));
                }
                a.gossip_lan.reconnect_timeout = d;
            }
            "skip_leave_on_interrupt" => {
                self.skip_leave_on_interrupt = ctx.bool(key, v)?;
                self.leave_flags_set.0 = true;
            }
            "leave_on_terminate" => {
                self.leave_on_terminate = ctx.bool(key, v)?;
                self.leave_flags_set.1 = true;
            }
            "gossip_lan" => {
                for block in ctx.blocks(key, v)? {
                    self.apply_gossip_lan(ctx, block)?;
                }
            }
            "enable_debug" => self.agent.enable_debug = ctx.bool(key, v)?,
            "enable_script_checks" => {
                self.enable_script_checks = ctx.bool(key, v)?;
                self.agent.enable_script_checks = self.enable_script_checks;
            }
            "enable_local_script_checks" => a.enable_local_script_checks = ctx.bool(key, v)?,
            "check_update_interval" => a.check_update_interval = ctx.duration(key, v)?,
            "disable_coordinates" => a.disable_coordinates = ctx.bool(key, v)?,
            // Not user settings in Consul's documentation, but read from files all the same.
            "ae_interval" => a.ae_interval = ctx.duration(key, v)?,
            "check_reap_interval" => a.check_reap_interval = ctx.duration(key, v)?,
            "check_deregister_interval_min" => a.check_deregister_interval_min = ctx.duration(key, v)?,
            "sync_coordinate_interval_min" => a.sync_coordinate_interval_min = ctx.duration(key, v)?,
            "sync_coordinate_rate_target" => a.sync_coordinate_rate_target = ctx.float(key, v)?,
            // Service and check definitions: the same parser as the agent API, so a block can be
            // posted to /v1/agent/service/register as-is and errors read the same.
            "service" | "services" => {
                for (i, block) in ctx.blocks(key, v)?.into_iter().enumerate() {
                    let def = crate::local::parse_service_registration(&Value::Object(block.clone()))
                        .map_err(|e| ctx.bad(&format!("{key}[{i}]"), &e.to_string()))?;
                    self.agent.services.push(def);
                }
            }
            "check" | "checks" => {
                for (i, block) in ctx.blocks(key, v)?.into_iter().enumerate() {
                    let def = crate::local::parse_check_registration(&Value::Object(block.clone()))
                        .map_err(|e| ctx.bad(&format!("{key}[{i}]"), &e.to_string()))?;
                    self.agent.checks.push(def);
                }
            }
            "domain" => a.dns.domain = dns_domain(&ctx.string(key, v)?),
            "alt_domain" => a.dns.alt_domain = Some(dns_domain(&ctx.string(key, v)?)),
            "recursors" => {
                a.dns.recursors = ctx
                    .string_list(key, v)?
                    .iter()
                    .map(|r| parse_recursor(r).map_err(|e| ctx.bad(key, &e)))
                    .collect::<Result<_>>()?;
            }
            "dns_config" => {
                for block in ctx.blocks(key, v)? {
                    self.apply_dns_config(ctx, block)?;
                }
            }
            "acl" => {
                for block in ctx.blocks(key, v)? {
                    self.apply_acl(ctx, block)?;
                }
            }
            _ if self.apply_ui(ctx, key, v)? => {}
            _ if self.apply_legacy_acl(ctx, key, v)? => {}
            _ if self.apply_tls(ctx, key, v)? => {}
            _ if self.apply_special(ctx, key, v)? => {}
            // Everything else by its class alone: no effect, refused, or unknown.
            // Appended across sources, like services and checks.
            "watches" => {
                let items: Vec<&Value> = match v {
                    Value::Array(items) => items.iter().collect(),
                    Value::Object(_) => vec![v],
                    Value::Null => Vec::new(),
                    other => return Err(ctx.expected(key, "a list of watch blocks", other)),
                };
                for item in items {
                    let i = self.agent.watches.len();
                    let def = crate::agent::watches::WatchDef::from_value(i, item).map_err(|e| {
                        let at = if e.field.is_empty() {
                            format!("watches[{i}]")
                        } else {
                            format!("watches[{i}].{}", e.field)
                        };
                        ctx.bad(&at, &e.message)
                    })?;
                    self.agent.watches.push(def);
                }
            }
            _ => self.apply_classified(ctx, key, v)?,
        }
        Ok(())
    }

    fn apply_ports(&mut self, ctx: &Ctx<'_>, block: &Map<String, Value>) -> Result<()> {
        for (k, v) in block {
            let key = format!("ports.{k}");
            let p = &mut self.agent.ports;
            match k.as_str() {
                "http" => p.http = ctx.port(&key, v, true)?,
                "server" => p.server = ctx.port(&key, v, false)?.unwrap_or_default(),
                "serf_lan" => p.serf_lan = ctx.port(&key, v, false)?.unwrap_or_default(),
                "serf_wan" => {
                    self.agent.wan.port = ctx.port(&key, v, true)?;
                    self.agent.wan.port_set = true;
                }
                "dns" => match ctx.port(&key, v, true)? {
                    Some(port) => {
                        p.dns = port;
                        self.dns_disabled = false;
                        self.agent.dns.enabled = true;
                    }
                    None => {
                        self.dns_disabled = true;
                        self.agent.dns.enabled = false;
                    }
                },
                "https" => p.https = ctx.port(&key, v, true)?,
                // 0 or -1 turns automatic sidecar ports off, as in Consul.
                "sidecar_min_port" | "sidecar_max_port" => {
                    let port = ctx.port(&key, v, true)?.unwrap_or(0);
                    let range = self.agent.sidecar_ports.get_or_insert_with(Default::default);
                    if k == "sidecar_min_port" {
                        range.min = port;
                    } else {
                        range.max = port;
                    }
                }
                "grpc" | "grpc_tls" | "expose_min_port" | "expose_max_port" | "proxy_min_port" | "proxy_max_port" => {
                    ctx.port(&key, v, true)?;
                    self.note_no_effect(&key);
                }
                _ => return Err(ctx.unknown(&key)),
            }
        }
        Ok(())
    }

    fn apply_performance(&mut self, ctx: &Ctx<'_>, block: &Map<String, Value>) -> Result<()> {
        for (k, v) in block {
            let key = format!("performance.{k}");
            match k.as_str() {
                "raft_multiplier" => {
                    let m = ctx.uint(&key, v, u32::MAX.into())? as u32;
                    // Consul: 0 means "use the default"; the upper bound is checked by the core.
                    self.agent.raft.raft_multiplier = if m == 0 { 5 } else { m };
                }
                "rpc_hold_timeout" => self.agent.rpc_hold_timeout = ctx.duration(&key, v)?,
                "leave_drain_time" => {
                    ctx.duration(&key, v)?;
                    self.note_no_effect(&key);
                }
                _ => return Err(ctx.unknown(&key)),
            }
        }
        Ok(())
    }

    fn apply_autopilot(&mut self, ctx: &Ctx<'_>, block: &Map<String, Value>) -> Result<()> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        for (k, v) in block {
            let key = format!("autopilot.{k}");
            let a = &mut self.agent.autopilot;
            match k.as_str() {
                "cleanup_dead_servers" => a.cleanup_dead_servers = ctx.bool(&key, v)?,
                "last_contact_threshold" => a.last_contact_threshold_ms = ms(ctx.duration(&key, v)?),
                "max_trailing_logs" => a.max_trailing_logs = ctx.uint(&key, v, u64::MAX)?,
                "min_quorum" => a.min_quorum = ctx.uint(&key, v, u64::from(u32::MAX))?,
                "server_stabilization_time" => a.server_stabilization_time_ms = ms(ctx.duration(&key, v)?),
                // Enterprise settings: stored and returned by the API, no effect.
                "redundancy_zone_tag" => {
                    a.redundancy_zone_tag = ctx.string(&key, v)?;
                    self.note_no_effect(&key);
                }
                "upgrade_version_tag" => {
                    a.upgrade_version_tag = ctx.string(&key, v)?;
                    self.note_no_effect(&key);
                }
                "disable_upgrade_migration" => {
                    a.disable_upgrade_migration = ctx.bool(&key, v)?;
                    self.note_no_effect(&key);
                }
                _ => return Err(ctx.unknown(&key)),
            }
        }
        Ok(())
    }

    fn apply_dns_config(&mut self, ctx: &Ctx<'_>, block: &Map<String, Value>) -> Result<()> {
        for (k, v) in block {
            let key = format!("dns_config.{k}");
            let d = &mut self.agent.dns;
            match k.as_str() {
                "allow_stale" => d.allow_stale = ctx.bool(&key, v)?,
                "max_stale" => d.max_stale = ctx.duration(&key, v)?,
                "node_ttl" => d.node_ttl = ctx.duration(&key, v)?,
                "service_ttl" => {
                    for block in ctx.blocks(&key, v)? {
                        for (name, ttl) in block {
                            let ttl = ctx.duration(&format!("{key}.{name}"), ttl)?;
                            d.service_ttl.insert(name.clone(), ttl);
                        }
                    }
                }
                "only_passing" => d.only_passing = ctx.bool(&key, v)?,
                "enable_truncate" => d.enable_truncate = ctx.bool(&key, v)?,
                "udp_answer_limit" => d.udp_answer_limit = ctx.uint(&key, v, 65535)? as usize,
                "a_record_limit" => d.a_record_limit = ctx.uint(&key, v, 65535)? as usize,
                "recursor_timeout" => d.recursor_timeout = ctx.duration(&key, v)?,
                "enable_additional_node_meta_txt" => d.node_meta_txt = ctx.bool(&key, v)?,
                "soa" => {
                    for block in ctx.blocks(&key, v)? {
                        for (field, val) in block {
                            let n = ctx.uint(&format!("{key}.{field}"), val, u32::MAX.into())? as u32;
                            match field.as_str() {
                                "refresh" => d.soa.0 = n,
                                "retry" => d.soa.1 = n,
                                "expire" => d.soa.2 = n,
                                "min_ttl" => d.soa.3 = n,
                                _ => return Err(ctx.unknown(&format!("{key}.{field}"))),
                            }
                        }
                    }
                }
                _ => self.apply_classified(ctx, &key, v)?,
            }
        }
        Ok(())
    }

    fn apply_gossip_lan(&mut self, ctx: &Ctx<'_>, block: &Map<String, Value>) -> Result<()> {
        apply_gossip_block(ctx, "gossip_lan", &mut self.agent.gossip_lan, block)
    }

    /// Settles what depends on several sources; call once after the last one was applied.
    pub fn finish(&mut self) -> Result<()> {
        self.settle_leave_defaults();
        self.settle_acl()?;
        self.settle_ui()?;
        self.settle_listeners()
    }

    /// The leave defaults follow the role unless set explicitly (Consul's `leave_on_terminate`
    /// and `skip_leave_on_interrupt` defaults differ for servers and clients).
    pub fn settle_leave_defaults(&mut self) {
        if !self.leave_flags_set.0 {
            self.skip_leave_on_interrupt = self.agent.server;
        }
        if !self.leave_flags_set.1 {
            self.leave_on_terminate = !self.agent.server;
        }
    }
}

/// A `gossip_lan { … }` or `gossip_wan { … }` block onto that pool's timing.
fn apply_gossip_block(
    ctx: &Ctx<'_>,
    block_name: &str,
    g: &mut crate::membership::gossip::GossipConfig,
    block: &Map<String, Value>,
) -> Result<()> {
    for (k, v) in block {
        let key = format!("{block_name}.{k}");
        match k.as_str() {
            "gossip_nodes" => g.gossip_nodes = ctx.uint(&key, v, 64)? as usize,
            "gossip_interval" => g.gossip_interval = ctx.duration(&key, v)?,
            "probe_interval" => g.probe_interval = ctx.duration(&key, v)?,
            "probe_timeout" => g.probe_timeout = ctx.duration(&key, v)?,
            "suspicion_mult" => g.suspicion_mult = ctx.uint(&key, v, 100)? as u32,
            "retransmit_mult" => g.retransmit_mult = ctx.uint(&key, v, 100)? as u32,
            _ => return Err(ctx.unknown(&key)),
        }
    }
    Ok(())
}

/// A DNS domain in the form the core uses: lower case with a trailing dot.
fn dns_domain(s: &str) -> String {
    format!("{}.", s.trim().trim_end_matches('.').to_ascii_lowercase())
}

/// A recursor: `ip`, `ip:port` or `[ipv6]:port` (port 53 by default).
fn parse_recursor(s: &str) -> std::result::Result<std::net::SocketAddr, String> {
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Ok(sa);
    }
    s.trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .map_err(|_| format!("{s:?} is not an IP address or IP:port"))
}

/// Where a value came from, for error messages.
struct Ctx<'a> {
    source: &'a str,
}

impl Ctx<'_> {
    fn unknown(&self, key: &str) -> Error {
        Error::Config(format!("unknown key {key:?} in {}", self.source))
    }

    fn bad(&self, key: &str, msg: &str) -> Error {
        Error::Config(format!("{key}: {msg} (in {})", self.source))
    }

    fn expected(&self, key: &str, what: &str, got: &Value) -> Error {
        self.bad(key, &format!("expected {what}, got {}", describe(got)))
    }

    fn string(&self, key: &str, v: &Value) -> Result<String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(self.expected(key, "a string", other)),
        }
    }

    fn bool(&self, key: &str, v: &Value) -> Result<bool> {
        match v {
            Value::Bool(b) => Ok(*b),
            // Quoted booleans appear in hand-written HCL; Consul's weak decoding accepts them.
            Value::String(s) if s == "true" => Ok(true),
            Value::String(s) if s == "false" => Ok(false),
            other => Err(self.expected(key, "a boolean", other)),
        }
    }

    fn int(&self, key: &str, v: &Value) -> Result<i64> {
        match v {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    return Ok(i);
                }
                // Whole floats (HCL may hand us 8500.0) are fine; fractions and huge values are not.
                if let Some(f) = n.as_f64() {
                    if f.fract() == 0.0 && f.abs() < 9.0e15 {
                        return Ok(f as i64);
                    }
                }
                Err(self.expected(key, "a whole number", v))
            }
            Value::String(s) => s.trim().parse::<i64>().map_err(|_| self.expected(key, "a number", v)),
            other => Err(self.expected(key, "a number", other)),
        }
    }

    fn uint(&self, key: &str, v: &Value, max: u64) -> Result<u64> {
        if let Value::Number(n) = v {
            if let Some(u) = n.as_u64() {
                return if u <= max { Ok(u) } else { Err(self.bad(key, &format!("{u} is too large (max {max})"))) };
            }
        }
        let i = self.int(key, v)?;
        if i < 0 {
            return Err(self.bad(key, &format!("must not be negative, got {i}")));
        }
        let u = i as u64;
        if u > max {
            return Err(self.bad(key, &format!("{u} is too large (max {max})")));
        }
        Ok(u)
    }

    fn float(&self, key: &str, v: &Value) -> Result<f64> {
        match v {
            Value::Number(n) => n.as_f64().ok_or_else(|| self.expected(key, "a number", v)),
            Value::String(s) => s.trim().parse::<f64>().map_err(|_| self.expected(key, "a number", v)),
            other => Err(self.expected(key, "a number", other)),
        }
    }

    /// A port: 0–65535; `-1` ("disabled") gives `None` where `allow_disable`.
    fn port(&self, key: &str, v: &Value, allow_disable: bool) -> Result<Option<u16>> {
        let i = self.int(key, v)?;
        match i {
            -1 if allow_disable => Ok(None),
            -1 => Err(self.bad(key, "cannot be disabled (-1): this listener is required")),
            0..=65535 => Ok(Some(i as u16)),
            _ => Err(self.bad(key, &format!("{i} is not a valid port (0-65535)"))),
        }
    }

    fn duration(&self, key: &str, v: &Value) -> Result<Duration> {
        match v {
            Value::String(s) => parse_go_duration(s).map_err(|e| self.bad(key, &e)),
            Value::Number(n) if n.as_u64() == Some(0) => Ok(Duration::ZERO),
            Value::Number(_) => Err(self.bad(
                key,
                &format!("expected a duration string with a unit like \"30s\" or \"500ms\", got the bare number {v}"),
            )),
            other => Err(self.expected(key, "a duration string like \"30s\"", other)),
        }
    }

    fn ip(&self, key: &str, v: &Value) -> Result<IpAddr> {
        let s = self.string(key, v)?;
        parse_ip_list_first(&s).map_err(|e| self.bad(key, &e))
    }

    /// A list of strings; a single string counts as a one-element list (HCL and hand-written
    /// JSON both produce that).
    fn string_list(&self, key: &str, v: &Value) -> Result<Vec<String>> {
        match v {
            Value::String(s) => Ok(vec![s.clone()]),
            Value::Array(items) => {
                items.iter().enumerate().map(|(i, item)| self.string(&format!("{key}[{i}]"), item)).collect()
            }
            other => Err(self.expected(key, "a list of strings", other)),
        }
    }

    /// A block: one object, or (HCL repeating a block, or JSON written that way) a list of them.
    fn blocks<'v>(&self, key: &str, v: &'v Value) -> Result<Vec<&'v Map<String, Value>>> {
        match v {
            Value::Object(m) => Ok(vec![m]),
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::Object(m) => Ok(m),
                    other => Err(self.expected(key, "a block (object)", other)),
                })
                .collect(),
            other => Err(self.expected(key, "a block (object)", other)),
        }
    }
}

/// A short rendering of a value for "expected X, got Y" messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Object(_) => "an object".to_string(),
        Value::Array(_) => "a list".to_string(),
        Value::Null => "null".to_string(),
        other => {
            let s = other.to_string();
            if s.len() > 60 {
                format!("{}…", &s[..s.char_indices().nth(57).map_or(s.len(), |(i, _)| i)])
            } else {
                s
            }
        }
    }
}

/// Parses an address setting. Consul allows a space-separated list for `client_addr`; the
/// listeners here take one address, so the first is used. go-sockaddr templates are not
/// evaluated, so they are refused with a message saying so rather than a parse error.
pub fn parse_ip_list_first(s: &str) -> std::result::Result<IpAddr, String> {
    if s.contains("{{") {
        return Err(format!("{s:?}: go-sockaddr templates are not supported; give an IP address"));
    }
    let first = s.split_whitespace().next().ok_or_else(|| "must not be empty".to_string())?;
    first.parse().map_err(|_| format!("{first:?} is not an IP address"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Parses `v` like the binary does: apply, settle, validate.
    fn start(v: &Value) -> Result<Settings> {
        let mut s = Settings::new(false);
        s.apply_value(v, "config.json")?;
        s.finish()?;
        s.agent.validate()?;
        Ok(s)
    }

    /// The file `github.com/hashicorp/consul/sdk/testutil` (`TestServerConfig`, Consul 1.16)
    /// writes with its defaults, as `json.Marshal` lays it out (our own values): `segments` is
    /// `null`, `addresses` and `acl.tokens` empty objects, eight ports.
    #[test]
    fn consul_sdk_testutil_default_config_is_accepted() {
        let node_id = "0b3d6a2e-8a52-4c0e-9d55-2f1a7c3e9b10";
        let v: Value = serde_json::from_str(&format!(
            r#"{{"node_name":"node-{node_id}","node_id":"{node_id}","performance":{{"raft_multiplier":1}},
            "bootstrap":true,"server":true,"data_dir":"/tmp/TestAPI_KV123/data","segments":null,
            "disable_update_check":true,"log_level":"debug","bind_addr":"127.0.0.1","addresses":{{}},
            "ports":{{"dns":21001,"http":21002,"https":21003,"serf_lan":21004,"serf_wan":21005,"server":21006,
            "grpc":21007,"grpc_tls":21008}},"acl":{{"tokens":{{}}}},
            "connect":{{"ca_config":{{"cluster_id":"11111111-2222-3333-4444-555555555555"}},"enabled":true}},
            "skip_leave_on_interrupt":true,"peering":{{"enabled":true}}}}"#
        ))
        .expect("json");
        let s = start(&v).expect("the testutil's default configuration starts");
        let a = &s.agent;
        assert_eq!(a.node_name, format!("node-{node_id}"));
        assert!(a.server && a.bootstrap && !a.acl.enabled);
        assert_eq!((a.ports.http, a.ports.dns, a.ports.serf_lan, a.ports.server), (Some(21002), 21001, 21004, 21006));
        assert_eq!(a.raft.raft_multiplier, 1);
        assert_eq!(a.ports.https, None, "no certificate: no HTTPS listener");
        assert_eq!((a.wan.port, a.wan.port_set), (Some(21005), true));
        for key in ["ports.https", "ports.grpc", "ports.grpc_tls", "disable_update_check", "peering.enabled"] {
            assert!(s.no_effect.contains_key(key), "{key} not logged as accepted without effect");
        }
        assert!(!s.no_effect.contains_key("segments"), "null asks for nothing");
        assert!(a.connect.enabled);
        assert_eq!(a.connect.cluster_id.as_deref(), Some("11111111-2222-3333-4444-555555555555"));
    }

    /// The WAN pool keys: port (-1 turns it off), addresses, joins, timing, reconnect timeout.
    #[test]
    fn wan_keys_fill_the_wan_settings() {
        let s = start(&json!({
            "server": true, "data_dir": "/tmp/w", "ports": {"serf_wan": 18302}, "serf_wan": "127.0.0.2",
            "advertise_addr_wan": "10.1.1.1", "retry_join_wan": ["a"], "start_join_wan": ["b"],
            "retry_interval_wan": "3s", "retry_max_wan": 4, "reconnect_timeout_wan": "9h",
            "gossip_wan": {"probe_interval": "2s", "probe_timeout": "1s", "gossip_nodes": 5, "suspicion_mult": 7}
        }))
        .expect("WAN keys");
        let w = &s.agent.wan;
        assert_eq!((w.port, w.port_set), (Some(18302), true));
        assert_eq!(w.bind_addr, Some("127.0.0.2".parse().expect("ip")));
        assert_eq!(w.advertise_addr, Some("10.1.1.1".parse().expect("ip")));
        assert_eq!(w.retry_join, ["a", "b"]);
        assert_eq!((w.retry_interval, w.retry_max), (Duration::from_secs(3), 4));
        assert_eq!(w.gossip.reconnect_timeout, Duration::from_secs(9 * 3600));
        assert_eq!((w.gossip.probe_interval, w.gossip.probe_timeout), (Duration::from_secs(2), Duration::from_secs(1)));
        assert_eq!((w.gossip.gossip_nodes, w.gossip.suspicion_mult), (5, 7));
        assert_eq!(w.gossip.push_pull_interval, Duration::from_secs(60), "WAN defaults otherwise");
        assert!(s.no_effect.is_empty(), "{:?}", s.no_effect);
        assert_eq!(start(&json!({"data_dir": "/tmp/w", "ports": {"serf_wan": -1}})).expect("off").agent.wan.port, None);
        let defaults = start(&json!({"data_dir": "/tmp/w"})).expect("defaults");
        assert_eq!((defaults.agent.wan.port, defaults.agent.wan.port_set), (Some(8302), false));
        for (v, want) in [
            (json!({"data_dir": "/tmp/w", "reconnect_timeout_wan": "1h"}), "at least 8h"),
            (json!({"data_dir": "/tmp/w", "gossip_wan": {"probe_interval": "0s"}}), "gossip_wan"),
            (json!({"data_dir": "/tmp/w", "gossip_wan": {"nope": 1}}), "gossip_wan.nope"),
        ] {
            let e = start(&v).expect_err("refused").to_string();
            assert!(e.contains(want), "{v}: {e}");
        }
    }

    /// The same with the fields tests set through the callback: ACLs on with the legacy token
    /// names, the pre-1.12 TLS keys off, addresses equal to client_addr, the optional ports,
    /// node meta, retry_join, `partition` "" and so on.
    #[test]
    fn consul_sdk_testutil_config_with_callback_fields_is_accepted() {
        let v = json!({
            "node_name": "node-1", "node_id": "0b3d6a2e-8a52-4c0e-9d55-2f1a7c3e9b10",
            "node_meta": {"rack": "r1"}, "performance": {"raft_multiplier": 1}, "bootstrap": true, "server": true,
            "partition": "", "retry_join": ["127.0.0.1:21104"], "data_dir": "/tmp/t/data", "datacenter": "dc1",
            "segments": [], "disable_update_check": true, "log_level": "debug", "bind_addr": "127.0.0.1",
            "addresses": {"dns": "127.0.0.1", "http": "127.0.0.1", "https": "127.0.0.1", "grpc": "127.0.0.1"},
            "ports": {"dns": -1, "http": 21102, "https": -1, "serf_lan": 21104, "serf_wan": -1, "server": 21106,
                      "grpc": -1, "grpc_tls": -1, "proxy_min_port": 21200, "proxy_max_port": 21300},
            "raft_protocol": 3, "acl_datacenter": "dc1", "primary_datacenter": "dc1", "acl_default_policy": "deny",
            "acl": {"enabled": true, "enable_token_replication": false, "policy_ttl": "30s", "token_ttl": "30s",
                    "down_policy": "extend-cache", "default_policy": "deny", "enable_key_list_policy": true,
                    "tokens": {"replication": "", "default": "", "agent": "agent-secret", "master": "root",
                               "agent_master": "recovery"},
                    "disabled_ttl": "10s"},
            "encrypt": "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=",
            "ca_file": "", "cert_file": "", "key_file": "", "verify_incoming": false, "verify_incoming_rpc": false,
            "verify_incoming_https": false, "verify_outgoing": false, "enable_script_checks": false,
            "connect": {"enabled": true, "ca_config": {"cluster_id": "11111111-2222-3333-4444-555555555555"}},
            "enable_debug": true, "skip_leave_on_interrupt": true, "peering": {"enabled": true},
            "version": "1.16.0", "experiments": [], "locality": {"region": "us-east-1", "zone": "us-east-1a"}
        });
        let s = start(&v).expect("accepted");
        let acl = &s.agent.acl;
        assert!(acl.enabled && !acl.default_allow);
        assert_eq!(acl.tokens.initial_management.as_deref(), Some("root"));
        assert_eq!(acl.tokens.agent_recovery.as_deref(), Some("recovery"));
        assert!(s.dns_disabled);
        assert!(s.no_effect.contains_key("ports.proxy_min_port"));
        let locality = s.agent.locality.as_ref().expect("locality is honoured");
        assert_eq!((locality.region.as_str(), locality.zone.as_str()), ("us-east-1", "us-east-1a"));
        assert!(!s.no_effect.contains_key("locality.region"));
    }
}
