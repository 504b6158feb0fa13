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
//! It is one classic BPF program, compiled here from [`DENIED`]: a range
//! check for the calls this list knows, then a binary search over the
//! denied ones, so any call is decided after about a dozen instructions.
//! The kernel caches the answer for every call whose answer does not depend
//! on its arguments (all but `clone` and `unshare`), so an allowed call
//! costs nothing more; and because the kernel runs a new filter once for
//! every call number to fill that cache, a short program is also a fast
//! container start (a linear one of 1500 instructions cost 0.7 ms here).

use std::sync::OnceLock;

pub use libc::sock_filter;

/// Errors building the filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A jump of the compiled program does not fit classic BPF's 8 bits
    /// forward.
    #[error(
        "the seccomp filter does not compile: a jump of {0} instructions does not fit classic BPF (0 to 255, forward)"
    )]
    JumpTooFar(usize),
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

/// Calls of [`DENIED`] that a capability gives back, as Docker's profile
/// does (its `includes.caps`): a container started with `--cap-add
/// SYS_ADMIN` may mount, one with `--cap-add SYS_TIME` set the clock.
/// With `CAP_SYS_ADMIN`, `clone` and `unshare` are no longer checked for
/// namespace flags either.
pub const GIVEN_BACK_BY: &[(u32, &[i64])] = &[
    (
        21, // CAP_SYS_ADMIN
        &[
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_pivot_root,
            libc::SYS_fsopen,
            libc::SYS_fsconfig,
            libc::SYS_fsmount,
            libc::SYS_fspick,
            libc::SYS_move_mount,
            libc::SYS_open_tree,
            libc::SYS_mount_setattr,
            libc::SYS_name_to_handle_at,
            libc::SYS_setns,
            libc::SYS_sethostname,
            libc::SYS_setdomainname,
            libc::SYS_syslog,
            libc::SYS_fanotify_init,
            libc::SYS_lookup_dcookie,
            libc::SYS_quotactl,
            libc::SYS_quotactl_fd,
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
        ],
    ),
    (2, &[libc::SYS_open_by_handle_at]), // CAP_DAC_READ_SEARCH
    (16, &[libc::SYS_init_module, libc::SYS_finit_module, libc::SYS_delete_module]), // CAP_SYS_MODULE
    (17, &[libc::SYS_iopl, libc::SYS_ioperm]), // CAP_SYS_RAWIO
    (19, &[libc::SYS_kcmp]),             // CAP_SYS_PTRACE
    (20, &[libc::SYS_acct]),             // CAP_SYS_PACCT
    (22, &[libc::SYS_reboot]),           // CAP_SYS_BOOT
    (23, &[libc::SYS_mbind, libc::SYS_set_mempolicy, libc::SYS_get_mempolicy]), // CAP_SYS_NICE
    (25, &[libc::SYS_settimeofday, libc::SYS_clock_settime, libc::SYS_clock_adjtime]), // CAP_SYS_TIME
    (26, &[libc::SYS_vhangup]),          // CAP_SYS_TTY_CONFIG
    (34, &[libc::SYS_syslog]),           // CAP_SYSLOG
    (38, &[libc::SYS_perf_event_open]),  // CAP_PERFMON
    (39, &[libc::SYS_bpf]),              // CAP_BPF
];

/// `CAP_SYS_ADMIN`'s number.
const CAP_SYS_ADMIN: u32 = 21;

/// The filter's BPF program for a container with Docker's default
/// capabilities, compiled once per process.
pub fn default_program() -> Result<&'static [sock_filter], SeccompError> {
    static PROGRAM: OnceLock<Vec<sock_filter>> = OnceLock::new();
    if let Some(p) = PROGRAM.get() {
        return Ok(p);
    }
    let built = compile(0)?;
    Ok(PROGRAM.get_or_init(|| built))
}

