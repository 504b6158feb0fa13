//! Every layer, same workload: native spawn, our container with each
//! isolation step added in turn, and the workload's modes natively, in a
//! container and in a minikernel VM. Run with `cargo bench --bench layers`
//! (as root, with /dev/kvm; what cannot run here is skipped with a line
//! saying why).

use std::hint::black_box;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use virtlab_container::{ContainerConfig, Namespaces, Stdio as CStdio};
use virtlab_vmm::{run, ConsoleKind, ConsoleSink, GuestStop, Quiet, VmConfig};

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn kvm() -> bool {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok()
}

fn workload() -> PathBuf {
    virtlab_workload::materialize().expect("the workload binary can be written")
}

fn native(args: &[&str]) {
    let s = Command::new(workload()).args(args).stdout(Stdio::null()).status().expect("the workload starts");
    assert!(s.success());
}

fn container(ns: &str, args: &[&str]) {
    let rootfs = virtlab_container::rootfs::default_rootfs().expect("the rootfs can be built");
    let mut argv = vec!["/virtlab-workload".to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let mut c = ContainerConfig::new(rootfs, argv);
    c.namespaces = Namespaces::parse(ns).expect("valid namespace list");
    c.stdio = CStdio::Capture;
    let out = virtlab_container::run(&c).expect("the container runs");
    assert_eq!(out.exit_code(), 0, "{}", out.stderr_text());
}

fn vm(args: &[&str]) {
    let mut c = VmConfig::builtin_workload(args);
    c.console = ConsoleKind::Pv;
    let r = run(&c, ConsoleSink::Discard, &mut Quiet).expect("the VM runs");
    assert_eq!(r.stop, GuestStop::Exited(0), "{}", r.summary);
}

fn spawn(c: &mut Criterion) {
    c.bench_function("native: spawn workload ready", |b| b.iter(|| native(black_box(&["ready"]))));
}

fn isolation_steps(c: &mut Criterion) {
    if !root() {
        eprintln!("container benches skipped: they need root");
        return;
    }
    let mut g = c.benchmark_group("container: run to exit, isolation added step by step");
    g.measurement_time(Duration::from_secs(5));
    for ns in ["none", "uts", "uts,pid", "uts,pid,mnt", "uts,pid,mnt,net", "uts,pid,mnt,net,user", "all"] {
        g.bench_function(ns, |b| b.iter(|| container(ns, &["ready"])));
    }
    g.finish();
}

fn workloads(c: &mut Criterion) {
    let mut g = c.benchmark_group("workload modes");
    g.measurement_time(Duration::from_secs(5));
    for args in [&["cpu", "1000000"][..], &["syscall", "100"], &["io", "16"]] {
        let name = args.join(" ");
        g.bench_function(format!("native/{name}"), |b| b.iter(|| native(args)));
        if root() {
            g.bench_function(format!("container/{name}"), |b| b.iter(|| container("all", args)));
        }
        if kvm() {
            g.bench_function(format!("vm-mini-pv/{name}"), |b| b.iter(|| vm(args)));
        }
    }
    g.finish();
}

criterion_group!(benches, spawn, isolation_steps, workloads);
criterion_main!(benches);
