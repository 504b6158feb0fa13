//! Recognising and loading a Linux kernel image: an ELF `vmlinux` (entered
//! through its PVH note when it has one: no decompressor, which is slow
//! when guest kernel code is emulated) or a `bzImage` (64-bit entry, the
//! compressed kernel decompresses itself).

use std::io::Cursor;

use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::boot::{layout, zp};

/// How the vCPU enters the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// PVH: 32-bit protected mode, paging off, EBX = `hvm_start_info`.
    Pvh(u64),
    /// The 64-bit boot protocol: long mode, identity paging, RSI = zero page.
    Long64(u64),
}

/// What kind of image it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An ELF vmlinux.
    Elf,
    /// A bzImage.
    BzImage,
}

impl Format {
    /// "vmlinux (ELF)" or "bzImage".
    pub fn name(self) -> &'static str {
        match self {
            Format::Elf => "vmlinux (ELF)",
            Format::BzImage => "bzImage",
        }
    }
}

/// A kernel in guest memory.
#[derive(Debug, Clone)]
pub struct LoadedKernel {
    /// Its format.
    pub format: Format,
    /// Where to start it.
    pub entry: Entry,
    /// First byte after the kernel (and the room it needs to unpack).
    pub end: u64,
    /// The longest command line it takes, with the NUL.
    pub cmdline_max: usize,
    /// The highest address an initrd may use.
    pub initrd_addr_max: u64,
    /// A bzImage's setup header (from offset 0x1f1), for the zero page.
    pub setup_header: Option<Vec<u8>>,
}

/// Errors recognising or loading a kernel.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Neither ELF nor bzImage.
    #[error(
        "{0} is not a Linux kernel: it is neither an ELF vmlinux nor a bzImage (no ELF magic, no \"HdrS\" at 0x202)"
    )]
    NotAKernel(String),
    /// A bzImage shorter than its header says.
    #[error("the bzImage is truncated: its header announces {want} bytes, the file has {have}")]
    Truncated {
        /// Bytes the header announces.
        want: u64,
        /// Bytes present.
        have: u64,
    },
    /// A bzImage without the 64-bit entry point.
    #[error("the bzImage has no 64-bit entry point (boot protocol {version:#x}, xloadflags {xloadflags:#x}); virtlab needs protocol 2.12+ with XLF_KERNEL_64")]
    No64BitEntry {
        /// Boot protocol version.
        version: u16,
        /// xloadflags.
        xloadflags: u16,
    },
    /// An ELF that is not an x86_64 kernel.
    #[error("the ELF file is not a 64-bit x86 kernel: {0}")]
    BadElf(&'static str),
    /// The kernel does not fit in guest memory.
    #[error(
        "the kernel needs guest memory up to {need_mib} MiB ({end:#x}), but --mem gives {mem_mib} MiB; raise --mem"
    )]
    DoesNotFit {
        /// End address the kernel needs.
        end: u64,
        /// That, in MiB, rounded up, plus room for the initrd and boot data.
        need_mib: u64,
        /// Guest memory in MiB.
        mem_mib: u64,
    },
    /// linux-loader failed.
    #[error("cannot load the kernel: {0}")]
    Load(String),
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]])).unwrap_or(0)
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]])).unwrap_or(0)
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes).unwrap_or(0)
}

/// The format of `image`, or why it is not a kernel. `name` is for errors.
pub fn detect(image: &[u8], name: &str) -> Result<Format, KernelError> {
    if image.len() >= 64 && &image[..4] == b"\x7fELF" {
        return Ok(Format::Elf);
    }
    if image.len() >= zp::HEADER + 4 && &image[zp::HEADER..zp::HEADER + 4] == b"HdrS" {
        return Ok(Format::BzImage);
    }
    Err(KernelError::NotAKernel(name.to_string()))
}

/// Whether `image` is a Linux kernel: a bzImage, or an ELF carrying the
/// kernel's "Linux version" banner.
pub fn is_linux(image: &[u8]) -> bool {
    match detect(image, "") {
        Ok(Format::BzImage) => true,
        Ok(Format::Elf) => image.windows(14).any(|w| w == b"Linux version "),
        Err(_) => false,
    }
}

