//! `virtlab vm ...`: boot a guest on our VMM and run the workload in it.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use virtlab_vmm::input::{self, FileRole};
use virtlab_vmm::snapshot::{RestoreConfig, SnapshotAt, SnapshotRequest};
use virtlab_vmm::{ConsoleKind, ConsoleSink, KernelSource, Observer, RunReport, Step, VmConfig};

use super::units::{parse_size, parse_timeout_or_none};

/// VM subcommands.
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Boot a guest kernel (the built-in minikernel by default) and run a
    /// workload in it, in ring 3.
    ///
    /// The workload is the built-in one unless the first word after `--` is
    /// a path: `virtlab vm run -- cpu 1000000` runs the built-in workload in
    /// cpu mode; `virtlab vm run -- ./prog arg` runs a static x86_64 ELF.
    /// The exit status is the workload's (128+signal number for a fault, as
    /// for a native process; 124 on timeout; 125 when virtlab fails; 159
    /// when the VMM's seccomp filter stopped one of its own system calls).
    ///
    /// With a Linux kernel the words after `--` are a program in the guest
    /// and its arguments, any words at all (virtlab's initramfs carries them
    /// in a file, not on the kernel command line), with an environment and
    /// a working directory of your choice; a name without `/` is looked up
    /// in the guest's PATH:
    ///   virtlab vm run --rootfs DIR -e GREETING='hello world' -w /tmp -- \
    ///       sh -c 'echo "$GREETING from $(pwd)"; exit 7'
    /// A program that is not found exits 127, one that cannot be executed
    /// 126, and 125 when the working directory cannot be made or entered,
    /// as with Docker.
    #[command(verbatim_doc_comment)]
    Run(VmRunArgs),
    /// Build a VM from a snapshot (`vm run --snapshot-at POINT --snapshot
    /// DIR`) and run it on: no boot, its memory mapped from the snapshot's
    /// file (copy-on-write, so many restores share it). For a snapshot at
    /// `ready` or `init`, the words after `--` are the workload's arguments
    /// (default: the snapshot's own); for a Linux one, a program of its
    /// initramfs with -e/-w as in `vm run`:
    ///   virtlab vm run --snapshot-at ready --snapshot /tmp/snap
    ///   virtlab vm restore /tmp/snap -- cpu 1000000
    ///   virtlab vm run --rootfs DIR --snapshot-at init --snapshot /tmp/lx
    ///   virtlab vm restore /tmp/lx -e X=1 -w /tmp -- sh -c 'echo $X; pwd'
    /// A Linux snapshot at `warm` holds the workload's process, waiting:
    /// it takes workload modes only (the fastest restore to ready):
    ///   virtlab vm run --kernel LINUX --snapshot-at warm --snapshot /tmp/lw
    ///   virtlab vm restore /tmp/lw -- cpu 1000000
    /// A snapshot taken at a time (--snapshot-at 5ms) resumes mid-run,
    /// where the guest was, and takes no arguments: its workload has read
    /// them already.
    #[command(verbatim_doc_comment)]
    Restore(VmRestoreArgs),
    /// Look at snapshots.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

