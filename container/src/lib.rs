//! A container launcher built from Linux namespaces, cgroups and
//! pivot_root, small enough to read in one sitting.
//!
//! A container is an ordinary process that the kernel shows a different
//! world. Running one takes six steps, which is what [`run`] does:
//!
//! 1. **Describe it**: a [`ContainerConfig`] (rootfs, command, namespaces,
//!    limits, user, ...). Nothing happens yet.
//! 2. **Make its cgroup**: [`cgroup::Cgroup::create`] writes the memory, CPU
//!    and pids limits (v1, hybrid or v2, see [`cgroup::detect`]).
//! 3. **Clone it**: clone(2) with `CLONE_NEW*` flags starts the first
//!    process in new namespaces; the launcher writes its uid/gid maps
//!    (container root is an unprivileged host id, see [`idmap`]), makes an
//!    idmapped copy of the rootfs mount, moves the child into the cgroup,
//!    then tells it to go.
//! 4. **Build its world**: the child runs a [`plan::Plan`]: private mounts,
//!    the rootfs attached, `/dev`, pivot_root, `/proc` with the host's
//!    kernel files masked, `/tmp`, hostname, loopback, rlimits,
//!    capabilities, no_new_privs, the [`seccomp`] filter. Each step is
//!    reported back with a timestamp, or with its errno if it fails.
//! 5. **Exec**: the command replaces the child, as PID 1 of its namespace.
//! 6. **Watch and clean up**: output, forwarded signals, timeout; then the
//!    cgroup's peak memory, CPU time and OOM kills are read and the cgroup
//!    is removed. The mounts vanish with the mount namespace.
//!
//! ```no_run
//! use virtlab_container::{run, ContainerConfig, Stdio};
//!
//! let rootfs = virtlab_container::rootfs::default_rootfs()?;
//! let mut cfg = ContainerConfig::new(rootfs, vec!["/virtlab-workload".into(), "ready".into()]);
//! cfg.limits.memory = Some(64 << 20);
//! cfg.stdio = Stdio::Capture;
//! let out = run(&cfg)?;
//! println!("exit {} after {:?}, peak {:?} bytes", out.exit_code(), out.total,
//!          out.cgroup.map(|c| c.stats.memory_peak));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See `DESIGN.md` in this crate for the order of the set-up and why.

pub mod engine;
pub mod escape;
pub mod image;
pub mod oci;
pub mod runtime;
pub mod time;

// The launcher's modules keep their paths at the crate root
// (`virtlab_container::cgroup`, `::config`, ...).
pub use runtime::{
    cgroup, channel, child, config, defences, devices, idmap, launch, plan, rootfs, seccomp, seccomp_profile, sentinel,
    sys,
};

pub use config::{ContainerConfig, Limits, Namespaces, Rlimit, Stdio, User};
pub use launch::{run, CgroupReport, ExitStatus, LaunchError, Outcome, Stamp};
pub use plan::Step;
