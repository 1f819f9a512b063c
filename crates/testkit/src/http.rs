//! A canned HTTP/1.1 server on 127.0.0.1 for tests that talk to remote
//! services (Intel PCS, AMD KDS): answers each request whose target (path
//! and query) is a route with that route's reply, 404 otherwise, one request
//! per connection, and records every target until dropped.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One canned answer.
#[derive(Clone, Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers besides content-length and connection.
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
}

/// A 200 answer with `body` and `headers`.
pub fn ok(body: Vec<u8>, headers: &[(&str, &str)]) -> Reply {
    Reply {
        status: 200,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body,
    }
}

/// The running server; dropping it stops it.
pub struct StubServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    routes: Arc<Mutex<BTreeMap<String, Reply>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StubServer {
    /// Serves `routes` (request target -> reply) until dropped.
    pub fn start(routes: BTreeMap<String, Reply>) -> StubServer {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = l.local_addr().expect("local address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let routes = Arc::new(Mutex::new(routes));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, r, st) = (seen.clone(), routes.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in l.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut c) = conn else { continue };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head);
                let target = line.split(' ').nth(1).unwrap_or_default().to_string();
                s.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(target.clone());
                let reply = r
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&target)
                    .cloned()
                    .unwrap_or(Reply {
                        status: 404,
                        headers: Vec::new(),
                        body: Vec::new(),
                    });
                let mut resp = format!("HTTP/1.1 {} X\r\n", reply.status);
                for (k, v) in &reply.headers {
                    resp.push_str(&format!("{k}: {v}\r\n"));
                }
                resp.push_str(&format!(
                    "content-length: {}\r\nconnection: close\r\n\r\n",
                    reply.body.len()
                ));
                // The client may hang up early (oversized body): ignore.
                let _ = c.write_all(resp.as_bytes());
                let _ = c.write_all(&reply.body);
            }
        });
        StubServer {
            base: format!("http://{addr}"),
            addr,
            seen,
            routes,
            stop,
            thread: Some(thread),
        }
    }

    /// The targets requested since the last call.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The reply for `target`, if it has one.
    pub fn reply(&self, target: &str) -> Option<Reply> {
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(target)
            .cloned()
    }

    /// Replaces (or adds) the reply for `target`.
    pub fn set(&self, target: &str, reply: Reply) {
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(target.to_string(), reply);
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// URL-encodes like Intel PCS does its issuer-chain headers: everything but
/// unreserved characters.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