/// `virtlab vm snapshot ...`.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Check a snapshot (every checksum) and show what is in it, with sizes.
    Inspect {
        /// The snapshot directory.
        dir: PathBuf,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `virtlab vm restore`.
#[derive(Debug, Args)]
pub struct VmRestoreArgs {
    /// The snapshot directory.
    dir: PathBuf,
    /// The guest memory you expect (an error if the snapshot has another).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    mem: Option<u64>,
    /// Stop the guest after this long (default 60s; 10m for a Linux
    /// snapshot taken at a time, which may still have to finish its boot),
    /// or `none`.
    #[arg(long, value_name = "DUR", value_parser = parse_timeout_or_none)]
    timeout: Option<Duration>,
    /// Narrate each step of the restore on stderr.
    #[arg(long)]
    explain: bool,
    /// Print a table of step timings and VM exits on stderr at the end.
    #[arg(long)]
    timings: bool,
    /// Print one JSON report on stdout.
    #[arg(long)]
    json: bool,
    /// Run the restored VM without its seccomp filters (for debugging: see
    /// `vm run --no-seccomp`).
    #[arg(long)]
    no_seccomp: bool,
    /// Linux `ready`/`init` snapshots: set an environment variable for the
    /// program after `--` (repeatable; as `vm run -e`).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Linux `ready`/`init` snapshots: the working directory of the program
    /// after `--` (an absolute path, made if missing; default /).
    #[arg(short = 'w', long, value_name = "DIR")]
    workdir: Option<String>,
    /// The workload's arguments (default: those the snapshot was taken
    /// with); for a Linux snapshot, a program of its initramfs and its
    /// arguments, or a workload mode. None for a snapshot taken at a time.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ConsoleArg {
    /// Emulated 16550 UART: one VM exit per byte (full virtualization).
    Uart,
    /// Paravirtual port: one VM exit per write() (para-virtualization).
    Pv,
}

/// Arguments of `virtlab vm run`.
#[derive(Debug, Args)]
pub struct VmRunArgs {
    /// Guest kernel: an ELF image following the minikernel's boot ABI
    /// (default: the built-in minikernel), or a Linux kernel (bzImage or
    /// vmlinux; `virtlab guest kernel` finds one), which then boots with
    /// virtlab's init and runs the program after `--` in its user space.
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// Linux: the initrd to pass as is (instead of the one virtlab builds).
    /// Its init gets the program on the kernel command line: an absolute
    /// path, words without spaces or quotes, and no --env or --workdir.
    #[arg(long, value_name = "FILE", conflicts_with = "rootfs")]
    initrd: Option<PathBuf>,
    /// Linux: a directory put into the initramfs virtlab builds (e.g. a
    /// busybox root file system), under virtlab's init and workload.
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// Linux: set an environment variable for the program (repeatable).
    /// Without any the program gets PATH=/bin:/sbin:/usr/bin:/usr/sbin,
    /// HOME=/ and TERM=linux; with some it gets exactly those, plus that
    /// PATH if they set none.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Linux: the program's working directory in the guest (an absolute
    /// path, made if missing, as Docker does; default /).
    #[arg(short = 'w', long, value_name = "DIR")]
    workdir: Option<String>,
    /// Linux: kernel parameters to add (e.g. "quiet").
    #[arg(long, value_name = "PARAMS")]
    cmdline: Option<String>,
    /// Linux: connect this terminal to the guest console both ways (e.g.
    /// `--rootfs DIR -- /bin/sh` for a shell in the guest); no timeout.
    #[arg(long)]
    interactive: bool,
    /// Guest RAM (K, M, G suffixes; default 64M, 128M for Linux).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    mem: Option<u64>,
    /// Stop the guest after this long (ms, s, m; positive; default 60s,
    /// 10m for Linux, none with --interactive), or `none`: until it stops.
    #[arg(long, value_name = "DUR", value_parser = parse_timeout_or_none)]
    timeout: Option<Duration>,
    /// Console device: the emulated UART or the paravirtual port.
    #[arg(long, value_enum, default_value = "uart")]
    console: ConsoleArg,
    /// Minikernel: back the workload's mmap() area with 4 KiB host pages instead of
    /// 2 MiB transparent huge pages: one nested-paging fault per 4 KiB the
    /// guest touches (try `-- mem 32` with and without).
    #[arg(long)]
    small_pages: bool,
    /// Narrate each step on stderr: what it does, the ioctl, the time it
    /// took, and the idea of the course notes it shows.
    #[arg(long)]
    explain: bool,
    /// Wait for Enter before each step (implies --explain).
    #[arg(long)]
    step: bool,
    /// Print a table of step timings and VM exits on stderr at the end.
    #[arg(long)]
    timings: bool,
    /// Print one JSON report on stdout (the guest's output is included in
    /// it instead of being printed).
    #[arg(long)]
    json: bool,
    /// Pause the guest at this point and save it (with --snapshot): the
    /// minikernel at `ready` ("kernel ready", before the workload starts);
    /// a Linux guest at `init` or `ready` (its init has started, before it
    /// reads its command: a restore runs any command) or at `warm` (the
    /// workload's process started and waiting for its arguments: a restore
    /// runs only the workload's modes, with no fork or exec left in the
    /// guest, the fastest restore); either at a time (5ms, 500ms, 2s) after its
    /// first instruction, mid-boot or mid-run, wherever it is then. A guest
    /// that stops before the point is an error, and no snapshot is left.
    #[arg(long, value_name = "POINT", value_parser = SnapshotAt::parse, requires = "snapshot")]
    snapshot_at: Option<SnapshotAt>,
    /// The directory to save the snapshot in (it must not exist yet); the
    /// guest runs on afterwards. See `virtlab vm restore`.
    #[arg(long, value_name = "DIR", requires = "snapshot_at")]
    snapshot: Option<PathBuf>,
    /// Run without the VMM's seccomp filters. By default, once the VM is
    /// set up, the vCPU thread and its helpers (UART kicker, stdin) each
    /// run under a filter allowing only the system calls they
    /// need (`--explain` lists them); a call outside it stops virtlab with
    /// a line naming the call and exit status 159. Use this to debug such a
    /// stop.
    #[arg(long)]
    no_seccomp: bool,
    /// The workload and its arguments (default: the built-in workload's
    /// `ready` mode); for a Linux guest, a program in it (a path, or with
    /// --rootfs a name in its PATH) and its arguments.
    #[arg(last = true, value_name = "WORKLOAD")]
    workload: Vec<String>,
}

/// Runs a VM subcommand; returns the exit status to use.
pub fn run(cmd: VmCommand) -> anyhow::Result<u8> {
    match cmd {
        VmCommand::Run(args) => vm_run(args),
        VmCommand::Restore(args) => vm_restore(args),
        VmCommand::Snapshot(SnapshotCommand::Inspect { dir, json }) => snapshot_inspect(&dir, json),
    }
}

fn vm_run(args: VmRunArgs) -> anyhow::Result<u8> {
    if wants_linux(&args) {
        return linux_run(args);
    }
    if !args.env.is_empty() || args.workdir.is_some() {
        anyhow::bail!(
            "--env and --workdir are for Linux guests (--kernel with a Linux kernel, or --rootfs DIR): the minikernel \
             runs one workload, with no environment and no working directory"
        );
    }
    let mut config = VmConfig::builtin_workload(&[]);
    config.kernel = match &args.kernel {
        Some(p) => KernelSource::File(p.clone()),
        None => KernelSource::Minikernel,
    };
    config.mem_size = args.mem.unwrap_or(virtlab_vmm::config::DEFAULT_MEM);
    config.huge_pages = !args.small_pages;
    let timeout = args.timeout.unwrap_or(virtlab_vmm::config::DEFAULT_TIMEOUT);
    config.timeout = (!timeout.is_zero()).then_some(timeout);
    config.console = match args.console {
        ConsoleArg::Uart => ConsoleKind::Uart,
        ConsoleArg::Pv => ConsoleKind::Pv,
    };
    let words = workload_words(&args);
    if words[0].contains('/') {
        // A regular, non-empty file no larger than guest memory: a FIFO
        // would block, /dev/zero never ends, and an empty file would pass
        // for "no workload" (the built-in one).
        let path = PathBuf::from(&words[0]);
        config.workload = input::read(&path, FileRole::Workload, config.mem_size)?;
        config.argv = words;
    } else {
        if !is_builtin_mode(&words[0]) {
            anyhow::bail!(
                "unknown workload mode {:?}; use one of {} (or a path to an executable, e.g. ./prog)",
                words[0],
                virtlab_workload::MODES.join(", ")
            );
        }
        config.argv.extend(words);
    }

    if let (Some(at), Some(dir)) = (args.snapshot_at, &args.snapshot) {
        config.snapshot = Some(SnapshotRequest { at, dir: dir.clone() });
    }
    config.seccomp = !args.no_seccomp;

    let (sink, mut narrator) = console_and_narrator(&args);
    if narrator.step && !std::io::stdin().is_terminal() {
        eprintln!("virtlab: --step: standard input is not a terminal: each step waits for a line from it");
    }
    let report = virtlab_vmm::run(&config, sink, &mut narrator).context("the VM could not run")?;

    if args.json {
        print_json(&report)?;
    }
    if args.timings {
        eprint!("{}", timings_table(&report, true));
    }
    // A guest that did not exit by itself is always worth a line; a normal
    // exit only when narrating.
    if !report.stop.is_exit() || args.explain || args.step {
        eprintln!("virtlab: {}", report.summary);
    }
    if args.explain || args.step {
        eprintln!("{}", syscall_story(&report));
    }
    snapshot_outcome(report.snapshot.as_ref(), args.snapshot_at.zip(args.snapshot.as_deref()), args.json, &report)?;
    Ok(report.exit_status.clamp(0, 255) as u8)
}

fn vm_restore(args: VmRestoreArgs) -> anyhow::Result<u8> {
    // A Linux guest runs a program of its initramfs: a workload mode is
    // the built-in workload's, as in `vm run`.
    let manifest = virtlab_vmm::snapshot::format::read_manifest(&args.dir).ok();
    let linux = manifest.as_ref().is_some_and(|m| m.guest == virtlab_vmm::snapshot::GuestKind::Linux);
    // A Linux guest saved at a time may be mid-boot: the rest of its boot
    // gets a boot's default timeout.
    let taken_at = manifest.as_ref().and_then(|m| SnapshotAt::parse(&m.taken_at).ok());
    let timed = taken_at.is_some_and(|at| at.is_time());
    let warm = taken_at == Some(SnapshotAt::Warm);
    let mid_boot = linux && timed;
    let words = if linux && args.args.first().is_some_and(|w| is_builtin_mode(w)) {
        std::iter::once(virtlab_vmm::linux::initramfs::WORKLOAD_PATH.to_string()).chain(args.args.clone()).collect()
    } else {
        args.args.clone()
    };
    let default_timeout = if mid_boot { Duration::from_secs(600) } else { virtlab_vmm::config::DEFAULT_TIMEOUT };
    let timeout = args.timeout.unwrap_or(default_timeout);
    let config = RestoreConfig {
        args: words,
        env: args.env.clone(),
        workdir: args.workdir.clone(),
        mem_size: args.mem,
        timeout: (!timeout.is_zero()).then_some(timeout),
        seccomp: !args.no_seccomp,
    };
    let sink = if args.json { ConsoleSink::Capture } else { ConsoleSink::Stdout };
    let mut narrator = Narrator { explain: args.explain, step: false, n: 0, stdin_open: true };
    let report = virtlab_vmm::snapshot::restore(&args.dir, &config, sink, &mut narrator)
        .with_context(|| format!("cannot restore the snapshot in {}", args.dir.display()))?;
    if args.json {
        print_json(&report)?;
    }
    if args.timings {
        eprint!("{}", timings_table(&report, !linux));
    }
    if !report.stop.is_exit() || args.explain {
        eprintln!("virtlab: {}", report.summary);
    }
    // A guest resumed mid-run may print times it measured across the
    // snapshot: when this host could not set its clock back, say so.
    let clock = report.restore.iter().flat_map(|h| &h.refused).find(|q| q.starts_with("IA32_TSC"));
    if let (true, Some(q)) = (timed, clock) {
        eprintln!("virtlab: note: {q}");
    }
    if args.explain {
        let start = if timed {
            "nothing booted and nothing was rewritten (the snapshot was taken at a time, mid-boot or mid-run)"
        } else {
            "no kernel booted"
        };
        eprintln!(
            "\n[vm] restore: {start}. The VM is its memory (mapped from the snapshot's file, read page by page as \
             the\n     guest touches it, copied only when it writes), its registers and its devices; set back, the \
             vCPU\n     simply ran on from where it was paused."
        );
        if warm {
            eprintln!(
                "     No process started either: the workload's process was in the snapshot (taken at `warm`), \
                 waiting;\n     it read its arguments from the command port itself (user-mode `in`s, no guest \
                 kernel code)."
            );
        }
    }
    Ok(report.exit_status.clamp(0, 255) as u8)
}

fn snapshot_inspect(dir: &std::path::Path, json: bool) -> anyhow::Result<u8> {
    let i = virtlab_vmm::snapshot::inspect(dir)
        .with_context(|| format!("cannot read the snapshot in {}", dir.display()))?;
    if json {
        print_json(&i)?;
        return Ok(0);
    }
    let m = &i.manifest;
    let mut out = std::io::stdout().lock();
    writeln!(out, "snapshot {} (format {} version {}, checksums good)", dir.display(), m.format, m.version)?;
    writeln!(
        out,
        "guest:    {}, paused at `{}`, {} vCPU, {} MiB of RAM",
        m.guest.name(),
        m.taken_at,
        m.vcpus,
        m.mem_size >> 20
    )?;
    writeln!(out, "host CPU: {}", m.cpu)?;
    if let Some(argv) = &i.argv {
        writeln!(out, "argv:     {}", argv.join(" "))?;
    }
    writeln!(out, "files:    name          length      on disk")?;
    for (name, len, disk) in &i.files {
        writeln!(out, "          {name:<12} {:>8} KiB {:>8} KiB", len >> 10, disk >> 10)?;
    }
    writeln!(
        out,
        "memory:   {} KiB of data in {} MiB (the rest are holes)",
        m.memory_data_bytes >> 10,
        m.mem_size >> 20
    )?;
    let parts: Vec<String> = i.vcpu_parts.iter().map(|(n, b)| format!("{n} {b} B")).collect();
    writeln!(out, "vCPU 0:   {}, {} MSRs", parts.join(", "), i.msrs)?;
    writeln!(out, "clock:    {}", if i.clock { "KVM clock saved" } else { "not saved" })?;
    if !i.irqchip.is_empty() || i.pit.is_some() {
        let chips: Vec<String> = i.irqchip.iter().map(|b| format!("{b} B")).collect();
        writeln!(
            out,
            "irqchip:  PIC master, PIC slave, IOAPIC ({}); PIT {}",
            chips.join(", "),
            i.pit.map(|b| format!("{b} B")).unwrap_or_else(|| "not saved".into())
        )?;
    }
    let devs: Vec<String> =
        i.devices.iter().map(|(n, has)| if *has { n.clone() } else { format!("{n} (no state)") }).collect();
    writeln!(out, "devices:  {}", devs.join(", "))?;
    if i.quirks.is_empty() {
        writeln!(out, "host:     saved everything asked for")?;
    } else {
        for q in &i.quirks {
            writeln!(out, "host:     {q}")?;
        }
    }
    Ok(0)
}

/// The words after `--`: the workload and its arguments, `ready` when
/// none are given.
fn workload_words(args: &VmRunArgs) -> Vec<String> {
    if args.workload.is_empty() {
        vec!["ready".to_string()]
    } else {
        args.workload.clone()
    }
}

/// Whether `word` names a mode of the built-in workload (or one of its
/// test modes, `fault` and `spin`) rather than a program.
fn is_builtin_mode(word: &str) -> bool {
    virtlab_workload::MODES.contains(&word) || ["fault", "spin"].contains(&word)
}

/// Where the guest's console goes (into the JSON report with `--json`,
/// else to standard output) and who narrates the steps (`--explain`,
/// `--step`): alike for the minikernel and Linux.
fn console_and_narrator(args: &VmRunArgs) -> (ConsoleSink, Narrator) {
    let sink = if args.json { ConsoleSink::Capture } else { ConsoleSink::Stdout };
    (sink, Narrator { explain: args.explain || args.step, step: args.step, n: 0, stdin_open: true })
}

/// Prints a run's report on standard output as JSON (`--json`).
fn print_json(report: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, report).context("cannot write JSON")?;
    writeln!(out)?;
    Ok(())
}

