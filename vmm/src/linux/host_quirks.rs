//! Work-arounds for hosts whose KVM cannot run a Linux guest kernel as is.
//!
//! On nested KVM over a paravirtual host (the `kvm_pvm` module), guest
//! kernel-mode code is *emulated* by the host, and that emulator has holes:
//! `xrstor`, `cmpxchg16b`, `ldmxcsr` and `int3` in guest ring 0 end the run
//! with "KVM internal error, emulation failure", and SYSCALL from guest
//! ring 3 does not raise the privilege level. None of this happens on a
//! machine with VT-x/AMD-V; there this module switches itself off.
//!
//! What virtlab does about it, each step counted in the run's report:
//!
//! 1. **Hide CPU features** the guest would use in those instructions:
//!    XSAVE (and AVX, which needs it), PCID, FSGSBASE, CMPXCHG16B, SMAP
//!    (`clac`/`stac`), POPCNT, MOVBE, RDRAND/RDSEED, PKU and RDPID, in the
//!    CPUID table given to KVM; and, because CPUID executed in emulated
//!    ring 0 here can report the host's own features, also on the kernel
//!    command line (`noxsave nofsgsbase nopcid clearcpuid=...`).
//! 2. **Serve `int3`, `fwait` and `ldmxcsr` in the VMM**: when the
//!    emulator fails on an `int3` in guest ring 0, the VMM does what the CPU
//!    should have done: advance RIP past it and inject the #BP exception
//!    (KVM_SET_VCPU_EVENTS); an `fwait` (Linux runs one when a task drops
//!    its FPU state) is skipped, or raises #MF if the x87 status word says
//!    an exception is pending; an `ldmxcsr` (a kernel entering an SSE
//!    section, as distribution kernels' crypto code does) is decoded, its
//!    operand read through the guest's page tables and loaded into MXCSR
//!    (KVM_SET_FPU). That is trap-and-emulate, the way VMMs ran unmodified
//!    kernels before VT-x.
//! 3. SYSCALL itself is served by the guest kernel (a small patch, see
//!    `guest/linux/`): para-virtualization, the guest cooperating with the
//!    host it knows it runs on.
//!
//! The probe: the `kvm_pvm` module being loaded (`/sys/module/kvm_pvm`), or
//! `VIRTLAB_HOST_QUIRKS=1` / `=0` to force the work-arounds on or off.

use std::collections::BTreeMap;
use std::path::Path;

use kvm_bindings::CpuId;
use serde::Serialize;

/// Whether the work-arounds are on, and why.
#[derive(Debug, Clone, Serialize)]
pub struct HostQuirks {
    /// On or off.
    pub active: bool,
    /// What the probe found.
    pub reason: String,
    /// Fix-ups made, by kind.
    pub fixups: BTreeMap<&'static str, u64>,
}

/// CPUID bits hidden from the guest: (leaf, subleaf, register, bit, name).
/// Register: 1 = EBX, 2 = ECX.
const HIDDEN: &[(u32, u32, u8, u32, &str)] = &[
    (1, 0, 2, 13, "cx16"),
    (1, 0, 2, 17, "pcid"),
    (1, 0, 2, 22, "movbe"),
    (1, 0, 2, 23, "popcnt"),
    (1, 0, 2, 26, "xsave"),
    (1, 0, 2, 27, "osxsave"),
    (1, 0, 2, 28, "avx"),
    (1, 0, 2, 30, "rdrand"),
    (7, 0, 1, 0, "fsgsbase"),
    (7, 0, 1, 5, "avx2"),
    (7, 0, 1, 10, "invpcid"),
    (7, 0, 1, 16, "avx512f"),
    (7, 0, 1, 18, "rdseed"),
    (7, 0, 1, 20, "smap"),
    (7, 0, 2, 3, "pku"),
    (7, 0, 2, 22, "rdpid"),
];

/// Kernel parameters with the same effect, for CPUID executed in emulated
/// ring 0 (which may not see the filtered table). `clearcpuid=` takes
/// X86_FEATURE numbers (32 * word + bit): 141 CX16 (cmpxchg16b), 150 MOVBE,
/// 151 POPCNT, 158 RDRAND, 306 RDSEED, 308 SMAP (clac/stac), 515 PKU, 534
/// RDPID: each an instruction this host's emulator fails on, or may.
pub const CMDLINE: &str = "noxsave nofsgsbase nopcid nopku clearcpuid=141,150,151,158,306,308,515,534";

