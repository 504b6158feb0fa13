//! Snapshots: a paused VM written to a directory, and new VMs built from
//! it without a boot.
//!
//! A VM is guest memory, vCPU registers and device state, nothing more.
//! [`save`] writes exactly that while the guest is paused at a boot
//! milestone; [`restore`] maps the memory file back `MAP_PRIVATE` (lazy and
//! copy-on-write: restored VMs share every page they do not write), sets
//! the registers and devices back, and lets the guest run on from the
//! instruction after the one it was paused at.
//!
//! The minikernel is paused when it reports "kernel ready": its tables and
//! MSRs are loaded and it is about to read the workload's entry and stack
//! from the boot-info page. A restore rebuilds that stack with the
//! arguments it is given (host-side, as a boot does), so one snapshot runs
//! any workload mode. A Linux guest is paused where its init is about to
//! ask for its command (program, arguments, environment, directory)
//! ([`SnapshotAt::Init`]), or later, with the workload process already
//! started and waiting for its arguments ([`SnapshotAt::Warm`]): a restore
//! of that one has no fork, exec or page faults left for the guest kernel.
//!
//! A guest can also be paused at a time ([`SnapshotAt::After`]): a timer
//! kicks the vCPU out of `KVM_RUN` wherever it is, mid-boot or mid-run.
//! Its restore rewrites nothing and takes no command: the guest resumes
//! exactly where it was ([`check_request`] refuses the rest). See
//! `DESIGN.md`, "Snapshots", for the files.
//!
//! ```no_run
//! use virtlab_vmm::snapshot::{self, RestoreConfig, SnapshotAt, SnapshotRequest};
//! use virtlab_vmm::{run, ConsoleSink, Quiet, VmConfig};
//! let mut config = VmConfig::builtin_workload(&["ready"]);
//! config.snapshot = Some(SnapshotRequest { at: SnapshotAt::Ready, dir: "/tmp/snap".into() });
//! run(&config, ConsoleSink::Discard, &mut Quiet).expect("boots and saves");
//! let restored = RestoreConfig { args: vec!["cpu".into(), "1000".into()], ..Default::default() };
//! let report = snapshot::restore("/tmp/snap".as_ref(), &restored, ConsoleSink::Stdout, &mut Quiet)
//!     .expect("restores");
//! println!("{}", report.summary);
//! ```

pub mod error;
pub mod format;
mod linux;
pub mod memory;
mod mini;
pub mod vcpu;

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use serde::Serialize;
use vm_memory::GuestMemoryMmap;

pub use error::SnapshotError;
pub use format::{GuestKind, Manifest};
pub use mini::restore;

use crate::devices::PortBus;
use format::{FileEntry, MiniState, State, VcpuState, FORMAT, MANIFEST, MEMORY, STATE, VERSION};

/// Where a running guest is paused to be saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotAt {
    /// The guest kernel is ready: the minikernel's "kernel ready" (before
    /// the workload starts), a Linux guest's init before its command.
    Ready,
    /// Linux: the init is running (the boot timer's "user space" mark).
    Init,
    /// Linux: the workload process is running, in its `warm` mode, waiting
    /// for its arguments (the boot timer's "workload warm" mark). A
    /// restore runs only the workload, any of its modes.
    Warm,
    /// This long after the first guest instruction.
    After(Duration),
}

impl SnapshotAt {
    /// `ready`, `init`, `warm`, or a duration (`500ms`, `2s`).
    pub fn parse(s: &str) -> Result<SnapshotAt, String> {
        match s {
            "ready" => Ok(SnapshotAt::Ready),
            "init" => Ok(SnapshotAt::Init),
            "warm" => Ok(SnapshotAt::Warm),
            d => parse_duration(d)
                .map(SnapshotAt::After)
                .ok_or_else(|| format!("{d:?} is not `ready`, `init`, `warm` or a duration such as 500ms or 2s")),
        }
    }

    /// Whether this is a time (mid-run) rather than a boot milestone.
    pub fn is_time(&self) -> bool {
        matches!(self, SnapshotAt::After(_))
    }