/// How the guest's system calls reached its kernel, in plain words.
fn syscall_story(r: &RunReport) -> String {
    let s = &r.syscalls;
    let mut t = format!(
        "\n[vm] system calls: {} entered ring 0 through SYSCALL, {} arrived as a page fault at the SYSCALL entry",
        s.via_syscall, s.via_trap
    );
    if s.via_trap > 0 {
        t += ".\n     On this host SYSCALL from ring 3 does not raise the privilege level (nested KVM): the CPU jumps to \
              the\n     kernel's entry still in user mode and faults on the kernel-only page. The minikernel recognises that \
              fault\n     (CR2 = its entry address, user mode) and serves it as the system call: trap-and-emulate, the \
              way\n     full virtualization ran unmodified guests before hardware assistance.";
    } else if s.via_syscall > 0 {
        t += ": the CPU entered the guest kernel directly, as hardware-assisted virtualization allows.";
    }
    if s.enosys > 0 {
        t += &format!(
            "\n     {} unknown system call(s) got -ENOSYS (the last was number {}).",
            s.enosys, s.last_enosys_nr
        );
    }
    t
}

/// Whether this run boots Linux: a Linux-only option is given, or the
/// kernel file is a bzImage or a vmlinux (its "Linux version" banner).
fn wants_linux(args: &VmRunArgs) -> bool {
    if args.initrd.is_some() || args.rootfs.is_some() || args.cmdline.is_some() || args.interactive {
        return true;
    }
    let Some(path) = &args.kernel else { return false };
    // A file that cannot be read (or is no regular file, or too large) goes
    // down the minikernel path, which reads it the same way and reports it.
    virtlab_vmm::linux::kernel::is_linux_file(path).unwrap_or(false)
}

