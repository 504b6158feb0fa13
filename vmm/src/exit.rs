//! VM exits: what the vCPU stopped for, and what the VMM does about it.
//!
//! [`handle_exit`] is a pure function of the exit and the device bus, so
//! every case is unit-tested without KVM. The vCPU loop turns a
//! `kvm_ioctls::VcpuExit` into an [`Exit`] and calls it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::devices::{DeviceContext, PortBus};

/// A VM exit, in the terms the VMM handles (a subset of KVM's exit reasons).
#[derive(Debug)]
pub enum Exit<'a> {
    /// `in` from a port; the handler fills `data`.
    IoIn(u16, &'a mut [u8]),
    /// `out` to a port.
    IoOut(u16, &'a [u8]),
    /// A read of guest-physical memory that is not RAM.
    MmioRead(u64, &'a mut [u8]),
    /// A write to guest-physical memory that is not RAM.
    MmioWrite(u64, &'a [u8]),
    /// The guest executed `hlt` (with interrupts off it will never wake).
    Hlt,
    /// Triple fault or another reason the CPU shut down.
    Shutdown,
    /// KVM could not enter the guest.
    FailEntry(u64),
    /// KVM's instruction emulator (or another part of KVM) gave up.
    InternalError,
    /// A system event (reset, shutdown, crash) requested by the guest.
    SystemEvent(u32),
    /// Anything else.
    Other(String),
}

impl Exit<'_> {
    /// The exit reason's name, for counting.
    pub fn reason(&self) -> &'static str {
        match self {
            Exit::IoIn(..) => "io-in",
            Exit::IoOut(..) => "io-out",
            Exit::MmioRead(..) => "mmio-read",
            Exit::MmioWrite(..) => "mmio-write",
            Exit::Hlt => "hlt",
            Exit::Shutdown => "shutdown",
            Exit::FailEntry(_) => "fail-entry",
            Exit::InternalError => "internal-error",
            Exit::SystemEvent(_) => "system-event",
            Exit::Other(_) => "other",
        }
    }
}

/// What the guest did with an exception its kernel could not handle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultInfo {
    /// Exception vector.
    pub vector: u8,
    /// The CPU's error code (0 where there is none).
    pub error_code: u64,
    /// The faulting instruction.
    pub rip: u64,
    /// CR2: the address that faulted (#PF only).
    pub address: u64,
    /// The stack pointer at the fault.
    pub rsp: u64,
    /// Whether it happened in ring 3 (the workload) rather than the kernel.
    pub user: bool,
}

impl FaultInfo {
    /// The exception's mnemonic and name.
    pub fn name(&self) -> &'static str {
        exception_name(self.vector)
    }

    /// The exit status a Linux process would get for the same fault (128 +
    /// the signal the kernel would send), so native and VM runs compare.
    pub fn exit_status(&self) -> i32 {
        let signal = match self.vector {
            0 => 8,       // #DE -> SIGFPE
            1 | 3 => 5,   // #DB, #BP -> SIGTRAP
            6 => 4,       // #UD -> SIGILL
            16 | 19 => 8, // x87 / SIMD floating point -> SIGFPE
            17 => 7,      // #AC -> SIGBUS
            _ => 11,      // #PF, #GP, ... -> SIGSEGV
        };
        128 + signal
    }

    /// One line for a student: what faulted, where, and why.
    pub fn describe(&self) -> String {
        let who = if self.user { "the workload (ring 3)" } else { "the guest kernel (ring 0)" };
        let mut s = format!("{} in {who} at rip {:#x}", self.name(), self.rip);
        if self.vector == 14 {
            let e = self.error_code;
            let access = if e & 0x10 != 0 {
                "instruction fetch"
            } else if e & 2 != 0 {
                "write"
            } else {
                "read"
            };
            let why = if e & 1 == 0 { "not mapped" } else { "protection violation (a kernel-only page)" };
            s += &format!(": {access} of address {:#x}, {why}", self.address);
        } else if self.error_code != 0 {
            s += &format!(" (error code {:#x})", self.error_code);
        }
        s
    }
}

/// The x86 exception name for `vector`.
pub fn exception_name(vector: u8) -> &'static str {
    match vector {
        0 => "#DE divide error",
        1 => "#DB debug",
        2 => "NMI",
        3 => "#BP breakpoint",
        4 => "#OF overflow",
        5 => "#BR bound range",
        6 => "#UD invalid opcode",
        7 => "#NM device not available",
        8 => "#DF double fault",
        10 => "#TS invalid TSS",
        11 => "#NP segment not present",
        12 => "#SS stack fault",
        13 => "#GP general protection fault",
        14 => "#PF page fault",
        16 => "#MF x87 floating point",
        17 => "#AC alignment check",
        18 => "#MC machine check",
        19 => "#XM SIMD floating point",
        20 => "#VE virtualization exception",
        21 => "#CP control protection",
        _ => "unexpected interrupt",
    }
}

