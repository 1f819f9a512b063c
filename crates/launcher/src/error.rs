//! The launcher's errors. Each one is printed as a single line,
//! `cocoon-launcher: error: <Display>`, before the app has started.

use std::fmt;

/// Everything that stops the launcher before the app is exec'd.
#[derive(Debug)]
pub enum Error {
    /// The image's cocoon files are missing, malformed or do not match each other.
    Image(String),
    /// This launcher binary is not the one the workload manifest names.
    Launcher {
        /// SHA-256 of the running binary.
        actual: String,
        /// The digest the manifest names.
        expected: String,
    },
    /// The runtime environment given by `cocoon run` is invalid.
    Config(String),
    /// No attester, or it failed to produce evidence.
    Attest(String),
    /// The KBS could not be reached within the retry budget.
    KbsUnreachable {
        /// Base URL.
        url: String,
        /// How long the launcher tried.
        secs: u64,
        /// The last error.
        last: String,
    },
    /// The KBS answered with a refusal (or nonsense).
    Kbs(String),
    /// The sealed blob could not be opened or unlocked.
    Seal(String),
    /// Serving or mounting the tree failed.
    Mount(String),
    /// A system call failed.
    Sys {
        /// What was being done.
        what: String,
        /// errno.
        err: std::io::Error,
    },
    /// The app's user, group, working directory or command cannot be resolved.
    App(String),
}

impl Error {
    /// A failed system call doing `what`.
    pub fn sys(what: impl Into<String>, err: std::io::Error) -> Self {
        Error::Sys {
            what: what.into(),
            err,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Image(m) => write!(f, "sealed image: {m}"),
            Error::Launcher { actual, expected } => write!(
                f,
                "this launcher ({actual}) is not the launcher the workload manifest names ({expected}); refusing to run"
            ),
            Error::Config(m) => write!(f, "runtime configuration: {m}"),
            Error::Attest(m) => write!(f, "attestation: {m}"),
            Error::KbsUnreachable { url, secs, last } => write!(
                f,
                "KBS at {url} unreachable after {secs}s of retries (last error: {last}); check --kbs and that the KBS is running"
            ),
            Error::Kbs(m) => write!(f, "KBS: {m}"),
            Error::Seal(m) => write!(f, "unlocking the sealed tree: {m}"),
            Error::Mount(m) => write!(f, "mounting the sealed tree: {m}"),
            Error::Sys { what, err } => write!(f, "{what}: {err}"),
            Error::App(m) => write!(f, "starting the app: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// Launcher results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
