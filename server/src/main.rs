//! `consul-rs`: the agent and the command-line client, with Consul's command names, flags and
//! output, so scripts and test harnesses written for `consul` work against it.
//!
//! Exit codes: 0 on success, 1 on any error (the message goes to stderr); `members` exits 2 when
//! `-status` leaves no member, as Consul's does.

mod acl_format;
mod api;
mod argv;
mod cmd_acl;
mod cmd_agent;
mod cmd_catalog;
mod cmd_debug;
mod cmd_event;
mod cmd_info;
mod cmd_join;
mod cmd_keygen;
mod cmd_keyring;
mod cmd_kv;
mod cmd_leave;
mod cmd_lock;
mod cmd_maint;
mod cmd_members;
mod cmd_monitor;
mod cmd_operator;
mod cmd_rtt;
mod cmd_services;
mod cmd_snapshot;
mod cmd_tls;
mod cmd_validate;
mod cmd_watch;
mod config_file;
mod heap_profile;
#[cfg(test)]
mod testserver;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

/// The command line, after [`argv::normalize`].
#[derive(Debug, Parser)]
#[command(name = "consul-rs", about = "A Consul-compatible agent and CLI", disable_version_flag = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an agent.
    Agent(Box<cmd_agent::AgentArgs>),
    /// Read and write the key/value store.
    #[command(subcommand)]
    Kv(cmd_kv::KvCommand),
    /// Cluster operations.
    #[command(subcommand)]
    Operator(cmd_operator::OperatorCommand),
    /// Save, restore and inspect snapshots.
    #[command(subcommand)]
    Snapshot(cmd_snapshot::SnapshotCommand),
    /// Print the version.
    Version(cmd_info::VersionArgs),
    /// Print the agent's debugging information.
    Info(cmd_info::InfoArgs),
    /// Run a command while holding a lock (or a semaphore slot with -n).
    Lock(Box<cmd_lock::LockArgs>),
    /// Register and deregister services with the local agent.
    #[command(subcommand)]
    Services(cmd_services::ServicesCommand),
    /// Query the catalog: datacenters, nodes, services.
    #[command(subcommand)]
    Catalog(cmd_catalog::CatalogCommand),
    /// Watch a view (keys, services, nodes, health) and print or handle each change.
    Watch(Box<cmd_watch::WatchArgs>),
    /// Put the node or a service in maintenance mode, or list maintenance.
    Maint(cmd_maint::MaintArgs),
    /// Ask the agent to reload its configuration.
    Reload(cmd_maint::ReloadArgs),
    /// Estimate the network round-trip time between two nodes.
    Rtt(cmd_rtt::RttArgs),
    /// List the members of the gossip pool.
    Members(cmd_members::MembersArgs),
    /// Stream the agent's log lines.
    Monitor(cmd_monitor::MonitorArgs),
    /// Collect a debug bundle (agent, members, host, metrics, logs) into a tar.gz.
    Debug(cmd_debug::DebugArgs),
    /// Tell the agent to join a cluster through one of its members.
    Join(cmd_join::JoinArgs),
    /// Leave the cluster gracefully and shut the agent down.
    Leave(cmd_leave::LeaveArgs),
    /// Force a member of the cluster into the "left" state.
    ForceLeave(cmd_leave::ForceLeaveArgs),
    /// Generate a new gossip encryption key.
    Keygen(cmd_keygen::KeygenArgs),
    /// List, install, use and remove gossip encryption keys.
    Keyring(Box<cmd_keyring::KeyringArgs>),
    /// Fire a user event.
    Event(cmd_event::EventArgs),
    /// Manage the ACL system: tokens, policies, roles, auth methods, binding rules.
    #[command(subcommand)]
    Acl(Box<cmd_acl::AclCommand>),
    /// Create a CA and agent TLS certificates signed by it.
    #[command(subcommand)]
    Tls(cmd_tls::TlsCommand),
    /// Check configuration files and directories without starting an agent.
    Validate(cmd_validate::ValidateArgs),
}

