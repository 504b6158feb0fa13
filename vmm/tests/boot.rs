//! Boots real guests: the minikernel with the workload in every mode, both
//! consoles, faulting and spinning workloads, bad input, and many VMs in a
//! row. Needs /dev/kvm (skips loudly without it).

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

mod common;

use std::time::Duration;

use common::{kvm_or_skip, tiny_elf};
use virtlab_vmm::{
    run, ConsoleKind, ConsoleSink, GuestStop, KernelSource, Observer, Quiet, RunReport, Step, VmConfig, VmError,
};
use virtlab_workload::WorkloadResult;

fn boot(args: &[&str]) -> RunReport {
    boot_with(VmConfig::builtin_workload(args))
}

fn boot_with(config: VmConfig) -> RunReport {
    run(&config, ConsoleSink::Capture, &mut Quiet).expect("the VM runs")
}

fn result_of(r: &RunReport) -> WorkloadResult {
    let out = r.output.as_deref().unwrap_or("");
    WorkloadResult::find(out).unwrap_or_else(|| panic!("no result line in guest output: {out:?} ({})", r.summary))
}

#[test]
fn every_workload_mode_runs_in_ring_3() {
    if !kvm_or_skip("every_workload_mode_runs_in_ring_3") {
        return;
    }
    for (args, key) in [
        (&["ready"][..], "pid"),
        (&["cpu", "1000000"][..], "checksum"),
        (&["syscall", "200"][..], "ns_per_call"),
        (&["mem", "8"][..], "pages"),
        (&["io", "4"][..], "bytes"),
    ] {
        let r = boot(args);
        assert_eq!(r.stop, GuestStop::Exited(0), "{args:?}: {}", r.summary);
        assert_eq!(r.exit_status, 0);
        let res = result_of(&r);
        assert_eq!(res.mode, args[0]);
        assert!(res.fields.contains_key(key), "{args:?}: {res:?}");
        // The guest is PID 1 of its own tiny world.
        assert!(r.output.as_deref().unwrap_or("").starts_with("virtlab.ready pid=1 "));
        for step in Step::ALL {
            assert!(r.at(step).is_some(), "{args:?}: step {step:?} missing");
        }
        let at = |s| r.at(s).unwrap_or(f64::NAN);
        assert!(at(Step::KernelReady) <= at(Step::WorkloadReady));
        assert!(at(Step::WorkloadReady) <= at(Step::WorkloadExit));
    }
}

/// Keeps what the memory step said.
struct MemoryDetail(String);

impl Observer for MemoryDetail {
    fn after(&mut self, step: Step, _took: Duration, detail: &str) {
        if step == Step::Memory {
            self.0 = detail.to_string();
        }
    }
}

#[test]
fn the_mmap_area_is_backed_by_huge_pages_when_asked() {
    if !kvm_or_skip("the_mmap_area_is_backed_by_huge_pages_when_asked") {
        return;
    }
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    if thp.is_empty() || thp.contains("[never]") {
        eprintln!(
            "SKIPPED the_mmap_area_is_backed_by_huge_pages_when_asked: transparent huge pages are off on this host"
        );
        return;
    }
    // `mem 8` touches 8 MiB of the mmap() area once per 4 KiB page. With
    // huge pages the host allocates whole 2 MiB pages around them, so more
    // guest memory is resident than the workload touched; with 4 KiB pages,
    // exactly what it touched (plus kernel and program pages).
    let touched = |huge: bool| {
        let mut c = VmConfig::builtin_workload(&["mem", "8"]);
        c.huge_pages = huge;
        let mut seen = MemoryDetail(String::new());
        let r = run(&c, ConsoleSink::Capture, &mut seen).expect("the VM runs");
        assert_eq!(r.stop, GuestStop::Exited(0), "{}", r.summary);
        assert_eq!(seen.0.contains("huge pages"), huge, "{}", seen.0);
        r.memory.guest_touched_bytes
    };
    let (small, huge) = (touched(false), touched(true));
    assert!((8 << 20..10 << 20).contains(&small), "4 KiB pages: {small} bytes resident");
    assert!(huge >= small + (1 << 20), "huge pages: {huge} bytes resident against {small} with 4 KiB pages");
}

#[test]
fn system_calls_are_served_and_counted() {
    if !kvm_or_skip("system_calls_are_served_and_counted") {
        return;
    }
    let r = boot(&["syscall", "300"]);
    let s = r.syscalls;
    // 300 getpid + the initial getpid, 3 clock_gettime, 2 writes, exit_group.
    assert_eq!(s.via_syscall + s.via_trap, 300 + 1 + 3 + 2 + 1, "{s:?}");
    assert_eq!(s.enosys, 0);
    assert_eq!(s.writes, 2);
    let r = boot(&["mem", "3"]);
    assert_eq!(r.syscalls.mmap_bytes, 3 << 20);
    assert_eq!(result_of(&r).get_u64("pages"), Some(768));
    // Touching 3 MiB made at least that much guest memory resident.
    assert!(r.memory.guest_touched_bytes >= 3 << 20, "{:?}", r.memory);
}