/// Why the guest stopped running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum GuestStop {
    /// The guest wrote its exit status to the exit port.
    Exited(u32),
    /// The guest kernel reported an unhandled exception.
    Fault(FaultInfo),
    /// The CPU shut down (a triple fault: an exception while delivering a
    /// double fault).
    Shutdown,
    /// `hlt` with nothing to wake the vCPU.
    Halted,
    /// The guest accessed a port no device owns (strict mode).
    UnknownPort {
        /// The port.
        port: u16,
        /// Write (`out`) or read (`in`).
        write: bool,
    },
    /// The guest accessed guest-physical memory that is neither RAM nor a
    /// device (strict mode).
    UnmappedMmio {
        /// Guest-physical address.
        addr: u64,
        /// Write or read.
        write: bool,
    },
    /// The paravirtual console was handed a buffer outside guest memory.
    BadPvBuffer {
        /// Guest address.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// KVM could not enter the guest.
    FailEntry {
        /// Hardware entry failure reason.
        reason: u64,
    },
    /// KVM reported an internal error (often: its instruction emulator
    /// could not emulate a guest instruction).
    InternalError,
    /// The guest asked for a reset, shutdown or crash.
    SystemEvent {
        /// KVM_SYSTEM_EVENT_* type.
        event: u32,
    },
    /// An exit reason this VMM does not handle.
    Unexpected {
        /// What it was.
        what: String,
    },
    /// The run took longer than its timeout.
    Timeout {
        /// The timeout, in milliseconds.
        after_ms: u64,
    },
}

impl GuestStop {
    /// Exit status for the `virtlab` process: the workload's own status,
    /// 128 + signal for a fault (as for a native process), 124 for a timeout
    /// (as `timeout(1)`), 125 + 0 for other VM failures.
    pub fn exit_status(&self) -> i32 {
        match self {
            GuestStop::Exited(s) => (*s & 0xff) as i32,
            GuestStop::Fault(f) => f.exit_status(),
            GuestStop::Timeout { .. } => 124,
            _ => 125,
        }
    }

    /// Whether the workload ended by itself (exit status given).
    pub fn is_exit(&self) -> bool {
        matches!(self, GuestStop::Exited(_))
    }

    /// One line for a student.
    pub fn describe(&self) -> String {
        match self {
            GuestStop::Exited(s) => format!("the workload exited with status {s}"),
            GuestStop::Fault(f) => format!("guest fault: {}", f.describe()),
            GuestStop::Shutdown => {
                "the vCPU shut down (triple fault: the guest kernel could not even handle its double fault)".into()
            }
            GuestStop::Halted => "the guest halted with nothing left to wake it".into(),
            GuestStop::UnknownPort { port, write } => format!(
                "the guest {} I/O port {port:#x}, which no device owns",
                if *write { "wrote to" } else { "read from" }
            ),
            GuestStop::UnmappedMmio { addr, write } => format!(
                "the guest {} guest-physical address {addr:#x}, which is neither RAM nor a device",
                if *write { "wrote to" } else { "read from" }
            ),
            GuestStop::BadPvBuffer { addr, len } => format!(
                "the guest handed the paravirtual console a buffer outside its memory ({len} bytes at {addr:#x})"
            ),
            GuestStop::FailEntry { reason } => format!("KVM could not enter the guest (hardware reason {reason:#x})"),
            GuestStop::InternalError => "KVM internal error: the host could not emulate a guest instruction".into(),
            GuestStop::SystemEvent { event } => {
                format!("the guest requested system event {event} (reset or power off)")
            }
            GuestStop::Unexpected { what } => format!("unexpected VM exit: {what}"),
            GuestStop::Timeout { after_ms } => format!("the guest was stopped after the {after_ms} ms timeout"),
        }
    }
}

/// What to do when the guest touches a port or address no device owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownIo {
    /// Stop the guest with a report (our own guests never do it: it is a bug).
    #[default]
    Stop,
    /// Reads return all ones, writes are dropped, both are counted (what a PC
    /// with nothing on the bus does; Linux probes such ports).
    Ignore,
}

