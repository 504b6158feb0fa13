//! The initramfs: an uncompressed cpio archive in the "newc" format (the
//! one Linux unpacks into its root file system at boot), written in Rust.
//!
//! It is shipped uncompressed on purpose: decompressing it would be guest
//! kernel work, which a nested host emulates instruction by instruction.
//!
//! Every archive holds virtlab's own `/virtlab/init` (a static program with
//! no libc, see `guest-init/init.rs`; the kernel runs it through
//! `rdinit=/virtlab/init`), the workload binary at `/virtlab/workload`,
//! `/dev/console` and the mount points `/proc`, `/sys` and `/dev`; a
//! `vm run` adds the command file `/virtlab/exec` (see [`super::command`]).
//! A root file system directory (`--rootfs`) is added underneath.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::command::format as command;
use crate::input::{self, FileRole, InputError};

/// virtlab's /init for Linux guests, built by `build.rs`.
pub const INIT_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/virtlab-init"));

/// Where the init program sits in the guest (the kernel's `rdinit=`).
pub const INIT_PATH: &str = "/virtlab/init";
/// Where the workload binary sits in the guest.
pub const WORKLOAD_PATH: &str = "/virtlab/workload";

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;

/// Errors building an initramfs.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// Reading the root file system directory failed.
    #[error("cannot read {path} for the initramfs")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The root file system is not a directory.
    #[error("--rootfs {0} is not a directory")]
    NotADirectory(PathBuf),
    /// A name that cpio cannot carry (not UTF-8).
    #[error("{0} has a name that is not UTF-8")]
    BadName(PathBuf),
    /// A file larger than the newc format's 4 GiB limit.
    #[error("{0} is larger than 4 GiB, the cpio newc limit")]
    TooLarge(PathBuf),
    /// A file of the root file system could not be read, or no longer fits.
    #[error(transparent)]
    File(#[from] InputError),
}

/// Writes a cpio "newc" archive (magic `070701`): for each entry a
/// 110-byte ASCII header of 13 eight-digit hexadecimal fields, the name
/// with its NUL, padding to 4 bytes, the data, padding to 4 bytes; then the
/// `TRAILER!!!` entry. Owners are root, times are 0 (reproducible output).
#[derive(Debug, Default)]
pub struct CpioWriter {
    out: Vec<u8>,
    next_ino: u32,
    /// The most bytes [`CpioWriter::tree`] may bring in (None: no limit).
    budget: Option<u64>,
}

impl CpioWriter {
    /// An empty archive.
    pub fn new() -> CpioWriter {
        CpioWriter { out: Vec::new(), next_ino: 1, budget: None }
    }

    /// An empty archive that [`CpioWriter::tree`] fills with at most
    /// `budget` bytes (files larger than what is left are refused before
    /// they are read).
    pub fn with_budget(budget: u64) -> CpioWriter {
        CpioWriter { budget: Some(budget), ..CpioWriter::new() }
    }

    /// How large the next file of a tree may be: the newc format's 4 GiB,
    /// or what is left of the budget.
    fn room(&self) -> u64 {
        let left = self.budget.map_or(u64::MAX, |b| b.saturating_sub(self.out.len() as u64));
        left.min(u64::from(u32::MAX))
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let name = name.trim_start_matches('/');
        let ino = if name == "TRAILER!!!" {
            0
        } else {
            self.next_ino += 1;
            self.next_ino - 1
        };
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check (only for the "crc" variant)
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.out.len() % 4 != 0 {
            self.out.push(0);
        }
    }

    /// A directory.
    pub fn dir(&mut self, path: &str, perm: u32) -> &mut Self {
        self.entry(path, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[]);
        self
    }

