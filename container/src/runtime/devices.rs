//! Which device nodes a container may use: one allowlist, enforced two
//! ways.
//!
//! A process with `CAP_MKNOD` (root without a user namespace keeps it, as
//! in Docker) can make a node for any device number: `mknod /kvm c 10 232`
//! is the host's KVM, `b 8 0` its first disk. Namespaces do not stop it
//! opening such a node; the **devices cgroup** does. virtlab applies
//! Docker's default list ([`ALLOWLIST`]): any node may be *created*, only
//! the harmless ones *opened*.
//!
//! - cgroup v1: the `devices` controller, written as text
//!   (`devices.deny` `a`, then one `devices.allow` line per rule).
//! - cgroup v2 has no such files: a `BPF_PROG_TYPE_CGROUP_DEVICE` program
//!   attached to the container's cgroup answers each open and mknod. It is
//!   generated here from the same rules, a few instructions per rule.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;

/// One rule: device type, major and minor (`None` = any), and what is
/// allowed: `r`ead, `w`rite, `m`knod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    /// `c` (character) or `b` (block).
    pub kind: char,
    /// Major number, or any.
    pub major: Option<u32>,
    /// Minor number, or any.
    pub minor: Option<u32>,
    /// A subset of `rwm`.
    pub access: &'static str,
}

const fn rule(kind: char, major: Option<u32>, minor: Option<u32>, access: &'static str) -> DeviceRule {
    DeviceRule { kind, major, minor, access }
}

/// Docker's default: create any node; open only null, zero, full, random,
/// urandom, tty, console, ptmx and the pseudo-terminals.
pub const ALLOWLIST: [DeviceRule; 11] = [
    rule('c', None, None, "m"),
    rule('b', None, None, "m"),
    rule('c', Some(1), Some(3), "rwm"),
    rule('c', Some(1), Some(5), "rwm"),
    rule('c', Some(1), Some(7), "rwm"),
    rule('c', Some(1), Some(8), "rwm"),
    rule('c', Some(1), Some(9), "rwm"),
    rule('c', Some(5), Some(0), "rwm"),
    rule('c', Some(5), Some(1), "rwm"),
    rule('c', Some(5), Some(2), "rwm"),
    rule('c', Some(136), None, "rwm"),
];

impl DeviceRule {
    /// The v1 `devices.allow` line, e.g. `c 1:3 rwm`, `c *:* m`.
    pub fn v1_line(&self) -> String {
        let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
        format!("{} {}:{} {}", self.kind, n(self.major), n(self.minor), self.access)
    }

    /// `BPF_DEVCG_DEV_*` of the kind.
    fn bpf_type(&self) -> i32 {
        if self.kind == 'b' {
            DEV_BLOCK
        } else {
            DEV_CHAR
        }
    }

    /// `BPF_DEVCG_ACC_*` bits of the access string.
    fn bpf_access(&self) -> i32 {
        self.access.chars().fold(0, |m, c| {
            m | match c {
                'm' => ACC_MKNOD,
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                _ => 0,
            }
        })
    }
}

// include/uapi/linux/bpf.h: struct bpf_cgroup_dev_ctx { u32 access_type
// (access << 16 | type); u32 major; u32 minor; }.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8, // dst in the low nibble, src in the high one
    off: i16,
    imm: i32,
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const RSH_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: dst | (src << 4), off, imm }
}

