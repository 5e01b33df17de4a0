//! The KV table: every key stored once, and a running count of the bytes the table holds.
//!
//! A [`KvEntry`] carries its key because readers hand it on (to the HTTP layer, to transaction
//! results). Stored that way, each key would be held twice — as the map's key and inside the
//! entry — which was a fifth of the heap of a store of small values (issue #22's heap profile).
//! The table therefore keeps a [`KvRecord`], the entry without its key, and builds a `KvEntry`
//! only for a reader.
//!
//! Every change goes through [`KvTable::insert`], [`KvTable::remove`] or [`KvTable::update`],
//! so [`KvTable::bytes`] — the `state.kv_bytes` metric — is kept exact without ever scanning the
//! table under the state lock.
//!
//! On the wire (Raft snapshots, `/v1/snapshot` archives) the table is what it always was: a map
//! of key to `KvEntry`, key included, so snapshots written before this module still load and
//! older servers read ours.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;

use bytes::Bytes;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::KvEntry;

/// One stored entry: a [`KvEntry`] without its key, which is the table's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvRecord {
    /// Raft index of the write that created the key.
    pub create_index: u64,
    /// Raft index of the last write to the key.
    pub modify_index: u64,
    /// Number of times a session acquired the key.
    pub lock_index: u64,
    /// Opaque client flags.
    pub flags: u64,
    /// The value.
    pub value: Bytes,
    /// The session holding the lock, if any.
    pub session: Option<String>,
}

impl KvRecord {
    /// The entry a reader sees: this record under `key`.
    pub fn to_entry(&self, key: &str) -> KvEntry {
        KvEntry {
            key: key.to_string(),
            create_index: self.create_index,
            modify_index: self.modify_index,
            lock_index: self.lock_index,
            flags: self.flags,
            value: self.value.clone(),
            session: self.session.clone(),
        }
    }

    /// Splits an entry into its key and its record (no copy of either).
    pub fn from_entry(entry: KvEntry) -> (String, KvRecord) {
        let KvEntry { key, create_index, modify_index, lock_index, flags, value, session } = entry;
        (key, KvRecord { create_index, modify_index, lock_index, flags, value, session })
    }
}

/// Bytes one entry holds: its key, value and session id, plus the slot the map keeps for it.
/// B-tree slack and allocator rounding are not counted, so this is a floor, the same for every
/// build, which is what a per-key trend needs.
fn footprint(key_len: usize, record: &KvRecord) -> u64 {
    const SLOT: usize = std::mem::size_of::<String>() + std::mem::size_of::<KvRecord>();
    (SLOT + key_len + record.value.len() + record.session.as_ref().map_or(0, String::len)) as u64
}

/// The KV table (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvTable {
    records: BTreeMap<String, KvRecord>,
    bytes: u64,
}

impl KvTable {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the table has no keys.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes held by the table's entries — keys, values, session ids and one map slot each (B-tree
    /// slack and allocator rounding not counted) — kept up to date by every change.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The record under `key`.
    pub fn get(&self, key: &str) -> Option<&KvRecord> {
        self.records.get(key)
    }

    /// The entry under `key`, as a reader sees it.
    pub fn entry(&self, key: &str) -> Option<KvEntry> {
        self.records.get_key_value(key).map(|(k, r)| r.to_entry(k))
    }

    /// Whether `key` exists.
    pub fn contains_key(&self, key: &str) -> bool {
        self.records.contains_key(key)
    }

    /// Stores `record` under `key`, returning the record it replaced.
    pub fn insert(&mut self, key: String, record: KvRecord) -> Option<KvRecord> {
        let key_len = key.len();
        self.bytes += footprint(key_len, &record);
        let old = self.records.insert(key, record);
        if let Some(old) = &old {
            self.bytes -= footprint(key_len, old);
        }
        old
    }

    /// Removes `key`, returning its record.
    pub fn remove(&mut self, key: &str) -> Option<KvRecord> {
        let old = self.records.remove(key)?;
        self.bytes -= footprint(key.len(), &old);
        Some(old)
    }

    /// Changes the record under `key` in place (when it exists) and returns whether it did.
    pub fn update(&mut self, key: &str, change: impl FnOnce(&mut KvRecord)) -> bool {
        let Some(record) = self.records.get_mut(key) else {
            return false;
        };
        let before = footprint(key.len(), record);
        change(record);
        self.bytes = self.bytes - before + footprint(key.len(), record);
        true
    }

    /// Every key with its record, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &KvRecord)> {
        self.records.iter().map(|(k, r)| (k.as_str(), r))
    }

    /// Every key, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.records.keys().map(String::as_str)
    }

    /// Every key starting with `prefix`, with its record, in key order.
    pub fn prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a KvRecord)> + 'a {
        self.records
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, r)| (k.as_str(), r))
    }

    /// Sets every record's indexes for a restore at `index` (see `state::restore`).
    pub fn restamp(&mut self, index: u64) {
        for record in self.records.values_mut() {
            record.modify_index = index;
            record.create_index = record.create_index.min(index);
        }
    }
}

impl std::ops::Index<&str> for KvTable {
    type Output = KvRecord;

