//! `virtlab image ...`, `virtlab images`, `virtlab system df` and
//! `virtlab container run IMAGE` as a user runs them, through the binary:
//! what they print, their exit statuses (1 for a failed image command, as
//! Docker's; 125 for a container that could not start), and that no
//! command leaves anything behind: the store's `tmp/` is empty, nothing is
//! mounted under it, and no cgroup of the command is left.
//!
//! Every test has a store of its own in a temporary directory, named with
//! `--root`; `VIRTLAB_ROOT` points at a directory that must never appear,
//! so a command that ignored `--root` would be caught, and the default
//! /var/lib/virtlab is never touched. Tests that import an image need root
//! (layers keep their owners) and busybox-static (a shell in the image);
//! they skip loudly otherwise, and fail under VIRTLAB_REQUIRE_ROOT=1.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

mod common;

use common::cgroups_of;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What one run of the binary did.
struct Out {
    cmdline: String,
    code: Option<i32>,
    stdout: String,
    stdout_bytes: Vec<u8>,
    stderr: String,
    /// The process's ID, which its containers' cgroups are named after.
    pid: u32,
}

impl Out {
    fn context(&self) -> String {
        format!("`{}` exited {:?}\n--- stdout\n{}--- stderr\n{}", self.cmdline, self.code, self.stdout, self.stderr)
    }

    /// Asserts exit status 0.
    fn ok(&self) -> &Out {
        self.exits(0)
    }

    fn exits(&self, code: i32) -> &Out {
        assert_eq!(self.code, Some(code), "{}", self.context());
        self
    }

    fn stderr_has(&self, parts: &[&str]) -> &Out {
        for p in parts {
            assert!(self.stderr.contains(p), "stderr lacks {p:?}: {}", self.context());
        }
        self
    }

    fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// A temporary directory with an image store (`store/`) in it.
struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        Lab { dir: tempfile::Builder::new().prefix("virtlab-image-cli-").tempdir().unwrap() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn p(&self, rel: &str) -> String {
        self.path(rel).to_str().unwrap().to_string()
    }

    fn store(&self) -> PathBuf {
        self.path("store")
    }

    /// Where `VIRTLAB_ROOT` points: no command given `--root` may use it.
    fn unused_root(&self) -> PathBuf {
        self.path("virtlab-root-from-env")
    }

    /// `virtlab PREFIX... --root STORE ARGS...`.
    fn command(&self, prefix: &[&str], args: &[&str]) -> Command {
        let mut c = self.bare(prefix);
        c.arg("--root").arg(self.store()).args(args);
        c
    }

    /// `virtlab PREFIX...` with no `--root`.
    fn bare(&self, prefix: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_virtlab"));
        c.args(prefix).env("VIRTLAB_ROOT", self.unused_root()).stdin(Stdio::null());
        c
    }

    fn run(&self, prefix: &[&str], args: &[&str]) -> Out {
        self.exec(self.command(prefix, args))
    }

    /// Runs `cmd` to the end and checks that it left nothing behind.
    fn exec(&self, mut cmd: Command) -> Out {
        let cmdline = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        let out = Out {
            cmdline,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stdout_bytes: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            pid,
        };
        self.assert_nothing_left(&out);
        out
    }

    /// No work in progress in the store, no mount under the lab, no cgroup
    /// of the process that ran, and no store where `VIRTLAB_ROOT` points.
    fn assert_nothing_left(&self, out: &Out) {
        let tmp = self.store().join("tmp");
        if tmp.exists() {
            let left: Vec<_> = fs::read_dir(&tmp).unwrap().flatten().map(|e| e.path()).collect();
            assert!(left.is_empty(), "left in the store's tmp/: {left:?}\n{}", out.context());
        }
        let lab = self.dir.path().to_str().unwrap();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let left: Vec<&str> = mounts.lines().filter(|l| l.contains(lab)).collect();
        assert!(left.is_empty(), "mounts left under {lab}: {left:#?}\n{}", out.context());
        let left = cgroups_of(out.pid);
        assert!(left.is_empty(), "cgroups left: {left:?}\n{}", out.context());
        assert!(!self.unused_root().exists(), "a store was made where VIRTLAB_ROOT points\n{}", out.context());
    }

    /// A lab whose store has `busybox`, imported from a rootfs that
    /// `virtlab container rootfs` made; `None` (after saying why) when
    /// this machine cannot.
    fn with_busybox(test: &str) -> Option<Lab> {
        if !common::root_and_busybox(test) {
            return None;
        }
        let lab = Lab::new();
        lab.exec(lab.bare(&["container", "rootfs", &lab.p("rootfs")])).ok();
        let id = lab.run(&["image", "import"], &[&lab.p("rootfs"), "busybox"]).ok().stdout.clone();
        assert!(is_id(id.trim_end()), "import prints the image ID: {id:?}");
        Some(lab)
    }

    /// Writes the build context of `app`: a file to copy, a RUN that
    /// prints, a CMD that shows both.
    fn app_context(&self, message: &str) -> String {
        let ctx = self.path("ctx");
        fs::create_dir_all(&ctx).unwrap();
        fs::write(ctx.join("msg.txt"), format!("{message}\n")).unwrap();
        fs::write(
            ctx.join("Dockerfile"),
            "FROM busybox\n\
             COPY msg.txt /msg.txt\n\
             RUN echo running-the-run-step && echo built > /built.txt\n\
             CMD [\"sh\", \"-c\", \"cat /msg.txt /built.txt\"]\n",
        )
        .unwrap();
        self.p("ctx")
    }

    /// Builds `app` quietly; returns its ID (`sha256:...`).
    fn build_app(&self, message: &str) -> String {
        let ctx = self.app_context(message);
        let out = self.run(&["image", "build"], &["-q", "-t", "app", &ctx]);
        let id = out.ok().stdout.trim_end().to_string();
        assert!(is_id(&id), "build -q prints the image ID: {}", out.context());
        id
    }

    /// The image ID `name` has, as `image inspect` says.
    fn id_of(&self, name: &str) -> String {
        self.run(&["image", "inspect"], &["--format", "{{.Id}}", name]).ok().stdout.trim_end().to_string()
    }

    /// `system df --format json`.
    fn df(&self) -> serde_json::Value {
        let out = self.run(&["system", "df"], &["--format", "json"]);
        serde_json::from_str(&out.ok().stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.context()))
    }
}

