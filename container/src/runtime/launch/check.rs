//! The checks before anything is set up: root or a user namespace, the
//! rootfs, the command inside it (and its ELF loader), and the `--user` ids
//! the user namespace will map. A bad input fails here, with nothing to
//! clean up.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use super::error::LaunchError;
use crate::runtime::config::{ConfigError, ContainerConfig};
use crate::runtime::idmap::IdRanges;
use crate::runtime::plan::{command_paths, environment};

/// What the checks found out.
#[derive(Debug)]
pub(super) struct Checked {
    /// The launcher runs as root.
    pub(super) root: bool,
    /// The absolute rootfs.
    pub(super) rootfs: PathBuf,
    /// Which host ids the container's ids stand for: as root, an
    /// unprivileged range (container root must not be host root); without
    /// root, container root is the caller (`None`).
    pub(super) id_ranges: Option<IdRanges>,
}

/// Checks `cfg` against this host before anything is made.
pub(super) fn check(cfg: &ContainerConfig) -> Result<Checked, LaunchError> {
    if cfg.argv.is_empty() {
        return Err(ConfigError::NoCommand.into());
    }
    let root = nix::unistd::geteuid().is_root();
    if !root && !cfg.namespaces.user {
        return Err(LaunchError::NeedRoot);
    }
    let rootfs = check_rootfs_and_command(cfg)?;
    // A user namespace joined by path comes with its own maps.
    let made_user = cfg.namespaces.user
        && !crate::runtime::nsjoin::joins(&cfg.join_namespaces, crate::runtime::nsjoin::NsKind::User);
    let id_ranges = (root && made_user).then(|| cfg.id_ranges.unwrap_or_else(IdRanges::lookup));
    if let (Some(u), true) = (cfg.user, made_user) {
        let (uids, gids) = id_ranges.map_or((1, 1), |r| (r.uid.count, r.gid.count));
        for (what, id, count) in [("uid", u.uid, uids), ("gid", u.gid, gids)] {
            if id >= count {
                return Err(LaunchError::IdNotMapped { what, id, last: count - 1 });
            }
        }
    }
    check_preserved_fds(cfg.preserve_fds)?;
    Ok(Checked { root, rootfs, id_ranges })
}

/// `--preserve-fds N`: the fds 3 to 3+N-1 the command gets must be open
/// here (else the launcher's own files could take their numbers).
fn check_preserved_fds(count: u32) -> Result<(), LaunchError> {
    for fd in 3..3u32.saturating_add(count) {
        if nix::fcntl::fcntl(fd as i32, nix::fcntl::FcntlArg::F_GETFD).is_err() {
            return Err(LaunchError::PreservedFdClosed { count, fd: fd as i32, last: 2 + count });
        }
    }
    Ok(())
}

/// Checks the rootfs and finds the command in it; returns the absolute rootfs.
///
/// The command is looked up as the container will see it: every path is
/// resolved with openat2(2) `RESOLVE_IN_ROOT`, so `..` and absolute
/// symlinks stop at the rootfs, never reaching the host's files. Only a
/// regular file counts (a FIFO would block the check, a device could be
/// read without end), and its ELF header is read within a bound.
fn check_rootfs_and_command(cfg: &ContainerConfig) -> Result<PathBuf, LaunchError> {
    let meta = match fs::metadata(&cfg.rootfs) {
        Ok(m) => m,
        Err(_) => return Err(LaunchError::RootfsMissing { path: cfg.rootfs.clone() }),
    };
    if !meta.is_dir() {
        return Err(LaunchError::RootfsNotDir { path: cfg.rootfs.clone() });
    }
    let rootfs = fs::canonicalize(&cfg.rootfs).map_err(|_| LaunchError::RootfsMissing { path: cfg.rootfs.clone() })?;
    let root_dir = match &cfg.layers {
        // The command is looked up in the stack the container will see,
        // once the launcher has made it (see `find_command`).
        Some(_) if !cfg.namespaces.mnt => return Err(LaunchError::LayersNeedMnt),
        Some(_) => return Ok(rootfs),
        None => {
            let fd = open(&rootfs, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|_| LaunchError::RootfsMissing { path: cfg.rootfs.clone() })?;
            // SAFETY: open(2) returned a new fd owned by nobody else.
            unsafe { OwnedFd::from_raw_fd(fd) }
        }
    };
    find_command(cfg, &root_dir)?;
    Ok(rootfs)
}

