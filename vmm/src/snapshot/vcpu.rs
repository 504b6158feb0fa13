//! A vCPU's state in and out of KVM: every `KVM_GET_*` a snapshot needs,
//! and the `KVM_SET_*` that put it back, in the order KVM wants them
//! (Firecracker's `vstate/vcpu` does the same: CPUID first, since it
//! decides which MSRs and XSAVE features exist; events last).
//!
//! What the host refuses is not fatal where the guest can do without it:
//! it is recorded as a quirk (one line each) and counted, as
//! `linux::host_quirks` does for the Linux boot.

use kvm_bindings::{
    kvm_clock_data, kvm_debugregs, kvm_fpu, kvm_irqchip, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_pit_state2,
    kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave, CpuId, Msrs,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use std::os::fd::AsRawFd;

use super::error::SnapshotError;
use super::format::{Hex, VcpuState};

/// KVM structures that are plain old data: `#[repr(C)]`, made of integers
/// and arrays of integers, so every bit pattern is a valid value and their
/// bytes can be saved and read back.
///
/// # Safety
///
/// Implement it only for such types.
pub unsafe trait Pod: Default {
    /// The structure's name, for errors.
    const NAME: &'static str;
}

macro_rules! pod {
    ($($t:ty),*) => {$(
        // SAFETY: a bindgen-generated #[repr(C)] KVM structure of integer
        // fields, integer arrays and unions of those (include/uapi/linux/kvm.h,
        // arch/x86/include/uapi/asm/kvm.h): every bit pattern is valid.
        unsafe impl Pod for $t { const NAME: &'static str = stringify!($t); }
    )*};
}
pod!(
    kvm_irqchip,
    kvm_pit_state2,
    kvm_regs,
    kvm_sregs,
    kvm_fpu,
    kvm_xsave,
    kvm_xcrs,
    kvm_vcpu_events,
    kvm_debugregs,
    kvm_mp_state,
    kvm_lapic_state,
    kvm_clock_data
);

/// The bytes of `v`.
pub fn to_hex<T: Pod>(v: &T) -> Hex {
    // SAFETY: T is Pod (no padding that matters: padding bytes are copied
    // as whatever they hold, and read back into padding), and the slice
    // covers exactly the one value `v` borrows.
    let bytes = unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) };
    Hex(bytes.to_vec())
}

/// A `T` from saved bytes, which must be exactly its size.
pub fn from_hex<T: Pod>(h: &Hex) -> Result<T, SnapshotError> {
    if h.0.len() != std::mem::size_of::<T>() {
        return Err(SnapshotError::StateSize { what: T::NAME, found: h.0.len(), expected: std::mem::size_of::<T>() });
    }
    let mut v = T::default();
    // SAFETY: T is Pod, so any bytes make a valid T; the source has exactly
    // size_of::<T>() bytes (checked above) and `v` is a distinct local.
    unsafe { std::ptr::copy_nonoverlapping(h.0.as_ptr(), (&mut v as *mut T).cast::<u8>(), h.0.len()) };
    Ok(v)
}

