//! The leader's ACL duties (Consul's `initializeACLs` and the expired-token reaper in
//! `agent/consul/leader.go`): on becoming leader, make sure the built-in policies, the
//! anonymous token and the configured `initial_management` token exist; then, periodically,
//! delete tokens whose expiry passed. Everything goes through Raft, and each write is proposed
//! only when the replicated state shows it is needed, so a stable leader writes nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::replication::consensus::Consensus;
use crate::state::acl::{anonymous_token, builtin_policies, AclOp, AclToken};
use crate::state::command::Command;

/// How often the leader checks.
const TICK: Duration = Duration::from_secs(1);

/// Runs until `shutdown`: the ACL upkeep of whichever server is leader. `initial_management`
/// is the `acl.tokens.initial_management` secret, if configured.
pub async fn run(consensus: Arc<Consensus>, initial_management: Option<String>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.cancelled() => return,
        }
        if !consensus.is_leader() {
            continue;
        }
        let now = consensus.clock().unix_ms();
        let (needs_init, has_expired) = consensus.state().read(|d| {
            let policies_missing = builtin_policies().iter().any(|p| !d.acl.policies.contains_key(&p.id));
            let anonymous_missing = !d.acl.tokens.contains_key(crate::state::acl::ANONYMOUS_ACCESSOR_ID);
            let initial_missing = initial_management.as_ref().is_some_and(|s| !d.acl.secrets.contains_key(s));
            (policies_missing || anonymous_missing || initial_missing, d.acl.tokens.values().any(|t| t.is_expired(now)))
        });
        if needs_init {
            let initial = initial_management.as_ref().map(|secret| {
                Box::new(AclToken {
                    accessor_id: uuid::Uuid::new_v4().to_string(),
                    secret_id: secret.clone(),
                    description: "Initial Management Token".into(),
                    create_time_ms: now,
                    ..AclToken::default()
                })
            });
            let op = AclOp::Initialize {
                policies: builtin_policies(),
                anonymous: Box::new(anonymous_token()),
                initial_management: initial,
            };
            match consensus.write(Command::Acl(op)).await {
                Ok(_) => tracing::info!("ACL system initialized"),
                Err(e) => tracing::warn!(error = %e, "initializing ACLs failed; will retry"),
            }
        }
        if has_expired {
            if let Err(e) = consensus.write(Command::Acl(AclOp::ReapExpired { now_ms: now })).await {
                tracing::warn!(error = %e, "reaping expired ACL tokens failed; will retry");
            }
        }
    }
}
