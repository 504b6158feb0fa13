//! `virtlab oci`: virtlab's launcher behind the command line of an OCI
//! runtime (runc's), over a bundle: a root file system and its
//! `config.json`. `spec` writes a config.json to start from; `create`
//! makes the container and leaves its process waiting before execve,
//! `start` lets it run (the two steps an engine takes); `run` is both, to
//! the process's end (as `runc run`); `state`, `list`, `kill` and `delete`
//! act on the runtime's record; `exec` adds a process to a running
//! container (through the engine's own `exec`); `features` says what this
//! runtime supports.
//!
//! A terminal (`process.terminal: true`) comes as runc gives one: with
//! `--console-socket`, the container's process makes a pseudo-terminal
//! pair from its own devpts and sends the master end over that unix
//! socket (the engine's monitor, conmon, holds it); without one (`run`,
//! a non-detached `exec`), the process shares the caller's terminal.
//!
//! config.json's `hooks` run at their moments (see
//! `virtlab_container::runtime::hooks`): `prestart`, `createRuntime` and
//! `createContainer` in `create`, `startContainer` and `poststart` in
//! `start`, `poststop` in `delete` (`run` has them all); `ROOT/ID/hooks.json`
//! keeps them between the calls.
//!
//! With `--explain` (from podman: `podman --runtime-flag explain ...`),
//! each call adds a line to a trace file: who called, the call, what came
//! of it; `explain [-f]` prints the trace (see [`explain`]).

mod explain;
mod forward;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use virtlab_container::oci::state::{State, DEFAULT_ROOT};
use virtlab_container::oci::{self, OciError};
use virtlab_container::runtime::hooks::{Hook, HookError, HookKind, HookState, LifecycleHooks, Observer};
use virtlab_container::Stdio;

use super::EXIT_TOOL_ERROR;

/// `virtlab oci ...`.
#[derive(Debug, Args)]
pub struct OciArgs {
    /// Where the runtime keeps its containers' state
    #[arg(long, value_name = "DIR", default_value = DEFAULT_ROOT, global = true)]
    root: PathBuf,
    /// Also write errors to this file (engines pass it)
    #[arg(long, value_name = "FILE", global = true)]
    log: Option<PathBuf>,
    /// `text` or `json` for --log
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"], global = true)]
    log_format: String,
    /// Use systemd to manage cgroups (not supported: virtlab writes cgroupfs itself)
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Add a line per call to a trace (ROOT/explain.log): who called, the
    /// call, its outcome; `virtlab oci explain -f` shows it (podman:
    /// `podman --runtime-flag explain ...`)
    #[arg(long, global = true)]
    explain: bool,
    /// The trace file for --explain (implies it) and for `explain`
    #[arg(long, value_name = "FILE", global = true)]
    explain_file: Option<PathBuf>,
    #[command(subcommand)]
    command: OciCommand,
}

/// `virtlab-runc ...`: the runtime's command line alone. An engine calls
/// the runtime several times for each container, so this parses only the
/// `oci` commands, without building the rest of virtlab's command line.
#[derive(Debug, clap::Parser)]
#[command(name = "virtlab-runc", version, about = "virtlab as an OCI runtime: runc's command line over a bundle")]
pub struct RuncCli {
    #[command(flatten)]
    pub args: OciArgs,
}

