//! Namespaces a container joins instead of making (an OCI bundle's
//! `linux.namespaces[].path`, such as podman's `--network ns:/run/netns/X`
//! or a pod's shared namespaces).
//!
//! The launcher opens every path before anything else is made and checks
//! with the `NS_GET_NSTYPE` ioctl (ioctl_ns(2)) that each is a namespace of
//! the type asked for. A process forked for the purpose, alone in its
//! copy of the launcher, then setns(2)es into them, the user namespace
//! first (so that its capabilities count for the joins after it), and
//! clones the container's first process with the flags of the namespaces
//! still to make; `CLONE_PARENT` makes that process the launcher's child,
//! as if the launcher had cloned it itself (see `launch/spawn.rs`). A pid
//! namespace joined this way holds that process from its start: setns(2)
//! of a pid namespace places only the children made after it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use crate::runtime::config::Namespaces;

/// A namespace type that can be joined by path. A mount namespace cannot:
/// the container's root is built in a mount namespace of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum NsKind {
    /// A user namespace: its id maps are already written, none are added.
    User,
    /// A PID namespace: the container's processes are made in it.
    Pid,
    /// A network namespace.
    Net,
    /// A UTS namespace (hostname).
    Uts,
    /// An IPC namespace.
    Ipc,
    /// A cgroup namespace.
    Cgroup,
}

impl NsKind {
    /// The type's clone(2)/setns(2) flag.
    pub fn flag(self) -> libc::c_int {
        match self {
            NsKind::User => libc::CLONE_NEWUSER,
            NsKind::Pid => libc::CLONE_NEWPID,
            NsKind::Net => libc::CLONE_NEWNET,
            NsKind::Uts => libc::CLONE_NEWUTS,
            NsKind::Ipc => libc::CLONE_NEWIPC,
            NsKind::Cgroup => libc::CLONE_NEWCGROUP,
        }
    }

    /// Its short name, as `--ns` and `/proc/PID/ns` spell it.
    pub fn name(self) -> &'static str {
        match self {
            NsKind::User => "user",
            NsKind::Pid => "pid",
            NsKind::Net => "net",
            NsKind::Uts => "uts",
            NsKind::Ipc => "ipc",
            NsKind::Cgroup => "cgroup",
        }
    }

    /// The switch of this type in `ns`.
    fn switch(self, ns: &mut Namespaces) -> &mut bool {
        match self {
            NsKind::User => &mut ns.user,
            NsKind::Pid => &mut ns.pid,
            NsKind::Net => &mut ns.net,
            NsKind::Uts => &mut ns.uts,
            NsKind::Ipc => &mut ns.ipc,
            NsKind::Cgroup => &mut ns.cgroup,
        }
    }
}

/// One namespace to join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsJoin {
    /// Its type.
    pub kind: NsKind,
    /// The namespace file (`/run/netns/NAME`, `/proc/PID/ns/net`).
    pub path: PathBuf,
    /// Where the configuration named it, for errors
    /// (`linux.namespaces[2].path`).
    pub field: String,
}

