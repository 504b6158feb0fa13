//! What several test files of the `virtlab` binary share: the loud skips
//! and the leftovers a container run must not leave.

#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether `VAR=1` is set: a skip for what `VAR` names must fail.
pub fn must(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

/// Whether the test can run as root with /bin/busybox (busybox-static);
/// if not, a loud skip, or a failure under VIRTLAB_REQUIRE_ROOT=1.
pub fn root_and_busybox(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let busybox = Path::new("/bin/busybox").exists();
    if root && busybox {
        return true;
    }
    assert!(
        !must("VIRTLAB_REQUIRE_ROOT"),
        "{test}: needs root and /bin/busybox (busybox-static), and VIRTLAB_REQUIRE_ROOT=1 forbids skipping"
    );
    eprintln!("SKIPPED {test}: needs root and /bin/busybox (busybox-static)");
    false
}

/// Whether `program --version` runs; if not, a loud skip, or a failure when
/// one of `required_by` is set to 1. `install` says how to get it.
pub fn tool_or_skip(test: &str, program: &str, install: &str, required_by: &[&str]) -> bool {
    let ok = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if let Some(var) = required_by.iter().find(|v| must(v)) {
            panic!("{test}: {program} is required ({var}=1) but not installed");
        }
        eprintln!("SKIPPED {test}: {program} is not installed ({install})");
    }
    ok
}

/// The cgroup directories of the containers of launcher `pid`, in every
/// hierarchy.
pub fn cgroups_of(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("virtlab-{pid}-");
    let root = Path::new("/sys/fs/cgroup");
    let mut bases = vec![root.to_path_buf()];
    bases.extend(std::fs::read_dir(root).into_iter().flatten().flatten().map(|e| e.path()));
    let mut found = Vec::new();
    for b in bases {
        for e in std::fs::read_dir(&b).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                found.push(e.path());
            }
        }
    }
    found
}

/// A store of the test's own, with the built-in rootfs (the workload and
/// busybox) imported as `busybox`, and the `virtlab` binary run against it.
pub struct Store {
    pub dir: tempfile::TempDir,
}

impl Store {
    /// The store, in a directory named `prefix...`; `None` (said why) if
    /// the test cannot run here.
    pub fn new(test: &str, prefix: &str) -> Option<Store> {
        if !root_and_busybox(test) {
            return None;
        }
        let s = Store { dir: tempfile::Builder::new().prefix(prefix).tempdir().expect("a temporary directory") };
        let rootfs = s.dir.path().join("rootfs");
        let rootfs = rootfs.to_str().expect("a UTF-8 path");
        s.ok(&["container", "rootfs", rootfs]);
        s.ok(&["image", "import", "--root", &s.root(), rootfs, "busybox"]);
        Some(s)
    }

    /// The store's directory, as text for `--root`.
    pub fn root(&self) -> String {
        self.store().to_str().expect("a UTF-8 path").to_string()
    }

    /// The store's directory.
    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// `virtlab ARGS...` with standard input from `stdin` (`--root` is the
    /// caller's to add; the default store is pointed nowhere).
    pub fn run_with<S: AsRef<std::ffi::OsStr>>(&self, args: &[S], stdin: Stdio) -> std::process::Output {
        let mut cmd = self.command(args);
        cmd.stdin(stdin).output().expect("virtlab runs")
    }

    /// The `virtlab ARGS...` command, standard input empty, to start.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_virtlab"));
        cmd.args(args).env("VIRTLAB_ROOT", "/nonexistent-virtlab-root").stdin(Stdio::null());
        cmd
    }

    /// `virtlab ARGS...`, standard input empty.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.run_with(args, Stdio::null())
    }

    /// `virtlab CMD --root STORE ARGS...`.
    pub fn v(&self, cmd: &[&str], args: &[&str]) -> std::process::Output {
        let root = self.root();
        let mut all: Vec<&str> = cmd.to_vec();
        all.extend(["--root", root.as_str()]);
        all.extend(args);
        self.run(&all)
    }

    /// `virtlab ARGS...`, which must succeed; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }
}
