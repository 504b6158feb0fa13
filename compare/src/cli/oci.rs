//! `virtlab oci`: virtlab's launcher behind the command line of an OCI
//! runtime (runc's), over a bundle: a root file system and its
//! `config.json`. `spec` writes a config.json to start from, `run` runs
//! the bundle's process to its end (as `runc run` does), `state`, `list`,
//! `kill` and `delete` act on the runtime's record of it, `features` says
//! what this runtime supports.

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
    #[command(subcommand)]
    command: OciCommand,
}

/// The runtime's commands.
#[derive(Debug, Subcommand)]
pub enum OciCommand {
    /// Write a config.json to start from (runc's default: `sh` on a
    /// terminal, in new pid, net, ipc, uts and mount namespaces, a
    /// read-only root at ./rootfs)
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
        /// The container's ID
        id: String,
    },
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
}

/// Runs an `oci` subcommand.
pub fn run(args: OciArgs) -> anyhow::Result<u8> {
    let result = dispatch(&args);
    result.or_else(|e| {
        eprintln!("virtlab: error: {e:#}");
        if let Some(path) = &args.log {
            let _ = log_error(path, &args.log_format, &format!("{e:#}"));
        }
        Ok(EXIT_TOOL_ERROR)
    })
}

fn dispatch(args: &OciArgs) -> anyhow::Result<u8> {
    if args.systemd_cgroup {
        bail!("--systemd-cgroup is not supported: virtlab makes its cgroups with cgroupfs; configure the engine for cgroupfs (podman: --cgroup-manager cgroupfs)");
    }
    let root = &args.root;
    match &args.command {
        OciCommand::Spec { bundle } => spec(bundle),
        OciCommand::Run { bundle, pid_file, id } => run_bundle(root, bundle, pid_file.as_deref(), id),
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
    let spec = oci_spec::runtime::Spec::default();
    spec.save(&path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(0)
}

/// `run`: the bundle's process in a new container, to its end; the record
/// says `running` meanwhile and goes at the end, as with `runc run`.
fn run_bundle(root: &Path, bundle: &Path, pid_file: Option<&Path>, id: &str) -> anyhow::Result<u8> {
    let b = oci::load(bundle)?;
    let mut cfg = b.config.clone();
    if b.terminal && !std::io::stdin().is_terminal() {
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

fn parse_signal(text: &str) -> anyhow::Result<nix::sys::signal::Signal> {
    use std::str::FromStr;
    if let Ok(n) = text.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).map_err(|_| anyhow::anyhow!("{n} is not a signal number"));
    }
    let name = text.to_ascii_uppercase();
    let name = if name.starts_with("SIG") { name } else { format!("SIG{name}") };
    nix::sys::signal::Signal::from_str(&name).map_err(|_| anyhow::anyhow!("{text:?} is not a signal"))
}

fn kill(root: &Path, id: &str, signal: &str) -> anyhow::Result<u8> {
    let sig = parse_signal(signal)?;
    let s = State::load(root, id)?;
    if s.status != "running" {
        bail!("container {id} is not running (it is {})", s.status);
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.pid), sig)
        .with_context(|| format!("cannot send {sig} to process {}", s.pid))?;
    Ok(0)
}

fn delete(root: &Path, id: &str, force: bool) -> anyhow::Result<u8> {
    let s = State::load(root, id)?;
    if s.status == "running" {
        if !force {
            bail!("container {id} is running: stop it first (`virtlab oci kill {id} KILL`), or delete it with --force");
        }
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.pid), nix::sys::signal::Signal::SIGKILL);
        // Its `run` removes the record once the process is gone.
        for _ in 0..1000 {
            if State::load(root, id).is_err() {
                return Ok(0);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
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
            "seccomp": { "enabled": false },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
        },
        "annotations": { "org.virtlab.runtime": "virtlab's container launcher" },
    })
}
