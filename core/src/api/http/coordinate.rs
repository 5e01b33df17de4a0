//! `/v1/coordinate/*` (`agent/coordinate_endpoint.go`) and the `?near=` sort shared by the
//! catalog and health endpoints (`agent/consul/rtt.go`).
//!
//! Differences from Consul, both invisible to clients: updates are written through Raft at
//! once (our proposer already batches concurrent writes into one entry) instead of being
//! buffered on the server for 5 s, so a coordinate is readable as soon as the `PUT` returns.
//! `/v1/coordinate/datacenters` lists the WAN pool's datacenters with their servers' WAN
//! coordinates; an agent without a WAN pool lists only its datacenter, with its servers' LAN
//! coordinates.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};

use super::catalog::{read_ctx, ReadCtx};
use super::query::QueryParams;
use super::{blocking, json as json_response, read_body, set_read_meta, text, ApiContext, Ctx};
use crate::acl::rules::{Need, Resource};
use crate::api::authz::RequestAcl;
use crate::coordinate::{distance_secs, Coordinate};
use crate::state::command::{Command, CommandResponse};
use crate::state::coordinate::{CoordinateUpdate, WATCH_COORDINATES};
use crate::state::watch::WatchTarget;
use crate::state::StateData;
use crate::wire::body::{parse_object, Obj};
use crate::Error;

/// Largest `PUT /v1/coordinate/update` body.
const MAX_BODY: usize = 64 * 1024;

/// Consul's answer on every coordinate endpoint of an agent with `disable_coordinates`.
fn disabled(ctx: &ApiContext) -> Option<Response> {
    ctx.config.disable_coordinates.then(|| text(StatusCode::UNAUTHORIZED, "Coordinate support disabled"))
}

fn entry_json(node: &str, segment: &str, coord: &Coordinate) -> Value {
    json!({"Node": node, "Segment": segment, "Coord": coord})
}

/// Runs a blocking read over the coordinate table and answers with its index headers;
/// `not_found` turns an empty result into a 404 (still with the headers, as Consul sets them).
async fn blocking_coordinates(
    ctx: &Ctx,
    rc: &ReadCtx,
    not_found: bool,
    query: impl Fn(&StateData) -> Vec<Value>,
) -> Result<Response, Error> {
    let targets = [WatchTarget::Key(WATCH_COORDINATES.to_string())];
    let (index, list, meta) = blocking::run(ctx, &rc.params, &targets, |d| (d.coordinates.index, query(d))).await?;
    let mut resp = if not_found && list.is_empty() {
        StatusCode::NOT_FOUND.into_response()
    } else {
        json_response(StatusCode::OK, &list, rc.pretty)
    };
    set_read_meta(resp.headers_mut(), index, &meta);
    Ok(resp)
}

/// `?segment=` keeps only that segment's entries (present but empty: the default segment).
pub(super) fn segment_filter(q: &QueryParams) -> Option<String> {
    q.has("segment").then(|| q.get("segment").unwrap_or_default().to_string())
}

