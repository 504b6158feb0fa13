//! The typed channel between the launcher (parent) and the container's
//! first process (child), over a `SOCK_SEQPACKET` socket pair: each message
//! is one fixed-size packet, so neither side needs to allocate or frame.
//!
//! - parent -> child: [`ParentMsg::Go`] once the uid/gid maps are written
//!   and the child is in its cgroup.
//! - child -> parent: [`ChildMsg::StepDone`] after each step with a
//!   CLOCK_MONOTONIC stamp, or [`ChildMsg::Failed`] with the step and errno,
//!   after which the child exits. Both ends are close-on-exec: when execve
//!   succeeds the parent reads end-of-file, which is how it learns that the
//!   command started.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use crate::plan::Step;

/// Errors of the channel.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// socketpair(2) failed.
    #[error("cannot create the parent/child channel (socketpair)")]
    Create(#[source] Errno),
    /// A read or write failed.
    #[error("the parent/child channel failed")]
    Io(#[source] Errno),
    /// A packet that is not one of ours.
    #[error("malformed message on the parent/child channel: {0:02x?}")]
    Malformed(Vec<u8>),
}

/// Messages from the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildMsg {
    /// A step finished at this CLOCK_MONOTONIC time (ns).
    StepDone {
        /// The step.
        step: Step,
        /// When.
        t_ns: u64,
    },
    /// A step failed; the child exits right after.
    Failed {
        /// The step.
        step: Step,
        /// The errno.
        errno: i32,
    },
}

/// Messages from the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentMsg {
    /// Maps written, cgroup joined: go on.
    Go,
}

const LEN: usize = 16;
const KIND_STEP: u32 = 1;
const KIND_FAILED: u32 = 2;
const KIND_GO: u32 = 3;

impl ChildMsg {
    /// Packs into one packet.
    pub fn encode(&self) -> [u8; LEN] {
        let (kind, step, value) = match *self {
            ChildMsg::StepDone { step, t_ns } => (KIND_STEP, step, t_ns),
            ChildMsg::Failed { step, errno } => (KIND_FAILED, step, errno as u32 as u64),
        };
        pack(kind, step as u32, value)
    }

    /// Unpacks one packet.
    pub fn decode(b: &[u8]) -> Result<ChildMsg, ChannelError> {
        let bad = || ChannelError::Malformed(b.to_vec());
        let (kind, step, value) = unpack(b).ok_or_else(bad)?;
        let step = Step::from_u32(step).ok_or_else(bad)?;
        match kind {
            KIND_STEP => Ok(ChildMsg::StepDone { step, t_ns: value }),
            KIND_FAILED => Ok(ChildMsg::Failed { step, errno: value as u32 as i32 }),
            _ => Err(bad()),
        }
    }
}

fn pack(kind: u32, step: u32, value: u64) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[0..4].copy_from_slice(&kind.to_ne_bytes());
    b[4..8].copy_from_slice(&step.to_ne_bytes());
    b[8..16].copy_from_slice(&value.to_ne_bytes());
    b
}

fn unpack(b: &[u8]) -> Option<(u32, u32, u64)> {
    if b.len() != LEN {
        return None;
    }
    let kind = u32::from_ne_bytes(b[0..4].try_into().ok()?);
    let step = u32::from_ne_bytes(b[4..8].try_into().ok()?);
    let value = u64::from_ne_bytes(b[8..16].try_into().ok()?);
    Some((kind, step, value))
}

/// The parent's end.
#[derive(Debug)]
pub struct ParentEnd(OwnedFd);

/// The child's end. Used in the child only through [`ChildEnd::raw`] and
/// the free functions below, which neither allocate nor drop.
#[derive(Debug)]
pub struct ChildEnd(OwnedFd);

/// Creates the two ends (both close-on-exec).
pub fn pair() -> Result<(ParentEnd, ChildEnd), ChannelError> {
    let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(ChannelError::Create)?;
    Ok((ParentEnd(a), ChildEnd(b)))
}

impl ParentEnd {
    /// Sends a message to the child.
    pub fn send(&self, msg: ParentMsg) -> Result<(), ChannelError> {
        let ParentMsg::Go = msg;
        let b = pack(KIND_GO, 0, 0);
        // MSG_NOSIGNAL: a child that died early gives EPIPE, not SIGPIPE.
        nix::sys::socket::send(self.0.as_raw_fd(), &b, nix::sys::socket::MsgFlags::MSG_NOSIGNAL)
            .map(drop)
            .map_err(ChannelError::Io)
    }

    /// Reads one message; `None` at end-of-file (the child exec'd or died).
    pub fn recv(&self) -> Result<Option<ChildMsg>, ChannelError> {
        let mut b = [0u8; 64];
        loop {
            match nix::unistd::read(self.0.as_raw_fd(), &mut b) {
                Ok(0) => return Ok(None),
                Ok(n) => return ChildMsg::decode(&b[..n]).map(Some),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(ChannelError::Io(e)),
            }
        }
    }

    /// The fd, for poll(2).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }

    /// The raw fd number (for the child to close its copy).
    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl ChildEnd {
    /// The raw fd number, for use in the child.
    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Child side: sends a message (no allocation).
pub fn child_send(fd: RawFd, msg: ChildMsg) {
    let b = msg.encode();
    // SAFETY: b is a readable buffer of b.len() bytes; fd is the child's end.
    // MSG_NOSIGNAL: if the launcher is gone, PR_SET_PDEATHSIG ends us anyway.
    let _ = unsafe { libc::send(fd, b.as_ptr().cast(), b.len(), libc::MSG_NOSIGNAL) };
}

/// Child side: waits for [`ParentMsg::Go`]. `false` if the parent went away.
pub fn child_wait_go(fd: RawFd) -> bool {
    let mut b = [0u8; LEN];
    loop {
        // SAFETY: b is a writable buffer of b.len() bytes.
        let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) };
        if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        return n == LEN as isize && unpack(&b).is_some_and(|(k, _, _)| k == KIND_GO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        for m in [
            ChildMsg::StepDone { step: Step::PivotRoot, t_ns: 123_456_789_012 },
            ChildMsg::Failed { step: Step::Exec, errno: libc::ENOENT },
        ] {
            assert_eq!(ChildMsg::decode(&m.encode()).unwrap(), m);
        }
        assert!(ChildMsg::decode(&[1, 2, 3]).is_err());
        assert!(ChildMsg::decode(&pack(9, 1, 0)).is_err());
        assert!(ChildMsg::decode(&pack(KIND_STEP, 999, 0)).is_err());
    }

    #[test]
    fn eof_when_the_child_end_closes() {
        let (p, c) = pair().unwrap();
        child_send(c.raw(), ChildMsg::Failed { step: Step::Proc, errno: 1 });
        drop(c);
        assert_eq!(p.recv().unwrap(), Some(ChildMsg::Failed { step: Step::Proc, errno: 1 }));
        assert_eq!(p.recv().unwrap(), None);
    }
}
