//! The app's identity: `config.user` (`user[:group]`, names or numbers)
//! resolved against the sealed `/etc/passwd` and `/etc/group`, the way
//! Docker resolves it.

use crate::{Error, Result};

/// Who the app runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (the primary one included, sorted, unique).
    pub groups: Vec<u32>,
    /// Home directory from passwd, if the user has an entry.
    pub home: Option<String>,
}

struct Passwd<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = Passwd<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        Some(Passwd {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

struct Group<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn group_entries(text: &str) -> impl Iterator<Item = Group<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        Some(Group {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f[3].split(',').filter(|m| !m.is_empty()).collect(),
        })
    })
}

/// Resolves `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`, ...)
/// against the image's passwd and group files (empty text when missing).
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<Identity> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let entry = match user.parse::<u32>() {
        Ok(uid) => passwd_entries(passwd).find(|p| p.uid == uid),
        Err(_) => Some(
            passwd_entries(passwd)
                .find(|p| p.name == user)
                .ok_or_else(|| {
                    Error::App(format!(
                        "user {user:?} (config.user {spec:?}) is not in the image's /etc/passwd"
                    ))
                })?,
        ),
    };
    let uid = match &entry {
        Some(p) => p.uid,
        None => user.parse().unwrap_or(0),
    };
    let name = entry.as_ref().map(|p| p.name);
    let mut gid = entry.as_ref().map_or(0, |p| p.gid);
    let mut groups = Vec::new();
    match grp {
        Some(g) if !g.is_empty() => {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => group_entries(group)
                    .find(|e| e.name == g)
                    .map(|e| e.gid)
                    .ok_or_else(|| {
                        Error::App(format!(
                            "group {g:?} (config.user {spec:?}) is not in the image's /etc/group"
                        ))
                    })?,
            };
        }
        _ => {
            // Supplementary groups come from /etc/group membership, as in Docker.
            if let Some(n) = name {
                groups.extend(
                    group_entries(group)
                        .filter(|e| e.members.contains(&n))
                        .map(|e| e.gid),
                );
            }
        }
    }
    groups.push(gid);
    groups.sort_unstable();
    groups.dedup();
    Ok(Identity {
        uid,
        gid,
        groups,
        home: entry.map(|p| p.home.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n\
        redis:x:100:102::/var/lib/redis:/usr/sbin/nologin\n\
        broken line\n";
    const GROUP: &str =
        "root:x:0:\nwww-data:x:33:\nredis:x:102:\nadm:x:4:redis,other\nlog:x:5:redis\n";

    #[test]
    fn empty_is_root() {
        let i = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!((i.uid, i.gid, i.groups.clone()), (0, 0, vec![0]));
        assert_eq!(i.home.as_deref(), Some("/root"));
    }

    #[test]
    fn names_and_supplementary_groups() {
        let i = resolve("redis", PASSWD, GROUP).unwrap();
        assert_eq!((i.uid, i.gid), (100, 102));
        assert_eq!(i.groups, vec![4, 5, 102]);
        let i = resolve("www-data:adm", PASSWD, GROUP).unwrap();
        assert_eq!((i.uid, i.gid, i.groups), (33, 4, vec![4]));
    }

    #[test]
    fn numbers_with_and_without_entries() {
        let i = resolve("33", PASSWD, GROUP).unwrap();
        assert_eq!((i.uid, i.gid), (33, 33));
        let i = resolve("1234", PASSWD, GROUP).unwrap();
        assert_eq!((i.uid, i.gid, i.groups, i.home), (1234, 0, vec![0], None));
        let i = resolve("1234:99", "", "").unwrap();
        assert_eq!((i.uid, i.gid), (1234, 99));
    }

    #[test]
    fn unknown_names_are_clear_errors() {
        let e = resolve("nobody", PASSWD, GROUP).unwrap_err().to_string();
        assert!(
            e.contains("user \"nobody\"") && e.contains("/etc/passwd"),
            "{e}"
        );
        let e = resolve("root:wheel", PASSWD, GROUP)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("group \"wheel\"") && e.contains("/etc/group"),
            "{e}"
        );
    }
}
