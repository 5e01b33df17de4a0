//! # consul-core
//!
//! The whole consul-rs engine: a Raft-replicated state store (openraft over redb) with
//! Consul's KV and transaction semantics, blocking queries woken only by what they read, the
//! Consul-compatible HTTP API, server-to-server RPC with request forwarding, and cluster
//! formation. An [`agent::Agent`] is a library value — no process-global state — so several
//! agents can run in one process (tests, embedding in the language bindings).
//!
//! Crate map:
//! - [`agent`]: start/stop an agent; owns every listener and task.
//! - [`consensus`]: writes through Raft with leader forwarding; read barriers for the three
//!   consistency modes.
//! - [`gossip`]: the LAN gossip pool (SWIM on foca with Lifeguard, encryption and keyring, user
//!   events) and its deterministic simulator.
//! - [`cluster`]: bootstrap from gossip membership, servers into and out of Raft, members into
//!   the catalog (`serfHealth`).
//! - [`backend`]: where writes and catalog reads go — a server's replica or, for client agents,
//!   the servers over RPC.
//! - [`coordinate`]: Vivaldi network coordinates fed by gossip probe round trips.
//! - [`state`]: the replicated data (KV, tombstones, sessions) and change notification.
//! - [`command`]: Raft log payloads.
//! - [`raft`]: every openraft type, the redb log store and the state machine.
//! - [`rpc`]: framed, multiplexed TCP between agents.
//! - [`http`]: the `/v1` API.
//! - [`dns`]: the DNS interface for the `consul.` domain.
//! - [`archive`]: the `/v1/snapshot` archive format.
//! - [`local`]: the agent's own services and checks, persistence and anti-entropy.
//! - `checks`: the check runners (HTTP, TCP, UDP, gRPC, TTL, script, alias).
//! - [`config_file`]: Consul's configuration keys (JSON/HCL values) onto [`config::AgentConfig`],
//!   shared by the binary and the C library.

pub mod agent;
pub mod archive;
pub mod backend;
pub(crate) mod checks;
pub mod cluster;
pub mod command;
pub mod config;
pub mod config_file;
pub mod consensus;
pub mod coordinate;
pub mod dns;
pub mod duration;
pub mod error;
pub mod gossip;
pub mod http;
pub mod local;
pub mod raft;
pub mod rpc;
pub mod session_ttl;
pub mod state;

pub use error::{Error, Result};

/// The consul-rs version, reported as `Version` in `/v1/agent/self`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
