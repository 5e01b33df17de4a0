//! `consul-rs keyring -list | -list-primary | -install K | -use K | -remove K`: gossip encryption
//! key rotation through `/v1/operator/keyring` (`command/keyring`).
//!
//! Exactly one operation per run. Progress lines go to stdout with Consul's `==> ` prefix;
//! `-list` then prints one block per pool:
//!
//! ```text
//! ==> Gathering installed encryption keys...
//!
//! dc1 (LAN):
//!   <key> [3/3]
//! ```
//!
//! Exit 0 when every node answered without error, 1 otherwise (the agent's answer is then an
//! error, printed as `error: …`).

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use clap::{ArgAction, Args};
use serde::Deserialize;

use crate::api::{Client, ClientFlags};

/// Largest `-relay-factor` (Consul's limit).
const MAX_RELAY_FACTOR: i64 = 5;

/// `keyring` flags.
#[derive(Debug, Args)]
pub(crate) struct KeyringArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// List every installed key and how many nodes have it.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    list: bool,
    /// List the primary key of each pool and how many nodes use it.
    #[arg(long = "list-primary", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    list_primary: bool,
    /// Install a new key on every member.
    #[arg(long, value_name = "KEY")]
    install: Option<String>,
    /// Make an installed key the primary (encrypting) key.
    #[arg(long = "use", value_name = "KEY")]
    use_key: Option<String>,
    /// Remove a key that is not primary.
    #[arg(long, value_name = "KEY")]
    remove: Option<String>,
    /// Relay each node's answer through this many other nodes (0 to 5).
    #[arg(long = "relay-factor", default_value = "0", value_name = "N", allow_negative_numbers = true)]
    relay_factor: i64,
    /// With -list: ask only this datacenter's servers.
    #[arg(long = "local-only", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    local_only: bool,
}

/// The one operation asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// `-list`.
    List,
    /// `-list-primary`.
    ListPrimary,
    /// `-install K`.
    Install(String),
    /// `-use K`.
    Use(String),
    /// `-remove K`.
    Remove(String),
}

/// A refusal of the command line, printed as is with exit 1.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Usage(pub(crate) String);

const USAGE: &str = "Usage: consul-rs keyring [options]\n\n  \
    Manages the gossip encryption keys. Give exactly one of -list, -list-primary,\n  \
    -install=<key>, -use=<key> or -remove=<key>.";

impl KeyringArgs {
    /// Validates the flags as Consul does: one action, relay factor 0..=5, `-local-only` only
    /// with a listing.
    pub(crate) fn action(&self) -> Result<Action, Usage> {
        let given = |v: &Option<String>| v.clone().filter(|k| !k.is_empty());
        let mut actions = Vec::new();
        if self.list {
            actions.push(Action::List);
        }
        if self.list_primary {
            actions.push(Action::ListPrimary);
        }
        if let Some(k) = given(&self.install) {
            actions.push(Action::Install(k));
        }
        if let Some(k) = given(&self.use_key) {
            actions.push(Action::Use(k));
        }
        if let Some(k) = given(&self.remove) {
            actions.push(Action::Remove(k));
        }
        if actions.len() > 1 {
            return Err(Usage("Only a single action is allowed".into()));
        }
        let Some(action) = actions.pop() else {
            return Err(Usage(USAGE.into()));
        };
        if !(0..=MAX_RELAY_FACTOR).contains(&self.relay_factor) {
            return Err(Usage("Error parsing relay factor: Relay factor must be in range: [0, 5]".into()));
        }
        if self.local_only && !matches!(action, Action::List | Action::ListPrimary) {
            return Err(Usage("Error validating local-only: local-only can only be set for list requests".into()));
        }
        Ok(action)
    }
}

/// One pool's answer (Consul's `KeyringResponse`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct PoolKeys {
    #[serde(rename = "WAN")]
    pub(crate) wan: bool,
    pub(crate) datacenter: String,
    pub(crate) segment: String,
    pub(crate) partition: String,
    pub(crate) keys: BTreeMap<String, u64>,
    pub(crate) primary_keys: BTreeMap<String, u64>,
    pub(crate) num_nodes: u64,
    pub(crate) messages: BTreeMap<String, String>,
}

