//! Files a user names that are no regular files (a FIFO, `/dev/zero`) or
//! that are too large are refused at once, for the minikernel's kernel and
//! for Linux's kernel and initrd: nothing blocks, nothing is read whole,
//! and no file descriptor stays open. These checks come before KVM is
//! opened, so they run everywhere. Its own test binary: it counts the
//! process's open descriptors.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use virtlab_vmm::linux::{InitrdSource, LinuxConfig};
use virtlab_vmm::{run, run_linux, ConsoleSink, KernelSource, Quiet, VmConfig};

/// The error and its causes, as the `virtlab` binary prints them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s += &format!(": {c}");
        cause = c.source();
    }
    s
}

/// Runs `f` on a thread and returns its error, or what went wrong: it was
/// accepted, or it is still running after 20 s (blocked on a FIFO, or
/// reading an endless file).
fn promptly(f: impl FnOnce() -> Result<(), String> + Send + 'static) -> Result<String, &'static str> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Err(e)) => Ok(e),
        Ok(Ok(())) => Err("accepted"),
        Err(_) => Err("still running after 20 s (blocked, or reading without end)"),
    }
}

fn minikernel_run(kernel: PathBuf) -> Result<(), String> {
    let mut c = VmConfig::builtin_workload(&["ready"]);
    c.kernel = KernelSource::File(kernel);
    run(&c, ConsoleSink::Discard, &mut Quiet).map(drop).map_err(|e| chain(&e))
}

fn linux_run(kernel: PathBuf, initrd: Option<PathBuf>) -> Result<(), String> {
    let c = LinuxConfig {
        kernel,
        initrd: match initrd {
            Some(p) => InitrdSource::File(p),
            None => InitrdSource::Build { rootfs: None },
        },
        workload: Vec::new(),
        program: Vec::new(),
        env: Vec::new(),
        workdir: None,
        extra_cmdline: None,
        mem_size: 128 << 20,
        timeout: Some(Duration::from_secs(30)),
        interactive: false,
        snapshot: None,
        seccomp: true,
    };
    run_linux(&c, ConsoleSink::Discard, &mut Quiet).map(drop).map_err(|e| chain(&e))
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that lives across the call;
    // mkfifo(3) only reads it.
    let r = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(r, 0, "mkfifo {}: {}", path.display(), std::io::Error::last_os_error());
}

/// A sparse file of `len` bytes (no disk space used).
fn sparse(path: &Path, len: u64) {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

/// The test's files, removed when dropped (also when the test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let d = std::env::temp_dir().join(format!("virtlab-input-files-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn special_and_oversized_files_are_refused_at_once_leaving_nothing_open() {
    let dir = TempDir::new();
    let dir = &dir.0;
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let minikernel = dir.join("minikernel");
    std::fs::write(&minikernel, virtlab_minikernel::ELF).unwrap();
    let huge_kernel = dir.join("huge-kernel");
    sparse(&huge_kernel, (512 << 20) + 1);
    let huge_initrd = dir.join("huge-initrd");
    sparse(&huge_initrd, (128 << 20) + 1);
    let zero = PathBuf::from("/dev/zero");

    let fds = open_fds();
    let regular = "must be a regular file";
    type Case = (&'static str, Box<dyn FnOnce() -> Result<(), String> + Send>, Vec<String>);
    let cases: Vec<Case> = vec![
        (
            "minikernel: FIFO kernel",
            Box::new({
                let f = fifo.clone();
                move || minikernel_run(f)
            }),
            vec![format!("the kernel {} is a FIFO", fifo.display()), regular.into()],
        ),
        (
            "minikernel: /dev/zero kernel",
            Box::new({
                let z = zero.clone();
                move || minikernel_run(z)
            }),
            vec!["the kernel /dev/zero is a character device".into(), regular.into()],
        ),
        (
            "minikernel: kernel over the limit",
            Box::new({
                let k = huge_kernel.clone();
                move || minikernel_run(k)
            }),
            vec![format!("is {} bytes, larger than the limit of {} bytes", (512 << 20) + 1, 512 << 20)],
        ),
        (
            "linux: FIFO kernel",
            Box::new({
                let f = fifo.clone();
                move || linux_run(f, None)
            }),
            vec![format!("the kernel {} is a FIFO", fifo.display()), regular.into()],
        ),
        (
            "linux: /dev/zero kernel",
            Box::new({
                let z = zero.clone();
                move || linux_run(z, None)
            }),
            vec!["the kernel /dev/zero is a character device".into()],
        ),
        (
            "linux: FIFO initrd",
            Box::new({
                let (k, f) = (minikernel.clone(), fifo.clone());
                move || linux_run(k, Some(f))
            }),
            vec![format!("the initrd {} is a FIFO", fifo.display()), regular.into()],
        ),
        (
            "linux: /dev/zero initrd",
            Box::new({
                let (k, z) = (minikernel.clone(), zero.clone());
                move || linux_run(k, Some(z))
            }),
            vec!["the initrd /dev/zero is a character device".into()],
        ),
        (
            "linux: initrd larger than guest memory",
            Box::new({
                let (k, i) = (minikernel.clone(), huge_initrd.clone());
                move || linux_run(k, Some(i))
            }),
            vec![format!("is {} bytes, larger than the limit of {} bytes", (128 << 20) + 1, 128 << 20), "--mem".into()],
        ),
    ];
    // Every case is tried, so a failure lists all that are wrong.
    let mut wrong = Vec::new();
    for (what, f, needles) in cases {
        match promptly(f) {
            Ok(e) => {
                for n in needles.iter().filter(|n| !e.contains(n.as_str())) {
                    wrong.push(format!("{what}: {n:?} missing from: {e}"));
                }
            }
            Err(why) => wrong.push(format!("{what}: {why}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(open_fds(), fds, "file descriptors left open");
}
