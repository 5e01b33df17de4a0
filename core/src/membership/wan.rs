//! The WAN pool: the servers of every datacenter in one gossip pool of their own.
//!
//! The same engine as the LAN pool ([`crate::membership::gossip`]) with memberlist's WAN
//! timing, on its own port (`serf_wan`, 8302), with its own keyring (started from the same
//! `encrypt` key, kept in `serf/remote.keyring`). Members are named `<node>.<datacenter>`, as in
//! Consul. Only servers take part; client agents have no WAN pool.
//!
//! Besides membership it gives each server a WAN network coordinate (Vivaldi, fed by WAN probe
//! round trips) and remembers the coordinates its peers' packets carry, which is what
//! `/v1/coordinate/datacenters` lists and what `/v1/catalog/datacenters` sorts by.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::coordinate::{Coordinate, CoordinateClient};
use crate::membership::gossip::driver::JoinError;
use crate::membership::gossip::engine::RttObserver;
use crate::membership::gossip::{Gossip, Member, MemberStatus};

/// The default serf_wan port, used when a WAN join address has no port.
pub const DEFAULT_SERF_WAN_PORT: u16 = 8302;

/// A member's name in the WAN pool: `<node>.<datacenter>`.
pub fn wan_name(node: &str, datacenter: &str) -> String {
    format!("{node}.{datacenter}")
}

/// When and where a server joins the WAN pool at start (`retry_join_wan` and friends).
#[derive(Debug, Clone, Default)]
pub struct WanJoin {
    /// Addresses (`host` or `host:port`, serf_wan port by default).
    pub addrs: Vec<String>,
    /// Time between rounds.
    pub interval: Duration,
    /// Rounds before giving up (0 = forever).
    pub max: u32,
}

/// This server's WAN coordinate and the latest coordinate each WAN peer's packets carried
/// (Serf's coordinate cache).
#[derive(Debug, Default)]
pub struct WanCoordinates {
    client: CoordinateClient,
    peers: Mutex<HashMap<String, Coordinate>>,
}

impl WanCoordinates {
    /// This server's WAN coordinate.
    pub fn local(&self) -> Coordinate {
        self.client.get()
    }

    /// The last coordinate seen from WAN member `name`.
    pub fn peer(&self, name: &str) -> Option<Coordinate> {
        self.peers.lock().get(name).copied()
    }

    /// Forgets a member that left the pool.
    pub fn forget(&self, name: &str) {
        self.peers.lock().remove(name);
        self.client.forget(name);
    }
}

impl RttObserver for WanCoordinates {
    fn local_coordinate(&self) -> Vec<u8> {
        postcard::to_stdvec(&self.client.get()).unwrap_or_default()
    }

    fn observe(&self, peer: &str, coordinate: &[u8], rtt: Duration) {
        // A coordinate that does not decode or is refused is dropped: a peer must not be able
        // to poison ours, nor be listed with garbage.
        let Ok(remote) = postcard::from_bytes::<Coordinate>(coordinate) else { return };
        match self.client.update(peer, &remote, rtt) {
            Ok(_) => {
                self.peers.lock().insert(peer.to_string(), remote);
            }
            Err(e) => tracing::debug!(%peer, error = %e, "WAN coordinate update refused"),
        }
    }
}

/// A server's WAN pool member. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct WanPool {
    gossip: Arc<Gossip>,
    coordinates: Option<Arc<WanCoordinates>>,
    join: WanJoin,
}

impl WanPool {
    /// Wraps a running WAN gossip member; `coordinates` is `None` with `disable_coordinates`.
    pub fn new(gossip: Arc<Gossip>, coordinates: bool, join: WanJoin) -> Arc<Self> {
        let coordinates = coordinates.then(|| Arc::new(WanCoordinates::default()));
        if let Some(c) = &coordinates {
            gossip.set_rtt_observer(c.clone());
        }
        Arc::new(WanPool { gossip, coordinates, join })
    }

    /// The gossip pool.
    pub fn gossip(&self) -> &Arc<Gossip> {
        &self.gossip
    }

    /// The WAN coordinates, unless coordinates are disabled.
    pub fn coordinates(&self) -> Option<&Arc<WanCoordinates>> {
        self.coordinates.as_ref()
    }

