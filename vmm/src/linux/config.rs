//! What a Linux run is asked to do: plain data ([`LinuxConfig`]) and the
//! kernel command line virtlab composes from it, kept apart from the live
//! objects [`super::run`] builds.

use std::path::PathBuf;
use std::time::Duration;

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
    /// What the init runs: a guest path and its arguments (empty: the
    /// workload's `ready` mode).
    pub program: Vec<String>,
    /// Kernel parameters added to virtlab's.
    pub extra_cmdline: Option<String>,
    /// Guest RAM in bytes.
    pub mem_size: u64,
    /// Stop after this long (None: never).
    pub timeout: Option<Duration>,
    /// Feed this process's standard input to the guest's console.
    pub interactive: bool,
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
    #[error("the argument {0:?} cannot be passed on the kernel command line (no spaces, quotes or empty words)")]
    BadArgument(String),
}

/// The full command line: virtlab's parameters, the host work-arounds,
/// the user's, then `--` and the program with its arguments (the kernel
/// hands everything after `--` to init as its argv).
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
