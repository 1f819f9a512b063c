//! The embedded store: one redb database file, every value encrypted at rest.
//!
//! Tables (keys are plain text, values are sealed):
//! * `resources`: `repo/type/tag` -> resource bytes
//! * `reference_values`: workload digest -> [`crate::ReferenceValues`] JSON
//! * `meta`: `policy` (Rego text), `token-key` and `ca-key` (PKCS#8 PEM),
//!   `ca-cert` (PEM), `kek-check`
//!
//! A sealed value is `0x01 ‖ nonce (12) ‖ AES-256-GCM(KEK, nonce, value,
//! AAD = "<table>/<key>")‖tag (16)`: the AAD names the table and key, so a
//! value moved to another key or table fails authentication. The
//! key-encryption key (KEK) is 32 bytes from a file or an environment
//! variable (64 hex digits or base64); `kek-check` detects a wrong KEK at
//! open. Every `put`/`delete` is a redb transaction committed with
//! `Durability::Immediate` (fsync) before it returns.

use std::path::Path;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::fill_random;
use crate::{Error, Result};

/// Resource table.
pub const RESOURCES: &str = "resources";
/// Reference values table.
pub const REFERENCE_VALUES: &str = "reference_values";
/// Miscellaneous table (policy, keys).
pub const META: &str = "meta";

const SEAL_VERSION: u8 = 1;
const KEK_CHECK: &[u8] = b"cocoon-kbs kek check v1";

fn table(name: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(name)
}

fn se(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

/// A 256-bit key-encryption key, zeroized on drop.
#[derive(Clone)]
pub struct Kek(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

impl Kek {
    /// From raw bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Kek(Zeroizing::new(b))
    }

    /// A fresh random key.
    pub fn generate() -> Result<Self> {
        let mut k = Zeroizing::new([0u8; 32]);
        fill_random(k.as_mut())?;
        Ok(Kek(k))
    }

    /// Parses 64 hex digits or base64 of 32 bytes (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim();
        let mut bytes = Zeroizing::new(
            hex::decode(t)
                .ok()
                .or_else(|| crate::crypto::b64_decode_any("kek", t).ok())
                .ok_or_else(|| {
                    Error::Config(
                        "key-encryption key: expected 64 hex digits or base64 of 32 bytes".into(),
                    )
                })?,
        );
        if bytes.len() != 32 {
            return Err(Error::Config(format!(
                "key-encryption key: {} bytes, expected 32",
                bytes.len()
            )));
        }
        let mut k = [0u8; 32];
        k.copy_from_slice(&bytes);
        bytes.zeroize();
        let kek = Kek::from_bytes(k);
        k.zeroize();
        Ok(kek)
    }

    /// Reads the key from `file`, or else from the environment variable `env`.
    pub fn load(file: Option<&Path>, env: Option<&str>) -> Result<Self> {
        if let Some(f) = file {
            let text = Zeroizing::new(std::fs::read_to_string(f).map_err(|e| {
                Error::Config(format!("read key-encryption key {}: {e}", f.display()))
            })?);
            return Kek::parse(&text);
        }
        if let Some(var) = env {
            let text = Zeroizing::new(std::env::var(var).map_err(|_| {
                Error::Config(format!(
                    "environment variable {var} (key-encryption key) is not set"
                ))
            })?);
            return Kek::parse(&text);
        }
        Err(Error::Config(
            "no key-encryption key: set store.kek_file or store.kek_env".into(),
        ))
    }

    /// Hex text of the key (for `keygen`).
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.as_ref()))
    }

    fn cipher(&self) -> Result<LessSafeKey> {
        UnboundKey::new(&AES_256_GCM, self.0.as_ref())
            .map(LessSafeKey::new)
            .map_err(|_| Error::Internal("key-encryption key is not an AES-256 key".into()))
    }
}

/// Seals `value` under `kek` for `table`/`key`.
pub fn seal(kek: &Kek, table: &str, key: &str, value: &[u8]) -> Result<Vec<u8>> {
    let mut nonce = [0u8; 12];
    fill_random(&mut nonce)?;
    let mut buf = Zeroizing::new(value.to_vec());
    let aad = format!("{table}/{key}");
    let tag = kek
        .cipher()?
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_bytes()),
            &mut buf,
        )
        .map_err(|_| Error::Internal("seal failed".into()))?;
    let mut out = Vec::with_capacity(1 + 12 + buf.len() + 16);
    out.push(SEAL_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&buf);
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Opens a value sealed by [`seal`]; fails if the key, table or bytes differ.
pub fn open(kek: &Kek, table: &str, key: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if sealed.len() < 1 + 12 + 16 || sealed[0] != SEAL_VERSION {
        return Err(Error::Store(format!("{table}/{key}: not a sealed value")));
    }
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&sealed[1..13]);
    // Ciphertext and tag, opened in place.
    let mut buf = Zeroizing::new(sealed[13..].to_vec());
    let aad = format!("{table}/{key}");
    let len = kek
        .cipher()?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_bytes()),
            &mut buf,
        )
        .map(|plain| plain.len())
        .map_err(|_| {
            Error::Store(format!(
                "{table}/{key}: authentication failed (wrong key-encryption key or tampered store)"
            ))
        })?;
    buf.truncate(len);
    Ok(buf)
}

