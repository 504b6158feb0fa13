//! The Linux run: building a PC-like VM from a [`LinuxConfig`], booting the
//! kernel and running it to the init's exit, a reset, or the timeout. The
//! machinery it shares with the minikernel run (KVM, guest memory, the vCPU
//! loop) is in `vstate`; here is what a PC and Linux's boot protocols add.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use kvm_bindings::{kvm_pit_config, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{VcpuFd, VmFd};
use virtlab_minikernel::abi::port;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::boot::{self, layout, ZeroPageInput};
use super::config::{compose_cmdline, InitrdSource, LinuxConfig, MIN_MEM};
use super::console::{start_input, Tee, TeeState, UartKicker};
use super::fixups::HostFixups;
use super::host_quirks::HostQuirks;
use super::initramfs;
use super::kernel::{self, Entry, LoadedKernel};
use super::report::{find_panic, last_lines, LinuxReport};
use super::vcpu::setup_vcpu;
use crate::arch::x86_64::paging;
use crate::config::workload_or_builtin;
use crate::console::{Console, ConsoleSink};
use crate::devices::boot_timer::BootTimer;
use crate::devices::command_port::{self, CommandPort};
use crate::devices::exit_port::ExitPort;
use crate::devices::i8042::{self, I8042};
use crate::devices::serial::Serial;
use crate::devices::{BusError, PortBus};
use crate::exit::UnknownIo;
use crate::input::{self, FileRole};
use crate::observe::{Observer, Step};
use crate::report::RunReport;
use crate::sandbox::{Plan, Sandbox, ThreadKind};
use crate::snapshot::{self, Extra, GuestKind, Live, SnapshotAt, SnapshotError};
use crate::vstate::clock::{us, Clock};
use crate::vstate::error::VmError;
use crate::vstate::exit_loop::{Narration, PauseHook, VcpuLoop};
use crate::vstate::memory::{guest_memory, size_problem};
use crate::vstate::{kvm, vcpu};

pub use super::error::LinuxError;

/// The boot-timer mark virtlab's init makes when it starts (as the
/// minikernel's "kernel ready").
const MARKER_USER_SPACE: u8 = virtlab_minikernel::abi::marker::KERNEL_READY;

/// The UART's interrupt line (COM1).
pub const UART_IRQ: u32 = 4;
const TSS_ADDR: usize = 0xfffb_d000;

/// What the observer is told while Linux runs.
pub(crate) const NARRATION: Narration = Narration {
    first_entry: "the vCPU is running the kernel's entry code",
    kernel_ready: "Linux booted and started /virtlab/init (boot-timer port)",
};

fn check_mem(size: u64) -> Result<(), LinuxError> {
    match size_problem(size, MIN_MEM, layout::MAX_MEM) {
        Some(what) => Err(LinuxError::MemSize { size, what }),
        None => Ok(()),
    }
}

