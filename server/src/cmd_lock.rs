//! `consul-rs lock [options] PREFIX CHILD...`: runs CHILD only while holding a lock (or, with
//! `-n N`, one of N semaphore slots) under PREFIX, like `consul lock`.
//!
//! The lock follows Consul's `api/lock.go`: a session with a 15 s TTL renewed every TTL/2, the
//! key `PREFIX/.lock` acquired with that session and flagged `LockFlagValue`, waits done with
//! blocking queries on the key. The semaphore follows `api/semaphore.go`: each contender holds
//! `PREFIX/<session>`, and `PREFIX/.lock` holds `{"Limit":N,"Holders":{...}}`, updated by
//! check-and-set, with holders whose contender key lost its session pruned. If the lock is lost
//! while the child runs, the child gets SIGTERM, then SIGKILL after 5 s.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use clap::{ArgAction, Args};
use consul_core::duration::parse_go_duration;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::http_client::{escape, kv_path, Client, ClientFlags};

/// `api.LockFlagValue`: marks a key as used by a lock.
const LOCK_FLAG: u64 = 0x2ddc_cbc0_58a5_0c18;
/// `api.SemaphoreFlagValue`: marks keys as used by a semaphore.
const SEMAPHORE_FLAG: u64 = 0xe0f6_9a2b_aa41_4de0;
/// Session TTL (`api.DefaultLockSessionTTL`).
const SESSION_TTL: Duration = Duration::from_secs(15);
/// Longest single blocking wait (`api.DefaultLockWaitTime`).
const WAIT: Duration = Duration::from_secs(15);
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

/// The semaphore's coordination value (`api.semaphoreLock`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SemaphoreValue {
    #[serde(rename = "Limit")]
    limit: u32,
    #[serde(rename = "Holders", default)]
    holders: BTreeMap<String, bool>,
}

/// One KV pair as the lock needs it.
#[derive(Debug, Clone)]
struct Pair {
    key: String,
    flags: u64,
    value: Vec<u8>,
    session: Option<String>,
    modify_index: u64,
}

fn parse_pair(v: &Value) -> Option<Pair> {
    let value = match v.get("Value").and_then(Value::as_str) {
        Some(s) => B64.decode(s).ok()?,
        None => Vec::new(),
    };
    Some(Pair {
        key: v.get("Key")?.as_str()?.to_string(),
        flags: v.get("Flags").and_then(Value::as_u64).unwrap_or(0),
        value,
        session: v.get("Session").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string),
        modify_index: v.get("ModifyIndex").and_then(Value::as_u64).unwrap_or(0),
    })
}

