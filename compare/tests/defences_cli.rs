//! A container's defences, each in force by default and each switched
//! off by exactly the option that names it (`--security-opt`,
//! `--cap-add`, `--cap-drop`, `--privileged`), seen from inside with
//! busybox. Root and /bin/busybox are needed: the tests skip loudly
//! without them, and fail under VIRTLAB_REQUIRE_ROOT=1.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{root_and_busybox, Store};

/// `virtlab container run ARGS -- sh -c SCRIPT` on the built-in rootfs.
fn run_sh(args: &[&str], script: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["container", "run"])
        .args(args)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The value of field `name` of /proc/self/status, as printed by `grep`.
fn field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {out:?}"))
}

/// The lines `KEY=VALUE` the scripts print, as `KEY` -> `VALUE`.
fn answer<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {out:?}"))
}

/// Every check of one run, printed as `KEY=VALUE` lines: status fields,
/// whether denied operations failed, what the masked files hold.
const PROBE: &str = "\
grep -E '^(Seccomp|CapEff|NoNewPrivs):' /proc/self/status; \
unshare -U true 2>/dev/null; echo unshare_user=$?; \
mount -t tmpfs none /mnt 2>/dev/null; echo mount=$?; \
echo keys_bytes=$(cat /proc/keys 2>/dev/null | wc -c); \
echo kcore_bytes=$(cat /proc/kcore 2>/dev/null | head -c 16 | wc -c); \
(echo 1 > /proc/sys/kernel/ns_last_pid) 2>/dev/null; echo proc_sys_write=$?; \
(echo x > /proc/sysrq-trigger) 2>/dev/null; echo sysrq_write=$?; \
echo sys_mount=$(grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1); \
echo firmware=$(ls /sys/firmware 2>/dev/null | wc -l); \
mknod /tmp/sda b 8 0 2>/dev/null; echo mknod_disk=$?; \
echo uid_map=$(cat /proc/self/uid_map)";

fn probe(test: &str, args: &[&str]) -> Option<String> {
    if !root_and_busybox(test) {
        return None;
    }
    let out = run_sh(args, PROBE);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    Some(text(&out.stdout))
}

#[test]
fn every_default_defence_is_in_force() {
    let Some(out) = probe("every_default_defence_is_in_force", &[]) else { return };
    assert_eq!(field(&out, "Seccomp"), "2", "{out}");
    assert_eq!(field(&out, "NoNewPrivs"), "1", "{out}");
    assert_eq!(field(&out, "CapEff"), "00000000a80425fb", "Docker's default set: {out}");
    assert_ne!(answer(&out, "unshare_user"), "0", "a nested user namespace is refused: {out}");
    assert_ne!(answer(&out, "mount"), "0", "mount is refused: {out}");
    assert_eq!(answer(&out, "keys_bytes"), "0", "/proc/keys is masked: {out}");
    assert_eq!(answer(&out, "kcore_bytes"), "0", "/proc/kcore is masked or absent: {out}");
    assert_ne!(answer(&out, "proc_sys_write"), "0", "/proc/sys is read-only: {out}");
    assert_ne!(answer(&out, "sysrq_write"), "0", "/proc/sysrq-trigger is read-only: {out}");
    assert_eq!(answer(&out, "sys_mount"), "ro", "/sys is read-only: {out}");
    assert_eq!(answer(&out, "firmware"), "0", "/sys/firmware is masked: {out}");
    assert_ne!(answer(&out, "mknod_disk"), "0", "no disk device node: {out}");
    assert!(!answer(&out, "uid_map").starts_with("0 0 "), "root inside is not host root: {out}");
}

#[test]
fn the_denied_calls_fail_with_eperm() {
    if !root_and_busybox("the_denied_calls_fail_with_eperm") {
        return;
    }
    let out = run_sh(&[], "unshare -U true; mount -t tmpfs none /mnt; true");
    let err = text(&out.stderr);
    assert!(err.contains("unshare(0x10000000): Operation not permitted"), "{err}");
    // busybox's words for mount(2)'s EPERM.
    assert!(err.contains("mount: permission denied"), "{err}");
}

#[test]
fn seccomp_unconfined_removes_the_filter_and_nothing_else() {
    let Some(out) =
        probe("seccomp_unconfined_removes_the_filter_and_nothing_else", &["--security-opt", "seccomp=unconfined"])
    else {
        return;
    };
    assert_eq!(field(&out, "Seccomp"), "0", "{out}");
    assert_eq!(answer(&out, "unshare_user"), "0", "without the filter a nested user namespace is made: {out}");
    assert_eq!(field(&out, "CapEff"), "00000000a80425fb", "{out}");
    assert_eq!(answer(&out, "keys_bytes"), "0", "{out}");
    assert_eq!(answer(&out, "sys_mount"), "ro", "{out}");
}

