//! Snapshots of the minikernel: saved at "kernel ready" and restored with
//! other arguments, saved mid-run and resumed, and every kind of bad
//! snapshot or restore refused with its reason.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

mod common;

use std::fs;
use std::path::Path;

use common::kvm_or_skip;
use virtlab_vmm::snapshot::{self, RestoreConfig, SnapshotAt, SnapshotError, SnapshotRequest};
use virtlab_vmm::{run, ConsoleSink, GuestStop, Quiet, RunReport, Step, VmConfig};

fn take(dir: &Path, args: &[&str]) -> RunReport {
    let mut c = VmConfig::builtin_workload(args);
    c.snapshot = Some(SnapshotRequest { at: SnapshotAt::Ready, dir: dir.to_path_buf() });
    run(&c, ConsoleSink::Capture, &mut Quiet).expect("the VM runs and saves")
}

fn restore(dir: &Path, args: &[&str]) -> Result<RunReport, SnapshotError> {
    let config = RestoreConfig { args: args.iter().map(|a| a.to_string()).collect(), ..Default::default() };
    snapshot::restore(dir, &config, ConsoleSink::Capture, &mut Quiet)
}

#[test]
fn a_restored_minikernel_runs_any_workload_mode() {
    if !kvm_or_skip("a_restored_minikernel_runs_any_workload_mode") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("snap");
    let first = take(&dir, &["ready"]);
    assert_eq!(first.stop, GuestStop::Exited(0), "{:?}", first.output);
    let saved = first.snapshot.expect("the run reached kernel ready and saved");
    assert!(saved.memory_data_bytes > 0 && saved.memory_data_bytes < saved.mem_size);
    // Only the files, no temporary directory beside them.
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);

    let r = restore(&dir, &["cpu", "100000"]).unwrap();
    assert_eq!(r.stop, GuestStop::Exited(0), "{:?}", r.output);
    let out = r.output.clone().unwrap();
    assert!(out.contains("virtlab.ready") && out.contains("cpu"), "{out}");
    assert!(r.at(Step::KernelReady).is_none(), "a restored kernel does not boot again");
    assert!(r.at(Step::WorkloadReady).is_some());

    // With no arguments: the snapshot's own. A fault is reported as on a boot.
    let again = restore(&dir, &[]).unwrap();
    assert_eq!(again.stop, GuestStop::Exited(0));
    let fault = restore(&dir, &["fault"]).unwrap();
    assert_eq!(fault.exit_status, 139, "{}", fault.summary);

    let seen = snapshot::inspect(&dir).unwrap();
    assert_eq!(seen.manifest.mem_size, 64 << 20);
    assert!(seen.msrs > 5, "{} MSRs", seen.msrs);
    let memory = seen.files.iter().find(|f| f.0 == "memory").unwrap();
    assert_eq!(memory.1, 64 << 20);
    assert!(memory.2 < 16 << 20, "the memory file is sparse: {} bytes on disk", memory.2);
}

