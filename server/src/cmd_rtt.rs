//! `consul-rs rtt [-wan] node1 [node2]`: the estimated round-trip time between two nodes from
//! their network coordinates, in Consul's words (`command/rtt`).

use anyhow::{anyhow, Result};
use clap::{ArgAction, Args};
use consul_core::coordinate::Coordinate;
use serde_json::Value;

use crate::api::{Client, ClientFlags};

/// `rtt` flags and node names.
#[derive(Debug, Args)]
pub(crate) struct RttArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// Use WAN coordinates; node names are then `<node>.<datacenter>`.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    wan: bool,
    /// One or two node names; the second defaults to the agent's own node.
    nodes: Vec<String>,
}

/// The coordinate given in a `Coord` field, if it is a valid one.
fn coord_of(entry: &Value) -> Option<Coordinate> {
    entry.get("Coord").and_then(|c| Coordinate::from_json(c).ok())
}

/// Finds both nodes' coordinates in `/v1/coordinate/nodes` entries, in a segment they share
/// (the default segment preferred). Node names compare case-insensitively, like Consul's.
fn find_lan(entries: &[Value], a: &str, b: &str) -> (Option<Coordinate>, Option<Coordinate>) {
    let seg = |e: &Value| e.get("Segment").and_then(Value::as_str).unwrap_or_default().to_string();
    let named = |n: &str| -> Vec<(String, Coordinate)> {
        entries
            .iter()
            .filter(|e| e.get("Node").and_then(Value::as_str).is_some_and(|x| x.eq_ignore_ascii_case(n)))
            .filter_map(|e| coord_of(e).map(|c| (seg(e), c)))
            .collect()
    };
    let (sa, sb) = (named(a), named(b));
    let mut shared: Vec<(&String, &Coordinate, &Coordinate)> =
        sa.iter().filter_map(|(s, ca)| sb.iter().find(|(t, _)| t == s).map(|(_, cb)| (s, ca, cb))).collect();
    shared.sort_by_key(|(s, _, _)| !s.is_empty());
    match shared.first() {
        Some((_, ca, cb)) => (Some(**ca), Some(**cb)),
        None => (sa.first().map(|(_, c)| *c), sb.first().map(|(_, c)| *c)),
    }
}

