//! Building a VM from a [`VmConfig`] and running it to the end, one visible
//! step at a time.

use std::time::{Duration, Instant};

use kvm_bindings::{kvm_msr_entry, kvm_userspace_memory_region, Msrs, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use virtlab_minikernel::abi::{self, port, BootInfo, BOOT_INFO_ADDR, BOOT_INFO_MAGIC, MAX_GUEST_MEM};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::arch::x86_64::{cpuid, paging, regs};
use crate::config::{ConsoleKind, KernelSource, VmConfig, MIN_MEM};
use crate::console::{Console, ConsoleSink};
use crate::devices::boot_timer::BootTimer;
use crate::devices::exit_port::{ExitPort, FaultPort};
use crate::devices::pv_console::PvConsole;
use crate::devices::uart::Uart;
use crate::devices::{BusError, DeviceContext, PortBus};
use crate::exit::{handle_exit, Exit, ExitStats, Flow, GuestStop};
use crate::input::{self, FileRole, InputError, MAX_KERNEL_BYTES};
use crate::loader::{self, LoadError};
use crate::observe::{Observer, Step};
use crate::report::{MemoryFigures, PhaseTime, RunReport, SyscallCounts};
use crate::watchdog::Watchdog;

/// Errors that keep a VM from running (a guest that misbehaves is not an
/// error: it ends the run with a [`GuestStop`]).
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// /dev/kvm is missing or not accessible.
    #[error("cannot open /dev/kvm: {hint}", hint = kvm_hint(.0))]
    OpenKvm(#[source] kvm_ioctls::Error),
    /// KVM speaks another API version.
    #[error("KVM API version {0} is not the stable version 12")]
    KvmApi(i32),
    /// A KVM ioctl failed.
    #[error("ioctl {0} failed")]
    Ioctl(&'static str, #[source] kvm_ioctls::Error),
    /// Guest memory size out of range.
    #[error("guest memory of {size} bytes is {what}; use --mem between {min} MiB and {max} MiB", min = MIN_MEM >> 20, max = MAX_GUEST_MEM >> 20)]
    MemSize {
        /// What was asked.
        size: u64,
        /// "too small", "too large", "not a multiple of 4 KiB".
        what: &'static str,
    },
    /// mmap of guest memory failed.
    #[error("cannot allocate {0} MiB of guest memory")]
    Alloc(u64, #[source] vm_memory::mmap::FromRangesError),
    /// The kernel file could not be read (or is no regular file, or too
    /// large).
    #[error(transparent)]
    ReadKernel(InputError),
    /// Loading failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Page tables.
    #[error(transparent)]
    Paging(#[from] paging::PagingError),
    /// Registering a device failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// Writing the boot-info page failed.
    #[error("cannot write the boot-info page")]
    BootInfo(#[source] vm_memory::GuestMemoryError),
    /// The watchdog thread could not start.
    #[error("cannot start the timeout watchdog thread")]
    Watchdog(#[source] std::io::Error),
}

fn kvm_hint(e: &kvm_ioctls::Error) -> &'static str {
    match e.errno() {
        libc::ENOENT => "KVM is not available: enable virtualization (VT-x/AMD-V) in the firmware and load the kvm_intel or kvm_amd module, or run in a VM with nested virtualization",
        libc::EACCES | libc::EPERM => "permission denied: add yourself to the 'kvm' group (sudo usermod -aG kvm $USER, then log in again) or run as root",
        _ => "check that /dev/kvm is a working KVM device",
    }
}

/// The boot-info page as bytes.
#[derive(Clone, Copy, Default)]
#[repr(transparent)]
struct BootInfoPage(BootInfo);

// SAFETY: BootInfo is #[repr(C)] and made only of u64 fields (directly and in
// its #[repr(C)] members), so it has no padding and every bit pattern is a
// valid value.
unsafe impl ByteValued for BootInfoPage {}

/// Records step times for the report and tells the observer.
pub(crate) struct Clock<'o> {
    pub(crate) start: Instant,
    pub(crate) last: Instant,
    pub(crate) phases: Vec<PhaseTime>,
    pub(crate) observer: &'o mut dyn Observer,
}

impl Clock<'_> {
    pub(crate) fn before(&mut self, step: Step) {
        self.observer.before(step);
        // Time a person spends at a --step prompt is not the step's.
        self.last = Instant::now().max(self.last);
        if self.phases.is_empty() {
            self.start = self.last;
        }
    }

    pub(crate) fn mark(&mut self, step: Step, at: Instant, detail: &str) {
        let took = at.saturating_duration_since(self.last);
        self.last = at.max(self.last);
        self.phases.push(PhaseTime {
            step,
            name: step.name(),
            at_us: us(at.saturating_duration_since(self.start)),
            took_us: us(took),
        });
        self.observer.after(step, took, detail);
    }

    /// Tells the observer about guest milestones that arrived since the last
    /// call (`*reported` of `milestones` were already told), and about the
    /// workload's ready marker once the console has seen it.
    pub(crate) fn guest_progress(
        &mut self,
        milestones: &[(u8, Instant)],
        reported: &mut usize,
        console: &Console,
        kernel_ready: &str,
    ) {
        for &(m, at) in &milestones[(*reported).min(milestones.len())..] {
            if m == abi::marker::KERNEL_READY {
                self.mark(Step::KernelReady, at, kernel_ready);
            }
        }
        *reported = milestones.len();
        if let Some(at) = console.ready_at() {
            if !self.phases.iter().any(|p| p.step == Step::WorkloadReady) {
                self.mark(Step::WorkloadReady, at, "ready marker seen on the console");
            }
        }
    }

    pub(crate) fn done(&mut self, step: Step, detail: &str) {
        self.mark(step, Instant::now(), detail);
    }
}

pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn check_mem_size(size: u64) -> Result<(), VmError> {
    let what = if size < MIN_MEM {
        "too small"
    } else if size > MAX_GUEST_MEM {
        "too large"
    } else if size % 4096 != 0 {
        "not a multiple of 4 KiB"
    } else {
        return Ok(());
    };
    Err(VmError::MemSize { size, what })
}

/// Boots a guest and runs the workload in it, to its end or its timeout.
/// Guest output goes to `sink`.
pub fn run(config: &VmConfig, sink: ConsoleSink, observer: &mut dyn Observer) -> Result<RunReport, VmError> {
    check_mem_size(config.mem_size)?;
    let kernel_image: std::borrow::Cow<'_, [u8]> = match &config.kernel {
        KernelSource::Minikernel => virtlab_minikernel::ELF.into(),
        KernelSource::File(p) => {
            input::read(p, FileRole::Kernel, MAX_KERNEL_BYTES).map_err(VmError::ReadKernel)?.into()
        }
        KernelSource::Bytes(b) => b.as_slice().into(),
    };
    let workload: &[u8] = if config.workload.is_empty() { virtlab_workload_elf() } else { &config.workload };
    // Check the kernel and the workload before touching KVM: a bad file is
    // the user's mistake, and should be reported as such.
    loader::check_kernel(&kernel_image)?;
    let user = loader::parse_user_elf(workload)?;
    let layout = loader::plan_user_memory(&user, config.mem_size)?;

    let now = Instant::now();
    let mut clock = Clock { start: now, last: now, phases: Vec::new(), observer };

    clock.before(Step::OpenKvm);
    let kvm = Kvm::new().map_err(VmError::OpenKvm)?;
    let api = kvm.get_api_version();
    if api != 12 {
        return Err(VmError::KvmApi(api));
    }
    clock.done(Step::OpenKvm, &format!("KVM API version {api}"));

    clock.before(Step::CreateVm);
    let vm = kvm.create_vm().map_err(|e| VmError::Ioctl("KVM_CREATE_VM", e))?;
    clock.done(Step::CreateVm, "VM fd created");

    clock.before(Step::Memory);
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), config.mem_size as usize)])
        .map_err(|e| VmError::Alloc(config.mem_size >> 20, e))?;
    register_memory(&vm, &mem, config.mem_size)?;
    let huge = if config.huge_pages { advise_huge_pages(&mem, layout.heap_start, layout.heap_end) } else { 0 };
    clock.done(
        Step::Memory,
        &format!(
            "{} MiB at guest-physical 0 (slot 0); {}",
            config.mem_size >> 20,
            if huge > 0 {
                format!("{} MiB of the mmap() area on 2 MiB transparent huge pages", huge >> 20)
            } else {
                "4 KiB pages throughout".to_string()
            }
        ),
    );

    clock.before(Step::Load);
    let kernel = loader::load_kernel(&mem, &kernel_image)?;
    loader::load_user(&mem, &user, workload)?;
    let cr3 = paging::write_identity_map(&mem, config.mem_size)?;
    let rsp = loader::build_user_stack(&mem, layout.stack_top, &config.argv)?;
    clock.done(
        Step::Load,
        &format!(
            "kernel {:#x}..{:#x} (entry {:#x}), workload {:#x}..{:#x} (entry {:#x}), stack {:#x}",
            abi::KERNEL_BASE,
            kernel.end,
            kernel.entry,
            user.segments.first().map(|s| s.vaddr).unwrap_or(0),
            user.end,
            user.entry,
            rsp
        ),
    );

    clock.before(Step::VcpuSetup);
    let mut vcpu = vm.create_vcpu(0).map_err(|e| VmError::Ioctl("KVM_CREATE_VCPU", e))?;
    let tsc_khz = setup_vcpu(&kvm, &vcpu, cr3, kernel.entry)?;
    let boot = BootInfo {
        magic: BOOT_INFO_MAGIC,
        user_entry: user.entry,
        user_rsp: rsp,
        heap_next: layout.heap_start,
        heap_end: layout.heap_end,
        user_end: layout.stack_top,
        console: match config.console {
            ConsoleKind::Uart => abi::console::UART,
            ConsoleKind::Pv => abi::console::PV,
        },
        tsc_base: 0,
        tsc_mult: ((1_000_000u128 << 32) / u128::from(tsc_khz.max(1))) as u64,
        ns_base: 0,
        ..Default::default()
    };
    mem.write_obj(BootInfoPage(boot), GuestAddress(BOOT_INFO_ADDR)).map_err(VmError::BootInfo)?;
    clock.done(Step::VcpuSetup, &format!("vCPU 0 in long mode at {:#x}, guest TSC {tsc_khz} kHz", kernel.entry));

    let mut bus = PortBus::new();
    bus.insert(port::UART_COM1, 8, Box::new(Uart::new()))?;
    bus.insert(port::PV_CONSOLE, 1, Box::new(PvConsole::default()))?;
    bus.insert(port::EXIT, 2, Box::new(ExitPort))?;
    bus.insert(port::FAULT, 1, Box::new(FaultPort))?;
    bus.insert(port::BOOT_TIMER, 1, Box::new(BootTimer))?;
    let mut console = Console::new(sink);
    let mut milestones = Vec::new();
    let mut stats = ExitStats::default();

    clock.before(Step::FirstEntry);
    let watchdog = match config.timeout {
        Some(t) => Some(Watchdog::start(t).map_err(VmError::Watchdog)?),
        None => None,
    };
    let entered = Instant::now();
    let mut first_exit = None;
    let mut reported = 0;
    let stop = loop {
        if let (Some(w), Some(t)) = (&watchdog, config.timeout) {
            if w.expired() {
                break GuestStop::Timeout { after_ms: t.as_millis() as u64 };
            }
        }
        let result = vcpu.run();
        let flow = match result {
            Ok(exit) => {
                let mut ctx = DeviceContext { mem: &mem, console: &mut console, milestones: &mut milestones };
                handle_exit(&mut bus, &mut ctx, &mut stats, config.unknown_io, convert(exit))
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Flow::Continue,
            Err(e) => {
                drop(watchdog);
                return Err(VmError::Ioctl("KVM_RUN", e));
            }
        };
        if first_exit.is_none() {
            first_exit = Some(Instant::now());
            clock.mark(Step::FirstEntry, entered, "the vCPU is running guest code");
        }
        // Tell the observer about guest milestones as they arrive.
        clock.guest_progress(
            &milestones,
            &mut reported,
            &console,
            "GDT, TSS, IDT and SYSCALL MSRs loaded; entering ring 3",
        );
        if let Flow::Stop(s) = flow {
            break s;
        }
    };
    let stopped = Instant::now();
    drop(watchdog);
    console.flush();
    clock.mark(Step::WorkloadExit, stopped, &stop.describe());

    clock.before(Step::Teardown);
    let info: BootInfoPage = mem.read_obj(GuestAddress(BOOT_INFO_ADDR)).unwrap_or_default();
    let memory = memory_figures(&mem, config.mem_size);
    drop(vcpu);
    drop(vm);
    drop(mem);
    drop(kvm);
    clock.done(Step::Teardown, "vCPU, VM and /dev/kvm fds closed, guest memory unmapped");

    let output = match console.output() {
        [] => None,
        o => Some(String::from_utf8_lossy(o).into_owned()),
    };
    let total = clock.last.saturating_duration_since(clock.start);
    Ok(RunReport {
        exit_status: stop.exit_status(),
        summary: stop.describe(),
        stop,
        phases: clock.phases,
        exits: stats,
        console: config.console,
        console_bytes: console.bytes(),
        syscalls: SyscallCounts::from(info.0.stats),
        memory,
        guest_run_us: us(stopped.saturating_duration_since(entered)),
        total_us: us(total),
        tsc_khz,
        kernel_pvh: kernel.pvh,
        output,
    })
}