    /// The vCPU loop's pause point: `marker` (the guest's boot-timer mark
    /// for `ready` and `init`), the workload's [`MARKER_WARM`], or the time.
    pub(crate) fn pause_point(&self, marker: u8) -> crate::vstate::exit_loop::PausePoint {
        use crate::vstate::exit_loop::PausePoint;
        match self {
            SnapshotAt::After(d) => PausePoint::After(*d),
            SnapshotAt::Ready | SnapshotAt::Init => PausePoint::Marker(marker),
            SnapshotAt::Warm => PausePoint::Marker(MARKER_WARM),
        }
    }

    /// How it is written on the command line.
    pub fn name(&self) -> String {
        match self {
            SnapshotAt::Ready => "ready".into(),
            SnapshotAt::Init => "init".into(),
            SnapshotAt::Warm => "warm".into(),
            SnapshotAt::After(d) => format!("{}ms", d.as_millis()),
        }
    }
}

/// The boot-timer mark the workload's `warm` mode writes when it is
/// started and waiting for its arguments (`workload/program/main.rs`).
pub const MARKER_WARM: u8 = 3;

/// The longest command a warm workload reads (its static buffer).
pub const WARM_COMMAND_MAX: usize = 4096;

fn parse_duration(s: &str) -> Option<Duration> {
    let (n, unit) = s.find(|c: char| !c.is_ascii_digit()).map(|i| s.split_at(i)).unwrap_or((s, "ms"));
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        _ => None,
    }
}

/// Where and when a run saves itself.
#[derive(Debug, Clone)]
pub struct SnapshotRequest {
    /// The pause point.
    pub at: SnapshotAt,
    /// The directory to write (it must not exist; its parent must).
    pub dir: PathBuf,
}

/// What a restore runs.
#[derive(Debug, Clone)]
pub struct RestoreConfig {
    /// The workload's arguments (argv[1..]); empty: the snapshot's own.
    /// A Linux snapshot: the program and its arguments (a `warm` one: only
    /// the workload, [`crate::linux::initramfs::WORKLOAD_PATH`], and its
    /// mode). A snapshot taken
    /// at a time (mid-run) takes none: its workload has read its own.
    pub args: Vec<String>,
    /// Linux `ready`/`init` snapshots: the program's environment
    /// (`KEY=VALUE`; none: the init's default one).
    pub env: Vec<String>,
    /// Linux `ready`/`init` snapshots: the program's working directory (an
    /// absolute path; None: `/`).
    pub workdir: Option<String>,
    /// Guest memory the caller expects (None: whatever the snapshot has).
    pub mem_size: Option<u64>,
    /// Stop the guest after this long.
    pub timeout: Option<Duration>,
    /// Run the restored guest's threads under their seccomp filters
    /// ([`crate::sandbox`]); false is `--no-seccomp`.
    pub seccomp: bool,
}

impl Default for RestoreConfig {
    /// The snapshot's own arguments and memory, no timeout, sandboxed.
    fn default() -> Self {
        RestoreConfig { args: Vec::new(), env: Vec::new(), workdir: None, mem_size: None, timeout: None, seccomp: true }
    }
}

/// Refuses what `config` gives that a snapshot of `guest` taken at
/// `taken_at` cannot use: anything at all for a mid-run snapshot (the
/// guest is past the point where it reads a command), an environment or a
/// working directory for the minikernel (which has neither), an
/// environment or directory without the program they are for.
pub fn check_request(guest: GuestKind, taken_at: &str, config: &RestoreConfig) -> Result<(), SnapshotError> {
    let given = !config.args.is_empty() || !config.env.is_empty() || config.workdir.is_some();
    if given && SnapshotAt::parse(taken_at).is_ok_and(|at| at.is_time()) {
        return Err(SnapshotError::NotForSnapshot {
            what: "a command, environment or working directory (`-- ARGS`, -e, -w)",
            why: format!(
                "it was taken at a time (--snapshot-at {taken_at}), mid-boot or mid-run, not where the guest reads a \
                 command: it resumes where it was; restore it with no arguments, or take a snapshot at `ready` to run \
                 other commands"
            ),
        });
    }
    if taken_at == "warm" {
        check_warm(config)?;
    }
    if guest == GuestKind::Minikernel && (!config.env.is_empty() || config.workdir.is_some()) {
        return Err(SnapshotError::NotForSnapshot {
            what: "an environment or working directory (-e, -w)",
            why: "it is a minikernel snapshot: the minikernel runs one workload, with no environment and no working \
                  directory; give only the workload's arguments after `--`"
                .into(),
        });
    }
    if guest == GuestKind::Linux && config.args.is_empty() && (!config.env.is_empty() || config.workdir.is_some()) {
        return Err(SnapshotError::NotForSnapshot {
            what: "an environment or working directory (-e, -w) without a program",
            why: "the snapshot's own command is in its initramfs, where a restore cannot change it; name the program \
                  after `--` (e.g. -- sh -c 'echo $X')"
                .into(),
        });
    }
    Ok(())
}

