//! Peers: the real tools, run beside ours on the same workload.
//!
//! - `qemu-microvm`: `qemu-system-x86_64 -M microvm -accel kvm` booting the
//!   same minikernel file through its PVH note, the workload as its initrd.
//! - `qemu-tcg`: the same, under QEMU's pure software emulation (`-accel
//!   tcg`): the notes' host-OS virtualization that emulates the hardware.
//! - `qemu-microvm-linux` and `qemu-tcg-linux`: the same two, booting the
//!   Linux guest of our `vm-linux` row: the same kernel file, the same
//!   initramfs bytes (virtlab's init and the workload) and the same kernel
//!   command line, on a microvm trimmed to what that guest knows (no ACPI,
//!   no PCI; the 16550 UART, PIC and PIT; the exit port).
//! - `bwrap`: bubblewrap with every namespace, on the same rootfs.
//! - `runc`: an OCI bundle of the same rootfs with the same limits.
//! - `crun`: the same bundle, where crun accepts this host's cgroup layout.
//! - `podman+runc` (once `podman`, a name still accepted): `podman run
//!   --rm` of the same three-layer image as our `container-image` row,
//!   with runc, the same limits and rlimits, from a podman storage of the
//!   run's own ([`crate::podman`]).
//! - `podman+virtlab`: the same `podman run --rm` with virtlab as podman's
//!   OCI runtime: `--runtime` names a `virtlab-runc` link to the running
//!   binary, made in that storage's directory and removed with it.
//!
//! Each launch yields the same [`Sample`] as our own environments: launch to
//! ready marker and to exit on the host clock, and the workload's own line.
//! A QEMU launch runs in a memory cgroup of its own when virtlab is root
//! ([`crate::memory`]), so its memory per instance is measured like a
//! native process's; a podman container's cgroup goes under a fresh cgroup
//! of ours, whose peak is the container's (the runtime's init and the
//! workload; not podman or conmon).

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use virtlab_vmm::linux::{compose_cmdline, initramfs, HostQuirks};

use crate::launch::{
    empty_sample, read_output, ready_line_completed, Context, Env, MemoryMethod, Phase, RunImage, Sample, Workload,
};
use crate::memory::ProcessCgroup;
use crate::podman;
use crate::process::{is_root, poll_in};

/// Guest RAM of the Linux peers: the same as `vm-linux`.
pub const LINUX_MEM: &str = "128M";

/// The microvm machine for the Linux guest: only what its kernel
/// configuration knows (no ACPI, no PCI, no RTC), the ISA UART, PIC and
/// PIT kept, no option ROMs, and nothing appended to the command line (QEMU
/// would add virtio-mmio devices after our `--`, where init would take them
/// for the workload's arguments).
pub const LINUX_MACHINE: &str =
    "microvm,x-option-roms=off,isa-serial=on,pic=on,pit=on,rtc=off,acpi=off,pcie=off,auto-kernel-cmdline=off";

/// How every error for a QEMU run stopped by the host's emulator begins.
const EMULATION_FAILURE: &str = "QEMU with KVM stopped on an emulation failure";

/// Why a peer cannot run here, or None when it can. (Whether a Linux guest
/// kernel is available is the caller's check, shared with `vm-linux`.)
pub fn unavailable(env: Env, host_kvm: bool, cgroup_mode: Option<&str>) -> Option<String> {
    let has = |cmd: &str, arg: &str| {
        Command::new(cmd).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    };
    match env {
        e if e.is_qemu() && !has("qemu-system-x86_64", "--version") => {
            Some("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)".into())
        }
        Env::QemuMicrovm | Env::QemuMicrovmLinux if !host_kvm => Some("QEMU with KVM needs /dev/kvm".into()),
        Env::Bwrap if !has("bwrap", "--version") => Some("bwrap is not installed (apt-get install bubblewrap)".into()),
        Env::Runc if !has("runc", "--version") => Some("runc is not installed (apt-get install runc)".into()),
        Env::Crun if !has("crun", "--version") => Some("crun is not installed (apt-get install crun)".into()),
        Env::Podman | Env::PodmanVirtlab if !has("podman", "--version") => {
            Some("podman is not installed (apt-get install podman)".into())
        }
        Env::Podman if !has("runc", "--version") => {
            Some("podman runs the container with runc here, which is not installed (apt-get install runc)".into())
        }
        Env::Crun if cgroup_mode == Some("hybrid") => Some(
            "crun refuses to start on hosts with cgroups in hybrid mode (\"cgroups in hybrid mode not supported\"); \
             virtlab's launcher and runc handle it"
                .into(),
        ),
        Env::Runc | Env::Crun | Env::Bwrap | Env::Podman | Env::PodmanVirtlab if !is_root() => {
            Some("needs root".into())
        }
        _ => None,
    }
}

