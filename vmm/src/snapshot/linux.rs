//! A Linux guest restored from its snapshot: the PC board (TSS, in-kernel
//! PIC, IOAPIC, local APIC, PIT, the UART's irqfd) made as a boot makes it,
//! then the saved interrupt controllers, PIT, clock, memory, vCPU and UART
//! put back, and the guest run on with the host work-arounds of a boot.
//!
//! The init was paused right after marking "user space" on the boot timer,
//! just before it asks the command port for a command (and reads its
//! command file when there is none): a restore given arguments hands them
//! over there, with an environment and a working directory if asked (the
//! command file's own `virtlab-exec/1` format), so one booted snapshot runs
//! any program of its initramfs. A `warm` snapshot was paused later, in
//! the workload's own process (its `warm` mode, started by the init), which
//! reads the same port itself: the command is the same bytes, but only the
//! workload's modes are accepted (`super::check_request`), and nothing is
//! left for the guest kernel but the mode's own system calls. A snapshot
//! taken at a time resumes where
//! the guest was, booting or running, and takes no command.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use kvm_bindings::{kvm_irqchip, kvm_pit_state2};

use super::error::SnapshotError;
use super::format::{Manifest, State};
use super::vcpu::{self, from_hex};
use super::RestoreConfig;
use crate::console::{Console, ConsoleSink};
use crate::devices::command_port::CommandPort;
use crate::devices::serial::Serial;
use crate::exit::UnknownIo;
use crate::linux::command::encode;
use crate::linux::run::{devices, pc_board, NARRATION};
use crate::linux::{HostFixups, HostQuirks, UartKicker};
use crate::observe::Step;
use crate::report::{RestoreHost, RunReport};
use crate::sandbox::{Plan, Sandbox, ThreadKind};
use crate::vstate::clock::Clock;
use crate::vstate::error::VmError;
use crate::vstate::exit_loop::VcpuLoop;
use crate::vstate::{kvm, vcpu as vstate_vcpu};

/// Builds and runs the Linux VM of a checked snapshot (`super::open`).
pub(crate) fn restore(
    mut clock: Clock<'_>,
    dir: &Path,
    manifest: Manifest,
    state: State,
    mem_file: std::fs::File,
    config: &RestoreConfig,
    sink: ConsoleSink,
) -> Result<RunReport, SnapshotError> {
    // The init asks the command port before it reads its command file: a
    // command given here is what it runs.
    let command = if config.args.is_empty() {
        CommandPort::default()
    } else {
        CommandPort::with(encode(&config.args, &config.env, config.workdir.as_deref()).map_err(SnapshotError::Command)?)
    };
    let kvm = kvm::open_kvm(&mut clock, "")?;
    clock.before(Step::CreateVm);
    let vm = kvm::create_vm(&kvm)?;
    let uart_line = pc_board(&vm).map_err(|e| SnapshotError::Refused {
        what: "the PC board (TSS, irqchip, PIT, irqfd)".into(),
        why: e.to_string(),
    })?;
    for (i, chip) in state.irqchip.iter().flatten().enumerate() {
        let c: kvm_irqchip = from_hex(chip)?;
        vm.set_irqchip(&c).map_err(|e| {
            SnapshotError::Ioctl(
                ["KVM_SET_IRQCHIP (PIC master)", "KVM_SET_IRQCHIP (PIC slave)", "KVM_SET_IRQCHIP (IOAPIC)"][i.min(2)],
                e,
            )
        })?;
    }
    if let Some(p) = &state.pit {
        let p: kvm_pit_state2 = from_hex(p)?;
        vm.set_pit2(&p).map_err(|e| SnapshotError::Ioctl("KVM_SET_PIT2", e))?;
    }
    let mut quirks = Vec::new();
    vcpu::restore_clock(&vm, state.clock.as_ref(), &mut quirks)?;
    clock.done(Step::CreateVm, "VM with in-kernel PIC, IOAPIC, local APIC and PIT, their saved state set back (KVM_SET_IRQCHIP, KVM_SET_PIT2), KVM clock set back");

    clock.before(Step::Memory);
    let mem = super::memory::map_private(mem_file, manifest.mem_size)?;
    crate::vstate::memory::register_memory(&vm, &mem, manifest.mem_size)?;
    clock.done(
        Step::Memory,
        &format!("{} MiB mapped from {}/memory MAP_PRIVATE", manifest.mem_size >> 20, dir.display()),
    );

    clock.before(Step::VcpuSetup);
    let mut vcpu_fd = vstate_vcpu::create_vcpu(&vm)?;
    quirks.extend(vcpu::restore_vcpu(&mut vcpu_fd, &state.vcpus[0])?);
    vcpu::restore_tsc(&vcpu_fd, &state.vcpus[0], &mut quirks);
    let plan = Plan {
        vcpu_fd: vcpu_fd.as_raw_fd(),
        console: sink.fd(),
        timeout: config.timeout.is_some(),
        fixups: true,
        irq_fd: Some(uart_line.as_raw_fd()),
        interactive: false,
    };
    let sandbox = Sandbox::planned(config.seccomp, &plan, &[ThreadKind::UartKicker]).map_err(VmError::from)?;
    clock.done(
        Step::VcpuSetup,
        &format!(
            "registers, special registers, XSAVE, local APIC, {} MSRs, events set back{}",
            state.vcpus[0].msrs.len(),
            if quirks.is_empty() { String::new() } else { format!("; host refused: {}", quirks.join("; ")) }
        ),
    );

    let serial = Serial::new(Arc::clone(&uart_line));
    if let Some(saved) = state.devices.get("uart") {
        serial.restore(saved).map_err(|e| SnapshotError::Parse(super::format::STATE.into(), e))?;
    }
    let (serial_state, _) = serial.handle();
    let bus = devices(serial, command).map_err(VmError::from)?;
    let kicker = UartKicker::start(Arc::clone(&serial_state), Arc::clone(&uart_line), sandbox.as_ref())
        .map_err(VmError::from)?;
    let fixups = HostFixups { quirks: HostQuirks::probe(), failure: None };
    let mut guest = VcpuLoop::new(bus, Console::new(sink), UnknownIo::Ignore, fixups);
    guest.sandbox = sandbox;
    let stopped = guest.run(&mut vcpu_fd, &mem, &mut clock, config.timeout, NARRATION)?;
    drop(kicker);

    clock.before(Step::Teardown);
    let memory = kvm::teardown(&mut clock, vcpu_fd, vm, mem, kvm, manifest.mem_size);
    let output = match guest.console.output() {
        [] => None,
        o => Some(String::from_utf8_lossy(o).into_owned()),
    };
    Ok(RunReport {
        tsc_khz: state.vcpus[0].tsc_khz,
        output,
        restore: Some(RestoreHost { refused: quirks, fixups: guest.fixups.quirks.fixups.clone() }),
        ..stopped.report(clock, guest.stats, &guest.console, memory)
    })
}
