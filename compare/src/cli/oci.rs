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
//! With `--explain` (from podman: `podman --runtime-flag explain ...`),
//! each call adds a line to a trace file: who called, the call, what came
//! of it; `explain [-f]` prints the trace (see [`explain`]).

mod explain;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use virtlab_container::oci::state::{State, DEFAULT_ROOT};
use virtlab_container::oci::{self, OciError};
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
    /// Keep this many fds above 2 open for the process (only 0 is supported)
    #[arg(long, value_name = "N", default_value_t = 0)]
    preserve_fds: u32,
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
        OciCommand::Create { id, .. } => match state(id) {
            Some(s) => format!("created, pid {}", s.pid),
            None => "created".into(),
        },
        OciCommand::Start { .. } => "started".into(),
        OciCommand::State { id } => match state(id) {
            Some(s) => format!("status {}, pid {}", s.status, s.pid),
            None => "no such container".into(),
        },
        OciCommand::Kill { signal, .. } => format!("sent {signal}"),
        OciCommand::Delete { .. } => "deleted".into(),
        OciCommand::Spec { .. } => "config.json written".into(),
        OciCommand::Run { .. } | OciCommand::Exec(_) => format!("exit status {code}"),
        OciCommand::List { .. } | OciCommand::Features | OciCommand::Explain { .. } => "printed".into(),
    }
}

fn dispatch(args: &OciArgs) -> anyhow::Result<u8> {
    if args.systemd_cgroup {
        bail!("--systemd-cgroup is not supported: virtlab makes its cgroups with cgroupfs; configure the engine for cgroupfs (podman: --cgroup-manager cgroupfs)");
    }
    let root = &args.root;
    match &args.command {
        OciCommand::Spec { bundle } => spec(bundle),
        OciCommand::Run { bundle, pid_file, console_socket, id } => {
            run_bundle(root, bundle, pid_file.as_deref(), console_socket.as_deref(), id)
        }
        OciCommand::Create { bundle, pid_file, console_socket, id } => {
            create(root, bundle, pid_file.as_deref(), console_socket.as_deref(), id)
        }
        OciCommand::Start { id } => start(root, id),
        OciCommand::Exec(a) => exec(root, a),
        OciCommand::State { id } => {
            println!("{}", serde_json::to_string_pretty(&State::load(root, id)?)?);
            Ok(0)
        }
        OciCommand::List { format } => list(root, format),
        OciCommand::Kill { id, signal } => kill(root, id, signal),
        OciCommand::Delete { force, id } => delete(root, id, *force),
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
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let time = virtlab_container::time::rfc3339(std::time::SystemTime::now());
    match format {
        "json" => writeln!(f, "{}", serde_json::json!({ "level": "error", "msg": message, "time": time })),
        _ => writeln!(f, "time=\"{time}\" level=error msg={message:?}"),
    }
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
    root: &Path,
    bundle: &Path,
    pid_file: Option<&Path>,
    console: Option<&Path>,
    id: &str,
) -> anyhow::Result<u8> {
    let b = oci::load(bundle)?;
    let mut cfg = b.config.clone();
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
    let record = root.join(id).join("pid");
    cfg.pid_file = Some(record.clone());
    cfg.stdio = Stdio::Inherit;
    cfg.forward_signals = true;
    // The record says running once the process runs.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (done, root, mut s, user_pid_file) =
            (done.clone(), root.to_path_buf(), state.clone(), pid_file.map(Path::to_path_buf));
        std::thread::spawn(move || loop {
            if let Some(pid) = std::fs::read_to_string(&record).ok().and_then(|t| t.trim().parse().ok()) {
                s.status = "running".into();
                s.pid = pid;
                let _ = s.save(&root);
                if let Some(f) = user_pid_file {
                    let _ = std::fs::write(f, format!("{pid}"));
                }
                return;
            }
            if done.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_micros(200));
        })
    };
    let result = virtlab_container::run(&cfg);
    done.store(true, Ordering::Release);
    let _ = watcher.join();
    state.status = "stopped".into();
    let _ = state.save(root);
    State::remove(root, id)?;
    match result {
        Ok(o) => Ok(o.exit_code()),
        Err(e) => {
            let code = e.exit_code();
            eprintln!("virtlab: error: {e}");
            Ok(code)
        }
    }
}

