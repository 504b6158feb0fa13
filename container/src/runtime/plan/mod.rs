//! The container's set-up as data: the parent turns a
//! [`ContainerConfig`](crate::ContainerConfig) into a list of operations
//! with every path already a C string, and the child runs that list through
//! a [`Sys`](crate::runtime::sys::Sys) until execve(2).
//!
//! The order, and why:
//! 1. The cgroup joined (v1: the child writes `0`, itself, to each `tasks`
//!    file the parent opened; migrating oneself skips the kernel's global
//!    threadgroup lock and its RCU grace period, ~15 ms here), then the
//!    `cgroup` namespace unshared, so its root is the container's cgroup.
//! 2. Mount propagation private: nothing we mount leaks back to the host.
//! 3. The rootfs bind-mounted onto itself: pivot_root needs a mount point.
//! 4. A minimal `/dev` (a tmpfs with six nodes): made before pivot_root,
//!    because inside a user namespace the nodes are bind mounts of the
//!    host's, which are only reachable through the old root.
//! 5. `/proc` for the new PID namespace and `/tmp` as a tmpfs, mounted into
//!    the rootfs still before pivot_root: inside a user namespace the kernel
//!    only allows a new proc mount while a fully visible one exists in the
//!    mount namespace (`mount_too_revealing`), and the host's goes away with
//!    the old root.
//!    An OCI bundle's `createContainer` hooks run here, from the rootfs:
//!    the container's namespaces and mounts, the host's tree still there.
//! 6. pivot_root(".", ".") and the old root detached: the host's tree is no
//!    longer reachable at all (chroot only moves where `/` resolves). Then
//!    the root made read-only if asked (after the last mount into it).
//! 7. Hostname, loopback up, rlimits.
//! 8. Capabilities: bounding set and ambient set cleared down to
//!    [`DEFAULT_CAPS`], while still root; then the user switch; then
//!    no_new_privs, so nothing the command runs can gain privileges again.
//! 9. Working directory, stdio, (an OCI `create`: the wait for `start`, then
//!    the `startContainer` hooks), close-on-exec for every other fd, execve.
//!
//! | file         | what it holds |
//! | ------------ | ------------- |
//! | `step.rs`    | [`Step`]: the steps, their names and channel numbers |
//! | `explain.rs` | what `--explain` says of each step: its system calls and idea |
//! | `model.rs`   | [`Op`], [`Plan`], [`PlanHost`], [`StdioFds`], [`Received`], [`StepHooks`]: the plan as data and what surrounds its run |
//! | `build.rs`   | [`Plan::build`]: the order above, and the small steps |
//! | `mounts.rs`  | propagation, rootfs, `/dev`, `/proc`, `/tmp`, pivot_root or chroot, read-only root |
//! | `identity.rs`| root of the user namespace, the `--user` switch |
//! | `security.rs`| /proc masks, capabilities ([`cap`], [`DEFAULT_CAPS`]), no_new_privs, seccomp |
//! | `command.rs` | the command's lookup, environment and execve arguments |
//! | `run.rs`     | [`run_plan`]: the child runs the operations through a [`Sys`](crate::runtime::sys::Sys) |
//! | `fake.rs`    | (tests only) the recording `Sys` the tests run plans against, and their helpers |
//!
//! Dependencies run one way: `explain` and `model` use `step`; `mounts`,
//! `identity` and `command` use `model`; `security` uses `mounts`; `build`
//! and `run` use the step files, which never use them. Nothing here uses
//! `launch`.

mod build;
mod command;
mod explain;
#[cfg(test)]
mod fake;
mod identity;
mod model;
mod mounts;
mod run;
mod security;
mod step;

pub use command::{command_candidates, command_paths, environment, DEFAULT_PATH};
pub use model::{Op, Plan, PlanHost, Received, StdioFds, StepHooks};
pub use run::run_plan;
pub use security::{cap, default_cap_mask, last_cap, DEFAULT_CAPS, MASKED_PATHS, READ_ONLY_PATHS};
pub use step::Step;
