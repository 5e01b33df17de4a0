//! A client agent's own writes — anti-entropy of its services and checks, coordinate updates
//! — reach a server over the `Forward` RPC as `AgentWrite`, under the agent's token (Consul's
//! agent token). The receiving server judges them as it would the same registration made over
//! its HTTP API, then hands them to consensus as ordinary writes.

use std::sync::Arc;

use crate::acl::rules::{Need, Resource};
use crate::api::authz::{AclResolver, RequestAcl};
use crate::api::http::catalog::{require_deregister, require_register};
use crate::error::ApplyError;
use crate::replication::consensus::Consensus;
use crate::replication::forward::{ForwardRequest, ForwardResponse, WireError};
use crate::state::command::{Command, CommandResponse};
use crate::state::StateData;
use crate::Error;

/// Serves one `Forward` RPC on a server: `AgentWrite` is checked against the token it carries
/// and then proposed like any forwarded write; everything else goes to consensus unchanged.
pub async fn serve_forward(
    consensus: &Consensus,
    acl: &Arc<AclResolver>,
    req: ForwardRequest,
) -> Result<ForwardResponse, WireError> {
    let ForwardRequest::AgentWrite { token, command } = req else {
        return consensus.handle_forward(req).await;
    };
    let now = consensus.clock().unix_ms();
    let checked = consensus.state().read(|d| -> Result<Option<Vec<Option<Error>>>, Error> {
        let authz = RequestAcl::new(acl.resolve(token.as_deref(), &d.acl, now)?);
        // Anti-entropy batches are judged command by command, as Consul syncs each service on
        // its own: one service the token may not write must not hold back the others.
        Ok(match batch_of(&command) {
            Some(items) => Some(items.iter().map(|c| authorize(&authz, d, c).err()).collect()),
            None => {
                authorize(&authz, d, &command)?;
                None
            }
        })
    });
    let verdicts = match checked {
        Ok(Some(v)) if v.iter().any(Option::is_some) => v,
        Ok(_) => return consensus.handle_forward(ForwardRequest::Write(command)).await,
        Err(e) => return Err(WireError::from_error(e)),
    };
    if verdicts.iter().all(Option::is_some) {
        let first = verdicts.into_iter().flatten().next().unwrap_or(Error::AclNotFound);
        return Err(WireError::from_error(first));
    }
    // Propose the allowed commands (same request id: a retry is judged and trimmed the same
    // way), then answer every position, the refused ones with their denial.
    let allowed = trim_batch(command, &verdicts);
    let (index, resp) = match consensus.handle_forward(ForwardRequest::Write(allowed)).await? {
        ForwardResponse::Written(index, resp) => (index, resp),
        other => return Ok(other),
    };
    Ok(ForwardResponse::Written(index, splice(resp, verdicts)))
}

/// The commands of an anti-entropy batch (possibly tracked).
fn batch_of(cmd: &Command) -> Option<&[Command]> {
    match cmd {
        Command::Tracked { cmd, .. } => batch_of(cmd),
        Command::Batch(items) => Some(items),
        _ => None,
    }
}

/// `cmd` (a batch, possibly tracked) without the commands whose verdict is a denial.
fn trim_batch(cmd: Command, verdicts: &[Option<Error>]) -> Command {
    match cmd {
        Command::Tracked { id, cmd } => Command::Tracked { id, cmd: Box::new(trim_batch(*cmd, verdicts)) },
        Command::Batch(items) => {
            Command::Batch(items.into_iter().zip(verdicts).filter(|(_, v)| v.is_none()).map(|(c, _)| c).collect())
        }
        other => other,
    }
}

/// The answers of the trimmed batch put back in place, denials where commands were dropped.
fn splice(resp: CommandResponse, verdicts: Vec<Option<Error>>) -> CommandResponse {
    match resp {
        CommandResponse::Replayed { index, response } => {
            CommandResponse::Replayed { index, response: Box::new(splice(*response, verdicts)) }
        }
        CommandResponse::Batch(answers) => {
            let mut answers = answers.into_iter();
            CommandResponse::Batch(
                verdicts
                    .into_iter()
                    .map(|v| match v {
                        Some(denied) => CommandResponse::Failed(ApplyError::PermissionDenied(denied.to_string())),
                        None => answers.next().unwrap_or(CommandResponse::Ok),
                    })
                    .collect(),
            )
        }
        other => other,
    }
}

/// Whether `acl` may make `cmd`, a write a client agent sends about itself: catalog
/// registrations and deregistrations (Consul's `node:write` / `service:write` rules) and
/// coordinate updates (`node:write`). Any other command is refused when ACLs are on.
pub fn authorize(acl: &RequestAcl, d: &StateData, cmd: &Command) -> Result<(), Error> {
    if !acl.enabled() {
        return Ok(());
    }
    match cmd {
        Command::Tracked { cmd, .. } | Command::WithExt { cmd, .. } => authorize(acl, d, cmd),
        Command::Batch(cmds) => cmds.iter().try_for_each(|c| authorize(acl, d, c)),
        Command::CatalogRegister(req) => require_register(acl, d, req),
        Command::CatalogDeregister(req) => require_deregister(acl, d, req),
        Command::CoordinateBatchUpdate(updates) => {
            updates.iter().try_for_each(|u| acl.require(Resource::Node, &u.node, Need::Write))
        }
        other => Err(Error::PermissionDenied(format!(
            "Permission denied: a client agent may only send catalog and coordinate updates, not {}",
            command_kind(other)
        ))),
    }
}