impl HostQuirks {
    /// Looks at the host.
    pub fn probe() -> HostQuirks {
        let (active, reason) = match std::env::var("VIRTLAB_HOST_QUIRKS").as_deref() {
            Ok("1") => (true, "forced on by VIRTLAB_HOST_QUIRKS=1".to_string()),
            Ok("0") => (false, "forced off by VIRTLAB_HOST_QUIRKS=0".to_string()),
            _ if Path::new("/sys/module/kvm_pvm").exists() => (
                true,
                "the kvm_pvm module is loaded: nested KVM on a paravirtual host, whose emulated guest ring 0 fails on xrstor, cmpxchg16b, ldmxcsr and int3".to_string(),
            ),
            _ => (false, "no kvm_pvm module: hardware-assisted KVM runs the guest kernel as is".to_string()),
        };
        HostQuirks { active, reason, fixups: BTreeMap::new() }
    }

    /// Counts one fix-up.
    pub fn count(&mut self, kind: &'static str) {
        *self.fixups.entry(kind).or_default() += 1;
    }

    /// Total fix-ups of every kind.
    pub fn total(&self) -> u64 {
        self.fixups.values().sum()
    }

    /// Hides the features in [`HIDDEN`] (and empties the XSAVE leaf 0xd)
    /// when active; returns how many bits were cleared.
    pub fn filter_cpuid(&mut self, cpuid: &mut CpuId) -> u64 {
        if !self.active {
            return 0;
        }
        let mut cleared = 0;
        for e in cpuid.as_mut_slice() {
            for &(leaf, sub, reg, bit, _) in HIDDEN {
                if e.function == leaf && e.index == sub {
                    let r = if reg == 1 { &mut e.ebx } else { &mut e.ecx };
                    if *r & (1 << bit) != 0 {
                        *r &= !(1 << bit);
                        cleared += 1;
                    }
                }
            }
            if e.function == 0xd {
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
        }
        *self.fixups.entry("cpuid-bits-hidden").or_default() += cleared;
        cleared
    }

    /// Kernel parameters to add when active.
    pub fn cmdline(&self) -> Option<&'static str> {
        self.active.then_some(CMDLINE)
    }
}

/// What to do about an emulation failure at an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fixup {
    /// `int3` in ring 0: skip it and inject #BP.
    InjectBreakpoint,
    /// `fwait` in ring 0: raise #MF if an unmasked x87 exception is
    /// pending, else it does nothing: skip it.
    Fwait,
    /// `ldmxcsr m32` in ring 0 (the kernel entering an SSE section): load
    /// MXCSR from memory and skip the instruction.
    Ldmxcsr(MemOperand),
    /// Nothing virtlab can do: stop, naming the instruction.
    Fail(String),
}

/// A decoded memory operand: `segment base + base + index * scale + disp`
/// (or `next RIP + disp` when RIP-relative), and the instruction's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemOperand {
    /// Base register number (0 = RAX ... 15 = R15).
    pub base: Option<u8>,
    /// Index register number and scale.
    pub index: Option<(u8, u8)>,
    /// Displacement, sign-extended.
    pub disp: i64,
    /// Relative to the next instruction's address.
    pub rip_relative: bool,
    /// An FS (0x64) or GS (0x65) segment prefix.
    pub segment: Option<u8>,
    /// The whole instruction's length in bytes.
    pub len: u8,
}

