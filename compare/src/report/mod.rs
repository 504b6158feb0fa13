//! The comparison: samples in, rows of statistics, one plain sentence per
//! claim of the course notes and ours against the peers out; then the same
//! report in each output.
//!
//! What the report says is worked out once: the rows and ratios (here),
//! the claims ([`claims`](fn@claims)), the tables cell by cell
//! ([`tables`]) and the notes beside them ([`tcg_note`],
//! [`estimate_legend`], [`memory_note`]). Each output only lays that out:
//! the terminal's text ([`text`](fn@text)), Markdown
//! ([`markdown`](fn@markdown)), CSV ([`csv`](fn@csv)), one HTML page
//! ([`html`](fn@html)); the JSON is the
//! [`CompareReport`] serialized, and the charts are [`crate::svg`]'s. A
//! new output is one more renderer file beside `text.rs` and
//! `markdown.rs`.
//!
//! The JSON form is versioned (`schema`, see `compare/schema/compare.v1.json`
//! and docs in README): fields are only ever added within a version.
//! [`from_json`] reads a saved run back (for `virtlab report`), refusing
//! another version by name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::host::HostInfo;
use crate::launch::{Env, MemoryMethod, Sample, Workload};
use crate::stats::{ratio, Summary};

pub mod claims;
mod csv;
mod html;
mod load;
mod markdown;
mod notes;
pub mod tables;
#[cfg(test)]
mod tests;
mod text;

pub use claims::{claims, Claim};
pub use csv::csv;
pub use html::html;
pub use load::{from_json, LoadError};
pub use markdown::markdown;
pub use notes::{estimate_legend, memory_note, tcg_note, ANCHORS};
pub use text::{peers_text, scale_table, table, text};

/// The schema name and version of the JSON report.
pub const SCHEMA: &str = "virtlab.compare/1";

/// How the comparison was run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    /// Measured runs per environment and workload.
    pub runs: usize,
    /// Warm-up runs (not kept).
    pub warmup: usize,
    /// Environments asked for.
    pub envs: Vec<Env>,
    /// Workloads.
    pub workloads: Vec<Workload>,
    /// The order runs were made in.
    pub order: String,
}

/// An environment left out, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Skipped {
    /// Which.
    pub env: Env,
    /// Why, and how to get it.
    pub reason: String,
}

/// A launch that failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    /// Where.
    pub env: Env,
    /// Which workload.
    pub workload: String,
    /// Run index (or warm-up).
    pub run: usize,
    /// The error.
    pub error: String,
}

/// Statistics of one environment on one workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// Environment.
    pub env: Env,
    /// Workload mode.
    pub workload: String,
    /// Samples summarised.
    pub runs: usize,
    /// Launch to ready marker, µs.
    pub startup_us: Option<Summary>,
    /// The workload's own time, ns.
    pub inside_ns: Option<Summary>,
    /// Launch to exit, µs.
    pub total_us: Option<Summary>,
    /// inside_ns median / native's.
    pub inside_ratio: Option<f64>,
    /// total_us median / native's.
    pub total_ratio: Option<f64>,
    /// startup median / native's.
    pub startup_ratio: Option<f64>,
    /// VM exits per run.
    pub vm_exits: Option<Summary>,
    /// VM exits per second of launch-to-exit time.
    pub exits_per_second: Option<f64>,
    /// Console exits per KiB of output (io workload, VMs).
    pub console_exits_per_kib: Option<f64>,
    /// Host memory per instance, bytes.
    pub memory_bytes: Option<Summary>,
    /// How `memory_bytes` was measured.
    pub memory_method: Option<MemoryMethod>,
    /// Share of system calls trapped rather than entered through SYSCALL.
    pub syscalls_trapped_share: Option<f64>,
    /// The PID the workload saw (first run).
    pub pid: Option<u64>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompareReport {
    /// [`SCHEMA`].
    pub schema: String,
    /// virtlab's version.
    pub virtlab_version: String,
    /// When (seconds since the Unix epoch).
    pub started_unix: u64,
    /// Wall time of the whole comparison, seconds.
    pub wall_seconds: f64,
    /// The machine.
    pub host: HostInfo,
    /// How it ran.
    pub config: RunConfig,
    /// Environments left out.
    pub skipped: Vec<Skipped>,
    /// Failed launches.
    pub failures: Vec<Failure>,
    /// One row per environment and workload.
    pub rows: Vec<Row>,
    /// One sentence per claim of the course notes.
    pub claims: Vec<Claim>,
    /// Every measured run.
    pub samples: Vec<Sample>,
    /// Many instances at once (`--scale`).
    pub scale: Vec<crate::scale::ScalePoint>,
    /// Ours against the peers, as ratios from this run.
    pub peers: Vec<PeerRatio>,
    /// The VMM process's own memory (peak RSS minus the guest pages it
    /// touched), from one `virtlab vm run -- ready`; None if no VM ran.
    pub vmm_overhead_bytes: Option<u64>,
}

