//! Turns Consul's Go-`flag` style command lines into something clap parses.
//!
//! Consul (and every tool or test harness written against it) passes long flags with a single
//! dash (`-data-dir=D`, `-node n1`), which clap does not support. Go's `flag` package also stops
//! at the first non-flag argument, so `consul kv put key -value` stores the value `-value`.
//!
//! [`normalize`] rewrites the command line so that, after the subcommand path:
//! - every flag becomes `--name=value` or `--name` (a boolean flag), whichever dash form and
//!   whichever value form (`=value` or a separate word) it was given in;
//! - the first non-flag argument and everything after it are placed behind `--`, so clap never
//!   mistakes a positional that starts with a dash for a flag.
//!
//! Joining a value flag with its value (`--name=value`) matters for values that begin with a dash
//! (`-dns-port -1`), which clap would otherwise read as another flag.

/// Flags that take no value: `-dev` means `-dev=true`. Go's boolean flags never consume the next
/// word, so `-server false` is the flag followed by a positional, exactly as Consul reads it.
const BOOL_FLAGS: &[&str] = &[
    "dev",
    "server",
    "bootstrap",
    "ui",
    "log-json",
    "recurse",
    "keys",
    "cas",
    "detailed",
    "base64",
    "stale",
    "enable-script-checks",
    "enable-local-script-checks",
    "disable-host-node-id",
    "acquire",
    "release",
    "verbose",
    "shell",
    "child-exit-code",
    "pass-stdin",
    "tags",
    "passingonly",
    "enable",
    "disable",
    "wan",
    "list",
    "list-primary",
    "local-only",
    "prune",
    "quiet",
    "archive",
    "cleanup-dead-servers",
    "disable-upgrade-migration",
    "all-datacenters",
];

/// Boolean flags of the `acl` commands only: elsewhere `-meta` takes a value
/// (`services register -meta k=v`).
const ACL_BOOL_FLAGS: &[&str] = &[
    "local",
    "meta",
    "self",
    "expanded",
    "no-merge",
    "merge-policies",
    "merge-roles",
    "merge-service-identities",
    "merge-node-identities",
];

/// Boolean flags of the `tls` commands only: elsewhere `-client` takes a value
/// (`agent -client 127.0.0.1`).
const TLS_BOOL_FLAGS: &[&str] = &["client", "cli", "name-constraint"];

/// The command tree: a word is a subcommand only where this tree says so; everything below a
/// leaf is flags and positionals.
struct Node {
    name: &'static str,
    children: &'static [Node],
}

const fn leaf(name: &'static str) -> Node {
    Node { name, children: &[] }
}

const COMMANDS: &[Node] = &[
    leaf("agent"),
    leaf("version"),
    leaf("info"),
    leaf("lock"),
    Node { name: "kv", children: &[leaf("get"), leaf("put"), leaf("delete"), leaf("export"), leaf("import")] },
    Node {
        name: "operator",
        children: &[
            Node { name: "raft", children: &[leaf("list-peers"), leaf("remove-peer"), leaf("transfer-leader")] },
            Node { name: "autopilot", children: &[leaf("get-config"), leaf("set-config"), leaf("state")] },
            Node { name: "usage", children: &[leaf("instances")] },
        ],
    },
    Node { name: "snapshot", children: &[leaf("save"), leaf("restore"), leaf("inspect")] },
    Node { name: "services", children: &[leaf("register"), leaf("deregister")] },
    Node { name: "catalog", children: &[leaf("datacenters"), leaf("nodes"), leaf("services")] },
    leaf("watch"),
    leaf("maint"),
    leaf("reload"),
    leaf("rtt"),
    leaf("members"),
    leaf("monitor"),
    leaf("debug"),
    leaf("join"),
    leaf("leave"),
    leaf("force-leave"),
    leaf("keygen"),
    leaf("validate"),
    leaf("keyring"),
    leaf("event"),
    Node {
        name: "acl",
        children: &[
            leaf("bootstrap"),
            Node {
                name: "token",
                children: &[leaf("create"), leaf("read"), leaf("update"), leaf("delete"), leaf("list"), leaf("clone")],
            },
            Node {
                name: "policy",
                children: &[leaf("create"), leaf("read"), leaf("update"), leaf("delete"), leaf("list")],
            },
            Node {
                name: "role",
                children: &[leaf("create"), leaf("read"), leaf("update"), leaf("delete"), leaf("list")],
            },
            Node { name: "templated-policy", children: &[leaf("list"), leaf("read"), leaf("preview")] },
            Node {
                name: "auth-method",
                children: &[leaf("create"), leaf("read"), leaf("update"), leaf("delete"), leaf("list")],
            },
            Node {
                name: "binding-rule",
                children: &[leaf("create"), leaf("read"), leaf("update"), leaf("delete"), leaf("list")],
            },
            leaf("set-agent-token"),
            leaf("translate-rules"),
        ],
    },
    Node {
        name: "tls",
        children: &[
            Node { name: "ca", children: &[leaf("create")] },
            Node { name: "cert", children: &[leaf("create")] },
        ],
    },
];