/// Whether `error` (from [`launch`]) says the host's KVM cannot run the
/// guest under QEMU at all: it fails the same way every time.
pub fn is_emulation_failure(error: &str) -> bool {
    error.starts_with(EMULATION_FAILURE)
}

/// A child that is killed and reaped when dropped, unless it was reaped
/// already: no peer process outlives its launch, whatever path it took.
struct Reaper {
    child: Child,
    reaped: bool,
}

impl Reaper {
    fn kill(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.reaped = true;
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a reader thread saw on QEMU's standard error.
#[derive(Default)]
struct StderrState {
    text: String,
    /// When a "KVM internal error" line came.
    kvm_error_at: Option<Instant>,
    /// QEMU's register dump after it has ended (its last line is `Code=`).
    dump_done: bool,
    closed: bool,
}

/// Reads a child's standard error on a thread of its own, so that the
/// harness sees a KVM internal error while QEMU sits paused after it.
struct StderrWatch(Arc<Mutex<StderrState>>);

impl StderrWatch {
    fn start(stderr: Option<std::process::ChildStderr>) -> StderrWatch {
        let state = Arc::new(Mutex::new(StderrState::default()));
        let shared = Arc::clone(&state);
        let Some(stderr) = stderr else {
            shared.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
            return StderrWatch(state);
        };
        let spawned = std::thread::Builder::new().name("virtlab-peer-stderr".into()).spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                if line.contains("KVM internal error") {
                    s.kvm_error_at.get_or_insert_with(Instant::now);
                }
                if s.kvm_error_at.is_some() && line.starts_with("Code=") {
                    s.dump_done = true;
                }
                s.text.push_str(&line);
                line.clear();
            }
            shared.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        });
        if spawned.is_err() {
            state.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        }
        StderrWatch(state)
    }

    /// The reason to stop at once, once QEMU reported a KVM internal error
    /// and finished its register dump (or 200 ms passed); `t0` is when QEMU
    /// started.
    fn failure(&self, t0: Instant) -> Option<String> {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let at = s.kvm_error_at?;
        (s.dump_done || s.closed || at.elapsed() > Duration::from_millis(200))
            .then(|| emulation_failure_reason(&s.text, at.saturating_duration_since(t0)))
    }

    /// Everything read, after waiting up to `wait` for the end of the stream.
    fn text(&self, wait: Duration) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if s.closed || t0.elapsed() >= wait {
                return s.text.clone();
            }
            drop(s);
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The reason for a QEMU run the host's KVM could not go on with: QEMU's
/// own error line, the instruction (from its `Code=` line, the failing
/// byte in angle brackets), when (`after` QEMU started) and what virtlab
/// does about it.
pub fn emulation_failure_reason(stderr: &str, after: Duration) -> String {
    let line = stderr.lines().find(|l| l.contains("KVM internal error")).unwrap_or("KVM internal error").trim();
    let kind = if stderr.lines().any(|l| l.trim() == "emulation failure") { " (emulation failure)" } else { "" };
    let at = stderr
        .lines()
        .find_map(|l| l.strip_prefix("Code="))
        .and_then(|code| {
            let words: Vec<&str> = code.split_whitespace().collect();
            let first = words.iter().position(|w| w.starts_with('<'))?;
            let bytes: Vec<u8> = words[first..]
                .iter()
                .filter_map(|w| u8::from_str_radix(w.trim_matches(|c| c == '<' || c == '>'), 16).ok())
                .take(8)
                .collect();
            Some(format!(" at {}", virtlab_vmm::linux::host_quirks::describe_instruction(&bytes)))
        })
        .unwrap_or_default();
    format!(
        "{EMULATION_FAILURE}: QEMU printed \"{line}\"{kind}{at} in the guest kernel {:.1} s after it started, then \
         paused the guest for ever, so virtlab killed it at once. This nested host's KVM cannot emulate that \
         instruction in guest ring 0; virtlab's VMM boots the same guest by working around it with host fix-ups (see \
         `virtlab vm run --explain`)",
        after.as_secs_f64()
    )
}

