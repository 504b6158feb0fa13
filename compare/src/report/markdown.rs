//! The report as Markdown, for `benches/README.md` and for students'
//! notes: the same tables and sentences as the text report, plus the
//! command that made it and the published anchors.

use super::notes::{estimate_legend, memory_note, SCALE_MEMORY_NOTE};
use super::tables::{self, Align, Table};
use super::CompareReport;

/// `table` as a Markdown table (its diagnostic columns left out), with
/// the full headings.
fn render(table: &Table) -> String {
    let shown: Vec<usize> = (0..table.columns.len()).filter(|&i| !table.columns[i].diagnostic).collect();
    let line = |cells: Vec<&str>| format!("| {} |\n", cells.join(" | "));
    let mut t = line(shown.iter().map(|&i| table.columns[i].full_heading).collect());
    t += &line(
        shown
            .iter()
            .map(|&i| match table.columns[i].align {
                Align::Left => "---",
                Align::Right => "---:",
            })
            .collect(),
    );
    for row in &table.rows {
        t += &line(shown.iter().map(|&i| row[i].as_str()).collect());
    }
    t
}

/// The report as Markdown: the table, ours against the peers, the
/// many-at-once figures and the published anchors, with the command that
/// made it (for `benches/README.md` and for students' notes).
pub fn markdown(report: &CompareReport, command: &str) -> String {
    let mut t = String::from("# virtlab: measured figures\n\n");
    t += &format!(
        "Produced by `{command}` (virtlab {}), in {:.0} s; regenerate with the same command. `cargo bench` runs the \
         criterion benchmarks (`benches/benches/`; HTML reports in `target/criterion/`).\n\n",
        report.virtlab_version, report.wall_seconds
    );
    t += "## The machine\n\n";
    for l in report.host.describe() {
        t += &format!("- {l}\n");
    }
    t += &format!(
        "\n## Medians of {} runs after {} warm-up(s), interleaved\n\n",
        report.config.runs, report.config.warmup
    );
    t += &render(&tables::results(report));
    let note = estimate_legend(report) + &memory_note(report);
    if !note.is_empty() {
        t += "\n";
        for l in note.lines() {
            t += &format!("{}\n\n", l.replacen('~', "\\~", 1));
        }
    }
    if !report.peers.is_empty() {
        t += "\n## Ours against the peers (ours / peer; below 1 is faster or smaller)\n\n";
        t += &render(&tables::peers(report));
    }
    if !report.scale.is_empty() {
        t += "\n## Many at once (`ready`, started together)\n\n";
        t += &render(&tables::scale(report));
        t += &format!("\n{SCALE_MEMORY_NOTE}.\n");
    }
    if !report.skipped.is_empty() {
        t += "\n## Left out\n\n";
        for s in &report.skipped {
            t += &format!("- {}: {}\n", s.env.name(), s.reason);
        }
    }
    t += "\n## Published anchors (other machines, for scale)\n\n";
    t += &render(&tables::anchors());
    t += "\n## What the run says about the course notes\n\n";
    for c in &report.claims {
        t += &format!("- **{}**: {}.\n", c.claim, c.measured);
    }
    t
}
