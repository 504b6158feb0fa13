//! Which environments a comparison runs and which it leaves out (with the
//! reason and how to get it), and what their launches need: the workload
//! file, a rootfs, the image of `container-image` and `podman`, a Linux
//! guest kernel, the VMM's own memory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use virtlab_compare::env;
use virtlab_compare::host::HostInfo;
use virtlab_compare::image::{self, ImageDir};
use virtlab_compare::launch::{Context, Env, RunImage};
use virtlab_compare::peers;
use virtlab_compare::report::Skipped;

use super::CompareArgs;

/// The environments asked for, split into those that run here and those
/// left out.
pub(super) struct Selection {
    /// What runs, in table order.
    pub(super) envs: Vec<Env>,
    /// What does not, and why.
    pub(super) skipped: Vec<Skipped>,
    /// The Linux guest kernel, when a row that boots one runs.
    pub(super) linux_kernel: Option<PathBuf>,
}

/// The Linux guest kernel, looked up once for vm-linux and its QEMU peers.
#[derive(Default)]
struct KernelLookup(Option<Result<PathBuf, String>>);

impl KernelLookup {
    /// The kernel for `who`, said on standard error the first time.
    fn find(&mut self, who: Env) -> Result<PathBuf, String> {
        self.0
            .get_or_insert_with(|| match virtlab_vmm::linux::provision::locate(None) {
                Ok(k) => {
                    eprintln!("virtlab compare: the Linux guest rows boot {} ({})", k.path.display(), k.why);
                    Ok(k.path)
                }
                Err(e) => Err(e.to_string()),
            })
            .clone()
            .inspect(|_| {
                if who == Env::VmLinux {
                    eprintln!(
                        "virtlab compare: vm-linux boots once per workload: on a nested host each boot takes minutes"
                    );
                }
            })
    }
}

/// The environments `args` ask for (`--env`; by default all of ours but
/// `container-image`, which `--peers` adds as podman's counterpart; and
/// `--peers`), each kept or left out on what `host` can run; what is left
/// out is said on standard error.
pub(super) fn select(args: &CompareArgs, host: &HostInfo) -> Selection {
    let default: &[Env] = if args.peers { &Env::ALL } else { &Env::DEFAULT };
    let mut asked = args.env.clone().map(|l| l.0).unwrap_or_else(|| default.to_vec());
    if args.peers {
        asked.extend(Env::PEERS.iter().filter(|p| !asked.contains(p)).copied().collect::<Vec<_>>());
    }
    if args.image.is_some() && !asked.contains(&Env::ContainerImage) {
        asked.push(Env::ContainerImage);
    }
    let mut kernel = KernelLookup::default();
    let (mut envs, mut skipped) = (Vec::new(), Vec::new());
    for e in asked {
        match why_not(e, args, host, &mut kernel) {
            Some(reason) => skipped.push(Skipped { env: e, reason }),
            None => envs.push(e),
        }
    }
    for s in &skipped {
        eprintln!("virtlab compare: skipping {}: {}", s.env.name(), s.reason);
    }
    let linux_kernel = match (envs.iter().any(|e| e.boots_linux()), kernel.0) {
        (true, Some(Ok(k))) => Some(k),
        _ => None,
    };
    Selection { envs, skipped, linux_kernel }
}

/// Why `e` cannot run on `host` with `args`, or None when it can.
fn why_not(e: Env, args: &CompareArgs, host: &HostInfo, kernel: &mut KernelLookup) -> Option<String> {
    match e {
        Env::Native => None,
        Env::Container | Env::ContainerImage if !host.root => {
            Some("containers with cgroup limits need root; run virtlab as root (sudo) to include them".to_string())
        }
        Env::Container | Env::ContainerImage => None,
        Env::VmMiniUart | Env::VmMiniPv | Env::VmLinux | Env::VmMiniRestore | Env::VmLinuxRestore
            if host.kvm.is_err() =>
        {
            Some(format!(
                "no usable KVM ({}): enable VT-x/AMD-V (or nested virtualization) and make /dev/kvm accessible",
                host.kvm.as_ref().err().map(String::as_str).unwrap_or("")
            ))
        }
        e if e.boots_linux() && args.quick => {
            Some("left out of --quick: a Linux guest boots in minutes on nested hosts; run without --quick".into())
        }
        Env::VmLinux | Env::VmLinuxRestore => kernel.find(e).err(),
        peer if peer.is_peer() => peers::unavailable(peer, host.kvm.is_ok(), host.cgroup_mode.as_deref())
            .or_else(|| if peer.boots_linux() { kernel.find(peer).err() } else { None }),
        _ => None,
    }
}

