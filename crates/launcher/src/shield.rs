//! The shield: attested TLS in front of the app's ports.
//!
//! For each `--shield PUBLIC:APP` port of the workload manifest the shield
//! accepts TLS on `0.0.0.0:PUBLIC` in the container's network namespace and
//! forwards the plaintext to `127.0.0.1:APP` in the app's own namespace
//! ([`crate::netns`]), so the TLS channel ends inside the TEE, where the app
//! runs, and the app's plaintext port exists nowhere else.
//!
//! Which certificate a client gets depends on its TLS server name (SNI):
//!
//! * a nonce name ([`cocoon_tls::nonce_from_server_name`]): a fresh
//!   certificate whose evidence binds that nonce (relay resistance; costs
//!   one evidence per connection);
//! * [`cocoon_tls::EVIDENCE_SERVER_NAME`]: the current evidence certificate;
//! * anything else or none: the certificate the KBS CA issued for the key
//!   (ordinary clients: curl, browsers, `redis-cli --tls --cacert`), or the
//!   evidence certificate when the KBS issued none.
//!
//! Certificates are renewed in the background at half their lifetime.
//!
//! The app's outbound connections go through an HTTP proxy the launcher
//! serves inside the app's namespace ([`EGRESS_PORT`]; `CONNECT host:port`
//! and absolute-form `http://` requests), named in the app's
//! `HTTP_PROXY`/`HTTPS_PROXY` ([`proxy_env`]).

use std::io;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::LazyConfigAcceptor;

use cocoon_attest::workload::InitData;
use cocoon_attest::Attester;
use cocoon_seal::manifest::ShieldPort;

use crate::netns::AppNetwork;
use crate::{kbs, Error, Result};

/// Port of the egress proxy on the app's loopback.
pub const EGRESS_PORT: u16 = 15001;
/// Lifetime of evidence certificates.
pub const EVIDENCE_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How long the shield waits for a starting app to listen.
const APP_CONNECT_PATIENCE: Duration = Duration::from_secs(10);
/// Largest proxy request head accepted.
const MAX_PROXY_HEAD: usize = 16 * 1024;
/// Copy buffer per direction.
const COPY_BUF: usize = 64 * 1024;

/// The certificates the shield serves, renewed together.
pub struct CertSet {
    /// For clients that name no nonce (KBS-CA issued when available).
    pub default: Arc<CertifiedKey>,
    /// The evidence certificate without a nonce.
    pub evidence: Arc<CertifiedKey>,
    /// When to make a new set.
    pub renew_after: Duration,
}

/// Where certificates come from (the launcher: its attester and the KBS).
pub trait Certifier: Send + Sync + 'static {
    /// A fresh set of certificates.
    fn current(&self) -> Result<CertSet>;
    /// A certificate whose evidence binds `nonce`.
    fn for_nonce(&self, nonce: [u8; 32]) -> Result<Arc<CertifiedKey>>;
}

/// The environment entries pointing the app at the egress proxy; an entry
/// the image or `-e` sets itself wins.
pub fn proxy_env() -> Vec<String> {
    let url = format!("http://127.0.0.1:{EGRESS_PORT}");
    let mut v = Vec::new();
    for n in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        v.push(format!("{n}={url}"));
    }
    for n in ["NO_PROXY", "no_proxy"] {
        v.push(format!("{n}=localhost,127.0.0.1,::1"));
    }
    v
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn server_config(ck: Arc<CertifiedKey>) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let c = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("shield TLS configuration: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(ck)));
    Ok(Arc::new(c))
}

struct Configs {
    default: Arc<ServerConfig>,
    evidence: Arc<ServerConfig>,
}

impl Configs {
    fn of(set: &CertSet) -> Result<Self> {
        Ok(Configs {
            default: server_config(set.default.clone())?,
            evidence: server_config(set.evidence.clone())?,
        })
    }
}

struct State {
    certifier: Arc<dyn Certifier>,
    configs: RwLock<Configs>,
    net: Arc<AppNetwork>,
}

impl State {
    fn pick(&self, evidence: bool) -> Arc<ServerConfig> {
        // A poisoned lock still holds a complete pair of configs.
        let c = self.configs.read().unwrap_or_else(|p| p.into_inner());
        if evidence {
            c.evidence.clone()
        } else {
            c.default.clone()
        }
    }
}

/// A running shield; dropping it stops it.
pub struct Shield {
    _runtime: tokio::runtime::Runtime,
}

