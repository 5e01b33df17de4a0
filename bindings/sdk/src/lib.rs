//! # consul-sdk
//!
//! The facade the Python, Node and C packages wrap: plain Rust, no FFI types.
//!
//! - [`Client`]: any Consul-compatible agent's HTTP API (KV, txn, status, catalog, health,
//!   agent services and checks, sessions), with the typed ACL API of [`acl`].
//! - [`Watch`]: one pull primitive over blocking queries that rides out server restarts and
//!   leader changes, resets when the index goes backwards, backs off and rate-limits.
//! - [`Discovery`]: a live set of a service's healthy instances with local selection.
//! - [`Lock`]: locks and semaphores on sessions, [`LeaderElection`] on top of them; [`Registration`]: self-registration kept
//!   alive by TTL updates.
//! - [`EmbeddedAgent`]: a full node inside the calling process.
//! - [`Error`] with one [`ErrorCode`] per failure kind, mapped once per language.
//! - [`options`]: option parsing and registration validation shared by every binding.
//! - [`runtime`]: the runtime policy for callers without one.
//! - [`tls`]: the client's HTTPS settings (CA, client certificate, server name), as Consul's
//!   client reads them.

pub mod acl;
pub mod agent;
pub mod balancer;
pub mod client;
pub mod discovery;
pub mod election;
pub mod error;
pub mod locality;
pub mod lock;
pub mod options;
pub mod registration;
pub mod runtime;
pub mod tls;
pub mod types;
pub mod watch;
pub mod watch_plan;

pub use acl::*;
pub use agent::EmbeddedAgent;
pub use balancer::BalancerConfig;
pub use client::{resolve_token, Client, ClientConfig, RawResponse, StreamingResponse};
pub use discovery::{Discovery, Strategy};
pub use election::{ElectionEvent, LeaderElection};
pub use error::{Error, ErrorCode, Result};
pub use locality::{LocalityPolicy, Ring};
pub use lock::{Lock, LockOptions};
pub use options::{duration, CheckArgs, CheckType, DurationArg, RegistrationSpec};
pub use registration::Registration;
pub use types::*;
pub use watch::{Backoff, RetryHook, Watch, WatchEvent, WatchOptions, WatchSpec, WatchValue};
pub use watch_plan::{ConfigWatches, WatchPlan};