/// The allowlist as a cgroup device program: returns 1 (allow) when a
/// rule matches, else 0. Registers: r2 type, r3 access, r4 major, r5
/// minor, r6 scratch.
pub fn bpf_program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(MOV_X, 3, 2, 0, 0),
        insn(AND_K, 2, 0, 0, 0xffff),
        insn(RSH_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for r in rules {
        // Each test jumps to the next rule when it fails; the offsets are
        // filled in once the block's length is known.
        let mut block: Vec<Insn> = vec![insn(JNE_K, 2, 0, 0, r.bpf_type())];
        if let Some(major) = r.major {
            block.push(insn(JNE_K, 4, 0, 0, major as i32));
        }
        if let Some(minor) = r.minor {
            block.push(insn(JNE_K, 5, 0, 0, minor as i32));
        }
        // Every access asked for must be in the rule's.
        block.push(insn(MOV_X, 6, 3, 0, 0));
        block.push(insn(AND_K, 6, 0, 0, !r.bpf_access()));
        block.push(insn(JNE_K, 6, 0, 0, 0));
        block.push(insn(MOV_K, 0, 0, 0, 1));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JNE_K {
                ins.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(insn(MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The part of `union bpf_attr` that BPF_PROG_LOAD reads.
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// The part of `union bpf_attr` that BPF_PROG_ATTACH reads.
#[repr(C)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// Loads [`bpf_program`] of [`ALLOWLIST`] and attaches it to the cgroup v2
/// directory `dir` (alongside any program an ancestor has: all must allow).
/// The attachment lives as long as the cgroup.
pub fn attach_v2(dir: &Path) -> Result<(), Errno> {
    let program = bpf_program(&ALLOWLIST);
    let mut name = [0u8; 16];
    name[..14].copy_from_slice(b"virtlab_devcg\0");
    let load = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: c"Apache-2.0".as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
    };
    // SAFETY: bpf(2) BPF_PROG_LOAD reads `size_of::<ProgLoad>()` bytes of
    // `load`, whose pointers (instructions, license) outlive the call.
    let fd = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &load as *const ProgLoad, std::mem::size_of::<ProgLoad>())
    };
    let fd = Errno::result(fd)? as RawFd;
    // SAFETY: bpf(2) returned a new fd that nothing else owns.
    let prog = unsafe { OwnedFd::from_raw_fd(fd) };
    let cgroup = std::fs::File::open(dir).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    let attach = ProgAttach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    // SAFETY: bpf(2) BPF_PROG_ATTACH reads the live struct above.
    let r = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_ATTACH, &attach as *const ProgAttach, std::mem::size_of::<ProgAttach>())
    };
    Errno::result(r).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a program of the instructions `bpf_program` emits on one request.
    fn eval(p: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> u64 {
        let ctx = [((access as u32) << 16) | kind as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = u64::from(ctx[i.off as usize / 4]);
                }
                MOV_X => r[dst] = r[src],
                MOV_K => r[dst] = i.imm as i64 as u64,
                AND_K => r[dst] &= i.imm as i64 as u64,
                RSH_K => r[dst] >>= i.imm,
                JNE_K => {
                    if r[dst] != i.imm as i64 as u64 {
                        pc += i.off as usize;
                    }
                }
                EXIT => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn the_program_allows_exactly_the_list() {
        let p = bpf_program(&ALLOWLIST);
        let (rw, rwm) = (ACC_READ | ACC_WRITE, ACC_READ | ACC_WRITE | ACC_MKNOD);
        // Harmless nodes open; any node may be created.
        assert_eq!(eval(&p, DEV_CHAR, rw, 1, 3), 1, "/dev/null");
        assert_eq!(eval(&p, DEV_CHAR, rwm, 136, 7), 1, "/dev/pts/7");
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 5, 2), 1, "/dev/ptmx");
        assert_eq!(eval(&p, DEV_CHAR, ACC_MKNOD, 10, 232), 1, "mknod /kvm");
        assert_eq!(eval(&p, DEV_BLOCK, ACC_MKNOD, 8, 0), 1, "mknod /sda");
        // The host's devices do not open.
        assert_eq!(eval(&p, DEV_CHAR, rw, 10, 232), 0, "/dev/kvm");
        assert_eq!(eval(&p, DEV_CHAR, ACC_WRITE, 1, 11), 0, "/dev/kmsg");
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 1, 1), 0, "/dev/mem");
        assert_eq!(eval(&p, DEV_BLOCK, ACC_READ, 8, 0), 0, "/dev/sda");
        assert_eq!(eval(&p, DEV_BLOCK, ACC_READ, 1, 3), 0, "a block device numbered like /dev/null");
    }

    #[test]
    fn v1_lines() {
        let lines: Vec<String> = ALLOWLIST.iter().map(DeviceRule::v1_line).collect();
        assert_eq!(lines[0], "c *:* m");
        assert_eq!(lines[2], "c 1:3 rwm");
        assert_eq!(lines[10], "c 136:* rwm");
    }
}
