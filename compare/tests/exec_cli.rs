//! `virtlab exec` through the binary: a command that joins a running
//! container for real (its PID namespace, hostname, root, user namespace,
//! cgroups, capabilities and seccomp filter), Docker's exit statuses, the
//! options, standard input and terminal, the events, and nothing left
//! behind. Each test has a store of its own. Needs root and
//! busybox-static; skips loudly otherwise, and fails under
//! VIRTLAB_REQUIRE_ROOT=1.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

mod common;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Lab {
    s: common::Store,
}

impl std::ops::Deref for Lab {
    type Target = common::Store;
    fn deref(&self) -> &common::Store {
        &self.s
    }
}

impl Lab {
    /// A store with `busybox` imported; `None` (said why) if the test cannot run.
    fn new(test: &str) -> Option<Lab> {
        common::Store::new(test, "virtlab-exec-").map(|s| Lab { s })
    }

    /// `virtlab CMD --root STORE ARGS...`.
    fn v(&self, cmd: &[&str], args: &[&str]) -> Output {
        self.run_with(&self.args(cmd, args), Stdio::null())
    }

    fn args(&self, cmd: &[&str], args: &[&str]) -> Vec<String> {
        let mut all: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        all.extend(["--root".to_string(), self.root()]);
        all.extend(args.iter().map(|s| s.to_string()));
        all
    }

    /// `virtlab exec --root STORE ARGS...`, which must succeed; its output.
    fn exec_ok(&self, args: &[&str]) -> String {
        let out = self.v(&["exec"], args);
        assert!(out.status.success(), "exec {args:?}: {}", err(&out));
        text(&out)
    }

    /// Starts `busybox sleep SECS` as container `name` with `options`; its
    /// host PID. Each test sleeps for its own time, which tells its
    /// processes from those of the tests running beside it.
    fn sleeper(&self, name: &str, secs: &str, options: &[&str]) -> i32 {
        let mut args = vec!["-d", "--name", name];
        args.extend(options);
        args.extend(["busybox", "sleep", secs]);
        let out = self.v(&["run"], &args);
        assert!(out.status.success(), "{}", err(&out));
        let pid = text(&self.v(&["inspect"], &["--format", "{{.State.Pid}}", name]));
        pid.trim().parse().unwrap()
    }

    /// No process is left whose command line names the store (a monitor,
    /// a background exec) or is `cmdline`, and nothing of the store is
    /// mounted.
    fn assert_nothing_left(&self, cmdline: &str) {
        let needle = self.store().display().to_string();
        let left = processes(|c| c.contains(&needle) || c == cmdline);
        assert!(left.is_empty(), "processes left: {left:?}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&needle), "a mount under the store was left");
    }
}

impl Drop for Lab {
    /// A test that failed half-way leaves no container running.
    fn drop(&mut self) {
        let ids = self.v(&["ps"], &["-aq"]);
        let ids: Vec<String> = text(&ids).lines().map(str::to_string).collect();
        if !ids.is_empty() {
            let mut args = vec!["-f"];
            args.extend(ids.iter().map(String::as_str));
            self.v(&["rm"], &args);
        }
    }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn err(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The host PIDs and command lines of the processes whose command line
/// (arguments joined by spaces) passes `pick`.
fn processes(pick: impl Fn(&str) -> bool) -> Vec<(i32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let c = std::fs::read(e.path().join("cmdline")).ok()?;
            let c = String::from_utf8_lossy(&c).trim_end_matches('\0').replace('\0', " ");
            pick(&c).then_some((pid, c))
        })
        .collect()
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "waited 20 s for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A line `Key:\tvalue` of /proc/PID/status text.
fn field(status: &str, key: &str) -> String {
    status.lines().find_map(|l| l.strip_prefix(&format!("{key}:"))).unwrap_or_default().trim().to_string()
}

fn host_read(pid: i32, file: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap()
}

#[test]
fn an_exec_joins_the_running_container_for_real() {
    let Some(lab) = Lab::new("an_exec_joins_the_running_container_for_real") else { return };
    let pid1 = lab.sleeper("box", "6011", &["--hostname", "inside-box"]);

    // Its own PID namespace: a small PID, and the container's processes.
    let out = lab.exec_ok(&["box", "sh", "-c", "echo $$; cat /proc/self/status"]);
    let (own_pid, status) = out.split_once('\n').unwrap();
    let own_pid: i32 = own_pid.parse().unwrap();
    assert!((2..100).contains(&own_pid), "the exec's shell sees itself as PID {own_pid}");
    let nspid = field(status, "NSpid");
    assert_eq!(nspid, own_pid.to_string(), "inside, only the container's PID namespace is seen");
    let ps = lab.exec_ok(&["box", "ps"]);
    let sleep_line = ps.lines().find(|l| l.contains("sleep 6011")).unwrap_or_else(|| panic!("{ps}"));
    assert_eq!(sleep_line.split_whitespace().next(), Some("1"), "the container's sleep is PID 1: {ps}");
    assert!(!ps.contains("virtlab"), "no host process is seen: {ps}");

    // The same capabilities, no_new_privs and seccomp filter as PID 1.
    let pid1_status = host_read(pid1, "status");
    assert_eq!(field(status, "Seccomp"), "2", "{status}");
    assert_eq!(field(status, "NoNewPrivs"), "1");
    for key in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
        assert_eq!(field(status, key), field(&pid1_status, key), "{key}");
    }
    assert_eq!(field(status, "Groups"), field(&pid1_status, "Groups"), "no host group is kept");