/// One of ours against one peer on one workload: ours / peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerRatio {
    /// Ours.
    pub ours: Env,
    /// The peer.
    pub peer: Env,
    /// Workload mode.
    pub workload: String,
    /// Launch to ready, ours / peer.
    pub startup_ratio: Option<f64>,
    /// Launch to exit, ours / peer.
    pub total_ratio: Option<f64>,
    /// The workload's own time, ours / peer.
    pub inside_ratio: Option<f64>,
    /// Host memory per instance, ours / peer, when both were measured the
    /// same way (for VMs: the VMM process with the guest pages it touched).
    pub memory_ratio: Option<f64>,
}

/// Pairs each peer with the environment of ours that does the same job.
pub fn peer_ratios(rows: &[Row]) -> Vec<PeerRatio> {
    let pairs = [
        (Env::VmMiniPv, Env::QemuMicrovm),
        (Env::VmMiniUart, Env::QemuMicrovm),
        (Env::VmMiniUart, Env::QemuTcg),
        (Env::VmMiniPv, Env::QemuTcg),
        (Env::VmLinux, Env::QemuMicrovmLinux),
        (Env::VmLinux, Env::QemuTcgLinux),
        (Env::Container, Env::Bwrap),
        (Env::Container, Env::Runc),
        (Env::Container, Env::Crun),
        (Env::ContainerImage, Env::Podman),
        (Env::PodmanVirtlab, Env::Podman),
    ];
    let mut out = Vec::new();
    for r in rows.iter().filter(|r| r.env.is_peer()) {
        for (ours, peer) in pairs.iter().filter(|(_, p)| *p == r.env) {
            let Some(o) = find(rows, *ours, &r.workload) else { continue };
            out.push(PeerRatio {
                ours: *ours,
                peer: *peer,
                workload: r.workload.clone(),
                startup_ratio: ratio(med(&o.startup_us), med(&r.startup_us)),
                total_ratio: ratio(med(&o.total_us), med(&r.total_us)),
                inside_ratio: ratio(med(&o.inside_ns), med(&r.inside_ns)),
                memory_ratio: if o.memory_method.is_some() && o.memory_method == r.memory_method {
                    ratio(med(&o.memory_bytes), med(&r.memory_bytes))
                } else {
                    None
                },
            });
        }
    }
    out
}

fn values(samples: &[&Sample], f: impl Fn(&Sample) -> Option<f64>) -> Vec<f64> {
    samples.iter().filter_map(|s| f(s)).collect()
}

