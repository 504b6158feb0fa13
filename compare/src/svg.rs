//! SVG charts, written by hand (plain text, no fonts needed): startup per
//! environment on a log scale, the overhead ratio per workload, a startup
//! timeline of one run per environment (a small panel each, on its own
//! scale), console exits per KiB, and instances per second at each
//! `--scale` count. `--svg` writes the first three as files; the HTML page
//! ([`crate::report::html`]) draws them all inline, where its style sheet
//! recolours the classes `bg`, `grid`, `dim` and `ink` for a dark screen.

use std::fmt::Write;

use crate::launch::Env;
use crate::report::{fmt_us, CompareReport};

const W: f64 = 860.0;
const LEFT: f64 = 170.0;
const RIGHT: f64 = 40.0;
const COLORS: [&str; 10] =
    ["#4e79a7", "#59a14f", "#e15759", "#f28e2b", "#76b7b2", "#b07aa1", "#edc948", "#9c755f", "#ff9da7", "#bab0ac"];

/// Every environment in the order it was added to virtlab: its colour
/// comes from its place here, so a new one leaves the others' alone.
const COLOR_ORDER: [Env; 17] = [
    Env::Native,
    Env::Container,
    Env::VmMiniUart,
    Env::VmMiniPv,
    Env::VmLinux,
    Env::QemuMicrovm,
    Env::QemuTcg,
    Env::QemuMicrovmLinux,
    Env::QemuTcgLinux,
    Env::Bwrap,
    Env::Runc,
    Env::Crun,
    Env::ContainerImage,
    Env::Podman,
    Env::PodmanVirtlab,
    Env::VmMiniRestore,
    Env::VmLinuxRestore,
];

fn color(env: Env) -> &'static str {
    let i = COLOR_ORDER.iter().position(|e| *e == env).unwrap_or(0);
    COLORS[i % COLORS.len()]
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn open(h: f64, title: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="14" role="img" aria-label="{t}">
<rect class="bg" width="100%" height="100%" fill="white"/>
<text x="{x}" y="24" font-size="16" font-weight="bold">{t}</text>
"#,
        x = 12,
        t = esc(title)
    );
    s
}

/// Height of one bar's row in the overhead chart.
const ROW: f64 = 21.0;

