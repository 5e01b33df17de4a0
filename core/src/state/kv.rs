//! KV reads with Consul's index rules, and key validation.
//!
//! Index rules (`agent/consul/state/kvs.go`): a single-key read reports the entry's
//! `ModifyIndex`, or the KV table index when the key is absent; a prefix read reports the highest
//! `ModifyIndex` or tombstone index under the prefix, or the table index when the prefix is
//! empty or nothing matches — so deletes under a prefix always move its index forward.

use super::{KvEntry, StateData};

/// The result of a single-key read.
#[derive(Debug, Clone)]
pub struct KvGet {
    /// The index to report in `X-Consul-Index`.
    pub index: u64,
    /// The entry, if the key exists.
    pub entry: Option<KvEntry>,
}

/// Reads one key.
pub fn get(data: &StateData, key: &str) -> KvGet {
    match data.kvs.entry(key) {
        Some(e) => KvGet { index: e.modify_index, entry: Some(e) },
        None => KvGet { index: data.kv_index, entry: None },
    }
}

/// Reads every entry under `prefix`, returning the prefix index and the entries in key order.
pub fn list(data: &StateData, prefix: &str) -> (u64, Vec<KvEntry>) {
    let entries: Vec<KvEntry> = data.kvs.prefix(prefix).map(|(k, r)| r.to_entry(k)).collect();
    let max_entry = entries.iter().map(|e| e.modify_index).max().unwrap_or(0);
    (prefix_index(data, prefix, max_entry), entries)
}

/// Lists key names under `prefix`; with a separator, keys deeper than the next separator fold
/// into `prefix…separator` (deduplicated), like `GET /v1/kv/?keys&separator=/`.
pub fn keys(data: &StateData, prefix: &str, separator: Option<&str>) -> (u64, Vec<String>) {
    let mut out: Vec<String> = Vec::new();
    let mut max_entry = 0;
    for (key, entry) in data.kvs.prefix(prefix) {
        max_entry = max_entry.max(entry.modify_index);
        let folded = match separator {
            Some(sep) if !sep.is_empty() => match key[prefix.len()..].find(sep) {
                Some(pos) => &key[..prefix.len() + pos + sep.len()],
                None => key,
            },
            _ => key,
        };
        if out.last().map(String::as_str) != Some(folded) {
            out.push(folded.to_string());
        }
    }
    (prefix_index(data, prefix, max_entry), out)
}

fn prefix_index(data: &StateData, prefix: &str, max_entry: u64) -> u64 {
    if prefix.is_empty() {
        return data.kv_index;
    }
    let max_tombstone = data
        .tombstones
        .range(prefix.to_string()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .map(|(_, idx)| *idx)
        .max()
        .unwrap_or(0);
    match max_entry.max(max_tombstone) {
        0 => data.kv_index,
        idx => idx,
    }
}

/// Checks a key for writing. Consul's historical key space is kept (any UTF-8 without a leading
/// `/` and without control characters), not the strict allow-list of Consul 1.21.5 that broke
/// existing keys (hashicorp/consul#22822).
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("Missing key name".into());
    }
    if key.starts_with('/') {
        return Err(format!("Invalid key {key:?}: keys must not begin with '/'"));
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Err(format!("Invalid key {key:?}: contains the unprintable character {c:?}"));
    }
    if key.len() > 64 * 1024 {
        return Err(format!("Invalid key: {} bytes is longer than the 65536-byte limit", key.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::command::{KvOp, KvVerb};
    use crate::state::txn::{KvOverlay, TxnOp};

    fn state_with(keys: &[(&str, u64)]) -> StateData {
        let mut data = StateData::default();
        for (k, idx) in keys {
            let mut overlay = KvOverlay::new(&data);
            overlay.run_txn(&[TxnOp::Kv(KvOp::new(KvVerb::Set, *k))], *idx);
            let changes = overlay.finish();
            changes.commit(&mut data, *idx);
        }
        data
    }

    #[test]
    fn keys_fold_at_separator() {
        let data = state_with(&[("a/b/c", 2), ("a/b/d", 3), ("a/e", 4), ("b", 5)]);
        let (idx, keys) = keys(&data, "a/", Some("/"));
        assert_eq!(keys, vec!["a/b/".to_string(), "a/e".to_string()]);
        assert_eq!(idx, 4);
        let (_, all) = super::keys(&data, "", None);
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn prefix_index_moves_on_delete() {
        let mut data = state_with(&[("p/a", 2), ("q", 3)]);
        let mut overlay = KvOverlay::new(&data);
        overlay.run_txn(&[TxnOp::Kv(KvOp::new(KvVerb::Delete, "p/a"))], 9);
        let changes = overlay.finish();
        changes.commit(&mut data, 9);
        let (idx, entries) = list(&data, "p/");
        assert!(entries.is_empty());
        assert_eq!(idx, 9);
        assert_eq!(get(&data, "missing").index, 9);
    }

    #[test]
    fn key_rules() {
        assert!(validate_key("foo/bar baz.json").is_ok());
        assert!(validate_key("ünïcode/ключ").is_ok());
        assert!(validate_key("/lead").is_err());
        assert!(validate_key("bad\u{7}").is_err());
        assert!(validate_key("").is_err());
    }
}
