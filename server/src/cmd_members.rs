//! `consul-rs members [-detailed] [-status=<regex>] [-wan] [-segment=<name>]`: the gossip pool
//! as this agent sees it, in Consul's columns and order (`command/members`).
//!
//! Exit codes, as Consul's: 0 with at least one member listed, 2 when `-status` leaves none
//! (nothing is printed then), 1 on any error.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{anyhow, Context as _, Result};
use clap::{ArgAction, Args};
use regex::Regex;
use serde::Deserialize;

use crate::api::{Client, ClientFlags};
use crate::cmd_operator::columnize;

/// Consul's "every segment" value of `-segment` (and its default).
const ALL_SEGMENTS: &str = "_all";

/// `members` flags.
#[derive(Debug, Args)]
pub(crate) struct MembersArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// Print every tag of each member instead of the summary columns.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    detailed: bool,
    /// List the WAN pool (servers of every datacenter) instead of the LAN pool.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    wan: bool,
    /// Only members whose status (alive, leaving, left, failed) matches this regular expression.
    #[arg(long, default_value = ".*", value_name = "REGEX")]
    status: String,
    /// Only members of this network segment (`_all`: every segment).
    #[arg(long, default_value = ALL_SEGMENTS, value_name = "NAME")]
    segment: String,
}

/// One entry of `/v1/agent/members` (Consul's `AgentMember`), the fields the command shows.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) addr: String,
    pub(crate) port: u16,
    #[serde(default)]
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) status: u8,
}

/// Serf's member status names (`serf.MemberStatus.String()`).
pub(crate) fn status_name(code: u8) -> &'static str {
    match code {
        0 => "none",
        1 => "alive",
        2 => "leaving",
        3 => "left",
        4 => "failed",
        _ => "unknown",
    }
}

/// `ip:port`, with brackets around an IPv6 address, like Go's `net.TCPAddr.String()`.
fn address(m: &Member) -> String {
    match m.addr.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", m.port),
        Ok(IpAddr::V4(ip)) => format!("{ip}:{}", m.port),
        Err(_) => format!("{}:{}", m.addr, m.port),
    }
}

fn tag<'a>(m: &'a Member, key: &str) -> &'a str {
    m.tags.get(key).map(String::as_str).unwrap_or_default()
}

fn is_default_partition(p: &str) -> bool {
    p.is_empty() || p == "default"
}

/// Consul fills in the partition (`ap`) and segment tags before filtering, sorting and
/// printing (so `-detailed` shows them too): the default partition is `default`; in it, servers
/// are in every segment (`<all>`) when all segments were asked for, and an untagged member is
/// in `<default>`.
pub(crate) fn fill_tags(members: &mut [Member], segment_flag: &str) {
    for m in members {
        if tag(m, "ap").is_empty() {
            m.tags.insert("ap".into(), "default".into());
        }
        if is_default_partition(tag(m, "ap")) {
            if segment_flag == ALL_SEGMENTS && tag(m, "role") == "consul" {
                m.tags.insert("segment".into(), "<all>".into());
            } else if tag(m, "segment").is_empty() {
                m.tags.insert("segment".into(), "<default>".into());
            }
        } else {
            m.tags.insert("segment".into(), String::new());
        }
    }
}

/// Keeps the members whose status name matches, then sorts them Consul's way: servers first,
/// then the default partition, then by segment, by partition, and finally by name (stable).
pub(crate) fn filter_and_sort(mut members: Vec<Member>, status: &Regex) -> Vec<Member> {
    members.retain(|m| status.is_match(status_name(m.status)));
    members.sort_by(|a, b| {
        let key = |m: &Member| {
            (tag(m, "role") != "consul", !is_default_partition(tag(m, "ap")), tag(m, "segment").to_string())
        };
        key(a).cmp(&key(b)).then_with(|| tag(a, "ap").cmp(tag(b, "ap"))).then_with(|| a.name.cmp(&b.name))
    });
    members
}