/// Summarises the samples into rows (table order: workload, then
/// environment), with ratios against native in the same run.
pub fn rows(samples: &[Sample], envs: &[Env], workloads: &[Workload]) -> Vec<Row> {
    let mut rows = Vec::new();
    for w in workloads {
        let of = |e: Env| -> Vec<&Sample> { samples.iter().filter(|s| s.env == e && s.workload == w.mode).collect() };
        let native = of(Env::Native);
        let n_startup = Summary::of(&values(&native, |s| s.startup_us)).map(|s| s.median);
        let n_inside = Summary::of(&values(&native, |s| s.inside_ns)).map(|s| s.median);
        let n_total = Summary::of(&values(&native, |s| Some(s.total_us))).map(|s| s.median);
        for &e in envs {
            let ss = of(e);
            if ss.is_empty() {
                continue;
            }
            let startup = Summary::of(&values(&ss, |s| s.startup_us));
            let inside = Summary::of(&values(&ss, |s| s.inside_ns));
            let total = Summary::of(&values(&ss, |s| Some(s.total_us)));
            let exits = Summary::of(&values(&ss, |s| s.vm_exits.map(|x| x as f64)));
            let exits_per_second = match (&exits, &total) {
                (Some(x), Some(t)) if t.median > 0.0 => Some(x.median / (t.median / 1e6)),
                _ => None,
            };
            let kib = w.arg.filter(|_| w.mode == "io").map(|k| k as f64);
            let console = Summary::of(&values(&ss, |s| s.console_exits.map(|x| x as f64)));
            let console_exits_per_kib = match (console, kib) {
                (Some(c), Some(k)) if k > 0.0 => Some(c.median / k),
                _ => None,
            };
            let (fast, trapped): (u64, u64) = ss
                .iter()
                .map(|s| (s.syscalls_fast.unwrap_or(0), s.syscalls_trapped.unwrap_or(0)))
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            let trapped_share = (fast + trapped > 0).then(|| trapped as f64 / (fast + trapped) as f64);
            rows.push(Row {
                env: e,
                workload: w.mode.clone(),
                runs: ss.len(),
                startup_ratio: ratio(startup.map(|s| s.median), n_startup),
                inside_ratio: ratio(inside.map(|s| s.median), n_inside),
                total_ratio: ratio(total.map(|s| s.median), n_total),
                startup_us: startup,
                inside_ns: inside,
                total_us: total,
                vm_exits: exits,
                exits_per_second,
                console_exits_per_kib,
                memory_bytes: Summary::of(&values(&ss, |s| s.memory_bytes.map(|m| m as f64))),
                memory_method: ss.iter().find_map(|s| s.memory_method.filter(|_| s.memory_bytes.is_some())),
                syscalls_trapped_share: trapped_share,
                pid: ss.first().and_then(|s| s.pid),
            });
        }
    }
    rows
}

fn find<'r>(rows: &'r [Row], env: Env, workload: &str) -> Option<&'r Row> {
    rows.iter().find(|r| r.env == env && r.workload == workload)
}

fn med(s: &Option<Summary>) -> Option<f64> {
    s.map(|s| s.median)
}

/// Human-friendly time from microseconds.
pub fn fmt_us(us: f64) -> String {
    if us < 1.0 {
        format!("{:.0} ns", us * 1e3)
    } else if us < 1000.0 {
        format!("{us:.1} us")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn fmt_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}x")
    } else if r >= 10.0 {
        format!("{r:.1}x")
    } else {
        format!("{r:.2}x")
    }
}

fn fmt_mib(b: f64) -> String {
    if b < 1024.0 * 1024.0 {
        format!("{:.0} KiB", b / 1024.0)
    } else {
        format!("{:.1} MiB", b / 1048576.0)
    }
}

/// A `virtlab compare` command that makes a run like `report`: its
/// environments, workloads with their sizes, runs, warm-ups and
/// `--scale` counts (for a page made from a saved run, which does not
/// keep the command line itself).
pub fn equivalent_command(report: &CompareReport) -> String {
    let envs: Vec<&str> = report.config.envs.iter().map(|e| e.name()).collect();
    let workloads: Vec<String> = report
        .config
        .workloads
        .iter()
        .map(|w| match w.arg {
            Some(a) => format!("{}={a}", w.mode),
            None => w.mode.clone(),
        })
        .collect();
    let mut c = format!(
        "virtlab compare --runs {} --warmup {} --env {} --workload {}",
        report.config.runs,
        report.config.warmup,
        envs.join(","),
        workloads.join(",")
    );
    let mut counts: Vec<usize> = Vec::new();
    for p in &report.scale {
        if !counts.contains(&p.instances) {
            counts.push(p.instances);
        }
    }
    if !counts.is_empty() {
        let counts: Vec<String> = counts.iter().map(usize::to_string).collect();
        c += &format!(" --scale {}", counts.join(","));
    }
    c
}

/// Phases of a typical run of each environment on `workload`, for the
/// timeline chart: (environment, [(phase, at µs)]). The typical run is
/// the one whose launch-to-exit time is the median (the earlier of the two
/// middle ones for an even count), so that one slow first run does not
/// stand for the environment.
pub fn timelines(samples: &[Sample], workload: &str) -> Vec<(Env, Vec<(String, f64)>)> {
    let mut runs: BTreeMap<Env, Vec<&Sample>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.workload == workload) {
        runs.entry(s.env).or_default().push(s);
    }
    runs.into_iter()
        .map(|(env, mut ss)| {
            ss.sort_by(|a, b| a.total_us.total_cmp(&b.total_us));
            let typical = ss[(ss.len() - 1) / 2];
            (env, typical.phases.iter().map(|p| (p.name.clone(), p.at_us)).collect())
        })
        .collect()
}
