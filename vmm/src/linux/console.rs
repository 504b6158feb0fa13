//! The guest's serial console on the host side: output passed on to the
//! sink with its tail kept for the report, the keyboard fed to the UART
//! (`--interactive`), and the UART's interrupt sent again while it stays
//! pending.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use vmm_sys_util::eventfd::EventFd;

use crate::console::ConsoleSink;
use crate::devices::serial::SerialState;
use crate::sandbox::{remember_tty, Sandbox, SandboxError, ThreadKind};

/// Console output: passed on to the real sink, the tail kept for reports.
pub(crate) struct Tee {
    pub(crate) sink: ConsoleSink,
    pub(crate) state: Arc<Mutex<TeeState>>,
}

/// What the [`Tee`] keeps: the tail, the whole output when captured, and
/// when the kernel announced the init.
#[derive(Default)]
pub(crate) struct TeeState {
    tail: VecDeque<u8>,
    captured: Vec<u8>,
    line: Vec<u8>,
    init_line_at: Option<Instant>,
}

/// What the kernel prints just before it starts the init program.
const INIT_LINE: &[u8] = b" as init process";

impl TeeState {
    /// The tail as text, the captured output, and when the kernel printed
    /// its "... as init process" line.
    pub(crate) fn take(&mut self) -> (String, Vec<u8>, Option<Instant>) {
        (
            String::from_utf8_lossy(self.tail.make_contiguous()).into_owned(),
            std::mem::take(&mut self.captured),
            self.init_line_at,
        )
    }

    fn watch(&mut self, buf: &[u8]) {
        if self.init_line_at.is_some() {
            return;
        }
        for &b in buf {
            if b == b'\n' {
                if self.line.windows(INIT_LINE.len()).any(|w| w == INIT_LINE) {
                    self.init_line_at = Some(Instant::now());
                    return;
                }
                self.line.clear();
            } else if self.line.len() < 160 {
                self.line.push(b);
            }
        }
    }
}

const TAIL: usize = 8192;

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.watch(buf);
            s.tail.extend(buf);
            while s.tail.len() > TAIL {
                s.tail.pop_front();
            }
            if matches!(self.sink, ConsoleSink::Capture) {
                s.captured.extend_from_slice(buf);
            }
        }
        // Flushed at once: a shell's prompt or an echoed key has no newline
        // to push it out of a line buffer.
        match &mut self.sink {
            ConsoleSink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(buf)?;
                out.flush()?;
            }
            ConsoleSink::Stderr => std::io::stderr().write_all(buf)?,
            ConsoleSink::Writer(w) => w.write_all(buf)?,
            ConsoleSink::Capture | ConsoleSink::Discard => {}
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.sink {
            ConsoleSink::Stdout => std::io::stdout().flush(),
            ConsoleSink::Stderr => std::io::stderr().flush(),
            ConsoleSink::Writer(w) => w.flush(),
            _ => Ok(()),
        }
    }
}

/// A thread that re-sends the UART's interrupt while it stays pending
/// ([`SerialState::reassert`]), every [`UartKicker::PERIOD`]; stopped and
/// joined on drop.
pub(crate) struct UartKicker {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UartKicker {
    const PERIOD: std::time::Duration = std::time::Duration::from_millis(10);

    /// Starts the thread, under the sandbox's filter for it when given.
    pub(crate) fn start(
        state: Arc<Mutex<SerialState>>,
        line: Arc<EventFd>,
        sandbox: Option<&Sandbox>,
    ) -> Result<UartKicker, SandboxError> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = Sandbox::spawn(sandbox, ThreadKind::UartKicker, move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::park_timeout(UartKicker::PERIOD);
                state.lock().unwrap_or_else(|p| p.into_inner()).reassert(line.as_ref());
            }
        })?;
        Ok(UartKicker { stop, thread: Some(thread) })
    }
}

impl Drop for UartKicker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Raw terminal mode for `--interactive`, restored on drop.
pub(crate) struct RawTty(Option<libc::termios>);

impl Drop for RawTty {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            // SAFETY: restores the settings read from fd 0 by tcgetattr.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        }
    }
}

/// Feeds standard input to the guest's UART from a helper thread (raw mode
/// when it is a terminal, so keys reach the guest as they are typed), under
/// the sandbox's filter for it when given.
pub(crate) fn start_input(state: Arc<Mutex<SerialState>>, line: Arc<EventFd>, sandbox: Option<&Sandbox>) -> RawTty {
    // SAFETY: isatty, tcgetattr, cfmakeraw and tcsetattr on fd 0 with a
    // termios owned by this frame.
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::isatty(0) == 1 && libc::tcgetattr(0, &mut t) == 0 {
            let saved = t;
            libc::cfmakeraw(&mut t);
            // Keep output post-processing: the guest's "\n" as "\r\n".
            t.c_oflag = saved.c_oflag;
            libc::tcsetattr(0, libc::TCSANOW, &t);
            remember_tty(saved);
            Some(saved)
        } else {
            None
        }
    };
    let spawned = Sandbox::spawn(sandbox, ThreadKind::Stdin, move || {
        let mut buf = [0u8; 256];
        loop {
            // SAFETY: reads into a live buffer of buf.len() bytes.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            s.push_input(&buf[..n as usize], line.as_ref());
        }
    });
    if spawned.is_err() {
        eprintln!("virtlab: cannot start the input thread; the guest console is output-only");
    }
    RawTty(saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spots_the_kernel_starting_init() {
        let mut t = TeeState::default();
        t.watch(b"[ 1.0] Freeing unused kernel memory\r\n[ 1.1] Run /virtlab/init as init");
        assert!(t.init_line_at.is_none());
        t.watch(b" process\r\n");
        assert!(t.init_line_at.is_some());
        let mut other = TeeState::default();
        other.watch(b"init process started elsewhere\n");
        assert!(other.init_line_at.is_none());
    }
}