    /// The record under `key`; panics when it is absent (for tests and invariants only).
    fn index(&self, key: &str) -> &KvRecord {
        &self.records[key]
    }
}

/// A stored entry as saved: [`KvEntry`]'s fields in its order, borrowed from the table.
#[derive(Serialize)]
#[serde(rename = "KvEntry")]
struct EntryRef<'a> {
    key: &'a str,
    create_index: u64,
    modify_index: u64,
    lock_index: u64,
    flags: u64,
    value: &'a Bytes,
    session: &'a Option<String>,
}

impl Serialize for KvTable {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.records.len()))?;
        for (key, r) in &self.records {
            let entry = EntryRef {
                key,
                create_index: r.create_index,
                modify_index: r.modify_index,
                lock_index: r.lock_index,
                flags: r.flags,
                value: &r.value,
                session: &r.session,
            };
            map.serialize_entry(key, &entry)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for KvTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TableVisitor;
        impl<'de> Visitor<'de> for TableVisitor {
            type Value = KvTable;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of KV entries by key")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KvTable, A::Error> {
                let mut table = KvTable::default();
                while let Some((key, entry)) = map.next_entry::<String, KvEntry>()? {
                    // The map's key is the entry's; a saved entry whose own copy differs is
                    // corrupt, and loading it under either name would change what clients see.
                    if entry.key != key {
                        return Err(serde::de::Error::custom(format!(
                            "KV entry saved under {key:?} names itself {:?}",
                            entry.key
                        )));
                    }
                    let (key, record) = KvRecord::from_entry(entry);
                    table.insert(key, record);
                }
                Ok(table)
            }
        }
        deserializer.deserialize_map(TableVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: &str) -> KvRecord {
        KvRecord {
            create_index: 1,
            modify_index: 2,
            lock_index: 0,
            flags: 7,
            value: Bytes::copy_from_slice(value.as_bytes()),
            session: None,
        }
    }

    /// The count every change keeps, recomputed from scratch.
    fn recount(t: &KvTable) -> u64 {
        t.iter().map(|(k, r)| footprint(k.len(), r)).sum()
    }

    #[test]
    fn bytes_follow_every_change() {
        let mut t = KvTable::default();
        assert_eq!(t.bytes(), 0);
        t.insert("a/1".into(), record("hello"));
        t.insert("a/2".into(), record(""));
        assert_eq!(t.bytes(), recount(&t));
        let one = t.bytes();
        // Replacing a value counts the new one only.
        t.insert("a/1".into(), record("a much longer value than before"));
        assert_eq!(t.bytes(), recount(&t));
        assert_eq!(t.bytes(), one + 26);
        assert!(t.update("a/2", |r| r.session = Some("0123".into())));
        assert_eq!(t.bytes(), recount(&t));
        assert!(!t.update("missing", |r| r.flags = 1));
        assert_eq!(t.remove("a/1").map(|r| r.flags), Some(7));
        assert_eq!(t.remove("a/1"), None);
        assert_eq!(t.bytes(), recount(&t));
        t.remove("a/2");
        assert_eq!(t.bytes(), 0);
    }

    #[test]
    fn prefix_reads_only_its_keys_in_order() {
        let mut t = KvTable::default();
        for k in ["a", "a/x", "a/y", "ab", "b"] {
            t.insert(k.into(), record(k));
        }
        let keys: Vec<&str> = t.prefix("a/").map(|(k, _)| k).collect();
        assert_eq!(keys, ["a/x", "a/y"]);
        assert_eq!(t.prefix("").count(), 5);
        assert_eq!(t.prefix("c").count(), 0);
        assert_eq!(t.entry("ab").map(|e| e.key), Some("ab".to_string()));
    }

    #[test]
    fn saved_form_is_a_map_of_entries_with_their_keys() {
        let mut t = KvTable::default();
        t.insert("k".into(), record("v"));
        t.insert("j".into(), KvRecord { session: Some("s".into()), ..record("w") });
        // The saved form is exactly a map of whole entries, as before this table existed.
        let as_map: BTreeMap<String, KvEntry> = t.iter().map(|(k, r)| (k.to_string(), r.to_entry(k))).collect();
        let ours = postcard::to_stdvec(&t).expect("encode");
        assert_eq!(ours, postcard::to_stdvec(&as_map).expect("encode map"));
        assert_eq!(serde_json::to_value(&t).expect("json"), serde_json::to_value(&as_map).expect("json map"));
        let back: KvTable = postcard::from_bytes(&ours).expect("decode");
        assert_eq!(back, t);
        assert_eq!(back.bytes(), recount(&back));
    }

    #[test]
    fn a_saved_entry_under_another_name_is_refused() {
        let mut bad: BTreeMap<String, KvEntry> = BTreeMap::new();
        bad.insert("a".into(), record("v").to_entry("b"));
        let err = postcard::from_bytes::<KvTable>(&postcard::to_stdvec(&bad).expect("encode")).expect_err("refused");
        let json = serde_json::from_value::<KvTable>(serde_json::to_value(&bad).expect("json")).expect_err("refused");
        assert!(json.to_string().contains("saved under \"a\" names itself \"b\""), "{json}");
        assert!(!err.to_string().is_empty());
    }
}
