//! `consul-rs services register|deregister`: register services with the local agent from flags
//! or from service definition files (Consul's `service { … }` / `services [ … ]` blocks, JSON or
//! HCL, snake_case or PascalCase keys), via `PUT /v1/agent/service/register` and
//! `PUT /v1/agent/service/deregister/:id` (reference §1.4, §7.1).

use std::path::Path;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{ArgAction, Args, Subcommand};
use serde_json::{Map, Value};

use crate::api::{escape, Client, ClientFlags};
use crate::cmd_catalog::split_pair;
use crate::config_file::{parse_text, Format};

/// Services subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ServicesCommand {
    /// Register services with the local agent.
    Register(RegisterArgs),
    /// Deregister services from the local agent.
    Deregister(DeregisterArgs),
}

/// `services register` flags.
#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// Service name (registers one service from the flags instead of files).
    #[arg(long)]
    name: Option<String>,
    /// Service ID (default: the name).
    #[arg(long)]
    id: Option<String>,
    /// Service address (default: the node's).
    #[arg(long)]
    address: Option<String>,
    /// Service port.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// A tag; repeatable.
    #[arg(long = "tag", value_name = "TAG", action = ArgAction::Append)]
    tags: Vec<String>,
    /// Metadata `key=value`; repeatable.
    #[arg(long = "meta", value_name = "KEY=VALUE", action = ArgAction::Append)]
    meta: Vec<String>,
    /// A tagged address `key=address[:port]` (e.g. `wan=203.0.113.1:80`); repeatable.
    #[arg(long = "tagged-address", value_name = "KEY=ADDR", action = ArgAction::Append)]
    tagged_addresses: Vec<String>,
    /// Service definition files (.json or .hcl).
    files: Vec<String>,
}

/// `services deregister` flags.
#[derive(Debug, Args)]
pub(crate) struct DeregisterArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// ID of the service to deregister.
    #[arg(long)]
    id: Option<String>,
    /// Service definition files whose services to deregister.
    files: Vec<String>,
}

/// Runs a services subcommand.
pub(crate) async fn run(cmd: ServicesCommand) -> Result<()> {
    match cmd {
        ServicesCommand::Register(a) => register(a).await,
        ServicesCommand::Deregister(a) => deregister(a).await,
    }
}

/// The registration body built from `-name -id -tag -address -port -meta` (Go's omitempty:
/// unset fields are left out).
pub(crate) fn registration_from_flags(a: &RegisterArgs) -> Result<Value> {
    let mut m = Map::new();
    if let Some(id) = a.id.as_ref().filter(|s| !s.is_empty()) {
        m.insert("ID".into(), id.clone().into());
    }
    m.insert("Name".into(), a.name.clone().unwrap_or_default().into());
    if !a.tags.is_empty() {
        m.insert("Tags".into(), a.tags.clone().into());
    }
    if let Some(addr) = a.address.as_ref().filter(|s| !s.is_empty()) {
        m.insert("Address".into(), addr.clone().into());
    }
    if a.port != 0 {
        m.insert("Port".into(), a.port.into());
    }
    if !a.meta.is_empty() {
        let mut meta = Map::new();
        for pair in &a.meta {
            let (k, v) = split_pair(pair)?;
            meta.insert(k.to_string(), v.into());
        }
        m.insert("Meta".into(), Value::Object(meta));
    }
    if !a.tagged_addresses.is_empty() {
        let mut tagged = Map::new();
        for pair in &a.tagged_addresses {
            let (k, v) = split_pair(pair)?;
            let (address, port) = split_host_port(v)?;
            let mut addr = Map::new();
            addr.insert("Address".into(), address.into());
            if let Some(p) = port {
                addr.insert("Port".into(), p.into());
            }
            tagged.insert(k.to_string(), Value::Object(addr));
        }
        m.insert("TaggedAddresses".into(), Value::Object(tagged));
    }
    Ok(Value::Object(m))
}

