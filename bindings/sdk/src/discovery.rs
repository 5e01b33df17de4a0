//! Client-side discovery: a live, watch-backed set of a service's healthy instances, and
//! selection among them answered locally — no network round trip per pick.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::error::{Error, ErrorCode, Result};
use crate::types::ServiceEntry;
use crate::watch::{WatchOptions, WatchSpec, WatchValue};

/// How [`Discovery::pick`] chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Each instance in turn.
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// At random, in proportion to each instance's `Weights.Passing`.
    Weighted,
    /// The same instance for the same key while it is there; when instances come or go only
    /// the keys of those instances move (rendezvous hashing).
    ConsistentHash,
    /// Nearest by network coordinates. Coordinates arrive with the gossip layer; until then
    /// this falls back to round-robin.
    Nearest,
}

impl Strategy {
    /// Parses `round_robin`, `random`, `weighted`, `consistent_hash`, `nearest` (dashes allowed).
    pub fn parse(s: &str) -> Result<Strategy> {
        Ok(match s.replace('-', "_").as_str() {
            "round_robin" => Strategy::RoundRobin,
            "random" => Strategy::Random,
            "weighted" => Strategy::Weighted,
            "consistent_hash" => Strategy::ConsistentHash,
            "nearest" => Strategy::Nearest,
            other => return Err(Error::invalid("strategy", format!("unknown strategy {other:?}"))),
        })
    }
}

/// The healthy instances of one service, kept current by a watch.
#[derive(Debug)]
pub struct Discovery {
    instances: Arc<RwLock<(u64, Vec<ServiceEntry>)>>,
    cursor: AtomicUsize,
    cancel: CancellationToken,
    ready: tokio::sync::watch::Receiver<bool>,
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn rendezvous(key: &str, e: &ServiceEntry) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    e.node.node.hash(&mut h);
    e.service.id.hash(&mut h);
    h.finish()
}

impl Discovery {
    /// Starts tracking the passing instances of `service` (optionally with `tag`), on the current
    /// tokio runtime.
    pub fn start(client: &Client, service: &str, tag: Option<&str>) -> Result<Discovery> {
        if service.is_empty() {
            return Err(Error::invalid("service", "must not be empty"));
        }
        let spec = WatchSpec::Service { name: service.to_string(), passing_only: true, tag: tag.map(str::to_string) };
        let watch = client.watch(spec, WatchOptions::default());
        let instances: Arc<RwLock<(u64, Vec<ServiceEntry>)>> = Arc::default();
        let cancel = CancellationToken::new();
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        let (set, stop) = (instances.clone(), cancel.clone());
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    e = watch.next() => e,
                    _ = stop.cancelled() => break,
                };
                match ev {
                    Ok(Some(ev)) => {
                        if let WatchValue::Service(list) = ev.value {
                            *set.write() = (ev.index, list);
                            let _ = ready_tx.send(true);
                        }
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            watch.close();
        });
        Ok(Discovery { instances, cursor: AtomicUsize::new(0), cancel, ready })
    }

    /// Waits until the first result has arrived.
    pub async fn ready(&self, timeout: std::time::Duration) -> Result<()> {
        let mut rx = self.ready.clone();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|r| *r)).await;
        match waited {
            Err(_) => Err(Error::new(ErrorCode::Timeout, "no discovery result yet")),
            Ok(Err(_)) => Err(Error::new(ErrorCode::Cancelled, "discovery stopped")),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// The current healthy instances.
    pub fn instances(&self) -> Vec<ServiceEntry> {
        self.instances.read().1.clone()
    }

    /// The index of the current set.
    pub fn index(&self) -> u64 {
        self.instances.read().0
    }

    /// Picks one instance; `key` is required by [`Strategy::ConsistentHash`]. `None` when there
    /// is no healthy instance.
    pub fn pick(&self, strategy: Strategy, key: Option<&str>) -> Result<Option<ServiceEntry>> {
        let guard = self.instances.read();
        let list = &guard.1;
        if list.is_empty() {
            return Ok(None);
        }
        let i = match strategy {
            Strategy::RoundRobin | Strategy::Nearest => self.cursor.fetch_add(1, Ordering::Relaxed) % list.len(),
            Strategy::Random => rand::thread_rng().gen_range(0..list.len()),
            Strategy::Weighted => {
                let weights: Vec<u64> = list.iter().map(|e| e.service.weights.passing.max(0) as u64).collect();
                let total: u64 = weights.iter().sum();
                if total == 0 {
                    rand::thread_rng().gen_range(0..list.len())
                } else {
                    let mut r = rand::thread_rng().gen_range(0..total);
                    weights
                        .iter()
                        .position(|w| {
                            if r < *w {
                                true
                            } else {
                                r -= w;
                                false
                            }
                        })
                        .unwrap_or(0)
                }
            }
            Strategy::ConsistentHash => {
                let key = key.ok_or_else(|| Error::invalid("key", "consistent_hash needs a key"))?;
                (0..list.len()).max_by_key(|i| rendezvous(key, &list[*i])).unwrap_or(0)
            }
        };
        Ok(list.get(i).cloned())
    }

    /// Stops tracking.
    pub fn close(&self) {
        self.cancel.cancel();
    }
}
