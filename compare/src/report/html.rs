//! The report as one self-contained HTML page, for a projector or a
//! printout: the host in plain words, one section per claim of the course
//! notes (its sentence, its chart, its numbers), ours against the peers,
//! many at once, and how the run was made. Styles and charts are inline
//! (no network, no framework); a light and a dark style follow the
//! reader's `prefers-color-scheme`, and printing always uses the light one.
//!
//! The cells come from [`super::tables`], the sentences from
//! [`super::claims`] and [`super::notes`], the charts from [`crate::svg`]:
//! this file only lays them out. Its few lines of script check that every
//! chart has a size and that nothing is wider than the window, and say so
//! on the page's root element, which the browser test reads.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::claims::{ISOLATION, MEMORY, OVERHEAD, PARAVIRTUALIZATION, STARTUP, SYSTEM_CALLS};
use super::notes::{estimate_legend, memory_note, tcg_note, SCALE_MEMORY_NOTE};
use super::tables::{self, Align, Table};
use super::{Claim, CompareReport};
use crate::host::VirtMode;
use crate::svg;

/// The style sheet: large type for the back row, a dark variant, table
/// headings that stay in view, and a print style.
const CSS: &str = r#"
:root { --bg: #ffffff; --fg: #151515; --dim: #555555; --card: #ffffff; --grid: #dddddd; --line: #cccccc;
  --accent: #2b6cb0; --note: #fff4e0; --note-edge: #d97706; --ok-edge: #2f855a; color-scheme: light dark; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #15171b; --fg: #ececec; --dim: #a8a8a8; --card: #1f2228; --grid: #3b4048; --line: #444a52;
    --accent: #8ab4f8; --note: #3a2d12; }
}
html { font: 20px/1.5 system-ui, "DejaVu Sans", "Noto Sans", sans-serif; background: var(--bg); color: var(--fg); }
body { max-width: 960px; margin: 0 auto; padding: 0 16px 48px; }
h1 { font-size: 1.8rem; margin: 1rem 0 .25rem; }
h2 { font-size: 1.35rem; border-top: 4px solid var(--accent); padding-top: .5rem; margin-top: 2.5rem; }
h3 { font-size: 1.05rem; margin-bottom: .25rem; }
a { color: var(--accent); }
.sub { color: var(--dim); margin-top: 0; }
.host { background: var(--note); border-left: 8px solid var(--note-edge); padding: .6rem 1rem; font-size: 1.05rem; }
.host.hardware { border-left-color: var(--ok-edge); }
.verdict { font-size: 1.1rem; }
.verdict strong { color: var(--accent); }
.small { font-size: .8rem; color: var(--dim); }
svg { display: block; width: 100%; height: auto; margin: 1rem 0; border: 1px solid var(--line); }
svg .bg { fill: var(--card); }
svg text { fill: var(--fg); }
svg .dim { fill: var(--dim); }
svg .grid { stroke: var(--grid); }
svg .ink { stroke: var(--fg); }
table { border-collapse: collapse; width: 100%; font-size: .8rem; font-variant-numeric: tabular-nums; margin: .5rem 0 1rem; }
th, td { padding: .2rem .45rem; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th.num, td.num { text-align: right; white-space: nowrap; }
thead th { position: sticky; top: 0; background: var(--bg); border-bottom: 2px solid var(--fg); }
code, pre { font-family: "DejaVu Sans Mono", "Noto Sans Mono", monospace; font-size: .85em; }
pre { white-space: pre-wrap; word-break: break-all; background: var(--card); border: 1px solid var(--line); padding: .5rem .75rem; }
nav ol { columns: 2; }
.wide table { font-size: .68rem; }
.wide th, .wide td { padding: .2rem .3rem; }
@media print {
  :root { --bg: #fff; --fg: #000; --dim: #444; --card: #fff; --grid: #ccc; --line: #bbb; --note: #fff; }
  html { font-size: 11pt; }
  thead th { position: static; }
  svg, table { break-inside: avoid; }
  nav { display: none; }
}
"#;

/// Checks every chart has a size once laid out and the page is no wider
/// than the window, and says so on `<html>` (`data-charts="ok N"`,
/// `data-too-wide="0"`, and which style it shows, `data-scheme`), read by
/// the browser test through `--dump-dom`.
const CHECK_SCRIPT: &str = "(function () {
  var svgs = document.querySelectorAll('svg'), empty = 0, root = document.documentElement;
  svgs.forEach(function (s) { var r = s.getBoundingClientRect(); if (!(r.width > 0 && r.height > 0)) empty++; });
  root.setAttribute('data-charts', empty ? 'empty ' + empty : 'ok ' + svgs.length);
  root.setAttribute('data-too-wide', Math.max(0, root.scrollWidth - root.clientWidth));
  root.setAttribute('data-scheme', matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light');
})();
";

/// The report as one HTML page; `command` is the command that made the run.
pub fn html(report: &CompareReport, command: &str) -> String {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "virtlab: hypervisor versus container, measured" }
                style { (PreEscaped(CSS)) }
            }
            body {
                h1 { "Hypervisor versus container, measured" }
                p.sub { "virtlab " (report.virtlab_version) ", a run of " (utc(report.started_unix)) }
                (host(report))
                nav {
                    h3 { "What the course notes claim" }
                    ol {
                        @for (i, c) in report.claims.iter().enumerate() {
                            li { a href=(format!("#claim-{}", i + 1)) { (c.claim) } }
                        }
                    }
                }
                @for (i, c) in report.claims.iter().enumerate() {
                    (claim(report, i + 1, c))
                }
                (peers(report))
                (scale(report))
                (method(report, command))
                script { (PreEscaped(CHECK_SCRIPT)) }
            }
        }
    };
    page.into_string()
}