/// Checks an ELF kernel and returns the end of its highest PT_LOAD segment
/// (physical addresses).
fn elf_end(b: &[u8]) -> Result<u64, KernelError> {
    if b[4] != 2 || b[5] != 1 {
        return Err(KernelError::BadElf("not a 64-bit little-endian ELF"));
    }
    if u16_at(b, 18) != 62 {
        return Err(KernelError::BadElf("not for x86_64"));
    }
    let phoff = u64_at(b, 32) as usize;
    let phentsize = u16_at(b, 54) as usize;
    let phnum = u16_at(b, 56) as usize;
    if phentsize < 56 || phnum == 0 {
        return Err(KernelError::BadElf("no program headers"));
    }
    let mut end = 0u64;
    for i in 0..phnum {
        let at = phoff.saturating_add(i * phentsize);
        let ph =
            b.get(at..at + 56).ok_or(KernelError::BadElf("program headers past the end of the file (truncated?)"))?;
        if u32_at(ph, 0) != 1 {
            continue;
        }
        let (offset, paddr, filesz, memsz) = (u64_at(ph, 8), u64_at(ph, 24), u64_at(ph, 32), u64_at(ph, 40));
        if offset.saturating_add(filesz) > b.len() as u64 {
            return Err(KernelError::BadElf("a segment lies past the end of the file (truncated?)"));
        }
        end = end.max(paddr.saturating_add(memsz));
    }
    if end == 0 {
        return Err(KernelError::BadElf("no loadable segments"));
    }
    Ok(end)
}

/// Room kept above the kernel for the initrd and boot data, at least.
const SLACK: u64 = 4 << 20;

fn check_fits(end: u64, mem_size: u64) -> Result<(), KernelError> {
    if end.saturating_add(SLACK) > mem_size {
        return Err(KernelError::DoesNotFit {
            end,
            need_mib: (end + SLACK).div_ceil(1 << 20),
            mem_mib: mem_size >> 20,
        });
    }
    Ok(())
}

/// Checks a bzImage's header and size without loading it.
pub fn check_bzimage(b: &[u8], mem_size: u64) -> Result<u64, KernelError> {
    let version = u16_at(b, zp::VERSION);
    let xloadflags = u16_at(b, zp::XLOADFLAGS);
    if version < 0x020c || xloadflags & 1 == 0 {
        return Err(KernelError::No64BitEntry { version, xloadflags });
    }
    let setup_sects = match b.get(zp::HDR).copied().unwrap_or(0) {
        0 => 4,
        n => u64::from(n),
    };
    let syssize = u64::from(u32_at(b, 0x1f4)) * 16;
    let want = (setup_sects + 1) * 512 + syssize;
    if (b.len() as u64) < want {
        return Err(KernelError::Truncated { want, have: b.len() as u64 });
    }
    let init_size = u64::from(u32_at(b, zp::INIT_SIZE)).max(syssize);
    let end = layout::HIMEM + init_size;
    check_fits(end, mem_size)?;
    Ok(end)
}