/// A warm snapshot's workload runs its modes in the process that is
/// already there: it takes the workload's own arguments and nothing else.
fn check_warm(config: &RestoreConfig) -> Result<(), SnapshotError> {
    let init = "a warm snapshot holds the workload's process, started and waiting for its arguments; to run any \
                other command (with -e/-w), take the snapshot at `init` (--snapshot-at init)";
    if let Some(program) = config.args.first() {
        if program != crate::linux::initramfs::WORKLOAD_PATH {
            return Err(SnapshotError::NotForSnapshot {
                what: "a program other than the workload",
                why: format!("{program:?} is not {}: {init}", crate::linux::initramfs::WORKLOAD_PATH),
            });
        }
    }
    if !config.env.is_empty() || config.workdir.is_some() {
        return Err(SnapshotError::NotForSnapshot {
            what: "an environment or working directory (-e, -w)",
            why: format!("the workload's process has its own already: {init}"),
        });
    }
    let bytes: usize = config.args.iter().map(|a| a.len() + 1).sum();
    if bytes + 64 > WARM_COMMAND_MAX {
        return Err(SnapshotError::NotForSnapshot {
            what: "arguments this long",
            why: format!("the warm workload reads at most {WARM_COMMAND_MAX} bytes of command: {init}"),
        });
    }
    Ok(())
}

/// What a written snapshot holds, in sizes.
#[derive(Debug, Clone, Serialize)]
pub struct Saved {
    /// The directory.
    pub dir: PathBuf,
    /// Guest RAM in bytes (the memory file's length).
    pub mem_size: u64,
    /// Bytes of guest memory that hold data (what the file takes on disk).
    pub memory_data_bytes: u64,
    /// The host's refusals while saving.
    pub quirks: Vec<String>,
    /// How long writing took.
    pub took_us: f64,
}

/// The live objects a snapshot is taken from.
pub(crate) struct Live<'a> {
    pub(crate) kvm: &'a Kvm,
    pub(crate) vm: &'a VmFd,
    pub(crate) vcpu: &'a VcpuFd,
    pub(crate) mem: &'a GuestMemoryMmap,
    pub(crate) bus: &'a PortBus,
    pub(crate) mem_size: u64,
}

/// What a guest saves beyond the vCPU, clock, devices and memory.
#[derive(Debug, Default)]
pub(crate) struct Extra {
    /// The minikernel's part.
    pub(crate) mini: Option<MiniState>,
    /// The CPUID the vCPU was given (None: the minikernel's, from the host).
    pub(crate) cpuid: Option<kvm_bindings::CpuId>,
    /// Whether the VM has an in-kernel irqchip and PIT to save.
    pub(crate) irqchip: bool,
}

