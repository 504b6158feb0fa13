//! The text, Markdown and CSV renderings of one fixed comparison, byte for
//! byte: every section each output can have (peers, the TCG note, the
//! many-at-once table, estimates, skipped peers, failed launches, the
//! Linux guest's host fix-ups) from made-up but plausible figures.
//!
//! The expected files are in `tests/golden/`. After a deliberate change to
//! a report's wording, write them again with
//! `VIRTLAB_BLESS=1 cargo test -p virtlab-compare --test report_golden`
//! and read the diff before committing it.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use virtlab_compare::env::{Env, Phase, Sample, Workload};
use virtlab_compare::host::{HostInfo, VirtMode};
use virtlab_compare::memory::MemoryMethod;
use virtlab_compare::peers::emulation_failure_reason;
use virtlab_compare::report::{self, CompareReport, Failure, RunConfig, Skipped, SCHEMA};
use virtlab_compare::scale::ScalePoint;

/// One run of `workload` in `env`: startup and launch-to-exit in µs, the
/// workload's own time in ns.
fn sample(env: Env, workload: &str, run: usize, startup: f64, inside: f64, total: f64) -> Sample {
    let vm = env.is_vm();
    let estimate = env == Env::VmLinux;
    Sample {
        env,
        workload: workload.into(),
        run,
        startup_us: Some(startup),
        total_us: total,
        inside_ns: (workload != "ready").then_some(inside),
        pid: Some(if env == Env::Native { 4242 } else { 1 }),
        exit_status: 0,
        phases: vec![
            Phase { name: "spawn".into(), at_us: startup / 4.0 },
            Phase { name: "ready".into(), at_us: startup },
            Phase { name: "exit".into(), at_us: total },
        ],
        vm_exits: vm.then_some(120 + run as u64),
        console_exits: vm.then_some(if env == Env::VmMiniUart { 4200 } else { 5 }),
        syscalls_fast: vm.then_some(0),
        syscalls_trapped: vm.then_some(if workload == "syscall" { 1000 } else { 12 }),
        memory_bytes: Some(match env {
            Env::Native => 700 << 10,
            Env::Container | Env::Bwrap => 900 << 10,
            Env::VmLinux => 40 << 20,
            Env::QemuMicrovm => 20 << 20,
            Env::QemuTcgLinux => 48 << 20,
            _ => 3 << 20,
        }),
        memory_method: Some(if estimate { MemoryMethod::Estimate } else { MemoryMethod::CgroupPeak }),
        result: BTreeMap::new(),
        host_fixups: (env == Env::VmLinux).then_some(7),
    }
}

/// Three runs of four workloads in every environment, each environment a
/// fixed factor slower than native; the Linux guests once per workload.
fn samples() -> Vec<Sample> {
    let mut v = Vec::new();
    let ours = [
        (Env::Native, 1.0),
        (Env::Container, 2.5),
        (Env::VmMiniUart, 11.0),
        (Env::VmMiniPv, 9.0),
        (Env::QemuMicrovm, 240.0),
        (Env::Bwrap, 3.5),
    ];
    for (e, k) in ours {
        for run in 0..3 {
            let jitter = run as f64 * 3.0;
            v.push(sample(e, "ready", run, 500.0 * k + jitter, 0.0, 620.0 * k + jitter));
            v.push(sample(e, "cpu", run, 480.0 * k, 4e7 * if e.is_vm() { 1.03 } else { 1.0 }, 41_000.0 * k));
            v.push(sample(e, "io", run, 510.0 * k, if e == Env::VmMiniUart { 4e8 } else { 2e6 }, 3000.0 * k + jitter));
            v.push(sample(e, "syscall", run, 505.0 * k, if e.is_vm() { 1.2e8 } else { 2.4e5 }, 2000.0 * k));
        }
    }
    for w in ["ready", "cpu", "io", "syscall"] {
        v.push(sample(Env::VmLinux, w, 0, 90e6, 5e7, 91e6));
        v.push(sample(Env::QemuTcgLinux, w, 0, 2.4e6, 4.5e7, 2.5e6));
    }
    v
}

fn host(virt_mode: VirtMode, root: bool) -> HostInfo {
    HostInfo {
        kernel: "6.1.0-golden".into(),
        cpu: "Golden CPU @ 2.00GHz".into(),
        cpus: 2,
        memory_mib: 4096,
        kvm: Ok(()),
        ring0: None,
        syscall_reaches_ring0: Some(false),
        virt_mode,
        cgroup_mode: Some("v2".into()),
        root,
    }
}

