//! Putting the guest into memory: the kernel image (with linux-loader), the
//! user program's ELF segments, its stack with argv, and the boot-info page.
//! All of it is host-side work, so the guest kernel has none of it to do.

use std::io::Cursor;

use linux_loader::loader::elf::Elf;
use linux_loader::loader::KernelLoader;
use virtlab_minikernel::abi::{KERNEL_BASE, USER_BASE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::elf::{self, ElfError, ElfHeader};

/// The user stack's size; the mmap() area lies between the program and it.
pub const USER_STACK_SIZE: u64 = 1 << 20;
const PAGE: u64 = 4096;

/// Errors loading guest images.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The kernel is a Linux bzImage, which only the Linux loader takes.
    #[error(
        "the kernel is a Linux bzImage, not an ELF file; boot it as Linux (virtlab vm run --kernel FILE picks the Linux loader for a bzImage file), or leave out --kernel for the built-in minikernel"
    )]
    KernelIsBzImage,
    /// The kernel is not an ELF file the minikernel loader can load.
    #[error("cannot use the kernel: the minikernel loader needs an x86_64 ELF64 executable (ET_EXEC), and Linux an ELF vmlinux or a bzImage; leave out --kernel for the built-in minikernel")]
    KernelElf(#[source] ElfError),
    /// linux-loader refused the kernel.
    #[error("cannot load the kernel ELF: {0}; is it a 64-bit x86 kernel linked at or above {KERNEL_BASE:#x}?")]
    Kernel(String),
    /// The kernel does not fit below the user area.
    #[error("the kernel image ends at {end:#x}, past the kernel area (which ends at {USER_BASE:#x})")]
    KernelTooBig {
        /// First byte after the image.
        end: u64,
    },
    /// The workload is not a usable ELF executable.
    #[error("the workload is not a static x86_64 ELF executable (build it for x86_64 with -static -no-pie)")]
    BadWorkload(#[source] ElfError),
    /// A workload segment falls outside the user area.
    #[error("workload segment at {vaddr:#x}+{memsz:#x} lies outside user memory ({USER_BASE:#x}..{limit:#x}); link it at 0x400000 and give the VM more memory (--mem)")]
    SegmentOutside {
        /// Segment start.
        vaddr: u64,
        /// Segment size in memory.
        memsz: u64,
        /// End of the area the program may use (below the stack).
        limit: u64,
    },
    /// Guest memory is too small for the program, its stack and the kernel.
    #[error("{mem} MiB of guest memory is too small: this workload needs at least {need} MiB (2 MiB kernel area, the program, a 1 MiB stack); raise --mem")]
    MemTooSmall {
        /// Guest memory in MiB.
        mem: u64,
        /// The minimum, in MiB.
        need: u64,
    },
    /// The arguments do not fit on the stack.
    #[error("the workload's arguments are too long ({0} bytes)")]
    ArgsTooLong(usize),
    /// Writing guest memory failed.
    #[error("cannot write guest memory at {0:#x}")]
    Memory(u64, #[source] vm_memory::GuestMemoryError),
}

/// What loading the kernel produced.
#[derive(Debug, Clone, Copy)]
pub struct KernelImage {
    /// The 64-bit entry point.
    pub entry: u64,
    /// First byte after the image.
    pub end: u64,
    /// Whether the image carries a PVH note (bootable by QEMU -kernel).
    pub pvh: bool,
}

/// Checks that a kernel image is an x86_64 ELF64 executable with a
/// program header table in the file, without loading it; returns its
/// header.
pub fn check_kernel(image: &[u8]) -> Result<ElfHeader, LoadError> {
    if !elf::has_magic(image) && image.len() > 0x206 && &image[0x202..0x206] == b"HdrS" {
        return Err(LoadError::KernelIsBzImage);
    }
    // linux-loader checks only the magic and the byte order: a 32-bit, ARM
    // or position-independent ELF would be loaded as garbage.
    ElfHeader::parse_x86_64_exec(image, image.len() as u64).map_err(LoadError::KernelElf)
}

/// Loads an ELF kernel at its physical addresses.
pub fn load_kernel(mem: &GuestMemoryMmap, image: &[u8]) -> Result<KernelImage, LoadError> {
    let header = check_kernel(image)?;
    let r = Elf::load(mem, None, &mut Cursor::new(image), Some(GuestAddress(KERNEL_BASE)))
        .map_err(|e| LoadError::Kernel(e.to_string()))?;
    let end = r.kernel_end;
    if end > USER_BASE {
        return Err(LoadError::KernelTooBig { end });
    }
    let pvh = !matches!(r.pvh_boot_cap, linux_loader::loader::elf::PvhBootCapability::PvhEntryNotPresent);
    Ok(KernelImage { entry: header.entry, end, pvh })
}

/// One PT_LOAD segment of the user program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// File offset.
    pub offset: u64,
    /// Virtual (= physical) address.
    pub vaddr: u64,
    /// Bytes in the file.
    pub filesz: u64,
    /// Bytes in memory (the rest is zero).
    pub memsz: u64,
}

/// A parsed static executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserImage {
    /// Entry point.
    pub entry: u64,
    /// Loadable segments.
    pub segments: Vec<Segment>,
    /// First page after the last segment.
    pub end: u64,
}