/// A bar's value at its end `x`: after it, or inside it (right-aligned,
/// in white) when it would run off the chart.
fn value_label(x: f64, y: f64, text: &str) -> String {
    if x + 8.0 * text.chars().count() as f64 > W - 4.0 {
        format!(
            r#"<text x="{:.1}" y="{y}" text-anchor="end" fill="white" style="fill:white">{}</text>"#,
            x - 6.0,
            esc(text)
        )
    } else {
        format!(r#"<text x="{:.1}" y="{y}">{}</text>"#, x + 6.0, esc(text))
    }
}

/// Log-scale x position of `v` between `lo` and `hi`.
fn logx(v: f64, lo: f64, hi: f64) -> f64 {
    let (v, lo, hi) = (v.max(lo).ln(), lo.ln(), hi.ln());
    LEFT + (W - LEFT - RIGHT) * if hi > lo { (v - lo) / (hi - lo) } else { 0.0 }
}

/// Powers of ten between lo and hi, for grid lines.
fn decades(lo: f64, hi: f64) -> Vec<f64> {
    let mut v = Vec::new();
    let mut d = 10f64.powf(lo.log10().floor());
    while d <= hi * 1.0001 {
        if d >= lo * 0.9999 {
            v.push(d);
        }
        d *= 10.0;
    }
    v
}

fn log_bounds(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(0.0, f64::max);
    if !min.is_finite() || max <= 0.0 {
        return (1.0, 10.0);
    }
    (10f64.powf(min.log10().floor()), 10f64.powf(max.log10().ceil().max(min.log10().floor() + 1.0)))
}

/// Startup (launch to ready marker) per environment, log scale.
pub fn startup_chart(report: &CompareReport) -> String {
    let rows: Vec<_> = report.rows.iter().filter(|r| r.workload == "ready" && r.startup_us.is_some()).collect();
    let h = 80.0 + 34.0 * rows.len().max(1) as f64 + 30.0;
    let mut s = open(h, "Startup: launch to the workload's first line (median, log scale)");
    let vals: Vec<f64> = rows.iter().filter_map(|r| r.startup_us.map(|x| x.median)).collect();
    let (lo, hi) = log_bounds(&vals);
    let bottom = h - 30.0;
    for d in decades(lo, hi) {
        let x = logx(d, lo, hi);
        let _ = writeln!(s, r##"<line x1="{x:.1}" y1="40" x2="{x:.1}" y2="{bottom}" stroke="#ddd" class="grid"/>"##);
        let _ = writeln!(s, r#"<text x="{x:.1}" y="{y}" text-anchor="middle">{}</text>"#, fmt_us(d), y = bottom + 16.0);
    }
    for (i, r) in rows.iter().enumerate() {
        let Some(st) = r.startup_us else { continue };
        let y = 50.0 + 34.0 * i as f64;
        let x = logx(st.median, lo, hi);
        let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, LEFT - 8.0, y + 15.0, r.env.name());
        let _ = writeln!(
            s,
            r#"<rect x="{LEFT}" y="{y}" width="{:.1}" height="22" fill="{}"><title>{}: {}</title></rect>"#,
            (x - LEFT).max(1.0),
            color(r.env),
            r.env.name(),
            fmt_us(st.median)
        );
        // min..max whisker
        let (x0, x1) = (logx(st.min, lo, hi), logx(st.max, lo, hi));
        let _ = writeln!(
            s,
            r##"<line x1="{x0:.1}" y1="{yy}" x2="{x1:.1}" y2="{yy}" stroke="#333" class="ink"/>"##,
            yy = y + 11.0
        );
        let _ = writeln!(s, "{}", value_label(x.max(x1), y + 16.0, &fmt_us(st.median)));
    }
    s += "</svg>\n";
    s
}

/// The workload's own time as a ratio to native, per workload and
/// environment (log scale: 1x is native).
pub fn overhead_chart(report: &CompareReport) -> String {
    overhead_chart_of(report, &[])
}

/// [`overhead_chart`] of the workloads in `only` (all when empty).
pub fn overhead_chart_of(report: &CompareReport, only: &[&str]) -> String {
    let workloads: Vec<String> = report
        .config
        .workloads
        .iter()
        .map(|w| w.mode.clone())
        .filter(|w| only.is_empty() || only.contains(&w.as_str()))
        .filter(|w| w != "ready" && report.rows.iter().any(|r| &r.workload == w && r.inside_ratio.is_some()))
        .collect();
    let envs: Vec<Env> =
        report.config.envs.iter().copied().filter(|e| report.rows.iter().any(|r| r.env == *e)).collect();
    let group = ROW * envs.len().max(1) as f64 + 18.0;
    let h = 70.0 + group * workloads.len().max(1) as f64 + 50.0;
    let mut s = open(h, "Overhead: the workload's own time as a multiple of native (log scale)");
    let vals: Vec<f64> = report.rows.iter().filter_map(|r| r.inside_ratio).chain([1.0]).collect();
    let (lo, hi) = log_bounds(&vals);
    let lo = lo.min(0.1);
    let bottom = h - 50.0;
    for d in decades(lo, hi) {
        let x = logx(d, lo, hi);
        let (stroke, class) = if (d - 1.0).abs() < 1e-9 { ("#888", "dim") } else { ("#ddd", "grid") };
        let _ =
            writeln!(s, r#"<line x1="{x:.1}" y1="40" x2="{x:.1}" y2="{bottom}" stroke="{stroke}" class="{class}"/>"#);
        let _ = writeln!(s, r#"<text x="{x:.1}" y="{y}" text-anchor="middle">{d}x</text>"#, y = bottom + 16.0);
    }
    for (gi, w) in workloads.iter().enumerate() {
        let gy = 50.0 + group * gi as f64;
        let _ = writeln!(s, r#"<text x="12" y="{}" font-weight="bold">{}</text>"#, gy + 12.0, esc(w));
        for (ei, e) in envs.iter().enumerate() {
            let Some(r) = report.rows.iter().find(|r| r.env == *e && &r.workload == w) else { continue };
            let Some(ratio) = r.inside_ratio else { continue };
            let y = gy + ROW * ei as f64;
            let x = logx(ratio, lo, hi);
            let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, LEFT - 8.0, y + 13.0, e.name());
            let _ = writeln!(
                s,
                r#"<rect x="{LEFT}" y="{y}" width="{:.1}" height="16" fill="{}"><title>{} {}: {:.2}x</title></rect>"#,
                (x - LEFT).max(1.0),
                color(*e),
                e.name(),
                esc(w),
                ratio
            );
            let _ = writeln!(s, "{}", value_label(x, y + 13.0, &format!("{ratio:.2}x")));
        }
    }
    s += "</svg>\n";
    s
}

/// Height of one environment's panel in the timeline.
const PANEL: f64 = 58.0;

/// A typical run of each environment (its median launch-to-exit, see
/// [`crate::report::timelines`]), its launcher's phases along a time axis:
/// a small panel per environment, each on its own scale (from launch to
/// its exit), so that a process's microseconds show their phases as well
/// as a Linux guest's seconds. The panel's total is written beside it.
pub fn timeline_chart(report: &CompareReport) -> String {
    let lines = crate::report::timelines(&report.samples, "ready");
    let h = 50.0 + PANEL * lines.len().max(1) as f64;
    let mut s = open(h, "Startup timeline: the launcher's phases in a typical `ready` run (each row on its own scale)");
    for (i, (env, phases)) in lines.iter().enumerate() {
        let y = 44.0 + PANEL * i as f64;
        let end = phases.iter().map(|(_, at)| *at).fold(0.0, f64::max);
        let scale = if end > 0.0 { (W - LEFT - RIGHT) / end } else { 0.0 };
        let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, LEFT - 8.0, y + 14.0, env.name());
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end" font-size="11" fill="#555" class="dim">0 to {}</text>"##,
            LEFT - 8.0,
            y + 29.0,
            fmt_us(end)
        );
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{y}" width="{:.1}" height="22" fill="none" stroke="#ddd" class="grid"/>"##,
            W - LEFT - RIGHT
        );
        let mut prev = 0.0;
        for (k, (name, at)) in phases.iter().enumerate() {
            let x = LEFT + prev * scale;
            let w = ((at - prev) * scale).max(1.0);
            let shade = if k % 2 == 0 { "1" } else { "0.55" };
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{y}" width="{w:.1}" height="22" fill="{}" fill-opacity="{shade}"><title>{} {}: {} (ends at {})</title></rect>"#,
                color(*env),
                env.name(),
                esc(name),
                fmt_us(at - prev),
                fmt_us(*at)
            );
            // The phase's name under it, with its length when there is room.
            let long = format!("{name} {}", fmt_us(at - prev));
            let label = [long.as_str(), name].into_iter().find(|l| w > 7.0 * l.chars().count() as f64 + 6.0);
            if let Some(label) = label {
                let _ =
                    writeln!(s, r#"<text x="{:.1}" y="{}" font-size="12">{}</text>"#, x + 2.0, y + 37.0, esc(label));
            }
            prev = prev.max(*at);
        }
    }
    s += "</svg>\n";
    s
}

/// Console exits per KiB of output, per environment (the `io` workload,
/// log scale): the emulated UART traps at every byte, the paravirtual
/// port once per write.
pub fn console_chart(report: &CompareReport) -> String {
    let rows: Vec<_> = report.rows.iter().filter(|r| r.workload == "io" && r.console_exits_per_kib.is_some()).collect();
    let h = 80.0 + 34.0 * rows.len().max(1) as f64 + 30.0;
    let mut s = open(h, "Console output: VM exits per KiB written (median, log scale)");
    let vals: Vec<f64> = rows.iter().filter_map(|r| r.console_exits_per_kib).collect();
    let (lo, hi) = log_bounds(&vals);
    let lo = lo.min(0.1);
    let bottom = h - 30.0;
    for d in decades(lo, hi) {
        let x = logx(d, lo, hi);
        let _ = writeln!(s, r##"<line x1="{x:.1}" y1="40" x2="{x:.1}" y2="{bottom}" stroke="#ddd" class="grid"/>"##);
        let _ = writeln!(s, r#"<text x="{x:.1}" y="{y}" text-anchor="middle">{d}</text>"#, y = bottom + 16.0);
    }
    for (i, r) in rows.iter().enumerate() {
        let Some(v) = r.console_exits_per_kib else { continue };
        let y = 50.0 + 34.0 * i as f64;
        let x = logx(v, lo, hi);
        let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, LEFT - 8.0, y + 15.0, r.env.name());
        let _ = writeln!(
            s,
            r#"<rect x="{LEFT}" y="{y}" width="{:.1}" height="22" fill="{}"><title>{}: {v:.2} exits per KiB</title></rect>"#,
            (x - LEFT).max(1.0),
            color(r.env),
            r.env.name()
        );
        let _ = writeln!(s, "{}", value_label(x, y + 16.0, &per_kib(v)));
    }
    s += "</svg>\n";
    s
}

/// "4096 per KiB", "0.25 per KiB".
fn per_kib(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0} per KiB")
    } else {
        format!("{v:.2} per KiB")
    }
}

