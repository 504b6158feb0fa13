//! Checks on the built minikernel image itself.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

use std::process::Command;

use virtlab_minikernel::{abi, BUILD_PATH, ELF};

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn is_a_64_bit_elf_at_the_kernel_base() {
    assert_eq!(&ELF[..4], b"\x7fELF");
    assert_eq!(u64_at(ELF, 24), abi::KERNEL_BASE, "the 64-bit entry is the first byte of the image");
}

#[test]
fn carries_a_pvh_note_pointing_into_the_image() {
    let phoff = u64_at(ELF, 32) as usize;
    let phnum = u16::from_le_bytes([ELF[56], ELF[57]]) as usize;
    let mut entry = None;
    for i in 0..phnum {
        let ph = phoff + i * 56;
        if u32_at(ELF, ph) != 4 {
            continue; // not PT_NOTE
        }
        let (off, size) = (u64_at(ELF, ph + 8) as usize, u64_at(ELF, ph + 32) as usize);
        let mut at = off;
        while at + 12 <= off + size {
            let (namesz, descsz, kind) = (u32_at(ELF, at), u32_at(ELF, at + 4), u32_at(ELF, at + 8));
            let name = &ELF[at + 12..at + 12 + namesz as usize];
            let desc = at + 12 + (namesz as usize).div_ceil(4) * 4;
            if name == b"Xen\0" && kind == 18 {
                entry = Some(u32_at(ELF, desc) as u64);
            }
            at = desc + (descsz as usize).div_ceil(4) * 4;
        }
    }
    let entry = entry.expect("XEN_ELFNOTE_PHYS32_ENTRY note");
    assert!(entry > abi::KERNEL_BASE && entry < abi::USER_BASE, "PVH entry {entry:#x}");
}

/// Some hosts (nested KVM) emulate guest kernel code with an instruction
/// emulator that cannot execute SSE, and the user's SSE registers must
/// survive system calls untouched: the kernel must contain no SSE at all.
#[test]
fn kernel_code_uses_no_sse_registers() {
    let out = match Command::new("objdump").args(["-d", "-M", "intel", BUILD_PATH]).output() {
        Ok(o) if o.status.success() => o,
        other => {
            if std::env::var("VIRTLAB_REQUIRE_KVM").as_deref() == Ok("1") {
                panic!("objdump (binutils) is needed for this check: {other:?}");
            }
            eprintln!("SKIPPED kernel_code_uses_no_sse_registers: objdump (binutils) is not available");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().count() > 100, "objdump printed a disassembly");
    let mut function = "";
    let mut offenders = Vec::new();
    for line in text.lines() {
        if line.ends_with(">:") {
            function = line;
        } else if line.contains("xmm") || line.contains("ymm") || line.contains("zmm") {
            offenders.push(format!("{function} {line}"));
        }
    }
    assert!(offenders.is_empty(), "SSE in the kernel:\n{}", offenders.join("\n"));
}