/// `dc1 (LAN):`, `WAN:`, with ` [segment]` or ` [partition: p]` when not the default.
fn pool_name(p: &PoolKeys) -> String {
    let pool = if p.wan { "WAN".to_string() } else { format!("{} (LAN)", p.datacenter) };
    let suffix = if !p.segment.is_empty() {
        format!(" [{}]", p.segment)
    } else if !(p.partition.is_empty() || p.partition == "default") {
        format!(" [partition: {}]", p.partition)
    } else {
        String::new()
    };
    format!("{pool}{suffix}:")
}

/// One pool's block: a blank line, the pool name, each node's error message, then each key with
/// `[nodes having it/nodes]`. Keys are sorted (Consul's order is a Go map's, i.e. random).
pub(crate) fn render_pool(p: &PoolKeys, primary_only: bool) -> String {
    let mut out = format!("\n{}\n", pool_name(p));
    for (from, msg) in &p.messages {
        out.push_str(&format!("  ===> {from}: {msg}\n"));
    }
    let keys = if primary_only { &p.primary_keys } else { &p.keys };
    for (key, n) in keys {
        out.push_str(&format!("  {key} [{n}/{}]\n", p.num_nodes));
    }
    out
}

/// Query pairs as [`Client::call`] takes them.
type QueryPairs = Vec<(&'static str, Option<String>)>;

/// The HTTP request for an action: method, query and JSON body.
pub(crate) fn request(
    action: &Action,
    relay_factor: i64,
    local_only: bool,
) -> (&'static str, QueryPairs, Option<Vec<u8>>) {
    let mut query = Vec::new();
    if relay_factor > 0 {
        query.push(("relay-factor", Some(relay_factor.to_string())));
    }
    let body = |k: &str| Some(serde_json::json!({ "Key": k }).to_string().into_bytes());
    match action {
        Action::List | Action::ListPrimary => {
            if local_only {
                query.push(("local-only", Some("true".into())));
            }
            ("GET", query, None)
        }
        Action::Install(k) => ("POST", query, body(k)),
        Action::Use(k) => ("PUT", query, body(k)),
        Action::Remove(k) => ("DELETE", query, body(k)),
    }
}

/// Runs `keyring`; returns the exit code.
pub(crate) async fn run(a: KeyringArgs) -> Result<u8> {
    let action = match a.action() {
        Ok(action) => action,
        Err(Usage(msg)) => {
            eprintln!("{msg}");
            return Ok(1);
        }
    };
    let client = Client::new(&a.client)?;
    println!(
        "==> {}",
        match action {
            Action::List => "Gathering installed encryption keys...",
            Action::ListPrimary => "Gathering installed primary encryption keys...",
            Action::Install(_) => "Installing new gossip encryption key...",
            Action::Use(_) => "Changing primary gossip encryption key...",
            Action::Remove(_) => "Removing gossip encryption key...",
        }
    );
    let (method, query, body) = request(&action, a.relay_factor, a.local_only);
    let resp = match client.call(method, "/v1/operator/keyring", &query, body).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(1);
        }
    };
    if matches!(action, Action::List | Action::ListPrimary) {
        let pools: Vec<PoolKeys> =
            serde_json::from_slice(&resp.body).context("the agent returned invalid keyring JSON")?;
        for p in &pools {
            print!("{}", render_pool(p, action == Action::ListPrimary));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> KeyringArgs {
        match crate::tests::parse(&format!("keyring {line}")) {
            Ok(crate::Cli { command: crate::Command::Keyring(a) }) => *a,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn one_action_exactly() {
        assert_eq!(args("-list").action(), Ok(Action::List));
        assert_eq!(args("-list-primary").action(), Ok(Action::ListPrimary));
        assert_eq!(args("-install K1").action(), Ok(Action::Install("K1".into())));
        assert_eq!(args("-use=K1").action(), Ok(Action::Use("K1".into())));
        assert_eq!(args("-remove K1").action(), Ok(Action::Remove("K1".into())));
        assert_eq!(args("-list -install K").action(), Err(Usage("Only a single action is allowed".into())));
        assert_eq!(args("-use K -remove J").action(), Err(Usage("Only a single action is allowed".into())));
        let Err(Usage(none)) = args("").action() else { panic!("no action") };
        assert!(none.starts_with("Usage: consul-rs keyring"), "{none}");
        // An empty key is no action, as in Consul.
        assert!(args("-install=").action().is_err());
    }

    #[test]
    fn relay_factor_and_local_only() {
        assert_eq!(args("-list -relay-factor 5").action(), Ok(Action::List));
        let Err(Usage(m)) = args("-list -relay-factor 6").action() else { panic!("6") };
        assert!(m.contains("[0, 5]"), "{m}");
        assert!(args("-list -relay-factor=-1").action().is_err());
        assert_eq!(args("-list -local-only").action(), Ok(Action::List));
        let Err(Usage(m)) = args("-install K -local-only").action() else { panic!("local-only") };
        assert!(m.contains("local-only can only be set for list requests"), "{m}");
    }

    #[test]
    fn requests_per_action() {
        let (m, q, b) = request(&Action::List, 0, false);
        assert_eq!((m, q, b), ("GET", vec![], None));
        let (m, q, _) = request(&Action::ListPrimary, 2, true);
        assert_eq!(m, "GET");
        assert_eq!(q, vec![("relay-factor", Some("2".into())), ("local-only", Some("true".into()))]);
        let (m, _, b) = request(&Action::Install("K".into()), 0, false);
        assert_eq!((m, b), ("POST", Some(br#"{"Key":"K"}"#.to_vec())));
        assert_eq!(request(&Action::Use("K".into()), 0, false).0, "PUT");
        assert_eq!(request(&Action::Remove("K".into()), 0, false).0, "DELETE");
    }

    #[test]
    fn list_blocks() {
        let pools: Vec<PoolKeys> = serde_json::from_str(
            r#"[{"WAN":false,"Datacenter":"dc1","Segment":"","Keys":{"bbb=":3,"aaa=":1},
                 "PrimaryKeys":{"bbb=":3},"NumNodes":3,"Messages":{}},
                {"WAN":true,"Datacenter":"dc1","Segment":"","Keys":{"bbb=":1},"NumNodes":1,
                 "Messages":{"n2":"no answer"}},
                {"WAN":false,"Datacenter":"dc1","Segment":"alpha","Keys":{},"NumNodes":0}]"#,
        )
        .expect("json");
        assert_eq!(render_pool(&pools[0], false), "\ndc1 (LAN):\n  aaa= [1/3]\n  bbb= [3/3]\n");
        assert_eq!(render_pool(&pools[0], true), "\ndc1 (LAN):\n  bbb= [3/3]\n");
        assert_eq!(render_pool(&pools[1], false), "\nWAN:\n  ===> n2: no answer\n  bbb= [1/1]\n");
        assert_eq!(render_pool(&pools[2], false), "\ndc1 (LAN) [alpha]:\n");
        let p = PoolKeys { datacenter: "dc1".into(), partition: "team".into(), ..PoolKeys::default() };
        assert_eq!(render_pool(&p, false), "\ndc1 (LAN) [partition: team]:\n");
    }

    /// Against canned answers: the methods and bodies sent, and exit 1 on an agent error.
    #[tokio::test]
    async fn runs_against_an_agent() {
        let list = r#"[{"WAN":false,"Datacenter":"dc1","Segment":"","Keys":{"k=":1},"NumNodes":1}]"#;
        let server = crate::testserver::TestServer::start(vec![
            (200, list.into()),
            (200, String::new()),
            (500, "removing the primary key is not allowed".into()),
        ])
        .await;
        let flag = format!("-http-addr={}", server.addr);
        assert_eq!(run(args(&format!("{flag} -list"))).await.expect("runs"), 0);
        assert_eq!(run(args(&format!("{flag} -install k2="))).await.expect("runs"), 0);
        assert_eq!(run(args(&format!("{flag} -remove k="))).await.expect("runs"), 1);
        assert_eq!(run(args(&format!("{flag} -list -use k="))).await.expect("runs"), 1);
        let seen: Vec<(String, String, serde_json::Value)> =
            server.requests().await.into_iter().map(|r| (r.method.clone(), r.target.clone(), r.json())).collect();
        assert_eq!(
            seen,
            vec![
                ("GET".into(), "/v1/operator/keyring".into(), serde_json::Value::Null),
                ("POST".into(), "/v1/operator/keyring".into(), serde_json::json!({"Key": "k2="})),
                ("DELETE".into(), "/v1/operator/keyring".into(), serde_json::json!({"Key": "k="})),
            ]
        );
    }
}
