//! The environments a workload runs in, and one launch in each.
//!
//! Every launch reports the same [`Sample`]: when the workload printed its
//! ready marker and when it exited (host clock, from the launcher's start),
//! the workload's own timing line, the launcher's phases, VM exits and
//! memory. Native runs are a fork/exec of the workload file; containers and
//! VMs are launched in-process through the `virtlab-container` and
//! `virtlab-vmm` libraries, with their own clocks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use virtlab_vmm::{ConsoleKind, ConsoleSink, GuestStop, Quiet, Step as VmStep, VmConfig};
use virtlab_workload::{WorkloadResult, READY_MARKER};

use crate::memory::MemoryMethod;

/// Where a workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Env {
    /// fork/exec on the host: the floor.
    Native,
    /// Our container launcher: every namespace, cgroup limits.
    Container,
    /// Our VMM + minikernel, console through the emulated 16550 UART.
    VmMiniUart,
    /// Our VMM + minikernel, console through the paravirtual port.
    VmMiniPv,
    /// Our VMM + a Linux guest kernel.
    VmLinux,
    /// Peer: QEMU microvm with KVM, the same minikernel (PVH) and workload.
    QemuMicrovm,
    /// Peer: the same under QEMU's software emulation (TCG).
    QemuTcg,
    /// Peer: QEMU microvm with KVM booting the same Linux guest as `vm-linux`
    /// (same kernel file, initramfs bytes and command line).
    QemuMicrovmLinux,
    /// Peer: the same Linux guest under QEMU's software emulation (TCG).
    QemuTcgLinux,
    /// Peer: bubblewrap, every namespace, the same rootfs.
    Bwrap,
    /// Peer: runc with an OCI bundle of the same rootfs and limits.
    Runc,
    /// Peer: crun with the same bundle.
    Crun,
}

impl Env {
    /// Every environment, in table order.
    pub const ALL: [Env; 5] = [Env::Native, Env::Container, Env::VmMiniUart, Env::VmMiniPv, Env::VmLinux];

    /// The peers (`--peers`).
    pub const PEERS: [Env; 7] =
        [Env::QemuMicrovm, Env::QemuTcg, Env::QemuMicrovmLinux, Env::QemuTcgLinux, Env::Bwrap, Env::Runc, Env::Crun];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Env::Native => "native",
            Env::Container => "container",
            Env::VmMiniUart => "vm-mini-uart",
            Env::VmMiniPv => "vm-mini-pv",
            Env::VmLinux => "vm-linux",
            Env::QemuMicrovm => "qemu-microvm",
            Env::QemuTcg => "qemu-tcg",
            Env::QemuMicrovmLinux => "qemu-microvm-linux",
            Env::QemuTcgLinux => "qemu-tcg-linux",
            Env::Bwrap => "bwrap",
            Env::Runc => "runc",
            Env::Crun => "crun",
        }
    }

    /// One line on what it is.
    pub fn describe(self) -> &'static str {
        match self {
            Env::Native => "fork/exec of the workload on the host",
            Env::Container => "virtlab container: all namespaces, cgroup limits, pivot_root",
            Env::VmMiniUart => "virtlab VMM + minikernel, console on an emulated 16550 UART",
            Env::VmMiniPv => "virtlab VMM + minikernel, console on a paravirtual port",
            Env::VmLinux => "virtlab VMM + a Linux guest kernel",
            Env::QemuMicrovm => "QEMU microvm + KVM booting the same minikernel (PVH)",
            Env::QemuTcg => "QEMU microvm under software emulation (TCG), same minikernel",
            Env::QemuMicrovmLinux => "QEMU microvm + KVM booting the same Linux guest as vm-linux",
            Env::QemuTcgLinux => "QEMU microvm under software emulation (TCG), same Linux guest as vm-linux",
            Env::Bwrap => "bubblewrap, every namespace, same rootfs",
            Env::Runc => "runc, OCI bundle of the same rootfs and limits",
            Env::Crun => "crun, the same OCI bundle",
        }
    }

    /// Whether it is one of the peers rather than virtlab's own.
    pub fn is_peer(self) -> bool {
        Env::PEERS.contains(&self)
    }

    /// Whether it is a VM.
    pub fn is_vm(self) -> bool {
        matches!(self, Env::VmMiniUart | Env::VmMiniPv | Env::VmLinux)
    }

    /// Whether it is one of the QEMU peers.
    pub fn is_qemu(self) -> bool {
        matches!(self, Env::QemuMicrovm | Env::QemuTcg | Env::QemuMicrovmLinux | Env::QemuTcgLinux)
    }

    /// Whether it boots the Linux guest kernel (ours or QEMU), so needs one
    /// to be available and gets the Linux timeout.
    pub fn boots_linux(self) -> bool {
        matches!(self, Env::VmLinux | Env::QemuMicrovmLinux | Env::QemuTcgLinux)
    }

    /// Parses a comma-separated list; `vm-mini` means both consoles, `all`
    /// every environment.
    pub fn parse_list(text: &str) -> Result<Vec<Env>, String> {
        let mut out = Vec::new();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let add: &[Env] = match word {
                "all" => &Env::ALL,
                "native" => &[Env::Native],
                "container" => &[Env::Container],
                "vm-mini" => &[Env::VmMiniUart, Env::VmMiniPv],
                "vm-mini-uart" => &[Env::VmMiniUart],
                "vm-mini-pv" => &[Env::VmMiniPv],
                "vm-linux" => &[Env::VmLinux],
                "peers" => &Env::PEERS,
                "qemu-microvm" => &[Env::QemuMicrovm],
                "qemu-tcg" => &[Env::QemuTcg],
                "qemu-microvm-linux" => &[Env::QemuMicrovmLinux],
                "qemu-tcg-linux" => &[Env::QemuTcgLinux],
                "bwrap" => &[Env::Bwrap],
                "runc" => &[Env::Runc],
                "crun" => &[Env::Crun],
                other => {
                    return Err(format!(
                        "unknown environment {other:?}: use native, container, vm-mini (both consoles), vm-mini-uart, \
                         vm-mini-pv, vm-linux, all, or the peers qemu-microvm, qemu-tcg, qemu-microvm-linux, \
                         qemu-tcg-linux, bwrap, runc, crun (peers: all seven)"
                    ))
                }
            };
            for e in add {
                if !out.contains(e) {
                    out.push(*e);
                }
            }
        }
        if out.is_empty() {
            return Err("no environment given".into());
        }
        out.sort();
        Ok(out)
    }
}