/// Finds the command below `root_dir` (the rootfs, or the stacked layers
/// of an image) as the container will see it, with its ELF loader.
pub(super) fn find_command(cfg: &ContainerConfig, root_dir: &OwnedFd) -> Result<(), LaunchError> {
    let cmd = cfg.argv.first().ok_or(ConfigError::NoCommand)?;
    let candidates = command_paths(cmd, &environment(cfg));
    let found = candidates.iter().find_map(|c| open_in_root(root_dir, c, OFlag::O_PATH).ok().map(|f| (c, f)));
    let Some((inside, file)) = found else {
        return Err(LaunchError::CommandNotFound {
            cmd: cmd.clone(),
            rootfs: cfg.rootfs.clone(),
            searched: candidates.join(", "),
        });
    };
    let kind = file_kind(&file);
    if kind != "a regular file" {
        return Err(LaunchError::NotAFile { cmd: inside.clone(), kind });
    }
    let interp = open_in_root(root_dir, inside, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
        .ok()
        .and_then(|f| elf_interp_of(&fs::File::from(f)));
    if let Some(interp) = interp {
        if open_in_root(root_dir, &interp, OFlag::O_PATH).is_err() {
            return Err(LaunchError::MissingLoader { cmd: cmd.clone(), interp });
        }
    }
    Ok(())
}

/// openat2(2) of `path` below `root` as if `root` were `/`: `..` and
/// symlinks (absolute ones included) cannot leave it.
fn open_in_root(root: &OwnedFd, path: &str, flags: OFlag) -> Result<OwnedFd, Errno> {
    use nix::fcntl::{openat2, OpenHow, ResolveFlag};
    let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_IN_ROOT);
    let fd = openat2(root.as_raw_fd(), path, how)?;
    // SAFETY: openat2(2) returned a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What kind of file an fd refers to, in words.
fn file_kind(fd: &OwnedFd) -> &'static str {
    let Ok(st) = nix::sys::stat::fstat(fd.as_raw_fd()) else { return "unreadable" };
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFIFO => "a FIFO (named pipe)",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFSOCK => "a socket",
        _ => "not a regular file",
    }
}

/// The PT_INTERP of an ELF file (its dynamic loader), if it has one.
/// `None` for anything that is not a regular file.
pub fn elf_interp(path: &Path) -> Option<String> {
    let f = fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    elf_interp_of(&f)
}

