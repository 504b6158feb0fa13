//! A container's life through the `virtlab` binary, as a student types it,
//! and podman's beside it: `run -d` until the container is up, `ps -a`
//! over 100 containers, and `run --rm IMAGE true` against `podman run --rm`
//! of the same image (saved by virtlab, loaded by podman, run with runc).
//! Run with `cargo bench -p virtlab-compare --bench lifecycle` as root;
//! what cannot run here is skipped with a line saying why.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use virtlab_compare::launch::PodmanStorage;

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn virtlab(store: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(args)
        .env("VIRTLAB_ROOT", store)
        .stdin(Stdio::null())
        .output()
        .expect("virtlab runs");
    assert!(out.status.success(), "virtlab {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A store with the built-in rootfs (the workload and busybox) imported as
/// `busybox`.
fn store(dir: &Path) -> PathBuf {
    let store = dir.join("store");
    let rootfs = dir.join("rootfs");
    virtlab(&store, &["container", "rootfs", utf8(&rootfs)]);
    virtlab(&store, &["image", "import", utf8(&rootfs), "busybox"]);
    store
}

/// podman's `run --rm` of the image, with what these hosts need (runc, as
/// crun refuses hybrid cgroups, and the ulimits).
const PODMAN_RUN: [&str; 10] = [
    "run",
    "--rm",
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
    "localhost/busybox:latest",
    "true",
];

fn podman_installed() -> bool {
    ["podman", "runc"].iter().all(|p| {
        Command::new(p).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    })
}

fn lifecycle(c: &mut Criterion) {
    if !root() {
        eprintln!("lifecycle: skipped, containers need root");
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = store(dir.path());
    let mut g = c.benchmark_group("lifecycle");
    g.sample_size(20).measurement_time(Duration::from_secs(10));

    // From `run -d` to the container's command running (when run -d
    // returns); the removal is outside the timing.
    g.bench_function("run -d until Up", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let out = virtlab(&store, &["run", "-d", "busybox", "sleep", "60"]);
                total += t.elapsed();
                let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
                virtlab(&store, &["rm", "-f", &id]);
            }
            total
        })
    });

    // `ps -a` with 100 containers in the store.
    for _ in 0..100 {
        virtlab(&store, &["create", "busybox", "true"]);
    }
    g.bench_function("ps -a, 100 containers", |b| b.iter(|| virtlab(&store, &["ps", "-a"])));
    let ids = String::from_utf8_lossy(&virtlab(&store, &["ps", "-aq"]).stdout).into_owned();
    let mut rm = vec!["rm"];
    rm.extend(ids.lines());
    virtlab(&store, &rm);

    g.bench_function("virtlab run --rm IMAGE true", |b| {
        b.iter(|| virtlab(&store, &["run", "--rm", "busybox", "true"]))
    });
    if podman_installed() {
        let storage = PodmanStorage { dir: dir.path().join("podman") };
        let archive = dir.path().join("busybox.tar");
        virtlab(&store, &["image", "save", "busybox", "-o", utf8(&archive)]);
        virtlab_compare::podman::load(&storage, &archive).expect("podman loads the image");
        g.bench_function("podman run --rm IMAGE true", |b| {
            b.iter(|| {
                let s = virtlab_compare::podman::podman(&storage)
                    .args(PODMAN_RUN)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .expect("podman runs");
                assert!(s.success());
            })
        });
        virtlab_compare::podman::remove_all(&storage);
    } else {
        eprintln!("lifecycle: podman run skipped, podman or runc is not installed (apt-get install podman runc)");
    }
    g.finish();
}

criterion_group!(benches, lifecycle);
criterion_main!(benches);
