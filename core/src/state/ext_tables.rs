//! The extension envelope: how tables and fields added after the snapshot format settled are
//! saved, so adding one never again needs a compatibility copy of [`StateData`].
//!
//! Snapshots are postcard, which has no field names: a struct that gains a field can no longer
//! read what the previous version wrote (hence `StateDataBeforeAcl` and its siblings). From this
//! version on, [`StateData`]'s encoding ends with one self-describing list of
//! `(table, version, bytes)` entries, each table encoded on its own. A new table (prepared
//! queries, extra service attributes, ...) is one more entry: older snapshots simply lack it, and
//! a table this version does not know (written by a newer one) is kept as it came and written
//! back unchanged, so a snapshot passing through an older server loses nothing.
//!
//! Each table is gathered from the live state when a snapshot is written ([`gather`]) and put
//! back when one is read ([`scatter`]); the per-table code lives beside the table and is named
//! in those two functions only.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::StateData;

/// One saved table: its name, the version of its own encoding, and that encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtEntry {
    /// The table's name (unique in a snapshot).
    pub table: String,
    /// Version of the table's encoding; a reader refuses versions it does not know.
    pub version: u32,
    /// The table, encoded by its own code (postcard unless it says otherwise).
    pub bytes: Bytes,
}

/// Why an extension table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ExtError {
    /// A known table saved with an encoding version this build cannot read.
    #[error("snapshot table {table:?} has encoding version {version}, this build reads up to {known}")]
    UnknownVersion {
        /// The table.
        table: String,
        /// The version found.
        version: u32,
        /// The newest version this build reads.
        known: u32,
    },
    /// A known table whose bytes do not decode.
    #[error("snapshot table {table:?} is damaged: {source}")]
    Decode {
        /// The table.
        table: String,
        /// What postcard said.
        source: postcard::Error,
    },
}

/// Tables written by a newer version that this one does not know: kept byte for byte and saved
/// again with the next snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnknownTables(pub Vec<ExtEntry>);

/// Encodes `value` as table `table` at `version`.
pub fn entry<T: Serialize>(table: &str, version: u32, value: &T) -> Result<ExtEntry, postcard::Error> {
    Ok(ExtEntry { table: table.to_owned(), version, bytes: Bytes::from(postcard::to_allocvec(value)?) })
}

/// Decodes `entry` as a table whose newest encoding version is `known` (older versions are the
/// caller's to convert before calling, by matching on `entry.version` first).
pub fn decode<T: for<'de> Deserialize<'de>>(entry: &ExtEntry, known: u32) -> Result<T, ExtError> {
    if entry.version > known {
        return Err(ExtError::UnknownVersion { table: entry.table.clone(), version: entry.version, known });
    }
    postcard::from_bytes(&entry.bytes).map_err(|source| ExtError::Decode { table: entry.table.clone(), source })
}

/// Every extension table of `data`, ready to save: the known tables (empty ones left out) and
/// then the unknown ones as they came.
pub fn gather(data: &StateData) -> Result<Vec<ExtEntry>, postcard::Error> {
    // Known tables go here, one line each: `if let Some(e) = some_table::save(data)? { out.push(e) }`.
    let mut out: Vec<ExtEntry> = Vec::new();
    if let Some(e) = super::prepared_query::save(data)? {
        out.push(e)
    }
    if let Some(e) = super::ext_fields::save_nodes(data)? {
        out.push(e)
    }
    if let Some(e) = super::ext_fields::save_services(data)? {
        out.push(e)
    }
    if let Some(e) = super::ext_fields::save_sessions(data)? {
        out.push(e)
    }
    let known: Vec<String> = out.iter().map(|e| e.table.clone()).collect();
    out.extend(data.unknown_tables.0.iter().filter(|e| !known.contains(&e.table)).cloned());
    Ok(out)
}

/// Puts saved extension tables back into `data` (freshly decoded, every table still empty).
pub fn scatter(data: &mut StateData, entries: Vec<ExtEntry>) -> Result<(), ExtError> {
    for entry in entries {
        // Known tables are matched here by name: `"some_table" => some_table::load(data, &entry)?`.
        match entry.table.as_str() {
            super::prepared_query::TABLE_NAME => super::prepared_query::load(data, &entry)?,
            super::ext_fields::NODE_TABLE => super::ext_fields::load_nodes(data, &entry)?,
            super::ext_fields::SERVICE_TABLE => super::ext_fields::load_services(data, &entry)?,
            super::ext_fields::SESSION_TABLE => super::ext_fields::load_sessions(data, &entry)?,
            _ => data.unknown_tables.0.push(entry),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_tables_survive_a_round_trip() {
        let mut data = StateData { kv_index: 5, ..StateData::default() };
        let future = entry("from_the_future", 3, &vec![1u32, 2, 3]).expect("encode");
        data.unknown_tables.0.push(future.clone());
        let bytes = postcard::to_allocvec(&data).expect("serialize");
        let back = crate::state::deserialize_state(&bytes).expect("deserialize");
        assert_eq!(back.unknown_tables.0, vec![future]);
        assert_eq!(back.kv_index, 5);
    }

    #[test]
    fn a_newer_encoding_version_is_refused_by_name() {
        let e = entry("t", 2, &7u8).expect("encode");
        let err = decode::<u8>(&e, 1).expect_err("version 2 is unknown");
        assert!(err.to_string().contains("\"t\" has encoding version 2"), "{err}");
        assert_eq!(decode::<u8>(&e, 2).expect("known"), 7);
    }
}
