//! The launcher's side of `--explain` and `--step`: what it does on the
//! host, narrated like the child's steps (`child.rs`).

use crate::runtime::child::pause;
use crate::runtime::config::ContainerConfig;
use crate::runtime::plan::Step;

/// Narrates a step the launcher runs, with `detail` as its system call
/// (the step's own text if empty); with `--step`, waits for Enter.
pub(super) fn narrate_parent(cfg: &ContainerConfig, step: Step, detail: &str) {
    if !cfg.explain && !cfg.step {
        return;
    }
    eprintln!(
        "[virtlab launcher, on the host] {}\n    syscall: {}\n    idea:    {}",
        step.name(),
        if detail.is_empty() { step.syscall() } else { detail },
        step.idea()
    );
    if cfg.step {
        pause();
    }
}
