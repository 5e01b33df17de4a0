//! `consul-rs operator raft list-peers|remove-peer|transfer-leader`, `operator autopilot
//! get-config|set-config|state` and `operator usage instances`.

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{ArgAction, Args, Subcommand};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api::{Client, ClientFlags};

/// `operator` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum OperatorCommand {
    /// Raft cluster membership.
    #[command(subcommand)]
    Raft(RaftCommand),
    /// Autopilot: server health, promotion and dead-server cleanup.
    #[command(subcommand)]
    Autopilot(AutopilotCommand),
    /// Usage counts.
    #[command(subcommand)]
    Usage(UsageCommand),
}

/// `operator autopilot` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AutopilotCommand {
    /// Show the autopilot configuration.
    GetConfig(StaleReadArgs),
    /// Change the autopilot configuration (check-and-set on the one read).
    SetConfig(SetConfigArgs),
    /// Show autopilot's view of the servers.
    State(StateArgs),
}

/// `operator usage` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum UsageCommand {
    /// Show service instance counts.
    Instances(UsageArgs),
}

/// Flags of the read-only commands that may be answered by any server (`operator autopilot
/// get-config`, `operator raft list-peers`): the client flags and `-stale`.
#[derive(Debug, Args)]
pub(crate) struct StaleReadArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// Let any server answer, even without a leader.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    stale: bool,
}

/// `operator autopilot set-config` flags; only those given change.
#[derive(Debug, Args)]
pub(crate) struct SetConfigArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// Remove failed servers from the Raft configuration.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    cleanup_dead_servers: Option<bool>,
    /// Most log entries a healthy server may trail the leader by.
    #[arg(long)]
    max_trailing_logs: Option<u64>,
    /// Fewest voters dead-server cleanup leaves.
    #[arg(long)]
    min_quorum: Option<u64>,
    /// Longest time a healthy server goes without leader contact (Go duration).
    #[arg(long)]
    last_contact_threshold: Option<String>,
    /// How long a new server must be healthy before it votes (Go duration).
    #[arg(long)]
    server_stabilization_time: Option<String>,
    /// Enterprise: stored only.
    #[arg(long)]
    redundancy_zone_tag: Option<String>,
    /// Enterprise: stored only.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    disable_upgrade_migration: Option<bool>,
    /// Enterprise: stored only.
    #[arg(long)]
    upgrade_version_tag: Option<String>,
}

/// `operator autopilot state` flags.
#[derive(Debug, Args)]
pub(crate) struct StateArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// Output format: pretty or json.
    #[arg(long, default_value = "pretty")]
    format: String,
}

/// `operator usage instances` flags.
#[derive(Debug, Args)]
pub(crate) struct UsageArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// Accepted for compatibility: this agent's datacenter is the only one.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    all_datacenters: bool,
}

/// `operator raft transfer-leader` flags.
#[derive(Debug, Args)]
pub(crate) struct TransferLeaderArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// The Raft ID of the server to hand leadership to (default: any up-to-date voter).
    #[arg(long)]
    id: Option<String>,
}

/// `operator raft` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum RaftCommand {
    /// Show the Raft peer set.
    ListPeers(StaleReadArgs),
    /// Remove a server from the Raft peer set.
    RemovePeer(RemovePeerArgs),
    /// Hand Raft leadership to another voter.
    TransferLeader(TransferLeaderArgs),
}

/// `operator raft remove-peer` flags.
#[derive(Debug, Args)]
pub(crate) struct RemovePeerArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// The server's Raft ID.
    #[arg(long)]
    id: Option<String>,
    /// The server's Raft address (`ip:port`).
    #[arg(long)]
    address: Option<String>,
}

/// Runs an `operator` subcommand.
pub(crate) async fn run(cmd: OperatorCommand) -> Result<()> {
    match cmd {
        OperatorCommand::Raft(RaftCommand::ListPeers(a)) => list_peers(a).await,
        OperatorCommand::Raft(RaftCommand::RemovePeer(a)) => remove_peer(a).await,
        OperatorCommand::Raft(RaftCommand::TransferLeader(a)) => transfer_leader(a).await,
        OperatorCommand::Autopilot(AutopilotCommand::GetConfig(a)) => get_config(a).await,
        OperatorCommand::Autopilot(AutopilotCommand::SetConfig(a)) => set_config(a).await,
        OperatorCommand::Autopilot(AutopilotCommand::State(a)) => autopilot_state(a).await,
        OperatorCommand::Usage(UsageCommand::Instances(a)) => usage_instances(a).await,
    }
}

