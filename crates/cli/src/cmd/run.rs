//! `cocoon run`: run a sealed image under runc (see docs/run.md).

use std::path::PathBuf;

use anyhow::bail;
use cocoon_image::ImageRef;
use cocoon_runtime::{PortSpec, RunOptions, VolumeSpec};

use super::image_opts::ImageOpts;

/// Arguments of `cocoon run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The sealed image (oci:DIR[:TAG], docker-archive:FILE, docker://REG/REPO:TAG).
    pub image: ImageRef,
    /// KBS base URL, as reached from the container (it shares the host's network).
    #[arg(long, env = "COCOON_KBS_URL")]
    pub kbs: String,
    /// Attest with the software TEE in DIR (from `cocoon sim init`; no protection).
    #[arg(long, value_name = "DIR")]
    pub sim: Option<PathBuf>,
    /// Publish a port: HOST:CONTAINER (TCP). Equal ports need nothing (host
    /// network); different ones get a userspace proxy.
    #[arg(short = 'p', long = "publish", value_name = "HOST:CONTAINER")]
    pub ports: Vec<PortSpec>,
    /// Bind a host directory into the app's root: HOST_DIR:PATH[:ro].
    #[arg(short = 'v', long = "volume", value_name = "HOST_DIR:PATH")]
    pub volumes: Vec<VolumeSpec>,
    /// Set an environment variable for the app: NAME=VALUE (LD_* refused).
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Container name (default cocoon-<pid>).
    #[arg(long)]
    pub name: Option<String>,
    /// Run in the background; output goes to STATE/NAME/log.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Where containers' state lives.
    #[arg(long, default_value = cocoon_runtime::STATE_ROOT)]
    pub state_dir: PathBuf,
    /// Seconds the launcher retries an unreachable KBS.
    #[arg(long, value_name = "SECS")]
    pub kbs_retry: Option<u64>,
    /// A DNS name for the shield's KBS-CA certificate (besides localhost); repeatable.
    #[arg(long = "shield-name", value_name = "DNS_NAME")]
    pub shield_names: Vec<String>,
    /// How the app sees its files: `fuse` verifies and decrypts each chunk
    /// as it is read; `memory` decrypts the whole tree at start into a tmpfs
    /// that never swaps (kernel-speed file calls for small hot servers such
    /// as nginx, for start-up time and memory equal to the tree).
    #[arg(long, value_enum, default_value_t = FsMode::Fuse)]
    pub fs: FsMode,
    #[command(flatten)]
    pub opts: ImageOpts,
}

/// `--fs`: how the launcher serves the sealed tree.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsMode {
    /// Through FUSE, chunk by chunk as the app reads.
    Fuse,
    /// Decrypted at start into memory (a noswap tmpfs).
    Memory,
}

/// Runs `cocoon run`; exits with the app's status.
pub fn run(args: Args) -> anyhow::Result<()> {
    for e in &args.env {
        if !e.contains('=') {
            bail!("-e {e:?}: expected NAME=VALUE");
        }
    }
    let proxied: Vec<PortSpec> = args
        .ports
        .iter()
        .copied()
        .filter(|p| p.host != p.container)
        .collect();
    if args.detach && !proxied.is_empty() {
        bail!("-d with -p HOST:CONTAINER on different ports is not supported (the port proxy lives in the foreground cocoon); publish the app's own port");
    }
    let opts = RunOptions {
        image: args.image,
        transport: args.opts.transport(),
        kbs_url: args.kbs,
        sim_dir: args.sim,
        ports: args.ports,
        volumes: args.volumes,
        env: args.env,
        name: args.name,
        state_root: args.state_dir,
        kbs_retry_secs: args.kbs_retry,
        shield_names: args.shield_names,
        fs_in_memory: args.fs == FsMode::Memory,
    };
    let mut bundle = cocoon_runtime::prepare(&opts)?;
    if args.detach {
        bundle.run_detached()?;
        println!("{}", bundle.name());
        bundle.keep();
        return Ok(());
    }
    for p in &proxied {
        cocoon_runtime::proxy::start(p.host, p.container)
            .map_err(|e| anyhow::anyhow!("publishing port {} -> {}: {e}", p.host, p.container))?;
    }
    let code = bundle.run()?;
    bundle.remove()?;
    if code != 0 {
        // The app's (or the launcher's) own output already said why.
        std::process::exit(code);
    }
    Ok(())
}
