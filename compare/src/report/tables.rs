//! The report's tables, cell by cell: what each cell says is decided here,
//! once; the renderers only lay the cells out (padded columns in
//! [`text`](fn@super::text), pipes in [`markdown`](fn@super::markdown)).

use super::notes::ANCHORS;
use super::{fmt_mib, fmt_ratio, fmt_us, med, CompareReport, Row};
use crate::launch::{Env, MemoryMethod};

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Names.
    Left,
    /// Figures.
    Right,
}

/// One column of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The heading, short enough for the text table's width.
    pub heading: &'static str,
    /// The heading where the width does not matter ("VM exits" for
    /// "exits"); the same as `heading` for most columns.
    pub full_heading: &'static str,
    /// The column's width in the text table (a longer cell widens its row).
    pub width: usize,
    /// How its cells line up.
    pub align: Align,
    /// A figure about how the run went rather than what it measured
    /// (failed launches): the text report shows it, the published page
    /// (Markdown) leaves it out.
    pub diagnostic: bool,
}

impl Column {
    fn left(heading: &'static str, width: usize) -> Column {
        Column { heading, full_heading: heading, width, align: Align::Left, diagnostic: false }
    }

    fn right(heading: &'static str, width: usize) -> Column {
        Column { align: Align::Right, ..Column::left(heading, width) }
    }

    fn full(self, full_heading: &'static str) -> Column {
        Column { full_heading, ..self }
    }

    fn diagnostic(self) -> Column {
        Column { diagnostic: true, ..self }
    }
}

/// A table with every cell already formatted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The columns, left to right.
    pub columns: Vec<Column>,
    /// One cell per column in each row.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A table of `items`, one row each, with the cells `cells` makes.
    fn of<T>(columns: Vec<Column>, items: &[T], cells: impl Fn(&T) -> Vec<String>) -> Table {
        Table { columns, rows: items.iter().map(cells).collect() }
    }
}

/// A figure, or "-" when there is none.
fn cell(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

/// The main table: one row per environment and workload, medians and
/// ratios against native.
pub fn results(report: &CompareReport) -> Table {
    let columns = vec![
        Column::left("workload", 8),
        Column::left("environment", 13),
        Column::right("startup", 11),
        Column::right("x native", 9),
        Column::right("work", 11),
        Column::right("x native", 9),
        Column::right("to exit", 11),
        Column::right("spread", 9),
        Column::right("exits", 9).full("VM exits"),
        Column::right("memory", 10),
    ];
    Table::of(columns, &report.rows, |r| {
        vec![
            r.workload.clone(),
            r.env.name().to_string(),
            cell(med(&r.startup_us), fmt_us),
            cell(r.startup_ratio.filter(|_| r.env != Env::Native), fmt_ratio),
            cell(med(&r.inside_ns).filter(|_| r.workload != "ready"), |ns| fmt_us(ns / 1e3)),
            cell(r.inside_ratio.filter(|_| r.env != Env::Native && r.workload != "ready"), fmt_ratio),
            cell(med(&r.total_us), fmt_us),
            cell(r.total_us.map(|s| s.spread * 100.0), |p| format!("{p:.0}%")),
            cell(med(&r.vm_exits), |x| format!("{x:.0}")),
            memory_cell(r),
        ]
    })
}

/// A row's memory, "~" in front when it is an estimate.
fn memory_cell(r: &Row) -> String {
    memory_text(med(&r.memory_bytes), r.memory_method)
}

fn memory_text(bytes: Option<f64>, method: Option<MemoryMethod>) -> String {
    match (bytes, method) {
        (Some(b), Some(MemoryMethod::Estimate)) => format!("~{}", fmt_mib(b)),
        (Some(b), _) => fmt_mib(b),
        (None, _) => "-".into(),
    }
}

/// What trapping cost the VMs (and QEMU): per environment and workload,
/// VM exits per run and per second, console exits per KiB of output, and
/// the share of system calls the minikernel caught as page faults.
pub fn exits(report: &CompareReport) -> Table {
    let columns = vec![
        Column::left("workload", 8),
        Column::left("environment", 13),
        Column::right("exits", 9).full("VM exits"),
        Column::right("exits/s", 10).full("VM exits per second"),
        Column::right("per KiB", 9).full("console exits per KiB"),
        Column::right("trapped", 8).full("system calls trapped"),
    ];
    let rows: Vec<&Row> = report.rows.iter().filter(|r| r.vm_exits.is_some()).collect();
    Table::of(columns, &rows, |r| {
        vec![
            r.workload.clone(),
            r.env.name().to_string(),
            cell(med(&r.vm_exits), |x| format!("{x:.0}")),
            cell(r.exits_per_second, |x| format!("{x:.0}")),
            cell(r.console_exits_per_kib, |x| if x >= 10.0 { format!("{x:.0}") } else { format!("{x:.2}") }),
            cell(r.syscalls_trapped_share, |x| format!("{:.0}%", x * 100.0)),
        ]
    })
}

/// What the workload saw of its world in each environment (`ready`): the
/// PID it had, and whose kernel it ran on.
pub fn isolation(report: &CompareReport) -> Table {
    let columns = vec![
        Column::left("workload", 8),
        Column::left("environment", 13),
        Column::right("PID seen", 8),
        Column::left("kernel", 30).full("kernel it ran on"),
    ];
    let rows: Vec<&Row> = report.rows.iter().filter(|r| r.workload == "ready").collect();
    Table::of(columns, &rows, |r| {
        vec![
            r.workload.clone(),
            r.env.name().to_string(),
            cell(r.pid.map(|p| p as f64), |p| format!("{p:.0}")),
            if r.env.is_vm() || r.env.is_qemu() {
                "its own (the guest's)".to_string()
            } else {
                format!("the host's ({})", report.host.kernel)
            },
        ]
    })
}

/// Ours against the peers: ours / peer for each pair and workload.
pub fn peers(report: &CompareReport) -> Table {
    let columns = vec![
        Column::left("workload", 8),
        Column::left("ours", 13),
        Column::left("peer", 19),
        Column::right("startup", 9),
        Column::right("to exit", 9),
        Column::right("work", 9),
        Column::right("memory", 9),
    ];
    Table::of(columns, &report.peers, |p| {
        vec![
            p.workload.clone(),
            p.ours.name().to_string(),
            p.peer.name().to_string(),
            cell(p.startup_ratio, fmt_ratio),
            cell(p.total_ratio, fmt_ratio),
            cell(p.inside_ratio.filter(|_| p.workload != "ready"), fmt_ratio),
            cell(p.memory_ratio, fmt_ratio),
        ]
    })
}

/// Many at once (`--scale`): one row per environment and instance count.
pub fn scale(report: &CompareReport) -> Table {
    let columns = vec![
        Column::left("environment", 13),
        Column::right("instances", 9),
        Column::right("wall", 11),
        Column::right("instances/s", 14),
        Column::right("memory each", 14),
        Column::right("failed", 7).diagnostic(),
    ];
    Table::of(columns, &report.scale, |p| {
        vec![
            p.env.name().to_string(),
            p.instances.to_string(),
            fmt_us(p.wall_us),
            format!("{:.1}", p.per_second),
            memory_text(p.memory_per_instance_bytes, p.memory_method),
            p.failed.to_string(),
        ]
    })
}

/// The published figures of the real systems ([`ANCHORS`]), for scale.
pub fn anchors() -> Table {
    let columns = vec![Column::left("figure", 34), Column::left("published", 36)];
    Table::of(columns, ANCHORS, |(what, value)| vec![what.to_string(), value.to_string()])
}
