//! The DNS interface (Consul's `agent/dns.go`): service and node discovery for the `consul.`
//! domain over UDP and TCP, answered from the catalog.
//!
//! Names: `[tag.]<service>.service[.<dc>].<domain>`, RFC 2782 `_<service>._<tag|proto>[.service][.<dc>].<domain>`,
//! `<node>.node[.<dc>].<domain>`, `<hex-ip>.addr[.<dc>].<domain>`, `<query>.query[.<dc>].<domain>`
//! (prepared queries), and reverse lookups (PTR) under
//! `in-addr.arpa.` / `ip6.arpa.` for node and service addresses. Instances with a critical
//! check are never returned (`only_passing` drops warning ones too); answers are shuffled on
//! every reply. Unknown names get NXDOMAIN with an SOA; known names with nothing healthy get an
//! empty NOERROR. Names outside our domains go to `recursors`, or are refused.
//!
//! Packets are parsed and written by `hickory-proto`; the lookup logic ([`resolve`]) is a plain
//! function of (query, state, config) so it is tested without sockets. Service questions on a
//! server take a faster path first (`answer_cache`): their records are built once per change of
//! the service's catalog index and written into the reply directly.

mod answer_cache;
mod config;
mod query;
mod resolve;
mod reverse;
mod server;

pub use config::DnsConfig;

pub use resolve::{resolve, DnsAnswer};
pub(crate) use server::answer_offline;
pub use server::{answer_forwarded, serve_tcp, serve_udp, DnsContext, ForwardedQuery};