fn virtlab_workload_elf() -> &'static [u8] {
    crate::BUILTIN_WORKLOAD
}

pub(crate) fn register_memory(vm: &VmFd, mem: &GuestMemoryMmap, size: u64) -> Result<(), VmError> {
    let host = mem.get_host_address(GuestAddress(0)).map_err(VmError::BootInfo)?;
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: 0,
        memory_size: size,
        userspace_addr: host as u64,
        flags: 0,
    };
    // SAFETY: `host` is the start of a live mapping of `size` bytes owned by
    // `mem`, which outlives the VM (it is dropped after the VM fd in `run`).
    unsafe { vm.set_user_memory_region(region) }.map_err(|e| VmError::Ioctl("KVM_SET_USER_MEMORY_REGION", e))
}

fn setup_vcpu(kvm: &Kvm, vcpu: &VcpuFd, cr3: u64, entry: u64) -> Result<u32, VmError> {
    let mut cpuid =
        kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(|e| VmError::Ioctl("KVM_GET_SUPPORTED_CPUID", e))?;
    cpuid::filter(&mut cpuid, 0, false);
    vcpu.set_cpuid2(&cpuid).map_err(|e| VmError::Ioctl("KVM_SET_CPUID2", e))?;
    // MSRs a guest expects at reset: SYSENTER and SYSCALL state cleared (the
    // minikernel programs its own), fast strings on.
    let msrs = [
        (0x174, 0),       // IA32_SYSENTER_CS
        (0x175, 0),       // IA32_SYSENTER_ESP
        (0x176, 0),       // IA32_SYSENTER_EIP
        (0xc000_0081, 0), // STAR
        (0xc000_0082, 0), // LSTAR
        (0xc000_0084, 0), // SFMASK
        (0xc000_0102, 0), // KERNEL_GS_BASE
        (0x1a0, 1),       // IA32_MISC_ENABLE: fast string operations
    ];
    let entries: Vec<kvm_msr_entry> =
        msrs.iter().map(|&(index, data)| kvm_msr_entry { index, data, ..Default::default() }).collect();
    let msrs = Msrs::from_entries(&entries)
        .map_err(|_| VmError::Ioctl("KVM_SET_MSRS", kvm_ioctls::Error::new(libc::E2BIG)))?;
    let n = vcpu.set_msrs(&msrs).map_err(|e| VmError::Ioctl("KVM_SET_MSRS", e))?;
    if n != entries.len() {
        return Err(VmError::Ioctl("KVM_SET_MSRS", kvm_ioctls::Error::new(libc::EINVAL)));
    }
    let sregs = vcpu.get_sregs().map_err(|e| VmError::Ioctl("KVM_GET_SREGS", e))?;
    vcpu.set_sregs(&regs::long_mode_sregs(sregs, cr3)).map_err(|e| VmError::Ioctl("KVM_SET_SREGS", e))?;
    vcpu.set_regs(&regs::entry_regs(entry, BOOT_INFO_ADDR)).map_err(|e| VmError::Ioctl("KVM_SET_REGS", e))?;
    vcpu.set_fpu(&regs::initial_fpu()).map_err(|e| VmError::Ioctl("KVM_SET_FPU", e))?;
    vcpu.get_tsc_khz().map_err(|e| VmError::Ioctl("KVM_GET_TSC_KHZ", e))
}

