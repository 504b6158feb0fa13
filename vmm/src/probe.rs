//! Probes of the host's virtualization: how fast guest kernel-mode code runs
//! compared with the same code on the host, so that a report can say whether
//! this is hardware-assisted virtualization or a nested host that emulates
//! guest kernel code.

use std::time::{Duration, Instant};

use crate::config::{KernelSource, VmConfig};
use crate::console::ConsoleSink;
use crate::observe::{Quiet, Step};
use crate::vm::{run, VmError};

/// A kernel ELF at 1 MiB whose whole job is a countdown loop of
/// `iterations` (`dec ecx; jnz`) in ring 0, then a write of 0 to the exit
/// port.
pub fn ring0_loop_kernel(iterations: u32) -> Vec<u8> {
    let base: u64 = virtlab_minikernel::abi::KERNEL_BASE;
    let mut code = vec![0xb9];
    code.extend(iterations.max(1).to_le_bytes()); // mov ecx, N
    code.extend([0xff, 0xc9, 0x75, 0xfc]); // 1: dec ecx; jnz 1b
    code.extend([0x66, 0xba]);
    code.extend(virtlab_minikernel::abi::port::EXIT.to_le_bytes()); // mov dx, EXIT
    code.extend([0x31, 0xc0, 0xef, 0xf4]); // xor eax, eax; out dx, eax; hlt
    let hdr = 64 + 56;
    let mut f = Vec::with_capacity(hdr + code.len());
    f.extend(b"\x7fELF\x02\x01\x01\x00");
    f.extend([0u8; 8]);
    f.extend(2u16.to_le_bytes());
    f.extend(62u16.to_le_bytes());
    f.extend(1u32.to_le_bytes());
    f.extend((base + hdr as u64).to_le_bytes());
    f.extend(64u64.to_le_bytes());
    f.extend(0u64.to_le_bytes());
    f.extend(0u32.to_le_bytes());
    f.extend(64u16.to_le_bytes());
    f.extend(56u16.to_le_bytes());
    f.extend(1u16.to_le_bytes());
    f.extend([0u8; 6]);
    let size = (hdr + code.len()) as u64;
    f.extend(1u32.to_le_bytes());
    f.extend(5u32.to_le_bytes());
    f.extend(0u64.to_le_bytes());
    f.extend(base.to_le_bytes());
    f.extend(base.to_le_bytes());
    f.extend(size.to_le_bytes());
    f.extend(size.to_le_bytes());
    f.extend(0x1000u64.to_le_bytes());
    f.extend(code);
    f
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
#[derive(Debug, Clone, Copy, serde::Serialize)]
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
