//! Options that shape a workload beyond its image. `measure` and `convert`
//! share them, so an auditor who passes the same options to `measure` gets
//! the digest `convert` produced.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use cocoon_image::Digest;
use cocoon_seal::manifest::{SecretRef, ShieldPort, DEFAULT_CHUNK_SIZE};
use cocoon_seal::WorkloadOptions;

/// Workload options.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkloadArgs {
    /// Encrypt the content of PATH and everything below it (repeatable).
    #[arg(long = "encrypt", value_name = "PATH")]
    pub encrypt: Vec<String>,
    /// Encrypt the content of every file.
    #[arg(long, conflicts_with = "encrypt")]
    pub encrypt_all: bool,
    /// Put a KBS secret in an environment variable: NAME=kbs:///REPO/TYPE/TAG (repeatable).
    #[arg(long = "secret-env", value_name = "NAME=URI", value_parser = parse_secret_env)]
    pub secret_env: Vec<SecretRef>,
    /// Put a KBS secret in an in-memory file: /PATH=kbs:///REPO/TYPE/TAG (repeatable).
    #[arg(long = "secret-file", value_name = "PATH=URI", value_parser = parse_secret_file)]
    pub secret_file: Vec<SecretRef>,
    /// Serve attested TLS on PUBLIC and forward to the app's APP port (repeatable).
    #[arg(long = "shield", value_name = "PUBLIC:APP", value_parser = parse_shield)]
    pub shield: Vec<ShieldPort>,
    /// Bytes of file content per sealed chunk (power of two, 4 KiB to 16 MiB).
    #[arg(long, default_value_t = DEFAULT_CHUNK_SIZE)]
    pub chunk_size: u32,
    /// KBS resource of the image key (default: kbs:///cocoon/image-key/<tree digest>).
    #[arg(long, value_name = "URI")]
    pub key_uri: Option<String>,
    /// The launcher binary (default: cocoon-launcher beside cocoon, or the build tree's).
    #[arg(long, env = "COCOON_LAUNCHER", value_name = "FILE")]
    pub launcher: Option<PathBuf>,
}

fn parse_secret_env(s: &str) -> Result<SecretRef, String> {
    let (name, uri) = s
        .split_once('=')
        .ok_or("expected NAME=kbs:///REPO/TYPE/TAG")?;
    let valid = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(format!("{name:?} is not an environment variable name"));
    }
    Ok(SecretRef {
        uri: uri.into(),
        env: Some(name.into()),
        path: None,
    })
}

fn parse_secret_file(s: &str) -> Result<SecretRef, String> {
    let (path, uri) = s
        .split_once('=')
        .ok_or("expected /PATH=kbs:///REPO/TYPE/TAG")?;
    Ok(SecretRef {
        uri: uri.into(),
        env: None,
        path: Some(path.into()),
    })
}

fn parse_shield(s: &str) -> Result<ShieldPort, String> {
    let bad = || format!("expected PUBLIC:APP ports, e.g. 443:80, not {s:?}");
    let (p, a) = s.split_once(':').ok_or_else(bad)?;
    let port = |x: &str| x.parse::<u16>().ok().filter(|&n| n > 0).ok_or_else(bad);
    Ok(ShieldPort {
        public: port(p)?,
        app: port(a)?,
    })
}

/// Where the launcher is when `--launcher` is not given.
fn default_launcher() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the cocoon binary")?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let candidates = [
        dir.join("cocoon-launcher"),
        dir.join("../x86_64-unknown-linux-gnu/release/cocoon-launcher"),
    ];
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    bail!(
        "no launcher binary found beside {}: build it with `make launcher` or pass --launcher FILE",
        exe.display()
    )
}

impl WorkloadArgs {
    /// The workload options, and the launcher binary they name.
    pub fn options(&self) -> anyhow::Result<(WorkloadOptions, Vec<u8>)> {
        let path = match &self.launcher {
            Some(p) => p.clone(),
            None => default_launcher()?,
        };
        let launcher =
            std::fs::read(&path).with_context(|| format!("reading launcher {}", path.display()))?;
        let encrypted = if self.encrypt_all {
            vec!["/".to_string()]
        } else {
            self.encrypt.clone()
        };
        let options = WorkloadOptions {
            encrypted,
            secrets: self
                .secret_env
                .iter()
                .chain(&self.secret_file)
                .cloned()
                .collect(),
            shield: self.shield.clone(),
            chunk_size: self.chunk_size,
            key_uri: self.key_uri.clone(),
            launcher: Digest::of(&launcher),
        };
        Ok((options, launcher))
    }
}
