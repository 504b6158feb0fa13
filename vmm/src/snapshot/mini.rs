//! The minikernel's snapshot: saved at "kernel ready", restored with any
//! workload arguments.

use std::os::fd::AsRawFd;
use std::path::Path;

use virtlab_minikernel::abi::{self, port, BootInfo, BOOT_INFO_ADDR};
use vm_memory::{Bytes, GuestAddress};

use super::error::SnapshotError;
use super::format::{GuestKind, MiniState, State};
use super::{vcpu, RestoreConfig, SnapshotAt};
use crate::console::{Console, ConsoleSink};
use crate::devices::boot_timer::BootTimer;
use crate::devices::exit_port::{ExitPort, FaultPort};
use crate::devices::pv_console::PvConsole;
use crate::devices::uart::{Uart, UartState};
use crate::devices::PortBus;
use crate::exit::UnknownIo;
use crate::loader;
use crate::observe::{Observer, Step};
use crate::report::{RestoreHost, RunReport, SyscallCounts};
use crate::sandbox::{Plan, Sandbox};
use crate::vstate::clock::Clock;
use crate::vstate::error::VmError;
use crate::vstate::exit_loop::{Narration, NoFixups, VcpuLoop};
use crate::vstate::{kvm, vcpu as vstate_vcpu};

const NARRATION: Narration = Narration {
    first_entry: "the vCPU runs on from where it was paused (after the `out` of kernel ready, or mid-run)",
    kernel_ready: "(a restored kernel is ready already)",
};

/// The minikernel's devices as the snapshot left them.
fn devices(state: &State) -> Result<PortBus, SnapshotError> {
    let uart = match state.devices.get("uart") {
        Some(v) if !v.is_null() => Uart::from_state(
            serde_json::from_value::<UartState>(v.clone())
                .map_err(|e| SnapshotError::Parse(super::format::STATE.into(), e))?,
        ),
        _ => Uart::new(),
    };
    let pv = match state.devices.get("pv-console") {
        Some(v) if !v.is_null() => serde_json::from_value::<PvConsole>(v.clone())
            .map_err(|e| SnapshotError::Parse(super::format::STATE.into(), e))?,
        _ => PvConsole::default(),
    };
    let mut bus = PortBus::new();
    bus.insert(port::UART_COM1, 8, Box::new(uart)).map_err(VmError::from)?;
    bus.insert(port::PV_CONSOLE, 1, Box::new(pv)).map_err(VmError::from)?;
    bus.insert(port::EXIT, 2, Box::new(ExitPort)).map_err(VmError::from)?;
    bus.insert(port::FAULT, 1, Box::new(FaultPort)).map_err(VmError::from)?;
    bus.insert(port::BOOT_TIMER, 1, Box::new(BootTimer)).map_err(VmError::from)?;
    Ok(bus)
}

