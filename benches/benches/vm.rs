//! VM benchmarks: KVM VM create+destroy, and the minikernel booting the
//! workload to its exit, in-process. Run with `cargo bench --bench vm`.
//!
//! Without /dev/kvm these benchmarks say so and measure nothing.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use virtlab_vmm::{run, ConsoleKind, ConsoleSink, GuestStop, Quiet, VmConfig};

fn kvm_available() -> bool {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => true,
        Err(e) => {
            eprintln!("vm benches skipped: /dev/kvm cannot be opened ({e})");
            false
        }
    }
}

fn create_destroy(c: &mut Criterion) {
    if !kvm_available() {
        return;
    }
    let kvm = kvm_ioctls::Kvm::new().expect("/dev/kvm opens");
    c.bench_function("kvm: create+destroy VM", |b| {
        b.iter(|| {
            let vm = kvm.create_vm().expect("KVM_CREATE_VM");
            black_box(&vm);
        })
    });
}

fn boot_to_exit(c: &mut Criterion) {
    if !kvm_available() {
        return;
    }
    let mut g = c.benchmark_group("minikernel: create VM to workload exit");
    g.measurement_time(Duration::from_secs(5));
    for (name, args, console) in [
        ("ready/uart", &["ready"][..], ConsoleKind::Uart),
        ("ready/pv", &["ready"][..], ConsoleKind::Pv),
        ("cpu 10M/pv", &["cpu", "10000000"][..], ConsoleKind::Pv),
        ("io 4KiB/uart", &["io", "4"][..], ConsoleKind::Uart),
        ("io 4KiB/pv", &["io", "4"][..], ConsoleKind::Pv),
    ] {
        let mut config = VmConfig::builtin_workload(args);
        config.console = console;
        g.bench_function(name, |b| {
            b.iter(|| {
                let r = run(&config, ConsoleSink::Discard, &mut Quiet).expect("the VM runs");
                assert_eq!(r.stop, GuestStop::Exited(0), "{}", r.summary);
                black_box(r)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, create_destroy, boot_to_exit);
criterion_main!(benches);
