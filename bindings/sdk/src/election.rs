//! Leader election on a [`Lock`]: campaign for the key from a background task, hold it while
//! the session lives, campaign again when it is lost, until [`LeaderElection::resign`].
//!
//! This is the one implementation the Python, Node and C packages expose; each turns
//! [`LeaderElection::next_event`] into its own callbacks.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Mutex};
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::error::{Error, ErrorCode, Result};
use crate::lock::{Lock, LockOptions};

/// How long one acquisition attempt waits before the campaign loop checks for resignation.
const ATTEMPT: Duration = Duration::from_secs(2);
/// Pause after a failed attempt (agent unreachable, no leader) before campaigning again.
const RETRY: Duration = Duration::from_secs(1);

/// A change of leadership, in the order it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionEvent {
    /// This process became the leader.
    Elected,
    /// This process lost leadership (its session expired or the lock was taken away); it
    /// campaigns again. Not sent for [`LeaderElection::resign`].
    Lost,
}

/// A running campaign for leadership of one key. Dropping it stops campaigning; the session
/// then expires after its TTL ([`LeaderElection::resign`] gives it up at once).
#[derive(Debug)]
pub struct LeaderElection {
    key: String,
    leader: watch::Receiver<bool>,
    events: Mutex<mpsc::UnboundedReceiver<ElectionEvent>>,
    stop: CancellationToken,
    task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    held: Arc<Mutex<Option<Lock>>>,
}

impl Drop for LeaderElection {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl LeaderElection {
    /// Starts campaigning for `key` on the current tokio runtime. `opts.wait` is ignored (the
    /// campaign waits as long as it takes); `opts.limit` must be 1.
    pub fn start(client: &Client, key: &str, mut opts: LockOptions) -> Result<LeaderElection> {
        if key.is_empty() {
            return Err(Error::invalid("key", "must not be empty"));
        }
        if opts.ttl < Duration::from_secs(10) || opts.ttl > Duration::from_secs(86400) {
            return Err(Error::invalid("ttl", "must be between 10s and 24h (Consul's session TTL range)"));
        }
        if opts.limit != 1 {
            return Err(Error::invalid("limit", "an election has one leader"));
        }
        opts.wait = Some(ATTEMPT);
        let (leader_tx, leader) = watch::channel(false);
        let (events_tx, events) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let held = Arc::new(Mutex::new(None));
        let task = tokio::spawn(campaign(
            client.clone(),
            key.to_string(),
            opts,
            leader_tx,
            events_tx,
            stop.clone(),
            held.clone(),
        ));
        Ok(LeaderElection {
            key: key.to_string(),
            leader,
            events: Mutex::new(events),
            stop,
            task: parking_lot::Mutex::new(Some(task)),
            held,
        })
    }

    /// The key campaigned for.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether this process holds leadership now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Waits until this process is the leader; [`ErrorCode::Cancelled`] after a resignation.
    pub async fn wait_for_leadership(&self) -> Result<()> {
        let mut rx = self.leader.clone();
        tokio::select! {
            r = rx.wait_for(|l| *l) => r.map(|_| ()).map_err(|_| cancelled()),
            _ = self.stop.cancelled() => Err(cancelled()),
        }
    }

    /// The next change of leadership; `None` once resigned and every change was returned.
    pub async fn next_event(&self) -> Option<ElectionEvent> {
        let mut events = self.events.lock().await;
        if let Ok(e) = events.try_recv() {
            return Some(e);
        }
        tokio::select! {
            e = events.recv() => e,
            _ = self.stop.cancelled() => events.try_recv().ok(),
        }
    }

    /// Whether [`LeaderElection::resign`] was called.
    pub fn is_resigned(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Stops campaigning and gives up leadership (releases the key, destroys the session).
    /// Idempotent.
    pub async fn resign(&self) -> Result<()> {
        self.stop.cancel();
        let task = self.task.lock().take();
        if let Some(t) = task {
            let _ = t.await;
        }
        let lock = self.held.lock().await.take();
        match lock {
            Some(l) => l.release().await,
            None => Ok(()),
        }
    }
}

fn cancelled() -> Error {
    Error::new(ErrorCode::Cancelled, "the election was resigned")
}

async fn campaign(
    client: Client,
    key: String,
    opts: LockOptions,
    leader: watch::Sender<bool>,
    events: mpsc::UnboundedSender<ElectionEvent>,
    stop: CancellationToken,
    held: Arc<Mutex<Option<Lock>>>,
) {
    while !stop.is_cancelled() {
        let attempt = tokio::select! {
            r = Lock::acquire(&client, &key, opts.clone()) => r,
            _ = stop.cancelled() => break,
        };
        let lock = match attempt {
            Ok(l) => l,
            Err(e) if e.code == ErrorCode::Timeout => continue,
            Err(e) => {
                tracing::debug!(error = %e, %key, "election attempt failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => continue,
                    _ = stop.cancelled() => break,
                }
            }
        };
        let _ = leader.send(true);
        let _ = events.send(ElectionEvent::Elected);
        let resigned = tokio::select! {
            _ = lock.lost() => false,
            _ = stop.cancelled() => true,
        };
        if resigned {
            // `resign` releases it, so it is given up before `resign` returns.
            *held.lock().await = Some(lock);
            let _ = leader.send(false);
            break;
        }
        let _ = leader.send(false);
        let _ = events.send(ElectionEvent::Lost);
        let _ = lock.release().await;
    }
}
