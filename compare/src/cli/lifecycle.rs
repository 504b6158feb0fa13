//! Containers with a life of their own: `create`, `start`, `restart`,
//! `ps`, `stop`, `kill`, `rm`, `wait`, with Docker's names, columns and exit
//! statuses (1 for a command about containers that failed, 125 for a
//! container that could not be made). `logs`, `events` and `inspect` have
//! files of their own; `run IMAGE` is in `run_image`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::bail;
use clap::Args;
use serde_json::json;
use virtlab_container::engine::events::{self, Event};
use virtlab_container::engine::{monitor, Container, Status};
use virtlab_container::image::{default_root, inspect::created_ago};

use super::run_image::{record, start_monitor, Started};

use super::image::view::{print_rows, print_table};

/// The store: `--root DIR`, else `VIRTLAB_ROOT`, else /var/lib/virtlab.
#[derive(Debug, Args)]
pub struct RootArg {
    /// Image and container store [default: $VIRTLAB_ROOT, else /var/lib/virtlab]
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

impl RootArg {
    /// A root from a `--root` of another command's.
    pub fn from_path(root: Option<PathBuf>) -> RootArg {
        RootArg { root }
    }

    pub fn path(&self) -> PathBuf {
        self.root.clone().unwrap_or_else(default_root)
    }
}

/// `ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    #[command(flatten)]
    root: RootArg,
    /// Show every container, not only running ones
    #[arg(short, long)]
    all: bool,
    /// Print only container IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show whole IDs and commands
    #[arg(long)]
    no_trunc: bool,
    /// `table` (default), `json`, or a Go template over each row, e.g. '{{.Names}} {{.Status}}'
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// name=TEXT (part of the name), id=PREFIX, status=created|running|exited|dead,
    /// ancestor=IMAGE (repeatable; different keys must all match)
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    filters: Vec<String>,
}

/// `ps --filter`: for each key, the values any of which may match.
#[derive(Debug, Default)]
struct PsFilter(std::collections::BTreeMap<String, Vec<String>>);

impl PsFilter {
    fn parse(filters: &[String]) -> anyhow::Result<PsFilter> {
        let mut f = PsFilter::default();
        for text in filters {
            let Some((k, v)) = text.split_once('=') else {
                bail!("--filter {text:?} is not KEY=VALUE (name=web, status=exited, id=3f2a, ancestor=busybox)");
            };
            if !["name", "id", "status", "ancestor"].contains(&k) {
                bail!("--filter {k}: virtlab's ps filters by name, id, status and ancestor");
            }
            if k == "status" && !["created", "running", "exited", "dead"].contains(&v) {
                bail!("--filter status={v}: a status is created, running, exited or dead");
            }
            f.0.entry(k.to_string()).or_default().push(v.to_string());
        }
        Ok(f)
    }

    fn passes(&self, c: &Container, status: &Status) -> bool {
        self.0.iter().all(|(k, values)| {
            values.iter().any(|v| match k.as_str() {
                "name" => c.config.name.contains(v.as_str()),
                "id" => c.config.id.starts_with(v.as_str()),
                "status" => status.word() == v,
                _ => c.config.spec.image == *v || c.config.spec.image_id.starts_with(v.as_str()),
            })
        })
    }
}

/// `stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    root: RootArg,
    /// Seconds to wait after SIGTERM before SIGKILL
    #[arg(short, long, default_value_t = 10, value_name = "SECS")]
    time: u64,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// `kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    #[command(flatten)]
    root: RootArg,
    /// The signal: a name (KILL, SIGTERM, ...) or a number
    #[arg(short, long, default_value = "KILL", value_name = "SIGNAL")]
    signal: String,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// `rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    #[command(flatten)]
    root: RootArg,
    /// Kill a running container first
    #[arg(short, long)]
    force: bool,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// `wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    #[command(flatten)]
    root: RootArg,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// A command about containers that failed exits 1, as Docker's do.
pub fn exit1(result: anyhow::Result<u8>) -> anyhow::Result<u8> {
    result.or_else(|e| Ok(failed(&e, 1)))
}