fn linux_run(args: VmRunArgs) -> anyhow::Result<u8> {
    use virtlab_vmm::linux::{InitrdSource, LinuxConfig, DEFAULT_MEM};
    let kernel = match &args.kernel {
        Some(k) => k.clone(),
        None => {
            let choice = virtlab_vmm::linux::provision::locate(None)
                .context("no Linux guest kernel: give --kernel PATH or provision one with scripts/guest-kernel.sh")?;
            eprintln!("virtlab: guest kernel {} ({})", choice.path.display(), choice.why);
            choice.path
        }
    };
    let words = workload_words(&args);
    // A workload mode runs the built-in workload; a path is a program
    // inside the guest (from --rootfs or --initrd); with --rootfs, so is a
    // name, which the guest's init looks up in its PATH.
    let program = if words[0].contains('/') || (args.rootfs.is_some() && !is_builtin_mode(&words[0])) {
        words
    } else if is_builtin_mode(&words[0]) {
        std::iter::once(virtlab_vmm::linux::initramfs::WORKLOAD_PATH.to_string()).chain(words).collect()
    } else {
        anyhow::bail!(
            "unknown workload mode {:?}; use one of {} (or a program inside the guest: a path, e.g. /bin/sh, or with \
             --rootfs a name in its PATH, e.g. sh)",
            words[0],
            virtlab_workload::MODES.join(", ")
        );
    };
    let default_timeout = if args.interactive { Duration::ZERO } else { Duration::from_secs(600) };
    let timeout = args.timeout.unwrap_or(default_timeout);
    let config = LinuxConfig {
        kernel,
        initrd: match &args.initrd {
            Some(f) => InitrdSource::File(f.clone()),
            None => InitrdSource::Build { rootfs: args.rootfs.clone() },
        },
        workload: Vec::new(),
        program,
        env: args.env.clone(),
        workdir: args.workdir.clone(),
        extra_cmdline: args.cmdline.clone(),
        mem_size: args.mem.unwrap_or(DEFAULT_MEM),
        timeout: (!timeout.is_zero()).then_some(timeout),
        snapshot: args.snapshot_at.zip(args.snapshot.clone()).map(|(at, dir)| SnapshotRequest { at, dir }),
        interactive: args.interactive,
        seccomp: !args.no_seccomp,
    };
    let (sink, mut narrator) = console_and_narrator(&args);
    if narrator.explain {
        let q = virtlab_vmm::linux::HostQuirks::probe();
        eprintln!("virtlab: host work-arounds {}: {}", if q.active { "on" } else { "off" }, q.reason);
        if q.active {
            eprintln!(
                "        (trap-and-emulate in the VMM and a para-virtualized guest kernel: see `virtlab guest kernel`)"
            );
        }
    }
    let report = virtlab_vmm::run_linux(&config, sink, &mut narrator).context("the Linux VM could not run")?;
    if args.json {
        print_json(&report)?;
    }
    if args.timings {
        eprint!("{}", timings_table(&report.run, false));
        let q = &report.host_quirks;
        eprintln!(
            "linux: {} via the {} entry, initrd {} KiB, UART interrupts {} ({} sent again while still pending)",
            report.kernel_format,
            report.entry,
            report.initrd_bytes / 1024,
            report.uart_interrupts,
            report.uart_reasserted
        );
        eprintln!("host work-arounds: {} ({}); fix-ups: {:?}", if q.active { "on" } else { "off" }, q.reason, q.fixups);
        eprintln!("{}", boot_split(&report));
    }
    if !report.run.stop.is_exit() || args.explain || args.step {
        eprintln!("virtlab: {}", report.summary());
        for l in &report.last_lines {
            eprintln!("  | {l}");
        }
    }
    snapshot_outcome(
        report.run.snapshot.as_ref(),
        args.snapshot_at.zip(args.snapshot.as_deref()),
        args.json,
        &report.run,
    )?;
    Ok(report.run.exit_status.clamp(0, 255) as u8)
}

