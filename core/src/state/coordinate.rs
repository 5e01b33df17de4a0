//! Replicated network coordinates (Consul's `coordinates` table, `state/coordinate.go`): one
//! coordinate per (node, network segment), written in batches by agents and
//! `PUT /v1/coordinate/update`, read by `/v1/coordinate/*`, `?near=` sorting and `consul rtt`.
//!
//! Only nodes in the catalog may hold a coordinate: updates for unknown nodes are dropped (so
//! a stale agent cannot leave orphans behind), and deregistering a node drops its coordinates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::catalog::Catalog;
use crate::coordinate::Coordinate;

/// Watch key woken by every change to the table (`/v1/coordinate/nodes` and `/node/:node`
/// report the table index, like Consul).
pub const WATCH_COORDINATES: &str = "\u{1}coordinates";

/// One coordinate update (`structs.CoordinateUpdateRequest` without the routing fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinateUpdate {
    /// Node name.
    pub node: String,
    /// Network segment (`""`: the default segment, the only one without Enterprise).
    pub segment: String,
    /// The node's coordinate.
    pub coord: Coordinate,
}

/// Coordinates by (node, segment), with the table's index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinateTable {
    /// Coordinates by (node, segment).
    pub entries: BTreeMap<(String, String), Coordinate>,
    /// Raft index of the last change.
    pub index: u64,
}

impl CoordinateTable {
    /// Applies a batch at `index`: each update whose node is in `catalog` and whose coordinate
    /// is valid is stored; the rest are skipped. Returns whether anything was stored (the
    /// index then moves, even for a rewrite of the same value, as Consul's does).
    pub fn batch_update(&mut self, catalog: &Catalog, updates: &[CoordinateUpdate], index: u64) -> bool {
        let mut stored = false;
        for u in updates {
            // Invalid coordinates are refused before proposing; skipping one that got into the
            // log anyway keeps garbage out of every replica alike.
            if !catalog.nodes.contains_key(&u.node) || !u.coord.is_valid() {
                continue;
            }
            self.entries.insert((u.node.clone(), u.segment.clone()), u.coord);
            stored = true;
        }
        if stored {
            self.index = index;
        }
        stored
    }

    /// Drops every coordinate of `node` at `index`; returns whether any existed.
    pub fn remove_node(&mut self, node: &str, index: u64) -> bool {
        let keys: Vec<(String, String)> =
            self.for_node(node).map(|(seg, _)| (node.to_string(), seg.to_string())).collect();
        for k in &keys {
            self.entries.remove(k);
        }
        if !keys.is_empty() {
            self.index = index;
        }
        !keys.is_empty()
    }

    /// The coordinates of `node`, as (segment, coordinate), segments in order.
    pub fn for_node<'a>(&'a self, node: &'a str) -> impl Iterator<Item = (&'a str, &'a Coordinate)> + 'a {
        self.entries
            .range((node.to_string(), String::new())..)
            .take_while(move |((n, _), _)| n == node)
            .map(|((_, seg), c)| (seg.as_str(), c))
    }

    /// The coordinate of `node` in `segment`.
    pub fn get(&self, node: &str, segment: &str) -> Option<&Coordinate> {
        self.entries.get(&(node.to_string(), segment.to_string()))
    }

