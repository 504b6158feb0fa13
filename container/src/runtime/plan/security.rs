//! The security steps: the host's kernel files in /proc masked or made
//! read-only, capabilities cut to Docker's default set, no_new_privs, and
//! the seccomp filter (`crate::runtime::seccomp`).

use std::ffi::CStr;

use nix::errno::Errno;
use nix::mount::MsFlags;

use super::model::{under, Op, Ops, PlanHost};
use super::mounts::remount_read_only;
use super::step::Step;
use crate::runtime::config::{ConfigError, ContainerConfig};
use crate::runtime::sys::Sys;

/// Linux capability numbers (capabilities(7)).
pub mod cap {
    #![allow(missing_docs)]
    pub const CHOWN: u32 = 0;
    pub const DAC_OVERRIDE: u32 = 1;
    pub const FOWNER: u32 = 3;
    pub const FSETID: u32 = 4;
    pub const KILL: u32 = 5;
    pub const SETGID: u32 = 6;
    pub const SETUID: u32 = 7;
    pub const SETPCAP: u32 = 8;
    pub const NET_BIND_SERVICE: u32 = 10;
    pub const NET_RAW: u32 = 13;
    pub const SYS_CHROOT: u32 = 18;
    pub const SYS_ADMIN: u32 = 21;
    pub const SYS_BOOT: u32 = 22;
    pub const MKNOD: u32 = 27;
    pub const AUDIT_WRITE: u32 = 29;
    pub const SETFCAP: u32 = 31;
}

/// The capabilities root in the container keeps: Docker's default set.
/// Left out, among others: `CAP_SYS_ADMIN` (mount, pivot_root, sethostname,
/// unshare), `CAP_SYS_BOOT` (reboot), `CAP_NET_ADMIN`, `CAP_SYS_MODULE`,
/// `CAP_SYS_PTRACE`, `CAP_SYS_TIME`.
pub const DEFAULT_CAPS: &[(u32, &str)] = &[
    (cap::CHOWN, "CAP_CHOWN"),
    (cap::DAC_OVERRIDE, "CAP_DAC_OVERRIDE"),
    (cap::FOWNER, "CAP_FOWNER"),
    (cap::FSETID, "CAP_FSETID"),
    (cap::KILL, "CAP_KILL"),
    (cap::SETGID, "CAP_SETGID"),
    (cap::SETUID, "CAP_SETUID"),
    (cap::SETPCAP, "CAP_SETPCAP"),
    (cap::NET_BIND_SERVICE, "CAP_NET_BIND_SERVICE"),
    (cap::NET_RAW, "CAP_NET_RAW"),
    (cap::SYS_CHROOT, "CAP_SYS_CHROOT"),
    (cap::MKNOD, "CAP_MKNOD"),
    (cap::AUDIT_WRITE, "CAP_AUDIT_WRITE"),
    (cap::SETFCAP, "CAP_SETFCAP"),
];

/// [`DEFAULT_CAPS`] as a bit mask.
pub fn default_cap_mask() -> u64 {
    DEFAULT_CAPS.iter().fold(0, |m, (c, _)| m | (1u64 << c))
}

/// The highest capability number this kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|t| t.trim().parse().ok()).unwrap_or(40)
}

