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
pub mod sim;

pub use driver::Gossip;
pub use engine::{GossipConfig, Member, MemberStatus};
pub use events::UserEvent;
pub use keyring::Keyring;
