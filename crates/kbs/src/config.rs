//! The KBS configuration file (TOML). Every option has a default except the
//! key-encryption key source; see `docs/kbs.md` for the table.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listener, TLS and limits.
    pub server: ServerConfig,
    /// Attestation: sessions, tokens, trusted roots, what TEEs are accepted.
    pub attestation: AttestationConfig,
    /// The embedded store.
    pub store: StoreConfig,
    /// Admin API.
    pub admin: AdminConfig,
    /// Workload certificate authority.
    pub ca: CaConfig,
    /// Logging.
    pub log: LogConfig,
}

/// `[server]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: String,
    /// TLS certificate chain (PEM). With `tls_key`, serve HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Largest request body in bytes (larger: 413). Default 1 MiB.
    pub max_body_bytes: usize,
    /// Sustained requests per second per client IP (0 disables). Default 200.
    pub rate_limit_per_sec: u32,
    /// Burst size per client IP. Default 400.
    pub rate_limit_burst: u32,
    /// Seconds to wait for in-flight requests at shutdown. Default 10.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            tls_cert: None,
            tls_key: None,
            max_body_bytes: 1 << 20,
            rate_limit_per_sec: 200,
            rate_limit_burst: 400,
            shutdown_grace_secs: 10,
        }
    }
}

/// `[attestation]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttestationConfig {
    /// Session lifetime in seconds (auth -> attest -> resource). Default 300.
    pub session_ttl_secs: u64,
    /// Most sessions held at once (more: 503). Default 100000.
    pub max_sessions: usize,
    /// Attestation token lifetime in seconds. Default 300.
    pub token_ttl_secs: u64,
    /// Token issuer (`iss`). Default `cocoon-kbs`.
    pub issuer: String,
    /// Accept `sim` evidence (and its debug flag). Default false.
    pub allow_sim: bool,
    /// Accept Trustee's insecure `sample` evidence. Default false. Never in production.
    pub allow_sample: bool,
    /// Collateral files/directories: sim `root.pem`, AMD VCEK/VLEK, Intel
    /// DCAP collateral (see docs/attestation.md). Default none.
    pub collateral: Vec<PathBuf>,
}

impl Default for AttestationConfig {
    fn default() -> Self {
        AttestationConfig {
            session_ttl_secs: 300,
            max_sessions: 100_000,
            token_ttl_secs: 300,
            issuer: "cocoon-kbs".into(),
            allow_sim: false,
            allow_sample: false,
            collateral: Vec::new(),
        }
    }
}

/// `[store]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Database file. Default `kbs.redb` (relative to the config file).
    pub path: PathBuf,
    /// File holding the 32-byte key-encryption key (hex or base64).
    pub kek_file: Option<PathBuf>,
    /// Environment variable holding the key-encryption key, used when
    /// `kek_file` is unset. Default `COCOON_KBS_KEK`.
    pub kek_env: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: "kbs.redb".into(),
            kek_file: None,
            kek_env: Some("COCOON_KBS_KEK".into()),
        }
    }
}

/// `[admin]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Admin public keys (P-256 SubjectPublicKeyInfo PEM files, as written by
    /// `cocoon kbs keygen-admin`). Empty: the admin API refuses every call.
    pub public_keys: Vec<PathBuf>,
}

/// `[ca]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaConfig {
    /// Lifetime of workload certificates in seconds. Default 86400 (1 day).
    pub cert_ttl_secs: u64,
    /// Subject common name of the CA. Default `cocoon KBS CA`.
    pub name: String,
}

impl Default for CaConfig {
    fn default() -> Self {
        CaConfig {
            cert_ttl_secs: 86_400,
            name: "cocoon KBS CA".into(),
        }
    }
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`. Default `info`.
    pub level: String,
    /// `text` or `json`. Default `text`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

impl Config {
    /// Parses TOML text; relative paths stay relative.
    pub fn from_toml(text: &str) -> Result<Self> {
        let c: Config = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// Reads a config file; relative paths inside are resolved against its directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("read {}: {e}", path.display())))?;
        let mut c = Config::from_toml(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        c.resolve(base);
        Ok(c)
    }

    /// Makes relative paths relative to `base`.
    pub fn resolve(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.store.path);
        self.store.kek_file.iter_mut().for_each(fix);
        self.server.tls_cert.iter_mut().for_each(fix);
        self.server.tls_key.iter_mut().for_each(fix);
        self.attestation.collateral.iter_mut().for_each(fix);
        self.admin.public_keys.iter_mut().for_each(fix);
    }

    /// Checks values that have no meaning when zero or out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(m.to_string()));
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return bad("server.tls_cert and server.tls_key must be set together");
        }
        if self.attestation.session_ttl_secs == 0 || self.attestation.token_ttl_secs == 0 {
            return bad("attestation.session_ttl_secs and token_ttl_secs must be > 0");
        }
        if self.server.max_body_bytes == 0 {
            return bad("server.max_body_bytes must be > 0");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return bad("log.format must be \"text\" or \"json\"");
        }
        if !matches!(
            self.log.level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            return bad("log.level must be error, warn, info, debug or trace");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.attestation.session_ttl_secs, 300);
        assert!(!c.attestation.allow_sim && !c.attestation.allow_sample);
        let e = Config::from_toml("[server]\nlisten_on = \"x\"").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        assert!(Config::from_toml("[server]\ntls_cert = \"a\"").is_err());
        let c =
            Config::from_toml("[attestation]\nallow_sim = true\ncollateral = [\"sim/root.pem\"]")
                .unwrap();
        assert!(c.attestation.allow_sim);
    }
}
