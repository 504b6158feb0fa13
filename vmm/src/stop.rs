//! Why a guest stopped running: the one answer every layer shares.
//!
//! A device ends a run by returning a [`GuestStop`] (the exit and fault
//! ports do), the exit handler ([`crate::exit::handle_exit`]) and the vCPU
//! loop turn CPU stops into one, and the report keeps it. It sits below all
//! of them and imports none of them.

use serde::Serialize;

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