/// The default filter for a container keeping the capabilities `caps` (a
/// bit mask): [`default_program`] less the calls those capabilities give
/// back ([`GIVEN_BACK_BY`]).
pub fn program_for(caps: u64) -> Result<&'static [sock_filter], SeccompError> {
    let gives_back = GIVEN_BACK_BY.iter().any(|(c, _)| caps & (1u64 << c) != 0);
    if !gives_back {
        return default_program();
    }
    Ok(intern(compile(caps)?))
}

/// The program `cfg` asks for: none, its profile's, or the default filter
/// less what its capabilities give back.
pub fn for_config(
    cfg: &crate::runtime::config::ContainerConfig,
) -> Result<Option<&'static [sock_filter]>, SeccompError> {
    if !cfg.seccomp {
        return Ok(None);
    }
    Ok(Some(match &cfg.seccomp_profile {
        Some(p) => intern(p.program.clone()),
        None => program_for(cfg.capabilities.unwrap_or_else(crate::runtime::plan::default_cap_mask))?,
    }))
}

/// `program` with a `'static` lifetime, as the plan of a container holds
/// it: each distinct program is kept once for the life of the process
/// (a command line launches a handful; a profile is a few hundred
/// instructions).
pub fn intern(program: Vec<sock_filter>) -> &'static [sock_filter] {
    static KEPT: std::sync::Mutex<Vec<&'static [sock_filter]>> = std::sync::Mutex::new(Vec::new());
    let mut kept = KEPT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let same = |p: &&'static [sock_filter]| {
        p.len() == program.len()
            && p.iter().zip(&program).all(|(a, b)| (a.code, a.jt, a.jf, a.k) == (b.code, b.jt, b.jf, b.k))
    };
    if let Some(p) = kept.iter().find(|p| same(p)) {
        return p;
    }
    let leaked: &'static [sock_filter] = Box::leak(program.into_boxed_slice());
    kept.push(leaked);
    leaked
}

// Classic BPF opcodes (linux/filter.h) and seccomp_data offsets.
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG0_LOW: u32 = 16; // args[0], low 32 bits (little-endian)
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// Where a jump goes, before offsets are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
    Next,
    At(usize),
    Allow,
    Eperm,
    Enosys,
    NsCheck,
}

#[derive(Debug, Clone, Copy)]
struct Op {
    code: u16,
    k: u32,
    jt: To,
    jf: To,
}

fn stmt(code: u16, k: u32) -> Op {
    Op { code, k, jt: To::Next, jf: To::Next }
}

fn jump(code: u16, k: u32, jt: To, jf: To) -> Op {
    Op { code, k, jt, jf }
}

/// Emits a binary search over `calls` (sorted): each found call jumps to
/// its target, everything else to `Allow`.
fn search(calls: &[(u32, To)], out: &mut Vec<Op>) {
    if calls.len() <= 3 {
        for (i, (nr, to)) in calls.iter().enumerate() {
            let miss = if i + 1 == calls.len() { To::Allow } else { To::Next };
            out.push(jump(JEQ_K, *nr, *to, miss));
        }
        return;
    }
    let mid = calls.len() / 2;
    let split = out.len();
    out.push(jump(JGE_K, calls[mid].0, To::Allow, To::Next)); // jt patched below
    search(&calls[..mid], out);
    out[split].jt = To::At(out.len());
    search(&calls[mid..], out);
}

