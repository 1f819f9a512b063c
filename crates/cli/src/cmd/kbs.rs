//! `cocoon kbs`: the key broker service and its admin client.

/// Arguments of `cocoon kbs`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `cocoon kbs`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("cocoon kbs is not built yet")
}
