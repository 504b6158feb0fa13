//! Three SVG charts, written by hand (plain text, no fonts needed): startup
//! per environment on a log scale, the overhead ratio per workload, and a
//! startup timeline of one run per environment.

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
const COLOR_ORDER: [Env; 16] = [
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
    Env::VmMiniRestore,
    Env::VmLinuxRestore,
];

fn color(env: Env) -> &'static str {
    let i = COLOR_ORDER.iter().position(|e| *e == env).unwrap_or(0);
    COLORS[i % COLORS.len()]
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn open(h: f64, title: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{x}" y="22" font-size="15" font-weight="bold">{t}</text>
"#,
        x = 12,
        t = esc(title)
    );
    s
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
        let _ = writeln!(s, r##"<line x1="{x:.1}" y1="40" x2="{x:.1}" y2="{bottom}" stroke="#ddd"/>"##);
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
        let _ = writeln!(s, r##"<line x1="{x0:.1}" y1="{yy}" x2="{x1:.1}" y2="{yy}" stroke="#333"/>"##, yy = y + 11.0);
        let _ = writeln!(s, r#"<text x="{:.1}" y="{}">{}</text>"#, x.max(x1) + 6.0, y + 15.0, fmt_us(st.median));
    }
    s += "</svg>\n";
    s
}

/// The workload's own time as a ratio to native, per workload and
/// environment (log scale: 1x is native).
pub fn overhead_chart(report: &CompareReport) -> String {
    let workloads: Vec<String> = report
        .config
        .workloads
        .iter()
        .map(|w| w.mode.clone())
        .filter(|w| w != "ready" && report.rows.iter().any(|r| &r.workload == w && r.inside_ratio.is_some()))
        .collect();
    let envs: Vec<Env> =
        report.config.envs.iter().copied().filter(|e| report.rows.iter().any(|r| r.env == *e)).collect();
    let group = 16.0 * envs.len().max(1) as f64 + 18.0;
    let h = 70.0 + group * workloads.len().max(1) as f64 + 50.0;
    let mut s = open(h, "Overhead: the workload's own time as a multiple of native (log scale)");
    let vals: Vec<f64> = report.rows.iter().filter_map(|r| r.inside_ratio).chain([1.0]).collect();
    let (lo, hi) = log_bounds(&vals);
    let lo = lo.min(0.1);
    let bottom = h - 50.0;
    for d in decades(lo, hi) {
        let x = logx(d, lo, hi);
        let stroke = if (d - 1.0).abs() < 1e-9 { "#888" } else { "#ddd" };
        let _ = writeln!(s, r#"<line x1="{x:.1}" y1="40" x2="{x:.1}" y2="{bottom}" stroke="{stroke}"/>"#);
        let _ = writeln!(s, r#"<text x="{x:.1}" y="{y}" text-anchor="middle">{d}x</text>"#, y = bottom + 16.0);
    }
    for (gi, w) in workloads.iter().enumerate() {
        let gy = 50.0 + group * gi as f64;
        let _ = writeln!(s, r#"<text x="12" y="{}" font-weight="bold">{}</text>"#, gy + 12.0, esc(w));
        for (ei, e) in envs.iter().enumerate() {
            let Some(r) = report.rows.iter().find(|r| r.env == *e && &r.workload == w) else { continue };
            let Some(ratio) = r.inside_ratio else { continue };
            let y = gy + 16.0 * ei as f64;
            let x = logx(ratio, lo, hi);
            let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, LEFT - 8.0, y + 11.0, e.name());
            let _ = writeln!(
                s,
                r#"<rect x="{LEFT}" y="{y}" width="{:.1}" height="13" fill="{}"><title>{} {}: {:.2}x</title></rect>"#,
                (x - LEFT).max(1.0),
                color(*e),
                e.name(),
                esc(w),
                ratio
            );
            let _ = writeln!(s, r#"<text x="{:.1}" y="{}">{ratio:.2}x</text>"#, x + 4.0, y + 11.0);
        }
    }
    s += "</svg>\n";
    s
}

/// One run of each environment, its launcher's phases along a time axis.
pub fn timeline_chart(report: &CompareReport) -> String {
    let lines = crate::report::timelines(&report.samples, "ready");
    let h = 80.0 + 56.0 * lines.len().max(1) as f64;
    let mut s = open(h, "Startup timeline: the launcher's phases in one `ready` run (linear time)");
    let end = lines.iter().flat_map(|(_, p)| p.iter().map(|(_, at)| *at)).fold(1.0, f64::max);
    let scale = (W - LEFT - RIGHT) / end;
    let bottom = h - 24.0;
    for i in 0..=4 {
        let t = end * i as f64 / 4.0;
        let x = LEFT + t * scale;
        let _ = writeln!(s, r##"<line x1="{x:.1}" y1="40" x2="{x:.1}" y2="{bottom}" stroke="#eee"/>"##);
        let _ = writeln!(s, r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#, bottom + 14.0, fmt_us(t));
    }
    for (i, (env, phases)) in lines.iter().enumerate() {
        let y = 50.0 + 56.0 * i as f64;
        let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, LEFT - 8.0, y + 15.0, env.name());
        let mut prev = 0.0;
        for (k, (name, at)) in phases.iter().enumerate() {
            let x = LEFT + prev * scale;
            let w = ((at - prev) * scale).max(0.5);
            let shade = if k % 2 == 0 { "1" } else { "0.6" };
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{y}" width="{w:.1}" height="22" fill="{}" fill-opacity="{shade}"><title>{}: {} (ends at {})</title></rect>"#,
                color(*env),
                esc(name),
                fmt_us(at - prev),
                fmt_us(*at)
            );
            if w > 60.0 {
                let _ = writeln!(s, r#"<text x="{:.1}" y="{}" font-size="10">{}</text>"#, x + 3.0, y + 36.0, esc(name));
            }
            prev = prev.max(*at);
        }
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