/// Writes the paused VM `live` to `dir`, through a temporary directory
/// renamed at the end.
pub(crate) fn save(
    live: &Live<'_>,
    dir: &Path,
    at: SnapshotAt,
    guest: GuestKind,
    extra: Extra,
) -> Result<Saved, SnapshotError> {
    let started = std::time::Instant::now();
    let tmp = format::TempDir::beside(dir)?;
    let mut quirks = Vec::new();
    let cpuid = match extra.cpuid {
        Some(c) => c,
        None => crate::vstate::vcpu::host_cpuid(live.kvm)?,
    };
    let mut vcpu: VcpuState = vcpu::save_vcpu(live.kvm, live.vcpu, &cpuid, &mut quirks)?;
    let cpu = vcpu::cpu_name(&vcpu.cpuid);
    let clock = vcpu::save_clock(live.vm, &mut quirks);
    let (mut irqchip, mut pit) = (None, None);
    if extra.irqchip {
        vcpu.lapic = vcpu::save_lapic(live.vcpu, &mut quirks);
        irqchip = vcpu::save_irqchip(live.vm, &mut quirks);
        pit = vcpu::save_pit(live.vm, &mut quirks);
        let state = State {
            vcpus: vec![vcpu.clone()],
            clock: clock.clone(),
            irqchip: irqchip.clone(),
            pit: pit.clone(),
            devices: Default::default(),
            mini: None,
            quirks: Vec::new(),
        };
        quirks.extend(vcpu::probe_restore(live.kvm, &state, live.mem, live.mem_size));
    }
    let state = State {
        vcpus: vec![vcpu],
        clock,
        irqchip,
        pit,
        devices: live.bus.save(),
        mini: extra.mini,
        quirks: quirks.clone(),
    };
    let state_bytes = serde_json::to_vec_pretty(&state).map_err(|e| tmp.write_error(std::io::Error::other(e)))?;
    fs::write(tmp.path.join(STATE), &state_bytes).map_err(|e| tmp.write_error(e))?;

    let mem_file = File::create(tmp.path.join(MEMORY)).map_err(|e| tmp.write_error(e))?;
    let (mem_crc, data) = memory::write_memory(live.mem, live.mem_size, &mem_file).map_err(|e| tmp.write_error(e))?;

    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        guest,
        taken_at: at.name(),
        mem_size: live.mem_size,
        vcpus: 1,
        cpu,
        memory_data_bytes: data,
        files: vec![
            FileEntry { name: STATE.into(), bytes: state_bytes.len() as u64, crc32: format::crc32(&state_bytes) },
            FileEntry { name: MEMORY.into(), bytes: live.mem_size, crc32: mem_crc },
        ],
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| tmp.write_error(std::io::Error::other(e)))?;
    fs::write(tmp.path.join(MANIFEST), text).map_err(|e| tmp.write_error(e))?;
    tmp.commit()?;
    Ok(Saved {
        dir: dir.to_path_buf(),
        mem_size: live.mem_size,
        memory_data_bytes: data,
        quirks,
        took_us: started.elapsed().as_secs_f64() * 1e6,
    })
}

/// Reads and checks a whole snapshot: description, state and memory.
/// Returns the open memory file with them.
pub(crate) fn open(dir: &Path) -> Result<(Manifest, State, File), SnapshotError> {
    let manifest = format::read_manifest(dir)?;
    let state = format::read_state(dir, &manifest)?;
    let path = dir.join(MEMORY);
    let file = File::open(&path).map_err(|e| SnapshotError::Read(path.clone(), e))?;
    let entry = manifest.file(MEMORY).ok_or_else(|| format::missing(&path))?;
    let len = file.metadata().map_err(|e| SnapshotError::Read(path.clone(), e))?.len();
    if len != entry.bytes || len != manifest.mem_size {
        return Err(SnapshotError::Size { name: MEMORY.into(), found: len, expected: entry.bytes });
    }
    let (crc, _) = memory::memory_crc(&file, len).map_err(|e| SnapshotError::Read(path.clone(), e))?;
    format::check(entry, len, crc)?;
    Ok((manifest, state, file))
}

/// What `virtlab vm snapshot inspect` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The description.
    pub manifest: Manifest,
    /// Each file: name, length, bytes it takes on disk.
    pub files: Vec<(String, u64, u64)>,
    /// The vCPU state's parts and their sizes in bytes.
    pub vcpu_parts: Vec<(String, usize)>,
    /// MSRs saved.
    pub msrs: usize,
    /// Device names, with whether they have state.
    pub devices: Vec<(String, bool)>,
    /// Whether the KVM clock was saved.
    pub clock: bool,
    /// Sizes of the saved interrupt controllers (PIC master, PIC slave,
    /// IOAPIC) and of the PIT state, when the guest had them.
    pub irqchip: Vec<usize>,
    /// Size of the PIT state.
    pub pit: Option<usize>,
    /// The minikernel's saved argv.
    pub argv: Option<Vec<String>>,
    /// What the host refused while saving.
    pub quirks: Vec<String>,
}