    /// A regular file.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> &mut Self {
        self.entry(path, S_IFREG | (perm & 0o7777), 1, (0, 0), data);
        self
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
        self
    }

    /// A character device node.
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> &mut Self {
        self.entry(path, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[]);
        self
    }

    /// Ends the archive with its trailer and returns the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.out
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Adds the tree under `root` (sorted, so the archive is reproducible):
    /// directories, files, symbolic links, device nodes and FIFOs; sockets
    /// are skipped.
    pub fn tree(&mut self, root: &Path) -> Result<&mut Self, InitramfsError> {
        let meta = std::fs::metadata(root).map_err(|source| InitramfsError::Read { path: root.into(), source })?;
        if !meta.is_dir() {
            return Err(InitramfsError::NotADirectory(root.into()));
        }
        self.walk(root, root)?;
        Ok(self)
    }

    fn walk(&mut self, root: &Path, dir: &Path) -> Result<(), InitramfsError> {
        let read = |path: &Path, source| InitramfsError::Read { path: path.into(), source };
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| read(dir, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| read(dir, e))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let name = rel.to_str().ok_or_else(|| InitramfsError::BadName(path.clone()))?.to_string();
            let meta = std::fs::symlink_metadata(&path).map_err(|e| read(&path, e))?;
            let perm = meta.permissions().mode() & 0o7777;
            let ft = meta.file_type();
            if ft.is_dir() {
                self.dir(&name, perm);
                self.walk(root, &path)?;
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&path).map_err(|e| read(&path, e))?;
                let target = target.to_str().ok_or_else(|| InitramfsError::BadName(path.clone()))?.to_string();
                self.symlink(&name, &target);
            } else if ft.is_file() {
                if meta.len() > u64::from(u32::MAX) {
                    return Err(InitramfsError::TooLarge(path));
                }
                let data = input::read(&path, FileRole::RootfsFile, self.room())?;
                self.file(&name, perm, &data);
            } else if ft.is_char_device() || ft.is_block_device() {
                let kind = if ft.is_char_device() { S_IFCHR } else { S_IFBLK };
                let rdev = meta.rdev();
                let (major, minor) = (libc::major(rdev), libc::minor(rdev));
                self.entry(&name, kind | perm, 1, (major, minor), &[]);
            } else if ft.is_fifo() {
                self.entry(&name, S_IFIFO | perm, 1, (0, 0), &[]);
            }
        }
        Ok(())
    }
}

/// The initramfs for a Linux guest: virtlab's init and the workload, on
/// top of `rootfs` when one is given. It has no command file: its init
/// runs what the kernel command line says (as for QEMU's `-append`).
pub fn build(workload: &[u8], rootfs: Option<&Path>) -> Result<Vec<u8>, InitramfsError> {
    build_within(workload, None, rootfs, u64::MAX)
}

