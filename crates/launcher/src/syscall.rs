//! The system calls the launcher makes to build the app's root and enter
//! it, behind one trait (youki's shape): [`Linux`] makes them, and
//! [`Recording`] (tests) records them so that the mount, chroot and
//! credential sequence is unit-tested without root.
//!
//! Every path is a `&CStr` so that the child side of `fork` (which runs in a
//! multi-threaded process and must not allocate) can use the trait too.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `mount(2)` flags used by the launcher.
pub mod flags {
    /// Bind mount.
    pub const BIND: u64 = libc::MS_BIND;
    /// Recursive (with [`BIND`]).
    pub const REC: u64 = libc::MS_REC;
    /// Read-only.
    pub const RDONLY: u64 = libc::MS_RDONLY;
    /// Change flags of an existing mount.
    pub const REMOUNT: u64 = libc::MS_REMOUNT;
    /// Ignore setuid bits.
    pub const NOSUID: u64 = libc::MS_NOSUID;
    /// No device nodes.
    pub const NODEV: u64 = libc::MS_NODEV;
    /// No execution.
    pub const NOEXEC: u64 = libc::MS_NOEXEC;
}

/// The kernel interface the launcher needs.
pub trait Syscall {
    /// `mount(source, target, fstype, flags, data)`.
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: u64,
        data: Option<&CStr>,
    ) -> io::Result<()>;
    /// `mkdir(path, mode)`; an existing directory is not an error.
    fn mkdir(&self, path: &CStr, mode: u32) -> io::Result<()>;
    /// Creates an empty regular file if nothing exists at `path`.
    fn touch(&self, path: &CStr) -> io::Result<()>;
    /// Whether `path` exists (following symlinks).
    fn exists(&self, path: &CStr) -> bool;
    /// `chroot(path)`.
    fn chroot(&self, path: &CStr) -> io::Result<()>;
    /// `chdir(path)`.
    fn chdir(&self, path: &CStr) -> io::Result<()>;
    /// Removes `cap` from the capability bounding set (`PR_CAPBSET_DROP`).
    fn drop_bounding_cap(&self, cap: u32) -> io::Result<()>;
    /// `setgroups(groups)`.
    fn setgroups(&self, groups: &[u32]) -> io::Result<()>;
    /// `setresgid(gid, gid, gid)`.
    fn setgid(&self, gid: u32) -> io::Result<()>;
    /// `setresuid(uid, uid, uid)`.
    fn setuid(&self, uid: u32) -> io::Result<()>;
    /// Empties the signal mask (the launcher blocks the signals it forwards).
    fn unblock_signals(&self) -> io::Result<()>;
    /// `setns(fd, CLONE_NEWNET)`: enter the network namespace `fd` names.
    fn setns_net(&self, fd: BorrowedFd<'_>) -> io::Result<()>;
    /// `execve(path, argv, envp)`; returns only on failure.
    fn execve(
        &self,
        path: &CStr,
        argv: &[*const libc::c_char],
        envp: &[*const libc::c_char],
    ) -> io::Error;
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

/// The real system calls.
#[derive(Debug, Default, Clone, Copy)]
pub struct Linux;

impl Syscall for Linux {
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: u64,
        data: Option<&CStr>,
    ) -> io::Result<()> {
        // SAFETY: every pointer is a NUL-terminated string that outlives the
        // call, or null where mount(2) accepts null.
        check(unsafe {
            libc::mount(
                opt_ptr(source),
                target.as_ptr(),
                opt_ptr(fstype),
                flags as libc::c_ulong,
                opt_ptr(data).cast(),
            )
        })
    }

    fn mkdir(&self, path: &CStr, mode: u32) -> io::Result<()> {
        // SAFETY: `path` is NUL-terminated.
        match check(unsafe { libc::mkdir(path.as_ptr(), mode as libc::mode_t) }) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            r => r,
        }
    }

    fn touch(&self, path: &CStr) -> io::Result<()> {
        // SAFETY: `path` is NUL-terminated; the returned fd is closed below.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o644 as libc::c_uint,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            // An existing symlink or directory is left for mount(2) to judge.
            if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::EISDIR)) {
                return Ok(());
            }
            return Err(e);
        }
        // SAFETY: `fd` was just opened by us.
        unsafe { libc::close(fd) };
        Ok(())
    }

    fn exists(&self, path: &CStr) -> bool {
        // SAFETY: `path` is NUL-terminated.
        unsafe { libc::access(path.as_ptr(), libc::F_OK) == 0 }
    }

    fn chroot(&self, path: &CStr) -> io::Result<()> {
        // SAFETY: `path` is NUL-terminated.
        check(unsafe { libc::chroot(path.as_ptr()) })
    }

    fn chdir(&self, path: &CStr) -> io::Result<()> {
        // SAFETY: `path` is NUL-terminated.
        check(unsafe { libc::chdir(path.as_ptr()) })
    }

    fn setns_net(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
    }

    fn drop_bounding_cap(&self, cap: u32) -> io::Result<()> {
        // SAFETY: prctl with integer arguments only.
        check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) })
    }

    fn setgroups(&self, groups: &[u32]) -> io::Result<()> {
        // SAFETY: the pointer and length describe `groups`.
        check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) })
    }

    fn setgid(&self, gid: u32) -> io::Result<()> {
        // SAFETY: integer arguments only.
        check(unsafe { libc::setresgid(gid, gid, gid) })
    }

    fn setuid(&self, uid: u32) -> io::Result<()> {
        // SAFETY: integer arguments only.
        check(unsafe { libc::setresuid(uid, uid, uid) })
    }

    fn unblock_signals(&self) -> io::Result<()> {
        // SAFETY: `set` is initialised by sigemptyset before use.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            check(libc::pthread_sigmask(
                libc::SIG_SETMASK,
                &set,
                std::ptr::null_mut(),
            ))
        }
    }

    fn execve(
        &self,
        path: &CStr,
        argv: &[*const libc::c_char],
        envp: &[*const libc::c_char],
    ) -> io::Error {
        debug_assert!(argv.last().is_some_and(|p| p.is_null()));
        debug_assert!(envp.last().is_some_and(|p| p.is_null()));
        // SAFETY: `argv` and `envp` are null-terminated arrays of pointers to
        // NUL-terminated strings owned by the caller for the whole call.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        io::Error::last_os_error()
    }
}

