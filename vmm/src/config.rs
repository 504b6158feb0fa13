//! Plain configuration for a VM run, kept apart from the live objects built
//! from it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::exit::UnknownIo;

/// The guest kernel.
#[derive(Debug, Clone, Default)]
pub enum KernelSource {
    /// The built-in minikernel.
    #[default]
    Minikernel,
    /// An ELF kernel file that follows the minikernel's boot ABI.
    File(PathBuf),
    /// An ELF kernel image in memory (the host probes build their own).
    Bytes(Vec<u8>),
}

/// How the guest's console output reaches the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsoleKind {
    /// An emulated 16550 UART: one VM exit per byte (full virtualization).
    #[default]
    Uart,
    /// A paravirtual port: one VM exit per write() (para-virtualization).
    Pv,
}

impl ConsoleKind {
    /// "uart" or "pv".
    pub fn name(self) -> &'static str {
        match self {
            ConsoleKind::Uart => "uart",
            ConsoleKind::Pv => "pv",
        }
    }
}

/// The workload binary that runs when a config names none.
pub const BUILTIN_WORKLOAD: &[u8] = virtlab_workload::ELF;

/// The workload a config names (`given`), or the built-in one when it
/// names none (`given` is empty).
pub(crate) fn workload_or_builtin(given: &[u8]) -> &[u8] {
    if given.is_empty() {
        BUILTIN_WORKLOAD
    } else {
        given
    }
}

/// The smallest guest memory accepted.
pub const MIN_MEM: u64 = 4 << 20;
/// The default guest memory.
pub const DEFAULT_MEM: u64 = 64 << 20;
/// The default timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything needed to boot a guest and run one workload in it.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// The guest kernel.
    pub kernel: KernelSource,
    /// The workload: a static x86_64 ELF executable.
    pub workload: Vec<u8>,
    /// Its argv, argv[0] included.
    pub argv: Vec<String>,
    /// Guest RAM in bytes.
    pub mem_size: u64,
    /// Console device.
    pub console: ConsoleKind,
    /// Stop the guest after this long (None: never).
    pub timeout: Option<Duration>,
    /// What to do about accesses to ports and addresses no device owns.
    pub unknown_io: UnknownIo,
    /// Back the workload's mmap() area with transparent huge pages (2 MiB
    /// host pages, so one nested-paging fault maps 512 guest pages), as QEMU
    /// does for all guest RAM. Off: 4 KiB pages, one fault each.
    pub huge_pages: bool,
    /// Pause at a boot milestone, save the VM there, and run on
    /// ([`crate::snapshot`]).
    pub snapshot: Option<crate::snapshot::SnapshotRequest>,
    /// Run the vCPU loop under its seccomp filter
    /// ([`crate::sandbox`]); false is `--no-seccomp`, for debugging.
    pub seccomp: bool,
}

impl VmConfig {
    /// The built-in workload with `args` (e.g. `["cpu", "1000"]`) on the
    /// minikernel, with default memory, console and timeout.
    pub fn builtin_workload(args: &[&str]) -> VmConfig {
        let mut argv = vec!["virtlab-workload".to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        VmConfig {
            kernel: KernelSource::Minikernel,
            workload: Vec::new(),
            argv,
            mem_size: DEFAULT_MEM,
            console: ConsoleKind::Uart,
            timeout: Some(DEFAULT_TIMEOUT),
            unknown_io: UnknownIo::Stop,
            huge_pages: true,
            snapshot: None,
            seccomp: true,
        }
    }
}