/// Reads vCPU `vcpu`'s whole state. The host's refusals go to `quirks`.
///
/// `cpuid` is the table the vCPU was given; `KVM_GET_CPUID2` would return
/// it with the bits KVM updates at run time (OSXSAVE, XSAVE sizes), which
/// would differ from what a restoring host computes.
pub fn save_vcpu(
    kvm: &Kvm,
    vcpu: &VcpuFd,
    cpuid: &CpuId,
    quirks: &mut Vec<String>,
) -> Result<VcpuState, SnapshotError> {
    let io = |what| move |e| SnapshotError::Ioctl(what, e);
    let mut optional = |what: &str, r: Result<Hex, kvm_ioctls::Error>| match r {
        Ok(h) => Some(h),
        Err(e) => {
            quirks.push(format!("{what}: the host refused to save it ({e})"));
            None
        }
    };
    let xsave = optional("KVM_GET_XSAVE", vcpu.get_xsave().map(|v| to_hex(&v)));
    let xcrs = optional("KVM_GET_XCRS", vcpu.get_xcrs().map(|v| to_hex(&v)));
    let events = optional("KVM_GET_VCPU_EVENTS", vcpu.get_vcpu_events().map(|v| to_hex(&v)));
    let debug_regs = optional("KVM_GET_DEBUGREGS", vcpu.get_debug_regs().map(|v| to_hex(&v)));
    let mp_state = optional("KVM_GET_MP_STATE", vcpu.get_mp_state().map(|v| to_hex(&v)));
    let msrs = save_msrs(kvm, vcpu, quirks)?;
    Ok(VcpuState {
        regs: to_hex(&vcpu.get_regs().map_err(io("KVM_GET_REGS"))?),
        sregs: to_hex(&vcpu.get_sregs().map_err(io("KVM_GET_SREGS"))?),
        fpu: to_hex(&vcpu.get_fpu().map_err(io("KVM_GET_FPU"))?),
        xsave,
        xcrs,
        events,
        debug_regs,
        mp_state,
        // The minikernel has no in-kernel irqchip, so no LAPIC to read.
        lapic: None,
        msrs,
        cpuid: cpuid_rows(cpuid),
        tsc_khz: vcpu.get_tsc_khz().map_err(io("KVM_GET_TSC_KHZ"))?,
    })
}

/// Every MSR in KVM's index list that the host lets us read. KVM stops a
/// `KVM_GET_MSRS` at the first MSR it refuses; that one is noted as a
/// quirk and skipped, and the rest read on.
fn save_msrs(kvm: &Kvm, vcpu: &VcpuFd, quirks: &mut Vec<String>) -> Result<Vec<(u32, u64)>, SnapshotError> {
    let list = kvm.get_msr_index_list().map_err(|e| SnapshotError::Ioctl("KVM_GET_MSR_INDEX_LIST", e))?;
    let mut todo: Vec<u32> = list.as_slice().to_vec();
    let mut out = Vec::with_capacity(todo.len());
    let mut refused = Vec::new();
    while !todo.is_empty() {
        let batch: Vec<kvm_msr_entry> =
            todo.iter().take(256).map(|&index| kvm_msr_entry { index, ..Default::default() }).collect();
        let mut msrs = Msrs::from_entries(&batch)
            .map_err(|_| SnapshotError::Ioctl("KVM_GET_MSRS", kvm_ioctls::Error::new(libc::E2BIG)))?;
        let n = vcpu.get_msrs(&mut msrs).map_err(|e| SnapshotError::Ioctl("KVM_GET_MSRS", e))?;
        out.extend(msrs.as_slice()[..n].iter().map(|e| (e.index, e.data)));
        let mut skip = n;
        if n < batch.len() {
            refused.push(batch[n].index);
            skip += 1;
        }
        todo.drain(..skip);
    }
    if !refused.is_empty() {
        let names: Vec<String> = refused.iter().map(|i| format!("{i:#x}")).collect();
        quirks.push(format!("KVM_GET_MSRS: {} listed MSR(s) cannot be read here: {}", refused.len(), names.join(" ")));
    }
    Ok(out)
}

/// CPUID entries as plain rows.
pub fn cpuid_rows(cpuid: &CpuId) -> Vec<[u32; 7]> {
    cpuid.as_slice().iter().map(|e| [e.function, e.index, e.eax, e.ebx, e.ecx, e.edx, e.flags]).collect()
}