fn command_kind(cmd: &Command) -> &'static str {
    match cmd {
        Command::Kv(_) => "a KV write",
        Command::Txn(_) => "a transaction",
        Command::Restore(_) => "a snapshot restore",
        Command::SessionCreate(_) | Command::SessionDestroy { .. } => "a session change",
        Command::Acl(_) => "an ACL change",
        _ => "this command",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::authorizer::{Authorizer, DefaultPolicy};
    use crate::acl::rules::Rules;
    use crate::api::authz::Authz;
    use crate::state::catalog::{DeregisterRequest, RegisterRequest};

    fn acl_with(rules: &str) -> RequestAcl {
        let rules = Rules::parse(rules).expect("valid rules");
        RequestAcl::new(Authz::new("tok", Arc::new(Authorizer::new(rules, DefaultPolicy::Deny, false))))
    }

    fn register(node: &str, service: Option<&str>) -> Command {
        let mut req = RegisterRequest::default();
        req.node.node = node.into();
        req.node.address = "127.0.0.1".into();
        if let Some(s) = service {
            req.service =
                Some(crate::state::catalog::ServiceInstance { id: s.into(), service: s.into(), ..Default::default() });
        }
        Command::CatalogRegister(Box::new(req))
    }

    #[test]
    fn an_agent_token_with_node_write_registers_its_node_but_not_others_services() {
        let d = StateData::default();
        let acl = acl_with(r#"node "c1" { policy = "write" } service "web" { policy = "write" }"#);
        assert!(authorize(&acl, &d, &Command::Batch(vec![register("c1", None), register("c1", Some("web"))])).is_ok());
        let denied = authorize(&acl, &d, &Command::Batch(vec![register("c1", None), register("c1", Some("db"))]));
        assert!(matches!(&denied, Err(Error::PermissionDenied(m)) if m.contains("service:write")), "{denied:?}");
        assert!(matches!(authorize(&acl, &d, &register("c2", None)), Err(Error::PermissionDenied(_))));
    }

    #[test]
    fn deregistration_and_coordinates_need_node_write() {
        let d = StateData::default();
        let none = acl_with(r#"node "other" { policy = "write" }"#);
        let dereg = Command::CatalogDeregister(DeregisterRequest { node: "c1".into(), ..Default::default() });
        assert!(authorize(&none, &d, &dereg).is_err());
        let coords = Command::CoordinateBatchUpdate(vec![crate::state::coordinate::CoordinateUpdate {
            node: "c1".into(),
            segment: String::new(),
            coord: crate::coordinate::Coordinate::new(&Default::default()),
        }]);
        assert!(authorize(&none, &d, &coords).is_err());
        let ok = acl_with(r#"node "c1" { policy = "write" }"#);
        assert!(authorize(&ok, &d, &dereg).is_ok());
        assert!(authorize(&ok, &d, &coords).is_ok());
    }

    #[test]
    fn other_commands_are_refused_with_acls_on_and_allowed_with_them_off() {
        let d = StateData::default();
        let mgmt = RequestAcl::new(Authz::new("m", Arc::new(Authorizer::management())));
        assert!(authorize(&mgmt, &d, &Command::Noop).is_err());
        assert!(authorize(&RequestAcl::new(Authz::disabled()), &d, &Command::Noop).is_ok());
    }

    #[test]
    fn a_partly_denied_batch_keeps_its_allowed_commands_and_answers_every_position() {
        let verdicts = vec![None, Some(Error::PermissionDenied("Permission denied: no".into())), None];
        let batch = Command::Batch(vec![register("c1", None), register("c1", Some("db")), register("c1", Some("web"))]);
        let tracked =
            Command::Tracked { id: crate::state::command::RequestId { origin: 1, seq: 2 }, cmd: Box::new(batch) };
        let Command::Tracked { cmd, .. } = trim_batch(tracked, &verdicts) else { panic!("tracked") };
        assert!(matches!(&*cmd, Command::Batch(items) if items.len() == 2));
        let answer = splice(CommandResponse::Batch(vec![CommandResponse::Ok, CommandResponse::Bool(true)]), verdicts);
        let CommandResponse::Batch(answers) = answer else { panic!("batch") };
        assert!(matches!(answers[0], CommandResponse::Ok));
        assert!(matches!(&answers[1], CommandResponse::Failed(ApplyError::PermissionDenied(m)) if m.contains("no")));
        assert!(matches!(answers[2], CommandResponse::Bool(true)));
    }
}
