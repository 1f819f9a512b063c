//! A userspace TCP port proxy for `-p HOST:CONTAINER` when the two differ.
//! The container shares the host's network namespace, so the app already
//! listens on its own port on the host; `-p 8080:80` adds a listener on
//! 8080 that forwards each connection to 127.0.0.1:80.

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;

/// Starts forwarding `host` to `127.0.0.1:container` in background threads.
pub fn start(host: u16, container: u16) -> io::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", host))?;
    thread::Builder::new()
        .name(format!("proxy-{host}"))
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                thread::spawn(move || {
                    if let Ok(app) = TcpStream::connect(("127.0.0.1", container)) {
                        pipe(client, app);
                    }
                });
            }
        })?;
    Ok(())
}

fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let t = thread::spawn(move || copy(a2, b2));
    copy(b, a);
    let _ = t.join();
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}
