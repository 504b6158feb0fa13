//! `virtlab container ...`

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use virtlab_container::config::{self, Namespaces, User};
use virtlab_container::defences::Defences;
use virtlab_container::{rootfs, ContainerConfig, LaunchError, Outcome, Stdio};

use super::run_output::{explain_end, mib, timings_table, to_json};
use super::units::parse_timeout;
use super::{EXIT_TIMEOUT, EXIT_TOOL_ERROR};

/// Container subcommands.
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Run a command in a new container (namespaces, cgroup, pivot_root).
    ///
    /// Without --rootfs the built-in rootfs is used (the workload at
    /// /virtlab-workload, plus busybox when /bin/busybox exists on the host),
    /// read-only.
    ///
    /// Exit status: the command's, or 128+signal if it was killed (137 for
    /// SIGKILL, e.g. by the OOM killer); 124 when --timeout killed it (as
    /// timeout(1) and `virtlab vm run` do); 125 virtlab itself failed (e.g.
    /// a bad --memory or --ns, a set-up error); 126 the command could not be
    /// executed; 127 it was not found; 2 a usage error (e.g. an unknown
    /// option, --timeout 0). With --json, an error from virtlab is a JSON
    /// object on stdout too: {"error": "...", "exit_code": N}.
    ///
    /// With an IMAGE (from `virtlab image import`, `load` or `build`), its
    /// layers are stacked with overlayfs under a fresh writable layer of the
    /// container's own (removed when it exits), and the image's config gives
    /// the command, environment, working directory and user, unless the
    /// command line overrides them.
    ///
    /// Examples:
    ///   virtlab container run busybox echo hello
    ///   virtlab container run busybox sh
    ///   virtlab container run --timings -- /virtlab-workload ready
    ///   virtlab container run --memory 32M -- /virtlab-workload mem 256
    ///   virtlab container run --ns uts,mnt --explain -- hostname
    ///   virtlab container run --security-opt seccomp=unconfined busybox grep Seccomp /proc/self/status
    ///   virtlab container run --cap-drop ALL busybox grep CapEff /proc/self/status
    ///   virtlab container run --privileged --explain busybox true
    #[command(verbatim_doc_comment)]
    Run(Box<RunArgs>),
    /// Build a root file system directory: the workload, and busybox-static
    /// (with a link per applet) when /bin/busybox exists on the host.
    Rootfs(RootfsArgs),
    /// Show why chroot alone can be escaped and pivot_root cannot: a process
    /// confined each way tries the classic escape (mkdir x; chroot x;
    /// chdir .. many times; chroot .) and then reads a file of the host.
    /// The escape lab (`virtlab lab escape`) has it and nine more.
    EscapeDemo,
    /// Make a container of an image without starting it (`start` runs it).
    Create(Box<RunArgs>),
    /// Start containers in the background (-a: one, printing its output).
    Start(super::lifecycle::StartArgs),
    /// Stop and start containers again.
    Restart(super::lifecycle::RestartArgs),
    /// List containers: ID, image, command, created, status, names.
    Ps(super::lifecycle::PsArgs),
    /// Print a container's output.
    Logs(super::logs::LogsArgs),
    /// Stop running containers: SIGTERM, then SIGKILL after -t seconds.
    Stop(super::lifecycle::StopArgs),
    /// Send a signal to running containers (default SIGKILL).
    Kill(super::lifecycle::KillArgs),
    /// Remove containers (-f: kill a running one first).
    Rm(super::lifecycle::RmArgs),
    /// Wait for containers to end; print their exit statuses.
    Wait(super::lifecycle::WaitArgs),
    /// Print containers' JSON descriptions (state, config, limits).
    Inspect(super::inspect::InspectArgs),
    /// Show a container's processes, as `ps -ef` on the host shows them.
    Top(super::stats::TopArgs),
    /// Show containers' CPU, memory, network and block I/O, and processes, live.
    Stats(super::stats::StatsArgs),
    /// Run a command in a running container: its namespaces, cgroups,
    /// root, capabilities and seccomp filter.
    Exec(super::exec::ExecArgs),
    /// The monitor of a detached container (started by `run -d`).
    #[command(hide = true)]
    Monitor {
        #[command(flatten)]
        root: super::lifecycle::RootArg,
        id: String,
    },
}

