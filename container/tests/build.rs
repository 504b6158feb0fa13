//! `image build`: each Dockerfile step, the build cache, the layers a RUN
//! makes, failures that leave nothing, and the same Dockerfile built by
//! podman run by virtlab.
//!
//! Needs root (RUN steps are containers, layers keep owners) and
//! busybox-static (the base image's shell): without them the tests skip
//! loudly, and with `VIRTLAB_REQUIRE_ROOT=1` (set in CI) a skip is a failure.

// Test code: a failed set-up step should panic right there.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use virtlab_container::image::build::{self, BuildEvent, BuildOptions, Built};
use virtlab_container::image::{archive, import, run, ImageError, Store};
use virtlab_container::{ContainerConfig, Stdio};

fn must_run() -> bool {
    std::env::var("VIRTLAB_REQUIRE_ROOT").is_ok_and(|v| v == "1")
}

/// The busybox binary, if the test can run (root, busybox-static).
fn ready(test: &str) -> Option<PathBuf> {
    if !nix::unistd::geteuid().is_root() {
        assert!(!must_run(), "{test}: needs root, and VIRTLAB_REQUIRE_ROOT=1 forbids skipping");
        eprintln!("SKIPPED: {test}: needs root (RUN steps are containers)");
        return None;
    }
    let bb = virtlab_container::rootfs::host_busybox();
    if bb.is_none() {
        assert!(!must_run(), "{test}: needs busybox-static (scripts/setup.sh installs it)");
        eprintln!("SKIPPED: {test}: needs busybox-static");
    }
    bb
}

struct World {
    _tmp: tempfile::TempDir,
    store: Store,
    ctx: PathBuf,
}

/// A store with a `busybox` base image and an empty build context.
fn world(busybox: &Path) -> World {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let base = tmp.path().join("base");
    virtlab_container::rootfs::build(&base, Some(busybox)).unwrap();
    fs::write(base.join("etc/hostname"), "base\n").unwrap();
    import::import(&store, &base, &"busybox".parse().unwrap()).unwrap();
    let ctx = tmp.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    World { _tmp: tmp, store, ctx }
}

const DOCKERFILE: &str = r#"# the course's two-layer image
FROM busybox
ARG GREETING=hi
ENV APP_HOME=/app \
    MODE=course
WORKDIR $APP_HOME
COPY hello.txt .
RUN echo "$GREETING, built in $MODE" > built.txt && rm /etc/os-release
LABEL course=virtlab
CMD ["cat", "/app/hello.txt", "/app/built.txt"]
"#;

fn build_in(w: &World, tag: &str, args: &[(&str, &str)]) -> Result<(Built, Vec<String>), ImageError> {
    let opts = BuildOptions {
        dockerfile: w.ctx.join("Dockerfile"),
        context: w.ctx.clone(),
        tag: Some(tag.parse().unwrap()),
        build_args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        no_cache: false,
        stdio: Stdio::Capture,
    };
    let mut events = Vec::new();
    let built = build::build(&w.store, &opts, &mut |e| match e {
        BuildEvent::Step { n, text, .. } => events.push(format!("{n} {text}")),
        BuildEvent::Cached => events.push("CACHED".into()),
        _ => {}
    })?;
    Ok((built, events))
}

