//! The service catalog: nodes, service instances and health checks, replicated through Raft
//! (Consul's `agent/consul/state/catalog.go`).
//!
//! Every change records which watch keys it touched, so a blocking catalog or health query
//! wakes only when what it reads changed, and per-service and per-node indexes so the index a
//! query reports moves only for those changes too (not the global index of issue #1244).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::StateData;

/// A node (`structs.Node`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Node UUID (may be empty for nodes registered through the catalog API).
    pub id: String,
    /// Node name (the key).
    pub node: String,
    /// Address.
    pub address: String,
    /// Datacenter.
    pub datacenter: String,
    /// Tagged addresses (`lan`, `wan`, …).
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    pub meta: BTreeMap<String, String>,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
    /// Fields added after this encoding settled (`Locality`): they travel beside it (see
    /// [`super::ext_fields`]).
    #[serde(skip)]
    pub ext: super::ext_fields::NodeExt,
}

/// A tagged service address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAddress {
    /// Address.
    pub address: String,
    /// Port.
    pub port: u16,
}

/// DNS SRV weights of a service (`structs.Weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    /// Weight when every check passes.
    pub passing: i32,
    /// Weight when some check warns.
    pub warning: i32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights { passing: 1, warning: 1 }
    }
}

/// One service instance on one node (`structs.NodeService`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInstance {
    /// Node the instance runs on.
    pub node: String,
    /// Service kind (`""` for a typical service).
    pub kind: String,
    /// Instance ID, unique per node.
    pub id: String,
    /// Service name.
    pub service: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Address (empty: use the node's).
    pub address: String,
    /// Port.
    pub port: u16,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// Tagged addresses.
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// SRV weights.
    pub weights: Weights,
    /// Whether catalog tag edits survive anti-entropy.
    pub enable_tag_override: bool,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
    /// Fields added after this encoding settled (`Locality`, `SocketPath`, `Proxy`, `Connect`):
    /// not in this struct's postcard encoding, they travel beside it (see
    /// [`super::ext_fields`]).
    #[serde(skip)]
    pub ext: super::ext_fields::ServiceExt,
}

/// Check status values.
pub const PASSING: &str = "passing";
/// Check status values.
pub const WARNING: &str = "warning";
/// Check status values.
pub const CRITICAL: &str = "critical";

/// Whether `s` is a check status Consul accepts.
pub fn valid_status(s: &str) -> bool {
    matches!(s, PASSING | WARNING | CRITICAL)
}

/// A health check (`structs.HealthCheck`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// Node the check belongs to.
    pub node: String,
    /// Check ID, unique per node.
    pub check_id: String,
    /// Name.
    pub name: String,
    /// `passing`, `warning` or `critical`.
    pub status: String,
    /// Notes.
    pub notes: String,
    /// Last output.
    pub output: String,
    /// Service the check belongs to (empty: a node-level check).
    pub service_id: String,
    /// That service's name (filled in on registration).
    pub service_name: String,
    /// That service's tags (filled in on registration).
    pub service_tags: Vec<String>,
    /// Check type (`http`, `tcp`, `ttl`, `serf`, …).
    pub check_type: String,
    /// Interval, as a Go duration string.
    pub interval: String,
    /// Timeout, as a Go duration string.
    pub timeout: String,
    /// The check's definition as JSON text (rendered as `Definition`).
    pub definition: String,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// The member of a check's stored definition text holding the measured latency of its probe
/// (consul-rs's service-quality extension), rendered as the check's top-level `Latency`.
pub const MEASURED_LATENCY: &str = "Latency";

/// A catalog registration (`structs.RegisterRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// The node (indexes ignored).
    pub node: Node,
    /// Leave an existing node's address and metadata alone.
    pub skip_node_update: bool,
    /// A service instance to register on the node.
    pub service: Option<ServiceInstance>,
    /// Checks to register on the node.
    pub checks: Vec<HealthCheck>,
}

/// A catalog deregistration: a service, a check, or (neither given) the whole node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeregisterRequest {
    /// Node name.
    pub node: String,
    /// Service instance ID to remove (with its checks).
    pub service_id: Option<String>,
    /// Check ID to remove.
    pub check_id: Option<String>,
}

/// Everything the catalog holds for one node (what anti-entropy compares against).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// The node, if registered.
    pub node: Option<Node>,
    /// Its service instances.
    pub services: Vec<ServiceInstance>,
    /// Its checks (node-level and service checks).
    pub checks: Vec<HealthCheck>,
}

