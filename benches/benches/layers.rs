//! Every layer, same workload: native spawn, our container with each
//! isolation step added in turn, our container on a rootfs directory
//! against the same on a three-layer image, and the workload's modes
//! natively, in a container and in a minikernel VM. Run with `cargo bench
//! --bench layers` (as root, with /dev/kvm; what cannot run here is skipped
//! with a line saying why).

use std::hint::black_box;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use virtlab_container::image::build::{self, BuildOptions};
use virtlab_container::image::{import, run as image_run, Image, Store};
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
    container_on_dir(&rootfs, ns, args);
}

/// `virtlab container run --rootfs DIR /virtlab-workload ...`.
fn container_on_dir(rootfs: &std::path::Path, ns: &str, args: &[&str]) {
    let mut argv = vec!["/virtlab-workload".to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let mut c = ContainerConfig::new(rootfs, argv);
    c.namespaces = Namespaces::parse(ns).expect("valid namespace list");
    c.stdio = CStdio::Capture;
    let out = virtlab_container::run(&c).expect("the container runs");
    assert_eq!(out.exit_code(), 0, "{}", out.stderr_text());
}

/// A store in a temporary directory with a three-layer image: the
/// built-in rootfs imported, then two `COPY` steps (no shell needed).
fn three_layer_image(dir: &std::path::Path) -> (Store, Image) {
    let store = Store::open(dir.join("store")).expect("the bench's image store opens");
    let rootfs = virtlab_container::rootfs::default_rootfs().expect("the rootfs can be built");
    import::import(&store, &rootfs, &"localhost/bench/base".parse().expect("a valid name")).expect("the import");
    let ctx = dir.join("context");
    std::fs::create_dir_all(&ctx).expect("the build context");
    let dockerfile = "FROM localhost/bench/base\nCOPY a.txt /etc/a.txt\nCOPY b.txt /etc/b.txt\n";
    for (file, text) in [("Dockerfile", dockerfile), ("a.txt", "a\n"), ("b.txt", "b\n")] {
        std::fs::write(ctx.join(file), text).expect("the build context");
    }
    let opts = BuildOptions {
        dockerfile: ctx.join("Dockerfile"),
        context: ctx.clone(),
        tag: Some("localhost/bench/app".parse().expect("a valid name")),
        build_args: Default::default(),
        no_cache: false,
        stdio: CStdio::Capture,
    };
    let built = build::build(&store, &opts, &mut |_| {}).expect("the build");
    assert_eq!(built.image.diff_ids().len(), 3);
    (store, built.image)
}

/// `virtlab container run IMAGE /virtlab-workload ready`: a fresh writable
/// layer over the image's layers, then the container.
fn container_on_image(store: &Store, image: &Image, args: &[&str]) {
    let cmd: Vec<String> = std::iter::once("/virtlab-workload").chain(args.iter().copied()).map(String::from).collect();
    let workdir = image_run::workdir(image);
    let prepared = image_run::prepare(store, image, workdir.as_deref()).expect("the writable layer");
    let mut c = ContainerConfig::new(&prepared.mount_point, image_run::command(image, None, &cmd).expect("a command"));
    c.layers = Some(prepared.layers.clone());
    c.env = image_run::environment(image);
    if let Some(w) = workdir {
        c.workdir = w.into();
    }
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

fn rootfs_or_image(c: &mut Criterion) {
    if !root() {
        eprintln!("container image benches skipped: they need root");
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (store, image) = three_layer_image(dir.path());
    let rootfs = virtlab_container::rootfs::default_rootfs().expect("the rootfs can be built");
    let mut g = c.benchmark_group("container: run to exit, rootfs directory or image");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("container run --rootfs DIR", |b| {
        b.iter(|| container_on_dir(&rootfs, "all", black_box(&["ready"])))
    });
    g.bench_function("container run IMAGE (3 layers)", |b| {
        b.iter(|| container_on_image(&store, &image, black_box(&["ready"])))
    });
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

criterion_group!(benches, spawn, isolation_steps, rootfs_or_image, workloads);
criterion_main!(benches);