/// Puts a saved state back into a fresh vCPU. Returns the host's
/// refusals that the guest can live with; a refusal it cannot live with
/// (registers, special registers, CPUID) is an error.
pub fn restore_vcpu(vcpu: &mut VcpuFd, s: &VcpuState) -> Result<Vec<String>, SnapshotError> {
    let io = |what| move |e| SnapshotError::Ioctl(what, e);
    let mut quirks = Vec::new();
    let entries: Vec<kvm_bindings::kvm_cpuid_entry2> = s
        .cpuid
        .iter()
        .map(|r| kvm_bindings::kvm_cpuid_entry2 {
            function: r[0],
            index: r[1],
            eax: r[2],
            ebx: r[3],
            ecx: r[4],
            edx: r[5],
            flags: r[6],
            ..Default::default()
        })
        .collect();
    let cpuid = CpuId::from_entries(&entries)
        .map_err(|_| SnapshotError::Ioctl("KVM_SET_CPUID2", kvm_ioctls::Error::new(libc::E2BIG)))?;
    vcpu.set_cpuid2(&cpuid).map_err(io("KVM_SET_CPUID2"))?;
    if let Err(e) = vcpu.set_tsc_khz(s.tsc_khz) {
        quirks.push(format!(
            "KVM_SET_TSC_KHZ {} kHz: refused ({e}); the guest clock runs at this host's rate",
            s.tsc_khz
        ));
    }
    restore_msrs(vcpu, &s.msrs, &mut quirks)?;
    vcpu.set_sregs(&from_hex::<kvm_sregs>(&s.sregs)?).map_err(io("KVM_SET_SREGS"))?;
    match &s.xsave {
        // SAFETY: the kvm_xsave was read from a vCPU with this CPUID (the
        // restore checked the host's CPUID against it), so its size is the
        // one KVM expects from KVM_SET_XSAVE.
        Some(x) => unsafe { vcpu.set_xsave(&from_hex::<kvm_xsave>(x)?) }.map_err(io("KVM_SET_XSAVE"))?,
        None => vcpu.set_fpu(&from_hex::<kvm_fpu>(&s.fpu)?).map_err(io("KVM_SET_FPU"))?,
    }
    if let Some(x) = &s.xcrs {
        if let Err(e) = vcpu.set_xcrs(&from_hex::<kvm_xcrs>(x)?) {
            quirks.push(format!("KVM_SET_XCRS: refused ({e})"));
        }
    }
    if let Some(d) = &s.debug_regs {
        if let Err(e) = vcpu.set_debug_regs(&from_hex::<kvm_debugregs>(d)?) {
            quirks.push(format!("KVM_SET_DEBUGREGS: refused ({e})"));
        }
    }
    if let Some(l) = &s.lapic {
        vcpu.set_lapic(&from_hex::<kvm_lapic_state>(l)?).map_err(io("KVM_SET_LAPIC"))?;
    }
    if let Some(m) = &s.mp_state {
        if let Err(e) = vcpu.set_mp_state(from_hex::<kvm_mp_state>(m)?) {
            quirks.push(format!("KVM_SET_MP_STATE: refused ({e})"));
        }
    }
    vcpu.set_regs(&from_hex::<kvm_regs>(&s.regs)?).map_err(io("KVM_SET_REGS"))?;
    if let Some(ev) = &s.events {
        if let Err(e) = vcpu.set_vcpu_events(&from_hex::<kvm_vcpu_events>(ev)?) {
            quirks.push(format!("KVM_SET_VCPU_EVENTS: refused ({e}); no event was pending at the snapshot point"));
        }
    }
    Ok(quirks)
}

/// `IA32_TSC`, the guest's time stamp counter.
const MSR_IA32_TSC: u32 = 0x10;
/// `KVM_SET_DEVICE_ATTR` on a vCPU: `_IOW(KVMIO, 0xe1, struct kvm_device_attr)`.
const KVM_SET_DEVICE_ATTR: libc::c_ulong = 0x4018_aee1;
/// The vCPU attribute group and attribute of the guest's TSC offset
/// (`KVM_VCPU_TSC_CTRL`, `KVM_VCPU_TSC_OFFSET`, Linux 5.16).
const KVM_VCPU_TSC_CTRL: u32 = 0;
const KVM_VCPU_TSC_OFFSET: u64 = 0;

