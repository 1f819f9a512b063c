//! `/cocoon/launcher`: PID 1 of every sealed image.
//!
//! In order, and before the app exists: read and check the image's cocoon
//! files ([`identity`]); pick the attester (sim when `COCOON_SIM_DIR` names
//! a sim platform, else the TEE found on the machine); attest to the KBS
//! and receive the image key and the declared secrets ([`kbs`]); unlock the
//! sealed blob; serve it through FUSE at `/cocoon/root` (or, in memory
//! mode, decrypt all of it there into a tmpfs) with the file secrets in
//! memory; bind `/proc`, `/dev`, `/sys`, the `/etc` files and the
//! runtime's volumes into it ([`setup`]). Then fork: the child chroots,
//! takes the image's user and execs the original entrypoint; PID 1 keeps
//! serving the tree, forwards signals and reaps ([`process`]).
//!
//! Any failure before exec is one line on stderr,
//! `cocoon-launcher: error: ...`, and a non-zero exit: the app never ran.
//! The runtime interface (environment variables set by `cocoon run`) is in
//! `docs/launcher.md`.

pub mod error;
pub mod identity;
pub mod kbs;
pub mod netns;
pub mod process;
pub mod setup;
pub mod shield;
pub mod syscall;
pub mod user;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cocoon_attest::Attester;
use cocoon_fs::MountOptions;
use zeroize::Zeroizing;

pub use error::{Error, Result};

use setup::Volume;

/// Exit status for failures before the app started (EX_CONFIG).
pub const EXIT_REFUSED: i32 = 78;

/// The runtime's instructions, from the environment `cocoon run` sets.
#[derive(Debug, Clone)]
pub struct RuntimeEnv {
    /// `COCOON_KBS_URL`: the KBS base URL (required).
    pub kbs_url: String,
    /// `COCOON_SIM_DIR`: a sim platform directory (development only).
    pub sim_dir: Option<PathBuf>,
    /// `COCOON_KBS_RETRY_SECS`: how long to retry an unreachable KBS (default 30).
    pub kbs_retry: Duration,
    /// `COCOON_VOLUMES`: JSON `[{"source","target","readonly"}]`.
    pub volumes: Vec<Volume>,
    /// `COCOON_ENV`: JSON `["NAME=VALUE", ...]`, the `-e` extras.
    pub extra_env: Vec<String>,
    /// `COCOON_UPPER_LIMIT_BYTES`: size of the in-memory writable layer (default 256 MiB).
    pub upper_limit: u64,
    /// `COCOON_FS`: how the tree is served (`fuse`, the default, or `memory`).
    pub fs_mode: FsMode,
    /// `COCOON_SHIELD_NAMES`: comma-separated DNS names for the shield's
    /// KBS-CA certificate, besides `localhost`.
    pub shield_names: Vec<String>,
    /// Where the cocoon files are (default `/cocoon`).
    pub cocoon_dir: PathBuf,
    /// Where the tree is mounted (default `/cocoon/root`).
    pub root: String,
}

/// How the launcher serves the sealed tree to the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsMode {
    /// Through FUSE: chunks verified and decrypted as the app reads them.
    Fuse,
    /// All of it verified and decrypted at start into a tmpfs that never
    /// swaps: kernel-speed file calls, for start-up time and memory equal
    /// to the tree.
    Memory,
}

impl std::str::FromStr for FsMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fuse" => Ok(FsMode::Fuse),
            "memory" => Ok(FsMode::Memory),
            _ => Err(Error::Config(format!(
                "COCOON_FS {s:?} is not a file system mode (fuse or memory)"
            ))),
        }
    }
}

/// Names an `-e` extra may not set: the dynamic loader's (they would let
/// the untrusted host inject code into the workload).
pub fn forbidden_extra(name: &str) -> bool {
    name.starts_with("LD_") || name == "GCONV_PATH" || name == "HOSTALIASES"
}

