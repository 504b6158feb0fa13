//! What a Linux run produced: the report every run gives, and what is
//! Linux's own (its kernel, command line, host work-arounds, panic line,
//! last console lines).

use serde::Serialize;

use super::host_quirks::HostQuirks;
use crate::report::RunReport;
use crate::stop::GuestStop;

/// What a Linux run produced: the common report and what is Linux's own.
#[derive(Debug, Clone, Serialize)]
pub struct LinuxReport {
    /// Phases, exits, memory, exit status: as for the minikernel.
    #[serde(flatten)]
    pub run: RunReport,
    /// The kernel file.
    pub kernel: String,
    /// "vmlinux (ELF)" or "bzImage".
    pub kernel_format: &'static str,
    /// "pvh" or "64-bit".
    pub entry: &'static str,
    /// The command line given to the kernel.
    pub cmdline: String,
    /// Size of the initrd.
    pub initrd_bytes: u64,
    /// The host work-arounds: on or off, why, and what they fixed.
    pub host_quirks: HostQuirks,
    /// Interrupts the UART raised.
    pub uart_interrupts: u64,
    /// Of those, sent again because the interrupt was still pending.
    pub uart_reasserted: u64,
    /// The kernel's panic line, if it panicked.
    pub panic: Option<String>,
    /// What the host could not emulate, if that ended the run.
    pub emulation_failure: Option<String>,
    /// The last lines of console output (for runs that did not exit).
    pub last_lines: Vec<String>,
    /// When the kernel printed "Run /virtlab/init as init process", in
    /// microseconds since the start of the run: the end of the kernel's own
    /// boot, seen on the console, so it is known for any kernel, also one
    /// whose init cannot report through the boot-timer port.
    pub init_line_us: Option<f64>,
}

impl LinuxReport {
    /// One line for a student about how the run ended.
    pub fn summary(&self) -> String {
        if let Some(p) = &self.panic {
            return format!("the guest kernel panicked: {p}");
        }
        if let Some(e) = &self.emulation_failure {
            return format!("{} ({e})", self.run.summary);
        }
        self.run.summary.clone()
    }
}

/// The kernel's panic line in console output, if any.
pub fn find_panic(text: &str) -> Option<String> {
    text.lines().find(|l| l.contains("Kernel panic - not syncing")).map(|l| l.trim().to_string())
}

/// The last ten non-empty lines of console output, for a run that did not
/// end with the workload's exit (none for one that did).
pub(crate) fn last_lines(tail: &str, stop: &GuestStop) -> Vec<String> {
    if stop.is_exit() {
        return Vec::new();
    }
    let lines: Vec<&str> = tail.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(10)..].iter().map(|l| l.trim_end().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_panic_line() {
        let out = "[    1.0] Run /init as init process\n[    1.2] Kernel panic - not syncing: No working init found.\n";
        assert_eq!(find_panic(out).as_deref(), Some("[    1.2] Kernel panic - not syncing: No working init found."));
        assert!(find_panic("all good\n").is_none());
    }

    #[test]
    fn last_lines_only_for_runs_that_did_not_exit() {
        let tail = "a\n\n".to_string() + &(1..=12).map(|i| format!("line {i}  \n")).collect::<String>();
        let lines = last_lines(&tail, &GuestStop::Halted);
        assert_eq!(lines.len(), 10);
        assert_eq!((lines[0].as_str(), lines[9].as_str()), ("line 3", "line 12"));
        assert!(last_lines(&tail, &GuestStop::Exited(0)).is_empty());
    }
}