/// The runtime's commands.
#[derive(Debug, Subcommand)]
pub enum OciCommand {
    /// Write a config.json to start from (`sh`, in new pid, net, ipc, uts,
    /// mount and cgroup namespaces, a read-only root at ./rootfs, runc's
    /// capabilities and mounts, hostname virtlab)
    Spec {
        /// The bundle directory to write it in
        #[arg(short, long, value_name = "DIR", default_value = ".")]
        bundle: PathBuf,
    },
    /// Run the bundle's process in a new container and wait for it; its
    /// exit status is the command's (125 when virtlab failed, 126/127 when
    /// the program could not run)
    Run {
        /// The bundle directory
        #[arg(short, long, value_name = "DIR", default_value = ".")]
        bundle: PathBuf,
        /// Write the container's PID (as the host sees it) here once it runs
        #[arg(long, value_name = "FILE")]
        pid_file: Option<PathBuf>,
        /// A unix socket to send the terminal's master end to (process.terminal)
        #[arg(long, value_name = "SOCKET")]
        console_socket: Option<PathBuf>,
        /// Pass this many fds from 3 on (3, 4, ...) to the process, as they are
        #[arg(long, value_name = "N", default_value_t = 0)]
        preserve_fds: u32,
        /// The container's ID
        id: String,
    },
    /// Create a container from a bundle without starting its process: its
    /// namespaces, cgroup, mounts and root are made, and the process waits
    /// before execve until `start` (its PID in --pid-file)
    Create {
        /// The bundle directory
        #[arg(short, long, value_name = "DIR", default_value = ".")]
        bundle: PathBuf,
        /// Write the container's PID (as the host sees it) here
        #[arg(long, value_name = "FILE")]
        pid_file: Option<PathBuf>,
        /// A unix socket to send the terminal's master end to (needed with process.terminal)
        #[arg(long, value_name = "SOCKET")]
        console_socket: Option<PathBuf>,
        /// Pass this many fds from 3 on (3, 4, ...) to the process, as they are
        #[arg(long, value_name = "N", default_value_t = 0)]
        preserve_fds: u32,
        /// The container's ID
        id: String,
    },
    /// Start a created container: its process runs the bundle's program
    Start { id: String },
    /// Run one more process in a running container (its namespaces,
    /// cgroup, capabilities, seccomp filter); without -d its exit status
    /// is the command's
    Exec(ExecArgs),
    /// Print a container's state (runtime-spec JSON: ociVersion, id,
    /// status, pid, bundle)
    State { id: String },
    /// List the runtime's containers
    List {
        /// `table` or `json`
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
    /// Send a signal to a container's process (default SIGTERM)
    Kill {
        id: String,
        /// A name (TERM, SIGKILL) or a number
        #[arg(default_value = "TERM")]
        signal: String,
    },
    /// Remove a stopped container's record (-f: kill a running one first)
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Print what this runtime supports (runtime-spec features JSON)
    Features,
    /// Print the trace of calls made with --explain (switch it on in
    /// podman with `podman --runtime-flag explain ...`)
    Explain {
        /// Keep printing the calls as they come
        #[arg(short, long)]
        follow: bool,
    },
}

/// `oci exec`'s options (runc's).
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The process to run, as runtime-spec JSON (`process` of config.json);
    /// without it: the bundle's process with COMMAND and the options below
    #[arg(short, long, value_name = "FILE")]
    process: Option<PathBuf>,
    /// A unix socket to send the terminal's master end to (with a terminal)
    #[arg(long, value_name = "SOCKET")]
    console_socket: Option<PathBuf>,
    /// Write the process's PID (as the host sees it) here
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Return once the process runs, leaving it to the caller's subreaper
    #[arg(short, long)]
    detach: bool,
    /// Give the process a terminal
    #[arg(short, long)]
    tty: bool,
    /// Working directory inside the container
    #[arg(long, value_name = "DIR")]
    cwd: Option<String>,
    /// Set an environment variable (repeatable)
    #[arg(short, long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Run as this user: UID[:GID]
    #[arg(short, long, value_name = "UID[:GID]")]
    user: Option<String>,
    /// Pass this many fds from 3 on (3, 4, ...) to the process, as they are
    #[arg(long, value_name = "N", default_value_t = 0)]
    preserve_fds: u32,
    /// Add this capability (CAP_NET_ADMIN or NET_ADMIN) to the process's
    /// bounding, effective and permitted sets, even one the container's
    /// first process lacks (as runc); repeatable
    #[arg(long = "cap", value_name = "CAP")]
    caps: Vec<String>,
    /// The container's ID
    id: String,
    /// The command and its arguments (without --process)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Runs an `oci` subcommand.
pub fn run(args: OciArgs) -> anyhow::Result<u8> {
    let (at, began) = (std::time::SystemTime::now(), std::time::Instant::now());
    let trace = trace_path(&args);
    let result = dispatch(&args);
    if let Some(path) = trace {
        let took = began.elapsed();
        if let (OciCommand::Create { id, .. }, Ok(_)) = (&args.command, &result) {
            // The container's later calls go to the same trace.
            let _ = std::fs::write(explain::marker(&args.root, id), path.as_os_str().as_encoded_bytes());
        }
        let argv: Vec<String> = std::env::args().skip(1).collect();
        // `virtlab oci ...` has the word oci before the call; `virtlab-runc ...` not.
        let call = explain::call_text(argv.strip_prefix(&["oci".to_string()]).unwrap_or(&argv));
        let line = explain::line(at, &explain::callers(), &call, &outcome(&args, &result), took);
        if let Err(e) = explain::append(&path, &line) {
            eprintln!("virtlab: warning: cannot add to the trace {}: {e}", path.display());
        }
    }
    result.or_else(|e| {
        eprintln!("virtlab: error: {e:#}");
        if let Some(path) = &args.log {
            let _ = log_error(path, &args.log_format, &format!("{e:#}"));
        }
        Ok(EXIT_TOOL_ERROR)
    })
}

/// Where this call's trace line goes, if anywhere: --explain or
/// --explain-file, or the trace of the container's `create`.
fn trace_path(args: &OciArgs) -> Option<std::path::PathBuf> {
    if let OciCommand::Explain { .. } = args.command {
        return None;
    }
    if args.explain || args.explain_file.is_some() {
        return Some(explain::log_path(&args.root, args.explain_file.as_deref()));
    }
    let id = match &args.command {
        OciCommand::Start { id } | OciCommand::State { id } | OciCommand::Kill { id, .. } => id,
        OciCommand::Delete { id, .. } => id,
        OciCommand::Exec(a) => &a.id,
        _ => return None,
    };
    explain::marked(&args.root, id)
}

/// What came of a call, as its trace line says it.
fn outcome(args: &OciArgs, result: &anyhow::Result<u8>) -> String {
    let code = match result {
        Err(e) => return format!("error: {e:#}"),
        Ok(code) => *code,
    };
    let state = |id: &str| State::load(&args.root, id).ok();
    match &args.command {
        OciCommand::Create { id, bundle, .. } => match state(id) {
            Some(s) => format!("created, pid {}{}", s.pid, joined_text(bundle)),
            None => "created".into(),
        },
        OciCommand::Run { bundle, .. } => format!("exit status {code}{}", joined_text(bundle)),
        OciCommand::Start { .. } => "started".into(),
        OciCommand::State { id } => match state(id) {
            Some(s) => format!("status {}, pid {}", s.status, s.pid),
            None => "no such container".into(),
        },
        OciCommand::Kill { signal, .. } => format!("sent {signal}"),
        OciCommand::Delete { .. } => "deleted".into(),
        OciCommand::Spec { .. } => "config.json written".into(),
        OciCommand::Exec(_) => format!("exit status {code}"),
        OciCommand::List { .. } | OciCommand::Features | OciCommand::Explain { .. } => "printed".into(),
    }
}

/// The namespaces a bundle's container joined, for its trace line:
/// `; join net namespace /run/netns/x`.
fn joined_text(bundle: &Path) -> String {
    let Ok(b) = oci::load(bundle) else { return String::new() };
    b.config
        .join_namespaces
        .iter()
        .map(|j| format!("; join {} namespace {}", j.kind.name(), j.path.display()))
        .collect()
}

fn dispatch(args: &OciArgs) -> anyhow::Result<u8> {
    if args.systemd_cgroup {
        bail!("--systemd-cgroup is not supported: virtlab makes its cgroups with cgroupfs; configure the engine for cgroupfs (podman: --cgroup-manager cgroupfs)");
    }
    let root = &args.root;
    let ctx = HookCtx::new(args);
    match &args.command {
        OciCommand::Spec { bundle } => spec(bundle),
        OciCommand::Run { bundle, pid_file, console_socket, preserve_fds, id } => {
            run_bundle(&ctx, bundle, pid_file.as_deref(), console_socket.as_deref(), *preserve_fds, id)
        }
        OciCommand::Create { bundle, pid_file, console_socket, preserve_fds, id } => {
            create(&ctx, bundle, pid_file.as_deref(), console_socket.as_deref(), *preserve_fds, id)
        }
        OciCommand::Start { id } => start(&ctx, id),
        OciCommand::Exec(a) => exec(root, a),
        OciCommand::State { id } => {
            println!("{}", serde_json::to_string_pretty(&State::load(root, id)?)?);
            Ok(0)
        }
        OciCommand::List { format } => list(root, format),
        OciCommand::Kill { id, signal } => kill(root, id, signal),
        OciCommand::Delete { force, id } => delete(&ctx, id, *force),
        OciCommand::Features => {
            println!("{}", serde_json::to_string_pretty(&features())?);
            Ok(0)
        }
        OciCommand::Explain { follow } => {
            explain::show(&explain::log_path(root, args.explain_file.as_deref()), *follow)
        }
    }
}

fn log_error(path: &Path, format: &str, message: &str) -> std::io::Result<()> {
    log_line(path, format, "error", message)
}

fn log_line(path: &Path, format: &str, level: &str, message: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let time = virtlab_container::time::rfc3339(std::time::SystemTime::now());
    match format {
        "json" => writeln!(f, "{}", serde_json::json!({ "level": level, "msg": message, "time": time })),
        _ => writeln!(f, "time=\"{time}\" level={level} msg={message:?}"),
    }
}

/// Where the hooks of a call are told of: the trace (one line per hook
/// run, with --explain) and --log (a hook's failure).
#[derive(Debug, Clone)]
struct HookCtx {
    root: PathBuf,
    trace: Option<PathBuf>,
    log: Option<(PathBuf, String)>,
}

impl HookCtx {
    fn new(args: &OciArgs) -> HookCtx {
        HookCtx {
            root: args.root.clone(),
            trace: trace_path(args),
            log: args.log.clone().map(|p| (p, args.log_format.clone())),
        }
    }