/// `host:port`, `[v6]:port`, or a bare address (IPv6 included) with no port.
fn split_host_port(s: &str) -> Result<(String, Option<u16>)> {
    let parse_port = |p: &str| p.parse::<u16>().map_err(|_| anyhow!("Invalid port {p:?} in address {s:?}"));
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| anyhow!("Invalid address {s:?}: missing ']'"))?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host.to_string(), Some(parse_port(p)?))),
            None if after.is_empty() => Ok((host.to_string(), None)),
            None => bail!("Invalid address {s:?}"),
        };
    }
    match s.split_once(':') {
        Some((host, p)) if !p.contains(':') => Ok((host.to_string(), Some(parse_port(p)?))),
        _ => Ok((s.to_string(), None)),
    }
}

/// Reads service definitions from files, in order.
pub(crate) fn services_from_files(files: &[String]) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for f in files {
        let path = Path::new(f);
        let text = std::fs::read_to_string(path).with_context(|| format!("Error reading {f}"))?;
        let value = match Format::from_path(path) {
            Some(fmt) => parse_text(&text, fmt).with_context(|| format!("Error parsing {f}"))?,
            // No telling extension: JSON if it parses as JSON, else HCL.
            None => parse_text(&text, Format::Json)
                .or_else(|_| parse_text(&text, Format::Hcl))
                .with_context(|| format!("Error parsing {f}: neither JSON nor HCL"))?,
        };
        let found = services_from_value(&value).with_context(|| format!("Error parsing {f}"))?;
        if found.is_empty() {
            bail!("Error parsing {f}: no service definitions found");
        }
        out.extend(found);
    }
    Ok(out)
}

/// The `service` / `services` blocks of one parsed file, each normalised to the API's
/// `AgentServiceRegistration` field names.
pub(crate) fn services_from_value(v: &Value) -> Result<Vec<Value>> {
    let Value::Object(top) = v else {
        bail!("the top level must be an object with a service or services block");
    };
    let mut out = Vec::new();
    for (key, block) in top {
        if !matches!(norm(key).as_str(), "service" | "services") {
            bail!("unknown key {key:?}: a service definition file holds service or services blocks");
        }
        let blocks: Vec<&Value> = match block {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        for b in blocks {
            let Value::Object(obj) = b else {
                bail!("{key}: expected a block (object), got {b}");
            };
            out.push(Value::Object(normalize_object(obj, SERVICE_FIELDS, key)?));
        }
    }
    Ok(out)
}

/// How a field's value is carried over.
#[derive(Clone, Copy)]
enum Kind {
    /// As it is (scalars, lists of strings, and nested structures the agent decodes
    /// case-insensitively: Proxy, Connect).
    Plain,
    /// A map whose keys are user data (Meta, Header): keys untouched.
    Opaque,
    /// `{lan: {address, port}, …}`: user keys, each value an `{Address, Port}` object.
    TaggedAddresses,
    /// An object with known fields.
    Object(&'static [(&'static str, Kind)]),
    /// One check.
    Check,
    /// A list of checks.
    Checks,
}

const WEIGHTS_FIELDS: &[(&str, Kind)] = &[("Passing", Kind::Plain), ("Warning", Kind::Plain)];
const ADDRESS_FIELDS: &[(&str, Kind)] = &[("Address", Kind::Plain), ("Port", Kind::Plain)];
const LOCALITY_FIELDS: &[(&str, Kind)] = &[("Region", Kind::Plain), ("Zone", Kind::Plain)];