/// One recorded call (tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// mount(source, target, fstype, flags, data)
    Mount(Option<String>, String, Option<String>, u64, Option<String>),
    /// mkdir(path)
    Mkdir(String),
    /// touch(path)
    Touch(String),
    /// chroot(path)
    Chroot(String),
    /// chdir(path)
    Chdir(String),
    /// drop a capability from the bounding set
    DropCap(u32),
    /// setgroups
    Setgroups(Vec<u32>),
    /// setresgid
    Setgid(u32),
    /// setresuid
    Setuid(u32),
    /// unblock signals
    UnblockSignals,
    /// enter a network namespace
    SetnsNet(i32),
    /// execve(path, argv, envp)
    Execve(String, Vec<String>, Vec<String>),
}

/// Records every call; `exists` answers from a list; `execve` fails with
/// ENOENT for paths not in `executables`, else records and "succeeds"
/// (returns an error of kind `Other` meaning "would not return").
#[derive(Debug, Default)]
pub struct Recording {
    /// Calls made so far.
    pub calls: std::cell::RefCell<Vec<Call>>,
    /// Paths `exists` says are there.
    pub existing: Vec<String>,
    /// Paths `execve` accepts.
    pub executables: Vec<String>,
    /// A call (by `Debug` prefix, e.g. `"Setuid"`) that fails with EPERM.
    pub fail_on: Option<&'static str>,
}

/// The error `Recording::execve` returns for an accepted exec.
pub const EXEC_OK_MARKER: i32 = 0x7fff;

fn s(c: &CStr) -> String {
    c.to_string_lossy().into_owned()
}

fn strings(ptrs: &[*const libc::c_char]) -> Vec<String> {
    ptrs.iter()
        .take_while(|p| !p.is_null())
        // SAFETY: the caller passes pointers to live NUL-terminated strings.
        .map(|p| unsafe { CStr::from_ptr(*p) }.to_string_lossy().into_owned())
        .collect()
}

impl Recording {
    fn rec(&self, c: Call) -> io::Result<()> {
        let fail = self
            .fail_on
            .is_some_and(|f| format!("{c:?}").starts_with(f));
        self.calls.borrow_mut().push(c);
        if fail {
            Err(io::Error::from_raw_os_error(libc::EPERM))
        } else {
            Ok(())
        }
    }

    /// The recorded calls.
    pub fn take(&self) -> Vec<Call> {
        std::mem::take(&mut self.calls.borrow_mut())
    }
}

impl Syscall for Recording {
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: u64,
        data: Option<&CStr>,
    ) -> io::Result<()> {
        self.rec(Call::Mount(
            source.map(s),
            s(target),
            fstype.map(s),
            flags,
            data.map(s),
        ))
    }
    fn mkdir(&self, path: &CStr, _mode: u32) -> io::Result<()> {
        self.rec(Call::Mkdir(s(path)))
    }
    fn touch(&self, path: &CStr) -> io::Result<()> {
        self.rec(Call::Touch(s(path)))
    }
    fn exists(&self, path: &CStr) -> bool {
        self.existing.iter().any(|e| *e == s(path))
    }
    fn chroot(&self, path: &CStr) -> io::Result<()> {
        self.rec(Call::Chroot(s(path)))
    }
    fn chdir(&self, path: &CStr) -> io::Result<()> {
        self.rec(Call::Chdir(s(path)))
    }
    fn drop_bounding_cap(&self, cap: u32) -> io::Result<()> {
        self.rec(Call::DropCap(cap))
    }
    fn setgroups(&self, groups: &[u32]) -> io::Result<()> {
        self.rec(Call::Setgroups(groups.to_vec()))
    }
    fn setgid(&self, gid: u32) -> io::Result<()> {
        self.rec(Call::Setgid(gid))
    }
    fn setuid(&self, uid: u32) -> io::Result<()> {
        self.rec(Call::Setuid(uid))
    }
    fn unblock_signals(&self) -> io::Result<()> {
        self.rec(Call::UnblockSignals)
    }
    fn setns_net(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.rec(Call::SetnsNet(fd.as_raw_fd()))
    }
    fn execve(
        &self,
        path: &CStr,
        argv: &[*const libc::c_char],
        envp: &[*const libc::c_char],
    ) -> io::Error {
        if !self.executables.iter().any(|e| *e == s(path)) {
            return io::Error::from_raw_os_error(libc::ENOENT);
        }
        let _ = self.rec(Call::Execve(s(path), strings(argv), strings(envp)));
        io::Error::from_raw_os_error(EXEC_OK_MARKER)
    }
}

/// A `CString` from a Rust string; interior NULs are an error naming `what`.
pub fn cstring(what: &str, v: &str) -> crate::Result<CString> {
    CString::new(v).map_err(|_| crate::Error::Config(format!("{what} {v:?} contains a NUL byte")))
}
