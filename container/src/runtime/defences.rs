//! Docker's switches for a container's defences, read from their text
//! forms and applied to a [`ContainerConfig`]:
//!
//! | switch | what it changes |
//! | ------ | --------------- |
//! | `--security-opt seccomp=unconfined` | no seccomp filter (nor the TIOCSTI one) |
//! | `--security-opt seccomp=PROFILE.json` | a filter compiled from a profile in Docker's JSON format ([`crate::runtime::seccomp_profile`]) |
//! | `--security-opt no-new-privileges[=true\|false]` | no_new_privs (virtlab's default is on) |
//! | `--security-opt systempaths=unconfined` | no masked or read-only paths in /proc |
//! | `--cap-add CAP`, `--cap-drop CAP` | Docker's default capabilities changed (`ALL` for every one) |
//! | `--privileged` | every capability, no filter, no masked or read-only paths, /sys writable, no devices allowlist |
//!
//! A user namespace stays in every case: `--privileged` root is still an
//! unprivileged user of the host.

use std::path::Path;
use std::sync::Arc;

use crate::runtime::config::{ContainerConfig, Namespaces};
use crate::runtime::plan::{default_cap_mask, last_cap, MASKED_PATHS, READ_ONLY_PATHS};
use crate::runtime::seccomp_profile::{self, Compiled, ProfileError, Target};

/// Errors in the defence switches, each naming the option and the fix.
#[derive(Debug, thiserror::Error)]
pub enum DefenceError {
    /// A `--security-opt` virtlab does not know or has no mechanism for.
    #[error("--security-opt {opt:?}: {why}")]
    Option {
        /// The option as given.
        opt: String,
        /// Why it is refused, and what to use.
        why: String,
    },
    /// A capability name that is not one.
    #[error("unknown capability {name:?} in --{flag}: use a name of capabilities(7), with or without CAP_ (e.g. SYS_ADMIN, CAP_NET_RAW), or ALL")]
    Capability {
        /// `cap-add` or `cap-drop`.
        flag: &'static str,
        /// The name given.
        name: String,
    },
    /// The profile file cannot be read.
    #[error("cannot read the seccomp profile {path}: give the path of a JSON profile (Docker's format)")]
    ProfileFile {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The profile does not parse or compile.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// `--privileged` without a user namespace: host root, unconfined.
    #[error("--privileged without the user namespace would make the container's root the host's root, with every capability and no filter: keep user in --ns")]
    PrivilegedHostRoot,
}

/// The capabilities, by number (capabilities(7)), with their names.
pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A capability's number, from `SYS_ADMIN`, `cap_sys_admin` or
/// `CAP_SYS_ADMIN`.
pub fn cap_number(name: &str) -> Option<u32> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    CAPABILITIES.iter().position(|c| *c == full).map(|p| p as u32)
}

/// The names of the capabilities in `mask`.
pub fn cap_names(mask: u64) -> Vec<&'static str> {
    CAPABILITIES.iter().enumerate().filter(|(i, _)| mask & (1u64 << i) != 0).map(|(_, n)| *n).collect()
}

/// Every capability this kernel has.
pub fn all_caps() -> u64 {
    let last = last_cap().min(63);
    if last == 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    }
}

/// Which seccomp filter a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompChoice {
    /// virtlab's default filter ([`crate::runtime::seccomp`]).
    Default,
    /// None (`seccomp=unconfined`).
    Unconfined,
    /// A profile: where it was read from, and its text.
    Profile {
        /// The path given.
        path: String,
        /// The JSON text, read when the container was made.
        text: String,
    },
}

/// The switches, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defences {
    /// The seccomp filter.
    pub seccomp: SeccompChoice,
    /// `no-new-privileges`, if given.
    pub no_new_privs: Option<bool>,
    /// `systempaths=unconfined`.
    pub systempaths_unconfined: bool,
    /// The capabilities kept (bit mask), after `--cap-add`/`--cap-drop`.
    pub caps: u64,
    /// `--privileged`.
    pub privileged: bool,
}

impl Default for Defences {
    fn default() -> Self {
        Defences {
            seccomp: SeccompChoice::Default,
            no_new_privs: None,
            systempaths_unconfined: false,
            caps: default_cap_mask(),
            privileged: false,
        }
    }
}

