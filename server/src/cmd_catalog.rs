//! `consul-rs catalog datacenters|nodes|services`: Consul's catalog commands, same flags, same
//! tables (§7.1 of the reference; endpoints §1.6).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, Result};
use clap::{ArgAction, Args, Subcommand};
use serde_json::Value;

use crate::api::{escape, Client, ClientFlags};
use crate::cmd_operator::columnize;

/// Catalog subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum CatalogCommand {
    /// List the known datacenters.
    Datacenters(DatacentersArgs),
    /// List nodes.
    Nodes(NodesArgs),
    /// List services.
    Services(ServicesArgs),
}

/// `catalog datacenters` flags.
#[derive(Debug, Args)]
pub(crate) struct DatacentersArgs {
    #[command(flatten)]
    client: ClientFlags,
}

/// `catalog nodes` flags.
#[derive(Debug, Args)]
pub(crate) struct NodesArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// Only nodes providing this service.
    #[arg(long)]
    service: Option<String>,
    /// Full node IDs plus tagged addresses and metadata.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    detailed: bool,
    /// Only nodes with this metadata, `key=value`; repeatable (all must match).
    #[arg(long = "node-meta", value_name = "KEY=VALUE", action = ArgAction::Append)]
    node_meta: Vec<String>,
    /// Sort by estimated round-trip time from this node.
    #[arg(long)]
    near: Option<String>,
    /// Let any server answer, even if it is behind the leader.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    stale: bool,
}

/// `catalog services` flags.
#[derive(Debug, Args)]
pub(crate) struct ServicesArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// Only services registered on this node.
    #[arg(long)]
    node: Option<String>,
    /// Add a column with each service's tags.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    tags: bool,
    /// Only services on nodes with this metadata, `key=value`; repeatable.
    #[arg(long = "node-meta", value_name = "KEY=VALUE", action = ArgAction::Append)]
    node_meta: Vec<String>,
    /// Let any server answer, even if it is behind the leader.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    stale: bool,
}

/// Runs a catalog subcommand.
pub(crate) async fn run(cmd: CatalogCommand) -> Result<()> {
    match cmd {
        CatalogCommand::Datacenters(a) => datacenters(a).await,
        CatalogCommand::Nodes(a) => nodes(a).await,
        CatalogCommand::Services(a) => services(a).await,
    }
}

/// `-node-meta key=value` → the API's `node-meta=key:value` query pairs.
pub(crate) fn node_meta_query(flags: &[String]) -> Result<Vec<(&'static str, Option<String>)>> {
    flags
        .iter()
        .map(|f| {
            let (k, v) = split_pair(f)?;
            Ok(("node-meta", Some(format!("{k}:{v}"))))
        })
        .collect()
}

/// Splits a `key=value` flag value the way Go's map flags do.
pub(crate) fn split_pair(f: &str) -> Result<(&str, &str)> {
    f.split_once('=').ok_or_else(|| anyhow!("Missing \"=\" value in argument: {f}"))
}

async fn datacenters(a: DatacentersArgs) -> Result<()> {
    let client = Client::new(&a.client)?;
    let resp = client
        .call("GET", "/v1/catalog/datacenters", &[], None)
        .await
        .map_err(|e| anyhow!("Error listing datacenters: {e:#}"))?;
    let dcs: Vec<String> = serde_json::from_slice(&resp.body).map_err(|e| anyhow!("Error listing datacenters: {e}"))?;
    if dcs.is_empty() {
        return Err(anyhow!("Error: No datacenters found"));
    }
    let mut text = String::new();
    for dc in dcs {
        text.push_str(&dc);
        text.push('\n');
    }
    print!("{text}");
    Ok(())
}

/// A node row, from either `/v1/catalog/nodes` (`Node`) or `/v1/catalog/service/:s`
/// (`CatalogService`, which names the node metadata `NodeMeta`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeRow {
    name: String,
    id: String,
    address: String,
    datacenter: String,
    tagged_addresses: BTreeMap<String, String>,
    meta: BTreeMap<String, String>,
}

