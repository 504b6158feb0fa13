//! Lifecycle hooks (the OCI runtime specification's `hooks`): programs
//! the runtime runs at fixed moments of a container's life, each given the
//! container's state as JSON on its standard input.
//!
//! | kind              | who runs it, where                                   | when                                   |
//! | ----------------- | ---------------------------------------------------- | -------------------------------------- |
//! | `prestart`        | the launcher, host namespaces (deprecated alias of createRuntime) | namespaces and cgroup made, before the set-up |
//! | `createRuntime`   | the launcher, host namespaces                        | the same moment, after `prestart`      |
//! | `createContainer` | the container's process, its namespaces, cwd = rootfs | mounts done, before pivot_root        |
//! | `startContainer`  | the container's process, inside its root             | after `start`, before execve           |
//! | `poststart`       | the runtime (the `start` or `run` call)              | once the program runs                  |
//! | `poststop`        | the runtime (`delete`)                               | once the container is gone             |
//!
//! The launcher runs the first four ([`run_host`] for those in the host's
//! namespaces; the child runs [`ChildHook`]s through
//! [`Sys::run_hook`](crate::runtime::sys::Sys::run_hook), without
//! allocating); the OCI front door runs `poststart` and `poststop`.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{Read, Seek, Write};
use std::os::fd::RawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::runtime::config::ConfigError;
use crate::runtime::sys::ExecArgs;

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum HookKind {
    /// Deprecated: the same moment as `createRuntime`, before it.
    Prestart,
    /// In the runtime's namespaces, the container's just made.
    CreateRuntime,
    /// In the container's namespaces, before pivot_root.
    CreateContainer,
    /// In the container, after `start`, before the program.
    StartContainer,
    /// In the runtime's namespaces, once the program runs.
    Poststart,
    /// In the runtime's namespaces, once the container is deleted.
    Poststop,
}

impl HookKind {
    /// Every kind, in the order they run.
    pub const ALL: [HookKind; 6] = [
        HookKind::Prestart,
        HookKind::CreateRuntime,
        HookKind::CreateContainer,
        HookKind::StartContainer,
        HookKind::Poststart,
        HookKind::Poststop,
    ];

    /// The name in config.json (`createRuntime`).
    pub fn name(self) -> &'static str {
        match self {
            HookKind::Prestart => "prestart",
            HookKind::CreateRuntime => "createRuntime",
            HookKind::CreateContainer => "createContainer",
            HookKind::StartContainer => "startContainer",
            HookKind::Poststart => "poststart",
            HookKind::Poststop => "poststop",
        }
    }

    /// The container's status its hooks are given (runtime-spec
    /// "Lifecycle", as runc gives it).
    pub fn status(self) -> &'static str {
        match self {
            HookKind::Prestart | HookKind::CreateRuntime | HookKind::CreateContainer => "creating",
            HookKind::StartContainer => "created",
            HookKind::Poststart => "running",
            HookKind::Poststop => "stopped",
        }
    }
}

/// One hook of config.json.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hook {
    /// When it runs.
    pub kind: HookKind,
    /// Its place in its kind's list.
    pub index: usize,
    /// The program, absolute.
    pub path: PathBuf,
    /// Its argv, argv\[0\] included; empty means just the path.
    pub args: Vec<String>,
    /// Its whole environment, `KEY=VALUE` each.
    pub env: Vec<String>,
    /// Killed, and failed, after this long.
    pub timeout: Option<Duration>,
}

impl Hook {
    /// `hooks.createRuntime[0]`: the field it came from.
    pub fn field(&self) -> String {
        format!("hooks.{}[{}]", self.kind.name(), self.index)
    }
}

/// The container's state as the hooks get it (runtime-spec "State"), less
/// the status and pid, which depend on the moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HookState {
    /// The specification's version.
    pub oci_version: String,
    /// The container's ID.
    pub id: String,
    /// The bundle, absolute.
    pub bundle: PathBuf,
    /// config.json's annotations.
    pub annotations: BTreeMap<String, String>,
}

