//! Booting without the virtlab VMM: the PVH boot protocol, as QEMU
//! (`-M microvm -kernel minikernel -initrd workload -append "cpu 1000"`),
//! Firecracker or Cloud Hypervisor use it.
//!
//! Here nobody has prepared the guest, so the kernel does, in ring 0, what
//! the virtlab VMM otherwise does on the host: find RAM in the memory map,
//! load the workload ELF handed over as module 0, build the user stack from
//! the command line, and measure the TSC against the PIT for
//! clock_gettime. It costs kernel-mode instructions, which is exactly the
//! work the VMM spares the guest.

use core::ptr::{addr_of_mut, read_unaligned, write_volatile};

use crate::abi::{self, BootInfo, BOOT_INFO_ADDR, BOOT_INFO_MAGIC, USER_BASE};
use crate::{exit, inb, kernel_line, outb, rdtsc, Part};

const PVH_MAGIC: u32 = 0x336e_c578;
const RAM: u32 = 1;
const STACK_SIZE: u64 = 1 << 20;
const PAGE: u64 = 4096;
const MAX_ARGS: usize = 32;

/// The fields of `struct hvm_start_info` (Xen's
/// public/arch-x86/hvm/start_info.h) this kernel uses, with their offsets
/// noted where they are read. Module list entries are (paddr, size,
/// cmdline, reserved) and memory map entries (addr, size, type, reserved).
struct StartInfo {
    magic: u32,
    version: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
}

fn fail(msg: &[u8]) -> ! {
    kernel_line(&[Part::Str(b"virtlab.kernel error: "), Part::Str(msg)]);
    exit(125)
}

/// Prepares the boot-info page, the workload and its stack; returns to the
/// common 64-bit entry.
pub extern "C" fn prepare(start_info: u64) {
    // The PVH loader passes the physical (= virtual: identity map) address
    // of its start_info in EBX, which the entry stub passed here. Fields
    // are read one by one: a struct copy could be compiled to SSE moves,
    // which some hosts' instruction emulators cannot do in kernel mode.
    let si = StartInfo {
        magic: rd(start_info),
        version: rd(start_info + 4),
        nr_modules: rd(start_info + 12),
        modlist_paddr: rd(start_info + 16),
        cmdline_paddr: rd(start_info + 24),
        memmap_paddr: rd(start_info + 40),
        memmap_entries: rd(start_info + 48),
    };
    if si.magic != PVH_MAGIC {
        fail(b"not started through the PVH boot protocol (bad start_info magic)");
    }
    let mem_end = ram_end(&si);
    if mem_end < USER_BASE + 2 * STACK_SIZE {
        fail(b"no usable RAM above 2 MiB in the memory map (give the VM more memory)");
    }
    if si.nr_modules == 0 {
        fail(b"no workload: pass the workload ELF as the initrd (QEMU: -initrd FILE)");
    }
    // nr_modules >= 1, so the module list holds at least one entry.
    let (module_addr, module_size): (u64, u64) = (rd(si.modlist_paddr), rd(si.modlist_paddr + 8));
    let stack_top = mem_end & !(PAGE - 1);
    let (entry, image_end) = load_elf(module_addr, module_size, stack_top - STACK_SIZE);
    let rsp = build_stack(stack_top, si.cmdline_paddr);
    let (tsc_khz, guessed) = match calibrate_tsc_khz() {
        0 => (1_000_000, true),
        k => (k, false),
    };

    let bi = BOOT_INFO_ADDR as *mut BootInfo;
    // SAFETY: the boot-info page is ordinary RAM at a fixed address that no
    // loader data lives in once start_info, the module and the command line
    // have been read. It is zeroed with one `rep stosb` and filled in with
    // volatile stores, so no SSE instruction is involved (see `rd`).
    unsafe {
        core::arch::asm!("rep stosb", inout("rcx") core::mem::size_of::<BootInfo>() => _,
            inout("rdi") bi => _, in("al") 0u8, options(nostack, preserves_flags));
        let flags = abi::flags::PVH | if guessed { abi::flags::CLOCK_GUESSED } else { 0 };
        write_volatile(addr_of_mut!((*bi).magic), BOOT_INFO_MAGIC);
        write_volatile(addr_of_mut!((*bi).flags), flags);
        write_volatile(addr_of_mut!((*bi).user_entry), entry);
        write_volatile(addr_of_mut!((*bi).user_rsp), rsp);
        write_volatile(addr_of_mut!((*bi).heap_next), image_end);
        write_volatile(addr_of_mut!((*bi).heap_end), stack_top - STACK_SIZE);
        write_volatile(addr_of_mut!((*bi).user_end), stack_top);
        write_volatile(addr_of_mut!((*bi).console), abi::console::UART);
        write_volatile(addr_of_mut!((*bi).tsc_base), rdtsc());
        write_volatile(addr_of_mut!((*bi).tsc_mult), (1_000_000u64 << 32) / tsc_khz);
    }
    kernel_line(&[
        Part::Str(b"virtlab.kernel pvh boot: ram_mib="),
        Part::Dec(mem_end >> 20),
        Part::Str(b" workload_bytes="),
        Part::Dec(module_size),
        Part::Str(b" tsc_khz="),
        Part::Dec(tsc_khz),
        Part::Str(if guessed { b" (guessed: no PIT)" } else { b"" }),
    ]);
}

