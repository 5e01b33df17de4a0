//! Blocking queries (`agent/blockingquery/blockingquery.go` semantics).
//!
//! The query subscribes to what it reads, runs, and returns at once when its index is past the
//! client's; otherwise it sleeps until a write touches what it reads, the wait (plus up to
//! wait/16 of jitter, so herds of watchers spread out) runs out, or the agent shuts down. On
//! timeout the current result is returned with its index, changed or not.

use std::time::Duration;

use futures::future::select_all;
use rand::Rng;

use super::query::ReadParams;
use super::ApiContext;
use crate::replication::consensus::ReadMeta;
use crate::state::watch::WatchTarget;
use crate::state::StateData;
use crate::Result;

/// A blocking read of a value outside the state store, published on a `watch` channel (gossip
/// membership, Raft's metrics): the value at once without `?index=`, else once `index_of` it is
/// not the client's index (`!=`, not `>`: a counter that restarted with the agent starts the
/// client over), the wait runs out, or the agent shuts down.
pub(super) async fn on_watch<T: Clone>(
    ctx: &ApiContext,
    mut rx: tokio::sync::watch::Receiver<T>,
    params: &ReadParams,
    index_of: impl Fn(&T) -> u64,
) -> T {
    let deadline = tokio::time::Instant::now() + params.wait;
    loop {
        {
            let value = rx.borrow_and_update();
            if params.index == 0 || index_of(&value) != params.index {
                return value.clone();
            }
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep_until(deadline) => break,
            _ = ctx.shutdown.cancelled() => break,
        }
    }
    let value = rx.borrow().clone();
    value
}

/// Runs `query` as a (possibly) blocking read; returns its index, result and read metadata.
pub(super) async fn run<T>(
    ctx: &ApiContext,
    params: &ReadParams,
    targets: &[WatchTarget],
    query: impl Fn(&StateData) -> (u64, T),
) -> Result<(u64, T, ReadMeta)> {
    let meta = ctx.consensus()?.read_barrier(params.consistency).await?;
    let state = ctx.consensus()?.state();
    if params.index == 0 {
        let (index, result) = state.read(&query);
        return Ok((index, result, meta));
    }
    let jitter_ms = (params.wait.as_millis() / 16) as u64;
    let jitter = if jitter_ms > 0 { rand::thread_rng().gen_range(0..jitter_ms) } else { 0 };
    let deadline = tokio::time::Instant::now() + params.wait + Duration::from_millis(jitter);
    loop {
        let mut receivers: Vec<_> = targets.iter().map(|t| state.watches().subscribe(t)).collect();
        let (index, result) = state.read(&query);
        if index > params.index || tokio::time::Instant::now() >= deadline {
            return Ok((index, result, meta));
        }
        let changed = async {
            if receivers.is_empty() {
                futures::future::pending::<()>().await;
            } else {
                let _ = select_all(receivers.iter_mut().map(|rx| Box::pin(rx.changed()))).await;
            }
        };
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = ctx.shutdown.cancelled() => {
                let (index, result) = state.read(&query);
                return Ok((index, result, meta));
            }
        }
    }
}
