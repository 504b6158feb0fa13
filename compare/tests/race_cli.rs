//! `virtlab race`: plain lines through a pipe, and the live screen in a
//! real terminal (tmux at 80x24: every lane finishes, `q` leaves no process
//! behind; `q` in the middle stops and cleans up every lane; a terminal too
//! small says the size it needs).
//!
//! The container and VM lanes need root, /bin/busybox and /dev/kvm, and the
//! terminal tests tmux: each skips loudly without them, and fails instead
//! under VIRTLAB_REQUIRE_ROOT=1 / VIRTLAB_REQUIRE_KVM=1. Waiting for the
//! screen has a generous bound only so that a broken race cannot hang the
//! test; nothing is asserted about time.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::must;

fn virtlab() -> &'static str {
    env!("CARGO_BIN_EXE_virtlab")
}

fn race(args: &[&str]) -> Output {
    Command::new(virtlab()).arg("race").args(args).stdin(Stdio::null()).output().unwrap()
}

fn kvm(test: &str) -> bool {
    let ok = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    if !ok {
        assert!(!must("VIRTLAB_REQUIRE_KVM"), "{test}: /dev/kvm is required (VIRTLAB_REQUIRE_KVM=1)");
        eprintln!("SKIPPED {test}: no /dev/kvm");
    }
    ok
}

fn tmux_or_skip(test: &str) -> bool {
    let ok = Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(!must("VIRTLAB_REQUIRE_ROOT"), "{test}: tmux is required (VIRTLAB_REQUIRE_ROOT=1)");
        eprintln!("SKIPPED {test}: tmux is not installed (apt install tmux, or scripts/setup.sh)");
    }
    ok
}

