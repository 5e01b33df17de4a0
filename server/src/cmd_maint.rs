//! `consul-rs maint` and `consul-rs reload`: node/service maintenance mode and configuration
//! reload on the local agent (reference §1.3, §1.4, §7.1).

use anyhow::{anyhow, bail, Result};
use clap::{ArgAction, Args};
use serde_json::Value;

use crate::api::{escape, Client, ClientFlags};

/// The check ID of node maintenance.
const NODE_MAINT: &str = "_node_maintenance";
/// The check ID prefix of service maintenance (`_service_maintenance:<id>`).
const SERVICE_MAINT_PREFIX: &str = "_service_maintenance:";

/// `maint` flags.
#[derive(Debug, Args)]
pub(crate) struct MaintArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// Enter maintenance mode.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    enable: bool,
    /// Leave maintenance mode.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    disable: bool,
    /// A service ID: put this service, not the whole node, in maintenance.
    #[arg(long)]
    service: Option<String>,
    /// Why (stored as the maintenance check's notes); only with -enable.
    #[arg(long)]
    reason: Option<String>,
}

/// `reload` flags.
#[derive(Debug, Args)]
pub(crate) struct ReloadArgs {
    #[command(flatten)]
    client: ClientFlags,
}

/// Query pairs as [`Client::call`] takes them.
type QueryPairs = Vec<(&'static str, Option<String>)>;

/// What `maint` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MaintAction {
    /// List the maintenance checks.
    List,
    /// Enable or disable, for the node or one service.
    Toggle {
        /// `true` for -enable.
        enable: bool,
        /// The service ID, or `None` for the node.
        service: Option<String>,
        /// The reason (only with enable).
        reason: Option<String>,
    },
}

impl MaintArgs {
    /// Validates the flag combination the way Consul does.
    pub(crate) fn action(&self) -> Result<MaintAction> {
        if self.enable && self.disable {
            bail!("Error! Only one of -enable or -disable may be provided");
        }
        let reason = self.reason.clone().filter(|r| !r.is_empty());
        if !self.enable && reason.is_some() {
            bail!("Error! Reason may only be provided with -enable");
        }
        let service = self.service.clone().filter(|s| !s.is_empty());
        if !self.enable && !self.disable {
            if service.is_some() {
                bail!("Error! Service requires either -enable or -disable");
            }
            return Ok(MaintAction::List);
        }
        Ok(MaintAction::Toggle { enable: self.enable, service, reason })
    }
}

impl MaintAction {
    /// The endpoint and query of a toggle (`None` for a listing).
    pub(crate) fn request(&self) -> Option<(String, QueryPairs)> {
        let MaintAction::Toggle { enable, service, reason } = self else { return None };
        let path = match service {
            Some(id) => format!("/v1/agent/service/maintenance/{}", escape(id, false)),
            None => "/v1/agent/maintenance".to_string(),
        };
        let mut q = vec![("enable", Some(enable.to_string()))];
        if let Some(r) = reason {
            q.push(("reason", Some(r.clone())));
        }
        Some((path, q))
    }
}

/// The listing of maintenance checks from `/v1/agent/checks`: node first, then services by ID.
pub(crate) fn render_maint(node_name: &str, checks: &Value) -> String {
    let mut entries: Vec<&Value> = checks.as_object().map(|m| m.values().collect()).unwrap_or_default();
    let id = |c: &Value| c.get("CheckID").and_then(Value::as_str).unwrap_or_default().to_string();
    let text = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    entries.sort_by_key(|c| id(c));
    let mut out = String::new();
    for c in entries {
        let cid = id(c);
        if cid == NODE_MAINT {
            out.push_str(&format!("Node:\n  Name:   {node_name}\n  Reason: {}\n\n", text(c, "Notes")));
        } else if cid.starts_with(SERVICE_MAINT_PREFIX) {
            out.push_str(&format!("Service:\n  ID:     {}\n  Reason: {}\n\n", text(c, "ServiceID"), text(c, "Notes")));
        }
    }
    out
}

/// Runs `maint`.
pub(crate) async fn maint(a: MaintArgs) -> Result<()> {
    let action = a.action()?;
    let client = Client::new(&a.client)?;
    let Some((path, q)) = action.request() else {
        let agent = client
            .call("GET", "/v1/agent/self", &[], None)
            .await
            .map_err(|e| anyhow!("Error querying Consul agent: {e:#}"))?
            .json()?;
        let node = agent.pointer("/Config/NodeName").and_then(Value::as_str).unwrap_or_default().to_string();
        let checks = client
            .call("GET", "/v1/agent/checks", &[], None)
            .await
            .map_err(|e| anyhow!("Error getting checks: {e:#}"))?
            .json()?;
        print!("{}", render_maint(&node, &checks));
        return Ok(());
    };
    let MaintAction::Toggle { enable, service, .. } = &action else { return Ok(()) };
    let verb = if *enable { "enabling" } else { "disabling" };
    let state = if *enable { "enabled" } else { "disabled" };
    let what = if service.is_some() { "service" } else { "node" };
    client.call("PUT", &path, &q, None).await.map_err(|e| anyhow!("Error {verb} {what} maintenance: {e:#}"))?;
    match service {
        Some(id) => println!("Service maintenance is now {state} for \"{id}\""),
        None => println!("Node maintenance is now {state}"),
    }
    Ok(())
}