/// A profile file of the test's own.
fn profile(dir: &Path, name: &str, json: &serde_json::Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec(json).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_profile_in_dockers_format_decides_the_calls() {
    if !root_and_busybox("a_profile_in_dockers_format_decides_the_calls") {
        return;
    }
    let dir = tempfile::Builder::new().prefix("virtlab-profile-").tempdir().unwrap();
    let deny = profile(
        dir.path(),
        "deny-mkdir.json",
        &serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}),
    );
    let out = run_sh(&["--security-opt", &format!("seccomp={deny}")], "grep Seccomp: /proc/self/status; mkdir /tmp/x");
    assert!(!out.status.success());
    assert_eq!(field(&text(&out.stdout), "Seccomp"), "2");
    assert!(text(&out.stderr).contains("Operation not permitted"), "{}", text(&out.stderr));

    // An allowlist: every call this table knows but mkdir/mkdirat, the
    // rest ENOSYS (38) by default. mount is allowed by it, and is now
    // refused by the kernel alone (no CAP_SYS_ADMIN).
    let names: Vec<&str> = virtlab_container::runtime::syscall_table::X86_64
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !n.starts_with("mkdir"))
        .collect();
    let allow = profile(
        dir.path(),
        "allow.json",
        &serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}),
    );
    let out = run_sh(&["--security-opt", &format!("seccomp={allow}")], "echo hello; mkdir /tmp/x");
    assert_eq!(text(&out.stdout), "hello\n");
    assert!(text(&out.stderr).contains("Function not implemented"), "{}", text(&out.stderr));
}

#[test]
fn capabilities_are_added_and_dropped_as_docker_does() {
    if !root_and_busybox("capabilities_are_added_and_dropped_as_docker_does") {
        return;
    }
    let out = run_sh(&["--cap-drop", "ALL"], "grep CapEff: /proc/self/status");
    assert_eq!(field(&text(&out.stdout), "CapEff"), "0000000000000000");
    let out = run_sh(&["--cap-drop", "all", "--cap-add", "cap_net_raw"], "grep CapEff: /proc/self/status");
    assert_eq!(field(&text(&out.stdout), "CapEff"), format!("{:016x}", 1u64 << 13));
    // SYS_ADMIN: the capability, and the default filter's mount calls with it.
    let out =
        run_sh(&["--cap-add", "SYS_ADMIN"], "grep CapEff: /proc/self/status; mount -t tmpfs none /mnt && echo mounted");
    let stdout = text(&out.stdout);
    let eff = u64::from_str_radix(field(&stdout, "CapEff"), 16).unwrap();
    assert_eq!(eff, 0xa80425fb | (1 << 21), "{stdout}");
    assert!(stdout.contains("mounted"), "{stdout} {}", text(&out.stderr));
}

#[test]
fn privileged_switches_every_defence_off_but_the_user_namespace() {
    let Some(out) = probe("privileged_switches_every_defence_off_but_the_user_namespace", &["--privileged"]) else {
        return;
    };
    assert_eq!(field(&out, "Seccomp"), "0", "{out}");
    let eff = u64::from_str_radix(field(&out, "CapEff"), 16).unwrap();
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").unwrap().trim().parse().unwrap();
    assert_eq!(eff, (1u64 << (last + 1)) - 1, "{out}");
    assert_eq!(answer(&out, "sys_mount"), "rw", "{out}");
    assert_eq!(answer(&out, "mount"), "0", "{out}");
    assert_ne!(answer(&out, "firmware"), "0", "/sys/firmware is not masked: {out}");
    assert!(!answer(&out, "uid_map").starts_with("0 0 "), "root inside is still not host root: {out}");
}

#[test]
fn systempaths_unconfined_unmasks_proc_and_keeps_the_rest() {
    if !root_and_busybox("systempaths_unconfined_unmasks_proc_and_keeps_the_rest") {
        return;
    }
    let script = "grep Seccomp: /proc/self/status; grep -c -E ' /proc/(keys|sys|kcore|sysrq-trigger) ' /proc/mounts";
    let masked = run_sh(&[], script);
    let unmasked = run_sh(&["--security-opt", "systempaths=unconfined"], script);
    let (m, u) = (text(&masked.stdout), text(&unmasked.stdout));
    assert_ne!(m.lines().last(), Some("0"), "{m}");
    assert_eq!(u.lines().last(), Some("0"), "{u}");
    assert_eq!(field(&u, "Seccomp"), "2", "{u}");
}

