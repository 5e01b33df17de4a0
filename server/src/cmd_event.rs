//! `consul-rs event -name=N [-node=re] [-service=re] [-tag=re] [payload]` (`command/event`):
//! fires a user event across the datacenter and prints `Event ID: <id>`.
//!
//! Everything Consul checks before sending is checked here too (a name, valid regular
//! expressions, `-tag` only with `-service`, at most one payload word), plus the payload size:
//! gossip carries at most 512 bytes, and saying so beats a bare 413 from the agent.

use anyhow::{anyhow, Context as _, Result};
use clap::Args;
use regex::Regex;

use crate::api::{escape, Client, ClientFlags};

/// Largest user event payload (Consul's `UserEventSizeLimit`).
pub(crate) const MAX_PAYLOAD: usize = 512;

/// `event` flags and payload.
#[derive(Debug, Args)]
pub(crate) struct EventArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// Name of the event.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Regular expression on node names: only matching nodes handle the event.
    #[arg(long, value_name = "REGEX")]
    node: Option<String>,
    /// Regular expression on service names: only nodes running a matching service handle it.
    #[arg(long, value_name = "REGEX")]
    service: Option<String>,
    /// Regular expression on service tags (needs -service).
    #[arg(long, value_name = "REGEX")]
    tag: Option<String>,
    /// The payload (at most one argument, 512 bytes).
    payload: Vec<String>,
}

/// A validated event to fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fire {
    /// Event name.
    pub(crate) name: String,
    /// `?node=`.
    pub(crate) node: String,
    /// `?service=`.
    pub(crate) service: String,
    /// `?tag=`.
    pub(crate) tag: String,
    /// The body; `None` without a payload argument.
    pub(crate) payload: Option<Vec<u8>>,
}

impl EventArgs {
    /// Validates the command line; the error is the message to print (exit 1).
    pub(crate) fn fire(&self) -> Result<Fire, String> {
        let name = self.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err("Event name must be specified\n\nUsage: consul-rs event [options] [payload]".into());
        }
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let (node, service, tag) = (opt(&self.node), opt(&self.service), opt(&self.tag));
        for (what, re) in [("node", &node), ("service", &service), ("tag", &tag)] {
            if !re.is_empty() {
                if let Err(e) = Regex::new(re) {
                    return Err(format!("Failed to compile {what} filter regexp: {e}"));
                }
            }
        }
        if !tag.is_empty() && service.is_empty() {
            return Err("Cannot provide tag filter without service filter.".into());
        }
        let payload = match self.payload.as_slice() {
            [] => None,
            [p] => Some(p.as_bytes().to_vec()),
            _ => return Err("Too many command line arguments.\n\nUsage: consul-rs event [options] [payload]".into()),
        };
        if let Some(p) = &payload {
            if p.len() > MAX_PAYLOAD {
                return Err(format!(
                    "Error firing event: the payload is {} bytes; user events carry at most {MAX_PAYLOAD} bytes",
                    p.len()
                ));
            }
        }
        Ok(Fire { name, node, service, tag, payload })
    }
}

impl Fire {
    /// `PUT /v1/event/fire/<name>?node=&service=&tag=` (empty filters left out).
    pub(crate) fn request(&self) -> (String, Vec<(&'static str, Option<String>)>) {
        let mut query = Vec::new();
        for (k, v) in [("node", &self.node), ("service", &self.service), ("tag", &self.tag)] {
            if !v.is_empty() {
                query.push((k, Some(v.clone())));
            }
        }
        (format!("/v1/event/fire/{}", escape(&self.name, false)), query)
    }
}

/// Runs `event`; returns the exit code.
pub(crate) async fn run(a: EventArgs) -> Result<u8> {
    let fire = match a.fire() {
        Ok(f) => f,
        Err(msg) => {
            eprintln!("{msg}");
            return Ok(1);
        }
    };
    let client = Client::new(&a.client)?;
    // Like Consul, make sure an agent answers before firing.
    client.call("GET", "/v1/agent/self", &[], None).await.map_err(|e| anyhow!("Error querying Consul agent: {e:#}"))?;
    let (path, query) = fire.request();
    let resp = client
        .call("PUT", &path, &query, fire.payload.clone())
        .await
        .map_err(|e| anyhow!("Error firing event: {e:#}"))?;
    let v = resp.json()?;
    let id = v.get("ID").and_then(|i| i.as_str()).context("Error firing event: the answer has no event ID")?;
    println!("Event ID: {id}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> EventArgs {
        match crate::tests::parse(&format!("event {line}")) {
            Ok(crate::Cli { command: crate::Command::Event(a) }) => a,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn validation_in_consuls_words() {
        for (line, needle) in [
            ("", "Event name must be specified"),
            ("-name=", "Event name must be specified"),
            ("-name=x -node=(", "Failed to compile node filter regexp"),
            ("-name=x -service=[", "Failed to compile service filter regexp"),
            ("-name=x -service=web -tag=(", "Failed to compile tag filter regexp"),
            ("-name=x -tag=v1", "Cannot provide tag filter without service filter."),
            ("-name=x a b", "Too many command line arguments."),
        ] {
            let e = args(line).fire().expect_err(line);
            assert!(e.contains(needle), "{line}: {e}");
        }
    }

    #[test]
    fn payload_limit_is_checked_before_sending() {
        let big = "x".repeat(MAX_PAYLOAD + 1);
        let e = args(&format!("-name=x {big}")).fire().expect_err("too big");
        assert!(e.contains("513 bytes") && e.contains("512"), "{e}");
        let ok = "x".repeat(MAX_PAYLOAD);
        assert_eq!(args(&format!("-name=x {ok}")).fire().expect("fits").payload.map(|p| p.len()), Some(512));
    }

    #[test]
    fn request_carries_the_filters() {
        let f = args("-name deploy -node ^web -service=api -tag v[12] hello").fire().expect("valid");
        assert_eq!(f.payload, Some(b"hello".to_vec()));
        let (path, q) = f.request();
        assert_eq!(path, "/v1/event/fire/deploy");
        assert_eq!(
            q,
            vec![("node", Some("^web".into())), ("service", Some("api".into())), ("tag", Some("v[12]".into()))]
        );
        assert!(args("-name=x").fire().expect("valid").request().1.is_empty());
    }

    #[tokio::test]
    async fn prints_the_event_id() {
        let server = crate::testserver::TestServer::start(vec![
            (200, "{}".into()),
            (200, r#"{"ID":"b54fe110-7af5-cafc-d1fb-afc8ba432b1c","Name":"deploy","LTime":0}"#.into()),
        ])
        .await;
        let code = run(args(&format!("-http-addr={} -name=deploy payload", server.addr))).await.expect("runs");
        assert_eq!(code, 0);
        let seen = server.requests().await;
        assert_eq!(seen[0].target, "/v1/agent/self");
        assert_eq!((seen[1].method.as_str(), seen[1].target.as_str()), ("PUT", "/v1/event/fire/deploy"));
        assert_eq!(seen[1].body, b"payload");
    }
}