    /// A trace line for one hook run, and a --log line if it failed.
    fn record(&self, hook: &Hook, result: &Result<Duration, HookError>) {
        let took = *result.as_ref().unwrap_or(&Duration::ZERO);
        let outcome = match result {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("failed: {e}"),
        };
        self.record_line(hook, &outcome, took);
        if let (Err(e), Some((path, format))) = (result, &self.log) {
            let _ = log_line(path, format, "error", &e.to_string());
        }
    }

    fn record_line(&self, hook: &Hook, outcome: &str, took: Duration) {
        if let Some(path) = &self.trace {
            let call = format!("hook {} {} (state {})", hook.field(), hook.path.display(), hook.kind.status());
            let at = std::time::SystemTime::now() - took;
            let _ = explain::append(path, &explain::line(at, "virtlab → ", &call, outcome, took));
        }
    }

    /// A hook the container's process ran (no duration known): a trace
    /// line each, `failed` the one that failed, if one did.
    fn record_child(&self, hooks: &LifecycleHooks, kind: HookKind, failed: Option<&HookError>) {
        for hook in hooks.of(kind) {
            match failed {
                Some(e) if e.field == hook.field() => {
                    self.record(hook, &Err(e.clone()));
                    return;
                }
                _ => self.record_line(hook, "ok (run by the container's process)", Duration::ZERO),
            }
        }
    }

