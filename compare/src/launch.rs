//! What every launch shares, whoever launches: where a workload runs
//! ([`Env`]), what it runs ([`Workload`]), what the launcher is given
//! ([`Context`]) and what it reports ([`Sample`], its [`Phase`]s and how its
//! memory was measured, [`MemoryMethod`]), with the reading of the
//! workload's own output.
//!
//! The launchers themselves sit above: [`crate::env`] for our own
//! environments, [`crate::peers`] for the real tools, [`crate::memory`] for
//! the memory runs. This module depends on none of them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use virtlab_workload::{WorkloadResult, READY_MARKER};

/// Where a workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Env {
    /// fork/exec on the host: the floor.
    Native,
    /// Our container launcher: every namespace, cgroup limits.
    Container,
    /// Our container launcher on a three-layer image: a fresh writable
    /// layer over the image's layers (overlayfs) for every start.
    ContainerImage,
    /// Our VMM + minikernel, console through the emulated 16550 UART.
    VmMiniUart,
    /// Our VMM + minikernel, console through the paravirtual port.
    VmMiniPv,
    /// Our VMM + a Linux guest kernel.
    VmLinux,
    /// Our VMM restoring a minikernel snapshot (taken once per comparison,
    /// outside the timing) with the workload's arguments.
    VmMiniRestore,
    /// Our VMM restoring a warm Linux snapshot (taken once per comparison,
    /// outside the timing): the workload's process already started and
    /// waiting, its arguments handed over on the command port.
    VmLinuxRestore,
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
    /// Peer: `podman run --rm` of the same image as `container-image`
    /// (runc, the same limits), from a private podman storage. Named
    /// `podman+runc`; `podman` is its old name, still accepted.
    #[serde(rename = "podman+runc", alias = "podman")]
    Podman,
    /// The same `podman run --rm` with virtlab as podman's OCI runtime
    /// (`--runtime` pointed at a `virtlab-runc` link to this binary).
    #[serde(rename = "podman+virtlab")]
    PodmanVirtlab,
}

impl Env {
    /// Every environment of ours (`all`), in table order.
    pub const ALL: [Env; 8] = [
        Env::Native,
        Env::Container,
        Env::ContainerImage,
        Env::VmMiniUart,
        Env::VmMiniPv,
        Env::VmLinux,
        Env::VmMiniRestore,
        Env::VmLinuxRestore,
    ];

    /// What runs when no `--env` is given: all of ours but
    /// `container-image`, which first builds an image (`--env all` or its
    /// name adds it).
    pub const DEFAULT: [Env; 5] = [Env::Native, Env::Container, Env::VmMiniUart, Env::VmMiniPv, Env::VmLinux];