#[test]
fn bad_snapshots_are_refused_with_their_reason() {
    if !kvm_or_skip("bad_snapshots_are_refused_with_their_reason") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    take(&good, &["ready"]);
    let copy = |name: &str| {
        let d = tmp.path().join(name);
        fs::create_dir(&d).unwrap();
        for f in ["snapshot.json", "state.json", "memory"] {
            fs::copy(good.join(f), d.join(f)).unwrap();
        }
        d
    };

    let e = restore(&tmp.path().join("missing"), &[]).unwrap_err();
    assert!(matches!(e, SnapshotError::Read(..)), "{e}");

    let d = copy("truncated");
    fs::OpenOptions::new().write(true).open(d.join("memory")).unwrap().set_len(1 << 20).unwrap();
    let e = restore(&d, &[]).unwrap_err();
    assert!(matches!(e, SnapshotError::Size { .. }), "{e}");

    let d = copy("corrupt");
    let mut bytes = fs::read(d.join("memory")).unwrap();
    let i = bytes.iter().position(|&b| b != 0).unwrap();
    bytes[i] ^= 0x40;
    fs::write(d.join("memory"), bytes).unwrap();
    let e = restore(&d, &[]).unwrap_err();
    assert!(matches!(e, SnapshotError::Checksum { .. }), "{e}");

    let d = copy("corrupt-state");
    let s = fs::read_to_string(d.join("state.json")).unwrap().replacen("\"tsc_khz\": ", "\"tsc_khz\": 1", 1);
    fs::write(d.join("state.json"), s).unwrap();
    let e = restore(&d, &[]).unwrap_err();
    assert!(matches!(e, SnapshotError::Size { .. } | SnapshotError::Checksum { .. }), "{e}");

    let d = copy("version");
    let m = fs::read_to_string(d.join("snapshot.json")).unwrap().replace("\"version\": 1", "\"version\": 9");
    fs::write(d.join("snapshot.json"), m).unwrap();
    let e = restore(&d, &[]).unwrap_err();
    assert!(e.to_string().contains("version 9"), "{e}");

    let e = snapshot::restore(
        &good,
        &RestoreConfig { mem_size: Some(128 << 20), ..Default::default() },
        ConsoleSink::Discard,
        &mut Quiet,
    )
    .unwrap_err();
    assert!(e.to_string().contains("64 MiB") && e.to_string().contains("128 MiB"), "{e}");

    let d = copy("vcpus");
    let m = fs::read_to_string(d.join("snapshot.json")).unwrap().replace("\"vcpus\": 1", "\"vcpus\": 2");
    fs::write(d.join("snapshot.json"), m).unwrap();
    let e = restore(&d, &[]).unwrap_err();
    assert!(e.to_string().contains("vCPU count"), "{e}");

    // Another CPU model: one CPUID leaf changed in the state (with its
    // checksum recomputed, as another host's snapshot would have it).
    let d = copy("cpu");
    let mut state: serde_json::Value = serde_json::from_slice(&fs::read(d.join("state.json")).unwrap()).unwrap();
    let leaf1 = state["vcpus"][0]["cpuid"].as_array_mut().unwrap().iter_mut().find(|r| r[0] == 1).unwrap();
    leaf1[2] = serde_json::json!(leaf1[2].as_u64().unwrap() ^ 0x10);
    let bytes = serde_json::to_vec_pretty(&state).unwrap();
    fs::write(d.join("state.json"), &bytes).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(d.join("snapshot.json")).unwrap()).unwrap();
    let entry = m["files"].as_array_mut().unwrap().iter_mut().find(|f| f["name"] == "state.json").unwrap();
    entry["bytes"] = serde_json::json!(bytes.len());
    entry["crc32"] = serde_json::json!(crc32fast::hash(&bytes));
    fs::write(d.join("snapshot.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    let e = restore(&d, &[]).unwrap_err();
    assert!(matches!(e, SnapshotError::CpuModel { leaf: 1, .. }), "{e}");

    // A snapshot directory that exists, or cannot be written: an error,
    // and nothing left behind.
    let mut c = VmConfig::builtin_workload(&["ready"]);
    c.snapshot = Some(SnapshotRequest { at: SnapshotAt::Ready, dir: good.clone() });
    let e = run(&c, ConsoleSink::Discard, &mut Quiet).unwrap_err();
    assert!(format!("{:?}", e).contains("Exists"), "{e:?}");
    c.snapshot = Some(SnapshotRequest { at: SnapshotAt::Ready, dir: tmp.path().join("no/such/parent/snap") });
    assert!(run(&c, ConsoleSink::Discard, &mut Quiet).is_err());
    c.snapshot = Some(SnapshotRequest { at: SnapshotAt::Init, dir: tmp.path().join("init") });
    let e = run(&c, ConsoleSink::Discard, &mut Quiet).unwrap_err();
    assert!(format!("{e:?}").contains("Point"), "{e:?}");
    assert!(!tmp.path().join("init").exists());
}

/// The result line without its `ns=` field (a time, which differs).
fn result_line(output: &str) -> String {
    let line = output.lines().find(|l| l.starts_with("virtlab.result")).unwrap_or_default();
    line.split(' ').filter(|w| !w.starts_with("ns=")).collect::<Vec<_>>().join(" ")
}

#[test]
fn a_minikernel_saved_mid_run_resumes_where_it_was() {
    if !kvm_or_skip("a_minikernel_saved_mid_run_resumes_where_it_was") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mid-run");
    // A workload of a few hundred ms, paused 20 ms after the first
    // instruction: somewhere in its loop (where exactly is not asserted).
    let mut c = VmConfig::builtin_workload(&["cpu", "100000000"]);
    c.snapshot = Some(SnapshotRequest { at: SnapshotAt::parse("20ms").unwrap(), dir: dir.clone() });
    let cold = run(&c, ConsoleSink::Capture, &mut Quiet).expect("the VM runs and saves");
    assert_eq!(cold.stop, GuestStop::Exited(0), "{:?}", cold.output);
    assert!(cold.snapshot.is_some(), "the guest ran past 20 ms, so the snapshot was saved");
    let expected = result_line(cold.output.as_deref().unwrap_or_default());
    assert!(expected.contains("mode=cpu n=100000000 checksum="), "{expected}");
    assert_eq!(snapshot::inspect(&dir).unwrap().manifest.taken_at, "20ms");

    // Restored twice from the one snapshot: each run finishes the loop and
    // prints what the cold run printed.
    for _ in 0..2 {
        let back = restore(&dir, &[]).unwrap();
        assert_eq!(back.stop, GuestStop::Exited(0), "{:?}", back.output);
        assert_eq!(result_line(back.output.as_deref().unwrap_or_default()), expected);
    }

    // The guest's clock: either the TSC was set back, and the loop's time
    // leaves out a pause between save and restore, or the report says the
    // host kept its own count (and by how much the clock is ahead).
    let ns = |r: &RunReport| -> u64 {
        let out = r.output.as_deref().unwrap_or_default();
        let w = out.split_whitespace().find_map(|w| w.strip_prefix("ns=")).expect("a ns= field");
        w.parse().unwrap()
    };
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let late = restore(&dir, &[]).unwrap();
    let refused = &late.restore.as_ref().expect("a restore reports the host's part").refused;
    match refused.iter().find(|q| q.starts_with("IA32_TSC")) {
        Some(q) => assert!(q.contains("later than at the save"), "{q}"),
        None => assert!(ns(&late) < ns(&cold) + 1_000_000_000, "the TSC was set back: {} vs {}", ns(&late), ns(&cold)),
    }

    // Its workload has read its arguments: new ones, an environment or a
    // directory are refused, and say what to do.
    let e = restore(&dir, &["cpu", "5"]).unwrap_err();
    assert!(matches!(e, SnapshotError::NotForSnapshot { .. }) && e.to_string().contains("at a time"), "{e}");
    let env = RestoreConfig { env: vec!["X=1".into()], ..Default::default() };
    let e = snapshot::restore(&dir, &env, ConsoleSink::Discard, &mut Quiet).unwrap_err();
    assert!(e.to_string().contains("no arguments"), "{e}");
}

#[test]
fn a_time_past_the_guest_s_end_saves_nothing() {
    if !kvm_or_skip("a_time_past_the_guest_s_end_saves_nothing") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut c = VmConfig::builtin_workload(&["ready"]);
    c.snapshot = Some(SnapshotRequest { at: SnapshotAt::parse("30s").unwrap(), dir: tmp.path().join("late") });
    let r = run(&c, ConsoleSink::Capture, &mut Quiet).expect("the guest runs to its end");
    assert_eq!(r.stop, GuestStop::Exited(0), "{:?}", r.output);
    assert!(r.snapshot.is_none(), "the guest ended before 30 s");
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0, "nothing was left behind");
}

