use super::*;
use std::net::TcpListener;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A fake configfs-tsm provider: answers every new entry that has an
/// inblob with outblob = "REPORT" || inblob.
fn fake_tsm(
    root: PathBuf,
    provider: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Ok(rd) = std::fs::read_dir(&root) {
                for e in rd.flatten() {
                    let d = e.path();
                    let out = d.join("outblob");
                    if let Ok(inb) = std::fs::read(d.join("inblob")) {
                        if inb.len() == 64 && !out.exists() {
                            let _ = std::fs::write(d.join("generation"), "1\n");
                            let _ = std::fs::write(d.join("provider"), format!("{provider}\n"));
                            let mut blob = b"REPORT".to_vec();
                            blob.extend_from_slice(&inb);
                            let _ = std::fs::write(&out, blob);
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

#[test]
fn tsm_attester_writes_inblob_and_reads_outblob() {
    let dir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let h = fake_tsm(dir.path().to_path_buf(), "sev_guest", stop.clone());
    let a = TsmAttester::new(dir.path(), Tee::Snp);
    let ev = a.evidence(b"abc").unwrap();
    assert_eq!(&ev[..6], b"REPORT");
    assert_eq!(&ev[6..9], b"abc");
    assert_eq!(ev[9..], [0u8; 61]);
    // The entry is removed afterwards.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // Wrong provider for the TEE is refused.
    let e = TsmAttester::new(dir.path(), Tee::Tdx)
        .evidence(b"x")
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("provider is \"sev_guest\", expected \"tdx_guest\""),
        "{e}"
    );
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
}

#[test]
fn tsm_attester_reports_missing_tree_and_oversized_data() {
    let dir = tempfile::tempdir().unwrap();
    let a = TsmAttester::new(dir.path().join("absent"), Tee::Snp);
    let e = a.evidence(b"x").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("configfs-tsm attester failed: create "),
        "{e}"
    );
    assert!(a.evidence(&[0u8; 65]).is_err());
}

/// Serves one request per connection: evidence = "EV:" + raw query.
fn fake_guest_api(status: u16, count: usize) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..count {
            let (mut s, _) = l.accept().unwrap();
            // Read the whole request head before answering: closing with
            // unread input would reset the connection.
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let req = String::from_utf8_lossy(&head).to_string();
            let target = req.split(' ').nth(1).unwrap_or("").to_string();
            let body = format!("EV:{target}");
            write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            seen.push(target);
        }
        seen
    });
    (url, h)
}

#[test]
fn coco_guest_api_attester_fetches_evidence() {
    let (url, h) = fake_guest_api(200, 1);
    let a = CocoGuestApiAttester::new(url, Tee::Tdx);
    let ev = a.evidence(&[0x01, b'a', 0xff]).unwrap();
    assert_eq!(ev, b"EV:/aa/evidence?runtime_data=%01a%FF");
    assert_eq!(h.join().unwrap(), vec!["/aa/evidence?runtime_data=%01a%FF"]);
}

#[test]
fn coco_guest_api_errors_are_clear() {
    let (url, h) = fake_guest_api(500, 1);
    let e = CocoGuestApiAttester::new(url.clone(), Tee::Snp)
        .evidence(b"x")
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("CoCo guest API attester failed: HTTP 500"),
        "{e}"
    );
    h.join().unwrap();
    let e = CocoGuestApiAttester::new("https://example", Tee::Snp)
        .evidence(b"x")
        .unwrap_err();
    assert!(e.to_string().contains("only http:// URLs"), "{e}");
}

#[test]
fn chunked_bodies_decode() {
    assert_eq!(
        dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
        b"abcde"
    );
    assert!(dechunk(b"zz\r\n").is_none());
}

#[test]
fn detect_prefers_tsm_then_api_then_sim() {
    let dir = tempfile::tempdir().unwrap();
    let tsm = dir.path().join("tsm");
    let dev = dir.path().join("tdx_guest");
    let mut probe = Probe {
        tsm_root: tsm.clone(),
        devices: vec![(dev.clone(), Tee::Tdx)],
        tpm: None,
        coco_api: None,
        sim: None,
    };
    let e = detect(&probe).err().unwrap();
    assert!(
        e.to_string()
            .starts_with("no TEE found: none of configfs-tsm at "),
        "{e}"
    );

    let simdir = dir.path().join("sim");
    crate::sim::init(&simdir).unwrap();
    probe.sim = Some(simdir);
    assert_eq!(detect(&probe).unwrap().tee(), Tee::Sim);

    let (url, h) = fake_guest_api(200, 1);
    probe.coco_api = Some((url, Tee::Snp));
    assert_eq!(detect(&probe).unwrap().tee(), Tee::Snp);
    h.join().unwrap();

    std::fs::create_dir(&tsm).unwrap();
    std::fs::write(&dev, "").unwrap();
    assert_eq!(detect(&probe).unwrap().tee(), Tee::Tdx);
}

#[test]
fn detect_falls_back_to_sev_guest_ioctl_without_configfs_tsm() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("sev-guest");
    let tdx = dir.path().join("tdx_guest");
    let probe = Probe {
        tsm_root: dir.path().join("no-tsm"),
        devices: vec![(dev.clone(), Tee::Snp), (tdx.clone(), Tee::Tdx)],
        tpm: None,
        coco_api: None,
        sim: None,
    };
    // A TDX device alone has no fallback (a quote needs configfs-tsm).
    std::fs::write(&tdx, "").unwrap();
    assert!(detect(&probe).is_err());
    // An SNP device node without configfs-tsm: the ioctl attester. A regular
    // file stands in for the device, so the kernel refuses the ioctl.
    std::fs::write(&dev, "").unwrap();
    let a = detect(&probe).unwrap();
    assert_eq!(a.tee(), Tee::Snp);
    let e = a.evidence(b"n").unwrap_err().to_string();
    assert!(
        e.contains("/dev/sev-guest") && e.contains("SNP_GET_REPORT"),
        "{e}"
    );
}