    /// The peers (`--peers`).
    pub const PEERS: [Env; 9] = [
        Env::QemuMicrovm,
        Env::QemuTcg,
        Env::QemuMicrovmLinux,
        Env::QemuTcgLinux,
        Env::Bwrap,
        Env::Runc,
        Env::Crun,
        Env::Podman,
        Env::PodmanVirtlab,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Env::Native => "native",
            Env::Container => "container",
            Env::ContainerImage => "container-image",
            Env::VmMiniUart => "vm-mini-uart",
            Env::VmMiniPv => "vm-mini-pv",
            Env::VmLinux => "vm-linux",
            Env::VmMiniRestore => "vm-mini-restore",
            Env::VmLinuxRestore => "vm-linux-restore",
            Env::QemuMicrovm => "qemu-microvm",
            Env::QemuTcg => "qemu-tcg",
            Env::QemuMicrovmLinux => "qemu-microvm-linux",
            Env::QemuTcgLinux => "qemu-tcg-linux",
            Env::Bwrap => "bwrap",
            Env::Runc => "runc",
            Env::Crun => "crun",
            Env::Podman => "podman+runc",
            Env::PodmanVirtlab => "podman+virtlab",
        }
    }

    /// One line on what it is.
    pub fn describe(self) -> &'static str {
        match self {
            Env::Native => "fork/exec of the workload on the host",
            Env::Container => "virtlab container: all namespaces, cgroup limits, pivot_root",
            Env::ContainerImage => {
                "virtlab container on a 3-layer image (overlayfs); each start's time includes making its fresh \
                 writable layer, as `container run IMAGE` does"
            }
            Env::VmMiniUart => "virtlab VMM + minikernel, console on an emulated 16550 UART",
            Env::VmMiniPv => "virtlab VMM + minikernel, console on a paravirtual port",
            Env::VmLinux => "virtlab VMM + a Linux guest kernel",
            Env::VmMiniRestore => {
                "virtlab VMM restoring a minikernel snapshot (paused at kernel ready, taken once outside the timing)"
            }
            Env::VmLinuxRestore => {
                "virtlab VMM restoring a warm Linux snapshot (the workload's process started and waiting, taken \
                 once outside the timing); its arguments go to it on the command port: no fork or exec in the guest"
            }
            Env::QemuMicrovm => "QEMU microvm + KVM booting the same minikernel (PVH)",
            Env::QemuTcg => "QEMU microvm under software emulation (TCG), same minikernel",
            Env::QemuMicrovmLinux => "QEMU microvm + KVM booting the same Linux guest as vm-linux",
            Env::QemuTcgLinux => "QEMU microvm under software emulation (TCG), same Linux guest as vm-linux",
            Env::Bwrap => "bubblewrap, every namespace, same rootfs",
            Env::Runc => "runc, OCI bundle of the same rootfs and limits",
            Env::Crun => "crun, the same OCI bundle",
            Env::Podman => "podman run --rm of the same 3-layer image as container-image (runc, the same limits)",
            Env::PodmanVirtlab => "the same podman run --rm with virtlab as podman's OCI runtime (virtlab-runc)",
        }
    }

    /// Whether it is one of the peers rather than virtlab's own.
    pub fn is_peer(self) -> bool {
        Env::PEERS.contains(&self)
    }

    /// Whether it is a `podman run` (either runtime): it needs the image
    /// loaded into podman's storage.
    pub fn is_podman(self) -> bool {
        matches!(self, Env::Podman | Env::PodmanVirtlab)
    }

    /// Whether it is a VM.
    pub fn is_vm(self) -> bool {
        matches!(self, Env::VmMiniUart | Env::VmMiniPv | Env::VmLinux | Env::VmMiniRestore | Env::VmLinuxRestore)
    }

    /// Whether it is one of the QEMU peers.
    pub fn is_qemu(self) -> bool {
        matches!(self, Env::QemuMicrovm | Env::QemuTcg | Env::QemuMicrovmLinux | Env::QemuTcgLinux)
    }

    /// Whether it boots the Linux guest kernel (ours or QEMU), so needs one
    /// to be available and gets the Linux timeout.
    pub fn boots_linux(self) -> bool {
        matches!(self, Env::VmLinux | Env::VmLinuxRestore | Env::QemuMicrovmLinux | Env::QemuTcgLinux)
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
                "container-image" => &[Env::ContainerImage],
                "vm-mini" => &[Env::VmMiniUart, Env::VmMiniPv],
                "vm-mini-uart" => &[Env::VmMiniUart],
                "vm-mini-pv" => &[Env::VmMiniPv],
                "vm-linux" => &[Env::VmLinux],
                "vm-mini-restore" => &[Env::VmMiniRestore],
                "vm-linux-restore" => &[Env::VmLinuxRestore],
                "peers" => &Env::PEERS,
                "qemu-microvm" => &[Env::QemuMicrovm],
                "qemu-tcg" => &[Env::QemuTcg],
                "qemu-microvm-linux" => &[Env::QemuMicrovmLinux],
                "qemu-tcg-linux" => &[Env::QemuTcgLinux],
                "bwrap" => &[Env::Bwrap],
                "runc" => &[Env::Runc],
                "crun" => &[Env::Crun],
                "podman" | "podman+runc" => &[Env::Podman],
                "podman+virtlab" => &[Env::PodmanVirtlab],
                other => {
                    return Err(format!(
                        "unknown environment {other:?}: use native, container, container-image, vm-mini (both \
                         consoles), vm-mini-uart, vm-mini-pv, vm-linux, vm-mini-restore, vm-linux-restore, all, or the peers qemu-microvm, qemu-tcg, \
                         qemu-microvm-linux, qemu-tcg-linux, bwrap, runc, crun, podman+runc (or podman), podman+virtlab (peers: all nine)"
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

    /// The workload's arguments (after `argv[0]`).
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Phase {
    /// Launcher step name.
    pub name: String,
    /// When it ended.
    pub at_us: f64,
}

/// What one launch measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// The image of `container-image` and `podman`, when one of them runs.
    pub image: Option<RunImage>,
    /// The snapshots `vm-mini-restore` and `vm-linux-restore` restore.
    pub snapshots: std::sync::Arc<Snapshots>,
}

/// The snapshots the `*-restore` rows restore: each taken on first use,
/// once per comparison (the scale threads wait for it), outside the
/// timing, in a temporary directory made then and removed with the
/// context. A comparison without those rows makes nothing.
#[derive(Debug, Default)]
pub struct Snapshots {
    dir: std::sync::OnceLock<Result<tempfile::TempDir, String>>,
    mini: std::sync::OnceLock<Result<PathBuf, String>>,
    linux: std::sync::OnceLock<Result<PathBuf, String>>,
}

impl Snapshots {
    /// The minikernel snapshot, taken by `take(dir)` the first time.
    pub fn mini(&self, take: impl FnOnce(&std::path::Path) -> Result<(), String>) -> Result<PathBuf, String> {
        self.once(&self.mini, "mini", take)
    }

    /// The Linux snapshot, taken by `take(dir)` the first time.
    pub fn linux(&self, take: impl FnOnce(&std::path::Path) -> Result<(), String>) -> Result<PathBuf, String> {
        self.once(&self.linux, "linux", take)
    }

    /// A snapshot already taken (by the timed runs), without taking one.
    pub fn taken(&self, linux: bool) -> Option<PathBuf> {
        let cell = if linux { &self.linux } else { &self.mini };
        cell.get().and_then(|r| r.as_ref().ok()).cloned()
    }

    fn once(
        &self,
        cell: &std::sync::OnceLock<Result<PathBuf, String>>,
        name: &str,
        take: impl FnOnce(&std::path::Path) -> Result<(), String>,
    ) -> Result<PathBuf, String> {
        cell.get_or_init(|| {
            let dir = self.dir.get_or_init(|| {
                tempfile::Builder::new()
                    .prefix("virtlab-compare-snapshots-")
                    .tempdir()
                    .map_err(|e| format!("cannot make a directory for snapshots: {e}"))
            });
            let path = dir.as_ref().map_err(Clone::clone)?.path().join(name);
            take(&path).map(|()| path)
        })
        .clone()
    }
}

/// The three-layer image `container-image` and `podman` run, made once per
/// comparison (see [`crate::image`]) in a private store under a temporary
/// directory.
#[derive(Debug, Clone)]
pub struct RunImage {
    /// The private image store.
    pub store: virtlab_container::image::Store,
    /// The image, resolved once: each launch only prepares its writable
    /// layer.
    pub image: virtlab_container::image::Image,
    /// Its name, in our store and in podman's.
    pub name: String,
    /// podman's private storage with the image loaded, when `podman` runs.
    pub podman: Option<PodmanStorage>,
}

/// Where a private podman keeps everything: never the host's
/// `/var/lib/containers`, `/run/containers` or `/run/libpod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodmanStorage {
    /// The directory holding all three (removed with it).
    pub dir: PathBuf,
}

impl PodmanStorage {
    /// Images, containers, libpod's database (`--root`).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// Run-time state (`--runroot`).
    pub fn runroot(&self) -> PathBuf {
        self.dir.join("runroot")
    }

    /// libpod's temporary files: exit codes, locks (`--tmpdir`).
    pub fn tmpdir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// `podman+virtlab`'s `--runtime`: a `virtlab-runc` link to virtlab.
    pub fn virtlab_runtime(&self) -> PathBuf {
        self.dir.join("virtlab-runc")
    }
}

/// How a row's "memory per instance" was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryMethod {
    /// The peak of a fresh memory cgroup around the one process (and its
    /// children): native, container, QEMU, our VMM as a `virtlab vm run`.
    CgroupPeak,
    /// Guest pages touched plus the VMM process's own memory (peak RSS
    /// minus guest pages, measured once): our in-process VMs when no
    /// cgroup run was possible, and always `vm-linux` (one more Linux boot
    /// would cost minutes on a nested host).
    Estimate,
}

impl MemoryMethod {
    /// The name in JSON and CSV.
    pub fn name(self) -> &'static str {
        match self {
            MemoryMethod::CgroupPeak => "cgroup-peak",
            MemoryMethod::Estimate => "estimate",
        }
    }
}

