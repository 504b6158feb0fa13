//! CPUID for the guest: what KVM supports on this host, as a real VMM
//! passes it on, with the vCPU's own APIC id filled in.

use kvm_bindings::CpuId;

/// Leaves filtered for guests that should not use XSAVE: this host's nested
/// KVM cannot emulate XRSTOR.
pub const XSAVE_BIT: u32 = 26;

/// Adjusts the supported CPUID for vCPU `id`: APIC id in leaf 1, x2APIC id
/// in leaves 0xb and 0x1f (KVM leaves there the id of whichever host CPU
/// asked, so without it two runs, or a snapshot and its restore, would
/// disagree), and, when
/// `hide_xsave`, no XSAVE/OSXSAVE/AVX (leaf 1 ECX bits 26-28) and an empty
/// leaf 0xd.
pub fn filter(cpuid: &mut CpuId, id: u8, hide_xsave: bool) {
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x00ff_ffff) | (u32::from(id) << 24);
                if hide_xsave {
                    e.ecx &= !(0b111 << XSAVE_BIT);
                }
            }
            0xb | 0x1f => e.edx = u32::from(id),
            0xd if hide_xsave => {
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn sets_apic_id_and_hides_xsave() {
        let leaf1 = kvm_cpuid_entry2 { function: 1, ebx: 0xff12_3456, ecx: 0xffff_ffff, ..Default::default() };
        let leafd = kvm_cpuid_entry2 { function: 0xd, eax: 7, ..Default::default() };
        let leafb = kvm_cpuid_entry2 { function: 0xb, edx: 5, ..Default::default() };
        let mut c = CpuId::from_entries(&[leaf1, leafd, leafb]).unwrap();
        filter(&mut c, 3, true);
        let s = c.as_slice();
        assert_eq!(s[0].ebx, 0x0312_3456);
        assert_eq!(s[0].ecx & (0b111 << XSAVE_BIT), 0);
        assert_eq!(s[1].eax, 0);
        assert_eq!(s[2].edx, 3);
    }
}
