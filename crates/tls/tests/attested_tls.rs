//! Attested TLS end to end: a real rustls server on 127.0.0.1 (a thread per
//! connection) serving certificates minted per nonce with the sim TEE from
//! a temporary `sim init`, and the real client (`connect`). Each refusal
//! test makes the server misbehave in one way and checks the precise error;
//! each would pass the handshake if that check were missing.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cocoon_attest::sim::{SimAttester, SimPlatform};
use cocoon_attest::workload::{InitData, ReferenceValues};
use cocoon_attest::{Attester, Collateral, Tee};
use cocoon_tls::cert::{certificate_with_evidence, spki_der};
use cocoon_tls::evidence::{report_data, tag_for, EvidenceClaims, TaggedEvidence, TAG_SEV_SNP};
use cocoon_tls::{
    attested_certificate, certified_key, connect, connect_without_nonce, generate_key,
    nonce_from_server_name, server_config, verify_certificate, AttestedCertResolver, Error,
    Expectation,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tempfile::TempDir;

const HOUR: Duration = Duration::from_secs(3600);

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn init(workload: char) -> InitData {
    InitData {
        workload_digest: digest(workload),
        launcher_digest: digest('b'),
        signer: digest('c'),
    }
}

fn reference(init: &InitData) -> ReferenceValues {
    ReferenceValues {
        workload_digest: init.workload_digest.clone(),
        launcher_digest: init.launcher_digest.clone(),
        signer: init.signer.clone(),
        resources: vec![],
    }
}

/// A sim platform made by `sim::init` in a temporary directory.
struct Platform {
    dir: TempDir,
    root: Vec<u8>,
}

fn platform() -> Platform {
    let dir = tempfile::tempdir().unwrap();
    let p = cocoon_attest::sim::init(dir.path()).unwrap();
    let root = p.root_der().unwrap();
    Platform { dir, root }
}

impl Platform {
    /// A sim "launch" as the launcher does it: launcher digest as the
    /// measurement, the init data digest as host data.
    fn attester(&self, launched: &InitData) -> SimAttester {
        let launcher = hex::decode(&launched.launcher_digest[7..]).unwrap();
        let mut m = [0u8; 48];
        m[..32].copy_from_slice(&launcher);
        SimAttester::new(
            SimPlatform::open(self.dir.path()).unwrap(),
            m,
            &launched.digest(),
        )
        .unwrap()
    }
}

fn expect(init: &InitData, trusted_root: &[u8]) -> Expectation {
    Expectation::new(
        reference(init),
        Collateral {
            sim_roots: vec![trusted_root.to_vec()],
            ..Default::default()
        },
    )
    .allow_sim(true)
}

/// Mints the certificate for a connection (given the nonce it sent).
type Mint = dyn Fn(Option<[u8; 32]>) -> Vec<u8> + Send + Sync;

/// A resolver that serves whatever `mint` makes, with `key`.
struct MintResolver {
    key: p256::SecretKey,
    mint: Box<Mint>,
}

impl std::fmt::Debug for MintResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MintResolver")
    }
}

impl ResolvesServerCert for MintResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let nonce = hello.server_name().and_then(nonce_from_server_name);
        certified_key(&self.key, (self.mint)(nonce)).ok()
    }
}

fn mint_server(
    key: p256::SecretKey,
    mint: impl Fn(Option<[u8; 32]>) -> Vec<u8> + Send + Sync + 'static,
) -> String {
    serve(Arc::new(MintResolver {
        key,
        mint: Box::new(mint),
    }))
}

/// Serves TLS on 127.0.0.1 (a thread per connection): greets, then closes.
fn serve(resolver: Arc<dyn ResolvesServerCert>) -> String {
    let config = server_config(resolver).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(sock) = sock else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut s = rustls::StreamOwned::new(conn, sock);
                let _ = s.write_all(b"hello from the TEE\n");
                s.conn.send_close_notify();
                let _ = s.flush();
            });
        }
    });
    addr
}