/// `create`: everything up to execve, the process left waiting on
/// `ROOT/ID/exec.fifo`, the record `created`.
fn create(root: &Path, bundle: &Path, pid_file: Option<&Path>, console: Option<&Path>, id: &str) -> anyhow::Result<u8> {
    let b = oci::load(bundle)?;
    check_terminal(b.terminal, console)?;
    if b.terminal && console.is_none() {
        return Err(OciError::Unsupported {
            field: "process.terminal".into(),
            why: "true, but no --console-socket: a created container outlives this command, so its terminal goes to the engine through that socket (give one, or set terminal to false)".into(),
        }
        .into());
    }
    let mut state = State::create(root, id, &b.dir)?;
    let made = (|| -> anyhow::Result<virtlab_container::launch::Created> {
        let fifo = root.join(id).join("exec.fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .with_context(|| format!("cannot make {}", fifo.display()))?;
        let mut cfg = b.config.clone();
        cfg.stdio = Stdio::Inherit;
        cfg.pid_file = pid_file.map(Path::to_path_buf);
        cfg.console_socket = console.map(Path::to_path_buf);
        // Named after the runtime's root too: two roots may hold the same ID.
        let root_tag = &virtlab_container::image::digest::sha256_hex(root.to_string_lossy().as_bytes())[..8];
        let created = virtlab_container::launch::create(&cfg, &format!("{root_tag}-{id}"), &fifo)?;
        std::fs::write(root.join(id).join("cgroup.json"), serde_json::to_vec(&created.cgroup)?)?;
        Ok(created)
    })();
    match made {
        Ok(c) => {
            state.status = "created".into();
            state.pid = c.pid;
            state.save(root)?;
            Ok(0)
        }
        Err(e) => {
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
    let s = State::load(root, &a.id)?;
    if s.status != "running" && s.status != "created" {
        bail!("container {} is {}: a process can only be added to a running container", a.id, s.status);
    }
    if a.preserve_fds != 0 {
        bail!(
            "--preserve-fds {}: virtlab passes no fds beyond stdin, stdout and stderr (leave it out)",
            a.preserve_fds
        );
    }
    let process = match &a.process {
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
    let (cfg, terminal) = oci::bundle::exec_config(&s.bundle, &process)?;
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
    let pid = match virtlab_container::engine::exec::start_in(s.pid, &cfg, socket_fd) {
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
    if a.detach {
        return Ok(0);
    }
    loop {
        use nix::sys::wait::{waitpid, WaitStatus};
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code as u8),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128u8.wrapping_add(sig as u8)),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("cannot wait for the process: {e}"),
        }
    }
}

/// `start`: the exec FIFO opened for reading, which lets the process exec.
/// The process is blocked opening the FIFO for writing; the open here
/// wakes it, and it writes one byte. Waited for with poll(2) on the FIFO
/// and on a pidfd of the process (readable if it is gone), no sleeps.
fn start(root: &Path, id: &str) -> anyhow::Result<u8> {
    use nix::fcntl::{open, OFlag};
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
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
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            bail!("container {id}'s process did not take the start within 10 s");
        }
        let mut fds = vec![PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        if let Some(p) = &pidfd {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        // Without a pidfd (Linux before 5.3), the process is looked at
        // again every millisecond.
        let wait = match pidfd {
            Some(_) => PollTimeout::try_from(left.as_millis().min(10_000) as i32 + 1).unwrap_or(PollTimeout::MAX),
            None => PollTimeout::from(1u8),
        };
        match poll(&mut fds, wait) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => bail!("cannot wait for container {id}'s process: poll: {e}"),
        }
        let gone = fds.get(1).and_then(|p| p.revents()).is_some_and(|r| !r.is_empty());
        if (gone || pidfd.is_none()) && !virtlab_container::engine::container::alive(s.pid) {
            // One last read: it may have written its byte and gone on.
            if nix::unistd::read(fd.as_raw_fd(), &mut byte) == Ok(1) {
                break;
            }
            bail!("container {id}'s process (PID {}) is gone: it cannot be started", s.pid);
        }
    }
    let _ = std::fs::remove_file(&fifo);
    s.status = "running".into();
    s.save(root)?;
    Ok(0)
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

fn delete(root: &Path, id: &str, force: bool) -> anyhow::Result<u8> {
    let s = State::load(root, id)?;
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
        Ok(()) => Ok(0),
        Err(_) if State::load(root, id).is_err() => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// What this runtime supports, in the runtime spec's features format.
fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": oci::SPEC_VERSION,
        "hooks": [],
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