/// `virtlab container run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Directory that becomes the container's / [default: the built-in rootfs]
    #[arg(long, value_name = "DIR")]
    pub(super) rootfs: Option<PathBuf>,
    /// Hostname inside the container (needs the uts namespace) [default: virtlab]
    #[arg(long, value_name = "NAME")]
    pub(super) hostname: Option<String>,
    /// Memory limit, e.g. 32M, 1G (cgroup memory.max / memory.limit_in_bytes)
    #[arg(long, value_name = "SIZE")]
    pub(super) memory: Option<String>,
    /// CPU bandwidth as a number of CPUs, e.g. 0.5 (cgroup cpu.max / cfs_quota_us)
    #[arg(long, value_name = "FRACTION")]
    pub(super) cpus: Option<String>,
    /// Maximum number of processes and threads (cgroup pids.max)
    #[arg(long, value_name = "N")]
    pub(super) pids: Option<String>,
    /// Namespaces to create, comma-separated: uts,pid,mnt,ipc,net,user,cgroup (or all, none;
    /// an empty list is refused). Switch them on one at a time to see what each changes
    #[arg(long, value_name = "LIST", default_value = "all")]
    pub(super) ns: String,
    /// Set an environment variable (repeatable)
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    pub(super) env: Vec<String>,
    /// Working directory inside the container [default: /]
    #[arg(long, short = 'w', value_name = "DIR")]
    pub(super) workdir: Option<PathBuf>,
    /// Run as this numeric user (and group) instead of root
    #[arg(long, short = 'u', value_name = "UID[:GID]")]
    pub(super) user: Option<String>,
    /// Mount the root file system read-only (/tmp stays writable)
    #[arg(long)]
    pub(super) read_only: bool,
    /// Switch one of the default defences (repeatable), as Docker's option:
    /// seccomp=unconfined (no filter), seccomp=PROFILE.json (a filter from a
    /// profile in Docker's JSON format, read when the container is made),
    /// no-new-privileges[=true|false] (on by default in virtlab),
    /// systempaths=unconfined (no masked or read-only /proc and /sys paths)
    #[arg(long = "security-opt", value_name = "OPT")]
    pub(super) security_opt: Vec<String>,
    /// Add a capability to Docker's default set (repeatable; SYS_ADMIN or
    /// CAP_SYS_ADMIN, any case; ALL for every one). The default seccomp
    /// filter then allows the calls the capability is for, as Docker's does
    #[arg(long = "cap-add", value_name = "CAP")]
    pub(super) cap_add: Vec<String>,
    /// Drop a capability from Docker's default set (repeatable; ALL drops
    /// every one, and --cap-add then names those kept)
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub(super) cap_drop: Vec<String>,
    /// Switch the defences off, as Docker's --privileged: every capability,
    /// no seccomp filter, no masked or read-only /proc paths, /sys writable, no devices allowlist.
    /// The user namespace stays: the container's root is still an
    /// unprivileged user of the host, not host root
    #[arg(long)]
    pub(super) privileged: bool,
    /// Kill the container after this long, e.g. 500ms, 10s, 2m (positive; exit status 124)
    /// [default: no timeout]
    #[arg(long, value_name = "DUR", value_parser = parse_timeout)]
    pub(super) timeout: Option<Duration>,
    /// Narrate each step on stderr: the system call and the idea of the course notes it shows
    #[arg(long)]
    pub(super) explain: bool,
    /// Wait for Enter before each step (implies --explain)
    #[arg(long)]
    pub(super) step: bool,
    /// Print a table of phase times on stderr after the command exits
    #[arg(long)]
    pub(super) timings: bool,
    /// Run in the background (an IMAGE only): print the container's ID and
    /// leave it to a monitor; see it with `ps`, `logs`, `stop`, `rm`
    #[arg(short, long)]
    pub(super) detach: bool,
    /// Name for the container (an IMAGE only) [default: virtlab_<id>]
    #[arg(long, value_name = "NAME")]
    pub(super) name: Option<String>,
    /// Remove the container when it exits (an IMAGE only; without it the
    /// container stays, `Exited`, for `ps -a`, `logs`, `start`, `rm`)
    #[arg(long = "rm")]
    pub(super) auto_remove: bool,
    /// Keep standard input open (an IMAGE run gets /dev/null without it;
    /// a --rootfs run always shares the terminal)
    #[arg(short, long)]
    pub(super) interactive: bool,
    /// Give the command this terminal (standard input must be one): with
    /// -i, an interactive shell whose `exit` stops the container
    #[arg(short, long)]
    pub(super) tty: bool,
    /// What runs an IMAGE: `container` (namespaces, cgroups, overlayfs) or
    /// `vm` (a Linux guest of virtlab's VMM, the image as its root file
    /// system; `virtlab guest kernel` names the kernel)
    #[arg(long, value_name = "RUNTIME", default_value = "container", value_parser = ["container", "vm"])]
    pub(super) runtime: String,
    /// Print one JSON object (status, timings, cgroup figures, output) on stdout;
    /// the command's output is captured into it. On an error: {"error": ..., "exit_code": ...}
    #[arg(long)]
    pub(super) json: bool,
    /// Image store directory, for an IMAGE [default: $VIRTLAB_ROOT, else /var/lib/virtlab]
    #[arg(long, value_name = "DIR")]
    pub(super) root: Option<PathBuf>,
    /// The image to run (a name or ID from `virtlab image ls`), then the
    /// command to run instead of the image's CMD; without an image, the
    /// built-in rootfs or --rootfs, and the command after `--`
    #[arg(value_name = "IMAGE [CMD]", num_args = 0.., allow_hyphen_values = true)]
    pub(super) image_and_command: Vec<String>,
    /// The command and its arguments, after `--`
    #[arg(last = true, value_name = "CMD")]
    pub(super) command: Vec<String>,
}

