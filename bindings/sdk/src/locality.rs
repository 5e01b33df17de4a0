//! Locality-aware picks: instances in the caller's zone first, then in its region, then
//! anywhere, widening to the next ring when the nearer one has too few eligible instances, with
//! a strategy of its own for each ring (say, consistent hashing inside the zone and
//! round-robin across regions).
//!
//! The rings are cumulative: widening to the region keeps the zone's instances among the
//! candidates, so a zone with one instance left and `min_healthy = 2` still gets its share
//! rather than being skipped over.

use crate::discovery::Strategy;
use crate::error::{Error, Result};
use crate::types::{Locality, ServiceEntry};

/// How far from the caller a pick had to reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ring {
    /// The caller's zone (same region and zone).
    Zone,
    /// The caller's region (any zone).
    Region,
    /// Anywhere.
    Any,
}

impl Ring {
    /// `zone`, `region` or `any`: the name the bindings use.
    pub fn as_str(self) -> &'static str {
        match self {
            Ring::Zone => "zone",
            Ring::Region => "region",
            Ring::Any => "any",
        }
    }
}

/// Tuning of [`Strategy::Locality`] picks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalityPolicy {
    /// The caller's locality. `None`: the local agent's (its node's `Locality` in the catalog,
    /// which its `locality` config sets).
    pub locality: Option<Locality>,
    /// Fewest eligible (passing, not ejected) instances a ring needs to serve picks without
    /// widening; at least 1.
    pub min_healthy: usize,
    /// Strategy among the zone's instances.
    pub zone: Strategy,
    /// Strategy once widened to the region.
    pub region: Strategy,
    /// Strategy once widened to every instance.
    pub other: Strategy,
}

impl Default for LocalityPolicy {
    fn default() -> Self {
        LocalityPolicy {
            locality: None,
            min_healthy: 1,
            zone: Strategy::RoundRobin,
            region: Strategy::RoundRobin,
            other: Strategy::RoundRobin,
        }
    }
}

impl LocalityPolicy {
    /// Refuses settings that cannot work, naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.min_healthy == 0 {
            return Err(Error::invalid("min_healthy", "must be at least 1"));
        }
        for (field, s) in [("zone", self.zone), ("region", self.region), ("other", self.other)] {
            if s == Strategy::Locality {
                return Err(Error::invalid(field, "must name a strategy other than locality"));
            }
        }
        if let Some(l) = &self.locality {
            if !l.zone.is_empty() && l.region.is_empty() {
                return Err(Error::invalid("locality", "a zone needs its region"));
            }
        }
        Ok(())
    }

    /// The strategy for picks within `ring`.
    pub fn strategy(&self, ring: Ring) -> Strategy {
        match ring {
            Ring::Zone => self.zone,
            Ring::Region => self.region,
            Ring::Any => self.other,
        }
    }
}

/// Where an instance runs: its service's locality, else its node's.
pub fn instance_locality(e: &ServiceEntry) -> Option<&Locality> {
    e.service.locality.as_ref().or(e.node.locality.as_ref())
}

/// The nearest ring `instance` belongs to, seen from `caller`.
pub fn ring_of(caller: &Locality, instance: Option<&Locality>) -> Ring {
    match instance {
        Some(l) if !caller.region.is_empty() && l.region == caller.region => {
            if !caller.zone.is_empty() && l.zone == caller.zone {
                Ring::Zone
            } else {
                Ring::Region
            }
        }
        _ => Ring::Any,
    }
}

