//! `cocoon attest`: produce and verify TEE evidence.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use cocoon_attest::{parse_hex, Attester, Collateral, Tee, UnixTime};

/// Arguments of `cocoon attest`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: AttestCommand,
}

#[derive(clap::Subcommand, Debug)]
enum AttestCommand {
    /// Verify evidence and print its claims, or the reason for refusal.
    Verify(VerifyArgs),
    /// Fetch the collateral for evidence into the cache (AMD KDS VCEK,
    /// Intel PCS TCB info, QE identity and CRLs) and print where it is, to
    /// pass later with --collateral, e.g. on a machine with no network.
    Fetch(FetchArgs),
    /// Produce evidence for given report data.
    Evidence(EvidenceArgs),
}

#[derive(clap::Args, Debug)]
struct VerifyArgs {
    /// TEE kind: sim, snp, tdx, sgx, az-snp-vtpm.
    #[arg(long)]
    tee: Tee,
    /// Evidence files. For az-snp-vtpm either one JSON envelope, or the HCL
    /// report followed by the TPM quote JSON. Otherwise each file is verified.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Collateral files or directories (VCEK/VLEK, DCAP collateral, sim root.pem).
    #[arg(long)]
    collateral: Vec<PathBuf>,
    /// Verification time (RFC 3339); default: now.
    #[arg(long)]
    now: Option<String>,
    /// Fetch collateral the files lack into the cache, reusing cached
    /// copies: the SNP VCEK from AMD KDS; TDX/SGX TCB info, QE identity and
    /// CRLs from Intel PCS (fetched again once past their nextUpdate at the
    /// verification time).
    #[arg(long)]
    fetch: bool,
    #[command(flatten)]
    sources: Sources,
    /// Print the claims as JSON.
    #[arg(long)]
    json: bool,
    /// Refuse unless the report data equals this hex (zero-padded to 64 bytes).
    #[arg(long)]
    expect_report_data: Option<String>,
    /// Refuse unless the init data equals this hex (zero-padded to the field).
    #[arg(long)]
    expect_init_data: Option<String>,
}

/// Where --fetch looks (only meaningful with it).
#[derive(clap::Args, Debug)]
struct Sources {
    /// Cache directory for fetched collateral (default:
    /// $XDG_CACHE_HOME/cocoon/collateral or ~/.cache/cocoon/collateral).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// AMD KDS base URL (a mirror or proxy).
    #[arg(long, value_name = "URL", default_value = cocoon_attest::fetch::AMD_KDS)]
    kds_url: String,
    /// Intel PCS base URL, or a PCCS (paths /{tdx,sgx}/certification/v4/...).
    #[arg(long, value_name = "URL", default_value = cocoon_attest::fetch::INTEL_PCS)]
    pcs_url: String,
    /// URL of the Intel SGX Root CA CRL (DER; a PCCS serves it, hex, at
    /// {pccs}/sgx/certification/v4/rootcacrl).
    #[arg(long, value_name = "URL", default_value = cocoon_attest::fetch::INTEL_ROOT_CA_CRL)]
    intel_root_crl_url: String,
}

impl Sources {
    fn fetcher(&self) -> anyhow::Result<cocoon_attest::fetch::Fetcher> {
        let cache = match self
            .cache
            .clone()
            .or_else(cocoon_attest::fetch::default_cache_dir)
        {
            Some(c) => c,
            None => anyhow::bail!(
                "fetching collateral needs a cache directory: HOME is not set, so pass --cache DIR"
            ),
        };
        Ok(cocoon_attest::fetch::Fetcher::new(cache)
            .with_kds_base(&self.kds_url)
            .with_pcs_base(&self.pcs_url)
            .with_intel_root_crl_url(&self.intel_root_crl_url))
    }

