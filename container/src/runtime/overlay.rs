//! A root file system stacked from image layers with overlayfs.
//!
//! An image's layers are read-only directories, shared by every container
//! of every image that has them. A container gets a writable directory of
//! its own (`upper`) on top; overlayfs shows the stack as one tree, copies
//! a file up into `upper` when the container changes it, and records a
//! deletion as a whiteout there. The layers never change.
//!
//! The overlay is made with the new mount API (fsopen(2), fsconfig(2),
//! fsmount(2)) as a **detached** mount: it is never visible on the host,
//! goes to the container as a file descriptor like the idmapped rootfs does,
//! and vanishes with the last descriptor, so a killed launcher leaves no
//! mount behind.
//!
//! With a user namespace, each image layer is first given as an idmapped
//! mount (open_tree(2) + mount_setattr(2)) and overlayfs stacks those: the
//! layers' files, owned by host root on disk and shared with every other
//! container, appear owned by container root. (overlayfs cannot idmap its
//! own mount, but since Linux 5.19 it takes idmapped layers.) The upper
//! directory is the container's alone, so it is not idmapped but simply
//! owned by container root's host ids: overlayfs works in it with the
//! launcher's credentials (host root), which an idmapped upper layer could
//! not represent (`EOVERFLOW`), and what the container writes is stored
//! under its own host ids, never as host root.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::runtime::idmap::idmapped_tree;

/// The directories a layered root file system is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayeredRootfs {
    /// The image's layers, **top first** (overlayfs's `lowerdir` order).
    pub lower: Vec<PathBuf>,
    /// The container's own directory, holding `upper/` (its writable
    /// layer) and `work/` (overlayfs's scratch space, on the same file
    /// system). Both are made if missing.
    pub dir: PathBuf,
}

impl LayeredRootfs {
    /// The writable layer (`DIR/upper`).
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    /// overlayfs's work directory (`DIR/work`).
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
}

/// Why the overlay could not be made: the call, its errno, and what the
/// kernel said about it (fsconfig(2) error messages), if anything.
#[derive(Debug, thiserror::Error)]
#[error("{call} failed: {errno}{}", if detail.is_empty() { String::new() } else { format!(" ({detail})") })]
pub struct OverlayError {
    pub call: String,
    pub errno: Errno,
    pub detail: String,
}

fn failed(call: impl Into<String>, errno: Errno) -> OverlayError {
    OverlayError { call: call.into(), errno, detail: String::new() }
}

/// Container root's host ids and its user namespace, for a stack seen
/// from inside a user namespace.
#[derive(Debug, Clone, Copy)]
pub struct IdMapped<'a> {
    /// An fd of the container's user namespace (its maps written).
    pub userns: &'a OwnedFd,
    /// The host uid and gid of container root.
    pub root: (u32, u32),
    /// How many ids the namespace maps.
    pub count: u32,
}

