//! What the launcher sets up on the host for the child, before and right
//! after clone: the container's cgroup and its sentinel, the uid/gid maps
//! and the idmapped rootfs, and (cgroup v2) the move into the cgroup.
//!
//! Which process: the launcher, in the host's namespaces (as root, or as
//! the caller with a user namespace of its own).

use std::fs;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use super::error::{sys_err, LaunchError};
use super::narrate::narrate_parent;
use crate::runtime::cgroup::{self, Cgroup};
use crate::runtime::config::{ContainerConfig, Limits};
use crate::runtime::idmap::{idmapped_tree, IdRanges};
use crate::runtime::overlay;
use crate::runtime::plan::Step;
use crate::runtime::sentinel::Sentinel;

/// The container's cgroup `virtlab-<id>`, made before the child exists so
/// that a bad limit fails early (stale ones of dead launchers removed
/// first, unless `detached`: an OCI `create`, whose engine calls it for
/// each container, leaves that scan of every hierarchy to `run`). Only
/// root makes one; without root, limits are an error.
pub(super) fn make_cgroup(
    cfg: &ContainerConfig,
    root: bool,
    id: &str,
    detached: bool,
) -> Result<Option<Cgroup>, LaunchError> {
    if root {
        let mode = cgroup::detect(&cfg.cgroup_root)?;
        if !detached {
            cgroup::cleanup_stale(&cfg.cgroup_root, mode);
        }
        match &cfg.cgroup_path {
            Some(path) => Ok(Some(Cgroup::create_at(&cfg.cgroup_root, mode, path, &cfg.limits)?)),
            None if !cfg.device_allowlist => {
                Ok(Some(Cgroup::create_without_devices(&cfg.cgroup_root, mode, id, &cfg.limits)?))
            }
            None => Ok(Some(Cgroup::create(&cfg.cgroup_root, mode, id, &cfg.limits)?)),
        }
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
    // A user namespace joined by path has its maps already.
    let joined = crate::runtime::nsjoin::joins(&cfg.join_namespaces, crate::runtime::nsjoin::NsKind::User);
    if !cfg.namespaces.user || joined {
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
        let how = match &cfg.layers {
            Some(l) => overlay::describe(l, true),
            None => "open_tree(rootfs, OPEN_TREE_CLONE); mount_setattr(MOUNT_ATTR_IDMAP, /proc/PID/ns/user): files owned by host root appear owned by container root".to_string(),
        };
        narrate_parent(cfg, Step::UserMaps, &how);
        match idmapped_rootfs(cfg, rootfs, pid, id_ranges) {
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

/// The idmapped copy of the rootfs for the child of `pid`: the rootfs
/// directory's mount tree, or, for an image, the overlay of its idmapped
/// layers.
fn idmapped_rootfs(
    cfg: &ContainerConfig,
    rootfs: &Path,
    pid: Pid,
    ranges: Option<IdRanges>,
) -> Result<OwnedFd, String> {
    let userns = open(format!("/proc/{pid}/ns/user").as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| e.to_string())?;
    // SAFETY: open(2) returned a new fd owned by nobody else.
    let userns = unsafe { OwnedFd::from_raw_fd(userns) };
    match &cfg.layers {
        Some(layers) => {
            let r = ranges.unwrap_or_else(IdRanges::lookup);
            let idmap = overlay::IdMapped {
                userns: &userns,
                root: (r.uid.start, r.gid.start),
                count: r.uid.count.min(r.gid.count),
            };
            overlay::mount(layers, Some(idmap)).map_err(|e| e.to_string())
        }
        None => idmapped_tree(rootfs, &userns).map_err(|e| e.to_string()),
    }
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
