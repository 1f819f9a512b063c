//! The app's own network namespace (shielded images).
//!
//! A shielded app must not be reachable in plaintext from outside: it runs
//! in a network namespace of its own that holds only a loopback interface,
//! so its ports exist nowhere else. The launcher stays in the container's
//! namespace, where the shield listens, and reaches the app through sockets
//! *created* inside the app's namespace: a socket belongs to the namespace
//! of the thread that called `socket(2)`, and a network namespace is a
//! per-thread attribute. One thread ([`AppNetwork`]'s) moves into the new
//! namespace for good and makes those sockets on request.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sched::{unshare, CloneFlags};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use std::sync::mpsc;
use std::sync::Mutex;

use crate::{Error, Result};

type Job = Box<dyn FnOnce() + Send>;

/// A network namespace with only `lo` (up), and a thread inside it that
/// creates sockets there.
pub struct AppNetwork {
    ns: OwnedFd,
    jobs: Mutex<mpsc::Sender<Job>>,
}

fn nix_error(what: &str, e: nix::Error) -> Error {
    Error::sys(what.to_string(), std::io::Error::from(e))
}

/// Sets `lo` up in the calling thread's network namespace (needs
/// CAP_NET_ADMIN).
fn loopback_up() -> Result<()> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| nix_error("creating a socket in the app's network namespace", e))?;
    let mut name = [0 as libc::c_char; libc::IFNAMSIZ];
    for (d, s) in name.iter_mut().zip(b"lo") {
        *d = *s as libc::c_char;
    }
    let req = libc::ifreq {
        ifr_name: name,
        ifr_ifru: libc::__c_anonymous_ifr_ifru {
            ifru_flags: (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short,
        },
    };
    // SAFETY: SIOCSIFFLAGS only reads the `ifreq` passed, which lives for
    // the whole call; `sock` is an open descriptor we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err(Error::sys(
            "bringing up lo in the app's network namespace (needs CAP_NET_ADMIN)",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Moves the calling thread into a new network namespace with `lo` up and
/// returns a descriptor naming it.
fn enter_new_namespace() -> Result<OwnedFd> {
    // Affects only the calling thread: a network namespace is per thread.
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| {
        nix_error(
            "creating the app's network namespace (needs CAP_SYS_ADMIN)",
            e,
        )
    })?;
    loopback_up()?;
    let f = std::fs::File::open("/proc/thread-self/ns/net")
        .map_err(|e| Error::sys("opening the app's network namespace", e))?;
    Ok(f.into())
}

/// An unconnected, non-blocking TCP/IPv4 socket in the calling thread's
/// namespace.
fn tcp_socket() -> io::Result<OwnedFd> {
    socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)
}

impl AppNetwork {
    /// Creates the namespace and its socket thread.
    pub fn create() -> Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<OwnedFd>>();
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("app-netns".into())
            .spawn(move || {
                let ns = enter_new_namespace();
                let ok = ns.is_ok();
                let _ = ready_tx.send(ns);
                if ok {
                    for job in jobs_rx {
                        job();
                    }
                }
            })
            .map_err(|e| Error::sys("starting the app-netns thread", e))?;
        let ns = ready_rx
            .recv()
            .map_err(|_| Error::Config("the app-netns thread ended".into()))??;
        Ok(AppNetwork {
            ns,
            jobs: Mutex::new(jobs_tx),
        })
    }

    /// The namespace descriptor, for the app's `setns` after fork.
    pub fn ns_fd(&self) -> BorrowedFd<'_> {
        self.ns.as_fd()
    }

    fn submit(&self, job: Job) -> io::Result<()> {
        let tx = self
            .jobs
            .lock()
            .map_err(|_| io::Error::other("app-netns thread lock poisoned"))?;
        tx.send(job)
            .map_err(|_| io::Error::other("the app-netns thread ended"))
    }

    /// Runs `f` on the thread inside the app's namespace and waits for it.
    fn run_inside<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let (tx, rx) = mpsc::channel();
        self.submit(Box::new(move || {
            let _ = tx.send(f());
        }))?;
        rx.recv()
            .map_err(|_| io::Error::other("the app-netns thread ended"))?
    }

    /// Connects to `127.0.0.1:port` inside the app's namespace.
    pub async fn connect(&self, port: u16) -> io::Result<tokio::net::TcpStream> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Box::new(move || {
            let _ = tx.send(tcp_socket());
        }))?;
        let fd = rx
            .await
            .map_err(|_| io::Error::other("the app-netns thread ended"))??;
        let socket = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(fd));
        socket
            .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .await
    }

    /// A listener on `127.0.0.1:port` inside the app's namespace (the egress
    /// proxy the app reaches).
    pub fn listen_loopback(&self, port: u16) -> io::Result<TcpListener> {
        let l = self.run_inside(move || TcpListener::bind((Ipv4Addr::LOCALHOST, port)))?;
        l.set_nonblocking(true)?;
        Ok(l)
    }
}
