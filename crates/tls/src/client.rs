//! Clients: a rustls certificate verifier that checks the evidence at
//! handshake time, and a blocking `connect`.

use std::io::Write as _;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, OtherError,
    SignatureScheme, StreamOwned,
};

use crate::nonce::{fresh_nonce, nonce_server_name, EVIDENCE_SERVER_NAME};
use crate::verify::{verify_certificate, Expectation, VerifiedEndpoint};
use crate::{Error, Result};

/// How long `connect` waits for the TCP connection and for each read or
/// write of the handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A rustls server-certificate verifier that accepts exactly the attested
/// certificates [`verify_certificate`] accepts (the server name is not
/// checked: the evidence names the workload). Handshake signatures are
/// verified with the ring provider's algorithms. The outcome of the last
/// certificate check, with its precise error, is kept for
/// [`AttestedServerVerifier::take_outcome`].
#[derive(Debug)]
pub struct AttestedServerVerifier {
    expectation: Expectation,
    provider: Arc<CryptoProvider>,
    outcome: Mutex<Option<Result<VerifiedEndpoint>>>,
}

/// The refusal text given to rustls (the typed error stays in the verifier).
#[derive(Debug)]
struct Refusal(String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

impl AttestedServerVerifier {
    /// A verifier for `expectation`.
    pub fn new(expectation: Expectation) -> Self {
        AttestedServerVerifier {
            expectation,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            outcome: Mutex::new(None),
        }
    }

    /// The outcome of the last certificate check (taken: a second call
    /// returns `None`): the verified endpoint, or the reason for refusal.
    pub fn take_outcome(&self) -> Option<Result<VerifiedEndpoint>> {
        self.outcome.lock().ok().and_then(|mut o| o.take())
    }
}

impl ServerCertVerifier for AttestedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let now = UNIX_EPOCH + Duration::from_secs(now.as_secs());
        let result = verify_certificate(end_entity.as_ref(), &self.expectation, now);
        let reply = match &result {
            Ok(_) => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(Refusal(e.to_string()))),
            ))),
        };
        if let Ok(mut o) = self.outcome.lock() {
            *o = Some(result);
        }
        reply
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls client configuration (ring provider, TLS 1.2 and 1.3) whose
/// only trust is `verifier`. Session resumption is off, so that every
/// connection checks evidence.
pub fn client_config_with(verifier: Arc<AttestedServerVerifier>) -> Result<Arc<ClientConfig>> {
    let mut config = ClientConfig::builder_with_provider(verifier.provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config {
            detail: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// A rustls client configuration that accepts only endpoints meeting
/// `exp`. With a nonce in `exp`, connect with the server name
/// [`nonce_server_name`] of that nonce, and use the configuration for that
/// one connection.
pub fn client_config(exp: Expectation) -> Result<Arc<ClientConfig>> {
    client_config_with(Arc::new(AttestedServerVerifier::new(exp)))
}

/// A blocking TLS stream to an attested endpoint.
pub type AttestedStream = StreamOwned<ClientConnection, TcpStream>;

/// Connects to `addr` (`HOST:PORT`), sends a fresh nonce in the SNI
/// (overriding `exp.nonce`), completes the handshake and returns the stream
/// with what its certificate proved. Any refusal is the precise
/// [`Error`] of [`verify_certificate`].
pub fn connect(addr: &str, exp: &Expectation) -> Result<(AttestedStream, VerifiedEndpoint)> {
    let nonce = fresh_nonce()?;
    let exp = exp.clone().with_nonce(Some(nonce));
    handshake(addr, exp, nonce_server_name(&nonce))
}

/// Like [`connect`], but sends no nonce (server name
/// [`EVIDENCE_SERVER_NAME`]): the server's current certificate is accepted
/// even though it may be a replay within its validity period.
pub fn connect_without_nonce(
    addr: &str,
    exp: &Expectation,
) -> Result<(AttestedStream, VerifiedEndpoint)> {
    let exp = exp.clone().with_nonce(None);
    handshake(addr, exp, EVIDENCE_SERVER_NAME.to_string())
}

fn handshake(
    addr: &str,
    exp: Expectation,
    server_name: String,
) -> Result<(AttestedStream, VerifiedEndpoint)> {
    let hs_err = |detail: String| Error::Handshake {
        addr: addr.to_string(),
        detail,
    };
    let verifier = Arc::new(AttestedServerVerifier::new(exp));
    let config = client_config_with(verifier.clone())?;
    let name =
        ServerName::try_from(server_name).map_err(|e| hs_err(format!("server name: {e}")))?;
    let conn = ClientConnection::new(config, name).map_err(|e| hs_err(e.to_string()))?;
    let sock = tcp_connect(addr)?;
    let timeouts = |t: Option<Duration>| {
        sock.set_read_timeout(t)
            .and_then(|()| sock.set_write_timeout(t))
            .map_err(|e| hs_err(e.to_string()))
    };
    timeouts(Some(CONNECT_TIMEOUT))?;
    let mut stream = StreamOwned::new(conn, sock);
    let started = Instant::now();
    while stream.conn.is_handshaking() {
        if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
            // The certificate check's own error says more than rustls's.
            if let Some(Err(refusal)) = verifier.take_outcome() {
                return Err(refusal);
            }
            let waited = started.elapsed();
            return Err(hs_err(if waited >= CONNECT_TIMEOUT {
                format!("no answer within {}s ({e})", CONNECT_TIMEOUT.as_secs())
            } else {
                e.to_string()
            }));
        }
    }
    let endpoint = match verifier.take_outcome() {
        Some(Ok(v)) => v,
        Some(Err(e)) => return Err(e),
        None => {
            return Err(hs_err(
                "the handshake finished without a certificate check".into(),
            ))
        }
    };
    let sock = &stream.sock;
    sock.set_read_timeout(None)
        .and_then(|()| sock.set_write_timeout(None))
        .map_err(|e| hs_err(e.to_string()))?;
    stream.flush().map_err(|e| hs_err(e.to_string()))?;
    Ok((stream, endpoint))
}

fn tcp_connect(addr: &str) -> Result<TcpStream> {
    let err = |error: std::io::Error| Error::Connect {
        addr: addr.to_string(),
        error,
    };
    let mut last = None;
    for a in addr.to_socket_addrs().map_err(err)? {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the name resolves to no address",
        )
    })))
}
