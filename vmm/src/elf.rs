//! The ELF header and program-header checks shared by every loader: the
//! workload ([`crate::loader::parse_user_elf`]), a minikernel-ABI kernel
//! ([`crate::loader::load_kernel`]) and a Linux vmlinux
//! ([`crate::linux::kernel`]). Each bad input gets its own error saying
//! what was found, so `--kernel some-arm-binary` is refused as "a 32-bit
//! ARM file" and not loaded as garbage (linux-loader itself checks only the
//! magic and the byte order).

/// The size of an ELF64 header.
pub const EHDR_SIZE: usize = 64;
/// The size of an ELF64 program header.
pub const PHDR_SIZE: usize = 56;
/// `e_phnum` when the real count does not fit: it is then kept in section
/// header 0's `sh_info` (PN_XNUM).
pub const PN_XNUM: u16 = 0xffff;
/// `e_machine` for x86_64.
pub const EM_X86_64: u16 = 62;
/// `e_type` of an executable linked at fixed addresses.
pub const ET_EXEC: u16 = 2;

const MAGIC: &[u8; 4] = b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;

/// What is wrong with an ELF file (or what it is instead of one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// Not a byte in it.
    #[error("the file is empty")]
    Empty,
    /// It does not start with `\x7fELF`.
    #[error("no ELF magic: it does not start with \\x7fELF")]
    NoMagic,
    /// It starts like an ELF file but ends inside the header.
    #[error("truncated ELF header: {0} bytes (an ELF64 header has 64)")]
    Truncated(usize),
    /// An ELF file of another kind than an x86_64 ELF64 little-endian
    /// executable.
    #[error(
        "found a {} {} ELF for {} (e_machine {machine}) of type {}",
        class_name(*.class),
        data_name(*.data),
        machine_name(*.machine),
        type_name(*.e_type)
    )]
    Kind {
        /// EI_CLASS: 1 for 32-bit, 2 for 64-bit.
        class: u8,
        /// EI_DATA: 1 for little-endian, 2 for big-endian.
        data: u8,
        /// e_machine.
        machine: u16,
        /// e_type.
        e_type: u16,
    },
    /// e_phnum is PN_XNUM.
    #[error("e_phnum is PN_XNUM (0xffff): the program header count is kept in section header 0, which virtlab does not read (it takes at most 65534 program headers)")]
    PhXnum,
    /// e_phnum is 0.
    #[error("no program headers (e_phnum is 0), so nothing to load")]
    NoProgramHeaders,
    /// e_phentsize is not an ELF64 program header's size.
    #[error("program headers of {0} bytes (e_phentsize); ELF64 program headers have 56")]
    PhEntSize(u16),
    /// The program header table does not lie inside the file.
    #[error("the program header table (offset {offset:#x}, {size} bytes) ends past the end of the file ({len} bytes): truncated?")]
    PhTablePastEnd {
        /// e_phoff.
        offset: u64,
        /// e_phnum * e_phentsize.
        size: u64,
        /// The file's size.
        len: u64,
    },
    /// A PT_LOAD segment's bytes are not all in the file.
    #[error(
        "a segment (file offset {offset:#x}, {filesz} bytes) lies past the end of the file ({len} bytes): truncated?"
    )]
    SegmentPastEnd {
        /// p_offset.
        offset: u64,
        /// p_filesz.
        filesz: u64,
        /// The file's size.
        len: u64,
    },
    /// A PT_LOAD segment with more bytes in the file than in memory.
    #[error("a segment at {vaddr:#x} has more bytes in the file ({filesz}) than in memory ({memsz})")]
    SegmentFileLargerThanMemory {
        /// p_vaddr.
        vaddr: u64,
        /// p_filesz.
        filesz: u64,
        /// p_memsz.
        memsz: u64,
    },
    /// A segment whose end does not fit in 64 bits.
    #[error("a segment's end address overflows (vaddr {vaddr:#x} + memsz {memsz:#x})")]
    SegmentOverflow {
        /// p_vaddr.
        vaddr: u64,
        /// p_memsz.
        memsz: u64,
    },
    /// A PT_DYNAMIC segment: the program is dynamically linked.
    #[error("it is dynamically linked (PT_DYNAMIC); build it static")]
    Dynamic,
    /// A PT_INTERP segment: the program needs a dynamic loader.
    #[error("it needs a dynamic loader (PT_INTERP); build it static")]
    Interp,
    /// No PT_LOAD segment.
    #[error("no loadable (PT_LOAD) segments")]
    NoLoadSegments,
    /// The entry point is in no PT_LOAD segment.
    #[error("its entry point {0:#x} is outside every loadable segment")]
    EntryOutside(u64),
}