/// `AgentServiceRegistration` fields (§1.19).
const SERVICE_FIELDS: &[(&str, Kind)] = &[
    ("Kind", Kind::Plain),
    ("ID", Kind::Plain),
    ("Name", Kind::Plain),
    ("Tags", Kind::Plain),
    ("Port", Kind::Plain),
    ("Address", Kind::Plain),
    ("SocketPath", Kind::Plain),
    ("TaggedAddresses", Kind::TaggedAddresses),
    ("EnableTagOverride", Kind::Plain),
    ("Meta", Kind::Opaque),
    ("Weights", Kind::Object(WEIGHTS_FIELDS)),
    ("Check", Kind::Check),
    ("Checks", Kind::Checks),
    ("Proxy", Kind::Plain),
    ("Connect", Kind::Plain),
    ("Namespace", Kind::Plain),
    ("Partition", Kind::Plain),
    ("Locality", Kind::Object(LOCALITY_FIELDS)),
    ("Token", Kind::Plain),
];

/// `AgentServiceCheck` fields (§1.19), plus the config-file spellings `id` and `args`.
const CHECK_FIELDS: &[(&str, Kind)] = &[
    ("CheckID", Kind::Plain),
    ("Name", Kind::Plain),
    ("ScriptArgs", Kind::Plain),
    ("DockerContainerID", Kind::Plain),
    ("Shell", Kind::Plain),
    ("Interval", Kind::Plain),
    ("Timeout", Kind::Plain),
    ("TTL", Kind::Plain),
    ("HTTP", Kind::Plain),
    ("Header", Kind::Opaque),
    ("Method", Kind::Plain),
    ("Body", Kind::Plain),
    ("DisableRedirects", Kind::Plain),
    ("TCP", Kind::Plain),
    ("TCPUseTLS", Kind::Plain),
    ("UDP", Kind::Plain),
    ("Status", Kind::Plain),
    ("Notes", Kind::Plain),
    ("TLSServerName", Kind::Plain),
    ("TLSSkipVerify", Kind::Plain),
    ("GRPC", Kind::Plain),
    ("GRPCUseTLS", Kind::Plain),
    ("H2PING", Kind::Plain),
    ("H2PingUseTLS", Kind::Plain),
    ("AliasNode", Kind::Plain),
    ("AliasService", Kind::Plain),
    ("OSService", Kind::Plain),
    ("SuccessBeforePassing", Kind::Plain),
    ("FailuresBeforeWarning", Kind::Plain),
    ("FailuresBeforeCritical", Kind::Plain),
    ("DeregisterCriticalServiceAfter", Kind::Plain),
    ("OutputMaxSize", Kind::Plain),
    // consul-rs's service-quality thresholds (not in Consul).
    ("LatencyWarning", Kind::Plain),
    ("LatencyCritical", Kind::Plain),
    ("Metrics", Kind::Plain),
    ("Rules", Kind::Opaque),
    ("Namespace", Kind::Plain),
    ("Partition", Kind::Plain),
];

/// Field-name spellings that are not just the Go name in another case.
const ALIASES: &[(&str, &str)] = &[("id", "CheckID"), ("args", "ScriptArgs")];

/// Lower case without underscores: `tagged_addresses`, `TaggedAddresses` and `taggedaddresses`
/// all become `taggedaddresses`, matching Consul's case-insensitive, snake_case-tolerant decoding.
fn norm(key: &str) -> String {
    key.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect()
}

