//! `cocoon run`: a sealed image as an OCI bundle, run by runc.
//!
//! [`prepare`] pulls the sealed image, unpacks its four cocoon files
//! (launcher, manifest, seal, encrypted blob) into `STATE/NAME/bundle/rootfs`
//! and writes `config.json` ([`spec`]). [`Bundle::run`] starts
//! `runc run` in the foreground, forwards SIGINT/SIGTERM/SIGHUP to it,
//! and [`Bundle::remove`] (or `Drop`) deletes the container and the state
//! directory. Nothing in the bundle is plaintext of the sealed tree: the
//! launcher decrypts in memory inside the container.
#![deny(missing_docs)]

pub mod proxy;
pub mod spec;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use cocoon_image::store::CasDir;
use cocoon_image::transport::{open_source, resolve};
use cocoon_image::{ImageRef, TransportOptions};

/// Errors of `cocoon run`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the image failed. (The cause is part of the message, not a
    /// `source`, so that `{:#}` does not print it twice.)
    #[error("image {image}: {cause}")]
    Image {
        /// The image.
        image: String,
        /// Why.
        cause: cocoon_image::Error,
    },
    /// Not a sealed image.
    #[error("{0} is not a cocoon sealed image (its entrypoint is not /cocoon/launcher); make one with `cocoon convert`")]
    NotSealed(String),
    /// Bad options.
    #[error("{0}")]
    Options(String),
    /// A file system operation failed.
    #[error("{what}: {cause}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        cause: std::io::Error,
    },
    /// runc failed.
    #[error("runc {0}")]
    Runc(String),
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |cause| Error::Io { what, cause }
}

/// A `-v HOST_DIR:PATH[:ro]` volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    /// Directory on the host.
    pub host: PathBuf,
    /// Absolute path inside the app's root.
    pub path: String,
    /// Read-only.
    pub readonly: bool,
}

impl std::str::FromStr for VolumeSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let (Some(h), Some(p)) = (parts.next(), parts.next()) else {
            return Err(format!("expected HOST_DIR:PATH[:ro], not {s:?}"));
        };
        let readonly = match parts.next() {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(o) => return Err(format!("volume option {o:?} is not ro or rw")),
        };
        if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
            return Err(format!("volume path {p:?} must be absolute, without .."));
        }
        Ok(VolumeSpec {
            host: PathBuf::from(h),
            path: p.to_string(),
            readonly,
        })
    }
}

/// A `-p HOST:CONTAINER` port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    /// Port on the host.
    pub host: u16,
    /// Port the app listens on.
    pub container: u16,
}

impl std::str::FromStr for PortSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.strip_suffix("/tcp").unwrap_or(s);
        let bad = || format!("expected HOST:CONTAINER TCP ports, not {s:?}");
        let (h, c) = s.split_once(':').unwrap_or((s, s));
        Ok(PortSpec {
            host: h.parse().map_err(|_| bad())?,
            container: c.parse().map_err(|_| bad())?,
        })
    }
}

/// Everything `cocoon run` was asked.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The sealed image.
    pub image: ImageRef,
    /// How to read it.
    pub transport: TransportOptions,
    /// KBS base URL as seen from the container (host network).
    pub kbs_url: String,
    /// Sim platform directory (development), bind-mounted read-only.
    pub sim_dir: Option<PathBuf>,
    /// Ports.
    pub ports: Vec<PortSpec>,
    /// Volumes.
    pub volumes: Vec<VolumeSpec>,
    /// `-e NAME=VALUE` extras for the app.
    pub env: Vec<String>,
    /// Container name (default: `cocoon-<pid>`).
    pub name: Option<String>,
    /// State root (default `/run/cocoon`).
    pub state_root: PathBuf,
    /// How long the launcher retries an unreachable KBS (seconds).
    pub kbs_retry_secs: Option<u64>,
    /// DNS names for the shield's KBS-CA certificate, besides `localhost`.
    pub shield_names: Vec<String>,
    /// Memory mode: the launcher decrypts the whole tree at start into a
    /// tmpfs that never swaps, instead of serving it through FUSE.
    pub fs_in_memory: bool,
}

/// Default state root.
pub const STATE_ROOT: &str = "/run/cocoon";

/// A prepared container: its state directory and bundle.
#[derive(Debug)]
pub struct Bundle {
    name: String,
    state: PathBuf,
    removed: bool,
}

fn check_name(n: &str) -> Result<()> {
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Options(format!(
            "container name {n:?}: use letters, digits, '-', '_' and '.' (at most 64)"
        )))
    }
}