/// Everything at once: a nested host, peers, a skipped QEMU that hit the
/// emulator, failed launches, the many-at-once table.
fn full_report() -> CompareReport {
    let samples = samples();
    let envs = Env::parse_list("native,container,vm-mini,vm-linux,qemu-microvm,qemu-tcg-linux,bwrap").unwrap();
    let workloads = Workload::parse_list("ready,cpu,io,syscall", false).unwrap();
    let host = host(VirtMode::NestedEmulated, true);
    let rows = report::rows(&samples, &envs, &workloads);
    let claims = report::claims(&rows, &host);
    let peers = report::peer_ratios(&rows);
    let failures = (0..12)
        .map(|run| Failure {
            env: Env::Container,
            workload: "io".into(),
            run,
            error: format!("`io 16` exited with status {}", 128 + 9),
        })
        .collect();
    CompareReport {
        schema: SCHEMA.into(),
        virtlab_version: "0.0.0-golden".into(),
        started_unix: 1_700_000_000,
        wall_seconds: 312.25,
        host,
        config: RunConfig {
            runs: 3,
            warmup: 1,
            envs: envs.clone(),
            workloads,
            order: "interleaved (each round runs every workload in every environment)".into(),
        },
        skipped: vec![
            Skipped {
                env: Env::QemuMicrovmLinux,
                reason: emulation_failure_reason(
                    "KVM internal error. Suberror: 1\nemulation failure\n",
                    Duration::from_millis(5_250),
                ),
            },
            Skipped { env: Env::Runc, reason: "runc is not installed (apt install runc)".into() },
        ],
        failures,
        rows,
        claims,
        samples,
        scale: vec![
            ScalePoint {
                env: Env::Container,
                instances: 4,
                wall_us: 8_400.0,
                per_second: 476.19,
                memory_per_instance_bytes: Some(950_000.0),
                memory_method: None,
                failed: 0,
                errors: vec![],
            },
            ScalePoint {
                env: Env::VmMiniPv,
                instances: 4,
                wall_us: 61_000.0,
                per_second: 49.18,
                memory_per_instance_bytes: None,
                memory_method: None,
                failed: 1,
                errors: vec!["no KVM".into()],
            },
        ],
        peers,
        vmm_overhead_bytes: Some(2_621_440),
    }
}

/// The other branches: not root (every VM an estimate, no cgroup peaks), a
/// hardware-assisted host, no peers, no scale, nothing skipped or failed.
fn plain_report() -> CompareReport {
    let mut samples: Vec<Sample> =
        samples().into_iter().filter(|s| matches!(s.env, Env::Native | Env::VmMiniUart | Env::VmMiniPv)).collect();
    for s in &mut samples {
        s.memory_method = s.env.is_vm().then_some(MemoryMethod::Estimate);
        s.memory_bytes = s.memory_bytes.filter(|_| s.env.is_vm());
    }
    let envs = Env::parse_list("native,vm-mini").unwrap();
    let workloads = Workload::parse_list("ready,cpu,io,syscall", false).unwrap();
    let host = host(VirtMode::HardwareAssisted, false);
    let rows = report::rows(&samples, &envs, &workloads);
    CompareReport {
        schema: SCHEMA.into(),
        virtlab_version: "0.0.0-golden".into(),
        started_unix: 1_700_000_000,
        wall_seconds: 12.5,
        claims: report::claims(&rows, &host),
        host,
        config: RunConfig { runs: 3, warmup: 0, envs, workloads, order: "in order".into() },
        skipped: vec![],
        failures: vec![],
        rows,
        samples,
        scale: vec![],
        peers: vec![],
        vmm_overhead_bytes: None,
    }
}

/// Compares `actual` with `tests/golden/<name>`, or writes it there when
/// VIRTLAB_BLESS=1.
fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var("VIRTLAB_BLESS").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (VIRTLAB_BLESS=1 writes it)", path.display()));
    if expected != actual {
        let line = expected.lines().zip(actual.lines()).position(|(e, a)| e != a);
        let at = line.unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from {} at line {}:\n  expected: {:?}\n  actual:   {:?}\n\nthe whole output:\n{actual}",
            path.display(),
            at + 1,
            expected.lines().nth(at),
            actual.lines().nth(at)
        );
    }
}