/// Loads `image` into guest memory.
pub fn load(mem: &GuestMemoryMmap, image: &[u8], mem_size: u64, name: &str) -> Result<LoadedKernel, KernelError> {
    match detect(image, name)? {
        Format::Elf => {
            let end = elf_end(image)?;
            check_fits(end, mem_size)?;
            let r = Elf::load(mem, None, &mut Cursor::new(image), Some(GuestAddress(layout::HIMEM)))
                .map_err(|e| KernelError::Load(e.to_string()))?;
            let entry = match r.pvh_boot_cap {
                PvhBootCapability::PvhEntryPresent(a) => Entry::Pvh(a.0),
                _ => Entry::Long64(u64_at(image, 24) & 0x7fff_ffff),
            };
            Ok(LoadedKernel {
                format: Format::Elf,
                entry,
                end: end.max(r.kernel_end),
                cmdline_max: layout::CMDLINE_MAX,
                initrd_addr_max: u64::from(u32::MAX),
                setup_header: None,
            })
        }
        Format::BzImage => {
            let end = check_bzimage(image, mem_size)?;
            let r = BzImage::load(mem, Some(GuestAddress(layout::HIMEM)), &mut Cursor::new(image), None)
                .map_err(|e| KernelError::Load(e.to_string()))?;
            let hdr_len = 0x202 + usize::from(image.get(zp::JUMP + 1).copied().unwrap_or(0x6a)) - zp::HDR;
            let header = image.get(zp::HDR..zp::HDR + hdr_len).unwrap_or(&image[zp::HDR..]).to_vec();
            let cmdline_size = match u32_at(image, zp::CMDLINE_SIZE) {
                0 => 255,
                n => n as usize,
            };
            let addr_max = match u32_at(image, zp::INITRD_ADDR_MAX) {
                0 => 0x37ff_ffff,
                n => u64::from(n),
            };
            Ok(LoadedKernel {
                format: Format::BzImage,
                entry: Entry::Long64(r.kernel_load.0 + 0x200),
                end: end.max(r.kernel_end),
                cmdline_max: cmdline_size + 1,
                initrd_addr_max: addr_max,
                setup_header: Some(header),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_bzimage(sects: u8, syssize_paras: u32, file_len: usize) -> Vec<u8> {
        let mut b = vec![0u8; file_len];
        b[zp::HDR] = sects;
        b[0x1f4..0x1f8].copy_from_slice(&syssize_paras.to_le_bytes());
        b[zp::HEADER..zp::HEADER + 4].copy_from_slice(b"HdrS");
        b[zp::VERSION..zp::VERSION + 2].copy_from_slice(&0x020fu16.to_le_bytes());
        b[zp::LOADFLAGS] = 1;
        b[zp::XLOADFLAGS..zp::XLOADFLAGS + 2].copy_from_slice(&1u16.to_le_bytes());
        b[zp::JUMP + 1] = 0x6a;
        b[zp::CMDLINE_SIZE..zp::CMDLINE_SIZE + 4].copy_from_slice(&2047u32.to_le_bytes());
        b
    }

    #[test]
    fn recognises_formats_and_rejects_the_rest() {
        assert_eq!(detect(virtlab_minikernel::ELF, "k").unwrap(), Format::Elf);
        assert_eq!(detect(&fake_bzimage(4, 1, 4096), "k").unwrap(), Format::BzImage);
        let e = detect(b"#!/bin/sh\necho hi\n", "/etc/motd").unwrap_err().to_string();
        assert!(e.contains("/etc/motd") && e.contains("not a Linux kernel"), "{e}");
    }

    #[test]
    fn tells_linux_from_the_minikernel() {
        assert!(!is_linux(virtlab_minikernel::ELF));
        assert!(is_linux(&fake_bzimage(4, 1, 4096)));
        let mut elf = virtlab_minikernel::ELF.to_vec();
        elf.extend_from_slice(b"Linux version 6.1.0 (gcc)");
        assert!(is_linux(&elf));
        assert!(!is_linux(b"plain text"));
    }

    #[test]
    fn truncated_and_oversized_bzimages() {
        // 4 setup sectors + boot sector = 2560 bytes, then 0x100 paragraphs.
        let ok = fake_bzimage(4, 0x100, 2560 + 0x1000);
        assert_eq!(check_bzimage(&ok, 64 << 20).unwrap(), 0x10_0000 + 0x1000);
        let cut = &ok[..3000];
        let e = check_bzimage(cut, 64 << 20).unwrap_err();
        assert!(matches!(e, KernelError::Truncated { want: 6656, have: 3000 }), "{e}");
        let mut big = ok.clone();
        big[zp::INIT_SIZE..zp::INIT_SIZE + 4].copy_from_slice(&(100u32 << 20).to_le_bytes());
        let e = check_bzimage(&big, 64 << 20).unwrap_err().to_string();
        assert!(e.contains("raise --mem") && e.contains("105 MiB"), "{e}");
        let mut old = ok;
        old[zp::XLOADFLAGS] = 0;
        assert!(matches!(check_bzimage(&old, 64 << 20), Err(KernelError::No64BitEntry { .. })));
    }

    #[test]
    fn loads_the_header_of_a_bzimage() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        let img = fake_bzimage(4, 0x100, 2560 + 0x1000);
        let k = load(&mem, &img, 16 << 20, "bz").unwrap();
        assert_eq!(k.entry, Entry::Long64(0x10_0200));
        assert_eq!(k.cmdline_max, 2048);
        let h = k.setup_header.unwrap();
        assert_eq!(h.len(), 0x202 + 0x6a - 0x1f1);
        assert_eq!(&h[0x202 - 0x1f1..0x206 - 0x1f1], b"HdrS");
    }

    #[test]
    fn elf_checks() {
        let mut arm = virtlab_minikernel::ELF.to_vec();
        arm[18] = 183;
        assert!(load_elf_err(&arm).contains("x86_64"));
        let cut = &virtlab_minikernel::ELF[..100];
        assert!(load_elf_err(cut).contains("truncated"));
        // The minikernel is an ELF at 1 MiB: it fits 16 MiB, not 4.
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        assert!(load(&mem, virtlab_minikernel::ELF, 16 << 20, "mk").is_ok());
        let e = load(&mem, virtlab_minikernel::ELF, 4 << 20, "mk").unwrap_err();
        assert!(matches!(e, KernelError::DoesNotFit { mem_mib: 4, .. }), "{e}");
    }

    fn load_elf_err(b: &[u8]) -> String {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        load(&mem, b, 16 << 20, "k").unwrap_err().to_string()
    }
}
