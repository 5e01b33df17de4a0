//! Owned result and option types, with Consul's JSON field names.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Consistency mode of a read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Leader-lease read (Consul's default).
    #[default]
    Default,
    /// Any server may answer.
    Stale,
    /// The leader confirms its leadership with a quorum first.
    Consistent,
}

/// Options common to reads.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    /// Consistency mode.
    pub consistency: Consistency,
    /// Block until the result's index passes this (0 or `None`: don't block).
    pub index: Option<u64>,
    /// How long to block at most (server default 5 min, max 10 min).
    pub wait: Option<Duration>,
    /// Datacenter (default: the agent's).
    pub datacenter: Option<String>,
    /// Sort catalog and health results by estimated round-trip time from this node, nearest
    /// first (Consul's `?near=`, `QueryOptions.Near`). `_agent` names the answering agent's
    /// node; the discovery watch sends the local agent's node name instead, which also holds
    /// when the agent forwards the read. Without coordinates the order is left alone.
    pub near: Option<String>,
    /// ACL token for this call only, instead of the client's (see also [`crate::Client::with_token`]).
    pub token: Option<String>,
}

/// Metadata of a read (`X-Consul-*` headers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryMeta {
    /// `X-Consul-Index`.
    pub index: u64,
    /// `X-Consul-KnownLeader`.
    pub known_leader: bool,
    /// `X-Consul-LastContact` in ms.
    pub last_contact_ms: u64,
}

/// A KV entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvPair {
    /// Key.
    pub key: String,
    /// Value (`None` for an empty value).
    pub value: Option<Bytes>,
    /// Client flags.
    pub flags: u64,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last write.
    pub modify_index: u64,
    /// Times the key was acquired by a session.
    pub lock_index: u64,
    /// The session holding the key's lock.
    pub session: Option<String>,
}

/// The wire form of a KV pair.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct KvPairWire {
    pub(crate) key: String,
    pub(crate) value: Option<String>,
    #[serde(default)]
    pub(crate) flags: u64,
    #[serde(default)]
    pub(crate) create_index: u64,
    #[serde(default)]
    pub(crate) modify_index: u64,
    #[serde(default)]
    pub(crate) lock_index: u64,
    #[serde(default)]
    pub(crate) session: Option<String>,
}

/// Options of a KV write.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Check-and-set: write only if the key's ModifyIndex is this (0: only if absent).
    pub cas: Option<u64>,
    /// Client flags to store.
    pub flags: Option<u64>,
    /// Acquire the key's lock for this session.
    pub acquire: Option<String>,
    /// Release the key's lock held by this session.
    pub release: Option<String>,
}

/// A node (`/v1/catalog/nodes`, `ServiceEntry.Node`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    /// Node UUID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name.
    pub node: String,
    /// Address.
    pub address: String,
    /// Datacenter.
    pub datacenter: String,
    /// Tagged addresses.
    pub tagged_addresses: BTreeMap<String, String>,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// Where the node runs (`locality` of its agent, Consul 1.17+); `None` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality: Option<Locality>,
}

/// Where a node or service runs (Consul 1.17+ `Locality`): a region and a zone within it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Locality {
    /// Region (empty: unset).
    pub region: String,
    /// Zone within the region (empty: unset).
    pub zone: String,
}

/// SRV weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Weights {
    /// Weight when passing.
    pub passing: i32,
    /// Weight when warning.
    pub warning: i32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights { passing: 1, warning: 1 }
    }
}

/// A service instance as agents and the catalog report it (`AgentService`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentService {
    /// Instance ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Service name.
    pub service: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Address (empty: the node's).
    pub address: String,
    /// Port.
    pub port: u16,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// SRV weights.
    pub weights: Weights,
    /// Where the instance runs (its own `Locality`, which the agent defaults to its own);
    /// `None` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality: Option<Locality>,
}

/// A health check (`HealthCheck`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthCheck {
    /// Node.
    pub node: String,
    /// Check ID.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Name.
    pub name: String,
    /// `passing`, `warning` or `critical`.
    pub status: String,
    /// Output of the last run.
    pub output: String,
    /// Service instance the check belongs to.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Service name.
    pub service_name: String,
    /// Measured latency of the probe (a Go duration such as `"312ms"`), on checks with latency
    /// thresholds (consul-rs's service-quality extension); `None` elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<String>,
}

/// One instance with its node and checks (`/v1/health/service/:name`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceEntry {
    /// The node.
    pub node: Node,
    /// The instance.
    pub service: AgentService,
    /// Its checks, node-level ones included.
    pub checks: Vec<HealthCheck>,
}

impl ServiceEntry {
    /// The address to connect to: the service's, else the node's.
    pub fn address(&self) -> &str {
        if self.service.address.is_empty() {
            &self.node.address
        } else {
            &self.service.address
        }
    }

    /// The worst status of the entry's checks (`passing` with no checks).
    pub fn status(&self) -> &str {
        if self.checks.iter().any(|c| c.status == "critical") {
            "critical"
        } else if self.checks.iter().any(|c| c.status == "warning") {
            "warning"
        } else {
            "passing"
        }
    }
}