/// `virtlab container rootfs`.
#[derive(Debug, Args)]
pub struct RootfsArgs {
    /// Directory to fill (created if missing)
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Leave busybox out even if the host has it
    #[arg(long)]
    no_busybox: bool,
}

/// Runs a container subcommand; returns the exit status to use.
pub fn run(cmd: ContainerCommand) -> anyhow::Result<u8> {
    match cmd {
        ContainerCommand::Run(args) => run_container(*args),
        ContainerCommand::Rootfs(args) => build_rootfs(args),
        ContainerCommand::EscapeDemo => escape_demo(),
        ContainerCommand::Create(args) => super::lifecycle::create(&args),
        ContainerCommand::Start(a) => super::lifecycle::exit1(super::lifecycle::start(&a)),
        ContainerCommand::Restart(a) => super::lifecycle::exit1(super::lifecycle::restart(&a)),
        ContainerCommand::Ps(a) => super::lifecycle::exit1(super::lifecycle::ps(&a)),
        ContainerCommand::Logs(a) => super::lifecycle::exit1(super::logs::logs(&a)),
        ContainerCommand::Stop(a) => super::lifecycle::exit1(super::lifecycle::stop(&a)),
        ContainerCommand::Kill(a) => super::lifecycle::exit1(super::lifecycle::kill(&a)),
        ContainerCommand::Rm(a) => super::lifecycle::exit1(super::lifecycle::rm(&a)),
        ContainerCommand::Wait(a) => super::lifecycle::exit1(super::lifecycle::wait(&a)),
        ContainerCommand::Inspect(a) => super::lifecycle::exit1(super::inspect::inspect(&a)),
        ContainerCommand::Top(a) => super::lifecycle::exit1(super::stats::top(&a)),
        ContainerCommand::Stats(a) => super::lifecycle::exit1(super::stats::stats(&a)),
        ContainerCommand::Exec(a) => super::exec::run(&a),
        ContainerCommand::Monitor { root, id } => super::lifecycle::monitor(&root, &id),
    }
}