/// The summary table: `Node Address Status Type Build Protocol DC Partition Segment`.
pub(crate) fn render_standard(members: &[Member]) -> String {
    let mut rows: Vec<[String; 9]> = vec![[
        "Node".into(),
        "Address".into(),
        "Status".into(),
        "Type".into(),
        "Build".into(),
        "Protocol".into(),
        "DC".into(),
        "Partition".into(),
        "Segment".into(),
    ]];
    for m in members {
        let kind = match tag(m, "role") {
            "node" => "client",
            "consul" => "server",
            _ => {
                // Consul leaves every other column empty for a member it cannot classify.
                let empty = String::new;
                rows.push([
                    m.name.clone(),
                    address(m),
                    status_name(m.status).into(),
                    "unknown".into(),
                    empty(),
                    empty(),
                    empty(),
                    empty(),
                    empty(),
                ]);
                continue;
            }
        };
        // `1.2.3:abcdef` (version:revision) shows as the version; no build tag at all means a
        // pre-0.3 agent in Consul's words.
        let build = match tag(m, "build") {
            "" => "< 0.3".to_string(),
            b => b.split(':').next().unwrap_or_default().to_string(),
        };
        rows.push([
            m.name.clone(),
            address(m),
            status_name(m.status).into(),
            kind.into(),
            build,
            tag(m, "vsn").into(),
            tag(m, "dc").into(),
            tag(m, "ap").into(),
            tag(m, "segment").into(),
        ]);
    }
    columnize(&rows)
}

/// The `-detailed` table: `Node Address Status Tags`, tags as `k=v` sorted by key.
pub(crate) fn render_detailed(members: &[Member]) -> String {
    let mut rows: Vec<[String; 4]> = vec![["Node".into(), "Address".into(), "Status".into(), "Tags".into()]];
    for m in members {
        let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push([m.name.clone(), address(m), status_name(m.status).into(), tags.join(",")]);
    }
    columnize(&rows)
}