#[test]
fn unknown_system_calls_get_enosys() {
    if !kvm_or_skip("unknown_system_calls_get_enosys") {
        return;
    }
    // mov eax, 400; syscall; mov edi, eax; neg edi; mov eax, 231; syscall
    let code = [0xb8, 0x90, 0x01, 0, 0, 0x0f, 0x05, 0x89, 0xc7, 0xf7, 0xdf, 0xb8, 0xe7, 0, 0, 0, 0x0f, 0x05];
    let mut c = VmConfig::builtin_workload(&[]);
    c.workload = tiny_elf(&code);
    c.argv = vec!["enosys".into()];
    let r = boot_with(c);
    assert_eq!(r.stop, GuestStop::Exited(38), "{}", r.summary);
    assert_eq!((r.syscalls.enosys, r.syscalls.last_enosys_nr), (1, 400));
}

#[test]
fn pv_console_gives_the_same_output_with_far_fewer_exits() {
    if !kvm_or_skip("pv_console_gives_the_same_output_with_far_fewer_exits") {
        return;
    }
    let mut c = VmConfig::builtin_workload(&["io", "8"]);
    let uart = boot_with(c.clone());
    c.console = ConsoleKind::Pv;
    let pv = boot_with(c);
    let lines = |r: &RunReport| -> Vec<String> {
        r.output.as_deref().unwrap_or("").lines().filter(|l| l.starts_with("virtlab.io")).map(String::from).collect()
    };
    assert_eq!(lines(&uart), lines(&pv));
    assert_eq!(lines(&pv).len(), 8 * 1024 / 64);
    let uart_exits = uart.exits.by_device["uart"];
    let pv_exits = pv.exits.by_device["pv-console"];
    assert!(uart_exits >= 8 * 1024, "one exit per byte at least: {uart_exits}");
    assert!(pv_exits * 10 <= uart_exits, "pv {pv_exits} vs uart {uart_exits}");
    assert_eq!(pv.exits.by_device.get("uart"), None);
}

#[test]
fn faults_are_reported_with_vector_and_address() {
    if !kvm_or_skip("faults_are_reported_with_vector_and_address") {
        return;
    }
    for (kind, vector, status) in [("pf", 14, 139), ("ud", 6, 132), ("gp", 13, 139)] {
        let r = boot(&["fault", kind]);
        let GuestStop::Fault(f) = &r.stop else { panic!("{kind}: {}", r.summary) };
        assert_eq!(f.vector, vector, "{kind}");
        assert!(f.user, "{kind}: the fault is the workload's");
        assert!(f.rip >= 0x40_0000, "{kind}: rip {:#x} in the workload", f.rip);
        assert_eq!(r.exit_status, status, "{kind}");
        if kind == "pf" {
            assert_eq!(f.address, 0x10);
        }
    }
}

#[test]
fn port_io_from_ring_3_is_a_general_protection_fault() {
    if !kvm_or_skip("port_io_from_ring_3_is_a_general_protection_fault") {
        return;
    }
    // Each program does one port access, then exit_group(0) should the
    // access be let through (xor edi, edi; mov eax, 231; syscall).
    const EXIT_0: [u8; 9] = [0x31, 0xff, 0xb8, 0xe7, 0, 0, 0, 0x0f, 0x05];
    for (what, access) in [
        ("in $0x80,%al", &[0xe4, 0x80][..]),
        ("out %al,$0x80", &[0xe6, 0x80][..]),
        ("in (%dx),%al with dx=0", &[0x31, 0xd2, 0xec][..]),
        ("out %al,(%dx) with dx=0x33f", &[0x66, 0xba, 0x3f, 0x03, 0xee][..]),
        ("in (%dx),%al with dx=0x3f8 (the UART)", &[0x66, 0xba, 0xf8, 0x03, 0xec][..]),
    ] {
        let mut c = VmConfig::builtin_workload(&[]);
        c.workload = tiny_elf(&[access, &EXIT_0].concat());
        c.argv = vec!["port-io".into()];
        c.timeout = Some(Duration::from_secs(30));
        let r = boot_with(c);
        // Natively: SIGSEGV, exit status 139.
        assert_eq!(r.exit_status, 139, "{what}: {}", r.summary);
        let GuestStop::Fault(f) = &r.stop else { panic!("{what}: {}", r.summary) };
        assert_eq!((f.vector, f.user), (13, true), "{what}: {}", r.summary);
        assert!(r.summary.contains("#GP"), "{what}: {}", r.summary);
        // The faulting instruction is the access itself (after the ELF
        // header and the program header, for the dx forms after the mov).
        let mov = if access.len() > 2 { access.len() as u64 - 1 } else { 0 };
        assert_eq!(f.rip, 0x40_0000 + 64 + 56 + mov, "{what}: {}", r.summary);
    }
}

