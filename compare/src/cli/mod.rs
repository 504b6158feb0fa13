//! The `virtlab` subcommands.

pub mod compare;
pub mod container;
pub mod events;
pub mod exec;
pub mod guest;
pub mod image;
pub mod inspect;
pub mod lab;
pub mod lifecycle;
pub mod logs;
pub mod oci;
pub mod race;
pub mod report;
pub mod run_image;
mod run_output;
pub mod run_vm;
pub mod stats;
pub mod units;
pub mod vm;

/// Exit status when virtlab itself fails (bad input, missing KVM, ...), as
/// opposed to the workload's own exit status, which is passed through.
/// 125 follows docker/podman/runc's convention for "the tool failed".
pub const EXIT_TOOL_ERROR: u8 = 125;

/// Exit status when a `--timeout` ended the run (`vm run`, `container
/// run`), as timeout(1) does; a SIGKILL from elsewhere stays 128 + 9.
pub const EXIT_TIMEOUT: u8 = 124;