fn go_ms(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// A lock or semaphore session on one agent.
#[derive(Debug, Clone)]
struct Locker {
    client: Client,
    session: String,
    prefix: String,
    limit: u32,
    verbose: bool,
}

impl Locker {
    fn log(&self, msg: &str) {
        if self.verbose {
            eprintln!("{msg}");
        }
    }

    fn lock_key(&self) -> String {
        join(&self.prefix, ".lock")
    }

    fn contender_key(&self) -> String {
        join(&self.prefix, &self.session)
    }

    /// A (blocking, when `index` > 0) read of `key` or, with `recurse`, of everything under it.
    async fn get(&self, key: &str, recurse: bool, index: u64, wait: Duration) -> Result<(u64, Vec<Pair>)> {
        let mut q: Vec<(&str, Option<String>)> = vec![("consistent", None)];
        if recurse {
            q.push(("recurse", None));
        }
        if index > 0 {
            q.push(("index", Some(index.to_string())));
            q.push(("wait", Some(go_ms(wait))));
        }
        let resp = self.client.send(Method::GET, &kv_path(key), &q, None).await?;
        let idx = resp.index.unwrap_or(0);
        if resp.status == StatusCode::NOT_FOUND {
            return Ok((idx, Vec::new()));
        }
        let resp = crate::http_client::check(resp)?;
        let pairs = resp.json()?.as_array().map(|a| a.iter().filter_map(parse_pair).collect()).unwrap_or_default();
        Ok((idx, pairs))
    }

    /// `PUT /v1/kv/key` with query flags; the `true`/`false` answer.
    async fn put(&self, key: &str, query: &[(&str, Option<String>)], body: Vec<u8>) -> Result<bool> {
        let resp = self.client.call(Method::PUT, &kv_path(key), query, Some(body)).await?;
        Ok(resp.json()?.as_bool().unwrap_or(false))
    }

    /// Waits until the lock (or a semaphore slot) is held, or `deadline` passes (`false`).
    async fn acquire(&self, deadline: Option<Instant>) -> Result<bool> {
        if self.limit > 1 {
            return self.acquire_semaphore(deadline).await;
        }
        let key = self.lock_key();
        let mut index = 0;
        loop {
            let Some(wait) = remaining(deadline) else { return Ok(false) };
            let (idx, pairs) = self.get(&key, false, index, wait).await?;
            index = if idx < index { 0 } else { idx };
            if let Some(p) = pairs.first() {
                if p.flags != LOCK_FLAG {
                    bail!("Existing key does not match lock use");
                }
                if p.session.is_some() && p.session.as_deref() != Some(self.session.as_str()) {
                    continue;
                }
            }
            let acquire = [("acquire", Some(self.session.clone())), ("flags", Some(LOCK_FLAG.to_string()))];
            if self.put(&key, &acquire, Vec::new()).await? {
                return Ok(true);
            }
            // Lost a race, or a lock-delay is running: wait for a change, at most RETRY.
            let Some(wait) = remaining(deadline) else { return Ok(false) };
            let (idx, _) = self.get(&key, false, index.max(1), wait.min(RETRY)).await?;
            index = idx;
        }
    }

    async fn acquire_semaphore(&self, deadline: Option<Instant>) -> Result<bool> {
        let contender = [("acquire", Some(self.session.clone())), ("flags", Some(SEMAPHORE_FLAG.to_string()))];
        if !self.put(&self.contender_key(), &contender, Vec::new()).await? {
            bail!("failed to make contender entry {}", self.contender_key());
        }
        let lock_key = self.lock_key();
        let mut index = 0;
        loop {
            let Some(wait) = remaining(deadline) else { return Ok(false) };
            let (idx, pairs) = self.get(&join(&self.prefix, ""), true, index, wait).await?;
            index = if idx < index { 0 } else { idx };
            let lock_pair = pairs.iter().find(|p| p.key == lock_key);
            let mut lock = self.decode(lock_pair)?;
            // Prune holders whose contender key no longer has a live session.
            let alive: Vec<&str> = pairs.iter().filter_map(|p| p.session.as_deref()).collect();
            lock.holders.retain(|s, _| alive.contains(&s.as_str()));
            if lock.holders.len() >= self.limit as usize && !lock.holders.contains_key(&self.session) {
                continue;
            }
            lock.holders.insert(self.session.clone(), true);
            let cas = lock_pair.map(|p| p.modify_index).unwrap_or(0);
            let query = [("cas", Some(cas.to_string())), ("flags", Some(SEMAPHORE_FLAG.to_string()))];
            if self.put(&lock_key, &query, serde_json::to_vec(&lock)?).await? {
                return Ok(true);
            }
        }
    }

    fn decode(&self, pair: Option<&Pair>) -> Result<SemaphoreValue> {
        let Some(p) = pair else {
            return Ok(SemaphoreValue { limit: self.limit, holders: BTreeMap::new() });
        };
        if p.flags != SEMAPHORE_FLAG {
            bail!("Existing key does not match semaphore use");
        }
        let lock: SemaphoreValue =
            serde_json::from_slice(&p.value).context("the semaphore's .lock key holds invalid JSON")?;
        if lock.limit != self.limit {
            bail!("Semaphore limit conflict (lock: {}, local: {})", lock.limit, self.limit);
        }
        Ok(lock)
    }

    /// Whether a fresh read still shows this session holding the lock or a slot.
    fn holds(&self, pairs: &[Pair]) -> bool {
        let Some(p) = pairs.first() else { return false };
        if self.limit > 1 {
            return self.decode(Some(p)).is_ok_and(|l| l.holders.contains_key(&self.session));
        }
        p.session.as_deref() == Some(self.session.as_str())
    }

    /// Watches the lock with blocking consistent reads; returns when it is lost.
    async fn monitor(&self, retries: u32) {
        let key = self.lock_key();
        let mut index = 0;
        let mut left = retries;
        loop {
            match self.get(&key, false, index, WAIT).await {
                Ok((idx, pairs)) => {
                    left = retries;
                    if !self.holds(&pairs) {
                        return;
                    }
                    index = if idx < index { 0 } else { idx };
                }
                Err(e) if left > 0 => {
                    left -= 1;
                    self.log(&format!("Lock monitor error (retrying): {e:#}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(_) => return,
            }
        }
    }

    /// Gives up the lock or slot, tidies the keys, and destroys the session.
    async fn release(&self) {
        if self.limit > 1 {
            let lock_key = self.lock_key();
            for _ in 0..10 {
                let Ok((_, pairs)) = self.get(&lock_key, false, 0, WAIT).await else { break };
                let Some(p) = pairs.first() else { break };
                let Ok(mut lock) = self.decode(Some(p)) else { break };
                if lock.holders.remove(&self.session).is_none() {
                    break;
                }
                let Ok(body) = serde_json::to_vec(&lock) else { break };
                let q = [("cas", Some(p.modify_index.to_string())), ("flags", Some(SEMAPHORE_FLAG.to_string()))];
                if self.put(&lock_key, &q, body).await.unwrap_or(false) {
                    break;
                }
            }
            let _ = self.client.send(Method::DELETE, &kv_path(&self.contender_key()), &[], None).await;
        } else {
            let key = self.lock_key();
            let q = [("release", Some(self.session.clone())), ("flags", Some(LOCK_FLAG.to_string()))];
            let _ = self.put(&key, &q, Vec::new()).await;
            // Like the Go client's Destroy: remove the key if nobody else took it meanwhile.
            if let Ok((_, pairs)) = self.get(&key, false, 0, WAIT).await {
                if let Some(p) = pairs.first().filter(|p| p.session.is_none() && p.flags == LOCK_FLAG) {
                    let cas = [("cas", Some(p.modify_index.to_string()))];
                    let _ = self.client.send(Method::DELETE, &kv_path(&key), &cas, None).await;
                }
            }
        }
        let path = format!("/v1/session/destroy/{}", escape(&self.session, false));
        let _ = self.client.send(Method::PUT, &path, &[], None).await;
    }
}

/// `path.Join(prefix, name)` for KV keys.
fn join(prefix: &str, name: &str) -> String {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        name.to_string()
    } else {
        format!("{p}/{name}")
    }
}

/// Time left before `deadline`, capped at one blocking wait; `None` once it passed.
fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        None => Some(WAIT),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| left.min(WAIT))
        }
    }
}