/// What is wrong with a namespace to join.
#[derive(Debug, thiserror::Error)]
pub enum NsJoinError {
    /// The path cannot be opened.
    #[error("{field}: cannot open {path}: {source} (give an existing namespace file, e.g. /run/netns/NAME from `ip netns add NAME`, or /proc/PID/ns/{name})")]
    Open {
        /// The configuration field.
        field: String,
        /// The path.
        path: PathBuf,
        /// The type asked for.
        name: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a namespace at all.
    #[error("{field}: {path} is not a namespace file: give /run/netns/NAME or /proc/PID/ns/{name}")]
    NotNamespace {
        /// The configuration field.
        field: String,
        /// The path.
        path: PathBuf,
        /// The type asked for.
        name: &'static str,
    },
    /// The file is a namespace of another type.
    #[error("{field}: {path} is a {found} namespace, not a {name} one: give a {name} namespace")]
    WrongType {
        /// The configuration field.
        field: String,
        /// The path.
        path: PathBuf,
        /// The type asked for.
        name: &'static str,
        /// The type found.
        found: &'static str,
    },
    /// setns(2) refused it.
    #[error("{field}: cannot join {path} (setns(2)): {errno}{hint}")]
    Setns {
        /// The configuration field.
        field: String,
        /// The path.
        path: PathBuf,
        /// The error.
        errno: Errno,
        /// What it usually means.
        hint: &'static str,
    },
}

impl NsJoinError {
    /// The error of a setns(2) that failed on the join `j`, after a user
    /// namespace was joined if `after_user`.
    pub fn setns(j: Option<&NsJoin>, errno: Errno, after_user: bool) -> NsJoinError {
        let hint = match errno {
            Errno::EPERM if after_user => {
                ": the user namespace joined first holds no privilege over this namespace (join one it owns, or leave the user namespace out)"
            }
            _ => "",
        };
        let (field, path) = j.map(|j| (j.field.clone(), j.path.clone())).unwrap_or_default();
        NsJoinError::Setns { field, path, errno, hint }
    }
}

/// `NS_GET_NSTYPE`: _IO(0xb7, 0x3), ioctl_ns(2).
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// The namespaces opened, in the order they are to be joined (user first).
#[derive(Debug, Default)]
pub struct Opened {
    /// Each fd with its setns(2) type and its index in the list given.
    pub fds: Vec<(OwnedFd, libc::c_int, usize)>,
}

impl Opened {
    /// The raw fds with their types and indices, for the forked process.
    pub fn raw(&self) -> Vec<(RawFd, libc::c_int, usize)> {
        self.fds.iter().map(|(f, t, i)| (f.as_raw_fd(), *t, *i)).collect()
    }
}

/// Opens every namespace of `joins` and checks its type; orders them for
/// setns(2), user first.
pub fn open_all(joins: &[NsJoin]) -> Result<Opened, NsJoinError> {
    let mut fds = Vec::new();
    for (i, j) in joins.iter().enumerate() {
        let name = j.kind.name();
        let fd = open(&j.path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| NsJoinError::Open {
            field: j.field.clone(),
            path: j.path.clone(),
            name,
            source: e.into(),
        })?;
        // SAFETY: open(2) just returned this fd, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ioctl(2) NS_GET_NSTYPE takes no argument and returns the
        // namespace's CLONE_NEW* type, or fails (ENOTTY) on another file.
        let found = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
        if found < 0 {
            return Err(NsJoinError::NotNamespace { field: j.field.clone(), path: j.path.clone(), name });
        }
        if found != j.kind.flag() {
            let found = type_name(found);
            return Err(NsJoinError::WrongType { field: j.field.clone(), path: j.path.clone(), name, found });
        }
        fds.push((fd, found, i));
    }
    fds.sort_by_key(|(_, t, _)| *t != libc::CLONE_NEWUSER);
    Ok(Opened { fds })
}

/// The name of a CLONE_NEW* type.
fn type_name(t: libc::c_int) -> &'static str {
    match t {
        libc::CLONE_NEWNS => "mount",
        libc::CLONE_NEWTIME => "time",
        _ => [NsKind::User, NsKind::Pid, NsKind::Net, NsKind::Uts, NsKind::Ipc, NsKind::Cgroup]
            .into_iter()
            .find(|k| k.flag() == t)
            .map_or("unknown", NsKind::name),
    }
}

/// `ns` without the namespaces joined: the ones to make.
pub fn to_make(ns: Namespaces, joins: &[NsJoin]) -> Namespaces {
    let mut made = ns;
    for j in joins {
        *j.kind.switch(&mut made) = false;
    }
    made
}

/// Whether `joins` joins a namespace of type `kind`.
pub fn joins(joins: &[NsJoin], kind: NsKind) -> bool {
    joins.iter().any(|j| j.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_namespaces_are_not_made_and_the_user_one_comes_first() {
        let j = |kind, path: &str| NsJoin { kind, path: path.into(), field: format!("x.{path}") };
        let list = [j(NsKind::Net, "/proc/self/ns/net"), j(NsKind::User, "/proc/self/ns/user")];
        let made = to_make(Namespaces::ALL, &list);
        assert!(!made.net && !made.user && made.pid && made.uts);
        assert!(joins(&list, NsKind::Net) && !joins(&list, NsKind::Pid));
        let opened = open_all(&list).expect("a process's own namespaces open");
        let order: Vec<usize> = opened.fds.iter().map(|f| f.2).collect();
        assert_eq!(order, [1, 0], "the user namespace is joined first");
        let wrong = open_all(&[j(NsKind::Uts, "/proc/self/ns/net")]).unwrap_err().to_string();
        assert!(wrong.contains("x./proc/self/ns/net") && wrong.contains("is a net namespace"), "{wrong}");
        let not = open_all(&[j(NsKind::Net, "/proc/self/status")]).unwrap_err().to_string();
        assert!(not.contains("is not a namespace file"), "{not}");
        let gone = open_all(&[j(NsKind::Net, "/nonexistent/ns")]).unwrap_err().to_string();
        assert!(gone.contains("cannot open /nonexistent/ns"), "{gone}");
    }
}
