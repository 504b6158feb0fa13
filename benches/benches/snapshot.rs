//! Snapshots: the minikernel from launch to the workload's ready line,
//! booted cold and restored from a snapshot (taken once, outside the
//! timing). Both measure the report's own clock, from the first host step
//! to the ready marker on the console. A second group runs a `cpu` loop to
//! its exit, cold and resumed from a snapshot taken 10 ms into it
//! (`--snapshot-at 10ms`). A third restores a Linux guest from a snapshot
//! of its init, beside the time of the one cold boot that took it. Run
//! with `cargo bench --bench snapshot`. Without /dev/kvm (or, for Linux, a
//! guest kernel) these benchmarks say so and measure nothing.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use virtlab_vmm::snapshot::{self, RestoreConfig, SnapshotAt, SnapshotRequest};
use virtlab_vmm::{run, ConsoleSink, GuestStop, Quiet, RunReport, Step, VmConfig};

fn kvm_available() -> bool {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => true,
        Err(e) => {
            eprintln!("snapshot benches skipped: /dev/kvm cannot be opened ({e})");
            false
        }
    }
}

/// Launch to the ready marker, from a report.
fn to_ready(r: &RunReport) -> Duration {
    assert_eq!(r.stop, GuestStop::Exited(0), "{}", r.summary);
    Duration::from_secs_f64(r.at(Step::WorkloadReady).expect("the workload printed its ready line") / 1e6)
}

fn cold_vs_restore(c: &mut Criterion) {
    if !kvm_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path().join("snap");
    let mut config = VmConfig::builtin_workload(&["ready"]);
    config.snapshot = Some(SnapshotRequest { at: SnapshotAt::Ready, dir: dir.clone() });
    run(&config, ConsoleSink::Discard, &mut Quiet).expect("the snapshot is taken");
    config.snapshot = None;
    let restore = RestoreConfig { args: vec!["ready".into()], ..Default::default() };

    let mut g = c.benchmark_group("minikernel: launch to workload ready");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("cold boot", |b| {
        b.iter_custom(|n| {
            (0..n).map(|_| to_ready(&run(&config, ConsoleSink::Discard, &mut Quiet).expect("the VM runs"))).sum()
        })
    });
    g.bench_function("restore", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| {
                    to_ready(&snapshot::restore(&dir, &restore, ConsoleSink::Discard, &mut Quiet).expect("it restores"))
                })
                .sum()
        })
    });
    g.finish();
}

/// Launch to the workload's exit, from a report.
fn to_exit(r: &RunReport) -> Duration {
    assert_eq!(r.stop, GuestStop::Exited(0), "{}", r.summary);
    Duration::from_secs_f64(r.total_us / 1e6)
}

fn cold_vs_mid_run_restore(c: &mut Criterion) {
    if !kvm_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path().join("mid-run");
    let mut config = VmConfig::builtin_workload(&["cpu", "20000000"]);
    config.snapshot = Some(SnapshotRequest { at: SnapshotAt::After(Duration::from_millis(10)), dir: dir.clone() });
    let taken = run(&config, ConsoleSink::Discard, &mut Quiet).expect("the snapshot run runs");
    assert!(taken.snapshot.is_some(), "the loop ran past 10 ms, so the snapshot was taken");
    config.snapshot = None;
    let restore = RestoreConfig::default();

    let mut g = c.benchmark_group("minikernel cpu 20000000: launch to exit");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("cold", |b| {
        b.iter_custom(|n| {
            (0..n).map(|_| to_exit(&run(&config, ConsoleSink::Discard, &mut Quiet).expect("the VM runs"))).sum()
        })
    });
    g.bench_function("restore at 10 ms", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| {
                    to_exit(&snapshot::restore(&dir, &restore, ConsoleSink::Discard, &mut Quiet).expect("it restores"))
                })
                .sum()
        })
    });
    g.finish();
}

/// A Linux guest from launch to the workload's ready line: one cold boot
/// (it takes seconds to minutes on a nested host, too long to repeat: its
/// time is printed beside the group), which saves a snapshot at the init,
/// then restores of that snapshot with the workload's `ready` command.
/// Needs a guest kernel (`scripts/guest-kernel.sh`; `VIRTLAB_GUEST_KERNEL`).
fn linux_restore(c: &mut Criterion) {
    use virtlab_vmm::linux::initramfs::WORKLOAD_PATH;
    use virtlab_vmm::linux::{provision, InitrdSource, LinuxConfig};
    if !kvm_available() {
        return;
    }
    let kernel = match provision::locate(None) {
        Ok(k) => k.path,
        Err(e) => {
            eprintln!("Linux snapshot bench skipped: {e}");
            return;
        }
    };
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path().join("linux");
    let program = vec![WORKLOAD_PATH.to_string(), "ready".to_string()];
    let config = LinuxConfig {
        kernel,
        initrd: InitrdSource::Build { rootfs: None },
        workload: Vec::new(),
        program: program.clone(),
        env: Vec::new(),
        workdir: None,
        extra_cmdline: None,
        mem_size: 128 << 20,
        timeout: Some(Duration::from_secs(600)),
        interactive: false,
        snapshot: Some(SnapshotRequest { at: SnapshotAt::Init, dir: dir.clone() }),
        seccomp: true,
    };
    let cold = virtlab_vmm::run_linux(&config, ConsoleSink::Discard, &mut Quiet).expect("the Linux guest boots");
    let cold_ready = to_ready(&cold.run);
    eprintln!("Linux cold boot to workload ready (one boot, saving the snapshot at its init): {cold_ready:?}");
    let restore = RestoreConfig { args: program, timeout: Some(Duration::from_secs(60)), ..Default::default() };

    let mut g = c.benchmark_group("Linux guest: launch to workload ready");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("restore from an init snapshot", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| {
                    to_ready(&snapshot::restore(&dir, &restore, ConsoleSink::Discard, &mut Quiet).expect("it restores"))
                })
                .sum()
        })
    });
    g.finish();
}

criterion_group!(benches, cold_vs_restore, cold_vs_mid_run_restore, linux_restore);
criterion_main!(benches);