fn class_name(class: u8) -> String {
    match class {
        1 => "32-bit (ELFCLASS32)".into(),
        2 => "64-bit (ELFCLASS64)".into(),
        n => format!("class-{n}"),
    }
}

fn data_name(data: u8) -> String {
    match data {
        1 => "little-endian".into(),
        2 => "big-endian".into(),
        n => format!("data-encoding-{n}"),
    }
}

fn machine_name(machine: u16) -> &'static str {
    match machine {
        0 => "no machine",
        2 => "SPARC",
        3 => "i386",
        8 => "MIPS",
        20 => "PowerPC",
        21 => "PowerPC64",
        22 => "S/390",
        40 => "ARM",
        43 => "SPARC V9",
        62 => "x86_64",
        183 => "AArch64",
        243 => "RISC-V",
        258 => "LoongArch",
        _ => "an unknown machine",
    }
}

fn type_name(e_type: u16) -> String {
    match e_type {
        0 => "ET_NONE (no file type)".into(),
        1 => "ET_REL (a relocatable object, not linked)".into(),
        2 => "ET_EXEC (an executable)".into(),
        3 => "ET_DYN (a shared library or position-independent executable)".into(),
        4 => "ET_CORE (a core dump)".into(),
        n => format!("{n:#x}"),
    }
}

/// The fields of an ELF64 header that virtlab uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfHeader {
    /// e_entry.
    pub entry: u64,
    /// e_phoff.
    pub phoff: u64,
    /// e_phentsize.
    pub phentsize: u16,
    /// e_phnum.
    pub phnum: u16,
}

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]])).unwrap_or(0)
}
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]])).unwrap_or(0)
}
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes).unwrap_or(0)
}

/// Whether `b` starts like an ELF file (the magic, or as much of it as
/// there are bytes).
pub fn has_magic(b: &[u8]) -> bool {
    !b.is_empty() && MAGIC.starts_with(&b[..b.len().min(4)])
}

impl ElfHeader {
    /// Reads the header at the start of `b` and checks that it is an
    /// x86_64 ELF64 little-endian executable (ET_EXEC) with a usable
    /// program header table; `file_len` is the whole file's size (`b` may
    /// be its first bytes only).
    pub fn parse_x86_64_exec(b: &[u8], file_len: u64) -> Result<ElfHeader, ElfError> {
        if b.is_empty() {
            return Err(ElfError::Empty);
        }
        if !has_magic(b) {
            return Err(ElfError::NoMagic);
        }
        // EI_CLASS, EI_DATA, e_type and e_machine sit at the same offsets
        // in ELF32 and ELF64: what the file is can be told from 20 bytes.
        if b.len() < 20 {
            return Err(ElfError::Truncated(b.len()));
        }
        let (class, data) = (b[4], b[5]);
        let field = |at: usize| {
            let v = [b[at], b[at + 1]];
            if data == 2 {
                u16::from_be_bytes(v)
            } else {
                u16::from_le_bytes(v)
            }
        };
        let (e_type, machine) = (field(16), field(18));
        if class != ELFCLASS64 || data != ELFDATA2LSB || machine != EM_X86_64 || e_type != ET_EXEC {
            return Err(ElfError::Kind { class, data, machine, e_type });
        }
        if b.len() < EHDR_SIZE {
            return Err(ElfError::Truncated(b.len()));
        }
        let h =
            ElfHeader { entry: u64_at(b, 24), phoff: u64_at(b, 32), phentsize: u16_at(b, 54), phnum: u16_at(b, 56) };
        h.program_headers(file_len)?;
        Ok(h)
    }