impl RuntimeEnv {
    /// Reads the environment through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let kbs_url = get("COCOON_KBS_URL")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                Error::Config("COCOON_KBS_URL is not set (cocoon run --kbs URL sets it)".into())
            })?;
        let kbs_retry = match get("COCOON_KBS_RETRY_SECS") {
            Some(s) => Duration::from_secs(s.parse().map_err(|_| {
                Error::Config(format!(
                    "COCOON_KBS_RETRY_SECS {s:?} is not a number of seconds"
                ))
            })?),
            None => Duration::from_secs(30),
        };
        let volumes: Vec<Volume> = match get("COCOON_VOLUMES") {
            Some(s) if !s.is_empty() => serde_json::from_str(&s)
                .map_err(|e| Error::Config(format!("COCOON_VOLUMES is not valid: {e}")))?,
            _ => Vec::new(),
        };
        for v in &volumes {
            setup::check_target("volume target", &v.target)?;
        }
        let extra_env: Vec<String> = match get("COCOON_ENV") {
            Some(s) if !s.is_empty() => serde_json::from_str(&s)
                .map_err(|e| Error::Config(format!("COCOON_ENV is not valid: {e}")))?,
            _ => Vec::new(),
        };
        for e in &extra_env {
            let name = e.split_once('=').map(|(n, _)| n).unwrap_or("");
            if name.is_empty() {
                return Err(Error::Config(format!("-e {e:?} is not NAME=VALUE")));
            }
            if forbidden_extra(name) {
                return Err(Error::Config(format!(
                    "-e {name}=... is refused: the host must not steer the dynamic loader of a sealed workload"
                )));
            }
        }
        let upper_limit = match get("COCOON_UPPER_LIMIT_BYTES") {
            Some(s) => s.parse().map_err(|_| {
                Error::Config(format!("COCOON_UPPER_LIMIT_BYTES {s:?} is not a number"))
            })?,
            None => 256 << 20,
        };
        let fs_mode = match get("COCOON_FS") {
            Some(s) if !s.is_empty() => s.parse()?,
            _ => FsMode::Fuse,
        };
        let mut shield_names = vec!["localhost".to_string()];
        for n in get("COCOON_SHIELD_NAMES").unwrap_or_default().split(',') {
            let n = n.trim();
            if n.is_empty() || shield_names.iter().any(|x| x == n) {
                continue;
            }
            if !n
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'*'))
            {
                return Err(Error::Config(format!(
                    "COCOON_SHIELD_NAMES: {n:?} is not a DNS name"
                )));
            }
            shield_names.push(n.to_string());
        }
        Ok(RuntimeEnv {
            kbs_url,
            shield_names,
            sim_dir: get("COCOON_SIM_DIR")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            kbs_retry,
            volumes,
            extra_env,
            upper_limit,
            fs_mode,
            cocoon_dir: PathBuf::from("/cocoon"),
            root: "/cocoon/root".into(),
        })
    }
}