fn normalize_object(obj: &Map<String, Value>, fields: &[(&str, Kind)], path: &str) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for (key, value) in obj {
        let n = norm(key);
        let found = fields.iter().find(|(go, _)| norm(go) == n).or_else(|| {
            let alias = ALIASES.iter().find(|(a, _)| *a == n)?;
            fields.iter().find(|(go, _)| *go == alias.1)
        });
        let Some((go, kind)) = found else {
            bail!("{path}: unknown field {key:?}");
        };
        let here = format!("{path}.{key}");
        let converted = match *kind {
            Kind::Plain | Kind::Opaque => value.clone(),
            Kind::TaggedAddresses => {
                let Value::Object(m) = value else { bail!("{here}: expected a map of addresses") };
                let mut t = Map::new();
                for (name, addr) in m {
                    let Value::Object(a) = addr else {
                        bail!("{here}.{name}: expected an object with address and port");
                    };
                    t.insert(name.clone(), Value::Object(normalize_object(a, ADDRESS_FIELDS, &here)?));
                }
                Value::Object(t)
            }
            Kind::Object(sub) => {
                let Value::Object(m) = value else { bail!("{here}: expected an object") };
                Value::Object(normalize_object(m, sub, &here)?)
            }
            Kind::Check => match value {
                Value::Object(m) => Value::Object(normalize_object(m, CHECK_FIELDS, &here)?),
                // HCL's repeated `check { … }` blocks arrive as a list: they are `Checks`.
                Value::Array(_) => {
                    let list = checks(value, &here)?;
                    append_checks(&mut out, list);
                    continue;
                }
                _ => bail!("{here}: expected a check block"),
            },
            Kind::Checks => {
                let list = checks(value, &here)?;
                append_checks(&mut out, list);
                continue;
            }
        };
        if out.insert((*go).to_string(), converted).is_some() {
            bail!("{path}: field {key:?} given twice");
        }
    }
    Ok(out)
}

fn checks(value: &Value, path: &str) -> Result<Vec<Value>> {
    let Value::Array(items) = value else { bail!("{path}: expected a list of checks") };
    items
        .iter()
        .enumerate()
        .map(|(i, c)| match c {
            Value::Object(m) => Ok(Value::Object(normalize_object(m, CHECK_FIELDS, &format!("{path}[{i}]"))?)),
            _ => Err(anyhow!("{path}[{i}]: expected a check block")),
        })
        .collect()
}

fn append_checks(out: &mut Map<String, Value>, list: Vec<Value>) {
    match out.get_mut("Checks") {
        Some(Value::Array(existing)) => existing.extend(list),
        _ => {
            out.insert("Checks".into(), Value::Array(list));
        }
    }
}

fn field<'a>(svc: &'a Value, go: &str) -> Option<&'a str> {
    svc.get(go).and_then(Value::as_str).filter(|s| !s.is_empty())
}

async fn register(a: RegisterArgs) -> Result<()> {
    let has_name = a.name.as_ref().is_some_and(|n| !n.is_empty());
    if a.files.is_empty() && !has_name {
        bail!("Error! Service registration requires at least one argument or flags.");
    }
    if !a.files.is_empty() && has_name {
        bail!("Error! Service registration requires arguments or -name, not both.");
    }
    let services = if a.files.is_empty() { vec![registration_from_flags(&a)?] } else { services_from_files(&a.files)? };
    let client = Client::new(&a.client)?;
    for svc in services {
        let name = field(&svc, "Name").unwrap_or_default().to_string();
        let body = serde_json::to_vec(&svc)?;
        client
            .call("PUT", "/v1/agent/service/register", &[], Some(body))
            .await
            .map_err(|e| anyhow!("Error registering service {name:?}: {e:#}"))?;
        println!("Registered service: {name}");
    }
    Ok(())
}

/// The IDs to deregister: `-id`, or each file service's ID (its name when it has none).
pub(crate) fn deregister_ids(a: &DeregisterArgs) -> Result<Vec<String>> {
    let has_id = a.id.as_ref().is_some_and(|n| !n.is_empty());
    if a.files.is_empty() && !has_id {
        bail!("Error! Service deregistration requires at least one argument or -id.");
    }
    if !a.files.is_empty() && has_id {
        bail!("Error! Service deregistration requires arguments or -id, not both.");
    }
    if let Some(id) = &a.id {
        return Ok(vec![id.clone()]);
    }
    services_from_files(&a.files)?
        .iter()
        .map(|s| {
            field(s, "ID")
                .or_else(|| field(s, "Name"))
                .map(str::to_string)
                .ok_or_else(|| anyhow!("Error! A service in the files has neither an ID nor a name"))
        })
        .collect()
}

