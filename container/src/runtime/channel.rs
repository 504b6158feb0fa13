//! The typed channel between the launcher (parent) and the container's
//! first process (child), over a `SOCK_SEQPACKET` socket pair: each message
//! is one fixed-size packet, so neither side needs to allocate or frame.
//!
//! - parent -> child: [`ParentMsg::Go`] once the uid/gid maps are written
//!   and the child is in its cgroup, carrying (as `SCM_RIGHTS`) the
//!   idmapped rootfs tree when the launcher made one.
//! - child -> parent: [`ChildMsg::StepDone`] after each step with a
//!   CLOCK_MONOTONIC stamp, or [`ChildMsg::Failed`] with the step and errno,
//!   after which the child exits. Both ends are close-on-exec: when execve
//!   succeeds the parent reads end-of-file, which is how it learns that the
//!   command started.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType};

use crate::runtime::plan::{Received, Step};

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
    /// A lifecycle hook of the step failed (a `Failed` follows).
    HookFailed {
        /// The step.
        step: Step,
        /// The hook's index in its kind's list.
        index: u32,
        /// [`HookFailure::encode`](crate::runtime::hooks::HookFailure::encode).
        code: u32,
    },
}

/// Messages from the parent.
#[derive(Debug, Clone, Copy)]
pub enum ParentMsg<'a> {
    /// Maps written, cgroup joined: go on, with the rootfs tree to attach
    /// if there is one.
    Go {
        /// A detached mount (open_tree(2)), passed as `SCM_RIGHTS`.
        rootfs_tree: Option<BorrowedFd<'a>>,
        /// The child's PID as the host sees it.
        pid: i32,
    },
}

const LEN: usize = 16;
const KIND_STEP: u32 = 1;
const KIND_FAILED: u32 = 2;
const KIND_GO: u32 = 3;
const KIND_HOOK: u32 = 4;

impl ChildMsg {
    /// Packs into one packet.
    pub fn encode(&self) -> [u8; LEN] {
        let (kind, step, value) = match *self {
            ChildMsg::StepDone { step, t_ns } => (KIND_STEP, step, t_ns),
            ChildMsg::Failed { step, errno } => (KIND_FAILED, step, errno as u32 as u64),
            ChildMsg::HookFailed { step, index, code } => (KIND_HOOK, step, ((index as u64) << 32) | code as u64),
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
            KIND_HOOK => Ok(ChildMsg::HookFailed { step, index: (value >> 32) as u32, code: value as u32 }),
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
    pub fn send(&self, msg: ParentMsg<'_>) -> Result<(), ChannelError> {
        let ParentMsg::Go { rootfs_tree, pid } = msg;
        let b = pack(KIND_GO, 0, pid as u32 as u64);
        let iov = [IoSlice::new(&b)];
        let fds: Vec<RawFd> = rootfs_tree.iter().map(|f| f.as_raw_fd()).collect();
        let cmsgs: Vec<ControlMessage<'_>> =
            if fds.is_empty() { Vec::new() } else { vec![ControlMessage::ScmRights(&fds)] };
        // MSG_NOSIGNAL: a child that died early gives EPIPE, not SIGPIPE.
        sendmsg::<()>(self.0.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None)
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
                // The child died with a message of ours unread (killed by a
                // timeout before it read Go): that is an end too.
                Err(Errno::ECONNRESET) => return Ok(None),
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

/// Child side: waits for [`ParentMsg::Go`] and takes the fd it carries
/// (close-on-exec). `None` if the parent went away. No allocation: the
/// control buffer is on the stack.
pub fn child_wait_go(fd: RawFd) -> Option<Received> {
    let mut b = [0u8; LEN];
    // Room for one SCM_RIGHTS fd: CMSG_SPACE(4) is 24 bytes; u64s align it.
    let mut control = [0u64; 4];
    loop {
        let mut iov = libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() };
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: msg points to the live iovec and control buffer above,
        // whose lengths it states.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        if n != LEN as isize || unpack(&b).is_none_or(|(k, _, _)| k != KIND_GO) {
            return None;
        }
        let mut received = Received::default();
        if let Some((_, _, pid)) = unpack(&b) {
            received.host_pid = pid as i32;
        }
        // SAFETY: the kernel filled msg_control/msg_controllen; CMSG_FIRSTHDR
        // and CMSG_DATA only do pointer arithmetic within that buffer, and a
        // SCM_RIGHTS header of at least CMSG_LEN(4) holds one int.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            if !c.is_null()
                && (*c).cmsg_level == libc::SOL_SOCKET
                && (*c).cmsg_type == libc::SCM_RIGHTS
                && (*c).cmsg_len as usize >= libc::CMSG_LEN(4) as usize
            {
                received.rootfs_tree = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<RawFd>()));
            }
        }
        return Some(received);
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
            ChildMsg::HookFailed { step: Step::StartContainerHooks, index: 2, code: 0x0200_0005 },
        ] {
            assert_eq!(ChildMsg::decode(&m.encode()).unwrap(), m);
        }
        assert!(ChildMsg::decode(&[1, 2, 3]).is_err());
        assert!(ChildMsg::decode(&pack(9, 1, 0)).is_err());
        assert!(ChildMsg::decode(&pack(KIND_STEP, 999, 0)).is_err());
    }

    #[test]
    fn go_carries_an_fd_and_a_child_killed_before_reading_is_an_end() {
        let (p, c) = pair().unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        p.send(ParentMsg::Go { rootfs_tree: Some(file.as_fd()), pid: 7 }).unwrap();
        let got = child_wait_go(c.raw()).expect("go");
        let fd = got.rootfs_tree.expect("the fd came along");
        assert_eq!(got.host_pid, 7, "and the child's PID");
        assert_ne!(fd, file.as_raw_fd(), "a new descriptor for the same file");
        // SAFETY: fd was just received and is owned by nobody else.
        drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
        p.send(ParentMsg::Go { rootfs_tree: None, pid: 7 }).unwrap();
        assert_eq!(child_wait_go(c.raw()).expect("go").rootfs_tree, None);

        // The child dies with Go unread: the parent reads an end, not an
        // error (a --timeout of 1ms used to report ECONNRESET here).
        p.send(ParentMsg::Go { rootfs_tree: None, pid: 7 }).unwrap();
        drop(c);
        assert_eq!(p.recv().unwrap(), None);
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