/// Decodes the memory operand of `0f ae /2` (ldmxcsr) in 64-bit mode:
/// segment and REX prefixes, ModRM, SIB, displacement. None for any other
/// instruction or form.
pub fn decode_ldmxcsr(bytes: &[u8]) -> Option<MemOperand> {
    let mut i = 0;
    let mut segment = None;
    while let Some(&b) = bytes.get(i) {
        match b {
            0x64 | 0x65 => segment = Some(b),
            0x2e | 0x36 | 0x3e | 0x26 => {}
            _ => break,
        }
        i += 1;
    }
    let mut rex = 0u8;
    if let Some(&b @ 0x40..=0x4f) = bytes.get(i) {
        rex = b;
        i += 1;
    }
    let (rex_x, rex_b) = ((rex >> 1) & 1, rex & 1);
    if bytes.get(i..i + 2)? != [0x0f, 0xae] {
        return None;
    }
    i += 2;
    let modrm = *bytes.get(i)?;
    i += 1;
    let (md, reg, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
    if md == 3 || reg != 2 {
        return None;
    }
    let mut op = MemOperand { base: None, index: None, disp: 0, rip_relative: false, segment, len: 0 };
    let mut disp_len = match md {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    if rm == 4 {
        let sib = *bytes.get(i)?;
        i += 1;
        let (scale, index, base) = (1u8 << (sib >> 6), ((sib >> 3) & 7) | (rex_x << 3), sib & 7);
        if index != 4 {
            op.index = Some((index, scale));
        }
        if base == 5 && md == 0 {
            disp_len = 4;
        } else {
            op.base = Some(base | (rex_b << 3));
        }
    } else if rm == 5 && md == 0 {
        op.rip_relative = true;
        disp_len = 4;
    } else {
        op.base = Some(rm | (rex_b << 3));
    }
    op.disp = match disp_len {
        1 => i64::from(*bytes.get(i)? as i8),
        4 => i64::from(i32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?)),
        _ => 0,
    };
    op.len = (i + disp_len) as u8;
    Some(op)
}

/// Decides from the instruction bytes at RIP and the privilege level.
pub fn decide(active: bool, cpl: u8, bytes: &[u8]) -> Fixup {
    if active && cpl == 0 {
        match bytes.first() {
            Some(0xcc) => return Fixup::InjectBreakpoint,
            Some(0x9b) => return Fixup::Fwait,
            _ => {}
        }
        if let Some(op) = decode_ldmxcsr(bytes) {
            return Fixup::Ldmxcsr(op);
        }
    }
    Fixup::Fail(describe_instruction(bytes))
}

/// Names the instructions this host's emulator is known to fail on.
pub fn describe_instruction(bytes: &[u8]) -> String {
    let mut i = 0;
    let mut rex_w = false;
    while let Some(&b) = bytes.get(i) {
        match b {
            0x66 | 0xf2 | 0xf3 => i += 1,
            0x40..=0x4f => {
                rex_w = b & 8 != 0;
                i += 1;
            }
            _ => break,
        }
    }
    let op = &bytes[i.min(bytes.len())..];
    let reg = |m: u8| (m >> 3) & 7;
    let name = match op {
        [0xcc, ..] => "int3",
        [0x9b, ..] => "fwait",
        [0x0f, 0x01, 0xd1, ..] => "xsetbv",
        [0x0f, 0x01, 0xca, ..] => "clac",
        [0x0f, 0x01, 0xcb, ..] => "stac",
        [0x0f, 0xae, m, ..] if m >> 6 != 3 && reg(*m) == 2 => "ldmxcsr",
        [0x0f, 0xae, m, ..] if m >> 6 != 3 && reg(*m) == 5 => "xrstor",
        [0x0f, 0xae, m, ..] if m >> 6 != 3 && reg(*m) == 4 => "xsave",
        [0x0f, 0xc7, m, ..] if reg(*m) == 1 && rex_w => "cmpxchg16b",
        [0x0f, 0xc7, m, ..] if reg(*m) == 1 => "cmpxchg8b",
        [0x0f, 0x05, ..] => "syscall",
        [0x0f, 0xb8, ..] => "popcnt",
        [0x0f, 0xc7, m, ..] if reg(*m) == 6 => "rdrand",
        [0x0f, 0xc7, m, ..] if reg(*m) == 7 => "rdseed",
        [0x0f, 0x10..=0x17 | 0x28..=0x2f | 0x50..=0x76 | 0x78..=0x7f | 0xc2 | 0xc4..=0xc6 | 0xd0..=0xfe, ..] => {
            "an SSE/MMX instruction"
        }
        _ => "an instruction",
    };
    let hex: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{name} (bytes {})", hex.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn hides_features_only_when_active() {
        let entries = [
            kvm_cpuid_entry2 { function: 1, ecx: u32::MAX, ebx: 0x10000, ..Default::default() },
            kvm_cpuid_entry2 { function: 7, index: 0, ebx: 0b1, ..Default::default() },
            kvm_cpuid_entry2 { function: 0xd, eax: 7, ..Default::default() },
        ];
        let mut q = HostQuirks { active: false, reason: String::new(), fixups: BTreeMap::new() };
        let mut c = CpuId::from_entries(&entries).unwrap();
        assert_eq!(q.filter_cpuid(&mut c), 0);
        assert_eq!(c.as_slice()[0].ecx, u32::MAX);
        assert!(q.cmdline().is_none());
        q.active = true;
        assert_eq!(q.filter_cpuid(&mut c), 9);
        let s = c.as_slice();
        assert_eq!(s[0].ecx & (1 << 26 | 1 << 13 | 1 << 17), 0);
        assert_eq!(s[0].ebx, 0x10000, "leaf 1 EBX untouched");
        assert_eq!(s[1].ebx, 0);
        assert_eq!(s[2].eax, 0);
        assert_eq!(q.total(), 9);
        assert!(q.cmdline().unwrap().contains("noxsave"));
    }

    #[test]
    fn decides_per_instruction() {
        assert_eq!(decide(true, 0, &[0xcc, 0x90]), Fixup::InjectBreakpoint);
        assert!(matches!(decide(false, 0, &[0xcc]), Fixup::Fail(_)));
        assert!(matches!(decide(true, 3, &[0xcc]), Fixup::Fail(_)));
        assert_eq!(decide(true, 0, &[0x9b, 0x48]), Fixup::Fwait);
        assert!(describe_instruction(&[0x48, 0x0f, 0xae, 0x2f]).starts_with("xrstor"));
        assert!(describe_instruction(&[0x0f, 0xae, 0x55, 0xfc]).starts_with("ldmxcsr"));
        assert!(describe_instruction(&[0x48, 0x0f, 0xc7, 0x0e]).starts_with("cmpxchg16b"));
        assert!(describe_instruction(&[0x90]).starts_with("an instruction (bytes 90)"));
        // movd xmm15, ecx: where Debian's cloud kernel stops on this host.
        assert!(describe_instruction(&[0x66, 0x44, 0x0f, 0x6e, 0xf9]).starts_with("an SSE/MMX instruction"));
        assert!(matches!(decide(true, 0, &[0x0f, 0xae, 0x54, 0x24, 0x04]), Fixup::Ldmxcsr(_)));
        assert!(matches!(decide(true, 3, &[0x0f, 0xae, 0x54, 0x24, 0x04]), Fixup::Fail(_)));
    }

    #[test]
    fn decodes_ldmxcsr_operands() {
        // ldmxcsr [rsp+4]: ModRM 0x54 (mod 1, reg 2, rm 4), SIB 0x24 (no
        // index, base rsp), disp8 4. The failing instruction seen here.
        let op = decode_ldmxcsr(&[0x0f, 0xae, 0x54, 0x24, 0x04, 0x83, 0xe3]).unwrap();
        assert_eq!(op, MemOperand { base: Some(4), index: None, disp: 4, rip_relative: false, segment: None, len: 5 });
        // ldmxcsr [rbp-4]
        let op = decode_ldmxcsr(&[0x0f, 0xae, 0x55, 0xfc]).unwrap();
        assert_eq!((op.base, op.disp, op.len), (Some(5), -4, 4));
        // ldmxcsr [r12+rax*8+0x100] with REX.B
        let op = decode_ldmxcsr(&[0x41, 0x0f, 0xae, 0x94, 0xc4, 0x00, 0x01, 0x00, 0x00]).unwrap();
        assert_eq!((op.base, op.index, op.disp, op.len), (Some(12), Some((0, 8)), 0x100, 9));
        // ldmxcsr [rip+0x10], with a GS prefix
        let op = decode_ldmxcsr(&[0x65, 0x0f, 0xae, 0x15, 0x10, 0, 0, 0]).unwrap();
        assert!(op.rip_relative && op.base.is_none());
        assert_eq!((op.disp, op.segment, op.len), (0x10, Some(0x65), 8));
        // Not ldmxcsr: stmxcsr (/3), a register form, xrstor, truncated.
        assert!(decode_ldmxcsr(&[0x0f, 0xae, 0x5c, 0x24, 0x04]).is_none());
        assert!(decode_ldmxcsr(&[0x0f, 0xae, 0xd0]).is_none());
        assert!(decode_ldmxcsr(&[0x48, 0x0f, 0xae, 0x2f]).is_none());
        assert!(decode_ldmxcsr(&[0x0f, 0xae, 0x54, 0x24]).is_none());
    }
}
