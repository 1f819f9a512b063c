//! Load generator for bench/infer.sh.
//!
//! ```text
//! load http ADDR MODEL BODY CONCURRENCY SECONDS MAX
//!     CONCURRENCY keep-alive connections post BODY (an OIP request file) to
//!     /v2/models/MODEL/infer for SECONDS (at most MAX requests in all).
//! load engine MODEL_FILE BODY ITERATIONS THREADS
//!     the engine alone (no HTTP, no JSON): the parsed request run ITERATIONS
//!     times in a row with THREADS engine threads.
//! load magika-request CONFIG FILE
//!     prints the OIP request magika's model gets for FILE.
//! ```
//!
//! `http` and `engine` print one line of JSON: count, errors, seconds,
//! per_sec, p50_ms, p99_ms.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cocoon_infer::{Client, EngineOptions, InferRequest, Model};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("http") if args.len() == 7 => http(&args[1..]),
        Some("engine") if args.len() == 5 => engine(&args[1..]),
        Some("magika-request") if args.len() == 3 => magika_request(&args[1..]),
        _ => Err("usage: infer_load http ADDR MODEL BODY CONCURRENCY SECONDS MAX | infer_load engine MODEL_FILE BODY ITERATIONS THREADS | infer_load magika-request CONFIG FILE".into()),
    };
    if let Err(e) = result {
        eprintln!("load: error: {e}");
        std::process::exit(1);
    }
}

fn num<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("bad {what} {s:?}"))
}

fn report(mut lat: Vec<Duration>, errors: usize, wall: Duration) {
    lat.sort();
    let pct = |p: f64| {
        if lat.is_empty() {
            0.0
        } else {
            let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
            lat[i].as_secs_f64() * 1e3
        }
    };
    println!(
        "{{\"count\":{},\"errors\":{},\"seconds\":{:.3},\"per_sec\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
        lat.len(),
        errors,
        wall.as_secs_f64(),
        lat.len() as f64 / wall.as_secs_f64(),
        pct(0.50),
        pct(0.99)
    );
}

fn http(a: &[String]) -> Result<(), String> {
    let (addr, model) = (a[0].clone(), a[1].clone());
    let body = Arc::new(std::fs::read(&a[2]).map_err(|e| format!("{}: {e}", a[2]))?);
    let conc: usize = num(&a[3], "concurrency")?;
    let secs: f64 = num(&a[4], "seconds")?;
    let max: usize = num(&a[5], "max")?;
    let issued = Arc::new(AtomicUsize::new(0));
    // One warm-up request per connection, then everyone starts together.
    let ready = Arc::new(std::sync::Barrier::new(conc + 1));
    let threads: Vec<_> = (0..conc)
        .map(|_| {
            let (addr, model, body, issued, ready) = (
                addr.clone(),
                model.clone(),
                body.clone(),
                issued.clone(),
                ready.clone(),
            );
            std::thread::spawn(move || -> Result<(Vec<Duration>, usize), String> {
                let warm = Client::connect(&addr)
                    .and_then(|mut c| c.infer_json(&model, &body).map(|_| c))
                    .map_err(|e| e.to_string());
                ready.wait();
                let mut c = warm?;
                let deadline = Instant::now() + Duration::from_secs_f64(secs);
                let (mut lat, mut errors) = (Vec::new(), 0);
                while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < max {
                    let t = Instant::now();
                    match c.infer_json(&model, &body) {
                        Ok(_) => lat.push(t.elapsed()),
                        Err(_) => {
                            errors += 1;
                            c = Client::connect(&addr).map_err(|e| e.to_string())?;
                        }
                    }
                }
                Ok((lat, errors))
            })
        })
        .collect();
    ready.wait();
    let start = Instant::now();
    let (mut lat, mut errors) = (Vec::new(), 0);
    for t in threads {
        let (l, e) = t
            .join()
            .map_err(|_| "a client thread panicked".to_string())??;
        lat.extend(l);
        errors += e;
    }
    report(lat, errors, start.elapsed());
    Ok(())
}

fn engine(a: &[String]) -> Result<(), String> {
    let iters: usize = num(&a[2], "iterations")?;
    let threads: usize = num(&a[3], "threads")?;
    let model = Model::load("m", Path::new(&a[0]), &EngineOptions { threads })
        .map_err(|e| e.to_string())?;
    let body = std::fs::read(&a[1]).map_err(|e| format!("{}: {e}", a[1]))?;
    let req = InferRequest::from_json(&body)?;
    model.infer(req.clone()).map_err(|e| e.to_string())?; // warm-up
    let mut lat = Vec::with_capacity(iters);
    let mut busy = Duration::ZERO;
    for _ in 0..iters {
        let r = req.clone();
        let t = Instant::now();
        model.infer(r).map_err(|e| e.to_string())?;
        let d = t.elapsed();
        busy += d;
        lat.push(d);
    }
    report(lat, 0, busy);
    Ok(())
}

fn magika_request(a: &[String]) -> Result<(), String> {
    use cocoon_infer::magika::{Features, MagikaConfig};
    let config =
        MagikaConfig::from_json(&std::fs::read(&a[0]).map_err(|e| format!("{}: {e}", a[0]))?)?;
    let Features::Model(x) = config
        .features_of_file(Path::new(&a[1]))
        .map_err(|e| format!("{}: {e}", a[1]))?
    else {
        return Err(format!("{} is too small for the model", a[1]));
    };
    let req = config.request("bytes", x)?.id("magika-bench");
    println!("{}", String::from_utf8_lossy(&req.to_json()));
    Ok(())
}
