//! The host work-arounds at run time: when KVM's instruction emulator gives
//! up on a guest instruction (an exit the vCPU loop hands to
//! [`Fixups::internal_error`]), do what the instruction would have done
//! when [`host_quirks::decide`] knows how, or say what it was.

use kvm_bindings::{kvm_regs, kvm_sregs, KVM_INTERNAL_ERROR_EMULATION};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::host_quirks::{self, Fixup, HostQuirks, MemOperand};
use crate::exit::Flow;
use crate::stop::GuestStop;
use crate::vstate::exit_loop::Fixups;

/// The host work-arounds as the vCPU loop's fix-ups; the first failure
/// they cannot repair ends the run and is kept for the report.
#[derive(Debug)]
pub(crate) struct HostFixups {
    pub(crate) quirks: HostQuirks,
    pub(crate) failure: Option<String>,
}

impl Fixups for HostFixups {
    fn internal_error(&mut self, vcpu: &mut VcpuFd, mem: &GuestMemoryMmap) -> Flow {
        match internal_error(vcpu, mem, &mut self.quirks) {
            Ok(()) => Flow::Continue,
            Err(what) => {
                self.failure = Some(what);
                Flow::Stop(GuestStop::InternalError)
            }
        }
    }
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
    let done = match fix {
        Fixup::InjectBreakpoint => {
            skip(vcpu, &regs, 1, "int3")?;
            inject_exception(vcpu, 3, "#BP")?;
            "int3-breakpoint-injected"
        }
        Fixup::Fwait => {
            emulate_fwait(vcpu, &regs)?;
            "fwait-emulated"
        }
        Fixup::Ldmxcsr(op) => {
            emulate_ldmxcsr(vcpu, mem, &regs, &sregs, &op)?;
            "ldmxcsr-emulated"
        }
        Fixup::Fail(what) => {
            return Err(format!(
                "the host could not emulate {what} at rip {:#x} in ring {cpl}{}",
                regs.rip,
                if quirks.active { "" } else { " (host work-arounds are off)" }
            ))
        }
    };
    quirks.count(done);
    Ok(())
}

/// Moves the guest past the `len`-byte instruction at `regs.rip`.
fn skip(vcpu: &VcpuFd, regs: &kvm_regs, len: u64, what: &str) -> Result<(), String> {
    let mut r = *regs;
    r.rip += len;
    vcpu.set_regs(&r).map_err(|e| format!("cannot skip {what}: {e}"))
}

/// Injects exception `nr` (one without an error code) into the guest.
fn inject_exception(vcpu: &VcpuFd, nr: u8, name: &str) -> Result<(), String> {
    let mut ev = vcpu.get_vcpu_events().map_err(|e| format!("cannot inject {name}: {e}"))?;
    ev.exception.injected = 1;
    ev.exception.nr = nr;
    ev.exception.has_error_code = 0;
    ev.exception.pending = 0;
    vcpu.set_vcpu_events(&ev).map_err(|e| format!("cannot inject {name}: {e}"))
}

/// `fwait`: #MF when an unmasked x87 exception is pending, else nothing.
fn emulate_fwait(vcpu: &VcpuFd, regs: &kvm_regs) -> Result<(), String> {
    let fpu = vcpu.get_fpu().map_err(|e| format!("cannot emulate fwait: {e}"))?;
    if fpu.fsw & 0x80 != 0 {
        // An unmasked x87 exception is pending: #MF at the fwait.
        inject_exception(vcpu, 16, "#MF")
    } else {
        skip(vcpu, regs, 1, "fwait")
    }
}

/// `ldmxcsr m32`: loads MXCSR from the operand's guest address.
fn emulate_ldmxcsr(
    vcpu: &VcpuFd,
    mem: &GuestMemoryMmap,
    regs: &kvm_regs,
    sregs: &kvm_sregs,
    op: &MemOperand,
) -> Result<(), String> {
    let reg = |n: u8| {
        let r = regs;
        [r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15]
            [usize::from(n & 15)]
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
    skip(vcpu, regs, u64::from(op.len), "ldmxcsr")
}
