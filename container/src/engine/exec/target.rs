//! Where a running container is, as its first process shows it on the
//! host: the namespaces to join (`/proc/PID/ns/*`), the cgroups
//! (`/proc/PID/cgroup`, found under the mounts of `/proc/self/mountinfo`),
//! and what the new process must have too (`/proc/PID/status`: the
//! capability bounding set, the seccomp mode; the id maps).

use std::fs::{self, File};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{ExecError, ExecSpec};
use crate::engine::container::Container;
use crate::runtime::config::{ContainerConfig, Namespaces, User};
use crate::runtime::plan::{cap, default_cap_mask, last_cap, PlanHost};
use crate::runtime::seccomp;

/// The namespaces a process can join, in the order the joiner joins them
/// (the user namespace, last, apart), with their setns(2) types.
///
/// setns(2) asks for `CAP_SYS_ADMIN` over the namespace joined (in the
/// user namespace that owns it) and, for mnt and pid, in the caller's own
/// user namespace too. Host root has every capability in the host's user
/// namespace, and so over every namespace below it: the joiner joins the
/// others first, each check made against host root, then the user
/// namespace. The other order also works for virtlab's containers (tried:
/// same PID, hostname, capabilities and root either way), because the
/// container's user namespace owns all its other namespaces and setns(user)
/// gives every capability inside it; but it would fail for a namespace of
/// the container's that the host's user namespace owns (one a runtime
/// shared from elsewhere), where the joiner, already inside, would no
/// longer be privileged. nsenter(1) orders them the same way for a
/// privileged caller. `mnt` comes last of the others: from there on the
/// joiner's root and working directory are the container's (setns(2) puts
/// them at the root the container pivoted to), and every file it needs is
/// open already.
pub(super) const NAMESPACES: [(&str, libc::c_int); 6] = [
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("pid", libc::CLONE_NEWPID),
    ("mnt", libc::CLONE_NEWNS),
];

/// Where the container is, as its first process shows it: what to join,
/// and what that process has that the new one must have too.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) pid: i32,
    /// The namespaces that differ from the caller's, an index into
    /// [`NAMESPACES`] each, with the open `/proc/PID/ns/NAME`.
    pub(super) namespaces: Vec<(usize, OwnedFd)>,
    /// Its user namespace, if it differs from the caller's.
    pub(super) user_ns: Option<OwnedFd>,
    /// Each cgroup of its that differs from the caller's: the `tasks` (v1)
    /// or `cgroup.procs` (v2) file, open for writing.
    pub(super) cgroups: Vec<(PathBuf, OwnedFd)>,
    /// Its capability bounding set (CapBnd).
    pub(super) bounding: u64,
    /// It runs under a seccomp filter (Seccomp: 2).
    pub(super) seccomp: bool,
}

