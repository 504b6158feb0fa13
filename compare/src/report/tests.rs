//! The report's model and renderers on recorded samples.

use super::*;
use crate::host::VirtMode;

fn sample(env: Env, workload: &str, startup: f64, inside: f64, total: f64) -> Sample {
    Sample {
        env,
        workload: workload.into(),
        run: 0,
        startup_us: Some(startup),
        total_us: total,
        inside_ns: Some(inside),
        pid: Some(if env == Env::Native { 4242 } else { 1 }),
        exit_status: 0,
        phases: vec![crate::launch::Phase { name: "ready".into(), at_us: startup }],
        vm_exits: env.is_vm().then_some(100),
        console_exits: env.is_vm().then_some(if env == Env::VmMiniPv { 4 } else { 4200 }),
        syscalls_fast: env.is_vm().then_some(0),
        syscalls_trapped: env.is_vm().then_some(10),
        memory_bytes: Some(if env.is_vm() { 3 << 20 } else { 512 << 10 }),
        memory_method: Some(if env == Env::VmLinux { MemoryMethod::Estimate } else { MemoryMethod::CgroupPeak }),
        result: BTreeMap::new(),
        host_fixups: None,
    }
}

fn recorded() -> Vec<Sample> {
    let mut v = Vec::new();
    for (e, k) in [(Env::Native, 1.0), (Env::Container, 2.0), (Env::VmMiniUart, 10.0), (Env::VmMiniPv, 9.0)] {
        for run in 0..3 {
            let jitter = run as f64;
            v.push(sample(e, "ready", 500.0 * k + jitter, 0.0, 600.0 * k));
            v.push(sample(e, "cpu", 500.0 * k, 1e6 * if e.is_vm() { 1.02 } else { 1.0 }, 2000.0 * k));
            v.push(sample(e, "io", 500.0 * k, if e == Env::VmMiniUart { 4e8 } else { 1e6 }, 2000.0 * k));
            v.push(sample(e, "syscall", 500.0 * k, if e.is_vm() { 1e8 } else { 2e5 }, 2000.0 * k));
        }
    }
    v
}

fn host() -> HostInfo {
    HostInfo {
        kernel: "6.1.0".into(),
        cpu: "test".into(),
        cpus: 2,
        memory_mib: 1024,
        kvm: Ok(()),
        ring0: None,
        syscall_reaches_ring0: Some(false),
        virt_mode: VirtMode::HardwareAssisted,
        cgroup_mode: Some("v2".into()),
        root: true,
    }
}

fn workloads() -> Vec<Workload> {
    Workload::parse_list("ready,cpu,io,syscall", false).unwrap()
}

/// A report of `samples` as `runs` runs after `warmup` warm-ups, with
/// nothing skipped, failed, scaled or set against a peer, and no claims.
fn report(
    samples: Vec<Sample>,
    envs: &[Env],
    wl: &[Workload],
    host: HostInfo,
    runs: usize,
    warmup: usize,
) -> CompareReport {
    CompareReport {
        schema: SCHEMA.into(),
        virtlab_version: "test".into(),
        started_unix: 0,
        wall_seconds: 1.0,
        host,
        config: RunConfig { runs, warmup, envs: envs.to_vec(), workloads: wl.to_vec(), order: "x".into() },
        skipped: vec![],
        failures: vec![],
        rows: rows(&samples, envs, wl),
        claims: vec![],
        samples,
        scale: vec![],
        peers: vec![],
        vmm_overhead_bytes: Some(2 << 20),
    }
}

#[test]
fn rows_hold_medians_and_ratios_against_native() {
    let envs = Env::parse_list("native,container,vm-mini").unwrap();
    let rows = rows(&recorded(), &envs, &workloads());
    assert_eq!(rows.len(), 16);
    let r = find(&rows, Env::Container, "ready").unwrap();
    assert_eq!(r.startup_us.unwrap().median, 1001.0);
    assert!((r.startup_ratio.unwrap() - 1001.0 / 501.0).abs() < 1e-9);
    let cpu = find(&rows, Env::VmMiniPv, "cpu").unwrap();
    assert!((cpu.inside_ratio.unwrap() - 1.02).abs() < 1e-9);
    let io = find(&rows, Env::VmMiniUart, "io").unwrap();
    assert_eq!(io.console_exits_per_kib, Some(4200.0 / 16.0));
    assert_eq!(find(&rows, Env::VmMiniPv, "ready").unwrap().syscalls_trapped_share, Some(1.0));
    assert_eq!(find(&rows, Env::Native, "ready").unwrap().pid, Some(4242));
}

