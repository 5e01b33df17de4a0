//! Consul's JSON on the way in: request bodies read the way Consul's decoder reads them
//! (case-insensitive field names, errors that name the field — [`body`]) and the registration
//! shapes every door accepts ([`catalog`]: nodes, services, checks). Consul's Go types are
//! modelled where their exact field set matters ([`go_api_types`]: decoding a `Proxy` block,
//! and the `ContentHash` computed over them with Go's `hashstructure`, [`go_hash`]).
//!
//! May call: [`crate::state`] (the types parsed into) and the leaf modules. The HTTP API, config
//! files and the local agent all parse through here, so they accept and reject the same input.

pub(crate) mod body;
pub(crate) mod catalog;
pub mod connect;
pub(crate) mod go_api_types;
pub mod go_hash;
pub mod selector;
pub mod timestamp;
