//! JWTs: EAR attestation-result tokens issued by the KBS and admin tokens
//! presented to it. Both are ES256 (ECDSA P-256 / SHA-256, JOSE `r‖s`).
//!
//! An attestation token carries the EAR claims (`eat_profile`, `iat`,
//! `exp`, `iss`, `ear.verifier-id`, `submods.cpu0.{ear.status,
//! ear.trustworthiness-vector, ear.veraison.annotated-evidence}`); the
//! annotated evidence holds the normalized claims, the init data and the
//! `tee-pubkey`, so a resource request with `Authorization: Bearer` needs no
//! session. The signing key is published as a JWKS.

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde_json::{json, Value};

use crate::crypto::{b64url, p256_jwk, sha256};
use crate::{Error, Result};
use cocoon_kbs_protocol::b64url_decode;

/// The EAR profile named in every token.
pub const EAR_PROFILE: &str = "tag:github.com,2023:veraison/ear";

/// RFC 7638 thumbprint of a P-256 key, base64url.
pub fn thumbprint(pk: &p256::PublicKey) -> String {
    let jwk = p256_jwk(pk);
    let canon = format!(
        "{{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":{},\"y\":{}}}",
        jwk["x"], jwk["y"]
    );
    b64url(&sha256(canon.as_bytes()))
}

fn jwt_header(kid: &str) -> Value {
    json!({"alg": "ES256", "typ": "JWT", "kid": kid})
}

fn jwt_part(v: &Value) -> Result<String> {
    serde_json::to_vec(v)
        .map(|b| b64url(&b))
        .map_err(|e| Error::Internal(format!("encode JWT: {e}")))
}

/// Signs `claims` as a compact ES256 JWT with key id `kid`.
pub fn sign_es256(key: &SigningKey, kid: &str, claims: &Value) -> Result<String> {
    let signing_input = format!("{}.{}", jwt_part(&jwt_header(kid))?, jwt_part(claims)?);
    let sig: Signature = key.sign(signing_input.as_bytes());
    Ok(format!("{signing_input}.{}", b64url(&sig.to_bytes())))
}

/// Verifies a compact ES256 JWT against `keys` (any may match) and checks
/// `exp` (and `nbf`, `iat` not in the future, with 60 s leeway) at `now`.
/// Returns the claims. Every failure is [`Error::Unauthorized`].
pub fn verify_es256(token: &str, keys: &[VerifyingKey], now: u64) -> Result<Value> {
    let unauthorized = |m: &str| Error::Unauthorized(format!("token: {m}"));
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unauthorized("not a compact JWT"));
    };
    let header: Value =
        serde_json::from_slice(&b64url_decode(h).ok_or_else(|| unauthorized("bad header"))?)
            .map_err(|_| unauthorized("bad header"))?;
    if header.get("alg").and_then(Value::as_str) != Some("ES256") {
        return Err(unauthorized("alg must be ES256"));
    }
    let sig = b64url_decode(s).ok_or_else(|| unauthorized("bad signature"))?;
    let sig = Signature::from_slice(&sig).map_err(|_| unauthorized("bad signature"))?;
    let signing_input = &token[..h.len() + 1 + c.len()];
    if !keys
        .iter()
        .any(|k| k.verify(signing_input.as_bytes(), &sig).is_ok())
    {
        return Err(unauthorized("signature does not verify with a trusted key"));
    }
    let claims: Value =
        serde_json::from_slice(&b64url_decode(c).ok_or_else(|| unauthorized("bad claims"))?)
            .map_err(|_| unauthorized("bad claims"))?;
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or_else(|| unauthorized("no exp"))?;
    if exp <= now {
        return Err(unauthorized("expired"));
    }
    for k in ["nbf", "iat"] {
        if claims
            .get(k)
            .and_then(Value::as_u64)
            .is_some_and(|t| t > now + 60)
        {
            return Err(unauthorized("not yet valid"));
        }
    }
    Ok(claims)
}

/// The KBS token signer: an ES256 key, its key id, issuer and lifetime.
pub struct TokenSigner {
    key: SigningKey,
    /// The same key in aws-lc-rs, which signs about 10x faster than the
    /// p256 crate (assembly P-256); used for every EAR token.
    fast: aws_lc_rs::signature::EcdsaKeyPair,
    kid: String,
    issuer: String,
    ttl_secs: u64,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A signer for `key`.
    pub fn new(key: &p256::SecretKey, issuer: String, ttl_secs: u64) -> Result<Self> {
        use p256::elliptic_curve::sec1::ToSec1Point;
        let point = key.public_key().to_sec1_point(false);
        let fast = aws_lc_rs::signature::EcdsaKeyPair::from_private_key_and_public_key(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            key.to_bytes().as_slice(),
            point.as_bytes(),
        )
        .map_err(|e| Error::Internal(format!("token key: {e}")))?;
        Ok(TokenSigner {
            fast,
            kid: thumbprint(&key.public_key()),
            key: SigningKey::from(key),
            issuer,
            ttl_secs,
        })
    }