/// Runs the image's CMD (or `cmd`) and returns its standard output.
fn run_image(store: &Store, name: &str, cmd: &[&str]) -> String {
    let image = store.resolve(name).unwrap();
    let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
    let prepared = run::prepare(store, &image, run::workdir(&image).as_deref()).unwrap();
    let mut cfg = ContainerConfig::new(&prepared.mount_point, run::command(&image, None, &cmd).unwrap());
    cfg.layers = Some(prepared.layers.clone());
    cfg.env = run::environment(&image);
    if let Some(w) = run::workdir(&image) {
        cfg.workdir = w.into();
    }
    cfg.stdio = Stdio::Capture;
    let out = virtlab_container::run(&cfg).unwrap();
    assert_eq!(out.exit_code(), 0, "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn each_step_builds_and_an_unchanged_rebuild_comes_from_the_cache() {
    const TEST: &str = "each_step_builds_and_an_unchanged_rebuild_comes_from_the_cache";
    let Some(bb) = ready(TEST) else { return };
    let w = world(&bb);
    fs::write(w.ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    fs::write(w.ctx.join("hello.txt"), "hello from the context\n").unwrap();

    let (first, events) = build_in(&w, "course/app:v1", &[]).unwrap();
    assert_eq!((first.layer_steps, first.cached), (2, 0), "{events:?}");
    let image = &first.image;
    assert_eq!(image.diff_ids().len(), 3, "the base layer, COPY's and RUN's");
    assert_eq!(run_image(&w.store, "course/app:v1", &[]), "hello from the context\nhi, built in course\n");
    let config = image.config.config().clone().unwrap();
    assert_eq!(config.working_dir().as_deref(), Some("/app"));
    assert!(config.env().clone().unwrap().contains(&"MODE=course".to_string()));
    assert_eq!(config.labels().clone().unwrap().get("course").map(String::as_str), Some("virtlab"));
    // The history: the base image's step, then one per instruction after FROM.
    let history: Vec<(String, bool)> = image
        .config
        .history()
        .clone()
        .unwrap()
        .iter()
        .map(|h| (h.created_by().clone().unwrap_or_default(), h.empty_layer().unwrap_or(false)))
        .collect();
    let steps: Vec<&str> = history.iter().map(|(c, _)| c.split_whitespace().next().unwrap_or("")).collect();
    assert_eq!(steps, ["virtlab", "ARG", "ENV", "WORKDIR", "COPY", "RUN", "LABEL", "CMD"]);
    assert_eq!(history.iter().filter(|(_, empty)| !empty).count(), 3);

    // Unchanged: nothing runs, and the image is the same one.
    let (again, events) = build_in(&w, "course/app:v1", &[]).unwrap();
    assert_eq!((again.layer_steps, again.cached), (2, 2), "{events:?}");
    assert_eq!(again.image.id, image.id);

    // A build argument changes RUN but not COPY; a changed file changes both.
    let (hello, _) = build_in(&w, "course/app:v2", &[("GREETING", "hello")]).unwrap();
    assert_eq!((hello.layer_steps, hello.cached), (2, 1));
    assert_eq!(run_image(&w.store, "course/app:v2", &[]), "hello from the context\nhello, built in course\n");
    fs::write(w.ctx.join("hello.txt"), "changed\n").unwrap();
    let (changed, _) = build_in(&w, "course/app:v3", &[]).unwrap();
    assert_eq!((changed.layer_steps, changed.cached), (2, 0));
    assert_eq!(changed.image.diff_ids()[0], image.diff_ids()[0], "the base layer is shared");
    assert_eq!(fs::read_dir(w.store.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn a_run_layer_holds_only_its_changes_with_the_container_ids_shifted_back() {
    const TEST: &str = "a_run_layer_holds_only_its_changes_with_the_container_ids_shifted_back";
    let Some(bb) = ready(TEST) else { return };
    let w = world(&bb);
    fs::write(
        w.ctx.join("Dockerfile"),
        "FROM busybox\nRUN mkdir /data && echo x > /data/file && chown 1000:1000 /data/file && rm /etc/hostname\n",
    )
    .unwrap();
    let (built, _) = build_in(&w, "changes", &[]).unwrap();
    let top = w.store.layer_dirs(&built.image).unwrap().pop().unwrap();
    let mut names: Vec<String> = Vec::new();
    for e in walk(&top) {
        names.push(e.strip_prefix(&top).unwrap().display().to_string());
    }
    names.sort();
    assert_eq!(names, ["data", "data/file", "etc", "etc/hostname"], "the layer holds more than the step changed");
    let file = fs::metadata(top.join("data/file")).unwrap();
    assert_eq!((file.uid(), file.gid()), (1000, 1000), "container ids were not shifted back");
    assert_eq!(fs::metadata(top.join("data")).unwrap().uid(), 0);
    let gone = fs::symlink_metadata(top.join("etc/hostname")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0, "the deletion is not a whiteout");
    // In the blob the deletion is an OCI whiteout.
    let blob = w.store.blob_path(built.image.manifest.layers().last().unwrap().digest().digest());
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(File::open(blob).unwrap()).read_to_end(&mut raw).unwrap();
    let entries: Vec<String> = tar::Archive::new(&raw[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(entries.contains(&"etc/.wh.hostname".to_string()), "{entries:?}");
    assert_eq!(
        run_image(&w.store, "changes", &["sh", "-c", "cat /data/file; test -e /etc/hostname || echo deleted"]),
        "x\ndeleted\n"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn failed_builds_are_named_and_leave_no_image() {
    const TEST: &str = "failed_builds_are_named_and_leave_no_image";
    let Some(bb) = ready(TEST) else { return };
    let w = world(&bb);
    let outside = w.ctx.parent().unwrap().join("secret");
    fs::write(&outside, "host secret").unwrap();
    std::os::unix::fs::symlink(&outside, w.ctx.join("link-out")).unwrap();
    let before = w.store.images().unwrap().len();
    for (dockerfile, says) in [
        ("FROM busybox\nRUN echo partial > /partial && exit 3\n", "status 3"),
        ("FROM busybox\nCOPY ../secret /\n", "outside the build context"),
        ("FROM busybox\nCOPY link-out /\n", "outside the build context"),
        ("FROM busybox\nCOPY missing.txt /\n", "no such file"),
        ("FROM nothing-here\n", "not in the store"),
        ("FROM busybox\nFROBNICATE x\n", "line 2"),
    ] {
        fs::write(w.ctx.join("Dockerfile"), dockerfile).unwrap();
        let err = build_in(&w, "broken", &[]).unwrap_err().to_string();
        assert!(err.contains(says), "{dockerfile:?}: {err}");
    }
    assert_eq!(w.store.images().unwrap().len(), before, "a failed build left an image");
    assert_eq!(fs::read_dir(w.store.root().join("tmp")).unwrap().count(), 0, "a failed build left its work");
    assert_eq!(fs::read_dir(w.store.root().join("cache")).unwrap().count(), 0, "a failed build left a cache entry");
    assert!(!fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&w.store.root().display().to_string()));
}

#[test]
fn podman_builds_the_same_dockerfile_and_virtlab_runs_its_image() {
    const TEST: &str = "podman_builds_the_same_dockerfile_and_virtlab_runs_its_image";
    let Some(bb) = ready(TEST) else { return };
    if !Command::new("podman").arg("--version").output().is_ok_and(|o| o.status.success()) {
        assert!(!must_run(), "{TEST}: needs podman (scripts/setup.sh installs it)");
        return eprintln!("SKIPPED: {TEST}: needs podman");
    }
    let w = world(&bb);
    fs::write(w.ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    fs::write(w.ctx.join("hello.txt"), "hello from the context\n").unwrap();
    let work = w.ctx.parent().unwrap().to_path_buf();
    let base = work.join("busybox.tar");
    archive::save(&w.store, &["busybox".into()], File::create(&base).unwrap()).unwrap();
    // podman with storage of the test's own; RUN steps isolated with chroot,
    // which needs no OCI runtime (crun refuses this host's cgroup layout).
    let podman = |args: &[&str]| {
        let out = Command::new("podman")
            .arg("--root")
            .arg(work.join("podman-root"))
            .arg("--runroot")
            .arg(work.join("podman-run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "podman {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    podman(&["load", "-i", base.to_str().unwrap()]);
    let ulimits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"];
    let mut args = vec!["build", "--isolation", "chroot"];
    args.extend(ulimits);
    args.extend(["-t", "localhost/course/app:podman", w.ctx.to_str().unwrap()]);
    podman(&args);
    let theirs = work.join("podman-app.tar");
    podman(&["save", "--format", "oci-archive", "-o", theirs.to_str().unwrap(), "localhost/course/app:podman"]);
    let loaded = archive::load(&w.store, File::open(&theirs).unwrap()).unwrap();
    assert_eq!(loaded[0].name.as_ref().unwrap().to_string(), "localhost/course/app:podman");
    assert_eq!(run_image(&w.store, "course/app:podman", &[]), "hello from the context\nhi, built in course\n");
    // Ours, from the same Dockerfile, says the same and shares podman's base layer.
    let (ours, _) = build_in(&w, "course/app:virtlab", &[]).unwrap();
    assert_eq!(run_image(&w.store, "course/app:virtlab", &[]), run_image(&w.store, "course/app:podman", &[]));
    assert_eq!(ours.image.diff_ids()[0], loaded[0].diff_ids()[0]);
}
