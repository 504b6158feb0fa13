//! Containers with a life of their own, through the binary: `run -d`,
//! `ps`, `logs`, `stop`, `kill`, `wait`, `rm`, `system events`, and what a
//! killed monitor leaves. Each test has a store of its own. Needs root and
//! busybox-static; skips loudly otherwise, and fails under
//! VIRTLAB_REQUIRE_ROOT=1.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

mod common;

use std::path::{Path, PathBuf};
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
        common::Store::new(test, "virtlab-lifecycle-").map(|s| Lab { s })
    }

    fn ps_status(&self, name: &str) -> String {
        let out = self.v(&["ps"], &["-a", "--format", "{{.Names}}|{{.Status}}"]);
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines().find_map(|l| l.strip_prefix(&format!("{name}|")).map(str::to_string)).unwrap_or_default()
    }

    fn until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "waited 20 s for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// No container of the store is left as a process, and no cgroup or
    /// mount of ours is left.
    fn assert_nothing_left(&self) {
        let needle = self.store().display().to_string();
        let left: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(&needle) && c.contains("monitor"))
            .collect();
        assert!(left.is_empty(), "monitors left: {left:?}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&needle), "a mount under the store was left");
        let containers = self.store().join("containers");
        let dirs: Vec<_> = std::fs::read_dir(&containers)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(dirs.is_empty(), "container directories left: {dirs:?}");
    }
}

/// The PID in a container's `monitor.pid` (`PID START BOOT`).
fn monitor_pid(dir: &Path) -> i32 {
    let text = std::fs::read_to_string(dir.join("monitor.pid")).unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn err(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_detached_container_is_up_logs_stops_and_is_removed() {
    let Some(lab) = Lab::new("a_detached_container_is_up_logs_stops_and_is_removed") else { return };
    let out = lab.v(&["run"], &["-d", "--name", "web", "busybox", "sh", "-c", "echo hello from web; sleep 60"]);
    assert!(out.status.success(), "{}", err(&out));
    let id = text(&out).trim().to_string();
    assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()), "run -d prints the ID: {id:?}");
    assert!(lab.ps_status("web").starts_with("Up "), "{}", lab.ps_status("web"));
    let ps = text(&lab.v(&["ps"], &[]));
    assert!(ps.starts_with("CONTAINER ID   IMAGE     COMMAND"), "{ps}");
    assert!(ps.contains(&id[..12]) && ps.contains("web"), "{ps}");
    lab.until("the log", || text(&lab.v(&["logs"], &["web"])) == "hello from web\n");
    let state = text(&lab.v(&["inspect"], &["--format", "{{.State.Status}} {{.Config.Image}} {{.Name}}", "web"]));
    assert_eq!(state, "running busybox /web\n");
    let info = text(&lab.v(&["system", "info"], &[]));
    assert!(info.contains("Containers: 1\n Running: 1\n") && info.contains("Images: 1\n"), "{info}");
    // A name in use is refused.
    let again = lab.v(&["run"], &["-d", "--name", "web", "busybox", "true"]);
    assert_eq!(again.status.code(), Some(125), "{}", err(&again));
    assert!(err(&again).contains("already in use"), "{}", err(&again));
    // rm of a running container needs -f.
    let rm = lab.v(&["rm"], &["web"]);
    assert_eq!(rm.status.code(), Some(1));
    assert!(err(&rm).contains("running"), "{}", err(&rm));
    // sh as PID 1 has no SIGTERM handler: stop waits -t, then SIGKILL.
    let t0 = Instant::now();
    let stop = lab.v(&["stop"], &["-t", "1", "web"]);
    assert_eq!((stop.status.code(), text(&stop)), (Some(0), "web\n".to_string()), "{}", err(&stop));
    assert!(t0.elapsed() >= Duration::from_secs(1), "stop did not wait the grace period");
    assert!(lab.ps_status("web").starts_with("Exited (137)"), "{}", lab.ps_status("web"));
    let state =
        text(&lab.v(&["inspect"], &["--format", "{{.State.Status}} {{.State.ExitCode}} {{.State.Running}}", "web"]));
    assert_eq!(state, "exited 137 false\n");
    assert_eq!(lab.v(&["inspect"], &["nope"]).status.code(), Some(1));
    assert!(text(&lab.v(&["ps"], &[])).lines().count() == 1, "ps without -a lists an exited container");
    assert_eq!(text(&lab.v(&["rm"], &["web"])), "web\n");
    assert_eq!(lab.v(&["logs"], &["web"]).status.code(), Some(1));
    lab.assert_nothing_left();
}