    /// A warning on stderr and in --log.
    fn warn(&self, message: &str) {
        eprintln!("virtlab: warning: {message}");
        if let Some((path, format)) = &self.log {
            let _ = log_line(path, format, "warning", message);
        }
    }

    /// An observer that records each hook run here.
    fn hooks_observer(&self) -> Option<Observer> {
        let me = self.clone();
        Some(Observer(Arc::new(move |hook, result| me.record(hook, result))))
    }

    /// The container's hooks, told to this context as they run.
    fn hooks_of(&self, b: &oci::Bundle, id: &str) -> LifecycleHooks {
        let me = self.clone();
        LifecycleHooks {
            hooks: b.hooks.clone(),
            state: HookState {
                oci_version: oci::SPEC_VERSION.into(),
                id: id.into(),
                bundle: b.dir.clone(),
                annotations: b.annotations.clone(),
            },
            observer: me.hooks_observer(),
        }
    }
}

/// The hook error inside `e`, if a hook is what failed.
fn hook_error(e: &anyhow::Error) -> Option<&HookError> {
    e.chain().find_map(|c| c.downcast_ref::<HookError>())
}

/// `spec`: runc's default config.json (as the oci-spec crate gives it).
fn spec(bundle: &Path) -> anyhow::Result<u8> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("{} exists already: remove it first", path.display());
    }
    let mut spec = oci_spec::runtime::Spec::default();
    spec.set_hostname(Some("virtlab".into()));
    spec.save(&path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(0)
}

/// `run`: the bundle's process in a new container, to its end; the record
/// says `running` meanwhile and goes at the end, as with `runc run`.
fn run_bundle(
    ctx: &HookCtx,
    bundle: &Path,
    pid_file: Option<&Path>,
    console: Option<&Path>,
    preserve_fds: u32,
    id: &str,
) -> anyhow::Result<u8> {
    check_preserved(preserve_fds)?;
    let root = ctx.root.as_path();
    let b = oci::load(bundle)?;
    let mut cfg = b.config.clone();
    cfg.preserve_fds = preserve_fds;
    let hooks = Arc::new(ctx.hooks_of(&b, id));
    if !hooks.hooks.is_empty() {
        cfg.hooks = Some(hooks.clone());
    }
    check_terminal(b.terminal, console)?;
    cfg.console_socket = console.map(Path::to_path_buf);
    if b.terminal && console.is_none() && !std::io::stdin().is_terminal() {
        return Err(OciError::Unsupported {
            field: "process.terminal".into(),
            why: "true, but standard input is not a terminal: run from one (virtlab shares it with the process), or set it to false".into(),
        }
        .into());
    }
    let mut state = State::create(root, id, &b.dir)?;
    state.annotations = b.annotations.clone();
    let record = root.join(id).join("pid");
    cfg.pid_file = Some(record.clone());
    cfg.stdio = Stdio::Inherit;
    cfg.forward_signals = true;
    // The record says running once the process runs.
    // Once it runs, the poststart hooks; one failing stops the container
    // (as runc does).
    let done = Arc::new(AtomicBool::new(false));
    let poststart_failed = Arc::new(std::sync::Mutex::new(None::<HookError>));
    // Shielded: the launcher forwards signals to the container from this
    // thread; the watcher must not take one and end the process.
    let watcher = {
        let (done, root, mut s, user_pid_file) =
            (done.clone(), root.to_path_buf(), state.clone(), pid_file.map(Path::to_path_buf));
        let (hooks, failed) = (hooks.clone(), poststart_failed.clone());
        virtlab_container::runtime::launch::spawn_shielded(move || loop {
            if let Some(pid) = std::fs::read_to_string(&record).ok().and_then(|t| t.trim().parse().ok()) {
                s.status = "running".into();
                s.pid = pid;
                let _ = s.save(&root);
                if let Some(f) = user_pid_file {
                    let _ = std::fs::write(f, format!("{pid}"));
                }
                if let Err(e) = hooks.run_host(&[HookKind::Poststart], pid) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                    *failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                }
                return;
            }
            if done.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_micros(200));
        })?
    };
    let result = virtlab_container::run(&cfg);
    done.store(true, Ordering::Release);
    let _ = watcher.join();
    state.status = "stopped".into();
    let _ = state.save(root);
    let pid = std::fs::read_to_string(root.join(id).join("pid")).ok().and_then(|t| t.trim().parse().ok());
    State::remove(root, id)?;
    match &result {
        Ok(_) => {
            ctx.record_child(&hooks, HookKind::CreateContainer, None);
            ctx.record_child(&hooks, HookKind::StartContainer, None);
        }
        Err(virtlab_container::LaunchError::Hook(e)) if e.field.starts_with("hooks.createContainer") => {
            ctx.record_child(&hooks, HookKind::CreateContainer, Some(e));
        }
        Err(virtlab_container::LaunchError::Hook(e)) if e.field.starts_with("hooks.startContainer") => {
            ctx.record_child(&hooks, HookKind::CreateContainer, None);
            ctx.record_child(&hooks, HookKind::StartContainer, Some(e));
        }
        Err(_) => {}
    }
    // Created (its createRuntime hooks passed): the poststop hooks.
    if !matches!(&result, Err(virtlab_container::LaunchError::Hook(e)) if e.field.starts_with("hooks.createRuntime") || e.field.starts_with("hooks.prestart"))
    {
        poststop(ctx, &hooks, pid.unwrap_or(0));
    }
    let failed = poststart_failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    if let Some(e) = failed {
        let e = anyhow::Error::new(e).context(format!("container {id} was stopped: a poststart hook failed"));
        return Err(e);
    }
    match result {
        Ok(o) => Ok(o.exit_code()),
        Err(e) => {
            let code = e.exit_code();
            let text = match &e {
                virtlab_container::LaunchError::Hook(_) => format!("{:#}", anyhow::Error::new(e)),
                _ => e.to_string(),
            };
            eprintln!("virtlab: error: {text}");
            if let Some((path, format)) = &ctx.log {
                let _ = log_error(path, format, &text);
            }
            Ok(code)
        }
    }
}

