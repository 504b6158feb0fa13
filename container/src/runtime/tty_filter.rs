//! A second, tiny seccomp filter: no `TIOCSTI` and no `TIOCLINUX`.
//!
//! `ioctl(fd, TIOCSTI, &c)` pushes `c` into a terminal's input queue as if
//! it had been typed. A container started from a shell inherits that
//! shell's terminal as its controlling terminal, so its command could type
//! a line that the shell runs, as the user, outside the container, once the
//! container exits (CVE-2017-5226 in bubblewrap, CVE-2016-9016 in
//! firejail). Kernels from 6.2 may refuse `TIOCSTI` to everyone without
//! `CAP_SYS_ADMIN` (`dev.tty.legacy_tiocsti = 0`); many still allow it.
//! bubblewrap's `--new-session` moves the command into a session of its own
//! (no controlling terminal, and no job control either); this filter, as
//! Flatpak's, keeps the terminal and refuses the two requests instead
//! (`TIOCLINUX` can paste a console's selection the same way).
//!
//! It is stacked on top of the default filter (filters add up: the
//! strictest answer wins), so that the default filter's lists stay Docker's
//! and this one can be switched off alone (`ContainerConfig::deny_tiocsti`).

use crate::runtime::seccomp::sock_filter;

/// The `ioctl` request that fakes terminal input.
pub const TIOCSTI: u32 = 0x5412;
/// The Linux console's multiplexed `ioctl` (selection paste among others).
pub const TIOCLINUX: u32 = 0x541c;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// The program: `ioctl` with request `TIOCSTI` or `TIOCLINUX` gets `EPERM`,
/// everything else is allowed (other architectures are the default
/// filter's business).
pub fn program() -> &'static [sock_filter] {
    const fn op(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
        sock_filter { code, jt, jf, k }
    }
    static PROGRAM: [sock_filter; 9] = [
        op(0x20, 0, 0, 4),                                            // 0: A = arch
        op(0x15, 0, 6, AUDIT_ARCH_X86_64),                            // 1: not x86_64 -> 8 allow
        op(0x20, 0, 0, 0),                                            // 2: A = nr
        op(0x15, 0, 4, libc::SYS_ioctl as u32),                       // 3: not ioctl -> 8 allow
        op(0x20, 0, 0, 24),        // 4: A = args[1], low 32 bits (the kernel's unsigned int)
        op(0x15, 1, 0, TIOCSTI),   // 5: TIOCSTI -> 7 deny
        op(0x15, 0, 1, TIOCLINUX), // 6: TIOCLINUX -> 7 deny, else 8 allow
        op(0x06, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32), // 7
        op(0x06, 0, 0, libc::SECCOMP_RET_ALLOW), // 8
    ];
    &PROGRAM
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ioctl(-1, request, 0)` under the filter: the errno.
    fn errno_of_ioctl(request: u64) -> i32 {
        crate::runtime::seccomp::errno_under(program(), libc::SYS_ioctl, [u64::MAX, request, 0, 0, 0])
    }

    #[test]
    fn only_the_two_requests_are_refused() {
        assert_eq!(errno_of_ioctl(u64::from(TIOCSTI)), libc::EPERM);
        assert_eq!(errno_of_ioctl(u64::from(TIOCLINUX)), libc::EPERM);
        // Another terminal request reaches the kernel (which finds no fd -1).
        assert_eq!(errno_of_ioctl(libc::TIOCGWINSZ), libc::EBADF);
        // The kernel reads the request as a 32-bit unsigned int: high bits
        // set do not slip past the filter.
        assert_eq!(errno_of_ioctl(0xffff_ffff_0000_0000 | u64::from(TIOCSTI)), libc::EPERM);
    }
}
