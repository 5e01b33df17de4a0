//! `consul-rs-node`: the native addon under the `consul-rs` npm package (`node/`).
//!
//! A thin napi-rs layer over the [`consul_sdk`] facade: [`client::NativeClient`],
//! [`handles`] (watches, discovery, locks, registrations) and [`agent::NativeAgent`]. All
//! asynchronous work runs on the SDK's runtime and answers JavaScript through threadsafe
//! functions ([`call`]), so no callback ever runs off the JS thread. The public, Promise-based
//! API (async iterators, `ConsulError`, keep-alive and exit handling) is the hand-written
//! `node/index.js`; this crate is built by `node/scripts/build.js`, not by `cargo test`.

// napi-derive needs `pub` items in private modules, and its expansions contain `unsafe` blocks
// (the FFI glue); our own code has none.
#![allow(unreachable_pub, unsafe_code, missing_docs)]

mod agent;
mod call;
mod client;
mod convert;
mod handles;
