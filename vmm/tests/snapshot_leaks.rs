//! One snapshot restored 1,000 times in one process: no fd and no memory
//! may leak (each restore maps the memory file, opens KVM, a VM and a
//! vCPU). Its own test binary, so no other test's VMs run beside it.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

mod common;

use common::kvm_or_skip;
use virtlab_vmm::snapshot::{self, RestoreConfig, SnapshotAt, SnapshotRequest};
use virtlab_vmm::{run, ConsoleSink, GuestStop, Quiet, VmConfig};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_thousand_restores_leak_no_fds_and_no_memory() {
    if !kvm_or_skip("a_thousand_restores_leak_no_fds_and_no_memory") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("snap");
    let mut c = VmConfig::builtin_workload(&["ready"]);
    c.snapshot = Some(SnapshotRequest { at: SnapshotAt::Ready, dir: dir.clone() });
    run(&c, ConsoleSink::Discard, &mut Quiet).unwrap();
    let config = RestoreConfig { args: vec!["ready".into()], ..Default::default() };
    let cycle = || {
        let r = snapshot::restore(&dir, &config, ConsoleSink::Capture, &mut Quiet).unwrap();
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
    // Each restore writes a few pages of its private copy of memory; a
    // mapping that outlived its VM would add them up, ~100 KiB per cycle.
    assert!(grown < 8 * 1024, "RSS grew by {grown} KiB over 1000 restores");
}