/// The app's environment: image env, then `-e` extras, then env secrets,
/// later entries replacing earlier ones of the same name; `PATH` and `HOME`
/// defaulted as Docker does.
pub fn app_env(
    image: &[String],
    extras: &[String],
    secrets: &[(String, String)],
    home: Option<&str>,
) -> Vec<String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| {
        if let Some(e) = out.iter_mut().find(|(n, _)| n == k) {
            e.1 = v.to_string();
        } else {
            out.push((k.to_string(), v.to_string()));
        }
    };
    for e in image.iter().chain(extras) {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        set(k, v);
    }
    for (k, v) in secrets {
        set(k, v);
    }
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.insert(0, ("PATH".into(), setup::DEFAULT_PATH.into()));
    }
    if !out.iter().any(|(k, _)| k == "HOME") {
        out.push(("HOME".into(), home.unwrap_or("/").into()));
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn attester(env: &RuntimeEnv, w: &identity::Workload) -> Result<Box<dyn Attester>> {
    let init_digest = w.init_data().digest();
    if let Some(dir) = &env.sim_dir {
        let platform = cocoon_attest::sim::SimPlatform::open(dir)
            .map_err(|e| Error::Attest(format!("sim platform {}: {e}", dir.display())))?;
        // A sim "launch": the launcher's digest as measurement, the init
        // data digest as host data (hardware binds both at launch).
        let mut measurement = [0u8; 48];
        measurement[..32].copy_from_slice(&w.launcher.0);
        let a = cocoon_attest::sim::SimAttester::new(platform, measurement, &init_digest)
            .map_err(|e| Error::Attest(e.to_string()))?;
        return Ok(Box::new(a));
    }
    cocoon_attest::attester::detect(&cocoon_attest::attester::Probe::default()).map_err(|e| {
        Error::Attest(format!(
            "no TEE found ({e}); for development pass --sim DIR to cocoon run"
        ))
    })
}

fn read_tree_text(tree: &cocoon_seal::reader::UnlockedTree, path: &str) -> Result<String> {
    match tree.lookup(path) {
        None => Ok(String::new()),
        Some(_) => tree
            .read_file(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| Error::Seal(format!("reading {path}: {e}"))),
    }
}

/// Puts the tree at `root` as `mode` says, with `files` (the file secrets)
/// in memory inside it.
fn mount_tree(
    tree: cocoon_seal::reader::UnlockedTree,
    root: &Path,
    mode: FsMode,
    opts: MountOptions,
) -> Result<()> {
    std::fs::create_dir_all(root)
        .map_err(|e| Error::sys(format!("creating {}", root.display()), e))?;
    if mode == FsMode::Memory {
        // The tree (and its open blob) goes away once it is in the tmpfs.
        return cocoon_fs::unpack_in_memory(&tree, root, opts)
            .map_err(|e| Error::Mount(e.to_string()));
    }
    let handle =
        cocoon_fs::mount(Arc::new(tree), root, opts).map_err(|e| Error::Mount(e.to_string()))?;
    // Served until PID 1 exits; the kernel ends the mount with us.
    std::mem::forget(handle);
    Ok(())
}

/// A started app and what serves it.
pub struct Started {
    /// The app's pid.
    pub pid: libc::pid_t,
    /// The shield and the app's network namespace (shielded images).
    pub shield: Option<(shield::Shield, Arc<netns::AppNetwork>)>,
}

/// What the KBS released to the attested launcher.
struct Released {
    client: kbs::Client,
    key: cocoon_seal::ImageKey,
    env_secrets: Vec<(String, String)>,
    file_secrets: Vec<(String, Zeroizing<Vec<u8>>)>,
}

/// Attests to the KBS and fetches the image key and the declared secrets.
fn release(env: &RuntimeEnv, w: &identity::Workload, attester: &dyn Attester) -> Result<Released> {
    let client = kbs::Client::new(&env.kbs_url, env.kbs_retry)?;
    let session = client.attest(attester, &w.init_data())?;
    let key_bytes = client.resource(&session, &w.manifest.seal.key)?;
    let key = cocoon_seal::ImageKey::from_bytes(&key_bytes)
        .map_err(|e| Error::Kbs(format!("{}: not an image key ({e})", w.manifest.seal.key)))?;
    drop(key_bytes);
    let mut env_secrets = Vec::new();
    let mut file_secrets = Vec::new();
    for s in &w.manifest.secrets {
        let v = client.resource(&session, &s.uri)?;
        if let Some(name) = &s.env {
            let text = std::str::from_utf8(&v)
                .map_err(|_| Error::Kbs(format!("{}: an env secret must be UTF-8 text", s.uri)))?;
            if text.contains('\0') {
                return Err(Error::Kbs(format!(
                    "{}: an env secret must not contain NUL",
                    s.uri
                )));
            }
            env_secrets.push((name.clone(), text.to_string()));
        }
        if let Some(path) = &s.path {
            file_secrets.push((path.clone(), v));
        }
    }
    Ok(Released {
        client,
        key,
        env_secrets,
        file_secrets,
    })
}

/// Everything up to the app's start.
pub fn start(env: &RuntimeEnv) -> Result<Started> {
    let me =
        std::fs::read("/proc/self/exe").map_err(|e| Error::sys("reading /proc/self/exe", e))?;
    let w = identity::load(&env.cocoon_dir, &me)?;
    drop(me);
    let attester: Arc<dyn Attester> = Arc::from(attester(env, &w)?);
    let blob_path = env.cocoon_dir.join("sealed.blob");
    let blob = cocoon_seal::reader::SealedBlob::open(&blob_path, &w.descriptor.blob.trailer)
        .map_err(|e| Error::Seal(e.to_string()))?;
    // In FUSE mode every stored chunk is checked against the signed chunk
    // table while the KBS round trip runs, so that a changed byte anywhere
    // stops the start even in a chunk the app would never read. (Memory
    // mode checks each chunk as it unpacks the tree.)
    let released = std::thread::scope(|s| {
        let check = (env.fs_mode == FsMode::Fuse).then(|| s.spawn(|| blob.verify_chunks()));
        let released = release(env, &w, attester.as_ref());
        if let Some(check) = check {
            check
                .join()
                .unwrap_or_else(|_| {
                    Err(cocoon_seal::Error::Format(
                        "the chunk check panicked".into(),
                    ))
                })
                .map_err(|e| Error::Seal(e.to_string()))?;
        }
        released
    })?;
    let Released {
        client,
        key,
        env_secrets,
        file_secrets,
    } = released;
    let tree = blob
        .unlock(&key, &w.manifest)
        .map_err(|e| Error::Seal(e.to_string()))?;
    drop(key);
    let passwd = read_tree_text(&tree, "/etc/passwd")?;
    let group = read_tree_text(&tree, "/etc/group")?;
    let ident = user::resolve(&w.manifest.config.user, &passwd, &group)?;
    let shielded = !w.manifest.shield.is_empty();
    // A shielded app reaches out through the egress proxy; the image's own
    // proxy settings and `-e` win.
    let image_env: Vec<String> = if shielded {
        shield::proxy_env()
            .into_iter()
            .chain(w.manifest.config.env.iter().cloned())
            .collect()
    } else {
        w.manifest.config.env.clone()
    };
    let env_list = app_env(
        &image_env,
        &env.extra_env,
        &env_secrets,
        ident.home.as_deref(),
    );
    drop(env_secrets);
    let argv: Vec<String> = w
        .manifest
        .config
        .entrypoint
        .iter()
        .chain(&w.manifest.config.cmd)
        .cloned()
        .collect();
    let owner = (ident.uid, ident.gid);
    mount_tree(
        tree,
        Path::new(&env.root),
        env.fs_mode,
        MountOptions {
            allow_other: true,
            upper_limit_bytes: env.upper_limit,
            files: file_secrets,
            files_owner: owner,
        },
    )?;
    setup::prepare_root(&syscall::Linux, &env.root, &env.volumes)?;
    let workdir = if w.manifest.config.workdir.is_empty() {
        "/"
    } else {
        &w.manifest.config.workdir
    };
    // Docker creates a missing working directory; so do we (as root, before
    // the app's chroot; the tree's upper layer takes it).
    let wd = Path::new(&env.root).join(workdir.trim_start_matches('/'));
    if !wd.exists() {
        std::fs::create_dir_all(&wd)
            .map_err(|e| Error::sys(format!("creating working directory {workdir}"), e))?;
    }
    let mut plan = setup::ExecPlan::new(&env.root, workdir, ident, &argv, &env_list)?;
    drop(env_list);
    let shield = if shielded {
        let net = Arc::new(netns::AppNetwork::create()?);
        let certifier = shield::LauncherCertifier {
            attester: attester.clone(),
            kbs: client.clone(),
            init: w.init_data(),
            key: kbs::new_key()?,
            dns_names: env.shield_names.clone(),
        };
        let s = shield::start(&w.manifest.shield, net.clone(), Arc::new(certifier))?;
        plan = plan.in_network_namespace(net.ns_fd())?;
        Some((s, net))
    } else {
        None
    };
    let pid = process::spawn(&plan)?;
    if std::env::var_os("COCOON_QUIET").is_none() {
        let shielded: Vec<String> = w
            .manifest
            .shield
            .iter()
            .map(|p| format!("{}->{}", p.public, p.app))
            .collect();
        eprintln!(
            "cocoon-launcher: workload {} attested ({}), started {}{}",
            w.descriptor.workload,
            attester.tee().as_str(),
            plan.program().to_string_lossy(),
            if shielded.is_empty() {
                String::new()
            } else {
                format!(", shield on {}", shielded.join(", "))
            }
        );
    }
    Ok(Started { pid, shield })
}

/// The launcher's main: returns the process exit status.
pub fn main() -> i32 {
    if let Err(e) = process::block_signals() {
        eprintln!("cocoon-launcher: error: {e}");
        return EXIT_REFUSED;
    }
    let started = RuntimeEnv::from_lookup(|k| std::env::var(k).ok()).and_then(|env| start(&env));
    match started {
        // The shield (if any) serves until the app is gone.
        Ok(started) => process::supervise(started.pid),
        Err(e) => {
            eprintln!("cocoon-launcher: error: {e}");
            EXIT_REFUSED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> Result<RuntimeEnv> {
        let m: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RuntimeEnv::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn runtime_env_parses_and_refuses_clearly() {
        let e = env_of(&[]).unwrap_err().to_string();
        assert!(e.contains("COCOON_KBS_URL is not set"), "{e}");
        let r = env_of(&[
            ("COCOON_KBS_URL", "http://k:1"),
            (
                "COCOON_VOLUMES",
                r#"[{"source":"/cocoon/volumes/0","target":"/data"}]"#,
            ),
            ("COCOON_ENV", r#"["A=1"]"#),
            ("COCOON_KBS_RETRY_SECS", "2"),
        ])
        .unwrap();
        assert_eq!(r.volumes[0].target, "/data");
        assert_eq!(r.kbs_retry, Duration::from_secs(2));
        let e = env_of(&[
            ("COCOON_KBS_URL", "http://k"),
            ("COCOON_ENV", r#"["LD_PRELOAD=/x.so"]"#),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("LD_PRELOAD") && e.contains("refused"), "{e}");
        let e = env_of(&[
            ("COCOON_KBS_URL", "http://k"),
            ("COCOON_VOLUMES", r#"[{"source":"/x","target":"rel"}]"#),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("volume target"), "{e}");
        assert_eq!(r.fs_mode, FsMode::Fuse);
        let r = env_of(&[("COCOON_KBS_URL", "http://k"), ("COCOON_FS", "memory")]).unwrap();
        assert_eq!(r.fs_mode, FsMode::Memory);
        let e = env_of(&[("COCOON_KBS_URL", "http://k"), ("COCOON_FS", "disk")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("COCOON_FS \"disk\" is not a file system mode"),
            "{e}"
        );
    }

    #[test]
    fn env_layers_and_defaults() {
        let e = app_env(
            &["PATH=/bin".into(), "A=image".into(), "B=image".into()],
            &["B=extra".into(), "C=extra".into()],
            &[("C".into(), "secret".into())],
            Some("/root"),
        );
        assert_eq!(
            e,
            ["PATH=/bin", "A=image", "B=extra", "C=secret", "HOME=/root"]
        );
        let e = app_env(&[], &[], &[], None);
        assert_eq!(e[0], format!("PATH={}", setup::DEFAULT_PATH));
        assert_eq!(e[1], "HOME=/");
    }
}
