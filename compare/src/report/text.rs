//! The report as text for the terminal: fixed-width tables and the
//! sentences under them.

use super::notes::{estimate_legend, memory_note, tcg_note, SCALE_MEMORY_NOTE};
use super::tables::{self, Align, Table};
use super::CompareReport;
use crate::launch::{Env, Sample};

/// `table` with its columns padded to their widths, one line per row under
/// a line of headings.
fn render(table: &Table) -> String {
    let mut t = line(table, table.columns.iter().map(|c| c.heading));
    for row in &table.rows {
        t += &line(table, row.iter().map(String::as_str));
    }
    t
}

/// One line of `table`: each cell padded to its column's width, or to the
/// widest cell of that column if one is wider (a long environment name),
/// so the columns stay aligned.
fn line<'c>(table: &Table, cells: impl Iterator<Item = &'c str>) -> String {
    let padded: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .zip(cells)
        .map(|((i, c), v)| {
            let widest = table.rows.iter().filter_map(|r| r.get(i)).map(|cell| cell.chars().count()).max().unwrap_or(0);
            let w = c.width.max(widest);
            match c.align {
                Align::Left => format!("{v:<w$}"),
                Align::Right => format!("{v:>w$}"),
            }
        })
        .collect();
    padded.join(" ") + "\n"
}

/// The table, as text.
pub fn table(report: &CompareReport) -> String {
    render(&tables::results(report))
}

/// The peers section of the text report.
pub fn peers_text(report: &CompareReport) -> String {
    if report.peers.is_empty() {
        return String::new();
    }
    let mut t = String::from(
        "\nOurs against the real thing (ours / peer, medians from this run; below 1 means ours is faster or smaller):\n",
    );
    t += &render(&tables::peers(report));
    if report.peers.iter().any(|p| p.memory_ratio.is_some() && p.peer != Env::Podman) {
        t += "memory: VMM memory, ours / QEMU: the peak of a fresh memory cgroup around each VMM process (its own \
              memory plus the guest pages it touched).\n";
    }
    if report.peers.iter().any(|p| p.memory_ratio.is_some() && p.peer == Env::Podman) {
        t += "memory: against podman+runc: each container's cgroup peak (podman's includes the runtime's container \
              init, not podman or conmon).\n";
    }
    if report.peers.iter().any(|p| p.ours == Env::VmLinux) {
        t += "vm-linux's memory is an estimate (guest pages + VMM RSS overhead), so it is not set against QEMU's.\n";
    }
    t
}

/// The whole text report: host, table, claims, what was left out.
pub fn text(report: &CompareReport) -> String {
    let mut t = String::new();
    for l in report.host.describe() {
        t += &l;
        t += "\n";
    }
    t += &format!(
        "\n{} runs after {} warm-up(s) per cell, {}; medians, spread = (max-min)/median. \"work\" is the workload's own \
         timing, \"x native\" the ratio to native in this same run.\n\n",
        report.config.runs, report.config.warmup, report.config.order
    );
    t += &table(report);
    t += &estimate_legend(report);
    let peers = peers_text(report);
    let note = tcg_note(report);
    t += &peers;
    if peers.is_empty() && !note.is_empty() {
        t += "\n";
    }
    t += &note;
    t += "\nWhat this run shows about the course notes' claims:\n";
    for c in &report.claims {
        t += &format!("- {}: {}.\n", c.claim, c.measured);
    }
    let memory = memory_note(report);
    if !memory.is_empty() {
        t += "\n";
        t += &memory;
    }
    let linux = |s: &&Sample| matches!(s.env, Env::VmLinux | Env::VmLinuxRestore);
    let fixups: u64 = report.samples.iter().filter(linux).filter_map(|s| s.host_fixups).sum();
    if fixups > 0 {
        let mut rows: Vec<&str> = report.samples.iter().filter(linux).map(|s| s.env.name()).collect();
        rows.sort_unstable();
        rows.dedup();
        t += &format!(
            "\n{}: this host's nested KVM cannot run a Linux guest's user mode unaided; the VMM's host \
             work-arounds (hidden CPU features, emulated instructions) made {fixups} fix-up(s) over these runs, and the \
             guest kernel carries a small patch that serves a trapped SYSCALL (see guest/linux/README.md).\n",
            rows.join(", ")
        );
    }
    for s in &report.skipped {
        t += &format!("\nskipped {}: {}", s.env.name(), s.reason);
    }
    if !report.skipped.is_empty() {
        t += "\n";
    }
    if !report.failures.is_empty() {
        t += &format!("\n{} launch(es) failed:\n", report.failures.len());
        for f in report.failures.iter().take(10) {
            t += &format!("  {} {} run {}: {}\n", f.env.name(), f.workload, f.run, f.error);
        }
    }
    t += &format!("\n(the comparison took {:.1} s)\n", report.wall_seconds);
    t
}

/// The `--scale` table.
pub fn scale_table(report: &CompareReport) -> String {
    let mut t = String::from("\nMany at once (`ready`, all started together):\n");
    t += &render(&tables::scale(report));
    t += SCALE_MEMORY_NOTE;
    t += ".\n";
    t
}
