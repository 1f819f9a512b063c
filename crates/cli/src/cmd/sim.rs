//! `cocoon sim`: the software TEE used for development (no protection).

use std::path::PathBuf;

/// Arguments of `cocoon sim`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: SimCommand,
}

#[derive(clap::Subcommand, Debug)]
enum SimCommand {
    /// Create a sim platform: a signing key and a self-signed root certificate.
    Init {
        /// Directory to create (refuses to overwrite an existing key).
        dir: PathBuf,
    },
}

/// Runs `cocoon sim`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        SimCommand::Init { dir } => {
            let p = cocoon_attest::sim::init(&dir)?;
            println!(
                "sim platform created in {}; trust it explicitly by giving {} to verifiers (--collateral). It gives no protection: every report says debug = true.",
                dir.display(),
                p.root_path().display()
            );
            Ok(())
        }
    }
}
