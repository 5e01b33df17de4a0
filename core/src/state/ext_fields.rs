//! Fields of catalog nodes, services and sessions added after their Raft encoding settled
//! (`Locality` of a node; `Locality`, `SocketPath`, `Proxy`, `Connect` of a service; the
//! deprecated `Checks` of a session), and how they travel without changing that encoding.
//!
//! [`Node`](super::catalog::Node), [`ServiceInstance`](super::catalog::ServiceInstance) and
//! [`Session`](super::session::Session) are postcard-encoded in Raft log entries and snapshots,
//! and postcard has no field names: a new field would make every older entry unreadable. So the
//! new fields live in one in-memory `ext` member each (`#[serde(skip)]`) and travel beside the
//! records they belong to, encoded self-describingly (JSON text inside postcard, [`JsonText`]):
//! adding another field later is one more optional JSON member, never a new format.
//!
//! - In the Raft log: a write whose records carry a non-default `ext` is proposed as
//!   [`Command::WithExt`] (see [`carry`]), holding the write and the extras of its records in
//!   the order [`visit`] walks them; applying it puts the extras back ([`attach`]) and applies
//!   the write. Writes without extras keep their old encoding.
//! - In snapshots: the `node_ext`, `service_ext` and `session_ext` tables of the extension
//!   envelope ([`super::ext_tables`]), saved by [`save_nodes`], [`save_services`] and
//!   [`save_sessions`] and put back by the matching `load_*`.

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::command::Command;
use super::ext_tables::{self, ExtEntry, ExtError};
use super::txn::TxnOp;
use super::StateData;

/// `T` encoded as JSON text: self-describing inside postcard, so `T` may gain optional fields
/// without breaking what was written before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonText<T>(pub T);

impl<T: Serialize> Serialize for JsonText<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

impl<'de, T: for<'a> Deserialize<'a>> Deserialize<'de> for JsonText<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map(JsonText).map_err(D::Error::custom)
    }
}

/// A service's locality (`structs.Locality`): where it runs, for locality-aware routing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Locality {
    /// Region (empty: unset).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// Zone within the region (empty: unset).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub zone: String,
}

impl Locality {
    /// Whether neither part is set.
    pub fn is_empty(&self) -> bool {
        self.region.is_empty() && self.zone.is_empty()
    }
}

/// A node's fields beyond the original encoding of [`Node`](super::catalog::Node).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeExt {
    /// `Locality` (the agent's `locality` config; rendered only when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<Locality>,
}

impl NodeExt {
    /// Whether nothing is set.
    pub fn is_default(&self) -> bool {
        *self == NodeExt::default()
    }
}

/// A service instance's fields beyond the original encoding of [`ServiceInstance`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceExt {
    /// `Locality` (`None`: not given; rendered only when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<Locality>,
    /// `SocketPath`: a unix socket the service listens on instead of an address and port.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    /// `Proxy` (`structs.ConnectProxyConfig`) of a connect proxy or gateway, as registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<serde_json::Value>,
    /// `Connect` (`structs.ServiceConnect`: `Native`, `SidecarService`), as registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<serde_json::Value>,
}

impl ServiceExt {
    /// Whether nothing is set (nothing to carry or save).
    pub fn is_default(&self) -> bool {
        *self == ServiceExt::default()
    }

    /// Whether the service is Connect-native (`Connect.Native`).
    pub fn connect_native(&self) -> bool {
        self.connect.as_ref().and_then(|c| c.get("Native")).and_then(serde_json::Value::as_bool).unwrap_or(false)
    }
}

/// A session's fields beyond the original encoding of [`Session`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SessionExt {
    /// The deprecated `Checks` (node check IDs), kept apart from `NodeChecks` as Consul does;
    /// the session is linked to both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
}

impl SessionExt {
    /// Whether nothing is set.
    pub fn is_default(&self) -> bool {
        self.checks.is_empty()
    }
}