/// Checks that the guest's TSC reads what was saved (KVM_SET_MSRS set it),
/// so that the guest's clock goes on from the snapshot's moment, not from
/// the host's. If the host kept its own count, sets the TSC offset
/// directly; if it keeps it still (a nested host that does not offset the
/// guest's TSC), says so: times the guest measures across the snapshot
/// then include the gap between save and restore.
/// (Called by a restore after [`restore_vcpu`]; not by the save's probe,
/// where the gap is that of the probe itself.)
pub fn restore_tsc(vcpu: &VcpuFd, s: &VcpuState, quirks: &mut Vec<String>) {
    let Some(saved) = s.msrs.iter().find(|m| m.0 == MSR_IA32_TSC).map(|m| m.1) else { return };
    let read = || -> Option<u64> {
        let mut m = Msrs::from_entries(&[kvm_msr_entry { index: MSR_IA32_TSC, ..Default::default() }]).ok()?;
        (vcpu.get_msrs(&mut m).ok()? == 1).then(|| m.as_slice()[0].data)
    };
    // What the guest reads within a millisecond of the write counts as set.
    let slack = u64::from(s.tsc_khz.max(1));
    let close = |now: u64| now.abs_diff(saved) <= slack;
    let Some(now) = read() else { return };
    if close(now) {
        return;
    }
    // SAFETY: rdtsc only reads the time stamp counter.
    let host = unsafe { core::arch::x86_64::_rdtsc() };
    let offset = saved.wrapping_sub(host);
    let attr = kvm_bindings::kvm_device_attr {
        flags: 0,
        group: KVM_VCPU_TSC_CTRL,
        attr: KVM_VCPU_TSC_OFFSET,
        addr: &offset as *const u64 as u64,
    };
    // SAFETY: KVM_SET_DEVICE_ATTR on a vCPU fd this function borrows, with
    // a kvm_device_attr that lives across the call and whose `addr` points
    // at a u64 that does too; KVM only reads them.
    let set = unsafe { libc::ioctl(vcpu.as_raw_fd(), KVM_SET_DEVICE_ATTR, &attr) } == 0;
    let now = read().unwrap_or(now);
    if set && close(now) {
        return;
    }
    let ahead_s = now.wrapping_sub(saved) as i64 as f64 / (f64::from(s.tsc_khz.max(1)) * 1e3);
    quirks.push(format!(
        "IA32_TSC: the host kept its own count (KVM_SET_MSRS{}): the guest's clock reads {ahead_s:.3} s later than \
         at the save, so a time the guest measures across the snapshot includes the gap",
        if set { " and the TSC offset attribute" } else { "; no TSC offset attribute" }
    ));
}

/// `KVM_SET_MSRS` of everything saved; an MSR the host refuses is skipped
/// and noted, as on save.
fn restore_msrs(vcpu: &VcpuFd, saved: &[(u32, u64)], quirks: &mut Vec<String>) -> Result<(), SnapshotError> {
    let mut todo: Vec<(u32, u64)> = saved.to_vec();
    let mut refused = Vec::new();
    while !todo.is_empty() {
        let batch: Vec<kvm_msr_entry> =
            todo.iter().take(256).map(|&(index, data)| kvm_msr_entry { index, data, ..Default::default() }).collect();
        let msrs = Msrs::from_entries(&batch)
            .map_err(|_| SnapshotError::Ioctl("KVM_SET_MSRS", kvm_ioctls::Error::new(libc::E2BIG)))?;
        let n = vcpu.set_msrs(&msrs).map_err(|e| SnapshotError::Ioctl("KVM_SET_MSRS", e))?;
        let mut skip = n;
        if n < batch.len() {
            refused.push(batch[n].index);
            skip += 1;
        }
        todo.drain(..skip);
    }
    if !refused.is_empty() {
        let names: Vec<String> = refused.iter().map(|i| format!("{i:#x}")).collect();
        quirks.push(format!("KVM_SET_MSRS: {} MSR(s) refused: {}", refused.len(), names.join(" ")));
    }
    Ok(())
}

/// `KVM_GET_CLOCK`, or a quirk.
pub fn save_clock(vm: &VmFd, quirks: &mut Vec<String>) -> Option<Hex> {
    match vm.get_clock() {
        Ok(c) => Some(to_hex(&c)),
        Err(e) => {
            quirks.push(format!("KVM_GET_CLOCK: refused ({e})"));
            None
        }
    }
}

/// `KVM_SET_CLOCK`, or a quirk.
pub fn restore_clock(vm: &VmFd, clock: Option<&Hex>, quirks: &mut Vec<String>) -> Result<(), SnapshotError> {
    if let Some(c) = clock {
        let mut c: kvm_clock_data = from_hex(c)?;
        // Only the clock value; the flags KVM_GET_CLOCK reported (and the
        // host time it was read at) are not inputs.
        c.flags = 0;
        if let Err(e) = vm.set_clock(&c) {
            quirks.push(format!("KVM_SET_CLOCK: refused ({e})"));
        }
    }
    Ok(())
}