/// Says where a snapshot was saved (and what the host refused), or fails
/// when one was asked for and the guest never reached its point.
fn snapshot_outcome(
    saved: Option<&virtlab_vmm::snapshot::Saved>,
    asked: Option<(SnapshotAt, &std::path::Path)>,
    json: bool,
    report: &RunReport,
) -> anyhow::Result<()> {
    match (saved, asked) {
        (Some(s), _) if !json => {
            eprintln!(
                "virtlab: snapshot saved in {} ({} MiB of guest memory, {} KiB of it data) in {:.1} ms",
                s.dir.display(),
                s.mem_size >> 20,
                s.memory_data_bytes >> 10,
                s.took_us / 1e3
            );
            for q in &s.quirks {
                eprintln!("virtlab: snapshot: {q}");
            }
            Ok(())
        }
        (None, Some((at, dir))) => anyhow::bail!(
            "the guest stopped after {}, before the snapshot point {} ({}): no snapshot was saved in {}; {}",
            fmt_duration(Duration::from_secs_f64(report.guest_run_us / 1e6)),
            at.name(),
            report.summary,
            dir.display(),
            if at.is_time() { "give an earlier time" } else { "check that the guest reaches that point" }
        ),
        _ => Ok(()),
    }
}

/// The Linux run in three parts: the VMM's set-up, the kernel's boot (to
/// its "Run ... as init process" line) and the init up to the workload.
fn boot_split(report: &virtlab_vmm::LinuxReport) -> String {
    let r = &report.run;
    let secs = |us: f64| format!("{:.3} s", us / 1e6);
    let entered = r.at(Step::FirstEntry).unwrap_or(0.0);
    let mut s = format!("boot split: VMM set-up {}", secs(entered));
    match report.init_line_us {
        Some(init) => {
            s.push_str(&format!(", kernel boot {}", secs(init - entered)));
            if let Some(ready) = r.at(Step::WorkloadReady) {
                s.push_str(&format!(", init to workload ready {}", secs(ready - init)));
            }
        }
        None => s.push_str(", the kernel never printed \"Run ... as init process\""),
    }
    s
}

