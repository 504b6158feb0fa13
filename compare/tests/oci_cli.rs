//! `virtlab oci`: runc's own bundle (`runc spec`, unchanged) run by
//! virtlab's launcher, the runtime's record of a running container, and
//! the errors for bundles it cannot run. Needs root, busybox-static and
//! runc (for `runc spec`); skips loudly otherwise, and fails under
//! VIRTLAB_REQUIRE_ROOT=1.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn new(test: &str) -> Option<Lab> {
        if !common::root_and_busybox(test)
            || !common::tool_or_skip(test, "runc", "apt-get install runc", &["VIRTLAB_REQUIRE_ROOT"])
        {
            return None;
        }
        let lab = Lab { dir: tempfile::Builder::new().prefix("virtlab-oci-").tempdir().unwrap() };
        let rootfs = lab.dir.path().join("rootfs");
        let out = lab.virtlab(&["container", "rootfs", rootfs.to_str().unwrap()]);
        assert!(out.status.success());
        Some(lab)
    }

    /// A bundle: `runc spec`'s config.json, changed by `edit`, over the
    /// busybox root file system.
    fn bundle(&self, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("runc").arg("spec").current_dir(&dir).output().unwrap();
        assert!(out.status.success(), "runc spec: {}", String::from_utf8_lossy(&out.stderr));
        let path = dir.join("config.json");
        let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config["root"]["path"] = self.dir.path().join("rootfs").to_str().unwrap().into();
        edit(&mut config);
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        dir
    }

    fn state_root(&self) -> String {
        self.dir.path().join("state").to_str().unwrap().to_string()
    }

    fn virtlab(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_virtlab")).args(args).stdin(Stdio::null()).output().unwrap()
    }

    /// `virtlab oci --root STATE ARGS...`.
    fn oci(&self, args: &[&str]) -> Output {
        let root = self.state_root();
        let mut all = vec!["oci", "--root", root.as_str()];
        all.extend(args);
        self.virtlab(&all)
    }
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn not_a_terminal(c: &mut serde_json::Value, args: &[&str]) {
    c["process"]["terminal"] = false.into();
    c["process"]["args"] = args.iter().map(|a| serde_json::Value::from(*a)).collect();
}

