//! The engine: containers with a life of their own, as Docker gives them.
//!
//! `virtlab run -d` hands a container to a **monitor**, a small process of
//! its own (the job conmon or containerd-shim does for real engines) that
//! outlives the command line: it holds the container's log file, runs the
//! launcher, waits for the exit status and records it, and writes the
//! events. Everything about a container is in a directory of the store:
//!
//! ```text
//! ROOT/containers/ID/
//!   config.json     what to run (image, command, environment, limits), written once
//!   monitor.pid     the monitor's PID
//!   pid             the container's PID, written when its command runs
//!   exit.json       how it ended, written by the monitor
//!   log             its standard output and error
//!   upper/ work/    its writable layer (an image's container)
//!   in-use.json     the image and layers it stands on
//!   lock            flock(2): one command at a time changes it
//! ROOT/events.jsonl the last 1000 events, oldest dropped first
//! ```
//!
//! A container's status is read from those files, never stored twice: a
//! `pid` without an `exit.json` while the monitor lives is `Up`; an
//! `exit.json` is `Exited (N)`; a monitor that died without writing one
//! (SIGKILL, a host reboot) leaves the container `Exited (unknown)`, never
//! a ghost that says `Up`.

pub mod container;
pub mod events;
pub mod exec;
pub mod monitor;
pub mod stats;

use std::io;
use std::path::PathBuf;

pub use container::{Container, RunSpec, Status};

/// What can go wrong with containers. Each message names the problem and
/// the fix, in the words Docker's own use where a student knows them.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("could not {what}: {cause}")]
    Io { what: String, cause: io::Error },
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("the container name \"{0}\" is already in use; remove that container or choose another name")]
    NameInUse(String),
    #[error("\"{0}\" is not a valid container name: use letters, digits, _ . and -, starting with a letter or digit")]
    BadName(String),
    #[error("cannot remove container {0}: it is running; stop it first, or remove it anyway with -f")]
    Running(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("{0} is not valid: {1}")]
    Corrupt(PathBuf, String),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error("the container could not start: {0}")]
    Launch(String),
    #[error("{0}")]
    Filter(String),
    #[error("cannot read the cgroups of container {container}")]
    Cgroup {
        container: String,
        #[source]
        source: crate::runtime::cgroup::CgroupError,
    },
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> EngineError {
    let what = what.into();
    move |cause| EngineError::Io { what, cause }
}