impl HookState {
    /// The JSON up to the pid's value: `{"ociVersion":...,"pid":`. The
    /// child adds the pid and `}` without allocating.
    pub fn prefix(&self, status: &str) -> Vec<u8> {
        let s = |v: &str| serde_json::Value::from(v).to_string();
        let annotations = serde_json::to_string(&self.annotations).unwrap_or_else(|_| "{}".into());
        format!(
            "{{\"ociVersion\":{},\"id\":{},\"status\":{},\"bundle\":{},\"annotations\":{},\"pid\":",
            s(&self.oci_version),
            s(&self.id),
            s(status),
            s(&self.bundle.to_string_lossy()),
            annotations
        )
        .into_bytes()
    }

    /// The whole JSON for `status` and `pid`.
    pub fn json(&self, status: &str, pid: i32) -> Vec<u8> {
        let mut v = self.prefix(status);
        v.extend_from_slice(format!("{pid}}}\n").as_bytes());
        v
    }
}

/// Called with each hook the launcher ran, as it ran (a trace).
#[derive(Clone)]
pub struct Observer(pub Arc<ObserverFn>);

/// What an [`Observer`] calls: the hook, and how long it took or how it failed.
pub type ObserverFn = dyn Fn(&Hook, &Result<Duration, HookError>) + Send + Sync;

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

/// A container's hooks and what they are told.
#[derive(Debug, Clone, Default)]
pub struct LifecycleHooks {
    /// Every hook, in config.json's order within each kind.
    pub hooks: Vec<Hook>,
    /// The state they read.
    pub state: HookState,
    /// Told of each hook the launcher runs.
    pub observer: Option<Observer>,
}

impl LifecycleHooks {
    /// The hooks of `kind`, in order.
    pub fn of(&self, kind: HookKind) -> impl Iterator<Item = &Hook> {
        self.hooks.iter().filter(move |h| h.kind == kind)
    }

    /// Runs the hooks of `kinds` in the runtime's namespaces, in order,
    /// with the container at `pid`; stops at the first failure.
    pub fn run_host(&self, kinds: &[HookKind], pid: i32) -> Result<(), HookError> {
        for kind in kinds {
            let state = self.state.json(kind.status(), pid);
            for hook in self.of(*kind) {
                let result = run_host(hook, &state);
                if let Some(o) = &self.observer {
                    (o.0)(hook, &result);
                }
                result?;
            }
        }
        Ok(())
    }
}

/// How a hook failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookFailure {
    /// It exited with this status.
    Exit(i32),
    /// A signal killed it.
    Signal(i32),
    /// It ran past its timeout (seconds, rounded up) and was killed.
    Timeout(u32),
    /// It could not be started (an errno: fork, pipe).
    Start(i32),
}

impl HookFailure {
    /// As one number for the parent/child channel: kind in the top byte.
    pub fn encode(self) -> u32 {
        let (kind, value) = match self {
            HookFailure::Exit(v) => (0u32, v),
            HookFailure::Signal(v) => (1, v),
            HookFailure::Timeout(v) => (2, v as i32),
            HookFailure::Start(v) => (3, v),
        };
        (kind << 24) | (value as u32 & 0x00ff_ffff)
    }

    /// From [`HookFailure::encode`].
    pub fn decode(n: u32) -> HookFailure {
        let value = (n & 0x00ff_ffff) as i32;
        match n >> 24 {
            0 => HookFailure::Exit(value),
            1 => HookFailure::Signal(value),
            2 => HookFailure::Timeout(value as u32),
            _ => HookFailure::Start(value),
        }
    }
}

impl std::fmt::Display for HookFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            HookFailure::Exit(127) => write!(f, "exited with status 127 (not found, or not executable, where it ran)"),
            HookFailure::Exit(c) => write!(f, "exited with status {c}"),
            HookFailure::Signal(s) => write!(f, "was killed by signal {s}"),
            HookFailure::Timeout(t) => write!(f, "ran past its timeout of {t} s and was killed"),
            HookFailure::Start(e) => {
                write!(f, "could not be started ({})", nix::errno::Errno::from_raw(e).desc())
            }
        }
    }
}

/// A hook that failed: which one, how, and what it said on stderr.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{field} ({path}) {failure}{said}", said = if .stderr.is_empty() { String::new() } else { format!(": {}", .stderr) })]
pub struct HookError {
    /// `hooks.createRuntime[0]`.
    pub field: String,
    /// Its program.
    pub path: PathBuf,
    /// How it failed.
    pub failure: HookFailure,
    /// Its standard output and error, trimmed (empty when unknown).
    pub stderr: String,
}