/// The words of `--cap-add`/`--cap-drop` as a mask, and whether `ALL` was
/// among them.
fn cap_list(flag: &'static str, names: &[String]) -> Result<(u64, bool), DefenceError> {
    let mut mask = 0;
    let mut all = false;
    for name in names.iter().flat_map(|n| n.split(',')).map(str::trim).filter(|n| !n.is_empty()) {
        if name.eq_ignore_ascii_case("ALL") {
            all = true;
            continue;
        }
        let c = cap_number(name).ok_or_else(|| DefenceError::Capability { flag, name: name.to_string() })?;
        mask |= 1u64 << c;
    }
    Ok((mask, all))
}

/// Docker's rule for the capabilities: `--privileged` every one; an added
/// `ALL`, every one but those dropped; a dropped `ALL`, only those added;
/// else the default set less those dropped plus those added.
pub fn capabilities(cap_add: &[String], cap_drop: &[String], privileged: bool) -> Result<u64, DefenceError> {
    let (add, add_all) = cap_list("cap-add", cap_add)?;
    let (drop, drop_all) = cap_list("cap-drop", cap_drop)?;
    Ok(if privileged {
        all_caps()
    } else if add_all {
        all_caps() & !drop
    } else if drop_all {
        add & all_caps()
    } else {
        ((default_cap_mask() & !drop) | add) & all_caps()
    })
}

impl Defences {
    /// Reads the switches; `read` gives the text of a profile file (the
    /// file system when a container is made, its record when it starts
    /// again).
    pub fn parse(
        security_opt: &[String],
        cap_add: &[String],
        cap_drop: &[String],
        privileged: bool,
        read: impl Fn(&Path) -> std::io::Result<String>,
    ) -> Result<Defences, DefenceError> {
        let mut d = Defences { caps: capabilities(cap_add, cap_drop, privileged)?, privileged, ..Defences::default() };
        for opt in security_opt {
            let bad = |why: &str| DefenceError::Option { opt: opt.clone(), why: why.to_string() };
            let (key, value) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => match opt.split_once(':') {
                    Some(_) => return Err(bad("write KEY=VALUE (the KEY:VALUE form is gone from Docker too)")),
                    None => (opt.as_str(), None),
                },
            };
            match (key, value) {
                ("seccomp", Some("unconfined")) => d.seccomp = SeccompChoice::Unconfined,
                ("seccomp", Some("builtin" | "default")) => d.seccomp = SeccompChoice::Default,
                ("seccomp", Some(path)) if !path.is_empty() => {
                    let text = read(Path::new(path))
                        .map_err(|source| DefenceError::ProfileFile { path: path.to_string(), source })?;
                    d.seccomp = SeccompChoice::Profile { path: path.to_string(), text };
                }
                ("no-new-privileges", None | Some("true")) => d.no_new_privs = Some(true),
                ("no-new-privileges", Some("false")) => d.no_new_privs = Some(false),
                ("no-new-privileges", Some(_)) => return Err(bad("give true or false, or no value (true)")),
                ("systempaths", Some("unconfined")) => d.systempaths_unconfined = true,
                ("apparmor", _) => {
                    return Err(bad(
                        "virtlab has no AppArmor profiles (the kernel's LSMs are left to the host): leave it out; \
                         seccomp, capabilities and the masked paths are the defences virtlab has",
                    ))
                }
                ("label", _) => {
                    return Err(bad(
                        "virtlab has no SELinux labels (the kernel's LSMs are left to the host): leave it out",
                    ))
                }
                _ => {
                    return Err(bad("unknown option: virtlab takes seccomp=unconfined, seccomp=PROFILE.json, \
                         no-new-privileges[=true|false] and systempaths=unconfined"))
                }
            }
        }
        Ok(d)
    }

    /// The profile compiled for `caps`, if one is chosen.
    pub fn compile(&self) -> Result<Option<Compiled>, DefenceError> {
        match &self.seccomp {
            SeccompChoice::Profile { path, text } if !self.privileged => {
                Ok(Some(seccomp_profile::compile_text(path, text, Target::host(self.caps))?))
            }
            _ => Ok(None),
        }
    }

    /// Whether the switches go with `namespaces`: `--privileged` needs a
    /// user namespace, which keeps container root an unprivileged host
    /// user.
    pub fn check(&self, namespaces: Namespaces) -> Result<(), DefenceError> {
        if self.privileged && !namespaces.user {
            return Err(DefenceError::PrivilegedHostRoot);
        }
        Ok(())
    }

    /// Sets what the switches change in `cfg` (and nothing else).
    pub fn apply(&self, cfg: &mut ContainerConfig) -> Result<(), DefenceError> {
        self.check(cfg.namespaces)?;
        cfg.capabilities = (self.caps != default_cap_mask()).then_some(self.caps);
        cfg.seccomp = !self.privileged && self.seccomp != SeccompChoice::Unconfined;
        cfg.seccomp_profile = self.compile()?.map(Arc::new);
        // Unconfined means no filter at all, as in Docker: the small
        // TIOCSTI filter goes with the main one.
        cfg.deny_tiocsti = cfg.deny_tiocsti && cfg.seccomp;
        if let Some(n) = self.no_new_privs {
            cfg.no_new_privs = n;
        }
        if self.privileged || self.systempaths_unconfined {
            cfg.masked_paths = Some(Vec::new());
            cfg.readonly_paths = Some(Vec::new());
        }
        cfg.sys_writable = self.privileged;
        cfg.device_allowlist = !self.privileged;
        Ok(())
    }
}

