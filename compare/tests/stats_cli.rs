//! `top` and `stats` through the binary, against detached containers doing
//! known things: a shell with two sleeps, a CPU burner, a memory hog. Each
//! test has a store of its own. Needs root and busybox-static; skips
//! loudly otherwise, and fails under VIRTLAB_REQUIRE_ROOT=1.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

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
        common::Store::new(test, "virtlab-stats-").map(|s| Lab { s })
    }

    /// `run -d --name NAME ARGS...`; the container's ID.
    fn start(&self, name: &str, args: &[&str]) -> String {
        let mut all = vec!["-d", "--name", name];
        all.extend(args);
        let out = self.v(&["run"], &all);
        assert!(out.status.success(), "run {name}: {}", err(&out));
        text(&out).trim().to_string()
    }

    /// `stats --no-stream --format '{{json .}}' NAMES...`, a row each.
    fn stats(&self, names: &[&str]) -> Vec<Value> {
        let mut args = vec!["--no-stream", "--format", "{{json .}}"];
        args.extend(names);
        let out = self.v(&["stats"], &args);
        assert!(out.status.success(), "stats: {}", err(&out));
        text(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    fn until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "waited 20 s for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every container of the store removed (killed first), and nothing
    /// of them left: no monitor, no mount, no directory.
    fn remove_all_and_check(&self) {
        self.remove_all();
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
    }

    fn remove_all(&self) {
        let ids = text(&self.v(&["ps"], &["-aq"]));
        let mut args = vec!["-f"];
        args.extend(ids.lines());
        if args.len() > 1 {
            self.v(&["rm"], &args);
        }
    }
}

impl Drop for Lab {
    /// A failed test leaves no CPU burner behind.
    fn drop(&mut self) {
        self.remove_all();
    }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn err(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A size as Docker prints it (`64MiB`, `1.195MiB`, `4.1kB`, `1e+03kB`), in bytes.
fn parse_size(s: &str) -> u64 {
    let split = s.find(|c: char| c.is_ascii_alphabetic() && c != 'e').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().unwrap_or_else(|_| panic!("{s:?} is not a size"));
    let scale = match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => panic!("unknown unit {other:?} in {s:?}"),
    };
    (n * scale).round() as u64
}

/// `MemUsage`'s two sizes.
fn mem_usage(row: &Value) -> (u64, u64) {
    let (used, limit) = row["MemUsage"].as_str().unwrap().split_once(" / ").unwrap();
    (parse_size(used), parse_size(limit))
}

fn cpu_percent(row: &Value) -> f64 {
    row["CPUPerc"].as_str().unwrap().trim_end_matches('%').parse().unwrap()
}

fn row<'a>(rows: &'a [Value], name: &str) -> &'a Value {
    rows.iter().find(|r| r["Name"] == name).unwrap_or_else(|| panic!("no row for {name}: {rows:?}"))
}

#[test]
fn sizes_parse_as_docker_prints_them() {
    assert_eq!(parse_size("0B"), 0);
    assert_eq!(parse_size("64MiB"), 64 << 20);
    assert_eq!(parse_size("1.5KiB"), 1536);
    assert_eq!(parse_size("4.1kB"), 4100);
    assert_eq!(parse_size("1e+03kB"), 1_000_000);
    assert_eq!(parse_size("15.56GiB"), 16_707_422_781);
    assert_eq!(mem_usage(&serde_json::json!({"MemUsage": "412KiB / 64MiB"})), (412 << 10, 64 << 20));
}

