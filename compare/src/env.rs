//! One launch in each of our own environments: native, container (on a
//! rootfs directory or on an image's layers) and the VMs (the peers'
//! launches are in [`crate::peers`], what all launches share in
//! [`crate::launch`]).
//!
//! Every launch reports the same [`Sample`]: when the workload printed its
//! ready marker and when it exited (host clock, from the launcher's start),
//! the workload's own timing line, the launcher's phases, VM exits and
//! memory. Native runs are a fork/exec of the workload file; containers and
//! VMs are launched in-process through the `virtlab-container` and
//! `virtlab-vmm` libraries, with their own clocks.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use virtlab_vmm::{ConsoleKind, ConsoleSink, GuestStop, Quiet, Step as VmStep, VmConfig};

use crate::launch::{empty_sample, read_output, ready_line_completed, MemoryMethod};
// The launch vocabulary lived here first; these paths keep working.
pub use crate::launch::{Context, Env, Phase, Sample, Workload};
pub use crate::process::is_root;
use crate::process::{poll_in, wait_child};

/// Runs `workload` once in `env`.
pub fn launch(env: Env, workload: &Workload, run: usize, ctx: &Context) -> Result<Sample, String> {
    let mut s = match env {
        Env::Native => launch_native(workload, ctx)?,
        Env::Container => launch_container(workload, ctx)?,
        Env::ContainerImage => launch_container_image(workload, ctx)?,
        Env::VmMiniUart => launch_vm(workload, ctx, ConsoleKind::Uart)?,
        Env::VmMiniPv => launch_vm(workload, ctx, ConsoleKind::Pv)?,
        Env::VmLinux => launch_linux(workload, ctx)?,
        Env::VmMiniRestore => launch_restore(workload, ctx, false)?,
        Env::VmLinuxRestore => launch_restore(workload, ctx, true)?,
        peer => crate::peers::launch(peer, workload, ctx)?,
    };
    s.env = env;
    s.run = run;
    Ok(s)
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

fn launch_container(workload: &Workload, ctx: &Context) -> Result<Sample, String> {
    let rootfs = ctx.rootfs.as_deref().ok_or("no container rootfs")?;
    let cfg = container_config(virtlab_container::ContainerConfig::new(rootfs, workload_argv(workload)), ctx);
    let out = virtlab_container::run(&cfg).map_err(|e| e.to_string())?;
    container_sample(workload, &out, Duration::ZERO)
}

/// `/virtlab-workload` and the workload's arguments.
fn workload_argv(workload: &Workload) -> Vec<String> {
    let mut argv = vec!["/virtlab-workload".to_string()];
    argv.extend(workload.args());
    argv
}

/// What every container row gets: captured output, the limits, the timeout.
fn container_config(mut cfg: virtlab_container::ContainerConfig, ctx: &Context) -> virtlab_container::ContainerConfig {
    cfg.stdio = virtlab_container::Stdio::Capture;
    cfg.limits.memory = Some(ctx.container_memory);
    cfg.limits.pids = Some(ctx.container_pids);
    cfg.timeout = Some(ctx.timeout);
    cfg
}

/// The sample of a container run whose launcher started `offset` after
/// the launch began (the steps before it are the caller's).
fn container_sample(workload: &Workload, out: &virtlab_container::Outcome, offset: Duration) -> Result<Sample, String> {
    let mut s = empty_sample(workload);
    s.exit_status = i32::from(out.exit_code());
    s.total_us = us(offset + out.at(virtlab_container::Step::Exit).unwrap_or(out.total));
    s.startup_us = out.at(virtlab_container::Step::Ready).map(|d| us(offset + d));
    s.phases =
        out.timeline.iter().map(|st| Phase { name: st.step.name().to_string(), at_us: us(offset + st.at) }).collect();
    s.memory_bytes = out.cgroup.as_ref().and_then(|c| c.stats.memory_peak);
    s.memory_method = s.memory_bytes.map(|_| MemoryMethod::CgroupPeak);
    if out.timed_out {
        return Err(format!("`{}` timed out in the container", workload.label()));
    }
    read_output(&mut s, &out.stdout_text(), workload)?;
    Ok(s)
}

/// Our launcher on the three-layer image, as `virtlab container run IMAGE
/// /virtlab-workload ...` runs it: a fresh writable layer over the
/// image's layers, the image's environment and working directory. Making
/// that layer is part of starting a container from an image, so the clock
/// starts before it (the `upper_dir` phase).
fn launch_container_image(workload: &Workload, ctx: &Context) -> Result<Sample, String> {
    use virtlab_container::image::run;
    let image = ctx.image.as_ref().ok_or("no image for container-image")?;
    let argv = run::command(&image.image, None, &workload_argv(workload)).map_err(|e| e.to_string())?;
    let workdir = run::workdir(&image.image);
    let t0 = Instant::now();
    let prepared = run::prepare(&image.store, &image.image, workdir.as_deref()).map_err(|e| e.to_string())?;
    let mut cfg = virtlab_container::ContainerConfig::new(&prepared.mount_point, argv);
    cfg.layers = Some(prepared.layers.clone());
    cfg.env = run::environment(&image.image);
    if let Some(w) = workdir {
        cfg.workdir = w.into();
    }
    let cfg = container_config(cfg, ctx);
    let offset = t0.elapsed();
    let out = virtlab_container::run(&cfg).map_err(|e| e.to_string());
    // The writable layer goes now, outside the timing (as the launcher's
    // own clean-up after the exit is).
    drop(prepared);
    let mut s = container_sample(workload, &out?, offset)?;
    s.phases.insert(0, Phase { name: "upper_dir".into(), at_us: us(offset) });
    Ok(s)
}

fn launch_vm(workload: &Workload, ctx: &Context, console: ConsoleKind) -> Result<Sample, String> {
    let args: Vec<String> = workload.args();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = VmConfig::builtin_workload(&refs);
    c.console = console;
    c.timeout = Some(ctx.timeout);
    let r = virtlab_vmm::run(&c, ConsoleSink::Capture, &mut Quiet).map_err(|e| format!("{e:#}"))?;
    // The memory figure is an estimate; the harness replaces it with a
    // cgroup peak of a `virtlab vm run` process where it can (`memory::vm_mini`).
    minikernel_sample(workload, ctx, &r, if console == ConsoleKind::Pv { "pv-console" } else { "uart" }, "in the VM")
}

/// A sample of a minikernel run or restore: its timings, exits, console
/// exits on `device`, system calls and an estimate of its memory.
fn minikernel_sample(
    workload: &Workload,
    ctx: &Context,
    r: &virtlab_vmm::RunReport,
    device: &str,
    what: &str,
) -> Result<Sample, String> {
    let mut s = vm_sample(workload, ctx, r, what)?;
    s.console_exits = Some(r.exits.by_device.get(device).copied().unwrap_or(0));
    s.syscalls_fast = Some(r.syscalls.via_syscall);
    s.syscalls_trapped = Some(r.syscalls.via_trap);
    Ok(s)
}

/// What every VM run gives a sample: its status, the ready and exit
/// times, the phases, the exits, the output read, and memory as guest
/// pages touched plus the VMM's own (an estimate). `what` says where it
/// ran, for the error of a guest that did not exit.
fn vm_sample(workload: &Workload, ctx: &Context, r: &virtlab_vmm::RunReport, what: &str) -> Result<Sample, String> {
    let mut s = empty_sample(workload);
    s.exit_status = r.exit_status;
    s.startup_us = r.at(VmStep::WorkloadReady);
    s.total_us = r.at(VmStep::WorkloadExit).unwrap_or(r.total_us);
    s.phases = r.phases.iter().map(|p| Phase { name: p.name.to_string(), at_us: p.at_us }).collect();
    s.vm_exits = Some(r.exits.total);
    s.memory_bytes = Some(r.memory.guest_touched_bytes + ctx.vmm_overhead_bytes.unwrap_or(0));
    s.memory_method = Some(MemoryMethod::Estimate);
    if !matches!(r.stop, GuestStop::Exited(_)) {
        return Err(format!("`{}` {what}: {}", workload.label(), r.summary));
    }
    read_output(&mut s, r.output.as_deref().unwrap_or(""), workload)?;
    Ok(s)
}

/// A VM from a snapshot: the minikernel's (paused at kernel ready, pv
/// console) or the Linux guest's (a warm one: the workload's process
/// already started and waiting for its arguments), each taken once per
/// comparison before its first restore; only the restore is timed (the
/// report's own clock, from reading the snapshot to the ready line).
fn launch_restore(workload: &Workload, ctx: &Context, linux: bool) -> Result<Sample, String> {
    use virtlab_vmm::linux::initramfs::WORKLOAD_PATH;
    use virtlab_vmm::snapshot::{self, RestoreConfig, SnapshotAt, SnapshotRequest};
    let dir = if linux {
        ctx.snapshots.linux(|dir| {
            let mut c = linux_config(ctx, vec![WORKLOAD_PATH.to_string(), "ready".to_string()])?;
            c.snapshot = Some(SnapshotRequest { at: SnapshotAt::Warm, dir: dir.to_path_buf() });
            virtlab_vmm::run_linux(&c, ConsoleSink::Discard, &mut Quiet).map(drop).map_err(|e| format!("{e:#}"))
        })?
    } else {
        ctx.snapshots.mini(|dir| {
            let mut c = VmConfig::builtin_workload(&["ready"]);
            c.console = ConsoleKind::Pv;
            c.snapshot = Some(SnapshotRequest { at: SnapshotAt::Ready, dir: dir.to_path_buf() });
            virtlab_vmm::run(&c, ConsoleSink::Discard, &mut Quiet).map(drop).map_err(|e| format!("{e:#}"))
        })?
    };
    let args = restore_args(workload, linux);
    let timeout = Some(if linux { ctx.linux_timeout } else { ctx.timeout });
    let config = RestoreConfig { args, timeout, ..RestoreConfig::default() };
    let r = snapshot::restore(&dir, &config, ConsoleSink::Capture, &mut Quiet).map_err(|e| format!("{e:#}"))?;
    // Pages of the snapshot's file the guest touched are shared between
    // restores; the memory estimate counts them whole: an upper bound.
    if linux {
        let mut s = vm_sample(workload, ctx, &r, "restored")?;
        s.host_fixups = r.restore.as_ref().map(|h| h.fixups.values().sum());
        Ok(s)
    } else {
        minikernel_sample(workload, ctx, &r, "pv-console", "restored")
    }
}

/// What a restore of a `*-restore` row's snapshot is given: the
/// workload's arguments, after its path in the initramfs for Linux.
pub fn restore_args(workload: &Workload, linux: bool) -> Vec<String> {
    let mut args = workload.args();
    if linux {
        args.insert(0, virtlab_vmm::linux::initramfs::WORKLOAD_PATH.to_string());
    }
    args
}

/// The Linux guest of `vm-linux`, running `program`.
fn linux_config(ctx: &Context, program: Vec<String>) -> Result<virtlab_vmm::LinuxConfig, String> {
    use virtlab_vmm::linux::InitrdSource;
    Ok(virtlab_vmm::LinuxConfig {
        kernel: ctx.linux_kernel.clone().ok_or("no Linux guest kernel")?,
        initrd: InitrdSource::Build { rootfs: None },
        workload: Vec::new(),
        program,
        env: Vec::new(),
        workdir: None,
        extra_cmdline: None,
        mem_size: 128 << 20,
        timeout: Some(ctx.linux_timeout),
        interactive: false,
        snapshot: None,
        seccomp: true,
    })
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
        env: Vec::new(),
        workdir: None,
        extra_cmdline: None,
        mem_size: 128 << 20,
        timeout: Some(ctx.linux_timeout),
        interactive: false,
        snapshot: None,
        seccomp: true,
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