/// Pulls the sealed image and writes the bundle under `STATE/NAME`.
pub fn prepare(opts: &RunOptions) -> Result<Bundle> {
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| format!("cocoon-{}", std::process::id()));
    check_name(&name)?;
    for v in &opts.volumes {
        if !v.host.is_dir() {
            return Err(Error::Options(format!(
                "volume {}: not a directory on the host",
                v.host.display()
            )));
        }
    }
    let state = opts.state_root.join(&name);
    if state.exists() {
        return Err(Error::Options(format!(
            "a container named {name} exists ({}); pick another --name or remove it",
            state.display()
        )));
    }
    std::fs::create_dir_all(&state).map_err(io(format!("creating {}", state.display())))?;
    let bundle = Bundle {
        name,
        state,
        removed: false,
    };
    bundle.write(opts)?;
    Ok(bundle)
}

impl Bundle {
    /// The container name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state directory (`STATE/NAME`).
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// The bundle directory (holds `config.json` and `rootfs/`).
    pub fn bundle_dir(&self) -> PathBuf {
        self.state.join("bundle")
    }

    /// The container's root file system.
    pub fn rootfs(&self) -> PathBuf {
        self.bundle_dir().join("rootfs")
    }

    /// runc's state root for cocoon containers.
    pub fn runc_root(&self) -> PathBuf {
        self.state.parent().unwrap_or(&self.state).join("runc")
    }