    /// Every WAN member, this server included, sorted by name.
    pub fn members(&self) -> Vec<Member> {
        self.gossip.members()
    }

    /// Joins the WAN pool through the servers at `addrs`; how many answered, or why none did.
    pub async fn join(&self, addrs: &[String]) -> Result<usize, JoinError> {
        self.gossip.join(addrs).await
    }

    /// The coordinate of WAN member `name`: this server's own from its client, a peer's from
    /// its latest packet.
    pub fn coordinate_of(&self, name: &str) -> Option<Coordinate> {
        let c = self.coordinates.as_ref()?;
        if name == self.gossip.me().name {
            return Some(c.local());
        }
        c.peer(name)
    }

    /// Every datacenter the WAN pool knows, nearest first (see [`sort_datacenters`]).
    pub fn datacenters(&self) -> Vec<String> {
        let me = self.gossip.me();
        let members = self.members();
        let local = self.coordinate_of(&me.name);
        let servers: Vec<(String, Option<Duration>)> = members
            .iter()
            .filter(|m| m.status != MemberStatus::Left)
            .map(|m| {
                let rtt = if m.info.name == me.name {
                    Some(Duration::ZERO)
                } else {
                    match (&local, self.coordinate_of(&m.info.name)) {
                        (Some(a), Some(b)) => Some(a.distance_to(&b)),
                        _ => None,
                    }
                };
                (m.info.datacenter.clone(), rtt)
            })
            .collect();
        sort_datacenters(&me.datacenter, &servers)
    }

    /// Runs the start-up join (`retry_join_wan`) and the flood join: every server of this
    /// datacenter that the LAN pool `lan` knows (with its WAN address) is joined to the WAN
    /// pool when missing from it, as Consul's servers do, so one WAN join per datacenter is
    /// enough.
    pub async fn run(self: Arc<Self>, lan: Arc<Gossip>, shutdown: CancellationToken) {
        tokio::join!(self.clone().retry_join(shutdown.clone()), self.flood(lan, shutdown));
    }

