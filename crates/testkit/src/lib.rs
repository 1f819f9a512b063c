//! Test support for cocoon's integration tests.
//!
//! Fixture images are built by `scripts/fixtures.sh` (with umoci, skopeo and
//! debootstrap, never with cocoon) and found through [`fixtures`]. A missing
//! fixture fails the test with what to run; it never skips it.

pub mod http;
pub mod layout;
pub mod registry;
pub mod server;
pub mod snapshot;

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root exists")
}

/// The fixture directory: `$COCOON_FIXTURES`, or `target/fixtures` in the
/// workspace (the link `scripts/fixtures.sh` makes). Panics with what to run
/// when it is missing.
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("COCOON_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/fixtures"));
    assert!(
        dir.join(".complete").exists(),
        "fixture images missing at {}: run `bash scripts/fixtures.sh` (or `make test`) first",
        dir.display()
    );
    dir
}

/// A path inside the fixture directory.
pub fn fixture(rel: &str) -> PathBuf {
    fixtures().join(rel)
}
