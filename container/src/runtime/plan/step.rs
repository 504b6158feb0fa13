//! The steps of a container's life: the names used in timings, errors,
//! the channel and `--explain` (whose text is in `explain.rs`).

/// One step of a container's life, as reported in timings, errors and
/// `--explain`. Steps up to `Exec` run in the child; `Clone`, `UserMaps`,
/// `Cgroup`, `Ready` and `Exit` are seen by the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[repr(u32)]
pub enum Step {
    /// clone(2) with the namespace flags.
    Clone = 1,
    /// uid_map/gid_map written (setgroups denied first).
    UserMaps,
    /// The child moved into its cgroup.
    Cgroup,
    /// The child took the user namespace's root ids.
    NsRoot,
    /// unshare(CLONE_NEWCGROUP).
    CgroupNs,
    /// Mount propagation made private.
    Propagation,
    /// rootfs bind-mounted onto itself.
    BindRootfs,
    /// Minimal /dev.
    Dev,
    /// The configuration's own list of mounts (an OCI bundle's).
    Mounts,
    /// pivot_root and the old root detached.
    PivotRoot,
    /// chroot (when there is no mount namespace).
    Chroot,
    /// /proc mounted.
    Proc,
    /// /sys mounted (sysfs, read-only).
    Sys,
    /// The host's kernel files in /proc masked or made read-only.
    ProcMasks,
    /// /tmp tmpfs mounted.
    Tmp,
    /// Namespaced kernel parameters written (an OCI bundle's sysctls).
    Sysctl,
    /// Root remounted read-only.
    ReadOnly,
    /// sethostname.
    Hostname,
    /// Loopback interface up.
    Loopback,
    /// The container's terminal: a pty pair from its /dev/ptmx, the master
    /// sent to the console socket, the slave its controlling terminal.
    Console,
    /// setrlimit.
    Rlimits,
    /// The `createContainer` hooks: in the container's namespaces, before pivot_root.
    CreateContainerHooks,
    /// The `startContainer` hooks: after `start`, before execve.
    StartContainerHooks,
    /// Capabilities dropped.
    Capabilities,
    /// setgid/setuid.
    User,
    /// PR_SET_NO_NEW_PRIVS.
    NoNewPrivs,
    /// The seccomp filter installed.
    Seccomp,
    /// chdir to the working directory.
    Workdir,
    /// stdin/stdout/stderr set up.
    Stdio,
    /// Created, not started: waiting for `start` (the exec FIFO).
    AwaitStart,
    /// execve called (stamped by the child just before the call; the
    /// parent learns that it succeeded when the channel closes).
    Exec,
    /// The workload printed its ready line.
    Ready,
    /// The command exited.
    Exit,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 33] = [
        Step::Clone,
        Step::UserMaps,
        Step::Cgroup,
        Step::CgroupNs,
        Step::Propagation,
        Step::BindRootfs,
        Step::NsRoot,
        Step::Dev,
        Step::Mounts,
        Step::PivotRoot,
        Step::Chroot,
        Step::Proc,
        Step::Sys,
        Step::ProcMasks,
        Step::Tmp,
        Step::Sysctl,
        Step::CreateContainerHooks,
        Step::ReadOnly,
        Step::Hostname,
        Step::Loopback,
        Step::Console,
        Step::Rlimits,
        Step::Capabilities,
        Step::User,
        Step::NoNewPrivs,
        Step::Seccomp,
        Step::Workdir,
        Step::Stdio,
        Step::AwaitStart,
        Step::StartContainerHooks,
        Step::Exec,
        Step::Ready,
        Step::Exit,
    ];

    /// From the number sent over the channel.
    pub fn from_u32(n: u32) -> Option<Step> {
        Step::ALL.iter().copied().find(|s| *s as u32 == n)
    }

    /// A short name (`pivot_root`, `user_maps`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Step::Clone => "clone",
            Step::UserMaps => "user_maps",
            Step::Cgroup => "cgroup",
            Step::NsRoot => "ns_root",
            Step::CgroupNs => "cgroup_ns",
            Step::Propagation => "propagation",
            Step::BindRootfs => "bind_rootfs",
            Step::Dev => "dev",
            Step::Mounts => "mounts",
            Step::PivotRoot => "pivot_root",
            Step::Chroot => "chroot",
            Step::Proc => "proc",
            Step::Sys => "sys",
            Step::ProcMasks => "proc_masks",
            Step::Tmp => "tmp",
            Step::Sysctl => "sysctl",
            Step::ReadOnly => "read_only",
            Step::Hostname => "hostname",
            Step::Loopback => "loopback",
            Step::Console => "console",
            Step::Rlimits => "rlimits",
            Step::Capabilities => "capabilities",
            Step::User => "user",
            Step::NoNewPrivs => "no_new_privs",
            Step::Seccomp => "seccomp",
            Step::Workdir => "workdir",
            Step::Stdio => "stdio",
            Step::AwaitStart => "await_start",
            Step::CreateContainerHooks => "create_container_hooks",
            Step::StartContainerHooks => "start_container_hooks",
            Step::Exec => "exec",
            Step::Ready => "ready",
            Step::Exit => "exit",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_round_trips_through_its_channel_number() {
        for s in Step::ALL {
            assert_eq!(Step::from_u32(s as u32), Some(s));
        }
    }
}
