//! The mount and rootfs steps: propagation made private, the rootfs
//! attached onto itself and entered, a minimal `/dev`, `/proc`, `/tmp`,
//! then pivot_root and the optional read-only root; or, without a mount
//! namespace, a chroot. (The /proc masks between `/proc` and `/tmp` are a
//! security step, see `security.rs`.)
//!
//! After [`attach_rootfs`] the child works from the rootfs directory, so
//! every path below it is relative (`dev/null`, `proc`).

use std::ffi::{CStr, CString};
use std::os::fd::RawFd;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;

use super::model::{cstr, path_c, under, Op, Ops};
use super::step::Step;
use crate::runtime::config::{ConfigError, MountSpec};
use crate::runtime::sys::Sys;

/// The device nodes of `/dev`: name, major, minor.
const DEV_NODES: [(&str, u64, u64); 6] =
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

/// The links of `/dev` into `/proc/self/fd`.
const DEV_LINKS: [(&str, &str); 4] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// Mount propagation made private (nothing mounted from here on leaks back
/// to the host), then the rootfs mounted onto itself, as pivot_root needs
/// a mount point, and entered.
pub(super) fn attach_rootfs(ops: &mut Ops, root: &CString) -> Result<(), ConfigError> {
    let flags = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
    ops.push((Step::Propagation, Op::Mount { src: None, target: cstr("/", "path")?, fstype: None, flags, data: None }));
    ops.push((Step::BindRootfs, Op::AttachRootfs(root.clone())));
    ops.push((Step::BindRootfs, Op::Chdir(root.clone())));
    Ok(())
}

/// `proc/`, `dev/`, `tmp/` made if missing, then a small tmpfs on `dev/`
/// with six nodes and the fd links. Inside a user namespace mknod is
/// refused, so the host's nodes are bound instead, which is why this runs
/// before pivot_root. `tty` is the launcher's terminal, bound to the same
/// path inside.
pub(super) fn dev(ops: &mut Ops, user_ns: bool, tty: Option<&Path>) -> Result<(), ConfigError> {
    for d in ["proc", "dev", "tmp"] {
        ops.push((Step::Dev, Op::Mkdir(under(d)?, 0o755)));
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME;
    ops.push((Step::Dev, Op::new_fs("tmpfs", under("dev")?, flags, Some("mode=755,size=64k"))?));
    dev_nodes(ops, Step::Dev, user_ns, tty)
}

/// The nodes and links of a fresh `/dev` (a tmpfs just mounted there).
fn dev_nodes(ops: &mut Ops, step: Step, user_ns: bool, tty: Option<&Path>) -> Result<(), ConfigError> {
    for (name, major, minor) in DEV_NODES {
        let path = under(&format!("dev/{name}"))?;
        if user_ns {
            // mknod is refused in a user namespace: bind the host's node.
            ops.push((step, Op::BindFile { src: cstr(format!("/dev/{name}"), "dev")?, target: path }));
        } else {
            ops.push((step, Op::Mknod { path, major, minor }));
        }
    }
    if let Some(tty) = tty.and_then(|t| t.strip_prefix("/dev/pts").ok()) {
        ops.push((step, Op::Mkdir(under("dev/pts")?, 0o755)));
        let host = Path::new("/dev/pts").join(tty);
        let inside = Path::new("dev/pts").join(tty);
        ops.push((step, Op::BindFile { src: path_c(&host, "tty")?, target: path_c(&inside, "tty")? }));
    }
    for (link, target) in DEV_LINKS {
        ops.push((step, Op::Symlink { target: cstr(target, "dev")?, link: under(&format!("dev/{link}"))? }));
    }
    Ok(())
}

/// The configuration's own list of mounts (an OCI bundle's), in order,
/// before pivot_root: each target and its parents made if missing (a file
/// for a bind mount of a file). A `tmpfs` on `/dev` gets the nodes and
/// links of [`dev`] (as runc gives a container its default devices), and
/// the inherited terminal is bound as there.
pub(super) fn listed(ops: &mut Ops, list: &[MountSpec], user_ns: bool, tty: Option<&Path>) -> Result<(), ConfigError> {
    for m in list {
        let dest = m.destination.to_string_lossy().into_owned();
        let rel = dest.trim_start_matches('/');
        if !dest.starts_with('/') || rel.is_empty() || rel.split('/').any(|c| c == ".." || c == ".") {
            return Err(ConfigError::BadMount {
                destination: dest.clone(),
                why: "it must be absolute, not /, without . or ..",
            });
        }
        let parts: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        for i in 1..parts.len() {
            ops.push((Step::Mounts, Op::Mkdir(under(&parts[..i].join("/"))?, 0o755)));
        }
        let target = under(rel)?;
        let flags = MsFlags::from_bits_truncate(m.flags);
        let bind = flags.contains(MsFlags::MS_BIND);
        let read_only_bind = bind && flags.contains(MsFlags::MS_RDONLY);
        match (&m.source, bind) {
            (Some(src), true) if src.is_file() => {
                ops.push((Step::Mounts, Op::BindFile { src: path_c(src, "mount source")?, target: target.clone() }));
            }
            _ => {
                ops.push((Step::Mounts, Op::Mkdir(target.clone(), 0o755)));
                let src = match &m.source {
                    Some(s) => Some(path_c(s, "mount source")?),
                    None => m.fstype.as_deref().map(|t| cstr(t, "mount type")).transpose()?,
                };
                let fstype =
                    if bind { None } else { m.fstype.as_deref().map(|t| cstr(t, "mount type")).transpose()? };
                let data = m.data.as_deref().map(|d| cstr(d, "mount options")).transpose()?;
                // mount(2) ignores MS_RDONLY with MS_BIND: a remount follows.
                let flags = if read_only_bind { flags - MsFlags::MS_RDONLY } else { flags };
                ops.push((Step::Mounts, Op::Mount { src, target: target.clone(), fstype, flags, data }));
            }
        }
        if read_only_bind {
            ops.push((Step::Mounts, Op::RemountReadOnly(target.clone())));
        }
        if rel == "dev" && m.fstype.as_deref() == Some("tmpfs") {
            dev_nodes(ops, Step::Mounts, user_ns, tty)?;
        }
        if rel == "dev/pts" && m.fstype.as_deref() == Some("devpts") {
            // The devpts instance's multiplexer, where programs look for it.
            ops.push((Step::Mounts, Op::Symlink { target: cstr("pts/ptmx", "dev")?, link: under("dev/ptmx")? }));
        }
    }
    Ok(())
}

/// `/proc` for the new PID namespace, mounted before pivot_root: inside a
/// user namespace the kernel allows it only while a fully visible proc
/// mount exists in the mount namespace, and the host's goes with the old root.
pub(super) fn proc(ops: &mut Ops) -> Result<(), ConfigError> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    ops.push((Step::Proc, Op::new_fs("proc", under("proc")?, flags, None)?));
    Ok(())
}