/// `KVM_GET_LAPIC`, or a quirk.
pub fn save_lapic(vcpu: &VcpuFd, quirks: &mut Vec<String>) -> Option<Hex> {
    match vcpu.get_lapic() {
        Ok(l) => Some(to_hex(&l)),
        Err(e) => {
            quirks.push(format!("KVM_GET_LAPIC: refused ({e})"));
            None
        }
    }
}

/// `KVM_GET_IRQCHIP` for the PIC master (0), PIC slave (1) and IOAPIC
/// (2), or a quirk.
pub fn save_irqchip(vm: &VmFd, quirks: &mut Vec<String>) -> Option<Vec<Hex>> {
    let mut chips = Vec::new();
    for chip_id in 0..3 {
        let mut c = kvm_irqchip { chip_id, ..Default::default() };
        match vm.get_irqchip(&mut c) {
            Ok(()) => chips.push(to_hex(&c)),
            Err(e) => {
                quirks.push(format!("KVM_GET_IRQCHIP {chip_id}: refused ({e})"));
                return None;
            }
        }
    }
    Some(chips)
}

/// `KVM_GET_PIT2`, or a quirk.
pub fn save_pit(vm: &VmFd, quirks: &mut Vec<String>) -> Option<Hex> {
    match vm.get_pit2() {
        Ok(p) => Some(to_hex(&p)),
        Err(e) => {
            quirks.push(format!("KVM_GET_PIT2: refused ({e})"));
            None
        }
    }
}