/// The machine in words a student understands, then the details.
fn host(report: &CompareReport) -> Markup {
    let h = &report.host;
    let (class, words) = match (&h.kvm, h.virt_mode, &h.ring0) {
        (Err(_), _, _) => (
            "host",
            "This computer offers no KVM, so no virtual machine could run: only processes and containers were \
             measured."
                .to_string(),
        ),
        (Ok(()), VirtMode::NestedEmulated, p) => (
            "host",
            format!(
                "This computer is itself a virtual machine: our VMs run nested inside it, and their kernel code is \
                 emulated one instruction at a time{}. Every VM figure that involves a guest kernel (booting, system \
                 calls, devices) is far larger here than on a laptop or server with hardware virtualization.",
                p.map(|p| format!(" ({:.0} times slower than the same loop on the host)", p.slowdown))
                    .unwrap_or_default()
            ),
        ),
        (Ok(()), _, Some(p)) => (
            "host hardware",
            format!(
                "This computer runs virtual machines with the processor's own help (Intel VT-x or AMD-V): guest \
                 code, kernel included, runs directly on the CPU ({:.1} times the host's time per instruction), so \
                 these VM figures are what hardware virtualization costs.",
                p.slowdown
            ),
        ),
        (Ok(()), _, None) => (
            "host",
            "KVM works on this computer, but the speed of guest kernel code was not measured (--no-probe), so this \
             page cannot say whether its VMs run on hardware virtualization or nested inside another VM."
                .to_string(),
        ),
    };
    html! {
        p class=(class) { (words) }
        ul.small {
            @for l in h.describe() { li { (l) } }
        }
    }
}

/// One claim: its sentence, its chart(s) and its numbers.
fn claim(report: &CompareReport, n: usize, c: &Claim) -> Markup {
    let results = tables::results(report);
    let has = |w: &str| report.rows.iter().any(|r| r.workload == w);
    // results: 0 workload, 1 environment, 2 startup, 3 x native, 4 work,
    // 5 x native, 6 to exit, 7 spread, 8 VM exits, 9 memory.
    let body = match c.claim.as_str() {
        STARTUP => html! {
            @if report.rows.iter().any(|r| r.workload == "ready" && r.startup_us.is_some()) {
                (PreEscaped(svg::startup_chart(report)))
                (PreEscaped(svg::timeline_chart(report)))
                p.small { "The timeline shows each environment on its own scale, from its launch to its exit: read \
                           the phases within a row, and compare rows by the chart above." }
            }
            (part(&results, "ready", &[1, 2, 3, 6, 7]))
        },
        OVERHEAD => html! {
            @if report.rows.iter().any(|r| matches!(r.workload.as_str(), "cpu" | "mem") && r.inside_ratio.is_some()) {
                (PreEscaped(svg::overhead_chart_of(report, &["cpu", "mem"])))
            }
            (part(&results, "cpu", &[1, 4, 5, 7]))
            @if has("mem") { (part(&results, "mem", &[1, 4, 5, 7])) }
        },
        SYSTEM_CALLS => html! {
            @if report.rows.iter().any(|r| r.workload == "syscall" && r.inside_ratio.is_some()) {
                (PreEscaped(svg::overhead_chart_of(report, &["syscall"])))
            }
            (part(&results, "syscall", &[1, 4, 5, 7]))
            (part(&tables::exits(report), "syscall", &[1, 2, 3, 5]))
        },
        PARAVIRTUALIZATION => html! {
            @if report.rows.iter().any(|r| r.workload == "io" && r.console_exits_per_kib.is_some()) {
                (PreEscaped(svg::console_chart(report)))
            }
            (part(&tables::exits(report), "io", &[1, 2, 4]))
            (part(&results, "io", &[1, 4, 5]))
        },
        MEMORY => html! {
            (part(&results, "ready", &[1, 9]))
            @for l in (estimate_legend(report) + &memory_note(report)).lines() { p.small { (l) } }
            @if !report.scale.is_empty() { p { a href="#scale" { "Many at once" } ", below, starts several together." } }
        },
        ISOLATION => part(&tables::isolation(report), "ready", &[1, 2, 3]),
        _ => html! {},
    };
    html! {
        section.claim id=(format!("claim-{n}")) {
            h2 { (n) ". \u{201c}" (c.claim) "\u{201d}" }
            p.verdict { strong { "This run: " } (c.measured) "." }
            (body)
        }
    }
}

