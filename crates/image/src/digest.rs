//! Content digests (`sha256:<hex>`) and readers that verify them while streaming.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::Error;

/// A SHA-256 content digest, written `sha256:<64 lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Digest(Sha256::digest(data).into())
    }

    /// The lowercase hex of the digest, without the algorithm prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::BadDigest {
            input: s.to_string(),
        };
        let hex_part = s.strip_prefix("sha256:").ok_or_else(bad)?;
        if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| bad())?;
        Ok(Digest(out))
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = Error;

    fn try_from(d: &oci_spec::image::Digest) -> Result<Self, Error> {
        d.as_ref().parse()
    }
}

impl From<Digest> for oci_spec::image::Digest {
    fn from(d: Digest) -> Self {
        // A sha256 digest in canonical form always parses.
        d.to_string().parse().expect("canonical sha256 digest")
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The digest and length of what has been read so far.
    pub fn finish(self) -> (Digest, u64) {
        (Digest(self.hasher.finalize().into()), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Reads a blob and fails, naming the blob, if its content does not match the
/// expected digest and size. The check runs when the stream ends, and a stream
/// that runs past the expected size fails at once; callers must read to the end.
pub struct VerifyingReader<R> {
    inner: HashingReader<R>,
    expected: Digest,
    size: u64,
    checked: bool,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`, which should yield exactly `size` bytes hashing to `expected`.
    pub fn new(inner: R, expected: Digest, size: u64) -> Self {
        VerifyingReader {
            inner: HashingReader::new(inner),
            expected,
            size,
            checked: false,
        }
    }

    fn mismatch(&self, reason: String) -> io::Error {
        Error::BlobMismatch {
            blob: self.expected,
            reason,
        }
        .into_io()
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.checked {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if self.inner.count > self.size {
            return Err(self.mismatch(format!(
                "longer than the {} bytes its descriptor declares",
                self.size
            )));
        }
        if n == 0 && !buf.is_empty() {
            if self.inner.count != self.size {
                return Err(self.mismatch(format!(
                    "{} bytes where its descriptor declares {}",
                    self.inner.count, self.size
                )));
            }
            let actual = Digest(self.inner.hasher.clone().finalize().into());
            if actual != self.expected {
                return Err(self.mismatch(format!("content hashes to {actual}")));
            }
            self.checked = true;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let d = Digest::of(b"abc");
        let s = d.to_string();
        assert_eq!(
            s,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(s.parse::<Digest>().unwrap(), d);
        for bad in [
            "ba7816bf",
            "sha512:00",
            "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
            "sha256:zz",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }

    fn read_all(data: &[u8], expected: Digest, size: u64) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        VerifyingReader::new(data, expected, size)
            .read_to_end(&mut out)
            .map_err(|e| Error::io("reading", e))?;
        Ok(out)
    }

    #[test]
    fn verifying_reader_accepts_exact_blob() {
        assert_eq!(
            read_all(b"hello", Digest::of(b"hello"), 5).unwrap(),
            b"hello"
        );
    }

    #[test]
    fn verifying_reader_refuses_changed_short_and_long_blobs() {
        let d = Digest::of(b"hello");
        let e = read_all(b"hellp", d, 5).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("blob {d} is corrupt: content hashes to sha256:")),
            "{e}"
        );
        let e = read_all(b"hell", d, 5).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("blob {d} is corrupt: 4 bytes where its descriptor declares 5")
        );
        let e = read_all(b"hello!", d, 5).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("blob {d} is corrupt: longer than the 5 bytes its descriptor declares")
        );
    }
}
