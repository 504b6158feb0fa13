//! Reading the files a user names: the workload ELF, the kernel, the initrd
//! and the files of a `--rootfs` directory. Every one of them goes through
//! [`open`] or [`read`], which take only a regular file, and only up to a
//! limit that suits its use:
//!
//! - a FIFO would block the `open` until a writer comes, and then the read
//!   until it goes: `virtlab vm run -- /tmp/fifo` would hang, deaf to
//!   `--timeout` (the timeout only starts with the guest);
//! - `/dev/zero` never ends: reading it whole fills the host's memory;
//! - a directory, socket or device is no image either.
//!
//! The type is checked on the path before opening it (so a FIFO or a device
//! is never opened), and again on the open file, which is opened with
//! `O_NONBLOCK`: should the path be swapped for a FIFO in between, the open
//! returns at once instead of waiting, and the second check refuses it.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The largest kernel image taken: a vmlinux with full debug information is
/// a few hundred MiB; a bzImage or a stripped vmlinux, tens.
pub const MAX_KERNEL_BYTES: u64 = 512 << 20;

/// What a file is for: names it in errors and explains its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRole {
    /// The workload ELF (limit: the guest memory size).
    Workload,
    /// A kernel image (limit: [`MAX_KERNEL_BYTES`]).
    Kernel,
    /// An initrd given as is (limit: the guest memory size).
    Initrd,
    /// A file of a `--rootfs` directory (limit: the cpio format's 4 GiB,
    /// and the room left for the initramfs in guest memory).
    RootfsFile,
}

impl FileRole {
    /// How errors name the file.
    pub fn name(self) -> &'static str {
        match self {
            FileRole::Workload => "workload",
            FileRole::Kernel => "kernel",
            FileRole::Initrd => "initrd",
            FileRole::RootfsFile => "--rootfs file",
        }
    }

    /// What the limit is and what to do about it.
    fn limit_hint(self) -> &'static str {
        match self {
            FileRole::Workload | FileRole::Initrd => "the guest memory size: raise --mem, or give a smaller file",
            FileRole::Kernel => "virtlab's limit for a kernel image: give a kernel image, not a disk image or archive",
            FileRole::RootfsFile => {
                "what is left of guest memory for the initramfs: raise --mem, or leave large files out of the directory"
            }
        }
    }

    /// Whether an empty file is a mistake (an empty workload would
    /// otherwise pass for "no workload given").
    fn must_have_bytes(self) -> bool {
        !matches!(self, FileRole::RootfsFile)
    }
}

