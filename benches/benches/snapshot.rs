//! Snapshots: the minikernel from launch to the workload's ready line,
//! booted cold and restored from a snapshot (taken once, outside the
//! timing). Both measure the report's own clock, from the first host step
//! to the ready marker on the console. A second group runs a `cpu` loop to
//! its exit, cold and resumed from a snapshot taken 10 ms into it
//! (`--snapshot-at 10ms`). A third restores a Linux guest to its ready
//! line from an `init` snapshot (the init forks and execs the workload)
//! and from a `warm` one (the workload's process is already there), two
//! boots taken once outside the timing; without a Linux guest kernel
//! (`scripts/guest-kernel.sh`) it says so and is left out. Run with
//! `cargo bench --bench snapshot`. Without /dev/kvm these benchmarks say so
//! and measure nothing.

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

fn linux_init_vs_warm_restore(c: &mut Criterion) {
    use virtlab_vmm::linux::{initramfs::WORKLOAD_PATH, provision, InitrdSource, LinuxConfig};
    if !kvm_available() {
        return;
    }
    let kernel = match provision::test_kernel(&[provision::Origin::Minimal, provision::Origin::Explicit]) {
        Ok(k) => k.path,
        Err(why) => {
            eprintln!("the Linux snapshot bench is skipped: {why}");
            return;
        }
    };
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let mut dirs = Vec::new();
    for at in [SnapshotAt::Init, SnapshotAt::Warm] {
        let dir = tmp.path().join(at.name());
        let config = LinuxConfig {
            kernel: kernel.clone(),
            initrd: InitrdSource::Build { rootfs: None },
            workload: Vec::new(),
            program: vec![WORKLOAD_PATH.into(), "ready".into()],
            env: Vec::new(),
            workdir: None,
            extra_cmdline: None,
            mem_size: 128 << 20,
            timeout: Some(Duration::from_secs(600)),
            interactive: false,
            snapshot: Some(SnapshotRequest { at, dir: dir.clone() }),
            seccomp: true,
        };
        let r = virtlab_vmm::run_linux(&config, ConsoleSink::Discard, &mut Quiet).expect("the Linux guest boots");
        assert!(r.run.snapshot.is_some(), "the {} snapshot is taken", at.name());
        dirs.push((at.name(), dir));
    }
    let restore = RestoreConfig {
        args: vec![WORKLOAD_PATH.into(), "ready".into()],
        timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let mut g = c.benchmark_group("linux: restore to workload ready");
    g.sample_size(10);
    for (name, dir) in &dirs {
        g.bench_function(format!("{name} snapshot"), |b| {
            b.iter_custom(|n| {
                (0..n)
                    .map(|_| {
                        to_ready(
                            &snapshot::restore(dir, &restore, ConsoleSink::Discard, &mut Quiet).expect("it restores"),
                        )
                    })
                    .sum()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, cold_vs_restore, cold_vs_mid_run_restore, linux_init_vs_warm_restore);
criterion_main!(benches);