/// Many at once (`--scale`): instances per second against the number
/// started together, one line per environment (log scales on both axes).
pub fn scale_chart(report: &CompareReport) -> String {
    let h = 360.0;
    let mut s = open(h, "Many at once: instances per second against instances started together (log scales)");
    let counts: Vec<f64> = report.scale.iter().map(|p| p.instances as f64).collect();
    let rates: Vec<f64> = report.scale.iter().map(|p| p.per_second).collect();
    let (clo, chi) = log_bounds(&counts);
    let (rlo, rhi) = log_bounds(&rates);
    let (top, bottom) = (44.0, h - 46.0);
    let xat = |c: f64| logx(c, clo, chi);
    let yat = |r: f64| {
        let (v, lo, hi) = (r.max(rlo).ln(), rlo.ln(), rhi.ln());
        bottom - (bottom - top) * if hi > lo { (v - lo) / (hi - lo) } else { 0.0 }
    };
    let mut ticks = counts.clone();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    for d in ticks {
        let x = xat(d);
        let _ = writeln!(s, r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}" stroke="#ddd" class="grid"/>"##);
        let _ = writeln!(s, r#"<text x="{x:.1}" y="{}" text-anchor="middle">{d}</text>"#, bottom + 16.0);
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">instances started together</text>"#,
        LEFT + (W - LEFT - RIGHT) / 2.0,
        bottom + 34.0
    );
    for d in decades(rlo, rhi) {
        let y = yat(d);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd" class="grid"/>"##,
            W - RIGHT
        );
        let _ = writeln!(s, r#"<text x="{}" y="{:.1}" text-anchor="end">{d}/s</text>"#, LEFT - 8.0, y + 4.0);
    }
    let mut envs: Vec<Env> = report.scale.iter().map(|p| p.env).collect();
    envs.dedup();
    for (i, env) in envs.iter().enumerate() {
        let mut points: Vec<_> = report.scale.iter().filter(|p| p.env == *env).collect();
        points.sort_by_key(|p| p.instances);
        let path: Vec<String> =
            points.iter().map(|p| format!("{:.1},{:.1}", xat(p.instances as f64), yat(p.per_second))).collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="3"/>"#,
            path.join(" "),
            color(*env)
        );
        for p in &points {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="5" fill="{}"><title>{} x{}: {:.1} instances/s</title></circle>"#,
                xat(p.instances as f64),
                yat(p.per_second),
                color(*env),
                env.name(),
                p.instances,
                p.per_second
            );
        }
        // The legend, top left, one line per environment.
        let ly = top + 6.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{}" width="14" height="10" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            12.0,
            ly,
            color(*env),
            32.0,
            ly + 10.0,
            env.name()
        );
    }
    s += "</svg>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_environment_has_a_colour_of_its_own_place() {
        for e in Env::ALL.iter().chain(Env::PEERS.iter()) {
            assert!(COLOR_ORDER.contains(e), "{} has no place in COLOR_ORDER", e.name());
        }
        // The colours environments had before container-image and podman.
        assert_eq!(color(Env::VmMiniUart), COLORS[2]);
        assert_eq!(color(Env::Crun), COLORS[11 % COLORS.len()]);
    }
}