/// Serves, for a fresh key `k` and workload `a`, certificates whose
/// evidence extension `forge` builds from `k`, the workload's sim attester,
/// its init data and the connection's nonce: each forging test changes one
/// thing about an otherwise genuine extension.
fn forging_server(
    p: &Platform,
    forge: impl Fn(&p256::SecretKey, &SimAttester, &InitData, Option<&[u8]>) -> TaggedEvidence
        + Send
        + Sync
        + 'static,
) -> String {
    let i = init('a');
    let key = generate_key().unwrap();
    let attester = p.attester(&i);
    let k = key.clone();
    mint_server(key, move |n| {
        let ext = forge(&k, &attester, &i, n.as_ref().map(|n| &n[..]));
        certificate_with_evidence(&k, &i.workload_digest, &ext.to_cbor(), now(), HOUR).unwrap()
    })
}

/// The CBOR claims binding `key`, `init` and `nonce`.
fn claims_of(key: &p256::SecretKey, init: &InitData, nonce: Option<&[u8]>) -> Vec<u8> {
    EvidenceClaims::new(&spki_der(key).unwrap(), init, nonce)
        .unwrap()
        .to_cbor()
}

fn now() -> SystemTime {
    SystemTime::now() - Duration::from_secs(60)
}

/// Connects with a fresh nonce and expects a refusal.
fn refused(addr: &str, exp: &Expectation) -> Error {
    match connect(addr, exp) {
        Ok((_, v)) => panic!("accepted: {v:?}"),
        Err(e) => {
            assert_eq!(e.to_string().lines().count(), 1, "{e}");
            e
        }
    }
}

#[test]
fn an_attested_endpoint_is_accepted_with_a_fresh_nonce() {
    let p = platform();
    let i = init('a');
    let resolver = AttestedCertResolver::new(
        generate_key().unwrap(),
        Arc::new(p.attester(&i)),
        i.clone(),
        HOUR,
    );
    let addr = serve(Arc::new(resolver));
    let exp = expect(&i, &p.root);
    let (stream, v) = connect(&addr, &exp).unwrap();
    assert_eq!(v.tee, Tee::Sim);
    assert_eq!(v.init_data, i);
    assert!(v.claims.debug);
    assert_eq!(v.nonce.as_ref().map(|n| n.0.len()), Some(32));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    assert_eq!(line, "hello from the TEE\n");

    // Every connection has its own nonce, bound by its own certificate.
    let (_, v2) = connect(&addr, &exp).unwrap();
    assert_ne!(v.nonce, v2.nonce);
    assert_eq!(v.public_key_sha256, v2.public_key_sha256);

    // Without a nonce, the server's current certificate (made once).
    let (_, a) = connect_without_nonce(&addr, &exp).unwrap();
    let (_, b) = connect_without_nonce(&addr, &exp).unwrap();
    assert_eq!(a.nonce, None);
    assert_eq!(a, b);

    // The JSON a client prints.
    let j = serde_json::to_value(&v).unwrap();
    assert_eq!(j["tee"], "sim");
    assert_eq!(
        j["init_data"]["workload_digest"],
        i.workload_digest.as_str()
    );
    assert_eq!(
        j["claims"]["init_data"],
        hex::encode([&i.digest()[..], &[0u8; 16]].concat())
    );
}

#[test]
fn a_plain_tls_server_is_refused() {
    let key = generate_key().unwrap();
    let plain = plain_certificate(&key);
    let addr = mint_server(key, move |_| plain.clone());
    let p = platform();
    let e = refused(&addr, &expect(&init('a'), &p.root));
    assert!(matches!(e, Error::NotAttested), "{e}");
    assert!(e.to_string().contains("not an attested certificate"), "{e}");
}

#[test]
fn evidence_for_another_workload_is_refused() {
    let p = platform();
    let other = init('d');
    let resolver = AttestedCertResolver::new(
        generate_key().unwrap(),
        Arc::new(p.attester(&other)),
        other,
        HOUR,
    );
    let addr = serve(Arc::new(resolver));
    let e = refused(&addr, &expect(&init('a'), &p.root));
    assert_eq!(
        e.to_string(),
        format!(
            "the endpoint's evidence names workload {} but the reference values expect {}",
            digest('d'),
            digest('a')
        )
    );
    // Also the launcher and the signer are checked.
    let mut rv = expect(&init('d'), &p.root);
    rv.reference.launcher_digest = digest('e');
    assert!(matches!(refused(&addr, &rv), Error::Launcher { .. }));
    let mut rv = expect(&init('d'), &p.root);
    rv.reference.signer = digest('e');
    assert!(matches!(refused(&addr, &rv), Error::Signer { .. }));
}

