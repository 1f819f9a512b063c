//! `cocoon`: run existing container images as confidential containers.
//!
//! A thin command line over the cocoon libraries: every subcommand parses its
//! arguments, calls a library, and turns errors into one line on stderr and a
//! non-zero exit.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// Run existing container images as confidential containers.
#[derive(Parser, Debug)]
#[command(name = "cocoon", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the workload digest of an image (no key needed).
    Measure(cmd::measure::Args),
    /// Make the owner's signing key.
    Keygen(cmd::keygen::Args),
    /// Seal an existing image: encrypt, measure, sign.
    Convert(cmd::convert::Args),
    /// Show what a sealed image declares (unverified).
    Inspect(cmd::inspect::Args),
    /// Check a sealed image's signature and every chunk (and, with the key, every file).
    VerifyImage(cmd::verify_image::Args),
    /// Copy an image between transports (oci:, docker-archive:, docker://).
    Copy(cmd::copy::Args),
    /// Flatten an image's layers into a directory.
    Unpack(cmd::unpack::Args),
    /// Produce and verify TEE evidence.
    Attest(cmd::attest::Args),
    /// Manage the software TEE used for development.
    Sim(cmd::sim::Args),
    /// Run a sealed image under runc (attest, unlock, start the app).
    Run(cmd::run::Args),
    /// Run the key broker service, or administer one.
    Kbs(cmd::kbs::Args),
    /// Check that a TLS endpoint's key lives in a TEE running the expected workload.
    VerifyEndpoint(cmd::verify_endpoint::Args),
    /// Serve ONNX models (Open Inference Protocol), build their image, send attested requests.
    Infer(cmd::infer::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Measure(args) => cmd::measure::run(args),
        Command::Keygen(args) => cmd::keygen::run(args),
        Command::Convert(args) => cmd::convert::run(args),
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::VerifyImage(args) => cmd::verify_image::run(args),
        Command::Copy(args) => cmd::copy::run(args),
        Command::Unpack(args) => cmd::unpack::run(args),
        Command::Attest(args) => cmd::attest::run(args),
        Command::Sim(args) => cmd::sim::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Kbs(args) => cmd::kbs::run(args),
        Command::VerifyEndpoint(args) => cmd::verify_endpoint::run(args),
        Command::Infer(args) => cmd::infer::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, outermost first.
            eprintln!("cocoon: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