    fn write(&self, opts: &RunOptions) -> Result<()> {
        let image_err = |cause| Error::Image {
            image: opts.image.to_string(),
            cause,
        };
        let mut src = open_source(&opts.image, &opts.transport).map_err(image_err)?;
        let resolved = resolve(src.as_mut(), &opts.transport.platform).map_err(image_err)?;
        let entrypoint = resolved
            .config
            .config()
            .as_ref()
            .and_then(|c| c.entrypoint().clone())
            .unwrap_or_default();
        if entrypoint != ["/cocoon/launcher"] {
            return Err(Error::NotSealed(opts.image.to_string()));
        }
        let cas_dir = self.state.join("content");
        let mut store = CasDir::new(&cas_dir).map_err(io("creating the content store"))?;
        let tree = cocoon_image::flatten::flatten(src.as_mut(), &resolved, &mut store)
            .map_err(image_err)?;
        let rootfs = self.rootfs();
        tree.materialize(&rootfs, &store).map_err(image_err)?;
        std::fs::remove_dir_all(&cas_dir).map_err(io("removing the content store"))?;
        // The launcher's mount point; the root is read-only at run time.
        std::fs::create_dir_all(rootfs.join("cocoon/root"))
            .map_err(io("creating /cocoon/root in the bundle"))?;
        let hostname = self.state.join("hostname");
        std::fs::write(&hostname, format!("{}\n", self.name))
            .map_err(io("writing the hostname file"))?;

        let mut binds = Vec::new();
        let mut env = vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            format!("COCOON_KBS_URL={}", opts.kbs_url),
        ];
        for f in ["/etc/hosts", "/etc/resolv.conf"] {
            if Path::new(f).exists() {
                binds.push(spec::Bind {
                    source: f.into(),
                    destination: f.into(),
                    readonly: true,
                });
            }
        }
        binds.push(spec::Bind {
            source: hostname.to_string_lossy().into_owned(),
            destination: "/etc/hostname".into(),
            readonly: true,
        });
        if let Some(sim) = &opts.sim_dir {
            let sim = sim
                .canonicalize()
                .map_err(io(format!("sim directory {}", sim.display())))?;
            binds.push(spec::Bind {
                source: sim.to_string_lossy().into_owned(),
                destination: "/cocoon/sim".into(),
                readonly: true,
            });
            env.push("COCOON_SIM_DIR=/cocoon/sim".into());
        }
        let mut vols = Vec::new();
        for (i, v) in opts.volumes.iter().enumerate() {
            let host = v
                .host
                .canonicalize()
                .map_err(io(format!("volume {}", v.host.display())))?;
            let at = format!("/cocoon/volumes/{i}");
            binds.push(spec::Bind {
                source: host.to_string_lossy().into_owned(),
                destination: at.clone(),
                readonly: v.readonly,
            });
            vols.push(serde_json::json!({"source": at, "target": v.path, "readonly": v.readonly}));
        }
        if !vols.is_empty() {
            env.push(format!("COCOON_VOLUMES={}", serde_json::Value::from(vols)));
        }
        if !opts.env.is_empty() {
            env.push(format!(
                "COCOON_ENV={}",
                serde_json::to_string(&opts.env).unwrap_or_default()
            ));
        }
        if let Some(s) = opts.kbs_retry_secs {
            env.push(format!("COCOON_KBS_RETRY_SECS={s}"));
        }
        if !opts.shield_names.is_empty() {
            env.push(format!(
                "COCOON_SHIELD_NAMES={}",
                opts.shield_names.join(",")
            ));
        }
        if opts.fs_in_memory {
            env.push("COCOON_FS=memory".into());
        }
        let config = spec::config(&spec::SpecInput {
            hostname: self.name.clone(),
            env,
            binds,
            memory_mode: opts.fs_in_memory,
        });
        let path = self.bundle_dir().join("config.json");
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&config).unwrap_or_default(),
        )
        .map_err(io(format!("writing {}", path.display())))?;
        Ok(())
    }

    /// `runc --root R run [-d] --bundle B NAME`, stdio not yet set.
    pub fn command(&self, detach: bool) -> Command {
        let mut c = Command::new(runc());
        c.arg("--root").arg(self.runc_root()).arg("run");
        if detach {
            c.arg("--detach");
        }
        c.arg("--bundle").arg(self.bundle_dir()).arg(&self.name);
        c
    }

    /// Runs the container in the foreground with inherited stdio (logs
    /// stream to the terminal); SIGINT, SIGTERM and SIGHUP to this process
    /// are forwarded to the container (a second one kills it). Returns the
    /// app's exit status as runc reports it.
    pub fn run(&self) -> Result<i32> {
        self.run_with(Stdio::inherit(), Stdio::inherit())
    }

    /// [`Self::run`] with the given stdout and stderr.
    pub fn run_with(&self, stdout: Stdio, stderr: Stdio) -> Result<i32> {
        use std::os::unix::process::CommandExt;
        install_forwarding();
        let mut child = self
            .command(false)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            // Own process group: a terminal's ^C reaches only us, and we
            // forward it exactly once.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                Error::Runc(format!(
                    "could not start {}: {e} (install Debian's runc)",
                    runc()
                ))
            })?;
        let mut forwarded = 0;
        let status: ExitStatus = loop {
            if let Some(s) = child.try_wait().map_err(io("waiting for runc"))? {
                break s;
            }
            let sig = PENDING.swap(0, Ordering::SeqCst);
            if sig != 0 {
                forwarded += 1;
                let sig = if forwarded > 1 { libc::SIGKILL } else { sig };
                let _ = self.kill(sig);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Ok(status.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        }))
    }

    /// Starts the container detached; its output goes to `STATE/NAME/log`.
    pub fn run_detached(&self) -> Result<()> {
        let log = self.state.join("log");
        let f = std::fs::File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let f2 = f.try_clone().map_err(io("duplicating the log file"))?;
        let out = self
            .command(true)
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .output()
            .map_err(|e| Error::Runc(format!("could not start {}: {e}", runc())))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(Error::Runc(format!(
                "run --detach failed: {}",
                log.lines().last().unwrap_or("no output")
            )));
        }
        Ok(())
    }

    /// `runc kill NAME SIG`.
    pub fn kill(&self, sig: i32) -> Result<()> {
        let s = Command::new(runc())
            .arg("--root")
            .arg(self.runc_root())
            .args(["kill", &self.name, &sig.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(io("running runc kill"))?;
        if s.success() {
            Ok(())
        } else {
            Err(Error::Runc(format!("kill {} {sig} failed", self.name)))
        }
    }

    /// Keeps the state directory (detached containers) instead of removing
    /// it on drop.
    pub fn keep(mut self) {
        self.removed = true;
    }

    /// Deletes the container (`runc delete --force`) and its state directory.
    pub fn remove(&mut self) -> Result<()> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        let _ = Command::new(runc())
            .arg("--root")
            .arg(self.runc_root())
            .args(["delete", "--force", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        std::fs::remove_dir_all(&self.state)
            .map_err(io(format!("removing {}", self.state.display())))
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// The runc binary (`$COCOON_RUNC` or `runc`).
pub fn runc() -> String {
    std::env::var("COCOON_RUNC").unwrap_or_else(|_| "runc".into())
}

static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    PENDING.store(sig, Ordering::SeqCst);
}

fn install_forwarding() {
    for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        // Handlers (unlike SIG_IGN) are reset in runc by exec.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(s, &sa, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_volumes_and_ports() {
        let v: VolumeSpec = "/srv/data:/data:ro".parse().unwrap();
        assert_eq!((v.path.as_str(), v.readonly), ("/data", true));
        assert!("/srv:data".parse::<VolumeSpec>().is_err());
        assert!("/srv".parse::<VolumeSpec>().is_err());
        assert!("/srv:/a/../b".parse::<VolumeSpec>().is_err());
        let p: PortSpec = "8080:80".parse().unwrap();
        assert_eq!((p.host, p.container), (8080, 80));
        let p: PortSpec = "6379".parse().unwrap();
        assert_eq!((p.host, p.container), (6379, 6379));
        assert!("x:1".parse::<PortSpec>().is_err());
    }

    #[test]
    fn names() {
        assert!(check_name("web-1").is_ok());
        for n in ["", "../x", "-a", "a b"] {
            assert!(check_name(n).is_err(), "{n}");
        }
    }
}
