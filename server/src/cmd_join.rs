//! `consul-rs join [-wan] address...`: asks the agent to join the pool of the agents at these
//! addresses (`command/join`). Each address is tried in turn; the command succeeds when at least
//! one answered.

use anyhow::Result;
use clap::{ArgAction, Args};

use crate::api::{escape, Client, ClientFlags};

/// `join` flags and addresses.
#[derive(Debug, Args)]
pub(crate) struct JoinArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// Join the WAN pool (servers only).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    wan: bool,
    /// Addresses of agents already in the cluster (`host` or `host:port`, the serf_lan port).
    addresses: Vec<String>,
}

/// The request for one address: `PUT /v1/agent/join/<address>[?wan=1]`.
pub(crate) fn join_request(address: &str, wan: bool) -> (String, Vec<(&'static str, Option<String>)>) {
    let query = if wan { vec![("wan", Some("1".to_string()))] } else { vec![] };
    (format!("/v1/agent/join/{}", escape(address, false)), query)
}

/// Runs `join`; returns the exit code. Per-address failures go to stderr in Consul's words.
pub(crate) async fn run(a: JoinArgs) -> Result<u8> {
    if a.addresses.is_empty() {
        eprintln!("At least one address to join must be specified.\n\nUsage: consul-rs join [options] address ...");
        return Ok(1);
    }
    let client = Client::new(&a.client)?;
    let mut joined = 0usize;
    for addr in &a.addresses {
        let (path, query) = join_request(addr, a.wan);
        match client.call("PUT", &path, &query, None).await {
            Ok(_) => joined += 1,
            Err(e) => eprintln!("Error joining address '{addr}': {e:#}"),
        }
    }
    if joined == 0 {
        eprintln!("Failed to join any nodes.");
        return Ok(1);
    }
    println!("Successfully joined cluster by contacting {joined} nodes.");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> JoinArgs {
        match crate::tests::parse(&format!("join {line}")) {
            Ok(crate::Cli { command: crate::Command::Join(a) }) => a,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn requests() {
        assert_eq!(join_request("127.0.0.1:8301", false), ("/v1/agent/join/127.0.0.1%3A8301".to_string(), vec![]));
        assert_eq!(join_request("a", true).1, vec![("wan", Some("1".to_string()))]);
    }

    #[test]
    fn flags_then_addresses() {
        let a = args("-wan 10.0.0.1 10.0.0.2:8302");
        assert!(a.wan);
        assert_eq!(a.addresses, vec!["10.0.0.1", "10.0.0.2:8302"]);
    }

    /// One of two addresses answering is a success; none is exit 1; no address at all is exit 1
    /// without a request.
    #[tokio::test]
    async fn counts_the_addresses_that_answered() {
        let server = crate::testserver::TestServer::start(vec![
            (500, "dial tcp: connection refused".into()),
            (200, String::new()),
            (500, "no".into()),
        ])
        .await;
        let flag = format!("-http-addr={}", server.addr);
        assert_eq!(run(args(&format!("{flag} bad good"))).await.expect("runs"), 0);
        assert_eq!(run(args(&format!("{flag} bad"))).await.expect("runs"), 1);
        assert_eq!(run(args(&flag)).await.expect("runs"), 1);
        let seen: Vec<(String, String)> = server.requests().await.into_iter().map(|r| (r.method, r.target)).collect();
        assert_eq!(
            seen,
            vec![
                ("PUT".to_string(), "/v1/agent/join/bad".to_string()),
                ("PUT".to_string(), "/v1/agent/join/good".to_string()),
                ("PUT".to_string(), "/v1/agent/join/bad".to_string()),
            ]
        );
    }
}
