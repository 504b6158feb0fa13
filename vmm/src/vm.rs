//! The minikernel run: building a VM from a [`VmConfig`] and running it to
//! the end, one visible step at a time. The machinery it shares with the
//! Linux run (KVM, guest memory, the vCPU loop) is in `vstate`; what is
//! here is the minikernel's own: its boot ABI, its devices, its report.

use std::borrow::Cow;
use std::os::fd::AsRawFd;

use kvm_ioctls::{Kvm, VcpuFd};
use virtlab_minikernel::abi::{self, port, BootInfo, BOOT_INFO_ADDR, BOOT_INFO_MAGIC, MAX_GUEST_MEM};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::arch::x86_64::{msr, paging, regs};
use crate::config::{workload_or_builtin, ConsoleKind, KernelSource, VmConfig, MIN_MEM};
use crate::console::{Console, ConsoleSink};
use crate::devices::boot_timer::BootTimer;
use crate::devices::exit_port::{ExitPort, FaultPort};
use crate::devices::pv_console::PvConsole;
use crate::devices::uart::Uart;
use crate::devices::PortBus;
use crate::input::{self, FileRole, MAX_KERNEL_BYTES};
use crate::loader::{self, UserImage, UserLayout};
use crate::observe::{Observer, Step};
use crate::report::{RunReport, SyscallCounts};
use crate::sandbox::{Plan, Sandbox};
use crate::snapshot::format::MiniState;
use crate::snapshot::{self, Extra, GuestKind, Live, Saved, SnapshotAt, SnapshotError};
use crate::vstate::clock::Clock;
use crate::vstate::exit_loop::{Narration, NoFixups, PauseHook, VcpuLoop};
use crate::vstate::memory::{guest_memory, size_problem};
use crate::vstate::{kvm, vcpu};

pub use crate::vstate::error::VmError;
pub use crate::vstate::memory::peak_rss_bytes;

/// The boot-info page as bytes.
#[derive(Clone, Copy, Default)]
#[repr(transparent)]
struct BootInfoPage(BootInfo);

// SAFETY: BootInfo is #[repr(C)] and made only of u64 fields (directly and in
// its #[repr(C)] members), so it has no padding and every bit pattern is a
// valid value.
unsafe impl ByteValued for BootInfoPage {}

fn check_mem_size(size: u64) -> Result<(), VmError> {
    match size_problem(size, MIN_MEM, MAX_GUEST_MEM) {
        Some(what) => Err(VmError::MemSize { size, what }),
        None => Ok(()),
    }
}

/// What the observer is told while the minikernel runs.
const NARRATION: Narration = Narration {
    first_entry: "the vCPU is running guest code",
    kernel_ready: "GDT, TSS, IDT and SYSCALL MSRs loaded; entering ring 3",
};

