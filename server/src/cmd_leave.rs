//! `consul-rs leave` (`command/leave`): the agent leaves the pool gracefully and shuts down, and
//! `consul-rs force-leave [-prune] [-wan] node` (`command/forceleave`): a member that is not
//! coming back is marked `left` (or, with `-prune`, forgotten at once).

use anyhow::Result;
use clap::{ArgAction, Args};

use crate::api::{escape, Client, ClientFlags};

/// `leave` flags.
#[derive(Debug, Args)]
pub(crate) struct LeaveArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// Consul takes no arguments here; they are collected only to refuse them in its words.
    extra: Vec<String>,
}

/// `force-leave` flags and node name.
#[derive(Debug, Args)]
pub(crate) struct ForceLeaveArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// Remove the member from the member list at once instead of marking it left.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    prune: bool,
    /// Only from the WAN pool.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    wan: bool,
    /// The node name (exactly one).
    nodes: Vec<String>,
}

/// Runs `leave`; returns the exit code.
pub(crate) async fn leave(a: LeaveArgs) -> Result<u8> {
    if !a.extra.is_empty() {
        eprintln!("Error found unexpected args: [{}]\n\nUsage: consul-rs leave [options]", a.extra.join(" "));
        return Ok(1);
    }
    let client = Client::new(&a.client)?;
    if let Err(e) = client.call("PUT", "/v1/agent/leave", &[], None).await {
        eprintln!("Error leaving: {e:#}");
        return Ok(1);
    }
    println!("Graceful leave complete");
    Ok(0)
}

/// The request: `PUT /v1/agent/force-leave/<node>[?prune=1][&wan=1]`.
pub(crate) fn force_leave_request(node: &str, prune: bool, wan: bool) -> (String, Vec<(&'static str, Option<String>)>) {
    let mut query = vec![];
    if prune {
        query.push(("prune", Some("1".to_string())));
    }
    if wan {
        query.push(("wan", Some("1".to_string())));
    }
    (format!("/v1/agent/force-leave/{}", escape(node, false)), query)
}

/// Runs `force-leave`; returns the exit code. Success prints nothing, like Consul.
pub(crate) async fn force_leave(a: ForceLeaveArgs) -> Result<u8> {
    if a.nodes.len() != 1 {
        eprintln!(
            "A single node name must be specified to force leave.\n\nUsage: consul-rs force-leave [options] name"
        );
        return Ok(1);
    }
    let client = Client::new(&a.client)?;
    let (path, query) = force_leave_request(&a.nodes[0], a.prune, a.wan);
    if let Err(e) = client.call("PUT", &path, &query, None).await {
        eprintln!("Error force leaving: {e:#}");
        return Ok(1);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn force_leave_requests() {
        assert_eq!(force_leave_request("n1", false, false), ("/v1/agent/force-leave/n1".to_string(), vec![]));
        assert_eq!(
            force_leave_request("a b", true, true),
            (
                "/v1/agent/force-leave/a%20b".to_string(),
                vec![("prune", Some("1".to_string())), ("wan", Some("1".to_string()))]
            )
        );
    }

    #[tokio::test]
    async fn exit_codes_and_requests() {
        let server = crate::testserver::TestServer::start(vec![
            (200, String::new()),
            (200, String::new()),
            (404, "agent: No node found with name 'x'".into()),
        ])
        .await;
        let flag = format!("-http-addr={}", server.addr);
        let parse = |line: String| crate::tests::parse(&line).expect("parses").command;
        let crate::Command::Leave(l) = parse(format!("leave {flag}")) else { panic!("leave") };
        assert_eq!(leave(l).await.expect("runs"), 0);
        let crate::Command::Leave(l) = parse(format!("leave {flag} now")) else { panic!("leave") };
        assert_eq!(leave(l).await.expect("runs"), 1, "unexpected arguments");
        let crate::Command::ForceLeave(f) = parse(format!("force-leave {flag} -prune n1")) else { panic!("fl") };
        assert_eq!(force_leave(f).await.expect("runs"), 0);
        let crate::Command::ForceLeave(f) = parse(format!("force-leave {flag} x")) else { panic!("fl") };
        assert_eq!(force_leave(f).await.expect("runs"), 1);
        let crate::Command::ForceLeave(f) = parse(format!("force-leave {flag}")) else { panic!("fl") };
        assert_eq!(force_leave(f).await.expect("runs"), 1, "a node name is required");
        let seen: Vec<(String, String)> = server.requests().await.into_iter().map(|r| (r.method, r.target)).collect();
        assert_eq!(
            seen,
            vec![
                ("PUT".to_string(), "/v1/agent/leave".to_string()),
                ("PUT".to_string(), "/v1/agent/force-leave/n1?prune=1".to_string()),
                ("PUT".to_string(), "/v1/agent/force-leave/x".to_string()),
            ]
        );
    }
}
