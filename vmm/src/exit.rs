//! VM exits: what the vCPU stopped for, and what the VMM does about it.
//!
//! [`handle_exit`] is a pure function of the exit and the device bus, so
//! every case is unit-tested without KVM. The vCPU loop turns a
//! `kvm_ioctls::VcpuExit` into an [`Exit`] and calls it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::devices::{DeviceContext, PortBus};
use crate::stop::GuestStop;

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
    /// Every reason [`handle_exit`] dispatches, as [`Exit::reason`] names them.
    pub const REASONS: [&'static str; 10] = [
        "io-in",
        "io-out",
        "mmio-read",
        "mmio-write",
        "hlt",
        "shutdown",
        "fail-entry",
        "internal-error",
        "system-event",
        "other",
    ];

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

impl ExitStats {
    /// Counts one exit of `reason` (also for exits a run handles before
    /// [`handle_exit`] sees them).
    pub(crate) fn count(&mut self, reason: &'static str) {
        self.total += 1;
        *self.by_reason.entry(reason).or_default() += 1;
    }
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
    stats.count(exit.reason());
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