#[test]
fn exit_statuses_wait_kill_and_the_event_log() {
    let Some(lab) = Lab::new("exit_statuses_wait_kill_and_the_event_log") else { return };
    lab.v(&["run"], &["-d", "--name", "three", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(text(&lab.v(&["wait"], &["three"])), "3\n");
    assert!(lab.ps_status("three").starts_with("Exited (3)"), "{}", lab.ps_status("three"));
    lab.v(&["run"], &["-d", "--name", "sleeper", "busybox", "sleep", "60"]);
    let kill = lab.v(&["kill"], &["sleeper"]);
    assert!(kill.status.success(), "{}", err(&kill));
    assert_eq!(text(&lab.v(&["wait"], &["sleeper"])), "137\n");
    assert_eq!(lab.v(&["kill"], &["sleeper"]).status.code(), Some(1), "kill of a stopped container");
    // --rm: gone by itself.
    lab.v(&["run"], &["-d", "--rm", "--name", "brief", "busybox", "true"]);
    lab.until("--rm to remove the container", || lab.ps_status("brief").is_empty());
    // A command the image does not have: 127, as the shell says.
    let missing = lab.v(&["run"], &["-d", "--name", "missing", "busybox", "/no/such/program"]);
    assert_eq!(missing.status.code(), Some(127), "{}", err(&missing));
    // The image is in use while containers of it exist.
    let rmi = lab.v(&["image", "rm"], &["busybox"]);
    assert_eq!(rmi.status.code(), Some(1), "{}", err(&rmi));
    assert!(err(&rmi).contains("used by"), "{}", err(&rmi));
    assert!(lab.v(&["rm"], &["three", "sleeper", "missing"]).status.success());
    let events = text(
        &lab.v(&["system", "events"], &["--until", "0s", "--filter", "container=three", "--format", "{{.Action}}"]),
    );
    assert_eq!(events, "create\nstart\ndie\ndestroy\n");
    let dies = text(&lab.v(
        &["system", "events"],
        &[
            "--until",
            "0s",
            "--filter",
            "event=die",
            "--format",
            "{{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
        ],
    ));
    assert!(dies.contains("three 3\n") && dies.contains("sleeper 137\n") && dies.contains("brief 0\n"), "{dies}");
    let images =
        text(&lab.v(&["system", "events"], &["--until", "0s", "--filter", "type=image", "--format", "{{.Action}}"]));
    assert!(images.starts_with("import\n"), "{images}");
    assert_eq!(lab.v(&["system", "events"], &["--until", "0s", "--filter", "colour=red"]).status.code(), Some(1));
    lab.assert_nothing_left();
}

#[test]
fn a_killed_monitor_leaves_a_dead_container_that_rm_cleans() {
    let Some(lab) = Lab::new("a_killed_monitor_leaves_a_dead_container_that_rm_cleans") else { return };
    let id = text(&lab.v(&["run"], &["-d", "--name", "orphan", "busybox", "sleep", "60"])).trim().to_string();
    let dir = lab.store().join("containers").join(&id);
    let monitor = monitor_pid(&dir);
    let pid: i32 = std::fs::read_to_string(dir.join("pid")).unwrap().trim().parse().unwrap();
    // SIGKILL: the monitor cannot record anything. Its launcher's sentinel
    // takes the container down with it.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor), nix::sys::signal::Signal::SIGKILL).unwrap();
    lab.until("the container to go with its monitor", || !Path::new(&format!("/proc/{pid}")).exists());
    lab.until("ps to say so", || lab.ps_status("orphan") == "Exited (unknown)");
    assert!(lab.v(&["rm"], &["orphan"]).status.success());
    lab.assert_nothing_left();
}

/// The cgroups (every controller) of launchers run by these monitors.
fn cgroups_of(monitors: &[i32]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for controller in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let dirs = std::fs::read_dir(controller.path()).into_iter().flatten().flatten();
        for d in dirs {
            let name = d.file_name().to_string_lossy().into_owned();
            if monitors.iter().any(|m| name.starts_with(&format!("virtlab-{m}-")))
                || monitors.iter().any(|m| name == format!("virtlab-{m}"))
            {
                found.push(d.path());
            }
        }
    }
    found
}

#[test]
fn fifty_containers_from_four_shells_leave_nothing_behind() {
    let Some(lab) = Lab::new("fifty_containers_from_four_shells_leave_nothing_behind") else { return };
    let names = |shell: usize| -> Vec<String> { (0..50).filter(|n| n % 4 == shell).map(|n| format!("c{n}")).collect() };
    // Each handles SIGTERM (as a server would), so stop ends it at once.
    let command = ["sh", "-c", "trap 'exit 0' TERM; sleep 60 & wait"];
    std::thread::scope(|s| {
        for shell in 0..4 {
            let lab = &lab;
            s.spawn(move || {
                for name in names(shell) {
                    let mut args = vec!["-d", "--name", name.as_str(), "busybox"];
                    args.extend(command);
                    let out = lab.v(&["run"], &args);
                    assert!(out.status.success(), "{name}: {}", err(&out));
                    // The others list while this shell starts its own.
                    assert!(lab.v(&["ps"], &["-q"]).status.success());
                }
            });
        }
    });
    let ps = text(&lab.v(&["ps"], &["-q"]));
    assert_eq!(ps.lines().count(), 50, "{ps}");
    let monitors: Vec<i32> = std::fs::read_dir(lab.store().join("containers"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| monitor_pid(&e.path()))
        .collect();
    assert_eq!(monitors.len(), 50);
    for m in &monitors {
        assert!(!cgroups_of(&[*m]).is_empty(), "the container of monitor {m} has no cgroup");
    }
    std::thread::scope(|s| {
        for shell in 0..4 {
            let lab = &lab;
            s.spawn(move || {
                let names = names(shell);
                let mut args = vec!["-t", "10"];
                args.extend(names.iter().map(String::as_str));
                let out = lab.v(&["stop"], &args);
                assert!(out.status.success(), "{}", err(&out));
                assert_eq!(text(&out).lines().count(), names.len());
                let out = lab.v(&["rm"], &args[2..]);
                assert!(out.status.success(), "{}", err(&out));
            });
        }
    });
    let events = text(&lab.v(
        &["system", "events"],
        &["--until", "0s", "--filter", "type=container", "--format", "{{.Action}} {{.Actor.Attributes.name}}"],
    ));
    for n in 0..50 {
        let name = format!("c{n}");
        let order: Vec<&str> = events
            .lines()
            .filter(|l| l.split(' ').nth(1) == Some(name.as_str()))
            .map(|l| l.split(' ').next().unwrap())
            .filter(|a| ["create", "start", "die", "stop", "destroy"].contains(a))
            .collect();
        assert_eq!(order, ["create", "start", "die", "stop", "destroy"], "{name}: {events}");
    }
    let dies = text(&lab.v(
        &["system", "events"],
        &[
            "--until",
            "0s",
            "--filter",
            "event=die",
            "--format",
            "{{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
        ],
    ));
    for n in 0..50 {
        assert!(dies.contains(&format!("c{n} 0\n")), "c{n} ended on SIGTERM with 0: {dies}");
    }
    assert_eq!(cgroups_of(&monitors), Vec::<PathBuf>::new(), "cgroups left");
    lab.assert_nothing_left();
}

#[test]
fn after_a_reboot_containers_are_exited_not_ghosts_and_start_again() {
    let Some(lab) = Lab::new("after_a_reboot_containers_are_exited_not_ghosts_and_start_again") else { return };
    let id = text(&lab.v(&["run"], &["-d", "--name", "server", "busybox", "sleep", "60"])).trim().to_string();
    lab.v(&["create"], &["--name", "made", "busybox", "true"]);
    lab.v(&["run"], &["--name", "done", "busybox", "true"]);
    let dir = lab.store().join("containers").join(&id);
    // The power goes: the monitor and its container die without a word.
    let monitor = monitor_pid(&dir);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor), nix::sys::signal::Signal::SIGKILL).unwrap();
    lab.until("the monitor to go", || !Path::new(&format!("/proc/{monitor}")).exists());
    // After the reboot its PID belongs to another process (here: this
    // test's own, with its real start time) of another boot.
    let me = std::process::id();
    let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
    let start = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(19).unwrap().to_string();
    std::fs::write(dir.join("monitor.pid"), format!("{me} {start} 00000000-0000-0000-0000-000000000000\n")).unwrap();
    std::fs::write(dir.join("pid"), format!("{me}\n")).unwrap();
    assert_eq!(lab.ps_status("server"), "Exited (unknown)");
    assert_eq!(lab.ps_status("made"), "Created");
    assert!(lab.ps_status("done").starts_with("Exited (0)"), "{}", lab.ps_status("done"));
    assert_eq!(text(&lab.v(&["ps"], &["-q"])), "", "nothing runs after a reboot");
    let state =
        text(&lab.v(&["inspect"], &["--format", "{{.State.Status}} {{.State.Running}} {{.State.Pid}}", "server"]));
    assert_eq!(state, "dead false 0\n");
    // The store lost nothing: each starts again.
    for name in ["server", "made", "done"] {
        let out = lab.v(&["start"], &[name]);
        assert!(out.status.success(), "{name}: {}", err(&out));
    }
    assert!(lab.ps_status("server").starts_with("Up "), "{}", lab.ps_status("server"));
    assert!(lab.v(&["rm"], &["-f", "server", "made", "done"]).status.success());
    assert_eq!(lab.v(&["image", "inspect"], &["--format", "{{.Id}}", "busybox"]).status.code(), Some(0));
    lab.assert_nothing_left();
}

