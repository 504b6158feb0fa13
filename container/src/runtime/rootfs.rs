//! Root file systems: a directory with the workload (and busybox-static
//! when the host has it), which is all a container needs. No OS: the
//! container runs on the host's kernel.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the workload sits inside every rootfs built here.
pub const WORKLOAD_PATH: &str = "/virtlab-workload";

/// Bumped whenever [`build`] lays a rootfs out differently, so that the
/// cached built-in rootfs is rebuilt.
const LAYOUT_VERSION: u32 = 3;

/// Where busybox-static is looked for on the host.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// Errors of rootfs building.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A file or directory could not be made.
    #[error("cannot write {path} while building the rootfs")]
    Write {
        /// What was being written.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The workload could not be put on disk.
    #[error("cannot get the workload binary")]
    Workload(#[from] virtlab_workload::WorkloadError),
    /// busybox is not a static binary, so it would not run in the rootfs.
    #[error("{path} is dynamically linked (loader {interp}): install busybox-static")]
    BusyboxNotStatic {
        /// The busybox found.
        path: PathBuf,
        /// Its loader.
        interp: String,
    },
    /// `busybox --list` failed.
    #[error("cannot list the applets of {path}")]
    BusyboxList {
        /// The busybox.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// What [`build`] put in a rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsReport {
    /// The directory.
    pub dir: PathBuf,
    /// busybox applets linked in (empty without busybox).
    pub applets: usize,
    /// Whether busybox is in.
    pub busybox: bool,
}

/// The host's busybox, if installed.
pub fn host_busybox() -> Option<PathBuf> {
    let p = Path::new(HOST_BUSYBOX);
    p.is_file().then(|| p.to_path_buf())
}

fn w<T>(path: &Path, r: io::Result<T>) -> Result<T, RootfsError> {
    r.map_err(|source| RootfsError::Write { path: path.to_path_buf(), source })
}

/// Builds a rootfs in `dir` (created if needed): `/virtlab-workload`,
/// `/bin`, `/proc`, `/dev`, `/sys`, `/tmp`, `/mnt`, a minimal `/etc`, and, when `busybox`
/// is given, `/bin/busybox` with a link for each applet.
pub fn build(dir: &Path, busybox: Option<&Path>) -> Result<RootfsReport, RootfsError> {
    for d in ["bin", "sbin", "usr/bin", "etc", "proc", "dev", "sys", "tmp", "root", "mnt"] {
        let p = dir.join(d);
        w(&p, fs::create_dir_all(&p))?;
    }
    let tmp = dir.join("tmp");
    w(&tmp, fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)))?;
    let wl = dir.join(WORKLOAD_PATH.trim_start_matches('/'));
    w(&wl, fs::write(&wl, virtlab_workload::ELF))?;
    w(&wl, fs::set_permissions(&wl, fs::Permissions::from_mode(0o755)))?;
    link(dir, "../virtlab-workload", "bin/virtlab-workload")?;
    let files = [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ("etc/hostname", "virtlab\n"),
        (
            "etc/os-release",
            "NAME=\"virtlab rootfs\"\nID=virtlab\nPRETTY_NAME=\"virtlab rootfs (no OS: the host's kernel)\"\n",
        ),
    ];
    for (f, text) in files {
        let p = dir.join(f);
        w(&p, fs::write(&p, text))?;
    }
    let mut applets = 0;
    if let Some(bb) = busybox {
        if let Some(interp) = crate::runtime::launch::elf_interp(bb) {
            return Err(RootfsError::BusyboxNotStatic { path: bb.to_path_buf(), interp });
        }
        let target = dir.join("bin/busybox");
        w(&target, fs::copy(bb, &target))?;
        w(&target, fs::set_permissions(&target, fs::Permissions::from_mode(0o755)))?;
        let out = std::process::Command::new(bb)
            .arg("--list")
            .output()
            .map_err(|source| RootfsError::BusyboxList { path: bb.to_path_buf(), source })?;
        for name in String::from_utf8_lossy(&out.stdout).lines().map(str::trim) {
            if name.is_empty() || name.contains('/') || name == "busybox" {
                continue;
            }
            link(dir, "busybox", &format!("bin/{name}"))?;
            applets += 1;
        }
    }
    Ok(RootfsReport { dir: dir.to_path_buf(), applets, busybox: busybox.is_some() })
}

fn link(dir: &Path, target: &str, at: &str) -> Result<(), RootfsError> {
    let p = dir.join(at);
    match symlink(target, &p) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        r => w(&p, r),
    }
}

fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("virtlab");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(h).join(".cache/virtlab");
    }
    std::env::temp_dir().join("virtlab")
}

/// The built-in rootfs: built once into the cache directory
/// (`$XDG_CACHE_HOME/virtlab` or `~/.cache/virtlab`), named after the
/// workload's fingerprint, with busybox when the host has it.
pub fn default_rootfs() -> Result<PathBuf, RootfsError> {
    let bb = host_busybox();
    let name = format!(
        "rootfs-v{LAYOUT_VERSION}-{}{}",
        virtlab_workload::fingerprint(virtlab_workload::ELF),
        if bb.is_some() { "-busybox" } else { "" }
    );
    let dir = cache_dir().join(name);
    let marker = dir.join(".virtlab-rootfs");
    if marker.exists() {
        return Ok(dir);
    }
    let parent = cache_dir();
    w(&parent, fs::create_dir_all(&parent))?;
    // Build under a private name, then rename: concurrent launchers never
    // see half a rootfs.
    let tmp = parent.join(format!(".rootfs-build-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let built = build(&tmp, bb.as_deref()).and_then(|_| {
        let m = tmp.join(".virtlab-rootfs");
        w(&m, fs::write(&m, "built by virtlab\n"))
    });
    if let Err(e) = built {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if fs::rename(&tmp, &dir).is_err() {
        // Someone else finished first.
        let _ = fs::remove_dir_all(&tmp);
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_workload_rootfs() {
        let d = tempfile::tempdir().unwrap();
        let r = build(d.path(), None).unwrap();
        assert_eq!(r.applets, 0);
        assert_eq!(fs::read(d.path().join("virtlab-workload")).unwrap(), virtlab_workload::ELF);
        assert!(d.path().join("proc").is_dir() && d.path().join("tmp").is_dir());
        assert_eq!(fs::read_link(d.path().join("bin/virtlab-workload")).unwrap(), Path::new("../virtlab-workload"));
        // Building again over it is fine.
        build(d.path(), None).unwrap();
    }

    #[test]
    fn refuses_a_dynamic_busybox() {
        let d = tempfile::tempdir().unwrap();
        let me = std::env::current_exe().unwrap();
        assert!(matches!(build(d.path(), Some(&me)), Err(RootfsError::BusyboxNotStatic { .. })));
    }
}
