use super::*;

fn platform() -> (tempfile::TempDir, SimPlatform) {
    let dir = tempfile::tempdir().unwrap();
    let p = init(&dir.path().join("sim")).unwrap();
    (dir, p)
}

fn trust(p: &SimPlatform) -> Collateral {
    Collateral {
        sim_roots: vec![p.root_der().unwrap()],
        ..Collateral::default()
    }
}

#[test]
fn report_round_trips() {
    let (_d, p) = platform();
    let att = SimAttester::new(SimPlatform::open(&p.dir).unwrap(), [7u8; 48], &[9u8; 32]).unwrap();
    let ev = att.evidence(b"nonce-binding").unwrap();
    assert_eq!(ev.len(), REPORT_LEN);
    let c = SimVerifier
        .verify(&ev, &trust(&p), UnixTime::now())
        .unwrap();
    assert!(c.debug);
    assert_eq!(c.tee, Tee::Sim);
    assert_eq!(c.tcb.status, TcbStatus::Simulated);
    assert_eq!(c.launch_measurement.0, vec![7u8; 48]);
    assert!(c.expect_init_data(&[9u8; 32]).is_ok());
    assert!(c.expect_report_data(b"nonce-binding").is_ok());
    assert!(c.expect_report_data(b"other-nonce").is_err());
    let parsed = SimReport::parse(&ev).unwrap();
    assert_eq!(parsed.to_bytes(), ev);
}

#[test]
fn root_from_collateral_directory_is_trusted_explicitly() {
    let (_d, p) = platform();
    let ev = p.sign([0; 48], b"", b"x", 1).unwrap();
    let c = Collateral::from_paths(&[p.root_path()]).unwrap();
    assert_eq!(c.sim_roots.len(), 1);
    assert!(c.certs.is_empty());
    assert!(SimVerifier.verify(&ev, &c, UnixTime::now()).is_ok());
}

#[test]
fn no_root_given_is_refused() {
    let (_d, p) = platform();
    let ev = p.sign([0; 48], b"", b"x", 1).unwrap();
    let e = SimVerifier
        .verify(&ev, &Collateral::default(), UnixTime::now())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "sim verification needs a trusted sim root certificate (root.pem from `cocoon sim init`), which was not given; pass it with --collateral (file or directory)"
    );
}

#[test]
fn report_signed_by_another_sim_root_is_refused() {
    let (_d, p) = platform();
    let (_d2, other) = platform();
    let ev = other.sign([0; 48], b"", b"x", 1).unwrap();
    let e = SimVerifier
        .verify(&ev, &trust(&p), UnixTime::now())
        .unwrap_err();
    assert!(matches!(e, Error::Chain { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("not among the 1 trusted sim root(s)"),
        "{e}"
    );
}

#[test]
fn forged_key_id_with_foreign_signature_is_refused() {
    // Another key signs but claims the trusted root's key id.
    let (_d, p) = platform();
    let (_d2, other) = platform();
    let ev = other.sign([0; 48], b"", b"x", 1).unwrap();
    let mut r = SimReport::parse(&ev).unwrap();
    r.root_key_id = p.root_key_id;
    let e = SimVerifier
        .verify(&r.to_bytes(), &trust(&p), UnixTime::now())
        .unwrap_err();
    assert!(matches!(e, Error::Signature { .. }), "{e}");
}

#[test]
fn every_byte_flip_is_refused() {
    let (_d, p) = platform();
    let ev = p.sign([1; 48], &[2; 48], &[3; 64], 5).unwrap();
    let c = trust(&p);
    let now = UnixTime::now();
    for pos in 0..REPORT_LEN {
        let mut t = ev.clone();
        t[pos] ^= 0x04;
        assert!(
            SimVerifier.verify(&t, &c, now).is_err(),
            "flip at {pos} accepted"
        );
    }
}

#[test]
fn root_outside_validity_is_refused() {
    let (_d, p) = platform();
    let ev = p.sign([0; 48], b"", b"x", 1).unwrap();
    let later = UnixTime(UnixTime::now().0 + 11 * 365 * 86_400);
    assert!(matches!(
        SimVerifier.verify(&ev, &trust(&p), later),
        Err(Error::Expired { .. })
    ));
}

#[test]
fn init_refuses_to_overwrite_and_oversized_inputs_fail() {
    let (_d, p) = platform();
    assert!(init(&p.dir).is_err());
    assert!(p.sign([0; 48], &[0; 49], b"", 1).is_err());
    assert!(p.sign([0; 48], b"", &[0; 65], 1).is_err());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(p.dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn parser_never_panics_on_random_input() {
    let (_d, p) = platform();
    let ev = p.sign([1; 48], &[2; 48], &[3; 64], 5).unwrap();
    let mut rng = crate::testutil::Rng(0x51);
    for i in 0..5000 {
        let buf = if i % 2 == 0 {
            let n = rng.below(400);
            let mut b = rng.bytes(n);
            if i % 4 == 0 && b.len() >= 10 {
                b[..8].copy_from_slice(MAGIC);
                b[8] = 1;
                b[9] = 0;
            }
            b
        } else {
            let mut b = ev.clone();
            let pos = rng.below(b.len());
            b[pos] = rng.next() as u8;
            b
        };
        let _ = SimReport::parse(&buf);
    }
}
