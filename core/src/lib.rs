//! # consul-core
//!
//! The whole consul-rs engine: a Raft-replicated state store (openraft over redb) with
//! Consul's KV and transaction semantics, blocking queries woken only by what they read, the
//! Consul-compatible HTTP API, server-to-server RPC with request forwarding, and cluster
//! formation. An [`agent::Agent`] is a library value — no process-global state — so several
//! agents can run in one process (tests, embedding in the language bindings).
//!
//! ## Layers
//!
//! Each top-level module is one layer and calls only the layers below it (no import cycle
//! between top-level modules; `../shared/tools/module-cycles.py core/src` checks it):
//!
//! ```text
//!   agent        assembly: config, config files, listeners, the RPC router, start/stop
//!     │
//!   api          the /v1 HTTP API and the DNS interface
//!     │
//!   local        the agent's own services and checks, check runners, anti-entropy
//!     │
//!   membership   gossip pool, cluster formation, members → Raft and catalog, coordinate sync
//!     │
//!   replication  Raft (openraft + redb), consensus (forwarding, reads, exactly-once), backend
//!     │
//!   wire · rpc   Consul's JSON shapes and parsers · framed multiplexed TCP (service tag + bytes)
//!     │
//!   state        the replicated data: commands, KV, txn, catalog, sessions, dedup, watches
//!     │
//!   acl · clock · conn_limit · coordinate ·     leaf modules: ACL rules and authorizer, the
//!   duration · error                              clock seam, per-client connection limits,
//!                                                 Vivaldi math, Go durations, the error type
//! ```
//!
//! - [`agent`]: start/stop an agent; owns every listener and task; [`agent::config`] and
//!   [`agent::config_file`] (Consul's configuration keys, shared by the binary and the C
//!   library).
//! - [`api`]: [`api::http`] and [`api::dns`].
//! - [`local`]: the agent's own services and checks, persistence, check runners, anti-entropy.
//! - [`membership`]: [`membership::gossip`] (SWIM on foca with Lifeguard, encryption, events,
//!   a deterministic simulator), [`membership::cluster`] (bootstrap, servers into and out of
//!   Raft, `serfHealth`), [`membership::coordinate_sync`].
//! - [`replication`]: [`replication::raft`] (every openraft type, the redb log store, the state
//!   machine), [`replication::consensus`] (writes with forwarding and exactly-once tracking,
//!   read barriers for the three consistency modes), [`replication::backend`] (a server's
//!   replica or a client agent's RPC), [`replication::session_ttl`].
//! - [`wire`]: Consul's JSON request shapes (registrations, checks) and their parsers, used by
//!   the HTTP API, config files and the local agent alike.
//! - [`rpc`]: framed, multiplexed TCP between agents behind the [`rpc::Transport`] seam (with
//!   an in-memory twin, [`rpc::memory::MemoryNetwork`]); each subsystem owns its message types.
//! - [`state`]: the replicated data and change notification; [`state::command`] (Raft log
//!   payloads), [`state::archive`] (the `/v1/snapshot` format), [`state::dedup`].
//! - [`acl`]: the ACL rules language (HCL/JSON), rule merging, the authorizer and Consul's
//!   built-in policies, identities and templated policies (a leaf: pure code, no I/O).
//! - [`logs`]: the agent's log lines for `/v1/agent/monitor` (a per-agent hub fed by a
//!   `tracing` layer the host installs) and the rotating `log_file` writer.
//! - [`metrics`]: telemetry, one sink per agent (Consul's `/v1/agent/metrics` JSON, Prometheus
//!   text, statsd/DogStatsD over UDP), a leaf fed by the layers above.
//! - [`clock`]: the clock seam ([`clock::SystemClock`], and [`clock::ManualClock`] for
//!   simulations).
//! - [`coordinate`]: Vivaldi network coordinates (the algorithm and the local client).
//! - [`debug`]: profiles of the process for `/debug/pprof` (CPU, threads, the agent's trace;
//!   heap through the host's allocator), a leaf.
//! - `fuzzing` (hidden): the fuzz targets, one `fn(&[u8])` per parser of outside bytes, above
//!   every layer and called by none (`fuzz/README.md`).

pub mod acl;
pub mod agent;
pub mod api;
pub mod clock;
pub mod conn_limit;
pub mod coordinate;
pub mod debug;
pub mod duration;
pub mod error;
pub mod filter;
#[doc(hidden)]
pub mod fuzzing;
pub mod local;
pub mod logs;
pub mod membership;
pub mod metrics;
pub mod rate_limit;
pub mod replication;
pub mod rpc;
pub mod state;
pub mod tls;
pub mod wire;

// Stable paths for the crates built on the core (the binary, the bindings, tests); code inside
// the core uses the layered paths above.
pub use agent::{config, config_file};
pub use api::{dns, http};
pub use membership::{cluster, gossip};
pub use replication::{backend, consensus, raft};
pub use state::{archive, command};

pub use error::{Error, Result};

/// The consul-rs version, reported as `Version` in `/v1/agent/self`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
