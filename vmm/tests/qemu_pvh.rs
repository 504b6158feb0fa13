//! The same minikernel file, booted by QEMU through its PVH note, runs the
//! workload: the guest does not depend on virtlab's VMM. Needs
//! qemu-system-x86_64 (skips loudly without it; VIRTLAB_REQUIRE_QEMU=1, as
//! in CI, makes that a failure). Uses KVM when it can, else TCG.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn qemu_or_skip(test: &str) -> bool {
    let ok = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("VIRTLAB_REQUIRE_QEMU").as_deref() == Ok("1") {
            panic!("{test}: qemu-system-x86_64 is required (VIRTLAB_REQUIRE_QEMU=1) but not installed");
        }
        eprintln!("SKIPPED {test}: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)");
    }
    ok
}

/// Boots the minikernel under QEMU microvm; returns (exit status, console).
fn qemu(args: &str) -> (i32, String) {
    let kernel = virtlab_vmm::minikernel_path().unwrap();
    let workload = virtlab_workload::materialize().unwrap();
    let accel = if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok() { "kvm" } else { "tcg" };
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-M", "microvm", "-accel", accel, "-m", "64M", "-nodefaults", "-no-user-config"])
        .args(["-display", "none", "-serial", "stdio", "-no-reboot", "-device", "isa-debug-exit"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(workload)
        .args(["-append", args])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("QEMU did not finish `{args}` within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    (status.code().unwrap_or(-1), out)
}

#[test]
fn qemu_boots_the_minikernel_through_pvh() {
    if !qemu_or_skip("qemu_boots_the_minikernel_through_pvh") {
        return;
    }
    let (code, out) = qemu("syscall 50");
    // isa-debug-exit: QEMU exits with status * 2 + 1.
    assert_eq!(code, 1, "workload status 0:\n{out}");
    assert!(out.contains("virtlab.kernel pvh boot: ram_mib=64"), "{out}");
    let r = virtlab_workload::WorkloadResult::find(&out).unwrap();
    assert_eq!((r.mode.as_str(), r.get_u64("n")), ("syscall", Some(50)));
}

#[test]
fn qemu_reports_a_workload_fault_on_the_console() {
    if !qemu_or_skip("qemu_reports_a_workload_fault_on_the_console") {
        return;
    }
    let (code, out) = qemu("fault ud");
    assert_eq!(code, (132 * 2 + 1) & 0xff, "{out}");
    assert!(out.contains("virtlab.kernel fault vector=6 "), "{out}");
}
