//! `virtlab oci` and the namespaces of others: a bundle's
//! `linux.namespaces[].path` (a network namespace from `ip netns add`, the
//! uts and pid namespaces of another container), and what an engine adds
//! to a process: `exec --cap`, `--preserve-fds`, signals forwarded by a
//! foreground `exec`. Needs root, busybox-static, runc (for `runc spec`)
//! and ip(8); skips loudly otherwise, and fails under VIRTLAB_REQUIRE_ROOT=1.

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
        let lab = Lab { dir: tempfile::Builder::new().prefix("virtlab-ocijoin-").tempdir().unwrap() };
        let rootfs = lab.dir.path().join("rootfs");
        let out = Command::new(env!("CARGO_BIN_EXE_virtlab"))
            .args(["container", "rootfs", rootfs.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", err(&out));
        Some(lab)
    }

    /// `runc spec`'s bundle, without a terminal, running `args`, changed
    /// by `edit`.
    fn bundle(&self, name: &str, args: &[&str], edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("runc").arg("spec").current_dir(&dir).output().unwrap();
        assert!(out.status.success(), "runc spec: {}", err(&out));
        let path = dir.join("config.json");
        let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        c["root"]["path"] = self.dir.path().join("rootfs").to_str().unwrap().into();
        c["process"]["terminal"] = false.into();
        c["process"]["args"] = args.iter().map(|a| serde_json::Value::from(*a)).collect();
        edit(&mut c);
        std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
        dir
    }

    /// `virtlab oci --root STATE ARGS...` through `sh -c`, with `fds`
    /// (shell redirections such as `3>FILE`) opened for it; stdout and
    /// stderr in files (the container's process keeps what it inherits).
    fn oci_with(&self, fds: &str, args: &[&str]) -> Output {
        let root = self.dir.path().join("state");
        let mut line = format!("exec {} oci --root {}", env!("CARGO_BIN_EXE_virtlab"), root.display());
        for a in args {
            line.push_str(&format!(" '{}'", a.replace('\'', r"'\''")));
        }
        line.push(' ');
        line.push_str(fds);
        let (out, errf) = (self.dir.path().join("out"), self.dir.path().join("err"));
        let status = Command::new("sh")
            .args(["-c", &line])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&errf).unwrap())
            .status()
            .unwrap();
        Output { status, stdout: std::fs::read(&out).unwrap(), stderr: std::fs::read(&errf).unwrap() }
    }

    fn oci(&self, args: &[&str]) -> Output {
        self.oci_with("", args)
    }

    /// The host PID of container `id`, from its state.
    fn pid(&self, id: &str) -> i64 {
        let state: serde_json::Value = serde_json::from_slice(&self.oci(&["state", id]).stdout).unwrap();
        state["pid"].as_i64().unwrap()
    }
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A network namespace from `ip netns add`, deleted on drop.
struct NetNs(String);