/// Finds `node.dc` names in `/v1/coordinate/datacenters`; both must be in the same area.
fn find_wan(dcs: &[Value], a: (&str, &str), b: (&str, &str)) -> (Option<Coordinate>, Option<Coordinate>) {
    let lookup = |(node, dc): (&str, &str)| -> Vec<(String, Coordinate)> {
        dcs.iter()
            .filter(|d| d.get("Datacenter").and_then(Value::as_str) == Some(dc))
            .flat_map(|d| {
                let area = d.get("AreaID").and_then(Value::as_str).unwrap_or_default().to_string();
                d.get("Coordinates")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|e| e.get("Node").and_then(Value::as_str).is_some_and(|x| x.eq_ignore_ascii_case(node)))
                    .filter_map(move |e| coord_of(e).map(|c| (area.clone(), c)))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let (la, lb) = (lookup(a), lookup(b));
    for (area, ca) in &la {
        if let Some((_, cb)) = lb.iter().find(|(x, _)| x == area) {
            return (Some(*ca), Some(*cb));
        }
    }
    (None, None)
}

/// `Estimated a <-> b rtt: 1.234 ms (using LAN coordinates)`.
pub(crate) fn render(a: &str, b: &str, ca: &Coordinate, cb: &Coordinate, source: &str) -> String {
    // Consul truncates to whole nanoseconds before printing milliseconds.
    let nanos = ca.distance_to(cb).as_nanos();
    format!("Estimated {a} <-> {b} rtt: {:.3} ms (using {source} coordinates)", nanos as f64 / 1e6)
}

/// Prints `msg` to stderr exactly as Consul words it (no `Error:` prefix) and fails with 1.
fn refuse(msg: &str) -> Result<u8> {
    eprintln!("{msg}");
    Ok(1)
}

/// Runs `rtt`; returns the exit code.
pub(crate) async fn run(a: RttArgs) -> Result<u8> {
    let mut nodes = a.nodes.clone();
    if nodes.is_empty() || nodes.len() > 2 {
        return refuse("One or two node names must be specified\n\nUsage: consul-rs rtt [options] node1 [node2]");
    }
    let client = Client::new(&a.client)?;
    if nodes.len() < 2 {
        let me = client
            .call("GET", "/v1/agent/self", &[], None)
            .await
            .map_err(|e| anyhow!("Unable to look up agent info: {e:#}"))?
            .json()?;
        let name = me["Config"]["NodeName"].as_str().unwrap_or_default().to_string();
        if a.wan {
            let dc = me["Config"]["Datacenter"].as_str().unwrap_or_default();
            nodes.push(format!("{name}.{dc}"));
        } else {
            nodes.push(name);
        }
    }
    let (source, (c1, c2)) = if a.wan {
        let split = |n: &str| -> Option<(String, String)> {
            let parts: Vec<&str> = n.split('.').collect();
            (parts.len() == 2).then(|| (parts[0].to_string(), parts[1].to_string()))
        };
        let (Some(p1), Some(p2)) = (split(&nodes[0]), split(&nodes[1])) else {
            return refuse("Node names must be specified as <node name>.<datacenter> with -wan");
        };
        let resp = client
            .call("GET", "/v1/coordinate/datacenters", &[], None)
            .await
            .map_err(|e| anyhow!("Error getting coordinates: {e:#}"))?;
        let dcs = resp.json()?;
        let dcs = dcs.as_array().cloned().unwrap_or_default();
        ("WAN", find_wan(&dcs, (&p1.0, &p1.1), (&p2.0, &p2.1)))
    } else {
        let resp = client
            .call("GET", "/v1/coordinate/nodes", &[], None)
            .await
            .map_err(|e| anyhow!("Error getting coordinates: {e:#}"))?;
        let entries = resp.json()?;
        let entries = entries.as_array().cloned().unwrap_or_default();
        ("LAN", find_lan(&entries, &nodes[0], &nodes[1]))
    };
    let (c1, c2) = match (c1, c2) {
        (None, _) => return refuse(&format!("Could not find a coordinate for node {:?}", nodes[0])),
        (_, None) => return refuse(&format!("Could not find a coordinate for node {:?}", nodes[1])),
        (Some(c1), Some(c2)) => (c1, c2),
    };
    println!("{}", render(&nodes[0], &nodes[1], &c1, &c2, source));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn coord_json(x: f64) -> Value {
        json!({"Vec": [x, 0, 0, 0, 0, 0, 0, 0], "Error": 0.2, "Adjustment": 0, "Height": 0})
    }

    #[test]
    fn renders_consuls_line() {
        let a = Coordinate::from_json(&coord_json(0.0)).expect("coord");
        let b = Coordinate::from_json(&coord_json(0.001234)).expect("coord");
        assert_eq!(render("n1", "n2", &a, &b, "LAN"), "Estimated n1 <-> n2 rtt: 1.234 ms (using LAN coordinates)");
    }

    #[test]
    fn lan_lookup_is_case_insensitive_and_prefers_a_shared_segment() {
        let entries = vec![
            json!({"Node": "Alpha", "Segment": "", "Coord": coord_json(0.0)}),
            json!({"Node": "beta", "Segment": "s1", "Coord": coord_json(0.5)}),
            json!({"Node": "beta", "Segment": "", "Coord": coord_json(0.002)}),
            json!({"Node": "broken", "Segment": "", "Coord": {"Vec": [1]}}),
        ];
        let (a, b) = find_lan(&entries, "alpha", "beta");
        assert_eq!(a.map(|c| c.vec[0]), Some(0.0));
        assert_eq!(b.map(|c| c.vec[0]), Some(0.002));
        let (a, b) = find_lan(&entries, "alpha", "missing");
        assert!(a.is_some() && b.is_none());
        let (_, b) = find_lan(&entries, "alpha", "broken");
        assert!(b.is_none(), "an invalid coordinate counts as none");
    }

    #[test]
    fn wan_lookup_needs_the_same_area() {
        let dcs = vec![
            json!({"Datacenter": "dc1", "AreaID": "wan", "Coordinates": [{"Node": "s1", "Coord": coord_json(0.0)}]}),
            json!({"Datacenter": "dc2", "AreaID": "wan", "Coordinates": [{"Node": "s2", "Coord": coord_json(0.01)}]}),
            json!({"Datacenter": "dc3", "AreaID": "other", "Coordinates": [{"Node": "s3", "Coord": coord_json(0.0)}]}),
        ];
        let (a, b) = find_wan(&dcs, ("s1", "dc1"), ("S2", "dc2"));
        assert!(a.is_some() && b.is_some());
        let (a, b) = find_wan(&dcs, ("s1", "dc1"), ("s3", "dc3"));
        assert!(a.is_none() && b.is_none());
    }
}
