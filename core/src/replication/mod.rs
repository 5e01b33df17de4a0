//! Replication: the state store kept identical on every server.
//!
//! Owns the Raft log and its storage ([`raft`]: openraft over redb, the state machine), the
//! write and read paths on top of it with leader forwarding, exactly-once request tracking and
//! the three consistency modes ([`consensus`]), leader-only session TTL timers
//! ([`session_ttl`]), and where an agent's writes go ([`backend`]: its own replica on a
//! server, the servers over RPC on a client agent).
//!
//! May call: [`crate::state`] (what is replicated), [`crate::rpc`] (the transport), and the
//! leaf modules (`error`, `duration`). Never membership, the local agent or the API: who the
//! servers are reaches it from above (the `cluster` module changes the Raft membership, a
//! client agent's server list is handed to [`backend::Remote`] as a [`backend::ServerSource`]).

pub mod acl_upkeep;
pub mod autopilot;
pub mod backend;
pub mod ca_upkeep;
pub mod consensus;
pub mod forward;
pub mod raft;
pub mod session_ttl;
#[cfg(test)]
pub(crate) mod sim;