/// The processes whose environment holds `mark` (the race and its lanes
/// inherit it).
fn marked(mark: &str) -> Vec<u32> {
    let needle = format!("VIRTLAB_RACE_TEST={mark}");
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(env) = std::fs::read(e.path().join("environ")) else { continue };
        if env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

/// A tmux server of the test's own (its own socket), with one window of
/// `cols` x `rows` running `command`.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(name: &str, cols: u16, rows: u16, command: &str) -> Tmux {
        let t = Tmux { socket: format!("virtlab-race-{}-{name}", std::process::id()) };
        let status = t
            .cmd()
            .args(["new-session", "-d", "-s", "race", "-x", &cols.to_string(), "-y", &rows.to_string(), command])
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session");
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    fn screen(&self) -> String {
        // -J: a line the terminal wrapped comes back whole.
        let out = self.cmd().args(["capture-pane", "-p", "-J", "-t", "race"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        assert!(self.cmd().args(["send-keys", "-t", "race", keys]).status().unwrap().success());
    }

    /// Waits until the screen shows what `done` looks for; fails with the
    /// screen if it never does.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let bound = Instant::now() + Duration::from_secs(300);
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(Instant::now() < bound, "the screen never showed {what}:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// The shell command a tmux window runs: the race with `args`, marked,
/// then its exit status, then a pause that keeps the window for reading.
fn race_command(mark: &str, args: &str) -> String {
    format!("env VIRTLAB_RACE_TEST={mark} {} race {args}; echo race-exit=$?; sleep 600", virtlab())
}

#[test]
fn through_a_pipe_the_race_is_plain_lines_then_the_table() {
    let out = race(&["native"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("virtlab race: `ready` in native\n"), "{text}");
    for step in ["native        start", "native        READY (the workload's first line)", "native        exit"] {
        assert!(text.contains(step), "{step}: {text}");
    }
    assert!(text.contains("\nlane ") && text.lines().last().unwrap().contains("done in"), "{text}");
    assert!(!text.contains('\u{1b}'), "no terminal codes in plain lines: {text:?}");

    // With --step and no more input, every step at once, round by round.
    let out = race(&["--step", "native"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("step 1:\n") && text.contains("step 2:\n"), "{text}");
}

#[test]
fn every_lane_runs_through_a_pipe() {
    let test = "every_lane_runs_through_a_pipe";
    if !common::root_and_busybox(test) || !kvm(test) {
        return;
    }
    let out = race(&["native", "container", "vm-mini-pv", "vm-mini-uart"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    // Steps named by each launcher, as they happened.
    for step in ["container     pivot_root", "vm-mini-pv    create-vm", "vm-mini-uart  kernel-ready"] {
        assert!(text.contains(step), "{step}: {text}");
    }
    let table: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("lane ")).collect();
    assert_eq!(table.len(), 5, "{text}");
    assert!(table[1..].iter().all(|l| l.contains("done in")), "{text}");
}

#[test]
fn what_cannot_race_is_refused() {
    let out = race(&["qemu-tcg"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("qemu-tcg cannot race: give native, container"));
    let out = race(&["--workload", "cpu,io", "native"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--workload: give one workload"));
}

#[test]
fn in_a_terminal_every_lane_finishes_and_q_leaves_nothing_behind() {
    let test = "in_a_terminal_every_lane_finishes_and_q_leaves_nothing_behind";
    if !tmux_or_skip(test) || !common::root_and_busybox(test) || !kvm(test) {
        return;
    }
    let mark = format!("finish-{}", std::process::id());
    let tmux = Tmux::start("finish", 80, 24, &race_command(&mark, "native container vm-mini-pv vm-mini-uart"));
    let screen = tmux.wait_for("every lane ended", |s| s.contains("every lane has ended: q leaves"));
    for lane in ["native", "container", "vm-mini-pv", "vm-mini-uart"] {
        let line = screen.lines().find(|l| l.starts_with(lane)).unwrap_or_default();
        assert!(line.contains("done in"), "{lane}: {screen}");
    }
    // The bars name the steps they have room for.
    assert!(screen.contains("start"), "{screen}");
    tmux.keys("q");
    let screen = tmux.wait_for("the race's exit", |s| s.contains("race-exit="));
    assert!(screen.contains("race-exit=0"), "{screen}");
    assert!(screen.lines().any(|l| l.starts_with("container") && l.contains("done in")), "{screen}");
    assert_eq!(marked(&mark), Vec::<u32>::new(), "processes of the race left behind");
}

#[test]
fn q_in_the_middle_stops_and_cleans_up_every_lane() {
    let test = "q_in_the_middle_stops_and_cleans_up_every_lane";
    if !tmux_or_skip(test) || !common::root_and_busybox(test) || !kvm(test) {
        return;
    }
    let mark = format!("stop-{}", std::process::id());
    // A CPU loop long enough to be stopped in the middle.
    let tmux = Tmux::start("stop", 80, 24, &race_command(&mark, "--workload cpu=20000000000 container vm-mini-pv"));
    tmux.wait_for("both workloads running", |s| s.matches("workload running").count() == 2);
    // The container's launcher, to look for its cgroup afterwards.
    let launchers: Vec<u32> = marked(&mark)
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmdline.split(|b| *b == 0).any(|w| w == b"container")
        })
        .collect();
    assert!(!launchers.is_empty());
    tmux.keys("q");
    let screen = tmux.wait_for("the race's exit", |s| s.contains("race-exit="));
    assert!(screen.contains("race-exit=130"), "{screen}");
    assert!(screen.contains("every lane was ended and cleaned up"), "{screen}");
    assert_eq!(screen.matches("cleaned up").count(), 3, "both lanes stopped, and the last line: {screen}");
    assert_eq!(marked(&mark), Vec::<u32>::new(), "processes of the race left behind");
    for pid in launchers {
        assert_eq!(common::cgroups_of(pid), Vec::<std::path::PathBuf>::new(), "the container's cgroup");
    }
}

#[test]
fn a_terminal_too_small_is_told_the_size_needed() {
    let test = "a_terminal_too_small_is_told_the_size_needed";
    if !tmux_or_skip(test) {
        return;
    }
    let mark = format!("small-{}", std::process::id());
    let tmux = Tmux::start("small", 50, 12, &race_command(&mark, "native"));
    let screen = tmux.wait_for("the race's exit", |s| s.contains("race-exit="));
    assert!(screen.contains("needs a terminal of at least 60x7 (columns x rows); this one is 50x12"), "{screen}");
    assert!(screen.contains("race-exit=125"), "{screen}");
}
