//! Locks, semaphores and (in [`crate::election`]) leader election on sessions, following
//! Consul's recipes (`api/lock.go`, `api/semaphore.go`).
//!
//! A lock: create a session with a TTL (renewed from a background task from the start, so a long
//! wait cannot outlive it), acquire the key with `?acquire=<session>`, and while someone else
//! holds it, block on the key until its session is released, then try again.
//!
//! A semaphore (`limit` > 1): each contender holds `<prefix>/<session>` with its session, and
//! `<prefix>/.lock` holds `{"Limit":N,"Holders":{session:true,…}}`, updated by check-and-set;
//! holders whose contender key lost its session are pruned.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::error::{Error, ErrorCode, Result};
use crate::types::{Consistency, KvPair, PutOptions, QueryOptions};

/// `api.LockFlagValue`: marks a key as used by Consul's lock recipe.
pub const LOCK_FLAG: u64 = 0x2ddc_cbc0_58a5_0c18;
/// `api.SemaphoreFlagValue`: marks keys as used by Consul's semaphore recipe.
pub const SEMAPHORE_FLAG: u64 = 0xe0f6_9a2b_aa41_4de0;
/// Longest single blocking wait on the lock key (`api.DefaultLockWaitTime`).
const BLOCK: Duration = Duration::from_secs(15);

/// How to take a lock.
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// Value stored in the key while held (Consul's lock recipe stores the holder's identity).
    pub value: Bytes,
    /// Session TTL; the session is renewed every `ttl / 2` (default 15 s).
    pub ttl: Duration,
    /// Session lock-delay (`None`: the server's default of 15 s).
    pub lock_delay: Option<Duration>,
    /// Give up after this long (`None`: wait forever).
    pub wait: Option<Duration>,
    /// Session name.
    pub session_name: String,
    /// Holders allowed at once: 1 is a lock on the key, above 1 a semaphore under the key as a
    /// prefix (default 1).
    pub limit: u32,
    /// Flags of the lock key (0: none). When set, a key with other flags is refused ("Existing
    /// key does not match lock use"), like Consul's `LockFlagValue`; the CLI sets [`LOCK_FLAG`].
    pub flags: u64,
    /// Consistency of the reads of the lock key (the CLI reads `consistent`, like Consul).
    pub consistency: Consistency,
    /// Pause (at most: a change of the key ends it early) after a lost race or during a
    /// lock-delay before trying again (default 250 ms).
    pub retry: Duration,
    /// Also watch the key with blocking reads while held, and count the lock lost as soon as
    /// another session shows up on it, tolerating this many transient read errors 1 s apart
    /// (`None`: only a vanished session counts as lost).
    pub monitor_retries: Option<u32>,
    /// On release, also delete the lock key if nobody took it meanwhile (Consul's `Destroy`).
    pub cleanup: bool,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            value: Bytes::new(),
            ttl: Duration::from_secs(15),
            lock_delay: None,
            wait: None,
            session_name: "consul-rs lock".into(),
            limit: 1,
            flags: 0,
            consistency: Consistency::Default,
            retry: Duration::from_millis(250),
            monitor_retries: None,
            cleanup: false,
        }
    }
}

/// The semaphore's coordination value (`api.semaphoreLock`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct SemaphoreValue {
    #[serde(rename = "Limit")]
    limit: u32,
    #[serde(rename = "Holders", default)]
    holders: BTreeMap<String, bool>,
}

/// A held lock (or semaphore slot). [`Lock::release`] (or dropping it) gives it up and destroys
/// its session.
#[derive(Debug)]
pub struct Lock {
    client: Client,
    key: String,
    session: String,
    opts: LockOptions,
    /// Cancelled when the lock is released or lost (the session vanished).
    lost: CancellationToken,
    renew: CancellationToken,
    released: Arc<parking_lot::Mutex<bool>>,
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

/// One attempt's state, shared by acquiring, monitoring and releasing.
struct Recipe<'a> {
    client: &'a Client,
    key: &'a str,
    session: &'a str,
    opts: &'a LockOptions,
}