/// The poststop hooks, each run even if one before it failed; a failure
/// is a warning (runtime-spec "Lifecycle"; runc too).
fn poststop(ctx: &HookCtx, hooks: &LifecycleHooks, pid: i32) {
    let state = hooks.state.json(HookKind::Poststop.status(), pid);
    for hook in hooks.of(HookKind::Poststop) {
        let result = virtlab_container::runtime::hooks::run_host(hook, &state);
        ctx.record(hook, &result);
        if let Err(e) = result {
            ctx.warn(&format!("{e} (the container is deleted all the same)"));
        }
    }
}

/// `create`: everything up to execve, the process left waiting on
/// `ROOT/ID/exec.fifo`, the record `created`.
fn create(
    ctx: &HookCtx,
    bundle: &Path,
    pid_file: Option<&Path>,
    console: Option<&Path>,
    preserve_fds: u32,
    id: &str,
) -> anyhow::Result<u8> {
    check_preserved(preserve_fds)?;
    let root = ctx.root.as_path();
    let b = oci::load(bundle)?;
    let hooks = ctx.hooks_of(&b, id);
    check_terminal(b.terminal, console)?;
    if b.terminal && console.is_none() {
        return Err(OciError::Unsupported {
            field: "process.terminal".into(),
            why: "true, but no --console-socket: a created container outlives this command, so its terminal goes to the engine through that socket (give one, or set terminal to false)".into(),
        }
        .into());
    }
    let mut state = State::create(root, id, &b.dir)?;
    state.annotations = b.annotations.clone();
    let made = (|| -> anyhow::Result<virtlab_container::launch::Created> {
        let fifo = root.join(id).join("exec.fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .with_context(|| format!("cannot make {}", fifo.display()))?;
        // Writable by anyone (after the umask), as runc makes it: in a user
        // namespace the container's process is an unprivileged host uid,
        // which must still open it to wait for `start`. Only `start`
        // (root) reads it, and the container never sees the path: its
        // process reaches it through an fd opened before clone and closed
        // before execve.
        std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
            .with_context(|| format!("cannot make {} writable for the container's process", fifo.display()))?;
        let mut cfg = b.config.clone();
        cfg.preserve_fds = preserve_fds;
        cfg.stdio = Stdio::Inherit;
        cfg.pid_file = pid_file.map(Path::to_path_buf);
        cfg.console_socket = console.map(Path::to_path_buf);
        if !hooks.hooks.is_empty() {
            cfg.hooks = Some(Arc::new(hooks.clone()));
            State::save_hooks(root, id, &hooks)?;
        }
        // Named after the runtime's root too: two roots may hold the same ID.
        let root_tag = &virtlab_container::image::digest::sha256_hex(root.to_string_lossy().as_bytes())[..8];
        let created = virtlab_container::launch::create(&cfg, &format!("{root_tag}-{id}"), &fifo)?;
        std::fs::write(root.join(id).join("cgroup.json"), serde_json::to_vec(&created.cgroup)?)?;
        Ok(created)
    })();
    match made {
        Ok(c) => {
            ctx.record_child(&hooks, HookKind::CreateContainer, None);
            state.status = "created".into();
            state.pid = c.pid;
            state.save(root)?;
            Ok(0)
        }
        Err(e) => {
            if let Some(h) = hook_error(&e).filter(|h| h.field.starts_with("hooks.createContainer")) {
                ctx.record_child(&hooks, HookKind::CreateContainer, Some(h));
            }
            let _ = State::remove(root, id);
            Err(e)
        }
    }
}

/// A console socket is for a process with a terminal only (runc refuses
/// it too).
fn check_terminal(terminal: bool, console: Option<&Path>) -> anyhow::Result<()> {
    if let (false, Some(path)) = (terminal, console) {
        bail!(
            "--console-socket {} given, but the process has no terminal (process.terminal is false): set it to true, or leave the socket out",
            path.display()
        );
    }
    Ok(())
}

/// `exec`: one more process in a running container, joined through the
/// engine's exec (setns into its namespaces, its cgroup, the same last
/// steps as its first process).
fn exec(root: &Path, a: &ExecArgs) -> anyhow::Result<u8> {
    // Before this opens anything that could take those numbers.
    check_preserved(a.preserve_fds)?;
    let s = State::load(root, &a.id)?;
    if s.status != "running" && s.status != "created" {
        bail!("container {} is {}: a process can only be added to a running container", a.id, s.status);
    }
    let mut process = match &a.process {
        Some(path) => {
            if !a.command.is_empty() {
                bail!("give the command either in --process or after the ID, not both");
            }
            let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_slice::<oci_spec::runtime::Process>(&text)
                .with_context(|| format!("{} is not a runtime-spec process (JSON)", path.display()))?
        }
        None => {
            if a.command.is_empty() {
                bail!("no command: give one after the ID, or --process FILE.json");
            }
            let mut p = oci::bundle::own_process(&s.bundle)?;
            p.set_args(Some(a.command.clone()));
            p.set_terminal(Some(a.tty));
            if let Some(cwd) = &a.cwd {
                p.set_cwd(cwd.into());
            }
            let mut env = p.env().clone().unwrap_or_default();
            for e in &a.env {
                let (k, _) = virtlab_container::config::parse_env(e)?;
                env.retain(|x| !x.starts_with(&format!("{k}=")));
                env.push(e.clone());
            }
            p.set_env(Some(env));
            if let Some(u) = &a.user {
                let parsed = virtlab_container::config::User::parse(u)?;
                let mut user = p.user().clone();
                user.set_uid(parsed.uid);
                user.set_gid(parsed.gid);
                p.set_user(user);
            }
            p
        }
    };
    add_caps(&mut process, &a.caps)?;
    let (mut cfg, terminal) = oci::bundle::exec_config(&s.bundle, &process)?;
    cfg.preserve_fds = a.preserve_fds;
    let console = a.console_socket.as_deref();
    check_terminal(terminal, console)?;
    if terminal && console.is_none() && (a.detach || !std::io::stdin().is_terminal()) {
        bail!("the process wants a terminal, but there is no --console-socket and {}: give a console socket, or no terminal", if a.detach { "it is detached" } else { "standard input is not one" });
    }
    let socket = console
        .map(|p| {
            std::os::unix::net::UnixStream::connect(p)
                .with_context(|| format!("cannot connect to the console socket {}", p.display()))
        })
        .transpose()?;
    let socket_fd = socket.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
    // In the foreground, the signals to forward are blocked before the
    // process exists, so that none is lost before the wait.
    let blocked = if a.detach { None } else { Some(forward::block()?) };
    // Named by --cap, so granted even beyond the container's bounding set
    // (as runc does); a process.json alone gets no more than the container has.
    let granted = cap_mask(&a.caps);
    let pid = match virtlab_container::engine::exec::start_in_granting(s.pid, &cfg, socket_fd, granted) {
        Ok(pid) => pid,
        // 127 not found, 126 not executable, 125 virtlab failed.
        Err(e) => {
            let code = e.exit_code();
            let e = anyhow::Error::new(e).context(format!("cannot exec in container {}", a.id));
            eprintln!("virtlab: error: {e:#}");
            return Ok(code);
        }
    };
    drop(socket);
    if let Some(f) = &a.pid_file {
        std::fs::write(f, format!("{pid}")).with_context(|| format!("cannot write {}", f.display()))?;
    }
    match blocked {
        None => Ok(0),
        Some(b) => b.wait(pid),
    }
}

/// `exec --cap`: each capability added to the process's bounding,
/// effective and permitted sets (virtlab keeps those three equal).
fn add_caps(process: &mut oci_spec::runtime::Process, caps: &[String]) -> anyhow::Result<()> {
    if caps.is_empty() {
        return Ok(());
    }
    let mut set = process.capabilities().clone().unwrap_or_default();
    for c in caps {
        let name = c.to_ascii_uppercase();
        let name = if name.starts_with("CAP_") { name } else { format!("CAP_{name}") };
        if !oci::bundle::CAPABILITIES.contains(&name.as_str()) {
            bail!("--cap {c}: not a capability this kernel has: give a name from capabilities(7), e.g. CAP_NET_ADMIN");
        }
        let cap: oci_spec::runtime::Capability = serde_json::from_value(serde_json::Value::String(name.clone()))
            .with_context(|| format!("--cap {c}: not a capability the runtime specification names"))?;
        let add = |s: &Option<oci_spec::runtime::Capabilities>| {
            let mut s = s.clone().unwrap_or_default();
            s.insert(cap);
            Some(s)
        };
        set.set_bounding(add(set.bounding()));
        set.set_effective(add(set.effective()));
        set.set_permitted(add(set.permitted()));
    }
    process.set_capabilities(Some(set));
    Ok(())
}

/// The mask of the capabilities `--cap` names (already checked by [`add_caps`]).
fn cap_mask(caps: &[String]) -> u64 {
    caps.iter()
        .filter_map(|c| {
            let name = c.to_ascii_uppercase();
            let name = if name.starts_with("CAP_") { name } else { format!("CAP_{name}") };
            oci::bundle::CAPABILITIES.iter().position(|n| *n == name)
        })
        .fold(0, |m, p| m | (1u64 << p))
}

/// `--preserve-fds N`: fds 3 to 3+N-1 must be open here.
fn check_preserved(count: u32) -> anyhow::Result<()> {
    for fd in 3..3u32.saturating_add(count) {
        if nix::fcntl::fcntl(fd as i32, nix::fcntl::FcntlArg::F_GETFD).is_err() {
            bail!("--preserve-fds {count}: fd {fd} is not open (the fds 3 to {} are passed): pass only fds the caller opened", 2 + count);
        }
    }
    Ok(())
}

/// `start`: the exec FIFO opened for reading, which lets the process exec.
/// The process is blocked opening the FIFO for writing; the open here
/// wakes it, and it writes one byte, runs its startContainer hooks and
/// execs, which closes its end of the FIFO (or it writes a hook's failure
/// first). Both are waited for with poll(2), on the FIFO and on a pidfd of
/// the process (readable once it is gone): no sleeps.
fn start(ctx: &HookCtx, id: &str) -> anyhow::Result<u8> {
    use nix::fcntl::{open, OFlag};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let root = ctx.root.as_path();
    let mut s = State::load(root, id)?;
    if s.status != "created" {
        bail!("container {id} is {}: only a created container can be started", s.status);
    }
    let fifo = root.join(id).join("exec.fifo");
    let fd = open(&fifo, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
        .with_context(|| format!("cannot open {}", fifo.display()))?;
    // SAFETY: open(2) just returned this fd, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let pidfd = pidfd(s.pid);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut byte = [0u8; 1];
        match nix::unistd::read(fd.as_raw_fd(), &mut byte) {
            Ok(1) => break,
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
            Err(e) => bail!("cannot read {}: {e}", fifo.display()),
        }
        if deadline <= std::time::Instant::now() {
            bail!("container {id}'s process did not take the start within 10 s");
        }
        let gone = wait_readable(&fd, pidfd.as_ref(), deadline)
            .with_context(|| format!("cannot wait for container {id}'s process"))?;
        if gone && !virtlab_container::engine::container::alive(s.pid) {
            // One last read: it may have written its byte and gone on.
            if nix::unistd::read(fd.as_raw_fd(), &mut byte) == Ok(1) {
                break;
            }
            bail!("container {id}'s process (PID {}) is gone: it cannot be started", s.pid);
        }
    }
    // Then, when there are hooks to run in the container or after it
    // started, the FIFO's end: execve closes the process's end (its
    // startContainer hooks ran), or a hook's failure report comes before
    // it. Without them `start` is done, as runc's is, once the process
    // took the start.
    let hooks = State::load_hooks(root, id)?;
    let wait_exec =
        hooks.of(HookKind::StartContainer).next().is_some() || hooks.of(HookKind::Poststart).next().is_some();
    let mut report = Vec::new();
    let mut ended = !wait_exec;
    while !ended {
        let mut buf = [0u8; 16];
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) => ended = true,
            Ok(n) => report.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EAGAIN) => {
                // The end comes with the process's execve or its death;
                // a hook may take its own time (its timeout is its limit).
                wait_readable(&fd, None, std::time::Instant::now() + Duration::from_secs(3600))
                    .with_context(|| format!("cannot wait for container {id}'s process"))?;
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => bail!("cannot read {}: {e}", fifo.display()),
        }
    }
    let _ = std::fs::remove_file(&fifo);
    if let Some(e) = start_hook_failure(&hooks, &report) {
        ctx.record_child(&hooks, HookKind::StartContainer, Some(&e));
        s.status = "stopped".into();
        s.save(root)?;
        return Err(anyhow::Error::new(e)
            .context(format!("container {id} stopped before its program ran: a startContainer hook failed")));
    }
    ctx.record_child(&hooks, HookKind::StartContainer, None);
    s.status = "running".into();
    s.save(root)?;
    // As runc: a poststart hook that fails stops the container.
    let observed = LifecycleHooks { observer: ctx.hooks_observer(), ..hooks };
    if let Err(e) = observed.run_host(&[HookKind::Poststart], s.pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.pid), nix::sys::signal::Signal::SIGKILL);
        return Err(anyhow::Error::new(e).context(format!("container {id} was stopped: a poststart hook failed")));
    }
    Ok(0)
}