/// Puts `state` into a scratch VM with the Linux run's PC board (TSS,
/// irqchip, PIT), the paused guest's memory as its slot 0 (MSRs such as
/// the async-PF and steal-time ones are refused unless their address is
/// guest RAM) and one vCPU, and says which `KVM_SET_*` the host refuses:
/// what a Linux restore would meet, found while the guest that was saved
/// is still paused. The scratch vCPU never runs. Each refusal is one line
/// starting "restore probe:".
pub fn probe_restore(
    kvm: &Kvm,
    state: &super::format::State,
    mem: &vm_memory::GuestMemoryMmap,
    mem_size: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut say = |what: &str, r: Result<(), String>| {
        if let Err(e) = r {
            out.push(format!("restore probe: {what} refused ({e})"));
        }
    };
    let vm = match kvm.create_vm() {
        Ok(vm) => vm,
        Err(e) => return vec![format!("restore probe: KVM_CREATE_VM failed ({e})")],
    };
    say("KVM_SET_TSS_ADDR", vm.set_tss_address(0xfffb_d000).map_err(|e| e.to_string()));
    if let Ok(host) = vm_memory::GuestMemoryBackend::get_host_address(mem, vm_memory::GuestAddress(0)) {
        let region = kvm_bindings::kvm_userspace_memory_region {
            slot: 0,
            guest_phys_addr: 0,
            memory_size: mem_size,
            userspace_addr: host as u64,
            flags: 0,
        };
        // SAFETY: `host` starts the paused guest's live mapping of
        // `mem_size` bytes, which `mem` keeps alive for this whole
        // function, longer than the scratch VM dropped at its end; the
        // scratch vCPU never runs, so nothing writes through this slot.
        let r = unsafe { vm.set_user_memory_region(region) };
        say("KVM_SET_USER_MEMORY_REGION", r.map_err(|e| e.to_string()));
    }
    say("KVM_CREATE_IRQCHIP", vm.create_irq_chip().map_err(|e| e.to_string()));
    let pit = kvm_bindings::kvm_pit_config { flags: kvm_bindings::KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
    say("KVM_CREATE_PIT2", vm.create_pit2(pit).map_err(|e| e.to_string()));
    for (i, chip) in state.irqchip.iter().flatten().enumerate() {
        let r = from_hex::<kvm_irqchip>(chip).map_err(|e| e.to_string());
        say(&format!("KVM_SET_IRQCHIP {i}"), r.and_then(|c| vm.set_irqchip(&c).map_err(|e| e.to_string())));
    }
    if let Some(p) = &state.pit {
        let r = from_hex::<kvm_pit_state2>(p).map_err(|e| e.to_string());
        say("KVM_SET_PIT2", r.and_then(|p| vm.set_pit2(&p).map_err(|e| e.to_string())));
    }
    let mut clock_quirks = Vec::new();
    let _ = restore_clock(&vm, state.clock.as_ref(), &mut clock_quirks);
    let Some(saved) = state.vcpus.first() else { return out };
    match vm.create_vcpu(0) {
        Ok(mut v) => match restore_vcpu(&mut v, saved) {
            Ok(q) => clock_quirks.extend(q),
            Err(e) => say("the vCPU state", Err(error_chain(&e))),
        },
        Err(e) => say("KVM_CREATE_VCPU", Err(e.to_string())),
    }
    out.extend(clock_quirks.into_iter().map(|q| format!("restore probe: {q}")));
    out
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(c) = next {
        s += &format!(": {c}");
        next = c.source();
    }
    s
}

/// A short name for the host CPU: vendor, family, model, stepping.
pub fn cpu_name(rows: &[[u32; 7]]) -> String {
    let leaf = |f: u32| rows.iter().find(|r| r[0] == f && r[1] == 0);
    let vendor = leaf(0)
        .map(|r| {
            let mut b = Vec::new();
            for w in [r[3], r[5], r[4]] {
                b.extend(w.to_le_bytes());
            }
            String::from_utf8_lossy(&b).into_owned()
        })
        .unwrap_or_default();
    let sig = leaf(1).map(|r| r[2]).unwrap_or(0);
    let family = ((sig >> 8) & 0xf) + if (sig >> 8) & 0xf == 0xf { (sig >> 20) & 0xff } else { 0 };
    let model = ((sig >> 4) & 0xf) | (((sig >> 16) & 0xf) << 4);
    format!("{vendor} family {family:#x} model {model:#x} stepping {}", sig & 0xf)
}

/// The first CPUID row where `host` and `saved` disagree, as an error.
/// APIC IDs and other per-boot fields are not in the filtered table, so
/// equal hosts give equal tables.
pub fn check_cpu(saved: &[[u32; 7]], host: &[[u32; 7]]) -> Result<(), SnapshotError> {
    for r in saved {
        match host.iter().find(|h| h[0] == r[0] && h[1] == r[1]) {
            Some(h) if h == r => {}
            Some(h) => {
                return Err(SnapshotError::CpuModel {
                    leaf: r[0],
                    index: r[1],
                    detail: format!(
                        "snapshot eax={:#x} ebx={:#x} ecx={:#x} edx={:#x}, this host eax={:#x} ebx={:#x} ecx={:#x} edx={:#x}",
                        r[2], r[3], r[4], r[5], h[2], h[3], h[4], h[5]
                    ),
                })
            }
            None => {
                return Err(SnapshotError::CpuModel {
                    leaf: r[0],
                    index: r[1],
                    detail: "this host has no such leaf".into(),
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structures_round_trip_and_sizes_are_checked() {
        let r = kvm_regs { rip: 0x10_0000, rsp: 0x7000, rflags: 2, ..Default::default() };
        let h = to_hex(&r);
        assert_eq!(h.0.len(), std::mem::size_of::<kvm_regs>());
        let back: kvm_regs = from_hex(&h).unwrap();
        assert_eq!((back.rip, back.rsp, back.rflags), (0x10_0000, 0x7000, 2));
        let e = from_hex::<kvm_sregs>(&h).unwrap_err();
        assert!(e.to_string().contains("kvm_sregs"), "{e}");
    }

    #[test]
    fn another_cpu_is_named_by_its_leaf() {
        let saved = vec![[0, 0, 0xd, 1, 2, 3, 0], [1, 0, 0x906ea, 0, 0, 0, 0]];
        assert!(check_cpu(&saved, &saved).is_ok());
        let mut other = saved.clone();
        other[1][2] = 0xa0671;
        let e = check_cpu(&saved, &other).unwrap_err();
        assert!(matches!(e, SnapshotError::CpuModel { leaf: 1, index: 0, .. }), "{e}");
        assert!(check_cpu(&saved, &saved[..1]).is_err());
        assert!(cpu_name(&saved).contains("model"));
    }
}
