//! `virtlab guest kernel`: which Linux kernel a VM boots, and why.

use std::path::PathBuf;

use virtlab_vmm::linux::provision::{self, Origin};
use virtlab_vmm::linux::HostQuirks;

/// Prints the kernel `virtlab vm run` would boot for Linux (its path on
/// stdout, the reasoning on stderr); exit status 1 when there is none.
pub fn kernel(explicit: Option<PathBuf>, all: bool) -> anyhow::Result<u8> {
    let quirks = HostQuirks::probe();
    let choice = provision::locate(explicit.as_deref());
    if all || choice.is_err() {
        eprintln!("candidates, in order:");
        if let Some(p) = &explicit {
            eprintln!("  [{}] --kernel {}", if p.is_file() { "found" } else { "missing" }, p.display());
        }
        for (c, ok) in provision::candidates() {
            eprintln!("  [{}] {:?}: {}", if ok { "found" } else { "missing" }, c.origin, c.path.display());
        }
    }
    match choice {
        Ok(c) => {
            eprintln!("virtlab: guest kernel: {}", c.why);
            if quirks.active && c.origin != Origin::Minimal && c.origin != Origin::Explicit {
                eprintln!(
                    "virtlab: note: this host needs work-arounds ({}); only the minimal kernel carries the guest patch that lets its user space make system calls here",
                    quirks.reason
                );
            }
            println!("{}", c.path.display());
            Ok(0)
        }
        Err(e) => {
            eprintln!("virtlab: {e}");
            Ok(1)
        }
    }
}
