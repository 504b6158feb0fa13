//! Peers: the real tools, run beside ours on the same workload.
//!
//! - `qemu-microvm`: `qemu-system-x86_64 -M microvm -accel kvm` booting the
//!   same minikernel file through its PVH note, the workload as its initrd.
//! - `qemu-tcg`: the same, under QEMU's pure software emulation (`-accel
//!   tcg`): the notes' host-OS virtualization that emulates the hardware.
//! - `bwrap`: bubblewrap with every namespace, on the same rootfs.
//! - `runc`: an OCI bundle of the same rootfs with the same limits.
//! - `crun`: the same bundle, where crun accepts this host's cgroup layout.
//!
//! Each launch yields the same [`Sample`] as our own environments: launch to
//! ready marker and to exit on the host clock, and the workload's own line.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use virtlab_workload::READY_MARKER;

use crate::env::{Context, Env, Phase, Sample, Workload};

/// Why a peer cannot run here, or None when it can.
pub fn unavailable(env: Env, host_kvm: bool, cgroup_mode: Option<&str>) -> Option<String> {
    let has = |cmd: &str, arg: &str| {
        Command::new(cmd).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    };
    match env {
        Env::QemuMicrovm | Env::QemuTcg if !has("qemu-system-x86_64", "--version") => {
            Some("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)".into())
        }
        Env::QemuMicrovm if !host_kvm => Some("QEMU with KVM needs /dev/kvm".into()),
        Env::Bwrap if !has("bwrap", "--version") => Some("bwrap is not installed (apt-get install bubblewrap)".into()),
        Env::Runc if !has("runc", "--version") => Some("runc is not installed (apt-get install runc)".into()),
        Env::Crun if !has("crun", "--version") => Some("crun is not installed (apt-get install crun)".into()),
        Env::Crun if cgroup_mode == Some("hybrid") => Some(
            "crun refuses to start on hosts with cgroups in hybrid mode (\"cgroups in hybrid mode not supported\"); \
             virtlab's launcher and runc handle it"
                .into(),
        ),
        Env::Runc | Env::Crun | Env::Bwrap if !crate::env::is_root() => Some("needs root".into()),
        _ => None,
    }
}

/// Runs `workload` once under a peer.
pub fn launch(env: Env, workload: &Workload, ctx: &Context) -> Result<Sample, String> {
    let mut cmd = match env {
        Env::QemuMicrovm | Env::QemuTcg => qemu(env, workload, ctx)?,
        Env::Bwrap => bwrap(workload, ctx)?,
        Env::Runc | Env::Crun => oci(env, workload, ctx)?,
        other => return Err(format!("{} is not a peer", other.name())),
    };
    let t0 = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", env.name()))?;
    let mut s = crate::env::empty_sample(workload);
    s.env = env;
    let mut output = String::new();
    if let Some(out) = child.stdout.take() {
        let mut reader = BufReader::new(out);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if s.startup_us.is_none() && line.starts_with(READY_MARKER) {
                s.startup_us = Some(t0.elapsed().as_secs_f64() * 1e6);
            }
            output.push_str(&line);
            line.clear();
        }
    }
    let deadline = t0 + ctx.timeout;
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{} did not finish within {:?}", env.name(), ctx.timeout));
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    s.total_us = t0.elapsed().as_secs_f64() * 1e6;
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    let code = status.code().unwrap_or(-1);
    // isa-debug-exit makes QEMU exit with 2 * status + 1.
    s.exit_status = if matches!(env, Env::QemuMicrovm | Env::QemuTcg) {
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
    crate::env::read_output(&mut s, &output, workload).map_err(|e| {
        format!("{e}{}", if stderr.is_empty() { String::new() } else { format!(" ({})", last_line(&stderr)) })
    })?;
    Ok(s)
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

fn bwrap(workload: &Workload, ctx: &Context) -> Result<Command, String> {
    let rootfs = ctx.rootfs.as_deref().ok_or("no rootfs")?;
    let mut c = Command::new("bwrap");
    c.args(["--unshare-all", "--die-with-parent", "--new-session", "--hostname", "virtlab"]);
    c.arg("--ro-bind").arg(rootfs).arg("/");
    c.args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--", "/virtlab-workload"]);
    c.args(workload.args());
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

/// Removes the bundle directories this process made.
pub fn cleanup() {
    for env in [Env::Runc, Env::Crun] {
        let _ = std::fs::remove_dir_all(bundle_dir(env));
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
    fn oci_config_names_the_rootfs_limits_and_command() {
        let c = oci_config(Path::new("/r"), &["/virtlab-workload".into(), "ready".into()], 1 << 28, 64);
        let v: serde_json::Value = serde_json::from_str(&c).unwrap();
        assert_eq!(v["root"]["path"], "/r");
        assert_eq!(v["process"]["args"][1], "ready");
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 1 << 28);
        assert_eq!(v["linux"]["namespaces"].as_array().unwrap().len(), 6);
    }
}
