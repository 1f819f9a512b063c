//! Options shared by every command that reads or writes images.

use cocoon_image::transport::{open_source, ImageSource};
use cocoon_image::{ImageRef, Platform, TransportOptions};

/// Registry and platform options.
#[derive(clap::Args, Debug, Clone)]
pub struct ImageOpts {
    /// Platform to select from a multi-platform image (OS/ARCH[/VARIANT]).
    #[arg(long, default_value = "linux/amd64")]
    pub platform: Platform,
    /// Use plain HTTP for docker:// registries (loopback registries only).
    #[arg(long)]
    pub plain_http: bool,
    /// Registry credentials as USER:PASSWORD (or set COCOON_REGISTRY_CREDS).
    #[arg(long, env = "COCOON_REGISTRY_CREDS", hide_env_values = true, value_parser = parse_creds)]
    pub creds: Option<(String, String)>,
}

fn parse_creds(s: &str) -> Result<(String, String), String> {
    s.split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .ok_or_else(|| "expected USER:PASSWORD".to_string())
}

impl ImageOpts {
    /// The transport options these flags describe.
    pub fn transport(&self) -> TransportOptions {
        TransportOptions {
            platform: self.platform.clone(),
            plain_http: self.plain_http,
            credentials: self.creds.clone(),
        }
    }

    /// Opens `image` for reading.
    pub fn open(&self, image: &ImageRef) -> anyhow::Result<Box<dyn ImageSource>> {
        Ok(open_source(image, &self.transport())?)
    }
}