/// The encrypted store.
pub struct Store {
    db: Database,
    kek: Kek,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database at `path` with `kek`. Fails if the
    /// store was created with another key.
    pub fn open(path: &Path, kek: Kek) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Store(format!("create {}: {e}", dir.display())))?;
        }
        let db = Database::create(path)
            .map_err(|e| Error::Store(format!("open {}: {e}", path.display())))?;
        let s = Store { db, kek };
        {
            let w = s.db.begin_write().map_err(se)?;
            for t in [RESOURCES, REFERENCE_VALUES, META] {
                w.open_table(table(t)).map_err(se)?;
            }
            w.commit().map_err(se)?;
        }
        match s.get_raw(META, "kek-check")? {
            Some(v) => {
                if v.as_slice() != KEK_CHECK {
                    return Err(Error::Store("kek check value differs".into()));
                }
            }
            None => s.put(META, "kek-check", KEK_CHECK)?,
        }
        Ok(s)
    }

    fn get_raw(&self, t: &str, key: &str) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let r = self.db.begin_read().map_err(se)?;
        let tbl = r.open_table(table(t)).map_err(se)?;
        match tbl.get(key).map_err(se)? {
            Some(v) => Ok(Some(open(&self.kek, t, key, v.value()).map_err(|e| {
                if key == "kek-check" {
                    Error::Store("wrong key-encryption key for this store".into())
                } else {
                    e
                }
            })?)),
            None => Ok(None),
        }
    }

    /// Reads and decrypts `table`/`key`.
    pub fn get(&self, t: &str, key: &str) -> Result<Option<Zeroizing<Vec<u8>>>> {
        self.get_raw(t, key)
    }

    /// Encrypts and writes `table`/`key`; durable when it returns.
    pub fn put(&self, t: &str, key: &str, value: &[u8]) -> Result<()> {
        let sealed = seal(&self.kek, t, key, value)?;
        let w = self.db.begin_write().map_err(se)?;
        {
            let mut tbl = w.open_table(table(t)).map_err(se)?;
            tbl.insert(key, sealed.as_slice()).map_err(se)?;
        }
        w.commit().map_err(se)
    }

    /// Deletes `table`/`key`; returns whether it existed. Durable when it returns.
    pub fn delete(&self, t: &str, key: &str) -> Result<bool> {
        let w = self.db.begin_write().map_err(se)?;
        let existed = {
            let mut tbl = w.open_table(table(t)).map_err(se)?;
            let r = tbl.remove(key).map_err(se)?.is_some();
            r
        };
        w.commit().map_err(se)?;
        Ok(existed)
    }

    /// The keys of `table`, sorted.
    pub fn keys(&self, t: &str) -> Result<Vec<String>> {
        let r = self.db.begin_read().map_err(se)?;
        let tbl = r.open_table(table(t)).map_err(se)?;
        let mut out = Vec::new();
        for item in tbl.iter().map_err(se)? {
            let (k, _) = item.map_err(se)?;
            out.push(k.value().to_string());
        }
        Ok(out)
    }

    /// Every decrypted value of `table`, by key.
    pub fn values(&self, t: &str) -> Result<Vec<(String, Zeroizing<Vec<u8>>)>> {
        let mut out = Vec::new();
        for k in self.keys(t)? {
            if let Some(v) = self.get(t, &k)? {
                out.push((k, v));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bound_to_their_key() {
        let k = Kek::generate().unwrap();
        let s = seal(&k, "resources", "a/b/c", b"secret").unwrap();
        assert_eq!(
            open(&k, "resources", "a/b/c", &s).unwrap().as_slice(),
            b"secret"
        );
        assert!(open(&k, "resources", "a/b/d", &s).is_err());
        assert!(open(&k, "meta", "a/b/c", &s).is_err());
        assert!(open(&Kek::generate().unwrap(), "resources", "a/b/c", &s).is_err());
        let mut t = s.clone();
        t[14] ^= 1;
        assert!(open(&k, "resources", "a/b/c", &t).is_err());
        assert!(open(&k, "resources", "a/b/c", &[1, 2]).is_err());
    }

    #[test]
    fn round_trip_wrong_kek_and_no_plaintext_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kbs.redb");
        let k = Kek::generate().unwrap();
        {
            let s = Store::open(&p, k.clone()).unwrap();
            s.put(RESOURCES, "r/t/g", b"PLAINTEXT-SECRET-4242").unwrap();
            assert_eq!(s.keys(RESOURCES).unwrap(), vec!["r/t/g".to_string()]);
            assert!(s.delete(RESOURCES, "nope/x/y").is_ok_and(|e| !e));
        }
        let bytes = std::fs::read(&p).unwrap();
        assert!(!bytes
            .windows(b"PLAINTEXT-SECRET-4242".len())
            .any(|w| w == b"PLAINTEXT-SECRET-4242"));
        let e = Store::open(&p, Kek::generate().unwrap()).unwrap_err();
        assert!(e.to_string().contains("wrong key-encryption key"), "{e}");
        let s = Store::open(&p, k).unwrap();
        assert_eq!(
            s.get(RESOURCES, "r/t/g").unwrap().unwrap().as_slice(),
            b"PLAINTEXT-SECRET-4242"
        );
    }

    #[test]
    fn kek_parsing() {
        assert!(Kek::parse(&"ab".repeat(32)).is_ok());
        assert!(Kek::parse(&crate::crypto::b64(&[7u8; 32])).is_ok());
        assert!(Kek::parse("short").is_err());
        assert!(Kek::parse(&"ab".repeat(31)).is_err());
        assert_eq!(format!("{:?}", Kek::generate().unwrap()), "Kek(<redacted>)");
    }
}
