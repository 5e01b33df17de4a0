//! The gossip keyring: Consul's `encrypt` key and its rotation (`consul keyring`).
//!
//! Keys are 16, 24 or 32 random bytes, base64-encoded (`consul-rs keygen` prints 32), selecting
//! AES-128/192/256-GCM. Every gossip packet and stream payload is sealed with the *primary* key as
//! `version (1) | nonce (12) | ciphertext+tag`; opening tries every installed key, which is what
//! lets a datacenter rotate keys without downtime: install the new key everywhere, make it
//! primary, then remove the old one. The keyring lives in `data_dir/serf/local.keyring` (a JSON
//! list of base64 keys, primary first), like Consul's, so restarts keep the rotated keys.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm};
use base64::Engine;
use parking_lot::RwLock;

/// Sealed-message format version.
const SEALED_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Bytes sealing adds to a message.
pub const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

type Aes192Gcm = AesGcm<aes_gcm::aes::Aes192, aes_gcm::aead::consts::U12>;

/// A keyring problem.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum KeyringError {
    /// The key is not base64 or not 16/24/32 bytes.
    #[error("invalid gossip encryption key: {0}")]
    InvalidKey(String),
    /// The key is not installed.
    #[error("key is not in the keyring")]
    UnknownKey,
    /// The primary key cannot be removed.
    #[error("removing the primary key is not allowed")]
    RemovePrimary,
    /// No key opened the message.
    #[error("no installed key decrypts the message (wrong or missing `encrypt` key?)")]
    NoKeyMatches,
    /// The message is too short or has an unknown version.
    #[error("malformed encrypted message")]
    Malformed,
    /// Encryption is not enabled on this agent.
    #[error("gossip encryption is not enabled")]
    NotEnabled,
    /// The keyring file could not be read or written.
    #[error("keyring file {0}: {1}")]
    File(PathBuf, String),
}

#[derive(Clone)]
enum Cipher {
    A128(Box<Aes128Gcm>),
    A192(Box<Aes192Gcm>),
    A256(Box<Aes256Gcm>),
}

impl Cipher {
    fn new(key: &[u8]) -> Result<Cipher, KeyringError> {
        let bad = |e: aes_gcm::aes::cipher::InvalidLength| KeyringError::InvalidKey(e.to_string());
        Ok(match key.len() {
            16 => Cipher::A128(Box::new(Aes128Gcm::new_from_slice(key).map_err(bad)?)),
            24 => Cipher::A192(Box::new(Aes192Gcm::new_from_slice(key).map_err(bad)?)),
            32 => Cipher::A256(Box::new(Aes256Gcm::new_from_slice(key).map_err(bad)?)),
            n => return Err(KeyringError::InvalidKey(format!("key is {n} bytes; it must be 16, 24 or 32"))),
        })
    }

    fn seal(&self, nonce: &[u8; NONCE_LEN], msg: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let n = aes_gcm::Nonce::from_slice(nonce);
        let p = Payload { msg, aad };
        match self {
            Cipher::A128(c) => c.encrypt(n, p).ok(),
            Cipher::A192(c) => c.encrypt(n, p).ok(),
            Cipher::A256(c) => c.encrypt(n, p).ok(),
        }
    }

    fn open(&self, nonce: &[u8], msg: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let n = aes_gcm::Nonce::from_slice(nonce);
        let p = Payload { msg, aad };
        match self {
            Cipher::A128(c) => c.decrypt(n, p).ok(),
            Cipher::A192(c) => c.decrypt(n, p).ok(),
            Cipher::A256(c) => c.decrypt(n, p).ok(),
        }
    }
}

struct Key {
    encoded: String,
    cipher: Cipher,
}

/// Parses a base64 key as `consul keygen` prints it.
pub fn decode_key(encoded: &str) -> Result<Vec<u8>, KeyringError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| KeyringError::InvalidKey(format!("not base64: {e}")))?;
    if !matches!(raw.len(), 16 | 24 | 32) {
        return Err(KeyringError::InvalidKey(format!("key is {} bytes; it must be 16, 24 or 32", raw.len())));
    }
    Ok(raw)
}

