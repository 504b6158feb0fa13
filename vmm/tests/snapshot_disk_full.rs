//! A snapshot whose disk fills while it is written leaves nothing behind
//! that looks like a snapshot. The "full disk" is RLIMIT_FSIZE (writes past
//! it fail with EFBIG, for root too, with no mount needed); the limit is
//! process-wide, hence this test's own binary.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

mod common;

use std::fs;

use common::kvm_or_skip;
use virtlab_vmm::snapshot::{SnapshotAt, SnapshotRequest};
use virtlab_vmm::{run, ConsoleSink, Quiet, VmConfig};

#[test]
fn a_disk_that_fills_leaves_no_snapshot() {
    if !kvm_or_skip("a_disk_that_fills_leaves_no_snapshot") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut c = VmConfig::builtin_workload(&["ready"]);
    c.snapshot = Some(SnapshotRequest { at: SnapshotAt::Ready, dir: tmp.path().join("snap") });
    // SAFETY: setrlimit and signal have no memory preconditions; SIGXFSZ
    // is ignored so a write past the limit fails with EFBIG instead of
    // killing the test.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit { rlim_cur: 256 << 10, rlim_max: libc::RLIM_INFINITY };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    let e = run(&c, ConsoleSink::Discard, &mut Quiet).unwrap_err();
    let chain = format!("{e}: {:?}", std::error::Error::source(&e));
    assert!(chain.contains("snapshot"), "{chain}");
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0, "a partial snapshot was left behind");
}