#[test]
fn claims_are_drawn_from_the_numbers() {
    let envs = Env::parse_list("native,container,vm-mini").unwrap();
    let rows = rows(&recorded(), &envs, &workloads());
    let c = claims(&rows, &host());
    assert_eq!(c.len(), 6);
    assert!(c[0].measured.contains("4.50x as long"), "{}", c[0].measured);
    assert!(c[1].measured.contains("1.02x"), "{}", c[1].measured);
    assert!(c[2].measured.contains("500x") && c[2].measured.contains("trapped"), "{}", c[2].measured);
    assert!(c[3].measured.contains("262 VM exits per KiB"), "{}", c[3].measured);
    assert!(c[4].measured.contains("512 KiB") && c[4].measured.contains("3.0 MiB"), "{}", c[4].measured);
    assert!(c[5].measured.contains("PID 4242") && c[5].measured.contains("6.1.0"), "{}", c[5].measured);
}

#[test]
fn missing_environments_are_said_not_guessed() {
    let natives: Vec<Sample> = recorded().into_iter().filter(|s| s.env == Env::Native).collect();
    let rows = rows(&natives, &[Env::Native], &workloads());
    for c in claims(&rows, &host()) {
        assert!(c.measured.starts_with("not measured"), "{}: {}", c.claim, c.measured);
    }
}