/// A fresh 32-byte key, base64-encoded (`consul-rs keygen`).
pub fn generate_key() -> String {
    let key: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Installed keys, the first one primary. Thread-safe; cheap to share behind an `Arc`.
pub struct Keyring {
    keys: RwLock<Vec<Key>>,
    file: Option<PathBuf>,
    /// `label` bound into every seal as associated data, so pools with different labels
    /// (e.g. network segments) cannot read each other even with the same key.
    label: Vec<u8>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Keyring").field("keys", &self.keys.read().len()).field("file", &self.file).finish()
    }
}

impl Keyring {
    /// A keyring with these keys (primary first), saved to `file` on every change if given.
    pub fn new(keys: &[String], file: Option<PathBuf>, label: &str) -> Result<Keyring, KeyringError> {
        let ring = Keyring { keys: RwLock::new(Vec::new()), file, label: label.as_bytes().to_vec() };
        for k in keys {
            ring.insert(k)?;
        }
        Ok(ring)
    }

    /// Loads `file` if it exists; otherwise starts from `initial` (the `encrypt` key) and saves it.
    /// A keyring file wins over `encrypt`, as in Consul, so rotated keys survive a restart.
    pub fn load_or_init(file: &Path, initial: Option<&str>, label: &str) -> Result<Keyring, KeyringError> {
        let ferr = |e: &dyn std::fmt::Display| KeyringError::File(file.to_path_buf(), e.to_string());
        if file.exists() {
            let text = std::fs::read_to_string(file).map_err(|e| ferr(&e))?;
            let keys: Vec<String> = serde_json::from_str(&text).map_err(|e| ferr(&e))?;
            if !keys.is_empty() {
                return Keyring::new(&keys, Some(file.to_path_buf()), label);
            }
        }
        let keys: Vec<String> = initial.map(|k| vec![k.to_string()]).unwrap_or_default();
        let ring = Keyring::new(&keys, Some(file.to_path_buf()), label)?;
        if !keys.is_empty() {
            ring.save()?;
        }
        Ok(ring)
    }

    fn insert(&self, encoded: &str) -> Result<bool, KeyringError> {
        let raw = decode_key(encoded)?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(&raw);
        let mut keys = self.keys.write();
        if keys.iter().any(|k| k.encoded == encoded) {
            return Ok(false);
        }
        keys.push(Key { encoded, cipher: Cipher::new(&raw)? });
        Ok(true)
    }