/// Runs `hook` in the caller's namespaces with `state` on its stdin;
/// how long it took.
pub fn run_host(hook: &Hook, state: &[u8]) -> Result<Duration, HookError> {
    let began = Instant::now();
    let fail = |failure, stderr: String| HookError {
        field: hook.field(),
        path: hook.path.clone(),
        failure,
        stderr: stderr.trim().chars().take(2000).collect(),
    };
    let mut cmd = std::process::Command::new(&hook.path);
    if let Some((first, rest)) = hook.args.split_first() {
        cmd.arg0(first).args(rest);
    }
    cmd.env_clear();
    for e in &hook.env {
        let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
        cmd.env(k, v);
    }
    // A process group of its own, for a timeout to end all of it.
    cmd.process_group(0);
    // Its output goes to an anonymous file, read once it exits: a pipe
    // would keep a reader waiting on whatever the hook left running.
    let said =
        output_file().map_err(|e| fail(HookFailure::Start(e.raw_os_error().unwrap_or(libc::EIO)), String::new()))?;
    let clone = || said.try_clone().map(std::process::Stdio::from);
    let (out, err) = clone()
        .and_then(|o| Ok((o, clone()?)))
        .map_err(|e| fail(HookFailure::Start(e.raw_os_error().unwrap_or(libc::EIO)), String::new()))?;
    cmd.stdin(std::process::Stdio::piped()).stdout(out).stderr(err);
    let mut child = cmd.spawn().map_err(|e| {
        let failure = match e.raw_os_error() {
            Some(libc::ENOENT | libc::EACCES | libc::ENOEXEC) => HookFailure::Exit(127),
            other => HookFailure::Start(other.unwrap_or(libc::EIO)),
        };
        fail(failure, e.to_string())
    })?;
    // The state goes in while the hook runs (it may not read it all; the
    // thread ends when the pipe's last reader does).
    if let Some(mut input) = child.stdin.take() {
        let state = state.to_vec();
        std::thread::spawn(move || {
            let _ = input.write_all(&state);
        });
    }
    let waited = |e: std::io::Error| fail(HookFailure::Start(e.raw_os_error().unwrap_or(libc::EIO)), String::new());
    // Without a timeout a plain wait; with one, a poll that starts short
    // (most hooks are quick) and backs off to 10 ms.
    let status = match hook.timeout {
        None => Some(child.wait().map_err(waited)?),
        Some(t) => {
            let (deadline, mut pause) = (began + t, Duration::from_micros(100));
            loop {
                if let Some(status) = child.try_wait().map_err(waited)? {
                    break Some(status);
                }
                if Instant::now() >= deadline {
                    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
                    let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
                    let _ = child.wait();
                    break None;
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
        }
    };
    let said = {
        let mut text = Vec::new();
        let mut file = said;
        let _ = file.seek(std::io::SeekFrom::Start(0)).and_then(|_| file.take(64 * 1024).read_to_end(&mut text));
        String::from_utf8_lossy(&text).into_owned()
    };
    match status {
        Some(s) if s.success() => Ok(began.elapsed()),
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => Err(fail(HookFailure::Exit(c), said)),
            (None, Some(sig)) => Err(fail(HookFailure::Signal(sig), said)),
            _ => Err(fail(HookFailure::Exit(-1), said)),
        },
        None => Err(fail(HookFailure::Timeout(timeout_secs(hook.timeout)), said)),
    }
}

/// An anonymous file in memory (memfd_create(2)), close-on-exec.
fn output_file() -> std::io::Result<std::fs::File> {
    // SAFETY: memfd_create(2) with a NUL-terminated name and flags; the
    // result is checked.
    let fd = unsafe { libc::memfd_create(c"virtlab-hook".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: memfd_create just returned this fd, owned by nobody else.
    Ok(unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

fn timeout_secs(t: Option<Duration>) -> u32 {
    t.map(|d| d.as_secs_f64().ceil() as u32).unwrap_or(0)
}

/// A hook the container's process runs, prepared by the launcher: every
/// string a C string, the pointer arrays for execve(2) ready.
#[derive(Debug)]
pub struct ChildHook {
    /// Its place in its kind's list.
    pub index: u32,
    /// The program, resolved where the child runs it.
    pub path: CString,
    _args: Vec<CString>,
    _env: Vec<CString>,
    /// argv and envp for execve.
    pub exec: ExecArgs,
    /// The state JSON up to the pid's value.
    pub state_prefix: Vec<u8>,
    /// Killed, and failed, after this many ms (0: no limit).
    pub timeout_ms: u64,
    /// Where to report a failure as well (the exec FIFO for
    /// `startContainer`, read by `start`): [`FIFO_FAILURE`] and two u32s,
    /// the index and [`HookFailure::encode`].
    pub report: Option<RawFd>,
}

/// The byte that opens a hook failure's report on the exec FIFO.
pub const FIFO_FAILURE: u8 = b'H';

impl ChildHook {
    /// `hook` made ready for the child, with the state of `status`.
    pub fn prepare(hook: &Hook, state: &HookState, report: Option<RawFd>) -> Result<ChildHook, ConfigError> {
        let nul = |_| ConfigError::Nul { what: "a hook's path, args or env" };
        let c = |s: &str| CString::new(s).map_err(nul);
        let path = CString::new(std::os::unix::ffi::OsStrExt::as_bytes(hook.path.as_os_str())).map_err(nul)?;
        let args = if hook.args.is_empty() {
            vec![path.clone()]
        } else {
            hook.args.iter().map(|a| c(a)).collect::<Result<_, _>>()?
        };
        let env: Vec<CString> = hook.env.iter().map(|e| c(e)).collect::<Result<_, _>>()?;
        let ptrs = |v: &[CString]| v.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        let exec = ExecArgs { argv: ptrs(&args), envp: ptrs(&env) };
        Ok(ChildHook {
            index: hook.index as u32,
            path,
            _args: args,
            _env: env,
            exec,
            state_prefix: state.prefix(hook.kind.status()),
            timeout_ms: hook.timeout.map(|t| t.as_millis() as u64).unwrap_or(0),
            report,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(kind: HookKind, script: &str, timeout: Option<Duration>) -> Hook {
        Hook {
            kind,
            index: 0,
            path: "/bin/sh".into(),
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec!["WHO=test".into()],
            timeout,
        }
    }

    #[test]
    fn the_state_is_json_with_the_moments_status_and_pid() {
        let s = HookState { oci_version: "1.0.2".into(), id: "c\"1".into(), bundle: "/b".into(), ..Default::default() };
        let v: serde_json::Value = serde_json::from_slice(&s.json("creating", 42)).unwrap();
        assert_eq!(v["id"], "c\"1");
        assert_eq!(v["status"], "creating");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["bundle"], "/b");
        assert!(v["annotations"].is_object());
    }

    #[test]
    fn failures_round_trip_through_their_number() {
        for f in [HookFailure::Exit(3), HookFailure::Signal(9), HookFailure::Timeout(2), HookFailure::Start(12)] {
            assert_eq!(HookFailure::decode(f.encode()), f);
        }
    }

    #[test]
    fn a_host_hook_reads_the_state_and_its_failure_is_named() {
        let ok = hook(HookKind::CreateRuntime, "read s; case \"$s\" in *'\"pid\":7}') exit 0;; esac; exit 1", None);
        run_host(&ok, b"{\"pid\":7}\n").unwrap();
        let bad = hook(HookKind::Poststart, "echo \"no $WHO\" >&2; exit 4", None);
        let e = run_host(&bad, b"{}").unwrap_err();
        assert_eq!(e.failure, HookFailure::Exit(4));
        assert_eq!(e.to_string(), "hooks.poststart[0] (/bin/sh) exited with status 4: no test");
        // The hook and what it started: `sleep` is the shell's child here.
        let slow = hook(HookKind::Poststop, "sleep 30; true", Some(Duration::from_millis(100)));
        assert_eq!(run_host(&slow, b"{}").unwrap_err().failure, HookFailure::Timeout(1));
        // A hook that leaves something running (holding its output) is
        // done when it exits.
        let dir = tempfile::tempdir().unwrap();
        let pid = dir.path().join("pid");
        let daemon = hook(HookKind::Poststop, &format!("sleep 30 & echo $! > {}; exit 0", pid.display()), None);
        run_host(&daemon, b"{}").unwrap();
        let pid: i32 = std::fs::read_to_string(&pid).unwrap().trim().parse().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    }
}
