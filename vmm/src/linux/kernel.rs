//! Recognising and loading a Linux kernel image: an ELF `vmlinux` (entered
//! through its PVH note when it has one: no decompressor, which is slow
//! when guest kernel code is emulated) or a `bzImage` (64-bit entry, the
//! compressed kernel decompresses itself).

use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use vm_memory::{GuestAddress, GuestMemoryMmap, ReadVolatile};

use super::boot::{layout, zp};
use crate::elf::{self, ElfError, ElfHeader};
use crate::input::{self, FileRole, InputError, MAX_KERNEL_BYTES};

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
    #[error(
        "cannot use the ELF kernel: the Linux loader needs an x86_64 ELF64 executable (ET_EXEC) vmlinux, or a bzImage"
    )]
    BadElf(#[source] ElfError),
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

/// How many bytes of an image [`Image::head`] holds: every header virtlab
/// reads (ELF header, bzImage setup header) lies in them.
pub const HEAD: usize = 64 << 10;

/// A kernel image being loaded: its first bytes and size up front, the rest
/// read straight into guest memory. A vmlinux is tens of MiB with its
/// symbols; reading it whole into the VMM's heap first would count in the
/// VMM's own memory.
#[derive(Debug)]
pub struct Image<R> {
    /// The first [`HEAD`] bytes (fewer for a shorter file).
    pub head: Vec<u8>,
    /// The image's size in bytes.
    pub len: u64,
    reader: R,
}

impl Image<File> {
    /// Opens a kernel file (a regular file of at most
    /// [`MAX_KERNEL_BYTES`]) and reads its first bytes.
    pub fn open(path: &Path) -> Result<Image<File>, InputError> {
        let (mut file, len) = input::open(path, FileRole::Kernel, MAX_KERNEL_BYTES)?;
        let mut head = Vec::with_capacity(HEAD);
        (&mut file).take(HEAD as u64).read_to_end(&mut head).map_err(|source| InputError::Read {
            role: FileRole::Kernel,
            path: path.into(),
            source,
        })?;
        Ok(Image { head, len, reader: file })
    }
}

impl<'a> Image<Cursor<&'a [u8]>> {
    /// An image already in memory.
    pub fn from_bytes(bytes: &'a [u8]) -> Image<Cursor<&'a [u8]>> {
        Image { head: bytes[..bytes.len().min(HEAD)].to_vec(), len: bytes.len() as u64, reader: Cursor::new(bytes) }
    }
}

impl<R: Read + Seek> Image<R> {
    /// `len` bytes at `offset`, from the head when they are in it.
    fn bytes_at(&mut self, offset: u64, len: usize) -> Option<Vec<u8>> {
        let end = offset.checked_add(len as u64)?;
        if end <= self.head.len() as u64 {
            return Some(self.head[offset as usize..end as usize].to_vec());
        }
        if end > self.len {
            return None;
        }
        let mut buf = vec![0u8; len];
        self.reader.seek(SeekFrom::Start(offset)).ok()?;
        self.reader.read_exact(&mut buf).ok()?;
        Some(buf)
    }
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
    // A short file that starts like an ELF file is one, truncated: the
    // ELF checks say so.
    if elf::has_magic(image) {
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

/// Whether the file at `path` is a Linux kernel, as [`is_linux`] says,
/// reading it in pieces rather than whole. Only a regular file of at most
/// [`MAX_KERNEL_BYTES`] is read.
pub fn is_linux_file(path: &Path) -> Result<bool, InputError> {
    const BANNER: &[u8] = b"Linux version ";
    let (file, _) = input::open(path, FileRole::Kernel, MAX_KERNEL_BYTES)?;
    let read_err = |source| InputError::Read { role: FileRole::Kernel, path: path.into(), source };
    let mut file = file.take(MAX_KERNEL_BYTES);
    let mut buf = vec![0u8; HEAD];
    let mut have = 0;
    // The first piece decides the format.
    while have < buf.len() {
        match file.read(&mut buf[have..]).map_err(read_err)? {
            0 => break,
            n => have += n,
        }
    }
    match detect(&buf[..have], "") {
        Ok(Format::BzImage) => return Ok(true),
        Ok(Format::Elf) => {}
        Err(_) => return Ok(false),
    }
    // Scan for the banner, keeping the last few bytes of each piece so a
    // banner across two pieces is still found.
    let keep = BANNER.len() - 1;
    loop {
        if buf[..have].windows(BANNER.len()).any(|w| w == BANNER) {
            return Ok(true);
        }
        let tail = have.saturating_sub(keep);
        buf.copy_within(tail..have, 0);
        have -= tail;
        let n = file.read(&mut buf[have..]).map_err(read_err)?;
        if n == 0 {
            return Ok(false);
        }
        have += n;
    }
}

/// Checks an ELF kernel and returns the end of its highest PT_LOAD segment
/// (physical addresses).
fn elf_end<R: Read + Seek>(image: &mut Image<R>) -> Result<u64, KernelError> {
    let file_len = image.len;
    let header = ElfHeader::parse_x86_64_exec(&image.head, file_len).map_err(KernelError::BadElf)?;
    let (phoff, size) = header.program_headers(file_len).map_err(KernelError::BadElf)?;
    // In the file, as just checked: only a read error can fail this.
    let table = image
        .bytes_at(phoff, size as usize)
        .ok_or_else(|| KernelError::Load(format!("cannot read the program headers at {phoff:#x} ({size} bytes)")))?;
    let mut end = 0u64;
    for ph in table.chunks_exact(elf::PHDR_SIZE) {
        if u32_at(ph, 0) != 1 {
            continue;
        }
        let (offset, paddr, filesz, memsz) = (u64_at(ph, 8), u64_at(ph, 24), u64_at(ph, 32), u64_at(ph, 40));
        if offset.saturating_add(filesz) > file_len {
            return Err(KernelError::BadElf(ElfError::SegmentPastEnd { offset, filesz, len: file_len }));
        }
        end = end.max(paddr.saturating_add(memsz));
    }
    if end == 0 {
        return Err(KernelError::BadElf(ElfError::NoLoadSegments));
    }
    Ok(end)
}

/// Room kept above the kernel for the initrd and boot data, at least.
const SLACK: u64 = 4 << 20;

fn check_fits(end: u64, mem_size: u64) -> Result<(), KernelError> {
    if end.saturating_add(SLACK) > mem_size {
        return Err(KernelError::DoesNotFit {
            end,
            need_mib: end.saturating_add(SLACK).div_ceil(1 << 20),
            mem_mib: mem_size >> 20,
        });
    }
    Ok(())
}

/// Checks an ELF kernel's headers and that it fits in `mem_size` without
/// loading it; returns the end of its highest segment.
pub fn check_elf<R: Read + Seek>(image: &mut Image<R>, mem_size: u64) -> Result<u64, KernelError> {
    let end = elf_end(image)?;
    check_fits(end, mem_size)?;
    Ok(end)
}

/// Checks a bzImage's header (`b`, its first bytes) and size (`len`)
/// without loading it.
pub fn check_bzimage(b: &[u8], len: u64, mem_size: u64) -> Result<u64, KernelError> {
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
    if len < want {
        return Err(KernelError::Truncated { want, have: len });
    }
    let init_size = u64::from(u32_at(b, zp::INIT_SIZE)).max(syssize);
    let end = layout::HIMEM + init_size;
    check_fits(end, mem_size)?;
    Ok(end)
}

/// Loads `image` into guest memory.
pub fn load<R: Read + ReadVolatile + Seek>(
    mem: &GuestMemoryMmap,
    image: &mut Image<R>,
    mem_size: u64,
    name: &str,
) -> Result<LoadedKernel, KernelError> {
    match detect(&image.head, name)? {
        Format::Elf => {
            let end = check_elf(image, mem_size)?;
            image.reader.rewind().map_err(|e| KernelError::Load(e.to_string()))?;
            let r = Elf::load(mem, None, &mut image.reader, Some(GuestAddress(layout::HIMEM)))
                .map_err(|e| KernelError::Load(e.to_string()))?;
            let image = &image.head;
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
            let end = check_bzimage(&image.head, image.len, mem_size)?;
            image.reader.rewind().map_err(|e| KernelError::Load(e.to_string()))?;
            let r = BzImage::load(mem, Some(GuestAddress(layout::HIMEM)), &mut image.reader, None)
                .map_err(|e| KernelError::Load(e.to_string()))?;
            let image = &image.head;
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
        assert_eq!(check_bzimage(&ok, ok.len() as u64, 64 << 20).unwrap(), 0x10_0000 + 0x1000);
        let e = check_bzimage(&ok, 3000, 64 << 20).unwrap_err();
        assert!(matches!(e, KernelError::Truncated { want: 6656, have: 3000 }), "{e}");
        let mut big = ok.clone();
        big[zp::INIT_SIZE..zp::INIT_SIZE + 4].copy_from_slice(&(100u32 << 20).to_le_bytes());
        let e = check_bzimage(&big, big.len() as u64, 64 << 20).unwrap_err().to_string();
        assert!(e.contains("raise --mem") && e.contains("105 MiB"), "{e}");
        let mut old = ok;
        old[zp::XLOADFLAGS] = 0;
        assert!(matches!(check_bzimage(&old, 6656, 64 << 20), Err(KernelError::No64BitEntry { .. })));
    }

    #[test]
    fn loads_the_header_of_a_bzimage() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        let img = fake_bzimage(4, 0x100, 2560 + 0x1000);
        let k = load(&mem, &mut Image::from_bytes(&img), 16 << 20, "bz").unwrap();
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
        assert!(load(&mem, &mut Image::from_bytes(virtlab_minikernel::ELF), 16 << 20, "mk").is_ok());
        let e = load(&mem, &mut Image::from_bytes(virtlab_minikernel::ELF), 4 << 20, "mk").unwrap_err();
        assert!(matches!(e, KernelError::DoesNotFit { mem_mib: 4, .. }), "{e}");
    }

    /// The error and its causes, as the `virtlab` binary prints them.
    fn load_elf_err(b: &[u8]) -> String {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        let e = load(&mem, &mut Image::from_bytes(b), 16 << 20, "k").unwrap_err();
        let mut s = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            s += &format!(": {c}");
            cause = c.source();
        }
        s
    }

    fn patched(at: usize, bytes: &[u8]) -> Vec<u8> {
        let mut v = virtlab_minikernel::ELF.to_vec();
        v[at..at + bytes.len()].copy_from_slice(bytes);
        v
    }

    #[test]
    fn elfs_of_another_class_machine_or_type_are_refused() {
        for (what, image, found) in [
            ("32-bit", patched(4, &[1]), "32-bit (ELFCLASS32)"),
            ("ARM", patched(18, &40u16.to_le_bytes()), "for ARM (e_machine 40)"),
            ("ET_DYN", patched(16, &3u16.to_le_bytes()), "type ET_DYN"),
        ] {
            let e = load_elf_err(&image);
            assert!(e.contains("x86_64 ELF64 executable (ET_EXEC)") && e.contains(found), "{what}: {e}");
        }
    }

    #[test]
    fn short_and_pn_xnum_elfs_say_what_is_wrong() {
        let short = &virtlab_minikernel::ELF[..40];
        assert_eq!(detect(short, "k").unwrap(), Format::Elf, "a short ELF is an ELF, truncated");
        let e = load_elf_err(short);
        assert!(e.contains("truncated ELF header: 40 bytes") && !e.contains("no ELF magic"), "{e}");
        let e = load_elf_err(&patched(56, &0xffffu16.to_le_bytes()));
        assert!(e.contains("PN_XNUM"), "{e}");
    }

    #[test]
    fn files_are_recognised_piece_by_piece() {
        let dir = std::env::temp_dir().join(format!("virtlab-kernel-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // The banner straddles the first piece's end.
        let mut elf = virtlab_minikernel::ELF.to_vec();
        elf.resize(HEAD - 5, 0);
        elf.extend_from_slice(b"Linux version 6.1.0");
        let cases: [(&str, &[u8], bool); 3] = [
            ("vmlinux", &elf, true),
            ("minikernel", virtlab_minikernel::ELF, false),
            (
                "text",
                b"#!/bin/sh
",
                false,
            ),
        ];
        for (name, bytes, linux) in cases {
            let p = dir.join(name);
            std::fs::write(&p, bytes).unwrap();
            assert_eq!(is_linux_file(&p).unwrap(), linux, "{name}");
            assert_eq!(is_linux(bytes), linux, "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_loads_like_the_same_bytes() {
        let dir = std::env::temp_dir().join(format!("virtlab-kernel-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("mk");
        std::fs::write(&p, virtlab_minikernel::ELF).unwrap();
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        let a = load(&mem, &mut Image::open(&p).unwrap(), 16 << 20, "mk").unwrap();
        let b = load(&mem, &mut Image::from_bytes(virtlab_minikernel::ELF), 16 << 20, "mk").unwrap();
        assert_eq!((a.entry, a.end), (b.entry, b.end));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
