//! Your first KVM guest: twelve bytes of 16-bit code, run with nothing but
//! the KVM ioctls, printing every VM exit as it happens.
//!
//! ```sh
//! cargo run -q -p virtlab-vmm --example first_guest          # 2 + 2, then hlt
//! cargo run -q -p virtlab-vmm --example first_guest -- no-hlt  # the same code without its hlt
//! ```
//!
//! The guide's chapter 2 (`guides/src/02-first-kvm-guest.md`) walks through
//! this file; the steps follow the kvm-ioctls crate documentation and LWN's
//! "Using the KVM API".

use std::error::Error;
use std::time::Instant;

use kvm_bindings::{kvm_regs, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuExit};

// ANCHOR: code
/// The guest program: add two numbers, print the digit and a newline on
/// the serial port, stop. 16-bit real mode, as an x86 CPU starts.
#[rustfmt::skip]
const GUEST_CODE: [u8; 12] = [
    0xba, 0xf8, 0x03, // mov dx, 0x3f8   (COM1, the first serial port)
    0x00, 0xd8,       // add al, bl      (al = 2 + 2: the VMM sets al and bl)
    0x04, b'0',       // add al, '0'     (the number as an ASCII digit)
    0xee,             // out dx, al      (-> VM exit: port I/O)
    0xb0, b'\n',      // mov al, '\n'
    0xee,             // out dx, al      (-> VM exit: port I/O)
    0xf4,             // hlt             (-> VM exit: halt)
];
// ANCHOR_END: code

/// Where the code sits in guest-physical memory, and how much RAM the
/// guest gets (one page).
const GUEST_ADDR: u64 = 0x1000;
const MEM_SIZE: usize = 0x1000;

/// After this many exits the VMM has no answer for, it gives up.
const MAX_UNHANDLED: u32 = 3;

fn main() -> Result<(), Box<dyn Error>> {
    let no_hlt = std::env::args().nth(1).as_deref() == Some("no-hlt");
    let mut code = GUEST_CODE.to_vec();
    if no_hlt {
        code.pop();
    }

    // ANCHOR: setup
    // 1. Open /dev/kvm and create an empty VM.
    let kvm = Kvm::new()?;
    let vm = kvm.create_vm()?;

    // 2. Guest RAM is ordinary host memory: map one anonymous page...
    // SAFETY: a fresh anonymous private mapping with no address hint; it
    // aliases nothing, and the result is checked against MAP_FAILED below.
    let host_addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            MEM_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if host_addr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: the mapping is MEM_SIZE bytes, writable, and no other
    // reference to it exists yet; the code (at most 12 bytes) fits in it.
    let ram = unsafe { std::slice::from_raw_parts_mut(host_addr.cast::<u8>(), MEM_SIZE) };
    ram[..code.len()].copy_from_slice(&code);

    // ...and tell KVM it is the guest's physical memory at GUEST_ADDR.
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: GUEST_ADDR,
        memory_size: MEM_SIZE as u64,
        userspace_addr: host_addr as u64,
        flags: 0,
    };
    // SAFETY: the region is a valid mapping of MEM_SIZE bytes that stays
    // mapped until the process exits (it is never unmapped), so the guest
    // can never reach freed host memory (KVM API: KVM_SET_USER_MEMORY_REGION).
    unsafe { vm.set_user_memory_region(region)? };

    // 3. One virtual CPU, in real mode, starting at our code.
    let mut vcpu = vm.create_vcpu(0)?;
    let mut sregs = vcpu.get_sregs()?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs)?;
    let regs = kvm_regs {
        rip: GUEST_ADDR,
        rax: 2,
        rbx: 2,
        rflags: 0x2, // bit 1 of RFLAGS is always set
        ..Default::default()
    };
    vcpu.set_regs(&regs)?;
    // ANCHOR_END: setup

    // ANCHOR: run
    // 4. Run it: KVM_RUN returns at each VM exit, and we handle it.
    let mut exits = 0;
    let mut unhandled = 0;
    loop {
        let start = Instant::now();
        let exit = vcpu.run()?;
        let took = start.elapsed();
        exits += 1;
        print!("exit {exits}: after {:.1} us in the guest: ", took.as_secs_f64() * 1e6);
        match exit {
            VcpuExit::IoOut(port, data) => {
                let byte = data[0];
                println!("the guest wrote {byte:#04x} {:?} to port {port:#x}", char::from(byte));
            }
            VcpuExit::Hlt => {
                println!("the guest executed hlt: it is done");
                break;
            }
            other => {
                println!("{other:?}: nothing here handles that");
                unhandled += 1;
                if unhandled == MAX_UNHANDLED {
                    println!("giving up after {MAX_UNHANDLED} exits the VMM cannot handle");
                    std::process::exit(1);
                }
            }
        }
    }
    // ANCHOR_END: run
    println!("{exits} VM exits in all");
    Ok(())
}