/// A workload mode with its size argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// The mode: ready, cpu, syscall, mem, io.
    pub mode: String,
    /// Its argument (iterations, MiB or KiB), none for `ready`.
    pub arg: Option<u64>,
}

impl Workload {
    /// The default size of each mode: long enough to measure, short enough
    /// for a classroom (`quick` shrinks them for a fast overview).
    pub fn default_for(mode: &str, quick: bool) -> Result<Workload, String> {
        let arg = match (mode, quick) {
            ("ready", _) => None,
            ("cpu", false) => Some(20_000_000),
            ("cpu", true) => Some(5_000_000),
            ("syscall", false) => Some(1_000),
            ("syscall", true) => Some(200),
            ("mem", false) => Some(16),
            ("mem", true) => Some(4),
            ("io", false) => Some(16),
            ("io", true) => Some(4),
            (other, _) => {
                return Err(format!("unknown workload {other:?}: use ready, cpu, syscall, mem or io"));
            }
        };
        Ok(Workload { mode: mode.to_string(), arg })
    }

    /// Parses `cpu`, `cpu=1000000`, comma-separated.
    pub fn parse_list(text: &str, quick: bool) -> Result<Vec<Workload>, String> {
        let mut out = Vec::new();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let (mode, arg) = match word.split_once('=') {
                Some((m, a)) => (m, Some(a)),
                None => (word, None),
            };
            let mut w = Workload::default_for(mode, quick)?;
            if let Some(a) = arg {
                if w.arg.is_none() {
                    return Err(format!("workload {mode} takes no argument"));
                }
                w.arg = Some(a.parse().map_err(|_| format!("{word:?}: the argument must be a whole number"))?);
            }
            if !out.iter().any(|o: &Workload| o.mode == w.mode) {
                out.push(w);
            }
        }
        if out.is_empty() {
            return Err("no workload given".into());
        }
        Ok(out)
    }

    /// The workload's arguments (after argv[0]).
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![self.mode.clone()];
        if let Some(n) = self.arg {
            a.push(n.to_string());
        }
        a
    }

    /// "cpu 20000000".
    pub fn label(&self) -> String {
        self.args().join(" ")
    }
}

/// One phase of a launch, in microseconds since the launcher started.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// Launcher step name.
    pub name: String,
    /// When it ended.
    pub at_us: f64,
}