/// `GET /v1/coordinate/datacenters`: the WAN coordinates of every datacenter's servers, one
/// entry per datacenter in [`crate::membership::wan::WanPool::datacenters`] order, node names
/// without their `.dc` suffix (as Consul strips them). Without a WAN pool: this datacenter's
/// servers with their LAN coordinates.
pub(super) async fn datacenters(State(ctx): State<Ctx>, uri: Uri) -> Response {
    if let Some(r) = disabled(&ctx) {
        return r;
    }
    let q = QueryParams::from_uri(&uri);
    if let Some(pool) = ctx.cluster.wan() {
        let members = pool.members();
        let body: Vec<Value> = pool
            .datacenters()
            .into_iter()
            .map(|dc| {
                let suffix = format!(".{dc}");
                let mut coords: Vec<Value> = members
                    .iter()
                    .filter(|m| m.info.datacenter == dc && m.status != crate::membership::gossip::MemberStatus::Left)
                    .filter_map(|m| {
                        let coord = pool.coordinate_of(&m.info.name)?;
                        let node = m.info.name.strip_suffix(&suffix).unwrap_or(&m.info.name);
                        Some(json!({"Node": node, "Segment": "", "Coord": coord}))
                    })
                    .collect();
                coords.sort_by(|a, b| a["Node"].as_str().cmp(&b["Node"].as_str()));
                json!({"Datacenter": dc, "AreaID": AREA_WAN, "Coordinates": coords})
            })
            .collect();
        return json_response(StatusCode::OK, &body, q.pretty());
    }
    let dc = ctx.config.datacenter.clone();
    let me = ctx.cluster.me();
    let mut servers: Vec<String> =
        ctx.cluster.members().into_iter().filter(|m| m.info.server).map(|m| m.info.name).collect();
    servers.sort();
    servers.dedup();
    let consensus = match ctx.consensus() {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let coords: Vec<Value> = consensus.state().read(|d| {
        servers
            .iter()
            .filter_map(|name| {
                // This agent's own coordinate is fresher in its client than in the store.
                let live = (*name == me.name).then(|| ctx.coordinates.as_ref().map(|c| c.get())).flatten();
                let coord = live.or_else(|| d.coordinates.get(name, "").copied())?;
                Some(json!({"Node": name, "Segment": "", "Coord": coord}))
            })
            .collect()
    });
    let body = json!([{"Datacenter": dc, "AreaID": AREA_WAN, "Coordinates": coords}]);
    json_response(StatusCode::OK, &body, q.pretty())
}

/// Consul's `types.AreaWAN`: the area of the WAN pool.
const AREA_WAN: &str = "wan";

/// `GET /v1/coordinate/nodes`: every node's LAN coordinate, by node name (blocking).
pub(super) async fn nodes(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
) -> Result<Response, Error> {
    if let Some(r) = disabled(&ctx) {
        return Ok(r);
    }
    let rc = read_ctx(&ctx, acl, &uri)?;
    let segment = segment_filter(&rc.q);
    blocking_coordinates(&ctx, &rc, false, |d| {
        d.coordinates
            .entries
            .iter()
            .filter(|((_, seg), _)| segment.as_ref().is_none_or(|s| s == seg))
            .filter(|((node, _), _)| rc.acl.visible(Resource::Node, node))
            .map(|((node, seg), c)| entry_json(node, seg, c))
            .collect()
    })
    .await
}

/// `GET /v1/coordinate/node/:node`: that node's coordinates (one per segment); 404 if none.
pub(super) async fn node(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    if let Some(r) = disabled(&ctx) {
        return Ok(r);
    }
    let rc = read_ctx(&ctx, acl, &uri)?;
    let segment = segment_filter(&rc.q);
    blocking_coordinates(&ctx, &rc, true, |d| {
        d.coordinates
            .for_node(&name)
            .filter(|_| rc.acl.visible(Resource::Node, &name))
            .filter(|(seg, _)| segment.as_deref().is_none_or(|s| s == *seg))
            .map(|(seg, c)| entry_json(&name, seg, c))
            .collect()
    })
    .await
}

/// Parses a `{Node, Segment, Coord}` body.
pub(super) fn parse_update(bytes: &[u8]) -> Result<CoordinateUpdate, Error> {
    let map = parse_object(bytes)?;
    let o = Obj::new(&map, "");
    let node = o.string(&["Node"])?;
    if node.is_empty() {
        return Err(Error::BadRequest("Must provide node".into()));
    }
    let segment = o.string(&["Segment"])?;
    let coord = match o.get(&["Coord"]) {
        None => return Err(Error::BadRequest("Must provide a coordinate (Coord)".into())),
        Some(v) => Coordinate::from_json(v).map_err(Error::BadRequest)?,
    };
    Ok(CoordinateUpdate { node, segment, coord })
}

/// `PUT /v1/coordinate/update`: sets a node's LAN coordinate (for nodes without an agent).
/// Answers 200 with an empty body, like Consul; a node not in the catalog is ignored.
pub(super) async fn update(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    if let Some(r) = disabled(&ctx) {
        return Ok(r);
    }
    let q = QueryParams::from_uri(&uri);
    q.check_dc(&ctx.config.datacenter)?;
    let bytes = read_body(body, &headers, MAX_BODY, "the coordinate update size limit").await?;
    let update = parse_update(&bytes)?;
    acl.require(Resource::Node, &update.node, Need::Write)?;
    match ctx.consensus()?.write(Command::CoordinateBatchUpdate(vec![update])).await? {
        (_, CommandResponse::Ok) => Ok(StatusCode::OK.into_response()),
        (_, other) => Err(Error::Raft(format!("unexpected result {other:?}"))),
    }
}

/// The node a request's `?near=` names (`_agent`: this agent's node), unless coordinates
/// are disabled.
pub(super) fn near_node(ctx: &ApiContext, q: &QueryParams) -> Option<String> {
    if ctx.config.disable_coordinates {
        return None;
    }
    match q.get("near")? {
        "" => None,
        "_agent" => Some(ctx.config.node_name.clone()),
        node => Some(node.to_string()),
    }
}

/// Sorts `items` by estimated RTT from `source`'s coordinate, nearest first (stable, so equal
/// distances keep their order); items whose node has no coordinate go last. Without a source,
/// or when the source has no coordinate, the order is left alone — Consul's rules.
pub(crate) fn sort_near<T>(d: &StateData, source: Option<&str>, items: &mut [T], node: impl Fn(&T) -> &str) {
    let Some(from) = source.and_then(|s| d.coordinates.get(s, "")) else {
        return;
    };
    let mut keyed: Vec<(f64, usize)> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let dist = d.coordinates.get(node(item), "").map(|c| distance_secs(from, c)).unwrap_or(f64::INFINITY);
            (if dist.is_nan() { f64::INFINITY } else { dist }, i)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    // Apply the permutation in place: follow each cycle once.
    let order: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
    let mut placed = vec![false; items.len()];
    for start in 0..items.len() {
        if placed[start] {
            continue;
        }
        let mut cur = start;
        loop {
            placed[cur] = true;
            let next = order[cur];
            if next == start {
                break;
            }
            items.swap(cur, next);
            cur = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinate::CoordinateConfig;

    fn state_with(coords: &[(&str, f64)]) -> StateData {
        let mut d = StateData::default();
        for (node, x) in coords {
            let mut c = Coordinate::new(&CoordinateConfig::default());
            c.vec[0] = *x;
            d.coordinates.entries.insert((node.to_string(), String::new()), c);
        }
        d
    }

    #[test]
    fn sorts_nearest_first_and_unknown_last() {
        let d = state_with(&[("me", 0.0), ("a", 0.030), ("b", 0.010), ("c", -0.020)]);
        let mut items = vec!["a", "x", "b", "me", "y", "c"];
        sort_near(&d, Some("me"), &mut items, |s| s);
        assert_eq!(items, vec!["me", "b", "c", "a", "x", "y"]);
        // No source coordinate: untouched.
        let mut items = vec!["a", "x", "b"];
        sort_near(&d, Some("nobody"), &mut items, |s| s);
        assert_eq!(items, vec!["a", "x", "b"]);
        sort_near(&d, None, &mut items, |s| s);
        assert_eq!(items, vec!["a", "x", "b"]);
    }

    #[test]
    fn sort_permutation_is_applied_correctly() {
        // Many cycles and equal distances.
        let coords: Vec<(String, f64)> = (0..50).map(|i| (format!("n{i}"), ((i * 37) % 50) as f64 / 1000.0)).collect();
        let refs: Vec<(&str, f64)> = coords.iter().map(|(n, x)| (n.as_str(), *x)).collect();
        let mut d = state_with(&refs);
        let mut origin = Coordinate::new(&CoordinateConfig::default());
        origin.vec[0] = -1.0;
        d.coordinates.entries.insert(("src".into(), String::new()), origin);
        let mut items: Vec<String> = coords.iter().map(|(n, _)| n.clone()).collect();
        sort_near(&d, Some("src"), &mut items, |s| s.as_str());
        let xs: Vec<f64> = items.iter().map(|n| d.coordinates.get(n, "").map(|c| c.vec[0]).unwrap_or(0.0)).collect();
        assert!(xs.windows(2).all(|w| w[0] <= w[1]), "{xs:?}");
        assert_eq!(items.len(), 50);
    }

    #[test]
    fn update_bodies() {
        let ok =
            br#"{"Node":"n1","Segment":"","Coord":{"Vec":[0,0,0,0,0,0,0,0],"Error":1.5,"Adjustment":0,"Height":1e-5}}"#;
        let u = parse_update(ok).expect("valid");
        assert_eq!((u.node.as_str(), u.segment.as_str()), ("n1", ""));
        for (body, needle) in [
            (&b"not json"[..], "Request decode failed"),
            (br#"{"Coord":{"Vec":[0,0,0,0,0,0,0,0]}}"#, "Must provide node"),
            (br#"{"Node":"n1"}"#, "Must provide a coordinate"),
            (br#"{"Node":"n1","Coord":{"Vec":[0,0]}}"#, "incompatible coordinate"),
            (br#"{"Node":"n1","Coord":{"Vec":[0,0,0,0,0,0,0,0],"Height":-2}}"#, "Height"),
            (br#"{"Node":7,"Coord":{}}"#, "Node"),
        ] {
            let e = parse_update(body).expect_err(needle).to_string();
            assert!(e.contains(needle), "{e}");
        }
    }
}
