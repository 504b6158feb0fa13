//! [`SnapshotError`]: what keeps a snapshot from being written, read or
//! restored.

use std::path::PathBuf;

use crate::vstate::error::VmError;

/// Errors saving, reading and restoring snapshots.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The snapshot directory exists already.
    #[error("snapshot directory {0} exists already; remove it or name another one")]
    Exists(PathBuf),
    /// The directory (or a file in it) could not be created or written.
    #[error("cannot write the snapshot at {0} (nothing was left behind)")]
    Write(PathBuf, #[source] std::io::Error),
    /// A file of the snapshot could not be read.
    #[error("cannot read {0}: is this a snapshot directory written by `virtlab vm run --snapshot`?")]
    Read(PathBuf, #[source] std::io::Error),
    /// The description is not valid JSON of the expected shape.
    #[error("{0} is not a valid snapshot description")]
    Parse(PathBuf, #[source] serde_json::Error),
    /// Not a virtlab snapshot at all.
    #[error("{0} is not a virtlab snapshot (its format field is {1:?})")]
    Format(PathBuf, String),
    /// Another version of the format.
    #[error("snapshot format version {found} is not supported (this virtlab reads version {expected}); take the snapshot again with this virtlab")]
    Version {
        /// The version in the file.
        found: u64,
        /// The version this code reads.
        expected: u32,
    },
    /// A file is shorter or longer than the description says.
    #[error(
        "{name} is {found} bytes but the snapshot description says {expected}: the snapshot is truncated or damaged"
    )]
    Size {
        /// The file.
        name: String,
        /// Its size.
        found: u64,
        /// The size recorded.
        expected: u64,
    },
    /// A file's checksum does not match.
    #[error("{name} is corrupt: its CRC-32 is {found:#010x}, the snapshot description says {expected:#010x}")]
    Checksum {
        /// The file.
        name: String,
        /// Computed.
        found: u32,
        /// Recorded.
        expected: u32,
    },
    /// The snapshot does not match what the restore asks for.
    #[error("the snapshot has {what} {snapshot}, but {asked} was asked for")]
    Mismatch {
        /// "guest memory", "vCPU count", "guest".
        what: &'static str,
        /// What the snapshot holds.
        snapshot: String,
        /// What was asked.
        asked: String,
    },
    /// The host CPU is not the one the snapshot was taken on.
    #[error("the snapshot was taken on another CPU model: CPUID leaf {leaf:#x} (index {index}) differs ({detail}); restore it on the host that took it")]
    CpuModel {
        /// The CPUID function.
        leaf: u32,
        /// Its index.
        index: u32,
        /// What differs.
        detail: String,
    },
    /// The snapshot point is not one this guest has.
    #[error("--snapshot-at {0}: {1}")]
    Point(String, &'static str),
    /// The restore gives something this snapshot cannot take.
    #[error("{what} cannot be given to this snapshot: {why}")]
    NotForSnapshot {
        /// What was given.
        what: &'static str,
        /// Why not, and what to do instead.
        why: String,
    },
    /// A piece of saved state has the wrong size.
    #[error("saved {what} is {found} bytes, expected {expected}: the snapshot is damaged")]
    StateSize {
        /// Which KVM structure.
        what: &'static str,
        /// Its size in the file.
        found: usize,
        /// Its size in this build.
        expected: usize,
    },
    /// The host refused to take back state it must have (see the quirks).
    #[error("the host refused to restore {what}: {why}")]
    Refused {
        /// Which state.
        what: String,
        /// Why it matters.
        why: String,
    },
    /// The command for a restored Linux guest is not one its init takes.
    #[error("the command for the restored guest")]
    Command(#[source] crate::linux::CommandError),
    /// A KVM ioctl failed while saving or restoring.
    #[error("ioctl {0} failed")]
    Ioctl(&'static str, #[source] kvm_ioctls::Error),
    /// Mapping the memory file failed.
    #[error("cannot map the snapshot's guest memory")]
    Map(#[source] vm_memory::mmap::MmapRegionError),
    /// Building, loading or running the VM failed.
    #[error(transparent)]
    Vm(#[from] VmError),
}