/// Catalog tables and their indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Nodes by name.
    pub nodes: BTreeMap<String, Node>,
    /// Service instances by (node, service ID).
    pub services: BTreeMap<(String, String), ServiceInstance>,
    /// Checks by (node, check ID).
    pub checks: BTreeMap<(String, String), HealthCheck>,
    /// Index of the last change to any node.
    pub nodes_index: u64,
    /// Index of the last change to any service instance.
    pub services_index: u64,
    /// Index of the last change to any check.
    pub checks_index: u64,
    /// Index of the last change that affects a service name's instances or their health.
    pub service_indexes: BTreeMap<String, u64>,
    /// Index of the last change to a node, its services or its checks.
    pub node_indexes: BTreeMap<String, u64>,
    /// Instances by service name: derived from `services`, rebuilt after decoding.
    #[serde(skip)]
    by_name: BTreeMap<String, BTreeSet<(String, String)>>,
}

/// Watch key for the whole node table.
pub fn watch_nodes() -> String {
    "\u{1}catalog/nodes".into()
}
/// Watch key for the whole service table.
pub fn watch_services() -> String {
    "\u{1}catalog/services".into()
}
/// Watch key for the whole check table.
pub fn watch_checks() -> String {
    "\u{1}catalog/checks".into()
}
/// Watch key for one service name (instances and their health).
pub fn watch_service(name: &str) -> String {
    format!("\u{1}catalog/service/{name}")
}
/// Watch key for one node (the node, its services and checks).
pub fn watch_node(name: &str) -> String {
    format!("\u{1}catalog/node/{name}")
}

/// Records what a change touched: watch keys to notify and indexes to move.
#[derive(Debug, Default)]
struct Touched {
    nodes: bool,
    services: bool,
    checks: bool,
    service_names: BTreeSet<String>,
    node_names: BTreeSet<String>,
}

impl Catalog {
    /// Rebuilds derived indexes (after decoding a snapshot).
    pub fn rebuild(&mut self) {
        self.by_name.clear();
        for (key, svc) in &self.services {
            self.by_name.entry(svc.service.clone()).or_default().insert(key.clone());
        }
    }

    /// Instances of service `name`, in (node, ID) order.
    pub fn instances(&self, name: &str) -> Vec<&ServiceInstance> {
        self.by_name
            .get(name)
            .map(|keys| keys.iter().filter_map(|k| self.services.get(k)).collect())
            .unwrap_or_default()
    }

    /// Services on `node`.
    pub fn node_services(&self, node: &str) -> Vec<&ServiceInstance> {
        self.services
            .range((node.to_string(), String::new())..)
            .take_while(|((n, _), _)| n == node)
            .map(|(_, s)| s)
            .collect()
    }

    /// Checks on `node` (node-level and service checks).
    pub fn node_checks(&self, node: &str) -> Vec<&HealthCheck> {
        self.checks
            .range((node.to_string(), String::new())..)
            .take_while(|((n, _), _)| n == node)
            .map(|(_, c)| c)
            .collect()
    }

    /// The index a query on service `name` reports.
    pub fn service_index(&self, name: &str) -> u64 {
        self.service_indexes.get(name).copied().unwrap_or(self.services_index)
    }

    /// The index a query on node `name` reports.
    pub fn node_index(&self, name: &str) -> u64 {
        self.node_indexes.get(name).copied().unwrap_or(self.nodes_index)
    }

    fn insert_service(&mut self, svc: ServiceInstance) {
        let key = (svc.node.clone(), svc.id.clone());
        if let Some(old) = self.services.get(&key) {
            if old.service != svc.service {
                if let Some(set) = self.by_name.get_mut(&old.service) {
                    set.remove(&key);
                }
            }
        }
        self.by_name.entry(svc.service.clone()).or_default().insert(key.clone());
        self.services.insert(key, svc);
    }

    fn remove_service(&mut self, node: &str, id: &str) -> Option<ServiceInstance> {
        let key = (node.to_string(), id.to_string());
        let svc = self.services.remove(&key)?;
        if let Some(set) = self.by_name.get_mut(&svc.service) {
            set.remove(&key);
            if set.is_empty() {
                self.by_name.remove(&svc.service);
            }
        }
        Some(svc)
    }

