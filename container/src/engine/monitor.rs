//! The monitor: one process per detached container, outliving the command
//! line that started it. It runs the launcher with the container's output
//! going to its log file, notes when the command runs (the launcher's pid
//! file), records how it ended, writes the events, and removes the
//! container if it was started with `--rm`.

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
use crate::runtime::config::{ContainerConfig, Stdio, User};

/// Runs container `id` of the store at `root` to its end, in this process.
/// Standard input becomes /dev/null and standard output and error the
/// container's log. Returns the container's exit status.
pub fn run(root: &Path, id: &str) -> Result<i32, EngineError> {
    let c = Container::find(root, id)?;
    write_pid(&c.dir.join("monitor.pid"), std::process::id())?;
    redirect_to_log(&c.log_path())?;
    let result = launch(root, &c);
    let record = match &result {
        Ok(o) => ExitRecord { code: i32::from(o.exit_code()), finished: now(), oom_killed: o.oom_killed, error: None },
        Err((code, e)) => ExitRecord { code: *code, finished: now(), oom_killed: false, error: Some(e.clone()) },
    };
    if let Err((_, e)) = &result {
        eprintln!("virtlab: {e}");
    }
    write_json(&c.dir.join("exit.json"), &record)?;
    let name = c.config.name.clone();
    let code = record.code.to_string();
    let attrs = [("name", name.as_str()), ("image", c.config.spec.image.as_str()), ("exitCode", code.as_str())];
    events::record(root, &Event::now("container", "die", &c.config.id, &attrs))?;
    if c.config.spec.auto_remove {
        c.remove()?;
        events::record(root, &Event::now("container", "destroy", &c.config.id, &attrs[..2]))?;
    }
    Ok(record.code)
}

fn now() -> String {
    time::rfc3339(std::time::SystemTime::now())
}

fn write_pid(path: &Path, pid: u32) -> Result<(), EngineError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{pid}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(io_err(format!("write {}", path.display())))
}

/// Standard input from /dev/null, standard output and error to `log`.
fn redirect_to_log(log: &Path) -> Result<(), EngineError> {
    let out =
        OpenOptions::new().create(true).append(true).open(log).map_err(io_err(format!("open {}", log.display())))?;
    let null = std::fs::File::open("/dev/null").map_err(io_err("open /dev/null"))?;
    for (from, to) in [(null.as_raw_fd(), 0), (out.as_raw_fd(), 1), (out.as_raw_fd(), 2)] {
        nix::unistd::dup2(from, to).map_err(|e| io_err("redirect standard streams to the log")(e.into()))?;
    }
    Ok(())
}

/// The launcher's run of `c`, with a thread that records `start` once the
/// command runs. An error comes with the exit status `run` would give it.
fn launch(root: &Path, c: &Container) -> Result<crate::Outcome, (i32, String)> {
    let spec = &c.config.spec;
    let store = Store::open(root).map_err(|e| (125, e.to_string()))?;
    let image = store.resolve(&spec.image_id).map_err(|e| (125, e.to_string()))?;
    let prepared = run::prepare_in(&store, &image, Some(&spec.workdir), &c.dir).map_err(|e| (125, e.to_string()))?;
    let mut cfg = ContainerConfig::new(&prepared.mount_point, spec.argv.clone());
    cfg.layers = Some(prepared.layers.clone());
    cfg.env = spec.env.clone();
    cfg.workdir = PathBuf::from(&spec.workdir);
    if let Some(u) = &spec.user {
        cfg.user = Some(User::parse(u).map_err(|e| (125, e.to_string()))?);
    }
    if let Some(h) = &spec.hostname {
        cfg.hostname = h.clone();
    }
    cfg.limits.memory = spec.memory;
    cfg.limits.cpus = spec.cpus;
    cfg.limits.pids = spec.pids;
    cfg.stdio = Stdio::Inherit;
    cfg.forward_signals = true;
    cfg.pid_file = Some(c.dir.join("pid"));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (done, root, c) = (done.clone(), root.to_path_buf(), c.clone());
        std::thread::spawn(move || {
            let pid_file = c.dir.join("pid");
            loop {
                // Looked at once more after the run ended, so a command
                // that ran and exited at once still has its start.
                let finished = done.load(Ordering::Acquire);
                if pid_file.exists() {
                    let attrs = [("name", c.config.name.as_str()), ("image", c.config.spec.image.as_str())];
                    let _ = events::record(&root, &Event::now("container", "start", &c.config.id, &attrs));
                    return;
                }
                if finished {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let result = crate::runtime::launch::run(&cfg).map_err(|e| (i32::from(e.exit_code()), e.to_string()));
    done.store(true, Ordering::Release);
    let _ = watcher.join();
    result
}
