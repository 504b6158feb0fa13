//! What happens when a filter stops a call: the kernel sends SIGSYS to the
//! thread that made it, and this handler writes one line on stderr naming
//! the call and the thread, puts a raw terminal back, and exits the
//! process with [`SECCOMP_EXIT_STATUS`].
//!
//! A signal handler may only make async-signal-safe calls, and here only
//! those every filter allows: `write(2, ...)`, `ioctl(0, TCSETS)` where the
//! terminal was made raw, and `_exit`. The line is built on the stack.

use std::cell::Cell;
use std::sync::{Once, OnceLock};

use super::names;

/// The exit status of a VMM stopped by its seccomp filter: 128 + SIGSYS,
/// what a shell shows for a process the signal killed.
pub const SECCOMP_EXIT_STATUS: i32 = 128 + libc::SIGSYS;

thread_local! {
    /// The filtered thread's name, for the report (no allocation to read).
    static THREAD: Cell<&'static str> = const { Cell::new("?") };
}

/// `si_code` of a SIGSYS sent by a seccomp filter (`<asm-generic/siginfo.h>`).
const SYS_SECCOMP: libc::c_int = 1;

/// The terminal's settings before `--interactive` made it raw.
static SAVED_TTY: OnceLock<libc::termios> = OnceLock::new();

/// Remembers the terminal's settings for the handler to put back.
pub(crate) fn remember_tty(t: libc::termios) {
    let _ = SAVED_TTY.set(t);
}

/// Names the calling thread for the report and installs the handler (once
/// per process).
pub(super) fn install(thread: &'static str) {
    THREAD.with(|t| t.set(thread));
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sigaction with a zeroed struct, an empty mask and a
        // handler of the SA_SIGINFO shape; the handler only makes
        // async-signal-safe calls (signal-safety(7)).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigsys as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut());
        }
    });
}

/// A line built on the stack.
struct Line {
    buf: [u8; 320],
    len: usize,
}

impl Line {
    fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    fn number(&mut self, mut v: u64, base: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdef"[(v % base) as usize];
            v /= base;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

/// The SIGSYS handler (see the module doc).
extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t (sigaction(2)).
    if unsafe { (*info).si_code } != SYS_SECCOMP {
        // Not from a filter (a `kill -SYS`): what SIGSYS does by default,
        // once this handler returns and the signal is no longer blocked.
        // SAFETY: signal(2) and raise(3) are async-signal-safe.
        unsafe {
            libc::signal(libc::SIGSYS, libc::SIG_DFL);
            libc::raise(libc::SIGSYS);
        }
        return;
    }
    // SAFETY: the kernel passes a valid siginfo_t; for SIGSYS from seccomp
    // its union holds `_sigsys` (seccomp(2), "SECCOMP_RET_TRAP"): the call
    // address at byte 16 and the system call number (an int) at byte 24.
    let nr = unsafe { *(info.cast::<u8>().add(24).cast::<libc::c_int>()) } as i64;
    // SAFETY: with SA_SIGINFO the third argument is the interrupted
    // thread's ucontext_t, with the registers the system call was made with.
    let regs = unsafe { (*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    // The first two arguments: RDI and RSI.
    let (arg0, arg1) = (regs[libc::REG_RDI as usize] as u64, regs[libc::REG_RSI as usize] as u64);
    let thread = THREAD.with(|t| t.get());
    let mut line = Line { buf: [0; 320], len: 0 };
    line.push(b"virtlab: the VMM's seccomp filter stopped system call ");
    line.push(names::name(nr).as_bytes());
    line.push(b" (number ");
    line.number(nr as u64, 10);
    if [libc::SYS_read, libc::SYS_write, libc::SYS_ioctl].contains(&nr) {
        line.push(b", fd ");
        line.number(arg0 & 0xffff_ffff, 10);
    }
    if nr == libc::SYS_ioctl {
        line.push(b", request 0x");
        line.number(arg1 & 0xffff_ffff, 16);
    }
    line.push(b") in thread ");
    line.push(thread.as_bytes());
    line.push(b"; run with --no-seccomp to debug\n");
    // SAFETY: write(2), ioctl(2) and _exit(2) are async-signal-safe; the
    // buffer and the saved termios outlive the calls.
    unsafe {
        libc::write(2, line.buf.as_ptr().cast(), line.len);
        if let Some(t) = SAVED_TTY.get() {
            libc::ioctl(0, libc::TCSETS, t as *const libc::termios);
        }
        libc::_exit(SECCOMP_EXIT_STATUS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_without_allocating() {
        let mut l = Line { buf: [0; 320], len: 0 };
        l.number(41, 10);
        l.push(b" ");
        l.number(0xae80, 16);
        l.push(b" ");
        l.number(0, 10);
        assert_eq!(&l.buf[..l.len], b"41 ae80 0");
    }
}
