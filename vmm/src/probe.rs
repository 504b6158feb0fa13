//! Probes of the host's virtualization: how fast guest kernel-mode code runs
//! compared with the same code on the host, so that a report can say whether
//! this is hardware-assisted virtualization or a nested host that emulates
//! guest kernel code; and whether there is KVM at all, for tests that need
//! it ([`kvm_or_skip`]).

use std::time::{Duration, Instant};

use crate::config::{KernelSource, VmConfig};
use crate::console::ConsoleSink;
use crate::observe::{Quiet, Step};
use crate::vm::{run, VmError};

/// A kernel ELF at 1 MiB whose whole job is a countdown loop of
/// `iterations` (`dec ecx; jnz`) in ring 0, then a write of 0 to the exit
/// port.
pub fn ring0_loop_kernel(iterations: u32) -> Vec<u8> {
    let mut code = vec![0xb9];
    code.extend(iterations.max(1).to_le_bytes()); // mov ecx, N
    code.extend([0xff, 0xc9, 0x75, 0xfc]); // 1: dec ecx; jnz 1b
    code.extend([0x66, 0xba]);
    code.extend(virtlab_minikernel::abi::port::EXIT.to_le_bytes()); // mov dx, EXIT
    code.extend([0x31, 0xc0, 0xef, 0xf4]); // xor eax, eax; out dx, eax; hlt
    crate::elf::tiny_executable(virtlab_minikernel::abi::KERNEL_BASE, &code)
}

/// The same countdown loop on the host, in user mode.
#[inline(never)]
pub fn host_loop(iterations: u32) -> Duration {
    let t = Instant::now();
    // SAFETY: a register-only loop; no memory, stack or flags the compiler
    // relies on are touched.
    unsafe {
        core::arch::asm!("2:", "dec ecx", "jnz 2b", inout("ecx") iterations.max(1) => _, options(nomem, nostack));
    }
    t.elapsed()
}

/// What the probe measured.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Ring0Probe {
    /// Loop iterations per run.
    pub iterations: u32,
    /// Nanoseconds per iteration in guest ring 0 (guest run time of the
    /// long loop minus that of a one-iteration loop, over the difference).
    pub guest_ring0_ns: f64,
    /// Nanoseconds per iteration on the host, in user mode.
    pub host_ns: f64,
    /// guest_ring0_ns / host_ns.
    pub slowdown: f64,
}

impl Ring0Probe {
    /// Whether guest kernel-mode code looks emulated rather than run by the
    /// CPU (a slowdown far beyond what hardware virtualization costs).
    pub fn kernel_mode_emulated(&self) -> bool {
        self.slowdown > 20.0
    }
}

fn guest_loop(iterations: u32) -> Result<f64, VmError> {
    let mut c = VmConfig::builtin_workload(&[]);
    c.kernel = KernelSource::Bytes(ring0_loop_kernel(iterations));
    c.timeout = Some(Duration::from_secs(60));
    let r = run(&c, ConsoleSink::Discard, &mut Quiet)?;
    let first = r.at(Step::FirstEntry).unwrap_or(0.0);
    let exit = r.at(Step::WorkloadExit).unwrap_or(first);
    Ok(exit - first)
}

/// Runs the ring-0 loop in a guest (the median of three runs, each against a
/// one-iteration baseline) and on the host.
pub fn probe_ring0(iterations: u32) -> Result<Ring0Probe, VmError> {
    let mut per_iter = Vec::new();
    for _ in 0..3 {
        let base = guest_loop(1)?;
        let long = guest_loop(iterations)?;
        per_iter.push(((long - base).max(0.0) * 1e3) / f64::from(iterations));
    }
    per_iter.sort_by(f64::total_cmp);
    let guest = per_iter[1];
    let mut host = Vec::new();
    let host_iters = iterations.saturating_mul(100);
    for _ in 0..3 {
        host.push(host_loop(host_iters).as_secs_f64() * 1e9 / f64::from(host_iters));
    }
    host.sort_by(f64::total_cmp);
    let host = host[1].max(1e-3);
    Ok(Ring0Probe { iterations, guest_ring0_ns: guest, host_ns: host, slowdown: guest / host })
}

/// Whether `/dev/kvm` opens for reading and writing (what every run needs),
/// or the error that says why not.
pub fn kvm_usable() -> std::io::Result<()> {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").map(drop)
}

/// For tests that need KVM: true when `/dev/kvm` can be used. Otherwise the
/// test `test` is skipped, loudly (a `SKIPPED` line on stderr saying why),
/// and false is returned; but with `VIRTLAB_REQUIRE_KVM=1` (as CI sets it)
/// a missing KVM panics: there a skip would be a test that lies.
pub fn kvm_or_skip(test: &str) -> bool {
    match kvm_usable() {
        Ok(()) => true,
        Err(e) => {
            if std::env::var("VIRTLAB_REQUIRE_KVM").as_deref() == Ok("1") {
                panic!("{test}: /dev/kvm is required (VIRTLAB_REQUIRE_KVM=1) but cannot be opened: {e}");
            }
            eprintln!(
                "SKIPPED {test}: /dev/kvm cannot be opened ({e}); set VIRTLAB_REQUIRE_KVM=1 to make this a failure"
            );
            false
        }
    }
}
