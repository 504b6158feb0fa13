//! The Linux run: building a PC-like VM from a [`LinuxConfig`], booting the
//! kernel and running it to the init's exit, a reset, or the timeout.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kvm_bindings::{
    kvm_msr_entry, kvm_pit_config, kvm_regs, kvm_segment, Msrs, KVM_INTERNAL_ERROR_EMULATION, KVM_MAX_CPUID_ENTRIES,
    KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd};
use serde::Serialize;
use virtlab_minikernel::abi::port;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::boot::{self, layout, BootError, ZeroPageInput};
use super::host_quirks::{self, Fixup, HostQuirks};
use super::initramfs::{self, InitramfsError, WORKLOAD_PATH};
use super::kernel::{self, Entry, KernelError};
use super::{compose_cmdline, CmdlineError, InitrdSource, LinuxConfig, MIN_MEM};
use crate::arch::x86_64::{paging, regs};
use crate::console::{Console, ConsoleSink};
use crate::devices::boot_timer::BootTimer;
use crate::devices::exit_port::ExitPort;
use crate::devices::i8042::{self, I8042};
use crate::devices::serial::{Serial, SerialState};
use crate::devices::{BusError, DeviceContext, PortBus};
use crate::exit::{handle_exit, ExitStats, Flow, GuestStop, UnknownIo};
use crate::input::{self, FileRole, InputError};
use crate::observe::{Observer, Step};
use crate::report::{RunReport, SyscallCounts};
use crate::vm::{convert, memory_figures, register_memory, us, Clock, VmError};
use crate::watchdog::Watchdog;

/// The UART's interrupt line (COM1).
pub const UART_IRQ: u32 = 4;
const TSS_ADDR: usize = 0xfffb_d000;
const BOOT_STACK: u64 = 0x8ff0;

