//! The runc `config.json` of a sealed container: the launcher as process,
//! `/dev/fuse` and its cgroup rule, the capabilities the launcher needs and
//! no more, the host's network namespace, and the runtime's bind mounts.

use serde_json::{json, Value};

/// The capabilities of the container (bounding = effective = permitted;
/// no inheritable or ambient ones). The launcher needs SYS_ADMIN (FUSE and
/// bind mounts; it drops it from the bounding set before exec'ing the app),
/// SYS_CHROOT, SETUID/SETGID/SETPCAP (switch to the image's user, drop
/// SYS_ADMIN) and NET_ADMIN (bring up the loopback of a shielded app's own
/// network namespace; dropped before exec like SYS_ADMIN). The rest are the part of Docker's defaults that ordinary
/// images (nginx, redis) need when they start as root and drop privileges.
pub const CAPABILITIES: [&str; 11] = [
    "CAP_SYS_ADMIN",
    "CAP_NET_ADMIN",
    "CAP_SYS_CHROOT",
    "CAP_SETUID",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
];

/// Added in memory mode, where the launcher writes the whole tree into a
/// tmpfs itself: device nodes (MKNOD), file capabilities (SETFCAP) and
/// setgid bits of files whose group it is not in (FSETID). The launcher
/// drops them before exec, so the app gets the same set either way.
pub const MEMORY_MODE_CAPABILITIES: [&str; 3] = ["CAP_MKNOD", "CAP_SETFCAP", "CAP_FSETID"];

/// `/dev/fuse`: character device 10:229.
pub const FUSE_MAJOR: i64 = 10;
/// Minor number of `/dev/fuse`.
pub const FUSE_MINOR: i64 = 229;

/// A bind mount of the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Host path.
    pub source: String,
    /// Container path.
    pub destination: String,
    /// Read-only.
    pub readonly: bool,
}

/// What goes into `config.json`.
#[derive(Debug, Clone)]
pub struct SpecInput {
    /// Hostname (UTS namespace).
    pub hostname: String,
    /// Environment of the launcher.
    pub env: Vec<String>,
    /// Bind mounts.
    pub binds: Vec<Bind>,
    /// The launcher runs in memory mode ([`MEMORY_MODE_CAPABILITIES`]).
    pub memory_mode: bool,
}

/// The OCI runtime spec (1.0.2) for `input`.
pub fn config(input: &SpecInput) -> Value {
    let mut caps: Vec<&str> = CAPABILITIES.to_vec();
    if input.memory_mode {
        caps.extend(MEMORY_MODE_CAPABILITIES);
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    for b in &input.binds {
        let mut opts = vec!["rbind", "nosuid", "nodev"];
        opts.push(if b.readonly { "ro" } else { "rw" });
        mounts.push(json!({"destination": b.destination, "type": "bind",
                           "source": b.source, "options": opts}));
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["/cocoon/launcher"],
            "env": input.env,
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
            },
            "noNewPrivileges": false,
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": input.hostname,
        "mounts": mounts,
        "linux": {
            "devices": [{"path": "/dev/fuse", "type": "c", "major": FUSE_MAJOR,
                         "minor": FUSE_MINOR, "fileMode": 438, "uid": 0, "gid": 0}],
            "resources": {"devices": [
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": FUSE_MAJOR, "minor": FUSE_MINOR, "access": "rwm"},
            ]},
            // No network namespace: the container shares the host's (see docs/run.md).
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                            "/proc/scsi", "/sys/firmware"],
            "readonlyPaths": ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq",
                              "/proc/sys", "/proc/sysrq-trigger"],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuse_device_rule_caps_and_namespaces() {
        let c = config(&SpecInput {
            hostname: "web".into(),
            env: vec!["COCOON_KBS_URL=http://127.0.0.1:8080".into()],
            binds: vec![Bind {
                source: "/srv/sim".into(),
                destination: "/cocoon/sim".into(),
                readonly: true,
            }],
            memory_mode: false,
        });
        assert_eq!(c["process"]["args"], json!(["/cocoon/launcher"]));
        assert_eq!(c["linux"]["devices"][0]["path"], "/dev/fuse");
        assert_eq!(c["linux"]["resources"]["devices"][1]["minor"], 229);
        let caps = c["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert_eq!(caps.len(), CAPABILITIES.len());
        assert!(caps.contains(&json!("CAP_SYS_ADMIN")));
        assert!(!caps.contains(&json!("CAP_NET_RAW")));
        assert!(!caps.contains(&json!("CAP_MKNOD")));
        assert!(c["process"]["capabilities"].get("ambient").is_none());
        let ns: Vec<&str> = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(!ns.contains(&"network"));
        let last = c["mounts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["destination"], "/cocoon/sim");
        assert!(last["options"].as_array().unwrap().contains(&json!("ro")));
    }
}
