//! `cocoon verify-endpoint HOST:PORT --reference-values FILE`: connect to an
//! attested TLS endpoint, check that its key lives in a TEE running the
//! expected workload (docs/tls.md), and print what was verified.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use cocoon_attest::workload::ReferenceValues;
use cocoon_attest::Collateral;
use cocoon_tls::{Expectation, VerifiedEndpoint};

/// What an attested endpoint must prove: the options `cocoon
/// verify-endpoint` and `cocoon infer request` share.
#[derive(clap::Args, Debug)]
pub struct ExpectationArgs {
    /// Reference values of the expected workload (from `cocoon convert --reference-values`).
    #[arg(long, value_name = "FILE")]
    pub reference_values: PathBuf,
    /// Collateral files or directories (VCEK/VLEK, DCAP collateral).
    #[arg(long, value_name = "PATH")]
    pub collateral: Vec<PathBuf>,
    /// Trust this sim root (root.pem from `cocoon sim init`) and accept sim
    /// evidence, which gives no protection: development only.
    #[arg(long, value_name = "FILE")]
    pub sim_root: Vec<PathBuf>,
}

impl ExpectationArgs {
    /// Reads the reference values and collateral. Sim roots count only when
    /// given with --sim-root: trusting sim is a decision, not a side effect
    /// of a collateral directory's content.
    pub fn expectation(&self) -> anyhow::Result<Expectation> {
        let rv_bytes = std::fs::read(&self.reference_values)
            .with_context(|| format!("read {}", self.reference_values.display()))?;
        let reference = ReferenceValues::from_json(&rv_bytes)
            .with_context(|| self.reference_values.display().to_string())?;
        let mut collateral = Collateral::from_paths(&self.collateral)?;
        collateral.sim_roots.clear();
        for f in &self.sim_root {
            let roots = Collateral::from_paths(std::slice::from_ref(f))?.sim_roots;
            anyhow::ensure!(
                !roots.is_empty(),
                "{} holds no sim root certificate (root.pem from `cocoon sim init`)",
                f.display()
            );
            collateral.sim_roots.extend(roots);
        }
        Ok(Expectation::new(reference, collateral).allow_sim(!self.sim_root.is_empty()))
    }
}

/// Arguments of `cocoon verify-endpoint`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The endpoint, HOST:PORT.
    pub addr: String,
    #[command(flatten)]
    pub expect: ExpectationArgs,
    /// Send no nonce: accept the server's current certificate, which may be
    /// a replay within its lifetime.
    #[arg(long)]
    pub no_nonce: bool,
    /// Print the verified claims as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `cocoon verify-endpoint`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let exp = args.expect.expectation()?;
    let connected = if args.no_nonce {
        cocoon_tls::connect_without_nonce(&args.addr, &exp)
    } else {
        cocoon_tls::connect(&args.addr, &exp)
    };
    let (mut stream, endpoint) = match connected {
        Ok(c) => c,
        Err(e @ cocoon_tls::Error::SimNotAllowed) => {
            anyhow::bail!("{e}; pass --sim-root FILE to trust a sim platform")
        }
        Err(e) => return Err(e.into()),
    };
    stream.conn.send_close_notify();
    let _ = stream.flush();

    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&endpoint)?)?;
    } else {
        summary(&mut out, &args.addr, &endpoint)?;
    }
    Ok(())
}

fn summary(out: &mut impl std::io::Write, addr: &str, e: &VerifiedEndpoint) -> anyhow::Result<()> {
    let c = &e.claims;
    writeln!(
        out,
        "{addr}: verified: its TLS key lives in a {} TEE running the expected workload",
        e.tee
    )?;
    writeln!(out, "  workload:           {}", e.init_data.workload_digest)?;
    writeln!(out, "  launcher:           {}", e.init_data.launcher_digest)?;
    writeln!(out, "  signer:             {}", e.init_data.signer)?;
    writeln!(
        out,
        "  tee:                {} (debug={}, tcb={:?})",
        c.tee, c.debug, c.tcb.status
    )?;
    writeln!(out, "  launch measurement: {}", c.launch_measurement)?;
    writeln!(out, "  init data:          {}", c.init_data)?;
    writeln!(out, "  tls key sha256:     {}", e.public_key_sha256)?;
    match &e.nonce {
        Some(n) => writeln!(out, "  nonce:              {n} (fresh, this connection's)")?,
        None => writeln!(
            out,
            "  nonce:              none (--no-nonce: the certificate may be a replay)"
        )?,
    }
    writeln!(
        out,
        "  certificate:        valid {} to {}",
        e.not_before, e.not_after
    )?;
    if c.tee == cocoon_attest::Tee::Sim {
        writeln!(
            out,
            "  warning:            sim gives no protection; development only"
        )?;
    }
    Ok(())
}