/// `--explain` and `--step`.
struct Narrator {
    explain: bool,
    step: bool,
    n: usize,
    stdin_open: bool,
}

impl Observer for Narrator {
    fn before(&mut self, step: Step) {
        if !self.explain {
            return;
        }
        self.n += 1;
        let (what, how, idea) = step.explain();
        eprintln!("\n[vm {}/{}] {}: {what}", self.n, Step::ALL.len(), step.name());
        eprintln!("        how:  {how}");
        eprintln!("        idea: {idea}");
        if self.step && self.stdin_open {
            eprint!("        press Enter to run this step... ");
            let mut line = String::new();
            if std::io::stdin().lock().read_line(&mut line).unwrap_or(0) == 0 {
                self.stdin_open = false;
                eprintln!("(no more input: running the rest without pausing)");
            }
        }
    }

    fn note(&mut self, text: &str) {
        if self.explain {
            eprintln!("\n[vm] {text}");
        }
    }

    fn after(&mut self, step: Step, took: Duration, detail: &str) {
        if !self.explain {
            return;
        }
        if !step.is_host_step() {
            // Guest milestones are not announced beforehand: the guest
            // decides when they happen.
            self.n += 1;
            let (what, how, idea) = step.explain();
            eprintln!("\n[vm {}/{}] {}: {what}", self.n, Step::ALL.len(), step.name());
            eprintln!("        how:  {how}");
            eprintln!("        idea: {idea}");
        }
        eprintln!("        took: {} -> {detail}", fmt_duration(took));
    }
}

fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} us")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// The `--timings` table. `minikernel`: the run's system calls were served
/// by the minikernel, which counts them (a Linux guest keeps its own).
pub fn timings_table(r: &RunReport, minikernel: bool) -> String {
    let mut s = String::new();
    s += "\nstep              since start        took\n";
    for p in &r.phases {
        s += &format!(
            "{:<16} {:>12} {:>12}\n",
            p.name,
            fmt_duration(Duration::from_secs_f64(p.at_us / 1e6)),
            fmt_duration(Duration::from_secs_f64(p.took_us / 1e6))
        );
    }
    let run_s = r.guest_run_us / 1e6;
    s += &format!(
        "\nVM exits: {} in {} of guest run ({:.0} per second)\n",
        r.exits.total,
        fmt_duration(Duration::from_secs_f64(run_s)),
        if run_s > 0.0 { r.exits.total as f64 / run_s } else { 0.0 }
    );
    for (reason, n) in &r.exits.by_reason {
        s += &format!("  {reason:<14} {n:>10}\n");
    }
    for (dev, n) in &r.exits.by_device {
        s += &format!("  port: {dev:<8} {n:>10}\n");
    }
    let kib = r.console_bytes as f64 / 1024.0;
    if kib > 0.0 {
        let console_exits = r.exits.by_device.get(r.console.name()).or_else(|| r.exits.by_device.get("pv-console"));
        s += &format!(
            "console ({}): {} bytes, {:.1} exits per KiB\n",
            r.console.name(),
            r.console_bytes,
            console_exits.copied().unwrap_or(0) as f64 / kib
        );
    }
    if minikernel {
        let sc = &r.syscalls;
        s += &format!(
            "system calls: {} via SYSCALL, {} trapped as #PF and emulated, {} unknown (-ENOSYS)\n",
            sc.via_syscall, sc.via_trap, sc.enosys
        );
    }
    let m = &r.memory;
    s += &format!(
        "memory: guest RAM {} MiB, touched {:.1} MiB; VMM process peak RSS {:.1} MiB, minus guest pages {:.1} MiB\n",
        m.guest_ram_bytes >> 20,
        m.guest_touched_bytes as f64 / 1048576.0,
        m.process_peak_rss_bytes as f64 / 1048576.0,
        m.vmm_overhead_bytes as f64 / 1048576.0
    );
    s
}