/// Reads and checks a snapshot (every checksum) and says what is in it.
pub fn inspect(dir: &Path) -> Result<Inspection, SnapshotError> {
    let (manifest, state, _) = open(dir)?;
    let mut files = Vec::new();
    for name in [MANIFEST, STATE, MEMORY] {
        let path = dir.join(name);
        let m = fs::metadata(&path).map_err(|e| SnapshotError::Read(path.clone(), e))?;
        files.push((name.to_string(), m.len(), m.blocks() * 512));
    }
    let v = state.vcpus.first().cloned().unwrap_or_default();
    let mut vcpu_parts = vec![
        ("regs".to_string(), v.regs.0.len()),
        ("sregs".to_string(), v.sregs.0.len()),
        ("fpu".to_string(), v.fpu.0.len()),
    ];
    for (name, part) in [
        ("xsave", &v.xsave),
        ("xcrs", &v.xcrs),
        ("events", &v.events),
        ("debug regs", &v.debug_regs),
        ("mp state", &v.mp_state),
        ("lapic", &v.lapic),
    ] {
        if let Some(p) = part {
            vcpu_parts.push((name.to_string(), p.0.len()));
        }
    }
    vcpu_parts.push(("cpuid".to_string(), v.cpuid.len() * 28));
    Ok(Inspection {
        files,
        msrs: v.msrs.len(),
        vcpu_parts,
        devices: state.devices.iter().map(|(k, v)| (k.clone(), !v.is_null())).collect(),
        clock: state.clock.is_some(),
        irqchip: state.irqchip.iter().flatten().map(|c| c.0.len()).collect(),
        pit: state.pit.as_ref().map(|p| p.0.len()),
        argv: state.mini.as_ref().map(|m| m.argv.clone()),
        quirks: state.quirks,
        manifest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_points_by_name() {
        for at in [SnapshotAt::Ready, SnapshotAt::Init, SnapshotAt::Warm, SnapshotAt::After(Duration::from_millis(20))]
        {
            assert_eq!(SnapshotAt::parse(&at.name()), Ok(at));
        }
        let e = SnapshotAt::parse("hot").unwrap_err();
        assert!(e.contains("`warm`"), "{e}");
        assert!(!SnapshotAt::Warm.is_time());
    }

    #[test]
    fn a_warm_snapshot_takes_only_the_workload() {
        let workload = crate::linux::initramfs::WORKLOAD_PATH.to_string();
        let ok =
            |args: &[&str]| RestoreConfig { args: args.iter().map(|a| a.to_string()).collect(), ..Default::default() };
        check_request(GuestKind::Linux, "warm", &ok(&[])).expect("no command: the workload's default mode");
        check_request(GuestKind::Linux, "warm", &ok(&[&workload, "cpu", "1000"])).expect("a workload mode");
        let e = check_request(GuestKind::Linux, "warm", &ok(&["/bin/sh", "-c", "true"])).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("\"/bin/sh\"") && text.contains("--snapshot-at init"), "{text}");
        let with_env = RestoreConfig { env: vec!["X=1".into()], ..ok(&[&workload, "ready"]) };
        let text = check_request(GuestKind::Linux, "warm", &with_env).unwrap_err().to_string();
        assert!(text.contains("-e, -w") && text.contains("--snapshot-at init"), "{text}");
        let long = "9".repeat(WARM_COMMAND_MAX);
        let text = check_request(GuestKind::Linux, "warm", &ok(&[&workload, "cpu", &long])).unwrap_err().to_string();
        assert!(text.contains("4096 bytes"), "{text}");
        // An `init` snapshot takes any command.
        check_request(GuestKind::Linux, "init", &ok(&["/bin/sh", "-c", "true"])).expect("any command");
    }
}