impl NetNs {
    fn new(name: &str) -> NetNs {
        let ok = |args: &[&str]| {
            let o = Command::new("ip").args(args).output().unwrap();
            assert!(o.status.success(), "ip {args:?}: {}", err(&o));
        };
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ok(&["netns", "add", name]);
        let ns = NetNs(name.to_string());
        // An interface and an address only this namespace has (a veth
        // pair: the dummy driver is not in every kernel).
        ok(&["-n", name, "link", "add", "vl0", "type", "veth", "peer", "name", "vl1"]);
        ok(&["-n", name, "addr", "add", "10.213.7.1/24", "dev", "vl0"]);
        ns
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
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

/// Sets the `path` of the bundle's namespace of type `typ`.
fn join(c: &mut serde_json::Value, typ: &str, path: &str) {
    let list = c["linux"]["namespaces"].as_array_mut().unwrap();
    match list.iter_mut().find(|n| n["type"] == typ) {
        Some(n) => n["path"] = path.into(),
        None => list.push(serde_json::json!({"type": typ, "path": path})),
    }
}

#[test]
fn a_network_namespace_joined_by_path_is_the_containers() {
    let test = "a_network_namespace_joined_by_path_is_the_containers";
    let Some(lab) = Lab::new(test) else { return };
    if !ip_or_skip(test) {
        return;
    }
    let ns = NetNs::new(&format!("vlj{}", std::process::id()));
    let bundle = lab.bundle("net", &["sh", "-c", "ip addr"], |c| join(c, "network", &ns.path()));
    let o = lab.oci(&["--explain", "run", "--bundle", bundle.to_str().unwrap(), "n1"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    assert!(text.contains("vl0") && text.contains("10.213.7.1/24"), "the namespace's interface: {text}");
    // The trace names the join.
    let trace = std::fs::read_to_string(lab.dir.path().join("state/explain.log")).unwrap();
    assert!(trace.contains(&format!("join net namespace {}", ns.path())), "{trace}");
    // A new network namespace has only its loopback.
    let own = lab.bundle("own", &["sh", "-c", "ip addr"], |_| {});
    let o = lab.oci(&["run", "--bundle", own.to_str().unwrap(), "n2"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(!out(&o).contains("vl0"), "{}", out(&o));
}

#[test]
fn uts_and_pid_namespaces_joined_from_another_container() {
    let Some(lab) = Lab::new("uts_and_pid_namespaces_joined_from_another_container") else { return };
    let first = lab.bundle("first", &["sleep", "60"], |c| c["hostname"] = "first".into());
    let o = lab.oci(&["create", "--bundle", first.to_str().unwrap(), "j1"]);
    assert!(o.status.success(), "{}", err(&o));
    let pid = lab.pid("j1");
    let second = lab.bundle("second", &["sh", "-c", "echo $(hostname) $$"], |c| {
        c.as_object_mut().unwrap().remove("hostname");
        join(c, "uts", &format!("/proc/{pid}/ns/uts"));
        join(c, "pid", &format!("/proc/{pid}/ns/pid"));
    });
    let o = lab.oci(&["run", "--bundle", second.to_str().unwrap(), "j2"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"first"), "the first container's hostname: {text}");
    assert_ne!(words.get(1), Some(&"1"), "the first container's PID namespace, whose PID 1 it is not: {text}");
    assert!(lab.oci(&["delete", "--force", "j1"]).status.success());
}

#[test]
fn a_user_namespace_joined_by_path_keeps_its_maps() {
    let Some(lab) = Lab::new("a_user_namespace_joined_by_path_keeps_its_maps") else { return };
    // Only /proc and /dev: enough for both, in a user namespace.
    let keep_few = |c: &mut serde_json::Value| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] == "/proc" || m["destination"] == "/dev");
    };
    let first = lab.bundle("userfirst", &["sleep", "60"], |c| {
        keep_few(c);
        c["hostname"] = "mapped".into();
        c["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "user"}));
        let m = serde_json::json!([{"containerID": 0, "hostID": 231072, "size": 65536}]);
        c["linux"]["uidMappings"] = m.clone();
        c["linux"]["gidMappings"] = m;
    });
    let root = lab.dir.path().join("state");
    let mut run = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["oci", "--root", root.to_str().unwrap(), "run", "--bundle", first.to_str().unwrap(), "u1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid = loop {
        let state: serde_json::Value = serde_json::from_slice(&lab.oci(&["state", "u1"]).stdout).unwrap_or_default();
        if state["status"] == "running" {
            break state["pid"].as_i64().unwrap();
        }
        assert!(Instant::now() < deadline, "u1 never ran: {state}");
        std::thread::sleep(Duration::from_millis(10));
    };
    let second = lab.bundle("usersecond", &["sh", "-c", "id -u; cat /proc/self/uid_map; hostname"], |c| {
        keep_few(c);
        c.as_object_mut().unwrap().remove("hostname");
        join(c, "user", &format!("/proc/{pid}/ns/user"));
        join(c, "uts", &format!("/proc/{pid}/ns/uts"));
    });
    let o = lab.oci(&["run", "--bundle", second.to_str().unwrap(), "u2"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"0"), "root of the joined namespace: {text}");
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(lines.get(1).map(|l| l.split_whitespace().collect::<Vec<_>>()), Some(map.split_whitespace().collect()));
    assert_eq!(lines.get(2), Some(&"mapped"), "{text}");
    // Inside that user namespace, the host's network namespace is out of reach.
    let beyond = lab.bundle("userbeyond", &["true"], |c| {
        keep_few(c);
        c.as_object_mut().unwrap().remove("hostname");
        join(c, "user", &format!("/proc/{pid}/ns/user"));
        join(c, "network", "/proc/self/ns/net"); // the launcher's own: the host's
    });
    let o = lab.oci(&["run", "--bundle", beyond.to_str().unwrap(), "u3"]);
    assert_eq!(o.status.code(), Some(125), "{}", err(&o));
    assert!(err(&o).contains("holds no privilege"), "{}", err(&o));
    assert!(lab.oci(&["delete", "--force", "u1"]).status.success());
    let _ = run.wait();
}

#[test]
fn namespace_paths_that_cannot_be_joined_are_refused() {
    let Some(lab) = Lab::new("namespace_paths_that_cannot_be_joined_are_refused") else { return };
    let cases = [
        ("network", "/run/netns/virtlab-none-such".to_string(), "linux.namespaces[1].path: cannot open"),
        ("network", "/proc/self/ns/uts".to_string(), "is a uts namespace, not a net one"),
        ("network", "/etc/hostname".to_string(), "is not a namespace file"),
        ("mount", "/proc/1/ns/mnt".to_string(), "joining a mount namespace is not supported"),
        ("ipc", "ipc-relative".to_string(), "not an absolute path"),
    ];
    for (i, (typ, path, says)) in cases.iter().enumerate() {
        let bundle = lab.bundle(&format!("bad{i}"), &["true"], |c| join(c, typ, path));
        let o = lab.oci(&["run", "--bundle", bundle.to_str().unwrap(), "bad"]);
        assert_eq!(o.status.code(), Some(125), "{path}: {}", err(&o));
        assert!(err(&o).contains(says), "{path}: {}", err(&o));
        let o = lab.oci(&["create", "--bundle", bundle.to_str().unwrap(), "bad"]);
        assert_eq!(o.status.code(), Some(125), "{path}: {}", err(&o));
    }
    let maps = lab.bundle("maps", &["true"], |c| {
        join(c, "user", "/proc/1/ns/user");
        let m = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["uidMappings"] = m.clone();
        c["linux"]["gidMappings"] = m;
    });
    let o = lab.oci(&["run", "--bundle", maps.to_str().unwrap(), "bad"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(err(&o).contains("linux.uidMappings"), "{}", err(&o));
    // Nothing was left in the runtime's record.
    assert_eq!(out(&lab.oci(&["list", "--format", "json"])).trim(), "[]");
}

#[test]
fn exec_adds_capabilities_passes_fds_and_forwards_signals() {
    let Some(lab) = Lab::new("exec_adds_capabilities_passes_fds_and_forwards_signals") else { return };
    let bundle = lab.bundle("execs", &["sleep", "60"], |_| {});
    assert!(lab.oci(&["create", "--bundle", bundle.to_str().unwrap(), "e1"]).status.success());
    assert!(lab.oci(&["start", "e1"]).status.success());
    // --cap: CAP_NET_ADMIN (bit 12), beyond runc's default set, as runc allows.
    let caps = |args: &[&str]| {
        let mut all = vec!["exec"];
        all.extend(args);
        all.extend(["e1", "grep", "CapEff", "/proc/self/status"]);
        let o = lab.oci(&all);
        assert!(o.status.success(), "{}", err(&o));
        u64::from_str_radix(out(&o).split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(caps(&[]) & (1 << 12), 0);
    assert_ne!(caps(&["--cap", "CAP_NET_ADMIN"]) & (1 << 12), 0);
    let bogus = lab.oci(&["exec", "--cap", "CAP_NOTHING", "e1", "true"]);
    assert_eq!(bogus.status.code(), Some(125));
    assert!(err(&bogus).contains("--cap CAP_NOTHING"), "{}", err(&bogus));
    // --preserve-fds 2: fds 3 and 4 of the caller are the process's 3 and 4.
    let (w, r) = (lab.dir.path().join("written"), lab.dir.path().join("read"));
    std::fs::write(&r, "from the host\n").unwrap();
    let fds = format!("3>{} 4<{}", w.display(), r.display());
    let o = lab.oci_with(&fds, &["exec", "--preserve-fds", "2", "e1", "sh", "-c", "cat <&4 >&3; ls /proc/self/fd"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(std::fs::read_to_string(&w).unwrap(), "from the host\n");
    let closed = lab.oci(&["exec", "--preserve-fds", "1", "e1", "true"]);
    assert_eq!(closed.status.code(), Some(125));
    assert!(err(&closed).contains("fd 3 is not open"), "{}", err(&closed));
    // Without --preserve-fds the caller's fds stay out.
    let o = lab.oci_with(&fds, &["exec", "e1", "sh", "-c", "echo leaked >&3"]);
    assert_ne!(o.status.code(), Some(0), "fd 3 reached the process");
    // SIGTERM to a foreground exec reaches the process: its trap's status.
    let ready = lab.dir.path().join("ready");
    let root = lab.dir.path().join("state");
    let mut exec = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["oci", "--root", root.to_str().unwrap(), "exec", "e1", "sh", "-c"])
        .arg("trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&ready).unwrap())
        .spawn()
        .unwrap();
    wait_for_file(&ready, "ready");
    let pid = nix::unistd::Pid::from_raw(exec.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(exec.wait().unwrap().code(), Some(42));
    // Killed by a signal it does not catch: 128+N.
    std::fs::remove_file(&ready).unwrap();
    let mut exec = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["oci", "--root", root.to_str().unwrap(), "exec", "e1", "sh", "-c", "echo ready; exec sleep 60"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&ready).unwrap())
        .spawn()
        .unwrap();
    wait_for_file(&ready, "ready");
    let pid = nix::unistd::Pid::from_raw(exec.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).unwrap();
    assert_eq!(exec.wait().unwrap().code(), Some(128 + libc::SIGUSR1));
    assert!(lab.oci(&["delete", "--force", "e1"]).status.success());
}

#[test]
fn run_and_create_pass_preserved_fds() {
    let Some(lab) = Lab::new("run_and_create_pass_preserved_fds") else { return };
    let w = lab.dir.path().join("written");
    let fds = format!("3>{}", w.display());
    let bundle = lab.bundle("fds", &["sh", "-c", "echo run >&3"], |_| {});
    let o = lab.oci_with(&fds, &["run", "--preserve-fds", "1", "--bundle", bundle.to_str().unwrap(), "f1"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(std::fs::read_to_string(&w).unwrap(), "run\n");
    let o = lab.oci_with(&fds, &["run", "--bundle", bundle.to_str().unwrap(), "f2"]);
    assert_ne!(o.status.code(), Some(0), "fd 3 reached the process without --preserve-fds");
    let created = lab.bundle("created", &["sh", "-c", "echo created >&3"], |_| {});
    let o = lab.oci_with(&fds, &["create", "--preserve-fds", "1", "--bundle", created.to_str().unwrap(), "f3"]);
    assert!(o.status.success(), "{}", err(&o));
    let pid = lab.pid("f3");
    assert!(lab.oci(&["start", "f3"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(std::fs::read_to_string(&w).unwrap(), "created\n");
    let _ = lab.oci(&["delete", "--force", "f3"]);
    let o = lab.oci(&["run", "--preserve-fds", "3", "--bundle", bundle.to_str().unwrap(), "f4"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(err(&o).contains("--preserve-fds 3"), "{}", err(&o));
}

#[test]
fn a_foreground_run_forwards_signals_too() {
    let Some(lab) = Lab::new("a_foreground_run_forwards_signals_too") else { return };
    let script = "trap 'exit 42' TERM; trap 'echo usr1' USR1; echo ready; while :; do sleep 0.1; done";
    let bundle = lab.bundle("trap", &["sh", "-c", script], |_| {});
    let ready = lab.dir.path().join("ready");
    let root = lab.dir.path().join("state");
    let mut run = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["oci", "--root", root.to_str().unwrap(), "run", "--bundle", bundle.to_str().unwrap(), "r1"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&ready).unwrap())
        .spawn()
        .unwrap();
    wait_for_file(&ready, "ready");
    let pid = nix::unistd::Pid::from_raw(run.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).unwrap();
    wait_for_file(&ready, "usr1");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(run.wait().unwrap().code(), Some(42));
}

/// Waits until `path` holds `text`.
fn wait_for_file(path: &Path, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(path).unwrap_or_default().contains(text) {
        assert!(Instant::now() < deadline, "{} never said {text}", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `create` of a container in a user namespace of its own: its process is
/// an unprivileged host uid, and still waits for `start` and then runs.
#[test]
fn a_container_in_its_own_user_namespace_is_created_then_started() {
    let Some(lab) = Lab::new("a_container_in_its_own_user_namespace_is_created_then_started") else { return };
    let bundle = lab.bundle("usercreate", &["sleep", "60"], |c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] == "/proc" || m["destination"] == "/dev");
        c["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "user"}));
        let m = serde_json::json!([{"containerID": 0, "hostID": 231072, "size": 65536}]);
        c["linux"]["uidMappings"] = m.clone();
        c["linux"]["gidMappings"] = m;
    });
    let o = lab.oci(&["create", "--bundle", bundle.to_str().unwrap(), "uc"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let state: serde_json::Value = serde_json::from_slice(&lab.oci(&["state", "uc"]).stdout).unwrap();
    assert_eq!(state["status"], "created", "{state}");
    let pid = lab.pid("uc");
    let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(uid_map.split_whitespace().collect::<Vec<_>>(), ["0", "231072", "65536"]);
    let o = lab.oci(&["start", "uc"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let state: serde_json::Value = serde_json::from_slice(&lab.oci(&["state", "uc"]).stdout).unwrap();
    assert_eq!(state["status"], "running", "{state}");
    assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap().trim(), "sleep");
    assert!(lab.oci(&["delete", "--force", "uc"]).status.success());
}