/// Whether `name` (without dashes) is a flag that takes no value.
pub(crate) fn is_bool_flag(name: &str) -> bool {
    BOOL_FLAGS.contains(&name)
}

/// Rewrites a full command line (program name first) as described in the module docs.
///
/// Non-UTF-8 arguments are rejected: every flag value and key we handle is text.
pub(crate) fn normalize<I, S>(args: I) -> anyhow::Result<Vec<String>>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString>,
{
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.into().into_string().map_err(|bad| anyhow::anyhow!("argument {bad:?} is not valid UTF-8")))
        .collect::<Result<_, _>>()?;
    Ok(normalize_strings(args))
}

fn normalize_strings(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len() + 1);
    let mut rest = args.into_iter();
    if let Some(program) = rest.next() {
        out.push(program);
    }
    let mut rest: Vec<String> = rest.collect();

    // `consul -v` / `consul -version` print the version like `consul version` does.
    if let Some(first) = rest.first() {
        if matches!(first.as_str(), "-v" | "-version" | "--version") {
            rest[0] = "version".to_string();
        }
    }

    let in_acl = rest.first().map(String::as_str) == Some("acl");
    let in_tls = rest.first().map(String::as_str) == Some("tls");
    let mut i = 0;
    let mut level: &[Node] = COMMANDS;
    let mut at_leaf = false;
    while i < rest.len() {
        let Some(node) = level.iter().find(|n| n.name == rest[i]) else {
            break;
        };
        out.push(rest[i].clone());
        i += 1;
        if node.children.is_empty() {
            at_leaf = true;
            break;
        }
        level = node.children;
    }

    if !at_leaf {
        // An incomplete or unknown command: let clap report it, but still honour `-help`.
        out.extend(rest[i..].iter().map(|a| match a.as_str() {
            "-h" | "-help" | "--help" => "--help".to_string(),
            _ => a.clone(),
        }));
        return out;
    }

    let mut positionals: Vec<String> = Vec::new();
    while i < rest.len() {
        let arg = &rest[i];
        i += 1;
        if arg == "--" {
            positionals.extend(rest[i..].iter().cloned());
            break;
        }
        // A lone `-` (stdin) and anything not starting with a dash ends the flags, as in Go.
        if arg == "-" || !arg.starts_with('-') {
            positionals.push(arg.clone());
            positionals.extend(rest[i..].iter().cloned());
            break;
        }
        let body = arg.strip_prefix("--").unwrap_or_else(|| &arg[1..]);
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            // Go rejects these ("bad flag syntax"); pass through so clap reports it.
            out.push(arg.clone());
            continue;
        }
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        if name == "h" || name == "help" {
            out.push("--help".to_string());
        } else if is_bool_flag(name)
            || (in_acl && ACL_BOOL_FLAGS.contains(&name))
            || (in_tls && TLS_BOOL_FLAGS.contains(&name))
        {
            match value {
                Some(v) => out.push(format!("--{name}={v}")),
                None => out.push(format!("--{name}")),
            }
        } else if let Some(v) = value {
            out.push(format!("--{name}={v}"));
        } else if i < rest.len() {
            out.push(format!("--{name}={}", rest[i]));
            i += 1;
        } else {
            // Missing value: clap says so with the flag's name.
            out.push(format!("--{name}"));
        }
    }
    if !positionals.is_empty() {
        out.push("--".to_string());
        out.extend(positionals);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(line: &str) -> Vec<String> {
        let mut v = vec!["consul-rs".to_string()];
        v.extend(line.split_whitespace().map(str::to_string));
        normalize_strings(v)
    }

    fn joined(line: &str) -> String {
        norm(line)[1..].join(" ")
    }

    #[test]
    fn harness_style_space_separated() {
        assert_eq!(
            joined(
                "agent -node n1 -datacenter dc1 -bind 127.0.0.1 -client 127.0.0.1 -bootstrap \
                 -server -config-file F -data-dir D -pid-file P"
            ),
            "agent --node=n1 --datacenter=dc1 --bind=127.0.0.1 --client=127.0.0.1 --bootstrap \
             --server --config-file=F --data-dir=D --pid-file=P"
        );
    }

    #[test]
    fn harness_style_equals() {
        assert_eq!(
            joined("agent -dev -client=127.0.0.1 -config-dir=C -data-dir=D -log-level trace"),
            "agent --dev --client=127.0.0.1 --config-dir=C --data-dir=D --log-level=trace"
        );
    }

    #[test]
    fn double_dash_forms_and_bool_values() {
        assert_eq!(
            joined("agent --dev=true --server=false --node x --http-port=0"),
            "agent --dev=true --server=false --node=x --http-port=0"
        );
    }

    #[test]
    fn negative_values_are_joined() {
        assert_eq!(joined("agent -dns-port -1"), "agent --dns-port=-1");
    }

    #[test]
    fn positionals_stop_flag_parsing() {
        assert_eq!(joined("kv put -flags 5 foo -bar"), "kv put --flags=5 -- foo -bar");
        assert_eq!(joined("kv put foo -"), "kv put -- foo -");
        assert_eq!(joined("kv get -recurse -separator=/ app/"), "kv get --recurse --separator=/ -- app/");
        assert_eq!(joined("kv get -- -weird"), "kv get -- -weird");
    }

    #[test]
    fn nested_commands() {
        assert_eq!(joined("operator raft remove-peer -id abc"), "operator raft remove-peer --id=abc");
        assert_eq!(
            joined("operator autopilot set-config -cleanup-dead-servers=false -min-quorum 3"),
            "operator autopilot set-config --cleanup-dead-servers=false --min-quorum=3"
        );
        assert_eq!(joined("operator raft transfer-leader -id x"), "operator raft transfer-leader --id=x");
        assert_eq!(joined("snapshot save -stale f.snap"), "snapshot save --stale -- f.snap");
    }

    #[test]
    fn help_and_version() {
        assert_eq!(joined("kv -h"), "kv --help");
        assert_eq!(joined("agent -help"), "agent --help");
        assert_eq!(joined("-v"), "version");
        assert_eq!(joined("bogus -x"), "bogus -x");
    }

    #[test]
    fn gossip_commands() {
        assert_eq!(joined("members -detailed -status failed"), "members --detailed --status=failed");
        assert_eq!(joined("join -wan 10.0.0.1 10.0.0.2"), "join --wan -- 10.0.0.1 10.0.0.2");
        assert_eq!(joined("force-leave -prune n1"), "force-leave --prune -- n1");
        assert_eq!(joined("keyring -list -relay-factor 2"), "keyring --list --relay-factor=2");
        assert_eq!(joined("keyring -install +k/ey= -local-only"), "keyring --install=+k/ey= --local-only");
        assert_eq!(joined("event -name deploy -node ^web -- -payload"), "event --name=deploy --node=^web -- -payload");
        assert_eq!(joined("watch -type event -name deploy"), "watch --type=event --name=deploy");
    }

    #[test]
    fn acl_commands() {
        assert_eq!(
            joined("acl token create -local -meta -policy-name p -format json"),
            "acl token create --local --meta --policy-name=p --format=json"
        );
        assert_eq!(joined("acl set-agent-token agent s3cr3t"), "acl set-agent-token -- agent s3cr3t");
        assert_eq!(joined("services register -meta k=v"), "services register --meta=k=v");
        assert_eq!(
            joined("acl policy update -id x -no-merge -rules -"),
            "acl policy update --id=x --no-merge --rules=-"
        );
    }

    #[test]
    fn tls_commands() {
        assert_eq!(
            joined("tls cert create -client -dc dc2 -additional-dnsname a -cli=false"),
            "tls cert create --client --dc=dc2 --additional-dnsname=a --cli=false"
        );
        assert_eq!(joined("tls ca create -name-constraint -days -1"), "tls ca create --name-constraint --days=-1");
        // Outside tls, -client still takes a value.
        assert_eq!(joined("agent -client 127.0.0.1"), "agent --client=127.0.0.1");
    }

    #[test]
    fn missing_value_left_for_clap() {
        assert_eq!(joined("agent -node"), "agent --node");
    }

    #[test]
    fn rejects_non_utf8() {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            let bad = std::ffi::OsString::from_vec(vec![0xff, 0xfe]);
            assert!(normalize(vec![std::ffi::OsString::from("x"), bad]).is_err());
        }
    }
}
