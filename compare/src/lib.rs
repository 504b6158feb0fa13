//! The virtlab harness: runs the byte-identical workload natively, in a
//! container and in VMs, and turns what each launcher reports into
//! statistics, a table, explanations tied to the course notes, JSON, CSV
//! and SVG charts.
//!
//! - [`launch`]: what every launch shares: environments, workloads, samples.
//! - [`env`](mod@env): how one run in each of our own environments is launched.
//! - [`process`]: waiting on child processes with a timeout.
//! - [`host`]: what machine this is (KVM, nesting, cgroups, CPU).
//! - [`stats`]: medians and spreads.
//! - [`report`]: the comparison itself, its table and its claims.
//! - [`svg`](mod@svg): charts.
//! - [`scale`]: many instances at once.
//! - [`peers`]: QEMU, bubblewrap, runc, crun and podman on the same workload.
//! - [`podman`]: podman's private storage, its command line and its clean-up.
//! - [`image`](mod@image): the three-layer image of `container-image` and `podman`.
//! - [`memory`]: one memory measure for every row, a cgroup's peak.

pub mod env;
pub mod host;
pub mod image;
pub mod launch;
pub mod memory;
pub mod peers;
pub mod podman;
pub mod process;
pub mod report;
pub mod scale;
pub mod stats;
pub mod svg;