fn main() -> ExitCode {
    let args = match argv::normalize(std::env::args_os()) {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    let matches = match Cli::command().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) => return clap_exit(e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => return clap_exit(e),
    };
    match cli.command {
        Command::Version(a) => {
            return match cmd_info::version(&a) {
                Ok(out) => {
                    print!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            };
        }
        // No agent to talk to: no runtime either.
        Command::Keygen(a) => return ExitCode::from(cmd_keygen::run(a)),
        Command::Tls(c) => return ExitCode::from(cmd_tls::run(c)),
        Command::Validate(a) => return ExitCode::from(cmd_validate::run(&a)),
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Agent(a) => cmd_agent::run(*a, matches.subcommand_matches("agent")).await,
            Command::Kv(c) => cmd_kv::run(c).await.map(|()| 0),
            Command::Operator(c) => cmd_operator::run(c).await.map(|()| 0),
            Command::Snapshot(c) => cmd_snapshot::run(c).await.map(|()| 0),
            Command::Info(a) => cmd_info::info(a).await.map(|()| 0),
            Command::Lock(a) => cmd_lock::run(*a).await,
            Command::Services(c) => cmd_services::run(c).await.map(|()| 0),
            Command::Catalog(c) => cmd_catalog::run(c).await.map(|()| 0),
            Command::Watch(a) => cmd_watch::run(*a).await,
            Command::Maint(a) => cmd_maint::maint(a).await.map(|()| 0),
            Command::Reload(a) => cmd_maint::reload(a).await.map(|()| 0),
            Command::Rtt(a) => cmd_rtt::run(a).await,
            Command::Members(a) => cmd_members::run(a).await,
            Command::Monitor(a) => cmd_monitor::run(a).await,
            Command::Debug(a) => cmd_debug::run(a).await,
            Command::Join(a) => cmd_join::run(a).await,
            Command::Leave(a) => cmd_leave::leave(a).await,
            Command::ForceLeave(a) => cmd_leave::force_leave(a).await,
            Command::Keyring(a) => cmd_keyring::run(*a).await,
            Command::Event(a) => cmd_event::run(a).await,
            Command::Acl(c) => cmd_acl::run(*c).await.map(|()| 0),
            Command::Version(_) | Command::Keygen(_) | Command::Tls(_) | Command::Validate(_) => Ok(0),
        }
    });
    // Do not wait for stray tasks (a blocked stdin read, a lingering connection) at exit.
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(&e),
    }
}

/// Prints an error the way Consul does. Messages that already carry Consul's wording
/// (`Error! No key exists at: k`, `Error starting agent: …`) are printed as they are; others get
/// an `Error: ` prefix.
fn fail(e: &anyhow::Error) -> ExitCode {
    let msg = format!("{e:#}");
    if msg.starts_with("Error") || e.downcast_ref::<api::Verbatim>().is_some() {
        eprintln!("{msg}");
    } else {
        eprintln!("Error: {msg}");
    }
    ExitCode::from(1)
}

