//! The server's command line, shared by `cocoon infer serve` and the static
//! `cocoon-infer` binary that `cocoon infer image` puts in images.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::model::{available_cores, EngineOptions, Models};
use crate::server::{self, ServerOptions, DEFAULT_BODY_LIMIT};

/// Arguments of the server.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// An ONNX model to serve: FILE (named after its file stem) or NAME=FILE.
    /// Repeat for several models.
    #[arg(long = "model", value_name = "[NAME=]FILE", required = true)]
    pub models: Vec<String>,
    /// Names for the --model FILE arguments without NAME=, paired in order.
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes (larger ones get HTTP 413).
    #[arg(long, default_value_t = DEFAULT_BODY_LIMIT, value_name = "BYTES")]
    pub body_limit: usize,
    /// Threads one inference may use (tract's multithread executor); default: all cores.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Inferences run at once; default: all cores.
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
}

/// A server command line that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The arguments do not fit together.
    #[error("{0}")]
    Usage(String),
    /// A model did not load.
    #[error(transparent)]
    Load(#[from] crate::model::LoadError),
    /// The server could not listen or stopped on an error (said in the
    /// message, so not a `source`).
    #[error("server: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for ServeError {
    fn from(e: std::io::Error) -> Self {
        ServeError::Io(e)
    }
}

/// Pairs `--model` and `--name` arguments into `(name, file)`.
pub fn model_specs(
    models: &[String],
    names: &[String],
) -> Result<Vec<(String, PathBuf)>, ServeError> {
    let mut names = names.iter();
    let mut specs = Vec::with_capacity(models.len());
    for m in models {
        let (name, file) = match split_spec(m) {
            Some((name, file)) => (name.to_string(), PathBuf::from(file)),
            None => {
                let file = PathBuf::from(m);
                let name = match names.next() {
                    Some(n) => n.clone(),
                    None => stem(&file).ok_or_else(|| {
                        ServeError::Usage(format!(
                            "--model {m}: cannot name the model after this file; use --model NAME={m}"
                        ))
                    })?,
                };
                (name, file)
            }
        };
        specs.push((name, file));
    }
    if names.next().is_some() {
        return Err(ServeError::Usage(
            "more --name than --model FILE arguments (--name pairs in order with the --model arguments that have no NAME=)".into(),
        ));
    }
    Ok(specs)
}

/// `NAME=FILE`, when what precedes the first `=` looks like a name, not a path.
fn split_spec(s: &str) -> Option<(&str, &str)> {
    let (name, file) = s.split_once('=')?;
    (!name.is_empty() && !name.contains('/') && !file.is_empty()).then_some((name, file))
}

fn stem(p: &Path) -> Option<String> {
    p.file_stem()?.to_str().map(str::to_string)
}

/// Loads the models and serves them until SIGINT/SIGTERM, saying on stderr
/// what it serves where.
pub fn serve(args: &ServeArgs, program: &str) -> Result<(), ServeError> {
    let specs = model_specs(&args.models, &args.names)?;
    let cores = available_cores();
    let engine = EngineOptions {
        threads: args.threads.unwrap_or(cores).max(1),
    };
    let opts = ServerOptions {
        body_limit: args.body_limit,
        parallel: args.parallel.unwrap_or(cores).max(1),
    };
    let models = Models::load(&specs, &engine)?;
    for m in models.iter() {
        if !m.pinned_dims().is_empty() {
            eprintln!(
                "{program}: model {}: tract types it only with {} fixed to 1 (send one item per request)",
                m.name(),
                m.pinned_dims().join(", ")
            );
        }
    }
    let names = models.names().join(", ");
    server::run(args.listen, models, &opts, |addr| {
        eprintln!(
            "{program}: serving {names} on http://{addr}/v2 ({} engine threads, {} parallel inferences)",
            engine.threads, opts.parallel
        );
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn specs_pair_names_in_order() {
        let specs = model_specs(
            &s(&["/m/squeezenet.onnx", "mk=/m/magika.onnx", "/m/x.onnx"]),
            &s(&["sq"]),
        )
        .unwrap();
        assert_eq!(
            specs,
            vec![
                ("sq".to_string(), PathBuf::from("/m/squeezenet.onnx")),
                ("mk".to_string(), PathBuf::from("/m/magika.onnx")),
                ("x".to_string(), PathBuf::from("/m/x.onnx")),
            ]
        );
        // A path with '=' after a slash is a path.
        let specs = model_specs(&s(&["./a=b/m.onnx"]), &[]).unwrap();
        assert_eq!(specs[0], ("m".to_string(), PathBuf::from("./a=b/m.onnx")));
        let e = model_specs(&s(&["a=m.onnx"]), &s(&["x"])).unwrap_err();
        assert!(
            e.to_string().starts_with("more --name than --model FILE"),
            "{e}"
        );
    }
}
