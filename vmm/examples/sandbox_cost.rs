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
//! of the whole run and of each step: `vcpu-setup` compiles the filters,
//! `first-entry` holds the vCPU thread's start and the filter's
//! installation, and every `KVM_RUN` after it passes through the filter.

use std::collections::BTreeMap;
use std::time::Instant;

use virtlab_vmm::{run, ConsoleSink, GuestStop, Quiet, VmConfig};

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
    // [with filters, without]: whole runs and each step, in µs.
    let mut total = [Vec::new(), Vec::new()];
    let mut steps: [BTreeMap<&str, Vec<f64>>; 2] = Default::default();
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
        for p in &r.phases {
            steps[kind].entry(p.name).or_default().push(p.took_us);
        }
    }
    let [t_on, t_off] = total.each_mut().map(|v| median(v));
    println!("minikernel `{}`, {runs} runs each, alternating (medians, us):", workload.join(" "));
    println!("  {:<16} {:>12} {:>14} {:>10}", "", "with seccomp", "--no-seccomp", "ratio");
    println!("  {:<16} {:>12.1} {:>14.1} {:>10.3}", "whole run", t_on, t_off, t_on / t_off);
    let [on, off] = &mut steps;
    for (name, v) in on.iter_mut() {
        let Some(w) = off.get_mut(name) else { continue };
        let (a, b) = (median(v), median(w));
        println!("  {:<16} {:>12.1} {:>14.1} {:>+10.1}", name, a, b, a - b);
    }
    Ok(())
}
