//! The identity steps: which user the child is, inside its user namespace
//! and for the command.

use super::model::{Op, Ops};
use super::step::Step;
use crate::runtime::config::User;

/// Root of the user namespace: setresgid(0), setresuid(0).
///
/// clone(2) kept the launcher's host ids, which the namespace may not map
/// (as root, container root is another host id): until the child takes the
/// namespace's own root ids, files it creates would have no owner
/// (EOVERFLOW). Once it has, it may no longer pass through a host directory
/// closed to others (/root, 0700), so this comes only after the child
/// stands in the rootfs.
pub(super) fn ns_root(ops: &mut Ops, user_ns: bool) {
    if user_ns {
        ops.push((Step::NsRoot, Op::SetGid(0)));
        ops.push((Step::NsRoot, Op::SetUid(0)));
    }
}

/// The user switch (`--user`): the groups, then the gid, then the uid
/// (after setuid the kernel clears a non-root user's capabilities).
pub(super) fn user(ops: &mut Ops, user: Option<User>, user_ns: bool) {
    let Some(u) = user else { return };
    // With a user namespace, setgroups is denied (that is what lets
    // gid_map be written); the groups are then the ones mapped.
    if !user_ns {
        ops.push((Step::User, Op::ClearGroups));
    }
    ops.push((Step::User, Op::SetGid(u.gid)));
    ops.push((Step::User, Op::SetUid(u.uid)));
}