    // Its hostname, and its user namespace: container root is not host root.
    assert_eq!(lab.exec_ok(&["box", "hostname"]), "inside-box\n");
    let uid_map = lab.exec_ok(&["box", "cat", "/proc/self/uid_map"]);
    assert_eq!(uid_map, host_read(pid1, "uid_map"));
    assert_ne!(uid_map.split_whitespace().collect::<Vec<_>>(), ["0", "0", "4294967295"]);
    assert_eq!(lab.exec_ok(&["box", "id", "-u"]), "0\n");

    // Its root: a file one exec writes, another reads, and the host finds
    // in the container's writable layer.
    lab.exec_ok(&["box", "sh", "-c", "echo written by exec > /from-exec"]);
    assert_eq!(lab.exec_ok(&["box", "cat", "/from-exec"]), "written by exec\n");
    let id = text(&lab.v(&["inspect"], &["--format", "{{.Id}}", "box"])).trim().to_string();
    let upper = lab.store().join("containers").join(&id).join("upper/from-exec");
    assert_eq!(std::fs::read_to_string(&upper).unwrap(), "written by exec\n");

    // Its cgroups and namespaces, seen from the host, for a command left
    // running with -d (which prints nothing).
    let out = lab.v(&["exec"], &["-d", "box", "sleep", "4321"]);
    assert_eq!((out.status.code(), text(&out), err(&out)), (Some(0), String::new(), String::new()));
    let (pid, _) = processes(|c| c == "sleep 4321").pop().unwrap();
    assert_eq!(host_read(pid, "cgroup"), host_read(pid1, "cgroup"));
    assert!(host_read(pid1, "cgroup").contains("virtlab-"), "{}", host_read(pid1, "cgroup"));
    for ns in ["user", "mnt", "pid", "uts", "ipc", "net", "cgroup"] {
        let link = |p: i32| std::fs::read_link(format!("/proc/{p}/ns/{ns}")).unwrap();
        assert_eq!(link(pid), link(pid1), "{ns} namespace");
    }
    let nspid = field(&host_read(pid, "status"), "NSpid");
    assert_eq!(nspid.split_whitespace().count(), 2, "a host PID and a container PID: {nspid}");

    // The command sees no fd of virtlab's.
    assert_eq!(lab.exec_ok(&["box", "ls", "/proc/self/fd"]), "0\n1\n2\n3\n", "ls's own directory is 3");

