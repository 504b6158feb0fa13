//! virtlab and podman side by side: the same image (saved by virtlab as an
//! OCI archive, loaded by podman) and the same sequence of commands, and
//! the two must agree on what a student sees: exit statuses of `run`,
//! `stop`, `wait` and `exec`, the states `ps -a` shows, `logs`, and the
//! common fields of `inspect`. podman keeps everything in a storage of the
//! test's own (vfs, cgroupfs, no event journal), runs containers with runc
//! (crun refuses these hosts' hybrid cgroups) and the ulimits these hosts
//! need. Needs root, busybox-static and podman; skips loudly otherwise,
//! and fails under VIRTLAB_REQUIRE_ROOT=1.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use virtlab_compare::launch::PodmanStorage;

/// What podman's `run` and `create` need on these hosts.
const PODMAN_RUN: [&str; 6] = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"];

struct Both {
    dir: tempfile::TempDir,
    podman: PodmanStorage,
    /// One test at a time: the clean-up of a podman storage reaps the
    /// podman processes whose parent is this test process, which would
    /// take another test's `podman` child from under its `wait`.
    _alone: std::sync::MutexGuard<'static, ()>,
}

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Drop for Both {
    fn drop(&mut self) {
        virtlab_compare::podman::remove_all(&self.podman);
    }
}

/// One command's result, as a student reads it.
#[derive(Debug, PartialEq)]
struct Seen {
    code: Option<i32>,
    stdout: String,
}

impl Both {
    fn new(test: &str) -> Option<Both> {
        if !common::root_and_busybox(test)
            || !common::tool_or_skip(test, "podman", "apt-get install podman", &["VIRTLAB_REQUIRE_ROOT"])
            || !common::tool_or_skip(test, "runc", "apt-get install runc", &["VIRTLAB_REQUIRE_ROOT"])
        {
            return None;
        }
        let alone = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let dir = tempfile::Builder::new().prefix("virtlab-side-by-side-").tempdir().unwrap();
        let podman = PodmanStorage { dir: dir.path().join("podman") };
        let both = Both { dir, podman, _alone: alone };
        let rootfs = both.dir.path().join("rootfs");
        let archive = both.dir.path().join("busybox.tar");
        both.virtlab_ok(&["container", "rootfs", rootfs.to_str().unwrap()]);
        both.virtlab_ok(&["image", "import", "--root", &both.store(), rootfs.to_str().unwrap(), "busybox"]);
        both.virtlab_ok(&["image", "save", "--root", &both.store(), "busybox", "-o", archive.to_str().unwrap()]);
        let load = both.podman(&["load", "-i", archive.to_str().unwrap()]);
        assert!(load.status.success(), "podman load: {}", String::from_utf8_lossy(&load.stderr));
        Some(both)
    }

    fn store(&self) -> String {
        self.dir.path().join("store").to_str().unwrap().to_string()
    }