    fn services_on(&self, node: &str) -> BTreeSet<String> {
        self.node_services(node).into_iter().map(|s| s.service.clone()).collect()
    }

    fn apply_touched(&mut self, t: &Touched, index: u64) -> Vec<String> {
        let mut keys = Vec::new();
        if t.nodes {
            self.nodes_index = index;
            keys.push(watch_nodes());
        }
        if t.services {
            self.services_index = index;
            keys.push(watch_services());
        }
        if t.checks {
            self.checks_index = index;
            keys.push(watch_checks());
        }
        for name in &t.service_names {
            self.service_indexes.insert(name.clone(), index);
            keys.push(watch_service(name));
        }
        for name in &t.node_names {
            self.node_indexes.insert(name.clone(), index);
            keys.push(watch_node(name));
        }
        keys
    }

    /// What the catalog holds for `node`.
    pub fn node_state(&self, node: &str) -> NodeState {
        NodeState {
            node: self.nodes.get(node).cloned(),
            services: self.node_services(node).into_iter().cloned().collect(),
            checks: self.node_checks(node).into_iter().cloned().collect(),
        }
    }

    /// Applies a registration at `index`; all or nothing. Returns the watch keys to notify.
    pub fn register(&mut self, req: &RegisterRequest, index: u64) -> Result<Vec<String>, String> {
        let name = req.node.node.as_str();
        if name.is_empty() {
            return Err("Must provide node".into());
        }
        let existing = self.nodes.get(name).cloned();
        // With SkipNodeUpdate a missing node is still created (as Consul's state store does),
        // with whatever address the request carries.
        if req.node.address.is_empty() && !req.skip_node_update {
            return Err("Must provide address if SkipNodeUpdate is not set".into());
        }
        if !req.node.id.is_empty() {
            if let Some(other) = self.nodes.values().find(|n| n.id == req.node.id && n.node != name) {
                return Err(format!(
                    "Failed inserting node: node ID {:?} for node {name:?} aliases existing node {:?}",
                    req.node.id, other.node
                ));
            }
        }
        // Validate checks before touching anything.
        for check in &req.checks {
            if check.check_id.is_empty() {
                return Err("Missing check ID".into());
            }
            if !check.service_id.is_empty() {
                let in_request = req.service.as_ref().is_some_and(|s| s.id == check.service_id);
                let on_node = self.services.contains_key(&(name.to_string(), check.service_id.clone()));
                if !in_request && !on_node {
                    return Err(format!(
                        "Failed to register check: unknown service ID {:?} for check ID {:?}",
                        check.service_id, check.check_id
                    ));
                }
            }
            if !valid_status(&check.status) {
                return Err(format!("Invalid check status {:?}", check.status));
            }
        }
        let mut t = Touched::default();
        // Node.
        let node_changed = match &existing {
            Some(old) if req.skip_node_update => {
                let _ = old;
                false
            }
            Some(old) => {
                let mut candidate = req.node.clone();
                candidate.create_index = old.create_index;
                candidate.modify_index = old.modify_index;
                if candidate.id.is_empty() {
                    candidate.id = old.id.clone();
                }
                candidate != *old
            }
            None => true,
        };
        if node_changed {
            let mut node = req.node.clone();
            node.create_index = existing.as_ref().map(|o| o.create_index).unwrap_or(index);
            node.modify_index = index;
            if node.id.is_empty() {
                node.id = existing.as_ref().map(|o| o.id.clone()).unwrap_or_default();
            }
            self.nodes.insert(name.to_string(), node);
            t.nodes = true;
            t.node_names.insert(name.to_string());
            t.service_names.extend(self.services_on(name));
        }
        // Service.
        if let Some(svc) = &req.service {
            let key = (name.to_string(), svc.id.clone());
            let old = self.services.get(&key).cloned();
            let mut candidate = svc.clone();
            candidate.node = name.to_string();
            candidate.create_index = old.as_ref().map(|o| o.create_index).unwrap_or(index);
            candidate.modify_index = old.as_ref().map(|o| o.modify_index).unwrap_or(index);
            if old.as_ref() != Some(&candidate) {
                if let Some(old) = &old {
                    t.service_names.insert(old.service.clone());
                }
                candidate.modify_index = index;
                t.services = true;
                t.node_names.insert(name.to_string());
                t.service_names.insert(candidate.service.clone());
                self.insert_service(candidate);
            }
        }
        // Checks.
        for check in &req.checks {
            let key = (name.to_string(), check.check_id.clone());
            let old = self.checks.get(&key).cloned();
            let mut candidate = check.clone();
            candidate.node = name.to_string();
            if let Some(svc) = self.services.get(&(name.to_string(), check.service_id.clone())) {
                candidate.service_name = svc.service.clone();
                candidate.service_tags = svc.tags.clone();
            } else {
                candidate.service_name.clear();
                candidate.service_tags.clear();
            }
            candidate.create_index = old.as_ref().map(|o| o.create_index).unwrap_or(index);
            candidate.modify_index = old.as_ref().map(|o| o.modify_index).unwrap_or(index);
            if old.as_ref() == Some(&candidate) {
                continue;
            }
            candidate.modify_index = index;
            t.checks = true;
            t.node_names.insert(name.to_string());
            for c in [old.as_ref(), Some(&candidate)].into_iter().flatten() {
                if c.service_name.is_empty() {
                    t.service_names.extend(self.services_on(name));
                } else {
                    t.service_names.insert(c.service_name.clone());
                }
            }
            self.checks.insert(key, candidate);
        }
        Ok(self.apply_touched(&t, index))
    }