    // Removing the container ends the exec'd command and its waiter.
    assert!(lab.v(&["rm"], &["-f", "box"]).status.success());
    until("the exec'd sleep and its waiter to end", || {
        processes(|c| c == "sleep 4321" || c.contains(&lab.root())).is_empty()
    });
    lab.assert_nothing_left("sleep 6011");
}

#[test]
fn exit_statuses_options_and_events_are_dockers() {
    let Some(lab) = Lab::new("exit_statuses_options_and_events_are_dockers") else { return };
    lab.sleeper("opts", "6012", &["-e", "FROM_RUN=kept", "-w", "/etc"]);

    // The command's status passes through; a signal is 128 + it.
    assert_eq!(lab.v(&["exec"], &["opts", "sh", "-c", "exit 7"]).status.code(), Some(7));
    assert_eq!(lab.v(&["exec"], &["opts", "sh", "-c", "kill -9 $$"]).status.code(), Some(137));
    // Not found: 127, naming it; not executable: 126.
    let missing = lab.v(&["exec"], &["opts", "no-such-program", "x"]);
    assert_eq!(missing.status.code(), Some(127), "{}", err(&missing));
    assert!(err(&missing).contains("\"no-such-program\"") && err(&missing).contains("/bin/no-such-program"));
    let not_exec = lab.v(&["exec"], &["opts", "/etc/passwd"]);
    assert_eq!(not_exec.status.code(), Some(126), "{}", err(&not_exec));
    // -w to a directory that is not there: virtlab's failure, 125.
    assert_eq!(lab.v(&["exec"], &["-w", "/no/such/dir", "opts", "true"]).status.code(), Some(125));

    // The container's environment and working directory, unless -e, -w, -u say otherwise.
    let out = lab.exec_ok(&["opts", "sh", "-c", "echo $FROM_RUN; pwd; id -u"]);
    assert_eq!(out, "kept\n/etc\n0\n");
    let out = lab.exec_ok(&[
        "-e",
        "FROM_EXEC=1",
        "-e",
        "FROM_RUN=changed",
        "-w",
        "/tmp",
        "-u",
        "1000:100",
        "opts",
        "sh",
        "-c",
        "echo $FROM_EXEC $FROM_RUN; pwd; id -u; id -g; grep CapEff /proc/self/status",
    ]);
    assert_eq!(out, "1 changed\n/tmp\n1000\n100\nCapEff:\t0000000000000000\n");
    let unmapped = lab.v(&["exec"], &["-u", "70000", "opts", "true"]);
    assert_eq!(unmapped.status.code(), Some(125));
    assert!(err(&unmapped).contains("not mapped"), "{}", err(&unmapped));

    // Standard input: /dev/null without -i, the caller's with it.
    let args = lab.args(&["exec"], &["opts", "cat"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let piped = |interactive: bool| {
        let mut all = args.clone();
        if interactive {
            all.insert(1, "-i");
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_virtlab"))
            .args(&all)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
        child.wait_with_output().unwrap()
    };
    assert_eq!(text(&piped(true)), "hi\n");
    let without = piped(false);
    assert!(without.status.success() && text(&without).is_empty(), "{without:?}");
    // -t needs a terminal.
    let no_tty = lab.v(&["exec"], &["-t", "opts", "true"]);
    assert_eq!(no_tty.status.code(), Some(1));
    assert!(err(&no_tty).contains("the input device is not a TTY"), "{}", err(&no_tty));

    // Unknown and stopped containers: 1.
    let unknown = lab.v(&["exec"], &["nope", "true"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(err(&unknown).contains("No such container: nope"), "{}", err(&unknown));
    lab.v(&["run"], &["-d", "--name", "done", "busybox", "true"]);
    assert_eq!(text(&lab.v(&["wait"], &["done"])), "0\n");
    let stopped = lab.v(&["exec"], &["done", "true"]);
    assert_eq!(stopped.status.code(), Some(1));
    assert!(err(&stopped).contains("container done is not running"), "{}", err(&stopped));
    // A -d command that cannot start says so, with the shell's status.
    assert_eq!(lab.v(&["exec"], &["-d", "opts", "no-such-program"]).status.code(), Some(127));

    // The events: exec_create and exec_start with the command, exec_die
    // with its status, all with the exec's ID.
    let events =
        text(&lab.v(&["system", "events"], &["--until", "0s", "--filter", "container=opts", "--format", "{{json .}}"]));
    let events: Vec<serde_json::Value> = events.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let attr = |e: &serde_json::Value, k: &str| e["Actor"]["Attributes"][k].as_str().unwrap_or_default().to_string();
    let start = events.iter().find(|e| e["Action"] == "exec_start: sh -c exit 7").unwrap();
    let exec_id = attr(start, "execID");
    assert_eq!(exec_id.len(), 64);
    let this: Vec<&serde_json::Value> = events.iter().filter(|e| attr(e, "execID") == exec_id).collect();
    let actions: Vec<&str> = this.iter().map(|e| e["Action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["exec_create: sh -c exit 7", "exec_start: sh -c exit 7", "exec_die"]);
    assert_eq!(
        (attr(this[2], "exitCode"), attr(this[2], "name"), attr(this[2], "image")),
        ("7".into(), "opts".into(), "busybox".into())
    );
    let died: Vec<String> = events.iter().filter(|e| e["Action"] == "exec_die").map(|e| attr(e, "exitCode")).collect();
    assert!(died.contains(&"127".to_string()) && died.contains(&"137".to_string()), "{died:?}");

    assert!(lab.v(&["rm"], &["-f", "opts", "done"]).status.success());
    lab.assert_nothing_left("sleep 6012");
}

#[test]
fn the_container_limits_hold_for_an_exec() {
    let Some(lab) = Lab::new("the_container_limits_hold_for_an_exec") else { return };
    // Room for 4 processes: the container's sleep, the exec's shell, and
    // at most 2 of its 3 children.
    lab.sleeper("small", "6013", &["--pids", "4"]);
    let out = lab.v(&["exec"], &["small", "sh", "-c", "sleep 1 & sleep 1 & sleep 1 & wait"]);
    assert!(err(&out).contains("can't fork"), "the pids limit did not hold: {}", err(&out));
    assert!(lab.v(&["rm"], &["-f", "small"]).status.success());
    lab.assert_nothing_left("sleep 6013");
}

#[test]
fn with_t_the_command_gets_the_callers_terminal() {
    let Some(lab) = Lab::new("with_t_the_command_gets_the_callers_terminal") else { return };
    lab.sleeper("tty", "6014", &[]);
    // A pseudo-terminal of the test's: its other side is the caller's stdio.
    // SAFETY: posix_openpt, grantpt, unlockpt and ptsname_r with checked
    // results; buf is a writable buffer of its length.
    let (master, slave) = unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(m >= 0 && libc::grantpt(m) == 0 && libc::unlockpt(m) == 0);
        let mut buf = [0 as libc::c_char; 64];
        assert_eq!(libc::ptsname_r(m, buf.as_mut_ptr(), buf.len()), 0);
        let name = std::ffi::CStr::from_ptr(buf.as_ptr()).to_str().unwrap().to_string();
        (OwnedFd::from_raw_fd(m), name)
    };
    let tty = || std::fs::OpenOptions::new().read(true).write(true).open(&slave).unwrap();
    let args = lab.args(&["exec"], &["-it", "tty", "sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo on-a-tty; exit 3"]);
    let status = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(&args)
        .stdin(tty())
        .stdout(tty())
        .stderr(tty())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3));
    // An open slave side keeps the master readable (no EIO of a hung-up terminal).
    let _slave = tty();
    let mut seen = Vec::new();
    let mut master = std::fs::File::from(master);
    let mut buf = [0u8; 256];
    // Everything written is in the terminal's buffer by now; read it
    // without blocking on an empty one.
    nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&master),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    while let Ok(n @ 1..) = master.read(&mut buf) {
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).contains("on-a-tty"), "{:?}", String::from_utf8_lossy(&seen));
    assert!(lab.v(&["rm"], &["-f", "tty"]).status.success());
    lab.assert_nothing_left("sleep 6014");
}