    /// Drops coordinates whose node is no longer in `catalog` (after a snapshot restore, which
    /// brings back the catalog and the coordinates together, this keeps them consistent).
    pub fn retain_catalog_nodes(&mut self, catalog: &Catalog) {
        self.entries.retain(|(node, _), _| catalog.nodes.contains_key(node));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinate::CoordinateConfig;
    use crate::state::catalog::{Node, RegisterRequest};

    fn catalog_with(nodes: &[&str]) -> Catalog {
        let mut c = Catalog::default();
        for (i, n) in nodes.iter().enumerate() {
            let req = RegisterRequest {
                node: Node { node: n.to_string(), address: "192.0.2.1".into(), ..Node::default() },
                ..RegisterRequest::default()
            };
            c.register(&req, i as u64 + 1).expect("register");
        }
        c
    }

    fn coord(x: f64) -> Coordinate {
        let mut c = Coordinate::new(&CoordinateConfig::default());
        c.vec[0] = x;
        c
    }

    fn update(node: &str, x: f64) -> CoordinateUpdate {
        CoordinateUpdate { node: node.into(), segment: String::new(), coord: coord(x) }
    }

    #[test]
    fn unknown_nodes_and_invalid_coordinates_are_skipped() {
        let cat = catalog_with(&["a", "b"]);
        let mut t = CoordinateTable::default();
        let mut nan = update("b", 0.0);
        nan.coord.height = f64::NAN;
        assert!(t.batch_update(&cat, &[update("a", 0.1), update("ghost", 0.2), nan], 10));
        assert_eq!(t.entries.len(), 1);
        assert_eq!(t.get("a", ""), Some(&coord(0.1)));
        assert_eq!(t.index, 10);
        // Nothing stored: the index stays.
        assert!(!t.batch_update(&cat, &[update("ghost", 0.3)], 11));
        assert_eq!(t.index, 10);
        // A rewrite moves the index.
        assert!(t.batch_update(&cat, &[update("a", 0.1)], 12));
        assert_eq!(t.index, 12);
    }

    #[test]
    fn remove_node_drops_every_segment() {
        let cat = catalog_with(&["a", "ab"]);
        let mut t = CoordinateTable::default();
        let mut seg = update("a", 0.2);
        seg.segment = "alpha".into();
        t.batch_update(&cat, &[update("a", 0.1), seg, update("ab", 0.3)], 5);
        assert_eq!(t.for_node("a").count(), 2);
        assert!(t.remove_node("a", 6));
        assert_eq!(t.for_node("a").count(), 0);
        assert_eq!(t.get("ab", ""), Some(&coord(0.3)));
        assert_eq!(t.index, 6);
        assert!(!t.remove_node("a", 7));
        assert_eq!(t.index, 6);
    }

    #[test]
    fn store_applies_batches_deregisters_and_snapshots() {
        use crate::state::catalog::DeregisterRequest;
        use crate::state::command::Command;
        use crate::state::watch::WatchTarget;
        use crate::state::{deserialize_state, StateData, StateStore};

        let store = StateStore::new();
        let reg = |n: &str| {
            Command::CatalogRegister(Box::new(RegisterRequest {
                node: Node { node: n.into(), address: "192.0.2.1".into(), ..Node::default() },
                ..RegisterRequest::default()
            }))
        };
        store.apply(&reg("a"), 2);
        store.apply(&reg("b"), 3);
        let rx = store.watches().subscribe(&WatchTarget::Key(WATCH_COORDINATES.into()));
        store.apply(&Command::CoordinateBatchUpdate(vec![update("a", 0.1), update("b", 0.2), update("zz", 0.3)]), 4);
        assert!(rx.has_changed().unwrap_or(false), "watchers woken");
        store.read(|d| {
            assert_eq!(d.coordinates.entries.len(), 2);
            assert_eq!(d.coordinates.index, 4);
        });
        let saved = deserialize_state(&store.serialize().expect("serialize")).expect("deserialize");
        assert_eq!(saved.coordinates.entries.len(), 2);

        // Removing a service leaves the coordinate; removing the node drops it.
        let rx = store.watches().subscribe(&WatchTarget::Key(WATCH_COORDINATES.into()));
        let svc = DeregisterRequest { node: "a".into(), service_id: Some("x".into()), check_id: None };
        store.apply(&Command::CatalogDeregister(svc), 5);
        assert!(!rx.has_changed().unwrap_or(true));
        store.apply(&Command::CatalogDeregister(DeregisterRequest { node: "a".into(), ..Default::default() }), 6);
        assert!(rx.has_changed().unwrap_or(false));
        store.read(|d| {
            assert_eq!(d.coordinates.get("a", ""), None);
            assert_eq!(d.coordinates.index, 6);
        });

        // A restore brings the saved coordinates back, with the restore's index.
        store.apply(&Command::Restore(Box::new(saved)), 9);
        store.read(|d| {
            assert_eq!(d.coordinates.get("a", ""), Some(&coord(0.1)));
            assert_eq!(d.coordinates.index, 9);
        });
        // ...but never for nodes the restored catalog lacks.
        let mut orphan = StateData::default();
        orphan.coordinates.entries.insert(("ghost".into(), String::new()), coord(0.5));
        store.apply(&Command::Restore(Box::new(orphan)), 10);
        store.read(|d| assert!(d.coordinates.entries.is_empty()));
    }
}