/// Filters of a health query.
#[derive(Debug, Clone, Default)]
pub struct HealthFilter {
    /// Only instances whose every check passes.
    pub passing: bool,
    /// Only instances with this tag.
    pub tag: Option<String>,
}

/// A check attached to a service registration (Consul's `AgentServiceCheck`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// HTTP GET of a URL: 2xx passing, 429 warning, else critical.
    Http {
        /// The URL.
        url: String,
    },
    /// TCP connect to `host:port`.
    Tcp {
        /// The address.
        address: String,
    },
    /// gRPC health (`host:port[/service]`).
    Grpc {
        /// The target.
        target: String,
    },
    /// The application reports its health before each TTL runs out.
    Ttl {
        /// The TTL.
        ttl: Duration,
    },
}

/// A check definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckDefinition {
    /// What to check.
    pub kind: CheckKind,
    /// How often (not for TTL checks).
    pub interval: Option<Duration>,
    /// How long one run may take.
    pub timeout: Option<Duration>,
    /// Deregister the service after it has been critical this long.
    pub deregister_critical_after: Option<Duration>,
}

/// A service registration (Consul's `AgentServiceRegistration`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceRegistration {
    /// Instance ID (default: the name).
    pub id: Option<String>,
    /// Service name.
    pub name: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Address (default: the agent's node address).
    pub address: Option<String>,
    /// Port.
    pub port: Option<u16>,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// Checks.
    pub checks: Vec<CheckDefinition>,
}

/// A gossip pool member (`/v1/agent/members`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentMember {
    /// Node name.
    pub name: String,
    /// Gossip address.
    pub addr: String,
    /// Gossip port.
    pub port: u16,
    /// Serf tags (`role`, `dc`, `port`, `build`, …).
    pub tags: BTreeMap<String, String>,
    /// Serf status: 0 none, 1 alive, 2 leaving, 3 left, 4 failed.
    pub status: i32,
}

impl AgentMember {
    /// The status as Consul's CLI prints it (`alive`, `leaving`, `left`, `failed`, `none`).
    pub fn status_name(&self) -> &'static str {
        match self.status {
            1 => "alive",
            2 => "leaving",
            3 => "left",
            4 => "failed",
            _ => "none",
        }
    }
}

/// A user event (`/v1/event/fire`, `/v1/event/list`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserEvent {
    /// Event UUID.
    pub id: String,
    /// Event name.
    pub name: String,
    /// Payload (`None` when empty).
    pub payload: Option<Bytes>,
    /// Node name regex the event was addressed to.
    pub node_filter: String,
    /// Service name regex.
    pub service_filter: String,
    /// Tag regex (needs a service filter).
    pub tag_filter: String,
    /// Event format version.
    pub version: u32,
    /// Lamport time of the event in the pool (0 in a fire answer).
    pub ltime: u64,
}

/// The wire form of a user event.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct UserEventWire {
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) payload: Option<String>,
    #[serde(default, rename = "NodeFilter")]
    pub(crate) node_filter: String,
    #[serde(default)]
    pub(crate) service_filter: String,
    #[serde(default)]
    pub(crate) tag_filter: String,
    #[serde(default)]
    pub(crate) version: u32,
    #[serde(default, rename = "LTime")]
    pub(crate) ltime: u64,
}

/// Who a user event is for; each receiving agent evaluates the regexes itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Node name regex.
    pub node: Option<String>,
    /// Service name regex.
    pub service: Option<String>,
    /// Tag regex (with `service`).
    pub tag: Option<String>,
}

impl Serialize for UserEvent {
    /// Consul's JSON shape (`ID`, `Name`, base64 `Payload`, `NodeFilter`, …, `LTime`).
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use base64::Engine;
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("UserEvent", 8)?;
        st.serialize_field("ID", &self.id)?;
        st.serialize_field("Name", &self.name)?;
        st.serialize_field(
            "Payload",
            &self.payload.as_ref().map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
        )?;
        st.serialize_field("NodeFilter", &self.node_filter)?;
        st.serialize_field("ServiceFilter", &self.service_filter)?;
        st.serialize_field("TagFilter", &self.tag_filter)?;
        st.serialize_field("Version", &self.version)?;
        st.serialize_field("LTime", &self.ltime)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The measured latency travels when the agent reports one and is left out otherwise, so
    /// a check without thresholds keeps Consul's shape.
    #[test]
    fn a_check_carries_its_measured_latency_only_when_reported() {
        let c: HealthCheck =
            serde_json::from_str(r#"{"CheckID":"a","Status":"warning","Latency":"312ms"}"#).expect("check");
        assert_eq!(c.latency.as_deref(), Some("312ms"));
        let plain: HealthCheck = serde_json::from_str(r#"{"CheckID":"b","Status":"passing"}"#).expect("check");
        assert_eq!(plain.latency, None);
        assert!(serde_json::to_value(&plain).expect("json").get("Latency").is_none());
    }
}
