//! The default seccomp filter: which system calls a container may make.
//!
//! Namespaces and capabilities decide what a call may touch; seccomp decides
//! which calls reach the kernel at all. Every container gets this filter
//! just before execve (after `no_new_privs`, which an unprivileged process
//! needs to install one), so the command and everything it starts run
//! under it. It follows Docker's default profile in effect:
//!
//! - **Denied with `EPERM`**: calls that reach kernel state shared with the
//!   host or that only an administrator needs (keyrings, modules, kexec,
//!   reboot, clocks, swap, quotas, `bpf`, `perf_event_open`,
//!   `userfaultfd`, `io_uring`, file handles, every way of mounting,
//!   `setns`), and `clone`/`unshare` with any namespace flag: a nested user
//!   namespace would give the command every capability again, over
//!   namespaces of its own, enough to mount a cgroup file system and raise
//!   its own limits.
//! - **`ENOSYS`** for `clone3` (its flags sit in memory a filter cannot
//!   read; the C library then falls back to `clone`, which is checked), for
//!   calls newer than this list, and for the x32 ABI's numbers.
//! - Calls of another architecture (32-bit `int 0x80`) kill the process.
//!
//! It is built as two filters, both installed: one that denies, one that
//! knows. The kernel runs every filter and the strictest answer wins; for a
//! call whose answer does not depend on its arguments (all but `clone` and
//! `unshare`) the kernel caches it, so an allowed call costs nothing more.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// Errors building the filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// seccompiler refused the rules.
    #[error("cannot build the seccomp filter")]
    Build(#[source] seccompiler::BackendError),
}

/// The namespace flags of clone(2)/unshare(2): `CLONE_NEWNS`, `NEWCGROUP`,
/// `NEWUTS`, `NEWIPC`, `NEWUSER`, `NEWPID`, `NEWNET`, `NEWTIME`.
pub const NAMESPACE_FLAGS: [u64; 8] =
    [0x0002_0000, 0x0200_0000, 0x0400_0000, 0x0800_0000, 0x1000_0000, 0x2000_0000, 0x4000_0000, 0x80];

