//! What the CLI tests share: running the real `cocoon` binary, describing a
//! run for a failure message, the one-line-error contract, and locating the
//! shared evidence, the models and the static builds.
// Each test file uses its own subset.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `cocoon` binary under test.
pub fn cocoon_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cocoon"))
}

/// Runs `cocoon ARGS`.
pub fn cocoon(args: &[&str]) -> Output {
    cocoon_with_env(&[], args)
}

/// Runs `cocoon ARGS` with extra environment variables.
pub fn cocoon_with_env(env: &[(&str, String)], args: &[&str]) -> Output {
    Command::new(cocoon_exe())
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run cocoon")
}

/// The command, exit code and output of a run, for assertion messages.
pub fn show(args: &[&str], o: &Output) -> String {
    format!(
        "cocoon {}\nexit: {:?}\nstdout: {}\nstderr: {}",
        args.join(" "),
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `cocoon ARGS`, expects success, returns stdout.
pub fn succeeds(args: &[&str]) -> String {
    let o = cocoon(args);
    assert!(o.status.success(), "expected success\n{}", show(args, &o));
    String::from_utf8(o.stdout).expect("stdout is UTF-8")
}

/// Runs `cocoon ARGS` and checks the refusal contract (see [`refused`]).
pub fn refuses(args: &[&str], fragments: &[&str]) -> String {
    let o = cocoon(args);
    refused(args, &o, fragments)
}

/// The refusal contract: exit 1, nothing on stdout, one stderr line
/// `cocoon: error: ...` holding every fragment, no panic, no cause said
/// twice in a row. Returns that line.
pub fn refused(args: &[&str], o: &Output, fragments: &[&str]) -> String {
    let ctx = show(args, o);
    assert_eq!(o.status.code(), Some(1), "exit code\n{ctx}");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains("panicked"), "panic\n{ctx}");
    assert_eq!(err.lines().count(), 1, "one stderr line\n{ctx}");
    assert!(err.starts_with("cocoon: error: "), "{ctx}");
    for f in fragments {
        assert!(err.contains(f), "stderr lacks {f:?}\n{ctx}");
    }
    let parts: Vec<&str> = err.trim_end().split(": ").collect();
    assert!(
        parts.windows(2).all(|w| w[0] != w[1]),
        "a cause is said twice\n{ctx}"
    );
    assert!(o.stdout.is_empty(), "nothing on stdout on refusal\n{ctx}");
    err.trim_end().to_string()
}

/// A file of the shared captured evidence (`../shared/testdata/evidence`).
pub fn evidence(rel: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata/evidence")
        .join(rel);
    assert!(p.exists(), "missing shared evidence {}", p.display());
    p.display().to_string()
}

/// The models of `scripts/models.sh` (or `$COCOON_MODELS`).
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("COCOON_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cocoon_testkit::workspace_root().join("target/models"));
    assert!(
        dir.join(".complete").exists(),
        "models missing at {}: run `bash scripts/models.sh` (or `make test`) first",
        dir.display()
    );
    dir
}

/// One model file of [`models_dir`].
pub fn model(name: &str) -> String {
    models_dir().join(name).display().to_string()
}

/// A static build (`make MAKE`) beside the cocoon binary's target directory,
/// found the way `cocoon` itself finds it.
pub fn static_build(rel: &str, make: &str) -> PathBuf {
    let p = cocoon_exe()
        .parent()
        .expect("cocoon has a directory")
        .join("../x86_64-unknown-linux-gnu/release")
        .join(rel);
    assert!(
        p.is_file(),
        "{} missing: run `make {make}` (or `make test`) first",
        p.display()
    );
    p
}
