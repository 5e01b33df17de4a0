//! Tests against real `consul-rs` processes: cluster formation with Consul's CLI flags,
//! kill -9 of every server, the CLI client commands, start-up errors, `consul-rs lock`,
//! `consul-rs rtt`, the gossip commands (`members`, `join`, `leave`, `event`, `keyring`, …),
//! `consul-rs acl` (against HashiCorp Consul 1.16 when built; against consul-rs once it has ACLs) and
//! `consul-rs tls` (CA and certificate files), a mutual-TLS cluster, and the CLI over HTTPS (CA,
//! client certificates, server name; flags and environment), the agent ports bounded against
//! junk connections, and hostile input held to memory and time budgets (snapshot bombs, slow
//! request heads, oversized events, a hostile gRPC health endpoint), the WAN pool across
//! datacenters, and requests across datacenters (`?dc=`, DNS, prepared-query failover).

mod t10_durability;
mod t20_cli;
mod t30_agent_services;
mod t30_lock;
mod t40_cli_discovery;
mod t50_rtt;
mod t60_gossip;
mod t70_gossip_cli;
mod t80_acl_cli;
mod t82_acl_kill9;
mod t84_tls_cli;
mod t85_tls_cluster;
mod t86_cli_https;
mod t87_rpc_bounds;
mod t88_autopilot;
mod t88_unix_socket;
mod t90_hostile_input;
mod t96_monitor_logs;
mod t97_validate_watches;
mod t98_ui;
mod t99_wan;
mod t99_xdc;
