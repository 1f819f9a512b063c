//! `/cocoon/launcher`: PID 1 of every sealed image.
//!
//! This first version only identifies itself and refuses to run: attesting,
//! unlocking and starting the app arrive with the launcher issue. It exists
//! now so that converted images carry, and the workload digest measures, a
//! real static binary at its final path.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "cocoon-launcher {}: running sealed images is not implemented in this version; \
         use `cocoon verify-image` to check a sealed image",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(78) // EX_CONFIG: the image cannot run with this launcher
}
