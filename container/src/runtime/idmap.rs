//! Which host ids the container's ids stand for.
//!
//! In a user namespace, root inside is an ordinary id outside. A launcher
//! that is root could map container root to host root (`0 0 65536`), but
//! then every check the host kernel makes on an object outside the
//! container's own namespaces (a `/proc/sys` file, a host keyring, a device
//! node) sees uid 0: container root *is* host root there. So container ids
//! map onto an unprivileged range instead, as Docker's `userns-remap` and
//! rootless podman do:
//!
//! - the `virtlab` entries of `/etc/subuid` and `/etc/subgid` (subuid(5)),
//!   when present: `virtlab:1073741824:65536` maps container ids 0-65535
//!   onto host ids 1073741824-1073807359;
//! - otherwise [`DEFAULT_START`], a range far above the ones `useradd`
//!   hands out (from 100000 up, 65536 each) and inside the span systemd
//!   documents for container ids (524288-1879048191).
//!
//! A launcher that is not root can only map container root onto itself
//! (`0 <uid> 1`), which is no privilege it did not already have.
//!
//! Files of the rootfs are owned by host ids (usually 0); seen through the
//! mapping they would belong to no one inside. The launcher therefore gives
//! the container an *idmapped mount* of the rootfs (mount_setattr(2)
//! `MOUNT_ATTR_IDMAP`, Linux 5.12; overlayfs 5.19): through it a file owned
//! by host uid 0 appears owned by container root, and a file container
//! root creates is stored as uid 0. Where the kernel or the file system
//! cannot do that, the rootfs is bind-mounted as it is, and its files show
//! as `nobody` inside: readable and runnable where their mode allows it,
//! not writable by container root.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

/// The first host id of the built-in range (2^30).
pub const DEFAULT_START: u32 = 1 << 30;

/// How many ids the container gets: 0-65535, the ids a Linux distribution
/// uses (65534 is `nobody`).
pub const DEFAULT_COUNT: u32 = 65536;

/// The user whose subordinate ranges virtlab uses.
pub const SUBID_USER: &str = "virtlab";

/// A contiguous range of host ids: container id `n` is host id `start + n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct IdRange {
    /// The host id of container id 0.
    pub start: u32,
    /// How many ids.
    pub count: u32,
}

impl IdRange {
    /// The line for /proc/PID/uid_map or gid_map.
    pub fn map_line(&self) -> String {
        format!("0 {} {}", self.start, self.count)
    }

    /// Whether container id `id` has a host id.
    pub fn contains(&self, id: u32) -> bool {
        id < self.count
    }
}

/// The uid and gid ranges of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct IdRanges {
    /// User ids.
    pub uid: IdRange,
    /// Group ids.
    pub gid: IdRange,
    /// Where they came from: `/etc/subuid` or `built-in`.
    pub source: &'static str,
}

impl IdRanges {
    /// The built-in range for both users and groups.
    pub const DEFAULT: IdRanges = IdRanges {
        uid: IdRange { start: DEFAULT_START, count: DEFAULT_COUNT },
        gid: IdRange { start: DEFAULT_START, count: DEFAULT_COUNT },
        source: "built-in",
    };

    /// The `virtlab` entries of /etc/subuid and /etc/subgid when both exist,
    /// else [`IdRanges::DEFAULT`].
    pub fn lookup() -> IdRanges {
        Self::lookup_in(Path::new("/etc/subuid"), Path::new("/etc/subgid"))
    }

    /// [`IdRanges::lookup`] with other files (for tests).
    pub fn lookup_in(subuid: &Path, subgid: &Path) -> IdRanges {
        let read = |p: &Path| std::fs::read_to_string(p).ok().and_then(|t| parse_subid(&t, SUBID_USER));
        match (read(subuid), read(subgid)) {
            (Some(uid), Some(gid)) => IdRanges { uid, gid, source: "/etc/subuid" },
            _ => IdRanges::DEFAULT,
        }
    }
}

/// The first range of `user` in a subuid(5)/subgid(5) text (`name:start:count`
/// lines; `#` comments). Ranges that would wrap past 2^32-1 or that include
/// host id 0 are ignored: container root must never be host root.
pub fn parse_subid(text: &str, user: &str) -> Option<IdRange> {
    text.lines().map(str::trim).filter(|l| !l.starts_with('#')).find_map(|l| {
        let mut f = l.split(':');
        if f.next()? != user {
            return None;
        }
        let start: u32 = f.next()?.trim().parse().ok()?;
        let count: u32 = f.next()?.trim().parse().ok()?;
        let fits = count > 0 && start > 0 && start.checked_add(count).is_some();
        fits.then_some(IdRange { start, count: count.min(DEFAULT_COUNT) })
    })
}

/// A detached copy of the mount tree at `path`, idmapped through the user
/// namespace `userns` (whose maps are written): through it a file owned by
/// host uid 0 appears owned by container root, and a file container root
/// creates is stored as uid 0. Also `nodev`: a device node planted there
/// opens nothing. The child attaches it with move_mount(2).
pub(crate) fn idmapped_tree(path: &Path, userns: &OwnedFd) -> Result<OwnedFd, Errno> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    /// `struct mount_attr` (mount_setattr(2)).
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subid_lines() {
        let t = "# comment\nalice:100000:65536\nvirtlab:200000:70000\nvirtlab:1:1\n";
        assert_eq!(parse_subid(t, "virtlab"), Some(IdRange { start: 200000, count: 65536 }));
        assert_eq!(parse_subid(t, "alice"), Some(IdRange { start: 100000, count: 65536 }));
        assert_eq!(parse_subid(t, "bob"), None);
        assert_eq!(parse_subid("virtlab:0:65536\n", "virtlab"), None, "host root is never in the range");
        assert_eq!(parse_subid("virtlab:4294967000:65536\n", "virtlab"), None, "wraps");
        assert_eq!(parse_subid("virtlab:x:1\n", "virtlab"), None);
        assert_eq!(IdRange { start: 7, count: 3 }.map_line(), "0 7 3");
        assert!(IdRanges::DEFAULT.uid.contains(65535) && !IdRanges::DEFAULT.uid.contains(65536));
    }

    #[test]
    fn lookup_needs_both_files() {
        let d = tempfile::tempdir().unwrap();
        let (u, g) = (d.path().join("subuid"), d.path().join("subgid"));
        assert_eq!(IdRanges::lookup_in(&u, &g), IdRanges::DEFAULT);
        std::fs::write(&u, "virtlab:300000:65536\n").unwrap();
        assert_eq!(IdRanges::lookup_in(&u, &g), IdRanges::DEFAULT);
        std::fs::write(&g, "virtlab:400000:65536\n").unwrap();
        let r = IdRanges::lookup_in(&u, &g);
        assert_eq!((r.uid.start, r.gid.start, r.source), (300000, 400000, "/etc/subuid"));
    }
}