    /// Applies a deregistration at `index`. Removing something absent succeeds and changes nothing.
    /// Returns the watch keys to notify and, for a removed node, its name (sessions on it end).
    pub fn deregister(&mut self, req: &DeregisterRequest, index: u64) -> Vec<String> {
        let node = req.node.as_str();
        let mut t = Touched::default();
        match (&req.service_id, &req.check_id) {
            (Some(sid), _) => {
                if let Some(svc) = self.remove_service(node, sid) {
                    t.services = true;
                    t.node_names.insert(node.to_string());
                    t.service_names.insert(svc.service.clone());
                    let dead: Vec<_> = self
                        .node_checks(node)
                        .into_iter()
                        .filter(|c| &c.service_id == sid)
                        .map(|c| c.check_id.clone())
                        .collect();
                    for cid in dead {
                        self.checks.remove(&(node.to_string(), cid));
                        t.checks = true;
                    }
                }
            }
            (None, Some(cid)) => {
                if let Some(check) = self.checks.remove(&(node.to_string(), cid.clone())) {
                    t.checks = true;
                    t.node_names.insert(node.to_string());
                    if check.service_name.is_empty() {
                        t.service_names.extend(self.services_on(node));
                    } else {
                        t.service_names.insert(check.service_name);
                    }
                }
            }
            (None, None) => {
                if self.nodes.remove(node).is_some() {
                    t.nodes = true;
                    t.node_names.insert(node.to_string());
                    let services: Vec<String> = self.node_services(node).into_iter().map(|s| s.id.clone()).collect();
                    for sid in services {
                        if let Some(svc) = self.remove_service(node, &sid) {
                            t.services = true;
                            t.service_names.insert(svc.service);
                        }
                    }
                    let checks: Vec<String> = self.node_checks(node).into_iter().map(|c| c.check_id.clone()).collect();
                    for cid in checks {
                        self.checks.remove(&(node.to_string(), cid));
                        t.checks = true;
                    }
                    self.node_indexes.remove(node);
                }
            }
        }
        let keys = self.apply_touched(&t, index);
        if req.service_id.is_none() && req.check_id.is_none() {
            self.node_indexes.remove(node);
        }
        keys
    }
}

/// Health of a set of checks: the worst status (`critical` > `warning` > `passing`).
pub fn aggregate_status<'a>(checks: impl IntoIterator<Item = &'a HealthCheck>) -> &'static str {
    let mut worst = PASSING;
    for c in checks {
        match c.status.as_str() {
            CRITICAL => return CRITICAL,
            WARNING => worst = WARNING,
            _ => {}
        }
    }
    worst
}