/// What every launch of `selection` needs, set up once: the workload file
/// on disk, a rootfs for the containers, the image of `container-image`
/// and `podman` (in a temporary directory, removed when the returned
/// [`ImageDir`] is dropped), the VMM's own memory for the VMs. A podman
/// that cannot load the image moves to `selection.skipped`.
pub(super) fn context(args: &CompareArgs, selection: &mut Selection) -> anyhow::Result<(Context, Option<ImageDir>)> {
    let workload_path = virtlab_workload::materialize().context("cannot put the workload binary on disk")?;
    let containers = [Env::Container, Env::ContainerImage, Env::Bwrap, Env::Runc, Env::Crun];
    let rootfs = if selection.envs.iter().any(|e| containers.contains(e) || e.is_podman()) {
        Some(virtlab_container::rootfs::default_rootfs().context("cannot build the container rootfs")?)
    } else {
        None
    };
    let (image, image_dir) = match &rootfs {
        Some(r) if selection.envs.iter().any(|e| *e == Env::ContainerImage || e.is_podman()) => {
            let base = match &args.image {
                Some(name) => {
                    let root = args.root.clone().unwrap_or_else(virtlab_container::image::default_root);
                    let store = virtlab_container::image::Store::open(root)?;
                    let image = store.resolve(name)?;
                    Some(image::Base { store, image, workload: workload_path.clone() })
                }
                None => None,
            };
            let (image, dir) = make_image(r, base, selection)?;
            (Some(image), Some(dir))
        }
        _ => (None, None),
    };
    let envs = &selection.envs;
    let vmm_overhead_bytes = if envs.iter().any(|e| e.is_vm()) {
        let exe = std::env::current_exe().context("cannot find the virtlab binary")?;
        match env::measure_vmm_overhead(&exe) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!(
                    "virtlab compare: could not measure the VMM's own memory ({e}); VM memory is guest pages only"
                );
                None
            }
        }
    } else {
        None
    };
    let ctx = Context {
        workload_path,
        rootfs,
        timeout: args.timeout,
        vmm_overhead_bytes,
        container_memory: 256 << 20,
        container_pids: 64,
        linux_kernel: selection.linux_kernel.clone(),
        linux_timeout: Duration::from_secs(900),
        image,
        snapshots: Default::default(),
    };
    Ok((ctx, image_dir))
}

/// The three-layer image, outside the timing: built in a temporary
/// directory, then loaded into podman's storage there when `podman` runs
/// (if podman cannot load it, `podman` is skipped with the reason).
fn make_image(
    rootfs: &Path,
    base: Option<image::Base>,
    selection: &mut Selection,
) -> anyhow::Result<(RunImage, ImageDir)> {
    let t0 = Instant::now();
    let mut dir = ImageDir::create()?;
    let mut image = image::make(&dir, rootfs, base)?;
    let mut podman = "";
    if selection.envs.iter().any(|e| e.is_podman()) {
        match image::load_into_podman(&mut dir, &mut image) {
            Ok(()) => podman = " and loaded into podman's",
            Err(reason) => {
                for env in selection.envs.iter().filter(|e| e.is_podman()) {
                    eprintln!("virtlab compare: skipping {}: {reason}", env.name());
                    selection.skipped.push(Skipped { env: *env, reason: reason.clone() });
                }
                selection.envs.retain(|e| !e.is_podman());
            }
        }
    }
    if selection.envs.contains(&Env::PodmanVirtlab) {
        // podman's --runtime: a `virtlab-runc` link to this binary in the
        // run's directory (the name makes it the OCI runtime), gone with it.
        if let Err(reason) = image.podman.as_ref().map_or(Ok(()), image::link_virtlab_runtime) {
            eprintln!("virtlab compare: skipping podman+virtlab: {reason}");
            selection.envs.retain(|e| *e != Env::PodmanVirtlab);
            selection.skipped.push(Skipped { env: Env::PodmanVirtlab, reason });
        }
    }
    eprintln!(
        "virtlab compare: built the {}-layer image {}{podman} in {} ({:.2} s, not timed)",
        image.image.diff_ids().len(),
        image.name,
        dir.path().display(),
        t0.elapsed().as_secs_f64()
    );
    Ok((image, dir))
}
