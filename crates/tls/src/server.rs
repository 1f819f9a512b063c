//! Servers: a rustls certificate resolver that serves attested
//! certificates, minting one per connection for clients that send a nonce.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cocoon_attest::workload::InitData;
use cocoon_attest::Attester;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::cert::{attested_certificate, certified_key};
use crate::nonce::nonce_from_server_name;
use crate::{Error, Result};

/// How far back a certificate's validity starts, for clients whose clocks
/// run a little behind.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Serves attested certificates for one TLS key, workload and TEE.
///
/// * SNI `<nonce>.nonce.cocoon` ([`crate::nonce`]): a fresh certificate
///   binding that nonce, made for this handshake (one evidence generation).
/// * Any other SNI, or none (including `evidence.cocoon`): the current
///   certificate without a nonce, remade when half its lifetime is over.
///
/// When the TEE cannot produce evidence the handshake fails (rustls sends
/// an alert); [`AttestedCertResolver::certificate`] gives the reason.
pub struct AttestedCertResolver {
    key: p256::SecretKey,
    attester: Arc<dyn Attester>,
    init: InitData,
    lifetime: Duration,
    current: Mutex<Option<(Arc<CertifiedKey>, SystemTime)>>,
}

impl std::fmt::Debug for AttestedCertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestedCertResolver")
            .field("tee", &self.attester.tee())
            .field("workload", &self.init.workload_digest)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl AttestedCertResolver {
    /// A resolver for the TLS key `key` (made inside the TEE, never leaving
    /// it), evidence from `attester`, the workload `init`, and certificates
    /// valid for `lifetime` (plus [`CLOCK_SKEW`] before).
    pub fn new(
        key: p256::SecretKey,
        attester: Arc<dyn Attester>,
        init: InitData,
        lifetime: Duration,
    ) -> Self {
        AttestedCertResolver {
            key,
            attester,
            init,
            lifetime,
            current: Mutex::new(None),
        }
    }

    /// The certificate for a client that sent `nonce` (a fresh one), or for
    /// one that sent none (the current one, remade when half its lifetime
    /// is over).
    pub fn certificate(&self, nonce: Option<&[u8; 32]>) -> Result<Arc<CertifiedKey>> {
        let now = SystemTime::now();
        if let Some(n) = nonce {
            return self.mint(Some(n), now);
        }
        let mut current = self
            .current
            .lock()
            .map_err(|_| Error::build("the certificate cache lock is poisoned"))?;
        if let Some((ck, made)) = current.as_ref() {
            let age = now.duration_since(*made).unwrap_or(Duration::MAX);
            if age < self.lifetime / 2 {
                return Ok(ck.clone());
            }
        }
        let ck = self.mint(None, now)?;
        *current = Some((ck.clone(), now));
        Ok(ck)
    }

    fn mint(&self, nonce: Option<&[u8; 32]>, now: SystemTime) -> Result<Arc<CertifiedKey>> {
        let not_before = now.checked_sub(CLOCK_SKEW).unwrap_or(now);
        let der = attested_certificate(
            &self.key,
            self.attester.as_ref(),
            &self.init,
            nonce.map(|n| &n[..]),
            not_before,
            self.lifetime.saturating_add(CLOCK_SKEW),
        )?;
        certified_key(&self.key, der)
    }
}

impl ResolvesServerCert for AttestedCertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let nonce = hello.server_name().and_then(nonce_from_server_name);
        self.certificate(nonce.as_ref()).ok()
    }
}

/// A rustls server configuration (ring provider, TLS 1.2 and 1.3, no
/// client authentication) whose certificates come from `resolver`.
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config {
            detail: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    Ok(Arc::new(config))
}
