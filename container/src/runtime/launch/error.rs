//! [`LaunchError`]: everything that can stop a run, each message naming
//! the problem and the fix, and the exit status a CLI should use for it.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

use crate::runtime::cgroup::CgroupError;
use crate::runtime::channel::ChannelError;
use crate::runtime::config::{ConfigError, ContainerConfig};
use crate::runtime::plan::Step;

/// Errors of a container run, each naming the problem and the fix.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The configuration is not valid.
    #[error("invalid container configuration")]
    Config(#[from] ConfigError),
    /// The rootfs does not exist.
    #[error("the rootfs {path} does not exist: build one with `virtlab container rootfs {path}` or leave out --rootfs to use the built-in one")]
    RootfsMissing {
        /// The path given.
        path: PathBuf,
    },
    /// The rootfs is not a directory.
    #[error("the rootfs {path} is not a directory: give a directory that holds the container's files")]
    RootfsNotDir {
        /// The path given.
        path: PathBuf,
    },
    /// The command is not in the rootfs.
    #[error("command {cmd:?} is not in the rootfs {rootfs} (looked for {searched}): copy it into the rootfs, or build one with busybox-static installed (`virtlab container rootfs DIR`)")]
    CommandNotFound {
        /// The command.
        cmd: String,
        /// The rootfs.
        rootfs: PathBuf,
        /// Where it was looked for, inside the rootfs.
        searched: String,
    },
    /// The command is not a regular file (a directory, a FIFO, a device).
    #[error("{cmd} in the rootfs is {kind}, not a program file: give the path of an executable file")]
    NotAFile {
        /// The command, inside the rootfs.
        cmd: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// `--user` names an id the container's user namespace does not map.
    #[error("{what} {id} has no host id in this container's user namespace, which maps ids 0-{last}: give an id in that range")]
    IdNotMapped {
        /// `uid` or `gid`.
        what: &'static str,
        /// The id asked for.
        id: u32,
        /// The highest id mapped.
        last: u32,
    },
    /// The seccomp filter could not be built.
    #[error("seccomp filter")]
    Seccomp(#[from] crate::runtime::seccomp::SeccompError),
    /// The command needs a dynamic loader that the rootfs lacks.
    #[error("{cmd} is dynamically linked and its loader {interp} is not in the rootfs, so execve would fail with ENOENT although the file exists: use a static binary, or copy the loader and the libraries it needs (ldd) into the rootfs")]
    MissingLoader {
        /// The command, inside the rootfs.
        cmd: String,
        /// The ELF interpreter it names.
        interp: String,
    },
    /// Not root and no user namespace.
    #[error("creating namespaces needs root: run virtlab as root, or add `user` to --ns so that the other namespaces belong to a user namespace of your own")]
    NeedRoot,
    /// An image's layers without a mount namespace to stack them in.
    #[error("an image's layers are stacked with overlayfs inside the container's mount namespace: keep `mnt` in --ns")]
    LayersNeedMnt,
    /// The overlay of an image's layers could not be made.
    #[error("cannot stack the image's layers with overlayfs (it needs root and Linux 5.2 or later; its layers and upper directory must be on a file system overlayfs accepts as layers)")]
    Overlay(#[from] crate::runtime::overlay::OverlayError),
    /// A namespace to join cannot be.
    #[error(transparent)]
    JoinNamespace(#[from] crate::runtime::nsjoin::NsJoinError),
    /// An fd to pass to the command (`--preserve-fds`) is not open.
    #[error("--preserve-fds {count}: fd {fd} is not open in virtlab (the fds 3 to {last} are passed): give the command only fds the caller opened")]
    PreservedFdClosed {
        /// The count asked for.
        count: u32,
        /// The first fd not open.
        fd: i32,
        /// The last fd passed.
        last: u32,
    },
    /// The child ended before its set-up was done, without a word.
    #[error("the container's process ended during its set-up")]
    ChildVanished,
    /// The pid file could not be written.
    #[error("cannot write the pid file {path}")]
    PidFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The console socket could not be connected to.
    #[error("cannot connect to the console socket {path}: the engine listens there for the terminal (check the path, and that it is a listening unix socket)")]
    ConsoleSocket {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The log file could not be opened or written.
    #[error("cannot write the container's log {path}")]
    Log {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Limits asked for without root.
    #[error("memory, CPU and pids limits need a cgroup, and creating one needs root: run virtlab as root, or drop --memory/--cpus/--pids")]
    LimitsNeedRoot,
    /// The cgroup could not be set up.
    #[error("cgroup set-up failed")]
    Cgroup(#[from] CgroupError),
    /// A launcher-side system call failed.
    #[error("{what} failed{hint}")]
    Sys {
        /// Which call.
        what: &'static str,
        /// What to do about it.
        hint: &'static str,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// Writing the uid/gid maps failed.
    #[error("cannot write {path}: the kernel refused the user namespace mapping")]
    Maps {
        /// The /proc file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The channel to the child failed.
    #[error("talking to the container's first process failed")]
    Channel(#[from] ChannelError),
    /// A set-up step failed inside the container.
    #[error("step {step} failed inside the container ({syscall}){hint}")]
    Child {
        /// The step.
        step: Step,
        /// Its system call(s).
        syscall: &'static str,
        /// What to do about it.
        hint: String,
        /// The errno the child reported.
        #[source]
        errno: Errno,
    },
    /// A lifecycle hook failed (the container is torn down).
    #[error("a lifecycle hook failed, so the container was torn down")]
    Hook(#[source] crate::runtime::hooks::HookError),
}

impl LaunchError {
    /// The exit status a CLI should use: 127 for a command that cannot be
    /// found, 126 for one that cannot be executed, 125 for anything else
    /// (docker's and podman's convention).
    pub fn exit_code(&self) -> u8 {
        match self {
            LaunchError::CommandNotFound { .. } | LaunchError::MissingLoader { .. } => 127,
            LaunchError::NotAFile { .. } => 126,
            LaunchError::Child { step: Step::Exec, errno: Errno::ENOENT, .. } => 127,
            LaunchError::Child { step: Step::Exec, .. } => 126,
            _ => 125,
        }
    }
}

/// A [`LaunchError::Sys`] maker for `map_err`.
pub(super) fn sys_err(what: &'static str, hint: &'static str) -> impl Fn(Errno) -> LaunchError {
    move |source| LaunchError::Sys { what, hint, source }
}

/// The error of a hook that failed inside the container (its index in its
/// kind's list and [`HookFailure::encode`](crate::runtime::hooks::HookFailure::encode)).
pub(super) fn hook_failed(step: Step, index: u32, code: u32, cfg: &ContainerConfig) -> LaunchError {
    use crate::runtime::hooks::{HookError, HookFailure, HookKind};
    let kind = if step == Step::StartContainerHooks { HookKind::StartContainer } else { HookKind::CreateContainer };
    let path =
        cfg.hooks.as_ref().and_then(|h| h.of(kind).nth(index as usize).map(|h| h.path.clone())).unwrap_or_default();
    LaunchError::Hook(HookError {
        field: format!("hooks.{}[{index}]", kind.name()),
        path,
        failure: HookFailure::decode(code),
        stderr: String::new(),
    })
}

/// The error of a step that failed inside the container, with a hint.
pub(super) fn child_failed(step: Step, errno: Errno, cfg: &ContainerConfig) -> LaunchError {
    LaunchError::Child { step, syscall: step.syscall(), hint: hint_for(step, errno, cfg), errno }
}

fn hint_for(step: Step, errno: Errno, cfg: &ContainerConfig) -> String {
    let ns = cfg.namespaces;
    let h = match (step, errno) {
        (Step::Exec, Errno::ENOENT) => "the command, or the dynamic loader it names, is not in the rootfs",
        (Step::Exec, Errno::EACCES) => "the file is not executable: chmod +x it in the rootfs",
        (Step::Exec, Errno::ENOEXEC) => {
            "the file is not a program this kernel can run (wrong architecture, or a script without #!)"
        }
        (Step::Proc, Errno::EPERM) if ns.user && !ns.pid => {
            "a user namespace may only mount /proc for a PID namespace it owns: add pid to --ns"
        }
        (Step::Dev, Errno::EROFS | Errno::EACCES) => {
            "the rootfs lacks proc/, dev/ or tmp/ and cannot be written: create those directories in it"
        }
        (Step::PivotRoot, Errno::EINVAL) => {
            "pivot_root needs the rootfs on its own mount in a private tree (the host's / cannot be the rootfs)"
        }
        (Step::User, Errno::EINVAL) => {
            "that uid/gid is not mapped in the user namespace (without root only uid 0 is mapped)"
        }
        (Step::Workdir, Errno::ENOENT | Errno::ENOTDIR) => "the working directory does not exist in the rootfs",
        (Step::Console, Errno::ENOENT) => {
            "the container has no /dev/ptmx: mount a devpts at /dev/pts (config.json mounts) for its terminal"
        }
        (Step::Console, Errno::ENOTTY) => "the kernel has no TIOCGPTPEER (Linux 4.13 or later is needed)",
        (Step::Hostname, Errno::EINVAL) => "the hostname is too long (64 bytes at most)",
        (_, Errno::EPERM) if !ns.user => "the launcher lacks a privilege: run as root",
        _ => "",
    };
    if h.is_empty() {
        String::new()
    } else {
        format!(": {h}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::launch::outcome::ExitStatus;

    #[test]
    fn exit_codes() {
        assert_eq!(ExitStatus::Exited(3).code(), 3);
        assert_eq!(ExitStatus::Signaled(9).code(), 137);
        let e = LaunchError::Child { step: Step::Exec, syscall: "", hint: String::new(), errno: Errno::ENOENT };
        assert_eq!(e.exit_code(), 127);
        let e = LaunchError::Child { step: Step::Exec, syscall: "", hint: String::new(), errno: Errno::EACCES };
        assert_eq!(e.exit_code(), 126);
        assert_eq!(LaunchError::NeedRoot.exit_code(), 125);
    }
}