async fn transfer_leader(a: TransferLeaderArgs) -> Result<()> {
    let client = Client::new(&a.client)?;
    let q: Vec<(&str, Option<String>)> = a.id.iter().map(|id| ("id", Some(id.clone()))).collect();
    let resp = client
        .call("POST", "/v1/operator/raft/transfer-leader", &q, None)
        .await
        .map_err(|e| anyhow!("Error transfering leadership: Failed to transfer leadership {e:#}"))?;
    let v: Value = serde_json::from_slice(&resp.body).context("the agent returned invalid JSON")?;
    if v["Success"] != Value::Bool(true) {
        bail!("Error transfering leadership: Failed to transfer leadership");
    }
    println!("Success");
    Ok(())
}

async fn read_config(client: &Client, stale: bool) -> Result<Map<String, Value>> {
    let q: Vec<(&str, Option<String>)> = if stale { vec![("stale", None)] } else { Vec::new() };
    let resp = client
        .call("GET", "/v1/operator/autopilot/configuration", &q, None)
        .await
        .map_err(|e| anyhow!("Error querying Autopilot configuration: {e:#}"))?;
    match serde_json::from_slice(&resp.body).context("the agent returned invalid JSON")? {
        Value::Object(m) => Ok(m),
        other => bail!("Error querying Autopilot configuration: unexpected answer {other}"),
    }
}

/// `get-config` output: `Key = value` lines in Consul's order (strings quoted).
fn render_config(c: &Map<String, Value>) -> String {
    let text = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let plain = |k: &str| c.get(k).map(Value::to_string).unwrap_or_default();
    format!(
        "CleanupDeadServers = {}\nLastContactThreshold = {}\nMaxTrailingLogs = {}\nMinQuorum = {}\n\
         ServerStabilizationTime = {}\nRedundancyZoneTag = {:?}\nDisableUpgradeMigration = {}\n\
         UpgradeVersionTag = {:?}\n",
        plain("CleanupDeadServers"),
        text("LastContactThreshold"),
        plain("MaxTrailingLogs"),
        plain("MinQuorum"),
        text("ServerStabilizationTime"),
        text("RedundancyZoneTag"),
        plain("DisableUpgradeMigration"),
        text("UpgradeVersionTag"),
    )
}

async fn get_config(a: StaleReadArgs) -> Result<()> {
    let client = Client::new(&a.client)?;
    print!("{}", render_config(&read_config(&client, a.stale).await?));
    Ok(())
}

async fn set_config(a: SetConfigArgs) -> Result<()> {
    let client = Client::new(&a.client)?;
    let mut c = read_config(&client, false).await?;
    let duration = |name: &str, s: &str| -> Result<Value> {
        consul_core::duration::parse_go_duration(s).map_err(|e| anyhow!("Error parsing {name}: {e}"))?;
        Ok(Value::String(s.to_string()))
    };
    if let Some(v) = a.cleanup_dead_servers {
        c.insert("CleanupDeadServers".into(), Value::Bool(v));
    }
    if let Some(v) = a.max_trailing_logs {
        c.insert("MaxTrailingLogs".into(), v.into());
    }
    if let Some(v) = a.min_quorum {
        c.insert("MinQuorum".into(), v.into());
    }
    if let Some(v) = &a.last_contact_threshold {
        c.insert("LastContactThreshold".into(), duration("-last-contact-threshold", v)?);
    }
    if let Some(v) = &a.server_stabilization_time {
        c.insert("ServerStabilizationTime".into(), duration("-server-stabilization-time", v)?);
    }
    if let Some(v) = &a.redundancy_zone_tag {
        c.insert("RedundancyZoneTag".into(), Value::String(v.clone()));
    }
    if let Some(v) = a.disable_upgrade_migration {
        c.insert("DisableUpgradeMigration".into(), Value::Bool(v));
    }
    if let Some(v) = &a.upgrade_version_tag {
        c.insert("UpgradeVersionTag".into(), Value::String(v.clone()));
    }
    let cas = c.get("ModifyIndex").and_then(Value::as_u64).unwrap_or(0);
    let body = serde_json::to_vec(&c)?;
    let resp = client
        .call("PUT", "/v1/operator/autopilot/configuration", &[("cas", Some(cas.to_string()))], Some(body))
        .await
        .map_err(|e| anyhow!("Error setting Autopilot configuration: {e:#}"))?;
    if String::from_utf8_lossy(&resp.body).contains("true") {
        println!("Configuration updated!");
        Ok(())
    } else {
        bail!("Configuration could not be atomically updated, please try again")
    }
}

