//! `cocoon infer`: serve ONNX models over the Open Inference Protocol, build
//! an image that serves them (to seal with `cocoon convert`), and send a
//! request to a sealed one only after verifying its attested endpoint.
//! docs/infer.md is the reference.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use cocoon_image::layer::{append_dir, append_file, descriptor, hash_file};
use cocoon_image::transport::{open_dest, RawManifest};
use cocoon_image::{media, Digest, ImageRef};
use cocoon_infer::magika::{ContentTypes, Features, MagikaConfig};
use cocoon_infer::serve::{model_specs, ServeArgs};
use cocoon_infer::{Client, EngineOptions, InferRequest, Models};

use serde_json::json;

use super::image_opts::ImageOpts;
use super::verify_endpoint::ExpectationArgs;

/// Arguments of `cocoon infer`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: InferCommand,
}

#[derive(clap::Subcommand, Debug)]
enum InferCommand {
    /// Serve ONNX models over the Open Inference Protocol (KServe v2 REST) until SIGTERM or ctrl-c.
    Serve(ServeArgs),
    /// Write an OCI image holding the static server and the models, to seal with `cocoon convert`.
    Image(ImageArgs),
    /// Verify an attested endpoint, then send it one inference request; print the outputs as JSON.
    Request(RequestArgs),
}

/// Where the server listens inside images `cocoon infer image` writes.
const IMAGE_PORT: u16 = 8000;
/// The server binary's path in those images.
const IMAGE_SERVER: &str = "/bin/cocoon-infer";
/// Where the models go in those images.
const IMAGE_MODELS: &str = "/models";

/// Arguments of `cocoon infer image`.
#[derive(clap::Args, Debug)]
pub struct ImageArgs {
    /// An ONNX model to put in the image: FILE (named after its file stem)
    /// or NAME=FILE. Repeat for several models.
    #[arg(long = "model", value_name = "[NAME=]FILE", required = true)]
    models: Vec<String>,
    /// Names for the --model FILE arguments without NAME=, paired in order.
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// Where to write the image (oci:DIR[:TAG], docker-archive:FILE[:REF], docker://...).
    #[arg(long, value_name = "IMAGE")]
    to: ImageRef,
    /// The server binary, linked statically (default: the static build of
    /// `make infer-server`, or cocoon-infer beside cocoon).
    #[arg(long, value_name = "FILE")]
    server: Option<PathBuf>,
    /// Threads one inference may use, in the image's command (default: all cores at run time).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    #[command(flatten)]
    opts: ImageOpts,
}

/// Arguments of `cocoon infer request`.
#[derive(clap::Args, Debug)]
pub struct RequestArgs {
    /// The attested endpoint (the shield of a sealed model server), HOST:PORT.
    addr: String,
    /// The model to ask.
    #[arg(long)]
    model: String,
    /// An Open Inference Protocol request (JSON); with --magika, any file to classify.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Treat --input as a file for magika: build its features with this model
    /// config (magika.config.json from scripts/models.sh) and print its content type.
    #[arg(long, value_name = "CONFIG")]
    magika: Option<PathBuf>,
    /// magika's content-type knowledge base (magika.content_types.json), for
    /// its low-confidence fallback to txt/unknown.
    #[arg(long, value_name = "FILE", requires = "magika")]
    magika_kb: Option<PathBuf>,
    /// Only these outputs (default: every output).
    #[arg(long = "output", value_name = "NAME")]
    outputs: Vec<String>,
    #[command(flatten)]
    expect: ExpectationArgs,
}

/// Runs `cocoon infer`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        InferCommand::Serve(a) => Ok(cocoon_infer::serve::serve(&a, "cocoon infer")?),
        InferCommand::Image(a) => image(a),
        InferCommand::Request(a) => request(a),
    }
}

// ------------------------------------------------------------------ image --

