//! 1,000 VM create/run/destroy cycles in one process: no fd and no memory
//! may leak. Its own test binary, so no other test's VMs run beside it.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

mod common;

use common::kvm_or_skip;
use virtlab_vmm::{run, ConsoleSink, GuestStop, Quiet, RunReport, VmConfig};

fn boot(args: &[&str]) -> RunReport {
    run(&VmConfig::builtin_workload(args), ConsoleSink::Capture, &mut Quiet).expect("the VM runs")
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_thousand_vms_leak_no_fds_and_no_memory() {
    if !kvm_or_skip("a_thousand_vms_leak_no_fds_and_no_memory") {
        return;
    }
    let cycle = || {
        let r = boot(&["ready"]);
        assert_eq!(r.stop, GuestStop::Exited(0));
    };
    for _ in 0..50 {
        cycle();
    }
    let (fds, rss) = (open_fds(), rss_kib());
    for _ in 0..1000 {
        cycle();
    }
    assert_eq!(open_fds(), fds, "file descriptors leaked");
    let grown = rss_kib().saturating_sub(rss);
    // Each VM maps 64 MiB; a leak of even one mapping's touched pages per VM
    // would add ~100 KiB per cycle, 100 MiB in all.
    assert!(grown < 8 * 1024, "RSS grew by {grown} KiB over 1000 VMs");
}
