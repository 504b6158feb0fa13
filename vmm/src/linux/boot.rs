//! The Linux x86 boot protocol, host side: where things go in guest
//! memory, the E820 memory map, the "zero page" (`struct boot_params`) for
//! the 64-bit entry, and the `hvm_start_info` for the PVH entry. Pure
//! functions producing bytes, so every field is unit-tested.
//!
//! References: the kernel's Documentation/x86/boot.rst and zero-page.rst,
//! and Xen's PVH boot ABI (docs/misc/pvh.pandoc).

/// Guest-physical layout of a Linux boot.
pub mod layout {
    /// The boot GDT (null, null, code at 0x10, data at 0x18, TSS at 0x20).
    pub const GDT: u64 = 0x500;
    /// `hvm_start_info` (PVH entry).
    pub const PVH_INFO: u64 = 0x6000;
    /// The PVH memory map, after the start info.
    pub const PVH_MEMMAP: u64 = 0x6040;
    /// The PVH module list (the initrd).
    pub const PVH_MODLIST: u64 = 0x6200;
    /// The zero page (`struct boot_params`, 64-bit entry).
    pub const ZERO_PAGE: u64 = 0x7000;
    /// The kernel command line.
    pub const CMDLINE: u64 = 0x2_0000;
    /// Command-line limit when the kernel does not state one (x86's
    /// COMMAND_LINE_SIZE, with the NUL).
    pub const CMDLINE_MAX: usize = 2048;
    /// Start of the EBDA: the top of conventional memory in the E820 map.
    pub const EBDA: u64 = 0x9_fc00;
    /// 1 MiB: where protected-mode kernels are loaded.
    pub const HIMEM: u64 = 0x10_0000;
    /// Largest guest RAM for a Linux guest: below the 3 GiB mark, clear of
    /// the IOAPIC and local APIC windows at 0xfec00000/0xfee00000.
    pub const MAX_MEM: u64 = 3 << 30;
}

/// E820 / PVH memory types.
pub const E820_RAM: u32 = 1;
/// Reserved memory.
pub const E820_RESERVED: u32 = 2;

/// One E820 entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// [`E820_RAM`] or [`E820_RESERVED`].
    pub kind: u32,
}

/// The memory map of a guest with `mem_size` bytes of RAM at 0: low
/// memory up to the EBDA, the legacy BIOS/VGA hole reserved, then RAM from
/// 1 MiB up.
pub fn e820_map(mem_size: u64) -> Vec<E820Entry> {
    vec![
        E820Entry { addr: 0, size: layout::EBDA, kind: E820_RAM },
        E820Entry { addr: layout::EBDA, size: layout::HIMEM - layout::EBDA, kind: E820_RESERVED },
        E820Entry { addr: layout::HIMEM, size: mem_size.saturating_sub(layout::HIMEM), kind: E820_RAM },
    ]
}

/// Errors placing boot data.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BootError {
    /// The initrd does not fit between the kernel and the end of RAM.
    #[error("the initrd ({size} bytes) does not fit in guest memory above the kernel (which ends at {kernel_end:#x}) and below {limit:#x}; raise --mem")]
    InitrdDoesNotFit {
        /// Its size.
        size: u64,
        /// First byte after the kernel.
        kernel_end: u64,
        /// The highest usable address + 1.
        limit: u64,
    },
    /// The command line is longer than the kernel accepts.
    #[error("the kernel command line is {len} bytes; this kernel accepts at most {max}")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The limit, without the NUL.
        max: usize,
    },
}

/// Where the initrd goes: page-aligned, as high as possible below the end
/// of RAM and the kernel's `initrd_addr_max`, above the kernel.
pub fn place_initrd(mem_size: u64, kernel_end: u64, size: u64, addr_max: u64) -> Result<u64, BootError> {
    let limit = mem_size.min(addr_max.saturating_add(1));
    let fail = BootError::InitrdDoesNotFit { size, kernel_end, limit };
    let at = limit.checked_sub(size).ok_or(fail.clone())? & !0xfff;
    if at < kernel_end.div_ceil(0x1000).saturating_mul(0x1000) {
        return Err(fail);
    }
    Ok(at)
}

/// Checks the command line against the kernel's limit (`max` bytes
/// including the NUL).
pub fn check_cmdline(cmdline: &str, max: usize) -> Result<(), BootError> {
    if cmdline.len() + 1 > max {
        return Err(BootError::CmdlineTooLong { len: cmdline.len(), max: max - 1 });
    }
    Ok(())
}

