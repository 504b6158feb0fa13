//! `virtlab compare` end to end: a quick run whose JSON validates against
//! the published schema, with every environment this host can run, CSV with
//! a line per run, and SVG charts that parse.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

use std::process::{Command, Stdio};

fn must(var: &str) -> bool {
    std::env::var(var).as_deref() == Ok("1")
}

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
    for peer in ["qemu-microvm", "qemu-tcg", "bwrap", "runc", "crun"] {
        let ran = rows.contains(&peer);
        assert!(ran || skipped.contains(&peer), "{peer} neither ran nor was skipped with a reason");
        if !ran {
            if must("VIRTLAB_REQUIRE_PEERS") && peer != "crun" {
                panic!("{peer} is required (VIRTLAB_REQUIRE_PEERS=1) but was skipped: {stderr}");
            }
            eprintln!("SKIPPED peer {peer}: see the report's reason");
        }
    }
    if rows.contains(&"qemu-microvm") {
        let ratios = report["peers"].as_array().unwrap();
        assert!(ratios.iter().any(|p| p["peer"] == "qemu-microvm" && p["startup_ratio"].is_number()), "{ratios:?}");
    }
    // Nothing left behind: no bundle directories, no runc state.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("virtlab-oci-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