#[test]
fn a_minikernel_snapshot_takes_no_environment_or_directory() {
    if !kvm_or_skip("a_minikernel_snapshot_takes_no_environment_or_directory") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ready");
    take(&dir, &["ready"]);
    for config in [
        RestoreConfig { env: vec!["X=1".into()], ..Default::default() },
        RestoreConfig { workdir: Some("/tmp".into()), args: vec!["cpu".into(), "5".into()], ..Default::default() },
    ] {
        let e = snapshot::restore(&dir, &config, ConsoleSink::Discard, &mut Quiet).unwrap_err();
        assert!(matches!(e, SnapshotError::NotForSnapshot { .. }), "{e}");
        assert!(e.to_string().contains("minikernel") && e.to_string().contains("-e, -w"), "{e}");
    }
}

#[test]
fn the_minikernel_refuses_a_warm_snapshot_and_leaves_nothing() {
    if !kvm_or_skip("the_minikernel_refuses_a_warm_snapshot_and_leaves_nothing") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("warm");
    let mut c = VmConfig::builtin_workload(&["ready"]);
    c.snapshot = Some(SnapshotRequest { at: SnapshotAt::parse("warm").unwrap(), dir: dir.clone() });
    let e = run(&c, ConsoleSink::Discard, &mut Quiet).unwrap_err();
    let mut text = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(x) = src {
        text += &format!(": {x}");
        src = x.source();
    }
    assert!(text.contains("--snapshot-at warm") && text.contains("minikernel") && text.contains("`ready`"), "{text}");
    assert!(!dir.exists(), "nothing left behind");
}