/// Files of /proc and /sys hidden from the container (Docker's masked
/// paths): the host's physical memory, keyrings, timers and scheduler
/// internals, firmware tables, SCSI and sound devices, power capping.
pub const MASKED_PATHS: [&str; 11] = [
    "proc/acpi",
    "proc/asound",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// Files of /proc the container may read but not write (Docker's read-only
/// paths): the host's sysctls, interrupt routing, buses, file systems, and
/// the magic SysRq trigger.
pub const READ_ONLY_PATHS: [&str; 5] = ["proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger"];

/// The masks, right after /proc is mounted: [`MASKED_PATHS`] (or the
/// configuration's) hidden, [`READ_ONLY_PATHS`] (or the configuration's)
/// bound onto themselves read-only.
pub(super) fn proc_masks(ops: &mut Ops, cfg: &ContainerConfig) -> Result<(), ConfigError> {
    let devnull = under("dev/null")?;
    let relative = |list: &Option<Vec<String>>, default: &[&str]| -> Vec<String> {
        match list {
            Some(paths) => paths.iter().map(|p| p.trim_start_matches('/').to_string()).collect(),
            None => default.iter().map(|p| p.to_string()).collect(),
        }
    };
    for p in relative(&cfg.masked_paths, &MASKED_PATHS) {
        ops.push((Step::ProcMasks, Op::Mask { path: under(&p)?, devnull: devnull.clone() }));
    }
    for p in relative(&cfg.readonly_paths, &READ_ONLY_PATHS) {
        ops.push((Step::ProcMasks, Op::ReadOnlyPath(under(&p)?)));
    }
    Ok(())
}

/// The bounding set cut to the kept set, the ambient set cleared, then
/// capset; while still uid 0, as dropping bounding capabilities needs
/// `CAP_SETPCAP`. Of the default set, `CAP_MKNOD` stays only where a devices
/// allowlist confines the container; a set given explicitly is kept as is.
pub(super) fn capabilities(ops: &mut Ops, cfg: &ContainerConfig, host: PlanHost) {
    let mut keep = cfg.capabilities.unwrap_or_else(default_cap_mask);
    if !host.devices_allowlist && cfg.capabilities.is_none() {
        keep &= !(1u64 << cap::MKNOD);
    }
    ops.push((Step::Capabilities, Op::DropBounding { keep, last: host.last_cap }));
    ops.push((Step::Capabilities, Op::ClearAmbient));
    ops.push((Step::Capabilities, Op::Capset(keep)));
}

/// After the user switch: no_new_privs, so that no setuid binary or file
/// capability gives back what was dropped, then the seccomp filter, if any.
pub(super) fn lock_down(ops: &mut Ops, cfg: &ContainerConfig, host: PlanHost) {
    if cfg.no_new_privs {
        ops.push((Step::NoNewPrivs, Op::NoNewPrivs));
    }
    if let Some(program) = host.seccomp {
        ops.push((Step::Seccomp, Op::Seccomp(program)));
    }
}

/// [`Op::Mask`]: a read-only empty tmpfs over a directory, `devnull`
/// bound over a file.
pub(super) fn mask<S: Sys>(sys: &S, path: &CStr, devnull: &CStr) -> Result<(), Errno> {
    let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let tmpfs: &CStr = c"tmpfs";
    match sys.mount(Some(tmpfs), path, Some(tmpfs), ro, Some(c"mode=555")) {
        Err(Errno::ENOTDIR) => unless_missing(sys.mount(Some(devnull), path, None, MsFlags::MS_BIND, None)),
        r => unless_missing(r),
    }
}

/// [`Op::ReadOnlyPath`]: bind `path` onto itself, then remount it
/// read-only keeping the flags already on it.
pub(super) fn read_only_path<S: Sys>(sys: &S, path: &CStr) -> Result<(), Errno> {
    let bound = sys.mount(Some(path), path, None, MsFlags::MS_BIND | MsFlags::MS_REC, None);
    unless_missing(bound.and_then(|()| remount_read_only(sys, path)))
}

/// [`Op::DropBounding`]: every capability up to `last` not in `keep`.
pub(super) fn drop_bounding<S: Sys>(sys: &S, keep: u64, last: u32) -> Result<(), Errno> {
    for c in 0..=last {
        if c < 64 && keep & (1u64 << c) == 0 {
            sys.drop_bounding(c)?;
        }
    }
    Ok(())
}

/// A file the kernel does not have (no ACPI, no SCSI, ...) needs no hiding.
fn unless_missing(r: Result<(), Errno>) -> Result<(), Errno> {
    match r {
        Err(Errno::ENOENT) => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::{cap, default_cap_mask};
    use crate::runtime::config::Namespaces;
    use crate::runtime::plan::fake::{cfg, host, record};
    use crate::runtime::plan::model::{Plan, PlanHost, Received, StdioFds};
    use std::path::Path;

    #[test]
    fn without_a_devices_allowlist_cap_mknod_goes() {
        let h = PlanHost { devices_allowlist: false, ..host() };
        let plan =
            Plan::build(&cfg(Namespaces::parse("mnt,pid").unwrap()), Path::new("/r"), StdioFds::default(), &[], h)
                .unwrap();
        let calls = record(&plan, Received::default());
        assert!(calls.contains(&format!("capbset_drop {}", cap::MKNOD)), "{calls:#?}");
        let capset = calls.iter().find(|c| c.starts_with("capset")).unwrap();
        assert_eq!(*capset, format!("capset {:#x}", default_cap_mask() & !(1 << cap::MKNOD)));
    }
}