/// Entries of a health query for service `name`: each instance with its node and checks (node
/// checks included).
pub fn service_entries<'a>(
    data: &'a StateData,
    name: &str,
) -> Vec<(&'a Node, &'a ServiceInstance, Vec<&'a HealthCheck>)> {
    use std::collections::HashMap;
    let cat = &data.catalog;
    // Group each involved node's checks by service once: one agent node can carry thousands of
    // instances and checks, and scanning all of them per instance would be quadratic.
    type ByService<'a> = HashMap<&'a str, Vec<&'a HealthCheck>>;
    let mut per_node: HashMap<&str, ByService<'_>> = HashMap::new();
    cat.instances(name)
        .into_iter()
        .filter_map(|svc| {
            let node = cat.nodes.get(&svc.node)?;
            let groups = per_node.entry(svc.node.as_str()).or_insert_with(|| {
                let mut g: ByService<'_> = HashMap::new();
                for c in cat.node_checks(&svc.node) {
                    g.entry(c.service_id.as_str()).or_default().push(c);
                }
                g
            });
            let mut checks: Vec<&HealthCheck> = groups.get("").cloned().unwrap_or_default();
            checks.extend(groups.get(svc.id.as_str()).into_iter().flatten().copied());
            checks.sort_by(|a, b| a.check_id.cmp(&b.check_id));
            Some((node, svc, checks))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Node {
        Node { node: name.into(), address: "10.0.0.1".into(), datacenter: "dc1".into(), ..Node::default() }
    }

    fn svc(id: &str, name: &str) -> ServiceInstance {
        ServiceInstance { id: id.into(), service: name.into(), port: 80, ..ServiceInstance::default() }
    }

    fn check(id: &str, service_id: &str, status: &str) -> HealthCheck {
        HealthCheck {
            check_id: id.into(),
            name: id.into(),
            service_id: service_id.into(),
            status: status.into(),
            ..HealthCheck::default()
        }
    }

    #[test]
    fn register_sets_per_service_indexes_and_is_idempotent() {
        let mut c = Catalog::default();
        let req = RegisterRequest {
            node: node("n1"),
            service: Some(svc("web1", "web")),
            checks: vec![check("c1", "web1", PASSING)],
            ..Default::default()
        };
        let keys = c.register(&req, 5).expect("register");
        assert!(keys.contains(&watch_service("web")));
        assert_eq!(c.service_index("web"), 5);
        assert_eq!(c.checks[&("n1".to_string(), "c1".to_string())].service_name, "web");
        // The same registration again changes nothing and notifies nobody.
        assert!(c.register(&req, 6).expect("register").is_empty());
        assert_eq!(c.service_index("web"), 5);
        // Another service's change does not move web's index.
        let other = RegisterRequest { node: node("n2"), service: Some(svc("db1", "db")), ..Default::default() };
        c.register(&other, 7).expect("register");
        assert_eq!(c.service_index("web"), 5);
        assert_eq!(c.service_index("db"), 7);
    }

    #[test]
    fn node_check_flip_moves_services_on_that_node() {
        let mut c = Catalog::default();
        let req = RegisterRequest {
            node: node("n1"),
            service: Some(svc("web1", "web")),
            checks: vec![check("serfHealth", "", PASSING)],
            ..Default::default()
        };
        c.register(&req, 3).expect("register");
        let flip =
            RegisterRequest { node: node("n1"), checks: vec![check("serfHealth", "", CRITICAL)], ..Default::default() };
        let keys = c.register(&flip, 4).expect("register");
        assert!(keys.contains(&watch_service("web")));
        assert_eq!(c.service_index("web"), 4);
    }

    #[test]
    fn invalid_registrations_change_nothing() {
        let mut c = Catalog::default();
        let bad =
            RegisterRequest { node: node("n1"), checks: vec![check("c1", "missing", PASSING)], ..Default::default() };
        assert!(c.register(&bad, 2).is_err());
        assert!(c.nodes.is_empty());
        let no_addr = RegisterRequest { node: Node { node: "n".into(), ..Node::default() }, ..Default::default() };
        assert!(c.register(&no_addr, 2).is_err());
    }

    #[test]
    fn deregister_node_removes_everything() {
        let mut c = Catalog::default();
        let req = RegisterRequest {
            node: node("n1"),
            service: Some(svc("web1", "web")),
            checks: vec![check("c1", "web1", PASSING)],
            ..Default::default()
        };
        c.register(&req, 3).expect("register");
        let keys = c.deregister(&DeregisterRequest { node: "n1".into(), ..Default::default() }, 4);
        assert!(keys.contains(&watch_service("web")));
        assert!(c.services.is_empty() && c.checks.is_empty() && c.nodes.is_empty());
        assert!(c.instances("web").is_empty());
        assert_eq!(c.service_index("web"), 4);
    }
}
