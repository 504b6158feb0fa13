//! Stops a guest that runs too long: a kernel timer signals the vCPU
//! thread at the deadline, which interrupts KVM_RUN, and again every 5 ms
//! until the vCPU loop has stopped and drops the watchdog.
//!
//! The kernel is the watchdog (`timer_create` with `SIGEV_THREAD_ID`,
//! timer_create(2)): no helper thread to start, to sandbox, or to join. A
//! signal that lands outside KVM_RUN is lost, hence the repeats.

use std::sync::Once;
use std::time::{Duration, Instant};

/// The signal used to interrupt KVM_RUN (a real-time signal nobody else uses).
pub(crate) fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 2
}

/// How often the timer signals again once the deadline has passed.
const REPEAT: Duration = Duration::from_millis(5);

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

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec { tv_sec: d.as_secs() as libc::time_t, tv_nsec: libc::c_long::from(d.subsec_nanos() as i32) }
}

/// A running watchdog; dropping it deletes the timer. It belongs to the
/// thread that started it, the one the timer signals.
#[derive(Debug)]
pub struct Watchdog {
    timer: libc::timer_t,
    deadline: Instant,
}

impl Watchdog {
    /// Starts watching the calling thread (the vCPU thread).
    pub fn start(timeout: Duration) -> std::io::Result<Watchdog> {
        install_handler();
        // A zero first expiry would disarm the timer.
        let timeout = timeout.max(Duration::from_nanos(1));
        // The deadline is taken before the timer is armed, so the first
        // signal never comes before it.
        let deadline = Instant::now() + timeout;
        // SAFETY: a zeroed sigevent is valid; the fields set ask for the
        // signal to go to this thread (gettid has no preconditions).
        let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = kick_signal();
        // SAFETY: gettid has no preconditions.
        event.sigev_notify_thread_id = unsafe { libc::gettid() };
        let mut timer: libc::timer_t = std::ptr::null_mut();
        // SAFETY: timer_create reads the sigevent and writes the new timer's
        // id, both owned by this frame.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let watchdog = Watchdog { timer, deadline };
        let spec = libc::itimerspec { it_value: timespec(timeout), it_interval: timespec(REPEAT) };
        // SAFETY: `timer` was just created; the itimerspec is owned by this
        // frame and the old value is not asked for.
        if unsafe { libc::timer_settime(watchdog.timer, 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(watchdog)
    }

    /// Whether the deadline passed; the vCPU loop calls this after every
    /// exit (an interrupted KVM_RUN among them).
    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // SAFETY: the timer was created by `start` and is deleted once; a
        // signal it already queued finds the handler, which does nothing.
        unsafe { libc::timer_delete(self.timer) };
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
