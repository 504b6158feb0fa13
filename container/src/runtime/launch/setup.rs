//! What the launcher sets up on the host for the child, before and right
//! after clone: the container's cgroup and its sentinel, the uid/gid maps
//! and the idmapped rootfs, and (cgroup v2) the move into the cgroup.
//!
//! Which process: the launcher, in the host's namespaces (as root, or as
//! the caller with a user namespace of its own).

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use super::error::{sys_err, LaunchError};
use super::narrate::narrate_parent;
use crate::runtime::cgroup::{self, Cgroup};
use crate::runtime::config::{ContainerConfig, Limits};
use crate::runtime::idmap::IdRanges;
use crate::runtime::plan::Step;
use crate::runtime::sentinel::Sentinel;

/// The container's cgroup `virtlab-<id>`, made before the child exists so
/// that a bad limit fails early (stale ones of dead launchers removed
/// first). Only root makes one; without root, limits are an error.
pub(super) fn make_cgroup(cfg: &ContainerConfig, root: bool, id: &str) -> Result<Option<Cgroup>, LaunchError> {
    if root {
        let mode = cgroup::detect(&cfg.cgroup_root)?;
        cgroup::cleanup_stale(&cfg.cgroup_root, mode);
        Ok(Some(Cgroup::create(&cfg.cgroup_root, mode, id, &cfg.limits)?))
    } else if cfg.limits != Limits::default() {
        Err(LaunchError::LimitsNeedRoot)
    } else {
        Ok(None)
    }
}

/// The sentinel of `cgroup`: if the launcher is killed, it kills what is
/// left of the container and removes its cgroup.
pub(super) fn start_sentinel(cgroup: Option<&Cgroup>) -> Result<Option<Sentinel>, LaunchError> {
    cgroup.map(|cg| Sentinel::start(&cg.paths()).map_err(sys_err("fork of the clean-up sentinel", ""))).transpose()
}

/// The child's user namespace as the launcher set it up.
#[derive(Debug, Default)]
pub(super) struct UserNs {
    /// The uid map written.
    pub(super) uid_map: Option<String>,
    /// The gid map written.
    pub(super) gid_map: Option<String>,
    /// The idmapped copy of the rootfs mount, for the child to attach.
    pub(super) rootfs_tree: Option<OwnedFd>,
    /// Why there is no idmapped rootfs, where there should be one.
    pub(super) warning: Option<String>,
}

/// Writes the child's maps (`setgroups` denied first): `id_ranges` as
/// root, else container root onto the caller. As root with a mount
/// namespace, also makes the idmapped rootfs. Nothing without a user
/// namespace.
pub(super) fn map_user_ns(
    cfg: &ContainerConfig,
    pid: Pid,
    id_ranges: Option<IdRanges>,
    rootfs: &Path,
) -> Result<UserNs, LaunchError> {
    let mut user_ns = UserNs::default();
    if !cfg.namespaces.user {
        return Ok(user_ns);
    }
    let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    let (um, gm) = match id_ranges {
        Some(r) => (r.uid.map_line(), r.gid.map_line()),
        None => (format!("0 {uid} 1"), format!("0 {gid} 1")),
    };
    narrate_parent(
        cfg,
        Step::UserMaps,
        &format!("write \"deny\" to /proc/{pid}/setgroups, \"{um}\" to uid_map, \"{gm}\" to gid_map"),
    );
    let proc = PathBuf::from(format!("/proc/{pid}"));
    for (file, text) in [("setgroups", "deny"), ("uid_map", um.as_str()), ("gid_map", gm.as_str())] {
        let path = proc.join(file);
        fs::write(&path, text).map_err(|source| LaunchError::Maps { path, source })?;
    }
    if id_ranges.is_some() && cfg.namespaces.mnt {
        narrate_parent(
            cfg,
            Step::UserMaps,
            "open_tree(rootfs, OPEN_TREE_CLONE); mount_setattr(MOUNT_ATTR_IDMAP, /proc/PID/ns/user): files owned by host root appear owned by container root",
        );
        match idmapped_tree(rootfs, pid) {
            Ok(tree) => user_ns.rootfs_tree = Some(tree),
            Err(e) => user_ns.warning = Some(format!(
                "the rootfs could not be given as an idmapped mount ({e}), so its files show as owned by nobody inside and container root cannot change them: idmapped mounts need Linux 5.12 or later and a file system that supports them (ext4, xfs, btrfs; tmpfs from 6.3, overlayfs from 5.19)"
            )),
        }
    }
    user_ns.uid_map = Some(um);
    user_ns.gid_map = Some(gm);
    Ok(user_ns)
}

/// A detached copy of the rootfs mount tree, idmapped through the user
/// namespace of `pid` (whose maps are written): through it a file owned by
/// host uid 0 appears owned by container root, and a file container root
/// creates is stored as uid 0. Also `nodev`: a device node planted in the
/// rootfs opens nothing. The child attaches it with move_mount(2).
fn idmapped_tree(rootfs: &Path, pid: Pid) -> Result<OwnedFd, Errno> {
    use std::os::unix::ffi::OsStrExt;
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    /// `struct mount_attr` (mount_setattr(2)).
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let userns = open(format!("/proc/{pid}/ns/user").as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    // SAFETY: open(2) returned a new fd owned by nobody else.
    let userns = unsafe { OwnedFd::from_raw_fd(userns) };
    let path = std::ffi::CString::new(rootfs.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | AT_RECURSIVE;
    // SAFETY: open_tree(2) with a NUL-terminated path and integer flags.
    let tree = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    let tree = Errno::result(tree)?;
    // SAFETY: open_tree returned a new fd owned by nobody else.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr(2) on the tree fd with an empty path, reading
    // `size_of::<MountAttr>()` bytes of the live struct above.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH as libc::c_uint) | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(r)?;
    Ok(tree)
}

/// On cgroup v2 the launcher moves the child into its cgroup (on v1 the
/// child joins itself, see `plan`). Whether it did.
pub(super) fn join_v2(cfg: &ContainerConfig, cgroup: Option<&Cgroup>, pid: Pid) -> Result<bool, LaunchError> {
    let Some(cg) = cgroup.filter(|c| !c.mode().is_v1()) else { return Ok(false) };
    let paths: Vec<String> = cg.paths().iter().map(|p| p.display().to_string()).collect();
    narrate_parent(
        cfg,
        Step::Cgroup,
        &format!("write {pid} to cgroup.procs in {} ({:?})", paths.join(", "), cfg.limits),
    );
    cg.add_process(pid.as_raw())?;
    Ok(true)
}
