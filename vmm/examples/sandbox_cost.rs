//! What the VMM's seccomp sandbox costs: the minikernel run (open
//! /dev/kvm to teardown, in-process) with its filters and without, the
//! two alternating so that both see the same host, and the medians.
//!
//! ```sh
//! cargo run --profile bench -p virtlab-vmm --example sandbox_cost -- 40 ready
//! cargo run --profile bench -p virtlab-vmm --example sandbox_cost -- 40 cpu 1000000
//! ```
//!
//! The first argument is the number of runs of each kind (default 20), the
//! rest the workload's arguments (default `ready`). It prints the median
//! of the whole run and of its `first-entry` step (which holds the vCPU
//! thread's start and the filters' installation), and their ratios.

use std::time::Instant;

use virtlab_vmm::{run, ConsoleSink, GuestStop, Quiet, Step, VmConfig};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(20).max(1);
    let workload: Vec<String> = args.collect();
    let workload: Vec<&str> =
        if workload.is_empty() { vec!["ready"] } else { workload.iter().map(|s| s.as_str()).collect() };
    let mut config = VmConfig::builtin_workload(&workload);
    // Warm up: page in the binary and the minikernel, let KVM settle.
    for _ in 0..3 {
        run(&config, ConsoleSink::Discard, &mut Quiet)?;
    }
    // [with filters, without]: whole runs and first-entry steps, in µs.
    let mut total = [Vec::new(), Vec::new()];
    let mut entry = [Vec::new(), Vec::new()];
    for i in 0..2 * runs {
        // Alternate, starting with each kind half of the time.
        let kind = (i + i / 2) % 2;
        config.seccomp = kind == 0;
        let started = Instant::now();
        let r = run(&config, ConsoleSink::Discard, &mut Quiet)?;
        let took = started.elapsed().as_secs_f64() * 1e6;
        if r.stop != GuestStop::Exited(0) {
            return Err(format!("the guest did not exit well: {}", r.summary).into());
        }
        total[kind].push(took);
        let first = r.phases.iter().find(|p| p.step == Step::FirstEntry).map(|p| p.took_us).unwrap_or(0.0);
        entry[kind].push(first);
    }
    let [t_on, t_off] = total.each_mut().map(|v| median(v));
    let [e_on, e_off] = entry.each_mut().map(|v| median(v));
    println!("minikernel `{}`, {runs} runs each, alternating (medians):", workload.join(" "));
    println!(
        "  whole run:   with seccomp {:>9.1} us   --no-seccomp {:>9.1} us   ratio {:.3}",
        t_on,
        t_off,
        t_on / t_off
    );
    println!(
        "  first-entry: with seccomp {:>9.1} us   --no-seccomp {:>9.1} us   (+{:.1} us)",
        e_on,
        e_off,
        e_on - e_off
    );
    Ok(())
}
