//! Containers with a life of their own: `container run -d` and `ps`,
//! `logs`, `stop`, `kill`, `rm`, `wait`, `system events`, with Docker's
//! names, columns and exit statuses (1 for a command about containers that
//! failed, 125 for a container that could not be made).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;
use virtlab_container::engine::events::{self, Event, Filter};
use virtlab_container::engine::{Container, RunSpec, Status};
use virtlab_container::image::{default_root, inspect::created_ago, template, time};

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
}

/// `logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    root: RootArg,
    /// Keep printing what the container writes until it exits
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
    #[arg(value_name = "CONTAINER")]
    container: String,
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

/// `system events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    root: RootArg,
    /// Only events at or after this time: RFC 3339, or a duration ago (10m, 2h)
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only events at or before this time (as --since); without it, the
    /// log is printed as it stands (no streaming yet)
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// type=container|image, event=start|die|..., container=NAME (repeatable)
    #[arg(long = "filter", short = 'f', value_name = "KEY=VALUE")]
    filters: Vec<String>,
    /// `json` or a Go template over each event, e.g. '{{json .}}'
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
}

/// What `container run -d` was asked, beyond the run itself.
#[derive(Debug)]
pub struct Detach {
    pub root: PathBuf,
    pub name: Option<String>,
}

/// A command about containers that failed exits 1, as Docker's do.
pub fn exit1(result: anyhow::Result<u8>) -> anyhow::Result<u8> {
    result.or_else(|e| Ok(failed(&e, 1)))
}

/// Prints an error as every virtlab command does, and gives `code`.
fn failed(e: &anyhow::Error, code: u8) -> u8 {
    eprintln!("virtlab: error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    code
}

/// Starts `spec` as a detached container: its directory, then its monitor,
/// then, once the command runs (or could not), its ID on standard output.
pub fn run_detached(d: &Detach, spec: RunSpec) -> anyhow::Result<u8> {
    let c = Container::create(&d.root, d.name.as_deref(), spec)?;
    let attrs = [("name", c.config.name.as_str()), ("image", c.config.spec.image.as_str())];
    events::record(&d.root, &Event::now("container", "create", &c.config.id, &attrs))?;
    let exe = std::env::current_exe().context("cannot find the virtlab binary to run the monitor")?;
    let mut cmd = Command::new(exe);
    cmd.args(["container", "monitor", "--root"]).arg(&d.root).arg(&c.config.id);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid(2) is async-signal-safe; between fork and exec the
    // child calls nothing else.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
    }
    let mut child = cmd.spawn().context("cannot start the container's monitor")?;
    // Up, or ended before it got there (a bad command): at most 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if c.pid().is_some() {
            break;
        }
        if let Some(e) = c.exit() {
            let _ = child.wait();
            let why = e.error.unwrap_or_else(|| format!("it exited with status {}", e.code));
            eprintln!("virtlab: error: container {} did not start: {why}", c.config.name);
            return Ok(u8::try_from(e.code).unwrap_or(125));
        }
        if let Ok(Some(status)) = child.try_wait() {
            if c.pid().is_none() && c.exit().is_none() {
                bail!(
                    "the container's monitor ended ({status}) before the container started; see {}",
                    c.log_path().display()
                );
            }
        }
        if Instant::now() > deadline {
            bail!("container {} did not start within 30 s; see {}", c.config.name, c.log_path().display());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("{}", c.config.id);
    Ok(0)
}

