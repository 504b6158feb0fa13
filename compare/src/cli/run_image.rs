//! `run IMAGE`: a container of an image, which Docker-like has a record
//! of its own in the store (`ps -a`, `logs`, `start`, `rm`). In the
//! foreground the command line is the container's monitor; with `-d` a
//! monitor process of its own is started and the command line returns.

use std::fs::File;
use std::io::IsTerminal;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::fcntl::Flock;
use virtlab_container::config::{self, Namespaces, User};
use virtlab_container::defences::SeccompChoice;
use virtlab_container::engine::container::RUNTIME_VM;
use virtlab_container::engine::events::{self, Event};
use virtlab_container::engine::{monitor, Container, RunSpec};
use virtlab_container::image::{default_root, run, Store};

use super::container::{explain_start, json_error, report, set_run_options, RunArgs};
use super::EXIT_TOOL_ERROR;

/// `run IMAGE [CMD...]`, in the foreground or (`-d`) in the background.
pub fn run(args: &RunArgs) -> anyhow::Result<u8> {
    if args.tty && !args.detach && !std::io::stdin().is_terminal() {
        // Docker's message and status.
        eprintln!("virtlab: error: the input device is not a TTY: -t gives the command this terminal, so run it from one (or drop -t)");
        return Ok(1);
    }
    let made = make(args);
    if args.detach {
        return start_detached(&made?);
    }
    let made = match made {
        Ok(m) => m,
        Err(e) => {
            if args.json {
                json_error(&e, EXIT_TOOL_ERROR);
            }
            return Err(e);
        }
    };
    run_foreground(args, &made)
}

/// A container made in the store, and the store.
pub struct Made {
    pub root: PathBuf,
    pub container: Container,
}

/// `create`, and the first half of `run`: the image resolved, the
/// container's record made (and the `create` event).
pub fn make(args: &RunArgs) -> anyhow::Result<Made> {
    let Some((image_name, rest)) = args.image_and_command.split_first() else {
        bail!("name an image to run: `virtlab container run busybox sh` (`virtlab image ls` lists them)");
    };
    if args.rootfs.is_some() {
        bail!("give either an image ({image_name}) or --rootfs DIR, not both");
    }
    if !rest.is_empty() && !args.command.is_empty() {
        bail!("give the command after the image or after `--`, not both");
    }
    if args.detach && (args.interactive || args.tty || args.json || args.timings || args.explain || args.step) {
        bail!(
            "-d runs the container in the background, its output to its log: -i, -t, --json, --timings, --explain \
             and --step go with a run in the foreground"
        );
    }
    if args.detach && args.timeout.is_some() {
        bail!("--timeout goes with a run in the foreground; stop a background container with `virtlab stop -t SECS`");
    }
    // `IMAGE -- CMD`: the `--` reaches us among the image's words.
    let rest = rest.strip_prefix(&["--".to_string()][..]).unwrap_or(rest);
    let cmd: Vec<String> = if rest.is_empty() { args.command.clone() } else { rest.to_vec() };
    let root = args.root.clone().unwrap_or_else(default_root);
    let store = Store::open(&root)?;
    let image = store.resolve(image_name)?;
    let argv = run::command(&image, None, &cmd)?;
    let mut env = run::environment(&image);
    for e in &args.env {
        let (k, v) = config::parse_env(e)?;
        env.retain(|(ek, _)| *ek != k);
        env.push((k, v));
    }
    let workdir = args
        .workdir
        .as_ref()
        .map(|w| w.display().to_string())
        .or_else(|| run::workdir(&image))
        .unwrap_or_else(|| "/".into());
    let user = args.user.clone().or_else(|| run::user(&image));
    if let Some(u) = &user {
        User::parse(u).with_context(|| format!("the user {u:?}: virtlab takes numeric users"))?;
    }
    let namespaces = Namespaces::parse(&args.ns)?;
    if !namespaces.mnt {
        bail!("an image's layers are stacked inside the container's mount namespace: keep `mnt` in --ns");
    }
    if args.hostname.is_some() && !namespaces.uts {
        return Err(config::ConfigError::NeedsNamespace { what: "--hostname", ns: "uts" }.into());
    }
    let defences = super::container::defences(args)?;
    let seccomp_profile = match &defences.seccomp {
        SeccompChoice::Profile { text, .. } => Some(text.clone()),
        _ => None,
    };
    // Checked and compiled now, so that a bad profile is refused before
    // anything is made.
    defences.check(namespaces)?;
    defences.compile()?;
    let spec = RunSpec {
        image: image_name.clone(),
        image_id: image.id.clone(),
        argv,
        env,
        workdir,
        user,
        hostname: args.hostname.clone(),
        memory: args.memory.as_deref().map(config::parse_memory).transpose()?,
        cpus: args.cpus.as_deref().map(config::parse_cpus).transpose()?,
        pids: args.pids.as_deref().map(config::parse_pids).transpose()?,
        auto_remove: args.auto_remove,
        namespaces: args.ns.clone(),
        read_only: args.read_only,
        interactive: args.interactive,
        tty: args.tty,
        runtime: args.runtime.clone(),
        security_opt: args.security_opt.clone(),
        seccomp_profile,
        cap_add: args.cap_add.clone(),
        cap_drop: args.cap_drop.clone(),
        privileged: args.privileged,
    };
    if spec.runtime == RUNTIME_VM {
        if let Some(why) = super::run_vm::refused_options(&spec) {
            bail!("{why}: run it with --runtime container");
        }
        if args.json || args.timings || args.explain || args.step || args.timeout.is_some() {
            bail!("--json, --timings, --explain, --step and --timeout go with --runtime container; `virtlab vm run` has its own");
        }
        virtlab_vmm::linux::provision::locate(None).context(
            "--runtime vm boots a Linux guest and there is none: provision one with scripts/guest-kernel.sh (`virtlab guest kernel` says where it looks)",
        )?;
    }
    if spec.tty && !std::io::stdin().is_terminal() {
        bail!("the input device is not a TTY: -t gives the command this terminal, so run it from one (or drop -t)");
    }
    let container = Container::create(&root, args.name.as_deref(), spec)?;
    // The image is the container's from now on, started or not.
    if let Err(e) = store.mark_in_use(&container.dir, Some(&image.id), &image.diff_ids()) {
        let _ = container.remove();
        return Err(e.into());
    }
    record(&root, &container, "create")?;
    Ok(Made { root, container })
}

