//! `virtlab compare`: the same workload natively, in a container and in
//! VMs, measured and explained.

use std::fs::File;
use std::io::{Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::builder::RangedU64ValueParser;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use virtlab_compare::env::{self, Context, Env, Workload};
use virtlab_compare::host::HostInfo;
use virtlab_compare::report::{self, CompareReport, Failure, RunConfig, Skipped, SCHEMA};
use virtlab_compare::{memory, peers, scale, svg};

use super::units::parse_timeout;

/// Arguments of `virtlab compare`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  virtlab compare                      # the default set, a few minutes\n  \
virtlab compare --quick              # a fast overview\n  \
virtlab compare --workload io --env vm-mini     # UART against the paravirtual console\n  \
virtlab compare --scale 1,4,16,64 --env native,container,vm-mini-pv\n  \
virtlab compare --env vm-linux,qemu-tcg-linux --workload ready   # one Linux guest, our VMM against QEMU's TCG\n  \
virtlab compare --json out.json --csv out.csv --svg charts/\n\n\
Exit status: 0 every launch worked; 1 some failed (reported, the rest went on); 130 interrupted (Ctrl-C or\n\
SIGTERM: it stops after the current launch and reports what finished); 2 a bad option; 125 virtlab itself\n\
failed (e.g. an output path that cannot be written: all are checked before measuring).")]
pub struct CompareArgs {
    /// Measured runs per environment and workload, 1 to 10000 [default: 5, 3 with --quick].
    #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_RUNS))]
    runs: Option<usize>,
    /// Warm-up runs before measuring (not kept), 0 to 100.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        value_parser = RangedU64ValueParser::<usize>::new().range(0..=MAX_WARMUP)
    )]
    warmup: usize,
    /// Environments: native, container, vm-mini (= vm-mini-uart + vm-mini-pv),
    /// vm-mini-uart, vm-mini-pv, vm-linux, all; peers by name: qemu-microvm,
    /// qemu-tcg, qemu-microvm-linux, qemu-tcg-linux, bwrap, runc, crun, or
    /// peers (all of them).
    #[arg(long, value_name = "LIST", value_parser = parse_envs)]
    env: Option<EnvList>,
    /// Workloads: ready, cpu, syscall, mem, io; a size with `=`, e.g. cpu=50000000.
    #[arg(long, value_name = "LIST", default_value = "ready,cpu,syscall,mem,io")]
    workload: String,
    /// A fast overview: 3 runs, smaller workloads, no Linux guest.
    #[arg(long)]
    quick: bool,
    /// Write the JSON report here ("-" for standard output; the text report
    /// then goes to standard error).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write one CSV line per run here.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Write the report as Markdown here (tables, peers, published anchors,
    /// the command that made it): e.g. benches/README.md.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Write SVG charts (startup, overhead, timeline) into this directory.
    #[arg(long, value_name = "DIR")]
    svg: Option<PathBuf>,
    /// Also start this many instances at once per environment (e.g. 1,4,16,64)
    /// and report instances per second and memory per instance.
    #[arg(long, value_name = "COUNTS", value_parser = parse_counts)]
    scale: Option<Counts>,
    /// Give up on one launch after this long (positive: ms, s, m, h).
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_timeout)]
    timeout: Duration,
    /// Also run the peers, when installed: qemu-microvm and qemu-tcg (the
    /// same minikernel through PVH), qemu-microvm-linux and qemu-tcg-linux
    /// (the same Linux guest as vm-linux, when a guest kernel is available),
    /// bwrap, runc and crun (the same rootfs), and show ours / peer.
    #[arg(long)]
    peers: bool,
    /// Skip the ring-0 calibration of the host (the report then cannot say
    /// whether guest kernel code is emulated).
    #[arg(long)]
    no_probe: bool,
}

/// A parsed `--env` list (one clap value holding several environments).
#[derive(Debug, Clone)]
struct EnvList(Vec<Env>);