impl Target {
    /// Opens what a new process of the container `pid` joins.
    pub(super) fn open(pid: i32) -> Result<Target, ExecError> {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let mut namespaces = Vec::new();
        for (i, (name, _)) in NAMESPACES.iter().enumerate() {
            if let Some(fd) = open_if_other(&proc, name)? {
                namespaces.push((i, fd));
            }
        }
        let user_ns = open_if_other(&proc, "user")?;
        let status = read(&proc.join("status"))?;
        let bounding = status_field(&status, "CapBnd").and_then(|v| u64::from_str_radix(v, 16).ok()).unwrap_or(0);
        let seccomp = status_field(&status, "Seccomp") == Some("2");
        let (theirs, ours) = (read(&proc.join("cgroup"))?, read(Path::new("/proc/self/cgroup"))?);
        let mountinfo = read(Path::new("/proc/self/mountinfo"))?;
        let mut cgroups = Vec::new();
        for dir in cgroup_dirs(&theirs, &ours, &mountinfo)? {
            let path = dir.path.join(if dir.v2 { "cgroup.procs" } else { "tasks" });
            let f = fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|source| ExecError::Cgroup { path: path.clone(), source })?;
            cgroups.push((path, OwnedFd::from(f)));
        }
        Ok(Target { pid, namespaces, user_ns, cgroups, bounding, seccomp })
    }

    /// The configuration of the new process: the container's environment,
    /// working directory, user and hostname, changed by `spec`.
    pub(super) fn config(&self, c: &Container, spec: &ExecSpec) -> Result<ContainerConfig, ExecError> {
        let s = &c.config.spec;
        let mut cfg = ContainerConfig::new("/", spec.argv.clone());
        cfg.namespaces = Namespaces { user: self.user_ns.is_some(), ..Namespaces::NONE };
        if let Some(h) = &s.hostname {
            cfg.hostname = h.clone();
        }
        cfg.env = s.env.clone();
        for (k, v) in &spec.env {
            cfg.env.retain(|(ek, _)| ek != k);
            cfg.env.push((k.clone(), v.clone()));
        }
        cfg.workdir = PathBuf::from(spec.workdir.as_deref().unwrap_or(&s.workdir));
        s.defences().and_then(|d| d.apply(&mut cfg)).map_err(|e| ExecError::Defences(e.to_string()))?;
        cfg.user = spec.user.as_deref().or(s.user.as_deref()).map(User::parse).transpose()?;
        if let (Some(u), Some(_)) = (cfg.user, &self.user_ns) {
            for (what, id) in [("uid", u.uid), ("gid", u.gid)] {
                let count = mapped_from_zero(&read(&PathBuf::from(format!("/proc/{}/{what}_map", self.pid)))?);
                if u64::from(id) >= count {
                    return Err(ExecError::IdNotMapped { what, id, count });
                }
            }
        }
        Ok(cfg)
    }

    /// What the plan needs of the host: the same capability set and
    /// seccomp filter as the container's first process (`cfg`, from
    /// [`Target::config`], has the container's `--cap-add`, `--cap-drop`,
    /// `--privileged` and `--security-opt`). The launcher kept `CAP_MKNOD`
    /// exactly when a devices allowlist confined the container, so the
    /// bounding set says whether there is one.
    pub(super) fn plan_host(&self, cfg: &ContainerConfig) -> Result<PlanHost, ExecError> {
        let program = match seccomp::for_config(cfg)? {
            Some(p) => Some(p),
            None if self.seccomp => Some(seccomp::default_program()?),
            None => None,
        };
        let host = PlanHost {
            await_start: None,
            last_cap: last_cap(),
            devices_allowlist: self.bounding & (1 << cap::MKNOD) != 0,
            seccomp: if self.seccomp { program } else { None },
        };
        let kept = cfg.capabilities.unwrap_or_else(default_cap_mask);
        let expected = kept & !(if host.devices_allowlist { 0 } else { 1 << cap::MKNOD });
        if self.bounding != expected {
            return Err(ExecError::Capabilities { found: self.bounding, expected });
        }
        Ok(host)
    }
}

/// `/proc/PID/ns/NAME` open, if it is not the caller's own namespace.
fn open_if_other(proc: &Path, name: &str) -> Result<Option<OwnedFd>, ExecError> {
    let path = proc.join("ns").join(name);
    let f = File::open(&path).map_err(|source| ExecError::Namespace { path: path.clone(), source })?;
    let theirs = f.metadata().map_err(|source| ExecError::Namespace { path: path.clone(), source })?;
    let ours = fs::metadata(Path::new("/proc/self/ns").join(name))
        .map_err(|source| ExecError::Read { path: format!("/proc/self/ns/{name}").into(), source })?;
    let other = (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino());
    Ok(other.then(|| OwnedFd::from(f)))
}

fn read(path: &Path) -> Result<String, ExecError> {
    fs::read_to_string(path).map_err(|source| ExecError::Read { path: path.to_path_buf(), source })
}

/// The value of `Key:` in /proc/PID/status.
fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).map(str::trim)
}

/// How many ids from 0 up a uid_map or gid_map maps without a gap.
fn mapped_from_zero(map: &str) -> u64 {
    let mut ranges: Vec<(u64, u64)> = map
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace().map(|n| n.parse::<u64>().ok());
            let inside = w.next()??;
            let _outside = w.next()??;
            Some((inside, w.next()??))
        })
        .collect();
    ranges.sort_unstable();
    let mut end = 0;
    for (start, count) in ranges {
        if start > end {
            break;
        }
        end = end.max(start + count);
    }
    end
}

/// A cgroup directory to join.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupDir {
    path: PathBuf,
    /// A cgroup2 hierarchy (joined through `cgroup.procs`, v1 ones through `tasks`).
    v2: bool,
}

/// The directories of the cgroups that `theirs` (a /proc/PID/cgroup)
/// names where `ours` (the caller's) differs, found among the cgroup
/// mounts of `mountinfo`. A line is `ID:CONTROLLERS:PATH` (no controllers
/// for cgroup2), the path relative to the cgroup namespace of the reader,
/// the caller, as are the roots of its mounts.
fn cgroup_dirs(theirs: &str, ours: &str, mountinfo: &str) -> Result<Vec<CgroupDir>, ExecError> {
    let mounts = cgroup_mounts(mountinfo);
    let mut dirs = Vec::new();
    for line in theirs.lines().filter(|l| !l.is_empty() && !ours.lines().any(|o| o == *l)) {
        let not_mounted = || ExecError::CgroupNotMounted { line: line.to_string() };
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(id), Some(c), Some(p)) => (id, c, p),
            _ => return Err(not_mounted()),
        };
        let v2 = controllers.is_empty();
        let dir = mounts
            .iter()
            .filter(|m| m.v2 == v2 && controllers.split(',').all(|c| v2 || m.options.split(',').any(|o| o == c)))
            .find_map(|m| {
                let rel = if m.root == "/" { Some(path) } else { path.strip_prefix(m.root) };
                rel.filter(|r| r.is_empty() || r.starts_with('/'))
                    .map(|r| Path::new(m.point).join(r.trim_start_matches('/')))
            })
            .ok_or_else(not_mounted)?;
        dirs.push(CgroupDir { path: dir, v2 });
    }
    Ok(dirs)
}

