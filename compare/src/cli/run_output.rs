//! What `container run` prints about a run: the `--explain` ending, the
//! `--timings` table and the `--json` object.

use std::time::Duration;

use virtlab_container::{ContainerConfig, Outcome};

use super::container::exit_code;
use super::EXIT_TIMEOUT;

pub(super) fn explain_end(o: &Outcome) {
    eprintln!("[virtlab launcher, on the host] exit: {}", describe_status(o));
    if let Some(c) = &o.cgroup {
        eprintln!(
            "    cgroup ({}): memory peak {}, CPU time {}, OOM kills {}; removed",
            c.mode.name(),
            c.stats.memory_peak.map_or("n/a".into(), mib),
            c.stats.cpu_time.map_or("n/a".into(), ms),
            c.stats.oom_kills
        );
    }
}

fn describe_status(o: &Outcome) -> String {
    let mut s = match o.status {
        virtlab_container::ExitStatus::Exited(c) => format!("exited with status {c}"),
        virtlab_container::ExitStatus::Signaled(sig) if o.timed_out => {
            format!("timed out: killed by signal {sig} when the timeout expired (exit status {EXIT_TIMEOUT})")
        }
        virtlab_container::ExitStatus::Signaled(sig) => format!("killed by signal {sig} (exit status {})", 128 + sig),
    };
    if o.oom_killed {
        s.push_str("; the cgroup's OOM killer struck: the memory limit was exceeded");
    }
    if o.timed_out && matches!(o.status, virtlab_container::ExitStatus::Exited(_)) {
        s.push_str(&format!("; the timeout expired (exit status {EXIT_TIMEOUT})"));
    }
    if let Some(sig) = o.forwarded_signal {
        s.push_str(&format!("; signal {sig} was forwarded"));
    }
    s
}

pub(super) fn mib(b: u64) -> String {
    format!("{:.2} MiB", b as f64 / (1 << 20) as f64)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

pub(super) fn timings_table(o: &Outcome) -> String {
    let mut t = String::new();
    t.push_str(&format!("{:<14} {:>12} {:>12}\n", "phase", "at (ms)", "step (ms)"));
    let mut prev = Duration::ZERO;
    for s in &o.timeline {
        let delta = s.at.saturating_sub(prev);
        t.push_str(&format!(
            "{:<14} {:>12.3} {:>12.3}\n",
            s.step.name(),
            s.at.as_secs_f64() * 1e3,
            delta.as_secs_f64() * 1e3
        ));
        prev = s.at;
    }
    t.push_str(&format!("{:<14} {:>12.3}\n", "total", o.total.as_secs_f64() * 1e3));
    if let Some(c) = &o.cgroup {
        t.push_str(&format!(
            "cgroup {}: memory peak {}, CPU time {}, OOM kills {}\n",
            c.mode.name(),
            c.stats.memory_peak.map_or("n/a".into(), mib),
            c.stats.cpu_time.map_or("n/a".into(), ms),
            c.stats.oom_kills
        ));
    }
    t.push_str(&format!("exit: {}\n", describe_status(o)));
    t
}

pub(super) fn to_json(cfg: &ContainerConfig, o: &Outcome) -> serde_json::Value {
    let us = |d: Duration| d.as_nanos() as f64 / 1e3;
    let timeline: Vec<serde_json::Value> =
        o.timeline.iter().map(|s| serde_json::json!({ "step": s.step.name(), "at_us": us(s.at) })).collect();
    let (status, value) = match o.status {
        virtlab_container::ExitStatus::Exited(c) => ("exited", c),
        virtlab_container::ExitStatus::Signaled(s) => ("signaled", s),
    };
    serde_json::json!({
        "id": o.id,
        "rootfs": cfg.rootfs,
        "command": cfg.argv,
        "namespaces": cfg.namespaces.names(),
        "limits": cfg.limits,
        "exit_code": exit_code(o),
        "status": status,
        "status_value": value,
        "timed_out": o.timed_out,
        "oom_killed": o.oom_killed,
        "forwarded_signal": o.forwarded_signal,
        "timeline": timeline,
        "total_us": us(o.total),
        "cgroup": o.cgroup.as_ref().map(|c| serde_json::json!({
            "mode": c.mode.name(),
            "paths": c.paths,
            "memory_peak_bytes": c.stats.memory_peak,
            "cpu_time_us": c.stats.cpu_time.map(us),
            "oom_kills": c.stats.oom_kills,
            "memory_limit_hits": c.stats.memory_limit_hits,
        })),
        "uid_map": o.uid_map,
        "gid_map": o.gid_map,
        "stdout": o.stdout_text(),
        "stderr": o.stderr_text(),
        "warnings": o.warnings,
    })
}

#[cfg(test)]
mod tests {
    use virtlab_container::ExitStatus;

    use super::*;

    fn outcome(status: ExitStatus, timed_out: bool) -> Outcome {
        Outcome {
            id: "1-0".into(),
            status,
            timed_out,
            oom_killed: false,
            forwarded_signal: None,
            timeline: Vec::new(),
            total: Duration::ZERO,
            cgroup: None,
            uid_map: None,
            gid_map: None,
            rootfs_idmapped: false,
            stdout: Vec::new(),
            stderr: Vec::new(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn a_timeout_is_124_and_a_sigkill_from_elsewhere_stays_137() {
        let timed_out = outcome(ExitStatus::Signaled(libc::SIGKILL), true);
        assert_eq!(exit_code(&timed_out), 124);
        assert!(
            describe_status(&timed_out).starts_with("timed out: killed by signal 9"),
            "{}",
            describe_status(&timed_out)
        );
        let killed = outcome(ExitStatus::Signaled(libc::SIGKILL), false);
        assert_eq!(exit_code(&killed), 137);
        assert_eq!(describe_status(&killed), "killed by signal 9 (exit status 137)");
        assert_eq!(exit_code(&outcome(ExitStatus::Exited(3), false)), 3);
    }
}