/// Errors that keep a Linux guest from running.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// Guest memory size out of range.
    #[error("guest memory of {size} MiB is {what} for a Linux guest; use --mem between {min} MiB and {max} MiB", size = .size >> 20, min = MIN_MEM >> 20, max = layout::MAX_MEM >> 20)]
    MemSize {
        /// Bytes asked for.
        size: u64,
        /// "too small", "too large" or "not a multiple of 4 KiB".
        what: &'static str,
    },
    /// The kernel file could not be read (or is no regular file, or too
    /// large).
    #[error(transparent)]
    ReadKernel(InputError),
    /// The initrd file could not be read (or is no regular file, or
    /// larger than guest memory).
    #[error(transparent)]
    ReadInitrd(InputError),
    /// The kernel image is unusable.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// Building the initramfs failed.
    #[error(transparent)]
    Initramfs(#[from] InitramfsError),
    /// Boot data does not fit.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// A bad command-line word.
    #[error(transparent)]
    Cmdline(#[from] CmdlineError),
    /// The workload is not a static executable.
    #[error(transparent)]
    Workload(#[from] crate::loader::LoadError),
    /// KVM, memory or watchdog set-up failed.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// A KVM ioctl failed.
    #[error("ioctl {0} failed")]
    Ioctl(&'static str, #[source] kvm_ioctls::Error),
    /// Registering a device failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// Writing boot data into guest memory failed.
    #[error("cannot write {0} into guest memory")]
    Memory(&'static str, #[source] vm_memory::GuestMemoryError),
    /// The page tables for the 64-bit entry.
    #[error(transparent)]
    Paging(#[from] paging::PagingError),
    /// The irqfd's eventfd.
    #[error("cannot create the UART's interrupt eventfd")]
    EventFd(#[source] std::io::Error),
}

/// What a Linux run produced: the common report and what is Linux's own.
#[derive(Debug, Clone, Serialize)]
pub struct LinuxReport {
    /// Phases, exits, memory, exit status: as for the minikernel.
    #[serde(flatten)]
    pub run: RunReport,
    /// The kernel file.
    pub kernel: String,
    /// "vmlinux (ELF)" or "bzImage".
    pub kernel_format: &'static str,
    /// "pvh" or "64-bit".
    pub entry: &'static str,
    /// The command line given to the kernel.
    pub cmdline: String,
    /// Size of the initrd.
    pub initrd_bytes: u64,
    /// The host work-arounds: on or off, why, and what they fixed.
    pub host_quirks: HostQuirks,
    /// Interrupts the UART raised.
    pub uart_interrupts: u64,
    /// Of those, sent again because the interrupt was still pending.
    pub uart_reasserted: u64,
    /// The kernel's panic line, if it panicked.
    pub panic: Option<String>,
    /// What the host could not emulate, if that ended the run.
    pub emulation_failure: Option<String>,
    /// The last lines of console output (for runs that did not exit).
    pub last_lines: Vec<String>,
    /// When the kernel printed "Run /virtlab/init as init process", in
    /// microseconds since the start of the run: the end of the kernel's own
    /// boot, seen on the console, so it is known for any kernel, also one
    /// whose init cannot report through the boot-timer port.
    pub init_line_us: Option<f64>,
}

impl LinuxReport {
    /// One line for a student about how the run ended.
    pub fn summary(&self) -> String {
        if let Some(p) = &self.panic {
            return format!("the guest kernel panicked: {p}");
        }
        if let Some(e) = &self.emulation_failure {
            return format!("{} ({e})", self.run.summary);
        }
        self.run.summary.clone()
    }
}

/// Console output: passed on to the real sink, the tail kept for reports.
struct Tee {
    sink: ConsoleSink,
    state: Arc<Mutex<TeeState>>,
}

#[derive(Default)]
struct TeeState {
    tail: VecDeque<u8>,
    captured: Vec<u8>,
    line: Vec<u8>,
    init_line_at: Option<Instant>,
}

/// What the kernel prints just before it starts the init program.
const INIT_LINE: &[u8] = b" as init process";

impl TeeState {
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

/// The kernel's panic line in console output, if any.
pub fn find_panic(text: &str) -> Option<String> {
    text.lines().find(|l| l.contains("Kernel panic - not syncing")).map(|l| l.trim().to_string())
}

fn check_mem(size: u64) -> Result<(), LinuxError> {
    let what = if size < MIN_MEM {
        "too small"
    } else if size > layout::MAX_MEM {
        "too large"
    } else if size % 4096 != 0 {
        "not a multiple of 4 KiB"
    } else {
        return Ok(());
    };
    Err(LinuxError::MemSize { size, what })
}

/// Boots the kernel and runs the configured program under its init.
pub fn run_linux(
    config: &LinuxConfig,
    sink: ConsoleSink,
    observer: &mut dyn Observer,
) -> Result<LinuxReport, LinuxError> {
    check_mem(config.mem_size)?;
    let kernel_name = config.kernel.display().to_string();
    let mut kernel_image = kernel::Image::open(&config.kernel).map_err(LinuxError::ReadKernel)?;
    let format = kernel::detect(&kernel_image.head, &kernel_name)?;
    match format {
        kernel::Format::BzImage => kernel::check_bzimage(&kernel_image.head, kernel_image.len, config.mem_size)?,
        kernel::Format::Elf => kernel::check_elf(&mut kernel_image, config.mem_size)?,
    };
    let workload: &[u8] = if config.workload.is_empty() { crate::BUILTIN_WORKLOAD } else { &config.workload };
    crate::loader::parse_user_elf(workload)?;
    let initrd = match &config.initrd {
        InitrdSource::Build { rootfs } => initramfs::build_within(workload, rootfs.as_deref(), config.mem_size)?,
        InitrdSource::File(p) => input::read(p, FileRole::Initrd, config.mem_size).map_err(LinuxError::ReadInitrd)?,
    };
    let mut quirks = HostQuirks::probe();
    let program: Vec<String> = if config.program.is_empty() {
        vec![WORKLOAD_PATH.to_string(), "ready".to_string()]
    } else {
        config.program.clone()
    };
    let cmdline = compose_cmdline(quirks.cmdline(), config.extra_cmdline.as_deref(), &program)?;

    let now = Instant::now();
    let mut clock = Clock { start: now, last: now, phases: Vec::new(), observer };

    clock.before(Step::OpenKvm);
    let kvm = Kvm::new().map_err(VmError::OpenKvm)?;
    let api = kvm.get_api_version();
    if api != 12 {
        return Err(VmError::KvmApi(api).into());
    }
    clock.done(Step::OpenKvm, &format!("KVM API version {api}; host work-arounds {}", on_off(quirks.active)));

    clock.before(Step::CreateVm);
    let vm = kvm.create_vm().map_err(|e| LinuxError::Ioctl("KVM_CREATE_VM", e))?;
    vm.set_tss_address(TSS_ADDR).map_err(|e| LinuxError::Ioctl("KVM_SET_TSS_ADDR", e))?;
    vm.create_irq_chip().map_err(|e| LinuxError::Ioctl("KVM_CREATE_IRQCHIP", e))?;
    let pit = kvm_pit_config { flags: KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
    vm.create_pit2(pit).map_err(|e| LinuxError::Ioctl("KVM_CREATE_PIT2", e))?;
    let uart_line = Arc::new(EventFd::new(libc::EFD_NONBLOCK).map_err(LinuxError::EventFd)?);
    vm.register_irqfd(&uart_line, UART_IRQ).map_err(|e| LinuxError::Ioctl("KVM_IRQFD", e))?;
    clock.done(Step::CreateVm, "VM with in-kernel PIC, IOAPIC, local APIC and PIT; UART on IRQ 4 through an irqfd");

    clock.before(Step::Memory);
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), config.mem_size as usize)])
        .map_err(|e| VmError::Alloc(config.mem_size >> 20, e))?;
    register_memory(&vm, &mem, config.mem_size)?;
    clock.done(Step::Memory, &format!("{} MiB at guest-physical 0; E820: RAM, BIOS hole, RAM", config.mem_size >> 20));

    clock.before(Step::Load);
    let k = kernel::load(&mem, &mut kernel_image, config.mem_size, &kernel_name)?;
    boot::check_cmdline(&cmdline, k.cmdline_max)?;
    let initrd_at = boot::place_initrd(config.mem_size, k.end, initrd.len() as u64, k.initrd_addr_max)?;
    let write =
        |what, bytes: &[u8], at: u64| mem.write_slice(bytes, GuestAddress(at)).map_err(|e| LinuxError::Memory(what, e));
    write("the initrd", &initrd, initrd_at)?;
    // The guest has its copy: the VMM's goes.
    let initrd_len = initrd.len() as u64;
    drop(initrd);
    let mut c = cmdline.as_bytes().to_vec();
    c.push(0);
    write("the command line", &c, layout::CMDLINE)?;
    let e820 = boot::e820_map(config.mem_size);
    let initrd_range = Some((initrd_at, initrd_len));
    let long = matches!(k.entry, Entry::Long64(_));
    let gdt: Vec<u8> = boot::boot_gdt(long).iter().flat_map(|d| d.to_le_bytes()).collect();
    write("the boot GDT", &gdt, layout::GDT)?;
    let cr3 = match k.entry {
        Entry::Pvh(_) => {
            let (info, memmap, modlist) = boot::pvh_start_info(layout::CMDLINE, initrd_range, &e820);
            write("hvm_start_info", &info, layout::PVH_INFO)?;
            write("the PVH memory map", &memmap, layout::PVH_MEMMAP)?;
            write("the PVH module list", &modlist, layout::PVH_MODLIST)?;
            0
        }
        Entry::Long64(_) => {
            let zp = boot::zero_page(&ZeroPageInput {
                setup_header: k.setup_header.as_deref(),
                cmdline: (layout::CMDLINE, k.cmdline_max),
                initrd: initrd_range,
                e820: &e820,
            });
            write("the zero page", &zp, layout::ZERO_PAGE)?;
            paging::write_identity_map(&mem, config.mem_size)?
        }
    };
    let (entry, entry_name) = match k.entry {
        Entry::Pvh(a) => (a, "pvh"),
        Entry::Long64(a) => (a, "64-bit"),
    };
    clock.done(
        Step::Load,
        &format!(
            "{} ({} bytes) up to {:#x}, entry {entry:#x} ({entry_name}); initrd {} bytes at {initrd_at:#x}; command line {} bytes",
            k.format.name(),
            kernel_image.len,
            k.end,
            initrd_len,
            cmdline.len()
        ),
    );

    clock.before(Step::VcpuSetup);
    let mut vcpu = vm.create_vcpu(0).map_err(|e| LinuxError::Ioctl("KVM_CREATE_VCPU", e))?;
    let hidden = setup_vcpu(&kvm, &vcpu, &mut quirks, k.entry, cr3)?;
    let tsc_khz = vcpu.get_tsc_khz().unwrap_or(0);
    clock.done(
        Step::VcpuSetup,
        &format!(
            "vCPU 0 in {} mode at {entry:#x}; {hidden} CPUID feature bits hidden; LINT0 ExtINT, LINT1 NMI",
            if long { "64-bit long" } else { "32-bit protected (PVH)" }
        ),
    );

    let tee_state = Arc::new(Mutex::new(TeeState::default()));
    let capture = matches!(sink, ConsoleSink::Capture);
    let mut console = Console::new(ConsoleSink::Writer(Box::new(Tee { sink, state: Arc::clone(&tee_state) })));
    let serial = Serial::new(Arc::clone(&uart_line));
    let (serial_state, _) = serial.handle();
    let mut bus = PortBus::new();
    bus.insert(port::UART_COM1, 8, Box::new(serial))?;
    bus.insert(i8042::BASE, i8042::LEN, Box::new(I8042::default()))?;
    bus.insert(port::EXIT, 2, Box::new(ExitPort))?;
    bus.insert(port::BOOT_TIMER, 1, Box::new(BootTimer))?;
    let _raw_tty =
        if config.interactive { Some(start_input(Arc::clone(&serial_state), Arc::clone(&uart_line))) } else { None };
    let kicker = UartKicker::start(Arc::clone(&serial_state), Arc::clone(&uart_line));
    let mut milestones = Vec::new();
    let mut stats = ExitStats::default();
    let mut emulation_failure = None;

    clock.before(Step::FirstEntry);
    let watchdog = match config.timeout {
        Some(t) => Some(Watchdog::start(t).map_err(VmError::Watchdog)?),
        None => None,
    };
    let entered = Instant::now();
    let mut first_exit = false;
    let mut reported = 0;
    let stop = loop {
        if let (Some(w), Some(t)) = (&watchdog, config.timeout) {
            if w.expired() {
                break GuestStop::Timeout { after_ms: t.as_millis() as u64 };
            }
        }
        let flow = match vcpu.run() {
            Ok(VcpuExit::InternalError) => None,
            Ok(exit) => {
                let mut ctx = DeviceContext { mem: &mem, console: &mut console, milestones: &mut milestones };
                Some(handle_exit(&mut bus, &mut ctx, &mut stats, UnknownIo::Ignore, convert(exit)))
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Some(Flow::Continue),
            Err(e) => {
                drop(watchdog);
                return Err(LinuxError::Ioctl("KVM_RUN", e));
            }
        };
        let flow = match flow {
            Some(f) => f,
            None => {
                stats.total += 1;
                *stats.by_reason.entry("internal-error").or_default() += 1;
                match internal_error(&mut vcpu, &mem, &mut quirks) {
                    Ok(()) => Flow::Continue,
                    Err(what) => {
                        emulation_failure = Some(what);
                        Flow::Stop(GuestStop::InternalError)
                    }
                }
            }
        };
        if !first_exit {
            first_exit = true;
            clock.mark(Step::FirstEntry, entered, "the vCPU is running the kernel's entry code");
        }
        clock.guest_progress(
            &milestones,
            &mut reported,
            &console,
            "Linux booted and started /virtlab/init (boot-timer port)",
        );
        if let Flow::Stop(s) = flow {
            break s;
        }
    };
    let stopped = Instant::now();
    drop(kicker);
    drop(watchdog);
    console.flush();
    clock.mark(Step::WorkloadExit, stopped, &stop.describe());

    clock.before(Step::Teardown);
    let memory = memory_figures(&mem, config.mem_size);
    let (uart_interrupts, uart_reasserted) =
        serial_state.lock().map(|s| (s.interrupts, s.reasserted)).unwrap_or((0, 0));
    drop(vcpu);
    drop(vm);
    drop(mem);
    drop(kvm);
    clock.done(Step::Teardown, "vCPU, VM and /dev/kvm fds closed, guest memory unmapped");

    let (tail, captured, init_line_at) = {
        let mut s = tee_state.lock().unwrap_or_else(|p| p.into_inner());
        (
            String::from_utf8_lossy(s.tail.make_contiguous()).into_owned(),
            std::mem::take(&mut s.captured),
            s.init_line_at,
        )
    };
    let panic = find_panic(&tail);
    let last_lines = if stop.is_exit() {
        Vec::new()
    } else {
        let lines: Vec<&str> = tail.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(10)..].iter().map(|l| l.trim_end().to_string()).collect()
    };
    let total = clock.last.saturating_duration_since(clock.start);
    let run = RunReport {
        exit_status: stop.exit_status(),
        summary: stop.describe(),
        stop,
        phases: clock.phases,
        exits: stats,
        console: crate::config::ConsoleKind::Uart,
        console_bytes: console.bytes(),
        syscalls: SyscallCounts::default(),
        memory,
        guest_run_us: us(stopped.saturating_duration_since(entered)),
        total_us: us(total),
        tsc_khz,
        kernel_pvh: matches!(k.entry, Entry::Pvh(_)),
        output: capture.then(|| String::from_utf8_lossy(&captured).into_owned()),
    };
    Ok(LinuxReport {
        run,
        kernel: kernel_name,
        kernel_format: k.format.name(),
        entry: entry_name,
        cmdline,
        initrd_bytes: initrd_len,
        host_quirks: quirks,
        uart_interrupts,
        uart_reasserted,
        panic,
        emulation_failure,
        last_lines,
        init_line_us: init_line_at.map(|at| us(at.saturating_duration_since(now))),
    })
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// CPUID, MSRs, the local APIC's LINT pins, and registers for the entry.
/// Returns how many CPUID bits the host work-arounds hid.
fn setup_vcpu(kvm: &Kvm, vcpu: &VcpuFd, quirks: &mut HostQuirks, entry: Entry, cr3: u64) -> Result<u64, LinuxError> {
    let mut cpuid =
        kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(|e| LinuxError::Ioctl("KVM_GET_SUPPORTED_CPUID", e))?;
    crate::arch::x86_64::cpuid::filter(&mut cpuid, 0, false);
    let hidden = quirks.filter_cpuid(&mut cpuid);
    vcpu.set_cpuid2(&cpuid).map_err(|e| LinuxError::Ioctl("KVM_SET_CPUID2", e))?;

    // MSRs as after a reset: SYSENTER/SYSCALL state cleared, fast strings
    // on, the TSC at 0; MTRRs default to write-back last (a host may refuse
    // it; Linux copes).
    let msrs: [(u32, u64); 10] = [
        (0x174, 0),             // IA32_SYSENTER_CS
        (0x175, 0),             // IA32_SYSENTER_ESP
        (0x176, 0),             // IA32_SYSENTER_EIP
        (0xc000_0081, 0),       // STAR
        (0xc000_0082, 0),       // LSTAR
        (0xc000_0084, 0),       // SFMASK
        (0xc000_0102, 0),       // KERNEL_GS_BASE
        (0x10, 0),              // TSC
        (0x1a0, 1),             // IA32_MISC_ENABLE: fast string operations
        (0x2ff, (1 << 11) | 6), // MTRR default type: enabled, write-back
    ];
    let entries: Vec<kvm_msr_entry> =
        msrs.iter().map(|&(index, data)| kvm_msr_entry { index, data, ..Default::default() }).collect();
    let msrs = Msrs::from_entries(&entries)
        .map_err(|_| LinuxError::Ioctl("KVM_SET_MSRS", kvm_ioctls::Error::new(libc::E2BIG)))?;
    let n = vcpu.set_msrs(&msrs).map_err(|e| LinuxError::Ioctl("KVM_SET_MSRS", e))?;
    if n + 1 < entries.len() {
        return Err(LinuxError::Ioctl("KVM_SET_MSRS", kvm_ioctls::Error::new(libc::EINVAL)));
    }

    // The local APIC as a PC wires it: LINT0 takes the PIC's interrupts
    // (ExtINT), LINT1 is the NMI line.
    let mut lapic = vcpu.get_lapic().map_err(|e| LinuxError::Ioctl("KVM_GET_LAPIC", e))?;
    for (reg, mode) in [(0x350usize, 0b111u32), (0x360, 0b100)] {
        let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[reg + i] as u8);
        let v = (u32::from_le_bytes(bytes) & !0x700 & !(1 << 16)) | (mode << 8);
        for (i, b) in v.to_le_bytes().iter().enumerate() {
            lapic.regs[reg + i] = *b as _;
        }
    }
    vcpu.set_lapic(&lapic).map_err(|e| LinuxError::Ioctl("KVM_SET_LAPIC", e))?;

    let mut sregs = vcpu.get_sregs().map_err(|e| LinuxError::Ioctl("KVM_GET_SREGS", e))?;
    let (rip, long) = match entry {
        Entry::Pvh(a) => (a, false),
        Entry::Long64(a) => (a, true),
    };
    if long {
        sregs = regs::long_mode_sregs(sregs, cr3);
    } else {
        sregs.cr0 = 0x11; // PE, ET: protected mode, paging off
        sregs.cr4 = 0;
        sregs.efer = 0;
    }
    sregs.cs = regs::flat_segment(0x10, 0xb, long);
    let data = regs::flat_segment(0x18, 0x3, false);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = kvm_segment { base: 0, limit: 0x67, selector: 0x20, type_: 0xb, present: 1, s: 0, ..Default::default() };
    sregs.gdt.base = layout::GDT;
    sregs.gdt.limit = 5 * 8 - 1;
    vcpu.set_sregs(&sregs).map_err(|e| LinuxError::Ioctl("KVM_SET_SREGS", e))?;
    let r = match entry {
        Entry::Pvh(_) => kvm_regs { rip, rbx: layout::PVH_INFO, rflags: 2, ..Default::default() },
        Entry::Long64(_) => {
            kvm_regs { rip, rsi: layout::ZERO_PAGE, rsp: BOOT_STACK, rbp: BOOT_STACK, rflags: 2, ..Default::default() }
        }
    };
    vcpu.set_regs(&r).map_err(|e| LinuxError::Ioctl("KVM_SET_REGS", e))?;
    vcpu.set_fpu(&regs::initial_fpu()).map_err(|e| LinuxError::Ioctl("KVM_SET_FPU", e))?;
    Ok(hidden)
}

/// KVM gave up emulating an instruction: fix it up when the host
/// work-arounds know how, or say what it was.
fn internal_error(vcpu: &mut VcpuFd, mem: &GuestMemoryMmap, quirks: &mut HostQuirks) -> Result<(), String> {
    // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is
    // the union member KVM filled (see the KVM API, "kvm_run").
    let suberror = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
    let regs = vcpu.get_regs().map_err(|e| format!("KVM internal error {suberror}; cannot read registers: {e}"))?;
    let sregs = vcpu.get_sregs().map_err(|e| format!("KVM internal error {suberror}; cannot read registers: {e}"))?;
    let cpl = (sregs.cs.selector & 3) as u8;
    let mut bytes = [0u8; 15];
    let n = match vcpu.translate_gva(regs.rip) {
        Ok(t) if t.valid != 0 => mem.read(&mut bytes, GuestAddress(t.physical_address)).unwrap_or(0),
        _ => 0,
    };
    let fix = if suberror == KVM_INTERNAL_ERROR_EMULATION {
        host_quirks::decide(quirks.active, cpl, &bytes[..n])
    } else {
        Fixup::Fail(format!("KVM internal error, suberror {suberror}"))
    };
    match fix {
        Fixup::InjectBreakpoint => {
            let mut r = regs;
            r.rip += 1;
            vcpu.set_regs(&r).map_err(|e| format!("cannot skip int3: {e}"))?;
            let mut ev = vcpu.get_vcpu_events().map_err(|e| format!("cannot inject #BP: {e}"))?;
            ev.exception.injected = 1;
            ev.exception.nr = 3;
            ev.exception.has_error_code = 0;
            ev.exception.pending = 0;
            vcpu.set_vcpu_events(&ev).map_err(|e| format!("cannot inject #BP: {e}"))?;
            quirks.count("int3-breakpoint-injected");
            Ok(())
        }
        Fixup::Fwait => {
            let fpu = vcpu.get_fpu().map_err(|e| format!("cannot emulate fwait: {e}"))?;
            if fpu.fsw & 0x80 != 0 {
                // An unmasked x87 exception is pending: #MF at the fwait.
                let mut ev = vcpu.get_vcpu_events().map_err(|e| format!("cannot inject #MF: {e}"))?;
                ev.exception.injected = 1;
                ev.exception.nr = 16;
                ev.exception.has_error_code = 0;
                ev.exception.pending = 0;
                vcpu.set_vcpu_events(&ev).map_err(|e| format!("cannot inject #MF: {e}"))?;
            } else {
                let mut r = regs;
                r.rip += 1;
                vcpu.set_regs(&r).map_err(|e| format!("cannot skip fwait: {e}"))?;
            }
            quirks.count("fwait-emulated");
            Ok(())
        }
        Fixup::Ldmxcsr(op) => {
            let reg = |n: u8| {
                let r = &regs;
                [
                    r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13,
                    r.r14, r.r15,
                ][usize::from(n & 15)]
            };
            let mut addr = op.disp as u64;
            if op.rip_relative {
                addr = addr.wrapping_add(regs.rip + u64::from(op.len));
            }
            if let Some(b) = op.base {
                addr = addr.wrapping_add(reg(b));
            }
            if let Some((i, scale)) = op.index {
                addr = addr.wrapping_add(reg(i).wrapping_mul(u64::from(scale)));
            }
            match op.segment {
                Some(0x64) => addr = addr.wrapping_add(sregs.fs.base),
                Some(0x65) => addr = addr.wrapping_add(sregs.gs.base),
                _ => {}
            }
            let gpa = match vcpu.translate_gva(addr) {
                Ok(t) if t.valid != 0 => t.physical_address,
                _ => return Err(format!("cannot emulate ldmxcsr: its operand {addr:#x} is not mapped")),
            };
            let value: u32 = mem.read_obj(GuestAddress(gpa)).map_err(|e| format!("cannot emulate ldmxcsr: {e}"))?;
            if value & 0xffff_0000 != 0 {
                return Err(format!("cannot emulate ldmxcsr: reserved MXCSR bits set ({value:#x})"));
            }
            let mut fpu = vcpu.get_fpu().map_err(|e| format!("cannot emulate ldmxcsr: {e}"))?;
            fpu.mxcsr = value;
            vcpu.set_fpu(&fpu).map_err(|e| format!("cannot emulate ldmxcsr: {e}"))?;
            let mut r = regs;
            r.rip += u64::from(op.len);
            vcpu.set_regs(&r).map_err(|e| format!("cannot skip ldmxcsr: {e}"))?;
            quirks.count("ldmxcsr-emulated");
            Ok(())
        }
        Fixup::Fail(what) => Err(format!(
            "the host could not emulate {what} at rip {:#x} in ring {cpl}{}",
            regs.rip,
            if quirks.active { "" } else { " (host work-arounds are off)" }
        )),
    }
}

/// A thread that re-sends the UART's interrupt while it stays pending
/// ([`SerialState::reassert`]), every [`UartKicker::PERIOD`]; stopped and
/// joined on drop.
struct UartKicker {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UartKicker {
    const PERIOD: std::time::Duration = std::time::Duration::from_millis(10);

    fn start(state: Arc<Mutex<SerialState>>, line: Arc<EventFd>) -> UartKicker {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("virtlab-uart-kick".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::park_timeout(UartKicker::PERIOD);
                    state.lock().unwrap_or_else(|p| p.into_inner()).reassert(line.as_ref());
                }
            })
            .ok();
        UartKicker { stop, thread }
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
struct RawTty(Option<libc::termios>);

impl Drop for RawTty {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            // SAFETY: restores the settings read from fd 0 by tcgetattr.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        }
    }
}

/// Feeds standard input to the guest's UART from a helper thread (raw mode
/// when it is a terminal, so keys reach the guest as they are typed).
fn start_input(state: Arc<Mutex<SerialState>>, line: Arc<EventFd>) -> RawTty {
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
            Some(saved)
        } else {
            None
        }
    };
    let spawned = std::thread::Builder::new().name("virtlab-stdin".into()).spawn(move || {
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
    fn finds_the_panic_line() {
        let out = "[    1.0] Run /init as init process\n[    1.2] Kernel panic - not syncing: No working init found.\n";
        assert_eq!(find_panic(out).as_deref(), Some("[    1.2] Kernel panic - not syncing: No working init found."));
        assert!(find_panic("all good\n").is_none());
    }

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

    #[test]
    fn memory_bounds() {
        assert!(check_mem(128 << 20).is_ok());
        assert!(check_mem(16 << 20).unwrap_err().to_string().contains("too small"));
        assert!(check_mem(4 << 30).unwrap_err().to_string().contains("--mem"));
    }
}