/// `/sys` as Docker mounts it: sysfs, read-only unless `writable`
/// (`--privileged`). The kernel lets a user namespace mount sysfs only
/// when it owns the network namespace too, so without one there is no
/// `/sys`. Only where the rootfs has a `sys` directory (virtlab's rootfs
/// and most images do): making one would put it into the writable layer,
/// and so into the layer of an image build's `RUN` step.
pub(super) fn sys(ops: &mut Ops, writable: bool) {
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if !writable {
        flags |= MsFlags::MS_RDONLY;
    }
    ops.push((Step::Sys, Op::Sysfs(flags)));
}

/// [`Op::Sysfs`]: sysfs on `sys`, unless the rootfs has no such directory.
pub(super) fn sysfs<S: Sys>(sys: &S, flags: MsFlags) -> Result<(), Errno> {
    let fs: &CStr = c"sysfs";
    match sys.mount(Some(fs), c"sys", Some(fs), flags, None) {
        Err(Errno::ENOENT) => Ok(()),
        r => r,
    }
}

/// `/tmp` as a tmpfs anyone may write to (sticky).
pub(super) fn tmp(ops: &mut Ops) -> Result<(), ConfigError> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    ops.push((Step::Tmp, Op::new_fs("tmpfs", under("tmp")?, flags, Some("mode=1777"))?));
    Ok(())
}

/// pivot_root(".", ".") in the rootfs (the working directory since
/// [`attach_rootfs`]), the old root detached, then the root made read-only
/// if asked, after the last mount into it.
pub(super) fn pivot_root(ops: &mut Ops, read_only: bool) -> Result<(), ConfigError> {
    ops.push((Step::PivotRoot, Op::PivotRoot));
    ops.push((Step::PivotRoot, Op::DetachOldRoot));
    ops.push((Step::PivotRoot, Op::Chdir(cstr("/", "path")?)));
    if read_only {
        ops.push((Step::ReadOnly, Op::RemountReadOnly(cstr("/", "path")?)));
    }
    Ok(())
}

/// Without a mount namespace: chroot, which can be escaped.
pub(super) fn chroot(ops: &mut Ops, root: &CString) -> Result<(), ConfigError> {
    ops.push((Step::Chroot, Op::Chroot(root.clone())));
    ops.push((Step::Chroot, Op::Chdir(cstr("/", "path")?)));
    Ok(())
}

/// [`Op::AttachRootfs`]: the idmapped tree the launcher sent, or a
/// recursive bind mount of the rootfs onto itself.
pub(super) fn attach<S: Sys>(sys: &S, root: &CStr, tree: Option<RawFd>) -> Result<(), Errno> {
    match tree {
        // The launcher made the tree private already.
        Some(tree) => sys.move_mount(tree, root),
        None => sys.mount(Some(root), root, None, MsFlags::MS_BIND | MsFlags::MS_REC, None),
    }
}

/// [`Op::BindFile`]: an empty file, then `src` bound onto it.
pub(super) fn bind_file<S: Sys>(sys: &S, src: &CStr, target: &CStr) -> Result<(), Errno> {
    sys.touch(target)?;
    sys.mount(Some(src), target, None, MsFlags::MS_BIND, None)
}

