//! `virtlab container run` killed with SIGKILL (no chance to clean up):
//! its container goes with it, processes and cgroups, with or without a PID
//! namespace. Needs root and busybox-static; skips loudly otherwise, and
//! fails under VIRTLAB_REQUIRE_ROOT=1.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

mod common;

use common::cgroups_of;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Alive: in the process table and not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

#[test]
fn a_killed_launcher_takes_its_container_along() {
    if !common::root_and_busybox("a_killed_launcher_takes_its_container_along") {
        return;
    }
    // Without a PID namespace, the kernel would not end the command's
    // children when its first process dies; with one, only the cgroups
    // would stay.
    for ns in ["uts,mnt,ipc,net,cgroup", "all"] {
        let mut launcher = Command::new(env!("CARGO_BIN_EXE_virtlab"))
            .args([
                "container",
                "run",
                "--ns",
                ns,
                "--",
                "/bin/sh",
                "-c",
                "sleep 1000 & sleep 1000 & echo started; wait",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(launcher.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line, "started\n", "--ns {ns}");
        let dirs = cgroups_of(launcher.id());
        assert!(!dirs.is_empty(), "--ns {ns}: the container has cgroups");
        let procs: std::collections::BTreeSet<i32> = dirs
            .iter()
            .flat_map(|d| {
                std::fs::read_to_string(d.join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        assert!(procs.len() >= 3, "--ns {ns}: the shell and two sleeps: {procs:?}");

        launcher.kill().unwrap(); // SIGKILL
        launcher.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left_procs: Vec<i32> = procs.iter().copied().filter(|p| alive(*p)).collect();
            let left_dirs: Vec<&PathBuf> = dirs.iter().filter(|d| d.exists()).collect();
            if left_procs.is_empty() && left_dirs.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                for p in &left_procs {
                    // SAFETY: kill(2) with integers; clean up before failing.
                    unsafe { libc::kill(*p, libc::SIGKILL) };
                }
                panic!(
                    "--ns {ns}: left behind after the launcher died: processes {left_procs:?}, cgroups {left_dirs:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