fn image(args: ImageArgs) -> anyhow::Result<()> {
    let specs = model_specs(&args.models, &args.names)?;
    // Every model must load here as it will in the image: a model tract
    // cannot serve is refused now, not at the first run in a TEE.
    let models = Models::load(&specs, &EngineOptions { threads: 1 })?;
    drop(models);
    let server_path = match &args.server {
        Some(p) => p.clone(),
        None => default_server()?,
    };
    let server = std::fs::read(&server_path)
        .with_context(|| format!("reading the server binary {}", server_path.display()))?;
    check_static(&server).with_context(|| format!("--server {}", server_path.display()))?;

    let mut cmd: Vec<String> = Vec::new();
    let mut names = Vec::new();
    for (name, _) in &specs {
        cmd.push("--model".into());
        cmd.push(format!("{name}={IMAGE_MODELS}/{name}.onnx"));
        names.push(name.clone());
    }
    cmd.extend(["--listen".to_string(), format!("127.0.0.1:{IMAGE_PORT}")]);
    if let Some(t) = args.threads {
        cmd.extend(["--threads".to_string(), t.to_string()]);
    }

    // Layer 1: the server (gzip). Layer 2: the models (plain tar: weights
    // hardly compress, and the tar is hashed once while it is written).
    let scratch = tempfile::tempdir().context("making a scratch directory")?;
    let server_layer = {
        let mut b = tar::Builder::new(
            flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::default()),
        );
        append_dir(&mut b, "bin")
            .and_then(|()| {
                append_file(
                    &mut b,
                    &IMAGE_SERVER[1..],
                    0o755,
                    server.len() as u64,
                    &server[..],
                )
            })
            .context("writing the server layer")?;
        b.into_inner()?.finish()?
    };
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&server_layer[..]).read_to_end(&mut raw)?;
    let server_diff = Digest::of(&raw);
    drop(raw);

    let models_tar = scratch.path().join("models.tar");
    {
        let f = std::fs::File::create(&models_tar)
            .with_context(|| format!("creating {}", models_tar.display()))?;
        let mut b = tar::Builder::new(std::io::BufWriter::new(f));
        append_dir(&mut b, &IMAGE_MODELS[1..]).context("writing the models layer")?;
        for (name, path) in &specs {
            let f = std::fs::File::open(path)
                .with_context(|| format!("reading model {}", path.display()))?;
            let size = f.metadata()?.len();
            append_file(
                &mut b,
                &format!("{}/{name}.onnx", &IMAGE_MODELS[1..]),
                0o444,
                size,
                f,
            )
            .with_context(|| format!("adding model {} to the models layer", path.display()))?;
        }
        b.into_inner()?
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
    }
    let (models_digest, models_size) =
        hash_file(&models_tar).with_context(|| format!("reading {}", models_tar.display()))?;

    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": [IMAGE_SERVER],
            "Cmd": cmd,
            "User": "65534:65534",
            "WorkingDir": "/",
            "Env": ["PATH=/bin"],
            "ExposedPorts": {format!("{IMAGE_PORT}/tcp"): {}},
            "Labels": {
                "org.opencontainers.image.title": "cocoon-infer",
                "dev.cocoon.infer.models": names.join(","),
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [server_diff.to_string(), models_digest.to_string()]},
        "history": [
            {"created_by": "cocoon infer image: the static Open Inference Protocol server"},
            {"created_by": format!("cocoon infer image: models {}", names.join(", "))},
        ],
    });
    let config_bytes = serde_json::to_vec(&config)?;
    let config_desc = descriptor(
        media::OCI_CONFIG,
        Digest::of(&config_bytes),
        config_bytes.len() as u64,
    )?;
    let server_desc = descriptor(
        media::OCI_LAYER_GZIP,
        Digest::of(&server_layer),
        server_layer.len() as u64,
    )?;
    let models_desc = descriptor(media::OCI_LAYER_TAR, models_digest, models_size)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": config_desc,
        "layers": [server_desc, models_desc],
    });
    let raw_manifest = RawManifest::new(serde_json::to_vec(&manifest)?, media::OCI_MANIFEST);

    let mut dst = open_dest(&args.to, &args.opts.transport())?;
    dst.put_config(&config_desc, &config_bytes)?;
    dst.put_layer(&server_desc, &server_diff, &mut &server_layer[..])?;
    let mut f = std::fs::File::open(&models_tar)?;
    dst.put_layer(&models_desc, &models_digest, &mut f)?;
    dst.put_manifest(&raw_manifest)?;

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "wrote {}: {} serving {} on 127.0.0.1:{IMAGE_PORT} (image {})",
        args.to,
        IMAGE_SERVER,
        names.join(", "),
        raw_manifest.digest
    )?;
    writeln!(
        out,
        "seal it: cocoon convert {} SEALED --sign OWNER_KEY --image-key-out IMAGE_KEY --reference-values RV.json --encrypt {IMAGE_MODELS} --shield 8443:{IMAGE_PORT}",
        args.to
    )?;
    Ok(())
}

/// The static server: `make infer-server`'s build, else one beside cocoon.
fn default_server() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the cocoon binary")?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let candidates = [
        dir.join("../x86_64-unknown-linux-gnu/release/cocoon-infer"),
        dir.join("cocoon-infer"),
    ];
    for c in &candidates {
        if let Ok(bytes) = std::fs::read(c) {
            if check_static(&bytes).is_ok() {
                return Ok(c.clone());
            }
        }
    }
    bail!(
        "no static cocoon-infer found beside {}: build it with `make infer-server` or pass --server FILE",
        exe.display()
    )
}