#[test]
fn a_spinning_guest_is_stopped_by_the_timeout() {
    if !kvm_or_skip("a_spinning_guest_is_stopped_by_the_timeout") {
        return;
    }
    let mut c = VmConfig::builtin_workload(&["spin"]);
    c.timeout = Some(Duration::from_millis(300));
    let r = boot_with(c);
    assert_eq!(r.stop, GuestStop::Timeout { after_ms: 300 });
    assert_eq!(r.exit_status, 124);
    assert!(r.output.as_deref().unwrap_or("").contains("virtlab.ready"), "it did start");
}

#[test]
fn a_guest_kernel_that_crashes_is_reported() {
    if !kvm_or_skip("a_guest_kernel_that_crashes_is_reported") {
        return;
    }
    // A "kernel" whose first instruction is ud2 with no IDT loaded: the #UD
    // cannot be delivered, nor the #DF after it: a triple fault.
    let dir = tempdir("crash");
    let path = dir.join("crash.elf");
    let mut elf = tiny_elf(&[0x0f, 0x0b]);
    // Move it to the kernel area: vaddr/paddr 0x100000, entry after the headers.
    let base: u64 = 0x10_0000;
    elf[24..32].copy_from_slice(&(base + 120).to_le_bytes());
    elf[64 + 16..64 + 24].copy_from_slice(&base.to_le_bytes());
    elf[64 + 24..64 + 32].copy_from_slice(&base.to_le_bytes());
    std::fs::write(&path, &elf).unwrap();
    let mut c = VmConfig::builtin_workload(&["ready"]);
    c.kernel = KernelSource::File(path);
    c.timeout = Some(Duration::from_secs(20));
    let r = boot_with(c);
    assert_eq!(r.stop, GuestStop::Shutdown, "{}", r.summary);
    assert_eq!(r.exit_status, 125);
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempdir(test: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("virtlab-vmm-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn bad_input_is_refused_with_a_fix() {
    // These are checked before KVM is touched, so they run everywhere.
    let err = |c: VmConfig| run(&c, ConsoleSink::Discard, &mut Quiet).unwrap_err().to_string();
    let mut c = VmConfig::builtin_workload(&[]);
    c.mem_size = 1 << 20;
    assert!(err(c.clone()).contains("--mem"));
    c.mem_size = 1 << 40;
    assert!(err(c.clone()).contains("too large"));
    c.mem_size = 64 << 20;
    c.workload = b"#!/bin/sh\necho hi\n".to_vec();
    assert!(err(c.clone()).contains("not a static x86_64 ELF"));
    let mut c = VmConfig::builtin_workload(&[]);
    c.kernel = KernelSource::File("/nonexistent/kernel".into());
    let e = run(&c, ConsoleSink::Discard, &mut Quiet).unwrap_err();
    assert!(matches!(e, VmError::ReadKernel(..)), "{e}");
}

#[test]
fn a_corrupt_kernel_is_refused() {
    if !kvm_or_skip("a_corrupt_kernel_is_refused") {
        return;
    }
    let dir = tempdir("corrupt");
    for (name, bytes) in
        [("garbage", vec![0x55u8; 4096]), ("truncated", virtlab_minikernel::ELF[..100].to_vec()), ("empty", Vec::new())]
    {
        let p = dir.join(name);
        std::fs::write(&p, &bytes).unwrap();
        let mut c = VmConfig::builtin_workload(&[]);
        c.kernel = KernelSource::File(p);
        let e = run(&c, ConsoleSink::Discard, &mut Quiet).unwrap_err().to_string();
        assert!(e.contains("kernel"), "{name}: {e}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_ring0_probe_measures_guest_kernel_mode() {
    if !kvm_or_skip("the_ring0_probe_measures_guest_kernel_mode") {
        return;
    }
    let p = virtlab_vmm::probe::probe_ring0(2000).unwrap();
    assert!(p.guest_ring0_ns > 0.0 && p.host_ns > 0.0, "{p:?}");
    assert!((p.slowdown - p.guest_ring0_ns / p.host_ns).abs() < 1e-9);
    eprintln!("ring-0 probe: {p:?}");
}
