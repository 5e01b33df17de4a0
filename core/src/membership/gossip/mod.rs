//! The LAN gossip pool: membership, failure detection, user events and encryption.
//!
//! - [`engine`]: SWIM (foca) plus Lifeguard, Serf member states, the packet envelope — sans-I/O.
//! - [`driver`]: runs an engine on a UDP socket with tokio timers; push/pull and joins over TCP.
//! - [`keyring`]: the `encrypt` key(s), AES-GCM sealing, rotation.
//! - [`events`]: user events (Lamport-ordered, de-duplicated) and leave intents.

pub mod driver;
pub mod engine;
pub mod events;
pub mod keyring;
mod member;
pub mod sim;

pub use driver::Gossip;
pub use engine::{GossipConfig, Member, MemberStatus};
pub use events::UserEvent;
pub use keyring::Keyring;
pub use member::MemberInfo;

/// The alive servers of one datacenter, as this pool knows them: what a client agent sends its
/// requests to.
#[derive(Debug)]
pub struct GossipServers {
    /// The pool.
    pub gossip: std::sync::Arc<Gossip>,
    /// The datacenter whose servers count.
    pub datacenter: String,
}

impl crate::replication::backend::ServerSource for GossipServers {
    fn servers(&self) -> Vec<std::net::SocketAddr> {
        self.gossip
            .members()
            .into_iter()
            .filter(|m| m.status == MemberStatus::Alive && m.info.server && m.info.datacenter == self.datacenter)
            .map(|m| m.info.rpc_addr)
            .collect()
    }
}