/// For `--explain`: each defence of `cfg`, on or off.
pub fn describe(cfg: &ContainerConfig) -> Vec<String> {
    let mut lines = Vec::new();
    let seccomp = match (&cfg.seccomp_profile, cfg.seccomp) {
        (_, false) => "seccomp: OFF (no filter: every system call reaches the host kernel)".to_string(),
        (Some(p), true) => format!("seccomp: {}", p.summary()),
        (None, true) => format!(
            "seccomp: virtlab's default filter ({} calls EPERM, namespace flags of clone/unshare checked)",
            crate::runtime::seccomp::DENIED.len()
        ),
    };
    lines.push(seccomp);
    if let Some(p) = &cfg.seccomp_profile {
        lines.extend(p.notes.iter().map(|n| format!("  profile note: {n}")));
    }
    let caps = cfg.capabilities.unwrap_or_else(default_cap_mask);
    let default = default_cap_mask();
    let added = cap_names(caps & !default);
    let dropped = cap_names(default & !caps);
    let cap_line = if cfg.capabilities.is_none() || caps == default {
        format!("capabilities: Docker's default set ({} of them)", cap_names(default).len())
    } else if caps & all_caps() == all_caps() {
        "capabilities: ALL (inside the user namespace: root there is still an unprivileged host user)".to_string()
    } else {
        format!(
            "capabilities: {} kept; added {}; dropped {}",
            cap_names(caps).len(),
            if added.is_empty() { "none".into() } else { added.join(",") },
            if dropped.is_empty() { "none".into() } else { dropped.join(",") }
        )
    };
    lines.push(cap_line);
    lines.push(format!("no_new_privs: {}", if cfg.no_new_privs { "on (setuid binaries gain nothing)" } else { "OFF" }));
    let masked = cfg.masked_paths.as_ref().map_or(MASKED_PATHS.len(), Vec::len);
    let ro = cfg.readonly_paths.as_ref().map_or(READ_ONLY_PATHS.len(), Vec::len);
    lines.push(if !cfg.namespaces.mnt {
        "masked and read-only /proc paths: none (no mount namespace, so no /proc of its own)".into()
    } else if masked == 0 && ro == 0 {
        "masked and read-only /proc paths: OFF (/proc/kcore, /proc/keys, /proc/sys ... as the host has them)".into()
    } else {
        format!("masked /proc paths: {masked}, read-only /proc paths: {ro}")
    });
    if cfg.namespaces.mnt && cfg.mounts.is_none() {
        lines.push(format!("/sys: {}", if cfg.sys_writable { "read-write (privileged)" } else { "read-only" }));
    }
    lines.push(format!(
        "devices: {}",
        if cfg.device_allowlist {
            "Docker's allowlist (devices cgroup)"
        } else {
            "OFF (any device node may be opened)"
        }
    ));
    lines.push(format!(
        "terminal input (TIOCSTI): {}",
        if cfg.deny_tiocsti { "refused by a second filter" } else { "OFF" }
    ));
    lines.push(format!(
        "user namespace: {}",
        if cfg.namespaces.user { "on (container root is an unprivileged host uid)" } else { "OFF" }
    ));
    lines
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::runtime::plan::cap;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn no_file(_: &Path) -> std::io::Result<String> {
        Err(std::io::Error::from(std::io::ErrorKind::NotFound))
    }

    #[test]
    fn capabilities_follow_dockers_rule() {
        let d = default_cap_mask();
        assert_eq!(capabilities(&[], &[], false).unwrap(), d);
        assert_eq!(capabilities(&strings(&["sys_admin"]), &[], false).unwrap(), d | (1 << cap::SYS_ADMIN));
        assert_eq!(
            capabilities(&strings(&["CAP_SYS_ADMIN"]), &strings(&["chown"]), false).unwrap(),
            (d | (1 << cap::SYS_ADMIN)) & !(1 << cap::CHOWN)
        );
        assert_eq!(capabilities(&[], &strings(&["ALL"]), false).unwrap(), 0);
        assert_eq!(capabilities(&strings(&["NET_RAW"]), &strings(&["all"]), false).unwrap(), 1 << cap::NET_RAW);
        assert_eq!(
            capabilities(&strings(&["ALL"]), &strings(&["MKNOD"]), false).unwrap(),
            all_caps() & !(1 << cap::MKNOD)
        );
        assert_eq!(capabilities(&[], &strings(&["ALL"]), true).unwrap(), all_caps());
        let e = capabilities(&strings(&["SYS_WIZARD"]), &[], false).unwrap_err().to_string();
        assert!(e.contains("SYS_WIZARD") && e.contains("--cap-add"), "{e}");
    }

    #[test]
    fn security_options_are_read_or_refused_by_name() {
        let parse = |opts: &[&str]| Defences::parse(&strings(opts), &[], &[], false, no_file);
        assert_eq!(parse(&["seccomp=unconfined"]).unwrap().seccomp, SeccompChoice::Unconfined);
        assert_eq!(parse(&["no-new-privileges"]).unwrap().no_new_privs, Some(true));
        assert_eq!(parse(&["no-new-privileges=false"]).unwrap().no_new_privs, Some(false));
        assert!(parse(&["systempaths=unconfined"]).unwrap().systempaths_unconfined);
        for (opt, word) in [
            ("apparmor=unconfined", "AppArmor"),
            ("label=disable", "SELinux"),
            ("mask=/x", "unknown option"),
            ("seccomp:unconfined", "KEY=VALUE"),
            ("seccomp=/nonexistent/profile.json", "/nonexistent/profile.json"),
        ] {
            let e = parse(&[opt]).unwrap_err().to_string();
            assert!(e.contains(word), "{opt}: {e}");
        }
        let read = |_: &Path| Ok(r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#.to_string());
        let d = Defences::parse(&strings(&["seccomp=p.json"]), &[], &[], false, read).unwrap();
        let mut cfg = ContainerConfig::new("/r", vec!["true".into()]);
        d.apply(&mut cfg).unwrap();
        assert!(cfg.seccomp && cfg.seccomp_profile.is_some());
    }

    #[test]
    fn privileged_switches_every_defence_off_but_the_user_namespace() {
        let d = Defences::parse(&[], &[], &[], true, no_file).unwrap();
        let mut cfg = ContainerConfig::new("/r", vec!["true".into()]);
        d.apply(&mut cfg).unwrap();
        assert!(!cfg.seccomp && cfg.sys_writable && !cfg.device_allowlist && !cfg.deny_tiocsti);
        assert_eq!(cfg.capabilities, Some(all_caps()));
        assert_eq!(cfg.masked_paths, Some(vec![]));
        assert!(cfg.namespaces.user);
        let text = describe(&cfg).join("\n");
        let mut host = ContainerConfig::new("/r", vec!["true".into()]);
        host.namespaces = Namespaces::parse("mnt,pid").unwrap();
        assert!(matches!(d.apply(&mut host), Err(DefenceError::PrivilegedHostRoot)));
        assert!(text.contains("seccomp: OFF") && text.contains("capabilities: ALL"), "{text}");
    }
}