/// Records a container event with its name and image.
pub fn record(root: &Path, c: &Container, action: &str) -> anyhow::Result<()> {
    let attrs = [("name", c.config.name.as_str()), ("image", c.config.spec.image.as_str())];
    events::record(root, &Event::now("container", action, &c.config.id, &attrs))?;
    Ok(())
}

/// The foreground run: this process is the container's monitor, the
/// output goes to the terminal and to the log.
fn run_foreground(args: &RunArgs, made: &Made) -> anyhow::Result<u8> {
    let spec = &made.container.config.spec;
    if !spec.interactive && !args.step {
        // Docker's run without -i: the command reads nothing.
        stdin_from_dev_null()?;
    }
    if spec.runtime == RUNTIME_VM {
        let code = super::run_vm::supervise(&made.root, &made.container, true)?;
        return Ok(u8::try_from(code).unwrap_or(EXIT_TOOL_ERROR));
    }
    let mut used = None;
    let result = monitor::supervise(&made.root, &made.container, |cfg| {
        set_run_options(args, cfg);
        explain_start(cfg);
        used = Some(cfg.clone());
    });
    match (result, used) {
        (Ok(r), Some(cfg)) => report(args, &cfg, r, Some(&spec.image)),
        (Ok(_), None) => bail!("the container ran without a configuration"),
        (Err(e), _) => {
            let e = anyhow::Error::new(e);
            if args.json {
                json_error(&e, EXIT_TOOL_ERROR);
            }
            Err(e)
        }
    }
}

fn stdin_from_dev_null() -> anyhow::Result<()> {
    let null = std::fs::File::open("/dev/null").context("cannot open /dev/null")?;
    nix::unistd::dup2(null.as_raw_fd(), 0).context("cannot point standard input at /dev/null")?;
    Ok(())
}

/// `run -d`: a monitor of its own, then the container's ID once it runs.
fn start_detached(made: &Made) -> anyhow::Result<u8> {
    match start_monitor(&made.root, &made.container, None)? {
        Started::Up => {
            println!("{}", made.container.config.id);
            Ok(0)
        }
        Started::Failed(code) => Ok(code),
    }
}

/// How a container's start went.
pub enum Started {
    /// Its command runs.
    Up,
    /// It ended before that (the reason printed), with this status.
    Failed(u8),
}

/// Starts `c`'s monitor in a session of its own and waits (at most 30 s)
/// until the container's command runs or the container has ended. The
/// container's `lock`, if held, is let go once the monitor has claimed the
/// container (its `monitor.pid`), so no other command starts it twice.
pub fn start_monitor(root: &Path, c: &Container, mut lock: Option<Flock<File>>) -> anyhow::Result<Started> {
    let exe = std::env::current_exe().context("cannot find the virtlab binary to run the monitor")?;
    let mut cmd = Command::new(exe);
    cmd.args(["container", "monitor", "--root"]).arg(root).arg(&c.config.id);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid(2) is async-signal-safe; between fork and exec the
    // child calls nothing else.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
    }
    let mut child = cmd.spawn().context("cannot start the container's monitor")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if lock.is_some() && c.monitor().is_some() {
            lock = None;
        }
        if c.pid().is_some() {
            // The monitor is the session's own; it is reaped by init once
            // this command exits.
            return Ok(Started::Up);
        }
        if let Some(e) = c.exit() {
            drop(lock);
            let _ = child.wait();
            let why = e.error.unwrap_or_else(|| format!("it exited with status {}", e.code));
            eprintln!("virtlab: error: container {} did not start: {why}", c.config.name);
            return Ok(Started::Failed(u8::try_from(e.code).unwrap_or(EXIT_TOOL_ERROR)));
        }
        if let Ok(Some(status)) = child.try_wait() {
            if c.pid().is_none() && c.exit().is_none() {
                bail!(
                    "the container's monitor ended ({status}) before the container started; see `virtlab logs {}`",
                    c.config.name
                );
            }
        }
        if Instant::now() > deadline {
            bail!("container {} did not start within 30 s; see `virtlab logs {}`", c.config.name, c.config.name);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}