/// Errors opening or reading a file the user named.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// It does not exist, or cannot be looked at or opened.
    #[error("cannot read {} {}", .role.name(), .path.display())]
    Open {
        /// What it is for.
        role: FileRole,
        /// The path given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A FIFO, device, socket or directory.
    #[error("the {} {} is {kind}: it must be a regular file", .role.name(), .path.display())]
    NotRegular {
        /// What it is for.
        role: FileRole,
        /// The path given.
        path: PathBuf,
        /// What it is instead ("a FIFO (named pipe)", ...).
        kind: &'static str,
    },
    /// Larger than the limit for its role.
    #[error("the {} {} is {size} bytes, larger than the limit of {limit} bytes ({})", .role.name(), .path.display(), .role.limit_hint())]
    TooLarge {
        /// What it is for.
        role: FileRole,
        /// The path given.
        path: PathBuf,
        /// Its size (at least).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// No bytes at all.
    #[error("the {} file {} is empty", .role.name(), .path.display())]
    Empty {
        /// What it is for.
        role: FileRole,
        /// The path given.
        path: PathBuf,
    },
    /// Reading failed part-way.
    #[error("cannot read {} {}", .role.name(), .path.display())]
    Read {
        /// What it is for.
        role: FileRole,
        /// The path given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What a file that is not a regular one is, for errors.
fn not_regular(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        return None;
    }
    Some(if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    })
}

/// Opens the regular file at `path` for reading, after checking its type
/// and that it holds between 1 (0 for a `--rootfs` file) and `limit`
/// bytes. Returns the file and its size.
pub fn open(path: &Path, role: FileRole, limit: u64) -> Result<(File, u64), InputError> {
    let err_open = |source| InputError::Open { role, path: path.into(), source };
    let check = |meta: &Metadata| -> Result<u64, InputError> {
        if let Some(kind) = not_regular(meta) {
            return Err(InputError::NotRegular { role, path: path.into(), kind });
        }
        let size = meta.len();
        if size > limit {
            return Err(InputError::TooLarge { role, path: path.into(), size, limit });
        }
        if size == 0 && role.must_have_bytes() {
            return Err(InputError::Empty { role, path: path.into() });
        }
        Ok(size)
    };
    check(&std::fs::metadata(path).map_err(err_open)?)?;
    // O_NONBLOCK makes no difference to a regular file's reads; it only
    // keeps the open from waiting should the path have become a FIFO.
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(err_open)?;
    let size = check(&file.metadata().map_err(err_open)?)?;
    Ok((file, size))
}

/// Reads the whole regular file at `path`, as [`open`] checks it, and
/// never more than `limit` bytes even if it grows while being read.
pub fn read(path: &Path, role: FileRole, limit: u64) -> Result<Vec<u8>, InputError> {
    let (file, size) = open(path, role, limit)?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes).map_err(|source| InputError::Read {
        role,
        path: path.into(),
        source,
    })?;
    let got = bytes.len() as u64;
    if got > limit {
        return Err(InputError::TooLarge { role, path: path.into(), size: got, limit });
    }
    if got == 0 && role.must_have_bytes() {
        return Err(InputError::Empty { role, path: path.into() });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(test: &str) -> TempDir {
            let d = std::env::temp_dir().join(format!("virtlab-input-{test}-{}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            TempDir(d)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a NUL-terminated path that lives across the call;
        // mkfifo(3) only reads it.
        let r = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(r, 0, "mkfifo {}: {}", path.display(), std::io::Error::last_os_error());
    }

    /// Runs `f` on a thread and fails the test if it has not returned after
    /// a few seconds (it is then blocked, as `open` on a FIFO would be).
    fn promptly<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(10)).expect("it blocked: still running after 10 s")
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = TempDir::new("fifo");
        let fifo = dir.0.join("fifo");
        mkfifo(&fifo);
        for role in [FileRole::Workload, FileRole::Kernel, FileRole::Initrd] {
            let p = fifo.clone();
            let e = promptly(move || read(&p, role, 64 << 20)).unwrap_err();
            assert!(matches!(e, InputError::NotRegular { kind: "a FIFO (named pipe)", .. }), "{e}");
            let msg = e.to_string();
            assert!(msg.contains(&fifo.display().to_string()) && msg.contains("must be a regular file"), "{msg}");
            assert!(msg.starts_with(&format!("the {} ", role.name())), "{msg}");
        }
    }

    #[test]
    fn devices_and_directories_are_refused() {
        let e = promptly(|| read(Path::new("/dev/zero"), FileRole::Workload, 64 << 20)).unwrap_err();
        assert!(matches!(e, InputError::NotRegular { kind: "a character device", .. }), "{e}");
        assert_eq!(e.to_string(), "the workload /dev/zero is a character device: it must be a regular file");
        let e = read(Path::new("/"), FileRole::Initrd, 64 << 20).unwrap_err();
        assert!(matches!(e, InputError::NotRegular { kind: "a directory", .. }), "{e}");
        let e = open(Path::new("/dev/null"), FileRole::Kernel, MAX_KERNEL_BYTES).unwrap_err();
        assert!(matches!(e, InputError::NotRegular { .. }), "{e}");
    }

    #[test]
    fn sizes_are_bounded_and_empty_files_refused() {
        let dir = TempDir::new("sizes");
        let big = dir.0.join("big");
        std::fs::write(&big, [7u8; 100]).unwrap();
        let e = read(&big, FileRole::Initrd, 64).unwrap_err();
        assert!(matches!(e, InputError::TooLarge { size: 100, limit: 64, .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("100 bytes") && msg.contains("limit of 64 bytes") && msg.contains("--mem"), "{msg}");
        assert_eq!(read(&big, FileRole::Initrd, 100).unwrap(), vec![7u8; 100]);
        let (_, size) = open(&big, FileRole::Kernel, 100).unwrap();
        assert_eq!(size, 100);
        let empty = dir.0.join("empty");
        std::fs::write(&empty, b"").unwrap();
        let e = read(&empty, FileRole::Workload, 64).unwrap_err();
        assert_eq!(e.to_string(), format!("the workload file {} is empty", empty.display()));
        assert_eq!(read(&empty, FileRole::RootfsFile, 64).unwrap(), b"");
        let e = read(&dir.0.join("missing"), FileRole::Kernel, 64).unwrap_err();
        assert!(e.to_string().starts_with("cannot read kernel "), "{e}");
    }
}
