//! Sim evidence verification with a cache of verified sim roots.
//!
//! `cocoon_attest::verify` checks the sim root's self-signature and the
//! report signature on every call: two ECDSA P-384 verifications in the
//! RustCrypto `p384` crate. The root never changes while the KBS runs, so
//! once a report under a root has passed the full verification, this cache
//! keeps that root's public key and validity window, and later reports under
//! the same root key id get the same checks minus the repeated self-signature:
//! parse (attest's parser), root validity at the verification time, report
//! signature (`cocoon_attest::sim::report_signed_by`), debug flag.
//! Any failure on the fast path falls back to the full verification, so
//! refusals carry exactly attest's errors. Tests check that both paths give
//! the same claims and refuse the same tampered reports.

use std::collections::HashMap;
use std::sync::RwLock;

use cocoon_attest::sim::SimReport;
use cocoon_attest::{Claims, Collateral, Tee, UnixTime};
use x509_cert::der::{Decode, Encode};

#[derive(Clone, Debug)]
struct Root {
    /// Uncompressed SEC1 P-384 point.
    point: Vec<u8>,
    not_before: u64,
    not_after: u64,
}

/// Verified sim roots by key id (SHA-256 of the SubjectPublicKeyInfo DER).
/// One cache belongs to one (unchanging) collateral: the KBS's.
#[derive(Debug, Default)]
pub struct SimRootCache {
    roots: RwLock<HashMap<[u8; 32], Root>>,
}

impl SimRootCache {
    /// Verifies sim `evidence` against `collateral` at `now`, as
    /// `cocoon_attest::verify(Tee::Sim, ..)` does.
    pub fn verify(
        &self,
        evidence: &[u8],
        collateral: &Collateral,
        now: UnixTime,
    ) -> cocoon_attest::Result<Claims> {
        let report = SimReport::parse(evidence)?;
        let root = self
            .roots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&report.root_key_id)
            .cloned();
        if let Some(root) = root {
            if root.not_before <= now.0
                && now.0 <= root.not_after
                && report.debug
                && cocoon_attest::sim::report_signed_by(evidence, &root.point)
            {
                return Ok(report.claims());
            }
        }
        let claims = cocoon_attest::verify(Tee::Sim, evidence, collateral, now)?;
        self.learn(collateral, &report.root_key_id);
        Ok(claims)
    }

    /// After a full verification succeeded with root key id `id`: cache
    /// that root if exactly one configured root has that key id.
    fn learn(&self, collateral: &Collateral, id: &[u8; 32]) {
        let mut found = None;
        for der in &collateral.sim_roots {
            let Ok(cert) = x509_cert::Certificate::from_der(der) else {
                continue;
            };
            let tbs = cert.tbs_certificate();
            let Ok(spki) = tbs.subject_public_key_info().to_der() else {
                continue;
            };
            if crate::crypto::sha256(&spki) != *id {
                continue;
            }
            if found.is_some() {
                return; // ambiguous: keep using the full verification
            }
            let point = tbs
                .subject_public_key_info()
                .subject_public_key
                .raw_bytes()
                .to_vec();
            if point.len() != 97 || point[0] != 4 {
                return;
            }
            let v = tbs.validity();
            found = Some(Root {
                point,
                not_before: v.not_before.to_unix_duration().as_secs(),
                not_after: v.not_after.to_unix_duration().as_secs(),
            });
        }
        if let Some(r) = found {
            self.roots
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(*id, r);
        }
    }

    /// Number of cached roots.
    pub fn len(&self) -> usize {
        self.roots.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no root is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(ev: &[u8], c: &Collateral, now: UnixTime) -> Option<String> {
        cocoon_attest::verify(Tee::Sim, ev, c, now)
            .ok()
            .map(|c| serde_json::to_string(&c).unwrap())
    }

    fn fast(cache: &SimRootCache, ev: &[u8], c: &Collateral, now: UnixTime) -> Option<String> {
        cache
            .verify(ev, c, now)
            .ok()
            .map(|c| serde_json::to_string(&c).unwrap())
    }

    #[test]
    fn cached_path_matches_full_verification() {
        let dir = tempfile::tempdir().unwrap();
        let sim = cocoon_attest::sim::init(&dir.path().join("sim")).unwrap();
        let other = cocoon_attest::sim::init(&dir.path().join("other")).unwrap();
        let coll = Collateral::from_paths(&[sim.root_path()]).unwrap();
        let now = UnixTime::now();
        let cache = SimRootCache::default();
        let ev = sim.sign([7; 48], &[1; 32], &[2; 64], 3).unwrap();
        // First call: full path, then the root is cached.
        assert_eq!(fast(&cache, &ev, &coll, now), full(&ev, &coll, now));
        assert!(full(&ev, &coll, now).is_some());
        assert_eq!(cache.len(), 1);
        // Cached path: same claims for a different report.
        let ev2 = sim.sign([9; 48], &[3; 48], &[4; 64], 5).unwrap();
        assert!(full(&ev2, &coll, now).is_some());
        assert_eq!(fast(&cache, &ev2, &coll, now), full(&ev2, &coll, now));
        // Every single-byte change is refused by both, with the same error.
        for i in 0..ev2.len() {
            let mut t = ev2.clone();
            t[i] ^= 0x01;
            let f = cache.verify(&t, &coll, now).map_err(|e| e.to_string());
            let g = cocoon_attest::verify(Tee::Sim, &t, &coll, now).map_err(|e| e.to_string());
            assert!(g.is_err(), "byte {i}");
            assert_eq!(
                f.map(|c| serde_json::to_string(&c).unwrap()),
                g.map(|c| serde_json::to_string(&c).unwrap()),
                "byte {i}"
            );
        }
        // An untrusted root, and times outside the root's validity.
        let bad = other.sign([7; 48], &[1; 32], &[2; 64], 3).unwrap();
        assert!(cache.verify(&bad, &coll, now).is_err());
        assert!(cache.verify(&ev2, &coll, UnixTime(1)).is_err());
        assert!(cache.verify(&ev2, &coll, UnixTime(u64::MAX / 2)).is_err());
    }
}
