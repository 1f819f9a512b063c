//! `cocoon kbs`: the key broker service and its admin client.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use cocoon_kbs::client::AdminClient;
use cocoon_kbs::{Config, ReferenceValues};

/// Arguments of `cocoon kbs`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: KbsCommand,
}

/// Where the admin client connects, and with which key.
#[derive(clap::Args, Debug)]
struct AdminOpts {
    /// Base URL of the KBS.
    #[arg(long, env = "COCOON_KBS_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Admin private key (PEM, from `cocoon kbs keygen-admin`).
    #[arg(long, env = "COCOON_KBS_ADMIN_KEY")]
    admin_key: PathBuf,
}

#[derive(Subcommand, Debug)]
enum KbsCommand {
    /// Run the KBS until SIGTERM or ctrl-c.
    Serve {
        /// TOML config file (docs/kbs.md).
        #[arg(long)]
        config: PathBuf,
    },
    /// Write an admin key pair: FILE (private) and FILE.pub (list it in the config).
    KeygenAdmin {
        /// Private key file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a new random key-encryption key (64 hex digits) for the store.
    KeygenKek,
    /// Manage resources.
    Resource {
        #[command(subcommand)]
        command: ResourceCommand,
    },
    /// Manage the resource policy (Rego).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Manage reference values (from `cocoon convert --reference-values`).
    ReferenceValues {
        #[command(subcommand)]
        command: RvCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ResourceCommand {
    /// Store FILE as resource URI (kbs:///repo/type/tag).
    Put {
        /// kbs:///repo/type/tag
        uri: String,
        /// File with the value.
        file: PathBuf,
        #[command(flatten)]
        admin: AdminOpts,
    },
    /// Write resource URI to stdout.
    Get {
        /// kbs:///repo/type/tag
        uri: String,
        #[command(flatten)]
        admin: AdminOpts,
    },
    /// Delete resource URI.
    Delete {
        /// kbs:///repo/type/tag
        uri: String,
        #[command(flatten)]
        admin: AdminOpts,
    },
    /// List resource URIs.
    List {
        #[command(flatten)]
        admin: AdminOpts,
    },
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Replace the policy with the Rego in FILE.
    Set {
        /// Rego file (package cocoon.kbs, rule allow).
        file: PathBuf,
        #[command(flatten)]
        admin: AdminOpts,
    },
    /// Print the policy.
    Get {
        #[command(flatten)]
        admin: AdminOpts,
    },
}

#[derive(Subcommand, Debug)]
enum RvCommand {
    /// Add (or replace) the reference values in FILE.
    Add {
        /// JSON file written by `cocoon convert --reference-values`.
        file: PathBuf,
        #[command(flatten)]
        admin: AdminOpts,
    },
    /// Print all reference values as JSON.
    List {
        #[command(flatten)]
        admin: AdminOpts,
    },
}

fn client(o: &AdminOpts) -> anyhow::Result<AdminClient> {
    let key = cocoon_kbs::admin::load_private(&o.admin_key)?;
    Ok(AdminClient::new(&o.url, key))
}

/// Runs `cocoon kbs`.
pub fn run(args: Args) -> anyhow::Result<()> {
    use std::io::Write;
    match args.command {
        KbsCommand::Serve { config } => {
            let cfg = Config::load(&config)?;
            cocoon_kbs::server::run(cfg)?;
        }
        KbsCommand::KeygenAdmin { out } => {
            let pub_path = cocoon_kbs::admin::keygen(&out)?;
            println!("{}", pub_path.display());
        }
        KbsCommand::KeygenKek => {
            let k = cocoon_kbs::store::Kek::generate()?;
            println!("{}", k.to_hex().as_str());
        }
        KbsCommand::Resource { command } => match command {
            ResourceCommand::Put { uri, file, admin } => {
                let v = cocoon_kbs::Secret::new(
                    std::fs::read(&file).with_context(|| format!("read {}", file.display()))?,
                );
                client(&admin)?.put_resource(&uri, &v)?;
            }
            ResourceCommand::Get { uri, admin } => {
                let v = cocoon_kbs::Secret::new(client(&admin)?.get_resource(&uri)?);
                std::io::stdout().write_all(&v)?;
            }
            ResourceCommand::Delete { uri, admin } => client(&admin)?.delete_resource(&uri)?,
            ResourceCommand::List { admin } => {
                for u in client(&admin)?.list_resources()? {
                    println!("{u}");
                }
            }
        },
        KbsCommand::Policy { command } => match command {
            PolicyCommand::Set { file, admin } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("read {}", file.display()))?;
                client(&admin)?.set_policy(&text)?;
            }
            PolicyCommand::Get { admin } => print!("{}", client(&admin)?.get_policy()?),
        },
        KbsCommand::ReferenceValues { command } => match command {
            RvCommand::Add { file, admin } => {
                let b = std::fs::read(&file).with_context(|| format!("read {}", file.display()))?;
                let rv = ReferenceValues::from_json(&b)
                    .with_context(|| format!("{}", file.display()))?;
                client(&admin)?.add_reference_values(&rv)?;
            }
            RvCommand::List { admin } => {
                let rvs = client(&admin)?.list_reference_values()?;
                println!("{}", serde_json::to_string_pretty(&rvs)?);
            }
        },
    }
    Ok(())
}
