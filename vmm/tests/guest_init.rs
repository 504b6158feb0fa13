//! virtlab's /init for Linux guests, run on the host in milliseconds
//! instead of booted in a guest for minutes: the very bytes the initramfs
//! carries (`INIT_ELF`), chrooted into a small root with busybox.
//!
//! It runs in a new user namespace (and mount namespace): there it holds no
//! capability of the host's, so its `ioperm` (the VMM's ports) and its
//! `reboot` are refused, its `mount`s too, and it ends the way it does on a
//! guest without ports: it prints the status and exits with it. Where user
//! namespaces or busybox are missing the tests are skipped, loudly, and
//! fail under VIRTLAB_REQUIRE_ROOT=1.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use virtlab_vmm::linux::command::{encode, format};
use virtlab_vmm::linux::initramfs::INIT_ELF;

/// A root file system for the init: /virtlab/init, busybox as /bin/sh,
/// and whatever a test adds. Removed when dropped.
struct Root(PathBuf);

/// What one run of the init gave.
#[derive(Debug)]
struct Ran {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Root {
    /// None (after saying why) when the host cannot run the init this way.
    fn new(test: &str) -> Option<Root> {
        let skip = |why: &str| {
            if std::env::var("VIRTLAB_REQUIRE_ROOT").as_deref() == Ok("1") {
                panic!("{test}: VIRTLAB_REQUIRE_ROOT=1 but {why}");
            }
            eprintln!("SKIPPED {test}: {why}; set VIRTLAB_REQUIRE_ROOT=1 to make this a failure");
        };
        if !Path::new("/bin/busybox").exists() {
            skip("/bin/busybox is missing (apt-get install busybox-static)");
            return None;
        }
        let root = Root(std::env::temp_dir().join(format!("virtlab-guest-init-{test}-{}", std::process::id())));
        std::fs::create_dir_all(root.0.join("bin")).unwrap();
        std::fs::create_dir_all(root.0.join("virtlab")).unwrap();
        root.file("virtlab/init", INIT_ELF, 0o755);
        std::fs::copy("/bin/busybox", root.0.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", root.0.join("bin/sh")).unwrap();
        let probe = root.run(&[]);
        if probe.status.is_none() {
            skip(&format!("cannot run the init in a user namespace and a chroot: {}", probe.stderr));
            return None;
        }
        Some(root)
    }

    fn file(&self, path: &str, bytes: &[u8], mode: u32) {
        let p = self.0.join(path);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Writes (or, with None, removes) the command file.
    fn command(&self, file: Option<&[u8]>) -> &Self {
        match file {
            Some(bytes) => self.file("virtlab/exec", bytes, 0o644),
            None => {
                let _ = std::fs::remove_file(self.0.join("virtlab/exec"));
            }
        }
        self
    }

    /// Runs the init with `args` as its arguments (as the kernel passes the
    /// words of its command line). `status` is None when it could not be
    /// started.
    fn run(&self, args: &[&str]) -> Ran {
        let root = CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap();
        let mut cmd = Command::new("/virtlab/init");
        cmd.args(args).env_clear().stdin(Stdio::null());
        // SAFETY: the closure runs in the child between fork and exec and
        // calls only unshare(2), chroot(2) and chdir(2), which are
        // async-signal-safe; `root` was made before the fork. If unshare
        // fails the init is never executed: as root on the host it would
        // reach the host's I/O ports and reboot.
        unsafe {
            cmd.pre_exec(move || {
                if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0
                    || libc::chroot(root.as_ptr()) != 0
                    || libc::chdir(c"/".as_ptr()) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        match cmd.output() {
            Ok(out) => Ran {
                status: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            },
            Err(e) => Ran { status: None, stdout: String::new(), stderr: e.to_string() },
        }
    }

    /// Runs the init with a command file of `argv`, `env` and `workdir`.
    fn exec(&self, argv: &[&str], env: &[&str], workdir: Option<&str>) -> Ran {
        let strings = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let file = encode(&strings(argv), &strings(env), workdir).unwrap();
        self.command(Some(&file)).run(&[])
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Checks a run: its status, what its standard output is, and what its
/// standard error holds; collects the problems.
fn expect(wrong: &mut Vec<String>, what: &str, ran: &Ran, status: i32, stdout: &str, stderr: &str) {
    if ran.status != Some(status) || ran.stdout != stdout || !ran.stderr.contains(stderr) {
        wrong.push(format!("{what}: want status {status}, stdout {stdout:?}, stderr with {stderr:?}; got {ran:?}"));
    }
}

#[test]
fn the_command_file_gives_argv_environment_and_working_directory() {
    let Some(root) = Root::new("argv_env_workdir") else { return };
    let mut wrong = Vec::new();
    // Spaces, quotes and a missing working directory, made as Docker does;
    // `sh` found in the default PATH, which a given environment without a
    // PATH gets.
    let ran = root.exec(
        &["sh", "-c", "echo \"$GREETING from $(pwd)\"; echo \"$PATH|$HOME|$0\"; exit 7"],
        &["GREETING=hello world"],
        Some("/tmp/new dir"),
    );
    expect(
        &mut wrong,
        "env and workdir",
        &ran,
        7,
        "hello world from /tmp/new dir\n/bin:/sbin:/usr/bin:/usr/sbin||sh\n",
        "virtlab-init: exit status 7",
    );
    // No environment given: the default one, in /.
    let ran = root.exec(&["/bin/sh", "-c", "echo \"$HOME $TERM $(pwd)\"; echo \"[$1]\"", "x", ""], &[], None);
    expect(&mut wrong, "defaults and an empty argument", &ran, 0, "/ linux /\n[]\n", "exit status 0");
    // A PATH of its own is searched, and kept.
    std::fs::create_dir_all(root.0.join("opt/bin")).unwrap();
    root.file("opt/bin/hello", b"#!/bin/sh\necho \"hi from $0 in $PATH\"\n", 0o755);
    let ran = root.exec(&["hello"], &["PATH=/nowhere:/opt/bin:/bin"], None);
    expect(&mut wrong, "own PATH", &ran, 0, "hi from /opt/bin/hello in /nowhere:/opt/bin:/bin\n", "exit status 0");
    // Killed by a signal: 128 + its number, as a shell reports it.
    let ran = root.exec(&["sh", "-c", "kill -9 $$"], &[], None);
    expect(&mut wrong, "killed", &ran, 137, "", "exit status 137");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_program_that_cannot_start_gets_the_shell_s_status() {
    let Some(root) = Root::new("cannot_start") else { return };
    let mut wrong = Vec::new();
    root.file("bin/plain", b"#!/bin/sh\necho never\n", 0o644);
    std::fs::create_dir_all(root.0.join("file-not-dir")).unwrap();
    root.file("a-file", b"", 0o644);
    let cases: [(&str, Ran, i32, &str); 6] = [
        ("name not in PATH", root.exec(&["nosuch", "x"], &[], None), 127, "virtlab-init: nosuch: not found"),
        (
            "path that does not exist",
            root.exec(&["/bin/nosuch"], &[], None),
            127,
            "virtlab-init: /bin/nosuch: not found",
        ),
        ("not executable", root.exec(&["plain"], &[], None), 126, "plain: permission denied"),
        ("absolute, not executable", root.exec(&["/bin/plain"], &[], None), 126, "cannot execute /bin/plain"),
        (
            "working directory is a file",
            root.exec(&["sh", "-c", "echo never"], &[], Some("/a-file")),
            125,
            "cannot enter the working directory /a-file: error 20",
        ),
        (
            "a directory on the way is a file",
            root.exec(&["sh"], &[], Some("/a-file/sub")),
            125,
            "/a-file/sub: error 20",
        ),
    ];
    for (what, ran, status, stderr) in cases {
        expect(&mut wrong, what, &ran, status, "", stderr);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_bad_command_file_is_status_125_and_none_means_the_command_line() {
    let Some(root) = Root::new("bad_file") else { return };
    let mut wrong = Vec::new();
    let too_large = {
        let mut f = b"virtlab-exec/1\0\0\0sh\0".to_vec();
        f.resize(format::MAX_BYTES + 1, b'x');
        f
    };
    let cases: [(&str, &[u8], &str); 3] = [
        ("another version", b"virtlab-exec/2\0\0\0sh\0", "does not start with virtlab-exec/1"),
        ("too large", &too_large, "larger than 65536 bytes"),
        ("no program", b"virtlab-exec/1\0\0\0", "names no program"),
    ];
    for (what, file, stderr) in cases {
        let ran = root.command(Some(file)).run(&[]);
        expect(&mut wrong, what, &ran, 125, "", stderr);
    }
    // Without the file, the words the kernel passes on: unknown kernel
    // parameters first, then the program (an absolute path), in the
    // default environment.
    let ran = root.command(None).run(&["noxsave", "/bin/sh", "-c", "echo \"$HOME $TERM\"; exit 3"]);
    expect(&mut wrong, "command line", &ran, 3, "/ linux\n", "exit status 3");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