/// Refuses anything but a static x86-64 ELF executable: the image holds
/// nothing else (no loader, no libc).
fn check_static(elf: &[u8]) -> anyhow::Result<()> {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    // 64-bit, little-endian, x86-64.
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") || u16_at(0x12) != Some(0x3e) {
        bail!("not an x86-64 ELF executable");
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        bail!("truncated ELF header");
    };
    for i in 0..usize::from(phnum) {
        let off = usize::try_from(phoff)
            .ok()
            .and_then(|p| p.checked_add(i * usize::from(phentsize)));
        match off.and_then(u32_at) {
            Some(3) => bail!(
                "dynamically linked (it names an ELF interpreter), but the image holds nothing else: build it static with `make infer-server`"
            ),
            Some(_) => {}
            None => bail!("truncated ELF program headers"),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- request --

fn request(args: RequestArgs) -> anyhow::Result<()> {
    // Everything local is read and checked before any connection.
    let input = std::fs::read(&args.input)
        .with_context(|| format!("reading --input {}", args.input.display()))?;
    let magika = match &args.magika {
        Some(cfg) => {
            let config = MagikaConfig::from_json(
                &std::fs::read(cfg)
                    .with_context(|| format!("reading --magika {}", cfg.display()))?,
            )
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("--magika {}", cfg.display()))?;
            let kb = match &args.magika_kb {
                Some(p) => Some(
                    ContentTypes::from_json(
                        &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
                    )
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("--magika-kb {}", p.display()))?,
                ),
                None => None,
            };
            Some((config, kb))
        }
        None => None,
    };
    let mut req = None;
    let mut features = None;
    match &magika {
        Some((config, _)) => match config.features(&input) {
            Features::Model(x) => features = Some(x),
            Features::FewBytes(p) => {
                // magika decides such files without its model: nothing to send.
                print_json(&json!({
                    "file": args.input.display().to_string(),
                    "label": p.label,
                    "model_label": null,
                    "score": null,
                    "note": "too few bytes for the model; decided as magika does, without it",
                }))?;
                return Ok(());
            }
        },
        None => {
            let mut r = InferRequest::from_json(&input)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("--input {}", args.input.display()))?;
            r.outputs.extend(args.outputs.iter().cloned());
            req = Some(r);
        }
    }
    let exp = args.expect.expectation()?;

    let (stream, endpoint) = match cocoon_tls::connect(&args.addr, &exp) {
        Ok(c) => c,
        Err(e @ cocoon_tls::Error::SimNotAllowed) => {
            bail!("{e}; pass --sim-root FILE to trust a sim platform")
        }
        Err(e) => return Err(e.into()),
    };
    eprintln!(
        "cocoon: verified {}: a {} TEE running workload {}{}",
        args.addr,
        endpoint.tee,
        endpoint.init_data.workload_digest,
        if endpoint.claims.tee == cocoon_attest::Tee::Sim {
            " (sim: no protection, development only)"
        } else {
            ""
        }
    );
    let mut client = Client::new(stream, args.addr.clone());
    match (req, features, magika) {
        (Some(req), _, _) => {
            let resp = client.infer(&args.model, &req)?;
            close(client);
            let mut out = std::io::stdout().lock();
            out.write_all(&resp.to_json())?;
            out.write_all(b"\n")?;
        }
        (None, Some(x), Some((config, kb))) => {
            let meta = client.model_metadata(&args.model)?;
            let input_name = match meta.inputs.as_slice() {
                [one] => one.name.clone(),
                _ => bail!(
                    "model {:?} has {} inputs; magika's has one",
                    args.model,
                    meta.inputs.len()
                ),
            };
            let mut req = config.request(&input_name, x).map_err(anyhow::Error::msg)?;
            req.outputs.extend(args.outputs.iter().cloned());
            let resp = client.infer(&args.model, &req)?;
            close(client);
            let scores = resp
                .outputs
                .first()
                .and_then(|t| t.as_f32())
                .context("the model's first output is not FP32 scores")?;
            let p = config
                .label(scores, kb.as_ref())
                .map_err(anyhow::Error::msg)?;
            print_json(&json!({
                "file": args.input.display().to_string(),
                "label": p.label,
                "model_label": p.model_label,
                "score": p.score_milli.map(|s| f64::from(s) / 1000.0),
            }))?;
        }
        _ => unreachable!("either a request or magika features"),
    }
    Ok(())
}

fn close(client: Client<cocoon_tls::client::AttestedStream>) {
    let mut stream = client.into_inner();
    stream.conn.send_close_notify();
    let _ = stream.flush();
}

fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(v)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_static_x86_64_elf_is_accepted() {
        let ls = std::fs::read("/bin/ls").unwrap();
        let e = check_static(&ls).unwrap_err().to_string();
        assert!(e.starts_with("dynamically linked"), "{e}");
        assert_eq!(
            check_static(b"#!/bin/sh\n").unwrap_err().to_string(),
            "not an x86-64 ELF executable"
        );
        let mut header = b"\x7fELF\x02\x01".to_vec();
        header.resize(0x40, 0);
        header[0x12] = 0x3e;
        header[0x20] = 0x40; // program headers right after the header...
        header[0x36] = 56;
        header[0x38] = 1; // ...one of them, missing
        assert_eq!(
            check_static(&header).unwrap_err().to_string(),
            "truncated ELF program headers"
        );
    }
}
