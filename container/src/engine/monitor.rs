//! The monitor: one process per running container. For a detached one it
//! is a process of its own, outliving the command line that started it;
//! for a run in the foreground it is the command line itself. It runs the
//! launcher with the container's output going to its log file, notes when
//! the command runs (the launcher's pid file), records how it ended,
//! writes the events, and removes the container if it was made with
//! `--rm`.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::container::{write_json, Container, ExitRecord};
use super::events::{self, Event};
use super::{io_err, EngineError};
use crate::image::{run, time, Store};
use crate::runtime::config::{ContainerConfig, Namespaces, Stdio, User};
use crate::runtime::launch::LaunchError;
use crate::runtime::log::{LogWriter, Stream};

/// Runs container `id` of the store at `root` to its end, in this process,
/// as a detached container's monitor: standard input, output and error
/// become /dev/null, the container's output goes to its log (and so does
/// the reason it could not start, if it could not). Returns the
/// container's exit status.
pub fn run(root: &Path, id: &str) -> Result<i32, EngineError> {
    let c = Container::find(root, id)?;
    to_dev_null()?;
    let code = match supervise(root, &c, |_| {}) {
        Ok(Ok(o)) => return Ok(i32::from(o.exit_code())),
        Ok(Err(e)) => {
            log_error(&c, &e.to_string());
            i32::from(e.exit_code())
        }
        Err(e) => {
            log_error(&c, &e.to_string());
            return Err(e);
        }
    };
    Ok(code)
}

/// Runs container `c` to its end in this process, which is its monitor
/// (a detached container's, or the command line's own for a run in the
/// foreground): records that it runs, starts it with the configuration
/// its `config.json` gives (changed by `adjust`: standard streams,
/// narration, a timeout), records how it ended and the events, and
/// removes it if it was made with `--rm`. The outer error is the engine's
/// (the store, the container's files); the inner one is the launch's.
pub fn supervise(
    root: &Path,
    c: &Container,
    adjust: impl FnOnce(&mut ContainerConfig),
) -> Result<Result<crate::Outcome, LaunchError>, EngineError> {
    c.claim_monitor()?;
    let (prepared, mut cfg) = match config_for(root, c) {
        Ok(p) => p,
        Err(e) => {
            finish(root, c, 125, None, Some(e.to_string()))?;
            return Err(e);
        }
    };
    adjust(&mut cfg);
    let result = launch(root, c, &cfg);
    drop(prepared);
    match &result {
        Ok(o) => finish(root, c, i32::from(o.exit_code()), Some(o.oom_killed), None)?,
        Err(e) => finish(root, c, i32::from(e.exit_code()), None, Some(e.to_string()))?,
    }
    Ok(result)
}

fn now() -> String {
    time::rfc3339(std::time::SystemTime::now())
}

/// Standard input, output and error from and to /dev/null.
fn to_dev_null() -> Result<(), EngineError> {
    let null = OpenOptions::new().read(true).write(true).open("/dev/null").map_err(io_err("open /dev/null"))?;
    for fd in 0..=2 {
        nix::unistd::dup2(null.as_raw_fd(), fd).map_err(|e| io_err("redirect standard streams")(e.into()))?;
    }
    Ok(())
}

/// Why the container did not run, in its log, where `logs` shows it.
pub fn log_error(c: &Container, message: &str) {
    if let Ok(mut log) = LogWriter::open(&c.log_path()) {
        let _ = log.write(Stream::Stderr, format!("virtlab: {message}\n").as_bytes());
    }
}

/// Records that `c`'s command runs as host PID `pid`: the `start` event,
/// then the `pid` file (so whoever sees the container up sees its start
/// too). For a monitor that starts the command itself (a VM's).
pub fn started(root: &Path, c: &Container, pid: i32) -> Result<(), EngineError> {
    let attrs = [("name", c.config.name.as_str()), ("image", c.config.spec.image.as_str())];
    events::record(root, &Event::now("container", "start", &c.config.id, &attrs))?;
    let path = c.dir.join("pid");
    let tmp = c.dir.join("pid.new");
    std::fs::write(&tmp, format!("{pid}\n"))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(io_err(format!("write {}", path.display())))
}

