//! Locks and leader election on sessions, following Consul's lock recipe: create a session with
//! a TTL (renewed from a background task), acquire the key with `?acquire=<session>`, and while
//! someone else holds it, block on the key until its session is released, then try again.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::error::{Error, ErrorCode, Result};
use crate::types::{PutOptions, QueryOptions};

/// How to take a lock.
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// Value stored in the key while held (Consul's lock recipe stores the holder's identity).
    pub value: Bytes,
    /// Session TTL; the session is renewed every `ttl / 2` while the lock is held (default 15 s).
    pub ttl: Duration,
    /// Session lock-delay (`None`: the server's default of 15 s).
    pub lock_delay: Option<Duration>,
    /// Give up after this long (`None`: wait forever).
    pub wait: Option<Duration>,
    /// Session name.
    pub session_name: String,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            value: Bytes::new(),
            ttl: Duration::from_secs(15),
            lock_delay: None,
            wait: None,
            session_name: "consul-rs lock".into(),
        }
    }
}

/// A held lock. [`Lock::release`] (or dropping it) gives it up and destroys its session.
#[derive(Debug)]
pub struct Lock {
    client: Client,
    key: String,
    session: String,
    /// Cancelled when the lock is released or lost (the session vanished).
    lost: CancellationToken,
    renew: CancellationToken,
    released: Arc<parking_lot::Mutex<bool>>,
}

fn go_secs(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl Lock {
    /// Acquires `key`, waiting while another session holds it. Errors with
    /// [`ErrorCode::Timeout`] after `opts.wait`.
    pub async fn acquire(client: &Client, key: &str, opts: LockOptions) -> Result<Lock> {
        if key.is_empty() {
            return Err(Error::invalid("key", "must not be empty"));
        }
        if opts.ttl < Duration::from_secs(10) || opts.ttl > Duration::from_secs(86400) {
            return Err(Error::invalid("ttl", "must be between 10s and 24h (Consul's session TTL range)"));
        }
        let mut body = json!({ "Name": opts.session_name, "TTL": go_secs(opts.ttl), "Behavior": "release" });
        if let (Some(d), Some(obj)) = (opts.lock_delay, body.as_object_mut()) {
            obj.insert("LockDelay".into(), json!(go_secs(d)));
        }
        let session = client.session_create(&body).await?;
        let attempt = Self::wait_and_acquire(client, key, &session, &opts);
        let acquired = match opts.wait {
            None => attempt.await,
            Some(w) => tokio::time::timeout(w, attempt).await.unwrap_or_else(|_| {
                Err(Error::new(ErrorCode::Timeout, format!("lock {key:?} not acquired within {w:?}")))
            }),
        };
        if let Err(e) = acquired {
            let _ = client.session_destroy(&session).await;
            return Err(e);
        }
        let lost = CancellationToken::new();
        let renew = CancellationToken::new();
        tokio::spawn(renew_loop(client.clone(), session.clone(), opts.ttl / 2, lost.clone(), renew.clone()));
        Ok(Lock {
            client: client.clone(),
            key: key.to_string(),
            session,
            lost,
            renew,
            released: Arc::new(parking_lot::Mutex::new(false)),
        })
    }

    async fn wait_and_acquire(client: &Client, key: &str, session: &str, opts: &LockOptions) -> Result<()> {
        let put = PutOptions { acquire: Some(session.to_string()), ..PutOptions::default() };
        let mut index = 0u64;
        loop {
            // Only try when nobody holds it, so a waiting session doesn't spin on the leader.
            let q = QueryOptions { index: Some(index), wait: Some(Duration::from_secs(60)), ..QueryOptions::default() };
            let (meta, pair) = client.kv_get(key, &q).await?;
            index = if meta.index < index { 0 } else { meta.index };
            if pair.as_ref().and_then(|p| p.session.as_ref()).is_none() {
                if client.kv_put(key, opts.value.clone(), &put).await? {
                    return Ok(());
                }
                // Lock-delay or a race with another acquirer: wait a moment before retrying.
                tokio::time::sleep(Duration::from_millis(250)).await;
                index = 0;
            }
        }
    }

    /// The key.
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

    /// Releases the key and destroys the session. Idempotent.
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
        let put = PutOptions { release: Some(self.session.clone()), ..PutOptions::default() };
        let released = self.client.kv_put(&self.key, Bytes::new(), &put).await;
        let destroyed = self.client.session_destroy(&self.session).await;
        released.map(|_| ())?;
        destroyed
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
