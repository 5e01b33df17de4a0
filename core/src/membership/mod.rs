//! Membership: who is in the datacenter, and how far apart they are.
//!
//! Owns the LAN gossip pool ([`gossip`]: SWIM on foca with Lifeguard, encryption and keyring,
//! user events, its simulator), cluster formation and the members' reflection in Raft and the
//! catalog ([`cluster`]: bootstrap, servers into and out of Raft, `serfHealth`), and the agent's
//! periodic network-coordinate sync ([`coordinate_sync`]), and the servers' WAN pool across
//! datacenters ([`wan`]).
//!
//! May call: [`crate::replication`] (Raft membership changes, catalog writes), [`crate::rpc`],
//! [`crate::state`], [`crate::coordinate`] (Vivaldi) and the leaf modules. Never the local
//! agent or the API.

pub mod cluster;
pub mod coordinate_sync;
pub mod gossip;
pub mod wan;