/// Records the end: `exit.json` (under the container's lock), the `die`
/// event, and with `--rm` the container's removal and `destroy`.
pub fn finish(
    root: &Path,
    c: &Container,
    code: i32,
    oom: Option<bool>,
    error: Option<String>,
) -> Result<(), EngineError> {
    let record = ExitRecord { code, finished: now(), oom_killed: oom.unwrap_or(false), error };
    {
        let _lock = c.lock()?;
        write_json(&c.dir.join("exit.json"), &record)?;
    }
    let code = record.code.to_string();
    let attrs =
        [("name", c.config.name.as_str()), ("image", c.config.spec.image.as_str()), ("exitCode", code.as_str())];
    events::record(root, &Event::now("container", "die", &c.config.id, &attrs))?;
    if c.config.spec.auto_remove {
        c.remove()?;
        events::record(root, &Event::now("container", "destroy", &c.config.id, &attrs[..2]))?;
    }
    Ok(())
}

/// The launcher's configuration for `c`: its image's layers stacked in
/// its directory, and what `config.json` asks. The prepared stack is kept
/// until the run is over.
fn config_for(root: &Path, c: &Container) -> Result<(run::Prepared, ContainerConfig), EngineError> {
    let spec = &c.config.spec;
    let store = Store::open(root)?;
    let image = store.resolve(&spec.image_id)?;
    let prepared = run::prepare_in(&store, &image, Some(&spec.workdir), &c.dir)?;
    let mut cfg = ContainerConfig::new(&prepared.mount_point, spec.argv.clone());
    cfg.layers = Some(prepared.layers.clone());
    cfg.namespaces = Namespaces::parse(&spec.namespaces).map_err(|e| EngineError::Launch(e.to_string()))?;
    cfg.env = spec.env.clone();
    cfg.workdir = PathBuf::from(&spec.workdir);
    if let Some(u) = &spec.user {
        cfg.user = Some(User::parse(u).map_err(|e| EngineError::Launch(e.to_string()))?);
    }
    // Docker's: a container is its own short ID by default.
    cfg.hostname = spec.hostname.clone().unwrap_or_else(|| c.short_id().to_string());
    cfg.read_only = spec.read_only;
    cfg.limits.memory = spec.memory;
    cfg.limits.cpus = spec.cpus;
    cfg.limits.pids = spec.pids;
    spec.defences().and_then(|d| d.apply(&mut cfg)).map_err(|e| EngineError::Launch(e.to_string()))?;
    cfg.stdio = Stdio::Inherit;
    cfg.forward_signals = true;
    // The launcher writes `pid.new`; the monitor records `start`, then
    // names it `pid`, so whoever sees the container up sees its start too.
    cfg.pid_file = Some(c.dir.join("pid.new"));
    // With a terminal of its own the command writes to it directly.
    cfg.log = (!spec.tty).then(|| c.log_path());
    Ok((prepared, cfg))
}

/// The launcher's run of `c`, with a thread that records `start` once the
/// command runs, then makes its PID the container's.
fn launch(root: &Path, c: &Container, cfg: &ContainerConfig) -> Result<crate::Outcome, LaunchError> {
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (done, root, c) = (done.clone(), root.to_path_buf(), c.clone());
        // Shielded: a signal meant for the container must not end this
        // process through this thread (see `spawn_shielded`).
        crate::runtime::launch::spawn_shielded(move || {
            let new = c.dir.join("pid.new");
            loop {
                // Looked at once more after the run ended, so a command
                // that ran and exited at once still has its start.
                let finished = done.load(Ordering::Acquire);
                if new.exists() {
                    record_start(&root, &c);
                    let _ = std::fs::rename(&new, c.dir.join("pid"));
                    return true;
                }
                if finished {
                    return false;
                }
                // Often: `run -d` waits for this to say the container is up.
                std::thread::sleep(Duration::from_micros(100));
            }
        })
        .map_err(|source| LaunchError::Sys {
            what: "starting the thread that watches for the container's start",
            hint: ": the system is out of threads or memory; try again",
            source,
        })?
    };
    let result = crate::runtime::launch::run(cfg);
    done.store(true, Ordering::Release);
    let seen = watcher.join().unwrap_or(false);
    // The launcher writes the PID file when it sees the command's execve;
    // a command that ran and ended at once may be reaped first, with no
    // PID file. It ran all the same (a command that never ran is a launch
    // error): its start comes before the `die` the caller records.
    if !seen && result.is_ok() {
        record_start(root, c);
    }
    result
}

/// The `start` event of `c`.
fn record_start(root: &Path, c: &Container) {
    let attrs = [("name", c.config.name.as_str()), ("image", c.config.spec.image.as_str())];
    let _ = events::record(root, &Event::now("container", "start", &c.config.id, &attrs));
}