/// Prints an error as every virtlab command does, and gives `code`.
pub fn failed(e: &anyhow::Error, code: u8) -> u8 {
    eprintln!("virtlab: error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    code
}

/// `start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    #[command(flatten)]
    root: RootArg,
    /// Attach: print the container's output until it exits, and exit with its status
    #[arg(short, long)]
    attach: bool,
    /// Attach standard input too: the container runs with this command as its
    /// monitor, reading this terminal (with -a)
    #[arg(short, long, requires = "attach")]
    interactive: bool,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// `restart`.
#[derive(Debug, Args)]
pub struct RestartArgs {
    #[command(flatten)]
    root: RootArg,
    /// Seconds to wait after SIGTERM before SIGKILL
    #[arg(short, long, default_value_t = 10, value_name = "SECS")]
    time: u64,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// `create`: a container made, not started; its ID printed.
pub fn create(args: &super::container::RunArgs) -> anyhow::Result<u8> {
    if args.detach {
        bail!("create only makes the container: drop -d (`virtlab start` runs it in the background)");
    }
    let made = super::run_image::make(args)?;
    println!("{}", made.container.config.id);
    Ok(0)
}

/// Starts `c` in the background if it is not running; its status if it
/// could not start.
fn start_one(root: &Path, c: &Container) -> anyhow::Result<Option<u8>> {
    let lock = c.lock()?;
    if c.is_active() {
        // Docker's: starting a running container changes nothing.
        return Ok(None);
    }
    c.reset_for_start()?;
    match start_monitor(root, c, Some(lock))? {
        Started::Up => Ok(None),
        Started::Failed(code) => Ok(Some(code)),
    }
}

/// `start`: each container in the background (`-a`: one, attached).
pub fn start(args: &StartArgs) -> anyhow::Result<u8> {
    let root = args.root.path();
    if args.attach {
        let [name] = args.containers.as_slice() else {
            bail!("-a attaches to one container; start the others without it");
        };
        let c = Container::find(&root, name)?;
        return if args.interactive { start_in_foreground(&root, &c) } else { start_attached(&root, &c) };
    }
    Ok(each_container(&root, &args.containers, |c, n| {
        if let Some(code) = start_one(&root, c)? {
            bail!("container {n} exited with status {code} as it started; see `virtlab logs {n}`");
        }
        println!("{n}");
        Ok(())
    }))
}

/// `start -a`: started in the background, its log followed to its end.
fn start_attached(root: &Path, c: &Container) -> anyhow::Result<u8> {
    let offset = std::fs::metadata(c.log_path()).map_or(0, |m| m.len());
    let _ = start_one(root, c)?;
    let mut offset = offset;
    loop {
        let ended = c.exit().is_some() || matches!(c.status(), Status::Dead);
        let (entries, next) =
            virtlab_container::runtime::log::read_from(&c.log_path(), offset).unwrap_or((Vec::new(), offset));
        offset = next;
        for e in entries {
            if e.is_stderr() {
                eprint!("{}", e.log);
            } else {
                print!("{}", e.log);
            }
        }
        if ended {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(c.exit().map_or(EXIT_UNKNOWN, |e| u8::try_from(e.code).unwrap_or(EXIT_UNKNOWN)))
}

/// The status of a container whose end was not recorded (Docker's -1).
const EXIT_UNKNOWN: u8 = 255;

/// `start -ai`: this command is the monitor, the container reads this
/// terminal.
fn start_in_foreground(root: &Path, c: &Container) -> anyhow::Result<u8> {
    {
        let _lock = c.lock()?;
        if c.is_active() {
            bail!(
                "container {} is already running; `virtlab exec -it {} sh` gives a shell in it",
                c.config.name,
                c.config.name
            );
        }
        c.reset_for_start()?;
        // Claimed before the lock goes: another start sees it active.
        c.claim_monitor()?;
    }
    if c.config.spec.runtime == virtlab_container::engine::container::RUNTIME_VM {
        let code = super::run_vm::supervise(root, c, true)?;
        return Ok(u8::try_from(code).unwrap_or(EXIT_UNKNOWN));
    }
    let result = monitor::supervise(root, c, |cfg| cfg.stdio = virtlab_container::Stdio::Inherit)?;
    Ok(match result {
        Ok(o) => o.exit_code(),
        Err(e) => {
            let code = e.exit_code();
            failed(&e.into(), code)
        }
    })
}

/// `restart`: stopped (if running), then started.
pub fn restart(args: &RestartArgs) -> anyhow::Result<u8> {
    let root = args.root.path();
    Ok(each_container(&root, &args.containers, |c, n| {
        stop_one(c, n, args.time)?;
        if let Some(code) = start_one(&root, c)? {
            bail!("container {n} exited with status {code} as it started; see `virtlab logs {n}`");
        }
        record(&root, c, "restart")?;
        println!("{n}");
        Ok(())
    }))
}

/// `container monitor ID`: what `run -d` starts in the background.
pub fn monitor(root: &RootArg, id: &str) -> anyhow::Result<u8> {
    let c = Container::find(&root.path(), id)?;
    if c.config.spec.runtime == virtlab_container::engine::container::RUNTIME_VM {
        return super::run_vm::monitor(&root.path(), &c);
    }
    let code = virtlab_container::engine::monitor::run(&root.path(), id)?;
    Ok(u8::try_from(code).unwrap_or(1))
}

fn command_text(argv: &[String], no_trunc: bool) -> String {
    let full = argv.join(" ");
    if no_trunc || full.chars().count() <= 20 {
        format!("\"{full}\"")
    } else {
        format!("\"{}…\"", full.chars().take(19).collect::<String>())
    }
}

/// `ps`.
pub fn ps(args: &PsArgs) -> anyhow::Result<u8> {
    let now = SystemTime::now();
    let filter = PsFilter::parse(&args.filters)?;
    let all = Container::list(&args.root.path())?;
    // A status filter looks at every container, as Docker's does.
    let every = args.all || filter.0.contains_key("status");
    let shown: Vec<&Container> = all
        .iter()
        .filter(|c| {
            let status = c.status();
            (every || matches!(status, Status::Up { .. })) && filter.passes(c, &status)
        })
        .collect();
    if args.quiet {
        for c in shown {
            println!("{}", if args.no_trunc { c.config.id.as_str() } else { c.short_id() });
        }
        return Ok(0);
    }
    let rows: Vec<serde_json::Value> = shown
        .iter()
        .map(|c| {
            let status = c.status();
            json!({
                "ID": if args.no_trunc { c.config.id.clone() } else { c.short_id().to_string() },
                "Image": c.config.spec.image, "Command": command_text(&c.config.spec.argv, args.no_trunc),
                "CreatedAt": c.config.created, "RunningFor": created_ago(Some(&c.config.created)),
                "Status": status.describe(now), "State": status.word(), "Ports": "", "Names": c.config.name,
            })
        })
        .collect();
    print_rows(&rows, args.format.as_deref(), || {
        let cells = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or_default().to_string();
        let keys = ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"];
        let table: Vec<Vec<String>> = rows.iter().map(|r| keys.iter().map(|k| cells(r, k)).collect()).collect();
        print_table(&["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], &table);
    })?;
    Ok(0)
}

/// Waits up to `limit` for `c` to end and its monitor to have recorded
/// the end (its `die` event, its removal with `--rm`) and gone.
fn wait_for_exit(c: &Container, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let monitor_gone = !c.monitor_alive();
        if (c.exit().is_some() || !c.dir.exists()) && monitor_gone || matches!(c.status(), Status::Dead) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Sends `sig` to `c`'s first process (PID `pid`), recording the `kill`
/// event Docker records.
fn signal(c: &Container, pid: i32, sig: nix::sys::signal::Signal) -> anyhow::Result<()> {
    let number = (sig as i32).to_string();
    let attrs = [("name", c.config.name.as_str()), ("image", c.config.spec.image.as_str()), ("signal", &number)];
    events::record(c.store_root(), &Event::now("container", "kill", &c.config.id, &attrs))?;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot send {sig} to process {pid}: {e}")),
    }
}

/// Each of `names`, done with `each`; errors print and make the status 1.
fn each_container(root: &Path, names: &[String], mut each: impl FnMut(&Container, &str) -> anyhow::Result<()>) -> u8 {
    let mut status = 0;
    for n in names {
        let r = Container::find(root, n).map_err(anyhow::Error::from).and_then(|c| each(&c, n));
        if let Err(e) = r {
            status = failed(&e, 1);
        }
    }
    status
}

/// `stop`: SIGTERM, then SIGKILL after the grace period, as Docker does.
pub fn stop(args: &StopArgs) -> anyhow::Result<u8> {
    Ok(each_container(&args.root.path(), &args.containers, |c, n| {
        stop_one(c, n, args.time)?;
        println!("{n}");
        Ok(())
    }))
}

/// SIGTERM, `grace` seconds, SIGKILL, until `c` has ended.
fn stop_one(c: &Container, n: &str, grace: u64) -> anyhow::Result<()> {
    if let Status::Up { pid, .. } = c.status() {
        signal(c, pid, nix::sys::signal::Signal::SIGTERM)?;
        if !wait_for_exit(c, Duration::from_secs(grace)) {
            signal(c, pid, nix::sys::signal::Signal::SIGKILL)?;
            if !wait_for_exit(c, Duration::from_secs(10)) {
                bail!("container {n} did not stop after SIGKILL");
            }
        }
        record(c.store_root(), c, "stop")?;
    }
    Ok(())
}

/// A signal by name (`KILL`, `SIGTERM`) or number.
pub(super) fn parse_signal(text: &str) -> anyhow::Result<nix::sys::signal::Signal> {
    use std::str::FromStr;
    if let Ok(n) = text.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).map_err(|_| anyhow::anyhow!("{n} is not a signal number"));
    }
    let name = text.to_ascii_uppercase();
    let name = if name.starts_with("SIG") { name } else { format!("SIG{name}") };
    nix::sys::signal::Signal::from_str(&name)
        .map_err(|_| anyhow::anyhow!("{text:?} is not a signal: use a name such as TERM, KILL, HUP, or a number"))
}

/// `kill`.
pub fn kill(args: &KillArgs) -> anyhow::Result<u8> {
    let sig = match parse_signal(&args.signal) {
        Ok(s) => s,
        Err(e) => return Ok(failed(&e, 1)),
    };
    Ok(each_container(&args.root.path(), &args.containers, |c, n| {
        match c.status() {
            Status::Up { pid, .. } => signal(c, pid, sig)?,
            _ => return Err(virtlab_container::engine::EngineError::NotRunning(n.to_string()).into()),
        }
        println!("{n}");
        Ok(())
    }))
}

/// `rm`.
pub fn rm(args: &RmArgs) -> anyhow::Result<u8> {
    let root = args.root.path();
    Ok(each_container(&root, &args.containers, |c, n| {
        if let Status::Up { pid, .. } = c.status() {
            if !args.force {
                return Err(virtlab_container::engine::EngineError::Running(n.to_string()).into());
            }
            signal(c, pid, nix::sys::signal::Signal::SIGKILL)?;
            if !wait_for_exit(c, Duration::from_secs(10)) {
                bail!("container {n} did not stop after SIGKILL");
            }
        }
        c.remove()?;
        record(&root, c, "destroy")?;
        println!("{n}");
        Ok(())
    }))
}

/// `wait`: blocks until each container ends, prints its exit status.
pub fn wait(args: &WaitArgs) -> anyhow::Result<u8> {
    Ok(each_container(&args.root.path(), &args.containers, |c, _| {
        while !wait_for_exit(c, Duration::from_secs(3600)) {}
        match c.exit() {
            Some(e) => println!("{}", e.code),
            None => println!("-1"),
        }
        Ok(())
    }))
}
