//! Alias checks: mirror the aggregated health of a service (by ID) — its checks plus its node's
//! checks — either on this node (from the local state) or on another node (from the catalog).
//! The task re-evaluates whenever the local state or that node's catalog entry changes.

use tokio_util::sync::CancellationToken;

use super::{Outcome, RunCtx};
use crate::state::catalog::{watch_node, NodeState, CRITICAL, PASSING, WARNING};
use crate::state::watch::WatchTarget;

fn summarise<'a>(checks: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> Outcome {
    let mut worst: Option<(&'static str, String)> = None;
    let mut any = false;
    for (name, status, output) in checks {
        any = true;
        match status {
            CRITICAL => return (CRITICAL, format!("Aliased check {name:?} failing: {output}")),
            WARNING if worst.is_none() => worst = Some((WARNING, format!("Aliased check {name:?} warning: {output}"))),
            _ => {}
        }
    }
    match (worst, any) {
        (Some(w), _) => w,
        (None, true) => (PASSING, "All checks passing.".to_string()),
        (None, false) => (PASSING, "No checks found.".to_string()),
    }
}

fn evaluate(ctx: &RunCtx, own_id: &str, service: &str, node: &str) -> Outcome {
    if node.is_empty() || node == ctx.node {
        let snap = ctx.state.snapshot();
        if !service.is_empty() && !snap.services.contains_key(service) {
            return (CRITICAL, format!("Service {service:?} not found on this node"));
        }
        let checks = snap
            .checks
            .values()
            .filter(|c| c.def.id != own_id)
            .filter(|c| c.def.service_id.is_empty() || c.def.service_id == service)
            .map(|c| (c.def.name.as_str(), c.status.as_str(), c.output.as_str()));
        return summarise(checks);
    }
    match ctx.backend.consensus() {
        Some(c) => c.state().read(|d| evaluate_remote(&d.catalog.node_state(node), service, node)),
        // Client agents poll a server instead (see `run`).
        None => (CRITICAL, "waiting for the catalog".to_string()),
    }
}

fn evaluate_remote(state: &NodeState, service: &str, node: &str) -> Outcome {
    if state.node.is_none() {
        return (CRITICAL, format!("Node {node:?} not found"));
    }
    if !service.is_empty() && !state.services.iter().any(|s| s.id == service) {
        return (CRITICAL, format!("Service {service:?} not found on node {node:?}"));
    }
    let checks = state
        .checks
        .iter()
        .filter(|c| c.service_id.is_empty() || c.service_id == service)
        .map(|c| (c.name.as_str(), c.status.as_str(), c.output.as_str()));
    summarise(checks)
}

pub(super) async fn run(
    ctx: RunCtx,
    id: String,
    generation: u64,
    service: String,
    node: String,
    cancel: CancellationToken,
) {
    let mut local = ctx.state.subscribe();
    let remote = !node.is_empty() && node != ctx.node;
    loop {
        let local_catalog = ctx.backend.consensus().filter(|_| remote);
        let mut catalog = local_catalog.map(|c| c.state().watches().subscribe(&WatchTarget::Key(watch_node(&node))));
        local.mark_unchanged();
        // A client agent has no replica to watch: it reads the node from a server each second.
        let polled = remote && local_catalog.is_none();
        let (status, output) = if polled {
            match ctx.backend.read_node(&node).await {
                Ok(state) => evaluate_remote(&state, &service, &node),
                Err(e) => (CRITICAL, format!("cannot read node {node:?} from the servers: {e}")),
            }
        } else {
            evaluate(&ctx, &id, &service, &node)
        };
        ctx.state.update_check(&id, Some(generation), status, output);
        let catalog_changed = async {
            match catalog.as_mut() {
                Some(rx) => {
                    let _ = rx.changed().await;
                }
                None => futures::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = local.changed() => {}
            _ = catalog_changed => {}
            // A safety net: re-evaluate now and then even without a notification.
            _ = tokio::time::sleep(std::time::Duration::from_secs(if polled { 1 } else { 30 })) => {}
            _ = cancel.cancelled() => return,
        }
    }
}