async fn create_session(client: &Client, name: &str) -> Result<String> {
    let body = json!({ "Name": name, "TTL": format!("{}s", SESSION_TTL.as_secs()), "Behavior": "release" });
    let resp = client
        .call(Method::PUT, "/v1/session/create", &[], Some(body.to_string().into_bytes()))
        .await
        .context("failed to create the lock session")?;
    let v = resp.json()?;
    v.get("ID").and_then(Value::as_str).map(str::to_string).ok_or_else(|| anyhow!("session create returned no ID"))
}

/// Renews the session every TTL/2 until it is gone (then marks the lock lost).
async fn renew_periodically(client: Client, session: String, lost: watch::Sender<bool>) {
    let path = format!("/v1/session/renew/{}", escape(&session, false));
    loop {
        tokio::time::sleep(SESSION_TTL / 2).await;
        match client.send(Method::PUT, &path, &[], None).await {
            Ok(r) if r.status == StatusCode::NOT_FOUND => {
                let _ = lost.send(true);
                return;
            }
            // Transient errors: the session survives 2 × TTL, so try again next period.
            _ => {}
        }
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
    let name = a.name.clone().unwrap_or_else(|| format!("Consul lock for '{}' at '{}'", a.child.join(" "), prefix));
    let session = create_session(&client, &name).await?;
    let locker =
        Locker { client: client.clone(), session: session.clone(), prefix, limit: a.limit, verbose: a.verbose };
    let (lost_tx, mut lost_rx) = watch::channel(false);
    let renewer = tokio::spawn(renew_periodically(client.clone(), session.clone(), lost_tx.clone()));

    locker.log("Attempting lock acquisition");
    let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
    let acquired = tokio::select! {
        r = locker.acquire(deadline) => r,
        _ = shutdown_signal() => Ok(false),
    };
    let acquired = match acquired {
        Ok(b) => b,
        Err(e) => {
            renewer.abort();
            locker.release().await;
            return Err(e.context("Lock acquisition failed"));
        }
    };
    if !acquired {
        renewer.abort();
        locker.release().await;
        bail!("Shutdown triggered or timeout during lock acquisition");
    }

    locker.log("Starting handler");
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
            renewer.abort();
            locker.release().await;
            bail!("Error executing handler: {e}");
        }
    };
    let pid = child.id().unwrap_or(0);

    let monitor = {
        let tx = lost_tx.clone();
        let watcher = locker.clone();
        let retries = a.monitor_retry;
        tokio::spawn(async move {
            watcher.monitor(retries).await;
            let _ = tx.send(true);
        })
    };
    let mut lost = false;
    let status = tokio::select! {
        s = child.wait() => Some(s),
        _ = lost_rx.wait_for(|l| *l) => { lost = true; None }
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
    renewer.abort();
    monitor.abort();
    locker.release().await;
    locker.log("Cleanup succeeded");
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
    fn keys_join_like_go_path_join() {
        assert_eq!(join("svc/lock/", ".lock"), "svc/lock/.lock");
        assert_eq!(join("svc", "abc"), "svc/abc");
    }

    #[test]
    fn semaphore_value_round_trips() {
        let v: SemaphoreValue = serde_json::from_str(r#"{"Limit":2,"Holders":{"a":true}}"#).expect("decode");
        assert_eq!((v.limit, v.holders.len()), (2, 1));
        let text = serde_json::to_string(&v).expect("encode");
        assert_eq!(text, r#"{"Limit":2,"Holders":{"a":true}}"#);
    }
}