/// `state -format=pretty`: the cluster summary, then each server.
fn render_state(s: &Value) -> String {
    let mut out = String::new();
    let field = |v: &Value, k: &str| match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    out.push_str(&format!("Healthy:                      {}\n", field(s, "Healthy")));
    out.push_str(&format!("Failure Tolerance:            {}\n", field(s, "FailureTolerance")));
    out.push_str(&format!("Optimistic Failure Tolerance: {}\n", field(s, "OptimisticFailureTolerance")));
    out.push_str(&format!("Leader:                       {}\n", field(s, "Leader")));
    out.push_str("Voters:\n");
    for v in s["Voters"].as_array().into_iter().flatten() {
        out.push_str(&format!("   {}\n", v.as_str().unwrap_or_default()));
    }
    out.push_str("\nServers:\n");
    if let Some(servers) = s["Servers"].as_object() {
        for (id, srv) in servers {
            out.push_str(&format!("   {id}\n"));
            for (label, key) in [
                ("Name", "Name"),
                ("Address", "Address"),
                ("Version", "Version"),
                ("Status", "Status"),
                ("Node Type", "NodeType"),
                ("Node Status", "NodeStatus"),
                ("Healthy", "Healthy"),
                ("Last Contact", "LastContact"),
                ("Last Term", "LastTerm"),
                ("Last Index", "LastIndex"),
                ("Stable Since", "StableSince"),
            ] {
                out.push_str(&format!("      {:<14}{}\n", format!("{label}:"), field(srv, key)));
            }
        }
    }
    out
}

async fn autopilot_state(a: StateArgs) -> Result<()> {
    let client = Client::new(&a.client)?;
    let resp = client
        .call("GET", "/v1/operator/autopilot/state", &[], None)
        .await
        .map_err(|e| anyhow!("Error querying Autopilot state: {e:#}"))?;
    let state: Value = serde_json::from_slice(&resp.body).context("the agent returned invalid JSON")?;
    match a.format.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&state)?),
        "pretty" => print!("{}", render_state(&state)),
        other => bail!("Invalid format: {other}"),
    }
    Ok(())
}

/// `usage instances` output from `/v1/operator/usage`.
fn render_usage(usage: &Map<String, Value>) -> String {
    let count = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    let mut out = String::new();
    let billable_total: u64 = usage.values().map(|u| count(u, "BillableServiceInstances")).sum();
    out.push_str(&format!("Billable Service Instances Total: {billable_total}\n"));
    for (dc, u) in usage {
        out.push_str(&format!("{dc} Billable Service Instances: {}\n", count(u, "BillableServiceInstances")));
    }
    out.push_str("\nBillable Services\n");
    let mut rows = vec![["Datacenter".to_string(), "Services".to_string(), "Service instances".to_string()]];
    for (dc, u) in usage {
        rows.push([dc.clone(), count(u, "Services").to_string(), count(u, "ServiceInstances").to_string()]);
    }
    out.push_str(&columnize(&rows));
    let connect = |u: &Value| -> u64 {
        u["ConnectServiceInstances"].as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
    };
    let connect_total: u64 = usage.values().map(connect).sum();
    out.push_str(&format!("\nConnect Service Instances Total: {connect_total}\n"));
    for (dc, u) in usage {
        out.push_str(&format!("{dc} Connect Service Instances: {}\n", connect(u)));
    }
    out.push_str("\nConnect Services\n");
    let mut rows = vec![["Type".to_string(), "Service instances".to_string()]];
    let mut kinds: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for u in usage.values() {
        for (k, n) in u["ConnectServiceInstances"].as_object().into_iter().flatten() {
            *kinds.entry(k.clone()).or_default() += n.as_u64().unwrap_or(0);
        }
    }
    for (k, n) in kinds {
        rows.push([k, n.to_string()]);
    }
    out.push_str(&columnize(&rows));
    out
}

async fn usage_instances(a: UsageArgs) -> Result<()> {
    let _ = a.all_datacenters;
    let client = Client::new(&a.client)?;
    let resp = client
        .call("GET", "/v1/operator/usage", &[], None)
        .await
        .map_err(|e| anyhow!("Error fetching usage information: {e:#}"))?;
    let v: Value = serde_json::from_slice(&resp.body).context("the agent returned invalid JSON")?;
    let usage = v["Usage"].as_object().cloned().unwrap_or_default();
    print!("{}", render_usage(&usage));
    Ok(())
}

/// `GET /v1/operator/raft/configuration`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RaftConfiguration {
    #[serde(default)]
    servers: Vec<RaftServer>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RaftServer {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(default)]
    node: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    leader: bool,
    #[serde(default)]
    voter: bool,
    #[serde(default)]
    protocol_version: String,
}

