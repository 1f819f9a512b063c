//! PID 1 duties: block the forwarded signals before any thread exists,
//! fork the app, forward signals to it, reap every child, and exit with the
//! app's status.

use std::io;

use crate::setup::{enter_and_exec, ExecPlan, Step};
use crate::syscall::Linux;
use crate::{Error, Result};

/// Signals forwarded to the app.
pub const FORWARDED: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

extern "C" fn noop(_: libc::c_int) {}

fn sigset(sigs: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset uses it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in sigs {
            libc::sigaddset(&mut set, *s);
        }
        set
    }
}

fn all_handled() -> Vec<libc::c_int> {
    let mut v = FORWARDED.to_vec();
    v.push(libc::SIGCHLD);
    v
}

/// Blocks the forwarded signals and SIGCHLD in this (still single) thread,
/// so that every thread started later inherits the mask and the main thread
/// receives them with `sigwaitinfo`. Handlers are installed too: the
/// kernel drops signals to a PID-namespace init that has none.
pub fn block_signals() -> Result<()> {
    for s in all_handled() {
        // SAFETY: installing a handler that does nothing (async-signal-safe).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = noop as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            if libc::sigaction(s, &sa, std::ptr::null_mut()) != 0 {
                return Err(Error::sys(
                    "installing signal handlers",
                    io::Error::last_os_error(),
                ));
            }
        }
    }
    let set = sigset(&all_handled());
    // SAFETY: `set` is a valid, initialised signal set.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(Error::sys(
            "blocking signals",
            io::Error::from_raw_os_error(r),
        ));
    }
    Ok(())
}

/// Forks the app. In the child, enters the tree and execs; a failure is
/// sent to the parent over a close-on-exec pipe, which the parent turns
/// into an error (the app never ran). Returns the app's pid.
pub fn spawn(plan: &ExecPlan) -> Result<libc::pid_t> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::sys("creating a pipe", io::Error::last_os_error()));
    }
    let (r, w) = (fds[0], fds[1]);
    // SAFETY: the child only makes system calls through `enter_and_exec`
    // (which does not allocate) and then `write`/`_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::sys("fork", io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: closing our copy of the read end.
        unsafe { libc::close(r) };
        let (step, err) = enter_and_exec(&Linux, plan);
        let msg: [u32; 2] = [step as u32, err.raw_os_error().unwrap_or(0) as u32];
        // SAFETY: writing 8 bytes from `msg`, then exiting without running
        // any of the parent's destructors or atexit handlers.
        unsafe {
            libc::write(w, msg.as_ptr().cast(), 8);
            libc::_exit(127);
        }
    }
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(w) };
    let mut msg = [0u32; 2];
    let n = loop {
        // SAFETY: reading at most 8 bytes into `msg`.
        let n = unsafe { libc::read(r, msg.as_mut_ptr().cast(), 8) };
        if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        break n;
    };
    // SAFETY: closing the read end we own.
    unsafe { libc::close(r) };
    if n == 8 {
        let mut status = 0;
        // SAFETY: reaping the child that just failed.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let step = Step::from_u32(msg[0]).unwrap_or(Step::Exec);
        let err = io::Error::from_raw_os_error(msg[1] as i32);
        let what = format!("{} ({})", step.describe(), plan.program().to_string_lossy());
        return Err(Error::App(format!("{what}: {err}")));
    }
    Ok(pid)
}

/// Forwards signals to `app` and reaps children until `app` exits; returns
/// its exit status (128 + signal if it was killed).
pub fn supervise(app: libc::pid_t) -> i32 {
    let set = sigset(&all_handled());
    loop {
        // Reap first: the app may have exited before we started waiting.
        loop {
            let mut status = 0;
            // SAFETY: non-blocking wait for any child.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == app {
                if libc::WIFEXITED(status) {
                    return libc::WEXITSTATUS(status);
                }
                if libc::WIFSIGNALED(status) {
                    return 128 + libc::WTERMSIG(status);
                }
            }
        }
        // SAFETY: `info` is written by sigwaitinfo; `set` is initialised.
        let sig = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::sigwaitinfo(&set, &mut info)
        };
        if sig > 0 && sig != libc::SIGCHLD {
            // SAFETY: sending a signal to our child.
            unsafe { libc::kill(app, sig) };
        }
    }
}