impl Recipe<'_> {
    fn lock_key(&self) -> String {
        if self.opts.limit > 1 {
            join(self.key, ".lock")
        } else {
            self.key.to_string()
        }
    }

    fn contender_key(&self) -> String {
        join(self.key, self.session)
    }

    fn query(&self, index: u64, wait: Duration) -> QueryOptions {
        QueryOptions {
            consistency: self.opts.consistency,
            index: Some(index),
            wait: Some(wait),
            ..QueryOptions::default()
        }
    }

    fn decode(&self, pair: Option<&KvPair>) -> Result<SemaphoreValue> {
        let Some(p) = pair else {
            return Ok(SemaphoreValue { limit: self.opts.limit, holders: BTreeMap::new() });
        };
        if p.flags != SEMAPHORE_FLAG {
            return Err(Error::new(ErrorCode::Conflict, "Existing key does not match semaphore use"));
        }
        let lock: SemaphoreValue = serde_json::from_slice(p.value.as_deref().unwrap_or_default()).map_err(|e| {
            Error::new(ErrorCode::Conflict, format!("the semaphore's .lock key holds invalid JSON: {e}"))
        })?;
        if lock.limit != self.opts.limit {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("Semaphore limit conflict (lock: {}, local: {})", lock.limit, self.opts.limit),
            ));
        }
        Ok(lock)
    }

    async fn acquire(&self) -> Result<()> {
        if self.opts.limit > 1 {
            return self.acquire_semaphore().await;
        }
        let flags = (self.opts.flags != 0).then_some(self.opts.flags);
        let put = PutOptions { acquire: Some(self.session.to_string()), flags, ..PutOptions::default() };
        let mut index = 0u64;
        loop {
            // Only try when nobody holds it, so a waiting session doesn't spin on the leader.
            let (meta, pair) = self.client.kv_get(self.key, &self.query(index, BLOCK)).await?;
            index = if meta.index < index { 0 } else { meta.index };
            if let Some(p) = &pair {
                if self.opts.flags != 0 && p.flags != self.opts.flags {
                    return Err(Error::new(ErrorCode::Conflict, "Existing key does not match lock use"));
                }
                if p.session.as_deref().is_some_and(|s| s != self.session) {
                    continue;
                }
            }
            if self.client.kv_put(self.key, self.opts.value.clone(), &put).await? {
                return Ok(());
            }
            // Lost a race, or a lock-delay is running: wait for a change, at most `retry`.
            let (meta, _) = self.client.kv_get(self.key, &self.query(index.max(1), self.opts.retry)).await?;
            index = meta.index;
        }
    }

    async fn acquire_semaphore(&self) -> Result<()> {
        let contender = PutOptions {
            acquire: Some(self.session.to_string()),
            flags: Some(SEMAPHORE_FLAG),
            ..PutOptions::default()
        };
        if !self.client.kv_put(&self.contender_key(), self.opts.value.clone(), &contender).await? {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("failed to make contender entry {}", self.contender_key()),
            ));
        }
        let lock_key = self.lock_key();
        let mut index = 0;
        loop {
            let (meta, pairs) = self.client.kv_list(&join(self.key, ""), &self.query(index, BLOCK)).await?;
            index = if meta.index < index { 0 } else { meta.index };
            let lock_pair = pairs.iter().find(|p| p.key == lock_key);
            let mut lock = self.decode(lock_pair)?;
            // Prune holders whose contender key no longer has a live session.
            let alive: Vec<&str> = pairs.iter().filter_map(|p| p.session.as_deref()).collect();
            lock.holders.retain(|s, _| alive.contains(&s.as_str()));
            if lock.holders.len() >= self.opts.limit as usize && !lock.holders.contains_key(self.session) {
                continue;
            }
            lock.holders.insert(self.session.to_string(), true);
            let cas = lock_pair.map(|p| p.modify_index).unwrap_or(0);
            let put = PutOptions { cas: Some(cas), flags: Some(SEMAPHORE_FLAG), ..PutOptions::default() };
            let body = serde_json::to_vec(&lock).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
            if self.client.kv_put(&lock_key, body, &put).await? {
                return Ok(());
            }
        }
    }

    /// Whether a fresh read of the lock key still shows this session holding it.
    fn holds(&self, pair: Option<&KvPair>) -> bool {
        let Some(p) = pair else { return false };
        if self.opts.limit > 1 {
            return self.decode(Some(p)).is_ok_and(|l| l.holders.contains_key(self.session));
        }
        p.session.as_deref() == Some(self.session)
    }

    /// Watches the lock key with blocking reads; returns when it is no longer held.
    async fn monitor(&self, retries: u32) {
        let key = self.lock_key();
        let mut index = 0;
        let mut left = retries;
        loop {
            match self.client.kv_get(&key, &self.query(index, BLOCK)).await {
                Ok((meta, pair)) => {
                    left = retries;
                    if !self.holds(pair.as_ref()) {
                        return;
                    }
                    index = if meta.index < index { 0 } else { meta.index };
                }
                Err(e) if left > 0 => {
                    left -= 1;
                    tracing::debug!(error = %e, "lock monitor read failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(_) => return,
            }
        }
    }

    /// Gives up the lock or slot (whether or not it was reached), tidies the keys, destroys the
    /// session. The first error is returned, after every step was tried.
    async fn give_up(&self) -> Result<()> {
        let mut first: Option<Error> = None;
        let mut note = |r: Result<()>| {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        };
        if self.opts.limit > 1 {
            let lock_key = self.lock_key();
            for _ in 0..10 {
                let Ok((_, Some(p))) = self.client.kv_get(&lock_key, &self.query(0, BLOCK)).await else { break };
                let Ok(mut lock) = self.decode(Some(&p)) else { break };
                if lock.holders.remove(self.session).is_none() {
                    break;
                }
                let Ok(body) = serde_json::to_vec(&lock) else { break };
                let put =
                    PutOptions { cas: Some(p.modify_index), flags: Some(SEMAPHORE_FLAG), ..PutOptions::default() };
                if self.client.kv_put(&lock_key, body, &put).await.unwrap_or(false) {
                    break;
                }
            }
            note(self.client.kv_delete(&self.contender_key(), false, None).await.map(|_| ()));
        } else {
            let flags = (self.opts.flags != 0).then_some(self.opts.flags);
            let put = PutOptions { release: Some(self.session.to_string()), flags, ..PutOptions::default() };
            note(self.client.kv_put(self.key, Bytes::new(), &put).await.map(|_| ()));
            if self.opts.cleanup {
                // Like the Go client's Destroy: remove the key if nobody else took it meanwhile.
                if let Ok((_, Some(p))) = self.client.kv_get(self.key, &self.query(0, BLOCK)).await {
                    if p.session.is_none() && (self.opts.flags == 0 || p.flags == self.opts.flags) {
                        let _ = self.client.kv_delete(self.key, false, Some(p.modify_index)).await;
                    }
                }
            }
        }
        note(self.client.session_destroy(self.session).await);
        first.map_or(Ok(()), Err)
    }
}

impl Lock {
    /// Acquires `key` (with `limit` > 1 a semaphore slot under it), waiting while others hold
    /// it. Errors with [`ErrorCode::Timeout`] after `opts.wait`; on any failure the session is
    /// destroyed.
    pub async fn acquire(client: &Client, key: &str, opts: LockOptions) -> Result<Lock> {
        let session = Self::create_session(client, key, &opts).await?;
        Self::acquire_with_session(client, key, session, opts).await
    }

    /// Checks `key` and `opts` and creates the session a lock on `key` will use (the first half
    /// of [`Lock::acquire`], for callers that report the two failures differently).
    pub async fn create_session(client: &Client, key: &str, opts: &LockOptions) -> Result<String> {
        if key.is_empty() {
            return Err(Error::invalid("key", "must not be empty"));
        }
        if opts.limit == 0 {
            return Err(Error::invalid("limit", "must be positive"));
        }
        if opts.ttl < Duration::from_secs(10) || opts.ttl > Duration::from_secs(86400) {
            return Err(Error::invalid("ttl", "must be between 10s and 24h (Consul's session TTL range)"));
        }
        let ttl = crate::options::duration::format_go_duration(opts.ttl);
        let mut body = json!({ "Name": opts.session_name, "TTL": ttl, "Behavior": "release" });
        if let (Some(d), Some(obj)) = (opts.lock_delay, body.as_object_mut()) {
            obj.insert("LockDelay".into(), json!(crate::options::duration::format_go_duration(d)));
        }
        client.session_create(&body).await
    }

    /// Acquires `key` with a session from [`Lock::create_session`]; renews it from the start.
    /// On failure (or when the returned future is dropped, after the session's TTL) the
    /// session is given up.
    pub async fn acquire_with_session(client: &Client, key: &str, session: String, opts: LockOptions) -> Result<Lock> {
        let lost = CancellationToken::new();
        let renew = CancellationToken::new();
        // Dropping the future drops this guard: renewal stops and the session expires.
        let renew_guard = renew.clone().drop_guard();
        tokio::spawn(renew_loop(client.clone(), session.clone(), opts.ttl / 2, lost.clone(), renew.clone()));
        let recipe = Recipe { client, key, session: &session, opts: &opts };
        let attempt = recipe.acquire();
        let acquired = match opts.wait {
            None => attempt.await,
            Some(w) => tokio::time::timeout(w, attempt).await.unwrap_or_else(|_| {
                Err(Error::new(ErrorCode::Timeout, format!("lock {key:?} not acquired within {w:?}")))
            }),
        };
        let acquired = acquired.and_then(|()| {
            if lost.is_cancelled() {
                Err(Error::new(ErrorCode::NotFound, "the lock session expired while acquiring"))
            } else {
                Ok(())
            }
        });
        if let Err(e) = acquired {
            renew.cancel();
            let _ = recipe.give_up().await;
            return Err(e);
        }
        renew_guard.disarm();
        if let Some(retries) = opts.monitor_retries {
            let (client, key, session, opts, lost, stop) =
                (client.clone(), key.to_string(), session.clone(), opts.clone(), lost.clone(), renew.clone());
            tokio::spawn(async move {
                let recipe = Recipe { client: &client, key: &key, session: &session, opts: &opts };
                tokio::select! {
                    _ = recipe.monitor(retries) => lost.cancel(),
                    _ = stop.cancelled() => {}
                }
            });
        }
        Ok(Lock {
            client: client.clone(),
            key: key.to_string(),
            session,
            opts,
            lost,
            renew,
            released: Arc::new(parking_lot::Mutex::new(false)),
        })
    }

    /// Gives up whatever a failed or abandoned [`Lock::acquire_with_session`] may have taken
    /// (a contender key, a holder entry, the key itself) and destroys the session.
    pub async fn abandon(client: &Client, key: &str, session: &str, opts: &LockOptions) -> Result<()> {
        Recipe { client, key, session, opts }.give_up().await
    }

    /// The key (the prefix of a semaphore).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The session holding the lock.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// Whether the lock is still held (not released, session not lost).
    pub fn is_held(&self) -> bool {
        !self.lost.is_cancelled()
    }

    /// Resolves when the lock is lost or released.
    pub async fn lost(&self) {
        self.lost.cancelled().await
    }

    /// Releases the key (or slot), tidies up and destroys the session. Idempotent.
    pub async fn release(&self) -> Result<()> {
        {
            let mut r = self.released.lock();
            if *r {
                return Ok(());
            }
            *r = true;
        }
        self.renew.cancel();
        self.lost.cancel();
        Recipe { client: &self.client, key: &self.key, session: &self.session, opts: &self.opts }.give_up().await
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Can't await here: stop renewing, so the session expires after its TTL; bindings call
        // `release` explicitly.
        self.renew.cancel();
        self.lost.cancel();
    }
}

async fn renew_loop(
    client: Client,
    session: String,
    every: Duration,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        match client.session_renew(&session).await {
            Ok(()) => {}
            Err(e) if e.code == ErrorCode::NotFound => {
                tracing::warn!(%session, "lock session expired; the lock is lost");
                lost.cancel();
                return;
            }
            Err(e) => tracing::debug!(error = %e, "session renew failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_join_like_go_path_join() {
        assert_eq!(join("svc/lock/", ".lock"), "svc/lock/.lock");
        assert_eq!(join("svc", "abc"), "svc/abc");
        assert_eq!(join("", ".lock"), ".lock");
    }

    #[test]
    fn semaphore_value_round_trips() {
        let v: SemaphoreValue = serde_json::from_str(r#"{"Limit":2,"Holders":{"a":true}}"#).expect("decode");
        assert_eq!((v.limit, v.holders.len()), (2, 1));
        let text = serde_json::to_string(&v).expect("encode");
        assert_eq!(text, r#"{"Limit":2,"Holders":{"a":true}}"#);
    }
}