    /// The program header table's offset and size, checked: a count that
    /// virtlab can read (not PN_XNUM, not 0), ELF64-sized entries, and the
    /// whole table inside the file.
    pub fn program_headers(&self, file_len: u64) -> Result<(u64, u64), ElfError> {
        if self.phnum == PN_XNUM {
            return Err(ElfError::PhXnum);
        }
        if self.phnum == 0 {
            return Err(ElfError::NoProgramHeaders);
        }
        if usize::from(self.phentsize) != PHDR_SIZE {
            return Err(ElfError::PhEntSize(self.phentsize));
        }
        let size = u64::from(self.phnum) * u64::from(self.phentsize);
        match self.phoff.checked_add(size) {
            Some(end) if end <= file_len => Ok((self.phoff, size)),
            _ => Err(ElfError::PhTablePastEnd { offset: self.phoff, size, len: file_len }),
        }
    }
}

/// A minimal static x86_64 executable: the ELF header, one `PT_LOAD`
/// program header (read and execute) that maps the whole file at `base`,
/// then `code`, where execution starts (`base` + 120). What the host
/// probe's ring-0 loop kernel is made of, and the workloads of tests that
/// need a guest doing one precise thing.
pub fn tiny_executable(base: u64, code: &[u8]) -> Vec<u8> {
    let hdr = EHDR_SIZE + PHDR_SIZE;
    let mut f = Vec::with_capacity(hdr + code.len());
    f.extend(MAGIC);
    f.extend([ELFCLASS64, ELFDATA2LSB, 1, 0]); // EV_CURRENT, System V ABI
    f.extend([0u8; 8]);
    f.extend(ET_EXEC.to_le_bytes());
    f.extend(EM_X86_64.to_le_bytes());
    f.extend(1u32.to_le_bytes()); // e_version
    f.extend((base + hdr as u64).to_le_bytes()); // e_entry
    f.extend((EHDR_SIZE as u64).to_le_bytes()); // e_phoff
    f.extend(0u64.to_le_bytes()); // e_shoff
    f.extend(0u32.to_le_bytes()); // e_flags
    f.extend((EHDR_SIZE as u16).to_le_bytes());
    f.extend((PHDR_SIZE as u16).to_le_bytes());
    f.extend(1u16.to_le_bytes()); // e_phnum
    f.extend([0u8; 6]); // no section headers
    let size = (hdr + code.len()) as u64;
    f.extend(1u32.to_le_bytes()); // PT_LOAD
    f.extend(5u32.to_le_bytes()); // PF_R | PF_X
    f.extend(0u64.to_le_bytes()); // p_offset
    f.extend(base.to_le_bytes()); // p_vaddr
    f.extend(base.to_le_bytes()); // p_paddr
    f.extend(size.to_le_bytes()); // p_filesz
    f.extend(size.to_le_bytes()); // p_memsz
    f.extend(0x1000u64.to_le_bytes()); // p_align
    f.extend(code);
    f
}