async fn list_peers(a: StaleReadArgs) -> Result<()> {
    let client = Client::new(&a.client)?;
    let q: Vec<(&str, Option<String>)> = if a.stale { vec![("stale", None)] } else { Vec::new() };
    let resp = client
        .call("GET", "/v1/operator/raft/configuration", &q, None)
        .await
        .map_err(|e| anyhow!("Error getting peers: {e:#}"))?;
    let conf: RaftConfiguration = serde_json::from_slice(&resp.body).context("the agent returned invalid JSON")?;
    print!("{}", render_peers(&conf.servers));
    Ok(())
}

/// The list-peers table: columns left-aligned, two spaces apart, like Consul's `columnize`.
fn render_peers(servers: &[RaftServer]) -> String {
    let mut rows: Vec<[String; 6]> =
        vec![["Node".into(), "ID".into(), "Address".into(), "State".into(), "Voter".into(), "RaftProtocol".into()]];
    for s in servers {
        let proto = if s.protocol_version.is_empty() { "<=1".to_string() } else { s.protocol_version.clone() };
        rows.push([
            s.node.clone(),
            s.id.clone(),
            s.address.clone(),
            if s.leader { "leader" } else { "follower" }.to_string(),
            s.voter.to_string(),
            proto,
        ]);
    }
    columnize(&rows)
}

/// Left-aligns each column to its widest cell, two spaces between columns, no trailing spaces.
pub(crate) fn columnize<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < N {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

async fn remove_peer(a: RemovePeerArgs) -> Result<()> {
    let (param, value) = match (&a.id, &a.address) {
        (Some(_), Some(_)) => bail!("Error removing peer: cannot give both -id and -address"),
        (Some(id), None) => ("id", id.clone()),
        (None, Some(addr)) => ("address", addr.clone()),
        (None, None) => bail!("Error removing peer: an -id or -address is required"),
    };
    let client = Client::new(&a.client)?;
    client
        .call("DELETE", "/v1/operator/raft/peer", &[(param, Some(value.clone()))], None)
        .await
        .map_err(|e| anyhow!("Error removing peer: {e:#}"))?;
    println!("Removed peer with {param} {value:?}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autopilot_config_lines() {
        let c: Map<String, Value> = serde_json::from_str(
            r#"{"CleanupDeadServers":true,"LastContactThreshold":"200ms","MaxTrailingLogs":250,"MinQuorum":0,
                "ServerStabilizationTime":"10s","RedundancyZoneTag":"","DisableUpgradeMigration":false,
                "UpgradeVersionTag":"","CreateIndex":4,"ModifyIndex":4}"#,
        )
        .expect("json");
        assert_eq!(
            render_config(&c),
            "CleanupDeadServers = true\nLastContactThreshold = 200ms\nMaxTrailingLogs = 250\nMinQuorum = 0\n\
             ServerStabilizationTime = 10s\nRedundancyZoneTag = \"\"\nDisableUpgradeMigration = false\n\
             UpgradeVersionTag = \"\"\n"
        );
    }

    #[test]
    fn usage_tables() {
        let u: Map<String, Value> = serde_json::from_str(
            r#"{"dc1":{"Services":2,"ServiceInstances":3,"BillableServiceInstances":2,
                "ConnectServiceInstances":{"connect-proxy":1,"mesh-gateway":0}}}"#,
        )
        .expect("json");
        let out = render_usage(&u);
        assert!(out.starts_with("Billable Service Instances Total: 2\ndc1 Billable Service Instances: 2\n"), "{out}");
        assert!(out.contains("dc1         2         3\n"), "{out}");
        assert!(out.contains("Connect Service Instances Total: 1\n"), "{out}");
        assert!(out.contains("connect-proxy  1\n"), "{out}");
    }

    #[test]
    fn peers_table() {
        let conf: RaftConfiguration = serde_json::from_str(
            r#"{"Servers":[
                {"ID":"id-1","Node":"n1","Address":"127.0.0.1:8300","Leader":true,"Voter":true,"ProtocolVersion":"3","LastIndex":10},
                {"ID":"id-22","Node":"node-2","Address":"127.0.0.2:8300","Leader":false,"Voter":false,"ProtocolVersion":"3","LastIndex":9}
            ],"Index":10}"#,
        )
        .expect("json");
        assert_eq!(
            render_peers(&conf.servers),
            "Node    ID     Address         State     Voter  RaftProtocol\n\
             n1      id-1   127.0.0.1:8300  leader    true   3\n\
             node-2  id-22  127.0.0.2:8300  follower  false  3\n"
        );
    }
}