/// `container monitor ID`: what `run -d` starts in the background.
pub fn monitor(root: &RootArg, id: &str) -> anyhow::Result<u8> {
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
    let all = Container::list(&args.root.path())?;
    let shown: Vec<&Container> = all.iter().filter(|c| args.all || matches!(c.status(), Status::Up { .. })).collect();
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

/// `logs`.
pub fn logs(args: &LogsArgs) -> anyhow::Result<u8> {
    let c = Container::find(&args.root.path(), &args.container)?;
    let mut file = std::fs::File::open(c.log_path()).with_context(|| format!("no log for {}", args.container))?;
    let mut text = String::new();
    file.read_to_string(&mut text).context("cannot read the log")?;
    let lines: Vec<&str> = text.lines().collect();
    let from = args.tail.map_or(0, |n| lines.len().saturating_sub(n));
    let mut out = std::io::stdout().lock();
    for l in &lines[from..] {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    if args.follow {
        let mut pos = file.stream_position()?;
        loop {
            let ended = c.exit().is_some() || matches!(c.status(), Status::Dead);
            let mut more = Vec::new();
            file.seek(SeekFrom::Start(pos))?;
            file.read_to_end(&mut more)?;
            pos += more.len() as u64;
            out.write_all(&more)?;
            out.flush()?;
            if ended {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(0)
}

/// Waits up to `limit` for `c` to end.
fn wait_for_exit(c: &Container, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if c.exit().is_some() || matches!(c.status(), Status::Dead) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) -> anyhow::Result<()> {
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
        if let Status::Up { pid, .. } = c.status() {
            signal(pid, nix::sys::signal::Signal::SIGTERM)?;
            if !wait_for_exit(c, Duration::from_secs(args.time)) {
                signal(pid, nix::sys::signal::Signal::SIGKILL)?;
                if !wait_for_exit(c, Duration::from_secs(10)) {
                    bail!("container {n} did not stop after SIGKILL");
                }
            }
        }
        println!("{n}");
        Ok(())
    }))
}

fn parse_signal(text: &str) -> anyhow::Result<nix::sys::signal::Signal> {
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
            Status::Up { pid, .. } => signal(pid, sig)?,
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
            signal(pid, nix::sys::signal::Signal::SIGKILL)?;
            if !wait_for_exit(c, Duration::from_secs(10)) {
                bail!("container {n} did not stop after SIGKILL");
            }
        }
        c.remove()?;
        let attrs = [("name", c.config.name.as_str()), ("image", c.config.spec.image.as_str())];
        events::record(&root, &Event::now("container", "destroy", &c.config.id, &attrs))?;
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

/// A time for --since/--until: RFC 3339, or a duration ago (`10m`).
fn when(text: &str) -> anyhow::Result<u128> {
    if let Some(t) = time::parse_rfc3339(text) {
        return Ok(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos());
    }
    let ago = virtlab_container::config::parse_duration(text).map_err(|_| {
        anyhow::anyhow!("{text:?} is not a time: give RFC 3339 (2026-11-29T10:00:00Z) or a duration ago (10m, 2h)")
    })?;
    Ok(SystemTime::now()
        .checked_sub(ago)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos())
}

/// `system events`.
pub fn events(args: &EventsArgs) -> anyhow::Result<u8> {
    let mut filter = Filter::default();
    let parsed = (|| -> anyhow::Result<()> {
        for f in &args.filters {
            filter.add(f)?;
        }
        filter.since = args.since.as_deref().map(when).transpose()?;
        filter.until = args.until.as_deref().map(when).transpose()?;
        if let Some(t) = args.format.as_deref().filter(|f| *f != "json") {
            template::check(t)?;
        }
        Ok(())
    })();
    if let Err(e) = parsed {
        return Ok(failed(&e, 1));
    }
    for e in events::read(&args.root.path(), &filter)? {
        let v = serde_json::to_value(&e)?;
        match args.format.as_deref() {
            Some("json") => println!("{v}"),
            Some(t) => println!("{}", template::render(t, &v)?),
            None => println!("{}", event_line(&e)),
        }
    }
    Ok(0)
}

/// Docker's default event line: time, type, action, ID, (attributes).
fn event_line(e: &Event) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(u64::try_from(e.time_nano).unwrap_or(u64::MAX));
    let attrs: Vec<String> = e.actor.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{} {} {} {} ({})", time::rfc3339(t), e.kind, e.action, e.actor.id, attrs.join(", "))
}

/// `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    root: RootArg,
    /// A Go template over each object's JSON, e.g. '{{.State.Status}}'
    #[arg(short, long, value_name = "FORMAT")]
    format: Option<String>,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// A container's JSON, with Docker's field names for what it has.
fn container_json(c: &Container) -> serde_json::Value {
    let status = c.status();
    let exit = c.exit();
    let started = std::fs::metadata(c.dir.join("pid")).and_then(|m| m.modified()).ok().map(time::rfc3339);
    let spec = &c.config.spec;
    json!({
        "Id": c.config.id,
        "Name": format!("/{}", c.config.name),
        "Created": c.config.created,
        "Path": spec.argv.first(),
        "Args": spec.argv.get(1..).unwrap_or_default(),
        "State": {
            "Status": status.word(),
            "Running": matches!(status, Status::Up { .. }),
            "Dead": matches!(status, Status::Dead),
            "OOMKilled": exit.as_ref().is_some_and(|e| e.oom_killed),
            "Pid": match status { Status::Up { pid, .. } => pid, _ => 0 },
            "ExitCode": exit.as_ref().map_or(0, |e| e.code),
            "Error": exit.as_ref().and_then(|e| e.error.clone()).unwrap_or_default(),
            "StartedAt": started,
            "FinishedAt": exit.as_ref().map(|e| e.finished.clone()),
        },
        "Image": format!("sha256:{}", spec.image_id),
        "LogPath": c.log_path(),
        "Config": {
            "Image": spec.image,
            "Cmd": spec.argv,
            "Env": spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "WorkingDir": spec.workdir,
            "User": spec.user.clone().unwrap_or_default(),
            "Hostname": spec.hostname.clone().unwrap_or_else(|| "virtlab".into()),
        },
        "HostConfig": {
            "Memory": spec.memory.unwrap_or(0),
            "NanoCpus": spec.cpus.map_or(0, |c| (c * 1e9) as u64),
            "PidsLimit": spec.pids,
            "AutoRemove": spec.auto_remove,
        },
        "Driver": "overlay",
        "Runtime": "virtlab",
    })
}

/// `inspect CONTAINER...`: a JSON array, or `--format` per container.
pub fn inspect(args: &InspectArgs) -> anyhow::Result<u8> {
    if let Some(t) = &args.format {
        template::check(t)?;
    }
    let mut docs = Vec::new();
    let mut status = 0;
    for n in &args.containers {
        match Container::find(&args.root.path(), n) {
            Ok(c) => docs.push(container_json(&c)),
            Err(e) => status = failed(&e.into(), 1),
        }
    }
    match &args.format {
        Some(t) => {
            for d in &docs {
                println!("{}", template::render(t, d)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&docs)?),
    }
    Ok(status)
}

/// `system info`: where things are and what this host can do.
pub fn info(root: &RootArg) -> anyhow::Result<u8> {
    let root = root.path();
    let containers = Container::list(&root)?;
    let running = containers.iter().filter(|c| matches!(c.status(), Status::Up { .. })).count();
    let images = virtlab_container::image::Store::open(&root).and_then(|s| s.images()).map(|i| i.len()).unwrap_or(0);
    let cgroup = virtlab_container::cgroup::detect(Path::new("/sys/fs/cgroup"));
    let host = virtlab_compare::host::HostInfo::probe(false);
    let namespaces: Vec<&str> = ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"]
        .into_iter()
        .filter(|n| Path::new("/proc/self/ns").join(n).exists())
        .collect();
    println!("Containers: {}", containers.len());
    println!(" Running: {running}");
    println!(" Stopped: {}", containers.len() - running);
    println!("Images: {images}");
    println!("Storage Driver: overlay (each layer idmapped; detached mounts)");
    println!("Root Dir: {}", root.display());
    match cgroup {
        Ok(m) => println!(
            "Cgroup Driver: cgroupfs\nCgroup Version: {}",
            if m.is_v1() { format!("1 ({m:?})") } else { "2".into() }
        ),
        Err(e) => println!("Cgroup Driver: none ({e})"),
    }
    println!("Namespaces: {}", namespaces.join(" "));
    println!("Security Options: seccomp (virtlab default), user namespaces (root maps to an unprivileged host range)");
    println!("Kernel Version: {}", host.kernel);
    println!("CPUs: {}", host.cpus);
    println!("Total Memory: {} MiB", host.memory_mib);
    println!(
        "KVM: {}",
        match &host.kvm {
            Ok(()) => "available (`virtlab compare` measures whether it is nested)".to_string(),
            Err(e) => format!("not usable: {e}"),
        }
    );
    Ok(0)
}
