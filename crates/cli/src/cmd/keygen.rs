//! `cocoon keygen --out FILE`: the owner's signing key.

use std::path::PathBuf;

use cocoon_seal::signing::OwnerKey;

/// Arguments of `cocoon keygen`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Private key file to create (PKCS#8 PEM, mode 0600); the public key goes to FILE.pub.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Runs `cocoon keygen`; prints the signer id.
pub fn run(args: Args) -> anyhow::Result<()> {
    let key = OwnerKey::generate()?;
    let public = key.write(&args.out)?;
    println!("{}", key.public().fingerprint()?);
    eprintln!("wrote {} and {}", args.out.display(), public.display());
    Ok(())
}