#[test]
fn runcs_own_bundle_runs_unchanged() {
    let Some(lab) = Lab::new("runcs_own_bundle_runs_unchanged") else { return };
    let bundle = lab.bundle("plain", |_| {});
    // runc's default process is `sh` on a terminal: script(1) gives it one.
    let mut script = Command::new("script")
        .arg("-qec")
        .arg(format!(
            "{} oci --root {} run --bundle {} t1",
            env!("CARGO_BIN_EXE_virtlab"),
            lab.state_root(),
            bundle.display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut input = script.stdin.take().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        input.write_all(b"echo on $(hostname); grep CapEff /proc/self/status; touch /x; exit 3\n").unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = script.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("on runc"), "the bundle's hostname: {text}");
    // runc's default set: CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE.
    assert!(text.contains("CapEff:\t0000000020000420"), "{text}");
    assert!(text.contains("Read-only file system"), "root.readonly: {text}");
    assert_eq!(String::from_utf8_lossy(&lab.oci(&["list"]).stdout).lines().count(), 1, "run removed its record");
}

#[test]
fn a_running_container_has_a_state_and_is_killed_and_deleted() {
    let Some(lab) = Lab::new("a_running_container_has_a_state_and_is_killed_and_deleted") else { return };
    let bundle = lab.bundle("sleeper", |c| not_a_terminal(c, &["sleep", "60"]));
    let pid_file = lab.dir.path().join("pid");
    let mut run = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["oci", "--root", &lab.state_root(), "run", "--bundle", bundle.to_str().unwrap()])
        .args(["--pid-file", pid_file.to_str().unwrap(), "s1"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let state = loop {
        let out = lab.oci(&["state", "s1"]);
        if out.status.success() {
            let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if s["status"] == "running" {
                break s;
            }
        }
        assert!(Instant::now() < deadline, "s1 never ran: {}", err(&out));
        std::thread::sleep(Duration::from_millis(20));
    };
    let pid = state["pid"].as_i64().unwrap();
    assert_eq!(state["id"], "s1");
    assert_eq!(state["bundle"], std::fs::canonicalize(&bundle).unwrap().to_str().unwrap());
    assert!(state["ociVersion"].as_str().unwrap().starts_with("1."));
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap().trim(), pid.to_string());
    let list = String::from_utf8_lossy(&lab.oci(&["list"]).stdout).into_owned();
    assert!(list.contains("s1") && list.contains("running"), "{list}");
    // A second container with the same ID, and a delete without --force,
    // are refused; the running one is left as it was.
    let again = lab.oci(&["run", "--bundle", bundle.to_str().unwrap(), "s1"]);
    assert_eq!(again.status.code(), Some(125));
    assert!(err(&again).contains("already exists"), "{}", err(&again));
    let delete = lab.oci(&["delete", "s1"]);
    assert_eq!(delete.status.code(), Some(125));
    assert!(err(&delete).contains("running"), "{}", err(&delete));
    assert!(lab.oci(&["kill", "s1", "KILL"]).status.success());
    assert_eq!(run.wait().unwrap().code(), Some(137), "run passes the status through");
    let gone = lab.oci(&["state", "s1"]);
    assert_eq!(gone.status.code(), Some(125));
    assert!(err(&gone).contains("does not exist"), "{}", err(&gone));
    assert_eq!(lab.oci(&["kill", "nosuch"]).status.code(), Some(125));
}

#[test]
fn bundles_it_cannot_run_are_refused_naming_the_field() {
    let Some(lab) = Lab::new("bundles_it_cannot_run_are_refused_naming_the_field") else { return };
    let run = |bundle: &Path| lab.oci(&["run", "--bundle", bundle.to_str().unwrap(), "bad"]);
    let empty = lab.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let cases: Vec<(PathBuf, &str)> = vec![
        (empty.clone(), "has no config.json"),
        (lab.bundle("version", |c| c["ociVersion"] = "2.0.0".into()), "runtime-spec 2.0.0"),
        (lab.bundle("root", |c| c["root"]["path"] = "nowhere".into()), "root.path"),
        (lab.bundle("domain", |c| c["domainname"] = "example.org".into()), "domainname"),
        (
            lab.bundle("hooks", |c| c["hooks"] = serde_json::json!({"createRuntime": [{"path": "/no/such/hook"}]})),
            "hooks.createRuntime[0].path",
        ),
        (
            lab.bundle("timeout", |c| {
                c["hooks"] = serde_json::json!({"poststop": [{"path": "/bin/sh", "timeout": 0}]})
            }),
            "hooks.poststop[0].timeout",
        ),
        (lab.bundle("terminal", |_| {}), "process.terminal"),
        // Namespaces are joined by path, but not a mount namespace (the
        // container's root is built in one of its own).
        (
            lab.bundle("join", |c| {
                let list = c["linux"]["namespaces"].as_array_mut().unwrap();
                let mount = list.iter_mut().find(|n| n["type"] == "mount").unwrap();
                mount["path"] = "/proc/1/ns/mnt".into();
            }),
            "joining a mount namespace is not supported",
        ),
    ];
    for (bundle, says) in cases {
        let out = run(&bundle);
        assert_eq!(out.status.code(), Some(125), "{}: {}", bundle.display(), err(&out));
        assert!(err(&out).contains(says), "{}: {}", bundle.display(), err(&out));
    }
    let broken = lab.bundle("broken", |_| {});
    std::fs::write(broken.join("config.json"), "{ not json").unwrap();
    assert!(err(&run(&broken)).contains("not a valid runtime-spec config.json"));
    // Nothing was left in the runtime's record.
    assert_eq!(String::from_utf8_lossy(&lab.oci(&["list", "--format", "json"]).stdout).trim(), "[]");
    // spec writes a config.json the runtime reads, and never overwrites one.
    let fresh = lab.dir.path().join("fresh");
    std::fs::create_dir_all(fresh.join("rootfs")).unwrap();
    assert!(lab.oci(&["spec", "--bundle", fresh.to_str().unwrap()]).status.success());
    assert_eq!(lab.oci(&["spec", "--bundle", fresh.to_str().unwrap()]).status.code(), Some(125));
    let features: serde_json::Value = serde_json::from_slice(&lab.oci(&["features"]).stdout).unwrap();
    assert!(features["linux"]["namespaces"].as_array().unwrap().contains(&"user".into()));
    for kind in ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"] {
        assert!(features["hooks"].as_array().unwrap().contains(&kind.into()), "{features}");
    }
    let systemd = lab.oci(&["--systemd-cgroup", "list"]);
    assert_eq!(systemd.status.code(), Some(125));
    assert!(err(&systemd).contains("cgroupfs"));
}