/// What one launch measured.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Environment.
    pub env: Env,
    /// Workload mode.
    pub workload: String,
    /// Run index (warm-ups are not kept).
    pub run: usize,
    /// Launch to the ready marker (µs, host clock).
    pub startup_us: Option<f64>,
    /// Launch to exit (µs, host clock).
    pub total_us: f64,
    /// The workload's own measurement (its `ns=` field), in ns.
    pub inside_ns: Option<f64>,
    /// The workload's PID as it saw it.
    pub pid: Option<u64>,
    /// Exit status (128 + signal for a fault).
    pub exit_status: i32,
    /// The launcher's phases.
    pub phases: Vec<Phase>,
    /// VM exits (VMs only).
    pub vm_exits: Option<u64>,
    /// VM exits caused by console output (VMs only).
    pub console_exits: Option<u64>,
    /// System calls that reached ring 0 through SYSCALL / were trapped (minikernel).
    pub syscalls_fast: Option<u64>,
    /// See `syscalls_fast`.
    pub syscalls_trapped: Option<u64>,
    /// Host memory this instance cost (see `memory_method`).
    pub memory_bytes: Option<u64>,
    /// How `memory_bytes` was measured.
    pub memory_method: Option<MemoryMethod>,
    /// Every field of the workload's result line.
    pub result: BTreeMap<String, String>,
    /// Fix-ups the VMM made for the host's nested KVM (Linux guests only).
    pub host_fixups: Option<u64>,
}

/// What launching needs to know, set up once per comparison.
#[derive(Debug, Clone)]
pub struct Context {
    /// The workload file on disk (native runs exec it).
    pub workload_path: PathBuf,
    /// A rootfs with the workload at /virtlab-workload (containers).
    pub rootfs: Option<PathBuf>,
    /// Per-launch timeout.
    pub timeout: Duration,
    /// The VMM process's own memory (peak RSS minus guest pages), measured
    /// once in a separate `virtlab vm run` process; added to each VM's
    /// guest pages for its memory per instance.
    pub vmm_overhead_bytes: Option<u64>,
    /// Memory limit for containers.
    pub container_memory: u64,
    /// pids limit for containers.
    pub container_pids: u64,
    /// The Linux guest kernel, when one is available.
    pub linux_kernel: Option<PathBuf>,
    /// Timeout for one Linux guest run, ours or QEMU's (they boot slowly
    /// on nested hosts).
    pub linux_timeout: Duration,
}

/// Runs `workload` once in `env`.
pub fn launch(env: Env, workload: &Workload, run: usize, ctx: &Context) -> Result<Sample, String> {
    let mut s = match env {
        Env::Native => launch_native(workload, ctx)?,
        Env::Container => launch_container(workload, ctx)?,
        Env::VmMiniUart => launch_vm(workload, ctx, ConsoleKind::Uart)?,
        Env::VmMiniPv => launch_vm(workload, ctx, ConsoleKind::Pv)?,
        Env::VmLinux => launch_linux(workload, ctx)?,
        peer => crate::peers::launch(peer, workload, ctx)?,
    };
    s.env = env;
    s.run = run;
    Ok(s)
}

pub(crate) fn empty_sample(workload: &Workload) -> Sample {
    Sample {
        env: Env::Native,
        workload: workload.mode.clone(),
        run: 0,
        startup_us: None,
        total_us: 0.0,
        inside_ns: None,
        pid: None,
        exit_status: 0,
        phases: Vec::new(),
        vm_exits: None,
        console_exits: None,
        syscalls_fast: None,
        syscalls_trapped: None,
        memory_bytes: None,
        memory_method: None,
        result: BTreeMap::new(),
        host_fixups: None,
    }
}