/// The end of the RAM region that holds USER_BASE, below 4 GiB.
fn ram_end(si: &StartInfo) -> u64 {
    if si.version < 1 || si.memmap_paddr == 0 {
        fail(b"the PVH loader passed no memory map (start_info version 0)");
    }
    let mut end = 0;
    for i in 0..si.memmap_entries as u64 {
        // memmap_entries entries of 24 bytes at memmap_paddr.
        let at = si.memmap_paddr + i * 24;
        let (addr, size, kind): (u64, u64, u32) = (rd(at), rd(at + 8), rd(at + 16));
        let e_end = addr.saturating_add(size).min(abi::MAX_GUEST_MEM);
        if kind == RAM && addr <= USER_BASE && e_end > end {
            end = e_end;
        }
    }
    end
}

/// One scalar read of loader memory. Kernel code here avoids SSE entirely:
/// some hosts (nested KVM) emulate guest kernel code with an instruction
/// emulator that cannot do SSE, so struct copies and merged stores, which
/// the compiler likes to turn into 16-byte moves, are written out by hand.
fn rd<T>(addr: u64) -> T {
    // SAFETY: callers read loader data at addresses the PVH protocol gives,
    // or inside the module after checking its bounds.
    unsafe { read_unaligned(addr as *const T) }
}

/// Loads a static x86_64 ELF's PT_LOAD segments to their addresses;
/// returns the entry point and the first page after the image.
fn load_elf(base: u64, size: u64, limit: u64) -> (u64, u64) {
    if size < 64 || rd::<u32>(base) != 0x464c_457f || rd::<u8>(base + 4) != 2 {
        fail(b"the workload module is not a 64-bit ELF file");
    }
    if rd::<u16>(base + 16) != 2 || rd::<u16>(base + 18) != 62 {
        fail(b"the workload is not a static (ET_EXEC) x86_64 executable");
    }
    let entry = rd::<u64>(base + 24);
    let phoff = rd::<u64>(base + 32);
    let phentsize = u64::from(rd::<u16>(base + 54));
    let phnum = u64::from(rd::<u16>(base + 56));
    if phentsize < 56 || phoff.saturating_add(phnum * phentsize) > size {
        fail(b"the workload's program headers are past the end of the file");
    }
    let mut end = 0;
    for i in 0..phnum {
        let ph = base + phoff + i * phentsize;
        if rd::<u32>(ph) != 1 {
            continue;
        }
        let (offset, vaddr) = (rd::<u64>(ph + 8), rd::<u64>(ph + 16));
        let (filesz, memsz) = (rd::<u64>(ph + 32), rd::<u64>(ph + 40));
        if offset.saturating_add(filesz) > size || filesz > memsz {
            fail(b"a workload segment lies past the end of the file");
        }
        if vaddr < USER_BASE || vaddr.saturating_add(memsz) > limit {
            fail(b"a workload segment lies outside user memory");
        }
        // SAFETY: source inside the module, destination inside user RAM,
        // both checked above; the module sits at the top of RAM, above the
        // program's link addresses, so they do not overlap.
        unsafe {
            core::arch::asm!("rep movsb", inout("rcx") filesz => _, inout("rsi") base + offset => _,
                inout("rdi") vaddr => _, options(nostack, preserves_flags));
            core::arch::asm!("rep stosb", inout("rcx") memsz - filesz => _, inout("rdi") vaddr + filesz => _,
                in("al") 0u8, options(nostack, preserves_flags));
        }
        end = end.max(vaddr + memsz);
    }
    if end == 0 {
        fail(b"the workload has no loadable segments");
    }
    (entry, end.div_ceil(PAGE) * PAGE)
}

