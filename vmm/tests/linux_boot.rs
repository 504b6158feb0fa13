//! Booting a real Linux kernel: bad input is refused with clear errors, and
//! the minimal guest kernel (scripts/guest-kernel.sh) boots to virtlab's
//! init, which runs the workload and reports its exit status.
//!
//! The boot test is slow where guest kernel code is emulated (about 1.5
//! minutes on nested KVM) and bounded by a timeout. Without a provisioned
//! kernel it is skipped, loudly, unless VIRTLAB_REQUIRE_LINUX=1.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

mod common;

use std::path::PathBuf;
use std::time::Duration;

use virtlab_vmm::linux::{provision, InitrdSource, LinuxConfig};
use virtlab_vmm::snapshot::{self, RestoreConfig, SnapshotAt, SnapshotRequest};
use virtlab_vmm::{run_linux, ConsoleSink, GuestStop, Quiet, Step};

fn config(kernel: PathBuf, program: &[&str]) -> LinuxConfig {
    LinuxConfig {
        kernel,
        initrd: InitrdSource::Build { rootfs: None },
        workload: Vec::new(),
        program: program.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
        workdir: None,
        extra_cmdline: None,
        mem_size: 128 << 20,
        timeout: Some(Duration::from_secs(30)),
        interactive: false,
        snapshot: None,
        seccomp: true,
    }
}