/// As [`build`], with the command file `command` (see
/// [`super::command::encode`]) at `/virtlab/exec` when given, reading at
/// most `limit` bytes of `rootfs` (the guest memory size: a larger archive
/// could not be loaded anyway).
pub fn build_within(
    workload: &[u8],
    command: Option<&[u8]>,
    rootfs: Option<&Path>,
    limit: u64,
) -> Result<Vec<u8>, InitramfsError> {
    let mut w = CpioWriter::with_budget(limit);
    if let Some(dir) = rootfs {
        w.tree(dir)?;
    }
    // Later entries win: the kernel replaces a file unpacked earlier.
    w.dir("dev", 0o755)
        .char_dev("dev/console", 0o600, 5, 1)
        .dir("proc", 0o555)
        .dir("sys", 0o555)
        .dir("virtlab", 0o755)
        .file(INIT_PATH, 0o755, INIT_ELF)
        .file(WORKLOAD_PATH, 0o755, workload);
    if let Some(command) = command {
        w.file(command::PATH, 0o644, command);
    }
    Ok(w.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One directory and a 3-byte file, checked byte for byte.
    #[test]
    fn writes_known_good_newc_bytes() {
        let mut w = CpioWriter::new();
        w.dir("d", 0o755).file("d/f", 0o644, b"abc");
        let out = w.finish();
        // Fields: ino, mode, uid, gid, nlink, mtime, filesize, dev major,
        // dev minor, rdev major, rdev minor, namesize, check.
        let z = "00000000";
        let header = |f: [&str; 13]| format!("070701{}", f.concat()).into_bytes();
        let want: &[&[u8]] = &[
            &header(["00000001", "000041ED", z, z, "00000002", z, z, z, z, z, z, "00000002", z]),
            b"d\0", // 110 + 2 bytes: aligned
            &header(["00000002", "000081A4", z, z, "00000001", z, "00000003", z, z, z, z, "00000004", z]),
            b"d/f\0\0\0", // 112 + 114 bytes, padded to 228
            b"abc\0",     // data, padded to 232
            &header([z, z, z, z, "00000001", z, z, z, z, z, z, "0000000B", z]),
            b"TRAILER!!!\0\0\0\0", // 232 + 121 bytes, padded to 356
        ];
        let want = want.concat();
        assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&want));
        assert_eq!(out, want);
        assert_eq!(out.len() % 4, 0);
    }

    #[test]
    fn device_nodes_and_symlinks() {
        let mut w = CpioWriter::new();
        w.char_dev("/dev/console", 0o600, 5, 1).symlink("bin/sh", "busybox");
        let out = w.finish();
        let hdr = std::str::from_utf8(&out[..110]).unwrap();
        assert_eq!(&hdr[14..22], "00002180", "S_IFCHR | 0600");
        assert_eq!(&hdr[78..86], "00000005", "rdev major");
        assert_eq!(&hdr[86..94], "00000001", "rdev minor");
        assert_eq!(&out[110..122], b"dev/console\0", "leading slash dropped");
        let at = out.windows(6).skip(1).position(|w| w == b"070701").unwrap() + 1;
        let hdr = std::str::from_utf8(&out[at..at + 110]).unwrap();
        assert_eq!(&hdr[14..22], "0000A1FF", "S_IFLNK | 0777");
        assert_eq!(&hdr[54..62], "00000007", "the target is the data");
    }

    /// GNU cpio must list what we write (skipped when cpio is missing).
    #[test]
    fn cpio_lists_the_archive() {
        let dir = std::env::temp_dir().join(format!("virtlab-cpio-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/hostname"), b"guest\n").unwrap();
        std::os::unix::fs::symlink("hostname", dir.join("etc/name")).unwrap();
        let archive = build(b"\x7fELF-not-really", Some(&dir)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let child = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                eprintln!("SKIPPED cpio_lists_the_archive: cannot run cpio ({e}); apt-get install cpio");
                return;
            }
        };
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&archive).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "cpio -t failed: {}", String::from_utf8_lossy(&out.stderr));
        let names: Vec<_> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect();
        for want in ["etc", "etc/hostname", "etc/name", "dev/console", "virtlab/init", "virtlab/workload"] {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
        }
    }

    /// The command file is the archive's last file: it wins over a
    /// rootfs's own `/virtlab/exec`. Without one there is none.
    #[test]
    fn the_command_file_comes_last() {
        let dir = std::env::temp_dir().join(format!("virtlab-cpio-exec-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("virtlab")).unwrap();
        std::fs::write(dir.join("virtlab/exec"), b"stale").unwrap();
        let out = build_within(b"wl", Some(b"new"), Some(&dir), u64::MAX).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        // The end of a header (namesize 13, check 0) and the name: the
        // init's own bytes hold the path too.
        let name = b"0000000D00000000virtlab/exec\0";
        let last = out.windows(name.len()).rposition(|w| w == name).unwrap();
        let trailer = out.windows(10).rposition(|w| w == b"TRAILER!!!").unwrap();
        assert!(out[last..trailer].windows(3).any(|w| w == b"new"), "the new file is the last before the trailer");
        assert_eq!(&out[last - 94 + 14..last - 94 + 22], b"000081A4", "a regular file, mode 0644");
        let plain = build(b"wl", None).unwrap();
        assert!(!plain.windows(name.len()).any(|w| w == name), "build() writes no command file");
    }

    #[test]
    fn the_init_is_a_static_executable() {
        let img = crate::loader::parse_user_elf(INIT_ELF).unwrap();
        assert_eq!(img.segments.first().map(|s| s.vaddr >= 0x40_0000), Some(true));
        assert!(INIT_ELF.len() < 64 << 10, "the init stays tiny: {} bytes", INIT_ELF.len());
    }

    #[test]
    fn a_rootfs_larger_than_guest_memory_is_refused_before_it_is_read() {
        let dir = std::env::temp_dir().join(format!("virtlab-cpio-budget-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a"), [1u8; 3000]).unwrap();
        std::fs::write(dir.join("b"), [2u8; 3000]).unwrap();
        std::fs::write(dir.join("empty"), b"").unwrap();
        let small = build_within(b"", None, Some(&dir), 4096).unwrap_err();
        let fits = build_within(b"", None, Some(&dir), 1 << 20);
        std::fs::remove_dir_all(&dir).unwrap();
        let InitramfsError::File(InputError::TooLarge { path, size: 3000, limit, .. }) = &small else {
            panic!("{small}")
        };
        assert!(path.ends_with("b") && *limit < 3000, "{small}");
        assert!(small.to_string().contains("--mem"), "{small}");
        assert!(fits.unwrap().len() > 6000, "an empty file is fine in a root file system");
    }

    #[test]
    fn a_missing_rootfs_is_an_error() {
        let e = build(b"", Some(Path::new("/nonexistent/rootfs"))).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/rootfs"), "{e}");
    }
}