/// The rows of `table` for `workload` (its first column), with the
/// columns `columns`; nothing when no row is left.
fn part(table: &Table, workload: &str, columns: &[usize]) -> Markup {
    let rows: Vec<&Vec<String>> = table.rows.iter().filter(|r| r[0] == workload).collect();
    if rows.is_empty() {
        return html! {};
    }
    render(table, &rows, columns)
}

/// `rows` of `table` as an HTML table of the columns `columns`, with the
/// full headings and figures aligned right.
fn render(table: &Table, rows: &[&Vec<String>], columns: &[usize]) -> Markup {
    let class = |i: usize| if table.columns[i].align == Align::Right { "num" } else { "" };
    html! {
        table {
            thead { tr { @for &i in columns { th class=(class(i)) scope="col" { (table.columns[i].full_heading) } } } }
            tbody {
                @for row in rows { tr { @for &i in columns { td class=(class(i)) { (row[i]) } } } }
            }
        }
    }
}

/// All rows of `table`, its diagnostic columns left out.
fn whole(table: &Table) -> Markup {
    let columns: Vec<usize> = (0..table.columns.len()).filter(|&i| !table.columns[i].diagnostic).collect();
    let rows: Vec<&Vec<String>> = table.rows.iter().collect();
    render(table, &rows, &columns)
}

/// Ours against the peers, when any ran.
fn peers(report: &CompareReport) -> Markup {
    if report.peers.is_empty() {
        return html! {};
    }
    let note = tcg_note(report);
    html! {
        section id="peers" {
            h2 { "Ours against the real thing" }
            p { "Each figure is ours divided by the peer's, medians from this run: below 1 ours is faster or smaller." }
            (whole(&tables::peers(report)))
            @if !note.is_empty() { p.small { (note.trim_end()) } }
        }
    }
}

/// Many at once (`--scale`), when the run had it.
fn scale(report: &CompareReport) -> Markup {
    if report.scale.is_empty() {
        return html! {};
    }
    html! {
        section id="scale" {
            h2 { "Many at once" }
            p { "The " code { "ready" } " workload started in several instances together: how many finish per \
                 second, and what each costs." }
            (PreEscaped(svg::scale_chart(report)))
            (whole(&tables::scale(report)))
            p.small { (SCALE_MEMORY_NOTE) "." }
        }
    }
}

/// How the run was made: runs, warm-ups, medians and spread, the whole
/// table, what was left out, and the command.
fn method(report: &CompareReport, command: &str) -> Markup {
    let c = &report.config;
    html! {
        section id="method" {
            h2 { "How this was measured" }
            p {
                "Every figure is the median of " (c.runs) " run(s) per environment and workload, after "
                (c.warmup) " warm-up run(s) that are not kept; runs were made " (c.order) ", so that a busy \
                 moment of the machine hits every environment alike. \u{201c}Spread\u{201d} is (slowest \u{2212} \
                 fastest) / median of the launch-to-exit time: how far apart the runs were. \u{201c}x native\u{201d} \
                 is the ratio to native within this same run; ratios are never taken across runs."
            }
            div.wide { (whole(&tables::results(report))) }
            @for l in estimate_legend(report).lines() { p.small { (l) } }
            @if !report.skipped.is_empty() {
                h3 { "Left out" }
                ul { @for s in &report.skipped { li { code { (s.env.name()) } ": " (s.reason) } } }
            }
            @if !report.failures.is_empty() {
                p { (report.failures.len()) " launch(es) failed; the figures are from the others (the terminal \
                    report lists them)." }
            }
            h3 { "Run it again" }
            pre { (command) }
            p.small { "The whole comparison took " (format!("{:.0}", report.wall_seconds)) " s. Published \
                       figures of the real systems, measured on other machines, for scale:" }
            (whole(&tables::anchors()))
        }
    }
}

/// "2023-11-14 22:13 UTC" from seconds since the Unix epoch (the civil
/// calendar from a day count, as in Howard Hinnant's `civil_from_days`).
fn utc(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let (hour, minute) = ((unix % 86_400) / 3600, (unix % 3600) / 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn dates_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
    }
}
