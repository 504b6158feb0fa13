//! `virtlab compare` end to end: a quick run whose JSON validates against
//! the published schema, with every environment this host can run, CSV with
//! a line per run, and SVG charts that parse; interrupted runs, output paths
//! checked first, and the options compare shares with `vm run` and
//! `container run`.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

mod common;

use std::process::{Command, Stdio};

use common::must;

#[test]
fn quick_compare_writes_valid_json_csv_and_svg() {
    let dir = std::env::temp_dir().join(format!("virtlab-compare-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, csv, svg) = (dir.join("out.json"), dir.join("out.csv"), dir.join("svg"));
    let out = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["compare", "--quick", "--runs", "2", "--workload", "ready,cpu=100000,syscall=50,io=2"])
        .arg("--json")
        .arg(&json)
        .arg("--csv")
        .arg(&csv)
        .arg("--svg")
        .arg(&svg)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("What this run shows"), "{stdout}");

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let schema: serde_json::Value = serde_json::from_str(include_str!("../schema/compare.v1.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> =
        validator.iter_errors(&report).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "schema violations:\n{}", errors.join("\n"));
    // The schema does constrain: a report with a wrong version or a missing
    // section is refused.
    let mut wrong = report.clone();
    wrong["schema"] = "virtlab.compare/0".into();
    assert!(!validator.is_valid(&wrong));
    let mut missing = report.clone();
    missing.as_object_mut().unwrap().remove("rows");
    assert!(!validator.is_valid(&missing));

    let envs: Vec<&str> = report["rows"].as_array().unwrap().iter().map(|r| r["env"].as_str().unwrap()).collect();
    assert!(envs.contains(&"native"));
    let kvm = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if kvm {
        assert!(envs.contains(&"vm-mini-uart") && envs.contains(&"vm-mini-pv"), "{envs:?}");
    } else if must("VIRTLAB_REQUIRE_KVM") {
        panic!("/dev/kvm is required (VIRTLAB_REQUIRE_KVM=1) but cannot be opened");
    } else {
        eprintln!("SKIPPED VM rows of quick_compare_writes_valid_json_csv_and_svg: no /dev/kvm");
    }
    if root {
        assert!(envs.contains(&"container"), "{envs:?}");
    } else if must("VIRTLAB_REQUIRE_ROOT") {
        panic!("root is required (VIRTLAB_REQUIRE_ROOT=1)");
    } else {
        eprintln!("SKIPPED container rows of quick_compare_writes_valid_json_csv_and_svg: not root");
    }
    assert_eq!(report["claims"].as_array().unwrap().len(), 6);
    assert!(
        report["skipped"].as_array().unwrap().iter().any(|s| s["env"] == "vm-linux"),
        "--quick leaves vm-linux out, saying why"
    );

    let samples = report["samples"].as_array().unwrap().len();
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(csv.lines().count(), samples + 1);

    for name in ["startup.svg", "overhead.svg", "timeline.svg"] {
        let text = std::fs::read_to_string(svg.join(name)).unwrap();
        let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{name} is not XML: {e}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg", "{name}");
        let bars = doc.descendants().filter(|n| n.tag_name().name() == "rect").count();
        assert!(bars > 2, "{name} has {bars} rects");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn env_and_scale_lists_select_what_runs() {
    let out = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args([
            "compare",
            "--quick",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--no-probe",
            "--env",
            "native",
            "--workload",
            "ready",
        ])
        .args(["--scale", "1,2", "--json", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["env"], "native");
    let scale = report["scale"].as_array().unwrap();
    assert_eq!(scale.iter().map(|p| p["instances"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2]);
    assert!(scale.iter().all(|p| p["failed"] == 0 && p["per_second"].as_f64().unwrap() > 0.0), "{scale:?}");
}

#[test]
fn the_restore_row_runs_from_one_snapshot_and_scales() {
    if !kvm_or_skip("the_restore_row_runs_from_one_snapshot_and_scales") {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["compare", "--runs", "2", "--warmup", "0", "--no-probe", "--env", "vm-mini-pv,vm-mini-restore"])
        .args(["--workload", "ready,cpu=100000", "--scale", "1,4", "--json", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let restore: Vec<_> = rows.iter().filter(|r| r["env"] == "vm-mini-restore").collect();
    assert_eq!(restore.len(), 2, "{rows:?}");
    assert!(restore.iter().all(|r| r["startup_us"]["median"].as_f64().is_some_and(|t| t > 0.0)), "{restore:?}");
    let scale = report["scale"].as_array().unwrap();
    let restored: Vec<_> = scale.iter().filter(|p| p["env"] == "vm-mini-restore").collect();
    assert_eq!(restored.len(), 2);
    assert!(restored.iter().all(|p| p["failed"] == 0), "{restored:?}");
    if root_or_skip("the_restore_row_runs_from_one_snapshot_and_scales (its memory figures)") {
        // Each restore's own memory is a cgroup peak of a `vm restore`
        // process, in the rows and at every scale point.
        for r in &restore {
            assert_eq!(r["memory_method"], "cgroup-peak", "{r}");
            assert!(r["memory_bytes"]["median"].as_f64().is_some_and(|b| b > 0.0), "{r}");
        }
        for p in &restored {
            assert_eq!(p["memory_method"], "cgroup-peak", "{p}");
            assert!(p["memory_per_instance_bytes"].as_f64().is_some_and(|b| b > 0.0), "{p}");
        }
        let cgroups = std::fs::read_dir("/sys/fs/cgroup/memory")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("virtlab-mem-vm-mini-restore-"))
            .count();
        assert_eq!(cgroups, 0, "a restore's memory cgroup was left");
    }
    // The snapshot's temporary directory went with the run.
    let left = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("virtlab-compare-snapshots-"))
        .count();
    assert_eq!(left, 0, "a snapshot directory was left in the temporary directory");
}

#[test]
fn bad_names_are_refused_with_the_list_of_good_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_virtlab")).args(["compare", "--env", "docker"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("vm-mini"));
    let out = Command::new(env!("CARGO_BIN_EXE_virtlab")).args(["compare", "--workload", "fork"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ready, cpu"));
}

#[test]
fn peers_run_beside_ours_or_say_why_not() {
    let out = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["compare", "--quick", "--runs", "1", "--warmup", "0", "--no-probe", "--peers", "--workload", "ready"])
        .args(["--json", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows: Vec<&str> = report["rows"].as_array().unwrap().iter().map(|r| r["env"].as_str().unwrap()).collect();
    let skipped: Vec<&str> = report["skipped"].as_array().unwrap().iter().map(|r| r["env"].as_str().unwrap()).collect();
    let peers =
        ["qemu-microvm", "qemu-tcg", "qemu-microvm-linux", "qemu-tcg-linux", "bwrap", "runc", "crun", "podman+runc"];
    for peer in peers.into_iter().chain(["podman+virtlab"]) {
        let ran = rows.contains(&peer);
        assert!(ran || skipped.contains(&peer), "{peer} neither ran nor was skipped with a reason");
        if peer.ends_with("-linux") {
            // --quick leaves the Linux guest rows out, ours and QEMU's alike.
            let reason = report["skipped"].as_array().unwrap().iter().find(|s| s["env"] == peer).unwrap();
            assert!(reason["reason"].as_str().unwrap().contains("--quick"), "{reason}");
            continue;
        }
        if !ran {
            let reason = report["skipped"].as_array().unwrap().iter().find(|s| s["env"] == peer).unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_string();
            // crun may be refused by this host's cgroup layout; nothing
            // else excuses a peer that scripts/setup.sh installs.
            let host_refusal = peer == "crun" && reason.contains("hybrid");
            if must("VIRTLAB_REQUIRE_PEERS") && !host_refusal {
                panic!("{peer} is required (VIRTLAB_REQUIRE_PEERS=1) but was skipped ({reason}): {stderr}");
            }
            eprintln!("SKIPPED peer {peer}: see the report's reason");
        }
    }
    if rows.contains(&"qemu-microvm") {
        let ratios = report["peers"].as_array().unwrap();
        assert!(ratios.iter().any(|p| p["peer"] == "qemu-microvm" && p["startup_ratio"].is_number()), "{ratios:?}");
    }
    // Nothing left behind: no bundle directories, no runc state, no image
    // directory with podman's storage.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("virtlab-oci-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    if let Some(dir) = image_dir_in(&stderr) {
        assert_no_trace_of(&dir, None);
    }
}

/// The comparison's image directory, from its line on standard error.
/// The command lines of the processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

fn image_dir_in(stderr: &str) -> Option<std::path::PathBuf> {
    let line = stderr.lines().find(|l| l.contains("built the 3-layer image"))?;
    let after = line.split(" in /").nth(1)?;
    Some(std::path::PathBuf::from(format!("/{}", after.split(" (").next()?)))
}

/// Nothing of the image directory `dir` left: the directory, a process
/// naming it (podman, conmon), a mount under it; nor, for run `pid`, a
/// podman cgroup.
fn assert_no_trace_of(dir: &std::path::Path, pid: Option<u32>) {
    assert!(dir.starts_with(std::env::temp_dir()), "{}: not in the temporary directory", dir.display());
    assert!(!dir.exists(), "{} left behind", dir.display());
    let needle = dir.display().to_string();
    let procs = processes_mentioning(&needle);
    assert!(procs.is_empty(), "processes left behind: {procs:?}");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(&needle), "mounts left under {needle}");
    if let Some(pid) = pid {
        let prefix = format!("virtlab-mem-podman-{pid}-");
        let cgroups: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .filter_map(|e| e.ok())
            .flat_map(|h| std::fs::read_dir(h.path()).into_iter().flatten().filter_map(|e| e.ok()))
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect();
        assert!(cgroups.is_empty(), "podman cgroups left behind: {cgroups:?}");
    }
}

#[test]
fn container_image_runs_beside_container_from_a_private_store() {
    let test = "container_image_runs_beside_container_from_a_private_store";
    if !root_or_skip(test) {
        return;
    }
    let (code, report, stderr, pid, _) =
        compare_json(&["--env", "container,container-image", "--runs", "2", "--warmup", "0", "--workload", "ready"]);
    assert_eq!(code, Some(0), "{stderr}");
    for env in ["container", "container-image"] {
        let r = row(&report, env, "ready").unwrap_or_else(|| panic!("no {env} row: {stderr}"));
        assert_eq!(r["runs"], 2, "{env}: {r}");
        assert!(r["startup_us"]["median"].as_f64().unwrap() > 0.0, "{env}: {r}");
        assert!(r["total_us"]["median"].as_f64().unwrap() >= r["startup_us"]["median"].as_f64().unwrap(), "{r}");
        assert_eq!(r["memory_method"], "cgroup-peak", "{env}: {r}");
        let samples: Vec<&serde_json::Value> =
            report["samples"].as_array().unwrap().iter().filter(|s| s["env"] == env).collect();
        assert_eq!(samples.len(), 2, "{env}");
        assert!(samples.iter().all(|s| s["exit_status"] == 0), "{env}: {samples:?}");
    }
    // The fresh writable layer is part of the start: the first phase, and
    // every later one counted after it.
    let sample = report["samples"].as_array().unwrap().iter().find(|s| s["env"] == "container-image").unwrap();
    let phases = sample["phases"].as_array().unwrap();
    assert_eq!(phases[0]["name"], "upper_dir", "{phases:?}");
    let upper = phases[0]["at_us"].as_f64().unwrap();
    assert!(upper > 0.0 && phases.iter().skip(1).all(|p| p["at_us"].as_f64().unwrap() >= upper), "{phases:?}");
    assert!(sample["startup_us"].as_f64().unwrap() > upper, "{sample}");
    // The image was made in a temporary store of the run's, and is gone.
    let dir = image_dir_in(&stderr).unwrap_or_else(|| panic!("no image line: {stderr}"));
    assert_no_trace_of(&dir, Some(pid));
}

#[test]
fn image_bases_the_image_row_on_an_image_of_the_users_store() {
    let test = "image_bases_the_image_row_on_an_image_of_the_users_store";
    if !root_or_skip(test) {
        return;
    }
    // A store with a base image that does not have the workload: the run
    // must add it as a layer of its own.
    let dir = tempfile::tempdir().unwrap();
    let (store, base) = (dir.path().join("store"), dir.path().join("base"));
    std::fs::create_dir_all(base.join("etc")).unwrap();
    std::fs::write(base.join("etc/base-only"), "from the user's image\n").unwrap();
    let virtlab = env!("CARGO_BIN_EXE_virtlab");
    let out = Command::new(virtlab)
        .args(["image", "import", "--root"])
        .arg(&store)
        .arg(&base)
        .arg("course/base")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let root = store.to_str().unwrap();
    let (code, report, stderr, pid, _) = compare_json(&[
        "--image",
        "course/base",
        "--root",
        root,
        "--env",
        "native",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--workload",
        "ready",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("built the 3-layer image"), "one base layer and two added: {stderr}");
    let r = row(&report, "container-image", "ready")
        .unwrap_or_else(|| panic!("--image adds the container-image row: {stderr}"));
    assert_eq!(r["runs"], 1, "{r}");
    let dir_of_run = image_dir_in(&stderr).unwrap_or_else(|| panic!("no image line: {stderr}"));
    assert_no_trace_of(&dir_of_run, Some(pid));
    // A name the store does not have is refused before anything runs.
    let out = Command::new(virtlab)
        .args(["compare", "--no-probe", "--image", "nope", "--root", root, "--env", "native", "--runs", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("no image `nope`"), "{stderr}");
}

#[test]
fn podman_runs_the_same_image_and_leaves_nothing_behind() {
    let test = "podman_runs_the_same_image_and_leaves_nothing_behind";
    if !root_or_skip(test)
        || !common::tool_or_skip(
            test,
            "podman",
            "apt-get install podman",
            &["VIRTLAB_REQUIRE_PEERS", "VIRTLAB_REQUIRE_ROOT"],
        )
    {
        return;
    }
    // podman's default storage, which a private one must not create.
    let host_storage = ["/var/lib/containers/storage", "/run/containers/storage", "/var/lib/virtlab"]
        .map(|p| (p, std::path::Path::new(p).exists()));
    let zombies_before = init_s_conmon_zombies();
    let (code, report, stderr, pid, _) =
        compare_json(&["--env", "container-image,podman", "--runs", "2", "--warmup", "0", "--workload", "ready"]);
    assert_eq!(code, Some(0), "{stderr}");
    // `podman` is the podman+runc row's old name.
    let r = row(&report, "podman+runc", "ready").unwrap_or_else(|| panic!("no podman+runc row: {stderr}"));
    assert_eq!(r["runs"], 2, "{r}");
    assert!(r["startup_us"]["median"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["total_us"]["median"].as_f64().unwrap() >= r["startup_us"]["median"].as_f64().unwrap(), "{r}");
    assert_eq!(r["memory_method"], "cgroup-peak", "{r}");
    assert!(r["memory_bytes"]["median"].as_f64().unwrap() > 0.0, "{r}");
    let samples: Vec<&serde_json::Value> =
        report["samples"].as_array().unwrap().iter().filter(|s| s["env"] == "podman+runc").collect();
    assert!(samples.len() == 2 && samples.iter().all(|s| s["exit_status"] == 0), "{samples:?}");
    assert!(samples.iter().all(|s| s["pid"] == 1), "the workload is PID 1 of podman's container: {samples:?}");
    let ratio = report["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ours"] == "container-image" && p["peer"] == "podman+runc")
        .unwrap_or_else(|| panic!("no container-image / podman+runc ratio: {}", report["peers"]));
    assert!(ratio["startup_ratio"].as_f64().unwrap() > 0.0, "{ratio}");
    assert!(ratio["total_ratio"].as_f64().unwrap() > 0.0, "{ratio}");
    // Nothing left: storage, processes (conmon), mounts, cgroups.
    let dir = image_dir_in(&stderr).unwrap_or_else(|| panic!("no image line: {stderr}"));
    assert!(stderr.contains("loaded into podman's"), "{stderr}");
    assert_no_trace_of(&dir, Some(pid));
    for (path, existed) in host_storage {
        assert!(existed || !std::path::Path::new(path).exists(), "the run created {path}");
    }
    // conmon daemonizes; the harness adopted and reaped each one, so none
    // was left for init to reap.
    let new: Vec<u32> = init_s_conmon_zombies().into_iter().filter(|p| !zombies_before.contains(p)).collect();
    assert!(new.is_empty(), "conmon zombies left to init: {new:?}");
}

/// podman with virtlab as its OCI runtime beside podman with runc: both
/// rows have figures, ours / peer is podman+virtlab / podman+runc, and
/// nothing is left (the image directory with the `virtlab-runc` link,
/// conmon or runtime processes, mounts, cgroups, runtime records).
#[test]
fn podman_with_virtlab_as_its_runtime_runs_beside_runc_and_leaves_nothing() {
    let test = "podman_with_virtlab_as_its_runtime_runs_beside_runc_and_leaves_nothing";
    if !root_or_skip(test)
        || !common::tool_or_skip(
            test,
            "podman",
            "apt-get install podman",
            &["VIRTLAB_REQUIRE_PEERS", "VIRTLAB_REQUIRE_ROOT"],
        )
    {
        return;
    }
    let (code, report, stderr, pid, _) =
        compare_json(&["--env", "podman,podman+virtlab", "--runs", "1", "--warmup", "0", "--workload", "ready"]);
    assert_eq!(code, Some(0), "{stderr}");
    for env in ["podman+runc", "podman+virtlab"] {
        let r = row(&report, env, "ready").unwrap_or_else(|| panic!("no {env} row: {stderr}"));
        assert_eq!(r["runs"], 1, "{r}");
        assert!(r["startup_us"]["median"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["total_us"]["median"].as_f64().unwrap() >= r["startup_us"]["median"].as_f64().unwrap(), "{r}");
        assert_eq!(r["memory_method"], "cgroup-peak", "{r}");
        assert!(r["memory_bytes"]["median"].as_f64().unwrap() > 0.0, "{r}");
        let sample = report["samples"].as_array().unwrap().iter().find(|s| s["env"] == env).unwrap();
        assert_eq!((&sample["exit_status"], &sample["pid"]), (&0.into(), &1.into()), "{sample}");
    }
    let ratio = report["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ours"] == "podman+virtlab" && p["peer"] == "podman+runc")
        .unwrap_or_else(|| panic!("no podman+virtlab / podman+runc ratio: {}", report["peers"]));
    assert!(ratio["total_ratio"].as_f64().unwrap() > 0.0, "{ratio}");
    let dir = image_dir_in(&stderr).unwrap_or_else(|| panic!("no image line: {stderr}"));
    assert_no_trace_of(&dir, Some(pid));
    // The runtime's records (podman names no --root, so virtlab's default
    // root): none of a container of this run's podman storage.
    let left: Vec<std::path::PathBuf> = std::fs::read_dir("/run/virtlab/oci")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|r| std::fs::read_to_string(r.join("state.json")).is_ok_and(|t| t.contains(&dir.display().to_string())))
        .collect();
    assert!(left.is_empty(), "virtlab runtime records left behind: {left:?}");
}

/// The pids of exited, unreaped conmon processes whose parent is init.
fn init_s_conmon_zombies() -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let mut fields = rest.split_whitespace();
        let (state, ppid) = (fields.next(), fields.next());
        if head.ends_with("(conmon") && state == Some("Z") && ppid == Some("1") {
            found.push(pid);
        }
    }
    found
}

/// Whether a Linux guest kernel (any) is available; if not, a loud skip,
/// or a failure under VIRTLAB_REQUIRE_LINUX=1.
fn linux_kernel_or_skip(test: &str) -> bool {
    use virtlab_vmm::linux::provision::{test_kernel_or_skip, Origin};
    test_kernel_or_skip(test, &Origin::ALL).is_some()
}

fn kvm_or_skip(test: &str) -> bool {
    let ok = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    if !ok {
        if must("VIRTLAB_REQUIRE_KVM") {
            panic!("{test}: /dev/kvm is required (VIRTLAB_REQUIRE_KVM=1) but cannot be opened");
        }
        eprintln!("SKIPPED {test}: no /dev/kvm");
    }
    ok
}

fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let ok = unsafe { libc::geteuid() } == 0;
    if !ok {
        if must("VIRTLAB_REQUIRE_ROOT") {
            panic!("{test}: root is required (VIRTLAB_REQUIRE_ROOT=1)");
        }
        eprintln!("SKIPPED {test}: not root (memory cgroups need it)");
    }
    ok
}

/// Runs `virtlab compare ARGS --json -`; returns (exit status, report, stderr,
/// the run's pid, how long it took). The report is checked against the schema.
fn compare_json(args: &[&str]) -> (Option<i32>, serde_json::Value, String, u32, std::time::Duration) {
    let t0 = std::time::Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .arg("compare")
        .args(args)
        .args(["--no-probe", "--json", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let took = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON report ({e}): {stderr}"));
    let schema: serde_json::Value = serde_json::from_str(include_str!("../schema/compare.v1.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> =
        validator.iter_errors(&report).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "schema violations:\n{}", errors.join("\n"));
    (out.status.code(), report, stderr, pid, took)
}

/// [`compare_json`] of one `ready` run, without warm-up, in `envs`.
fn ready_once(envs: &str) -> (Option<i32>, serde_json::Value, String, u32, std::time::Duration) {
    compare_json(&["--env", envs, "--workload", "ready", "--runs", "1", "--warmup", "0"])
}

/// Nothing of run `pid` left behind: its initramfs file, and any process
/// whose command line names it (a QEMU).
fn assert_nothing_left(pid: u32) {
    let initramfs = format!("virtlab-initramfs-{pid}.cpio");
    assert!(!std::env::temp_dir().join(&initramfs).exists(), "{initramfs} left behind");
    let procs = processes_mentioning(&initramfs);
    assert!(procs.is_empty(), "processes left behind: {procs:?}");
}

fn row<'r>(report: &'r serde_json::Value, env: &str, workload: &str) -> Option<&'r serde_json::Value> {
    report["rows"].as_array().unwrap().iter().find(|r| r["env"] == env && r["workload"] == workload)
}

#[test]
fn qemu_tcg_boots_the_same_linux_guest() {
    let test = "qemu_tcg_boots_the_same_linux_guest";
    if !common::tool_or_skip(test, "qemu-system-x86_64", "apt-get install qemu-system-x86", &["VIRTLAB_REQUIRE_QEMU"])
        || !linux_kernel_or_skip(test)
    {
        return;
    }
    let (code, report, stderr, pid, _) = ready_once("qemu-tcg-linux");
    assert_eq!(code, Some(0), "{stderr}");
    let r = row(&report, "qemu-tcg-linux", "ready").unwrap_or_else(|| panic!("no qemu-tcg-linux row: {stderr}"));
    assert!(r["startup_us"]["median"].as_f64().unwrap() > 0.0, "{r}");
    let sample = report["samples"].as_array().unwrap().iter().find(|s| s["env"] == "qemu-tcg-linux").unwrap();
    assert_eq!(sample["exit_status"], 0);
    assert_nothing_left(pid);
}

#[test]
fn qemu_kvm_boots_the_linux_guest_or_fails_fast_saying_why() {
    let test = "qemu_kvm_boots_the_linux_guest_or_fails_fast_saying_why";
    if !common::tool_or_skip(test, "qemu-system-x86_64", "apt-get install qemu-system-x86", &["VIRTLAB_REQUIRE_QEMU"])
        || !kvm_or_skip(test)
        || !linux_kernel_or_skip(test)
    {
        return;
    }
    let (code, report, stderr, pid, took) = ready_once("qemu-microvm-linux");
    assert_nothing_left(pid);
    match row(&report, "qemu-microvm-linux", "ready") {
        Some(r) => {
            // Hardware-assisted KVM: it boots.
            assert_eq!(code, Some(0), "{stderr}");
            assert!(r["startup_us"]["median"].as_f64().unwrap() > 0.0, "{r}");
        }
        None => {
            // This host's instruction emulator stops it: said at once, not
            // after the Linux timeout (15 minutes), as a peer this host
            // cannot run (skipped with the reason), not a failed run.
            assert_eq!(code, Some(0), "{stderr}");
            assert!(report["failures"].as_array().unwrap().is_empty(), "{stderr}");
            let skipped = report["skipped"].as_array().unwrap();
            assert_eq!(skipped.len(), 1, "skipped once, not retried: {skipped:?}");
            assert_eq!(skipped[0]["env"], "qemu-microvm-linux");
            let error = skipped[0]["reason"].as_str().unwrap();
            assert!(error.contains("KVM internal error") && error.contains("emulation failure"), "{error}");
            assert!(error.contains("virtlab vm run --explain"), "{error}");
            // How long QEMU ran before the failure depends on the kernel
            // (seconds for virtlab's own, minutes for a stock one); the run
            // must end right after it.
            let failed_after: f64 = error
                .split(" s after it started")
                .next()
                .and_then(|head| head.rsplit(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no failure time in {error}"));
            assert!(
                took.as_secs_f64() < failed_after + 60.0,
                "took {took:?}, QEMU failed after {failed_after} s: the failure must end the run at once"
            );
            assert!(took.as_secs() < 600, "took {took:?}: well under the 15-minute Linux timeout");
        }
    }
}

#[test]
fn every_vm_row_measures_memory_in_a_cgroup() {
    let test = "every_vm_row_measures_memory_in_a_cgroup";
    if !root_or_skip(test)
        || !kvm_or_skip(test)
        || !common::tool_or_skip(
            test,
            "qemu-system-x86_64",
            "apt-get install qemu-system-x86",
            &["VIRTLAB_REQUIRE_QEMU"],
        )
    {
        return;
    }
    let (code, report, stderr, _, _) = ready_once("vm-mini-pv,qemu-microvm");
    assert_eq!(code, Some(0), "{stderr}");
    for env in ["vm-mini-pv", "qemu-microvm"] {
        let r = row(&report, env, "ready").unwrap_or_else(|| panic!("no {env} row: {stderr}"));
        assert!(r["memory_bytes"]["median"].as_f64().unwrap() > 0.0, "{env}: {r}");
        assert_eq!(r["memory_method"], "cgroup-peak", "{env}: {r}");
        let samples = report["samples"].as_array().unwrap();
        assert!(samples.iter().filter(|s| s["env"] == env).all(|s| s["memory_method"] == "cgroup-peak"));
    }
    let ratio = report["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ours"] == "vm-mini-pv" && p["peer"] == "qemu-microvm")
        .unwrap();
    assert!(ratio["memory_ratio"].as_f64().unwrap() > 0.0, "{ratio}");
    assert!(report["vmm_overhead_bytes"].as_u64().is_some(), "the RSS-based figure stays");
}

/// The pids of the running processes whose parent is `parent` and whose
/// command line contains `needle`.
fn children_of(parent: u32, needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // The fields after the command name, which may hold spaces: state, ppid.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if ppid == Some(parent) && String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(pid);
        }
    }
    found
}

/// Starts `virtlab compare` with many native runs, waits until the first
/// has finished (a second workload process has started), sends `signal`,
/// and returns (exit status, stdout, stderr, the JSON report it wrote).
fn compare_stopped_by(signal: libc::c_int, json: &std::path::Path) -> (Option<i32>, String, String, serde_json::Value) {
    let runs = 1000;
    let child = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["compare", "--env", "native", "--workload", "cpu=20000000", "--no-probe", "--warmup", "0"])
        .args(["--runs", &runs.to_string()])
        .arg("--json")
        .arg(json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let t0 = std::time::Instant::now();
    let mut seen: Vec<u32> = Vec::new();
    while seen.len() < 2 {
        assert!(t0.elapsed().as_secs() < 60, "no second workload process within a minute");
        for p in children_of(pid, "virtlab-workload") {
            if !seen.contains(&p) {
                seen.push(p);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // SAFETY: kill(2) on our own child, not yet reaped (wait comes below).
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = std::fs::read(json).unwrap_or_else(|e| panic!("no JSON report ({e}): {stderr}"));
    let report: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let runs_done = report["rows"][0]["runs"].as_u64().unwrap_or_else(|| panic!("no row: {report}"));
    assert!((1..runs).contains(&runs_done), "{runs_done} runs of {runs}: stopped after the first, before the last");
    (out.status.code(), stdout, stderr, report)
}

#[test]
fn sigterm_stops_after_the_current_launch_and_reports_what_finished_as_sigint_does() {
    let dir = tempfile::tempdir().unwrap();
    let (int_code, int_stdout, _, _) = compare_stopped_by(libc::SIGINT, &dir.path().join("int.json"));
    assert_eq!(int_code, Some(130), "{int_stdout}");
    let (code, stdout, stderr, report) = compare_stopped_by(libc::SIGTERM, &dir.path().join("term.json"));
    assert_eq!(code, int_code, "SIGTERM exits as SIGINT does: {stderr}");
    assert!(stdout.contains("cpu      native"), "the table of what finished: {stdout}");
    assert!(stderr.contains("interrupted; the figures above are from the runs that finished"), "{stderr}");
    let schema: serde_json::Value = serde_json::from_str(include_str!("../schema/compare.v1.json")).unwrap();
    assert!(jsonschema::validator_for(&schema).unwrap().is_valid(&report), "{report}");
}

/// `virtlab compare` on the native `ready` workload, once unless `extra`
/// says otherwise (seconds), with `extra` options; returns (exit status,
/// stderr).
fn quick_native(extra: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_virtlab"));
    cmd.args(["compare", "--env", "native", "--workload", "ready", "--no-probe"]);
    for (option, default) in [("--runs", "1"), ("--warmup", "0")] {
        if !extra.contains(&option.as_ref()) {
            cmd.args([option, default]);
        }
    }
    let out = cmd.args(extra).stdin(Stdio::null()).stdout(Stdio::null()).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn unwritable_outputs_fail_before_measuring_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let missing = d.join("no-such-dir");
    let os = |p: &std::path::Path| p.as_os_str().to_owned();
    let cases: [(&str, Vec<std::ffi::OsString>); 5] = [
        ("--json", vec!["--json".into(), os(&missing.join("r.json"))]),
        ("--csv", vec!["--json".into(), os(&d.join("new.json")), "--csv".into(), os(&missing.join("r.csv"))]),
        ("--markdown", vec!["--json".into(), os(&d.join("keep.json")), "--markdown".into(), os(&missing.join("r.md"))]),
        ("--html", vec!["--csv".into(), os(&d.join("new.csv")), "--html".into(), os(&missing.join("r.html"))]),
        ("--svg", vec!["--csv".into(), os(&d.join("new.csv")), "--svg".into(), os(&d.join("a-file").join("charts"))]),
    ];
    std::fs::write(d.join("keep.json"), "an earlier report\n").unwrap();
    std::fs::write(d.join("a-file"), "").unwrap();
    for (option, args) in &cases {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let (code, stderr) = quick_native(&args);
        assert_eq!(code, Some(125), "{option}: {stderr}");
        assert!(stderr.contains(&format!("virtlab: error: {option}: cannot ")), "{option}: {stderr}");
        assert!(!stderr.contains("probing the host"), "{option}: checked before measuring: {stderr}");
    }
    // The files the earlier checks created are gone again; an existing
    // file is left as it was.
    let mut left: Vec<String> =
        std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, ["a-file", "keep.json"]);
    assert_eq!(std::fs::read_to_string(d.join("keep.json")).unwrap(), "an earlier report\n");

    // And when they can be written, they are.
    let charts = d.join("new").join("charts");
    let page = d.join("page.html");
    let (code, stderr) = quick_native(&[
        "--json".as_ref(),
        d.join("keep.json").as_os_str(),
        "--svg".as_ref(),
        charts.as_os_str(),
        "--html".as_ref(),
        page.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(std::fs::read_to_string(d.join("keep.json")).unwrap().contains("\"schema\""));
    assert!(charts.join("startup.svg").metadata().unwrap().len() > 0);
    // The page names the command that made it, less its own option.
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<pre>virtlab compare --env native --workload ready --no-probe"), "{html}");
    assert!(!html.contains("page.html"), "{html}");
    // And `virtlab report` makes it again from the JSON.
    let again = d.join("again.html");
    let out = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["report".as_ref(), d.join("keep.json").as_os_str(), "-o".as_ref(), again.as_os_str()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(&again).unwrap().contains("<section class=\"claim\" id=\"claim-6\">"));
}

#[test]
fn runs_and_warmup_out_of_range_are_refused() {
    // Each would run (the native `ready` workload, in seconds) if taken.
    for (option, value, range) in
        [("--runs", "0", "1..=10000"), ("--runs", "10001", "1..=10000"), ("--warmup", "99999999999", "0..=100")]
    {
        let (code, stderr) = quick_native(&[option.as_ref(), value.as_ref()]);
        assert_eq!(code, Some(2), "{option} {value}: {stderr}");
        assert!(stderr.contains(&format!("invalid value '{value}' for '{option} <N>'")), "{stderr}");
        assert!(stderr.contains(range), "{stderr}");
    }
}

#[test]
fn a_zero_timeout_is_refused_alike_by_compare_vm_run_and_container_run() {
    // 0 meant no time at all in `compare`, never in `vm run`, and was
    // refused by `container run`: now it is refused everywhere, the same way,
    // before anything runs (so no KVM or root is needed to see it).
    let commands: [&[&str]; 3] = [
        &["compare", "--env", "native", "--workload", "ready", "--no-probe", "--runs", "1", "--warmup", "0"],
        &["vm", "run", "--", "ready"],
        &["container", "run", "--", "/virtlab-workload", "ready"],
    ];
    for command in commands {
        for zero in ["0", "0s", "0ms"] {
            let (head, tail) = command.split_at(command.iter().position(|w| *w == "--").unwrap_or(command.len()));
            let out = Command::new(env!("CARGO_BIN_EXE_virtlab"))
                .args(head)
                .args(["--timeout", zero])
                .args(tail)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command:?} --timeout {zero}: {stderr}");
            assert!(
                stderr.contains(&format!("\"{zero}\" is no time at all: give a positive duration"))
                    && stderr.contains("leave --timeout out"),
                "{command:?} --timeout {zero}: {stderr}"
            );
        }
    }
}
