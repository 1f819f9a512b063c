//! Image references in skopeo's transport syntax.

use std::fmt;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Where an image lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// `oci:DIR[:TAG]`: an OCI image layout directory; without a tag the layout
    /// must hold exactly one image (reading) or the image gets tag `latest` (writing).
    OciLayout {
        /// The layout directory.
        dir: PathBuf,
        /// The `org.opencontainers.image.ref.name` to select or write.
        tag: Option<String>,
    },
    /// `docker-archive:FILE[:NAME:TAG]`: a `docker save` tarball.
    DockerArchive {
        /// The archive file.
        file: PathBuf,
        /// The repo tag to select (reading) or record (writing).
        name: Option<String>,
    },
    /// `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`: an OCI distribution registry.
    Registry {
        /// Registry host and optional port.
        host: String,
        /// Repository path.
        repo: String,
        /// Tag or digest; a tag defaults to `latest`.
        version: RegistryVersion,
    },
}

/// The part of a registry reference after the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryVersion {
    /// A tag.
    Tag(String),
    /// A manifest digest.
    Digest(Digest),
}

impl fmt::Display for RegistryVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryVersion::Tag(t) => f.write_str(t),
            RegistryVersion::Digest(d) => write!(f, "{d}"),
        }
    }
}

const EXPECTED: &str =
    "expected oci:DIR[:TAG], docker-archive:FILE[:NAME:TAG] or docker://HOST[:PORT]/REPO[:TAG|@DIGEST]";

fn valid_tag(tag: &str) -> bool {
    // OCI distribution: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
    let mut bytes = tag.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric() || b == b'_')
        && tag.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn valid_repo(repo: &str) -> bool {
    !repo.is_empty()
        && repo.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && part
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric())
        })
}

impl std::str::FromStr for ImageRef {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        let bad = |reason: &str| Error::BadReference {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = input.strip_prefix("oci:") {
            let (dir, tag) = match rest.rsplit_once(':') {
                Some((dir, tag)) => (dir, Some(tag.to_string())),
                None => (rest, None),
            };
            if dir.is_empty() {
                return Err(bad("missing directory after oci:"));
            }
            if let Some(t) = &tag {
                if !valid_tag(t) {
                    return Err(bad(
                        "the tag after the last ':' must match [A-Za-z0-9_][A-Za-z0-9._-]*",
                    ));
                }
            }
            Ok(ImageRef::OciLayout {
                dir: dir.into(),
                tag,
            })
        } else if let Some(rest) = input.strip_prefix("docker-archive:") {
            // FILE[:NAME[:TAG]] -- the file itself may not contain ':'.
            let (file, name) = match rest.split_once(':') {
                Some((file, name)) => (file, Some(name.to_string())),
                None => (rest, None),
            };
            if file.is_empty() {
                return Err(bad("missing file after docker-archive:"));
            }
            Ok(ImageRef::DockerArchive {
                file: file.into(),
                name,
            })
        } else if let Some(rest) = input.strip_prefix("docker://") {
            let (host, path) = rest
                .split_once('/')
                .ok_or_else(|| bad("missing /REPO after the registry host"))?;
            if host.is_empty() || !host.contains(['.', ':']) && host != "localhost" {
                return Err(bad(
                    "the registry host must be HOST[:PORT] with a '.' or ':' (or be localhost)",
                ));
            }
            let (repo, version) = if let Some((repo, digest)) = path.split_once('@') {
                (
                    repo,
                    RegistryVersion::Digest(
                        digest
                            .parse()
                            .map_err(|_| bad("the part after '@' must be sha256:<64 hex>"))?,
                    ),
                )
            } else {
                match path.rsplit_once(':') {
                    Some((repo, tag)) if !tag.contains('/') => {
                        if !valid_tag(tag) {
                            return Err(bad("the tag must match [A-Za-z0-9_][A-Za-z0-9._-]*"));
                        }
                        (repo, RegistryVersion::Tag(tag.to_string()))
                    }
                    _ => (path, RegistryVersion::Tag("latest".to_string())),
                }
            };
            if !valid_repo(repo) {
                return Err(bad(
                    "the repository must be lowercase path components of [a-z0-9._-]",
                ));
            }
            Ok(ImageRef::Registry {
                host: host.to_string(),
                repo: repo.to_string(),
                version,
            })
        } else {
            Err(bad(EXPECTED))
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::OciLayout { dir, tag: Some(t) } => write!(f, "oci:{}:{t}", dir.display()),
            ImageRef::OciLayout { dir, tag: None } => write!(f, "oci:{}", dir.display()),
            ImageRef::DockerArchive {
                file,
                name: Some(n),
            } => write!(f, "docker-archive:{}:{n}", file.display()),
            ImageRef::DockerArchive { file, name: None } => {
                write!(f, "docker-archive:{}", file.display())
            }
            ImageRef::Registry {
                host,
                repo,
                version: RegistryVersion::Tag(t),
            } => write!(f, "docker://{host}/{repo}:{t}"),
            ImageRef::Registry {
                host,
                repo,
                version: RegistryVersion::Digest(d),
            } => write!(f, "docker://{host}/{repo}@{d}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_transport() {
        assert_eq!(
            "oci:/tmp/img:v1".parse::<ImageRef>().unwrap(),
            ImageRef::OciLayout {
                dir: "/tmp/img".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            "oci:img".parse::<ImageRef>().unwrap(),
            ImageRef::OciLayout {
                dir: "img".into(),
                tag: None
            }
        );
        assert_eq!(
            "docker-archive:a.tar:busybox:latest"
                .parse::<ImageRef>()
                .unwrap(),
            ImageRef::DockerArchive {
                file: "a.tar".into(),
                name: Some("busybox:latest".into())
            }
        );
        assert_eq!(
            "docker://127.0.0.1:5000/lib/nginx"
                .parse::<ImageRef>()
                .unwrap(),
            ImageRef::Registry {
                host: "127.0.0.1:5000".into(),
                repo: "lib/nginx".into(),
                version: RegistryVersion::Tag("latest".into())
            }
        );
        let d = Digest::of(b"x");
        let r: ImageRef = format!("docker://localhost/nginx@{d}").parse().unwrap();
        assert_eq!(r.to_string(), format!("docker://localhost/nginx@{d}"));
    }

    #[test]
    fn refuses_malformed_references_with_a_reason() {
        for (input, reason) in [
            ("nginx:latest", EXPECTED),
            ("oci:", "missing directory after oci:"),
            (
                "oci:dir:bad/tag",
                "the tag after the last ':' must match [A-Za-z0-9_][A-Za-z0-9._-]*",
            ),
            ("docker://nginx", "missing /REPO after the registry host"),
            (
                "docker://library/nginx",
                "the registry host must be HOST[:PORT] with a '.' or ':' (or be localhost)",
            ),
            (
                "docker://localhost:5000/Nginx",
                "the repository must be lowercase path components of [a-z0-9._-]",
            ),
            (
                "docker://localhost:5000/nginx@sha256:1",
                "the part after '@' must be sha256:<64 hex>",
            ),
        ] {
            let err = input.parse::<ImageRef>().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid image reference {input:?}: {reason}")
            );
        }
    }
}