#[test]
fn init_data_the_platform_did_not_bind_is_refused() {
    // The TEE was launched with workload d but the certificate claims a.
    let p = platform();
    let key = generate_key().unwrap();
    let launched = p.attester(&init('d'));
    let k = key.clone();
    let addr = mint_server(key, move |n| {
        attested_certificate(
            &k,
            &launched,
            &init('a'),
            n.as_ref().map(|n| &n[..]),
            now(),
            HOUR,
        )
        .unwrap()
    });
    let e = refused(&addr, &expect(&init('a'), &p.root));
    assert!(matches!(e, Error::InitDataDigest { .. }), "{e}");
    assert!(
        e.to_string().contains(&hex::encode(init('a').digest()))
            && e.to_string().contains(&hex::encode(init('d').digest())),
        "{e}"
    );
}

#[test]
fn an_untrusted_sim_root_is_refused() {
    let trusted = platform();
    let rogue = platform();
    let i = init('a');
    let resolver = AttestedCertResolver::new(
        generate_key().unwrap(),
        Arc::new(rogue.attester(&i)),
        i.clone(),
        HOUR,
    );
    let addr = serve(Arc::new(resolver));
    let e = refused(&addr, &expect(&i, &trusted.root));
    assert!(
        matches!(e, Error::Evidence(cocoon_attest::Error::Chain { .. })),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("which is not among the 1 trusted sim root(s)"),
        "{e}"
    );
    // And sim at all only when allowed.
    let e = refused(&addr, &expect(&i, &rogue.root).allow_sim(false));
    assert!(matches!(e, Error::SimNotAllowed), "{e}");
}

/// Evidence made for another key's claims, spliced into a certificate.
#[test]
fn evidence_for_another_key_is_refused() {
    let p = platform();
    // The attacker holds evidence a TEE made for its key `thief`, and tries
    // to reuse it with its own (non-TEE) key.
    let thief = generate_key().unwrap();
    let addr = forging_server(&p, move |k, attester, i, nonce| {
        let genuine = claims_of(&thief, i, nonce);
        TaggedEvidence {
            tag: tag_for(Tee::Sim),
            evidence: attester.evidence(&report_data(&genuine)).unwrap(),
            claims: claims_of(k, i, nonce),
        }
    });
    let e = refused(&addr, &expect(&init('a'), &p.root));
    assert!(matches!(e, Error::ReportData { .. }), "{e}");
    assert!(e.to_string().contains("made for other claims"), "{e}");
}

/// Evidence and claims of another key, copied whole.
#[test]
fn claims_for_another_key_are_refused() {
    let p = platform();
    let i = init('a');
    let key = generate_key().unwrap();
    let attester = p.attester(&i);
    let k = key.clone();
    let thief = generate_key().unwrap();
    let addr = mint_server(key, move |n| {
        let genuine = attested_certificate(
            &thief,
            &attester,
            &i,
            n.as_ref().map(|n| &n[..]),
            now(),
            HOUR,
        )
        .unwrap();
        let ext = extension_of(&genuine);
        certificate_with_evidence(&k, &i.workload_digest, &ext, now(), HOUR).unwrap()
    });
    let e = refused(&addr, &expect(&init('a'), &p.root));
    assert!(matches!(e, Error::PublicKeyHash { .. }), "{e}");
}

#[test]
fn an_expired_certificate_is_refused() {
    let p = platform();
    let i = init('a');
    let key = generate_key().unwrap();
    let attester = p.attester(&i);
    let k = key.clone();
    let addr = mint_server(key, move |n| {
        let two_hours_ago = SystemTime::now() - 2 * HOUR;
        attested_certificate(
            &k,
            &attester,
            &i,
            n.as_ref().map(|n| &n[..]),
            two_hours_ago,
            HOUR,
        )
        .unwrap()
    });
    let e = refused(&addr, &expect(&init('a'), &p.root));
    assert!(matches!(e, Error::Validity { .. }), "{e}");
}