fn compile(caps: u64) -> Result<Vec<sock_filter>, SeccompError> {
    let given_back = |nr: i64| GIVEN_BACK_BY.iter().any(|(c, calls)| caps & (1u64 << c) != 0 && calls.contains(&nr));
    let mut calls: Vec<(u32, To)> =
        DENIED.iter().filter(|(nr, _)| !given_back(*nr)).map(|(nr, _)| (*nr as u32, To::Eperm)).collect();
    if caps & (1u64 << CAP_SYS_ADMIN) == 0 {
        calls.push((libc::SYS_clone as u32, To::NsCheck));
        calls.push((libc::SYS_unshare as u32, To::NsCheck));
    }
    calls.sort_by_key(|c| c.0);
    let ns_mask = NAMESPACE_FLAGS.iter().fold(0u64, |m, f| m | f) as u32;

    let mut ops = vec![
        stmt(LD_W_ABS, OFF_ARCH),
        jump(JEQ_K, AUDIT_ARCH_X86_64, To::At(3), To::Next),
        stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(LD_W_ABS, OFF_NR),
        // Numbers this list does not know (newer calls, x32's) and clone3.
        jump(JGT_K, LAST_KNOWN as u32, To::Enosys, To::Next),
        jump(JEQ_K, libc::SYS_clone3 as u32, To::Enosys, To::Next),
        jump(JGE_K, 424, To::At(8), To::Next),
        jump(JGT_K, 335, To::Enosys, To::Next),
    ];
    search(&calls, &mut ops);
    // The shared ends, after every jump to them (classic BPF jumps only
    // forward): the namespace-flag check of clone/unshare, then the answers.
    let tail = ops.len();
    ops.push(stmt(LD_W_ABS, OFF_ARG0_LOW));
    ops.push(jump(JSET_K, ns_mask, To::Eperm, To::Allow));
    ops.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW));
    ops.push(stmt(RET_K, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32));
    ops.push(stmt(RET_K, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    let at = |to: To, next: usize| match to {
        To::Next => next,
        To::At(i) => i,
        To::NsCheck => tail,
        To::Allow => tail + 2,
        To::Eperm => tail + 3,
        To::Enosys => tail + 4,
    };
    ops.iter()
        .enumerate()
        .map(|(i, op)| {
            let off = |to: To| {
                let d = at(to, i + 1).checked_sub(i + 1).ok_or(SeccompError::JumpTooFar(0))?;
                u8::try_from(d).map_err(|_| SeccompError::JumpTooFar(d))
            };
            Ok(sock_filter { code: op.code, jt: off(op.jt)?, jf: off(op.jf)?, k: op.k })
        })
        .collect()
}

/// For tests: forks, installs `program` in the child, makes system call
/// `nr` with `args` there, and returns the errno it got (0 for success),
/// passed back as the child's exit status.
#[cfg(test)]
pub(crate) fn errno_under(program: &[sock_filter], nr: i64, args: [u64; 5]) -> i32 {
    let status = wait_status_under(program, nr, args);
    assert!(libc::WIFEXITED(status), "the child was killed: status {status:#x}");
    libc::WEXITSTATUS(status)
}

/// For tests: as [`errno_under`], but the child's wait status as it is
/// (a filter may kill the child).
#[cfg(test)]
pub(crate) fn wait_status_under(program: &[sock_filter], nr: i64, args: [u64; 5]) -> i32 {
    let prog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr().cast_mut() };
    // SAFETY: fork(2); the child only makes raw system calls and _exit(2)s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: prctl with integer arguments; seccomp(2) reads the
        // sock_fprog above, which points into `program`, alive in this copy
        // of the address space. The call under test gets integers or
        // pointers to static strings and fails or has no lasting effect in
        // this throw-away child.
        unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            if libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog) != 0 {
                libc::_exit(200);
            }
            let r = libc::syscall(nr, args[0], args[1], args[2], args[3], args[4]);
            libc::_exit(if r < 0 { *libc::__errno_location() } else { 0 });
        }
    }
    let mut status = 0;
    // SAFETY: waitpid on our own child with a valid status pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on one call, as the kernel would; returns its answer.
    fn eval(p: &[sock_filter], arch: u32, nr: u32, arg0: u64) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let op = p[pc];
            pc += 1;
            let jump = |taken: bool| if taken { op.jt as usize } else { op.jf as usize };
            match op.code {
                LD_W_ABS => {
                    acc = match op.k {
                        OFF_NR => nr,
                        OFF_ARCH => arch,
                        OFF_ARG0_LOW => arg0 as u32,
                        k => panic!("load of offset {k}"),
                    }
                }
                JEQ_K => pc += jump(acc == op.k),
                JGT_K => pc += jump(acc > op.k),
                JGE_K => pc += jump(acc >= op.k),
                JSET_K => pc += jump(acc & op.k != 0),
                RET_K => return op.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    #[test]
    fn every_call_number_gets_the_answer_the_lists_give() {
        let p = default_program().unwrap();
        assert!(p.len() < 200, "{} instructions", p.len());
        for nr in 0..=1000u32 {
            let n = i64::from(nr);
            let want = if DENIED.iter().any(|(d, _)| *d == n) {
                EPERM
            } else if !is_known(n) || n == libc::SYS_clone3 {
                ENOSYS
            } else {
                libc::SECCOMP_RET_ALLOW
            };
            assert_eq!(eval(p, AUDIT_ARCH_X86_64, nr, 0), want, "call {nr}");
            assert_eq!(eval(p, AUDIT_ARCH_X86_64, nr | 0x4000_0000, 0), ENOSYS, "x32 call {nr}");
        }
        // clone and unshare: refused with any namespace flag, else allowed.
        for nr in [libc::SYS_clone as u32, libc::SYS_unshare as u32] {
            assert_eq!(eval(p, AUDIT_ARCH_X86_64, nr, libc::SIGCHLD as u64), libc::SECCOMP_RET_ALLOW);
            for flag in NAMESPACE_FLAGS {
                assert_eq!(eval(p, AUDIT_ARCH_X86_64, nr, flag | libc::CLONE_FILES as u64), EPERM, "{nr} {flag:#x}");
            }
        }
        // i386 calls (int 0x80) end the process.
        assert_eq!(eval(p, 0x4000_0003, 1, 0), libc::SECCOMP_RET_KILL_PROCESS);
    }

    #[test]
    fn the_kernel_answers_as_the_filter_says() {
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
            assert_eq!(errno_under(default_program().unwrap(), nr, args), want, "{what}");
        }
    }

    #[test]
    fn a_capability_gives_back_what_dockers_profile_gives_back() {
        let admin = program_for(1 << CAP_SYS_ADMIN).unwrap();
        let time = program_for(1 << 25).unwrap();
        let (mount, unshare, clock) =
            (libc::SYS_mount as u32, libc::SYS_unshare as u32, libc::SYS_clock_settime as u32);
        let user_ns = libc::CLONE_NEWUSER as u64;
        assert_eq!(eval(admin, AUDIT_ARCH_X86_64, mount, 0), libc::SECCOMP_RET_ALLOW);
        assert_eq!(eval(admin, AUDIT_ARCH_X86_64, unshare, user_ns), libc::SECCOMP_RET_ALLOW);
        assert_eq!(eval(admin, AUDIT_ARCH_X86_64, libc::SYS_keyctl as u32, 0), EPERM);
        assert_eq!(eval(admin, AUDIT_ARCH_X86_64, clock, 0), EPERM);
        assert_eq!(eval(time, AUDIT_ARCH_X86_64, clock, 0), libc::SECCOMP_RET_ALLOW);
        assert_eq!(eval(time, AUDIT_ARCH_X86_64, mount, 0), EPERM);
        assert_eq!(eval(time, AUDIT_ARCH_X86_64, unshare, user_ns), EPERM);
        // Interned: the same program twice is one copy.
        assert!(std::ptr::eq(admin, program_for(1 << CAP_SYS_ADMIN).unwrap()));
        assert!(std::ptr::eq(default_program().unwrap(), program_for(0).unwrap()));
        for (_, calls) in GIVEN_BACK_BY {
            for nr in *calls {
                assert!(DENIED.iter().any(|(d, _)| d == nr), "{nr} is given back but never denied");
            }
        }
    }

    #[test]
    fn the_lists_are_consistent() {
        for (nr, why) in DENIED {
            assert!(is_known(*nr), "{why}: {nr} is outside the known ranges");
            assert!(why.contains(':'), "{why}");
        }
    }
}
