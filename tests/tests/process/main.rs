//! Tests against real `consul-rs` processes: cluster formation with Consul's CLI flags,
//! kill -9 of every server, the CLI client commands, start-up errors, and `consul-rs lock`.

mod t10_durability;
mod t20_cli;
mod t30_lock;
mod t40_cli_discovery;