#[test]
fn no_new_privileges_false_keeps_the_filter() {
    if !root_and_busybox("no_new_privileges_false_keeps_the_filter") {
        return;
    }
    let out =
        run_sh(&["--security-opt", "no-new-privileges=false"], "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(field(&stdout, "NoNewPrivs"), "0");
    assert_eq!(field(&stdout, "Seccomp"), "2");
}

#[test]
fn bad_options_exit_125_with_the_reason_and_leave_nothing() {
    let Some(s) = Store::new("bad_options_exit_125_with_the_reason_and_leave_nothing", "virtlab-defences-bad-") else {
        return;
    };
    let dir = s.dir.path();
    std::fs::write(dir.join("broken.json"), "{\"defaultAction\": ").unwrap();
    std::fs::write(
        dir.join("action.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_JUMP"}]}"#,
    )
    .unwrap();
    let path = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let cases: [(Vec<String>, &str); 7] = [
        (vec!["--security-opt".into(), format!("seccomp={}", path("missing.json"))], "missing.json"),
        (vec!["--security-opt".into(), format!("seccomp={}", path("broken.json"))], "malformed"),
        (vec!["--security-opt".into(), format!("seccomp={}", path("action.json"))], "syscalls[0].action"),
        (vec!["--cap-add".into(), "SYS_WIZARD".into()], "SYS_WIZARD"),
        (vec!["--security-opt".into(), "apparmor=unconfined".into()], "AppArmor"),
        (vec!["--security-opt".into(), "label=disable".into()], "SELinux"),
        (vec!["--privileged".into(), "--ns".into(), "mnt,pid".into()], "keep user in --ns"),
    ];
    let root = s.root();
    for (opts, word) in &cases {
        for how in [["container", "run"], ["container", "create"]] {
            let mut args: Vec<&str> = how.to_vec();
            args.extend(["--root", root.as_str()]);
            args.extend(opts.iter().map(String::as_str));
            args.extend(["busybox", "true"]);
            let out = s.run(&args);
            assert_eq!(out.status.code(), Some(125), "{args:?}");
            assert!(text(&out.stderr).contains(word), "{args:?}: {}", text(&out.stderr));
        }
        // A run of a directory: nothing made, no cgroup left.
        let mut args = vec!["container", "run"];
        args.extend(opts.iter().map(String::as_str));
        args.extend(["--", "true"]);
        let out = s.run(&args);
        assert_eq!(out.status.code(), Some(125), "{args:?}");
    }
    let ps = s.v(&["container", "ps"], &["-a", "-q"]);
    assert_eq!(text(&ps.stdout), "", "no container was made");
}