/// Parses and checks a static, non-PIE x86_64 executable.
pub fn parse_user_elf(b: &[u8]) -> Result<UserImage, LoadError> {
    let len = b.len() as u64;
    let header = ElfHeader::parse_x86_64_exec(b, len).map_err(LoadError::BadWorkload)?;
    let (phoff, size) = header.program_headers(len).map_err(LoadError::BadWorkload)?;
    // Both checked against the slice's length just above.
    let table = &b[phoff as usize..(phoff + size) as usize];
    let mut segments = Vec::new();
    for ph in table.chunks_exact(elf::PHDR_SIZE) {
        match elf::u32_at(ph, 0) {
            1 => {
                let s = Segment {
                    offset: elf::u64_at(ph, 8),
                    vaddr: elf::u64_at(ph, 16),
                    filesz: elf::u64_at(ph, 32),
                    memsz: elf::u64_at(ph, 40),
                };
                if s.offset.checked_add(s.filesz).is_none_or(|end| end > len) {
                    return Err(LoadError::BadWorkload(ElfError::SegmentPastEnd {
                        offset: s.offset,
                        filesz: s.filesz,
                        len,
                    }));
                }
                if s.filesz > s.memsz {
                    return Err(LoadError::BadWorkload(ElfError::SegmentFileLargerThanMemory {
                        vaddr: s.vaddr,
                        filesz: s.filesz,
                        memsz: s.memsz,
                    }));
                }
                // Rounded up to a page below: the end must leave room for that.
                if s.vaddr.checked_add(s.memsz).and_then(|e| e.checked_add(PAGE)).is_none() {
                    return Err(LoadError::BadWorkload(ElfError::SegmentOverflow { vaddr: s.vaddr, memsz: s.memsz }));
                }
                segments.push(s);
            }
            2 => return Err(LoadError::BadWorkload(ElfError::Dynamic)),
            3 => return Err(LoadError::BadWorkload(ElfError::Interp)),
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(LoadError::BadWorkload(ElfError::NoLoadSegments));
    }
    let end = segments.iter().map(|s| s.vaddr + s.memsz).max().unwrap_or(0);
    let end = end.div_ceil(PAGE) * PAGE;
    let entry = header.entry;
    if !segments.iter().any(|s| (s.vaddr..s.vaddr + s.memsz).contains(&entry)) {
        return Err(LoadError::BadWorkload(ElfError::EntryOutside(entry)));
    }
    Ok(UserImage { entry, segments, end })
}

/// Where things go in user memory for a given guest size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserLayout {
    /// First byte above the stack (the end of guest RAM).
    pub stack_top: u64,
    /// First byte of the mmap() area.
    pub heap_start: u64,
    /// End of the mmap() area (the stack's bottom).
    pub heap_end: u64,
}

/// Plans user memory, or says how much memory the program needs.
pub fn plan_user_memory(image: &UserImage, mem_size: u64) -> Result<UserLayout, LoadError> {
    let stack_top = mem_size & !(PAGE - 1);
    let need = image.end.saturating_add(USER_STACK_SIZE);
    if stack_top < need {
        return Err(LoadError::MemTooSmall { mem: mem_size >> 20, need: need.div_ceil(1 << 20) });
    }
    let limit = stack_top - USER_STACK_SIZE;
    for s in &image.segments {
        if s.vaddr < USER_BASE || s.vaddr + s.memsz > limit {
            return Err(LoadError::SegmentOutside { vaddr: s.vaddr, memsz: s.memsz, limit });
        }
    }
    Ok(UserLayout { stack_top, heap_start: image.end, heap_end: limit })
}

