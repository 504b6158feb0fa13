//! The VMM's seccomp sandbox seen from `virtlab vm run` and `vm restore`:
//! a call outside a thread's filter stops the VMM with a line naming it
//! (the test hook makes one), `--no-seccomp` turns the filters off, and
//! the report and `--explain` give the allowed calls.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use virtlab_vmm::probe::kvm_or_skip;
use virtlab_vmm::sandbox::{SECCOMP_EXIT_STATUS, TEST_HOOK_ENV};

/// Runs `virtlab ARGS` (with the test hook when `hook`), killed after 120 s
/// should it hang; returns its exit code (None: killed), stdout and stderr.
fn virtlab(args: &[&str], hook: bool) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_virtlab"));
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if hook {
        cmd.env(TEST_HOOK_ENV, "1");
    } else {
        cmd.env_remove(TEST_HOOK_ENV);
    }
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    let started = Instant::now();
    let watcher = std::thread::spawn(move || {
        while started.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(100));
            // SAFETY: kill with signal 0 only checks that `pid` exists.
            if unsafe { libc::kill(pid as i32, 0) } != 0 {
                return;
            }
        }
        // SAFETY: SIGKILL to the child this test started, which is still
        // running (a hang is what this catches).
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let out = child.wait_with_output().unwrap();
    let _ = watcher.join();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

fn assert_stopped_by_the_filter(code: Option<i32>, stderr: &str) {
    assert_eq!(code, Some(SECCOMP_EXIT_STATUS), "128 + SIGSYS; stderr: {stderr}");
    assert!(
        stderr.contains("seccomp filter stopped system call socket (number 41) in thread virtlab-vcpu0"),
        "the report names the call and the thread: {stderr}"
    );
    assert!(stderr.contains("--no-seccomp"), "the report says how to debug: {stderr}");
}

#[test]
fn a_forbidden_call_stops_the_vmm_with_a_clear_report() {
    if !kvm_or_skip("a_forbidden_call_stops_the_vmm_with_a_clear_report") {
        return;
    }
    let (code, _, err) = virtlab(&["vm", "run", "--", "cpu", "1000"], true);
    assert_stopped_by_the_filter(code, &err);
    // Without the filters the hook stays quiet, and the run ends well.
    let (code, out, err) = virtlab(&["vm", "run", "--no-seccomp", "--", "cpu", "1000"], true);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("virtlab.result mode=cpu n=1000 "), "{out}");
}

#[test]
fn a_restored_vmm_is_sandboxed_too() {
    const TEST: &str = "a_restored_vmm_is_sandboxed_too";
    if !kvm_or_skip(TEST) {
        return;
    }
    let dir = tempfile::Builder::new().prefix("virtlab-seccomp-restore-").tempdir().unwrap();
    let snap = dir.path().join("snap");
    let snap = snap.to_str().unwrap();
    let (code, _, err) = virtlab(&["vm", "run", "--snapshot-at", "ready", "--snapshot", snap, "--", "ready"], false);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = virtlab(&["vm", "restore", snap, "--", "cpu", "1000"], true);
    assert_stopped_by_the_filter(code, &err);
    let (code, out, err) = virtlab(&["vm", "restore", "--json", snap, "--", "syscall", "10"], false);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["sandbox"]["allowed_syscalls"].as_u64().unwrap() > 0, "{out}");
}

#[test]
fn the_report_and_explain_give_the_allowed_calls() {
    if !kvm_or_skip("the_report_and_explain_give_the_allowed_calls") {
        return;
    }
    let (code, out, err) = virtlab(&["vm", "run", "--json", "--", "io", "64"], false);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let s = &v["sandbox"];
    let allowed = s["allowed_syscalls"].as_u64().unwrap();
    assert!((5..40).contains(&allowed), "a handful of calls, not the host's table: {allowed}");
    assert!(s["host_syscalls"].as_u64().unwrap() > 300);
    assert_eq!(s["kvm_ioctls"], 1, "the minikernel's vCPU needs KVM_RUN only");
    let threads: Vec<&str> = s["threads"].as_array().unwrap().iter().map(|t| t["thread"].as_str().unwrap()).collect();
    assert_eq!(threads, ["virtlab-vcpu0"], "the timeout is a kernel timer, not a thread");

    let (code, out, _) = virtlab(&["vm", "run", "--json", "--no-seccomp", "--", "ready"], false);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["sandbox"].is_null(), "no filter, no list");

    let (code, _, err) = virtlab(&["vm", "run", "--explain", "--", "ready"], false);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "sandbox: from here on each VMM thread runs under its own seccomp filter: {allowed} distinct system calls"
        )),
        "{err}"
    );
    assert!(err.contains("virtlab-vcpu0 (") && err.contains("KVM_RUN") && err.contains("timer_delete"), "{err}");
}

/// The Linux run's vCPU thread enters its filter before the kernel's first
/// instruction, so the hook stops it at once (no boot to wait for).
#[test]
fn a_linux_vmm_is_stopped_the_same_way() {
    const TEST: &str = "a_linux_vmm_is_stopped_the_same_way";
    if !kvm_or_skip(TEST) {
        return;
    }
    let Some(kernel) =
        virtlab_vmm::linux::provision::test_kernel_or_skip(TEST, &[virtlab_vmm::linux::provision::Origin::Minimal])
    else {
        return;
    };
    let (code, _, err) = virtlab(&["vm", "run", "--kernel", kernel.to_str().unwrap(), "--", "ready"], true);
    assert_stopped_by_the_filter(code, &err);
}

/// `--interactive` makes standard input a raw terminal; a VMM stopped by
/// its filter exits from a signal handler, and must still put the
/// terminal back as it found it.
#[test]
fn a_stopped_interactive_vmm_leaves_the_terminal_as_it_found_it() {
    use std::os::fd::{AsRawFd, FromRawFd};
    const TEST: &str = "a_stopped_interactive_vmm_leaves_the_terminal_as_it_found_it";
    if !kvm_or_skip(TEST) {
        return;
    }
    let Some(kernel) =
        virtlab_vmm::linux::provision::test_kernel_or_skip(TEST, &[virtlab_vmm::linux::provision::Origin::Minimal])
    else {
        return;
    };
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty writes two new descriptors into m and s; the name,
    // termios and winsize pointers may be null.
    let r = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned by nothing else.
    let (master, slave) = unsafe { (std::fs::File::from_raw_fd(m), std::fs::File::from_raw_fd(s)) };
    let lflag = |f: &std::fs::File| {
        // SAFETY: tcgetattr fills a termios owned by this frame.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: as above; the fd is open.
        assert_eq!(unsafe { libc::tcgetattr(f.as_raw_fd(), &mut t) }, 0);
        t.c_lflag
    };
    let before = lflag(&slave);
    assert_ne!(before & libc::ICANON, 0, "a new terminal is in canonical mode");
    let out = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["vm", "run", "--kernel", kernel.to_str().unwrap(), "--interactive", "--", "/virtlab/workload", "ready"])
        .env(TEST_HOOK_ENV, "1")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_stopped_by_the_filter(out.status.code(), &err);
    assert_eq!(lflag(&slave), before, "the terminal's settings are back (canonical mode, echo)");
    drop(master);
}
