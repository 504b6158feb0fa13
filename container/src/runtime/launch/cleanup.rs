//! After the command exited: everything it started ended, the sentinel
//! dismissed, the cgroup read and removed. The mounts vanish with the
//! mount namespace; the cgroup is the one thing the kernel leaves behind.

use super::outcome::CgroupReport;
use super::spawn::ChildGuard;
use crate::runtime::cgroup::Cgroup;
use crate::runtime::sentinel::Sentinel;

/// Cleans up after a run: the child reaped (or killed and reaped), the
/// cgroup's stats read and the cgroup removed (a failure to remove it goes
/// to `warnings`). Returns the cgroup's report, if there was one.
pub(super) fn clean_up(
    child: ChildGuard,
    sentinel: Option<Sentinel>,
    cgroup: Option<Cgroup>,
    warnings: &mut Vec<String>,
) -> Option<CgroupReport> {
    // The command is gone; make sure everything it started is too. The
    // launcher cleans up from here on, so the sentinel may go (it exits
    // on the other CPU while the cgroup is read and removed).
    drop(child);
    let mut sentinel = sentinel;
    if let Some(s) = sentinel.as_mut() {
        s.dismiss();
    }
    let report = cgroup.map(|cg| {
        let stats = cg.stats();
        let report = CgroupReport { mode: cg.mode(), paths: cg.paths(), stats };
        if let Err(e) = cg.remove() {
            warnings.push(format!("{e}"));
        }
        report
    });
    // Cleaned up: the sentinel has nothing left to do.
    drop(sentinel);
    report
}