/// Fills in what the workload's output says; an error if it did not finish.
pub(crate) fn read_output(s: &mut Sample, output: &str, workload: &Workload) -> Result<(), String> {
    let Some(r) = WorkloadResult::find(output) else {
        let tail: Vec<&str> = output.lines().rev().take(3).collect();
        return Err(format!(
            "no result line from `{}` (exit status {}; last output: {:?})",
            workload.label(),
            s.exit_status,
            tail
        ));
    };
    if s.exit_status != 0 {
        return Err(format!("`{}` exited with status {}", workload.label(), s.exit_status));
    }
    s.inside_ns = r.get_u64("ns").map(|n| n as f64);
    s.pid = output
        .lines()
        .find(|l| l.starts_with(READY_MARKER))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("pid=")))
        .and_then(|p| p.parse().ok());
    s.result = r.fields;
    Ok(())
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn launch_native(workload: &Workload, ctx: &Context) -> Result<Sample, String> {
    use std::os::fd::AsRawFd;

    let mut s = empty_sample(workload);
    let t0 = Instant::now();
    let deadline = t0 + ctx.timeout;
    let mut child = Command::new(&ctx.workload_path)
        .args(workload.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", ctx.workload_path.display()))?;
    s.phases.push(Phase { name: "spawn".into(), at_us: us(t0.elapsed()) });
    let pid = child.id() as libc::pid_t;
    // Read the output as it comes, with poll(2) so that a workload that
    // hangs cannot hang the harness, noting when the ready line completes.
    let mut output = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        let mut chunk = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !poll_in(out.as_raw_fd(), left) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("`{}` did not finish within {:?}", workload.label(), ctx.timeout));
            }
            let n = std::io::Read::read(&mut out, &mut chunk).unwrap_or(0);
            if n == 0 {
                break;
            }
            let old = output.len();
            output.extend_from_slice(&chunk[..n]);
            if s.startup_us.is_none() && ready_line_completed(&output, old) {
                s.startup_us = Some(us(t0.elapsed()));
            }
        }
    }
    let status = wait_child(pid, t0, ctx.timeout)?;
    s.total_us = us(t0.elapsed());
    s.exit_status = status;
    // Memory comes from a separate run in a cgroup (`memory::native`): the
    // child's own maxrss would include the harness's pages it was forked with.
    if let Some(r) = s.startup_us {
        s.phases.push(Phase { name: "ready".into(), at_us: r });
    }
    s.phases.push(Phase { name: "exit".into(), at_us: s.total_us });
    read_output(&mut s, &String::from_utf8_lossy(&output), workload)?;
    Ok(s)
}

/// Whether the bytes appended to `output` from `old` on completed a line
/// starting with the ready marker.
pub(crate) fn ready_line_completed(output: &[u8], old: usize) -> bool {
    if !output[old..].contains(&b'\n') {
        return false;
    }
    let mut lines = output.split(|&b| b == b'\n').rev().skip(1);
    lines.any(|l| l.starts_with(READY_MARKER.as_bytes()))
}

/// Waits up to `timeout` for `fd` to be readable (or closed).
pub(crate) fn poll_in(fd: i32, timeout: Duration) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return r > 0;
        }
    }
}

/// waitpid through a pidfd, so the wait blocks (no polling delay) yet
/// still ends at `timeout`, when the child is killed.
pub(crate) fn wait_child(pid: libc::pid_t, t0: Instant, timeout: Duration) -> Result<i32, String> {
    // SAFETY: pidfd_open on our own unreaped child; the fd is closed below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    let result = loop {
        let mut status = 0;
        // SAFETY: waiting for our own child; the pointer is valid.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break Ok(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) });
        }
        if r < 0 {
            break Err(format!("waiting for the workload: {}", std::io::Error::last_os_error()));
        }
        let left = timeout.saturating_sub(t0.elapsed());
        if left.is_zero() {
            // SAFETY: signalling our own child, which has not been reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if pidfd >= 0 {
            poll_in(pidfd, left.max(Duration::from_millis(1)));
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
    };
    if pidfd >= 0 {
        // SAFETY: closing the pidfd opened above, once.
        unsafe { libc::close(pidfd) };
    }
    result
}

fn launch_container(workload: &Workload, ctx: &Context) -> Result<Sample, String> {
    let rootfs = ctx.rootfs.as_deref().ok_or("no container rootfs")?;
    let mut argv = vec!["/virtlab-workload".to_string()];
    argv.extend(workload.args());
    let mut cfg = virtlab_container::ContainerConfig::new(rootfs, argv);
    cfg.stdio = virtlab_container::Stdio::Capture;
    cfg.limits.memory = Some(ctx.container_memory);
    cfg.limits.pids = Some(ctx.container_pids);
    cfg.timeout = Some(ctx.timeout);
    let out = virtlab_container::run(&cfg).map_err(|e| e.to_string())?;
    let mut s = empty_sample(workload);
    s.exit_status = i32::from(out.exit_code());
    s.total_us = out.at(virtlab_container::Step::Exit).map(us).unwrap_or_else(|| us(out.total));
    s.startup_us = out.at(virtlab_container::Step::Ready).map(us);
    s.phases = out.timeline.iter().map(|st| Phase { name: st.step.name().to_string(), at_us: us(st.at) }).collect();
    s.memory_bytes = out.cgroup.as_ref().and_then(|c| c.stats.memory_peak);
    s.memory_method = s.memory_bytes.map(|_| MemoryMethod::CgroupPeak);
    if out.timed_out {
        return Err(format!("`{}` timed out in the container", workload.label()));
    }
    read_output(&mut s, &out.stdout_text(), workload)?;
    Ok(s)
}