    fn save(&self) -> Result<(), KeyringError> {
        let Some(file) = &self.file else { return Ok(()) };
        let ferr = |e: &dyn std::fmt::Display| KeyringError::File(file.clone(), e.to_string());
        let list = self.list();
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ferr(&e))?;
        }
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&list).map_err(|e| ferr(&e))?).map_err(|e| ferr(&e))?;
        std::fs::rename(&tmp, file).map_err(|e| ferr(&e))
    }

    /// Whether any key is installed (encryption on).
    pub fn enabled(&self) -> bool {
        !self.keys.read().is_empty()
    }

    /// Installed keys, base64, primary first.
    pub fn list(&self) -> Vec<String> {
        self.keys.read().iter().map(|k| k.encoded.clone()).collect()
    }

    /// The primary key, base64.
    pub fn primary(&self) -> Option<String> {
        self.keys.read().first().map(|k| k.encoded.clone())
    }

    /// Installs a key (idempotent).
    pub fn install(&self, encoded: &str) -> Result<(), KeyringError> {
        if self.insert(encoded)? {
            self.save()?;
        }
        Ok(())
    }

    /// Makes an installed key the primary one.
    pub fn use_key(&self, encoded: &str) -> Result<(), KeyringError> {
        let raw = decode_key(encoded)?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
        {
            let mut keys = self.keys.write();
            let pos = keys.iter().position(|k| k.encoded == encoded).ok_or(KeyringError::UnknownKey)?;
            let key = keys.remove(pos);
            keys.insert(0, key);
        }
        self.save()
    }

    /// Removes a key that is not the primary one.
    pub fn remove(&self, encoded: &str) -> Result<(), KeyringError> {
        let raw = decode_key(encoded)?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
        {
            let mut keys = self.keys.write();
            let pos = keys.iter().position(|k| k.encoded == encoded).ok_or(KeyringError::UnknownKey)?;
            if pos == 0 {
                return Err(KeyringError::RemovePrimary);
            }
            keys.remove(pos);
        }
        self.save()
    }

    /// Seals `msg` with the primary key.
    pub fn seal(&self, msg: &[u8]) -> Result<Vec<u8>, KeyringError> {
        let keys = self.keys.read();
        let primary = keys.first().ok_or(KeyringError::NotEnabled)?;
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = primary.cipher.seal(&nonce, msg, &self.label).ok_or(KeyringError::Malformed)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The nonce of a sealed message (its identity for replay detection).
    pub fn nonce_of(sealed: &[u8]) -> Option<[u8; NONCE_LEN]> {
        sealed.get(1..1 + NONCE_LEN).and_then(|n| n.try_into().ok())
    }

    /// Opens a sealed message with whichever installed key sealed it.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, KeyringError> {
        if sealed.len() < OVERHEAD || sealed[0] != SEALED_V1 {
            return Err(KeyringError::Malformed);
        }
        let (nonce, body) = sealed[1..].split_at(NONCE_LEN);
        let keys = self.keys.read();
        if keys.is_empty() {
            return Err(KeyringError::NotEnabled);
        }
        keys.iter().find_map(|k| k.cipher.open(nonce, body, &self.label)).ok_or(KeyringError::NoKeyMatches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_for_every_key_size() {
        for n in [16usize, 24, 32] {
            let key = base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
            let ring = Keyring::new(&[key], None, "").expect("test setup");
            let sealed = ring.seal(b"hello").expect("test setup");
            assert_eq!(sealed.len(), 5 + OVERHEAD);
            assert_eq!(ring.open(&sealed).expect("test setup"), b"hello");
        }
    }

    #[test]
    fn wrong_key_tampering_and_garbage_are_refused() {
        let a = Keyring::new(&[generate_key()], None, "").expect("test setup");
        let b = Keyring::new(&[generate_key()], None, "").expect("test setup");
        let mut sealed = a.seal(b"secret").expect("test setup");
        assert_eq!(b.open(&sealed), Err(KeyringError::NoKeyMatches));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(a.open(&sealed), Err(KeyringError::NoKeyMatches));
        assert_eq!(a.open(b"\x01short"), Err(KeyringError::Malformed));
        assert_eq!(a.open(&[9u8; 64]), Err(KeyringError::Malformed));
    }

    #[test]
    fn labels_separate_pools() {
        let key = generate_key();
        let a = Keyring::new(std::slice::from_ref(&key), None, "a").expect("test setup");
        let b = Keyring::new(&[key], None, "b").expect("test setup");
        assert!(b.open(&a.seal(b"x").expect("test setup")).is_err());
    }

    #[test]
    fn invalid_keys_are_named() {
        assert!(matches!(decode_key("not base64!"), Err(KeyringError::InvalidKey(m)) if m.contains("base64")));
        assert!(matches!(decode_key("AAAA"), Err(KeyringError::InvalidKey(m)) if m.contains("3 bytes")));
        assert_eq!(decode_key(&generate_key()).expect("test setup").len(), 32);
    }

    #[test]
    fn rotation_install_use_remove() {
        let dir = tempfile::tempdir().expect("test setup");
        let file = dir.path().join("serf/local.keyring");
        let (old, new) = (generate_key(), generate_key());
        let ring = Keyring::load_or_init(&file, Some(&old), "").expect("test setup");
        let sealed_old = ring.seal(b"m").expect("test setup");
        ring.install(&new).expect("test setup");
        assert_eq!(ring.remove(&old), Err(KeyringError::RemovePrimary));
        ring.use_key(&new).expect("test setup");
        assert_eq!(ring.primary(), Some(new.clone()));
        // Messages sealed under the old key still open while it is installed.
        assert_eq!(ring.open(&sealed_old).expect("test setup"), b"m");
        ring.remove(&old).expect("test setup");
        assert!(ring.open(&sealed_old).is_err());
        assert_eq!(ring.remove(&old), Err(KeyringError::UnknownKey));
        // The file wins over `encrypt` on restart.
        let again = Keyring::load_or_init(&file, Some(old.as_str()), "").expect("test setup");
        assert_eq!(again.list(), vec![new]);
    }
}