fn str_field(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn str_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

impl NodeRow {
    fn from_json(v: &Value) -> NodeRow {
        NodeRow {
            name: str_field(v, "Node"),
            id: str_field(v, "ID"),
            address: str_field(v, "Address"),
            datacenter: str_field(v, "Datacenter"),
            tagged_addresses: str_map(v.get("TaggedAddresses")),
            meta: str_map(v.get("Meta").or_else(|| v.get("NodeMeta"))),
        }
    }
}

/// `k1=v1, k2=v2` in key order, as Consul prints maps in tables.
fn map_text(m: &BTreeMap<String, String>) -> String {
    m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

/// The `catalog nodes` table: IDs shortened to 8 characters unless `detailed`, which also adds
/// the tagged addresses and metadata.
pub(crate) fn render_nodes(nodes: &[NodeRow], detailed: bool) -> String {
    let header = ["Node", "ID", "Address", "DC"].map(String::from);
    if detailed {
        let mut rows = vec![[
            header[0].clone(),
            header[1].clone(),
            header[2].clone(),
            header[3].clone(),
            "TaggedAddresses".to_string(),
            "Meta".to_string(),
        ]];
        for n in nodes {
            rows.push([
                n.name.clone(),
                n.id.clone(),
                n.address.clone(),
                n.datacenter.clone(),
                map_text(&n.tagged_addresses),
                map_text(&n.meta),
            ]);
        }
        return columnize(&rows);
    }
    let mut rows = vec![header];
    for n in nodes {
        let short: String = n.id.chars().take(8).collect();
        rows.push([n.name.clone(), short, n.address.clone(), n.datacenter.clone()]);
    }
    columnize(&rows)
}

async fn nodes(a: NodesArgs) -> Result<()> {
    let client = Client::new(&a.client)?;
    let mut q = node_meta_query(&a.node_meta)?;
    if let Some(near) = &a.near {
        q.push(("near", Some(near.clone())));
    }
    if a.stale {
        q.push(("stale", None));
    }
    let path = match &a.service {
        Some(s) => format!("/v1/catalog/service/{}", escape(s, false)),
        None => "/v1/catalog/nodes".to_string(),
    };
    let resp = client.call("GET", &path, &q, None).await.map_err(|e| anyhow!("Error listing nodes: {e:#}"))?;
    let list = resp.json()?;
    let mut rows = Vec::new();
    let mut seen = BTreeSet::new();
    for v in list.as_array().map(Vec::as_slice).unwrap_or_default() {
        let row = NodeRow::from_json(v);
        // Several instances of one service on a node list the node once.
        if seen.insert(row.name.clone()) {
            rows.push(row);
        }
    }
    if rows.is_empty() {
        eprintln!("No nodes match the given query.");
        return Ok(());
    }
    print!("{}", render_nodes(&rows, a.detailed));
    Ok(())
}

/// The `catalog services` output: names sorted, one per line, or with `tags` a table of names
/// and their sorted, comma-separated tags.
pub(crate) fn render_services(services: &BTreeMap<String, BTreeSet<String>>, tags: bool) -> String {
    if !tags {
        let mut out = String::new();
        for name in services.keys() {
            out.push_str(name);
            out.push('\n');
        }
        return out;
    }
    let rows: Vec<[String; 2]> = services
        .iter()
        .map(|(name, tags)| [name.clone(), tags.iter().cloned().collect::<Vec<_>>().join(",")])
        .collect();
    columnize(&rows)
}

fn tags_of(v: Option<&Value>) -> BTreeSet<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

async fn services(a: ServicesArgs) -> Result<()> {
    let client = Client::new(&a.client)?;
    let mut q = node_meta_query(&a.node_meta)?;
    if a.stale {
        q.push(("stale", None));
    }
    let mut services: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    match &a.node {
        Some(node) => {
            let path = format!("/v1/catalog/node/{}", escape(node, false));
            let resp = client
                .call("GET", &path, &q, None)
                .await
                .map_err(|e| anyhow!("Error listing services for node: {e:#}"))?;
            let v = resp.json()?;
            // `{"Node": …, "Services": {"id": AgentService}}`, or null for an unknown node.
            if let Some(map) = v.get("Services").and_then(Value::as_object) {
                for svc in map.values() {
                    let name = str_field(svc, "Service");
                    services.entry(name).or_default().extend(tags_of(svc.get("Tags")));
                }
            }
        }
        None => {
            let resp = client
                .call("GET", "/v1/catalog/services", &q, None)
                .await
                .map_err(|e| anyhow!("Error listing services: {e:#}"))?;
            let v = resp.json()?;
            if let Some(map) = v.as_object() {
                for (name, tags) in map {
                    services.insert(name.clone(), tags_of(Some(tags)));
                }
            }
        }
    }
    if services.is_empty() {
        eprintln!("No services match the given query.");
        return Ok(());
    }
    print!("{}", render_services(&services, a.tags));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nodes_table_shortens_ids() {
        let rows = vec![
            NodeRow::from_json(&json!({
                "ID": "0e8ffa51-5a8c-4f41-9c3f-2b1c8e0b2a77", "Node": "node-one",
                "Address": "10.0.0.1", "Datacenter": "dc1",
                "TaggedAddresses": {"wan": "1.2.3.4", "lan": "10.0.0.1"}, "Meta": {"rack": "r1"}
            })),
            NodeRow::from_json(&json!({"ID": "", "Node": "n2", "Address": "10.0.0.22", "Datacenter": "dc1"})),
        ];
        assert_eq!(
            render_nodes(&rows, false),
            "Node      ID        Address    DC\n\
             node-one  0e8ffa51  10.0.0.1   dc1\n\
             n2                  10.0.0.22  dc1\n"
        );
        let detailed = render_nodes(&rows, true);
        let first = detailed.lines().nth(1).expect("row");
        assert!(first.contains("0e8ffa51-5a8c-4f41-9c3f-2b1c8e0b2a77"), "{detailed}");
        assert!(first.contains("lan=10.0.0.1, wan=1.2.3.4"), "{detailed}");
        assert!(first.ends_with("rack=r1"), "{detailed}");
        assert!(detailed.starts_with("Node "), "{detailed}");
        let header = detailed.lines().next().unwrap_or_default();
        assert!(header.contains("  TaggedAddresses  ") && header.ends_with("  Meta"), "{detailed}");
    }

    #[test]
    fn catalog_service_rows_use_node_meta() {
        let row = NodeRow::from_json(&json!({"Node": "n", "NodeMeta": {"a": "b"}, "ServiceID": "web"}));
        assert_eq!(row.meta.get("a").map(String::as_str), Some("b"));
    }

    #[test]
    fn services_output() {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        m.insert("web".into(), ["v2", "primary"].map(String::from).into());
        m.insert("consul".into(), BTreeSet::new());
        m.insert("db".into(), ["x"].map(String::from).into());
        assert_eq!(render_services(&m, false), "consul\ndb\nweb\n");
        assert_eq!(render_services(&m, true), "consul\ndb      x\nweb     primary,v2\n");
    }

    #[test]
    fn node_meta_flags() {
        let q = node_meta_query(&["rack=r1".into(), "k=a=b".into()]).expect("ok");
        assert_eq!(q, vec![("node-meta", Some("rack:r1".into())), ("node-meta", Some("k:a=b".into()))]);
        assert!(node_meta_query(&["bad".into()]).is_err());
    }
}