/// An ELF file header for tests: 64-bit, little-endian, x86_64, ET_EXEC,
/// one program header right after it.
#[cfg(test)]
pub(crate) fn test_header() -> Vec<u8> {
    let mut h = vec![0u8; EHDR_SIZE];
    h[..4].copy_from_slice(MAGIC);
    h[4] = ELFCLASS64;
    h[5] = ELFDATA2LSB;
    h[6] = 1;
    h[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
    h[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
    h[32..40].copy_from_slice(&(EHDR_SIZE as u64).to_le_bytes());
    h[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
    h[56..58].copy_from_slice(&1u16.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tiny_executable_is_one_the_checks_accept() {
        let f = tiny_executable(0x40_0000, &[0xf4]);
        assert_eq!(f.len(), EHDR_SIZE + PHDR_SIZE + 1);
        let h = ElfHeader::parse_x86_64_exec(&f, f.len() as u64).unwrap();
        assert_eq!((h.entry, h.phnum), (0x40_0000 + 120, 1));
    }

    fn parse(b: &[u8]) -> Result<ElfHeader, ElfError> {
        ElfHeader::parse_x86_64_exec(b, b.len() as u64)
    }

    fn with_table() -> Vec<u8> {
        let mut b = test_header();
        b.resize(EHDR_SIZE + PHDR_SIZE, 0);
        b
    }

    #[test]
    fn a_short_file_with_the_magic_is_truncated_not_magicless() {
        let full = with_table();
        assert_eq!(parse(&full[..40]), Err(ElfError::Truncated(40)));
        assert_eq!(parse(&full[..4]), Err(ElfError::Truncated(4)));
        assert_eq!(parse(b"\x7fEL"), Err(ElfError::Truncated(3)));
        assert_eq!(parse(b""), Err(ElfError::Empty));
        assert_eq!(parse(b"#!/bin/sh\n"), Err(ElfError::NoMagic));
        assert_eq!(ElfError::Truncated(40).to_string(), "truncated ELF header: 40 bytes (an ELF64 header has 64)");
        assert!(parse(&full).is_ok());
    }

    #[test]
    fn other_classes_machines_and_types_say_what_they_are() {
        let mut elf32 = with_table();
        elf32[4] = 1;
        let e = parse(&elf32).unwrap_err();
        assert_eq!(e, ElfError::Kind { class: 1, data: 1, machine: 62, e_type: 2 });
        assert!(e.to_string().contains("32-bit (ELFCLASS32)"), "{e}");
        let mut arm = with_table();
        arm[18..20].copy_from_slice(&40u16.to_le_bytes());
        let e = parse(&arm).unwrap_err().to_string();
        assert!(e.contains("for ARM (e_machine 40)"), "{e}");
        let mut pie = with_table();
        pie[16] = 3;
        let e = parse(&pie).unwrap_err().to_string();
        assert!(e.contains("ET_DYN"), "{e}");
        // Big-endian: e_type and e_machine are read in the file's order.
        let mut be = with_table();
        be[5] = 2;
        be[16..18].copy_from_slice(&2u16.to_be_bytes());
        be[18..20].copy_from_slice(&22u16.to_be_bytes());
        let e = parse(&be).unwrap_err();
        assert_eq!(e, ElfError::Kind { class: 2, data: 2, machine: 22, e_type: 2 });
        assert!(e.to_string().contains("big-endian ELF for S/390"), "{e}");
        // A 32-bit ELF shorter than an ELF64 header is still told by its kind.
        assert!(matches!(parse(&elf32[..52]), Err(ElfError::Kind { class: 1, .. })));
    }

    #[test]
    fn program_header_counts_and_tables() {
        let mut xnum = with_table();
        xnum[56..58].copy_from_slice(&PN_XNUM.to_le_bytes());
        assert_eq!(parse(&xnum), Err(ElfError::PhXnum));
        let mut none = with_table();
        none[56..58].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(parse(&none), Err(ElfError::NoProgramHeaders));
        let mut small = with_table();
        small[54..56].copy_from_slice(&32u16.to_le_bytes());
        assert_eq!(parse(&small), Err(ElfError::PhEntSize(32)));
        let cut = &with_table()[..100];
        assert_eq!(parse(cut), Err(ElfError::PhTablePastEnd { offset: 64, size: 56, len: 100 }));
        let mut far = with_table();
        far[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(parse(&far), Err(ElfError::PhTablePastEnd { .. })));
    }
}