fn launch_vm(workload: &Workload, ctx: &Context, console: ConsoleKind) -> Result<Sample, String> {
    let args: Vec<String> = workload.args();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = VmConfig::builtin_workload(&refs);
    c.console = console;
    c.timeout = Some(ctx.timeout);
    let r = virtlab_vmm::run(&c, ConsoleSink::Capture, &mut Quiet).map_err(|e| format!("{e:#}"))?;
    let mut s = empty_sample(workload);
    s.exit_status = r.exit_status;
    s.startup_us = r.at(VmStep::WorkloadReady);
    s.total_us = r.at(VmStep::WorkloadExit).unwrap_or(r.total_us);
    s.phases = r.phases.iter().map(|p| Phase { name: p.name.to_string(), at_us: p.at_us }).collect();
    s.vm_exits = Some(r.exits.total);
    let device = if console == ConsoleKind::Pv { "pv-console" } else { "uart" };
    s.console_exits = Some(r.exits.by_device.get(device).copied().unwrap_or(0));
    s.syscalls_fast = Some(r.syscalls.via_syscall);
    s.syscalls_trapped = Some(r.syscalls.via_trap);
    // An estimate; the harness replaces it with a cgroup peak of a `virtlab
    // vm run` process where it can (`memory::vm_mini`).
    s.memory_bytes = Some(r.memory.guest_touched_bytes + ctx.vmm_overhead_bytes.unwrap_or(0));
    s.memory_method = Some(MemoryMethod::Estimate);
    if !matches!(r.stop, GuestStop::Exited(_)) {
        return Err(format!("`{}` in the VM: {}", workload.label(), r.summary));
    }
    read_output(&mut s, r.output.as_deref().unwrap_or(""), workload)?;
    Ok(s)
}

fn launch_linux(workload: &Workload, ctx: &Context) -> Result<Sample, String> {
    use virtlab_vmm::linux::{initramfs::WORKLOAD_PATH, InitrdSource, LinuxConfig};
    let kernel = ctx.linux_kernel.clone().ok_or("no Linux guest kernel")?;
    let mut program = vec![WORKLOAD_PATH.to_string()];
    program.extend(workload.args());
    let c = LinuxConfig {
        kernel,
        initrd: InitrdSource::Build { rootfs: None },
        workload: Vec::new(),
        program,
        extra_cmdline: None,
        mem_size: 128 << 20,
        timeout: Some(ctx.linux_timeout),
        interactive: false,
    };
    let r = virtlab_vmm::run_linux(&c, ConsoleSink::Capture, &mut Quiet).map_err(|e| format!("{e:#}"))?;
    let mut s = empty_sample(workload);
    let run = &r.run;
    s.exit_status = run.exit_status;
    s.startup_us = run.at(VmStep::WorkloadReady);
    s.total_us = run.at(VmStep::WorkloadExit).unwrap_or(run.total_us);
    s.phases = run.phases.iter().map(|p| Phase { name: p.name.to_string(), at_us: p.at_us }).collect();
    // The end of the kernel's own boot, from its console line, between the
    // first entry and the init's boot-timer mark.
    if let Some(at_us) = r.init_line_us {
        s.phases.push(Phase { name: "kernel-starts-init".into(), at_us });
        s.phases.sort_by(|a, b| a.at_us.total_cmp(&b.at_us));
    }
    s.vm_exits = Some(run.exits.total);
    // An estimate: a cgroup run would be one more boot of minutes on a
    // nested host.
    s.memory_bytes = Some(run.memory.guest_touched_bytes + ctx.vmm_overhead_bytes.unwrap_or(0));
    s.memory_method = Some(MemoryMethod::Estimate);
    s.host_fixups = Some(r.host_quirks.fixups.values().sum());
    if !matches!(run.stop, GuestStop::Exited(_)) {
        let why = r.panic.clone().or(r.emulation_failure.clone()).unwrap_or_else(|| run.summary.clone());
        return Err(format!("`{}` in the Linux guest: {why}", workload.label()));
    }
    read_output(&mut s, run.output.as_deref().unwrap_or(""), workload)?;
    Ok(s)
}