/// Runs `reload`.
pub(crate) async fn reload(a: ReloadArgs) -> Result<()> {
    let client = Client::new(&a.client)?;
    client.call("PUT", "/v1/agent/reload", &[], None).await.map_err(|e| anyhow!("Error reloading: {e:#}"))?;
    println!("Configuration reload triggered");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testserver::TestServer;
    use serde_json::json;

    fn args(line: &str) -> MaintArgs {
        match crate::tests::parse(&format!("maint {line}")) {
            Ok(crate::Cli { command: crate::Command::Maint(a) }) => a,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn flag_combinations() {
        assert_eq!(args("").action().expect("ok"), MaintAction::List);
        assert_eq!(
            args("-enable -reason=upgrading").action().expect("ok"),
            MaintAction::Toggle { enable: true, service: None, reason: Some("upgrading".into()) }
        );
        assert_eq!(
            args("-disable -service web-1").action().expect("ok"),
            MaintAction::Toggle { enable: false, service: Some("web-1".into()), reason: None }
        );
        assert!(args("-enable -disable").action().is_err());
        assert!(args("-disable -reason x").action().is_err());
        assert!(args("-service web").action().is_err());
    }

    #[test]
    fn toggle_requests() {
        let a = MaintAction::Toggle { enable: true, service: None, reason: Some("r r".into()) };
        assert_eq!(
            a.request(),
            Some((
                "/v1/agent/maintenance".to_string(),
                vec![("enable", Some("true".into())), ("reason", Some("r r".into()))]
            ))
        );
        let a = MaintAction::Toggle { enable: false, service: Some("a/b".into()), reason: None };
        assert_eq!(
            a.request(),
            Some(("/v1/agent/service/maintenance/a%2Fb".to_string(), vec![("enable", Some("false".into()))]))
        );
        assert_eq!(MaintAction::List.request(), None);
    }

    #[test]
    fn listing_shows_node_then_services() {
        let checks = json!({
            "_service_maintenance:web": {"CheckID": "_service_maintenance:web", "ServiceID": "web", "Notes": "deploy"},
            "serfHealth": {"CheckID": "serfHealth", "Notes": ""},
            "_node_maintenance": {"CheckID": "_node_maintenance", "Notes": "kernel"}
        });
        assert_eq!(
            render_maint("n1", &checks),
            "Node:\n  Name:   n1\n  Reason: kernel\n\nService:\n  ID:     web\n  Reason: deploy\n\n"
        );
        assert_eq!(render_maint("n1", &json!({})), "");
    }

    /// `PUT /v1/agent/maintenance?enable=true&reason=…`, `PUT /v1/agent/reload`.
    #[tokio::test]
    async fn maint_and_reload_requests() {
        let server = TestServer::start(vec![(200, String::new()), (200, String::new()), (200, String::new())]).await;
        let mut a = args("-enable -reason=patching");
        a.client.http_addr = Some(server.addr.clone());
        maint(a).await.expect("maint");
        let mut a = args("-disable -service=web");
        a.client.http_addr = Some(server.addr.clone());
        maint(a).await.expect("maint service");
        reload(ReloadArgs { client: ClientFlags { http_addr: Some(server.addr.clone()), ..ClientFlags::default() } })
            .await
            .expect("reload");
        let reqs = server.requests().await;
        let seen: Vec<(String, String)> = reqs.iter().map(|r| (r.method.clone(), r.target.clone())).collect();
        assert_eq!(
            seen,
            vec![
                ("PUT".to_string(), "/v1/agent/maintenance?enable=true&reason=patching".to_string()),
                ("PUT".to_string(), "/v1/agent/service/maintenance/web?enable=false".to_string()),
                ("PUT".to_string(), "/v1/agent/reload".to_string()),
            ]
        );
    }

    #[tokio::test]
    async fn maint_errors_name_the_operation() {
        let server = TestServer::start(vec![(404, "Unknown service ID \"nope\"".into())]).await;
        let mut a = args("-enable -service nope");
        a.client.http_addr = Some(server.addr.clone());
        let e = format!("{:#}", maint(a).await.expect_err("404"));
        assert!(e.contains("Error enabling service maintenance") && e.contains("Unknown service ID"), "{e}");
    }
}
