//! `consul-rs operator raft list-peers|remove-peer`.

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{ArgAction, Args, Subcommand};
use serde::Deserialize;

use crate::api::{Client, ClientFlags};

/// `operator` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum OperatorCommand {
    /// Raft cluster membership.
    #[command(subcommand)]
    Raft(RaftCommand),
}

/// `operator raft` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum RaftCommand {
    /// Show the Raft peer set.
    ListPeers(ListPeersArgs),
    /// Remove a server from the Raft peer set.
    RemovePeer(RemovePeerArgs),
}

/// `operator raft list-peers` flags.
#[derive(Debug, Args)]
pub(crate) struct ListPeersArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// Let any server answer, even without a leader.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    stale: bool,
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
    }
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

async fn list_peers(a: ListPeersArgs) -> Result<()> {
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
