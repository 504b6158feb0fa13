//! The report as CSV: one line per measured run, for students' own plots.

use super::CompareReport;
use crate::launch::MemoryMethod;

/// One CSV line per measured run, for students' own plots.
pub fn csv(report: &CompareReport) -> String {
    let mut t = String::from(
        "env,workload,run,startup_us,total_us,inside_ns,exit_status,vm_exits,console_exits,syscalls_fast,syscalls_trapped,memory_bytes,memory_method\n",
    );
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_default();
    let opt_u = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_default();
    for s in &report.samples {
        t += &format!(
            "{},{},{},{},{:.3},{},{},{},{},{},{},{},{}\n",
            s.env.name(),
            s.workload,
            s.run,
            opt(s.startup_us),
            s.total_us,
            opt(s.inside_ns),
            s.exit_status,
            opt_u(s.vm_exits),
            opt_u(s.console_exits),
            opt_u(s.syscalls_fast),
            opt_u(s.syscalls_trapped),
            opt_u(s.memory_bytes),
            s.memory_method.map(MemoryMethod::name).unwrap_or_default(),
        );
    }
    t
}