/// Boots a guest and runs the workload in it, to its end or its timeout.
/// Guest output goes to `sink`.
pub fn run(config: &VmConfig, sink: ConsoleSink, observer: &mut dyn Observer) -> Result<RunReport, VmError> {
    check_mem_size(config.mem_size)?;
    if let Some(req) = &config.snapshot {
        if matches!(req.at, SnapshotAt::Init | SnapshotAt::Warm) {
            return Err(VmError::Snapshot(Box::new(SnapshotError::Point(
                req.at.name(),
                "the minikernel has no init and no warm workload process (those are Linux guests' points): it \
                 pauses at `ready` (kernel ready, before the workload starts) or at a time such as 5ms (mid-run)",
            ))));
        }
    }
    let kernel_image = kernel_image(&config.kernel)?;
    let workload = workload_or_builtin(&config.workload);
    // Check the kernel and the workload before touching KVM: a bad file is
    // the user's mistake, and should be reported as such.
    loader::check_kernel(&kernel_image)?;
    let user = loader::parse_user_elf(workload)?;
    let layout = loader::plan_user_memory(&user, config.mem_size)?;

    let mut clock = Clock::new(observer);
    let kvm = kvm::open_kvm(&mut clock, "")?;

    clock.before(Step::CreateVm);
    let vm = kvm::create_vm(&kvm)?;
    clock.done(Step::CreateVm, "VM fd created");

    clock.before(Step::Memory);
    let mem = guest_memory(&vm, config.mem_size)?;
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
    let mut vcpu = vcpu::create_vcpu(&vm)?;
    let tsc_khz = setup_vcpu(&kvm, &vcpu, cr3, kernel.entry)?;
    let boot = boot_info(config, &user, &layout, rsp, tsc_khz);
    mem.write_obj(BootInfoPage(boot), GuestAddress(BOOT_INFO_ADDR)).map_err(VmError::BootInfo)?;
    let plan = Plan {
        vcpu_fd: vcpu.as_raw_fd(),
        console: sink.fd(),
        // A timed snapshot's timer signals the vCPU thread as the timeout's
        // does, and one of its signals may land after the filter is on.
        timeout: config.timeout.is_some() || config.snapshot.as_ref().is_some_and(|r| r.at.is_time()),
        fixups: false,
        irq_fd: None,
        interactive: false,
    };
    let sandbox = Sandbox::planned(config.seccomp, &plan, &[])?;
    clock.done(Step::VcpuSetup, &format!("vCPU 0 in long mode at {:#x}, guest TSC {tsc_khz} kHz", kernel.entry));

    let mut guest = VcpuLoop::new(devices()?, Console::new(sink), config.unknown_io, NoFixups);
    guest.sandbox = sandbox;
    let mut saved = None;
    let stopped = match &config.snapshot {
        None => guest.run(&mut vcpu, &mem, &mut clock, config.timeout, NARRATION)?,
        Some(req) => {
            let mini = MiniState { argv: config.argv.clone(), stack_top: layout.stack_top, console: config.console };
            let mut save = |vcpu: &mut VcpuFd, mem: &GuestMemoryMmap, bus: &PortBus| -> Result<(), VmError> {
                let live = Live { kvm: &kvm, vm: &vm, vcpu, mem, bus, mem_size: config.mem_size };
                let extra = Extra { mini: Some(mini.clone()), ..Default::default() };
                let s = snapshot::save(&live, &req.dir, req.at, GuestKind::Minikernel, extra)
                    .map_err(|e| VmError::Snapshot(Box::new(e)))?;
                saved = Some(s);
                Ok(())
            };
            let pause = Some((req.at.pause_point(abi::marker::KERNEL_READY), &mut save as PauseHook<'_>));
            let stopped = guest.run_pausing(&mut vcpu, &mem, &mut clock, config.timeout, NARRATION, pause)?;
            if let Some(s) = &saved {
                clock.observer.note(&save_story(s, req.at, "when the kernel reported ready"));
            }
            stopped
        }
    };

    clock.before(Step::Teardown);
    let info: BootInfoPage = mem.read_obj(GuestAddress(BOOT_INFO_ADDR)).unwrap_or_default();
    let memory = kvm::teardown(&mut clock, vcpu, vm, mem, kvm, config.mem_size);

    let output = match guest.console.output() {
        [] => None,
        o => Some(String::from_utf8_lossy(o).into_owned()),
    };
    Ok(RunReport {
        console: config.console,
        syscalls: SyscallCounts::from(info.0.stats),
        tsc_khz,
        kernel_pvh: kernel.pvh,
        output,
        snapshot: saved,
        ..stopped.report(clock, guest.stats, &guest.console, memory)
    })
}

/// What `--explain` says about a snapshot that was saved.
/// `milestone`: when a `ready`/`init` pause happened, in words.
pub(crate) fn save_story(s: &Saved, at: SnapshotAt, milestone: &str) -> String {
    let paused = match at {
        SnapshotAt::After(d) => format!(
            "{} ms after its first instruction, wherever the workload was: a kernel timer signalled the vCPU \
             thread, which interrupted KVM_RUN (EINTR), and any exit in progress was completed (KVM_RUN with \
             immediate_exit)",
            d.as_millis()
        ),
        _ => format!("{milestone}, its `out` completed (KVM_RUN with immediate_exit)"),
    };
    let mut t = format!(
        "snapshot: the vCPU was paused {paused}, and the VM written to {} in {:.1} ms: registers, special \
         registers, FPU, MSRs, events (KVM_GET_*), the KVM clock, the devices' state, and {} MiB of \
         guest memory as a sparse file holding {} KiB of data. A VM is that and nothing more; then the guest ran \
         on, and only now did the vCPU thread enter its seccomp filter (saving opens files and builds a scratch \
         VM, which the filter forbids).",
        s.dir.display(),
        s.took_us / 1e3,
        s.mem_size >> 20,
        s.memory_data_bytes >> 10
    );
    if !s.quirks.is_empty() {
        t += &format!(" The host refused: {}.", s.quirks.join("; "));
    }
    t
}

/// The kernel's bytes: built in, read from a file, or given.
fn kernel_image(source: &KernelSource) -> Result<Cow<'_, [u8]>, VmError> {
    Ok(match source {
        KernelSource::Minikernel => virtlab_minikernel::ELF.into(),
        KernelSource::File(p) => {
            input::read(p, FileRole::Kernel, MAX_KERNEL_BYTES).map_err(VmError::ReadKernel)?.into()
        }
        KernelSource::Bytes(b) => b.as_slice().into(),
    })
}

/// The boot-info page: where the workload starts, its mmap area, the
/// console to use, and the scale that turns the TSC into nanoseconds.
fn boot_info(config: &VmConfig, user: &UserImage, layout: &UserLayout, rsp: u64, tsc_khz: u32) -> BootInfo {
    BootInfo {
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
    }
}

/// The minikernel's devices: the UART, the paravirtual console, the exit
/// and fault ports and the boot timer.
fn devices() -> Result<PortBus, VmError> {
    let mut bus = PortBus::new();
    bus.insert(port::UART_COM1, 8, Box::new(Uart::new()))?;
    bus.insert(port::PV_CONSOLE, 1, Box::new(PvConsole::default()))?;
    bus.insert(port::EXIT, 2, Box::new(ExitPort))?;
    bus.insert(port::FAULT, 1, Box::new(FaultPort))?;
    bus.insert(port::BOOT_TIMER, 1, Box::new(BootTimer))?;
    Ok(bus)
}

/// CPUID, reset MSRs (the minikernel programs its own SYSCALL state),
/// long-mode registers at `entry`. Returns the guest's TSC frequency.
fn setup_vcpu(kvm: &Kvm, vcpu: &VcpuFd, cr3: u64, entry: u64) -> Result<u32, VmError> {
    vcpu::set_cpuid(kvm, vcpu, |_| 0)?;
    if vcpu::set_msrs(vcpu, &msr::RESET)? != msr::RESET.len() {
        return Err(vcpu::msrs_refused());
    }
    let sregs = vcpu.get_sregs().map_err(|e| VmError::Ioctl("KVM_GET_SREGS", e))?;
    vcpu.set_sregs(&regs::long_mode_sregs(sregs, cr3)).map_err(|e| VmError::Ioctl("KVM_SET_SREGS", e))?;
    vcpu.set_regs(&regs::entry_regs(entry, BOOT_INFO_ADDR)).map_err(|e| VmError::Ioctl("KVM_SET_REGS", e))?;
    vcpu.set_fpu(&regs::initial_fpu()).map_err(|e| VmError::Ioctl("KVM_SET_FPU", e))?;
    vcpu.get_tsc_khz().map_err(|e| VmError::Ioctl("KVM_GET_TSC_KHZ", e))
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
