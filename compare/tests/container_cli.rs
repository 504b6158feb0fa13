//! `virtlab container run` as a user runs it: refused options, errors as
//! JSON with `--json`, and the exit status of a timeout. Tests that launch
//! a container need root; they skip loudly otherwise, and fail under
//! VIRTLAB_REQUIRE_ROOT=1.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

use std::process::{Command, Output, Stdio};

fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let ok = unsafe { libc::geteuid() } == 0;
    if !ok {
        if std::env::var("VIRTLAB_REQUIRE_ROOT").as_deref() == Ok("1") {
            panic!("{test}: root is required (VIRTLAB_REQUIRE_ROOT=1)");
        }
        eprintln!("SKIPPED {test}: not root (containers with cgroups need it)");
    }
    ok
}

fn container_run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["container", "run"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn an_empty_namespace_list_is_refused_not_read_as_none() {
    for ns in ["", " ", ",", " , "] {
        let out = container_run(&["--ns", ns, "--", "/virtlab-workload", "ready"]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "--ns {ns:?}: {stderr}");
        assert!(stderr.contains("names no namespace") && stderr.contains("--ns none"), "--ns {ns:?}: {stderr}");
        assert!(out.stdout.is_empty(), "nothing ran: {}", text(&out.stdout));
    }
}

/// The one JSON object `--json` printed on stdout.
fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}{}", text(&out.stdout), text(&out.stderr)))
}

#[test]
fn with_json_an_error_is_a_json_object_too() {
    // A bad option: refused before any container is made (no root needed).
    let out = container_run(&["--json", "--memory", "lots", "--", "/virtlab-workload", "ready"]);
    assert_eq!(out.status.code(), Some(125));
    let v = json_of(&out);
    assert_eq!(v["exit_code"], 125, "{v}");
    assert!(v["error"].as_str().unwrap().contains("\"lots\""), "{v}");
    // The human message stays on stderr.
    assert!(text(&out.stderr).starts_with("virtlab: error: "), "{}", text(&out.stderr));

    if !root_or_skip("with_json_an_error_is_a_json_object_too (command not found)") {
        return;
    }
    let out = container_run(&["--json", "--", "/no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    let v = json_of(&out);
    assert_eq!(v["exit_code"], 127, "{v}");
    assert!(v["error"].as_str().unwrap().contains("/no-such-command"), "{v}");
    assert!(text(&out.stderr).contains("/no-such-command"), "{}", text(&out.stderr));
}

#[test]
fn a_timeout_exits_124_as_a_vm_timeout_does() {
    if !root_or_skip("a_timeout_exits_124_as_a_vm_timeout_does") {
        return;
    }
    let out = container_run(&["--timeout", "300ms", "--", "/virtlab-workload", "spin"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(124), "{stderr}");
    assert!(stderr.contains("timed out after 300ms"), "{stderr}");

    let out = container_run(&["--json", "--timeout", "300ms", "--", "/virtlab-workload", "spin"]);
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    let v = json_of(&out);
    assert_eq!(v["exit_code"], 124, "{v}");
    assert_eq!(v["timed_out"], true, "{v}");
    // How it ended stays visible: killed by SIGKILL.
    assert_eq!((v["status"].as_str(), v["status_value"].as_i64()), (Some("signaled"), Some(9)), "{v}");
}