/// A bind remount read-only that keeps the flags already on the mount (a
/// user namespace may not clear nosuid, nodev, ...).
pub(super) fn remount_read_only<S: Sys>(sys: &S, path: &CStr) -> Result<(), Errno> {
    let kept = sys.mount_flags(path)?;
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | kept;
    sys.mount(None, path, None, flags, None)
}

#[cfg(test)]
mod tests {
    use crate::runtime::config::Namespaces;
    use crate::runtime::plan::fake::{cfg, host, plan_of, position, record};
    use crate::runtime::plan::model::{Plan, Received, StdioFds};
    use std::path::Path;

    #[test]
    fn an_idmapped_tree_is_attached_instead_of_a_bind_mount() {
        let calls = record(&plan_of(Namespaces::ALL), Received { rootfs_tree: Some(5), host_pid: 0 });
        assert!(position(&calls, "move_mount 5 /r") < position(&calls, "pivot_root"));
        assert!(!calls.iter().any(|c| c.starts_with("mount /r /r")), "{calls:#?}");
    }

    #[test]
    fn without_mount_namespace_it_is_a_chroot() {
        let calls = record(&plan_of(Namespaces::parse("pid").unwrap()), Received::default());
        assert!(position(&calls, "chroot /r") < position(&calls, "execve"));
        assert!(!calls.iter().any(|c| c.starts_with("mount") || c.starts_with("pivot_root")));
        assert!(!calls.iter().any(|c| c.starts_with("sethostname") || c.starts_with("loopback")));
        let mut ro = cfg(Namespaces::parse("pid").unwrap());
        ro.read_only = true;
        assert!(Plan::build(&ro, Path::new("/r"), StdioFds::default(), &[], host()).is_err());
    }

    #[test]
    fn mount_namespace_without_user_namespace_makes_device_nodes() {
        let calls = record(&plan_of(Namespaces::parse("mnt,pid").unwrap()), Received::default());
        assert!(calls.contains(&"mknod dev/null 1:3".to_string()));
        assert!(calls.contains(&"mknod dev/tty 5:0".to_string()));
        assert!(!calls.iter().any(|c| c.contains("/dev/pts")), "no terminal, no pts bind");
    }

    #[test]
    fn the_inherited_terminal_is_bound_to_the_same_path() {
        let stdio = StdioFds { tty: Some("/dev/pts/3".into()), ..Default::default() };
        let plan = Plan::build(&cfg(Namespaces::ALL), Path::new("/r"), stdio, &[], host()).unwrap();
        let calls = record(&plan, Received::default());
        let bind = position(&calls, "mount /dev/pts/3 dev/pts/3");
        assert!(position(&calls, "mkdir dev/pts") < bind);
        assert!(bind < position(&calls, "pivot_root"));
    }

    #[test]
    fn a_bundles_mounts_replace_virtlabs_and_the_process_waits_for_start() {
        use crate::runtime::config::MountSpec;
        use nix::mount::MsFlags;
        let spec =
            |dest: &str, fstype: Option<&str>, source: Option<&str>, flags: MsFlags, data: Option<&str>| MountSpec {
                destination: dest.into(),
                fstype: fstype.map(String::from),
                source: source.map(Into::into),
                flags: flags.bits(),
                data: data.map(String::from),
            };
        let mut c = cfg(Namespaces::parse("mnt,pid").unwrap());
        c.mounts = Some(vec![
            spec("/dev", Some("tmpfs"), None, MsFlags::MS_NOSUID, Some("mode=755")),
            spec("/dev/pts", Some("devpts"), None, MsFlags::empty(), Some("newinstance")),
            spec("/srv/data", None, Some("/"), MsFlags::MS_BIND | MsFlags::MS_RDONLY, None),
        ]);
        let h = crate::runtime::plan::model::PlanHost { await_start: Some(9), ..host() };
        let plan = Plan::build(&c, Path::new("/r"), StdioFds::default(), &[], h).unwrap();
        let calls = record(&plan, Received::default());
        assert!(position(&calls, "mount tmpfs dev tmpfs") < position(&calls, "mknod dev/null 1:3"));
        assert!(position(&calls, "mount devpts dev/pts devpts") < position(&calls, "symlink dev/ptmx pts/ptmx"));
        // Parents first; a read-only bind is bound, then remounted.
        assert!(position(&calls, "mkdir srv") < position(&calls, "mkdir srv/data"));
        assert!(position(&calls, "mount / srv/data NULL") < position(&calls, "mount NULL srv/data NULL,ro"));
        assert!(!calls.iter().any(|c| c.starts_with("mount tmpfs tmp ")), "no /tmp of virtlab's: {calls:#?}");
        // The wait for `start` comes last, right before execve.
        assert!(position(&calls, "chdir /") < position(&calls, "await_start 9"));
        assert!(position(&calls, "await_start 9") < position(&calls, "execve"));
    }
}