/// The extras of one write's records, in [`visit`] order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandExt {
    /// One per node the write carries.
    #[serde(default)]
    pub nodes: Vec<NodeExt>,
    /// One per service instance the write carries.
    #[serde(default)]
    pub services: Vec<ServiceExt>,
    /// One per session the write carries.
    #[serde(default)]
    pub sessions: Vec<SessionExt>,
}

/// A record of a write that has extras.
pub enum Slot<'a> {
    /// A node's extras.
    Node(&'a mut NodeExt),
    /// A service instance's extras.
    Service(&'a mut ServiceExt),
    /// A session's extras.
    Session(&'a mut SessionExt),
}

/// Calls `f` on the extras of every record `cmd` itself carries, in a fixed order. Not into
/// `Batch`, `Tracked` or `WithExt` (each command of a batch carries its own) nor `Restore`
/// (a snapshot carries its own tables).
pub fn visit(cmd: &mut Command, f: &mut dyn FnMut(Slot<'_>)) {
    match cmd {
        Command::CatalogRegister(req) => {
            f(Slot::Node(&mut req.node.ext));
            if let Some(s) = req.service.as_mut() {
                f(Slot::Service(&mut s.ext));
            }
        }
        Command::SessionCreate(s) => f(Slot::Session(&mut s.ext)),
        Command::Txn(ops) => {
            for op in ops {
                match op {
                    TxnOp::Node { node, .. } => f(Slot::Node(&mut node.ext)),
                    TxnOp::Service { service, .. } => f(Slot::Service(&mut service.ext)),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// `cmd` ready to leave this process: every write whose records carry extras wrapped in
/// [`Command::WithExt`] (through batches and tracking), everything else unchanged.
pub fn carry(cmd: Command) -> Command {
    match cmd {
        Command::Batch(cmds) => Command::Batch(cmds.into_iter().map(carry).collect()),
        Command::Tracked { id, cmd } => Command::Tracked { id, cmd: Box::new(carry(*cmd)) },
        cmd @ Command::WithExt { .. } => cmd,
        mut cmd => {
            let mut ext = CommandExt::default();
            let mut any = false;
            visit(&mut cmd, &mut |slot| match slot {
                Slot::Node(n) => {
                    any |= !n.is_default();
                    ext.nodes.push(n.clone());
                }
                Slot::Service(s) => {
                    any |= !s.is_default();
                    ext.services.push(s.clone());
                }
                Slot::Session(s) => {
                    any |= !s.is_default();
                    ext.sessions.push(s.clone());
                }
            });
            if any {
                Command::WithExt { cmd: Box::new(cmd), ext: JsonText(ext) }
            } else {
                cmd
            }
        }
    }
}

/// Puts the extras of a [`Command::WithExt`] back into its write's records (in [`visit`]
/// order; a record without extras listed keeps the default).
pub fn attach(cmd: &mut Command, ext: &CommandExt) {
    let mut nodes = ext.nodes.iter();
    let mut services = ext.services.iter();
    let mut sessions = ext.sessions.iter();
    visit(cmd, &mut |slot| match slot {
        Slot::Node(n) => *n = nodes.next().cloned().unwrap_or_default(),
        Slot::Service(s) => *s = services.next().cloned().unwrap_or_default(),
        Slot::Session(s) => *s = sessions.next().cloned().unwrap_or_default(),
    });
}

/// Snapshot table of node extras: `node name -> extras`.
pub const NODE_TABLE: &str = "node_ext";
/// Snapshot table of service extras: `(node, service ID) -> extras`.
pub const SERVICE_TABLE: &str = "service_ext";
/// Snapshot table of session extras: `session ID -> extras`.
pub const SESSION_TABLE: &str = "session_ext";
const TABLE_VERSION: u32 = 1;

type NodeRows = Vec<(String, JsonText<NodeExt>)>;
type ServiceRows = Vec<(String, String, JsonText<ServiceExt>)>;
type SessionRows = Vec<(String, JsonText<SessionExt>)>;

/// The `node_ext` table of `data`, if any node has extras.
pub fn save_nodes(data: &StateData) -> Result<Option<ExtEntry>, postcard::Error> {
    let rows: NodeRows = data
        .catalog
        .nodes
        .iter()
        .filter(|(_, n)| !n.ext.is_default())
        .map(|(name, n)| (name.clone(), JsonText(n.ext.clone())))
        .collect();
    if rows.is_empty() {
        return Ok(None);
    }
    ext_tables::entry(NODE_TABLE, TABLE_VERSION, &rows).map(Some)
}

/// Puts the `node_ext` table back on the decoded catalog's nodes.
pub fn load_nodes(data: &mut StateData, entry: &ExtEntry) -> Result<(), ExtError> {
    let rows: NodeRows = ext_tables::decode(entry, TABLE_VERSION)?;
    for (name, ext) in rows {
        if let Some(n) = data.catalog.nodes.get_mut(&name) {
            n.ext = ext.0;
        }
    }
    Ok(())
}

/// What a client agent's anti-entropy reads beside a node's `NodeState`: the extras of the
/// node and of its services (in `services` order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStateExt {
    /// The node's extras.
    #[serde(default)]
    pub node: NodeExt,
    /// The services' extras.
    #[serde(default)]
    pub services: Vec<ServiceExt>,
}

/// The `service_ext` table of `data`, if any instance has extras.
pub fn save_services(data: &StateData) -> Result<Option<ExtEntry>, postcard::Error> {
    let rows: ServiceRows = data
        .catalog
        .services
        .iter()
        .filter(|(_, s)| !s.ext.is_default())
        .map(|((node, id), s)| (node.clone(), id.clone(), JsonText(s.ext.clone())))
        .collect();
    if rows.is_empty() {
        return Ok(None);
    }
    ext_tables::entry(SERVICE_TABLE, TABLE_VERSION, &rows).map(Some)
}

/// Puts the `service_ext` table back on the decoded catalog's instances.
pub fn load_services(data: &mut StateData, entry: &ExtEntry) -> Result<(), ExtError> {
    let rows: ServiceRows = ext_tables::decode(entry, TABLE_VERSION)?;
    for (node, id, ext) in rows {
        if let Some(s) = data.catalog.services.get_mut(&(node, id)) {
            s.ext = ext.0;
        }
    }
    Ok(())
}

/// The `session_ext` table of `data`, if any session has extras.
pub fn save_sessions(data: &StateData) -> Result<Option<ExtEntry>, postcard::Error> {
    let rows: SessionRows = data
        .sessions
        .iter()
        .filter(|(_, s)| !s.ext.is_default())
        .map(|(id, s)| (id.clone(), JsonText(s.ext.clone())))
        .collect();
    if rows.is_empty() {
        return Ok(None);
    }
    ext_tables::entry(SESSION_TABLE, TABLE_VERSION, &rows).map(Some)
}

/// Puts the `session_ext` table back on the decoded sessions.
pub fn load_sessions(data: &mut StateData, entry: &ExtEntry) -> Result<(), ExtError> {
    let rows: SessionRows = ext_tables::decode(entry, TABLE_VERSION)?;
    let mut by_id: BTreeMap<String, SessionExt> = rows.into_iter().map(|(id, e)| (id, e.0)).collect();
    for (id, s) in data.sessions.iter_mut() {
        if let Some(e) = by_id.remove(id) {
            s.ext = e;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::catalog::{Node, RegisterRequest, ServiceInstance};
    use crate::state::command::{CommandResponse, RequestId};
    use crate::state::session::Session;
    use crate::state::StateStore as Store;

    fn located(id: &str) -> ServiceInstance {
        ServiceInstance {
            id: id.into(),
            service: "web".into(),
            ext: ServiceExt {
                locality: Some(Locality { region: "us-west-1".into(), zone: "us-west-1a".into() }),
                socket_path: "/tmp/web.sock".into(),
                proxy: Some(serde_json::json!({"DestinationServiceName": "db"})),
                connect: Some(serde_json::json!({"Native": true})),
            },
            ..ServiceInstance::default()
        }
    }

    fn register(svc: ServiceInstance) -> Command {
        let locality = Some(Locality { region: "r".into(), zone: String::new() });
        Command::CatalogRegister(Box::new(RegisterRequest {
            node: Node { node: "n1".into(), address: "10.0.0.1".into(), ext: NodeExt { locality }, ..Node::default() },
            service: Some(svc),
            ..RegisterRequest::default()
        }))
    }

    fn through_the_log(cmd: &Command) -> Command {
        postcard::from_bytes(&postcard::to_allocvec(cmd).expect("encode")).expect("decode")
    }

    #[test]
    fn extras_survive_the_log_encoding_inside_batches_and_tracking() {
        let tracked = Command::Tracked {
            id: RequestId { origin: 1, seq: 2 },
            cmd: Box::new(Command::Batch(vec![register(located("a")), register(ServiceInstance::default())])),
        };
        let store = Store::new();
        let back = through_the_log(&carry(tracked));
        assert!(matches!(store.apply(&back, 3), CommandResponse::Replayed { .. } | CommandResponse::Batch(_)));
        let got = store.read(|d| d.catalog.services[&("n1".to_string(), "a".to_string())].ext.clone());
        assert_eq!(got, located("a").ext);
        assert!(got.connect_native());
    }

    #[test]
    fn writes_without_extras_keep_their_old_encoding() {
        let plain = Command::CatalogRegister(Box::new(RegisterRequest {
            node: Node { node: "n1".into(), address: "10.0.0.1".into(), ..Node::default() },
            service: Some(ServiceInstance { id: "a".into(), service: "web".into(), ..Default::default() }),
            ..RegisterRequest::default()
        }));
        assert_eq!(carry(plain.clone()), plain);
        // An entry written before the extras existed still decodes and applies.
        let old_bytes = postcard::to_allocvec(&plain).expect("encode");
        let decoded: Command = postcard::from_bytes(&old_bytes).expect("decode");
        let store = Store::new();
        assert_eq!(store.apply(&decoded, 1), CommandResponse::Ok);
        assert!(store.read(|d| d.catalog.services[&("n1".to_string(), "a".to_string())].ext.is_default()));
    }

    #[test]
    fn extras_survive_a_snapshot_and_restore() {
        let store = Store::new();
        assert_eq!(store.apply(&register(located("a")), 1), CommandResponse::Ok);
        let session = Session {
            id: "s1".into(),
            node: "n1".into(),
            ext: SessionExt { checks: vec!["serfHealth".into()] },
            ..Session::default()
        };
        assert_eq!(
            store.apply(&through_the_log(&carry(Command::SessionCreate(Box::new(session)))), 2),
            CommandResponse::Ok
        );
        let bytes = store.serialize().expect("snapshot");
        let back = crate::state::deserialize_state(&bytes).expect("decode");
        assert_eq!(back.catalog.services[&("n1".to_string(), "a".to_string())].ext, located("a").ext);
        assert_eq!(back.sessions["s1"].ext.checks, vec!["serfHealth".to_string()]);
        assert_eq!(back.catalog.nodes["n1"].ext.locality.as_ref().map(|l| l.region.as_str()), Some("r"));
        assert!(back.unknown_tables.0.is_empty(), "both tables are known");
        // And through a Restore command, which is itself a log entry.
        let restored = through_the_log(&Command::Restore(Box::new(back)));
        let other = Store::new();
        other.apply(&restored, 5);
        assert_eq!(
            other.read(|d| d.catalog.services[&("n1".to_string(), "a".to_string())].ext.clone()),
            located("a").ext
        );
    }

    #[test]
    fn json_text_ignores_members_it_does_not_know() {
        let newer = r#""{\"SocketPath\":\"/s\",\"FromTheFuture\":1}""#;
        let text: String = serde_json::from_str(newer).expect("json");
        let bytes = postcard::to_allocvec(&text).expect("encode");
        let back: JsonText<ServiceExt> = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back.0.socket_path, "/s");
    }
}