fn escape_demo() -> anyhow::Result<u8> {
    use virtlab_container::escape::{try_escape, Confinement};
    let base = std::env::temp_dir().join(format!("virtlab-escape-{}", std::process::id()));
    let result = (|| -> anyhow::Result<()> {
        let root = base.join("rootfs");
        rootfs::build(&root, None)?;
        let secret = base.join("host-secret");
        std::fs::write(&secret, "this file is outside the container's rootfs\n")?;
        println!("rootfs: {}\nhost file: {} (outside the rootfs)\n", root.display(), secret.display());
        for (how, name) in [(Confinement::Chroot, "chroot"), (Confinement::PivotRoot, "pivot_root")] {
            let r = try_escape(&root, &secret, how)?;
            if r.escaped {
                println!("{name:>10}: ESCAPED, read the host file: {:?}", r.content.trim_end());
            } else {
                let e = r.errno.map(nix_errno).unwrap_or_default();
                println!("{name:>10}: confined, opening the host file failed: {e}");
            }
        }
        println!("\nchroot only changes where / resolves; a process with CAP_SYS_CHROOT can chroot");
        println!("again into a subdirectory and walk up with `..` from its working directory.");
        println!("pivot_root in a mount namespace, with the old root detached, leaves nothing above /.");
        println!("\nThis escape and nine more, each against the defences that stop it: virtlab lab escape");
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&base);
    result.map(|()| 0)
}

fn nix_errno(e: i32) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

fn build_rootfs(args: RootfsArgs) -> anyhow::Result<u8> {
    let bb = if args.no_busybox { None } else { rootfs::host_busybox() };
    let r = rootfs::build(&args.dir, bb.as_deref())?;
    println!("rootfs ready in {}", r.dir.display());
    println!("  {} (the workload, static, no libc)", rootfs::WORKLOAD_PATH);
    if r.busybox {
        println!("  /bin/busybox with {} applet links (sh, ls, ps, hostname, uname, ...)", r.applets);
    } else {
        println!("  no busybox (install busybox-static for a shell: apt-get install busybox-static)");
    }
    println!("try: virtlab container run --rootfs {} -- /virtlab-workload ready", r.dir.display());
    Ok(0)
}

/// Parses `--ns`. An empty list is refused rather than read as no
/// namespace at all: that has to be asked for, as `none`.
fn parse_namespaces(text: &str) -> anyhow::Result<Namespaces> {
    if text.split(',').all(|w| w.trim().is_empty()) {
        anyhow::bail!(
            "--ns {text:?} names no namespace: write `--ns none` for none, `--ns all` for every one, or a list such \
             as uts,pid"
        );
    }
    Ok(Namespaces::parse(text)?)
}

/// The root file system of a run without an image, and the command.
fn rootfs_and_command(args: &RunArgs) -> anyhow::Result<(PathBuf, bool, Vec<String>)> {
    if args.command.is_empty() {
        anyhow::bail!("no command given: name an image (`virtlab container run busybox sh`), or put the command after `--` (`virtlab container run -- /virtlab-workload ready`)");
    }
    if args.detach || args.name.is_some() || args.auto_remove {
        anyhow::bail!("-d, --name and --rm make a container of an IMAGE, which stays in `ps -a`; a --rootfs or built-in run is the launcher alone: name an image (`virtlab image import DIR NAME` makes one)");
    }
    let builtin = args.rootfs.is_none();
    let rootfs = match &args.rootfs {
        Some(r) => r.clone(),
        None => rootfs::default_rootfs().context("cannot prepare the built-in rootfs")?,
    };
    Ok((rootfs, builtin, args.command.clone()))
}

fn config_from(
    args: &RunArgs,
    rootfs: &std::path::Path,
    builtin: bool,
    argv: Vec<String>,
) -> anyhow::Result<ContainerConfig> {
    let namespaces = parse_namespaces(&args.ns)?;
    let mut cfg = ContainerConfig::new(rootfs, argv);
    cfg.namespaces = namespaces;
    if let Some(h) = &args.hostname {
        if !namespaces.uts {
            return Err(config::ConfigError::NeedsNamespace { what: "--hostname", ns: "uts" }.into());
        }
        cfg.hostname = h.clone();
    }
    cfg.limits.memory = args.memory.as_deref().map(config::parse_memory).transpose()?;
    cfg.limits.cpus = args.cpus.as_deref().map(config::parse_cpus).transpose()?;
    cfg.limits.pids = args.pids.as_deref().map(config::parse_pids).transpose()?;
    for e in &args.env {
        let (k, v) = config::parse_env(e)?;
        cfg.env.retain(|(ek, _)| *ek != k);
        cfg.env.push((k, v));
    }
    if let Some(w) = &args.workdir {
        cfg.workdir = w.clone();
    }
    if let Some(u) = args.user.as_deref() {
        cfg.user = Some(User::parse(u)?);
    }
    // The built-in rootfs is a shared cache: keep it read-only when we can.
    cfg.read_only = args.read_only || (builtin && namespaces.mnt);
    defences(args)?.apply(&mut cfg)?;
    set_run_options(args, &mut cfg);
    Ok(cfg)
}

/// `--security-opt`, `--cap-add`, `--cap-drop` and `--privileged`, read
/// (a profile file read now).
pub(super) fn defences(args: &RunArgs) -> anyhow::Result<Defences> {
    if args.privileged && (!args.cap_add.is_empty() || !args.cap_drop.is_empty()) {
        anyhow::bail!("--privileged gives every capability: leave out --cap-add and --cap-drop, or --privileged");
    }
    Ok(Defences::parse(&args.security_opt, &args.cap_add, &args.cap_drop, args.privileged, |p| {
        std::fs::read_to_string(p)
    })?)
}

/// What only a run in the foreground has: the timeout, the narration,
/// and where the output goes.
pub(super) fn set_run_options(args: &RunArgs, cfg: &mut ContainerConfig) {
    cfg.timeout = args.timeout;
    cfg.explain = args.explain || args.step;
    cfg.step = args.step;
    cfg.forward_signals = true;
    cfg.stdio = if args.json {
        Stdio::Capture
    } else if args.timings {
        Stdio::Tee
    } else {
        Stdio::Inherit
    };
}

/// The exit status of a container run: the command's, or 124 when the
/// timeout killed it (as timeout(1) and `virtlab vm run`), so that a
/// SIGKILL from elsewhere (137) is not mistaken for a timeout.
pub(super) fn exit_code(o: &Outcome) -> u8 {
    if o.timed_out {
        EXIT_TIMEOUT
    } else {
        o.exit_code()
    }
}

/// With `--json`, an error is a JSON object on stdout too, so that a
/// program reading it always gets one; the message stays on stderr.
pub(super) fn json_error(e: &anyhow::Error, exit_code: u8) {
    let v = serde_json::json!({ "error": format!("{e:#}"), "exit_code": exit_code });
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string()));
}

