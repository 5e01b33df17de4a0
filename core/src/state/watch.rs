//! Change notification for blocking queries.
//!
//! A blocking query subscribes to exactly what it reads — one key, or one prefix — before it
//! runs, and sleeps until a write touches that key or something under that prefix. A write to
//! key `k` looks up `k` itself and each prefix of `k` in a hash map, so its cost does not grow
//! with the number of watchers, and unrelated watchers never wake. Senders nobody listens to
//! any more are dropped on the next notification.

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::sync::watch;

/// What a blocking query watches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WatchTarget {
    /// One exact key.
    Key(String),
    /// Every key starting with this prefix (`""` is the whole KV store).
    Prefix(String),
}

/// Registry of watched keys and prefixes.
#[derive(Debug, Default)]
pub struct WatchHub {
    keys: Mutex<HashMap<String, watch::Sender<()>>>,
    prefixes: Mutex<HashMap<String, watch::Sender<()>>>,
}

impl WatchHub {
    /// Subscribes to `target`. The receiver starts out "seen": it fires only for writes made
    /// after this call, so subscribe first, then read, then wait.
    pub fn subscribe(&self, target: &WatchTarget) -> watch::Receiver<()> {
        let (map, name) = match target {
            WatchTarget::Key(k) => (&self.keys, k),
            WatchTarget::Prefix(p) => (&self.prefixes, p),
        };
        let mut map = map.lock();
        match map.get(name) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(());
                map.insert(name.clone(), tx);
                rx
            }
        }
    }

    /// Wakes the watchers of `key` and of every prefix of it.
    pub fn notify_key(&self, key: &str) {
        {
            let mut keys = self.keys.lock();
            if let Some(tx) = keys.get(key) {
                if tx.send(()).is_err() {
                    keys.remove(key);
                }
            }
        }
        let mut prefixes = self.prefixes.lock();
        if prefixes.is_empty() {
            return;
        }
        let boundaries = key.char_indices().map(|(i, _)| i).chain(std::iter::once(key.len()));
        for end in boundaries {
            let prefix = &key[..end];
            if let Some(tx) = prefixes.get(prefix) {
                if tx.send(()).is_err() {
                    prefixes.remove(prefix);
                }
            }
        }
    }

    /// Wakes only the watchers of exactly `key` (catalog watch keys, which no KV prefix covers).
    pub fn notify_exact(&self, key: &str) {
        let mut keys = self.keys.lock();
        if let Some(tx) = keys.get(key) {
            if tx.send(()).is_err() {
                keys.remove(key);
            }
        }
    }

    /// Wakes every watcher (snapshot restore replaces the whole state).
    pub fn notify_all(&self) {
        for map in [&self.keys, &self.prefixes] {
            map.lock().retain(|_, tx| tx.send(()).is_ok());
        }
    }

    /// Number of distinct keys and prefixes currently registered (for tests and metrics).
    pub fn len(&self) -> usize {
        self.keys.lock().len() + self.prefixes.lock().len()
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_only_matching_watchers() {
        let hub = WatchHub::default();
        let key = hub.subscribe(&WatchTarget::Key("a/b".into()));
        let mut prefix = hub.subscribe(&WatchTarget::Prefix("a/".into()));
        let mut other = hub.subscribe(&WatchTarget::Prefix("z/".into()));
        let mut root = hub.subscribe(&WatchTarget::Prefix(String::new()));
        hub.notify_key("a/c");
        assert!(!key.has_changed().unwrap_or(true));
        assert!(prefix.has_changed().unwrap_or(false));
        assert!(root.has_changed().unwrap_or(false));
        assert!(!other.has_changed().unwrap_or(true));
        prefix.mark_unchanged();
        hub.notify_key("a/b");
        assert!(key.has_changed().unwrap_or(false));
        assert!(prefix.has_changed().unwrap_or(false));
        other.mark_unchanged();
        root.mark_unchanged();
    }

    #[test]
    fn dropped_watchers_are_forgotten() {
        let hub = WatchHub::default();
        let rx = hub.subscribe(&WatchTarget::Key("k".into()));
        drop(rx);
        hub.notify_key("k");
        assert!(hub.is_empty());
    }
}