async fn deregister(a: DeregisterArgs) -> Result<()> {
    let ids = deregister_ids(&a)?;
    let client = Client::new(&a.client)?;
    for id in ids {
        let path = format!("/v1/agent/service/deregister/{}", escape(&id, false));
        client.call("PUT", &path, &[], None).await.map_err(|e| anyhow!("Error deregistering service {id:?}: {e:#}"))?;
        println!("Deregistered service: {id}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testserver::TestServer;
    use serde_json::json;

    fn reg_args(line: &str) -> RegisterArgs {
        match crate::tests::parse(&format!("services register {line}")) {
            Ok(crate::Cli { command: crate::Command::Services(ServicesCommand::Register(a)) }) => a,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn dereg_args(line: &str) -> DeregisterArgs {
        match crate::tests::parse(&format!("services deregister {line}")) {
            Ok(crate::Cli { command: crate::Command::Services(ServicesCommand::Deregister(a)) }) => a,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn flags_build_the_registration() {
        let a = reg_args(
            "-name web -id web-1 -tag v1 -tag=primary -address 10.0.0.5 -port 8080 -meta env=prod -meta=a=b=c",
        );
        assert_eq!(
            registration_from_flags(&a).expect("ok"),
            json!({"ID": "web-1", "Name": "web", "Tags": ["v1", "primary"], "Address": "10.0.0.5",
                   "Port": 8080, "Meta": {"env": "prod", "a": "b=c"}})
        );
        let a = reg_args(
            "-name=db -tagged-address wan=203.0.113.1:8080 -tagged-address=lan_ipv6=[::1]:80 -tagged-address v6=::1",
        );
        assert_eq!(
            registration_from_flags(&a).expect("ok")["TaggedAddresses"],
            json!({"wan": {"Address": "203.0.113.1", "Port": 8080}, "lan_ipv6": {"Address": "::1", "Port": 80},
                   "v6": {"Address": "::1"}})
        );
        assert!(registration_from_flags(&reg_args("-name=db -tagged-address=wan=h:x")).is_err());
        let a = reg_args("-name=db");
        assert_eq!(registration_from_flags(&a).expect("ok"), json!({"Name": "db"}));
        let a = reg_args("-name=db -meta novalue");
        assert!(registration_from_flags(&a).is_err());
    }

    #[test]
    fn json_file_snake_case_is_normalised() {
        let v = json!({"service": {
            "name": "web", "id": "web1", "tags": ["a"], "port": 80,
            "enable_tag_override": true, "meta": {"some_key": "v"},
            "tagged_addresses": {"lan": {"address": "10.0.0.1", "port": 80}},
            "weights": {"passing": 3, "warning": 1},
            "check": {"id": "c1", "http": "http://localhost/health", "interval": "10s",
                      "header": {"X-Some_Thing": ["v"]}, "deregister_critical_service_after": "1m"},
            "checks": [{"args": ["/bin/true"], "interval": "5s"}, {"ttl": "30s"}]
        }});
        let got = services_from_value(&v).expect("ok");
        assert_eq!(
            got,
            vec![json!({
                "Name": "web", "ID": "web1", "Tags": ["a"], "Port": 80, "EnableTagOverride": true,
                "Meta": {"some_key": "v"},
                "TaggedAddresses": {"lan": {"Address": "10.0.0.1", "Port": 80}},
                "Weights": {"Passing": 3, "Warning": 1},
                "Check": {"CheckID": "c1", "HTTP": "http://localhost/health", "Interval": "10s",
                          "Header": {"X-Some_Thing": ["v"]}, "DeregisterCriticalServiceAfter": "1m"},
                "Checks": [{"ScriptArgs": ["/bin/true"], "Interval": "5s"}, {"TTL": "30s"}]
            })]
        );
    }

    #[test]
    fn pascal_case_services_list() {
        let v = json!({"services": [{"Name": "a", "Port": 1}, {"Name": "b", "ID": "b2"}]});
        let got = services_from_value(&v).expect("ok");
        assert_eq!(got, vec![json!({"Name": "a", "Port": 1}), json!({"Name": "b", "ID": "b2"})]);
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = services_from_value(&json!({"service": {"name": "a", "prot": 1}})).expect_err("unknown");
        assert!(format!("{e:#}").contains("prot"), "{e:#}");
        let e = services_from_value(&json!({"datacenter": "dc1"})).expect_err("not a service");
        assert!(format!("{e:#}").contains("datacenter"), "{e:#}");
    }

    #[test]
    fn hcl_files_single_and_repeated_blocks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = dir.path().join("web.hcl");
        std::fs::write(
            &one,
            r#"
service {
  name = "web"
  port = 80
  tags = ["v1"]
  meta { version = "1" }
  check {
    id = "web-http"
    http = "http://127.0.0.1/"
    interval = "10s"
  }
}
"#,
        )
        .expect("write");
        let two = dir.path().join("many.hcl");
        std::fs::write(&two, "service {\n name = \"a\"\n}\nservice {\n name = \"b\"\n id = \"b1\"\n}\n")
            .expect("write");
        let list = services_from_files(&[one.display().to_string(), two.display().to_string()]).expect("ok");
        assert_eq!(list.len(), 3, "{list:?}");
        assert_eq!(list[0]["Name"], "web");
        assert_eq!(list[0]["Meta"]["version"], "1");
        assert_eq!(list[0]["Check"]["CheckID"], "web-http");
        assert_eq!(list[1]["Name"], "a");
        assert_eq!(list[2]["ID"], "b1");
        let missing = dir.path().join("nope.json");
        assert!(services_from_files(&[missing.display().to_string()]).is_err());
    }

    #[test]
    fn deregister_ids_from_flag_or_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("s.json");
        std::fs::write(&f, r#"{"services": [{"name": "a"}, {"name": "b", "id": "b1"}]}"#).expect("write");
        assert_eq!(deregister_ids(&dereg_args("-id web-1")).expect("ok"), vec!["web-1"]);
        assert_eq!(deregister_ids(&dereg_args(&f.display().to_string())).expect("ok"), vec!["a", "b1"]);
        assert!(deregister_ids(&dereg_args("")).is_err());
        assert!(deregister_ids(&dereg_args(&format!("-id x {}", f.display()))).is_err());
    }

    /// `PUT /v1/agent/service/register` with the flags' body, then
    /// `PUT /v1/agent/service/deregister/:id`, against a recording server.
    #[tokio::test]
    async fn register_and_deregister_requests() {
        let server = TestServer::start(vec![(200, String::new()), (200, String::new())]).await;
        let mut a = reg_args("-name web -id web/1 -port 80");
        a.client.http_addr = Some(server.addr.clone());
        register(a).await.expect("register");
        let mut d = dereg_args("-id web/1");
        d.client.http_addr = Some(server.addr.clone());
        deregister(d).await.expect("deregister");
        let reqs = server.requests().await;
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].method, "PUT");
        assert_eq!(reqs[0].target, "/v1/agent/service/register");
        assert_eq!(reqs[0].json(), json!({"ID": "web/1", "Name": "web", "Port": 80}));
        assert_eq!(reqs[1].method, "PUT");
        assert_eq!(reqs[1].target, "/v1/agent/service/deregister/web%2F1");
    }

    #[tokio::test]
    async fn register_reports_agent_errors() {
        let server = TestServer::start(vec![(400, "Invalid Service Meta: bad key".into())]).await;
        let mut a = reg_args("-name web");
        a.client.http_addr = Some(server.addr.clone());
        let e = register(a).await.expect_err("400");
        let text = format!("{e:#}");
        assert!(text.contains("Error registering service \"web\"") && text.contains("bad key"), "{text}");
    }
}