/// Waits until `fd` is readable (or hung up), `pidfd` says its process is
/// gone, or `deadline` passes; returns whether the process may be gone
/// (always true without a pidfd, which a kernel before 5.3 does not give:
/// then the wait is at most a millisecond, and the caller looks).
fn wait_readable(
    fd: &std::os::fd::OwnedFd,
    pidfd: Option<&std::os::fd::OwnedFd>,
    deadline: std::time::Instant,
) -> nix::Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    let mut fds = vec![PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    if let Some(p) = pidfd {
        fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
    }
    let wait = PollTimeout::try_from(left.as_millis().min(10_000) as i32 + 1).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, wait) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
        Err(e) => return Err(e),
    }
    Ok(fds.get(1).and_then(|p| p.revents()).is_none_or(|r| !r.is_empty()))
}

/// The startContainer hook failure the container's process reported on
/// the exec FIFO, if it did: `FIFO_FAILURE`, the index, the code.
fn start_hook_failure(hooks: &LifecycleHooks, report: &[u8]) -> Option<HookError> {
    use virtlab_container::runtime::hooks::{HookFailure, FIFO_FAILURE};
    let at = report.iter().position(|b| *b == FIFO_FAILURE)?;
    let bytes = report.get(at + 1..at + 9)?;
    let index = u32::from_ne_bytes(bytes[..4].try_into().ok()?);
    let code = u32::from_ne_bytes(bytes[4..].try_into().ok()?);
    let path = hooks.of(HookKind::StartContainer).nth(index as usize).map(|h| h.path.clone()).unwrap_or_default();
    Some(HookError {
        field: format!("hooks.startContainer[{index}]"),
        path,
        failure: HookFailure::decode(code),
        stderr: String::new(),
    })
}

