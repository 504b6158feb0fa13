//! `virtlab compare`: the same workload natively, in a container and in
//! VMs, measured and explained.
//!
//! [`run`] goes step by step: the output files are checked ([`outputs`]),
//! the environments chosen and set up ([`select`]), the launches measured
//! ([`measure`]), and the report printed and written.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::builder::RangedU64ValueParser;
use clap::Args;
use virtlab_compare::host::HostInfo;
use virtlab_compare::launch::{Env, Workload};
use virtlab_compare::report::{self, CompareReport, RunConfig, SCHEMA};
use virtlab_compare::{peers, scale};

use super::units::parse_timeout;

mod measure;
mod outputs;
mod select;

use measure::{Plan, Timed};
use outputs::Outputs;
use select::Selection;

/// Arguments of `virtlab compare`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  virtlab compare                      # the default set, a few minutes\n  \
virtlab compare --quick              # a fast overview\n  \
virtlab compare --workload io --env vm-mini     # UART against the paravirtual console\n  \
virtlab compare --scale 1,4,16,64 --env native,container,vm-mini-pv\n  \
virtlab compare --env vm-linux,qemu-tcg-linux --workload ready   # one Linux guest, our VMM against QEMU's TCG\n  \
virtlab compare --json out.json --csv out.csv --svg charts/\n  \
virtlab compare --quick --html results.html   # one page for the projector\n\n\
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
    /// Environments: native, container, container-image (our launcher on a
    /// 3-layer image), vm-mini (= vm-mini-uart + vm-mini-pv), vm-mini-uart,
    /// vm-mini-pv, vm-linux, vm-mini-restore and vm-linux-restore (from a
    /// snapshot taken once per run, outside the timing), all; peers by name: qemu-microvm, qemu-tcg,
    /// qemu-microvm-linux, qemu-tcg-linux, bwrap, runc, crun, podman+runc
    /// (or podman), podman+virtlab (podman with virtlab as its OCI
    /// runtime), or peers (all of them) [default: all of ours but container-image; with
    /// --peers, all of ours].
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
    /// Write the report as one self-contained HTML page here, for a
    /// projector or a printout: each claim of the notes with its sentence,
    /// chart and numbers (`virtlab report run.json -o page.html` makes it
    /// again from a saved --json run).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
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
    /// bwrap, runc and crun (the same rootfs), podman+runc and
    /// podman+virtlab (the same image as container-image, with each OCI
    /// runtime), and show ours / peer.
    #[arg(long)]
    peers: bool,
    /// Base the container-image (and podman) rows on this image of your
    /// store (e.g. one `virtlab image import` made of a debootstrap tree)
    /// instead of the built-in rootfs: the workload is copied into it as one
    /// more layer. Implies --env container-image if --env does not name it.
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// The image store --image reads [default: $VIRTLAB_ROOT, else /var/lib/virtlab]
    #[arg(long, value_name = "DIR", requires = "image")]
    root: Option<PathBuf>,
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

/// Whether SIGINT or SIGTERM asked the comparison to stop.
fn stop_asked() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Ctrl-C and SIGTERM (kill, a service manager, a CI job's time limit)
/// alike: stop after the current launch and report what finished.
fn catch_stop_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: signal(2) with a valid signal number; the handler only
        // stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
}

fn say(to_stderr: bool, line: &str) {
    if to_stderr {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// When `started` was, in seconds since the Unix epoch.
fn unix_seconds_at(started: Instant) -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .saturating_sub(started.elapsed().as_secs())
}

/// Runs the comparison; returns the exit status (0: all launches worked,
/// 1: some failed, 130: interrupted by SIGINT or SIGTERM).
pub fn run(args: CompareArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
    let json_to_stdout = args.json.as_deref() == Some(Path::new("-"));
    let runs = args.runs.unwrap_or(if args.quick { 3 } else { 5 });
    let workloads = Workload::parse_list(&args.workload, args.quick).map_err(anyhow::Error::msg)?;
    // Caught from here on, so that the output files opened next are either
    // filled or removed, never left empty by a signal.
    catch_stop_signals();
    let mut outputs = Outputs::open(&args)?;

    eprintln!("virtlab compare: probing the host{}...", if args.no_probe { "" } else { " (ring-0 calibration)" });
    let mut host = HostInfo::probe(!args.no_probe);
    // The peers' bundle directories and initramfs file go on every way out.
    let _cleanup = PeersCleanup;
    let mut selection = select::select(&args, &host);
    // The image's temporary directory (with podman's storage) goes when
    // `_image` is dropped, on every way out, after the last launch.
    let (ctx, _image) = select::context(&args, &mut selection)?;
    let Selection { envs, mut skipped, .. } = selection;

    let plan = Plan { envs: &envs, workloads: &workloads, warmup: args.warmup, runs, ctx: &ctx };
    let Timed { mut samples, failures } = measure::timed(&plan, host.root, &mut skipped);
    let mut interrupted = stop_asked();
    // Without root the VM rows keep their estimate and native has none.
    if host.root && !interrupted {
        measure::memory_runs(&plan, &mut samples);
        interrupted = stop_asked();
    }

    let vm: Vec<_> = samples.iter().filter(|s| s.env.is_vm()).collect();
    if !vm.is_empty() {
        host.syscall_reaches_ring0 = Some(vm.iter().any(|s| s.syscalls_fast.unwrap_or(0) > 0));
    }
    peers::cleanup();
    let rows = report::rows(&samples, &envs, &workloads);
    let claims = report::claims(&rows, &host);
    let peers = report::peer_ratios(&rows);
    let scale = match (&args.scale, interrupted) {
        (Some(Counts(counts)), false) => measure::scale_points(counts, &envs, &ctx),
        _ => Vec::new(),
    };

    let report = CompareReport {
        schema: SCHEMA.into(),
        virtlab_version: env!("CARGO_PKG_VERSION").into(),
        started_unix: unix_seconds_at(started),
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
        scale,
        peers,
        vmm_overhead_bytes: ctx.vmm_overhead_bytes,
    };

    say(json_to_stdout, &report::text(&report));
    if !report.scale.is_empty() {
        say(json_to_stdout, &report::scale_table(&report));
    }
    say(json_to_stdout, &super::lab::exposure_section());
    if interrupted {
        eprintln!("virtlab compare: interrupted; the figures above are from the runs that finished");
    }
    outputs.write_report(&report, args.json.is_some())?;
    Ok(if interrupted {
        130
    } else if report.failures.is_empty() {
        0
    } else {
        1
    })
}