/// KVM's exit, in the VMM's terms.
pub(crate) fn convert(exit: VcpuExit<'_>) -> Exit<'_> {
    match exit {
        VcpuExit::IoIn(p, d) => Exit::IoIn(p, d),
        VcpuExit::IoOut(p, d) => Exit::IoOut(p, d),
        VcpuExit::MmioRead(a, d) => Exit::MmioRead(a, d),
        VcpuExit::MmioWrite(a, d) => Exit::MmioWrite(a, d),
        VcpuExit::Hlt => Exit::Hlt,
        VcpuExit::Shutdown => Exit::Shutdown,
        VcpuExit::FailEntry(reason, _) => Exit::FailEntry(reason),
        VcpuExit::InternalError => Exit::InternalError,
        VcpuExit::SystemEvent(t, _) => Exit::SystemEvent(t),
        other => Exit::Other(format!("{other:?}")),
    }
}

/// Asks the host kernel to back guest-physical `[start, end)`, trimmed to
/// whole 2 MiB pages, with transparent huge pages. With nested paging every
/// first touch of a host page is a fault that KVM serves; on a 2 MiB page
/// that one fault maps 512 guest pages. Pages are still only allocated when
/// touched, but a whole 2 MiB at a time, so this is kept to the area the
/// workload maps on demand. Returns the bytes advised (0 when the host has
/// no transparent huge pages).
fn advise_huge_pages(mem: &GuestMemoryMmap, start: u64, end: u64) -> u64 {
    const HUGE: u64 = 2 << 20;
    let (start, end) = (start.next_multiple_of(HUGE), end & !(HUGE - 1));
    if end <= start {
        return 0;
    }
    let Ok(host) = mem.get_host_address(GuestAddress(start)) else { return 0 };
    // SAFETY: [host, host + end - start) lies inside the guest memory
    // mapping (end <= the guest size); madvise only changes how the kernel
    // backs it.
    let r = unsafe { libc::madvise(host.cast(), (end - start) as usize, libc::MADV_HUGEPAGE) };
    if r == 0 {
        end - start
    } else {
        0
    }
}

/// Resident pages of guest memory (mincore), and the process's peak RSS.
pub(crate) fn memory_figures(mem: &GuestMemoryMmap, size: u64) -> MemoryFigures {
    let touched = mem.get_host_address(GuestAddress(0)).map(|host| resident_bytes(host, size as usize)).unwrap_or(0);
    let peak = peak_rss_bytes();
    MemoryFigures {
        guest_ram_bytes: size,
        guest_touched_bytes: touched,
        process_peak_rss_bytes: peak,
        vmm_overhead_bytes: peak.saturating_sub(touched),
    }
}

fn resident_bytes(addr: *mut u8, len: usize) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: [addr, addr + len) is one live mapping (guest memory, page
    // aligned), and `vec` has one byte per page of it.
    let r = unsafe { libc::mincore(addr.cast(), len, vec.as_mut_ptr()) };
    if r != 0 {
        return 0;
    }
    vec.iter().filter(|&&b| b & 1 != 0).count() as u64 * page as u64
}

/// VmHWM from /proc/self/status, in bytes.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_are_checked_before_anything_else() {
        for (size, what) in [(1 << 20, "too small"), (64 << 30, "too large"), ((64 << 20) + 1, "4 KiB")] {
            let e = check_mem_size(size).unwrap_err().to_string();
            assert!(e.contains(what) && e.contains("--mem"), "{e}");
        }
        assert!(check_mem_size(64 << 20).is_ok());
    }
}