fn parse_envs(text: &str) -> Result<EnvList, String> {
    Env::parse_list(text).map(EnvList)
}

/// A parsed `--scale` list.
#[derive(Debug, Clone)]
struct Counts(Vec<usize>);

fn parse_counts(text: &str) -> Result<Counts, String> {
    scale::parse_counts(text).map(Counts)
}

/// The most measured runs `--runs` takes.
const MAX_RUNS: u64 = 10_000;
/// The most warm-up runs `--warmup` takes: a warm-up or two is what the
/// caches need; more only makes the run longer.
const MAX_WARMUP: u64 = 100;

/// Set by SIGINT or SIGTERM: stop after the current launch and report what
/// finished.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Removes what the peers left on disk when dropped (every return path).
struct PeersCleanup;

impl Drop for PeersCleanup {
    fn drop(&mut self) {
        peers::cleanup();
    }
}

extern "C" fn on_stop_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// The SVG charts `--svg DIR` writes, in this order.
const SVG_CHARTS: [&str; 3] = ["startup.svg", "overhead.svg", "timeline.svg"];

/// An output file, opened before measuring so that a path that cannot be
/// written fails at once rather than after the whole run. An existing file
/// is opened without truncating it: it keeps its content until the report
/// replaces it.
struct OutputFile {
    path: PathBuf,
    file: File,
    /// Made by the check, so removed again if the run ends without
    /// writing it.
    created: bool,
}

impl OutputFile {
    /// Replaces the file's content with `body`.
    fn write(&mut self, body: &[u8]) -> anyhow::Result<()> {
        let path = self.path.display();
        self.file.set_len(0).with_context(|| format!("cannot write {path}"))?;
        self.file.rewind().with_context(|| format!("cannot write {path}"))?;
        self.file.write_all(body).with_context(|| format!("cannot write {path}"))
    }
}

/// Every output of the run (`--json`, `--csv`, `--markdown`, `--svg`),
/// checked and opened before measuring. Dropped on any way out: the files
/// and directories the check made and the run did not fill are removed, so
/// a run that fails early leaves nothing behind.
#[derive(Default)]
struct Outputs {
    json: Option<OutputFile>,
    csv: Option<OutputFile>,
    markdown: Option<OutputFile>,
    svg: Vec<OutputFile>,
    /// Directories made for `--svg`, outermost first.
    created_dirs: Vec<PathBuf>,
}

impl Outputs {
    fn open(args: &CompareArgs) -> anyhow::Result<Outputs> {
        // Built up in place: when one check fails, what the earlier ones
        // made goes with `outputs`.
        let mut outputs = Outputs::default();
        if let Some(p) = args.json.as_deref().filter(|p| *p != Path::new("-")) {
            outputs.json = Some(Outputs::file(p, "--json")?);
        }
        if let Some(p) = &args.csv {
            outputs.csv = Some(Outputs::file(p, "--csv")?);
        }
        if let Some(p) = &args.markdown {
            outputs.markdown = Some(Outputs::file(p, "--markdown")?);
        }
        if let Some(dir) = &args.svg {
            // The directories that are not there yet, innermost first.
            let missing: Vec<PathBuf> = dir
                .ancestors()
                .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
                .map(Path::to_path_buf)
                .collect();
            outputs.created_dirs.extend(missing.into_iter().rev());
            std::fs::create_dir_all(dir)
                .with_context(|| format!("--svg: cannot create the directory {}", dir.display()))?;
            for name in SVG_CHARTS {
                let f = Outputs::file(&dir.join(name), "--svg")?;
                outputs.svg.push(f);
            }
        }
        Ok(outputs)
    }