/// The System V initial stack: argc, argv ("virtlab-workload" and the
/// words of the command line at `cmdline`), NULL, an empty environment,
/// AT_PAGESZ, AT_NULL. Two passes over the command line (count, then copy),
/// so no buffer is needed.
fn build_stack(top: u64, cmdline: u64) -> u64 {
    const ARGV0: &[u8] = b"virtlab-workload";
    let byte = |i: u64| -> u8 {
        if cmdline == 0 {
            0
        } else {
            rd(cmdline + i)
        }
    };
    // Pass 1: how many words, how many bytes.
    let (mut argc, mut bytes, mut i, mut in_word) = (1u64, ARGV0.len() as u64 + 1, 0u64, false);
    while byte(i) != 0 && i < 4096 && argc < MAX_ARGS as u64 {
        let space = byte(i) == b' ';
        if !space {
            bytes += 1;
            if !in_word {
                argc += 1;
            }
        } else if in_word {
            bytes += 1; // the NUL ending the word
        }
        in_word = !space;
        i += 1;
    }
    if in_word {
        bytes += 1;
    }
    let strings = top - bytes;
    let rsp = (strings - 8 * (1 + argc + 6)) & !15;
    // Volatile stores: the compiler may not merge them into SSE stores.
    let put = |slot: u64, v: u64| {
        // SAFETY: inside the stack area [top - 1 MiB, top), user RAM.
        unsafe { write_volatile((rsp + 8 * slot) as *mut u64, v) };
    };
    let poke = |at: u64, c: u8| {
        // SAFETY: as above, in the string area below `top`.
        unsafe { write_volatile(at as *mut u8, c) };
    };
    // Pass 2: copy the strings up from `strings`, their addresses into argv.
    put(0, argc);
    let mut at = strings;
    put(1, at);
    for &c in ARGV0 {
        poke(at, c);
        at += 1;
    }
    poke(at, 0);
    at += 1;
    let (mut n, mut i, mut in_word) = (1u64, 0u64, false);
    while byte(i) != 0 && i < 4096 {
        let c = byte(i);
        if c != b' ' {
            if !in_word {
                if n == argc {
                    break;
                }
                put(1 + n, at);
                n += 1;
            }
            poke(at, c);
            at += 1;
        } else if in_word {
            poke(at, 0);
            at += 1;
        }
        in_word = c != b' ';
        i += 1;
    }
    if in_word {
        poke(at, 0);
    }
    let aux = 1 + argc;
    put(aux, 0); // argv's NULL
    put(aux + 1, 0); // envp: empty
    put(aux + 2, 6); // AT_PAGESZ
    put(aux + 3, PAGE);
    put(aux + 4, 0); // AT_NULL
    put(aux + 5, 0);
    rsp
}

/// Measures the TSC frequency against the 8254 PIT (1.193182 MHz): about
/// 10 ms of PIT ticks. Returns 0 when there is no PIT to count against.
fn calibrate_tsc_khz() -> u64 {
    const PIT_HZ: u64 = 1_193_182;
    const TICKS: u64 = PIT_HZ / 100;
    // Channel 0, lobyte/hibyte, mode 2 (rate generator), count 65536.
    outb(0x43, 0x34);
    outb(0x40, 0);
    outb(0x40, 0);
    let read = || {
        outb(0x43, 0x00); // latch channel 0
        let lo = inb(0x40);
        let hi = inb(0x40);
        u16::from(lo) | (u16::from(hi) << 8)
    };
    let mut last = read();
    let t0 = rdtsc();
    let mut ticks = 0u64;
    let mut reads = 0u32;
    while ticks < TICKS {
        let now = read();
        ticks += u64::from(last.wrapping_sub(now));
        last = now;
        reads += 1;
        if reads > 200_000 && ticks == 0 {
            return 0; // the counter never moves: no PIT
        }
    }
    let cycles = rdtsc().wrapping_sub(t0);
    cycles * PIT_HZ / (ticks * 1000)
}
