//! Tests against real `consul-rs` processes: cluster formation with Consul's CLI flags,
//! kill -9 of every server, the CLI client commands, start-up errors, `consul-rs lock`,
//! `consul-rs rtt` and the gossip commands (`members`, `join`, `leave`, `event`, `keyring`, …).

mod t10_durability;
mod t20_cli;
mod t30_agent_services;
mod t30_lock;
mod t40_cli_discovery;
mod t50_rtt;
mod t60_gossip;
mod t70_gossip_cli;