/// The candidates among `eligible` (indices into `list`) for a pick from `caller`: those of
/// the nearest ring holding at least `min_healthy` of them, together with the nearer rings'
/// (see the module docs), and which ring that is. Without a caller locality every eligible
/// instance is a candidate ([`Ring::Any`]).
pub fn candidates(
    list: &[ServiceEntry],
    eligible: &[usize],
    caller: Option<&Locality>,
    min_healthy: usize,
) -> (Ring, Vec<usize>) {
    let Some(caller) = caller.filter(|c| !c.region.is_empty()) else { return (Ring::Any, eligible.to_vec()) };
    let rings: Vec<(usize, Ring)> =
        eligible.iter().map(|&i| (i, ring_of(caller, instance_locality(&list[i])))).collect();
    for ring in [Ring::Zone, Ring::Region] {
        let within: Vec<usize> = rings.iter().filter(|(_, r)| *r <= ring).map(|(i, _)| *i).collect();
        if within.len() >= min_healthy.max(1) {
            return (ring, within);
        }
    }
    (Ring::Any, eligible.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(region: &str, zone: &str) -> Locality {
        Locality { region: region.into(), zone: zone.into() }
    }

    fn entry(id: &str, l: Option<Locality>) -> ServiceEntry {
        let mut e = ServiceEntry::default();
        e.node.node = format!("n-{id}");
        e.service.id = id.into();
        e.service.locality = l;
        e
    }

    fn ids(list: &[ServiceEntry], picked: &[usize]) -> Vec<String> {
        picked.iter().map(|i| list[*i].service.id.clone()).collect()
    }

    #[test]
    fn zone_first_then_region_then_anywhere() {
        let list = vec![
            entry("z1", Some(at("eu", "eu-a"))),
            entry("r1", Some(at("eu", "eu-b"))),
            entry("o1", Some(at("us", "us-a"))),
            entry("none", None),
        ];
        let me = at("eu", "eu-a");
        let all: Vec<usize> = (0..list.len()).collect();
        let (ring, c) = candidates(&list, &all, Some(&me), 1);
        assert_eq!((ring, ids(&list, &c)), (Ring::Zone, vec!["z1".to_string()]));
        // The zone's only instance is not eligible (critical or ejected): widen to the region.
        let (ring, c) = candidates(&list, &[1, 2, 3], Some(&me), 1);
        assert_eq!((ring, ids(&list, &c)), (Ring::Region, vec!["r1".to_string()]));
        // Neither: anywhere, instances without a locality included.
        let (ring, c) = candidates(&list, &[2, 3], Some(&me), 1);
        assert_eq!((ring, c), (Ring::Any, vec![2, 3]));
    }

    #[test]
    fn min_healthy_widens_cumulatively() {
        let list = vec![
            entry("z1", Some(at("eu", "eu-a"))),
            entry("r1", Some(at("eu", "eu-b"))),
            entry("r2", Some(at("eu", "eu-c"))),
            entry("o1", Some(at("us", "us-a"))),
        ];
        let me = at("eu", "eu-a");
        let all: Vec<usize> = (0..list.len()).collect();
        let (ring, c) = candidates(&list, &all, Some(&me), 2);
        assert_eq!((ring, ids(&list, &c)), (Ring::Region, vec!["z1".into(), "r1".into(), "r2".into()]));
        let (ring, c) = candidates(&list, &all, Some(&me), 4);
        assert_eq!((ring, c.len()), (Ring::Any, 4));
    }

    #[test]
    fn the_node_locality_stands_in_and_no_caller_means_anywhere() {
        let mut e = entry("n", None);
        e.node.locality = Some(at("eu", "eu-a"));
        assert_eq!(ring_of(&at("eu", "eu-a"), instance_locality(&e)), Ring::Zone);
        assert_eq!(ring_of(&at("eu", ""), instance_locality(&e)), Ring::Region);
        let (ring, c) = candidates(&[e], &[0], None, 1);
        assert_eq!((ring, c), (Ring::Any, vec![0]));
    }

    #[test]
    fn bad_policies_name_the_field() {
        let bad = |p: LocalityPolicy| p.validate().expect_err("refused").message;
        assert!(bad(LocalityPolicy { min_healthy: 0, ..Default::default() }).contains("min_healthy"));
        assert!(bad(LocalityPolicy { zone: Strategy::Locality, ..Default::default() }).contains("zone"));
        let zone_only = LocalityPolicy { locality: Some(at("", "a")), ..Default::default() };
        assert!(bad(zone_only).contains("locality"));
        LocalityPolicy::default().validate().expect("the default is valid");
    }
}