/// Builds a VM from the snapshot in `dir` and runs it to its end: memory
/// mapped from the file, vCPU and devices set back, the workload's stack
/// rebuilt with `config.args` (or the snapshot's own arguments).
pub fn restore(
    dir: &Path,
    config: &RestoreConfig,
    sink: ConsoleSink,
    observer: &mut dyn Observer,
) -> Result<RunReport, SnapshotError> {
    observer.note(
        "restore: the steps below have a boot's names, but no kernel boots: `load` reads and checks the snapshot, \
         `memory` maps its memory file, `vcpu-setup` sets the saved registers, MSRs and events back (KVM_SET_*), and \
         the first entry resumes the guest where it was paused",
    );
    let mut clock = Clock::new(observer);
    clock.before(Step::Load);
    let (manifest, state, mem_file) = super::open(dir)?;
    if let Some(asked) = config.mem_size {
        if asked != manifest.mem_size {
            return Err(SnapshotError::Mismatch {
                what: "guest memory",
                snapshot: format!("{} MiB", manifest.mem_size >> 20),
                asked: format!("{} MiB", asked >> 20),
            });
        }
    }
    if manifest.vcpus != 1 || state.vcpus.len() != 1 {
        return Err(SnapshotError::Mismatch {
            what: "vCPU count",
            snapshot: manifest.vcpus.to_string(),
            asked: "1 (virtlab runs one vCPU)".into(),
        });
    }
    super::check_request(manifest.guest, &manifest.taken_at, config)?;
    // A snapshot taken at a time resumes mid-run: nothing is rewritten.
    let mid_run = SnapshotAt::parse(&manifest.taken_at).is_ok_and(|at| at.is_time());
    if manifest.guest == GuestKind::Linux {
        clock.done(Step::Load, &format!("{}: a Linux guest, checksums good", dir.display()));
        return super::linux::restore(clock, dir, manifest, state, mem_file, config, sink);
    }
    let mini = state.mini.clone().ok_or_else(|| SnapshotError::Mismatch {
        what: "no minikernel state",
        snapshot: "in state.json".into(),
        asked: "a minikernel restore".into(),
    })?;
    let argv = argv_for(&mini, &config.args);
    clock.done(
        Step::Load,
        &format!(
            "{}: version {}, taken at {}, checksums good ({} KiB of memory data)",
            dir.display(),
            manifest.version,
            manifest.taken_at,
            manifest.memory_data_bytes >> 10
        ),
    );

    let kvm = kvm::open_kvm(&mut clock, "")?;
    clock.before(Step::CreateVm);
    let host_cpuid = vcpu::cpuid_rows(&vstate_vcpu::host_cpuid(&kvm)?);
    vcpu::check_cpu(&state.vcpus[0].cpuid, &host_cpuid)?;
    let vm = kvm::create_vm(&kvm)?;
    let mut quirks = Vec::new();
    vcpu::restore_clock(&vm, state.clock.as_ref(), &mut quirks)?;
    clock.done(Step::CreateVm, "this host's CPUID matches the snapshot's; VM fd created, KVM clock set back");

    clock.before(Step::Memory);
    let mem = super::memory::map_private(mem_file, manifest.mem_size)?;
    crate::vstate::memory::register_memory(&vm, &mem, manifest.mem_size)?;
    clock.done(
        Step::Memory,
        &format!(
            "{} MiB mapped from {}/memory MAP_PRIVATE: pages are read when touched and copied when written",
            manifest.mem_size >> 20,
            dir.display()
        ),
    );

    clock.before(Step::VcpuSetup);
    let mut vcpu_fd = vstate_vcpu::create_vcpu(&vm)?;
    quirks.extend(vcpu::restore_vcpu(&mut vcpu_fd, &state.vcpus[0])?);
    vcpu::restore_tsc(&vcpu_fd, &state.vcpus[0], &mut quirks);
    // At `ready` the kernel reads the user entry and stack from the
    // boot-info page right after the instruction it was paused at: a new
    // argv goes there. Mid-run, the workload's stack is live: left alone.
    if !mid_run {
        let rsp = loader::build_user_stack(&mem, mini.stack_top, &argv).map_err(VmError::from)?;
        mem.write_obj(rsp, GuestAddress(BOOT_INFO_ADDR + std::mem::offset_of!(BootInfo, user_rsp) as u64))
            .map_err(VmError::BootInfo)?;
    }
    let plan = Plan {
        vcpu_fd: vcpu_fd.as_raw_fd(),
        console: sink.fd(),
        timeout: config.timeout.is_some(),
        fixups: false,
        irq_fd: None,
        interactive: false,
    };
    let sandbox = Sandbox::planned(config.seccomp, &plan, &[]).map_err(VmError::from)?;
    clock.done(
        Step::VcpuSetup,
        &format!(
            "registers, special registers, FPU, {} MSRs, events set back; {}{}",
            state.vcpus[0].msrs.len(),
            if mid_run {
                format!("the workload resumes mid-run, at {} after its start", manifest.taken_at)
            } else {
                format!("argv {:?} on a new user stack", &argv[1..])
            },
            if quirks.is_empty() { String::new() } else { format!("; host refused: {}", quirks.join("; ")) }
        ),
    );

    let mut guest = VcpuLoop::new(devices(&state)?, Console::new(sink), UnknownIo::Stop, NoFixups);
    guest.sandbox = sandbox;
    let stopped = guest.run(&mut vcpu_fd, &mem, &mut clock, config.timeout, NARRATION)?;

    clock.before(Step::Teardown);
    let info: BootInfo = read_boot_info(&mem);
    let memory = kvm::teardown(&mut clock, vcpu_fd, vm, mem, kvm, manifest.mem_size);
    let output = match guest.console.output() {
        [] => None,
        o => Some(String::from_utf8_lossy(o).into_owned()),
    };
    Ok(RunReport {
        console: mini.console,
        syscalls: SyscallCounts::from(info.stats),
        tsc_khz: state.vcpus[0].tsc_khz,
        kernel_pvh: false,
        output,
        restore: Some(RestoreHost { refused: quirks, fixups: Default::default() }),
        ..stopped.report(clock, guest.stats, &guest.console, memory)
    })
}

/// argv[0] from the snapshot, then the arguments given, or the snapshot's.
fn argv_for(mini: &MiniState, args: &[String]) -> Vec<String> {
    let mut argv = vec![mini.argv.first().cloned().unwrap_or_else(|| "virtlab-workload".into())];
    if args.is_empty() {
        argv.extend(mini.argv.iter().skip(1).cloned());
    } else {
        argv.extend(args.iter().cloned());
    }
    argv
}

fn read_boot_info(mem: &vm_memory::GuestMemoryMmap) -> BootInfo {
    let mut info = BootInfo::default();
    // The stats are all the report needs; read them field by field.
    let base = BOOT_INFO_ADDR + std::mem::offset_of!(BootInfo, stats) as u64;
    let f = |i: u64| mem.read_obj::<u64>(GuestAddress(base + 8 * i)).unwrap_or(0);
    info.stats = abi::SyscallStats {
        via_syscall: f(0),
        via_trap: f(1),
        enosys: f(2),
        last_enosys_nr: f(3),
        writes: f(4),
        bytes_written: f(5),
        mmap_bytes: f(6),
        console_outs: f(7),
    };
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConsoleKind;

    #[test]
    fn a_restore_keeps_argv0_and_takes_new_arguments() {
        let m = MiniState {
            argv: vec!["virtlab-workload".into(), "ready".into()],
            stack_top: 64 << 20,
            console: ConsoleKind::Uart,
        };
        assert_eq!(argv_for(&m, &[]), ["virtlab-workload", "ready"]);
        assert_eq!(argv_for(&m, &["cpu".into(), "10".into()]), ["virtlab-workload", "cpu", "10"]);
    }
}