/// Binds every public port (failing before the app starts if one is
/// taken), the egress proxy, and starts serving.
pub fn start(
    ports: &[ShieldPort],
    net: Arc<AppNetwork>,
    certifier: Arc<dyn Certifier>,
) -> Result<Shield> {
    let set = certifier.current()?;
    let renew_after = set.renew_after;
    let state = Arc::new(State {
        configs: RwLock::new(Configs::of(&set)?),
        certifier,
        net,
    });
    let mut listeners = Vec::new();
    for p in ports {
        let l = std::net::TcpListener::bind(("0.0.0.0", p.public))
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| Error::sys(format!("shield: listening on port {}", p.public), e))?;
        listeners.push((l, p.app));
    }
    let egress = state
        .net
        .listen_loopback(EGRESS_PORT)
        .map_err(|e| Error::sys(format!("egress proxy on 127.0.0.1:{EGRESS_PORT}"), e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("shield")
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Error::sys("starting the shield runtime", e))?;
    {
        let _guard = runtime.enter();
        for (l, app) in listeners {
            let l = TcpListener::from_std(l).map_err(|e| Error::sys("shield listener", e))?;
            tokio::spawn(accept_tls(l, app, state.clone()));
        }
        let egress = TcpListener::from_std(egress).map_err(|e| Error::sys("egress proxy", e))?;
        tokio::spawn(accept_egress(egress));
        tokio::spawn(renew(state, renew_after));
    }
    Ok(Shield { _runtime: runtime })
}

async fn renew(state: Arc<State>, mut after: Duration) {
    loop {
        tokio::time::sleep(after).await;
        let c = state.certifier.clone();
        let fresh = tokio::task::spawn_blocking(move || c.current())
            .await
            .unwrap_or_else(|e| Err(Error::Config(format!("renewal task: {e}"))));
        match fresh.and_then(|set| Ok((Configs::of(&set)?, set.renew_after))) {
            Ok((configs, next)) => {
                *state.configs.write().unwrap_or_else(|p| p.into_inner()) = configs;
                after = next;
            }
            Err(e) => {
                eprintln!("cocoon-launcher: warning: renewing the shield's certificates: {e}; retrying in 60 s");
                after = Duration::from_secs(60);
            }
        }
    }
}

async fn accept_tls(listener: TcpListener, app_port: u16, state: Arc<State>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of descriptors or similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(serve_tls(tcp, app_port, state.clone()));
    }
}

async fn serve_tls(tcp: TcpStream, app_port: u16, state: Arc<State>) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    let start = LazyConfigAcceptor::new(Acceptor::default(), tcp).await?;
    let name = start.client_hello().server_name().map(str::to_owned);
    let config = match name.as_deref() {
        Some(n) if n == cocoon_tls::EVIDENCE_SERVER_NAME => state.pick(true),
        Some(n) => match cocoon_tls::nonce_from_server_name(n) {
            Some(nonce) => {
                let c = state.certifier.clone();
                let ck = tokio::task::spawn_blocking(move || c.for_nonce(nonce))
                    .await
                    .map_err(io::Error::other)?
                    .map_err(io::Error::other)?;
                server_config(ck).map_err(io::Error::other)?
            }
            None => state.pick(false),
        },
        None => state.pick(false),
    };
    let mut tls = start.into_stream(config).await?;
    let mut app = connect_app(&state.net, app_port).await?;
    app.set_nodelay(true)?;
    tokio::io::copy_bidirectional_with_sizes(&mut tls, &mut app, COPY_BUF, COPY_BUF).await?;
    Ok(())
}

/// Connects to the app, waiting for it to listen while it starts.
async fn connect_app(net: &AppNetwork, port: u16) -> io::Result<TcpStream> {
    let deadline = tokio::time::Instant::now() + APP_CONNECT_PATIENCE;
    loop {
        match net.connect(port).await {
            Err(e)
                if e.kind() == io::ErrorKind::ConnectionRefused
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => return r,
        }
    }
}

async fn accept_egress(listener: TcpListener) {
    loop {
        let Ok((c, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            if let Err(e) = serve_egress(c).await {
                eprintln!("cocoon-launcher: egress proxy: {e}");
            }
        });
    }
}

