//! The replicated autopilot configuration (Consul's `autopilot-config` table): how the leader
//! judges server health, when it promotes new servers to voters and whether it removes failed
//! ones. Seeded by the first leader from its agent configuration's `autopilot {}` block, then
//! changed only through `PUT /v1/operator/autopilot/configuration` (optionally with `?cas=`).

use serde::{Deserialize, Serialize};

use super::StateData;

/// Watch key of the autopilot configuration.
pub const WATCH_AUTOPILOT: &str = "\u{1}autopilot-config";

/// The autopilot configuration (`structs.AutopilotConfig`). Durations in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutopilotConfig {
    /// Remove servers gossip reports failed from the Raft configuration.
    pub cleanup_dead_servers: bool,
    /// A server that has not heard from the leader for longer is unhealthy.
    pub last_contact_threshold_ms: u64,
    /// A server more entries behind the leader's log is unhealthy.
    pub max_trailing_logs: u64,
    /// Dead servers are never removed below this many voters.
    pub min_quorum: u64,
    /// How long a new server must stay healthy before it becomes a voter.
    pub server_stabilization_time_ms: u64,
    /// Enterprise: kept and returned, no effect.
    pub redundancy_zone_tag: String,
    /// Enterprise: kept and returned, no effect.
    pub disable_upgrade_migration: bool,
    /// Enterprise: kept and returned, no effect.
    pub upgrade_version_tag: String,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

impl Default for AutopilotConfig {
    /// Consul's defaults.
    fn default() -> Self {
        AutopilotConfig {
            cleanup_dead_servers: true,
            last_contact_threshold_ms: 200,
            max_trailing_logs: 250,
            min_quorum: 0,
            server_stabilization_time_ms: 10_000,
            redundancy_zone_tag: String::new(),
            disable_upgrade_migration: false,
            upgrade_version_tag: String::new(),
            create_index: 0,
            modify_index: 0,
        }
    }
}

/// An autopilot configuration write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AutopilotOp {
    /// The first leader's seed from its agent configuration: changes nothing when a
    /// configuration exists already (a new leader may propose it again harmlessly).
    Seed(AutopilotConfig),
    /// `PUT /v1/operator/autopilot/configuration`: with `cas`, applies only when the stored
    /// configuration's ModifyIndex equals it (0: only when none is stored).
    Set {
        /// The new configuration (its indexes are ignored).
        config: AutopilotConfig,
        /// The `?cas=` index.
        cas: Option<u64>,
    },
}

/// Applies `op` at `index`; returns whether it was stored (a failed CAS or a redundant seed
/// answer `false`).
pub fn apply(data: &mut StateData, op: &AutopilotOp, index: u64) -> bool {
    match op {
        AutopilotOp::Seed(config) => {
            if data.autopilot.is_some() {
                return false;
            }
            data.autopilot = Some(AutopilotConfig { create_index: index, modify_index: index, ..config.clone() });
            true
        }
        AutopilotOp::Set { config, cas } => {
            let current = data.autopilot.as_ref().map(|c| c.modify_index);
            if let Some(cas) = cas {
                if current.unwrap_or(0) != *cas {
                    return false;
                }
            }
            let create_index = data.autopilot.as_ref().map_or(index, |c| c.create_index);
            data.autopilot = Some(AutopilotConfig { create_index, modify_index: index, ..config.clone() });
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_only_once_and_cas_checks_the_modify_index() {
        let mut data = StateData::default();
        let seeded = AutopilotConfig { min_quorum: 3, ..AutopilotConfig::default() };
        assert!(apply(&mut data, &AutopilotOp::Seed(seeded), 5));
        assert!(!apply(&mut data, &AutopilotOp::Seed(AutopilotConfig::default()), 6));
        let stored = data.autopilot.clone().expect("seeded");
        assert_eq!((stored.min_quorum, stored.create_index, stored.modify_index), (3, 5, 5));

        let change = AutopilotConfig { cleanup_dead_servers: false, ..stored.clone() };
        let stale = AutopilotOp::Set { config: change.clone(), cas: Some(4) };
        assert!(!apply(&mut data, &stale, 7));
        assert_eq!(data.autopilot.as_ref().map(|c| c.modify_index), Some(5), "a failed CAS changes nothing");
        assert!(apply(&mut data, &AutopilotOp::Set { config: change.clone(), cas: Some(5) }, 8));
        let stored = data.autopilot.clone().expect("set");
        assert_eq!((stored.cleanup_dead_servers, stored.create_index, stored.modify_index), (false, 5, 8));
        assert!(apply(&mut data, &AutopilotOp::Set { config: change, cas: None }, 9));
    }

    #[test]
    fn cas_zero_only_creates() {
        let mut data = StateData::default();
        let op = AutopilotOp::Set { config: AutopilotConfig::default(), cas: Some(0) };
        assert!(apply(&mut data, &op, 3));
        assert!(!apply(&mut data, &op, 4));
    }
}