    /// True when any source option was given.
    fn given(&self) -> bool {
        self.cache.is_some()
            || self.kds_url != cocoon_attest::fetch::AMD_KDS
            || self.pcs_url != cocoon_attest::fetch::INTEL_PCS
            || self.intel_root_crl_url != cocoon_attest::fetch::INTEL_ROOT_CA_CRL
    }
}

#[derive(clap::Args, Debug)]
struct FetchArgs {
    /// TEE kind: snp, az-snp-vtpm, tdx, sgx.
    #[arg(long)]
    tee: Tee,
    /// Evidence files (a quote or report each; az-snp-vtpm: the envelope).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Time the collateral must be current at (RFC 3339); default: now.
    #[arg(long)]
    now: Option<String>,
    #[command(flatten)]
    sources: Sources,
}

#[derive(clap::Args, Debug)]
struct EvidenceArgs {
    /// TEE kind: sim (software), or snp / tdx through configfs-tsm.
    #[arg(long)]
    tee: Tee,
    /// Sim platform directory (from `cocoon sim init`), for --tee sim.
    #[arg(long)]
    sim: Option<PathBuf>,
    /// configfs-tsm report directory, for --tee snp|tdx.
    #[arg(long, default_value = cocoon_attest::attester::TSM_ROOT)]
    tsm_root: PathBuf,
    /// Report data, hex, at most 64 bytes.
    #[arg(long)]
    report_data: String,
    /// Host (init) data, hex, at most 48 bytes (sim only; hardware sets it at launch).
    #[arg(long)]
    host_data: Option<String>,
    /// Launch measurement, hex, 48 bytes (sim only).
    #[arg(long)]
    measurement: Option<String>,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `cocoon attest`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        AttestCommand::Verify(a) => verify(a),
        AttestCommand::Fetch(a) => fetch(a),
        AttestCommand::Evidence(a) => evidence(a),
    }
}

fn read(p: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("read {}", p.display()))
}

fn parse_now(now: &Option<String>) -> anyhow::Result<UnixTime> {
    Ok(match now {
        Some(s) => UnixTime::parse_rfc3339(s)?,
        None => UnixTime::now(),
    })
}

fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let now = parse_now(&a.now)?;
    anyhow::ensure!(
        a.fetch || !a.sources.given(),
        "--cache, --kds-url, --pcs-url and --intel-root-crl-url apply to --fetch only"
    );
    let collateral = Collateral::from_paths(&a.collateral)?;
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    if a.tee == Tee::AzSnpVtpm && a.files.len() == 2 {
        let hcl = read(&a.files[0])?;
        let quote = read(&a.files[1])?;
        let env = cocoon_attest::az_snp_vtpm::Evidence::envelope(&hcl, &quote, None)?;
        inputs.push((
            format!("{} + {}", a.files[0].display(), a.files[1].display()),
            env,
        ));
    } else {
        for f in &a.files {
            inputs.push((f.display().to_string(), read(f)?));
        }
    }
    let expect_rd = a
        .expect_report_data
        .as_deref()
        .map(|s| parse_hex("--expect-report-data", s))
        .transpose()?;
    let expect_id = a
        .expect_init_data
        .as_deref()
        .map(|s| parse_hex("--expect-init-data", s))
        .transpose()?;
    let fetcher = if a.fetch {
        Some(a.sources.fetcher()?)
    } else {
        None
    };
    let mut out = std::io::stdout().lock();
    for (name, ev) in inputs {
        let mut collateral = collateral.clone();
        if let Some(f) = &fetcher {
            f.complete(a.tee, &ev, &mut collateral, now)
                .with_context(|| name.clone())?;
        }
        let claims = cocoon_attest::verify(a.tee, &ev, &collateral, now)
            .with_context(|| format!("{name} refused"))?;
        if let Some(rd) = &expect_rd {
            claims
                .expect_report_data(rd)
                .with_context(|| format!("{name} refused"))?;
        }
        if let Some(id) = &expect_id {
            claims
                .expect_init_data(id)
                .with_context(|| format!("{name} refused"))?;
        }
        if a.json {
            writeln!(out, "{}", claims.to_json_pretty())?;
        } else {
            writeln!(
                out,
                "{name}: verified {} evidence at {now}: debug={} tcb={:?}{} launch_measurement={} init_data={} report_data={}",
                claims.tee,
                claims.debug,
                claims.tcb.status,
                if claims.tcb.advisory_ids.is_empty() {
                    String::new()
                } else {
                    format!(" advisories={}", claims.tcb.advisory_ids.join(","))
                },
                claims.launch_measurement,
                claims.init_data,
                claims.report_data
            )?;
        }
    }
    Ok(())
}