    /// The verifying key.
    pub fn verifying_key(&self) -> VerifyingKey {
        *self.key.verifying_key()
    }

    /// Token lifetime in seconds.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// The JWKS document (`{"keys": [JWK]}`) with `kid`, `alg`, `use`.
    pub fn jwks(&self) -> Value {
        let mut jwk = p256_jwk(&p256::PublicKey::from(self.key.verifying_key()));
        jwk["kid"] = self.kid.clone().into();
        jwk["alg"] = "ES256".into();
        jwk["use"] = "sig".into();
        json!({"keys": [jwk]})
    }

    /// Issues an EAR token for `annotated` (claims, init data, tee-pubkey)
    /// at `now`. `status` is the EAR status (`affirming` or `warning`).
    pub fn issue_ear(
        &self,
        now: u64,
        status: &str,
        debug: bool,
        annotated: Value,
    ) -> Result<String> {
        // Trustworthiness vector (EAR): 2 = affirming, 32 = warning ("unsafe
        // config": debug/sim), 0 = no claim.
        let config = if debug { 32 } else { 2 };
        let claims = json!({
            "eat_profile": EAR_PROFILE,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_secs,
            "iss": self.issuer,
            "jti": b64url(&crate::crypto::random_bytes(16)?),
            "ear.verifier-id": {"developer": "cocoon", "build": concat!("cocoon-kbs ", env!("CARGO_PKG_VERSION"))},
            "submods": {"cpu0": {
                "ear.status": status,
                "ear.trustworthiness-vector": {
                    "instance-identity": 2,
                    "configuration": config,
                    "executables": 2,
                    "hardware": if debug { 32 } else { 2 },
                },
                "ear.veraison.annotated-evidence": annotated,
            }},
        });
        let (header, claims) = (jwt_part(&jwt_header(&self.kid))?, jwt_part(&claims)?);
        let signing_input = format!("{header}.{claims}");
        let sig = self
            .fast
            .sign(
                &aws_lc_rs::rand::SystemRandom::new(),
                signing_input.as_bytes(),
            )
            .map_err(|e| Error::Internal(format!("sign token: {e}")))?;
        Ok(format!("{signing_input}.{}", b64url(sig.as_ref())))
    }

    /// Verifies a token this signer issued and returns its annotated
    /// evidence (`submods.cpu0.ear.veraison.annotated-evidence`).
    pub fn verify_ear(&self, token: &str, now: u64) -> Result<Value> {
        let claims = verify_es256(token, &[self.verifying_key()], now)?;
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(Error::Unauthorized("token: wrong issuer".into()));
        }
        claims
            .pointer("/submods/cpu0/ear.veraison.annotated-evidence")
            .cloned()
            .ok_or_else(|| Error::Unauthorized("token: no annotated evidence".into()))
    }
}

/// Makes an admin token: ES256 JWT `{"iat", "exp", "sub": "cocoon-admin"}`
/// valid for `ttl_secs`, signed with the admin key.
pub fn admin_token(key: &p256::SecretKey, now: u64, ttl_secs: u64) -> Result<String> {
    let sk = SigningKey::from(key);
    let kid = thumbprint(&key.public_key());
    sign_es256(
        &sk,
        &kid,
        &json!({"iat": now, "exp": now + ttl_secs, "sub": "cocoon-admin"}),
    )
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::new_p256_key;

    #[test]
    fn ear_round_trip_and_refusals() {
        let k = new_p256_key().unwrap();
        let s = TokenSigner::new(&k, "kbs".into(), 300).unwrap();
        let t = s.issue_ear(1000, "warning", true, json!({"a": 1})).unwrap();
        assert_eq!(s.verify_ear(&t, 1001).unwrap(), json!({"a": 1}));
        assert!(s
            .verify_ear(&t, 1300)
            .unwrap_err()
            .to_string()
            .contains("expired"));
        let other = TokenSigner::new(&new_p256_key().unwrap(), "kbs".into(), 300).unwrap();
        assert!(other.verify_ear(&t, 1001).is_err());
        let mut bad = t.clone();
        bad.push('A');
        assert!(s.verify_ear(&bad, 1001).is_err());
        assert!(s.verify_ear("a.b", 1001).is_err());
        assert!(s.verify_ear("", 1001).is_err());
        let jwks = s.jwks();
        assert_eq!(jwks["keys"][0]["alg"], "ES256");
        let claims = verify_es256(&t, &[s.verifying_key()], 1001).unwrap();
        assert_eq!(claims["eat_profile"], EAR_PROFILE);
        assert_eq!(claims["submods"]["cpu0"]["ear.status"], "warning");
    }

    #[test]
    fn alg_none_is_refused() {
        let k = new_p256_key().unwrap();
        let s = TokenSigner::new(&k, "kbs".into(), 300).unwrap();
        let h = b64url(br#"{"alg":"none"}"#);
        let c = b64url(br#"{"exp":99999999999}"#);
        assert!(verify_es256(&format!("{h}.{c}."), &[s.verifying_key()], 1).is_err());
    }
}