#[test]
fn the_text_report_of_a_full_run() {
    let r = full_report();
    let text = report::text(&r) + &report::scale_table(&r);
    // What the comparison must say, whatever the layout: the reader checks
    // these first when the golden file changes.
    assert!(text.contains("vm-linux") && text.contains("~40.0 MiB"), "{text}");
    assert!(text.contains("Ours against the real thing"), "{text}");
    assert!(text.contains("12 launch(es) failed") && text.matches("  container io run").count() == 10, "{text}");
    assert!(text.contains("made 28 fix-up(s)"), "{text}");
    golden("full.txt", &text);
}

#[test]
fn the_markdown_report_of_a_full_run() {
    let md = report::markdown(&full_report(), "virtlab compare --peers --scale 4");
    assert!(md.contains("| ready | vm-mini-pv | qemu-microvm |"), "{md}");
    assert!(md.contains("## Many at once") && md.contains("## Left out"), "{md}");
    golden("full.md", &md);
}

#[test]
fn the_csv_of_a_full_run() {
    let r = full_report();
    let csv = report::csv(&r);
    assert_eq!(csv.lines().count(), 1 + r.samples.len());
    golden("full.csv", &csv);
}

#[test]
fn the_reports_of_a_plain_run() {
    let r = plain_report();
    let text = report::text(&r);
    assert!(text.contains("~ memory of vm-mini-uart, vm-mini-pv is an ESTIMATE"), "{text}");
    assert!(!text.contains("Ours against the real thing") && !text.contains("skipped"), "{text}");
    golden("plain.txt", &text);
    golden("plain.md", &report::markdown(&r, "virtlab compare"));
}

/// The JSON of the full run, kept as `tests/golden/full.json`: the recorded
/// run `virtlab report` and the HTML tests read back.
#[test]
fn the_json_of_a_full_run_reads_back_as_the_same_report() {
    let r = full_report();
    let json = serde_json::to_string_pretty(&r).unwrap() + "\n";
    golden("full.json", &json);
    let back = report::from_json(&json).unwrap();
    assert_eq!(report::text(&back), report::text(&r));
    assert_eq!(report::markdown(&back, "x"), report::markdown(&r, "x"));
    assert_eq!(serde_json::to_string_pretty(&back).unwrap() + "\n", json);
}

#[test]
fn a_saved_run_of_another_version_or_cut_off_says_so() {
    let json = serde_json::to_string_pretty(&plain_report()).unwrap();
    let other = json.replacen(SCHEMA, "virtlab.compare/2", 1);
    let e = report::from_json(&other).err().unwrap();
    assert_eq!(e.to_string(), "schema version \"virtlab.compare/2\" found, this virtlab reads \"virtlab.compare/1\"");
    let e = report::from_json(&json[..json.len() / 2]).err().unwrap();
    assert!(e.to_string().contains("truncated"), "{e}");
    let e = report::from_json("{\"rows\": []}").err().unwrap();
    assert!(e.to_string().starts_with("no \"schema\" field"), "{e}");
    let e = report::from_json(&json.replacen("\"rows\"", "\"rowz\"", 1)).err().unwrap();
    assert!(matches!(e, report::LoadError::BadReport(_)), "{e}");
    assert!(std::error::Error::source(&e).unwrap().to_string().contains("missing field `rows`"), "{e:?}");
}

/// The HTML page of the full run: one section per claim with its sentence,
/// a chart wherever the run measured something to draw, nothing fetched.
#[test]
fn the_html_page_of_a_full_run() {
    let r = full_report();
    let page = report::html(&r, "virtlab compare --peers --scale 4 --html page.html");
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert_eq!(page.matches("<section class=\"claim\"").count(), 6);
    for c in &r.claims {
        assert!(page.contains(&c.claim), "{}", c.claim);
    }
    // startup, timeline, overhead (cpu), system calls, console, scale.
    assert_eq!(page.matches("<svg ").count(), 6);
    assert!(page.contains("This computer is itself a virtual machine"));
    assert!(page.contains("Ours against the real thing") && page.contains("id=\"scale\""));
    assert!(page.contains("<pre>virtlab compare --peers --scale 4 --html page.html</pre>"));
    assert!(page.contains("prefers-color-scheme: dark") && page.contains("position: sticky"));
    // Self-contained: nothing to load, no framework.
    for outside in ["<link", " src=", "@import", "url(", "https://"] {
        assert!(!page.contains(outside), "{outside}");
    }
    assert_eq!(page.matches("<script>").count(), 1);
    golden("full.html", &page);
    let plain = report::html(&plain_report(), "virtlab compare");
    assert!(
        plain.contains("was not measured (--no-probe)")
            && !plain.contains("id=\"scale\"")
            && !plain.contains("id=\"peers\"")
    );
}