/// Runs `workload` once under a peer.
pub fn launch(env: Env, workload: &Workload, ctx: &Context) -> Result<Sample, String> {
    let timeout = if env.boots_linux() { ctx.linux_timeout } else { ctx.timeout };
    // podman: the container's cgroup under a fresh one of ours (root
    // only), whose peak is its memory; dropped on every way out, which
    // waits for podman's processes and removes the cgroup.
    let podman_launch = match (env, &ctx.image) {
        (Env::Podman | Env::PodmanVirtlab, Some(RunImage { podman: Some(storage), .. })) if is_root() => {
            Some(podman::LaunchGuard::create(storage)?)
        }
        _ => None,
    };
    let mut cmd = match env {
        Env::QemuMicrovm | Env::QemuTcg => qemu(env, workload, ctx)?,
        Env::QemuMicrovmLinux | Env::QemuTcgLinux => qemu_linux(env, workload, ctx)?,
        Env::Bwrap => bwrap(workload, ctx)?,
        Env::Runc | Env::Crun => oci(env, workload, ctx)?,
        Env::Podman | Env::PodmanVirtlab => podman_run(env, workload, ctx, podman_launch.as_ref())?,
        other => return Err(format!("{} is not a peer", other.name())),
    };
    // QEMU: a memory cgroup of its own (root only), joined before exec, and
    // killed by the kernel if the harness dies first.
    let cgroup = if env.is_qemu() && is_root() { Some(ProcessCgroup::create(env.name())?) } else { None };
    if let Some(cg) = &cgroup {
        cg.join_on_exec(&mut cmd)?;
    }
    if env.is_qemu() {
        die_with_parent(&mut cmd);
    }
    let t0 = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", env.name()))?;
    // The parent's copies of the cgroup files are closed with the command.
    drop(cmd);
    let mut child = Reaper { child, reaped: false };
    let stderr = StderrWatch::start(child.child.stderr.take());
    let mut s = empty_sample(workload);
    s.env = env;
    let deadline = t0 + timeout;
    let too_long = || format!("{} did not finish within {timeout:?}", env.name());

    // Standard output as it comes (poll(2) in short slices, so that a
    // paused QEMU or a hung peer cannot hang the harness), noting when the
    // ready line completes.
    let mut output = Vec::new();
    if let Some(mut out) = child.child.stdout.take() {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&out);
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(reason) = stderr.failure(t0) {
                child.kill();
                return Err(reason);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                child.kill();
                return Err(too_long());
            }
            if !poll_in(fd, left.min(Duration::from_millis(10))) {
                continue;
            }
            let n = match out.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if n == 0 {
                break;
            }
            let old = output.len();
            output.extend_from_slice(&chunk[..n]);
            if s.startup_us.is_none() && ready_line_completed(&output, old) {
                s.startup_us = Some(t0.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    let status = loop {
        if let Some(st) = child.child.try_wait().map_err(|e| e.to_string())? {
            child.reaped = true;
            break st;
        }
        if let Some(reason) = stderr.failure(t0) {
            child.kill();
            return Err(reason);
        }
        if Instant::now() > deadline {
            child.kill();
            return Err(too_long());
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    s.total_us = t0.elapsed().as_secs_f64() * 1e6;
    if let Some(cg) = cgroup {
        s.memory_bytes = cg.peak();
        s.memory_method = s.memory_bytes.map(|_| MemoryMethod::CgroupPeak);
        let _ = cg.remove();
    }
    if let Some(launch) = podman_launch {
        s.memory_bytes = launch.peak();
        s.memory_method = s.memory_bytes.map(|_| MemoryMethod::CgroupPeak);
        // Waits for conmon and its clean-up, reaps them, removes the cgroup.
        drop(launch);
    }
    let stderr = stderr.text(Duration::from_secs(1));
    let code = status.code().unwrap_or(-1);
    // isa-debug-exit makes QEMU exit with 2 * status + 1.
    s.exit_status = if env.is_qemu() {
        if code % 2 == 1 {
            (code - 1) / 2
        } else {
            return Err(format!("QEMU exited with {code} without the guest's exit port: {}", last_line(&stderr)));
        }
    } else {
        code
    };
    if let Some(r) = s.startup_us {
        s.phases.push(Phase { name: "ready".into(), at_us: r });
    }
    s.phases.push(Phase { name: "exit".into(), at_us: s.total_us });
    let output = String::from_utf8_lossy(&output);
    read_output(&mut s, &output, workload).map_err(|e| {
        format!("{e}{}", if stderr.is_empty() { String::new() } else { format!(" ({})", last_line(&stderr)) })
    })?;
    Ok(s)
}

/// Asks the kernel to SIGKILL the child when the thread that spawned it
/// (the harness) dies, so that no QEMU is left paused behind a killed
/// harness.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the forked child before exec; prctl(2) is a plain
    // system call and async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn last_line(s: &str) -> &str {
    s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("")
}

fn qemu(env: Env, workload: &Workload, ctx: &Context) -> Result<Command, String> {
    let kernel = virtlab_vmm::minikernel_path().map_err(|e| e.to_string())?;
    let mut c = Command::new("qemu-system-x86_64");
    c.args(["-M", "microvm", "-accel", if env == Env::QemuTcg { "tcg" } else { "kvm" }]);
    c.args(["-m", "64M", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio"]);
    c.args(["-no-reboot", "-device", "isa-debug-exit"]);
    c.arg("-kernel").arg(kernel).arg("-initrd").arg(&ctx.workload_path);
    c.arg("-append").arg(workload.args().join(" "));
    Ok(c)
}

/// QEMU booting the Linux guest of `vm-linux`.
fn qemu_linux(env: Env, workload: &Workload, ctx: &Context) -> Result<Command, String> {
    let kernel = ctx.linux_kernel.as_deref().ok_or("no Linux guest kernel")?;
    let initrd = linux_initramfs()?;
    let mut program = vec![initramfs::WORKLOAD_PATH.to_string()];
    program.extend(workload.args());
    let extra = if env == Env::QemuTcgLinux { host_tsc_khz().map(|khz| format!("tsc_early_khz={khz}")) } else { None };
    let cmdline = linux_cmdline(HostQuirks::probe().cmdline(), extra.as_deref(), &program)?;
    let mut c = Command::new("qemu-system-x86_64");
    c.args(qemu_linux_args(env, kernel, &initrd, &cmdline));
    Ok(c)
}

/// The Linux guest's command line: virtlab's parameters and this host's
/// work-arounds as `vm-linux` gives them to the same kernel, plus `extra`,
/// then `--` and the program (which `vm-linux` hands to the same init in
/// its initramfs's command file instead: the init takes it from either).
pub fn linux_cmdline(quirks: Option<&str>, extra: Option<&str>, program: &[String]) -> Result<String, String> {
    compose_cmdline(quirks, extra, program).map_err(|e| e.to_string())
}

/// QEMU's arguments for the Linux guest.
pub fn qemu_linux_args(env: Env, kernel: &Path, initrd: &Path, cmdline: &str) -> Vec<OsString> {
    let accel = if env == Env::QemuTcgLinux { "tcg" } else { "kvm" };
    let mut a: Vec<OsString> = ["-M", LINUX_MACHINE, "-accel", accel, "-m", LINUX_MEM]
        .iter()
        .chain(["-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot"].iter())
        // The exit port at its default I/O base 0x501, where virtlab's init
        // writes the workload's status.
        .chain(["-device", "isa-debug-exit"].iter())
        .map(OsString::from)
        .collect();
    a.push("-kernel".into());
    a.push(kernel.into());
    a.push("-initrd".into());
    a.push(initrd.into());
    a.push("-append".into());
    a.push(cmdline.into());
    a
}

/// The host's TSC frequency in kHz, measured once against the monotonic
/// clock over 20 ms.
///
/// For `qemu-tcg-linux`: the guest has no kvmclock under TCG, and its
/// kernel cannot calibrate the TSC against the emulated PIT ("tsc: Unable
/// to calibrate against PIT") with no HPET or ACPI PM timer to fall back
/// on, so it marks the TSC unstable and keeps time in 10 ms jiffies: the
/// workload's own timings would come in 10 ms steps. TCG's guest TSC ticks
/// at the host's rate, so `tsc_early_khz=` with the host's frequency gives
/// the guest a precise clock.
fn host_tsc_khz() -> Option<u64> {
    static KHZ: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *KHZ.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let rdtsc = || {
                // SAFETY: RDTSC only reads the time-stamp counter; every
                // x86_64 CPU has it and Linux lets user mode run it.
                unsafe { std::arch::x86_64::_rdtsc() }
            };
            let t0 = Instant::now();
            let c0 = rdtsc();
            std::thread::sleep(Duration::from_millis(20));
            let c1 = rdtsc();
            let us = t0.elapsed().as_secs_f64() * 1e6;
            let khz = (c1.wrapping_sub(c0) as f64 / us * 1e3).round() as u64;
            (khz > 0).then_some(khz)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            None
        }
    })
}

/// Where this process keeps the Linux guest's initramfs for QEMU.
pub fn initramfs_path() -> PathBuf {
    std::env::temp_dir().join(format!("virtlab-initramfs-{}.cpio", std::process::id()))
}

/// The initramfs `vm-linux` builds in memory (virtlab's init and the very
/// workload bytes it uses), written once per process for QEMU's `-initrd`
/// and removed by [`cleanup`].
fn linux_initramfs() -> Result<PathBuf, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    static WRITTEN: Mutex<bool> = Mutex::new(false);
    let mut written = WRITTEN.lock().unwrap_or_else(|p| p.into_inner());
    let path = initramfs_path();
    if *written && path.exists() {
        return Ok(path);
    }
    let bytes = initramfs::build(virtlab_vmm::BUILTIN_WORKLOAD, None).map_err(|e| e.to_string())?;
    // A fresh file (O_EXCL: a name planted in the shared temp directory is
    // not followed); removed again if writing it fails.
    let _ = std::fs::remove_file(&path);
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&path)
        .and_then(|mut f| f.write_all(&bytes));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&path);
        return Err(format!("cannot write the initramfs {}: {e}", path.display()));
    }
    *written = true;
    Ok(path)
}
fn bwrap(workload: &Workload, ctx: &Context) -> Result<Command, String> {
    let rootfs = ctx.rootfs.as_deref().ok_or("no rootfs")?;
    let mut c = Command::new("bwrap");
    c.args(["--unshare-all", "--die-with-parent", "--new-session", "--hostname", "virtlab"]);
    c.arg("--ro-bind").arg(rootfs).arg("/");
    c.args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--", "/virtlab-workload"]);
    c.args(workload.args());
    Ok(c)
}

