//! Consul's JSON on the way in: request bodies read the way Consul's decoder reads them
//! (case-insensitive field names, errors that name the field — [`body`]) and the registration
//! shapes every door accepts ([`catalog`]: nodes, services, checks).
//!
//! May call: [`crate::state`] (the types parsed into) and the leaf modules. The HTTP API, config
//! files and the local agent all parse through here, so they accept and reject the same input.

pub(crate) mod body;
pub(crate) mod catalog;
pub mod connect;
pub mod selector;
pub mod timestamp;