/// Help goes to stdout with status 0; usage errors to stderr with status 1 (Consul's, not clap's 2).
fn clap_exit(e: clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn parse(line: &str) -> Result<Cli, clap::Error> {
        let mut v = vec!["consul-rs".to_string()];
        v.extend(line.split_whitespace().map(str::to_string));
        let args = argv::normalize(v).expect("argv");
        let m = Cli::command().try_get_matches_from(&args)?;
        Cli::from_arg_matches(&m)
    }

    #[test]
    fn every_command_parses_in_go_flag_syntax() {
        for line in [
            "agent -dev",
            "agent -dev=true -server=false -dns-port -1 -retry-join a -retry-join=b -join c",
            "kv get -recurse -separator= -detailed -base64 -stale app/",
            "kv get -keys -separator / -http-addr 127.0.0.1:8500 -token t -datacenter dc2",
            "kv put -cas -modify-index 5 -flags=3 -base64 k dmFs",
            "kv put -acquire -session=abc k v",
            "kv put k -",
            "kv delete -recurse=true app",
            "kv delete -cas -modify-index=7 k",
            "kv export app/",
            "kv import -prefix=p @file.json",
            "operator raft list-peers -stale",
            "operator raft remove-peer -address=127.0.0.1:8300",
            "snapshot save -stale f.snap",
            "snapshot restore f.snap",
            "snapshot inspect f.snap",
            "version",
            "-version",
            "info -http-addr=http://127.0.0.1:8500",
            "lock -n 2 -name=x -timeout 5s -verbose -shell=false svc/lock echo -x hi",
            "services register -name web -tag a -tag=b -meta k=v -port 80 -address 10.0.0.1 -id w1",
            "services register a.json b.hcl",
            "services deregister -id w1",
            "catalog datacenters",
            "catalog nodes -service web -detailed -node-meta=rack=r1 -near _agent",
            "catalog services -node n1 -tags -node-meta a=b",
            "watch -type=key -key k",
            "watch -type service -service web -tag v1 -passingonly -stale cat > /tmp/x",
            "watch -type=checks -state=critical -shell=false /bin/handler arg",
            "maint -enable -service=web -reason=deploy",
            "maint",
            "reload",
            "rtt n1",
            "rtt -http-addr=127.0.0.1:8500 n1 n2",
            "rtt -wan n1.dc1",
            "members",
            "members -detailed -wan -status=alive -segment _all -http-addr 127.0.0.1:8500",
            "join 10.0.0.1",
            "join -wan 10.0.0.1 10.0.0.2:8302",
            "leave -token t",
            "force-leave -prune node1",
            "force-leave -wan=true node1",
            "keygen",
            "keyring -list",
            "keyring -list-primary -local-only -relay-factor=3",
            "keyring -install abc= -relay-factor 1",
            "keyring -use abc=",
            "keyring -remove=abc=",
            "event -name deploy",
            "event -name=deploy -node=web -service api -tag=v1 payload",
            "watch -type=event -name=deploy",
            "watch -type event cat",
            "acl bootstrap",
            "acl bootstrap -format=json secret.txt",
            "acl token create -description=d -policy-name=p -policy-id 0123 -role-name=r -service-identity=web:dc1 \
             -node-identity=n:dc1 -templated-policy=builtin/service -var=name:api -expires-ttl=1h -local -secret=s \
             -accessor=a -format=json -meta -token=root -token-file=/t -http-addr=127.0.0.1:1",
            "acl token read -accessor-id=abc -meta",
            "acl token read -self -expanded=false",
            "acl token update -accessor-id abc -append-policy-name p -merge-roles -description x",
            "acl token delete -id abc",
            "acl token list -format json",
            "acl token clone -accessor-id abc -description copy",
            "acl policy create -name p -rules @rules.hcl -valid-datacenter dc1 -valid-datacenter=dc2 -description d",
            "acl policy read -name p -meta",
            "acl policy update -id 12 -rules - -no-merge",
            "acl policy delete -name p",
            "acl policy list -meta=true",
            "acl role create -name r -policy-name p -service-identity web",
            "acl role read -id 12",
            "acl role update -id 12 -no-merge -node-identity n:dc1",
            "acl role delete -name r",
            "acl role list",
            "acl templated-policy list",
            "acl templated-policy read -name builtin/service -meta",
            "acl templated-policy preview -name builtin/service -var name:api",
            "acl auth-method create -type jwt -name m -max-token-ttl 10m -config @c.json",
            "acl auth-method update -name m -description d -no-merge",
            "acl auth-method read -name m",
            "acl auth-method delete -name m",
            "acl auth-method list",
            "acl binding-rule create -method m -bind-type service -bind-name web -selector x",
            "acl binding-rule update -id 1 -bind-name api",
            "acl binding-rule read -id 1",
            "acl binding-rule delete -id 1",
            "acl binding-rule list -method m",
            "acl set-agent-token agent abc",
            "acl translate-rules @legacy.hcl",
            "tls ca create",
            "tls ca create -days=30 -domain example -name-constraint -additional-name-constraint=a.b -common-name CA",
            "tls cert create -server -node n1 -dc dc2 -domain example -days 10 -ca ca.pem -key key.pem",
            "tls cert create -client -additional-dnsname a -additional-dnsname=b -additional-ipaddress 10.0.0.1",
            "tls cert create -cli",
        ] {
            if let Err(e) = parse(line) {
                panic!("{line}: {e}");
            }
        }
    }

    #[test]
    fn positionals_after_flags_keep_dashes() {
        let Ok(Cli { command: Command::Kv(c) }) = parse("kv put -flags 1 key -value") else {
            panic!("parse failed");
        };
        let text = format!("{c:?}");
        assert!(text.contains("\"-value\""), "{text}");
    }

    #[test]
    fn acl_flags_land_where_consul_puts_them() {
        let Ok(Cli { command: Command::Acl(c) }) =
            parse("acl token create -local -meta -policy-name a -policy-name=b -service-identity web:dc1,dc2 -token t")
        else {
            panic!("parse failed");
        };
        let text = format!("{c:?}");
        for want in ["local: true", "meta: true", "[\"a\", \"b\"]", "web:dc1,dc2", "token: Some(\"t\")"] {
            assert!(text.contains(want), "{want} in {text}");
        }
        // -meta is a value flag outside acl (services register -meta k=v), a boolean inside.
        assert!(parse("services register -name web -meta k=v").is_ok());
        assert!(parse("acl policy list -meta -format json").is_ok());
        assert!(parse("acl token create -bogus").is_err());
    }

    #[test]
    fn go_semantics_reject_flags_after_positionals() {
        assert!(parse("kv get key -recurse").is_err());
        assert!(parse("agent -bogus-flag").is_err());
        assert!(parse("kv").is_err());
    }
}
