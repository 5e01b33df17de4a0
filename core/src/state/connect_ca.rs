//! The built-in Connect CA's replicated tables (Consul's `connect-ca-roots` and
//! `connect-ca-config`): the trusted roots — the active one with its private key, which any
//! server uses to sign service leaf certificates — and the CA configuration.
//!
//! Apply is deterministic: the leader generates keys and certificates before proposing (see
//! `replication::ca_upkeep` and the configuration endpoint) and apply only stores them.
//! Initialising twice is harmless (the second changes nothing), so a new leader may propose it
//! without knowing whether its predecessor's proposal committed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::StateData;

/// Watch key of the CA tables (roots and configuration reads wait on it).
pub const WATCH_CA: &str = "\u{1}connect-ca";

/// How many rotated-out roots stay trusted: leaves they signed keep verifying until renewed.
pub const KEEP_ROTATED_ROOTS: usize = 2;

/// One CA root (`structs.CARoot`).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRoot {
    /// Colon-hex SHA-1 of the certificate.
    pub id: String,
    /// Display name (`Consul CA Primary Cert`).
    pub name: String,
    /// Certificate serial number.
    pub serial_number: u64,
    /// Colon-hex subject key identifier.
    pub signing_key_id: String,
    /// Validity, unix seconds.
    pub not_before: i64,
    /// Validity, unix seconds.
    pub not_after: i64,
    /// PEM certificate.
    pub root_cert: String,
    /// PEM private key (never sent to clients).
    pub private_key: String,
    /// `ec`.
    pub private_key_type: String,
    /// 256 or 384.
    pub private_key_bits: u64,
    /// Whether new leaves are signed by this root.
    pub active: bool,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change (deactivation).
    pub modify_index: u64,
}

impl std::fmt::Debug for CaRoot {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaRoot").field("id", &self.id).field("active", &self.active).finish_non_exhaustive()
    }
}

/// The CA configuration (`structs.CAConfiguration`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaConfig {
    /// `consul` (the only provider).
    pub provider: String,
    /// The provider's `Config` map as JSON text (kept verbatim: clients read back what they set).
    pub config_json: String,
    /// The provider's `State` map.
    pub state: BTreeMap<String, String>,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// The CA tables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaTables {
    /// The cluster ID; the trust domain is `<cluster_id>.consul`. Empty until initialised.
    pub cluster_id: String,
    /// Trusted roots, oldest first; exactly one is active once initialised.
    pub roots: Vec<CaRoot>,
    /// The configuration, once initialised.
    pub config: Option<CaConfig>,
    /// Index of the last change to the roots.
    pub roots_index: u64,
    /// Index of the last change to the configuration.
    pub config_index: u64,
}

impl CaTables {
    /// The active root.
    pub fn active(&self) -> Option<&CaRoot> {
        self.roots.iter().find(|r| r.active)
    }

    /// Whether the CA was initialised.
    pub fn initialized(&self) -> bool {
        self.active().is_some()
    }

    /// The highest index of either table (what a read of both answers with).
    pub fn index(&self) -> u64 {
        self.roots_index.max(self.config_index)
    }

    /// Moves every table index to `index` (a snapshot restore).
    pub fn restamp(&mut self, index: u64) {
        self.roots_index = index;
        self.config_index = index;
    }
}

/// A CA write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaOp {
    /// The leader's bootstrap: the cluster ID, the configuration and the first root. Changes
    /// nothing when a root exists already.
    Initialize {
        /// Cluster ID.
        cluster_id: String,
        /// Configuration.
        config: CaConfig,
        /// The first root (made active).
        root: Box<CaRoot>,
    },
    /// `PUT /v1/connect/ca/configuration`: a new configuration and, when it changes the keys,
    /// a new root that becomes the active one (the previous one stays trusted).
    SetConfig {
        /// The new configuration.
        config: CaConfig,
        /// A rotated root, if any.
        new_root: Option<Box<CaRoot>>,
    },
}

/// Applies `op` at `index`; returns whether anything changed.
pub fn apply(data: &mut StateData, op: &CaOp, index: u64) -> bool {
    let ca = &mut data.connect_ca;
    match op {
        CaOp::Initialize { cluster_id, config, root } => {
            if ca.initialized() {
                return false;
            }
            ca.cluster_id = cluster_id.clone();
            ca.config = Some(CaConfig { create_index: index, modify_index: index, ..config.clone() });
            ca.roots = vec![CaRoot { active: true, create_index: index, modify_index: index, ..(**root).clone() }];
            ca.roots_index = index;
            ca.config_index = index;
            true
        }
        CaOp::SetConfig { config, new_root } => {
            let create_index = ca.config.as_ref().map_or(index, |c| c.create_index);
            ca.config = Some(CaConfig { create_index, modify_index: index, ..config.clone() });
            ca.config_index = index;
            if let Some(root) = new_root {
                for old in ca.roots.iter_mut().filter(|r| r.active) {
                    old.active = false;
                    old.modify_index = index;
                }
                ca.roots.push(CaRoot { active: true, create_index: index, modify_index: index, ..(**root).clone() });
                let excess = ca.roots.len().saturating_sub(KEEP_ROTATED_ROOTS + 1);
                ca.roots.drain(..excess);
                ca.roots_index = index;
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(id: &str) -> Box<CaRoot> {
        Box::new(CaRoot { id: id.into(), root_cert: format!("cert {id}"), ..CaRoot::default() })
    }

    fn config(json: &str) -> CaConfig {
        CaConfig { provider: "consul".into(), config_json: json.into(), ..CaConfig::default() }
    }

    #[test]
    fn initialize_once_then_rotate_keeps_recent_roots() {
        let mut d = StateData::default();
        let init = CaOp::Initialize { cluster_id: "c".into(), config: config("{}"), root: root("r1") };
        assert!(apply(&mut d, &init, 5));
        assert_eq!(d.connect_ca.active().map(|r| r.id.as_str()), Some("r1"));
        assert_eq!((d.connect_ca.roots_index, d.connect_ca.config_index), (5, 5));
        // A second bootstrap (a new leader unsure whether the first committed) changes nothing.
        let again = CaOp::Initialize { cluster_id: "other".into(), config: config("{}"), root: root("r9") };
        assert!(!apply(&mut d, &again, 6));
        assert_eq!(d.connect_ca.cluster_id, "c");
        // A configuration change without a new root keeps the roots and their index.
        assert!(apply(&mut d, &CaOp::SetConfig { config: config("{\"LeafCertTTL\":\"1h\"}"), new_root: None }, 7));
        assert_eq!(d.connect_ca.roots_index, 5);
        assert_eq!(d.connect_ca.config.as_ref().map(|c| (c.create_index, c.modify_index)), Some((5, 7)));
        for (i, id) in ["r2", "r3", "r4"].iter().enumerate() {
            let op = CaOp::SetConfig { config: config("{}"), new_root: Some(root(id)) };
            assert!(apply(&mut d, &op, 10 + i as u64));
        }
        let ids: Vec<(&str, bool)> = d.connect_ca.roots.iter().map(|r| (r.id.as_str(), r.active)).collect();
        assert_eq!(ids, [("r2", false), ("r3", false), ("r4", true)]);
        assert_eq!(d.connect_ca.roots_index, 12);
        assert_eq!(d.connect_ca.index(), 12);
    }
}
