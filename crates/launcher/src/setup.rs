//! Building the app's root on the mounted sealed tree, and entering it.
//!
//! [`prepare_root`] runs in the launcher (PID 1) after the tree is mounted:
//! a fresh `/proc`, the container's `/dev` and `/sys`, its `/etc/hosts`,
//! `/etc/resolv.conf` and `/etc/hostname`, and the runtime's volumes,
//! bound into the tree. [`enter_and_exec`] runs in the forked child: enter
//! the app's network namespace (shielded images), chroot, drop the
//! launcher's own capabilities ([`LAUNCHER_ONLY_CAPS`]) from the bounding
//! set, credentials (groups, gid, uid, in that order), working directory,
//! exec. Both only speak through
//! [`Syscall`], so the sequences are unit-tested with a recorder.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::syscall::{cstring, flags, Syscall};
use crate::user::Identity;
use crate::{Error, Result};

/// A host (container) path bound into the tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Volume {
    /// Path in the container (where `cocoon run` mounted it).
    pub source: String,
    /// Absolute path inside the app's root.
    pub target: String,
    /// Read-only bind.
    #[serde(default)]
    pub readonly: bool,
}

/// `CAP_SYS_ADMIN` (linux/capability.h).
pub const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_NET_ADMIN` (linux/capability.h).
pub const CAP_NET_ADMIN: u32 = 12;
/// `CAP_FSETID` (linux/capability.h).
pub const CAP_FSETID: u32 = 4;
/// `CAP_MKNOD` (linux/capability.h).
pub const CAP_MKNOD: u32 = 27;
/// `CAP_SETFCAP` (linux/capability.h).
pub const CAP_SETFCAP: u32 = 31;

/// What the launcher needs and the app does not get: SYS_ADMIN (FUSE,
/// mounts, setns) and NET_ADMIN (a shielded app's loopback) always; in
/// memory mode also MKNOD, SETFCAP and FSETID (writing the tree's device
/// nodes, file capabilities and setgid bits into the tmpfs; `cocoon run`
/// grants them only then). They leave the bounding set before exec.
pub const LAUNCHER_ONLY_CAPS: [u32; 5] = [
    CAP_SYS_ADMIN,
    CAP_NET_ADMIN,
    CAP_MKNOD,
    CAP_SETFCAP,
    CAP_FSETID,
];

/// Files of the container bound over the tree's, when the container has them.
pub const ETC_FILES: [&str; 3] = ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"];

fn join(root: &str, path: &str) -> String {
    format!(
        "{}/{}",
        root.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Checks that `p` is absolute and has no `.`/`..` components.
pub fn check_target(what: &str, p: &str) -> Result<()> {
    if !p.starts_with('/') || p.split('/').any(|c| c == "." || c == "..") || p.contains('\0') {
        return Err(Error::Config(format!(
            "{what} {p:?} must be an absolute path without . or .."
        )));
    }
    Ok(())
}

fn mkdir_all(sys: &dyn Syscall, path: &str) -> Result<()> {
    let mut cur = String::new();
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        cur.push('/');
        cur.push_str(comp);
        let c = cstring("path", &cur)?;
        sys.mkdir(&c, 0o755)
            .map_err(|e| Error::sys(format!("creating {cur}"), e))?;
    }
    Ok(())
}

fn parent(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &p[..i],
    }
}

fn mount(
    sys: &dyn Syscall,
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    fl: u64,
) -> Result<()> {
    let src = source.map(|s| cstring("mount source", s)).transpose()?;
    let fst = fstype.map(|s| cstring("fs type", s)).transpose()?;
    let tgt = cstring("mount target", target)?;
    sys.mount(src.as_deref(), &tgt, fst.as_deref(), fl, None)
        .map_err(|e| {
            Error::sys(
                format!(
                    "mounting {} on {target}",
                    source.or(fstype).unwrap_or("(none)")
                ),
                e,
            )
        })
}

/// Makes `/proc`, `/dev`, `/sys`, the `/etc` files and `volumes` visible
/// in the tree mounted at `root`.
pub fn prepare_root(sys: &dyn Syscall, root: &str, volumes: &[Volume]) -> Result<()> {
    let proc_ = join(root, "/proc");
    mkdir_all(sys, &proc_)?;
    mount(
        sys,
        Some("proc"),
        &proc_,
        Some("proc"),
        flags::NOSUID | flags::NODEV | flags::NOEXEC,
    )?;
    // /dev recursively: /dev/pts, /dev/shm, /dev/mqueue come along, and
    // /dev/fuse stays reachable for the FUSE workers after the app's chroot.
    let dev = join(root, "/dev");
    mkdir_all(sys, &dev)?;
    mount(sys, Some("/dev"), &dev, None, flags::BIND | flags::REC)?;
    let sysfs = join(root, "/sys");
    mkdir_all(sys, &sysfs)?;
    mount(sys, Some("/sys"), &sysfs, None, flags::BIND | flags::REC)?;
    mount(
        sys,
        None,
        &sysfs,
        None,
        flags::REMOUNT | flags::BIND | flags::RDONLY | flags::NOSUID | flags::NODEV | flags::NOEXEC,
    )?;
    for f in ETC_FILES {
        if !sys.exists(&cstring("path", f)?) {
            continue;
        }
        let target = join(root, f);
        mkdir_all(sys, parent(&target))?;
        sys.touch(&cstring("path", &target)?)
            .map_err(|e| Error::sys(format!("creating {f} in the tree"), e))?;
        mount(sys, Some(f), &target, None, flags::BIND)?;
    }
    for v in volumes {
        check_target("volume target", &v.target)?;
        let target = join(root, &v.target);
        mkdir_all(sys, &target)?;
        mount(
            sys,
            Some(&v.source),
            &target,
            None,
            flags::BIND | flags::REC,
        )?;
        if v.readonly {
            mount(
                sys,
                None,
                &target,
                None,
                flags::REMOUNT | flags::BIND | flags::RDONLY,
            )?;
        }
    }
    Ok(())
}

/// Everything the child needs, prepared before `fork` so that the child
/// allocates nothing.
pub struct ExecPlan {
    root: CString,
    workdir: CString,
    identity: Identity,
    /// Candidate paths for the program, tried in order (PATH search).
    candidates: Vec<CString>,
    argv: Vec<CString>,
    /// Owns the strings `env_ptrs` points to.
    _env: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    env_ptrs: Vec<*const libc::c_char>,
    /// The app's own network namespace (shielded images), entered first.
    netns: Option<OwnedFd>,
}

impl std::fmt::Debug for ExecPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The environment can hold secrets: never printed.
        f.debug_struct("ExecPlan")
            .field("root", &self.root)
            .field("workdir", &self.workdir)
            .field("identity", &self.identity)
            .field("argv", &self.argv)
            .finish_non_exhaustive()
    }
}

/// The default `PATH` when the image sets none (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl ExecPlan {
    /// A plan to run `argv` (entrypoint + cmd) with `env` as `identity` in
    /// `workdir` (empty: `/`) under `root`.
    pub fn new(
        root: &str,
        workdir: &str,
        identity: Identity,
        argv: &[String],
        env: &[String],
    ) -> Result<Self> {
        let prog = argv
            .first()
            .ok_or_else(|| Error::App("the image has neither entrypoint nor cmd".into()))?;
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        let candidates: Vec<String> = if prog.contains('/') {
            vec![prog.clone()]
        } else {
            path.split(':')
                .filter(|d| !d.is_empty())
                .map(|d| format!("{}/{prog}", d.trim_end_matches('/')))
                .collect()
        };
        let workdir = if workdir.is_empty() { "/" } else { workdir };
        let argv: Vec<CString> = argv
            .iter()
            .map(|a| cstring("argument", a))
            .collect::<Result<_>>()?;
        let env: Vec<CString> = env
            .iter()
            .map(|a| cstring("environment entry", a))
            .collect::<Result<_>>()?;
        let ptrs = |v: &[CString]| {
            v.iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        Ok(ExecPlan {
            root: cstring("root", root)?,
            workdir: cstring("working directory", workdir)?,
            identity,
            candidates: candidates
                .iter()
                .map(|c| cstring("program", c))
                .collect::<Result<_>>()?,
            argv_ptrs: ptrs(&argv),
            env_ptrs: ptrs(&env),
            argv,
            _env: env,
            netns: None,
        })
    }

    /// Runs the app in the network namespace `fd` names (the plan keeps a
    /// close-on-exec duplicate for the child).
    pub fn in_network_namespace(mut self, fd: BorrowedFd<'_>) -> Result<Self> {
        let own = fd
            .try_clone_to_owned()
            .map_err(|e| Error::sys("duplicating the app's network namespace descriptor", e))?;
        self.netns = Some(own);
        Ok(self)
    }

    /// The program name as given (for messages).
    pub fn program(&self) -> &CStr {
        &self.argv[0]
    }
}

/// The step of [`enter_and_exec`] that failed, reported to the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Step {
    /// Unblocking signals.
    Signals = 1,
    /// chroot into the tree.
    Chroot = 2,
    /// Dropping the launcher's own capabilities ([`LAUNCHER_ONLY_CAPS`]).
    Caps = 3,
    /// setgroups.
    Groups = 4,
    /// setresgid.
    Gid = 5,
    /// setresuid.
    Uid = 6,
    /// chdir to the working directory.
    Workdir = 7,
    /// execve.
    Exec = 8,
    /// Entering the app's network namespace.
    Netns = 9,
}

impl Step {
    /// From the number sent over the pipe.
    pub fn from_u32(n: u32) -> Option<Step> {
        use Step::*;
        [
            Signals, Chroot, Caps, Groups, Gid, Uid, Workdir, Exec, Netns,
        ]
        .into_iter()
        .find(|s| *s as u32 == n)
    }

    /// What failed, for the error line.
    pub fn describe(self) -> &'static str {
        match self {
            Step::Signals => "resetting the signal mask",
            Step::Chroot => "entering the sealed tree (chroot)",
            Step::Caps => "dropping the launcher's capabilities (CAP_SYS_ADMIN, ...)",
            Step::Groups => "setting supplementary groups",
            Step::Gid => "setting the group id",
            Step::Uid => "setting the user id",
            Step::Workdir => "changing to the working directory",
            Step::Exec => "executing the entrypoint",
            Step::Netns => "entering the app's network namespace",
        }
    }
}

/// The child side: enter `plan.root` and exec. Returns only on failure,
/// with the step and error. Allocation-free (runs after `fork` in a
/// multi-threaded process).
pub fn enter_and_exec(sys: &dyn Syscall, plan: &ExecPlan) -> (Step, io::Error) {
    macro_rules! step {
        ($s:expr, $e:expr) => {
            if let Err(e) = $e {
                return ($s, e);
            }
        };
    }
    step!(Step::Signals, sys.unblock_signals());
    if let Some(fd) = &plan.netns {
        step!(Step::Netns, sys.setns_net(fd.as_fd()));
    }
    step!(Step::Chroot, sys.chroot(&plan.root));
    step!(Step::Chroot, sys.chdir(c"/"));
    // The app does not need to mount, configure networks or make device
    // nodes: what only the launcher needs leaves the bounding set.
    for cap in LAUNCHER_ONLY_CAPS {
        step!(Step::Caps, sys.drop_bounding_cap(cap));
    }
    step!(Step::Groups, sys.setgroups(&plan.identity.groups));
    step!(Step::Gid, sys.setgid(plan.identity.gid));
    step!(Step::Uid, sys.setuid(plan.identity.uid));
    step!(Step::Workdir, sys.chdir(&plan.workdir));
    let mut last = io::Error::from_raw_os_error(libc::ENOENT);
    for c in &plan.candidates {
        let e = sys.execve(c, &plan.argv_ptrs, &plan.env_ptrs);
        match e.raw_os_error() {
            // Like execvp: keep searching on "not here".
            Some(libc::ENOENT | libc::ENOTDIR) => {}
            Some(libc::EACCES) => last = e,
            _ => return (Step::Exec, e),
        }
    }
    (Step::Exec, last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, Recording, EXEC_OK_MARKER};

    fn id() -> Identity {
        Identity {
            uid: 100,
            gid: 102,
            groups: vec![4, 102],
            home: None,
        }
    }

    #[test]
    fn root_is_prepared_in_order() {
        let sys = Recording {
            existing: vec!["/etc/hosts".into(), "/etc/resolv.conf".into()],
            ..Default::default()
        };
        let vols = [Volume {
            source: "/cocoon/volumes/0".into(),
            target: "/data".into(),
            readonly: true,
        }];
        prepare_root(&sys, "/cocoon/root", &vols).unwrap();
        let calls = sys.take();
        let mounts: Vec<_> = calls
            .iter()
            .filter_map(|c| match c {
                Call::Mount(s, t, f, fl, _) => Some((s.clone(), t.clone(), f.clone(), *fl)),
                _ => None,
            })
            .collect();
        let m = |s: Option<&str>, t: &str, f: Option<&str>, fl: u64| {
            (s.map(String::from), t.to_string(), f.map(String::from), fl)
        };
        assert_eq!(
            mounts,
            vec![
                m(
                    Some("proc"),
                    "/cocoon/root/proc",
                    Some("proc"),
                    flags::NOSUID | flags::NODEV | flags::NOEXEC
                ),
                m(
                    Some("/dev"),
                    "/cocoon/root/dev",
                    None,
                    flags::BIND | flags::REC
                ),
                m(
                    Some("/sys"),
                    "/cocoon/root/sys",
                    None,
                    flags::BIND | flags::REC
                ),
                m(
                    None,
                    "/cocoon/root/sys",
                    None,
                    flags::REMOUNT
                        | flags::BIND
                        | flags::RDONLY
                        | flags::NOSUID
                        | flags::NODEV
                        | flags::NOEXEC
                ),
                m(
                    Some("/etc/hosts"),
                    "/cocoon/root/etc/hosts",
                    None,
                    flags::BIND
                ),
                m(
                    Some("/etc/resolv.conf"),
                    "/cocoon/root/etc/resolv.conf",
                    None,
                    flags::BIND
                ),
                m(
                    Some("/cocoon/volumes/0"),
                    "/cocoon/root/data",
                    None,
                    flags::BIND | flags::REC
                ),
                m(
                    None,
                    "/cocoon/root/data",
                    None,
                    flags::REMOUNT | flags::BIND | flags::RDONLY
                ),
            ]
        );
        // Bind targets exist before the bind: the file is created in the tree.
        let touch = calls
            .iter()
            .position(|c| *c == Call::Touch("/cocoon/root/etc/hosts".into()))
            .unwrap();
        let bind = calls
            .iter()
            .position(|c| matches!(c, Call::Mount(Some(s), ..) if s == "/etc/hosts"))
            .unwrap();
        assert!(touch < bind);
        assert!(calls.contains(&Call::Mkdir("/cocoon/root/data".into())));
        // /etc/hostname was not in the container: not bound.
        assert!(!calls
            .iter()
            .any(|c| matches!(c, Call::Touch(t) if t.ends_with("hostname"))));
    }

    #[test]
    fn bad_volume_targets_are_refused() {
        let sys = Recording::default();
        for t in ["data", "/a/../etc", "/./x"] {
            let v = [Volume {
                source: "/x".into(),
                target: t.into(),
                readonly: false,
            }];
            let e = prepare_root(&sys, "/r", &v).unwrap_err().to_string();
            assert!(e.contains("volume target"), "{e}");
        }
    }

    #[test]
    fn child_enters_drops_and_execs_in_order() {
        use std::os::fd::AsRawFd as _;
        // Any open descriptor stands for the namespace in a recording.
        let netns = std::fs::File::open("/dev/null").unwrap();
        let sys = Recording {
            executables: vec!["/usr/bin/redis-server".into()],
            ..Default::default()
        };
        let plan = ExecPlan::new(
            "/cocoon/root",
            "/data",
            id(),
            &["redis-server".into(), "--port".into(), "6379".into()],
            &["PATH=/usr/local/bin:/usr/bin".into(), "A=1".into()],
        )
        .unwrap()
        .in_network_namespace(netns.as_fd())
        .unwrap();
        let netns_no = plan.netns.as_ref().unwrap().as_raw_fd();
        let (step, e) = enter_and_exec(&sys, &plan);
        assert_eq!((step, e.raw_os_error()), (Step::Exec, Some(EXEC_OK_MARKER)));
        assert_eq!(
            sys.take(),
            vec![
                Call::UnblockSignals,
                Call::SetnsNet(netns_no),
                Call::Chroot("/cocoon/root".into()),
                Call::Chdir("/".into()),
                Call::DropCap(CAP_SYS_ADMIN),
                Call::DropCap(CAP_NET_ADMIN),
                Call::DropCap(CAP_MKNOD),
                Call::DropCap(CAP_SETFCAP),
                Call::DropCap(CAP_FSETID),
                Call::Setgroups(vec![4, 102]),
                Call::Setgid(102),
                Call::Setuid(100),
                Call::Chdir("/data".into()),
                Call::Execve(
                    "/usr/bin/redis-server".into(),
                    vec!["redis-server".into(), "--port".into(), "6379".into()],
                    vec!["PATH=/usr/local/bin:/usr/bin".into(), "A=1".into()]
                ),
            ]
        );
    }

    #[test]
    fn failures_stop_before_exec_and_name_the_step() {
        let sys = Recording {
            executables: vec!["/bin/sh".into()],
            fail_on: Some("Setuid"),
            ..Default::default()
        };
        let plan = ExecPlan::new("/r", "", id(), &["/bin/sh".into()], &[]).unwrap();
        let (step, e) = enter_and_exec(&sys, &plan);
        assert_eq!((step, e.raw_os_error()), (Step::Uid, Some(libc::EPERM)));
        assert!(!sys.take().iter().any(|c| matches!(c, Call::Execve(..))));
        // A program found nowhere on PATH: ENOENT from the exec step.
        let sys = Recording::default();
        let plan = ExecPlan::new("/r", "", id(), &["nope".into()], &[]).unwrap();
        let (step, e) = enter_and_exec(&sys, &plan);
        assert_eq!((step, e.raw_os_error()), (Step::Exec, Some(libc::ENOENT)));
        assert_eq!(Step::from_u32(Step::Workdir as u32), Some(Step::Workdir));
    }

    #[test]
    fn no_command_is_an_error() {
        let e = ExecPlan::new("/r", "", id(), &[], &[]).unwrap_err();
        assert!(e.to_string().contains("neither entrypoint nor cmd"));
    }
}
