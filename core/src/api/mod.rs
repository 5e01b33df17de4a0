//! The front ends: Consul's `/v1` HTTP API ([`http`]) and DNS interface ([`dns`]).
//!
//! Owns request parsing, response shapes, headers and status codes, blocking queries, and the
//! `consul.` DNS domain. Every answer comes from the layers below; nothing here is replicated.
//!
//! May call every layer below: [`crate::local`], [`crate::membership`],
//! [`crate::replication`], [`crate::wire`], [`crate::state`], [`crate::rpc`]. Never
//! the agent layer above: what it needs of the configuration is handed to it as plain values.

pub mod agent_writes;
pub mod auth_method;
pub mod authz;
pub mod dns;
pub mod http;
pub mod jwt_auth;
pub mod kube_auth;
pub mod remote_dc;