/// Runs `members`; returns the exit code.
pub(crate) async fn run(a: MembersArgs) -> Result<u8> {
    let status = match Regex::new(&a.status) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Failed to compile status regexp: {e}");
            return Ok(1);
        }
    };
    let client = Client::new(&a.client)?;
    let mut query: Vec<(&str, Option<String>)> = vec![];
    if !a.segment.is_empty() {
        query.push(("segment", Some(a.segment.clone())));
    }
    if a.wan {
        query.push(("wan", Some("1".into())));
    }
    let members: Vec<Member> = match client.call("GET", "/v1/agent/members", &query, None).await {
        Ok(resp) => serde_json::from_slice(&resp.body).context("the agent returned invalid member JSON")?,
        Err(e) => return Err(anyhow!("Error retrieving members: {e:#}")),
    };
    let mut members = members;
    fill_tags(&mut members, &a.segment);
    let members = filter_and_sort(members, &status);
    if members.is_empty() {
        return Ok(2);
    }
    let out = if a.detailed { render_detailed(&members) } else { render_standard(&members) };
    print!("{out}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, addr: &str, role: &str, status: u8) -> Member {
        let mut tags = BTreeMap::new();
        if !role.is_empty() {
            tags.insert("role".to_string(), role.to_string());
            tags.insert("dc".to_string(), "dc1".to_string());
            tags.insert("build".to_string(), "1.21.0:consul-rs".to_string());
            tags.insert("vsn".to_string(), "2".to_string());
        }
        Member { name: name.into(), addr: addr.into(), port: 8301, tags, status }
    }

    fn prepared(mut ms: Vec<Member>, status: &str) -> Vec<Member> {
        fill_tags(&mut ms, ALL_SEGMENTS);
        filter_and_sort(ms, &Regex::new(status).expect("regex"))
    }

    #[test]
    fn parses_consuls_member_json() {
        let v: Vec<Member> = serde_json::from_str(
            r#"[{"Name":"n1","Addr":"127.0.0.1","Port":8301,"Tags":{"role":"consul","dc":"dc1"},
                "Status":1,"ProtocolMin":1,"ProtocolMax":5,"ProtocolCur":2,
                "DelegateMin":2,"DelegateMax":5,"DelegateCur":4}]"#,
        )
        .expect("json");
        assert_eq!(v[0].name, "n1");
        assert_eq!(v[0].status, 1);
        assert_eq!(tag(&v[0], "role"), "consul");
    }

    #[test]
    fn standard_table_servers_first_then_by_name() {
        let ms = prepared(
            vec![
                member("zeta", "127.0.0.3", "node", 1),
                member("beta", "127.0.0.2", "consul", 4),
                member("alpha", "127.0.0.1", "node", 3),
                member("ghost", "::1", "", 1),
            ],
            ".*",
        );
        assert_eq!(
            render_standard(&ms),
            "Node   Address         Status  Type     Build   Protocol  DC   Partition  Segment\n\
             beta   127.0.0.2:8301  failed  server   1.21.0  2         dc1  default    <all>\n\
             alpha  127.0.0.1:8301  left    client   1.21.0  2         dc1  default    <default>\n\
             ghost  [::1]:8301      alive   unknown\n\
             zeta   127.0.0.3:8301  alive   client   1.21.0  2         dc1  default    <default>\n"
        );
    }

    #[test]
    fn missing_build_tag_reads_as_old() {
        let mut m = member("a", "10.0.0.1", "node", 1);
        m.tags.remove("build");
        let ms = prepared(vec![m], ".*");
        assert!(render_standard(&ms).contains("< 0.3"), "{}", render_standard(&ms));
    }

    #[test]
    fn status_filter_is_an_unanchored_regex() {
        let all = vec![
            member("a", "10.0.0.1", "node", 1),
            member("b", "10.0.0.2", "node", 4),
            member("c", "10.0.0.3", "node", 3),
        ];
        let names = |v: Vec<Member>| v.into_iter().map(|m| m.name).collect::<Vec<_>>();
        // "a.*e" is found inside "alive" and "failed", not "left".
        assert_eq!(names(prepared(all.clone(), "a.*e")), vec!["a", "b"]);
        assert_eq!(names(prepared(all.clone(), "^alive$")), vec!["a"]);
        assert_eq!(names(prepared(all.clone(), "(fail|left)")), vec!["b", "c"]);
        assert!(prepared(all, "leaving").is_empty(), "nothing matches: the command exits 2");
    }

    #[test]
    fn detailed_shows_sorted_tags_including_filled_ones() {
        let ms = prepared(vec![member("n1", "127.0.0.1", "consul", 1)], ".*");
        assert_eq!(
            render_detailed(&ms),
            "Node  Address         Status  Tags\n\
             n1    127.0.0.1:8301  alive   ap=default,build=1.21.0:consul-rs,dc=dc1,role=consul,segment=<all>,vsn=2\n"
        );
    }

    #[test]
    fn one_segment_asked_servers_show_their_own() {
        let mut ms = vec![member("s", "10.0.0.1", "consul", 1)];
        fill_tags(&mut ms, "");
        assert_eq!(tag(&ms[0], "segment"), "<default>");
    }

    /// The request: `?segment=_all` by default, `?wan=1` with -wan.
    #[tokio::test]
    async fn request_and_exit_codes() {
        let body = r#"[{"Name":"n1","Addr":"127.0.0.1","Port":8301,"Tags":{"role":"consul"},"Status":1}]"#;
        let server = crate::testserver::TestServer::start(vec![(200, body.into()), (200, body.into())]).await;
        let args = |line: &str| match crate::tests::parse(&format!("members -http-addr={} {line}", server.addr)) {
            Ok(crate::Cli { command: crate::Command::Members(a) }) => a,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(run(args("-wan")).await.expect("runs"), 0);
        assert_eq!(run(args("-status=failed")).await.expect("runs"), 2);
        assert_eq!(run(args("-status=(")).await.expect("runs"), 1, "a bad regex is refused before any request");
        let targets: Vec<String> = server.requests().await.into_iter().map(|r| r.target).collect();
        assert_eq!(targets, vec!["/v1/agent/members?segment=_all&wan=1", "/v1/agent/members?segment=_all"]);
    }
}