/// Copies the program's segments into guest memory and zeroes their bss.
pub fn load_user(mem: &GuestMemoryMmap, image: &UserImage, bytes: &[u8]) -> Result<(), LoadError> {
    for s in &image.segments {
        let file = &bytes[s.offset as usize..(s.offset + s.filesz) as usize];
        mem.write_slice(file, GuestAddress(s.vaddr)).map_err(|e| LoadError::Memory(s.vaddr, e))?;
        let bss = s.memsz - s.filesz;
        if bss > 0 {
            let at = s.vaddr + s.filesz;
            let zeros = vec![0u8; bss as usize];
            mem.write_slice(&zeros, GuestAddress(at)).map_err(|e| LoadError::Memory(at, e))?;
        }
    }
    Ok(())
}

/// Builds the System V initial stack below `top`: argc, argv pointers, NULL,
/// an empty environment, and an auxiliary vector with AT_PAGESZ. Returns the
/// initial RSP (16-byte aligned, pointing at argc).
pub fn build_user_stack(mem: &GuestMemoryMmap, top: u64, argv: &[String]) -> Result<u64, LoadError> {
    let strings: usize = argv.iter().map(|a| a.len() + 1).sum();
    if strings as u64 + 8 * (argv.len() as u64 + 8) > USER_STACK_SIZE / 2 {
        return Err(LoadError::ArgsTooLong(strings));
    }
    let write =
        |addr: u64, bytes: &[u8]| mem.write_slice(bytes, GuestAddress(addr)).map_err(|e| LoadError::Memory(addr, e));
    let mut at = top;
    let mut ptrs = Vec::with_capacity(argv.len());
    for a in argv {
        at -= a.len() as u64 + 1;
        write(at, a.as_bytes())?;
        write(at + a.len() as u64, &[0])?;
        ptrs.push(at);
    }
    const AT_NULL: u64 = 0;
    const AT_PAGESZ: u64 = 6;
    let mut words = vec![argv.len() as u64];
    words.extend(&ptrs);
    words.extend([0, 0, AT_PAGESZ, PAGE, AT_NULL, 0]);
    let rsp = (at - 8 * words.len() as u64) & !15;
    for (i, w) in words.iter().enumerate() {
        write(rsp + 8 * i as u64, &w.to_le_bytes())?;
    }
    Ok(rsp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_workload() {
        let img = parse_user_elf(virtlab_workload::ELF).unwrap();
        assert!(img.entry >= 0x40_0000);
        assert!(!img.segments.is_empty());
        assert_eq!(img.end % PAGE, 0);
        let layout = plan_user_memory(&img, 64 << 20).unwrap();
        assert_eq!(layout.stack_top, 64 << 20);
        assert_eq!(layout.heap_start, img.end);
    }

    /// The error and its causes, as the `virtlab` binary prints them.
    fn chain(e: &LoadError) -> String {
        let mut s = e.to_string();
        let mut cause = std::error::Error::source(e);
        while let Some(c) = cause {
            s += &format!(": {c}");
            cause = c.source();
        }
        s
    }

    fn workload_err(b: &[u8]) -> String {
        chain(&parse_user_elf(b).unwrap_err())
    }

    fn patched(elf: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
        let mut v = elf.to_vec();
        v[at..at + bytes.len()].copy_from_slice(bytes);
        v
    }

    #[test]
    fn rejects_what_it_cannot_run() {
        assert!(matches!(parse_user_elf(b"#!/bin/sh\n"), Err(LoadError::BadWorkload(ElfError::NoMagic))));
        let pie = patched(virtlab_workload::ELF, 16, &[3]);
        let e = workload_err(&pie);
        assert!(e.contains("position-independent") && e.contains("-no-pie"), "{e}");
        let arm = patched(virtlab_workload::ELF, 18, &[183]);
        let e = workload_err(&arm);
        assert!(e.contains("x86_64") && e.contains("AArch64"), "{e}");
        let truncated = &virtlab_workload::ELF[..200];
        assert!(parse_user_elf(truncated).is_err());
        let img = parse_user_elf(virtlab_workload::ELF).unwrap();
        let e = plan_user_memory(&img, 4 << 20).unwrap_err();
        assert!(matches!(e, LoadError::MemTooSmall { mem: 4, .. }), "{e}");
    }

    #[test]
    fn a_short_workload_with_the_magic_is_a_truncated_header() {
        let e = workload_err(&virtlab_workload::ELF[..40]);
        assert!(e.contains("truncated ELF header: 40 bytes") && !e.contains("no ELF magic"), "{e}");
        let e = workload_err(&virtlab_workload::ELF[..63]);
        assert!(e.contains("truncated ELF header: 63 bytes"), "{e}");
    }

    #[test]
    fn pn_xnum_program_headers_are_not_called_dynamically_linked() {
        let xnum = patched(virtlab_workload::ELF, 56, &0xffffu16.to_le_bytes());
        let e = workload_err(&xnum);
        assert!(e.contains("PN_XNUM") && !e.contains("dynamically linked"), "{e}");
        // Grown past the table's 0xffff * 56 bytes: still PN_XNUM, not the
        // program text read as program headers.
        let mut big = xnum.clone();
        big.resize(0xffff * 56 + 4096, 0x02);
        let e = workload_err(&big);
        assert!(e.contains("PN_XNUM") && !e.contains("dynamically linked"), "{e}");
        let none = patched(virtlab_workload::ELF, 56, &[0, 0]);
        assert!(workload_err(&none).contains("no program headers"));
    }

    #[test]
    fn builds_a_system_v_stack() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 8 << 20)]).unwrap();
        let argv = vec!["virtlab-workload".to_string(), "cpu".to_string(), "100".to_string()];
        let rsp = build_user_stack(&mem, 8 << 20, &argv).unwrap();
        assert_eq!(rsp % 16, 0);
        let word = |i: u64| mem.read_obj::<u64>(GuestAddress(rsp + 8 * i)).unwrap();
        assert_eq!(word(0), 3);
        for (i, a) in argv.iter().enumerate() {
            let mut buf = vec![0u8; a.len() + 1];
            mem.read_slice(&mut buf, GuestAddress(word(1 + i as u64))).unwrap();
            assert_eq!(&buf[..a.len()], a.as_bytes());
            assert_eq!(buf[a.len()], 0);
        }
        assert_eq!((word(4), word(5)), (0, 0), "argv NULL, envp NULL");
        assert_eq!((word(6), word(7), word(8)), (6, 4096, 0), "AT_PAGESZ, AT_NULL");
    }

    #[test]
    fn kernel_loading_checks_the_format() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 8 << 20)]).unwrap();
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        let e = load_kernel(&mem, &bz).unwrap_err().to_string();
        assert!(e.contains("bzImage"), "{e}");
        assert!(chain(&load_kernel(&mem, b"").unwrap_err()).contains("empty"));
        let k = load_kernel(&mem, virtlab_minikernel::ELF).unwrap();
        assert_eq!(k.entry, KERNEL_BASE);
        assert!(k.end > KERNEL_BASE && k.end < USER_BASE);
    }

    fn kernel_err(image: &[u8]) -> String {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 8 << 20)]).unwrap();
        chain(&load_kernel(&mem, image).unwrap_err())
    }

    #[test]
    fn kernels_of_another_class_machine_or_type_are_refused() {
        let mk = virtlab_minikernel::ELF;
        for (what, image, found) in [
            ("32-bit", patched(mk, 4, &[1]), "32-bit (ELFCLASS32)"),
            ("ARM", patched(mk, 18, &40u16.to_le_bytes()), "for ARM (e_machine 40)"),
            ("ET_DYN", patched(mk, 16, &3u16.to_le_bytes()), "type ET_DYN"),
        ] {
            let e = kernel_err(&image);
            assert!(e.contains("x86_64 ELF64 executable (ET_EXEC)") && e.contains(found), "{what}: {e}");
        }
    }

    #[test]
    fn short_and_pn_xnum_kernels_say_what_is_wrong() {
        let e = kernel_err(&virtlab_minikernel::ELF[..40]);
        assert!(e.contains("truncated ELF header: 40 bytes") && !e.contains("no ELF magic"), "{e}");
        let e = kernel_err(b"\x7fELF\x02\x01");
        assert!(e.contains("truncated ELF header: 6 bytes"), "{e}");
        let e = kernel_err(&patched(virtlab_minikernel::ELF, 56, &0xffffu16.to_le_bytes()));
        assert!(e.contains("PN_XNUM"), "{e}");
    }
}
