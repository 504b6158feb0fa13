//! The launcher: what runs one container, from a [`config::ContainerConfig`]
//! to its exit status. Everything the Docker half of virtlab builds (images,
//! the engine, the OCI front door) uses this; this uses none of them.
//!
//! | module     | what it holds |
//! | ---------- | ------------- |
//! | `config`   | the plain configuration and the parsers of its text forms |
//! | `cgroup`   | one cgroup per container: limits, stats, removal |
//! | `devices`  | the device allowlist (v1 lines, v2 BPF program) |
//! | `idmap`    | which host ids container ids stand for |
//! | `seccomp`  | the default seccomp filter |
//! | `seccomp_profile` | Docker's JSON seccomp profiles, compiled to BPF |
//! | `syscall_table` | x86_64 system call names and numbers |
//! | `defences` | `--security-opt`, `--cap-add`/`--cap-drop`, `--privileged` |
//! | `tty_filter` | the filter stacked on it: no faked terminal input (`TIOCSTI`) |
//! | `hooks`    | lifecycle hooks (OCI `hooks`): their state JSON, how they run |
//! | `plan`     | the child's set-up as data, and `run_plan` |
//! | `sys`      | the system calls of the set-up, behind a trait |
//! | `channel`  | the parent/child channel |
//! | `child`    | the child from clone to execve |
//! | `launch`   | `run()`: validation, clone, maps, watching, clean-up |
//! | `log`      | a container's output as Docker's json-file log |
//! | `nsjoin`   | namespaces joined by path instead of made |
//! | `sentinel` | clean-up after a launcher killed with SIGKILL |
//! | `rootfs`   | building a rootfs directory |

pub mod cgroup;
pub mod channel;
pub mod child;
pub mod config;
pub mod defences;
pub mod devices;
pub mod hooks;
pub mod idmap;
pub mod launch;
pub mod log;
pub mod nsjoin;
pub mod overlay;
pub mod plan;
pub mod rootfs;
pub mod seccomp;
pub mod seccomp_profile;
pub mod sentinel;
pub mod sys;
pub mod syscall_table;
pub mod tty_filter;