fn write_temp(name: &str, bytes: &[u8]) -> PathBuf {
    let p = std::env::temp_dir().join(format!("virtlab-linux-test-{}-{name}", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    p
}

fn err(c: &LinuxConfig) -> String {
    let e = run_linux(c, ConsoleSink::Discard, &mut Quiet).unwrap_err();
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(x) = src {
        s += &format!(": {x}");
        src = x.source();
    }
    s
}

#[test]
fn bad_input_is_refused_before_the_guest_runs() {
    // Checked before KVM is opened.
    let text = write_temp("text", b"#!/bin/sh\necho not a kernel\n");
    assert!(err(&config(text.clone(), &[])).contains("not a Linux kernel"));
    let mut bz = vec![0u8; 4096];
    bz[0x1f1] = 4;
    bz[0x1f4..0x1f8].copy_from_slice(&0x10_0000u32.to_le_bytes());
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    bz[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    bz[0x236] = 1;
    let bz = write_temp("bz", &bz);
    assert!(err(&config(bz.clone(), &[])).contains("truncated"));
    let mut c = config(PathBuf::from("/nonexistent/vmlinux"), &[]);
    assert!(err(&c).contains("cannot read kernel /nonexistent/vmlinux"));
    c.kernel = text.clone();
    c.mem_size = 8 << 20;
    assert!(err(&c).contains("--mem"));
    let mk = write_temp("mk", virtlab_minikernel::ELF);
    let mut c = config(mk.clone(), &[]);
    c.initrd = InitrdSource::File(PathBuf::from("/nonexistent/initrd"));
    assert!(err(&c).contains("cannot read initrd /nonexistent/initrd"));
    c.initrd = InitrdSource::Build { rootfs: Some(PathBuf::from("/nonexistent/rootfs")) };
    assert!(err(&c).contains("/nonexistent/rootfs"));
    // A ready-made initrd gets the program on the kernel command line,
    // which cannot carry spaces, and no environment or directory at all.
    let initrd = write_temp("initrd", b"07070");
    let mut c = config(c.kernel, &["/bin/echo", "two words"]);
    c.initrd = InitrdSource::File(initrd.clone());
    assert!(err(&c).contains("cannot be passed on the kernel command line"));
    c.program = vec!["/bin/true".into()];
    c.workdir = Some("/tmp".into());
    assert!(err(&c).contains("needs the initramfs virtlab builds"));
    // Virtlab's initramfs carries them in its command file; bad ones are
    // refused before any file is read.
    let mut c = config(PathBuf::from("/nonexistent/vmlinux"), &["sh", "-c", "echo a; exit 3"]);
    c.env = vec!["NOT-AN-ENTRY".into()];
    assert!(err(&c).contains("environment entry (--env) \"NOT-AN-ENTRY\" has no '='"), "{}", err(&c));
    c.env = vec!["K=V".into()];
    c.workdir = Some("relative".into());
    assert!(err(&c).contains("is not absolute"), "{}", err(&c));
    // An ARM vmlinux: refused for what it is, before KVM is opened.
    let mut arm = virtlab_minikernel::ELF.to_vec();
    arm[18..20].copy_from_slice(&40u16.to_le_bytes());
    arm.extend_from_slice(b"Linux version 6.1.0 (arm)");
    let arm = write_temp("arm", &arm);
    let e = err(&config(arm.clone(), &[]));
    assert!(e.contains("x86_64 ELF64 executable (ET_EXEC)") && e.contains("for ARM (e_machine 40)"), "{e}");
    for p in [text, bz, arm, initrd, mk] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn limits_checked_while_loading() {
    if !common::kvm_or_skip("limits_checked_while_loading") {
        return;
    }
    let mk = write_temp("mk2", virtlab_minikernel::ELF);
    let mut c = config(mk.clone(), &[]);
    c.extra_cmdline = Some("x".repeat(3000));
    let e = err(&c);
    assert!(e.contains("command line is") && e.contains("at most 2047"), "{e}");
    c.extra_cmdline = None;
    c.workload = vec![0u8; 40 << 20];
    let e = err(&c);
    assert!(e.contains("not a static x86_64 ELF"), "{e}");
    let _ = std::fs::remove_file(mk);
}

#[test]
fn boots_the_minimal_kernel_and_runs_the_workload() {
    if !common::kvm_or_skip("boots_the_minimal_kernel_and_runs_the_workload") {
        return;
    }
    let accept = [provision::Origin::Minimal, provision::Origin::Explicit];
    let Some(kernel) = provision::test_kernel_or_skip("boots_the_minimal_kernel_and_runs_the_workload", &accept) else {
        return;
    };
    let mut c = config(kernel, &["/virtlab/workload", "cpu", "1000"]);
    c.timeout = Some(Duration::from_secs(420));
    let r = run_linux(&c, ConsoleSink::Capture, &mut Quiet).unwrap();
    let out = r.run.output.clone().unwrap_or_default();
    eprintln!(
        "linux boot: kernel-ready after {:.1} s, stop after {:.1} s; host work-arounds {} ({}), fix-ups {:?}",
        r.run.at(Step::KernelReady).unwrap_or(0.0) / 1e6,
        r.run.guest_run_us / 1e6,
        if r.host_quirks.active { "on" } else { "off" },
        r.host_quirks.reason,
        r.host_quirks.fixups
    );
    assert_eq!(
        r.run.stop,
        GuestStop::Exited(0),
        "{}\nlast lines:\n{}\noutput:\n{out}",
        r.summary(),
        r.last_lines.join("\n")
    );
    let init_ran = r.run.at(Step::KernelReady).expect("the init reported through the boot-timer port");
    let init_line = r.init_line_us.expect("the kernel's \"Run /virtlab/init as init process\" line was seen");
    assert!(init_line <= init_ran, "the kernel announces the init ({init_line} us) before it runs ({init_ran} us)");
    assert!(out.contains("virtlab.result mode=cpu n=1000 "), "output:\n{out}");
    assert!(r.uart_interrupts > 0, "the console ran on its interrupt");
}

#[test]
fn a_linux_guest_is_saved_at_its_init_and_restored_without_a_boot() {
    if !common::kvm_or_skip("a_linux_guest_is_saved_at_its_init_and_restored_without_a_boot") {
        return;
    }
    let accept = [provision::Origin::Minimal, provision::Origin::Explicit];
    let name = "a_linux_guest_is_saved_at_its_init_and_restored_without_a_boot";
    let Some(kernel) = provision::test_kernel_or_skip(name, &accept) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("snap");
    let mut c = config(kernel, &["/virtlab/workload", "cpu", "1000"]);
    c.timeout = Some(Duration::from_secs(420));
    // busybox in the initramfs, for a shell command given at restore.
    let shell = busybox_root(tmp.path(), name);
    if let Some(root) = &shell {
        c.initrd = InitrdSource::Build { rootfs: Some(root.clone()) };
    }
    c.snapshot = Some(SnapshotRequest { at: SnapshotAt::Init, dir: dir.clone() });
    let r = run_linux(&c, ConsoleSink::Capture, &mut Quiet).unwrap();
    assert_eq!(r.run.stop, GuestStop::Exited(0), "{}", r.summary());
    let saved = r.run.snapshot.expect("the init started, so the snapshot was saved");
    eprintln!("linux snapshot: {} KiB of data, host refused: {:?}", saved.memory_data_bytes >> 10, saved.quirks);

    let seen = snapshot::inspect(&dir).unwrap();
    assert_eq!(seen.irqchip.len(), 3, "PIC master, PIC slave, IOAPIC");
    assert!(seen.pit.is_some() && seen.vcpu_parts.iter().any(|(n, _)| n == "lapic"));

    let restore = RestoreConfig { timeout: Some(Duration::from_secs(120)), ..Default::default() };
    let back = snapshot::restore(&dir, &restore, ConsoleSink::Capture, &mut Quiet).unwrap();
    let out = back.output.clone().unwrap_or_default();
    assert_eq!(back.stop, GuestStop::Exited(0), "{}\n{out}", back.summary);
    assert!(out.contains("virtlab.result mode=cpu n=1000 "), "output:\n{out}");
    assert!(back.at(Step::KernelReady).is_none(), "no boot");
    eprintln!("linux restore: workload ready after {:.1} ms", back.at(Step::WorkloadReady).unwrap_or(0.0) / 1e3);

    // Another command, handed to the init on the command port: one booted
    // snapshot, any program.
    let other = RestoreConfig {
        args: vec!["/virtlab/workload".into(), "syscall".into(), "7".into()],
        timeout: Some(Duration::from_secs(120)),
        ..Default::default()
    };
    let back = snapshot::restore(&dir, &other, ConsoleSink::Capture, &mut Quiet).unwrap();
    let out = back.output.clone().unwrap_or_default();
    assert_eq!(back.stop, GuestStop::Exited(0), "{}\n{out}", back.summary);
    assert!(out.contains("virtlab.result mode=syscall n=7 "), "output:\n{out}");
    let missing = RestoreConfig { args: vec!["/no/such/program".into()], ..other.clone() };
    let back = snapshot::restore(&dir, &missing, ConsoleSink::Capture, &mut Quiet).unwrap();
    assert_eq!(back.exit_status, 127, "{:?}", back.output);

    // An environment and a working directory go with the command.
    let bare = RestoreConfig { args: Vec::new(), env: vec!["X=1".into()], ..other.clone() };
    let e = snapshot::restore(&dir, &bare, ConsoleSink::Discard, &mut Quiet).unwrap_err();
    assert!(e.to_string().contains("without a program"), "{e}");
    if shell.is_some() {
        let sh = RestoreConfig {
            args: vec!["sh".into(), "-c".into(), "echo $X; pwd".into()],
            env: vec!["X=1".into()],
            workdir: Some("/tmp".into()),
            ..other
        };
        let back = snapshot::restore(&dir, &sh, ConsoleSink::Capture, &mut Quiet).unwrap();
        let out = back.output.clone().unwrap_or_default();
        assert_eq!(back.stop, GuestStop::Exited(0), "{}\n{out}", back.summary);
        let lines: Vec<&str> = out.lines().map(str::trim_end).collect();
        let at = lines.iter().position(|l| *l == "1").unwrap_or_else(|| panic!("no `1` line (echo $X):\n{out}"));
        assert_eq!(lines.get(at + 1), Some(&"/tmp"), "pwd after echo:\n{out}");
    }
}

/// A warm snapshot: the workload's process is started (its `warm` mode)
/// before the save, so a restore hands it its arguments and it runs them
/// in place; anything but the workload is refused.
#[test]
fn a_warm_linux_snapshot_runs_the_workload_s_modes_in_its_waiting_process() {
    let name = "a_warm_linux_snapshot_runs_the_workload_s_modes_in_its_waiting_process";
    if !common::kvm_or_skip(name) {
        return;
    }
    let Some(kernel) = provision::test_kernel_or_skip(name, &[provision::Origin::Minimal, provision::Origin::Explicit])
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("warm");

    // Another program, or a mode the boot would not run: refused before
    // the guest runs, nothing left behind.
    for program in [&["/bin/sh", "-c", "true"][..], &["/virtlab/workload", "cpu", "1000"]] {
        let mut c = config(kernel.clone(), program);
        c.snapshot = Some(SnapshotRequest { at: SnapshotAt::Warm, dir: dir.clone() });
        let e = err(&c);
        assert!(e.contains("--snapshot-at warm"), "{e}");
        assert!(!dir.exists(), "nothing left behind");
    }

    let mut c = config(kernel, &[]);
    c.timeout = Some(Duration::from_secs(420));
    c.snapshot = Some(SnapshotRequest { at: SnapshotAt::Warm, dir: dir.clone() });
    let r = run_linux(&c, ConsoleSink::Capture, &mut Quiet).unwrap();
    let out = r.run.output.clone().unwrap_or_default();
    assert_eq!(r.run.stop, GuestStop::Exited(0), "{}\n{out}", r.summary());
    assert!(out.contains("virtlab.result mode=ready "), "the boot goes on to `ready` after the save:\n{out}");
    let saved = r.run.snapshot.expect("the workload marked itself warm, so the snapshot was saved");
    eprintln!("warm snapshot: {} KiB of data", saved.memory_data_bytes >> 10);
    assert_eq!(snapshot::inspect(&dir).unwrap().manifest.taken_at, "warm");

    let restore = |args: &[&str]| {
        let config = RestoreConfig {
            args: args.iter().map(|a| a.to_string()).collect(),
            timeout: Some(Duration::from_secs(120)),
            ..Default::default()
        };
        snapshot::restore(&dir, &config, ConsoleSink::Capture, &mut Quiet)
    };
    let back = restore(&["/virtlab/workload", "ready"]).unwrap();
    let out = back.output.clone().unwrap_or_default();
    assert_eq!(back.stop, GuestStop::Exited(0), "{}\n{out}", back.summary);
    assert!(out.contains("virtlab.ready pid=") && out.contains("virtlab.result mode=ready "), "output:\n{out}");
    assert!(back.at(Step::KernelReady).is_none(), "no boot");
    let first = out;
    eprintln!("warm restore: workload ready after {:.1} ms", back.at(Step::WorkloadReady).unwrap_or(0.0) / 1e3);

    let back = restore(&["/virtlab/workload", "cpu", "1000"]).unwrap();
    let out = back.output.clone().unwrap_or_default();
    assert_eq!(back.stop, GuestStop::Exited(0), "{}\n{out}", back.summary);
    assert!(out.contains("virtlab.result mode=cpu n=1000 "), "output:\n{out}");
    // The same process each time (the snapshot's): its pid is the saved one.
    let pid = |o: &str| {
        o.lines()
            .find_map(|l| l.strip_prefix("virtlab.ready pid="))
            .map(|l| l.split(' ').next().unwrap_or("").to_string())
    };
    assert_eq!(pid(&out), pid(&first), "the same process:\n{first}\n{out}");

    // The workload's own exit status passes through (a bad mode: its usage, 2).
    let back = restore(&["/virtlab/workload", "nonsense"]).unwrap();
    assert_eq!(back.exit_status, 2, "{:?}", back.output);
    assert!(back.output.unwrap_or_default().contains("usage: virtlab-workload"));

    // Any other program, or an environment: refused, naming `init`.
    let e = restore(&["/bin/sh", "-c", "true"]).unwrap_err().to_string();
    assert!(e.contains("--snapshot-at init") && e.contains("/bin/sh"), "{e}");
    let config = RestoreConfig {
        args: vec!["/virtlab/workload".into(), "ready".into()],
        env: vec!["X=1".into()],
        ..Default::default()
    };
    let e = snapshot::restore(&dir, &config, ConsoleSink::Discard, &mut Quiet).unwrap_err().to_string();
    assert!(e.contains("-e, -w") && e.contains("--snapshot-at init"), "{e}");
}

/// A root file system of busybox alone (`/bin/busybox`, `/bin/sh`), or
/// None after a loud skip (a failure under VIRTLAB_REQUIRE_ROOT=1, as the
/// other busybox tests).
fn busybox_root(under: &std::path::Path, test: &str) -> Option<PathBuf> {
    let busybox = std::path::Path::new("/bin/busybox");
    if !busybox.exists() {
        if std::env::var("VIRTLAB_REQUIRE_ROOT").as_deref() == Ok("1") {
            panic!("{test}: /bin/busybox is missing (apt-get install busybox-static)");
        }
        eprintln!("SKIPPED part of {test}: /bin/busybox is missing (apt-get install busybox-static)");
        return None;
    }
    let root = under.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    Some(root)
}

/// A Linux guest saved at a time, early in its boot: the restore goes on
/// booting from there, runs the init and its command, and takes no other.
#[test]
fn a_linux_guest_saved_mid_boot_finishes_its_boot_when_restored() {
    let name = "a_linux_guest_saved_mid_boot_finishes_its_boot_when_restored";
    if !common::kvm_or_skip(name) {
        return;
    }
    let Some(kernel) = provision::test_kernel_or_skip(name, &[provision::Origin::Minimal, provision::Origin::Explicit])
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mid-boot");
    let mut c = config(kernel, &["/virtlab/workload", "cpu", "1000"]);
    c.timeout = Some(Duration::from_secs(600));
    c.snapshot = Some(SnapshotRequest { at: SnapshotAt::parse("300ms").unwrap(), dir: dir.clone() });
    let r = run_linux(&c, ConsoleSink::Capture, &mut Quiet).unwrap();
    assert_eq!(r.run.stop, GuestStop::Exited(0), "{}", r.summary());
    let Some(saved) = r.run.snapshot else {
        // A host that boots this kernel in under 300 ms: the point was
        // past the end, and nothing may be left.
        assert!(!dir.exists(), "no snapshot, and no directory");
        eprintln!("{name}: the guest ended before 300 ms; only the no-snapshot case was checked");
        return;
    };
    eprintln!("linux mid-boot snapshot: {} KiB of data", saved.memory_data_bytes >> 10);
    let e = snapshot::restore(
        &dir,
        &RestoreConfig { args: vec!["/virtlab/workload".into(), "ready".into()], ..Default::default() },
        ConsoleSink::Discard,
        &mut Quiet,
    )
    .unwrap_err();
    assert!(e.to_string().contains("at a time"), "{e}");

    let restore = RestoreConfig { timeout: Some(Duration::from_secs(600)), ..Default::default() };
    let back = snapshot::restore(&dir, &restore, ConsoleSink::Capture, &mut Quiet).unwrap();
    let out = back.output.clone().unwrap_or_default();
    assert_eq!(back.stop, GuestStop::Exited(0), "{}\n{out}", back.summary);
    assert!(out.contains("Run /virtlab/init as init process"), "the boot went on in the restored VM:\n{out}");
    assert!(out.contains("virtlab.result mode=cpu n=1000 "), "output:\n{out}");
    assert!(back.at(Step::KernelReady).is_some(), "the init started in the restored VM");
}