/// One egress-proxy request: `CONNECT host:port` (tunnels, HTTPS) or an
/// absolute-form `http://` request (forwarded in origin form).
async fn serve_egress(mut c: TcpStream) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_PROXY_HEAD {
            c.write_all(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n\r\n",
            )
            .await?;
            return Ok(());
        }
        let mut chunk = [0u8; 4096];
        let n = c.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let rest = &buf[head_end..];
    let (first, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
    let mut parts = first.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) if v.starts_with("HTTP/") => (m, t, v),
        _ => {
            c.write_all(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n")
                .await?;
            return Ok(());
        }
    };
    let (authority, forward) = if method.eq_ignore_ascii_case("CONNECT") {
        (target.to_string(), None)
    } else if let Some(t) = target.strip_prefix("http://") {
        let (auth, path) = match t.find('/') {
            Some(i) => (&t[..i], &t[i..]),
            None => (t, "/"),
        };
        let auth = if auth.contains(':') {
            auth.to_string()
        } else {
            format!("{auth}:80")
        };
        let mut out = format!("{method} {path} {version}\r\n{headers}").into_bytes();
        out.extend_from_slice(rest);
        (auth, Some(out))
    } else {
        c.write_all(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n")
            .await?;
        return Ok(());
    };
    let mut up = match TcpStream::connect(authority.as_str()).await {
        Ok(u) => u,
        Err(e) => {
            let msg = format!(
                "HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
                0
            );
            c.write_all(msg.as_bytes()).await?;
            return Err(io::Error::new(e.kind(), format!("{authority}: {e}")));
        }
    };
    match forward {
        None => {
            c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await?;
            up.write_all(rest).await?;
        }
        Some(req) => up.write_all(&req).await?,
    }
    tokio::io::copy_bidirectional(&mut c, &mut up).await?;
    Ok(())
}

/// How long the certificate `der` stays valid from now.
fn remaining_validity(der: &[u8]) -> Result<Duration> {
    use x509_cert::der::Decode as _;
    let cert = x509_cert::Certificate::from_der(der)
        .map_err(|e| Error::Kbs(format!("the KBS certificate does not parse: {e}")))?;
    let not_after = cert
        .tbs_certificate()
        .validity()
        .not_after
        .to_unix_duration();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(not_after.saturating_sub(now))
}

/// The launcher's [`Certifier`]: evidence certificates from its attester,
/// and a KBS-CA certificate for the same key over a fresh attestation.
pub struct LauncherCertifier {
    /// The TEE.
    pub attester: Arc<dyn Attester>,
    /// The KBS.
    pub kbs: kbs::Client,
    /// The workload identity bound in every evidence.
    pub init: InitData,
    /// The TLS key (made in the TEE, never leaves it).
    pub key: p256::SecretKey,
    /// DNS names for the KBS-CA certificate.
    pub dns_names: Vec<String>,
}

impl LauncherCertifier {
    fn evidence_cert(&self, nonce: Option<&[u8]>) -> Result<Arc<CertifiedKey>> {
        let der = cocoon_tls::attested_certificate(
            &self.key,
            self.attester.as_ref(),
            &self.init,
            nonce,
            // Backdated a little: a client whose clock is behind ours
            // must not see a certificate from the future.
            SystemTime::now() - cocoon_tls::server::CLOCK_SKEW,
            EVIDENCE_LIFETIME,
        )
        .map_err(|e| Error::Attest(format!("shield certificate: {e}")))?;
        self.certified(der)
    }

    fn certified(&self, der: Vec<u8>) -> Result<Arc<CertifiedKey>> {
        cocoon_tls::certified_key(&self.key, der)
            .map_err(|e| Error::Config(format!("shield key: {e}")))
    }

    /// The KBS-CA certificate and how long it stays valid.
    fn ca_cert(&self) -> Result<(Arc<CertifiedKey>, Duration)> {
        let session = self
            .kbs
            .attest_with_key(self.attester.as_ref(), &self.init, &self.key)?;
        let (leaf, _ca) = self.kbs.certificate(&session, &self.dns_names)?;
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(leaf.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
            .map_err(|e| Error::Kbs(format!("the KBS certificate is not PEM: {e}")))?;
        let left = remaining_validity(&der)?;
        Ok((self.certified(der)?, left))
    }
}

impl Certifier for LauncherCertifier {
    fn current(&self) -> Result<CertSet> {
        let evidence = self.evidence_cert(None)?;
        let mut renew_after = EVIDENCE_LIFETIME / 2;
        let default = match self.ca_cert() {
            Ok((c, left)) => {
                renew_after = renew_after.min(left / 2);
                c
            }
            Err(e) => {
                eprintln!(
                    "cocoon-launcher: warning: no KBS CA certificate for the shield ({e}); serving the evidence certificate to every client"
                );
                evidence.clone()
            }
        };
        Ok(CertSet {
            default,
            evidence,
            renew_after: renew_after.max(Duration::from_secs(60)),
        })
    }

    fn for_nonce(&self, nonce: [u8; 32]) -> Result<Arc<CertifiedKey>> {
        self.evidence_cert(Some(&nonce))
    }
}