fn run_container(args: RunArgs) -> anyhow::Result<u8> {
    if !args.image_and_command.is_empty() {
        return super::run_image::run(&args);
    }
    let cfg = rootfs_and_command(&args).and_then(|(rootfs, builtin, argv)| config_from(&args, &rootfs, builtin, argv));
    let cfg = match cfg {
        Ok(cfg) => cfg,
        Err(e) => {
            if args.json {
                json_error(&e, EXIT_TOOL_ERROR);
            }
            return Err(e);
        }
    };
    explain_start(&cfg);
    report(&args, &cfg, virtlab_container::run(&cfg), None)
}

/// With --explain: what is about to run, and which defences are on.
pub(super) fn explain_start(cfg: &ContainerConfig) {
    if cfg.explain {
        eprintln!(
            "[virtlab] container: rootfs {}{}, namespaces {}, command {:?}",
            cfg.rootfs.display(),
            if cfg.read_only { " (read-only)" } else { "" },
            if cfg.namespaces == Namespaces::NONE { "none".to_string() } else { cfg.namespaces.names() },
            cfg.argv
        );
        for line in virtlab_container::defences::describe(cfg) {
            eprintln!("[virtlab] defence: {line}");
        }
    }
}

/// What a run in the foreground prints when it is over, and its exit
/// status: the command's, or the error's. `image` names the image run, if
/// one was.
pub(super) fn report(
    args: &RunArgs,
    cfg: &ContainerConfig,
    result: Result<Outcome, LaunchError>,
    image: Option<&str>,
) -> anyhow::Result<u8> {
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            let code = e.exit_code();
            let e = match (&e, image) {
                // The rootfs is the image's layers stacked at a mount point
                // of the container's: name the image instead, and not the
                // advice for a --rootfs directory.
                (LaunchError::CommandNotFound { cmd, searched, .. }, Some(image)) => {
                    anyhow::anyhow!(
                        "command {cmd:?} is not in the image {image} (looked for {searched}): name a program the \
                         image has, or none to run its CMD"
                    )
                }
                _ => anyhow::Error::new(e),
            };
            if args.json {
                json_error(&e, code);
            }
            if code == EXIT_TOOL_ERROR {
                return Err(e);
            }
            // Not found / not executable: report like the binary does, with
            // the shell's exit codes.
            print_error(&e);
            return Ok(code);
        }
    };
    if cfg.explain {
        explain_end(&outcome);
    }
    if args.timings {
        eprint!("{}", timings_table(&outcome));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(cfg, &outcome))?);
    }
    if outcome.oom_killed {
        eprintln!(
            "virtlab: the kernel's OOM killer killed the container: it needed more than its memory limit ({})",
            cfg.limits.memory.map_or("none set".into(), mib)
        );
    }
    if let (true, Some(t)) = (outcome.timed_out, cfg.timeout) {
        eprintln!("virtlab: timed out after {t:?}: the container was killed (exit status {EXIT_TIMEOUT})");
    }
    for w in &outcome.warnings {
        eprintln!("virtlab: warning: {w}");
    }
    Ok(exit_code(&outcome))
}

fn print_error(e: &anyhow::Error) {
    eprintln!("virtlab: error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}