#[test]
fn a_replayed_certificate_is_refused() {
    let p = platform();
    let i = init('a');
    let key = generate_key().unwrap();
    // Made once, without a nonce, served to everyone (the server ignores
    // the client's nonce): fine for a client that sends none, refused for one
    // that does.
    let old = attested_certificate(&key, &p.attester(&i), &i, None, now(), HOUR).unwrap();
    let addr = mint_server(key.clone(), move |_| old.clone());
    let exp = expect(&i, &p.root);
    assert!(connect_without_nonce(&addr, &exp).is_ok());
    assert!(matches!(refused(&addr, &exp), Error::NonceMissing));

    // Made for another connection's nonce.
    let other =
        attested_certificate(&key, &p.attester(&i), &i, Some(&[7; 32]), now(), HOUR).unwrap();
    let addr = mint_server(key, move |_| other.clone());
    let e = refused(&addr, &exp);
    assert!(matches!(e, Error::NonceMismatch { .. }), "{e}");
    assert!(e.to_string().contains(&hex::encode([7u8; 32])), "{e}");
}

#[test]
fn tampered_evidence_is_refused() {
    let p = platform();
    let addr = forging_server(&p, |k, attester, i, nonce| {
        let claims = claims_of(k, i, nonce);
        let mut evidence = attester.evidence(&report_data(&claims)).unwrap();
        evidence[20] ^= 1; // a launch measurement byte
        TaggedEvidence {
            tag: tag_for(Tee::Sim),
            evidence,
            claims,
        }
    });
    let e = refused(&addr, &expect(&init('a'), &p.root));
    assert!(
        matches!(e, Error::Evidence(cocoon_attest::Error::Signature { .. })),
        "{e}"
    );
}

#[test]
fn tampered_claims_are_refused() {
    let p = platform();
    // Evidence for claims without a nonce; the nonce added afterwards.
    let addr = forging_server(&p, |k, attester, i, nonce| {
        let mut claims = EvidenceClaims::new(&spki_der(k).unwrap(), i, None).unwrap();
        let evidence = attester.evidence(&report_data(&claims.to_cbor())).unwrap();
        claims.nonce = nonce.map(<[u8]>::to_vec);
        TaggedEvidence {
            tag: tag_for(Tee::Sim),
            evidence,
            claims: claims.to_cbor(),
        }
    });
    let e = refused(&addr, &expect(&init('a'), &p.root));
    assert!(matches!(e, Error::ReportData { .. }), "{e}");
}

#[test]
fn evidence_under_another_tee_tag_is_refused() {
    let p = platform();
    let addr = forging_server(&p, |k, attester, i, nonce| {
        let claims = claims_of(k, i, nonce);
        TaggedEvidence {
            tag: TAG_SEV_SNP,
            evidence: attester.evidence(&report_data(&claims)).unwrap(),
            claims,
        }
    });
    let e = refused(&addr, &expect(&init('a'), &p.root));
    assert!(
        matches!(
            e,
            Error::Evidence(cocoon_attest::Error::Malformed { tee: Tee::Snp, .. })
        ),
        "{e}"
    );
}

#[test]
fn nothing_listening_is_a_clear_error() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let p = platform();
    let e = refused(&addr, &expect(&init('a'), &p.root));
    assert!(
        e.to_string()
            .starts_with(&format!("cannot connect to {addr}: ")),
        "{e}"
    );
}

// ---- Offline checks of verify_certificate ----

fn good_certificate(p: &Platform, nonce: Option<&[u8]>) -> Vec<u8> {
    let i = init('a');
    attested_certificate(
        &generate_key().unwrap(),
        &p.attester(&i),
        &i,
        nonce,
        now(),
        HOUR,
    )
    .unwrap()
}