/// A cgroup file system mount, from /proc/self/mountinfo.
#[derive(Debug)]
struct CgroupMount<'a> {
    root: &'a str,
    point: &'a str,
    v2: bool,
    /// The super options: a v1 mount's controllers are among them.
    options: &'a str,
}

/// The cgroup and cgroup2 mounts of `mountinfo` (proc(5): `ID PARENT
/// MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER_OPTIONS`).
fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount<'_>> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|w| *w == "-")?;
            let (root, point) = (*f.get(3)?, *f.get(4)?);
            let (kind, options) = (*f.get(dash + 1)?, *f.get(dash + 3)?);
            match kind {
                "cgroup" => Some(CgroupMount { root, point, v2: false, options }),
                "cgroup2" => Some(CgroupMount { root, point, v2: true, options }),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 1 259:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 25 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/memory rw,nosuid shared:12 - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:13 - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/pids rw,nosuid shared:14 - cgroup cgroup rw,pids
";

    #[test]
    fn the_cgroups_to_join_are_those_that_differ_found_under_their_mounts() {
        let ours = "9:name=systemd:/\n4:memory:/user.slice\n2:cpu,cpuacct:/\n8:pids:/\n0::/\n";
        let theirs = "9:name=systemd:/\n4:memory:/virtlab-7-0\n2:cpu,cpuacct:/virtlab-7-0\n8:pids:/virtlab-7-0\n0::/\n";
        let dirs = cgroup_dirs(theirs, ours, MOUNTINFO).unwrap();
        let paths: Vec<&Path> = dirs.iter().map(|d| d.path.as_path()).collect();
        assert_eq!(
            paths,
            [
                Path::new("/sys/fs/cgroup/memory/virtlab-7-0"),
                Path::new("/sys/fs/cgroup/cpu,cpuacct/virtlab-7-0"),
                Path::new("/sys/fs/cgroup/pids/virtlab-7-0"),
            ]
        );
        assert!(dirs.iter().all(|d| !d.v2));
        // cgroup2: no controllers in the line.
        let dirs = cgroup_dirs("0::/virtlab-7-0\n", "0::/\n", MOUNTINFO).unwrap();
        assert_eq!(dirs, [CgroupDir { path: "/sys/fs/cgroup/unified/virtlab-7-0".into(), v2: true }]);
        // A hierarchy nobody mounted cannot be joined: an error, not a skip.
        let e = cgroup_dirs("5:devices:/virtlab-7-0\n", "5:devices:/\n", MOUNTINFO).unwrap_err();
        assert!(matches!(e, ExecError::CgroupNotMounted { .. }), "{e}");
        // A mount of a subtree (made inside a cgroup namespace) serves the paths below it.
        let sub = "40 25 0:33 /lab /mnt/mem rw - cgroup cgroup rw,memory\n";
        let dirs = cgroup_dirs("4:memory:/lab/virtlab-7-0\n", "", sub).unwrap();
        assert_eq!(dirs[0].path, Path::new("/mnt/mem/virtlab-7-0"));
        assert!(cgroup_dirs("4:memory:/laboratory\n", "", sub).is_err(), "/laboratory is not below /lab");
    }

    #[test]
    fn status_fields_and_id_maps() {
        let status = "Name:\tsleep\nCapBnd:\t00000000a80425fb\nSeccomp:\t2\nSeccomp_filters:\t1\n";
        assert_eq!(status_field(status, "CapBnd"), Some("00000000a80425fb"));
        assert_eq!(status_field(status, "Seccomp"), Some("2"));
        assert_eq!(status_field(status, "NoNewPrivs"), None);
        assert_eq!(mapped_from_zero("         0 1073741824      65536\n"), 65536);
        assert_eq!(mapped_from_zero("0 1000 1\n1 100000 65536\n"), 65537);
        assert_eq!(mapped_from_zero("5 1000 1\n"), 0, "0 is not mapped");
    }
}
