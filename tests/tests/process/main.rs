//! Tests against real `consul-rs` processes: cluster formation with Consul's CLI flags,
//! kill -9 of every server, the CLI client commands, and start-up errors.

mod t10_durability;
mod t20_cli;
mod t30_agent_services;
