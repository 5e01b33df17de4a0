//! `consul-rs lock [options] PREFIX CHILD...`: runs CHILD only while holding a lock (or, with
//! `-n N`, one of N semaphore slots) under PREFIX, like `consul lock`.
//!
//! The lock follows Consul's `api/lock.go`: a session with a 15 s TTL renewed every TTL/2, the
//! key `PREFIX/.lock` acquired with that session and flagged `LockFlagValue`, waits done with
//! blocking queries on the key. The semaphore follows `api/semaphore.go`: each contender holds
//! `PREFIX/<session>`, and `PREFIX/.lock` holds `{"Limit":N,"Holders":{...}}`, updated by
//! check-and-set, with holders whose contender key lost its session pruned. If the lock is lost
//! while the child runs, the child gets SIGTERM, then SIGKILL after 5 s.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::{ArgAction, Args};
use consul_sdk::lock::LOCK_FLAG;
use consul_sdk::options::duration::parse_go_duration;
use consul_sdk::{Consistency, ErrorCode, Lock, LockOptions};

use crate::api::{Client, ClientFlags};

/// Session TTL (`api.DefaultLockSessionTTL`).
const SESSION_TTL: Duration = Duration::from_secs(15);
/// Pause after a failed acquire, e.g. during a lock-delay (`api.DefaultLockRetryTime`).
const RETRY: Duration = Duration::from_secs(5);
/// Grace between SIGTERM and SIGKILL for the child.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// `lock` flags.
#[derive(Debug, Args)]
pub(crate) struct LockArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// Maximum number of holders: above 1 a semaphore is used instead of a lock.
    #[arg(long = "n", default_value_t = 1)]
    limit: u32,
    /// Session name (default: derived from the child and the prefix).
    #[arg(long)]
    name: Option<String>,
    /// Give up acquiring after this long (Go duration; 0: wait forever).
    #[arg(long, default_value = "0s")]
    timeout: String,
    /// Transient errors tolerated while monitoring the lock, 1 s apart.
    #[arg(long = "monitor-retry", default_value_t = 3)]
    monitor_retry: u32,
    /// Run the child through $SHELL -c (default /bin/sh); false: execute it directly.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    shell: bool,
    /// Exit 2 if the child exits with an error (otherwise its status is not propagated).
    #[arg(long = "child-exit-code", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    child_exit_code: bool,
    /// Pass this command's stdin to the child.
    #[arg(long = "pass-stdin", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pass_stdin: bool,
    /// Print what the lock is doing.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    verbose: bool,
    /// The KV prefix to lock under.
    prefix: String,
    /// The command to run while holding the lock.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    child: Vec<String>,
}

/// The SDK lock options for Consul's recipes: `LockFlagValue` on the key, consistent reads,
/// a 5 s retry pause, the key removed on release, loss watched with blocking reads.
fn lock_options(a: &LockArgs, name: String, timeout: Duration) -> LockOptions {
    LockOptions {
        ttl: SESSION_TTL,
        wait: (!timeout.is_zero()).then_some(timeout),
        session_name: name,
        limit: a.limit,
        flags: LOCK_FLAG,
        consistency: Consistency::Consistent,
        retry: RETRY,
        monitor_retries: Some(a.monitor_retry),
        cleanup: true,
        ..LockOptions::default()
    }
}

fn log(verbose: bool, msg: &str) {
    if verbose {
        eprintln!("{msg}");
    }
}

/// Sends `signal` to the child's process group.
fn signal_group(pid: u32, signal: &str) {
    let _ = std::process::Command::new("kill").arg(format!("-{signal}")).arg("--").arg(format!("-{pid}")).status();
}

/// Runs the command; returns the exit status.
pub(crate) async fn run(a: LockArgs) -> Result<u8> {
    if a.limit == 0 {
        bail!("Lock holder limit must be positive");
    }
    let timeout = parse_go_duration(&a.timeout).map_err(|e| anyhow!("invalid -timeout {:?}: {e}", a.timeout))?;
    let prefix = a.prefix.trim_start_matches('/').to_string();
    if prefix.is_empty() {
        bail!("Missing the lock prefix");
    }
    let client = Client::new(&a.client)?;
    let sdk = client.sdk();
    let name = a.name.clone().unwrap_or_else(|| format!("Consul lock for '{}' at '{}'", a.child.join(" "), prefix));
    let opts = lock_options(&a, name, timeout);
    let session = Lock::create_session(sdk, &prefix, &opts)
        .await
        .map_err(|e| anyhow!("failed to create the lock session: {}", e.message))?;

    log(a.verbose, "Attempting lock acquisition");
    let acquired = tokio::select! {
        r = Lock::acquire_with_session(sdk, &prefix, session.clone(), opts.clone()) => Some(r),
        _ = shutdown_signal() => None,
    };
    let lock = match acquired {
        Some(Ok(lock)) => lock,
        Some(Err(e)) if e.code != ErrorCode::Timeout => {
            // The SDK gave up the session and whatever it had taken already.
            bail!("Lock acquisition failed: {}", e.message);
        }
        _ => {
            let _ = Lock::abandon(sdk, &prefix, &session, &opts).await;
            bail!("Shutdown triggered or timeout during lock acquisition");
        }
    };

    log(a.verbose, "Starting handler");
    let mut cmd = if a.shell {
        let shell = std::env::var("SHELL").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".to_string());
        let mut c = tokio::process::Command::new(shell);
        c.arg("-c").arg(a.child.join(" "));
        c
    } else {
        let mut c = tokio::process::Command::new(&a.child[0]);
        c.args(&a.child[1..]);
        c
    };
    cmd.env("CONSUL_LOCK_HELD", "true").process_group(0);
    if !a.pass_stdin {
        cmd.stdin(std::process::Stdio::null());
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = lock.release().await;
            bail!("Error executing handler: {e}");
        }
    };
    let pid = child.id().unwrap_or(0);

    // The SDK lock counts as lost when its session vanishes or (monitor_retries) when a
    // blocking read shows another holder.
    let mut lost = false;
    let status = tokio::select! {
        s = child.wait() => Some(s),
        _ = lock.lost() => { lost = true; None }
        _ = shutdown_signal() => None,
    };
    let status = match status {
        Some(s) => s.ok(),
        None => {
            if lost {
                eprintln!("Lock lost, killing child");
            }
            signal_group(pid, "TERM");
            match tokio::time::timeout(KILL_GRACE, child.wait()).await {
                Ok(s) => s.ok(),
                Err(_) => {
                    signal_group(pid, "KILL");
                    child.wait().await.ok()
                }
            }
        }
    };
    let _ = lock.release().await;
    log(a.verbose, "Cleanup succeeded");
    if lost {
        return Ok(1);
    }
    let failed = status.is_none_or(|s| !s.success());
    Ok(if failed && a.child_exit_code { 2 } else { 0 })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_follow_consuls_recipe() {
        let a = match crate::tests::parse("lock -n 3 -monitor-retry=5 svc/lock true") {
            Ok(crate::Cli { command: crate::Command::Lock(a) }) => *a,
            other => panic!("{other:?}"),
        };
        let o = lock_options(&a, "n".into(), Duration::ZERO);
        assert_eq!((o.limit, o.flags, o.wait, o.monitor_retries), (3, LOCK_FLAG, None, Some(5)));
        assert_eq!(o.consistency, Consistency::Consistent);
    }
}
