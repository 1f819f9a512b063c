//! An async server on a thread of its own, with its own tokio runtime,
//! stopped gracefully when dropped: the harness integration tests put
//! around the KBS and the inference server.

use std::fmt::Display;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

/// The future a served server must stop on: it completes when the
/// [`BackgroundServer`] is dropped.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server running on its own thread and runtime; stops when dropped.
pub struct BackgroundServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundServer {
    /// Binds `listen` (`127.0.0.1:0` picks a free port) and runs
    /// `serve(listener, shutdown)` there on `threads` worker threads. A
    /// server error is printed to stderr (the test then sees the server
    /// gone).
    pub fn start<F, Fut, E>(listen: &str, threads: usize, serve: F) -> io::Result<Self>
    where
        F: FnOnce(tokio::net::TcpListener, Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("server-{addr}"))
            .spawn(move || {
                let served = runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .map_err(|e| format!("listener: {e}"))?;
                    let shutdown: Shutdown = Box::pin(async move {
                        let _ = stopped.await;
                    });
                    serve(listener, shutdown).await.map_err(|e| e.to_string())
                });
                if let Err(e) = served {
                    eprintln!("server on {addr} stopped: {e}");
                }
            })?;
        Ok(BackgroundServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