/// The command line of `/proc/PID/cmdline`, spaces between the words.
fn cmdline(pid: i64) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).replace('\0', " ")
}

#[test]
fn create_then_start_as_an_engine_drives_it() {
    let Some(lab) = Lab::new("create_then_start_as_an_engine_drives_it") else { return };
    let bundle = lab.bundle("engine", |c| not_a_terminal(c, &["sleep", "60"]));
    let pid_file = lab.dir.path().join("engine.pid");
    // As an engine calls it: through the `virtlab-runc` name, global flags first.
    let runc = lab.dir.path().join("virtlab-runc");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_virtlab"), &runc).unwrap();
    // The container's process inherits the runtime's standard streams
    // (an engine's pipes): files here, so that waiting for the runtime is
    // not waiting for the container.
    let runtime = |args: &[&str]| {
        let stderr = lab.dir.path().join("stderr");
        let status = Command::new(&runc)
            .args(["--root", &lab.state_root(), "--log", lab.dir.path().join("log.json").to_str().unwrap()])
            .args(["--log-format", "json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .status()
            .unwrap();
        Output { status, stdout: Vec::new(), stderr: std::fs::read(&stderr).unwrap() }
    };
    let out =
        runtime(&["create", "--bundle", bundle.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), "e1"]);
    assert!(out.status.success(), "{}", err(&out));
    let pid: i64 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let state: serde_json::Value = serde_json::from_slice(&lab.oci(&["state", "e1"]).stdout).unwrap();
    assert_eq!((state["status"].as_str(), state["pid"].as_i64()), (Some("created"), Some(pid)));
    // Created: its world is made, its program not yet started.
    assert!(cmdline(pid).contains("virtlab"), "{}", cmdline(pid));
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap(),
        std::fs::read_link("/proc/self/ns/pid").unwrap()
    );
    let cgroups: Vec<PathBuf> =
        serde_json::from_slice(&std::fs::read(Path::new(&lab.state_root()).join("e1/cgroup.json")).unwrap()).unwrap();
    assert!(!cgroups.is_empty() && cgroups.iter().all(|c| c.exists()), "{cgroups:?}");
    let twice = runtime(&["create", "--bundle", bundle.to_str().unwrap(), "e1"]);
    assert!(!twice.status.success() && err(&twice).contains("already exists"), "{}", err(&twice));
    assert!(std::fs::read_to_string(lab.dir.path().join("log.json")).unwrap().contains("\"level\":\"error\""));
    let started = runtime(&["start", "e1"]);
    assert!(started.status.success(), "{}", err(&started));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cmdline(pid).starts_with("sleep 60") {
        assert!(Instant::now() < deadline, "the program never ran: {}", cmdline(pid));
        std::thread::sleep(Duration::from_millis(10));
    }
    let state: serde_json::Value = serde_json::from_slice(&lab.oci(&["state", "e1"]).stdout).unwrap();
    assert_eq!(state["status"], "running");
    let again = runtime(&["start", "e1"]);
    assert!(!again.status.success() && err(&again).contains("only a created container"), "{}", err(&again));
    // Killed, it is stopped; delete then removes its record and cgroup.
    assert!(runtime(&["kill", "e1", "KILL"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state: serde_json::Value = serde_json::from_slice(&lab.oci(&["state", "e1"]).stdout).unwrap();
        if state["status"] == "stopped" {
            break;
        }
        assert!(Instant::now() < deadline, "never stopped: {state}");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(runtime(&["delete", "e1"]).status.success());
    assert!(cgroups.iter().all(|c| !c.exists()), "cgroups left: {cgroups:?}");
    assert_eq!(lab.oci(&["state", "e1"]).status.code(), Some(125));
    assert_eq!(runtime(&["start", "nosuch"]).status.code(), Some(125));
}

/// Waits until container `id`'s state says `status`.
fn wait_for_status(lab: &Lab, id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = lab.oci(&["state", id]);
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if state["status"] == status {
            return;
        }
        assert!(Instant::now() < deadline, "{id} never became {status}: {state} {}", err(&out));
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One fd received over `stream` (SCM_RIGHTS), and the message's bytes.
fn receive_fd(stream: &std::os::unix::net::UnixStream) -> (std::os::fd::OwnedFd, Vec<u8>) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut data = [0u8; 256];
    let mut space = nix::cmsg_space!(std::os::fd::RawFd);
    let mut iov = [std::io::IoSliceMut::new(&mut data)];
    let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty()).unwrap();
    let fd = msg
        .cmsgs()
        .unwrap()
        .find_map(|c| match c {
            ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
            _ => None,
        })
        .expect("the runtime sent no fd");
    let len = msg.bytes;
    // SAFETY: recvmsg(2) just installed this fd in this process; nothing else owns it.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    (fd, data[..len].to_vec())
}

#[test]
fn create_with_a_console_socket_hands_the_terminal_to_the_engine() {
    let Some(lab) = Lab::new("create_with_a_console_socket_hands_the_terminal_to_the_engine") else { return };
    let bundle = lab.bundle("console", |c| {
        c["process"]["args"] = serde_json::json!(["sh", "-c", "tty; ls /dev/console; read line; echo got $line"]);
    });
    let socket = lab.dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let (b, s) = (bundle.to_str().unwrap(), socket.to_str().unwrap());
    // A terminal without a socket, and a socket without a terminal: refused,
    // nothing left.
    let no_socket = lab.oci(&["create", "--bundle", b, "t0"]);
    assert_eq!(no_socket.status.code(), Some(125));
    assert!(err(&no_socket).contains("--console-socket"), "{}", err(&no_socket));
    let plain = lab.bundle("plain", |c| not_a_terminal(c, &["true"]));
    let no_terminal = lab.oci(&["create", "--bundle", plain.to_str().unwrap(), "--console-socket", s, "t0"]);
    assert_eq!(no_terminal.status.code(), Some(125));
    assert!(err(&no_terminal).contains("process.terminal"), "{}", err(&no_terminal));
    assert_eq!(String::from_utf8_lossy(&lab.oci(&["list", "--format", "json"]).stdout).trim(), "[]");
    let missing = lab.oci(&["create", "--bundle", b, "--console-socket", "/nonexistent/sock", "t0"]);
    assert_eq!(missing.status.code(), Some(125));
    assert!(err(&missing).contains("console socket"), "{}", err(&missing));
    assert_eq!(String::from_utf8_lossy(&lab.oci(&["list", "--format", "json"]).stdout).trim(), "[]");

    // As conmon does: listen, let the runtime create, take the master.
    let created = lab.oci(&["create", "--bundle", b, "--console-socket", s, "t1"]);
    assert!(created.status.success(), "{}", err(&created));
    let (stream, _) = listener.accept().unwrap();
    let (master, payload) = receive_fd(&stream);
    assert!(!payload.is_empty(), "runc names the fd in the message");
    assert!(nix::unistd::isatty(std::os::fd::AsRawFd::as_raw_fd(&master)).unwrap(), "the fd is a terminal");
    let mut term = std::fs::File::from(master);
    assert!(lab.oci(&["start", "t1"]).status.success());
    use std::io::{Read, Write};
    term.write_all(b"hello\n").unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    // EIO once the process, the slave's last holder, is gone.
    while let Ok(n @ 1..) = term.read(&mut buf) {
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("/dev/pts/0"), "the process's stdin is the container's own pty: {text}");
    assert!(text.contains("/dev/console"), "the slave is bound on /dev/console: {text}");
    assert!(text.contains("got hello"), "input reaches it through the master: {text}");
    wait_for_status(&lab, "t1", "stopped");
    assert!(lab.oci(&["delete", "t1"]).status.success());
}

#[test]
fn exec_adds_a_process_to_a_running_container() {
    let Some(lab) = Lab::new("exec_adds_a_process_to_a_running_container") else { return };
    let bundle = lab.bundle("execs", |c| not_a_terminal(c, &["sleep", "60"]));
    let runtime = |args: &[&str]| {
        let root = lab.state_root();
        let mut all = vec!["oci", "--root", root.as_str()];
        all.extend(args);
        // Files, not pipes: the container's process keeps what it inherits.
        let (out, errf) = (lab.dir.path().join("out"), lab.dir.path().join("err"));
        let status = Command::new(env!("CARGO_BIN_EXE_virtlab"))
            .args(&all)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&errf).unwrap())
            .status()
            .unwrap();
        Output { status, stdout: std::fs::read(&out).unwrap(), stderr: std::fs::read(&errf).unwrap() }
    };
    assert!(runtime(&["create", "--bundle", bundle.to_str().unwrap(), "x1"]).status.success());
    assert!(runtime(&["start", "x1"]).status.success());
    wait_for_status(&lab, "x1", "running");
    // A command after the ID: its output, its status, its PID namespace.
    let out = runtime(&["exec", "x1", "sh", "-c", "echo $$ $(hostname); exit 4"]);
    assert_eq!(out.status.code(), Some(4), "{}", err(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(words.len(), 2, "{text}");
    assert_ne!(words[0], "1", "not the first process");
    assert!(words[0].parse::<u32>().unwrap() < 100, "a PID of the container's namespace: {text}");
    assert_eq!(words[1], "runc", "the bundle's hostname");
    // As podman's conmon calls it: a process.json, detached, a pid file.
    let process = lab.dir.path().join("process.json");
    std::fs::write(
        &process,
        serde_json::to_vec(&serde_json::json!({
            "terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/tmp",
            "args": ["sh", "-c", "echo $GREETING $(pwd) > /dev/null"], "env": ["GREETING=hi", "PATH=/bin"],
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}
        }))
        .unwrap(),
    )
    .unwrap();
    let pid_file = lab.dir.path().join("exec.pid");
    let (p, f) = (process.to_str().unwrap(), pid_file.to_str().unwrap());
    let detached = runtime(&["exec", "--process", p, "--detach", "--pid-file", f, "x1"]);
    assert!(detached.status.success(), "{}", err(&detached));
    assert!(std::fs::read_to_string(&pid_file).unwrap().trim().parse::<u32>().is_ok());
    let attached = runtime(&["exec", "--process", p, "x1"]);
    assert_eq!(attached.status.code(), Some(0), "{}", err(&attached));
    // More capabilities than the container has are refused.
    std::fs::write(
        &process,
        serde_json::to_vec(&serde_json::json!({
            "user": {"uid": 0, "gid": 0}, "cwd": "/", "args": ["true"],
            "capabilities": {"bounding": ["CAP_SYS_ADMIN"], "effective": ["CAP_SYS_ADMIN"], "permitted": ["CAP_SYS_ADMIN"]}
        }))
        .unwrap(),
    )
    .unwrap();
    let beyond = runtime(&["exec", "--process", p, "x1"]);
    assert_eq!(beyond.status.code(), Some(125));
    assert!(err(&beyond).contains("bounding set"), "{}", err(&beyond));
    // The shell's statuses, and the errors of a bad call.
    assert_eq!(runtime(&["exec", "x1", "/no/such/program"]).status.code(), Some(127));
    let tty = runtime(&["exec", "-t", "-d", "x1", "sh"]);
    assert_eq!(tty.status.code(), Some(125));
    assert!(err(&tty).contains("--console-socket"), "{}", err(&tty));
    assert_eq!(runtime(&["exec", "nosuch", "true"]).status.code(), Some(125));
    assert!(runtime(&["delete", "--force", "x1"]).status.success());
    let stopped = runtime(&["exec", "x1", "true"]);
    assert_eq!(stopped.status.code(), Some(125));
}

/// `--explain`: a line per call in ROOT/explain.log, the calls after
/// `create` included without the flag (engines pass their runtime flags to
/// some calls only), nothing added to what the runtime prints, and
/// `oci explain` prints the trace.
#[test]
fn explain_traces_each_call_of_a_containers_life() {
    let Some(lab) = Lab::new("explain_traces_each_call_of_a_containers_life") else { return };
    let bundle = lab.bundle("explained", |c| not_a_terminal(c, &["true"]));
    let none = lab.oci(&["explain"]);
    assert!(!none.status.success() && err(&none).contains("--runtime-flag explain"), "{}", err(&none));
    // The container's process inherits the runtime's streams: a file, so
    // that waiting for `create` is not waiting for the container.
    let stderr = lab.dir.path().join("explain-create.err");
    let status = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["oci", "--root", &lab.state_root(), "--explain", "create", "--bundle", bundle.to_str().unwrap(), "x1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "{}", std::fs::read_to_string(&stderr).unwrap());
    let started = lab.oci(&["start", "x1"]);
    assert!(started.status.success(), "{}", err(&started));
    wait_for_status(&lab, "x1", "stopped");
    // What the runtime prints is the engine's: state's JSON and nothing else.
    let state = lab.oci(&["state", "x1"]);
    let json: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
    assert_eq!(json["status"], "stopped");
    assert!(lab.oci(&["delete", "x1"]).status.success());
    assert_eq!(lab.oci(&["--explain", "start", "nosuch"]).status.code(), Some(125));
    let shown = lab.oci(&["explain"]);
    assert!(shown.status.success(), "{}", err(&shown));
    let text = String::from_utf8(shown.stdout).unwrap();
    assert_eq!(text, std::fs::read_to_string(Path::new(&lab.state_root()).join("explain.log")).unwrap());
    let lines: Vec<&str> = text.lines().collect();
    // create, start, the state calls (waiting, then the one above), delete, the error.
    assert!(lines.len() >= 6, "{text}");
    let me = format!(" {} → ", std::process::id());
    let mut expected = vec![("create --bundle ", "created, pid "), ("start x1", "started")];
    expected.extend(std::iter::repeat_n(("state x1", "status "), lines.len() - 5));
    expected.extend([
        ("state x1", "status stopped, pid "),
        ("delete x1", "deleted"),
        ("start nosuch", "error: container nosuch does not exist"),
    ]);
    for (line, (call, outcome)) in lines.iter().zip(expected) {
        let (head, tail) = line.split_once(" ⇒ ").unwrap();
        let (callers, called) = head.rsplit_once(" → ").unwrap();
        assert!(format!("{callers} → ").ends_with(&me), "{line}");
        assert!(called.starts_with(call), "{line}");
        assert!(tail.starts_with(outcome) && tail.ends_with(" ms)"), "{line}");
        assert!(line.as_bytes()[2] == b':' && line.as_bytes()[8] == b'.', "{line}");
    }
    assert!(lines[0].contains(" x1 ⇒ "), "{}", lines[0]);
}

/// A hook script: appends `KIND STATUS PID MNT-NS CWD-HAS-PROC` to the
/// log file `$2`, reading status and pid from the state JSON on stdin. Run
/// by the host's /bin/sh, or by busybox's inside the root.
const HOOK: &str = r#"#!/bin/sh
read -r state
status=$(echo "$state" | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p')
pid=$(echo "$state" | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
proc=no; [ -e proc/self/status ] && proc=proc
echo "$1 $status $pid $(readlink /proc/self/ns/mnt) $proc" >> "$2"
"#;

/// A bundle whose every kind of hook logs to `LOG` (a host directory,
/// bound at /hooklog inside): the program (`sh -c 'echo program ...'`)
/// too. The log's path on the host.
fn hooked_bundle(lab: &Lab, name: &str) -> (PathBuf, PathBuf) {
    let logs = lab.dir.path().join(format!("{name}-log"));
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("log");
    let script = lab.dir.path().join("hook.sh");
    std::fs::write(&script, HOOK).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let rootfs = lab.dir.path().join("rootfs");
    std::fs::copy(&script, rootfs.join("hook.sh")).unwrap();
    std::fs::create_dir_all(rootfs.join("hooklog")).unwrap();
    let host = |kind: &str| serde_json::json!({"path": script, "args": ["hook.sh", kind, log]});
    let bundle = lab.bundle(name, |c| {
        not_a_terminal(c, &["sh", "-c", "echo program >> /hooklog/log"]);
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/hooklog", "type": "bind", "source": logs, "options": ["rbind", "rw"]
        }));
        c["hooks"] = serde_json::json!({
            "prestart": [host("prestart")],
            "createRuntime": [host("createRuntime")],
            "createContainer": [host("createContainer")],
            "startContainer": [{"path": "/hook.sh", "args": ["hook.sh", "startContainer", "/hooklog/log"], "env": ["PATH=/bin"]}],
            "poststart": [host("poststart")],
            "poststop": [host("poststop")],
        });
    });
    (bundle, log)
}

/// The log of [`hooked_bundle`] in the order the hooks ran, checked: each
/// kind once, in the lifecycle's order, with the spec's status, one host
/// PID, the host's mount namespace for the runtime's hooks and the
/// container's for createContainer (before pivot_root: its /proc under the
/// rootfs) and startContainer.
fn check_hook_log(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap();
    let host_ns = std::fs::read_link("/proc/self/ns/mnt").unwrap().to_string_lossy().into_owned();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    let hooks: Vec<&Vec<&str>> = lines.iter().filter(|l| l[0] != "program").collect();
    let kinds: Vec<&str> = hooks.iter().map(|l| l[0]).collect();
    assert_eq!(
        kinds,
        ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "{text}"
    );
    let statuses: Vec<&str> = hooks.iter().map(|l| l[1]).collect();
    assert_eq!(statuses, ["creating", "creating", "creating", "created", "running", "stopped"], "{text}");
    let pid = hooks[0][2];
    assert!(pid.parse::<u32>().unwrap() > 1, "{text}");
    assert!(hooks.iter().all(|l| l[2] == pid), "one host PID for the container: {text}");
    for l in &hooks {
        let inside = l[0] == "createContainer" || l[0] == "startContainer";
        assert_eq!(l[3] != host_ns, inside, "the mount namespace of {}: {text}", l[0]);
        assert_eq!(l[4] == "proc", inside, "the container's /proc where {} runs: {text}", l[0]);
    }
    let program = lines.iter().position(|l| l[0] == "program").expect("the program ran");
    let started = lines.iter().position(|l| l[0] == "startContainer").unwrap();
    assert!(started < program, "startContainer before the program: {text}");
}

#[test]
fn hooks_run_at_their_moments_in_order() {
    let Some(lab) = Lab::new("hooks_run_at_their_moments_in_order") else { return };
    // `run`: create, start, wait, delete in one call.
    let (bundle, log) = hooked_bundle(&lab, "hooked-run");
    let out = lab.oci(&["run", "--bundle", bundle.to_str().unwrap(), "h1"]);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    check_hook_log(&log);

    // The engine's way: create, start, (the program ends), delete, traced.
    let (bundle, log) = hooked_bundle(&lab, "hooked-steps");
    let stderr = lab.dir.path().join("hooked-create.err");
    let status = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["oci", "--root", &lab.state_root(), "--explain", "create", "--bundle", bundle.to_str().unwrap(), "h2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "{}", std::fs::read_to_string(&stderr).unwrap());
    let kinds = |text: &str| text.lines().map(|l| l.split(' ').next().unwrap_or("").to_string()).collect::<Vec<_>>();
    let so_far = std::fs::read_to_string(&log).unwrap();
    assert_eq!(kinds(&so_far), ["prestart", "createRuntime", "createContainer"], "create runs its hooks: {so_far}");
    let started = lab.oci(&["start", "h2"]);
    assert!(started.status.success(), "{}", err(&started));
    wait_for_status(&lab, "h2", "stopped");
    let so_far = std::fs::read_to_string(&log).unwrap();
    assert!(!so_far.contains("poststop"), "not before delete: {so_far}");
    let deleted = lab.oci(&["delete", "h2"]);
    assert!(deleted.status.success(), "{}", err(&deleted));
    assert!(!Path::new(&lab.state_root()).join("h2").exists());
    check_hook_log(&log);
    let trace = std::fs::read_to_string(Path::new(&lab.state_root()).join("explain.log")).unwrap();
    for kind in ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"] {
        let line = format!("hook hooks.{kind}[0] ");
        assert_eq!(trace.lines().filter(|l| l.contains(&line)).count(), 1, "one line for {kind}: {trace}");
    }
}

/// The leftovers of a container whose cgroupsPath is `path`: its cgroup
/// in any hierarchy.
fn cgroup_left(path: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut bases = vec![root.to_path_buf()];
    bases.extend(std::fs::read_dir(root).into_iter().flatten().flatten().map(|e| e.path()));
    bases.into_iter().map(|b| b.join(path)).filter(|p| p.exists()).collect()
}

#[test]
fn a_failing_or_slow_hook_fails_create_and_leaves_nothing() {
    let Some(lab) = Lab::new("a_failing_or_slow_hook_fails_create_and_leaves_nothing") else { return };
    let pid_file = lab.dir.path().join("container-pid");
    let hook_pid = lab.dir.path().join("hook-pid");
    let cases = [
        (
            "failing",
            // Notes the container's PID from the state, then fails.
            serde_json::json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c",
                format!("sed -n 's/.*\"pid\":\\([0-9]*\\).*/\\1/p' > {}; echo broken network >&2; exit 3", pid_file.display())]}]}),
            "exited with status 3: broken network",
            "hooks.createRuntime[0]",
        ),
        (
            "slow",
            serde_json::json!({"createRuntime": [{"path": "/bin/sh", "timeout": 1, "args": ["sh", "-c",
                format!("sed -n 's/.*\"pid\":\\([0-9]*\\).*/\\1/p' > {}; echo $$ > {}; exec sleep 600", pid_file.display(), hook_pid.display())]}]}),
            "ran past its timeout of 1 s and was killed",
            "hooks.createRuntime[0]",
        ),
        (
            "in-the-container",
            serde_json::json!({"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c",
                format!("sed -n 's/.*\"pid\":\\([0-9]*\\).*/\\1/p' > {}; exit 5", pid_file.display())]}]}),
            "exited with status 5",
            "hooks.createContainer[0]",
        ),
    ];
    for (name, hooks, says, field) in cases {
        let cgroup = format!("virtlab-hooktest-{}-{name}", std::process::id());
        let bundle = lab.bundle(name, |c| {
            not_a_terminal(c, &["true"]);
            c["hooks"] = hooks.clone();
            c["linux"]["cgroupsPath"] = cgroup.clone().into();
        });
        let log = lab.dir.path().join(format!("{name}.log"));
        let root = lab.state_root();
        let out = lab.virtlab(&[
            "oci",
            "--root",
            &root,
            "--log",
            log.to_str().unwrap(),
            "create",
            "--bundle",
            bundle.to_str().unwrap(),
            name,
        ]);
        assert_eq!(out.status.code(), Some(125), "{name}: {}", err(&out));
        assert!(err(&out).contains(says) && err(&out).contains(field), "{name}: {}", err(&out));
        assert!(std::fs::read_to_string(&log).unwrap().contains(field), "{name}: --log has the failure");
        // Nothing left: no record, no cgroup, no process (nor the hook's).
        assert!(!Path::new(&root).join(name).exists(), "{name}: the record is gone");
        assert!(lab.oci(&["state", name]).status.code() == Some(125));
        assert_eq!(cgroup_left(&cgroup), Vec::<PathBuf>::new(), "{name}: the cgroup is gone");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let pid: u32 = pid.trim().parse().unwrap_or_else(|_| panic!("{name}: the hook saw a pid: {pid:?}"));
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "{name}: the container's process is gone");
        std::fs::remove_file(&pid_file).unwrap();
    }
    let pid = std::fs::read_to_string(&hook_pid).unwrap();
    assert!(!Path::new(&format!("/proc/{}", pid.trim())).exists(), "the slow hook was killed");
}

