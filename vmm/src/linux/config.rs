//! What a Linux run is asked to do: plain data ([`LinuxConfig`]) and the
//! kernel command line virtlab composes from it, kept apart from the live
//! objects [`super::run`] builds.

use std::path::PathBuf;
use std::time::Duration;

use super::command::{self, CommandError};
use super::initramfs::WORKLOAD_PATH;

/// The guest's initial RAM disk.
#[derive(Debug, Clone)]
pub enum InitrdSource {
    /// Built here: virtlab's init and the workload, on top of an optional
    /// root file system directory.
    Build {
        /// A directory to add (`--rootfs`).
        rootfs: Option<PathBuf>,
    },
    /// A ready-made initrd file (`--initrd`), given to the kernel as is.
    File(PathBuf),
}

/// Everything needed to boot Linux and run one program in it.
#[derive(Debug, Clone)]
pub struct LinuxConfig {
    /// The kernel image (vmlinux or bzImage).
    pub kernel: PathBuf,
    /// The initrd.
    pub initrd: InitrdSource,
    /// The workload binary put at `/virtlab/workload` (empty: the built-in one).
    pub workload: Vec<u8>,
    /// What the init runs: the program and its arguments (empty: the
    /// workload's `ready` mode). With the initramfs virtlab builds, any
    /// words but NUL, and a program name without `/` is looked up in the
    /// guest's PATH; with `--initrd FILE` they go on the kernel command
    /// line, so the program is an absolute path and no word has a space, a
    /// quote or is empty.
    pub program: Vec<String>,
    /// The program's environment, `KEY=VALUE` entries (empty: the init's
    /// default, `PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/ TERM=linux`; an
    /// environment without `PATH` gets that `PATH`). Needs the initramfs
    /// virtlab builds.
    pub env: Vec<String>,
    /// The program's working directory, an absolute guest path, made if
    /// missing (None: `/`). Needs the initramfs virtlab builds.
    pub workdir: Option<String>,
    /// Kernel parameters added to virtlab's.
    pub extra_cmdline: Option<String>,
    /// Guest RAM in bytes.
    pub mem_size: u64,
    /// Stop after this long (None: never).
    pub timeout: Option<Duration>,
    /// Feed this process's standard input to the guest's console.
    pub interactive: bool,
    /// Pause when the init starts, save the VM there (and probe which of
    /// its state this host would take back), and run on.
    pub snapshot: Option<crate::snapshot::SnapshotRequest>,
    /// Run the vCPU loop and its helper threads (UART kicker, stdin)
    /// under their seccomp filters ([`crate::sandbox`]); false is
    /// `--no-seccomp`.
    pub seccomp: bool,
}

impl LinuxConfig {
    /// The program and its arguments the init runs: [`LinuxConfig::program`],
    /// or the workload's `ready` mode.
    pub fn argv(&self) -> Vec<String> {
        if self.program.is_empty() {
            vec![WORKLOAD_PATH.to_string(), "ready".to_string()]
        } else {
            self.program.clone()
        }
    }

    /// The guest's command file (`/virtlab/exec`) for the initramfs virtlab
    /// builds, checked (see [`command::encode`]); None for an initrd file,
    /// whose init gets the program on the kernel command line instead and
    /// can get no environment or working directory.
    pub fn command_file(&self) -> Result<Option<Vec<u8>>, CommandError> {
        match self.initrd {
            InitrdSource::Build { .. } => command::encode(&self.argv(), &self.env, self.workdir.as_deref()).map(Some),
            InitrdSource::File(_) if !self.env.is_empty() || self.workdir.is_some() => {
                Err(CommandError::NeedsBuiltInitramfs)
            }
            InitrdSource::File(_) => Ok(None),
        }
    }
}

/// The smallest guest RAM for Linux.
pub const MIN_MEM: u64 = 32 << 20;
/// The default guest RAM for Linux.
pub const DEFAULT_MEM: u64 = 128 << 20;

/// Kernel parameters virtlab always passes: the console on the UART, reset
/// through the i8042 (also on panic), no delay port, and our init.
pub const BASE_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1 io_delay=none rdinit=/virtlab/init";

/// Errors in the command line virtlab composes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CmdlineError {
    /// An argument the kernel would split or drop.
    #[error("the argument {0:?} cannot be passed on the kernel command line (no spaces, quotes or empty words); without --initrd, virtlab's initramfs carries any argument")]
    BadArgument(String),
}

/// The full command line: virtlab's parameters, the host work-arounds,
/// the user's, then `--` and the program with its arguments (the kernel
/// hands everything after `--` to init as its argv). `program` is empty
/// when the initramfs carries a command file instead.
pub fn compose_cmdline(quirks: Option<&str>, extra: Option<&str>, program: &[String]) -> Result<String, CmdlineError> {
    let mut s = BASE_CMDLINE.to_string();
    for part in [quirks, extra].into_iter().flatten() {
        if !part.trim().is_empty() {
            s.push(' ');
            s.push_str(part.trim());
        }
    }
    if !program.is_empty() {
        s.push_str(" --");
        for a in program {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"') {
                return Err(CmdlineError::BadArgument(a.clone()));
            }
            s.push(' ');
            s.push_str(a);
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_order() {
        let p = vec!["/virtlab/workload".to_string(), "cpu".to_string(), "100".to_string()];
        let c = compose_cmdline(Some("noxsave"), Some(" quiet "), &p).unwrap();
        assert_eq!(c, format!("{BASE_CMDLINE} noxsave quiet -- /virtlab/workload cpu 100"));
        assert_eq!(compose_cmdline(None, None, &[]).unwrap(), BASE_CMDLINE);
        let e = compose_cmdline(None, None, &["a b".to_string()]).unwrap_err();
        assert_eq!(e, CmdlineError::BadArgument("a b".into()));
    }
}