/// Calls denied with `EPERM`, with what each would give a container.
pub const DENIED: &[(i64, &str)] = &[
    (libc::SYS_acct, "acct: process accounting for the whole host"),
    (libc::SYS_add_key, "add_key: kernel keyrings are not namespaced"),
    (libc::SYS_keyctl, "keyctl: kernel keyrings are not namespaced"),
    (libc::SYS_request_key, "request_key: kernel keyrings are not namespaced"),
    (libc::SYS_bpf, "bpf: programs run in the host kernel"),
    (libc::SYS_perf_event_open, "perf_event_open: observes the host kernel"),
    (libc::SYS_userfaultfd, "userfaultfd: a tool of kernel exploits"),
    (libc::SYS_io_uring_setup, "io_uring: bypasses this filter for the calls it queues"),
    (libc::SYS_io_uring_enter, "io_uring: bypasses this filter for the calls it queues"),
    (libc::SYS_io_uring_register, "io_uring: bypasses this filter for the calls it queues"),
    (libc::SYS_clock_adjtime, "clock_adjtime: the host's clock"),
    (libc::SYS_clock_settime, "clock_settime: the host's clock"),
    (libc::SYS_settimeofday, "settimeofday: the host's clock"),
    (libc::SYS_init_module, "init_module: kernel modules"),
    (libc::SYS_finit_module, "finit_module: kernel modules"),
    (libc::SYS_delete_module, "delete_module: kernel modules"),
    (libc::SYS_kexec_load, "kexec_load: replaces the host kernel"),
    (libc::SYS_kexec_file_load, "kexec_file_load: replaces the host kernel"),
    (libc::SYS_reboot, "reboot: the host"),
    (libc::SYS_swapon, "swapon: the host's swap"),
    (libc::SYS_swapoff, "swapoff: the host's swap"),
    (libc::SYS_quotactl, "quotactl: the host's disk quotas"),
    (libc::SYS_quotactl_fd, "quotactl_fd: the host's disk quotas"),
    (libc::SYS_mount, "mount: a new mount could reach host file systems"),
    (libc::SYS_umount2, "umount2: could uncover what a mount hides"),
    (libc::SYS_pivot_root, "pivot_root: the container's root is fixed"),
    (libc::SYS_fsopen, "fsopen: the new mount API"),
    (libc::SYS_fsconfig, "fsconfig: the new mount API"),
    (libc::SYS_fsmount, "fsmount: the new mount API"),
    (libc::SYS_fspick, "fspick: the new mount API"),
    (libc::SYS_move_mount, "move_mount: the new mount API"),
    (libc::SYS_open_tree, "open_tree: the new mount API"),
    (SYS_OPEN_TREE_ATTR, "open_tree_attr: the new mount API"),
    (libc::SYS_mount_setattr, "mount_setattr: the new mount API"),
    (libc::SYS_name_to_handle_at, "name_to_handle_at: file handles open files outside the root"),
    (libc::SYS_open_by_handle_at, "open_by_handle_at: file handles open files outside the root"),
    (libc::SYS_setns, "setns: joining another namespace"),
    (libc::SYS_sethostname, "sethostname: set by the launcher"),
    (libc::SYS_setdomainname, "setdomainname: set by the launcher"),
    (libc::SYS_syslog, "syslog: the host kernel's log"),
    (libc::SYS_fanotify_init, "fanotify_init: watches host file systems"),
    (libc::SYS_lookup_dcookie, "lookup_dcookie: kernel profiling"),
    (libc::SYS_kcmp, "kcmp: compares kernel objects of other processes"),
    (libc::SYS_iopl, "iopl: direct access to the host's I/O ports"),
    (libc::SYS_ioperm, "ioperm: direct access to the host's I/O ports"),
    (libc::SYS_mbind, "mbind: NUMA policy of the host"),
    (libc::SYS_set_mempolicy, "set_mempolicy: NUMA policy of the host"),
    (libc::SYS_get_mempolicy, "get_mempolicy: NUMA policy of the host"),
    (libc::SYS_move_pages, "move_pages: NUMA placement of other processes"),
    (libc::SYS_uselib, "uselib: obsolete"),
    (libc::SYS_ustat, "ustat: obsolete"),
    (libc::SYS_sysfs, "sysfs: obsolete"),
    (libc::SYS__sysctl, "_sysctl: obsolete"),
    (libc::SYS_nfsservctl, "nfsservctl: obsolete"),
    (libc::SYS_vhangup, "vhangup: the host's terminals"),
];

/// open_tree_attr(2), Linux 6.15 (not in every libc crate yet).
const SYS_OPEN_TREE_ATTR: i64 = 467;

/// The highest x86_64 call number this list knows (file_setattr, Linux
/// 6.17). Numbers above it answer `ENOSYS` until they are reviewed.
pub const LAST_KNOWN: i64 = 469;

/// Whether `nr` is an x86_64 system call number this list knows: 0-335
/// (up to uretprobe) and 424-[`LAST_KNOWN`] (numbers 336-423 are unused on
/// x86_64).
pub fn is_known(nr: i64) -> bool {
    (0..=335).contains(&nr) || (424..=LAST_KNOWN).contains(&nr)
}

/// The filter's two BPF programs, built once per process.
pub fn default_programs() -> Result<&'static [BpfProgram], SeccompError> {
    static PROGRAMS: OnceLock<Vec<BpfProgram>> = OnceLock::new();
    if let Some(p) = PROGRAMS.get() {
        return Ok(p);
    }
    let built = build()?;
    Ok(PROGRAMS.get_or_init(|| built))
}

fn build() -> Result<Vec<BpfProgram>, SeccompError> {
    let bits = |flag: u64| {
        let c = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)?;
        SeccompRule::new(vec![c])
    };
    let ns_rules: Vec<SeccompRule> = NAMESPACE_FLAGS.iter().map(|f| bits(*f)).collect::<Result<_, _>>()?;
    let mut deny: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().map(|(nr, _)| (*nr, Vec::new())).collect();
    deny.insert(libc::SYS_clone, ns_rules.clone());
    deny.insert(libc::SYS_unshare, ns_rules);
    let deny =
        SeccompFilter::new(deny, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), TargetArch::x86_64)?;

    let known: BTreeMap<i64, Vec<SeccompRule>> =
        (0..=LAST_KNOWN).filter(|n| is_known(*n) && *n != libc::SYS_clone3).map(|n| (n, Vec::new())).collect();
    let known =
        SeccompFilter::new(known, SeccompAction::Errno(libc::ENOSYS as u32), SeccompAction::Allow, TargetArch::x86_64)?;
    Ok(vec![deny.try_into()?, known.try_into()?])
}