/// Measures the VMM process's own memory: a separate `virtlab vm run --json
/// -- ready` process, its peak RSS minus the guest pages it touched.
pub fn measure_vmm_overhead(virtlab: &Path) -> Result<u64, String> {
    let out = Command::new(virtlab)
        .args(["vm", "run", "--json", "--", "ready"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", virtlab.display()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("`virtlab vm run --json` printed no JSON: {e}"))?;
    v["memory"]["vmm_overhead_bytes"].as_u64().ok_or_else(|| "no memory figure in the VM report".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_lists() {
        assert_eq!(Env::parse_list("native,vm-mini").unwrap(), vec![Env::Native, Env::VmMiniUart, Env::VmMiniPv]);
        assert_eq!(Env::parse_list("all").unwrap().len(), 5);
        assert_eq!(Env::parse_list("container,native,native").unwrap(), vec![Env::Native, Env::Container]);
        let e = Env::parse_list("native,docker").unwrap_err();
        assert!(e.contains("docker") && e.contains("vm-mini"), "{e}");
        assert!(Env::parse_list(" , ").is_err());
    }

    #[test]
    fn linux_peers_by_name_and_in_peers() {
        assert_eq!(
            Env::parse_list("qemu-tcg-linux,vm-linux,qemu-microvm-linux").unwrap(),
            vec![Env::VmLinux, Env::QemuMicrovmLinux, Env::QemuTcgLinux]
        );
        let peers = Env::parse_list("peers").unwrap();
        assert_eq!(peers.len(), 7);
        assert!(peers.contains(&Env::QemuMicrovmLinux) && peers.contains(&Env::QemuTcgLinux));
        assert!(!Env::parse_list("all").unwrap().iter().any(|e| e.is_peer()));
        for e in [Env::QemuMicrovmLinux, Env::QemuTcgLinux] {
            assert!(e.is_peer() && e.is_qemu() && e.boots_linux() && !e.is_vm());
            assert_eq!(Env::parse_list(e.name()).unwrap(), vec![e]);
            assert!(e.describe().contains("Linux"));
        }
        assert!(Env::VmLinux.boots_linux() && !Env::QemuTcg.boots_linux());
        let err = Env::parse_list("qemu-linux").unwrap_err();
        assert!(err.contains("qemu-microvm-linux") && err.contains("qemu-tcg-linux"), "{err}");
        // Names and serde agree.
        for e in Env::ALL.iter().chain(Env::PEERS.iter()) {
            assert_eq!(serde_json::to_value(e).unwrap(), e.name());
        }
    }

    #[test]
    fn the_ready_line_counts_once_complete() {
        let mut out = b"Run /virtlab/init\r\nvirtlab.ready pid=1".to_vec();
        assert!(!ready_line_completed(&out, 0));
        let old = out.len();
        out.extend_from_slice(b" t_ns=5\r\n");
        assert!(ready_line_completed(&out, old));
        assert!(!ready_line_completed(b"boot\nmore\n", 0));
    }

    #[test]
    fn workload_lists() {
        let w = Workload::parse_list("ready,cpu=1000,io", false).unwrap();
        assert_eq!(w[0], Workload { mode: "ready".into(), arg: None });
        assert_eq!(w[1].args(), vec!["cpu", "1000"]);
        assert_eq!(w[2].arg, Some(16));
        assert_eq!(Workload::parse_list("io", true).unwrap()[0].arg, Some(4));
        assert!(Workload::parse_list("ready=3", false).is_err());
        assert!(Workload::parse_list("cpu=lots", false).is_err());
        assert!(Workload::parse_list("fork", false).unwrap_err().contains("ready, cpu"));
    }

    #[test]
    fn output_parsing_takes_the_result_and_the_pid() {
        let w = Workload::default_for("cpu", true).unwrap();
        let mut s = empty_sample(&w);
        read_output(&mut s, "virtlab.ready pid=42 t_ns=1\nvirtlab.result mode=cpu n=5 ns=1234 checksum=0x1\n", &w)
            .unwrap();
        assert_eq!((s.inside_ns, s.pid), (Some(1234.0), Some(42)));
        s.exit_status = 139;
        assert!(read_output(&mut s, "virtlab.ready pid=1\n", &w).unwrap_err().contains("139"));
    }
}