/// `podman run --rm` of the comparison's image (see [`crate::podman`]),
/// with runc or (`podman+virtlab`) virtlab as the runtime.
fn podman_run(
    env: Env,
    workload: &Workload,
    ctx: &Context,
    launch: Option<&podman::LaunchGuard>,
) -> Result<Command, String> {
    let image = ctx.image.as_ref().ok_or("no image for podman")?;
    let storage = image.podman.as_ref().ok_or("the image was not loaded into podman")?;
    let link = storage.virtlab_runtime();
    let runtime = match env {
        Env::PodmanVirtlab => link.to_str().ok_or("the temporary directory's path is not UTF-8")?,
        _ => "runc",
    };
    let mut argv = vec!["/virtlab-workload".to_string()];
    argv.extend(workload.args());
    let options = podman::RunOptions {
        image: &image.name,
        argv: &argv,
        memory: ctx.container_memory,
        pids: ctx.container_pids,
        cgroup_parent: launch.map(|l| l.name()),
        runtime,
    };
    let mut c = podman::podman(storage);
    c.args(podman::run_args(&options));
    Ok(c)
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// An OCI bundle for one run: config.json naming the shared rootfs.
fn oci(env: Env, workload: &Workload, ctx: &Context) -> Result<Command, String> {
    let rootfs = ctx.rootfs.as_deref().ok_or("no rootfs")?;
    let bundle = bundle_dir(env);
    std::fs::create_dir_all(&bundle).map_err(|e| format!("cannot create {}: {e}", bundle.display()))?;
    let mut args = vec!["/virtlab-workload".to_string()];
    args.extend(workload.args());
    let config = oci_config(rootfs, &args, ctx.container_memory, ctx.container_pids);
    std::fs::write(bundle.join("config.json"), config).map_err(|e| format!("cannot write the OCI config: {e}"))?;
    let id = format!("virtlab-{}-{}", std::process::id(), NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let mut c = Command::new(env.name());
    c.arg("run").arg("--bundle").arg(&bundle).arg(id);
    Ok(c)
}

/// The bundle directory of a peer in this process.
pub fn bundle_dir(env: Env) -> PathBuf {
    std::env::temp_dir().join(format!("virtlab-oci-{}-{}", env.name(), std::process::id()))
}

/// Removes the bundle directories and the initramfs file this process
/// made, and any podman cgroup a failed launch left (podman's storage goes
/// with the comparison's image, [`crate::image::ImageDir`]).
pub fn cleanup() {
    for env in [Env::Runc, Env::Crun] {
        let _ = std::fs::remove_dir_all(bundle_dir(env));
    }
    let _ = std::fs::remove_file(initramfs_path());
    if is_root() {
        crate::podman::remove_stale_cgroups();
    }
}

/// A minimal OCI runtime config: the same namespaces, limits and read-only
/// rootfs as virtlab's container environment.
pub fn oci_config(rootfs: &Path, args: &[String], memory: u64, pids: u64) -> String {
    let v = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": ["PATH=/bin:/sbin:/usr/bin", "HOME=/root"],
            "cwd": "/",
            "noNewPrivileges": true,
            "capabilities": {
                "bounding": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }]
        },
        "root": { "path": rootfs, "readonly": true },
        "hostname": "virtlab",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"] }
        ],
        "linux": {
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }
            ],
            "resources": { "memory": { "limit": memory }, "pids": { "limit": pids } },
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"]
        }
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_boots_the_linux_guest_as_vm_linux_does() {
        let program: Vec<String> = ["/virtlab/workload", "cpu", "1000"].iter().map(|s| s.to_string()).collect();
        let quirks = HostQuirks { active: true, reason: String::new(), fixups: Default::default() };
        let ours = compose_cmdline(quirks.cmdline(), None, &program).unwrap();
        let cmdline = linux_cmdline(quirks.cmdline(), None, &program).unwrap();
        assert_eq!(cmdline, ours, "the same command line as vm-linux");
        assert!(cmdline.contains("rdinit=/virtlab/init") && cmdline.contains("noxsave"), "{cmdline}");
        assert!(cmdline.ends_with(" -- /virtlab/workload cpu 1000"), "{cmdline}");
        // TCG's extra parameter goes before the program, not after it.
        let tcg = linux_cmdline(quirks.cmdline(), Some("tsc_early_khz=2400000"), &program).unwrap();
        assert!(tcg.contains("tsc_early_khz=2400000 -- /virtlab/workload"), "{tcg}");

        let args = |env| -> Vec<String> {
            qemu_linux_args(env, Path::new("/k/vmlinux"), Path::new("/tmp/i.cpio"), &cmdline)
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let after = |a: &[String], flag: &str| a[a.iter().position(|x| x == flag).unwrap() + 1].clone();
        let kvm = args(Env::QemuMicrovmLinux);
        let machine = after(&kvm, "-M");
        assert!(machine.starts_with("microvm,"), "{machine}");
        for opt in ["acpi=off", "pcie=off", "isa-serial=on", "pic=on", "pit=on", "auto-kernel-cmdline=off"] {
            assert!(machine.split(',').any(|o| o == opt), "{opt} in {machine}");
        }
        assert_eq!(after(&kvm, "-accel"), "kvm");
        assert_eq!(after(&kvm, "-m"), "128M");
        assert_eq!(after(&kvm, "-device"), "isa-debug-exit", "the exit port at its default base 0x501");
        assert_eq!(after(&kvm, "-kernel"), "/k/vmlinux");
        assert_eq!(after(&kvm, "-initrd"), "/tmp/i.cpio");
        assert_eq!(after(&kvm, "-append"), cmdline);
        assert!(kvm.contains(&"-no-reboot".to_string()) && kvm.contains(&"-nodefaults".to_string()));
        assert_eq!(after(&args(Env::QemuTcgLinux), "-accel"), "tcg");
    }

    #[test]
    fn the_host_tsc_is_measured() {
        let khz = host_tsc_khz().unwrap();
        assert!((100_000..20_000_000).contains(&khz), "{khz} kHz");
    }

    #[test]
    fn the_initramfs_file_is_vm_linux_s_and_goes_with_cleanup() {
        let path = linux_initramfs().unwrap();
        assert_eq!(path, initramfs_path());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes, initramfs::build(virtlab_vmm::BUILTIN_WORKLOAD, None).unwrap());
        cleanup();
        assert!(!path.exists());
        // Written again when needed after a clean-up.
        assert!(linux_initramfs().unwrap().exists());
        cleanup();
    }

    #[test]
    fn an_emulation_failure_is_named_and_explained() {
        let stderr = "qemu-system-x86_64: warning: host doesn't support requested feature\n\
                      KVM internal error. Suberror: 1\n\
                      extra data[0]: 0x0000000000000001\n\
                      emulation failure\n\
                      RAX=0000000000000000 RBX=0000000000000009\n\
                      Code=89 4c 24 04 e8 15 d5 76 ff 85 c0 74 02 0f 0b 48 8d 7c 24 04 <cc> 90 90 90 90 83 7c 24 04 01\n";
        let r = emulation_failure_reason(stderr, Duration::from_millis(4200));
        assert!(is_emulation_failure(&r), "{r}");
        assert!(r.contains("\"KVM internal error. Suberror: 1\" (emulation failure)"), "{r}");
        assert!(r.contains("at int3 (bytes cc 90") && r.contains("kernel 4.2 s after it started"), "{r}");
        assert!(r.contains("virtlab vm run --explain") && r.contains("host fix-ups"), "{r}");
        assert!(!is_emulation_failure("qemu-tcg did not finish within 1s"));
    }

    #[test]
    fn oci_config_names_the_rootfs_limits_and_command() {
        let c = oci_config(Path::new("/r"), &["/virtlab-workload".into(), "ready".into()], 1 << 28, 64);
        let v: serde_json::Value = serde_json::from_str(&c).unwrap();
        assert_eq!(v["root"]["path"], "/r");
        assert_eq!(v["process"]["args"][1], "ready");
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 1 << 28);
        assert_eq!(v["linux"]["namespaces"].as_array().unwrap().len(), 6);
    }
}
