//! `cocoon-infer`: the Open Inference Protocol server alone, the program
//! `cocoon infer image` puts in images (built static: it runs in an image
//! that holds nothing else). Same arguments as `cocoon infer serve`.

use std::process::ExitCode;

use clap::Parser;

/// Serve ONNX models over the Open Inference Protocol (KServe v2 REST).
#[derive(Parser, Debug)]
#[command(name = "cocoon-infer", version, about)]
struct Cli {
    #[command(flatten)]
    serve: cocoon_infer::serve::ServeArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cocoon_infer::serve::serve(&cli.serve, "cocoon-infer") {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cocoon-infer: error: {e}");
            ExitCode::FAILURE
        }
    }
}