/// [`elf_interp`] of an open file; reads only the headers and the
/// interpreter's name, each bounded.
fn elf_interp_of(f: &fs::File) -> Option<String> {
    use std::os::unix::fs::FileExt;
    let mut h = [0u8; 64];
    f.read_exact_at(&mut h, 0).ok()?;
    if &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return None;
    }
    let phoff = u64::from_le_bytes(h[32..40].try_into().ok()?);
    let phentsize = u16::from_le_bytes([h[54], h[55]]) as u64;
    let phnum = u16::from_le_bytes([h[56], h[57]]) as u64;
    if phentsize < 56 {
        return None;
    }
    let mut ph = [0u8; 56];
    for i in 0..phnum {
        f.read_exact_at(&mut ph, phoff.checked_add(i * phentsize)?).ok()?;
        if u32::from_le_bytes(ph[0..4].try_into().ok()?) == 3 {
            let off = u64::from_le_bytes(ph[8..16].try_into().ok()?);
            let size = u64::from_le_bytes(ph[32..40].try_into().ok()?);
            // A loader's path is at most PATH_MAX.
            if size > 4096 {
                return None;
            }
            let mut s = vec![0u8; size as usize];
            f.read_exact_at(&mut s, off).ok()?;
            return Some(String::from_utf8_lossy(&s).trim_end_matches('\0').to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_has_no_loader_and_a_dynamic_binary_has_one() {
        let w = virtlab_workload::materialize().unwrap();
        assert_eq!(elf_interp(&w), None);
        let me = std::env::current_exe().unwrap();
        let interp = elf_interp(&me).expect("test binaries are dynamically linked");
        assert!(interp.contains("ld-linux"), "{interp}");
    }

    #[test]
    fn bad_rootfs_and_command_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ContainerConfig::new(dir.path().join("nope"), vec!["/x".into()]);
        assert!(matches!(check_rootfs_and_command(&cfg), Err(LaunchError::RootfsMissing { .. })));
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        cfg.rootfs = file;
        assert!(matches!(check_rootfs_and_command(&cfg), Err(LaunchError::RootfsNotDir { .. })));
        cfg.rootfs = dir.path().to_path_buf();
        let e = check_rootfs_and_command(&cfg).unwrap_err();
        assert!(matches!(e, LaunchError::CommandNotFound { .. }), "{e}");
        assert_eq!(e.exit_code(), 127);
        // A dynamically linked binary without its loader.
        fs::create_dir(dir.path().join("bin")).unwrap();
        fs::copy(std::env::current_exe().unwrap(), dir.path().join("bin/dyn")).unwrap();
        cfg.argv = vec!["dyn".into()];
        let e = check_rootfs_and_command(&cfg).unwrap_err();
        assert!(matches!(e, LaunchError::MissingLoader { .. }), "{e}");
        assert!(e.to_string().contains("ENOENT"));
    }

    #[test]
    fn the_command_is_looked_up_inside_the_rootfs_only() {
        // dir/rootfs is the rootfs; dir/outside/prog is a host file next to it.
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).unwrap();
        fs::create_dir(dir.path().join("outside")).unwrap();
        fs::copy(std::env::current_exe().unwrap(), dir.path().join("outside/prog")).unwrap();
        let mut cfg = ContainerConfig::new(&rootfs, vec!["../outside/prog".into()]);
        // `..` stops at the rootfs, as it will for the container.
        let e = check_rootfs_and_command(&cfg).unwrap_err();
        assert!(matches!(e, LaunchError::CommandNotFound { .. }), "{e}");
        cfg.argv = vec!["/../../outside/prog".into()];
        assert!(matches!(check_rootfs_and_command(&cfg), Err(LaunchError::CommandNotFound { .. })));
        // So does an absolute symlink: /bin/escape -> /outside/prog means
        // rootfs/outside/prog, which is not there.
        std::os::unix::fs::symlink(dir.path().join("outside/prog"), rootfs.join("bin/escape")).unwrap();
        cfg.argv = vec!["escape".into()];
        assert!(matches!(check_rootfs_and_command(&cfg), Err(LaunchError::CommandNotFound { .. })));
    }

    #[test]
    fn a_fifo_or_a_directory_as_command_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&dir.path().join("fifo"), Mode::from_bits_truncate(0o755)).unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        for (cmd, kind) in [("/fifo", "FIFO"), ("/sub", "directory")] {
            let cfg = ContainerConfig::new(dir.path(), vec![cmd.into()]);
            let e = check_rootfs_and_command(&cfg).unwrap_err();
            assert!(matches!(e, LaunchError::NotAFile { .. }), "{e}");
            assert!(e.to_string().contains(kind), "{e}");
            assert_eq!(e.exit_code(), 126);
        }
        // elf_interp of a FIFO answers at once too.
        assert_eq!(elf_interp(&dir.path().join("fifo")), None);
    }
}