    fn virtlab(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_virtlab"))
            .args(args)
            .env("VIRTLAB_ROOT", self.store())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `virtlab-runc`: the name an engine is pointed at.
    fn virtlab_runtime(&self) -> std::path::PathBuf {
        let runtime = self.dir.path().join("virtlab-runc");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_virtlab"), &runtime).unwrap();
        runtime
    }

    /// podman with `runtime`: `run` gets the runtime, a cgroup parent of
    /// the test's own, no network, these hosts' ulimits and `extra`;
    /// `input` is its standard input.
    fn podman_on(
        &self,
        runtime: &std::path::Path,
        parent: &str,
        args: &[&str],
        extra: &[&str],
        input: &[u8],
    ) -> Output {
        use std::io::Write;
        let mut cmd = virtlab_compare::podman::podman(&self.podman);
        let (sub, rest) = args.split_first().unwrap();
        cmd.arg(sub);
        if *sub == "run" {
            cmd.arg("--runtime").arg(runtime).args(["--cgroup-parent", &format!("/{parent}")]);
            cmd.args(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--network", "none"]);
            cmd.args(extra);
        }
        let mut child =
            cmd.args(rest).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    }

    fn virtlab_ok(&self, args: &[&str]) {
        let out = self.virtlab(args);
        assert!(out.status.success(), "virtlab {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn podman(&self, args: &[&str]) -> Output {
        let mut cmd = virtlab_compare::podman::podman(&self.podman);
        let (sub, rest) = args.split_first().unwrap();
        cmd.arg(sub);
        if ["run", "create"].contains(sub) {
            cmd.args(PODMAN_RUN);
        }
        cmd.args(rest).stdin(Stdio::null()).output().unwrap()
    }

    /// `args` given to both (`IMAGE` stands for the image's name in each);
    /// what each showed.
    fn both(&self, args: &[&str]) -> (Seen, Seen) {
        let with = |image: &str| -> Vec<String> {
            args.iter().map(|a| if *a == "IMAGE" { image.to_string() } else { a.to_string() }).collect()
        };
        let seen = |o: Output| Seen { code: o.status.code(), stdout: String::from_utf8_lossy(&o.stdout).into_owned() };
        let v: Vec<String> = with("busybox");
        let p: Vec<String> = with("localhost/busybox:latest");
        let v = seen(self.virtlab(&v.iter().map(String::as_str).collect::<Vec<_>>()));
        let p = seen(self.podman(&p.iter().map(String::as_str).collect::<Vec<_>>()));
        (v, p)
    }

    /// Both give the same exit status and standard output.
    fn agree(&self, args: &[&str]) -> Seen {
        let (v, p) = self.both(args);
        assert_eq!(v, p, "virtlab (left) and podman (right) differ on {args:?}");
        v
    }

    /// Both give the same exit status; the outputs go through `view` before
    /// they are compared (times and IDs differ).
    fn agree_on(&self, args: &[&str], view: impl Fn(&str) -> String) -> String {
        let (v, p) = self.both(args);
        assert_eq!(v.code, p.code, "exit statuses of {args:?}: virtlab {v:?}, podman {p:?}");
        let (v, p) = (view(&v.stdout), view(&p.stdout));
        assert_eq!(v, p, "virtlab (left) and podman (right) differ on {args:?}");
        v
    }
}

/// `ps` lines as `NAME STATUS-WORDS` without the time (`Exited (3)`,
/// `Up`), sorted.
fn names_and_states(text: &str) -> String {
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next().unwrap_or_default();
            let state = w.next().unwrap_or_default();
            match state {
                "Exited" => format!("{name} Exited {}", w.next().unwrap_or_default()),
                _ => format!("{name} {state}"),
            }
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

#[test]
fn virtlab_and_podman_agree_on_a_containers_life() {
    let Some(lab) = Both::new("virtlab_and_podman_agree_on_a_containers_life") else { return };
    // A run in the foreground: its status, its output, and it stays.
    let run = lab.agree(&["run", "--name", "a", "IMAGE", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(run, Seen { code: Some(3), stdout: "out\n".into() });
    assert_eq!(lab.agree(&["logs", "a"]).stdout, "out\n");
    let state = lab.agree(&["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}} {{.State.Running}}", "a"]);
    assert_eq!(state.stdout, "exited 3 false\n");
    lab.agree(&["inspect", "--format", "{{.Config.Cmd}} {{.State.OOMKilled}}", "a"]);
    // In the background: up, then stopped (sleep, PID 1, has no SIGTERM
    // handler: SIGKILL after the grace period).
    let id = lab.both(&["run", "-d", "--name", "b", "IMAGE", "sleep", "60"]);
    assert_eq!((id.0.code, id.1.code), (Some(0), Some(0)));
    assert_eq!(lab.agree_on(&["ps", "--format", "{{.Names}} {{.Status}}"], names_and_states), "b Up");
    // A command inside it: its output and its status.
    let exec = lab.agree(&["exec", "b", "sh", "-c", "echo inside; exit 4"]);
    assert_eq!(exec, Seen { code: Some(4), stdout: "inside\n".into() });
    assert_eq!(lab.agree(&["exec", "b", "/no/such/program"]).code, Some(127));
    assert_eq!(lab.agree(&["stop", "-t", "1", "b"]).stdout, "b\n");
    assert_eq!(lab.agree(&["wait", "b"]).stdout, "137\n");
    let all = lab.agree_on(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"], names_and_states);
    assert_eq!(all, "a Exited (3)\nb Exited (137)");
    // Started again, killed, waited for.
    assert_eq!(lab.agree(&["start", "b"]).stdout, "b\n");
    assert_eq!(lab.agree_on(&["ps", "--format", "{{.Names}} {{.Status}}"], names_and_states), "b Up");
    assert_eq!(lab.agree(&["kill", "b"]).stdout, "b\n");
    assert_eq!(lab.agree(&["wait", "b"]).stdout, "137\n");
    // Commands that cannot run: the shell's statuses.
    assert_eq!(lab.agree(&["run", "--rm", "IMAGE", "/no/such/program"]).code, Some(127));
    assert_eq!(lab.agree(&["run", "--rm", "IMAGE", "/etc/os-release"]).code, Some(126));
    assert_eq!(lab.agree(&["run", "--rm", "IMAGE", "true"]).code, Some(0));
    // Removed; an unknown container is an error with status 1.
    // podman removes several containers at once, naming them as each goes.
    let sorted = |t: &str| {
        let mut l: Vec<&str> = t.lines().collect();
        l.sort_unstable();
        l.join("\n")
    };
    assert_eq!(lab.agree_on(&["rm", "a", "b"], sorted), "a\nb");
    assert_eq!(lab.agree(&["rm", "nosuch"]).code, Some(1));
    assert_eq!(lab.agree(&["ps", "-a", "-q"]).stdout, "", "--rm left no container");
}

/// podman with virtlab as its OCI runtime (`--runtime PATH/virtlab-runc`):
/// podman and conmon make the bundle and call `create`, `start`, `state`,
/// `kill` and `delete`; virtlab's launcher runs the container. Without a
/// network of its own; without a seccomp profile in config.json, then with
/// podman's default one.
#[test]
fn podman_drives_virtlab_as_its_runtime() {
    let Some(lab) = Both::new("podman_drives_virtlab_as_its_runtime") else { return };
    let runtime = lab.virtlab_runtime();
    // Our containers' cgroups go under a parent of this test's own.
    let parent = format!("virtlab-podman-test-{}", std::process::id());
    let podman = |args: &[&str]| -> Output {
        lab.podman_on(&runtime, &parent, args, &["--security-opt", "seccomp=unconfined"], b"")
    };
    let text = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let image = "localhost/busybox:latest";
    let hi = podman(&["run", "--rm", image, "echo", "hi"]);
    assert_eq!((hi.status.code(), text(&hi)), (Some(0), "hi\n".into()), "{}", String::from_utf8_lossy(&hi.stderr));
    assert_eq!(podman(&["run", "--rm", image, "sh", "-c", "exit 7"]).status.code(), Some(7));
    // Its own world: PID 1, the hostname podman chose, no seccomp filter
    // (none asked), podman's cgroup.
    let inside = podman(&["run", "--rm", "--hostname", "by-podman", image, "sh", "-c", "echo $$ $(hostname)"]);
    assert_eq!(text(&inside), "1 by-podman\n");
    let id = podman(&["run", "-d", "--name", "bg", image, "sh", "-c", "echo from virtlab; sleep 60"]);
    assert!(id.status.success(), "{}", String::from_utf8_lossy(&id.stderr));
    let ps = text(&podman(&["ps", "--format", "{{.Names}} {{.Status}}"]));
    assert!(ps.starts_with("bg Up"), "{ps}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while text(&podman(&["logs", "bg"])) != "from virtlab\n" {
        assert!(std::time::Instant::now() < deadline, "no log");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(podman(&["stop", "-t", "1", "bg"]).status.success());
    assert_eq!(text(&podman(&["inspect", "--format", "{{.State.ExitCode}}", "bg"])), "137\n");
    assert!(podman(&["rm", "bg"]).status.success());
    // A memory limit that the command exceeds: the OOM killer, 137.
    let oom =
        podman(&["run", "--rm", "--memory", "32m", image, "sh", "-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' a)"]);
    assert_eq!(oom.status.code(), Some(137), "{}", String::from_utf8_lossy(&oom.stderr));
    // podman's own seccomp profile, in config.json's linux.seccomp: virtlab
    // compiles it as it compiles Docker's.
    let seccomp = virtlab_compare::podman::podman(&lab.podman)
        .args(["run", "--rm", "--runtime"])
        .arg(&runtime)
        .args(["--cgroup-parent", &format!("/{parent}"), "--network", "none"])
        .args(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", image])
        .args(["grep", "Seccomp:", "/proc/self/status"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(text(&seccomp), "Seccomp:\t2\n", "{}", String::from_utf8_lossy(&seccomp.stderr));
    no_container_cgroups_left(&parent);
}

/// The containers' cgroups under `parent` are gone (podman's own
/// `conmon` cgroup stays, and goes here with the parent).
fn no_container_cgroups_left(parent: &str) {
    let parents: Vec<std::path::PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|c| c.path().join(parent))
        .filter(|p| p.is_dir())
        .collect();
    assert!(!parents.is_empty(), "the containers had no cgroups under {parent}");
    for p in &parents {
        let children: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir() && e.file_name().to_string_lossy().starts_with("libpod-"))
            .collect();
        assert!(children.is_empty(), "container cgroups left under {}: {children:?}", p.display());
        remove_emptied(&p.join("conmon"));
        remove_emptied(p);
        assert!(!p.exists(), "{} was left", p.display());
    }
}

/// Removes cgroup `dir` once its processes (a conmon on its way out) are
/// gone: waits up to 10 s, then kills what is left.
fn remove_emptied(dir: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while dir.exists() && std::fs::remove_dir(dir).is_err() {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        if std::time::Instant::now() > deadline {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        assert!(
            std::time::Instant::now() < deadline + std::time::Duration::from_secs(5),
            "{} stays: {procs}",
            dir.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// podman with virtlab as its runtime, through a terminal: `run -t` (the
/// runtime makes the pty in the container and hands its master to conmon
/// over `--console-socket`), `run -it` fed a shell's input, and `exec`
/// (conmon's `exec --process FILE --detach`), with and without `-t`.
/// With podman's own seccomp profile.
#[test]
fn podman_gets_terminals_and_execs_from_virtlab() {
    let Some(lab) = Both::new("podman_gets_terminals_and_execs_from_virtlab") else { return };
    let runtime = lab.virtlab_runtime();
    let parent = format!("virtlab-podman-tty-test-{}", std::process::id());
    let podman = |args: &[&str], input: &[u8]| lab.podman_on(&runtime, &parent, args, &[], input);
    let text = |o: &Output| String::from_utf8_lossy(&o.stdout).replace('\r', "");
    let image = "localhost/busybox:latest";
    // Standard input is not a terminal here; -t still gives the process one.
    let tty = podman(&["run", "--rm", "-t", image, "tty"], b"");
    assert_eq!(tty.status.code(), Some(0), "{}", String::from_utf8_lossy(&tty.stderr));
    assert!(text(&tty).starts_with("/dev/pts/"), "{}", text(&tty));
    let shell = podman(&["run", "--rm", "-i", "-t", image, "sh"], b"echo hi-$((40+2)); exit 3\n");
    assert_eq!(shell.status.code(), Some(3), "{}", String::from_utf8_lossy(&shell.stderr));
    assert!(text(&shell).contains("hi-42"), "{}", text(&shell));
    let id = podman(&["run", "-d", "--name", "ex", image, "sleep", "60"], b"");
    assert!(id.status.success(), "{}", String::from_utf8_lossy(&id.stderr));
    let hi = podman(&["exec", "ex", "echo", "hi"], b"");
    assert_eq!((hi.status.code(), text(&hi)), (Some(0), "hi\n".into()), "{}", String::from_utf8_lossy(&hi.stderr));
    assert_eq!(podman(&["exec", "ex", "sh", "-c", "exit 4"], b"").status.code(), Some(4));
    assert_eq!(podman(&["exec", "ex", "/no/such/program"], b"").status.code(), Some(127));
    let exec_tty = podman(&["exec", "-t", "ex", "tty"], b"");
    assert!(text(&exec_tty).starts_with("/dev/pts/"), "{}", String::from_utf8_lossy(&exec_tty.stderr));
    let exec_shell = podman(&["exec", "-i", "-t", "ex", "sh"], b"echo in-exec; exit 6\n");
    assert_eq!(exec_shell.status.code(), Some(6), "{}", String::from_utf8_lossy(&exec_shell.stderr));
    assert!(text(&exec_shell).contains("in-exec"), "{}", text(&exec_shell));
    let ps = text(&podman(&["exec", "ex", "ps"], b""));
    assert!(ps.lines().any(|l| l.trim_start().starts_with("1 ") && l.contains("sleep 60")), "{ps}");
    assert!(podman(&["rm", "-f", "-t", "0", "ex"], b"").status.success());
    no_container_cgroups_left(&parent);
}

/// `podman --runtime-flag explain-file=F` (`--runtime-flag explain` for the
/// runtime's own ROOT/explain.log): the trace shows the engine driving the
/// runtime, `create` from conmon (which names podman as its engine),
/// `start` from podman, `delete` from podman's cleanup, in that order.
#[test]
fn podman_calls_are_traced_with_explain() {
    let Some(lab) = Both::new("podman_calls_are_traced_with_explain") else { return };
    let runtime = lab.virtlab_runtime();
    let parent = format!("virtlab-podman-explain-test-{}", std::process::id());
    let trace = lab.dir.path().join("explain.log");
    let out = virtlab_compare::podman::podman(&lab.podman)
        .arg("--runtime-flag")
        .arg(format!("explain-file={}", trace.display()))
        .args(["run", "--rm", "--runtime"])
        .arg(&runtime)
        .args(["--cgroup-parent", &format!("/{parent}"), "--network", "none"])
        .args(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--security-opt", "seccomp=unconfined"])
        .args(["localhost/busybox:latest", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&trace).unwrap();
    // The call: the last part before the outcome, after the callers.
    let call = |line: &str| line.split(" ⇒ ").next().unwrap().rsplit(" → ").next().unwrap().to_string();
    let position = |verb: &str| text.lines().position(|l| call(l).starts_with(verb));
    let (create, start, delete) = (position("create "), position("start "), position("delete "));
    assert!(create.is_some() && start.is_some() && delete.is_some(), "{text}");
    assert!(create < start && start < delete, "{text}");
    let create_line = text.lines().nth(create.unwrap()).unwrap();
    let callers = create_line.split(" ⇒ ").next().unwrap();
    let conmon = callers.find("conmon ").unwrap_or_else(|| panic!("no conmon: {create_line}"));
    assert!(callers[..conmon].contains("podman"), "{create_line}");
    assert!(create_line.contains("⇒ created, pid "), "{create_line}");
    assert!(text.lines().all(|l| !l.contains("⇒ error")), "{text}");
    no_container_cgroups_left(&parent);
}

/// `podman run --network ns:/run/netns/NAME` with virtlab as its runtime:
/// podman writes the path into config.json's `linux.namespaces`, and the
/// container joins that network namespace (its interface and address)
/// instead of making one.
#[test]
fn podman_joins_a_network_namespace_by_path_through_virtlab() {
    let test = "podman_joins_a_network_namespace_by_path_through_virtlab";
    let Some(lab) = Both::new(test) else { return };
    if !ip_or_skip(test) {
        return;
    }
    let runtime = lab.virtlab_runtime();
    let parent = format!("virtlab-podman-netns-test-{}", std::process::id());
    let name = format!("vlp{}", std::process::id());
    let ip = |args: &[&str]| {
        let o = Command::new("ip").args(args).output().unwrap();
        assert!(o.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    let _ = Command::new("ip").args(["netns", "del", &name]).output();
    ip(&["netns", "add", &name]);
    // Deleted however the test ends.
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
        }
    }
    let _gone = Gone(name.clone());
    ip(&["-n", &name, "link", "add", "vp0", "type", "veth", "peer", "name", "vp1"]);
    ip(&["-n", &name, "addr", "add", "10.213.9.1/24", "dev", "vp0"]);
    let out = virtlab_compare::podman::podman(&lab.podman)
        .args(["run", "--rm", "--runtime"])
        .arg(&runtime)
        .args(["--cgroup-parent", &format!("/{parent}"), "--network", &format!("ns:/run/netns/{name}")])
        .args(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--security-opt", "seccomp=unconfined"])
        .args(["localhost/busybox:latest", "ip", "addr"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("vp0") && text.contains("10.213.9.1/24"), "{text}");
    no_container_cgroups_left(&parent);
}

/// Whether ip(8) runs (it answers `-V`, not `--version`); if not, a loud
/// skip, or a failure under VIRTLAB_REQUIRE_ROOT=1.
fn ip_or_skip(test: &str) -> bool {
    let ok = Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !common::must("VIRTLAB_REQUIRE_ROOT"),
            "{test}: ip(8) is required (VIRTLAB_REQUIRE_ROOT=1) but missing"
        );
        eprintln!("SKIPPED {test}: ip(8) is not installed (apt-get install iproute2)");
    }
    ok
}
