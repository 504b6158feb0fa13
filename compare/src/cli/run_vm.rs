//! `run --runtime vm IMAGE CMD...`: the same container record, monitor,
//! log and events as any container, but what runs the command is a Linux
//! guest of virtlab's VMM, with the image as its root file system. What no
//! container engine shows side by side: one image, two kinds of isolation.
//!
//! The monitor (this process) stacks the image's layers with overlayfs as
//! a detached mount (never attached anywhere on the host), and starts
//! `virtlab vm run --rootfs /proc/MONITOR/fd/N`: the VMM packs that tree
//! into the guest's initramfs and boots the guest kernel, whose init runs
//! the command. The VMM process is the container's process: `stop` sends
//! it SIGTERM, and its exit status (the guest command's) is the
//! container's. The guest writes into its own RAM (the initramfs), so
//! nothing it changes reaches the container's writable layer.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use virtlab_container::engine::{monitor, Container};
use virtlab_container::image::{run, Store};
use virtlab_container::runtime::log::{LogWriter, Stream};

/// What `--runtime vm` cannot do (yet), checked before a container is
/// made: the option and why.
pub fn refused_options(spec: &virtlab_container::engine::RunSpec) -> Option<String> {
    let why = |what: &str| Some(format!("{what} does not apply to --runtime vm"));
    if spec.user.as_deref().is_some_and(|u| u != "0" && u != "0:0") {
        return why("a user (-u, or the image's USER): the guest runs the command as its root, so");
    }
    if spec.cpus.is_some() || spec.pids.is_some() {
        return why("--cpus and --pids (cgroup limits of a container; the VM has one vCPU and its own kernel)");
    }
    if spec.hostname.is_some() || spec.read_only || spec.namespaces != "all" {
        return why("--hostname, --read-only and --ns (a guest has its own kernel, so all of its namespaces)");
    }
    if spec.tty {
        return why("-t (the guest's console is not a terminal of the host)");
    }
    if spec.privileged || !spec.security_opt.is_empty() || !spec.cap_add.is_empty() || !spec.cap_drop.is_empty() {
        return why("--privileged, --security-opt, --cap-add and --cap-drop (a guest's defences are its own kernel's)");
    }
    None
}

/// The detached monitor of a VM container: standard streams to
/// /dev/null, the guest's console to the log.
pub fn monitor(root: &Path, c: &Container) -> anyhow::Result<u8> {
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    for fd in 0..=2 {
        nix::unistd::dup2(null.as_raw_fd(), fd).context("cannot redirect the standard streams")?;
    }
    let code = supervise(root, c, false)?;
    Ok(u8::try_from(code).unwrap_or(1))
}

/// Runs VM container `c` to its end with this process as its monitor;
/// `attached`: its console also goes to this process's standard output
/// (a run in the foreground). Returns the exit status.
pub fn supervise(root: &Path, c: &Container, attached: bool) -> anyhow::Result<i32> {
    c.claim_monitor()?;
    let result = boot(root, c, attached);
    let (code, error) = match &result {
        Ok(code) => (*code, None),
        Err(e) => {
            monitor::log_error(c, &format!("{e:#}"));
            (i32::from(super::EXIT_TOOL_ERROR), Some(format!("{e:#}")))
        }
    };
    monitor::finish(root, c, code, None, error)?;
    result
}

/// The VM's run: the image's tree, `virtlab vm run` on it, the console
/// into the log.
fn boot(root: &Path, c: &Container, attached: bool) -> anyhow::Result<i32> {
    let spec = &c.config.spec;
    let store = Store::open(root)?;
    let image = store.resolve(&spec.image_id)?;
    let prepared = run::prepare_in(&store, &image, Some(&spec.workdir), &c.dir)?;
    let tree = virtlab_container::runtime::overlay::mount(&prepared.layers, None)
        .context("cannot stack the image's layers for the guest")?;
    let rootfs = format!("/proc/{}/fd/{}", std::process::id(), tree.as_raw_fd());
    let kernel = virtlab_vmm::linux::provision::locate(None)
        .context("no Linux guest kernel: provision one with scripts/guest-kernel.sh")?
        .path;
    let exe = std::env::current_exe().context("cannot find the virtlab binary to run the VM")?;
    let mut cmd = Command::new(exe);
    // `quiet`: the console carries the command's output, as a
    // container's log does, not the kernel's boot messages.
    cmd.args(["vm", "run", "--kernel"]).arg(&kernel).args([
        "--rootfs",
        &rootfs,
        "--timeout",
        "none",
        "--cmdline",
        "quiet",
    ]);
    if let Some(m) = spec.memory {
        cmd.args(["--mem", &m.to_string()]);
    }
    for (k, v) in &spec.env {
        cmd.arg("-e").arg(format!("{k}={v}"));
    }
    cmd.args(["-w", &spec.workdir, "--"]).args(&spec.argv);
    cmd.stdin(if attached && spec.interactive { Stdio::inherit() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().context("cannot start the VMM")?;
    monitor::started(root, c, child.id() as i32)?;
    let log = Arc::new(Mutex::new(LogWriter::open(&c.log_path()).context("cannot open the container's log")?));
    let pumps: Vec<_> = [
        (child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>), Stream::Stdout),
        (child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>), Stream::Stderr),
    ]
    .into_iter()
    .filter_map(|(pipe, stream)| pipe.map(|p| (p, stream)))
    .map(|(pipe, stream)| {
        let log = log.clone();
        std::thread::spawn(move || pump(pipe, stream, &log, attached))
    })
    .collect();
    let status = child.wait().context("cannot wait for the VMM")?;
    for p in pumps {
        let _ = p.join();
    }
    if let Ok(mut log) = log.lock() {
        let _ = log.finish();
    }
    drop(tree);
    drop(prepared);
    use std::os::unix::process::ExitStatusExt;
    Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// Copies one of the VMM's streams into the log (and, attached, to this
/// process's own stream) until it ends.
fn pump(mut pipe: Box<dyn Read + Send>, stream: Stream, log: &Mutex<LogWriter>, attached: bool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Ok(mut log) = log.lock() {
            let _ = log.write(stream, &buf[..n]);
        }
        if attached {
            let _ = match stream {
                Stream::Stdout => std::io::stdout().write_all(&buf[..n]).and_then(|()| std::io::stdout().flush()),
                Stream::Stderr => std::io::stderr().write_all(&buf[..n]),
            };
        }
    }
}