/// Boots the kernel and runs the configured program under its init.
pub fn run_linux(
    config: &LinuxConfig,
    sink: ConsoleSink,
    observer: &mut dyn Observer,
) -> Result<LinuxReport, LinuxError> {
    let warm;
    let config = match &config.snapshot {
        Some(req) if req.at == SnapshotAt::Warm => {
            warm = warm_config(config)?;
            &warm
        }
        _ => config,
    };
    let Prepared { kernel_name, mut image, initrd, mut quirks, cmdline } = prepare(config)?;

    let mut clock = Clock::new(observer);
    let created = clock.start;
    let kvm = kvm::open_kvm(&mut clock, &format!("; host work-arounds {}", on_off(quirks.active)))?;

    clock.before(Step::CreateVm);
    let vm = kvm::create_vm(&kvm)?;
    let uart_line = pc_board(&vm)?;
    clock.done(Step::CreateVm, "VM with in-kernel PIC, IOAPIC, local APIC and PIT; UART on IRQ 4 through an irqfd");

    clock.before(Step::Memory);
    let mem = guest_memory(&vm, config.mem_size)?;
    clock.done(Step::Memory, &format!("{} MiB at guest-physical 0; E820: RAM, BIOS hole, RAM", config.mem_size >> 20));

    clock.before(Step::Load);
    let loaded = load(&mem, config.mem_size, &mut image, &kernel_name, initrd, &cmdline)?;
    clock.done(Step::Load, &loaded.describe(image.len, cmdline.len()));

    clock.before(Step::VcpuSetup);
    let mut vcpu = vcpu::create_vcpu(&vm)?;
    let hidden = setup_vcpu(&kvm, &vcpu, &mut quirks, loaded.kernel.entry, loaded.cr3)?;
    let tsc_khz = vcpu.get_tsc_khz().unwrap_or(0);
    let (entry, _) = entry_of(loaded.kernel.entry);
    let plan = Plan {
        vcpu_fd: vcpu.as_raw_fd(),
        console: sink.fd(),
        // A timed snapshot's timer signals the vCPU thread as the timeout's
        // does, and one of its signals may land after the filter is on.
        timeout: config.timeout.is_some() || config.snapshot.as_ref().is_some_and(|r| r.at.is_time()),
        fixups: true,
        irq_fd: Some(uart_line.as_raw_fd()),
        interactive: config.interactive,
    };
    let helpers: &[ThreadKind] =
        if config.interactive { &[ThreadKind::UartKicker, ThreadKind::Stdin] } else { &[ThreadKind::UartKicker] };
    let sandbox = Sandbox::planned(config.seccomp, &plan, helpers).map_err(VmError::from)?;
    clock.done(
        Step::VcpuSetup,
        &format!(
            "vCPU 0 in {} mode at {entry:#x}; {hidden} CPUID feature bits hidden; LINT0 ExtINT, LINT1 NMI",
            if loaded.long() { "64-bit long" } else { "32-bit protected (PVH)" }
        ),
    );

    let tee = Arc::new(Mutex::new(TeeState::default()));
    let capture = matches!(sink, ConsoleSink::Capture);
    let console = Console::new(ConsoleSink::Writer(Box::new(Tee { sink, state: Arc::clone(&tee) })));
    let serial = Serial::new(Arc::clone(&uart_line));
    let (serial_state, _) = serial.handle();
    let bus = devices(serial, CommandPort::default())?;
    let _raw_tty = match config.interactive {
        true => Some(start_input(Arc::clone(&serial_state), Arc::clone(&uart_line), sandbox.as_ref())),
        false => None,
    };
    let kicker = UartKicker::start(Arc::clone(&serial_state), Arc::clone(&uart_line), sandbox.as_ref())
        .map_err(VmError::from)?;
    let mut guest = VcpuLoop::new(bus, console, UnknownIo::Ignore, HostFixups { quirks, failure: None });
    guest.sandbox = sandbox;
    let mut saved = None;
    let stopped = match &config.snapshot {
        None => guest.run(&mut vcpu, &mem, &mut clock, config.timeout, NARRATION)?,
        Some(req) => {
            let mut save = |vcpu: &mut VcpuFd, mem: &GuestMemoryMmap, bus: &PortBus| -> Result<(), VmError> {
                let live = Live { kvm: &kvm, vm: &vm, vcpu, mem, bus, mem_size: config.mem_size };
                let cpuid = vcpu
                    .get_cpuid2(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
                    .map_err(|e| VmError::Ioctl("KVM_GET_CPUID2", e))?;
                let extra = Extra { mini: None, cpuid: Some(cpuid), irqchip: true };
                let s = snapshot::save(&live, &req.dir, req.at, GuestKind::Linux, extra)
                    .map_err(|e| VmError::Snapshot(Box::new(e)))?;
                saved = Some(s);
                Ok(())
            };
            let pause = Some((req.at.pause_point(MARKER_USER_SPACE), &mut save as PauseHook<'_>));
            let stopped = guest.run_pausing(&mut vcpu, &mem, &mut clock, config.timeout, NARRATION, pause)?;
            if let Some(s) = &saved {
                let milestone = match req.at {
                    SnapshotAt::Warm => {
                        "when the workload, started in its warm mode, marked itself ready to take its arguments"
                    }
                    _ => "when the init marked user space on the boot timer",
                };
                let story = crate::vm::save_story(s, req.at, milestone);
                clock.observer.note(&story);
            }
            stopped
        }
    };
    drop(kicker);

    clock.before(Step::Teardown);
    let (uart_interrupts, uart_reasserted) =
        serial_state.lock().map(|s| (s.interrupts, s.reasserted)).unwrap_or((0, 0));
    let memory = kvm::teardown(&mut clock, vcpu, vm, mem, kvm, config.mem_size);

    let (tail, captured, init_line_at) = tee.lock().unwrap_or_else(|p| p.into_inner()).take();
    let panic = find_panic(&tail);
    let last_lines = last_lines(&tail, &stopped.stop);
    let HostFixups { quirks, failure: emulation_failure } = guest.fixups;
    let run = RunReport {
        tsc_khz,
        kernel_pvh: !loaded.long(),
        output: capture.then(|| String::from_utf8_lossy(&captured).into_owned()),
        snapshot: saved,
        ..stopped.report(clock, guest.stats, &guest.console, memory)
    };
    Ok(LinuxReport {
        run,
        kernel: kernel_name,
        kernel_format: loaded.kernel.format.name(),
        entry: entry_of(loaded.kernel.entry).1,
        cmdline,
        initrd_bytes: loaded.initrd_len,
        host_quirks: quirks,
        uart_interrupts,
        uart_reasserted,
        panic,
        emulation_failure,
        last_lines,
        init_line_us: init_line_at.map(|at| us(at.saturating_duration_since(created))),
    })
}

/// What [`prepare`] checked and read.
struct Prepared {
    kernel_name: String,
    image: kernel::Image<File>,
    initrd: Vec<u8>,
    quirks: HostQuirks,
    cmdline: String,
}

/// Checks the config and reads what the guest gets before KVM is opened: a
/// bad file is the user's mistake, and is reported as such.
/// The boot that takes a warm snapshot: the workload, started by the init
/// in its `warm` mode, which marks the boot timer once it is ready and then
/// waits for its arguments (after the snapshot: none, so it runs `ready`).
/// Another program, or a mode the boot would silently not run, is refused.
fn warm_config(config: &LinuxConfig) -> Result<LinuxConfig, LinuxError> {
    let refuse =
        |why: &'static str| Err(LinuxError::Vm(VmError::Snapshot(Box::new(SnapshotError::Point("warm".into(), why)))));
    let argv = config.argv();
    if argv[0] != initramfs::WORKLOAD_PATH {
        return refuse(
            "a warm snapshot holds virtlab's workload, started and waiting for its arguments; it cannot hold another \
             program: take the snapshot at `init` (--snapshot-at init) to run any command after a restore",
        );
    }
    if !matches!(argv.get(1).map(String::as_str), None | Some("ready") | Some("warm")) || argv.len() > 2 {
        return refuse(
            "the boot that takes a warm snapshot runs the workload's `warm` mode (and `ready` after the snapshot); \
             give the mode and its arguments to the restore instead (virtlab vm restore DIR -- cpu 1000)",
        );
    }
    if !config.env.is_empty() || config.workdir.is_some() || matches!(config.initrd, InitrdSource::File(_)) {
        return refuse(
            "a warm snapshot runs the built-in workload from virtlab's own initramfs, with the default environment \
             and directory: drop -e/-w/--initrd, or take the snapshot at `init`",
        );
    }
    let mut c = config.clone();
    c.program = vec![initramfs::WORKLOAD_PATH.to_string(), "warm".to_string()];
    Ok(c)
}

fn prepare(config: &LinuxConfig) -> Result<Prepared, LinuxError> {
    check_mem(config.mem_size)?;
    // The program, environment and directory: the user's words, checked
    // before any file is read.
    let command = config.command_file()?;
    let kernel_name = config.kernel.display().to_string();
    let mut image = kernel::Image::open(&config.kernel).map_err(LinuxError::ReadKernel)?;
    let format = kernel::detect(&image.head, &kernel_name)?;
    match format {
        kernel::Format::BzImage => kernel::check_bzimage(&image.head, image.len, config.mem_size)?,
        kernel::Format::Elf => kernel::check_elf(&mut image, config.mem_size)?,
    };
    let workload = workload_or_builtin(&config.workload);
    crate::loader::parse_user_elf(workload)?;
    let initrd = match &config.initrd {
        InitrdSource::Build { rootfs } => {
            initramfs::build_within(workload, command.as_deref(), rootfs.as_deref(), config.mem_size)?
        }
        InitrdSource::File(p) => input::read(p, FileRole::Initrd, config.mem_size).map_err(LinuxError::ReadInitrd)?,
    };
    let quirks = HostQuirks::probe();
    // The program goes on the command line only when no command file
    // carries it.
    let on_cmdline = if command.is_some() { Vec::new() } else { config.argv() };
    let cmdline = compose_cmdline(quirks.cmdline(), config.extra_cmdline.as_deref(), &on_cmdline)?;
    Ok(Prepared { kernel_name, image, initrd, quirks, cmdline })
}

/// The PC around the CPU, in the host kernel: the TSS page Intel's VMX
/// needs, the interrupt controllers (PIC, IOAPIC, local APIC), the PIT, and
/// the UART's interrupt line as an irqfd.
pub(crate) fn pc_board(vm: &VmFd) -> Result<Arc<EventFd>, LinuxError> {
    vm.set_tss_address(TSS_ADDR).map_err(|e| LinuxError::Ioctl("KVM_SET_TSS_ADDR", e))?;
    vm.create_irq_chip().map_err(|e| LinuxError::Ioctl("KVM_CREATE_IRQCHIP", e))?;
    let pit = kvm_pit_config { flags: KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
    vm.create_pit2(pit).map_err(|e| LinuxError::Ioctl("KVM_CREATE_PIT2", e))?;
    let uart_line = Arc::new(EventFd::new(libc::EFD_NONBLOCK).map_err(LinuxError::EventFd)?);
    vm.register_irqfd(&uart_line, UART_IRQ).map_err(|e| LinuxError::Ioctl("KVM_IRQFD", e))?;
    Ok(uart_line)
}

/// The PC's devices on the port bus: the UART (COM1), the i8042's reset
/// line, and virtlab's exit, boot-timer and command ports (the last
/// empty on a boot; a restore may hand the init a command there).
pub(crate) fn devices(serial: Serial<EventFd>, command: CommandPort) -> Result<PortBus, BusError> {
    let mut bus = PortBus::new();
    bus.insert(port::UART_COM1, 8, Box::new(serial))?;
    bus.insert(i8042::BASE, i8042::LEN, Box::new(I8042::default()))?;
    bus.insert(port::EXIT, 2, Box::new(ExitPort))?;
    bus.insert(port::BOOT_TIMER, 1, Box::new(BootTimer))?;
    bus.insert(command_port::PORT, 1, Box::new(command))?;
    Ok(bus)
}

/// The devices a Linux guest finds on the port bus, with how many ports
/// each answers: the guest's whole way into the VMM, besides the exit
/// reasons of [`crate::exit::Exit::REASONS`] (the escape lab's table).
pub fn guest_devices() -> Vec<(&'static str, u16)> {
    let Ok(line) = EventFd::new(libc::EFD_NONBLOCK) else { return Vec::new() };
    let Ok(bus) = devices(Serial::new(Arc::new(line)), CommandPort::default()) else { return Vec::new() };
    let mut out: Vec<(&'static str, u16)> = Vec::new();
    for port in 0..=u16::MAX {
        if let Some(name) = bus.name_of(port) {
            match out.last_mut() {
                Some((n, count)) if *n == name => *count += 1,
                _ => out.push((name, 1)),
            }
        }
    }
    out
}

/// What [`load`] put into guest memory.
struct Loaded {
    kernel: LoadedKernel,
    initrd_at: u64,
    initrd_len: u64,
    /// The identity page tables' root for the 64-bit entry (0 for PVH,
    /// which starts with paging off).
    cr3: u64,
}

impl Loaded {
    fn long(&self) -> bool {
        matches!(self.kernel.entry, Entry::Long64(_))
    }

    /// One line for the observer.
    fn describe(&self, image_len: u64, cmdline_len: usize) -> String {
        let (entry, entry_name) = entry_of(self.kernel.entry);
        format!(
            "{} ({image_len} bytes) up to {:#x}, entry {entry:#x} ({entry_name}); initrd {} bytes at {:#x}; command line {cmdline_len} bytes",
            self.kernel.format.name(),
            self.kernel.end,
            self.initrd_len,
            self.initrd_at,
        )
    }
}

/// The entry address and its protocol's name.
fn entry_of(entry: Entry) -> (u64, &'static str) {
    match entry {
        Entry::Pvh(a) => (a, "pvh"),
        Entry::Long64(a) => (a, "64-bit"),
    }
}

/// Step "load": the kernel, the initrd (the VMM's copy is dropped once the
/// guest has its own), the command line, the boot GDT, and the entry
/// protocol's data: PVH's start info and memory map, or the 64-bit
/// protocol's zero page and identity page tables.
fn load(
    mem: &GuestMemoryMmap,
    mem_size: u64,
    image: &mut kernel::Image<File>,
    kernel_name: &str,
    initrd: Vec<u8>,
    cmdline: &str,
) -> Result<Loaded, LinuxError> {
    let k = kernel::load(mem, image, mem_size, kernel_name)?;
    boot::check_cmdline(cmdline, k.cmdline_max)?;
    let initrd_at = boot::place_initrd(mem_size, k.end, initrd.len() as u64, k.initrd_addr_max)?;
    let write =
        |what, bytes: &[u8], at: u64| mem.write_slice(bytes, GuestAddress(at)).map_err(|e| LinuxError::Memory(what, e));
    write("the initrd", &initrd, initrd_at)?;
    let initrd_len = initrd.len() as u64;
    drop(initrd);
    let mut c = cmdline.as_bytes().to_vec();
    c.push(0);
    write("the command line", &c, layout::CMDLINE)?;
    let e820 = boot::e820_map(mem_size);
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
            paging::write_identity_map(mem, mem_size)?
        }
    };
    Ok(Loaded { kernel: k, initrd_at, initrd_len, cr3 })
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_bounds() {
        assert!(check_mem(128 << 20).is_ok());
        assert!(check_mem(16 << 20).unwrap_err().to_string().contains("too small"));
        assert!(check_mem(4 << 30).unwrap_err().to_string().contains("--mem"));
    }
}