#[test]
fn run_in_the_foreground_leaves_an_exited_container_with_its_log() {
    let Some(lab) = Lab::new("run_in_the_foreground_leaves_an_exited_container_with_its_log") else { return };
    let out = lab.v(&["run"], &["--name", "fg", "busybox", "sh", "-c", "echo to out; echo to err >&2; exit 4"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!((text(&out), err(&out)), ("to out\n".to_string(), "to err\n".to_string()));
    assert!(lab.ps_status("fg").starts_with("Exited (4)"), "{}", lab.ps_status("fg"));
    // The log keeps the streams apart, and when each line came.
    let logs = lab.v(&["logs"], &["fg"]);
    assert_eq!((text(&logs), err(&logs)), ("to out\n".to_string(), "to err\n".to_string()));
    let stamped = text(&lab.v(&["logs"], &["--timestamps", "fg"]));
    let (when, line) = stamped.trim_end().split_once(' ').unwrap();
    assert_eq!(line, "to out");
    assert!(when.starts_with("20") && when.ends_with('Z') && when.len() == 30, "{when}");
    // The container is its own host name, as Docker's are.
    let id = text(&lab.v(&["inspect"], &["--format", "{{.Id}}", "fg"]));
    let hostname = text(&lab.v(&["run"], &["--name", "named", "busybox", "hostname"]));
    let named_id = text(&lab.v(&["inspect"], &["--format", "{{.Id}}", "named"]));
    assert_eq!(hostname.trim(), &named_id[..12]);
    // --rm leaves nothing; without -i the command reads nothing.
    let mut child = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["run", "--root", &lab.root(), "--rm", "--name", "reader", "busybox", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"not read\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!((out.status.code(), text(&out)), (Some(0), String::new()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["run", "--root", &lab.root(), "--rm", "-i", "busybox", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"read with -i\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out), "read with -i\n");
    assert_eq!(lab.ps_status("reader"), "");
    // -t needs a terminal: Docker's message and status.
    let t = lab.v(&["run"], &["-t", "busybox", "true"]);
    assert_eq!(t.status.code(), Some(1));
    assert!(err(&t).contains("not a TTY"), "{}", err(&t));
    // create, then start -a: the output and the status.
    let made = text(&lab.v(&["create"], &["--name", "later", "busybox", "sh", "-c", "echo later; exit 6"]));
    assert_eq!(made.trim().len(), 64);
    assert_eq!(lab.ps_status("later"), "Created");
    let started = lab.v(&["start"], &["-a", "later"]);
    assert_eq!((started.status.code(), text(&started)), (Some(6), "later\n".to_string()));
    // restart runs it again in the same container: the log grows.
    assert!(lab.v(&["restart"], &["later"]).status.success());
    assert!(lab.v(&["wait"], &["later"]).status.success());
    assert_eq!(text(&lab.v(&["logs"], &["later"])), "later\nlater\n");
    let actions =
        text(&lab.v(&["events"], &["--until", "0s", "--filter", "container=later", "--format", "{{.Action}}"]));
    assert_eq!(actions, "create\nstart\ndie\nstart\nrestart\ndie\n");
    assert_eq!(text(&lab.v(&["rm"], &[&id[..12], "later", "named"])), format!("{}\nlater\nnamed\n", &id[..12]));
    lab.assert_nothing_left();
}

#[test]
fn events_stream_as_they_happen_and_run_it_gives_a_shell_whose_exit_stops_the_container() {
    let Some(lab) = Lab::new("events_stream_as_they_happen_and_run_it_gives_a_shell_whose_exit_stops_the_container")
    else {
        return;
    };
    // Without --since or --until: only what happens from now on, as it happens.
    lab.v(&["run"], &["--name", "before", "busybox", "true"]);
    let mut stream = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["events", "--root", &lab.root(), "--format", "{{.Action}} {{.Actor.Attributes.name}}"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = {
        let out = stream.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            std::io::BufReader::new(out).lines().map_while(Result::ok).take(3).collect::<Vec<String>>()
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    // `-it`: a shell on a terminal (script(1) gives it one); `exit` ends
    // the shell, which is the container's first process, so the container.
    let script = Command::new("script")
        .args(["-qec"])
        .arg(format!("{} run --root {} -it --name shell busybox sh", env!("CARGO_BIN_EXE_virtlab"), lab.root()))
        .arg("/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn();
    let Ok(mut script) = script else {
        panic!("script(1) (util-linux, bsdutils) is needed to give the shell a terminal");
    };
    {
        use std::io::Write;
        let mut input = script.stdin.take().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        input.write_all(b"[ -t 0 ] && echo on a terminal; exit 9\n").unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    let shell = script.wait_with_output().unwrap();
    let shown = text(&shell);
    assert!(shown.contains("on a terminal"), "{shown}");
    assert_eq!(shell.status.code(), Some(9), "run -it exits with the shell's status");
    assert!(lab.ps_status("shell").starts_with("Exited (9)"), "{}", lab.ps_status("shell"));
    let got = lines.join().unwrap();
    let _ = stream.kill();
    let _ = stream.wait();
    assert_eq!(got, ["create shell", "start shell", "die shell"]);
    assert!(lab.v(&["rm"], &["before", "shell"]).status.success());
    lab.assert_nothing_left();
}

/// `--runtime vm`: the same image, the same commands, but a Linux guest of
/// virtlab's VMM runs it. One boot (slow on a nested host) for all of it.
#[test]
fn the_same_image_runs_as_a_vm_under_the_same_commands() {
    const TEST: &str = "the_same_image_runs_as_a_vm_under_the_same_commands";
    if !virtlab_vmm::probe::kvm_or_skip(TEST) {
        return;
    }
    use virtlab_vmm::linux::provision::{test_kernel_or_skip, Origin};
    if test_kernel_or_skip(TEST, &[Origin::Minimal]).is_none() {
        return;
    }
    let Some(lab) = Lab::new(TEST) else { return };
    // What the VM runtime cannot do is refused before anything is made.
    let refused = lab.v(&["run"], &["--runtime", "vm", "--pids", "10", "busybox", "true"]);
    assert_eq!(refused.status.code(), Some(125), "{}", err(&refused));
    assert!(err(&refused).contains("--runtime vm"), "{}", err(&refused));
    let out = lab.v(
        &["run"],
        &[
            "-d",
            "--runtime",
            "vm",
            "--name",
            "guest",
            "-e",
            "WHO=a guest",
            "busybox",
            "sh",
            "-c",
            "echo \"$WHO on $(uname -r)\"; sleep 600",
        ],
    );
    assert!(out.status.success(), "{}", err(&out));
    assert!(lab.ps_status("guest").starts_with("Up "), "{}", lab.ps_status("guest"));
    let runtime = text(&lab.v(&["inspect"], &["--format", "{{.HostConfig.Runtime}}", "guest"]));
    assert_eq!(runtime, "vm\n");
    let deadline = Instant::now() + Duration::from_secs(300);
    let line = loop {
        let log = text(&lab.v(&["logs"], &["guest"]));
        if let Some(l) = log.lines().find(|l| l.starts_with("a guest on ")) {
            break l.to_string();
        }
        assert!(Instant::now() < deadline, "the guest did not print within 300 s: {log:?}");
        std::thread::sleep(Duration::from_millis(500));
    };
    // Its own kernel, not the host's.
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_ne!(line.trim_start_matches("a guest on "), host.trim(), "{line}");
    // Only the command's output is in the log, not the kernel's messages.
    assert!(!text(&lab.v(&["logs"], &["guest"])).contains("Linux version"));
    // stop: the VMM gets SIGTERM; the container ends by that signal.
    let stop = lab.v(&["stop"], &["-t", "5", "guest"]);
    assert!(stop.status.success(), "{}", err(&stop));
    assert!(lab.ps_status("guest").starts_with("Exited (143)"), "{}", lab.ps_status("guest"));
    let actions =
        text(&lab.v(&["events"], &["--until", "0s", "--filter", "container=guest", "--format", "{{.Action}}"]));
    assert_eq!(actions, "create\nstart\nkill\ndie\nstop\n");
    assert_eq!(text(&lab.v(&["rm"], &["guest"])), "guest\n");
    lab.assert_nothing_left();
}
