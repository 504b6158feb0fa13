//! `virtlab container exec` and its short form `virtlab exec`: a command in
//! a running container, as `docker exec` runs one. The work is the
//! engine's (`virtlab_container::engine::exec`); this is the command line,
//! the wait, the exit status, and `-d`.
//!
//! `-d` leaves the command to a copy of virtlab in a session of its own
//! (like `run -d`'s monitor), which starts it, says on a pipe whether it
//! started, then waits for it and records its `exec_die`; the command
//! line prints nothing and exits 0 once it runs, or with the error.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Command, Stdio};

use anyhow::Context;
use clap::Args;
use virtlab_container::config;
use virtlab_container::engine::exec::{self, ExecSpec};
use virtlab_container::engine::EngineError;

use super::lifecycle::RootArg;

const EXAMPLES: &str = "\
Exit status: the command's, or 128+signal if it was killed; 1 if the
container does not exist or is not running, or -t was given without a
terminal; 125 virtlab itself failed; 126 the command cannot be executed;
127 it was not found (looked up in the container's PATH, inside it).

Examples:
  virtlab run -d --name web busybox sleep 600
  virtlab exec web ps                      # the container's processes, from PID 1
  virtlab exec web sh -c 'echo $$; hostname'
  virtlab exec -e GREETING=hi -w /tmp -u 1000 web sh -c 'echo $GREETING; pwd; id'
  echo hello | virtlab exec -i web cat
  virtlab exec -it web sh                  # a shell inside, on this terminal
  virtlab exec -d web sleep 30             # in the background
  virtlab system events --filter container=web";

/// `exec`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ExecArgs {
    #[command(flatten)]
    root: RootArg,
    /// Give the command this standard input (without it: /dev/null)
    #[arg(short, long)]
    interactive: bool,
    /// Give the command this terminal (standard input must be one)
    #[arg(short, long)]
    tty: bool,
    /// Set an environment variable, on top of the container's (repeatable)
    #[arg(short, long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Working directory inside the container [default: the container's]
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<String>,
    /// Run as this numeric user (and group) [default: the container's user, else root]
    #[arg(short, long, value_name = "UID[:GID]")]
    user: Option<String>,
    /// Leave the command running in the background; print nothing
    #[arg(short, long, conflicts_with_all = ["interactive", "tty"])]
    detach: bool,
    /// The pipe a background exec reports its start on (set by `exec -d`)
    #[arg(long, hide = true, value_name = "FD")]
    report_fd: Option<RawFd>,
    /// The container: a name, an ID or an ID prefix
    #[arg(value_name = "CONTAINER")]
    container: String,
    /// The command and its arguments
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Runs `exec`; returns the exit status.
pub fn run(args: &ExecArgs) -> anyhow::Result<u8> {
    let mut spec = ExecSpec {
        argv: args.command.clone(),
        env: Vec::new(),
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        interactive: args.interactive,
        tty: args.tty,
    };
    for e in &args.env {
        spec.env.push(config::parse_env(e)?);
    }
    if args.detach {
        return detach(args);
    }
    // SAFETY: the fd was handed to this process by `exec -d` (its parent),
    // open and owned by nothing else here; it is taken once.
    let report = args.report_fd.map(|fd| std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
    if let Some(r) = &report {
        nix::fcntl::fcntl(r.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
    }
    let started = exec::start(&args.root.path(), &args.container, &spec);
    if let Some(mut r) = report {
        // One line for `exec -d`: 0, or the exit status and the message.
        let text = match &started {
            Ok(_) => "0\n".to_string(),
            Err(e) => format!("{}\n{}", exec::exit_code(e), error_text(e)),
        };
        let _ = r.write_all(text.as_bytes());
    }
    let running = match started {
        Ok(x) => x,
        Err(e) => {
            eprint!("{}", error_text(&e));
            return Ok(exec::exit_code(&e));
        }
    };
    // Ctrl-C and Ctrl-\ on a terminal reach the command too (it is in this
    // process group): this process waits to pass on how it ended.
    // SAFETY: signal(2) with SIG_IGN installs no handler.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
    Ok(running.wait()?)
}

/// `exec -d`: this command line again, without `-d`, in a session of its
/// own with no terminal and /dev/null as every stream, reporting its start
/// on a pipe.
fn detach(args: &ExecArgs) -> anyhow::Result<u8> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe2")?;
    let exe = std::env::current_exe().context("cannot find the virtlab binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("exec").arg("--root").arg(args.root.path()).arg("--report-fd").arg(w.as_raw_fd().to_string());
    for e in &args.env {
        cmd.args(["--env", e]);
    }
    if let Some(d) = &args.workdir {
        cmd.args(["--workdir", d]);
    }
    if let Some(u) = &args.user {
        cmd.args(["--user", u]);
    }
    cmd.arg(&args.container).args(&args.command);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let w_raw = w.as_raw_fd();
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid(2) and fcntl(2) are async-signal-safe; between fork
    // and exec the child calls nothing else. The pipe's write end stays
    // open across exec for the background exec to report on.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid()?;
            nix::fcntl::fcntl(w_raw, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))?;
            Ok(())
        });
    }
    cmd.spawn().context("cannot start the background exec")?;
    drop(w);
    let mut text = String::new();
    std::fs::File::from(r).read_to_string(&mut text).context("cannot read the background exec's report")?;
    match text.split_once('\n') {
        Some(("0", _)) => Ok(0),
        Some((code, message)) => {
            eprint!("{message}");
            Ok(code.parse().unwrap_or(super::EXIT_TOOL_ERROR))
        }
        None => anyhow::bail!("the background exec ended before it could say whether the command started"),
    }
}

/// An error and its causes, as every virtlab command prints them.
fn error_text(e: &EngineError) -> String {
    let mut text = format!("virtlab: error: {e}\n");
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!("  caused by: {c}\n"));
        cause = c.source();
    }
    text
}