/// A pidfd of process `pid` (readable once it is gone), or None (no such
/// process, or a kernel before 5.3).
fn pidfd(pid: i32) -> Option<std::os::fd::OwnedFd> {
    // SAFETY: pidfd_open(2) with integer arguments; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative result is a new fd that nothing else owns.
    (fd >= 0).then(|| unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) })
}

fn list(root: &Path, format: &str) -> anyhow::Result<u8> {
    let all = State::list(root);
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|s| {
            vec![s.id.clone(), s.pid.to_string(), s.status.clone(), s.bundle.display().to_string(), s.created.clone()]
        })
        .collect();
    super::image::view::print_table(&["ID", "PID", "STATUS", "BUNDLE", "CREATED"], &rows);
    Ok(0)
}

fn kill(root: &Path, id: &str, signal: &str) -> anyhow::Result<u8> {
    let sig = super::lifecycle::parse_signal(signal)?;
    let s = State::load(root, id)?;
    if s.status != "running" && s.status != "created" {
        bail!("container {id} is not running (it is {})", s.status);
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.pid), sig)
        .with_context(|| format!("cannot send {sig} to process {}", s.pid))?;
    Ok(0)
}

fn delete(ctx: &HookCtx, id: &str, force: bool) -> anyhow::Result<u8> {
    let root = ctx.root.as_path();
    let s = State::load(root, id)?;
    let hooks = State::load_hooks(root, id).unwrap_or_else(|e| {
        ctx.warn(&format!("{e}: the container's poststop hooks cannot run"));
        LifecycleHooks::default()
    });
    if s.status == "running" || s.status == "created" {
        if !force {
            bail!(
                "container {id} is {}: stop it first (`virtlab oci kill {id} KILL`), or delete it with --force",
                s.status
            );
        }
        // Its pidfd, taken before the signal, is readable once it is gone.
        let pidfd = pidfd(s.pid);
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.pid), nix::sys::signal::Signal::SIGKILL);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        // A `run` removes its record itself once the process is gone.
        while State::load(root, id).is_ok() && virtlab_container::engine::container::alive(s.pid) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match &pidfd {
                Some(fd) => {
                    use std::os::fd::AsFd;
                    let mut fds = [nix::poll::PollFd::new(fd.as_fd(), nix::poll::PollFlags::POLLIN)];
                    let wait = nix::poll::PollTimeout::try_from(left.as_millis().min(10_000) as i32 + 1)
                        .unwrap_or(nix::poll::PollTimeout::MAX);
                    let _ = nix::poll::poll(&mut fds, wait);
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
    // A created container's cgroup outlived its launcher: it goes now.
    if let Ok(bytes) = std::fs::read(root.join(id).join("cgroup.json")) {
        let paths: Vec<PathBuf> = serde_json::from_slice(&bytes).unwrap_or_default();
        virtlab_container::cgroup::Cgroup::remove_kept(&paths)?;
    }
    match State::remove(root, id) {
        Ok(()) => {}
        Err(_) if State::load(root, id).is_err() => {}
        Err(e) => return Err(e.into()),
    }
    // The container is gone: its poststop hooks.
    poststop(ctx, &hooks, s.pid);
    Ok(0)
}

/// What this runtime supports, in the runtime spec's features format.
fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": oci::SPEC_VERSION,
        "hooks": HookKind::ALL.map(HookKind::name),
        "mountOptions": ["ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "sync", "async",
            "dirsync", "noatime", "atime", "nodiratime", "diratime", "relatime", "norelatime", "strictatime",
            "nostrictatime", "mand", "nomand", "bind", "rbind", "private", "rprivate"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": oci::bundle::CAPABILITIES.to_vec(),
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false },
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86_64"],
            },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
        },
        "annotations": { "org.virtlab.runtime": "virtlab's container launcher" },
    })
}