/// Mounts the stack as a detached overlay and returns its mount fd. With
/// `idmap`, the layers are idmapped through the container's user namespace
/// and the upper directory is given to container root's host ids.
pub fn mount(layers: &LayeredRootfs, idmap: Option<IdMapped<'_>>) -> Result<OwnedFd, OverlayError> {
    let io = |what: String| move |e: std::io::Error| failed(what, Errno::from_raw(e.raw_os_error().unwrap_or(0)));
    for dir in [layers.upper(), layers.work()] {
        std::fs::create_dir_all(&dir).map_err(io(format!("mkdir {}", dir.display())))?;
    }
    // Keep every tree fd alive until the overlay is made: the layers are
    // named to overlayfs as /proc/self/fd/N.
    let mut keep: Vec<OwnedFd> = Vec::new();
    // Each layer is named by a short /proc/self/fd path: fsconfig(2) takes
    // strings of at most 255 bytes, which a few long store paths exceed.
    let mut lower = Vec::new();
    for layer in &layers.lower {
        let tree = match idmap {
            Some(m) => {
                idmapped_tree(layer, m.userns).map_err(|e| failed(format!("idmapping {}", layer.display()), e))?
            }
            None => open_path(layer)?,
        };
        lower.push(format!("/proc/self/fd/{}", tree.as_raw_fd()));
        keep.push(tree);
    }
    if let Some(m) = idmap {
        give_to(&layers.upper(), m.root, m.count)
            .map_err(io(format!("give {} to container root", layers.upper().display())))?;
    }
    let fs = fsopen()?;
    let upper = layers.upper().display().to_string();
    let work = layers.work().display().to_string();
    // One layer at a time (`lowerdir+`, Linux 6.8), or, on older kernels,
    // the whole list at once.
    let mut one_by_one = true;
    for (n, layer) in lower.iter().enumerate() {
        match fsconfig_string(&fs, "lowerdir+", layer) {
            Ok(()) => {}
            Err(e) if n == 0 && e.errno == Errno::EINVAL => {
                one_by_one = false;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    if !one_by_one {
        fsconfig_string(&fs, "lowerdir", &lower.join(":"))?;
    }
    for (key, value) in [("upperdir", upper), ("workdir", work)] {
        fsconfig_string(&fs, key, &value)?;
    }
    fsconfig_create(&fs)?;
    let mnt = fsmount(&fs)?;
    drop(keep);
    Ok(mnt)
}

/// An `O_PATH` descriptor of directory `dir`.
fn open_path(dir: &Path) -> Result<OwnedFd, OverlayError> {
    use nix::fcntl::{open, OFlag};
    let fd = open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
        .map_err(|e| failed(format!("open the layer {}", dir.display()), e))?;
    // SAFETY: open(2) returned a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Shifts the owners of `dir` and everything in it that is owned by an
/// unshifted id (below `count`: made by the launcher or the image tools,
/// as host root) to the container's host ids, `root` being container root.
fn give_to(dir: &Path, root: (u32, u32), count: u32) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir)?;
    let shift = |id: u32, base: u32| if id < count { base + id } else { id };
    if meta.uid() < count || meta.gid() < count {
        std::os::unix::fs::lchown(dir, Some(shift(meta.uid(), root.0)), Some(shift(meta.gid(), root.1)))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            give_to(&entry?.path(), root, count)?;
        }
    }
    Ok(())
}

/// What [`mount`] does, in words and calls, for `--explain`.
pub fn describe(layers: &LayeredRootfs, idmapped: bool) -> String {
    let lower: Vec<String> = layers.lower.iter().map(|l| l.display().to_string()).collect();
    let idmap = if idmapped {
        format!("open_tree + mount_setattr(MOUNT_ATTR_IDMAP) on each of the {} layers, so host root's files appear as container root's; chown {} to container root's host ids; then ", lower.len(), layers.upper().display())
    } else {
        String::new()
    };
    format!(
        "{idmap}fsopen(\"overlay\"), fsconfig lowerdir={} (read-only image layers, top first), upperdir={} (this container's writable layer), workdir={}, fsmount: one detached tree, the image's layers stacked",
        lower.join(":"),
        layers.upper().display(),
        layers.work().display()
    )
}

const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;

fn fsopen() -> Result<OwnedFd, OverlayError> {
    // SAFETY: fsopen(2) with a NUL-terminated name and integer flags.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), 1 as libc::c_uint) };
    let fd = Errno::result(fd).map_err(|e| failed("fsopen(\"overlay\") (is the overlay module available?)", e))?;
    // SAFETY: fsopen returned a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// What the kernel logged on the fs context (`e overlay: ...` lines).
fn kernel_says(fs: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        // SAFETY: read(2) into a live buffer of its length.
        let n = unsafe { libc::read(fs.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.push(String::from_utf8_lossy(&buf[..n as usize]).trim().to_string());
    }
    out.join("; ")
}

fn fsconfig_string(fs: &OwnedFd, key: &str, value: &str) -> Result<(), OverlayError> {
    let k = CString::new(key).map_err(|_| failed(format!("fsconfig {key}"), Errno::EINVAL))?;
    let v = CString::new(value).map_err(|_| failed(format!("fsconfig {key}"), Errno::EINVAL))?;
    // SAFETY: fsconfig(2) with NUL-terminated key and value.
    let r =
        unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), FSCONFIG_SET_STRING, k.as_ptr(), v.as_ptr(), 0) };
    Errno::result(r).map(drop).map_err(|e| OverlayError {
        call: format!("fsconfig({key}={value})"),
        errno: e,
        detail: kernel_says(fs),
    })
}

fn fsconfig_create(fs: &OwnedFd) -> Result<(), OverlayError> {
    // SAFETY: fsconfig(2) CMD_CREATE takes no key or value.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    Errno::result(r).map(drop).map_err(|e| OverlayError {
        call: "fsconfig(CMD_CREATE) of the overlay".into(),
        errno: e,
        detail: kernel_says(fs),
    })
}

fn fsmount(fs: &OwnedFd) -> Result<OwnedFd, OverlayError> {
    // SAFETY: fsmount(2) on a created fs context; FSMOUNT_CLOEXEC and nodev.
    let fd = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), 1 as libc::c_uint, MOUNT_ATTR_NODEV) };
    let fd = Errno::result(fd).map_err(|e| OverlayError {
        call: "fsmount of the overlay".into(),
        errno: e,
        detail: kernel_says(fs),
    })?;
    // SAFETY: fsmount returned a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}