#[test]
fn peers_pair_with_ours_including_the_linux_guest() {
    let mut samples = recorded();
    for (e, startup, mem) in
        [(Env::VmLinux, 90e6, 40u64 << 20), (Env::QemuTcgLinux, 2.4e6, 48 << 20), (Env::QemuMicrovm, 120e3, 20 << 20)]
    {
        let mut s = sample(e, "ready", startup, 0.0, startup * 1.01);
        s.memory_bytes = Some(mem);
        samples.push(s);
    }
    let envs = Env::parse_list("native,container,vm-mini,vm-linux,qemu-microvm,qemu-tcg-linux").unwrap();
    let rows = rows(&samples, &envs, &workloads());
    assert_eq!(find(&rows, Env::VmLinux, "ready").unwrap().memory_method, Some(MemoryMethod::Estimate));
    let peers = peer_ratios(&rows);
    let linux = peers.iter().find(|p| p.ours == Env::VmLinux && p.peer == Env::QemuTcgLinux).unwrap();
    assert!((linux.startup_ratio.unwrap() - 37.5).abs() < 1e-9);
    assert_eq!(linux.memory_ratio, None, "an estimate is not set against a cgroup peak");
    let mini = peers.iter().find(|p| p.ours == Env::VmMiniPv && p.peer == Env::QemuMicrovm).unwrap();
    assert!((mini.memory_ratio.unwrap() - 3.0 / 20.0).abs() < 1e-9);

    let mut h = host();
    h.virt_mode = VirtMode::NestedEmulated;
    let mut report = report(samples, &envs, &workloads(), h, 3, 1);
    report.skipped = vec![Skipped {
        env: Env::QemuMicrovmLinux,
        reason: crate::peers::emulation_failure_reason(
            "KVM internal error. Suberror: 1\nemulation failure\n",
            std::time::Duration::from_secs(5),
        ),
    }];
    report.claims = claims(&rows, &host());
    report.peers = peers;
    let text = text(&report);
    assert_eq!(text.matches("Note: on this nested host QEMU's software emulation").count(), 1, "{text}");
    assert!(text.contains("reached its workload in 2.40 s under TCG and in 90.00 s"), "{text}");
    assert!(text.contains("QEMU with KVM could not boot that guest at all"), "{text}");
    assert!(text.contains("~40.0 MiB") && text.contains("~ memory of vm-linux is an ESTIMATE"), "{text}");
    assert!(text.contains("VMM memory, ours / QEMU") && text.contains("0.15x"), "{text}");
    assert!(text.contains("The VMM process's own memory: 2.0 MiB"), "{text}");
    // The legend sits right under the table, the rest after the claims.
    let legend = text.find("~ memory of vm-linux").unwrap();
    assert!(legend < text.find("What this run shows").unwrap());
    assert!(text.find("memory per instance: the peak").unwrap() > text.find("containers isolate less").unwrap());
    let mut without_ours = report.clone();
    without_ours.rows.retain(|r| r.env != Env::VmLinux);
    let note = tcg_note(&without_ours);
    assert!(note.contains("under TCG it reached its workload in 2.40 s; add vm-linux"), "{note}");
    without_ours.host.virt_mode = VirtMode::HardwareAssisted;
    assert_eq!(tcg_note(&without_ours), "", "only nested hosts get the note");
    let md = markdown(&report, "virtlab compare --peers");
    assert!(md.contains("| ready | vm-mini-pv | qemu-microvm |") && md.contains("| 0.15x |"), "{md}");
    assert!(md.contains("\\~ memory of vm-linux"), "{md}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["rows"][0]["memory_method"], "cgroup-peak");
    assert!(csv(&report).lines().next().unwrap().ends_with(",memory_method"));
}

#[test]
fn the_estimate_legend_names_each_environment_once() {
    // Not root: the minikernel VMs keep their estimate too, so vm-linux
    // is not the only estimated row, and every workload has a row of each.
    let mut samples = Vec::new();
    for w in ["ready", "cpu", "io"] {
        for e in [Env::Native, Env::VmMiniUart, Env::VmMiniPv, Env::VmLinux] {
            let mut s = sample(e, w, 1000.0, 0.0, 2000.0);
            s.memory_method = e.is_vm().then_some(MemoryMethod::Estimate);
            s.memory_bytes = e.is_vm().then_some(3 << 20);
            samples.push(s);
        }
    }
    let envs = Env::parse_list("native,vm-mini,vm-linux").unwrap();
    let wl = Workload::parse_list("ready,cpu,io", false).unwrap();
    let mut h = host();
    h.root = false;
    let report = report(samples, &envs, &wl, h, 1, 0);
    let legend = estimate_legend(&report);
    assert!(legend.starts_with("~ memory of vm-mini-uart, vm-mini-pv, vm-linux is an ESTIMATE"), "{legend}");
    for name in ["vm-mini-uart", "vm-mini-pv", "vm-linux"] {
        assert_eq!(legend.matches(name).count(), 1, "{name} repeated: {legend}");
    }
    // The same legend under the Markdown table.
    let md = markdown(&report, "virtlab compare");
    assert_eq!(md.matches("vm-mini-uart, vm-mini-pv, vm-linux is an ESTIMATE").count(), 1, "{md}");
    assert!(!md.contains("vm-linux, vm-mini-uart"), "{md}");
}

#[test]
fn csv_has_a_line_per_run() {
    let samples = recorded();
    let envs = Env::parse_list("native,container,vm-mini").unwrap();
    let report = report(samples.clone(), &envs, &workloads(), host(), 3, 1);
    let csv = csv(&report);
    assert_eq!(csv.lines().count(), 1 + samples.len());
    let header_cols = csv.lines().next().unwrap().split(',').count();
    assert!(csv.lines().all(|l| l.split(',').count() == header_cols));
    let text = text(&report);
    assert!(text.contains("vm-mini-pv") && text.contains("claims"), "{text}");
    let md = markdown(&report, "virtlab compare --test");
    assert!(md.contains("`virtlab compare --test`") && md.contains("Firecracker"), "{md}");
    let table_rows = md.lines().filter(|l| l.starts_with("| ready |") || l.starts_with("| cpu |")).count();
    assert_eq!(table_rows, 8, "{md}");
}

#[test]
fn the_timeline_shows_each_environments_median_run_not_its_first() {
    let mut v = Vec::new();
    for (run, total) in [(0, 9000.0), (1, 600.0), (2, 700.0)] {
        let mut s = sample(Env::Container, "ready", total / 2.0, 0.0, total);
        s.run = run;
        v.push(s);
    }
    v.push(sample(Env::Native, "ready", 100.0, 0.0, 200.0));
    let lines = timelines(&v, "ready");
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], (Env::Native, vec![("ready".to_string(), 100.0)]));
    // 600, 700, 9000: the median run is the 700 us one, not the slow first.
    assert_eq!(lines[1], (Env::Container, vec![("ready".to_string(), 350.0)]));
}
