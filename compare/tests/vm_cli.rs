//! `virtlab vm run` as a user runs it: exit statuses, errors, --explain,
//! --step, --timings and --json.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn kvm_or_skip(test: &str) -> bool {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => true,
        Err(e) => {
            if std::env::var("VIRTLAB_REQUIRE_KVM").as_deref() == Ok("1") {
                panic!("{test}: /dev/kvm is required (VIRTLAB_REQUIRE_KVM=1) but cannot be opened: {e}");
            }
            eprintln!(
                "SKIPPED {test}: /dev/kvm cannot be opened ({e}); set VIRTLAB_REQUIRE_KVM=1 to make this a failure"
            );
            false
        }
    }
}

fn virtlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_virtlab")).args(args).stdin(Stdio::null()).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn json_report_holds_the_result_and_the_steps() {
    if !kvm_or_skip("json_report_holds_the_result_and_the_steps") {
        return;
    }
    let out = virtlab(&["vm", "run", "--json", "--", "cpu", "1000"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stop"]["kind"], "exited");
    assert_eq!(v["exit_status"], 0);
    assert!(v["output"].as_str().unwrap().contains("virtlab.result mode=cpu n=1000 "));
    let phases: Vec<&str> = v["phases"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(phases.first(), Some(&"open-kvm"));
    assert_eq!(phases.last(), Some(&"teardown"));
    assert!(phases.contains(&"kernel-ready") && phases.contains(&"workload-ready"));
    assert!(v["exits"]["total"].as_u64().unwrap() > 0);
}

#[test]
fn guest_output_and_exit_status_pass_through() {
    if !kvm_or_skip("guest_output_and_exit_status_pass_through") {
        return;
    }
    let out = virtlab(&["vm", "run", "--", "ready"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("virtlab.ready pid=1"));
    let out = virtlab(&["vm", "run", "--", "fault", "ud"]);
    assert_eq!(out.status.code(), Some(132), "128 + SIGILL, as natively");
    assert!(text(&out.stderr).contains("#UD"), "{}", text(&out.stderr));
    let out = virtlab(&["vm", "run", "--timeout", "200ms", "--", "spin"]);
    assert_eq!(out.status.code(), Some(124));
    assert!(text(&out.stderr).contains("timeout"), "{}", text(&out.stderr));
}

#[test]
fn explain_and_timings_narrate_every_step() {
    if !kvm_or_skip("explain_and_timings_narrate_every_step") {
        return;
    }
    let out = virtlab(&["vm", "run", "--explain", "--timings", "--", "syscall", "10"]);
    assert_eq!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    for needle in ["KVM_CREATE_VM", "KVM_SET_USER_MEMORY_REGION", "KVM_RUN", "[vm 10/10] teardown", "idea:", "took:"] {
        assert!(err.contains(needle), "{needle} missing from:\n{err}");
    }
    assert!(err.contains("VM exits:") && err.contains("system calls:"), "{err}");
    // Which way the 10 getpid calls (and the rest) reached the kernel is said.
    assert!(
        err.contains("[vm] system calls:") && (err.contains("trap-and-emulate") || err.contains("directly")),
        "{err}"
    );
}

#[test]
fn step_waits_for_enter() {
    if !kvm_or_skip("step_waits_for_enter") {
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["vm", "run", "--step", "--", "ready"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&b"\n".repeat(7)).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert_eq!(err.matches("press Enter").count(), 7, "one prompt per host step:\n{err}");
}

#[test]
fn bad_input_gets_a_clear_error_and_status_125() {
    for (args, needle) in [
        (&["vm", "run", "--", "nonsense"][..], "unknown workload mode"),
        (&["vm", "run", "--mem", "1M", "--", "ready"][..], "--mem"),
        (&["vm", "run", "--mem", "64G", "--", "ready"][..], "too large"),
        (&["vm", "run", "--kernel", "/nonexistent/vmlinux"][..], "cannot read kernel"),
        (&["vm", "run", "--", "/nonexistent/prog"][..], "cannot read workload"),
        (&["vm", "run", "--", "/etc/hostname"][..], "not a static x86_64 ELF"),
    ] {
        let out = virtlab(args);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(needle), "{args:?}: {}", text(&out.stderr));
    }
    let out = virtlab(&["vm", "run", "--mem", "lots"]);
    assert_eq!(out.status.code(), Some(2), "clap usage errors exit 2");
}