/// VM exits counted by reason and by port.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExitStats {
    /// Every exit.
    pub total: u64,
    /// Exits by reason ("io-out", "hlt", ...).
    pub by_reason: BTreeMap<&'static str, u64>,
    /// Port I/O exits by device name ("uart", "pv-console", ...).
    pub by_device: BTreeMap<&'static str, u64>,
    /// Port I/O exits by port number.
    pub by_port: BTreeMap<u16, u64>,
    /// Accesses to ports or addresses no device owns (with [`UnknownIo::Ignore`]).
    pub unhandled: u64,
}

/// The outcome of handling one exit.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Enter the guest again.
    Continue,
    /// The run is over.
    Stop(GuestStop),
}

/// Handles one VM exit: dispatches port I/O to the bus, counts it, and says
/// whether the guest runs on.
pub fn handle_exit(
    bus: &mut PortBus,
    ctx: &mut DeviceContext<'_>,
    stats: &mut ExitStats,
    policy: UnknownIo,
    exit: Exit<'_>,
) -> Flow {
    stats.total += 1;
    *stats.by_reason.entry(exit.reason()).or_default() += 1;
    let port_of = |e: &Exit<'_>| match e {
        Exit::IoIn(p, _) | Exit::IoOut(p, _) => Some(*p),
        _ => None,
    };
    if let Some(port) = port_of(&exit) {
        *stats.by_port.entry(port).or_default() += 1;
        if let Some(name) = bus.name_of(port) {
            *stats.by_device.entry(name).or_default() += 1;
        }
    }
    let unhandled = |stats: &mut ExitStats, stop: GuestStop| match policy {
        UnknownIo::Stop => Flow::Stop(stop),
        UnknownIo::Ignore => {
            stats.unhandled += 1;
            Flow::Continue
        }
    };
    match exit {
        Exit::IoOut(port, data) => match bus.find(port) {
            Some((dev, offset)) => match dev.write(offset, data, ctx) {
                Some(stop) => Flow::Stop(stop),
                None => Flow::Continue,
            },
            None => unhandled(stats, GuestStop::UnknownPort { port, write: true }),
        },
        Exit::IoIn(port, data) => match bus.find(port) {
            Some((dev, offset)) => {
                dev.read(offset, data, ctx);
                Flow::Continue
            }
            None => {
                data.fill(0xff);
                unhandled(stats, GuestStop::UnknownPort { port, write: false })
            }
        },
        Exit::MmioRead(addr, data) => {
            data.fill(0xff);
            unhandled(stats, GuestStop::UnmappedMmio { addr, write: false })
        }
        Exit::MmioWrite(addr, _) => unhandled(stats, GuestStop::UnmappedMmio { addr, write: true }),
        Exit::Hlt => Flow::Stop(GuestStop::Halted),
        Exit::Shutdown => Flow::Stop(GuestStop::Shutdown),
        Exit::FailEntry(reason) => Flow::Stop(GuestStop::FailEntry { reason }),
        Exit::InternalError => Flow::Stop(GuestStop::InternalError),
        Exit::SystemEvent(event) => Flow::Stop(GuestStop::SystemEvent { event }),
        Exit::Other(what) => Flow::Stop(GuestStop::Unexpected { what }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::exit_port::{ExitPort, FaultPort};
    use crate::devices::tests_support::Harness;
    use crate::devices::uart::Uart;
    use virtlab_minikernel::abi::{port, BootInfo, FaultReport, BOOT_INFO_ADDR};
    use vm_memory::{Bytes, GuestAddress};

    fn bus() -> PortBus {
        let mut bus = PortBus::new();
        bus.insert(port::UART_COM1, 8, Box::new(Uart::new())).unwrap();
        bus.insert(port::EXIT, 2, Box::new(ExitPort)).unwrap();
        bus.insert(port::FAULT, 1, Box::new(FaultPort)).unwrap();
        bus
    }

    #[test]
    fn port_writes_reach_their_device_and_are_counted() {
        let (mut h, mut bus, mut st) = (Harness::new(), bus(), ExitStats::default());
        for b in b"ok" {
            let f = handle_exit(&mut bus, &mut h.ctx(), &mut st, UnknownIo::Stop, Exit::IoOut(0x3f8, &[*b]));
            assert_eq!(f, Flow::Continue);
        }
        let mut lsr = [0u8];
        handle_exit(&mut bus, &mut h.ctx(), &mut st, UnknownIo::Stop, Exit::IoIn(0x3fd, &mut lsr));
        assert_eq!(lsr[0] & 0x20, 0x20);
        assert_eq!(h.console.output(), b"ok");
        assert_eq!(st.total, 3);
        assert_eq!(st.by_reason["io-out"], 2);
        assert_eq!(st.by_reason["io-in"], 1);
        assert_eq!(st.by_device["uart"], 3);
        assert_eq!(st.by_port[&0x3f8], 2);
    }

    #[test]
    fn the_exit_port_stops_with_the_status() {
        let (mut h, mut bus, mut st) = (Harness::new(), bus(), ExitStats::default());
        let f =
            handle_exit(&mut bus, &mut h.ctx(), &mut st, UnknownIo::Stop, Exit::IoOut(port::EXIT, &7u32.to_le_bytes()));
        assert_eq!(f, Flow::Stop(GuestStop::Exited(7)));
        assert_eq!(GuestStop::Exited(7).exit_status(), 7);
        assert_eq!(GuestStop::Exited(0x1ff).exit_status(), 0xff);
    }

    #[test]
    fn the_fault_port_reads_the_report() {
        let (mut h, mut bus, mut st) = (Harness::new(), bus(), ExitStats::default());
        let report = FaultReport { vector: 14, error_code: 6, rip: 0x40_1000, cs: 0x23, cr2: 0x10, rsp: 0x7f_0000 };
        let at = BOOT_INFO_ADDR + std::mem::offset_of!(BootInfo, fault) as u64;
        for (i, v) in
            [report.vector, report.error_code, report.rip, report.cs, report.cr2, report.rsp].iter().enumerate()
        {
            h.mem.write_obj(*v, GuestAddress(at + 8 * i as u64)).unwrap();
        }
        let f = handle_exit(&mut bus, &mut h.ctx(), &mut st, UnknownIo::Stop, Exit::IoOut(port::FAULT, &[14]));
        let Flow::Stop(GuestStop::Fault(fault)) = f else { panic!("{f:?}") };
        assert_eq!((fault.vector, fault.address, fault.rip, fault.user), (14, 0x10, 0x40_1000, true));
        assert_eq!(fault.exit_status(), 139);
        let text = fault.describe();
        assert!(text.contains("#PF") && text.contains("write") && text.contains("not mapped"), "{text}");
    }

    #[test]
    fn unknown_ports_stop_or_read_as_all_ones() {
        let (mut h, mut bus, mut st) = (Harness::new(), bus(), ExitStats::default());
        let f = handle_exit(&mut bus, &mut h.ctx(), &mut st, UnknownIo::Stop, Exit::IoOut(0x80, &[1]));
        assert_eq!(f, Flow::Stop(GuestStop::UnknownPort { port: 0x80, write: true }));
        let mut d = [0u8; 2];
        let f = handle_exit(&mut bus, &mut h.ctx(), &mut st, UnknownIo::Ignore, Exit::IoIn(0x61, &mut d));
        assert_eq!(f, Flow::Continue);
        assert_eq!(d, [0xff, 0xff]);
        assert_eq!(st.unhandled, 1);
        assert!(GuestStop::UnknownPort { port: 0x80, write: true }.describe().contains("0x80"));
    }

    #[test]
    fn unmapped_mmio_is_reported() {
        let (mut h, mut bus, mut st) = (Harness::new(), bus(), ExitStats::default());
        let f = handle_exit(&mut bus, &mut h.ctx(), &mut st, UnknownIo::Stop, Exit::MmioWrite(0xfee0_0000, &[0; 4]));
        assert_eq!(f, Flow::Stop(GuestStop::UnmappedMmio { addr: 0xfee0_0000, write: true }));
        let mut d = [0u8; 4];
        let f = handle_exit(&mut bus, &mut h.ctx(), &mut st, UnknownIo::Ignore, Exit::MmioRead(0xd000_0000, &mut d));
        assert_eq!((f, d), (Flow::Continue, [0xff; 4]));
    }

    #[test]
    fn cpu_stops_are_reported_not_panicked() {
        let (mut h, mut bus, mut st) = (Harness::new(), bus(), ExitStats::default());
        for (exit, want) in [
            (Exit::Shutdown, GuestStop::Shutdown),
            (Exit::Hlt, GuestStop::Halted),
            (Exit::InternalError, GuestStop::InternalError),
            (Exit::FailEntry(0x21), GuestStop::FailEntry { reason: 0x21 }),
            (Exit::Other("Watchdog".into()), GuestStop::Unexpected { what: "Watchdog".into() }),
        ] {
            let f = handle_exit(&mut bus, &mut h.ctx(), &mut st, UnknownIo::Stop, exit);
            assert_eq!(f, Flow::Stop(want.clone()));
            assert_eq!(want.exit_status(), 125);
            assert!(!want.describe().is_empty());
        }
        assert_eq!(st.by_reason["shutdown"], 1);
        assert_eq!(GuestStop::Timeout { after_ms: 5 }.exit_status(), 124);
    }
}
