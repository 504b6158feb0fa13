//! Stops a guest that runs too long: after the deadline a helper thread
//! kicks the vCPU thread out of KVM_RUN with a signal, until the vCPU loop
//! acknowledges.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sandbox::{Pending, Sandbox, SandboxError, ThreadKind};

/// The signal used to interrupt KVM_RUN (a real-time signal nobody else uses).
pub(crate) fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 2
}

extern "C" fn on_kick(_: libc::c_int) {}

fn install_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sigaction with a zeroed struct, an empty mask and a handler
        // that does nothing is async-signal-safe; without SA_RESTART the
        // interrupted KVM_RUN returns EINTR, which is the point.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = 0;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        }
    });
}

#[derive(Debug, Default)]
struct Shared {
    expired: AtomicBool,
    acked: AtomicBool,
    done: Mutex<bool>,
    wake: Condvar,
}

/// A running watchdog; dropping it stops the helper thread.
#[derive(Debug)]
pub struct Watchdog {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The thread while it enters its filter ([`Watchdog::confirm`]).
    pending: Option<Pending>,
}

impl Watchdog {
    /// Starts watching the calling thread (the vCPU thread).
    pub fn start(timeout: Duration) -> std::io::Result<Watchdog> {
        Watchdog::start_in(timeout, None).map_err(std::io::Error::other)
    }

    /// [`Watchdog::start`], its thread under the sandbox's watchdog filter
    /// (when given) before it starts waiting.
    pub fn start_in(timeout: Duration, sandbox: Option<&Sandbox>) -> Result<Watchdog, SandboxError> {
        let mut w = Watchdog::start_pending(timeout, sandbox)?;
        w.confirm()?;
        Ok(w)
    }

    /// [`Watchdog::start_in`] without waiting for the thread's filter: the
    /// vCPU thread enters its own meanwhile, then calls
    /// [`Watchdog::confirm`] before it runs the guest.
    pub(crate) fn start_pending(timeout: Duration, sandbox: Option<&Sandbox>) -> Result<Watchdog, SandboxError> {
        install_handler();
        let shared = Arc::new(Shared::default());
        // SAFETY: pthread_self has no preconditions.
        let target = unsafe { libc::pthread_self() };
        let s = Arc::clone(&shared);
        let deadline = Instant::now() + timeout;
        let pending = Sandbox::spawn_pending(sandbox, ThreadKind::Watchdog, move || {
            let mut done = s.done.lock().unwrap_or_else(|p| p.into_inner());
            while !*done {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                done = s.wake.wait_timeout(done, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
            }
            if *done {
                return;
            }
            s.expired.store(true, Ordering::SeqCst);
            // Kick until the vCPU loop has seen the flag: a signal that lands
            // outside KVM_RUN is lost, so repeat.
            while !*done && !s.acked.load(Ordering::SeqCst) {
                // SAFETY: the target thread is alive until `done` is set,
                // which happens before it joins this thread.
                unsafe { libc::pthread_kill(target, kick_signal()) };
                done = s.wake.wait_timeout(done, Duration::from_millis(5)).unwrap_or_else(|p| p.into_inner()).0;
            }
        })?;
        Ok(Watchdog { shared, thread: None, pending: Some(pending) })
    }

    /// Waits until the thread runs under its filter.
    pub(crate) fn confirm(&mut self) -> Result<(), SandboxError> {
        if let Some(p) = self.pending.take() {
            self.thread = Some(p.confirm()?);
        }
        Ok(())
    }

    /// Whether the deadline passed; the vCPU loop calls this after every
    /// exit and acknowledges by doing so.
    pub fn expired(&self) -> bool {
        let e = self.shared.expired.load(Ordering::SeqCst);
        if e {
            self.shared.acked.store(true, Ordering::SeqCst);
        }
        e
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        *self.shared.done.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(p) = self.pending.take() {
            // Joins the thread, whether or not its filter went on.
            let _ = p.confirm();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_and_interrupts_a_blocking_call() {
        let w = Watchdog::start(Duration::from_millis(20)).unwrap();
        assert!(!w.expired());
        // A blocking sleep stands in for KVM_RUN: the kick interrupts it.
        let mut interrupted = false;
        for _ in 0..200 {
            // SAFETY: usleep has no memory-safety preconditions.
            let r = unsafe { libc::usleep(50_000) };
            if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                interrupted = true;
            }
            if w.expired() {
                break;
            }
        }
        assert!(w.expired());
        assert!(interrupted, "the kick signal should interrupt a blocking call");
    }

    #[test]
    fn dropping_early_stops_the_thread() {
        let w = Watchdog::start(Duration::from_secs(3600)).unwrap();
        drop(w);
    }
}