#[test]
fn a_failing_start_container_hook_stops_the_container_and_poststop_failures_only_warn() {
    let test = "a_failing_start_container_hook_stops_the_container_and_poststop_failures_only_warn";
    let Some(lab) = Lab::new(test) else { return };
    let marker = lab.dir.path().join("program-ran");
    let bundle = lab.bundle("start-fails", |c| {
        not_a_terminal(c, &["true"]);
        c["hooks"] = serde_json::json!({
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 7"]}],
            "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", "echo cleanup failed >&2; exit 2"]},
                         {"path": "/bin/sh", "args": ["sh", "-c", format!("echo second > {}", marker.display())]}],
        });
    });
    let stderr = lab.dir.path().join("start-fails.err");
    let status = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["oci", "--root", &lab.state_root(), "create", "--bundle", bundle.to_str().unwrap(), "sf"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "{}", std::fs::read_to_string(&stderr).unwrap());
    let started = lab.oci(&["start", "sf"]);
    assert_eq!(started.status.code(), Some(125), "{}", err(&started));
    assert!(
        err(&started).contains("hooks.startContainer[0]") && err(&started).contains("exited with status 7"),
        "{}",
        err(&started)
    );
    let state: serde_json::Value = serde_json::from_slice(&lab.oci(&["state", "sf"]).stdout).unwrap();
    assert_eq!(state["status"], "stopped");
    let deleted = lab.oci(&["delete", "sf"]);
    assert!(deleted.status.success(), "a poststop failure is a warning: {}", err(&deleted));
    assert!(err(&deleted).contains("warning") && err(&deleted).contains("cleanup failed"), "{}", err(&deleted));
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "second", "the next poststop hook ran");
    assert!(!Path::new(&lab.state_root()).join("sf").exists());
}