fn fetch(a: FetchArgs) -> anyhow::Result<()> {
    let now = parse_now(&a.now)?;
    let f = a.sources.fetcher()?;
    let mut out = std::io::stdout().lock();
    for file in &a.files {
        let name = file.display().to_string();
        let ev = read(file)?;
        match a.tee {
            Tee::Tdx | Tee::Sgx => {
                let r = f.dcap(a.tee, &ev, now).with_context(|| name.clone())?;
                writeln!(
                    out,
                    "{name}: {} collateral for FMSPC {} ({} CA) in {} ({} fetched, {} from the cache)",
                    a.tee,
                    r.pck.fmspc_hex(),
                    r.pck.ca.as_str(),
                    r.dir.display(),
                    r.fetched.len(),
                    r.urls.len() - r.fetched.len()
                )?;
            }
            Tee::Snp | Tee::AzSnpVtpm => {
                let urls = f
                    .complete(a.tee, &ev, &mut Collateral::default(), now)
                    .with_context(|| name.clone())?;
                if urls.is_empty() {
                    writeln!(
                        out,
                        "{name}: nothing to fetch (the evidence carries its VCEK)"
                    )?;
                }
                for u in urls {
                    writeln!(out, "{name}: VCEK in {}", f.cache_path(&u).display())?;
                }
            }
            Tee::Sim => anyhow::bail!("sim evidence has no collateral to fetch: its root is local"),
        }
    }
    Ok(())
}

fn evidence(a: EvidenceArgs) -> anyhow::Result<()> {
    let rd = parse_hex("--report-data", &a.report_data)?;
    let attester: Box<dyn Attester> = match a.tee {
        Tee::Sim => {
            let dir = a
                .sim
                .as_ref()
                .context("--tee sim needs --sim DIR (made by `cocoon sim init DIR`)")?;
            let platform = cocoon_attest::sim::SimPlatform::open(dir)?;
            let host = match &a.host_data {
                Some(h) => parse_hex("--host-data", h)?,
                None => Vec::new(),
            };
            let mut m = [0u8; 48];
            if let Some(s) = &a.measurement {
                let v = parse_hex("--measurement", s)?;
                anyhow::ensure!(
                    v.len() == 48,
                    "--measurement must be 48 bytes, got {}",
                    v.len()
                );
                m.copy_from_slice(&v);
            }
            Box::new(cocoon_attest::sim::SimAttester::new(platform, m, &host)?)
        }
        Tee::Snp | Tee::Tdx => {
            anyhow::ensure!(
                a.host_data.is_none() && a.measurement.is_none(),
                "--host-data and --measurement apply to sim only: hardware fixes them at launch"
            );
            Box::new(cocoon_attest::attester::TsmAttester::new(
                &a.tsm_root,
                a.tee,
            ))
        }
        other => anyhow::bail!("cannot produce {other} evidence here: use sim, snp or tdx"),
    };
    let ev = attester.evidence(&rd)?;
    std::fs::write(&a.out, &ev).with_context(|| format!("write {}", a.out.display()))?;
    println!(
        "wrote {} bytes of {} evidence to {}",
        ev.len(),
        attester.tee(),
        a.out.display()
    );
    Ok(())
}