fn put(page: &mut [u8], at: usize, bytes: &[u8]) {
    page[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Offsets in `struct boot_params` (zero-page.rst) and its `setup_header`
/// (boot.rst).
pub mod zp {
    /// `e820_entries` (u8).
    pub const E820_ENTRIES: usize = 0x1e8;
    /// The setup header starts here (`setup_sects`).
    pub const HDR: usize = 0x1f1;
    /// `boot_flag` (u16, 0xaa55).
    pub const BOOT_FLAG: usize = 0x1fe;
    /// The jump instruction; byte 0x201 is the header's length past 0x202.
    pub const JUMP: usize = 0x200;
    /// `header` ("HdrS").
    pub const HEADER: usize = 0x202;
    /// `version` (u16).
    pub const VERSION: usize = 0x206;
    /// `type_of_loader` (u8).
    pub const TYPE_OF_LOADER: usize = 0x210;
    /// `loadflags` (u8).
    pub const LOADFLAGS: usize = 0x211;
    /// `ramdisk_image` (u32).
    pub const RAMDISK_IMAGE: usize = 0x218;
    /// `ramdisk_size` (u32).
    pub const RAMDISK_SIZE: usize = 0x21c;
    /// `heap_end_ptr` (u16).
    pub const HEAP_END_PTR: usize = 0x224;
    /// `cmd_line_ptr` (u32).
    pub const CMD_LINE_PTR: usize = 0x228;
    /// `initrd_addr_max` (u32).
    pub const INITRD_ADDR_MAX: usize = 0x22c;
    /// `kernel_alignment` (u32).
    pub const KERNEL_ALIGNMENT: usize = 0x230;
    /// `xloadflags` (u16).
    pub const XLOADFLAGS: usize = 0x236;
    /// `cmdline_size` (u32).
    pub const CMDLINE_SIZE: usize = 0x238;
    /// `init_size` (u32).
    pub const INIT_SIZE: usize = 0x260;
    /// `e820_table`: 128 entries of 20 bytes.
    pub const E820_TABLE: usize = 0x2d0;
    /// Entries the zero page holds.
    pub const E820_MAX: usize = 128;
}

/// `type_of_loader` 0xff: "undefined" (no assigned boot loader ID).
pub const LOADER_UNDEFINED: u8 = 0xff;
const LOADFLAGS_LOADED_HIGH: u8 = 0x01;
const LOADFLAGS_CAN_USE_HEAP: u8 = 0x80;

/// What goes into the zero page.
#[derive(Debug, Clone)]
pub struct ZeroPageInput<'a> {
    /// The setup header bytes of a bzImage (from offset 0x1f1), or None for
    /// an ELF vmlinux, which gets a minimal synthetic header.
    pub setup_header: Option<&'a [u8]>,
    /// Guest address and length of the command line.
    pub cmdline: (u64, usize),
    /// Guest address and size of the initrd.
    pub initrd: Option<(u64, u64)>,
    /// The memory map.
    pub e820: &'a [E820Entry],
}

/// Builds the 4 KiB zero page.
pub fn zero_page(input: &ZeroPageInput<'_>) -> Vec<u8> {
    let mut p = vec![0u8; 4096];
    match input.setup_header {
        Some(h) => {
            let n = h.len().min(4096 - zp::HDR);
            put(&mut p, zp::HDR, &h[..n]);
        }
        None => {
            put(&mut p, zp::BOOT_FLAG, &0xaa55u16.to_le_bytes());
            put(&mut p, zp::HEADER, b"HdrS");
            put(&mut p, zp::VERSION, &0x020fu16.to_le_bytes());
            put(&mut p, zp::KERNEL_ALIGNMENT, &0x100_0000u32.to_le_bytes());
            p[zp::LOADFLAGS] = LOADFLAGS_LOADED_HIGH;
        }
    }
    p[zp::TYPE_OF_LOADER] = LOADER_UNDEFINED;
    p[zp::LOADFLAGS] |= LOADFLAGS_CAN_USE_HEAP;
    put(&mut p, zp::HEAP_END_PTR, &0xfe00u16.to_le_bytes());
    put(&mut p, zp::CMD_LINE_PTR, &(input.cmdline.0 as u32).to_le_bytes());
    put(&mut p, zp::CMDLINE_SIZE, &(input.cmdline.1 as u32).to_le_bytes());
    if let Some((addr, size)) = input.initrd {
        put(&mut p, zp::RAMDISK_IMAGE, &(addr as u32).to_le_bytes());
        put(&mut p, zp::RAMDISK_SIZE, &(size as u32).to_le_bytes());
    }
    let n = input.e820.len().min(zp::E820_MAX);
    p[zp::E820_ENTRIES] = n as u8;
    for (i, e) in input.e820.iter().take(n).enumerate() {
        let at = zp::E820_TABLE + 20 * i;
        put(&mut p, at, &e.addr.to_le_bytes());
        put(&mut p, at + 8, &e.size.to_le_bytes());
        put(&mut p, at + 16, &e.kind.to_le_bytes());
    }
    p
}

/// `hvm_start_info.magic`.
pub const PVH_MAGIC: u32 = 0x336e_c578;

/// The PVH boot structures: the `hvm_start_info` (56 bytes, version 1), the
/// memory map (24 bytes an entry) and the module list (32 bytes an entry,
/// the initrd), to write at [`layout::PVH_INFO`], [`layout::PVH_MEMMAP`]
/// and [`layout::PVH_MODLIST`].
pub fn pvh_start_info(cmdline: u64, initrd: Option<(u64, u64)>, e820: &[E820Entry]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut info = vec![0u8; 56];
    put(&mut info, 0, &PVH_MAGIC.to_le_bytes());
    put(&mut info, 4, &1u32.to_le_bytes()); // version
    put(&mut info, 8, &0u32.to_le_bytes()); // flags
    put(&mut info, 12, &u32::from(initrd.is_some()).to_le_bytes()); // nr_modules
    put(&mut info, 16, &(if initrd.is_some() { layout::PVH_MODLIST } else { 0 }).to_le_bytes());
    put(&mut info, 24, &cmdline.to_le_bytes());
    put(&mut info, 32, &0u64.to_le_bytes()); // rsdp_paddr: no ACPI
    put(&mut info, 40, &layout::PVH_MEMMAP.to_le_bytes());
    put(&mut info, 48, &(e820.len() as u32).to_le_bytes());
    let mut memmap = Vec::with_capacity(24 * e820.len());
    for e in e820 {
        memmap.extend_from_slice(&e.addr.to_le_bytes());
        memmap.extend_from_slice(&e.size.to_le_bytes());
        memmap.extend_from_slice(&e.kind.to_le_bytes());
        memmap.extend_from_slice(&0u32.to_le_bytes());
    }
    let mut modlist = Vec::new();
    if let Some((addr, size)) = initrd {
        modlist.extend_from_slice(&addr.to_le_bytes());
        modlist.extend_from_slice(&size.to_le_bytes());
        modlist.extend_from_slice(&0u64.to_le_bytes()); // cmdline_paddr
        modlist.extend_from_slice(&0u64.to_le_bytes()); // reserved
    }
    (info, memmap, modlist)
}

/// The boot GDT: null, null, code (0x10: 64-bit when `long`, else 32-bit),
/// data (0x18), a 32-bit TSS (0x20). Selectors 0x10 and 0x18 are what the
/// 64-bit boot protocol names __BOOT_CS and __BOOT_DS.
pub fn boot_gdt(long: bool) -> [u64; 5] {
    let code = if long { 0x00af_9b00_0000_ffff } else { 0x00cf_9b00_0000_ffff };
    [0, 0, code, 0x00cf_9300_0000_ffff, 0x0000_8b00_0000_0067]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(p: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(p[at..at + 4].try_into().unwrap())
    }
    fn u64_at(p: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(p[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn e820_of_128_mib() {
        let m = e820_map(128 << 20);
        assert_eq!(
            m,
            vec![
                E820Entry { addr: 0, size: 0x9_fc00, kind: 1 },
                E820Entry { addr: 0x9_fc00, size: 0x6_0400, kind: 2 },
                E820Entry { addr: 0x10_0000, size: 0x7f0_0000, kind: 1 },
            ]
        );
    }

    #[test]
    fn zero_page_fields() {
        let e820 = e820_map(64 << 20);
        // A bzImage's header: setup_sects 27, boot_flag, jump, HdrS, 2.15,
        // loadflags LOADED_HIGH, initrd_addr_max, cmdline_size 2047.
        let mut hdr = vec![0u8; 0x70];
        hdr[0] = 27;
        hdr[0x1fe - 0x1f1..0x200 - 0x1f1].copy_from_slice(&0xaa55u16.to_le_bytes());
        hdr[0x202 - 0x1f1..0x206 - 0x1f1].copy_from_slice(b"HdrS");
        hdr[0x206 - 0x1f1..0x208 - 0x1f1].copy_from_slice(&0x020fu16.to_le_bytes());
        hdr[0x211 - 0x1f1] = 1;
        let p = zero_page(&ZeroPageInput {
            setup_header: Some(&hdr),
            cmdline: (layout::CMDLINE, 2048),
            initrd: Some((0x3f0_0000, 0x1234)),
            e820: &e820,
        });
        assert_eq!(p.len(), 4096);
        assert_eq!(p[0x1f1], 27, "setup_sects copied");
        assert_eq!(&p[0x202..0x206], b"HdrS");
        assert_eq!(p[0x210], 0xff, "type_of_loader");
        assert_eq!(p[0x211], 0x81, "LOADED_HIGH | CAN_USE_HEAP");
        assert_eq!(u32_at(&p, 0x228), 0x2_0000, "cmd_line_ptr");
        assert_eq!(u32_at(&p, 0x218), 0x3f0_0000, "ramdisk_image");
        assert_eq!(u32_at(&p, 0x21c), 0x1234, "ramdisk_size");
        assert_eq!(p[0x1e8], 3, "e820_entries");
        assert_eq!(u64_at(&p, 0x2d0), 0);
        assert_eq!(u64_at(&p, 0x2d8), 0x9_fc00);
        assert_eq!(u32_at(&p, 0x2e0), 1);
        assert_eq!(u64_at(&p, 0x2d0 + 40), 0x10_0000, "third entry");
        assert_eq!(u64_at(&p, 0x2d0 + 48), (64 << 20) - 0x10_0000);
    }

    #[test]
    fn zero_page_for_a_vmlinux_gets_a_synthetic_header() {
        let p = zero_page(&ZeroPageInput { setup_header: None, cmdline: (0x2_0000, 10), initrd: None, e820: &[] });
        assert_eq!(u32_at(&p, 0x1fe) & 0xffff, 0xaa55);
        assert_eq!(&p[0x202..0x206], b"HdrS");
        assert_eq!(u32_at(&p, 0x230), 0x100_0000);
        assert_eq!(u32_at(&p, 0x218), 0, "no initrd");
    }

    #[test]
    fn pvh_start_info_fields() {
        let e820 = e820_map(128 << 20);
        let (info, memmap, modlist) = pvh_start_info(0x2_0000, Some((0x700_0000, 4096)), &e820);
        assert_eq!(info.len(), 56);
        assert_eq!(u32_at(&info, 0), 0x336e_c578);
        assert_eq!(u32_at(&info, 4), 1);
        assert_eq!(u32_at(&info, 12), 1, "one module");
        assert_eq!(u64_at(&info, 16), layout::PVH_MODLIST);
        assert_eq!(u64_at(&info, 24), 0x2_0000);
        assert_eq!(u64_at(&info, 40), layout::PVH_MEMMAP);
        assert_eq!(u32_at(&info, 48), 3);
        assert_eq!(memmap.len(), 72);
        assert_eq!(u64_at(&memmap, 48), 0x10_0000);
        assert_eq!(u32_at(&memmap, 64), 1);
        assert_eq!((u64_at(&modlist, 0), u64_at(&modlist, 8)), (0x700_0000, 4096));
        assert!(layout::PVH_MEMMAP + memmap.len() as u64 <= layout::PVH_MODLIST);
        let (info, _, modlist) = pvh_start_info(0x2_0000, None, &e820);
        assert_eq!((u32_at(&info, 12), u64_at(&info, 16)), (0, 0));
        assert!(modlist.is_empty());
    }

    #[test]
    fn initrd_goes_high_and_must_fit() {
        assert_eq!(place_initrd(64 << 20, 0x200_0000, 0x1800, u64::from(u32::MAX)), Ok((64 << 20) - 0x2000));
        assert_eq!(place_initrd(1 << 30, 0x200_0000, 0x1000, 0x37ff_ffff), Ok(0x3800_0000 - 0x1000));
        let e = place_initrd(32 << 20, 0x1f0_0000, 2 << 20, u64::MAX).unwrap_err();
        assert!(e.to_string().contains("raise --mem"), "{e}");
        assert!(place_initrd(1 << 20, 0, 2 << 20, u64::MAX).is_err());
    }

    #[test]
    fn command_line_limit() {
        assert!(check_cmdline(&"x".repeat(2047), 2048).is_ok());
        let e = check_cmdline(&"x".repeat(2048), 2048).unwrap_err();
        assert_eq!(e, BootError::CmdlineTooLong { len: 2048, max: 2047 });
    }

    #[test]
    fn gdt_descriptors() {
        let g = boot_gdt(true);
        assert_eq!(g[2] >> 53 & 1, 1, "L bit: 64-bit code");
        assert_eq!(boot_gdt(false)[2] >> 54 & 1, 1, "D bit: 32-bit code");
        assert_eq!(g[3], 0x00cf_9300_0000_ffff);
    }
}
