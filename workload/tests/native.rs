//! Runs the workload natively, every mode, and checks what it prints.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

use std::process::Command;
use virtlab_workload::{materialize, WorkloadResult, READY_MARKER};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(materialize().unwrap()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_mode_prints_ready_then_a_result() {
    for (args, mode, key) in [
        (&["ready"][..], "ready", "pid"),
        (&["cpu", "100000"][..], "cpu", "ns"),
        (&["syscall", "1000"][..], "syscall", "ns_per_call"),
        (&["mem", "4"][..], "mem", "pages"),
        (&["io", "8"][..], "io", "bytes"),
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.starts_with(READY_MARKER), "{args:?}: {out}");
        let r = WorkloadResult::find(&out).unwrap_or_else(|| panic!("no result in {out}"));
        assert_eq!(r.mode, mode);
        assert!(r.get_u64(key).is_some(), "{args:?}: {out}");
    }
}

#[test]
fn figures_are_consistent() {
    let (_, out, _) = run(&["mem", "2"]);
    assert_eq!(WorkloadResult::find(&out).unwrap().get_u64("pages"), Some(512));
    let (_, out, _) = run(&["io", "10"]);
    let r = WorkloadResult::find(&out).unwrap();
    assert_eq!(r.get_u64("bytes"), Some(10240));
    assert_eq!(r.get_u64("writes"), Some(3));
    let io_bytes: usize = out.lines().filter(|l| l.starts_with("virtlab.io")).map(|l| l.len() + 1).sum();
    assert_eq!(io_bytes, 10240);
}

#[test]
fn bad_arguments_are_a_usage_error() {
    let (code, _, err) = run(&["cpu", "lots"]);
    assert_eq!(code, 2);
    assert!(err.contains("usage"), "{err}");
    let (code, _, _) = run(&["nonsense"]);
    assert_eq!(code, 2);
}

#[test]
fn faults_are_real_faults() {
    for (kind, sig) in [("pf", libc_sigsegv()), ("ud", 4), ("gp", libc_sigsegv())] {
        let out = Command::new(materialize().unwrap()).args(["fault", kind]).output().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(sig), "fault {kind}");
    }
}

fn libc_sigsegv() -> i32 {
    11
}

/// `warm` talks to virtlab's VMM through I/O ports its guest init opened;
/// a process without that grant (here, natively) faults at its first
/// `out`, before it prints or does anything else.
#[test]
fn warm_outside_a_virtlab_guest_faults_at_its_first_port_access() {
    use std::os::unix::process::ExitStatusExt;
    let out = Command::new(materialize().unwrap()).arg("warm").output().unwrap();
    assert_eq!(out.status.signal(), Some(libc_sigsegv()), "{out:?}");
    assert!(out.stdout.is_empty(), "nothing printed: {out:?}");
}