    async fn flood(self: Arc<Self>, lan: Arc<Gossip>, shutdown: CancellationToken) {
        let mut changes = lan.member_changes();
        loop {
            let missing = flood_targets(&lan.members(), &self.members());
            if !missing.is_empty() {
                if let Err(e) = self.join(&missing).await {
                    tracing::debug!(error = %e, "WAN flood join failed; will retry");
                }
            }
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(FLOOD_INTERVAL) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn retry_join(self: Arc<Self>, shutdown: CancellationToken) {
        if self.join.addrs.is_empty() {
            return;
        }
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.join(&self.join.addrs).await {
                Ok(n) if n > 0 => {
                    tracing::info!(addrs = ?self.join.addrs, "WAN join completed");
                    return;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(attempt, error = %e, retry_in = ?self.join.interval, "WAN join failed"),
            }
            if self.join.max > 0 && attempt >= self.join.max {
                tracing::error!(attempts = attempt, "retry_join_wan: giving up; no address answered");
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.join.interval) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// How often the flood join looks for LAN servers missing from the WAN pool, besides on every
/// LAN membership change.
const FLOOD_INTERVAL: Duration = Duration::from_secs(10);

/// WAN addresses of the alive servers of this datacenter (as `lan` knows them) that the WAN
/// pool `wan` does not list as alive.
pub fn flood_targets(lan: &[Member], wan: &[Member]) -> Vec<String> {
    lan.iter()
        .filter(|m| m.status == MemberStatus::Alive && m.info.server)
        .filter_map(|m| {
            let addr = m.info.wan_addr?;
            let name = wan_name(&m.info.name, &m.info.datacenter);
            let known = wan.iter().any(|w| w.info.name == name && w.status == MemberStatus::Alive);
            (!known).then(|| addr.to_string())
        })
        .collect()
}

/// Orders datacenters by the median estimated RTT to their servers (Consul's
/// `GetDatacentersByDistance`): `servers` is (datacenter, estimated RTT from here) per server,
/// an unknown RTT counting as the largest. Ties go to the local datacenter, then by name.
pub fn sort_datacenters(local: &str, servers: &[(String, Option<Duration>)]) -> Vec<String> {
    let mut by_dc: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for (dc, rtt) in servers {
        by_dc.entry(dc.as_str()).or_default().push(rtt.unwrap_or(Duration::MAX));
    }
    by_dc.entry(local).or_default();
    let mut ranked: Vec<(Duration, bool, &str)> = by_dc
        .into_iter()
        .map(|(dc, mut rtts)| {
            rtts.sort();
            let median = if rtts.is_empty() && dc == local { Duration::ZERO } else { rtts[rtts.len() / 2] };
            (median, dc != local, dc)
        })
        .collect();
    ranked.sort();
    ranked.into_iter().map(|(_, _, dc)| dc.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn wan_names_are_node_dot_datacenter() {
        assert_eq!(wan_name("s1", "dc1"), "s1.dc1");
        assert_eq!(wan_name("web.prod", "east"), "web.prod.east");
    }

    #[test]
    fn datacenters_sort_by_median_rtt_local_first_on_ties() {
        let servers = vec![
            ("dc1".to_string(), Some(Duration::ZERO)),
            ("dc2".to_string(), ms(40)),
            ("dc2".to_string(), ms(10)),
            ("dc2".to_string(), ms(12)),
            ("dc3".to_string(), ms(5)),
            ("dc4".to_string(), None),
        ];
        // Medians: dc1 0, dc2 12, dc3 5, dc4 unknown (last).
        assert_eq!(sort_datacenters("dc1", &servers), ["dc1", "dc3", "dc2", "dc4"]);
        // From dc2's point of view with everything equal, the local datacenter wins the tie.
        let equal = vec![("a".to_string(), ms(1)), ("dc2".to_string(), ms(1)), ("b".to_string(), ms(1))];
        assert_eq!(sort_datacenters("dc2", &equal), ["dc2", "a", "b"]);
        // The local datacenter is listed even before the pool knows any of its servers.
        assert_eq!(sort_datacenters("dc9", &[]), ["dc9"]);
    }

    fn member(name: &str, dc: &str, server: bool, wan: Option<&str>, status: MemberStatus) -> Member {
        Member {
            info: crate::membership::gossip::MemberInfo {
                node_id: uuid::Uuid::new_v4(),
                name: name.into(),
                datacenter: dc.into(),
                rpc_addr: "127.0.0.1:8300".parse().expect("addr"),
                serf_addr: "127.0.0.1:8301".parse().expect("addr"),
                http_addr: "127.0.0.1:8500".parse().expect("addr"),
                server,
                bootstrap_expect: 0,
                raft_initialized: false,
                incarnation: 1,
                wan_addr: wan.map(|a| a.parse().expect("addr")),
            },
            status,
            since: std::time::Instant::now(),
        }
    }

    #[test]
    fn flood_joins_alive_lan_servers_missing_from_the_wan_pool() {
        let lan = vec![
            member("s1", "dc1", true, Some("10.0.0.1:8302"), MemberStatus::Alive),
            member("s2", "dc1", true, Some("10.0.0.2:8302"), MemberStatus::Alive),
            member("s3", "dc1", true, Some("10.0.0.3:8302"), MemberStatus::Failed),
            member("s4", "dc1", true, None, MemberStatus::Alive),
            member("c1", "dc1", false, None, MemberStatus::Alive),
        ];
        let wan = vec![member("s1.dc1", "dc1", true, None, MemberStatus::Alive)];
        assert_eq!(flood_targets(&lan, &wan), ["10.0.0.2:8302"]);
        let wan = vec![
            member("s1.dc1", "dc1", true, None, MemberStatus::Alive),
            member("s2.dc1", "dc1", true, None, MemberStatus::Alive),
        ];
        assert!(flood_targets(&lan, &wan).is_empty());
    }

    #[test]
    fn wan_coordinates_remember_valid_peer_coordinates_only() {
        let c = WanCoordinates::default();
        let peer = CoordinateClient::new().get();
        c.observe("s2.dc2", &postcard::to_stdvec(&peer).expect("encodes"), Duration::from_millis(20));
        assert_eq!(c.peer("s2.dc2"), Some(peer));
        c.observe("s3.dc3", b"garbage", Duration::from_millis(20));
        assert_eq!(c.peer("s3.dc3"), None);
        c.forget("s2.dc2");
        assert_eq!(c.peer("s2.dc2"), None);
    }
}
