//! Builds virtlab's freestanding programs from their build scripts.
//!
//! Three programs run without an operating system's help: the workload (a
//! static Linux program with no libc), the /init of Linux guests (likewise)
//! and the minikernel (a kernel). Each is one Rust file compiled by the
//! host's own `rustc` into a static x86_64 ELF: no extra target, no rust-src,
//! no prebuilt blob. This crate is the one place that knows how; the crates
//! that embed a program call it from their `build.rs`:
//!
//! ```no_run
//! // build.rs
//! virtlab_freestanding::Program::linux("virtlab_workload", "program/main.rs", "virtlab-workload").build();
//! ```
//!
//! The programs share their runtime, the few pieces a freestanding program
//! must bring itself, as source files under `rt/` that each includes as a
//! module (`#[path = ".../freestanding/rt/mem.rs"] mod mem;`):
//!
//! - `rt/mem.rs`: `memcpy`, `memmove`, `memset`, `memcmp`, `bcmp`, `strlen`
//!   (the compiler emits calls to them) and `rust_eh_personality`;
//! - `rt/linux.rs`: the `_start` entry of a Linux process, raw system calls,
//!   `write` and `exit`;
//! - `rt/text.rs`: the process's arguments, a decimal parser and a line
//!   buffer for output (the workload and the escape lab's attacker);
//! - `rt/port.rs`: `in`/`out` on the VMM's ports from user mode, after
//!   `ioperm` (the guest's init and the workload's `warm` mode).
//!
//! They are compiled into each program, not linked as a library: a system
//! call wrapper is inlined into the workload's measured loops exactly as a
//! copy of its own would be.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What kind of program, which decides how it is compiled and linked.
#[derive(Debug, Clone)]
enum Kind {
    /// A static, position-dependent Linux executable at the classic x86_64
    /// base address 0x400000: the same file runs under Linux and is loaded
    /// at its link address by the minikernel's VMM (which keeps 0-2 MiB for
    /// itself).
    Linux,
    /// A kernel linked by its own linker script.
    Kernel { script: PathBuf },
}

/// One freestanding program to build into `$OUT_DIR`.
#[derive(Debug, Clone)]
pub struct Program {
    crate_name: String,
    source: PathBuf,
    output: String,
    kind: Kind,
    watch: Vec<PathBuf>,
}

impl Program {
    /// A static Linux program with no libc, from `source` (relative to the
    /// calling crate's manifest directory) into `$OUT_DIR/output`.
    pub fn linux(crate_name: &str, source: &str, output: &str) -> Program {
        Program::new(crate_name, source, output, Kind::Linux)
    }

    /// A kernel from `source`, linked with the linker script `script` (both
    /// relative to the calling crate's manifest directory).
    pub fn kernel(crate_name: &str, source: &str, script: &str, output: &str) -> Program {
        let script = manifest_dir().join(script);
        Program::new(crate_name, source, output, Kind::Kernel { script })
    }

    fn new(crate_name: &str, source: &str, output: &str, kind: Kind) -> Program {
        let source = manifest_dir().join(source);
        // The program's own directory and the shared runtime: a change to
        // either rebuilds it.
        let mut watch: Vec<PathBuf> = source.parent().map(Path::to_path_buf).into_iter().collect();
        watch.push(runtime_dir());
        Program { crate_name: crate_name.into(), source, output: output.into(), kind, watch }
    }

    /// Another file or directory (relative to the calling crate's manifest
    /// directory) the program includes, so that a change to it rebuilds it.
    pub fn watch(mut self, path: &str) -> Program {
        self.watch.push(manifest_dir().join(path));
        self
    }

    /// Compiles the program, panicking (which fails the build with rustc's
    /// errors above) if that does not succeed. Returns the ELF's path.
    pub fn build(self) -> PathBuf {
        for path in &self.watch {
            println!("cargo:rerun-if-changed={}", path.display());
        }
        let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        let elf = out.join(&self.output);
        let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let mut cmd = Command::new(rustc);
        cmd.args(["--edition", "2021", "--crate-type", "bin", "--crate-name", &self.crate_name])
            .args(["-C", "panic=abort", "-C", "debuginfo=0", "-D", "warnings"])
            .args(["-C", "relocation-model=static", "-C", "target-feature=+crt-static"])
            .args(["-C", "link-arg=-nostdlib", "-C", "link-arg=-Wl,--build-id=none"]);
        match &self.kind {
            Kind::Linux => {
                cmd.args(["-C", "opt-level=3", "-C", "strip=symbols"])
                    .args(["-C", "link-arg=-Wl,--image-base=0x400000"]);
            }
            Kind::Kernel { script } => {
                // Kernel code: no red zone (exceptions push onto the current
                // stack), symbols kept for reading fault addresses.
                cmd.args(["-C", "opt-level=2", "-C", "no-redzone=yes", "-C", "strip=debuginfo"])
                    .arg("-C")
                    .arg(format!("link-arg=-Wl,-T,{}", script.display()));
            }
        }
        let status = cmd
            .arg("-o")
            .arg(&elf)
            .arg(&self.source)
            .status()
            .unwrap_or_else(|e| panic!("could not start rustc to build {}: {e}", self.crate_name));
        assert!(status.success(), "building {} failed (see rustc's errors above)", self.crate_name);
        elf
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
}

/// The shared runtime's sources (`rt/`).
pub fn runtime_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rt")
}