impl From<seccompiler::BackendError> for SeccompError {
    fn from(e: seccompiler::BackendError) -> Self {
        SeccompError::Build(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forks, installs the filter in the child, makes system call `nr`
    /// with `args` there, and returns the errno it got (0 for success) as
    /// the child's exit code.
    fn errno_under_filter(nr: i64, args: [u64; 5]) -> i32 {
        let programs = default_programs().unwrap();
        // SAFETY: fork(2); the child only makes raw system calls and _exit(2)s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: prctl with integer arguments; seccomp(2) reads a
            // sock_fprog pointing into a live BpfProgram (seccompiler's
            // sock_filter has the kernel's layout). The call under test gets
            // integers or pointers to static strings and fails or has no
            // lasting effect in this throw-away child.
            unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                for p in programs {
                    let prog = libc::sock_fprog { len: p.len() as u16, filter: p.as_ptr() as *mut libc::sock_filter };
                    if libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog) != 0 {
                        libc::_exit(200);
                    }
                }
                let r = libc::syscall(nr, args[0], args[1], args[2], args[3], args[4]);
                libc::_exit(if r < 0 { *libc::__errno_location() } else { 0 });
            }
        }
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "the child was killed: status {status:#x}");
        libc::WEXITSTATUS(status)
    }

    #[test]
    fn the_filter_denies_what_docker_denies_and_allows_the_rest() {
        let ns_user = libc::CLONE_NEWUSER as u64;
        let (none, root, tmpfs) = (c"none".as_ptr() as u64, c"/".as_ptr() as u64, c"tmpfs".as_ptr() as u64);
        let cases: [(&str, i64, [u64; 5], i32); 10] = [
            ("getpid", libc::SYS_getpid, [0; 5], 0),
            ("keyctl", libc::SYS_keyctl, [0; 5], libc::EPERM),
            ("unshare(CLONE_NEWUSER)", libc::SYS_unshare, [ns_user, 0, 0, 0, 0], libc::EPERM),
            (
                "unshare(CLONE_NEWNS|CLONE_FS)",
                libc::SYS_unshare,
                [(libc::CLONE_NEWNS | libc::CLONE_FS) as u64, 0, 0, 0, 0],
                libc::EPERM,
            ),
            // unshare without a namespace flag is harmless and allowed.
            ("unshare(CLONE_FILES)", libc::SYS_unshare, [libc::CLONE_FILES as u64, 0, 0, 0, 0], 0),
            ("clone(CLONE_NEWUSER)", libc::SYS_clone, [ns_user | libc::SIGCHLD as u64, 0, 0, 0, 0], libc::EPERM),
            ("mount", libc::SYS_mount, [none, root, tmpfs, 0, 0], libc::EPERM),
            ("clone3", libc::SYS_clone3, [0; 5], libc::ENOSYS),
            ("a call newer than the list", LAST_KNOWN + 1, [0; 5], libc::ENOSYS),
            ("x32 getpid", 0x4000_0000 | libc::SYS_getpid, [0; 5], libc::ENOSYS),
        ];
        for (what, nr, args, want) in cases {
            assert_eq!(errno_under_filter(nr, args), want, "{what}");
        }
    }

    #[test]
    fn the_lists_are_consistent() {
        for (nr, why) in DENIED {
            assert!(is_known(*nr), "{why}: {nr} is outside the known ranges");
            assert!(why.contains(':'), "{why}");
        }
        // BPF programs are limited to 4096 instructions.
        for p in default_programs().unwrap() {
            assert!(p.len() < 4096, "{} instructions", p.len());
        }
    }
}
