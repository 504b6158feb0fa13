//! `virtlab vm run` as a user runs it: exit statuses, errors, --explain,
//! --step, --timings and --json.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::process::{Command, Output, Stdio};

use virtlab_vmm::probe::kvm_or_skip;

fn virtlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_virtlab")).args(args).stdin(Stdio::null()).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn json_report_holds_the_result_and_the_steps() {
    if !kvm_or_skip("json_report_holds_the_result_and_the_steps") {
        return;
    }
    let out = virtlab(&["vm", "run", "--json", "--", "cpu", "1000"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stop"]["kind"], "exited");
    assert_eq!(v["exit_status"], 0);
    assert!(v["output"].as_str().unwrap().contains("virtlab.result mode=cpu n=1000 "));
    let phases: Vec<&str> = v["phases"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(phases.first(), Some(&"open-kvm"));
    assert_eq!(phases.last(), Some(&"teardown"));
    assert!(phases.contains(&"kernel-ready") && phases.contains(&"workload-ready"));
    assert!(v["exits"]["total"].as_u64().unwrap() > 0);
}

#[test]
fn guest_output_and_exit_status_pass_through() {
    if !kvm_or_skip("guest_output_and_exit_status_pass_through") {
        return;
    }
    let out = virtlab(&["vm", "run", "--", "ready"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("virtlab.ready pid=1"));
    let out = virtlab(&["vm", "run", "--", "fault", "ud"]);
    assert_eq!(out.status.code(), Some(132), "128 + SIGILL, as natively");
    assert!(text(&out.stderr).contains("#UD"), "{}", text(&out.stderr));
    let out = virtlab(&["vm", "run", "--timeout", "200ms", "--", "spin"]);
    assert_eq!(out.status.code(), Some(124));
    assert!(text(&out.stderr).contains("timeout"), "{}", text(&out.stderr));
}

#[test]
fn explain_and_timings_narrate_every_step() {
    if !kvm_or_skip("explain_and_timings_narrate_every_step") {
        return;
    }
    let out = virtlab(&["vm", "run", "--explain", "--timings", "--", "syscall", "10"]);
    assert_eq!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    for needle in ["KVM_CREATE_VM", "KVM_SET_USER_MEMORY_REGION", "KVM_RUN", "[vm 10/10] teardown", "idea:", "took:"] {
        assert!(err.contains(needle), "{needle} missing from:\n{err}");
    }
    assert!(err.contains("VM exits:") && err.contains("system calls:"), "{err}");
    // Which way the 10 getpid calls (and the rest) reached the kernel is said.
    assert!(
        err.contains("[vm] system calls:") && (err.contains("trap-and-emulate") || err.contains("directly")),
        "{err}"
    );
}

#[test]
fn step_waits_for_enter() {
    if !kvm_or_skip("step_waits_for_enter") {
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["vm", "run", "--step", "--", "ready"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&b"\n".repeat(7)).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert_eq!(err.matches("press Enter").count(), 7, "one prompt per host step:\n{err}");
}

#[test]
fn bad_input_gets_a_clear_error_and_status_125() {
    for (args, needle) in [
        (&["vm", "run", "--", "nonsense"][..], "unknown workload mode"),
        (&["vm", "run", "--mem", "1M", "--", "ready"][..], "--mem"),
        (&["vm", "run", "--mem", "64G", "--", "ready"][..], "too large"),
        (&["vm", "run", "--kernel", "/nonexistent/vmlinux"][..], "cannot read kernel"),
        (&["vm", "run", "--", "/nonexistent/prog"][..], "cannot read workload"),
        (&["vm", "run", "--", "/etc/hostname"][..], "not a static x86_64 ELF"),
        (&["vm", "run", "-e", "K=V", "--", "ready"][..], "--env and --workdir are for Linux guests"),
        (&["vm", "run", "-w", "/tmp"][..], "the minikernel runs one workload, with no environment"),
        // Checked before the kernel is read.
        (
            &["vm", "run", "--kernel", "/nonexistent/vmlinux", "--rootfs", "/tmp", "-e", "NOEQ", "--", "sh"][..],
            "environment entry (--env) \"NOEQ\" has no '='",
        ),
        (
            &["vm", "run", "--kernel", "/nonexistent/vmlinux", "--rootfs", "/tmp", "-w", "tmp", "--", "sh"][..],
            "working directory (--workdir) \"tmp\" is not absolute",
        ),
        (
            &["vm", "run", "--kernel", "/nonexistent/vmlinux", "--initrd", "/etc/hostname", "-w", "/tmp"][..],
            "needs the initramfs virtlab builds",
        ),
        (
            &["vm", "run", "--kernel", "/nonexistent/vmlinux", "--initrd", "/etc/hostname", "--", "sh"][..],
            "or with --rootfs a name in its PATH",
        ),
    ] {
        let out = virtlab(args);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(needle), "{args:?}: {}", text(&out.stderr));
    }
    let out = virtlab(&["vm", "run", "--mem", "lots"]);
    assert_eq!(out.status.code(), Some(2), "clap usage errors exit 2");
}

/// Runs `virtlab ARGS` with its address space capped at 4 GiB (should it
/// read an endless file, it fails instead of filling the host's memory),
/// killing it after 30 s (should it block). Returns its exit code (None:
/// killed) and its standard error.
fn virtlab_bounded(args: &[&OsStr]) -> (Option<i32>, String) {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_virtlab"));
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    // SAFETY: the closure runs in the child between fork and exec, and
    // calls only setrlimit(2), which is async-signal-safe; the rlimit it
    // reads is a copy owned by the closure.
    unsafe {
        cmd.pre_exec(|| {
            let cap = libc::rlimit { rlim_cur: 4 << 30, rlim_max: 4 << 30 };
            if libc::setrlimit(libc::RLIMIT_AS, &cap) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (code, err)
}

/// A directory of test files, removed when dropped.
struct TestDir(std::path::PathBuf);

impl TestDir {
    fn new(test: &str) -> TestDir {
        let d = std::env::temp_dir().join(format!("virtlab-vm-cli-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TestDir(d)
    }

    fn file(&self, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// A sparse file of `len` bytes (no disk space used).
    fn sparse(&self, name: &str, len: u64) -> std::path::PathBuf {
        let p = self.0.join(name);
        std::fs::File::create(&p).unwrap().set_len(len).unwrap();
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Each case must end by itself with status 125 and every needle in its
/// standard error; all cases are tried, and the failures listed together.
fn expect_refused(cases: &[(Vec<OsString>, Vec<String>)]) {
    let mut wrong = Vec::new();
    for (args, needles) in cases {
        let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let (code, err) = virtlab_bounded(&args);
        if code != Some(125) {
            wrong.push(format!("{args:?}: status {code:?} instead of 125 (None: killed after 30 s); stderr: {err}"));
        }
        for n in needles.iter().filter(|n| !err.contains(n.as_str())) {
            wrong.push(format!("{args:?}: {n:?} missing from: {err}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn os(words: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    words.iter().map(|w| w.as_ref().to_os_string()).collect()
}

#[test]
fn fifos_and_devices_are_refused_at_once_with_status_125() {
    let dir = TestDir::new("special");
    let fifo = dir.0.join("fifo");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success(), "mkfifo");
    let kernel = dir.file("minikernel", virtlab_minikernel::ELF);
    let regular = "must be a regular file".to_string();
    let mut cases = Vec::new();
    for (path, kind) in [(fifo.as_path(), "a FIFO"), (std::path::Path::new("/dev/zero"), "a character device")] {
        let shown = path.display();
        cases.push((
            os(&[&"vm", &"run", &"--", &path]),
            vec![format!("the workload {shown} is {kind}"), regular.clone()],
        ));
        cases.push((
            os(&[&"vm", &"run", &"--kernel", &path, &"--", &"ready"]),
            vec![format!("the kernel {shown} is {kind}"), regular.clone()],
        ));
        cases.push((
            os(&[&"vm", &"run", &"--kernel", &kernel, &"--initrd", &path]),
            vec![format!("the initrd {shown} is {kind}"), regular.clone()],
        ));
    }
    expect_refused(&cases);
    let left: Vec<_> = std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "nothing but the test's own files is left behind: {left:?}");
}

#[test]
fn empty_and_oversized_inputs_are_refused_with_status_125() {
    let dir = TestDir::new("sizes");
    let empty = dir.file("empty", b"");
    let kernel = dir.file("minikernel", virtlab_minikernel::ELF);
    let big_workload = dir.sparse("big-workload", (4 << 20) + 1);
    let big_initrd = dir.sparse("big-initrd", (128 << 20) + 1);
    let big_kernel = dir.sparse("big-kernel", (512 << 20) + 1);
    let too_large = |size: u64, limit: u64| format!("is {size} bytes, larger than the limit of {limit} bytes");
    expect_refused(&[
        (os(&[&"vm", &"run", &"--", &empty]), vec![format!("the workload file {} is empty", empty.display())]),
        (os(&[&"vm", &"run", &"--kernel", &empty]), vec![format!("the kernel file {} is empty", empty.display())]),
        (
            os(&[&"vm", &"run", &"--mem", &"4M", &"--", &big_workload]),
            vec![too_large((4 << 20) + 1, 4 << 20), "--mem".into()],
        ),
        (
            os(&[&"vm", &"run", &"--kernel", &kernel, &"--initrd", &big_initrd]),
            vec![too_large((128 << 20) + 1, 128 << 20), "--mem".into()],
        ),
        (os(&[&"vm", &"run", &"--kernel", &big_kernel]), vec![too_large((512 << 20) + 1, 512 << 20)]),
    ]);
}

#[test]
fn bad_elf_files_get_their_own_error() {
    let dir = TestDir::new("elf");
    let patched = |elf: &[u8], at: usize, bytes: &[u8]| {
        let mut v = elf.to_vec();
        v[at..at + bytes.len()].copy_from_slice(bytes);
        v
    };
    let (wl, mk) = (virtlab_workload::ELF, virtlab_minikernel::ELF);
    let short = dir.file("short", &wl[..40]);
    let xnum = dir.file("xnum", &patched(wl, 56, &0xffffu16.to_le_bytes()));
    let short_kernel = dir.file("short-kernel", &mk[..40]);
    let elf32 = dir.file("elf32", &patched(mk, 4, &[1]));
    let arm = dir.file("arm", &patched(mk, 18, &40u16.to_le_bytes()));
    let dynamic = dir.file("dyn", &patched(mk, 16, &3u16.to_le_bytes()));
    let needs = "x86_64 ELF64 executable (ET_EXEC)".to_string();
    expect_refused(&[
        (os(&[&"vm", &"run", &"--", &short]), vec!["truncated ELF header: 40 bytes".into()]),
        (os(&[&"vm", &"run", &"--", &xnum]), vec!["PN_XNUM".into()]),
        (os(&[&"vm", &"run", &"--kernel", &short_kernel]), vec!["truncated ELF header: 40 bytes".into()]),
        (os(&[&"vm", &"run", &"--kernel", &elf32]), vec![needs.clone(), "32-bit (ELFCLASS32)".into()]),
        (os(&[&"vm", &"run", &"--kernel", &arm]), vec![needs.clone(), "ARM (e_machine 40)".into()]),
        (os(&[&"vm", &"run", &"--kernel", &dynamic]), vec![needs.clone(), "type ET_DYN".into()]),
    ]);
    let (_, err) = virtlab_bounded(&[OsStr::new("vm"), OsStr::new("run"), OsStr::new("--"), xnum.as_os_str()]);
    assert!(!err.contains("dynamically linked"), "{err}");
}

/// The minimal guest kernel, or None after a loud skip (a failure under
/// VIRTLAB_REQUIRE_LINUX=1).
fn linux_kernel_or_skip(test: &str) -> Option<std::path::PathBuf> {
    use virtlab_vmm::linux::provision::{test_kernel_or_skip, Origin};
    test_kernel_or_skip(test, &[Origin::Minimal])
}

/// Whether the host has busybox-static for a guest's root file system;
/// without it the test is skipped, loudly (a failure under
/// VIRTLAB_REQUIRE_ROOT=1).
fn busybox_or_skip(test: &str) -> bool {
    if std::path::Path::new("/bin/busybox").exists() {
        return true;
    }
    if std::env::var("VIRTLAB_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("{test}: /bin/busybox is missing (apt-get install busybox-static)");
    }
    eprintln!("SKIPPED {test}: /bin/busybox is missing (apt-get install busybox-static)");
    false
}

/// One boot for everything the guest's command file carries: words with
/// spaces, quotes and `;` (which the kernel command line cannot carry), a
/// program name looked up in the guest's PATH, an environment, a working
/// directory, and the exit status. The root file system is the one
/// containers use (`virtlab container rootfs`).
#[test]
fn linux_guest_runs_any_argv_with_its_environment_and_working_directory() {
    const TEST: &str = "linux_guest_runs_any_argv_with_its_environment_and_working_directory";
    if !kvm_or_skip(TEST) {
        return;
    }
    let Some(kernel) = linux_kernel_or_skip(TEST) else { return };
    if !busybox_or_skip(TEST) {
        return;
    }
    let dir = TestDir::new("exec");
    let root = dir.0.join("rootfs");
    let made = virtlab(&["container", "rootfs", root.to_str().unwrap()]);
    assert!(made.status.success(), "container rootfs: {}", text(&made.stderr));
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["vm", "run", "--json", "--timeout", "600s", "--kernel"])
        .arg(&kernel)
        .arg("--rootfs")
        .arg(&root)
        .args(["-e", "GREETING=hello world", "-w", "/tmp", "--"])
        .args(["sh", "-c", "echo \"$GREETING from $(pwd)\"; exit 7"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = started.elapsed();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); stderr:\n{}", text(&out.stderr)));
    let output = v["output"].as_str().unwrap_or_default();
    let context = format!("stderr:\n{}\nlast lines: {}\noutput:\n{output}", text(&out.stderr), v["last_lines"]);
    eprintln!("{TEST}: vm run to the guest's exit in {:.1} s", took.as_secs_f64());
    assert_eq!(out.status.code(), Some(7), "`exit 7` is the VM's status; {context}");
    assert!(
        output.lines().any(|l| l.trim_end() == "hello world from /tmp"),
        "the program's line is missing; {context}"
    );
    let cmdline = v["cmdline"].as_str().unwrap();
    assert!(
        !cmdline.contains("GREETING") && !cmdline.contains(" -- "),
        "the program is not on the command line: {cmdline}"
    );
}

/// A pseudo-terminal: (master, slave).
fn open_pty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty writes two new descriptors into m and s; the name,
    // termios and winsize pointers may be null.
    let r = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned by nothing else.
    unsafe { (std::fs::File::from_raw_fd(m), std::fs::File::from_raw_fd(s)) }
}

#[test]
fn interactive_console_reaches_a_shell_in_the_linux_guest() {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};
    const TEST: &str = "interactive_console_reaches_a_shell_in_the_linux_guest";
    if !kvm_or_skip(TEST) {
        return;
    }
    let Some(kernel) = linux_kernel_or_skip(TEST) else { return };
    if !busybox_or_skip(TEST) {
        return;
    }
    // The smallest root file system with a shell: the guest unpacks every
    // file in emulated kernel code on nested hosts, so fewer is faster.
    let root = std::env::temp_dir().join(format!("virtlab-vm-cli-shell-{}", std::process::id()));
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();

    // Standard input is a terminal, as for a student at a keyboard: virtlab
    // puts it in raw mode and passes each key on as it comes.
    let (mut master, slave) = open_pty();
    let mut child = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["vm", "run", "--kernel"])
        .arg(&kernel)
        .arg("--rootfs")
        .arg(&root)
        .args(["--interactive", "--", "/bin/sh"])
        .stdin(Stdio::from(slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut seen = Vec::new();
    let mut wait_for = |want: &str| -> bool {
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(l) => {
                    let hit = l.contains(want);
                    seen.push(l);
                    if hit {
                        return true;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
            }
        }
        false
    };
    let shell_up = wait_for("job control turned off");
    // The quotes keep the typed line itself from matching; Enter is "\r".
    let answered = shell_up && {
        master.write_all(b"echo hel''lo-from-the-guest; uname -s\r").unwrap();
        wait_for("hello-from-the-guest")
    };
    // A second command: the shell's prompt and echo must keep flowing.
    let again = answered && {
        master.write_all(b"echo sec''ond-command\r").unwrap();
        wait_for("second-command")
    };
    if again {
        master.write_all(b"exit 7\r").unwrap();
    }
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
    std::fs::remove_dir_all(&root).unwrap();
    let tail = seen[seen.len().saturating_sub(15)..].join("\n");
    assert!(shell_up, "no shell banner; last console lines:\n{tail}\nstderr:\n{err}");
    assert!(answered, "the shell did not answer typed input; last console lines:\n{tail}\nstderr:\n{err}");
    assert!(again, "the shell did not answer a second command; last console lines:\n{tail}\nstderr:\n{err}");
    drop(master);
    assert_eq!(status.and_then(|s| s.code()), Some(7), "`exit 7` ends the VM with status 7; stderr:\n{err}");
}

#[test]
fn a_snapshot_is_saved_inspected_and_restored() {
    if !kvm_or_skip("a_snapshot_is_saved_inspected_and_restored") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("snap");
    let dir_s = dir.to_str().unwrap();
    let out = virtlab(&["vm", "run", "--explain", "--snapshot-at", "ready", "--snapshot", dir_s, "--", "ready"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("snapshot saved in") && err.contains("immediate_exit"), "{err}");

    let out = virtlab(&["vm", "snapshot", "inspect", dir_s]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(o.contains("checksums good") && o.contains("paused at `ready`") && o.contains("MSRs"), "{o}");

    let out = virtlab(&["vm", "restore", dir_s, "--explain", "--", "syscall", "10"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("virtlab.result mode=syscall n=10"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("no kernel booted"), "{}", text(&out.stderr));
    let out = virtlab(&["vm", "restore", dir_s, "--", "fault", "ud"]);
    assert_eq!(out.status.code(), Some(132), "a restored guest faults as a booted one");

    // Errors: no snapshot, another memory size, an existing directory,
    // a point the minikernel has not, a Linux snapshot.
    let out = virtlab(&["vm", "restore", tmp.path().join("none").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("snapshot.json"), "{}", text(&out.stderr));
    let out = virtlab(&["vm", "restore", "--mem", "128M", dir_s]);
    assert!(text(&out.stderr).contains("64 MiB"), "{}", text(&out.stderr));
    let out = virtlab(&["vm", "run", "--snapshot-at", "ready", "--snapshot", dir_s]);
    assert!(text(&out.stderr).contains("exists already"), "{}", text(&out.stderr));
    let out = virtlab(&["vm", "run", "--snapshot-at", "init", "--snapshot", tmp.path().join("t").to_str().unwrap()]);
    assert!(text(&out.stderr).contains("has no init"), "{}", text(&out.stderr));
    let out = virtlab(&["vm", "restore", dir_s, "-e", "X=1", "--", "ready"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("minikernel runs one workload"), "{}", text(&out.stderr));
    let out = virtlab(&["vm", "run", "--snapshot-at", "soon", "--snapshot", "x"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let out = virtlab(&["vm", "run", "--snapshot", "x"]);
    assert_eq!(out.status.code(), Some(2), "--snapshot needs --snapshot-at");
}

/// A snapshot at a time: saved mid-run, restored to the same result, and
/// refused arguments; a time past the guest's end is an error that leaves
/// nothing behind.
#[test]
fn a_snapshot_at_a_time_resumes_mid_run() {
    if !kvm_or_skip("a_snapshot_at_a_time_resumes_mid_run") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mid");
    let dir_s = dir.to_str().unwrap();
    let result = |out: &Output| {
        let stdout = text(&out.stdout);
        let line = stdout.lines().find(|l| l.starts_with("virtlab.result")).unwrap_or_default().to_string();
        line.split(' ').filter(|w| !w.starts_with("ns=")).collect::<Vec<_>>().join(" ")
    };
    let cold =
        virtlab(&["vm", "run", "--explain", "--snapshot-at", "20ms", "--snapshot", dir_s, "--", "cpu", "100000000"]);
    assert_eq!(cold.status.code(), Some(0), "{}", text(&cold.stderr));
    let err = text(&cold.stderr);
    assert!(err.contains("20 ms after its first instruction") && err.contains("seccomp filter"), "{err}");
    assert!(result(&cold).contains("mode=cpu n=100000000 checksum="), "{}", text(&cold.stdout));

    let out = virtlab(&["vm", "snapshot", "inspect", dir_s]);
    assert!(text(&out.stdout).contains("paused at `20ms`"), "{}", text(&out.stdout));
    let back = virtlab(&["vm", "restore", dir_s]);
    assert_eq!(back.status.code(), Some(0), "{}", text(&back.stderr));
    assert_eq!(result(&back), result(&cold), "the restored run ends as the cold one did");
    let out = virtlab(&["vm", "restore", dir_s, "--", "cpu", "5"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("taken at a time (--snapshot-at 20ms)"), "{}", text(&out.stderr));

    let late = tmp.path().join("late");
    let out = virtlab(&["vm", "run", "--snapshot-at", "30s", "--snapshot", late.to_str().unwrap(), "--", "ready"]);
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(err.contains("the guest stopped after") && err.contains("before the snapshot point 30000ms"), "{err}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1, "only the mid-run snapshot is there");
}