/// `sha256:` and 64 lowercase hex digits.
fn is_id(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| is_hex(h, 64))
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The table cells of a line, split where Docker's tables put three spaces.
fn cells(line: &str) -> Vec<&str> {
    line.split("   ").map(str::trim).filter(|c| !c.is_empty()).collect()
}

/// Every path under `dir` with its type and size, and the index: what a
/// failed command must not change.
fn snapshot(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let m = fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(base).unwrap().display().to_string();
            if rel == "lock" {
                continue;
            }
            out.push(format!("{rel} {:?} {}", m.file_type(), if m.is_file() { m.len() } else { 0 }));
            if m.is_dir() {
                walk(base, &e.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out.push(fs::read_to_string(dir.join("images/index.json")).unwrap());
    out
}

#[test]
fn pull_says_there_is_no_registry_and_how_to_bring_an_image() {
    let lab = Lab::new();
    let out = lab.run(&["image", "pull"], &["docker.io/library/debian:latest"]);
    out.exits(1).stderr_has(&[
        "docker.io/library/debian:latest",
        "no network",
        "virtlab image load -i FILE.tar",
        "virtlab image import DIR NAME",
    ]);
    assert!(out.stdout.is_empty(), "{}", out.context());
    // A short name, out of Docker's habit: no registry is blamed for it.
    let out = lab.run(&["image", "pull"], &["busybox"]);
    out.exits(1).stderr_has(&["`busybox` is a local name", "virtlab image load", "virtlab image import DIR busybox"]);
    assert!(!out.stderr.contains("network"), "{}", out.context());
}

#[test]
fn failed_image_commands_exit_1_with_the_reason_as_dockers_do() {
    // None of these needs an image, nor root: an empty store is enough.
    let lab = Lab::new();
    fs::create_dir(lab.path("empty")).unwrap();
    let out = lab.run(&["image", "import"], &[&lab.p("empty"), "Not/Valid"]);
    out.exits(1).stderr_has(&["`Not/Valid` is not a valid image name", "names look like busybox"]);
    assert!(out.stdout.is_empty(), "no ID for an image not made: {}", out.context());
    assert_eq!(lab.run(&["images"], &["-q"]).ok().stdout, "", "nothing was imported");

    let out = lab.run(&["image", "inspect"], &["nope"]);
    out.exits(1).stderr_has(&["no image `nope`", "virtlab image import DIR NAME", "virtlab image load -i FILE.tar"]);
    assert_eq!(out.stdout.trim(), "[]", "as docker inspect prints: {}", out.context());

    let saved = lab.p("saved.tar");
    for args in
        [vec!["rm", "nope"], vec!["history", "nope"], vec!["tag", "nope", "other"], vec!["save", "nope", "-o", &saved]]
    {
        lab.run(&["image", args[0]], &args[1..]).exits(1).stderr_has(&["no image `nope`"]);
    }
    let names: Vec<_> = fs::read_dir(lab.dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!lab.path("saved.tar").exists(), "a failed save writes no archive, not even a temporary one: {names:?}");
    assert_eq!(names.len(), 2, "only store/ and empty/: {names:?}");

    let missing = lab.p("no-such-rootfs");
    lab.run(&["image", "import"], &[&missing, "x"]).exits(1).stderr_has(&[&missing, "No such file"]);
    lab.run(&["system", "df"], &["--format", "yaml"]).exits(1).stderr_has(&["table or json", "yaml"]);

    // A store that cannot be made: said so, with the way out.
    let mut cmd = lab.bare(&["images"]);
    cmd.args(["--root", "/proc/virtlab-no-store"]);
    lab.exec(cmd).exits(1).stderr_has(&["cannot use the image store at /proc/virtlab-no-store", "--root DIR"]);
}

#[test]
fn an_imported_rootfs_is_listed_inspected_and_has_a_history() {
    let Some(lab) = Lab::with_busybox("an_imported_rootfs_is_listed_inspected_and_has_a_history") else {
        return;
    };
    let id = lab.id_of("busybox");
    assert!(is_id(&id), "{id}");
    let short = &id["sha256:".len()..][..12];

    let out = lab.run(&["images"], &[]);
    let lines = out.ok().stdout_lines();
    assert_eq!(cells(lines[0]), ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], "{}", out.context());
    assert_eq!(lines.len(), 2, "{}", out.context());
    let row = cells(lines[1]);
    assert_eq!(row[..3], ["localhost/busybox", "latest", short], "{}", out.context());
    assert!(row[4].ends_with("MB"), "busybox is about 2MB: {}", out.context());
    // `image ls` is the same list; VIRTLAB_ROOT alone names the store too.
    assert_eq!(lab.run(&["image", "ls"], &[]).ok().stdout, out.stdout);
    let mut from_env = lab.bare(&["images"]);
    from_env.env("VIRTLAB_ROOT", lab.store());
    assert_eq!(lab.exec(from_env).ok().stdout, out.stdout);

    assert_eq!(lab.run(&["images"], &["-q"]).ok().stdout, format!("{short}\n"));
    assert_eq!(lab.run(&["images"], &["-q", "--no-trunc"]).ok().stdout, format!("{id}\n"));
    let out = lab.run(&["images"], &["--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(out.ok().stdout, "localhost/busybox:latest\n");
    assert_eq!(lab.run(&["images"], &["-q", "busybox"]).ok().stdout, format!("{short}\n"), "filtered by name");
    assert_eq!(lab.run(&["images"], &["-q", "other"]).ok().stdout, "", "filtered by name");
    lab.run(&["images"], &["--format", "{{.Repository"]).exits(1).stderr_has(&["{{.Repository", "}}"]);
    lab.run(&["images"], &["--format", "{{.Nope}}"]).exits(1).stderr_has(&["no field Nope"]);

    let out = lab.run(&["image", "inspect"], &["--format", "{{.RootFS.Layers}}", "busybox"]);
    let layers = out.ok().stdout.trim_end();
    assert!(
        layers.strip_prefix('[').and_then(|l| l.strip_suffix(']')).is_some_and(is_id),
        "one layer: {}",
        out.context()
    );
    // Full JSON, as docker inspect prints it: an array of one object.
    let out = lab.run(&["image", "inspect"], &["busybox"]);
    let doc: serde_json::Value = serde_json::from_str(&out.ok().stdout).unwrap();
    assert_eq!(doc[0]["Id"], id.as_str(), "{doc}");
    assert_eq!(doc[0]["RepoTags"][0], "localhost/busybox:latest", "{doc}");
    // One found, one not: the one found is printed, and the status is 1.
    let out = lab.run(&["image", "inspect"], &["--format", "{{.Id}}", "busybox", "nope"]);
    assert_eq!(out.exits(1).stdout, format!("{id}\n"), "{}", out.context());
    out.stderr_has(&["no image `nope`"]);

    let out = lab.run(&["image", "history"], &["busybox"]);
    let lines = out.ok().stdout_lines();
    assert_eq!(cells(lines[0]), ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], "{}", out.context());
    assert_eq!(lines.len(), 2, "one step, the import: {}", out.context());
    let row = cells(lines[1]);
    assert_eq!(row[0], short, "{}", out.context());
    assert!(row[2].starts_with("virtlab image import "), "{}", out.context());
    assert_eq!(row[3], cells(lab.run(&["images"], &[]).stdout_lines()[1])[4], "the layer is the image's size");
    let out = lab.run(&["image", "history"], &["--no-trunc", "--format", "{{.CreatedBy}}", "busybox"]);
    assert_eq!(out.ok().stdout, format!("virtlab image import {}\n", lab.p("rootfs")));
}

/// The steps of `image build`'s progress on stderr: each `[n/N] TEXT` line
/// with the lines that follow it.
fn steps(stderr: &str) -> Vec<(String, Vec<String>)> {
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    for line in stderr.lines() {
        if line.starts_with('[') && line.contains("] ") && !line.starts_with("[virtlab") {
            steps.push((line.to_string(), Vec::new()));
        } else if let Some(last) = steps.last_mut() {
            last.1.push(line.trim().to_string());
        }
    }
    steps
}

#[test]
fn a_build_is_cached_the_second_time_and_its_image_runs() {
    let Some(lab) = Lab::with_busybox("a_build_is_cached_the_second_time_and_its_image_runs") else {
        return;
    };
    let ctx = lab.app_context("hello from the context");
    let first = lab.run(&["image", "build"], &["-t", "app", &ctx]);
    first.ok();
    assert_eq!(first.stdout_lines().last(), Some(&"Successfully tagged localhost/app:latest"), "{}", first.context());
    let s = steps(&first.stderr);
    let headers: Vec<&str> = s.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        headers,
        [
            "[1/4] FROM busybox",
            "[2/4] COPY msg.txt /msg.txt",
            "[3/4] RUN echo running-the-run-step && echo built > /built.txt",
            "[4/4] CMD [\"sh\", \"-c\", \"cat /msg.txt /built.txt\"]",
        ],
        "{}",
        first.context()
    );
    assert!(!first.stderr.contains("CACHED"), "nothing cached the first time: {}", first.context());
    // RUN's output is shown as it runs (a line of its own, not the step's).
    let ran = |o: &Out| o.stdout.lines().chain(o.stderr.lines()).any(|l| l == "running-the-run-step");
    assert!(ran(&first), "RUN's output is shown: {}", first.context());

    let second = lab.run(&["image", "build"], &["-t", "app", &ctx]);
    second.ok();
    for (header, rest) in steps(&second.stderr) {
        let layer_step = ["COPY", "RUN", "ADD"].iter().any(|k| header.split_once("] ").unwrap().1.starts_with(k));
        assert_eq!(
            rest.first().map(String::as_str) == Some("CACHED"),
            layer_step,
            "{header}: CACHED for every layer step, and only those\n{}",
            second.context()
        );
    }
    assert!(!ran(&second), "RUN did not run: {}", second.context());
    second.stderr_has(&["2 layer steps, 2 from the cache"]);
    let id = lab.id_of("app");
    let quiet = lab.run(&["image", "build"], &["-q", "-t", "app", &ctx]);
    assert_eq!(quiet.ok().stdout, format!("{id}\n"), "the same image: {}", quiet.context());
    assert_eq!(quiet.stderr, "", "-q prints only the ID: {}", quiet.context());

    // The image runs its CMD, or the command given after its name.
    let out = lab.run(&["container", "run"], &["app"]);
    assert_eq!(out.ok().stdout, "hello from the context\nbuilt\n", "{}", out.context());
    lab.run(&["container", "run"], &["app", "sh", "-c", "exit 7"]).exits(7);
    let out = lab.run(&["container", "run"], &["-e", "X=1", "app", "--", "sh", "-c", "echo $X"]);
    assert_eq!(out.ok().stdout, "1\n", "{}", out.context());
    // The container's cgroups carry the launcher's PID, which is what the
    // leftover check looks for (seen here without a cgroup namespace).
    let out = lab.run(&["container", "run"], &["--ns", "uts,pid,mnt,ipc,net", "app", "cat", "/proc/self/cgroup"]);
    assert!(out.ok().stdout.contains(&format!("/virtlab-{}-", out.pid)), "{}", out.context());

    // What cannot run.
    let out = lab.run(&["container", "run"], &["--rootfs", &lab.p("rootfs"), "app"]);
    out.exits(125).stderr_has(&["either an image (app) or --rootfs DIR, not both"]);
    assert!(out.stdout.is_empty(), "nothing ran: {}", out.context());
    let out = lab.run(&["container", "run"], &["nope-image", "true"]);
    out.exits(125).stderr_has(&["no image `nope-image`", "virtlab image import DIR NAME"]);
    let out = lab.run(&["container", "run"], &["--ns", "uts,pid", "app"]);
    out.exits(125).stderr_has(&["keep `mnt` in --ns"]);
    let out = lab.run(&["container", "run"], &["app", "/no-such-program"]);
    out.exits(127).stderr_has(&["\"/no-such-program\" is not in the image app"]);
    assert!(!out.stderr.contains("virtlab container rootfs"), "no --rootfs advice for an image: {}", out.context());

    // A failed build: the step and its status, no image, nothing left.
    let before = lab.run(&["images"], &["-q", "--no-trunc"]).stdout;
    fs::write(lab.path("ctx/Dockerfile"), "FROM busybox\nRUN echo partial > /p; exit 3\n").unwrap();
    let out = lab.run(&["image", "build"], &["-t", "broken", &ctx]);
    out.exits(1).stderr_has(&["Dockerfile line 2", "exited with status 3"]);
    assert_eq!(lab.run(&["images"], &["-q", "--no-trunc"]).stdout, before, "no image from a failed build");
}

#[test]
fn save_and_load_move_an_image_between_stores() {
    let Some(lab) = Lab::with_busybox("save_and_load_move_an_image_between_stores") else {
        return;
    };
    let id = lab.build_app("saved and loaded");
    let archive = lab.p("app.tar");
    let out = lab.run(&["image", "save"], &["app", "-o", &archive]);
    assert_eq!(out.ok().stdout, "", "the archive goes to the file: {}", out.context());
    let saved = fs::read(&archive).unwrap();
    let mut dir: Vec<_> = fs::read_dir(lab.dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    dir.sort();
    assert_eq!(dir, ["app.tar", "ctx", "rootfs", "store"], "no temporary file left beside the archive");

    // Into a second store: the same image, and it runs.
    let other = Lab::new();
    let out = other.run(&["image", "load"], &["-i", &archive]);
    assert_eq!(out.ok().stdout, "Loaded image: localhost/app:latest\n", "{}", out.context());
    assert_eq!(other.id_of("app"), id);
    let out = other.run(&["container", "run"], &["app"]);
    assert_eq!(out.ok().stdout, "saved and loaded\nbuilt\n", "{}", out.context());

    // To standard output when it is not a terminal (here a pipe): the same
    // archive, and `load` reads one from standard input.
    let out = lab.run(&["image", "save"], &["app"]);
    assert!(out.ok().stdout_bytes == saved, "save to a pipe writes what save -o writes: {}", out.stderr);
    let third = Lab::new();
    let mut load = third.command(&["image", "load"], &[]);
    load.stdin(fs::File::open(&archive).unwrap());
    let out = third.exec(load);
    assert_eq!(out.ok().stdout, "Loaded image: localhost/app:latest\n", "{}", out.context());
    assert_eq!(third.id_of("app"), id);

    // A truncated archive, cut anywhere: refused, and the store unchanged.
    let before = snapshot(&other.store());
    for len in [0, 600, 5000, saved.len() / 2, saved.len() - 1500] {
        let cut = other.p(&format!("cut-{len}.tar"));
        fs::write(&cut, &saved[..len]).unwrap();
        let out = other.run(&["image", "load"], &["-i", &cut]);
        out.exits(1).stderr_has(&[&format!("loading {cut}")]);
        assert!(out.stdout.is_empty(), "{}", out.context());
        assert_eq!(snapshot(&other.store()), before, "the store changed: {}", out.context());
    }
    // Nothing to read: said so.
    let out = third.run(&["image", "load"], &[]);
    out.exits(1).stderr_has(&["empty"]);
}

#[test]
fn tags_are_removed_by_name_ids_need_force_and_prune_takes_untagged_images() {
    let Some(lab) = Lab::with_busybox("tags_are_removed_by_name_ids_need_force_and_prune_takes_untagged_images") else {
        return;
    };
    let id = lab.build_app("version one");
    let short = &id["sha256:".len()..][..12];
    let out = lab.run(&["image", "tag"], &["app", "app:v2"]);
    assert_eq!(out.ok().stdout, "", "{}", out.context());
    let out = lab.run(&["images"], &["--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    let mut rows = out.ok().stdout_lines();
    rows.sort();
    assert_eq!(
        rows,
        [
            format!("localhost/app:latest {short}"),
            format!("localhost/app:v2 {short}"),
            format!("localhost/busybox:latest {}", &lab.id_of("busybox")[7..19]),
        ],
        "{}",
        out.context()
    );
    lab.run(&["image", "tag"], &["app", "Bad:Name"]).exits(1).stderr_has(&["`Bad:Name` is not a valid image name"]);

    let out = lab.run(&["image", "rm"], &["app:v2"]);
    assert_eq!(out.ok().stdout, "Untagged: localhost/app:v2\n", "the image stays, under its other name");
    assert_eq!(lab.id_of("app"), id);

    // By ID, an image with two names goes only with --force.
    lab.run(&["image", "tag"], &["app", "app:v2"]).ok();
    let out = lab.run(&["image", "rm"], &[short]);
    out.exits(1).stderr_has(&[short, "2 names", "--force"]);
    assert!(out.stdout.is_empty(), "{}", out.context());
    assert_eq!(lab.run(&["images"], &["-q", "app"]).stdout, format!("{short}\n"), "both names stay");
    let out = lab.run(&["image", "rm"], &["-f", short]);
    let mut lines = out.ok().stdout_lines();
    lines.sort();
    assert_eq!(
        lines,
        ["Deleted: ".to_string() + &id, "Untagged: localhost/app:latest".into(), "Untagged: localhost/app:v2".into()],
        "{}",
        out.context()
    );
    assert_eq!(lab.run(&["images"], &["-q", "app"]).stdout, "", "both names went");
    let out = lab.run(&["container", "run"], &["busybox", "true"]);
    out.ok(); // the base's layer stays: busybox uses it

    // A rebuild after the copied file changed moves the name; the old image
    // stays, untagged, until prune.
    let old = lab.build_app("version one");
    let new = lab.build_app("version two");
    assert_ne!(old, new);
    let out = lab.run(&["images"], &[]);
    let dangling: Vec<Vec<&str>> = out.stdout_lines().iter().map(|l| cells(l)).filter(|c| c[0] == "<none>").collect();
    assert_eq!(dangling.len(), 1, "{}", out.context());
    assert_eq!(dangling[0][..3], ["<none>", "<none>", &old[7..19]], "{}", out.context());
    let df = lab.df();
    assert_eq!((df["images"].as_u64(), df["dangling"].as_u64()), (Some(3), Some(1)), "{df}");
    // busybox, and each image's COPY layer at least.
    assert!(df["layers"].as_u64() >= Some(4), "{df}");

    let out = lab.run(&["image", "prune"], &[]);
    let lines = out.ok().stdout_lines();
    assert_eq!(lines[0], format!("Deleted: {old}"), "{}", out.context());
    assert!(lines[1].starts_with("Total reclaimed space: ") && lines.len() == 2, "{}", out.context());
    assert!(!lab.run(&["images"], &[]).stdout.contains("<none>"));
    let df = lab.df();
    assert_eq!((df["images"].as_u64(), df["dangling"].as_u64()), (Some(2), Some(0)), "{df}");
    assert_eq!(df["layers"].as_u64(), Some(3), "busybox's and app's (COPY, RUN); the old COPY layer went: {df}");
    assert_eq!(lab.run(&["container", "run"], &["app", "cat", "/msg.txt"]).ok().stdout, "version two\n");
    let out = lab.run(&["image", "prune", "-f"], &[]);
    assert_eq!(out.ok().stdout, "Total reclaimed space: 0B\n", "nothing left to prune: {}", out.context());
}

#[test]
fn system_df_shows_what_images_share() {
    let Some(lab) = Lab::with_busybox("system_df_shows_what_images_share") else {
        return;
    };
    lab.build_app("shared base");
    let out = lab.run(&["system", "df"], &[]);
    let lines = out.ok().stdout_lines();
    assert_eq!(cells(lines[0]), ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], "{}", out.context());
    assert_eq!(cells(lines[1])[..3], ["Images", "2", "0"], "{}", out.context());
    let layers = lines.iter().find(|l| l.starts_with("Layers: ")).unwrap_or_else(|| panic!("{}", out.context()));
    assert!(layers.starts_with("Layers: 3 on disk, 1 shared by more than one image; sharing saves "), "{layers}");

    let out = lab.run(&["system", "df"], &["-v"]);
    let header = out.ok().stdout_lines().into_iter().find(|l| l.starts_with("REPOSITORY")).unwrap();
    assert_eq!(
        cells(header),
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE"],
        "{}",
        out.context()
    );

    let df = lab.df();
    assert_eq!(
        (df["images"].as_u64(), df["layers"].as_u64(), df["shared_layers"].as_u64()),
        (Some(2), Some(3), Some(1)),
        "{df}"
    );
    let per_image = df["per_image"].as_array().unwrap();
    let names: Vec<&str> = per_image.iter().filter_map(|i| i["name"].as_str()).collect();
    assert_eq!(names, ["localhost/busybox:latest", "localhost/app:latest"], "{df}");
    // The base counts once: the store holds less than the images add up to.
    assert!(df["size"].as_u64() < df["size_unshared"].as_u64(), "{df}");

    // An empty store: zeros, no error.
    let empty = Lab::new();
    let df = empty.df();
    assert_eq!((df["images"].as_u64(), df["layers"].as_u64()), (Some(0), Some(0)), "{df}");
}

#[test]
fn a_build_killed_mid_run_leaves_no_image_and_the_next_command_cleans_up() {
    const TEST: &str = "a_build_killed_mid_run_leaves_no_image_and_the_next_command_cleans_up";
    let Some(lab) = Lab::with_busybox(TEST) else { return };
    let ctx = lab.path("slow");
    fs::create_dir_all(&ctx).unwrap();
    // A sleep no other test runs, so that its process can be looked for.
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo started > /started && sleep 37\n").unwrap();
    let before = lab.run(&["images"], &["-q"]).ok().stdout.clone();
    let mut cmd = lab.command(&["image", "build"], &["-t", "slow", ctx.to_str().unwrap()]);
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    // Wait until the RUN step's container is up (its cgroup exists), then
    // kill the builder the hard way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while cgroups_of(pid).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the RUN step never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    // The sentinel removes the container and its cgroups; give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cgroups_of(pid).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the killed build's cgroups stayed: {:?}", cgroups_of(pid));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let tmp = lab.store().join("tmp");
    assert!(
        fs::read_dir(&tmp).unwrap().count() > 0,
        "the killed build left no work directory to clean (was it killed too late?)"
    );
    // The next command (`exec` checks that tmp/ is empty after it): no
    // `slow` image, and the killed build's work is gone.
    let after = lab.run(&["images"], &["-q"]);
    assert_eq!(after.ok().stdout, before, "the killed build added an image");
    let index = fs::read_to_string(lab.store().join("images/index.json")).unwrap_or_default();
    assert!(!index.contains("localhost/slow"), "index.json names the killed build's image: {index}");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(lab.dir.path().to_str().unwrap()), "a mount of the killed build stayed");
    // The RUN step's processes were killed with the build; give the last of
    // them a moment to finish exiting.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let sleeping = Command::new("pgrep").args(["-af", "sleep 37"]).output().unwrap();
        if sleeping.stdout.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the RUN step's process outlived the build: {}",
            String::from_utf8_lossy(&sleeping.stdout)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