    /// Opens `path` for writing, creating it when missing.
    fn file(path: &Path, option: &str) -> anyhow::Result<OutputFile> {
        let existed = path.exists();
        let file = File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("{option}: cannot write {}", path.display()))?;
        Ok(OutputFile { path: path.to_path_buf(), file, created: !existed })
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        let files = self.json.iter().chain(&self.csv).chain(&self.markdown).chain(&self.svg);
        for f in files.filter(|f| f.created) {
            // Only a file still empty: never what a report put there.
            if f.file.metadata().is_ok_and(|m| m.len() == 0) {
                let _ = std::fs::remove_file(&f.path);
            }
        }
        for d in self.created_dirs.iter().rev() {
            // remove_dir only removes an empty directory.
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn say(to_stderr: bool, line: &str) {
    if to_stderr {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// A peer this host cannot run (QEMU stopped by the host's instruction
/// emulator, the same way every time): skipped from now on with the reason,
/// like a peer that is not installed, rather than a failed launch.
fn refused(bar: &ProgressBar, skipped: &mut Vec<Skipped>, given_up: &mut Vec<Env>, e: Env, reason: String) {
    bar.suspend(|| eprintln!("virtlab compare: {} cannot run on this host, not launched again: {reason}", e.name()));
    given_up.push(e);
    skipped.push(Skipped { env: e, reason });
}

/// Runs the comparison; returns the exit status (0: all launches worked,
/// 1: some failed, 130: interrupted by SIGINT or SIGTERM).
pub fn run(args: CompareArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
    let json_to_stdout = args.json.as_deref() == Some(Path::new("-"));
    let runs = args.runs.unwrap_or(if args.quick { 3 } else { 5 });
    let workloads = Workload::parse_list(&args.workload, args.quick).map_err(anyhow::Error::msg)?;
    // Ctrl-C and SIGTERM (kill, a service manager, a CI job's time limit)
    // alike: stop after the current launch and report what finished. Caught
    // from here on, so that the output files opened next are either filled
    // or removed, never left empty by a signal.
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: signal(2) with a valid signal number; the handler only
        // stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
    let mut outputs = Outputs::open(&args)?;
    let mut skipped = Vec::new();
    let mut asked = args.env.clone().map(|l| l.0).unwrap_or_else(|| Env::ALL.to_vec());
    if args.peers {
        asked.extend(Env::PEERS.iter().filter(|p| !asked.contains(p)).copied().collect::<Vec<_>>());
    }
    let mut envs = Vec::new();
    // The Linux guest kernel, looked up once for vm-linux and its QEMU peers.
    let mut kernel_lookup: Option<Result<PathBuf, String>> = None;
    let mut find_kernel = |who: Env| -> Result<PathBuf, String> {
        kernel_lookup
            .get_or_insert_with(|| match virtlab_vmm::linux::provision::locate(None) {
                Ok(k) => {
                    eprintln!("virtlab compare: the Linux guest rows boot {} ({})", k.path.display(), k.why);
                    Ok(k.path)
                }
                Err(e) => Err(e.to_string()),
            })
            .clone()
            .inspect(|_| {
                if who == Env::VmLinux {
                    eprintln!(
                        "virtlab compare: vm-linux boots once per workload: on a nested host each boot takes minutes"
                    );
                }
            })
    };

    eprintln!("virtlab compare: probing the host{}...", if args.no_probe { "" } else { " (ring-0 calibration)" });
    let mut host = HostInfo::probe(!args.no_probe);
    for e in asked {
        let why = match e {
            Env::Native => None,
            Env::Container if !host.root => {
                Some("containers with cgroup limits need root; run virtlab as root (sudo) to include them".to_string())
            }
            Env::Container => None,
            Env::VmMiniUart | Env::VmMiniPv | Env::VmLinux if host.kvm.is_err() => Some(format!(
                "no usable KVM ({}): enable VT-x/AMD-V (or nested virtualization) and make /dev/kvm accessible",
                host.kvm.as_ref().err().map(String::as_str).unwrap_or("")
            )),
            e if e.boots_linux() && args.quick => {
                Some("left out of --quick: a Linux guest boots in minutes on nested hosts; run without --quick".into())
            }
            Env::VmLinux => find_kernel(Env::VmLinux).err(),
            peer if peer.is_peer() => peers::unavailable(peer, host.kvm.is_ok(), host.cgroup_mode.as_deref())
                .or_else(|| if peer.boots_linux() { find_kernel(peer).err() } else { None }),
            _ => None,
        };
        match why {
            Some(reason) => skipped.push(Skipped { env: e, reason }),
            None => envs.push(e),
        }
    }
    for s in &skipped {
        eprintln!("virtlab compare: skipping {}: {}", s.env.name(), s.reason);
    }
    let linux_kernel = match (envs.iter().any(|e| e.boots_linux()), kernel_lookup) {
        (true, Some(Ok(k))) => Some(k),
        _ => None,
    };

    let workload_path = virtlab_workload::materialize().context("cannot put the workload binary on disk")?;
    let rootfs = if envs.iter().any(|e| matches!(e, Env::Container | Env::Bwrap | Env::Runc | Env::Crun)) {
        Some(virtlab_container::rootfs::default_rootfs().context("cannot build the container rootfs")?)
    } else {
        None
    };
    let vmm_overhead_bytes = if envs.iter().any(|e| e.is_vm()) {
        let exe = std::env::current_exe().context("cannot find the virtlab binary")?;
        match env::measure_vmm_overhead(&exe) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!(
                    "virtlab compare: could not measure the VMM's own memory ({e}); VM memory is guest pages only"
                );
                None
            }
        }
    } else {
        None
    };
    let ctx = Context {
        workload_path,
        rootfs,
        timeout: args.timeout,
        vmm_overhead_bytes,
        container_memory: 256 << 20,
        container_pids: 64,
        linux_kernel,
        linux_timeout: Duration::from_secs(900),
    };

    // The peers' bundle directories and initramfs file go on every way out.
    let _cleanup = PeersCleanup;

    let rounds = args.warmup + runs;
    let linux_runs = if envs.contains(&Env::VmLinux) { workloads.len() } else { 0 };
    let ours = envs.iter().filter(|e| **e != Env::VmLinux).count();
    let total = (rounds * workloads.len() * ours + linux_runs) as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut samples = Vec::new();
    let mut failures = Vec::new();
    // Environments that failed in a way that repeats every time (QEMU
    // stopped by this host's instruction emulator): not launched again.
    let mut given_up: Vec<Env> = Vec::new();
    // A QEMU launch is also its memory run (a cgroup of its own). The first
    // run of a binary charges the page cache it reads (QEMU, its libraries,
    // the guest kernel) to its cgroup, so a memory figure must come after an
    // earlier run of the same binary: the warm-ups are those; without
    // warm-ups, one throw-away launch per QEMU environment first.
    if args.warmup == 0 && host.root {
        for &e in envs.iter().filter(|e| e.is_qemu()) {
            bar.set_message(format!("{} (throw-away run, so that memory is measured warm)", e.name()));
            if let Err(error) = env::launch(e, &workloads[0], 0, &ctx) {
                if peers::is_emulation_failure(&error) {
                    refused(&bar, &mut skipped, &mut given_up, e, error);
                }
            }
        }
    }
    'rounds: for round in 0..rounds {
        let warm = round < args.warmup;
        for w in &workloads {
            // Interleaved: every environment once, then the next workload,
            // then the next round, so drift on a shared machine hits all alike.
            for &e in &envs {
                if INTERRUPTED.load(Ordering::SeqCst) {
                    break 'rounds;
                }
                // A Linux guest boots once per workload, in the first
                // measured round: on nested hosts a boot takes minutes.
                if e == Env::VmLinux && round != args.warmup {
                    continue;
                }
                if given_up.contains(&e) {
                    bar.inc(1);
                    continue;
                }
                bar.set_message(format!("{} {}{}", e.name(), w.label(), if warm { " (warm-up)" } else { "" }));
                let run_index = round.saturating_sub(args.warmup);
                match env::launch(e, w, run_index, &ctx) {
                    Ok(s) if !warm => samples.push(s),
                    Ok(_) => {}
                    Err(error) if peers::is_emulation_failure(&error) => {
                        refused(&bar, &mut skipped, &mut given_up, e, error);
                    }
                    Err(error) => {
                        bar.suspend(|| eprintln!("virtlab compare: {} {} failed: {error}", e.name(), w.label()));
                        failures.push(Failure { env: e, workload: w.mode.clone(), run: run_index, error });
                    }
                }
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    let mut interrupted = INTERRUPTED.load(Ordering::SeqCst);

    // Memory of native runs and of our minikernel VMs (launched in this
    // process, so not in a cgroup of their own): one untimed run per
    // workload, after the timed ones, in a fresh cgroup. Without root the
    // VM rows keep their estimate and native has none.
    if host.root && !interrupted {
        let mut vm_warmed = false;
        for &e in envs.iter().filter(|e| matches!(e, Env::Native | Env::VmMiniUart | Env::VmMiniPv)) {
            for w in &workloads {
                if INTERRUPTED.load(Ordering::SeqCst) {
                    break;
                }
                let measured = if e == Env::Native {
                    memory::native(w, &ctx)
                } else {
                    // The timed VM runs were in this process, not runs of
                    // `virtlab vm run`: one throw-away run of it first, so
                    // that its page cache is not charged to the figure.
                    if !vm_warmed {
                        let _ = memory::vm_mini(e, w, &ctx);
                        vm_warmed = true;
                    }
                    memory::vm_mini(e, w, &ctx)
                };
                match measured {
                    Ok(bytes) => {
                        for s in samples.iter_mut().filter(|s| s.env == e && s.workload == w.mode) {
                            s.memory_bytes = Some(bytes);
                            s.memory_method = Some(memory::MemoryMethod::CgroupPeak);
                        }
                    }
                    Err(err) => eprintln!("virtlab compare: memory of {} {}: {err}", e.name(), w.label()),
                }
            }
        }
        interrupted = INTERRUPTED.load(Ordering::SeqCst);
    }

    let vm: Vec<_> = samples.iter().filter(|s| s.env.is_vm()).collect();
    if !vm.is_empty() {
        host.syscall_reaches_ring0 = Some(vm.iter().any(|s| s.syscalls_fast.unwrap_or(0) > 0));
    }
    peers::cleanup();
    let rows = report::rows(&samples, &envs, &workloads);
    let claims = report::claims(&rows, &host);
    let peers = report::peer_ratios(&rows);

    let mut scale_points = Vec::new();
    if let (Some(Counts(counts)), false) = (&args.scale, interrupted) {
        for &n in counts {
            for &e in envs.iter().filter(|e| **e != Env::VmLinux && !e.is_peer()) {
                if INTERRUPTED.load(Ordering::SeqCst) {
                    break;
                }
                eprintln!("virtlab compare: scale: {n} x {} at once...", e.name());
                scale_points.push(scale::run_point(e, n, &ctx));
            }
        }
    }

    let report = CompareReport {
        schema: SCHEMA,
        virtlab_version: env!("CARGO_PKG_VERSION"),
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .saturating_sub(started.elapsed().as_secs()),
        wall_seconds: started.elapsed().as_secs_f64(),
        host,
        config: RunConfig {
            runs,
            warmup: args.warmup,
            envs: envs.clone(),
            workloads: workloads.clone(),
            order: "interleaved (each round runs every workload in every environment)".into(),
        },
        skipped,
        failures,
        rows,
        claims,
        samples,
        scale: scale_points,
        peers,
        vmm_overhead_bytes: ctx.vmm_overhead_bytes,
    };

    let text = report::text(&report);
    say(json_to_stdout, &text);
    if !report.scale.is_empty() {
        say(json_to_stdout, &report::scale_table(&report));
    }
    if interrupted {
        eprintln!("virtlab compare: interrupted; the figures above are from the runs that finished");
    }
    if args.json.is_some() {
        let json = serde_json::to_string_pretty(&report).context("cannot serialize the report")?;
        match &mut outputs.json {
            Some(f) => f.write((json + "\n").as_bytes())?,
            None => println!("{json}"),
        }
    }
    if let Some(f) = &mut outputs.markdown {
        // The command that made it, less the --markdown option itself.
        let mut words = vec!["virtlab".to_string()];
        let mut args_iter = std::env::args().skip(1);
        while let Some(a) = args_iter.next() {
            if a == "--markdown" {
                args_iter.next();
            } else if !a.starts_with("--markdown=") {
                words.push(a);
            }
        }
        let command = words.join(" ");
        f.write(report::markdown(&report, &command).as_bytes())?;
    }
    if let Some(f) = &mut outputs.csv {
        f.write(report::csv(&report).as_bytes())?;
    }
    // The charts in SVG_CHARTS's order.
    let charts = [svg::startup_chart(&report), svg::overhead_chart(&report), svg::timeline_chart(&report)];
    for (f, body) in outputs.svg.iter_mut().zip(charts) {
        f.write(body.as_bytes())?;
    }
    Ok(if interrupted {
        130
    } else if report.failures.is_empty() {
        0
    } else {
        1
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CompareArgs,
    }

    fn args(words: &[&std::ffi::OsStr]) -> CompareArgs {
        Cli::parse_from(std::iter::once("compare".as_ref()).chain(words.iter().copied())).args
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = walk(dir).iter().map(|p| p.strip_prefix(dir).unwrap().display().to_string()).collect();
        v.sort();
        v
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                v.extend(walk(&p));
            }
            v.push(p);
        }
        v
    }

    #[test]
    fn outputs_made_for_the_check_go_when_the_run_ends_without_writing_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("old.csv"), "an earlier run\n").unwrap();
        let (json, csv, svg) = (d.join("r.json"), d.join("old.csv"), d.join("a").join("b"));
        let a = args(&[
            "--json".as_ref(),
            json.as_os_str(),
            "--csv".as_ref(),
            csv.as_os_str(),
            "--svg".as_ref(),
            svg.as_os_str(),
        ]);

        // A run that fails early (after the check): nothing of it is left,
        // the existing file is as it was.
        let outputs = Outputs::open(&a).unwrap();
        assert_eq!(
            names(d),
            ["a", "a/b", "a/b/overhead.svg", "a/b/startup.svg", "a/b/timeline.svg", "old.csv", "r.json"]
        );
        drop(outputs);
        assert_eq!(names(d), ["old.csv"]);
        assert_eq!(std::fs::read_to_string(&csv).unwrap(), "an earlier run\n");

        // A run that writes its report keeps it, replacing what was there.
        let mut outputs = Outputs::open(&a).unwrap();
        outputs.json.as_mut().unwrap().write(b"{}\n").unwrap();
        outputs.csv.as_mut().unwrap().write(b"x\n").unwrap();
        for f in &mut outputs.svg {
            f.write(b"<svg/>").unwrap();
        }
        drop(outputs);
        assert_eq!(names(d).len(), 7);
        assert_eq!(std::fs::read_to_string(&csv).unwrap(), "x\n");
        assert_eq!(std::fs::read_to_string(&json).unwrap(), "{}\n");
    }

    #[test]
    fn a_failed_check_takes_back_what_the_earlier_ones_made() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (json, svg, csv) = (d.join("r.json"), d.join("new").join("charts"), d.join("missing").join("r.csv"));
        let a = args(&[
            "--json".as_ref(),
            json.as_os_str(),
            "--svg".as_ref(),
            svg.as_os_str(),
            "--csv".as_ref(),
            csv.as_os_str(),
        ]);
        let e = Outputs::open(&a).err().unwrap();
        assert!(format!("{e:#}").starts_with(&format!("--csv: cannot write {}: ", csv.display())), "{e:#}");
        assert!(names(d).is_empty(), "{:?}", names(d));
        // Standard output is no file to check.
        assert!(Outputs::open(&args(&["--json".as_ref(), "-".as_ref()])).unwrap().json.is_none());
    }
}
