//! TTL checks: passive. The application reports through `/v1/agent/check/pass|warn|fail|update`;
//! a report restarts the timer, and when it runs out the check turns critical.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::RunCtx;
use crate::state::catalog::CRITICAL;

pub(super) async fn run(
    ctx: RunCtx,
    id: String,
    generation: u64,
    ttl: Duration,
    reset: Arc<Notify>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = reset.notified() => continue,
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(ttl) => {}
        }
        let last = ctx.state.check(&id).map(|c| c.output).unwrap_or_default();
        // Already-expired output is not nested again.
        let output = if last.starts_with("TTL expired") {
            last
        } else {
            format!("TTL expired (last output before timeout follows): {last}")
        };
        ctx.state.update_check(&id, Some(generation), CRITICAL, output);
        tokio::select! {
            _ = reset.notified() => {}
            _ = cancel.cancelled() => return,
        }
    }
}