#[test]
fn top_shows_the_processes_as_the_host_sees_them_and_stats_their_limits() {
    let Some(lab) = Lab::new("top_shows_the_processes_as_the_host_sees_them_and_stats_their_limits") else { return };
    // `& wait` keeps the shell: busybox sh execs the last command of -c.
    let id = lab.start("two", &["--memory", "64M", "busybox", "sh", "-c", "sleep 60 & sleep 60 & wait"]);
    let monitor: i32 = std::fs::read_to_string(lab.store().join("containers").join(&id).join("monitor.pid"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let cmd = |r: &Vec<String>| r[7..].join(" ");
    let mut rows = Vec::new();
    lab.until("the shell's two sleeps", || {
        let out = lab.v(&["top"], &["two"]);
        assert!(out.status.success(), "top: {}", err(&out));
        let t = text(&out);
        let mut lines = t.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(header, ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]);
        rows = lines.map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>()).collect();
        // A forked shell that has not run exec yet shows the shell's command.
        rows.len() == 3 && rows.iter().filter(|r| cmd(r) == "sleep 60").count() == 2
    });
    let sh = rows.iter().find(|r| cmd(r) == "sh -c sleep 60 & sleep 60 & wait").expect("the shell");
    let sleeps: Vec<&Vec<String>> = rows.iter().filter(|r| cmd(r) == "sleep 60").collect();
    assert_eq!(sleeps.len(), 2, "{rows:?}");
    // Host PIDs: they exist here, the shell's parent is the monitor, and
    // the sleeps are the shell's.
    for r in &rows {
        assert!(PathBuf::from(format!("/proc/{}", r[1])).exists(), "host PID {} does not exist: {rows:?}", r[1]);
        assert!(r[0] != "0" && r[0] != "root", "container root is an unprivileged host uid, not {}", r[0]);
        assert_eq!(r[5], "?", "no terminal: {r:?}");
    }
    assert_eq!(sh[2], monitor.to_string(), "the shell's parent is the monitor");
    assert!(sleeps.iter().all(|s| s[2] == sh[1]), "{rows:?}");
    // The long form says the same.
    assert_eq!(text(&lab.v(&["container", "top"], &["two"])).lines().count(), 4);

    let rows = lab.stats(&["two"]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(
        (r["Container"].as_str(), r["Name"].as_str(), r["ID"].as_str()),
        (Some("two"), Some("two"), Some(&id[..12]))
    );
    let (used, limit) = mem_usage(r);
    assert_eq!(limit, 64 << 20, "{r}");
    assert!(used > 0 && used < limit, "{r}");
    assert_eq!(r["PIDs"], "3", "{r}");
    // Its own network namespace has only lo.
    assert_eq!(r["NetIO"], "0B / 0B", "{r}");
    let mem_perc: f64 = r["MemPerc"].as_str().unwrap().trim_end_matches('%').parse().unwrap();
    assert!((mem_perc - used as f64 / limit as f64 * 100.0).abs() < 0.01, "{r}");
    // The default table.
    let table = text(&lab.v(&["container", "stats"], &["--no-stream", "two"]));
    let header: Vec<&str> =
        table.lines().next().unwrap().split("   ").map(str::trim).filter(|h| !h.is_empty()).collect();
    assert_eq!(
        header,
        ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"],
        "{table}"
    );
    assert!(table.lines().nth(1).unwrap().starts_with(&format!("{}   two ", &id[..12])), "{table}");
    assert!(!table.contains('\x1b'), "no screen clearing outside a terminal: {table:?}");
    let whole = text(&lab.v(&["stats"], &["--no-stream", "--no-trunc", "--format", "{{.ID}}", "two"]));
    assert_eq!(whole, format!("{id}\n"));

    // Stopped: top refuses, stats shows zeros as Docker does.
    assert!(lab.v(&["kill"], &["two"]).status.success());
    assert_eq!(text(&lab.v(&["wait"], &["two"])), "137\n");
    let top = lab.v(&["top"], &["two"]);
    assert_eq!(top.status.code(), Some(1), "top of a stopped container: {}", text(&top));
    assert!(err(&top).contains("container two is not running"), "{}", err(&top));
    let r = &lab.stats(&["two"])[0];
    assert_eq!(
        (r["CPUPerc"].as_str(), r["MemUsage"].as_str(), r["PIDs"].as_str()),
        (Some("0.00%"), Some("0B / 0B"), Some("0"))
    );
    // Without names, only running containers; with -a, every one.
    assert!(lab.stats(&[]).is_empty());
    let all = text(&lab.v(&["stats"], &["-a", "--no-stream", "--format", "{{.Name}} {{.PIDs}}"]));
    assert_eq!(all, "two 0\n");
    lab.remove_all_and_check();
}

#[test]
fn unknown_containers_and_bad_formats_exit_1() {
    let Some(lab) = Lab::new("unknown_containers_and_bad_formats_exit_1") else { return };
    for (cmd, args) in [
        (&["top"][..], &["nope"][..]),
        (&["container", "top"], &["../../etc"]),
        (&["stats"], &["--no-stream", "nope"]),
        (&["container", "stats"], &["--no-stream", ""]),
    ] {
        let out = lab.v(cmd, args);
        assert_eq!(out.status.code(), Some(1), "{cmd:?} {args:?}: {}", err(&out));
        assert!(err(&out).contains(&format!("No such container: {}", args.last().unwrap())), "{}", err(&out));
        assert!(text(&out).is_empty(), "{cmd:?} {args:?} printed {}", text(&out));
    }
    lab.start("one", &["busybox", "sleep", "60"]);
    // A known container with an unknown one: nothing drawn.
    let out = lab.v(&["stats"], &["--no-stream", "one", "nope"]);
    assert_eq!((out.status.code(), text(&out)), (Some(1), String::new()), "{}", err(&out));
    let out = lab.v(&["stats"], &["--no-stream", "--format", "{{range .}}", "one"]);
    assert_eq!(out.status.code(), Some(1), "{}", err(&out));
    lab.remove_all_and_check();
}

#[test]
fn cpu_and_memory_follow_what_the_containers_do() {
    let Some(lab) = Lab::new("cpu_and_memory_follow_what_the_containers_do") else { return };
    lab.start("burner", &["busybox", "sh", "-c", "while :; do :; done"]);
    lab.start("sleeper", &["busybox", "sleep", "60"]);
    // 48 MiB into the container's /tmp (a tmpfs: memory charged to it).
    lab.start("hog", &["busybox", "sh", "-c", "head -c 50331648 /dev/zero > /tmp/fill; sleep 60"]);
    let mut rows = Vec::new();
    lab.until("the hog's 48 MiB", || {
        rows = lab.stats(&["burner", "sleeper", "hog"]);
        mem_usage(row(&rows, "hog")).0 >= 48 << 20
    });
    let (burner, sleeper) = (cpu_percent(row(&rows, "burner")), cpu_percent(row(&rows, "sleeper")));
    assert!(burner > 20.0 && sleeper < 5.0, "a busy loop against a sleep: {burner}% and {sleeper}%");
    let (hog, sleeper_mem) = (mem_usage(row(&rows, "hog")), mem_usage(row(&rows, "sleeper")));
    assert!(sleeper_mem.0 < 16 << 20, "{rows:?}");
    // No --memory: the limit is the host's memory.
    let host_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let ratio = hog.1 as f64 / (host_kib * 1024) as f64;
    assert!((0.99..1.01).contains(&ratio), "limit {} against MemTotal {host_kib} kB", hog.1);
    lab.remove_all_and_check();
}

#[test]
fn stats_streams_a_table_a_second_until_its_reader_goes() {
    let Some(lab) = Lab::new("stats_streams_a_table_a_second_until_its_reader_goes") else { return };
    lab.start("one", &["busybox", "sleep", "60"]);
    let root = lab.root();
    let mut child = lab
        .command(&["stats", "--root", &root, "--format", "{{.Name}} {{.PIDs}}"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..3 {
        assert_eq!(lines.next().unwrap().unwrap(), "one 1", "one table after another, no screen clearing");
    }
    // The reader goes: the next table meets a closed pipe, and stats ends
    // quietly, with status 0.
    drop(lines);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("stats went on after its reader had gone");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success() && stderr.is_empty(), "{status}: {stderr}");
    lab.remove_all_and_check();
}