#[test]
fn an_altered_certificate_fails_its_self_signature() {
    let p = platform();
    let der = good_certificate(&p, None);
    let exp = expect(&init('a'), &p.root);
    verify_certificate(&der, &exp, SystemTime::now()).unwrap();
    // Change one character of the SAN URI: still valid DER, evidence intact.
    let uri = b"urn:cocoon:workload:sha256:";
    let at = der.windows(uri.len()).position(|w| w == uri).unwrap() + uri.len();
    let mut bad = der.clone();
    bad[at] = b'f';
    let e = verify_certificate(&bad, &exp, SystemTime::now()).unwrap_err();
    assert!(matches!(e, Error::Signature { .. }), "{e}");
}

#[test]
fn validity_is_checked_at_the_given_time() {
    let p = platform();
    let der = good_certificate(&p, None);
    let exp = expect(&init('a'), &p.root);
    let later = SystemTime::now() + 2 * HOUR;
    let earlier = SystemTime::now() - 2 * HOUR;
    for t in [later, earlier] {
        let e = verify_certificate(&der, &exp, t).unwrap_err();
        assert!(matches!(e, Error::Validity { .. }), "{e}");
    }
}

#[test]
fn random_damage_never_panics_and_is_never_accepted() {
    let p = platform();
    let der = good_certificate(&p, Some(&[1; 32]));
    let exp = expect(&init('a'), &p.root).with_nonce(Some([1; 32]));
    let accepted = verify_certificate(&der, &exp, SystemTime::now()).unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..3000 {
        let mut bad = der.clone();
        let i = (next() as usize) % bad.len();
        if round % 4 == 0 {
            bad.truncate(i);
        } else {
            bad[i] ^= 1 << (next() % 8);
        }
        if let Ok(v) = verify_certificate(&bad, &exp, SystemTime::now()) {
            // Only changes outside everything signed and bound may pass
            // (none exist in a strict-DER certificate), and never to another
            // claim.
            assert_eq!(v.init_data, accepted.init_data);
            assert_eq!(v.public_key_sha256, accepted.public_key_sha256);
            panic!("damaged certificate accepted at byte {i}");
        }
    }
}

#[test]
fn evidence_from_a_certificate_parses_to_what_was_bound() {
    let p = platform();
    let der = good_certificate(&p, Some(&[9; 32]));
    let t = TaggedEvidence::from_cbor(&extension_of(&der)).unwrap();
    assert_eq!(t.tag, tag_for(Tee::Sim));
    let c = EvidenceClaims::from_cbor(&t.claims).unwrap();
    assert_eq!(c.nonce.as_deref(), Some(&[9u8; 32][..]));
    assert_eq!(c.init_data, init('a').canonical_json().into_bytes());
    let sim = cocoon_attest::sim::SimReport::parse(&t.evidence).unwrap();
    assert_eq!(sim.report_data, report_data(&t.claims));
}

// ---- helpers ----

/// The evidence extension value of a certificate.
fn extension_of(der: &[u8]) -> Vec<u8> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der).unwrap();
    let ext = cert
        .tbs_certificate()
        .extensions()
        .unwrap()
        .iter()
        .find(|e| e.extn_id == cocoon_tls::evidence::EVIDENCE_OID)
        .unwrap();
    ext.extn_value.as_bytes().to_vec()
}

/// An ordinary self-signed certificate for `key`, with no evidence.
fn plain_certificate(key: &p256::SecretKey) -> Vec<u8> {
    use p256::pkcs8::EncodePublicKey;
    use x509_cert::builder::{profile::cabf::Root, Builder, CertificateBuilder};
    use x509_cert::der::{Decode, Encode};
    let subject = x509_cert::name::Name::from_str("CN=localhost,O=plain TLS,C=XX").unwrap();
    let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_der(
        key.public_key().to_public_key_der().unwrap().as_bytes(),
    )
    .unwrap();
    let validity = x509_cert::time::Validity::from_now(HOUR).unwrap();
    let serial = x509_cert::serial_number::SerialNumber::new(&[1]).unwrap();
    let b = CertificateBuilder::new(Root::new(false, subject).unwrap(), serial, validity, spki)
        .unwrap();
    let signer = p256::ecdsa::SigningKey::from(key);
    b.build::<_, p256::ecdsa::DerSignature>(&signer)
        .unwrap()
        .to_der()
        .unwrap()
}