#[test]
fn a_containers_defences_are_kept_for_exec_start_and_inspect() {
    let Some(s) = Store::new("a_containers_defences_are_kept_for_exec_start_and_inspect", "virtlab-defences-rec-")
    else {
        return;
    };
    let root = s.root();
    let out = s.run(&[
        "container",
        "run",
        "--root",
        &root,
        "-d",
        "--name",
        "defended",
        "--cap-add",
        "SYS_ADMIN",
        "--cap-drop",
        "CHOWN",
        "--security-opt",
        "no-new-privileges",
        "busybox",
        "sleep",
        "30",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let exec = s.v(&["container", "exec"], &["defended", "grep", "CapEff:", "/proc/self/status"]);
    assert!(exec.status.success(), "{}", text(&exec.stderr));
    let want = format!("{:016x}", (0xa80425fbu64 | (1 << 21)) & !1);
    assert_eq!(field(&text(&exec.stdout), "CapEff"), want);
    let inspect = s.v(&["container", "inspect"], &["-f", "{{json .HostConfig}}", "defended"]);
    let host: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(host["CapAdd"], serde_json::json!(["SYS_ADMIN"]));
    assert_eq!(host["CapDrop"], serde_json::json!(["CHOWN"]));
    assert_eq!(host["Privileged"], serde_json::json!(false));
    assert_eq!(host["SecurityOpt"], serde_json::json!(["no-new-privileges"]));
    assert!(s.v(&["container", "rm"], &["-f", "defended"]).status.success());
    // `start` of a made container runs with what `create` was given.
    let id = s.ok(&[
        "container",
        "create",
        "--root",
        &root,
        "--cap-drop",
        "ALL",
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    let out = s.v(&["container", "start"], &["-a", id.trim()]);
    assert_eq!(field(&text(&out.stdout), "CapEff"), "0000000000000000", "{}", text(&out.stderr));
    assert!(s.v(&["container", "rm"], &[id.trim()]).status.success());
}

/// The host PIDs of the children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let c = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        found.extend(c.split_whitespace().filter_map(|w| w.parse::<u32>().ok()));
    }
    found
}

/// `setpriv` as host uid/gid `id`: reads the link `/proc/PID/exe`.
fn readlink_as(id: &str, pid: u32) -> Output {
    Command::new("setpriv")
        .args(["--reuid", id, "--regid", id, "--clear-groups", "readlink", "-v", &format!("/proc/{pid}/exe")])
        .output()
        .unwrap()
}

/// The CVE-2019-5736 class: a process of the container reaching the
/// launcher's binary through /proc/PID/exe of the set-up process, which is
/// a copy of the launcher until its execve. Paused by --step after it
/// became container root, that process is not dumpable: a process with
/// its very host uid (what container root is) cannot even read the link.
/// A dumpable process of that uid can, which shows that the flag is what
/// stops it. (The kernel also clears the flag on the set-up's uid change
/// unless fs.suid_dumpable is 1, so only there would this catch a
/// launcher that forgot its own prctl.) And that uid cannot open the
/// binary for writing at all.
#[test]
fn the_launchers_binary_is_out_of_the_containers_reach() {
    let test = "the_launchers_binary_is_out_of_the_containers_reach";
    if !root_and_busybox(test) || !common::tool_or_skip(test, "setpriv", "util-linux", &["VIRTLAB_REQUIRE_ROOT"]) {
        return;
    }
    let mut launcher = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["container", "run", "--step", "--", "true"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = launcher.stdin.take().unwrap();
    let mut stderr = BufReader::new(launcher.stderr.take().unwrap());
    let mut line = String::new();
    // Enter for each step, until the child narrates no_new_privs: by then
    // it has switched to its user (container root).
    let mut seen = String::new();
    loop {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("the launcher ended before no_new_privs: {seen}");
        }
        seen.push_str(&line);
        if line.contains("[virtlab child, in the container] step") && line.trim_end().ends_with(" no_new_privs") {
            break;
        }
        // One pause follows each step's header (its prompt has no newline,
        // so it arrives with the next line): one Enter per header.
        if line.contains("[virtlab launcher, on the host]") || line.contains("[virtlab child, in the container]") {
            let _ = stdin.write_all(b"\n");
        }
    }
    std::thread::sleep(Duration::from_millis(50));
    // The launcher's child in a user namespace of its own (it may have
    // others, e.g. the clean-up sentinel).
    let own = std::fs::read_to_string("/proc/self/uid_map").unwrap();
    let (child, uid_map) = children(launcher.id())
        .into_iter()
        .filter_map(|c| Some((c, std::fs::read_to_string(format!("/proc/{c}/uid_map")).ok()?)))
        .find(|(_, m)| *m != own)
        .expect("the launcher's child in the container");
    let host_root = uid_map.split_whitespace().nth(1).unwrap().to_string();
    assert_ne!(host_root, "0", "container root is an unprivileged host uid: {uid_map}");
    let status = std::fs::read_to_string(format!("/proc/{child}/status")).unwrap();
    assert!(status.lines().any(|l| l.starts_with("Uid:") && l.contains(&host_root)), "{status}");

    let denied = readlink_as(&host_root, child);
    assert!(!denied.status.success(), "the set-up process's exe was reachable: {}", text(&denied.stdout));
    assert!(text(&denied.stderr).contains("Permission denied"), "{}", text(&denied.stderr));

    // Control: a dumpable process of the same uid is reachable.
    let mut sleeper = Command::new("setpriv")
        .args(["--reuid", &host_root, "--regid", &host_root, "--clear-groups", "sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let allowed = readlink_as(&host_root, sleeper.id());
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(allowed.status.success(), "control: {}", text(&allowed.stderr));

    // Nor can that uid write the binary itself.
    let write = Command::new("setpriv")
        .args(["--reuid", &host_root, "--regid", &host_root, "--clear-groups", "sh", "-c"])
        .arg(format!(": >> {}", env!("CARGO_BIN_EXE_virtlab")))
        .output()
        .unwrap();
    assert!(!write.status.success(), "container root's host uid could write the launcher's binary");

    drop(stdin);
    let status = launcher.wait().unwrap();
    assert!(status.success(), "{seen}");
}