/// A sample of `workload` with nothing measured yet, for a launcher to
/// fill in.
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

/// Whether the bytes appended to `output` from `old` on completed a line
/// starting with the ready marker.
pub(crate) fn ready_line_completed(output: &[u8], old: usize) -> bool {
    if !output[old..].contains(&b'\n') {
        return false;
    }
    let mut lines = output.split(|&b| b == b'\n').rev().skip(1);
    lines.any(|l| l.starts_with(READY_MARKER.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_lists() {
        assert_eq!(Env::parse_list("native,vm-mini").unwrap(), vec![Env::Native, Env::VmMiniUart, Env::VmMiniPv]);
        assert_eq!(Env::parse_list("all").unwrap().len(), 8);
        let restore = Env::parse_list("vm-mini-restore,vm-linux-restore").unwrap();
        assert_eq!(restore, vec![Env::VmMiniRestore, Env::VmLinuxRestore]);
        assert!(restore.iter().all(|e| e.is_vm() && !e.is_peer() && !Env::DEFAULT.contains(e)));
        assert!(Env::VmLinuxRestore.boots_linux() && !Env::VmMiniRestore.boots_linux());
        assert_eq!(
            Env::parse_list("container-image,container").unwrap(),
            vec![Env::Container, Env::ContainerImage],
            "table order: right after container"
        );
        assert!(!Env::DEFAULT.contains(&Env::ContainerImage));
        assert!(Env::DEFAULT.iter().all(|e| Env::ALL.contains(e)));
        assert_eq!(Env::parse_list("container,native,native").unwrap(), vec![Env::Native, Env::Container]);
        let e = Env::parse_list("native,docker").unwrap_err();
        assert!(e.contains("docker") && e.contains("vm-mini") && e.contains("container-image"), "{e}");
        assert!(e.contains("podman"), "{e}");
        assert!(Env::parse_list(" , ").is_err());
    }

    #[test]
    fn linux_peers_by_name_and_in_peers() {
        assert_eq!(
            Env::parse_list("qemu-tcg-linux,vm-linux,qemu-microvm-linux").unwrap(),
            vec![Env::VmLinux, Env::QemuMicrovmLinux, Env::QemuTcgLinux]
        );
        let peers = Env::parse_list("peers").unwrap();
        assert_eq!(peers.len(), 9);
        assert!(peers.contains(&Env::Podman) && Env::Podman.is_peer() && !Env::ContainerImage.is_peer());
        assert!(peers.contains(&Env::PodmanVirtlab) && Env::PodmanVirtlab.is_podman() && !Env::Runc.is_podman());
        // The podman row's old name still selects it, and old reports still read.
        assert_eq!(Env::parse_list("podman,podman+virtlab").unwrap(), vec![Env::Podman, Env::PodmanVirtlab]);
        assert_eq!(Env::parse_list("podman+runc").unwrap(), vec![Env::Podman]);
        assert_eq!(serde_json::from_value::<Env>("podman".into()).unwrap(), Env::Podman);
        assert!(Env::ContainerImage.describe().contains("writable layer"));
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

    #[test]
    fn method_names() {
        assert_eq!(serde_json::to_value(MemoryMethod::CgroupPeak).unwrap(), "cgroup-peak");
        assert_eq!(serde_json::to_value(MemoryMethod::Estimate).unwrap(), MemoryMethod::Estimate.name());
    }
}
