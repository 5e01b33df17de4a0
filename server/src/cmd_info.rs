//! `consul-rs version` and `consul-rs info`.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use clap::Args;
use serde_json::Value;

use crate::api::{Client, ClientFlags};

/// `info` flags.
#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    #[command(flatten)]
    client: ClientFlags,
}

/// `version` flags.
#[derive(Debug, Args)]
pub(crate) struct VersionArgs {
    /// Output format: pretty or json.
    #[arg(long, default_value = "pretty")]
    format: String,
}

/// Runs `version`: the text to print, or Consul's error for an unknown `-format`.
pub(crate) fn version(a: &VersionArgs) -> Result<String, String> {
    match a.format.as_str() {
        "pretty" => Ok(version_text()),
        "json" => Ok(version_json()),
        other => Err(format!("Unknown format: {other}")),
    }
}

/// `version -format=json`: Consul's `VersionInfo` (field order and three-space indent as
/// Consul prints it; `sdk/testutil` reads `Version` from it before it starts an agent). There is
/// no build date: Consul's own default for an unstamped build, like the Revision, says so.
fn version_json() -> String {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Rpc {
        default: u8,
        min: u8,
        max: u8,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Info {
        version: &'static str,
        revision: &'static str,
        prerelease: &'static str,
        build_date: &'static str,
        #[serde(rename = "RPC")]
        rpc: Rpc,
    }
    let info = Info {
        version: consul_core::VERSION,
        revision: "consul-rs",
        prerelease: "",
        build_date: "1970-01-01T00:00:01Z",
        rpc: Rpc { default: 2, min: 2, max: 3 },
    };
    let mut out = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::with_indent(b"   "));
    serde::Serialize::serialize(&info, &mut ser).expect("serializing a plain struct");
    let mut text = String::from_utf8(out).expect("serde_json writes UTF-8");
    text.push('\n');
    text
}

/// The `version` text: Consul's first and protocol lines (tools parse them), then ours.
pub(crate) fn version_text() -> String {
    let v = consul_core::VERSION;
    format!(
        "Consul v{v}\nRevision consul-rs\nProtocol 2 spoken by default, understands 2 to 3 \
         (agent will automatically use protocol >2 when speaking to compatible agents)\nconsul-rs {v}\n"
    )
}

/// Runs `info`: the agent's `Stats` sections, sorted, each key as `\tkey = value`.
pub(crate) async fn info(a: InfoArgs) -> Result<()> {
    let client = Client::new(&a.client)?;
    let resp =
        client.call("GET", "/v1/agent/self", &[], None).await.map_err(|e| anyhow!("Error querying agent: {e:#}"))?;
    let v = resp.json()?;
    print!("{}", render_info(&v));
    Ok(())
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Builds the `info` sections. `Stats` (section → key → value) is used as is; when it lacks an
/// `agent` or `consul` section, one is filled from `Config` and `Member` so the output is never
/// empty on an agent that reports little.
fn render_info(v: &Value) -> String {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    if let Some(Value::Object(stats)) = v.get("Stats") {
        for (section, body) in stats {
            let entry = sections.entry(section.clone()).or_default();
            if let Value::Object(kv) = body {
                for (k, val) in kv {
                    entry.insert(k.clone(), scalar(val));
                }
            }
        }
    }
    let config = v.get("Config");
    let cfg = |k: &str| config.and_then(|c| c.get(k)).map(scalar);
    if !sections.contains_key("agent") {
        let mut agent = BTreeMap::new();
        if let Some(Value::Object(member)) = v.get("Member") {
            for (k, key) in [("Name", "node_name"), ("Addr", "address"), ("Port", "serf_port"), ("Status", "status")] {
                if let Some(val) = member.get(k) {
                    agent.insert(key.to_string(), scalar(val));
                }
            }
        }
        if let Some(id) = cfg("NodeID") {
            agent.insert("node_id".to_string(), id);
        }
        if !agent.is_empty() {
            sections.insert("agent".to_string(), agent);
        }
    }
    if !sections.contains_key("consul") {
        let mut consul = BTreeMap::new();
        for (k, key) in
            [("Datacenter", "datacenter"), ("Server", "server"), ("Version", "version"), ("NodeName", "node_name")]
        {
            if let Some(val) = cfg(k) {
                consul.insert(key.to_string(), val);
            }
        }
        if !consul.is_empty() {
            sections.insert("consul".to_string(), consul);
        }
    }
    let mut out = String::new();
    for (name, kv) in sections {
        out.push_str(&name);
        out.push_str(":\n");
        for (k, val) in kv {
            out.push_str(&format!("\t{k} = {val}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_json_has_consuls_shape() {
        let a = VersionArgs { format: "json".into() };
        let out = version(&a).expect("json is a format");
        let v: Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(v["Version"], consul_core::VERSION);
        assert_eq!(v["Prerelease"], "");
        assert_eq!(v["RPC"], serde_json::json!({"Default": 2, "Min": 2, "Max": 3}));
        let keys: Vec<&str> = v.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 5, "{keys:?}");
        assert!(out.starts_with("{\n   \"Version\": "), "three-space indent as Consul's: {out}");
        assert!(out.ends_with("}\n"));
        assert_eq!(version(&VersionArgs { format: "pretty".into() }), Ok(version_text()));
        assert_eq!(version(&VersionArgs { format: "xml".into() }), Err("Unknown format: xml".to_string()));
    }

    #[test]
    fn version_mentions_both_names() {
        let t = version_text();
        assert!(t.starts_with(&format!("Consul v{}\n", consul_core::VERSION)));
        assert!(t.contains("Protocol 2 spoken by default"));
        assert!(t.contains(&format!("consul-rs {}", consul_core::VERSION)));
    }

    #[test]
    fn info_from_stats() {
        let v: Value = serde_json::from_str(
            r#"{"Config":{"Datacenter":"dc1","NodeName":"n1","Server":true},
                "Stats":{"raft":{"state":"Leader","term":"2"},"agent":{"services":"0"},"consul":{"leader":"true"}}}"#,
        )
        .expect("json");
        assert_eq!(
            render_info(&v),
            "agent:\n\tservices = 0\nconsul:\n\tleader = true\nraft:\n\tstate = Leader\n\tterm = 2\n"
        );
    }

    #[test]
    fn info_falls_back_to_config() {
        let v: Value = serde_json::from_str(
            r#"{"Config":{"Datacenter":"dc1","NodeName":"n1","Server":true,"Version":"0.1.0","NodeID":"abc"},
                "Member":{"Name":"n1","Addr":"127.0.0.1","Port":8301,"Status":1}}"#,
        )
        .expect("json");
        let out = render_info(&v);
        assert!(out.starts_with("agent:\n\taddress = 127.0.0.1\n"), "{out}");
        assert!(out.contains("consul:\n\tdatacenter = dc1\n\tnode_name = n1\n\tserver = true\n"), "{out}");
    }
}
