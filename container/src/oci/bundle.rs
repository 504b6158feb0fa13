//! `config.json` to [`ContainerConfig`]: each part of the runtime
//! specification virtlab honours, and a clear error for each it does not.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxNamespaceType, Mount, Process, Spec};

use super::{unsupported, OciError, SPEC_MAJOR};
use crate::runtime::config::{ContainerConfig, MountSpec, Namespaces, Rlimit, User};
use crate::runtime::hooks::{Hook, HookKind};
use crate::runtime::idmap::{IdRange, IdRanges};
use crate::runtime::nsjoin::{NsJoin, NsKind};
use crate::runtime::seccomp_profile::Target;

/// A bundle read and checked.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory, absolute.
    pub dir: PathBuf,
    /// What the launcher runs.
    pub config: ContainerConfig,
    /// `process.terminal`: the process wants a terminal.
    pub terminal: bool,
    /// `hooks`, checked, in the order each kind runs them.
    pub hooks: Vec<Hook>,
    /// `annotations`, which the hooks' state carries.
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Reads the bundle at `dir` (its `config.json` and root).
pub fn load(dir: &Path) -> Result<Bundle, OciError> {
    let io = |what: String| move |cause| OciError::Io { what, cause };
    let dir = std::fs::canonicalize(dir).map_err(io(format!("open the bundle {}", dir.display())))?;
    let path = dir.join("config.json");
    if !path.is_file() {
        return Err(OciError::NoConfig { bundle: dir });
    }
    let spec = Spec::load(&path).map_err(|e| OciError::BadConfig { path: path.clone(), cause: e.to_string() })?;
    convert(&dir, &spec)
}

/// The conversion itself, for a spec already read.
pub fn convert(dir: &Path, spec: &Spec) -> Result<Bundle, OciError> {
    if !spec.version().starts_with(SPEC_MAJOR) {
        return Err(OciError::Version { found: spec.version().clone() });
    }
    let root = spec.root().as_ref().ok_or_else(|| unsupported("root", "missing: name the root file system"))?;
    let rootfs = if root.path().is_absolute() { root.path().clone() } else { dir.join(root.path()) };
    if !rootfs.is_dir() {
        return Err(OciError::Root { path: rootfs });
    }
    let process = spec.process().as_ref().ok_or_else(|| unsupported("process", "missing: say what to run"))?;
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(unsupported("process.args", "empty: name the program to run"));
    }
    let mut cfg = ContainerConfig::new(rootfs, args);
    cfg.read_only = root.readonly().unwrap_or(false);
    process_part(&mut cfg, process)?;
    linux_part(&mut cfg, spec)?;
    if let Some(h) = spec.hostname() {
        if !cfg.namespaces.uts {
            return Err(unsupported("hostname", "needs a uts namespace in linux.namespaces"));
        }
        cfg.hostname = h.clone();
    } else if crate::runtime::nsjoin::joins(&cfg.join_namespaces, NsKind::Uts) {
        // A joined uts namespace keeps its hostname.
        cfg.hostname = String::new();
    }
    if spec.domainname().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(unsupported("domainname", "not supported"));
    }
    let mut mounts = Vec::new();
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        mounts.extend(mount(dir, i, m)?);
    }
    let hooks = match spec.hooks() {
        Some(h) => hooks(h, &cfg.rootfs, &mounts)?,
        None => Vec::new(),
    };
    cfg.mounts = Some(mounts);
    let annotations = spec.annotations().iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
    Ok(Bundle {
        dir: dir.to_path_buf(),
        config: cfg,
        terminal: process.terminal().unwrap_or(false),
        hooks,
        annotations,
    })
}

/// `hooks`, each checked: an absolute path to an executable file where it
/// runs (the host for all but `startContainer`, which runs inside the
/// root; `createContainer` runs in the container's namespaces before
/// pivot_root, so its path is the host's, as with runc), a timeout above 0.
fn hooks(h: &oci_spec::runtime::Hooks, rootfs: &Path, mounts: &[MountSpec]) -> Result<Vec<Hook>, OciError> {
    let lists = [
        (HookKind::Prestart, h.prestart()),
        (HookKind::CreateRuntime, h.create_runtime()),
        (HookKind::CreateContainer, h.create_container()),
        (HookKind::StartContainer, h.start_container()),
        (HookKind::Poststart, h.poststart()),
        (HookKind::Poststop, h.poststop()),
    ];
    let mut out = Vec::new();
    for (kind, list) in lists {
        for (index, spec) in list.iter().flatten().enumerate() {
            let field = format!("hooks.{}[{index}]", kind.name());
            let path = spec.path();
            if !path.is_absolute() {
                return Err(unsupported(
                    format!("{field}.path"),
                    format!("{} is not absolute: give the program's absolute path", path.display()),
                ));
            }
            if kind == HookKind::StartContainer {
                // Inside the root; a path under one of the mounts is only
                // there once they are made.
                let mounted =
                    mounts.iter().any(|m| path.starts_with(&m.destination) && m.destination != Path::new("/"));
                let inside = rootfs.join(path.strip_prefix("/").unwrap_or(path));
                if !mounted && inside.symlink_metadata().is_err() {
                    return Err(unsupported(format!("{field}.path"), format!("{} is not in the container's root file system {} (startContainer hooks run inside it): put the program there", path.display(), rootfs.display())));
                }
            } else {
                executable(path)
                    .map_err(|why| unsupported(format!("{field}.path"), format!("{}: {why}", path.display())))?;
            }
            let timeout = match spec.timeout() {
                Some(t) if t <= 0 => {
                    return Err(unsupported(
                        format!("{field}.timeout"),
                        format!("{t}: must be above 0 (seconds), or left out for no limit"),
                    ))
                }
                Some(t) => Some(std::time::Duration::from_secs(t as u64)),
                None => None,
            };
            for e in spec.env().iter().flatten() {
                if !e.contains('=') {
                    return Err(unsupported(format!("{field}.env"), format!("{e:?} is not KEY=VALUE")));
                }
            }
            out.push(Hook {
                kind,
                index,
                path: path.clone(),
                args: spec.args().clone().unwrap_or_default(),
                env: spec.env().clone().unwrap_or_default(),
                timeout,
            });
        }
    }
    Ok(out)
}

/// Why `path` cannot be run, if it cannot: missing, not a file, no x bit.
fn executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot be found ({e}): install it, or fix the path"))?;
    if !meta.is_file() {
        return Err("is not a regular file: give a program".into());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err("is not executable: chmod +x it".into());
    }
    Ok(())
}

/// One more process of the bundle's container (an OCI `exec`): the
/// bundle's configuration (its seccomp filter, rlimits, defences) with
/// `process` (a `process.json`, or the bundle's own process with another
/// command) in place of the bundle's own. With it, whether that process
/// wants a terminal.
pub fn exec_config(dir: &Path, process: &Process) -> Result<(ContainerConfig, bool), OciError> {
    let mut cfg = load(dir)?.config;
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(unsupported("process.args", "empty: name the program to run"));
    }
    cfg.argv = args;
    cfg.env.clear();
    cfg.user = None;
    cfg.pid_file = None;
    cfg.console_socket = None;
    process_part(&mut cfg, process)?;
    Ok((cfg, process.terminal().unwrap_or(false)))
}

/// The bundle's own `process`, to start an `exec` from.
pub fn own_process(dir: &Path) -> Result<Process, OciError> {
    let path = dir.join("config.json");
    let spec = Spec::load(&path).map_err(|e| OciError::BadConfig { path: path.clone(), cause: e.to_string() })?;
    spec.process().clone().ok_or_else(|| unsupported("process", "missing: say what to run"))
}

fn process_part(cfg: &mut ContainerConfig, p: &Process) -> Result<(), OciError> {
    for e in p.env().iter().flatten() {
        let (k, v) = e.split_once('=').ok_or_else(|| unsupported("process.env", format!("{e:?} is not KEY=VALUE")))?;
        cfg.env.push((k.to_string(), v.to_string()));
    }
    if !p.cwd().is_absolute() {
        return Err(unsupported("process.cwd", "must be an absolute path"));
    }
    cfg.workdir = p.cwd().clone();
    let user = p.user();
    if user.additional_gids().as_ref().is_some_and(|g| !g.is_empty()) {
        return Err(unsupported("process.user.additionalGids", "supplementary groups are not supported yet"));
    }
    if user.umask().is_some_and(|m| m != 0o022) {
        return Err(unsupported("process.user.umask", "only the usual 0022 is supported"));
    }
    if user.uid() != 0 || user.gid() != 0 {
        cfg.user = Some(User { uid: user.uid(), gid: user.gid() });
    }
    if let Some(c) = p.capabilities() {
        let set = |name: &str, s: &Option<oci_spec::runtime::Capabilities>| -> Result<u64, OciError> {
            s.iter()
                .flatten()
                .try_fold(0u64, |m, c| Ok(m | (1u64 << cap_number(&format!("process.capabilities.{name}"), c)?)))
        };
        let bounding = set("bounding", c.bounding())?;
        if set("effective", c.effective())? != bounding || set("permitted", c.permitted())? != bounding {
            return Err(unsupported(
                "process.capabilities",
                "virtlab keeps one set: bounding, effective and permitted must list the same capabilities",
            ));
        }
        let root = cfg.user.is_none();
        for (name, extra) in [("ambient", c.ambient()), ("inheritable", c.inheritable())] {
            let mask = set(name, extra)?;
            // For root the effective set already holds them all.
            if mask != 0 && !(root && mask & !bounding == 0) {
                return Err(unsupported(
                    format!("process.capabilities.{name}"),
                    "supported only for a root process, within the bounding set",
                ));
            }
        }
        cfg.capabilities = Some(bounding);
    } else {
        cfg.capabilities = Some(0);
    }
    cfg.rlimits.clear();
    for r in p.rlimits().iter().flatten() {
        let name = serde_json::to_value(r.typ()).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let resource =
            rlimit_number(&name).ok_or_else(|| unsupported("process.rlimits", format!("{name} is unknown")))?;
        cfg.rlimits.push(Rlimit { resource, soft: r.soft(), hard: r.hard() });
    }
    cfg.no_new_privs = p.no_new_privileges().unwrap_or(false);
    let unsupported_if = |set: bool, field: &str| if set { Err(unsupported(field, "not supported")) } else { Ok(()) };
    unsupported_if(p.apparmor_profile().is_some(), "process.apparmorProfile")?;
    unsupported_if(p.selinux_label().is_some(), "process.selinuxLabel")?;
    unsupported_if(p.oom_score_adj().is_some(), "process.oomScoreAdj")?;
    unsupported_if(p.io_priority().is_some(), "process.ioPriority")?;
    unsupported_if(p.scheduler().is_some(), "process.scheduler")?;
    unsupported_if(p.exec_cpu_affinity().is_some(), "process.execCPUAffinity")?;
    Ok(())
}

fn linux_part(cfg: &mut ContainerConfig, spec: &Spec) -> Result<(), OciError> {
    let Some(l) = spec.linux() else {
        return Err(unsupported("linux", "missing: virtlab runs Linux containers"));
    };
    let mut ns = Namespaces::NONE;
    let mut joins = Vec::new();
    for (i, n) in l.namespaces().iter().flatten().enumerate() {
        let (switch, kind) = match n.typ() {
            LinuxNamespaceType::Mount => (&mut ns.mnt, None),
            LinuxNamespaceType::Cgroup => (&mut ns.cgroup, Some(NsKind::Cgroup)),
            LinuxNamespaceType::Uts => (&mut ns.uts, Some(NsKind::Uts)),
            LinuxNamespaceType::Ipc => (&mut ns.ipc, Some(NsKind::Ipc)),
            LinuxNamespaceType::User => (&mut ns.user, Some(NsKind::User)),
            LinuxNamespaceType::Pid => (&mut ns.pid, Some(NsKind::Pid)),
            LinuxNamespaceType::Network => (&mut ns.net, Some(NsKind::Net)),
            other => return Err(unsupported(format!("linux.namespaces[{i}]"), format!("{other:?} is not supported"))),
        };
        if *switch {
            return Err(unsupported(
                format!("linux.namespaces[{i}]"),
                format!("a second {:?} entry: give each type once", n.typ()),
            ));
        }
        *switch = true;
        let Some(path) = n.path() else { continue };
        let field = format!("linux.namespaces[{i}].path");
        let Some(kind) = kind else {
            return Err(unsupported(
                field,
                "joining a mount namespace is not supported: virtlab builds the container's root in a mount namespace of its own (leave the path out)",
            ));
        };
        if !path.is_absolute() {
            return Err(unsupported(field, format!("{} is not an absolute path", path.display())));
        }
        // Opened (and its type checked) by the launcher, before it makes anything.
        joins.push(NsJoin { kind, path: path.clone(), field });
    }
    cfg.namespaces = ns;
    let joined_user = joins.iter().find(|j| j.kind == NsKind::User).map(|j| j.field.clone());
    if let Some(field) = &joined_user {
        if l.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || l.gid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        {
            return Err(unsupported(
                "linux.uidMappings",
                format!("the user namespace is joined ({field}): its maps are already written, leave uidMappings and gidMappings out"),
            ));
        }
    }
    cfg.join_namespaces = joins;
    let one =
        |field: &str, maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| -> Result<Option<IdRange>, OciError> {
            match maps.as_deref().unwrap_or_default() {
                [] => Ok(None),
                [m] if m.container_id() == 0 => Ok(Some(IdRange { start: m.host_id(), count: m.size() })),
                _ => Err(unsupported(field, "one range starting at container id 0 is supported")),
            }
        };
    match (one("linux.uidMappings", l.uid_mappings())?, one("linux.gidMappings", l.gid_mappings())?, ns.user) {
        (Some(uid), Some(gid), true) => cfg.id_ranges = Some(IdRanges { uid, gid, source: "config.json" }),
        (None, None, true) => {}
        (None, None, false) => {}
        (_, _, false) => return Err(unsupported("linux.uidMappings", "needs a user namespace in linux.namespaces")),
        _ => return Err(unsupported("linux.uidMappings", "give both uidMappings and gidMappings")),
    }
    if let Some(r) = l.resources() {
        if let Some(m) = r.memory() {
            cfg.limits.memory = m.limit().filter(|v| *v > 0).map(|v| v as u64);
        }
        if let Some(c) = r.cpu() {
            if let (Some(q), Some(p)) = (c.quota(), c.period()) {
                if q > 0 && p > 0 {
                    cfg.limits.cpus = Some(q as f64 / p as f64);
                }
            }
        }
        if let Some(p) = r.pids() {
            cfg.limits.pids = Some(p.limit()).filter(|v| *v > 0).map(|v| v as u64);
        }
        // virtlab's own allowlist (null, zero, full, random, urandom, tty,
        // ptys) is what a deny-all list with runc's defaults allows.
        for (i, d) in r.devices().iter().flatten().enumerate() {
            if d.allow() || i > 0 {
                return Err(unsupported(
                    "linux.resources.devices",
                    "only a deny-all entry (virtlab then allows its default devices, as runc does) is supported",
                ));
            }
        }
    }
    if let Some(p) = l.cgroups_path() {
        let text = p.to_string_lossy();
        if text.contains(':') {
            return Err(unsupported(
                "linux.cgroupsPath",
                "a systemd slice path (slice:prefix:name): virtlab uses cgroupfs paths",
            ));
        }
        if text.split('/').any(|c| c == "..") || text.trim_matches('/').is_empty() {
            return Err(unsupported("linux.cgroupsPath", "must name a cgroup below the root, without .."));
        }
        cfg.cgroup_path = Some(text.trim_start_matches('/').to_string());
    }
    match l.seccomp() {
        // The same fields as Docker's profile: compiled the same way. Its
        // rules' `includes` see the capabilities of `process`.
        Some(s) => {
            let value = serde_json::to_value(s).map_err(|e| unsupported("linux.seccomp", e.to_string()))?;
            let caps = cfg.capabilities.unwrap_or(0);
            let compiled = crate::runtime::seccomp_profile::compile_value("linux.seccomp", value, Target::host(caps))
                .map_err(|e| OciError::Seccomp(Box::new(e)))?;
            cfg.seccomp = true;
            cfg.seccomp_profile = Some(std::sync::Arc::new(compiled));
        }
        // No `linux.seccomp`: no filter, as the specification (and runc) has it.
        None => cfg.seccomp = false,
    }
    for (key, value) in l.sysctl().iter().flatten() {
        let field = format!("linux.sysctl.{key}");
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            return Err(unsupported(field, "not a sysctl name"));
        }
        // Only what the container's own namespaces hold, as runc allows.
        let own = (key.starts_with("net.") && ns.net)
            || ((key.starts_with("kernel.shm")
                || key.starts_with("kernel.msg")
                || key == "kernel.sem"
                || key.starts_with("fs.mqueue."))
                && ns.ipc)
            || ((key == "kernel.hostname" || key == "kernel.domainname") && ns.uts);
        if !own {
            return Err(unsupported(
                field,
                "only sysctls of the container's own network, IPC or UTS namespace can be set",
            ));
        }
        cfg.sysctl.push((key.clone(), value.clone()));
    }
    if l.rootfs_propagation().as_deref().is_some_and(|p| !matches!(p, "private" | "rprivate")) {
        return Err(unsupported("linux.rootfsPropagation", "only private is supported"));
    }
    for (set, field) in [(l.mount_label().is_some(), "linux.mountLabel"), (l.intel_rdt().is_some(), "linux.intelRdt")] {
        if set {
            return Err(unsupported(field, "not supported"));
        }
    }
    cfg.masked_paths = Some(l.masked_paths().clone().unwrap_or_default());
    cfg.readonly_paths = Some(l.readonly_paths().clone().unwrap_or_default());
    Ok(())
}

/// One `mounts` entry: its options split into mount(2) flags and data.
/// The `cgroup` type becomes what runc mounts for it.
fn mount(dir: &Path, i: usize, m: &Mount) -> Result<Vec<MountSpec>, OciError> {
    let field = format!("mounts[{i}]");
    let mut flags = MsFlags::empty();
    let mut data: Vec<String> = Vec::new();
    let typ = m.typ().clone().filter(|t| !t.is_empty());
    let mut bind = typ.as_deref() == Some("bind");
    for o in m.options().iter().flatten() {
        let f = match o.as_str() {
            "ro" => MsFlags::MS_RDONLY,
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            "noexec" => MsFlags::MS_NOEXEC,
            "sync" => MsFlags::MS_SYNCHRONOUS,
            "dirsync" => MsFlags::MS_DIRSYNC,
            "noatime" => MsFlags::MS_NOATIME,
            "nodiratime" => MsFlags::MS_NODIRATIME,
            "relatime" => MsFlags::MS_RELATIME,
            "strictatime" => MsFlags::MS_STRICTATIME,
            "mand" => MsFlags::MS_MANDLOCK,
            "bind" => {
                bind = true;
                MsFlags::MS_BIND
            }
            "rbind" => {
                bind = true;
                MsFlags::MS_BIND | MsFlags::MS_REC
            }
            // The defaults, and the propagation every mount of the
            // container already has (its mount namespace is made private).
            "rw" | "suid" | "dev" | "exec" | "async" | "atime" | "diratime" | "nomand" | "norelatime"
            | "nostrictatime" | "private" | "rprivate" => MsFlags::empty(),
            "shared" | "rshared" | "slave" | "rslave" | "unbindable" | "runbindable" => {
                return Err(unsupported(
                    format!("{field}.options"),
                    format!("{o}: only private propagation is supported"),
                ));
            }
            other => {
                data.push(other.to_string());
                MsFlags::empty()
            }
        };
        flags |= f;
    }
    if bind {
        flags |= MsFlags::MS_BIND;
    }
    let source = m.source().clone().map(|s| if s.is_absolute() || !bind { s } else { dir.join(s) });
    if bind && !source.as_ref().is_some_and(|s| s.exists()) {
        return Err(unsupported(format!("{field}.source"), "a bind mount's source must exist on the host"));
    }
    let data = (!data.is_empty()).then(|| data.join(","));
    if typ.as_deref() == Some("cgroup") {
        return Ok(cgroup_mounts(m.destination(), flags));
    }
    Ok(vec![MountSpec {
        destination: m.destination().clone(),
        fstype: if bind { None } else { typ },
        source,
        flags: flags.bits(),
        data,
    }])
}

/// A `cgroup` mount as runc makes it: on cgroup v2 the unified hierarchy;
/// on v1 (and hybrid) a tmpfs with one hierarchy per controller (each shows
/// the container's own cgroup, through its cgroup namespace).
fn cgroup_mounts(dest: &Path, flags: MsFlags) -> Vec<MountSpec> {
    let v2 = crate::runtime::cgroup::detect(Path::new(crate::runtime::cgroup::DEFAULT_ROOT)).is_ok_and(|m| !m.is_v1());
    if v2 {
        let fstype = Some("cgroup2".to_string());
        return vec![MountSpec {
            destination: dest.to_path_buf(),
            fstype,
            source: None,
            flags: flags.bits(),
            data: None,
        }];
    }
    let ro = flags & MsFlags::MS_RDONLY;
    let base = flags - MsFlags::MS_RDONLY;
    let mut out = vec![MountSpec {
        destination: dest.to_path_buf(),
        fstype: Some("tmpfs".into()),
        source: None,
        flags: base.bits(),
        data: Some("mode=755".into()),
    }];
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers) = (parts.next(), parts.next().unwrap_or_default());
        if controllers.is_empty() {
            continue;
        }
        let (name, data) = match controllers.strip_prefix("name=") {
            Some(n) => (n.to_string(), format!("none,name={n}")),
            None => (controllers.to_string(), controllers.to_string()),
        };
        out.push(MountSpec {
            destination: dest.join(&name),
            fstype: Some("cgroup".into()),
            source: None,
            flags: (base | ro).bits(),
            data: Some(data),
        });
    }
    out
}

/// capabilities(7) numbers, by the runtime spec's names.
fn cap_number(field: &str, c: &oci_spec::runtime::Capability) -> Result<u32, OciError> {
    let name = serde_json::to_value(c).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    CAPABILITIES
        .iter()
        .position(|n| *n == name)
        .map(|p| p as u32)
        .ok_or_else(|| unsupported(field, format!("{name} is not a capability this kernel has")))
}

/// The capabilities, by number (capabilities(7)), with the spec's names.
pub use crate::runtime::defences::CAPABILITIES;

/// setrlimit(2) resource numbers, by the runtime spec's names.
fn rlimit_number(name: &str) -> Option<i32> {
    let r = match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    };
    Some(r as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// oci-spec's default config.json (close to `runc spec`'s, which the
    /// integration tests use as it is).
    fn runc_default(dir: &Path) -> Spec {
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        Spec::default()
    }

    #[test]
    fn runcs_default_bundle_converts_field_by_field() {
        let dir = tempfile::tempdir().unwrap();
        let spec = runc_default(dir.path());
        let b = convert(dir.path(), &spec).unwrap();
        let c = &b.config;
        assert_eq!(b.terminal, spec.process().as_ref().unwrap().terminal().unwrap_or(false));
        assert_eq!(c.argv, ["sh"]);
        assert!(c.read_only);
        assert_eq!(Some(&c.hostname), spec.hostname().as_ref());
        assert!(c.namespaces.pid && c.namespaces.mnt && c.namespaces.net && !c.namespaces.user);
        let caps = c.capabilities.unwrap();
        assert_eq!(caps, (1 << 29) | (1 << 5) | (1 << 10), "AUDIT_WRITE, KILL, NET_BIND_SERVICE");
        assert!(c.no_new_privs);
        assert_eq!(c.rlimits, [Rlimit { resource: libc::RLIMIT_NOFILE as i32, soft: 1024, hard: 1024 }]);
        let mounts = c.mounts.as_ref().unwrap();
        let dev = mounts.iter().find(|m| m.destination == Path::new("/dev")).unwrap();
        assert_eq!(dev.fstype.as_deref(), Some("tmpfs"));
        assert_eq!(dev.data.as_deref(), Some("mode=755,size=65536k"));
        assert!(MsFlags::from_bits_truncate(dev.flags).contains(MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME));
        assert!(c.masked_paths.as_ref().unwrap().contains(&"/proc/kcore".to_string()));
    }

    #[test]
    fn linux_seccomp_compiles_as_a_docker_profile() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = runc_default(dir.path());
        let profile: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        }))
        .unwrap();
        let mut linux = spec.linux().clone().unwrap();
        linux.set_seccomp(Some(profile));
        spec.set_linux(Some(linux));
        let c = convert(dir.path(), &spec).unwrap().config;
        assert!(c.seccomp);
        let p = c.seccomp_profile.unwrap();
        assert_eq!(p.calls.len(), 2, "{}", p.summary());
        let bad: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_TRACE"
        }))
        .unwrap();
        let mut linux = spec.linux().clone().unwrap();
        linux.set_seccomp(Some(bad));
        spec.set_linux(Some(linux));
        let e = convert(dir.path(), &spec).unwrap_err().to_string();
        assert!(e.contains("linux.seccomp") && e.contains("defaultAction"), "{e}");
    }

    #[test]
    fn what_virtlab_cannot_honour_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = runc_default(dir.path());
        spec.set_version("2.0.0".into());
        assert!(matches!(convert(dir.path(), &spec), Err(OciError::Version { .. })));
        let mut spec = runc_default(dir.path());
        spec.set_domainname(Some("example".into()));
        let e = convert(dir.path(), &spec).unwrap_err().to_string();
        assert!(e.contains("domainname"), "{e}");
        let mut spec = runc_default(dir.path());
        let mut linux = spec.linux().clone().unwrap();
        linux.set_cgroups_path(Some("system.slice:virtlab:x".into()));
        spec.set_linux(Some(linux));
        let e = convert(dir.path(), &spec).unwrap_err().to_string();
        assert!(e.contains("linux.cgroupsPath"), "{e}");
        let mut spec = runc_default(dir.path());
        let mut root = spec.root().clone().unwrap();
        root.set_path("missing".into());
        spec.set_root(Some(root));
        assert!(matches!(convert(dir.path(), &spec), Err(OciError::Root { .. })));
    }

    fn with_hooks(dir: &Path, hooks: serde_json::Value) -> Spec {
        let mut spec = runc_default(dir);
        spec.set_hooks(Some(serde_json::from_value(hooks).unwrap()));
        spec
    }

    #[test]
    fn hooks_convert_in_order_with_their_fields() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rootfs/bin")).unwrap();
        std::fs::write(dir.path().join("rootfs/bin/inside"), "").unwrap();
        let spec = with_hooks(
            dir.path(),
            serde_json::json!({
                "prestart": [{"path": "/bin/sh"}],
                "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "true"], "env": ["A=1"], "timeout": 5},
                                  {"path": "/bin/true"}],
                "createContainer": [{"path": "/bin/sh"}],
                "startContainer": [{"path": "/bin/inside"}],
                "poststart": [{"path": "/bin/sh"}],
                "poststop": [{"path": "/bin/sh"}]
            }),
        );
        let b = convert(dir.path(), &spec).unwrap();
        let fields: Vec<String> = b.hooks.iter().map(Hook::field).collect();
        assert_eq!(
            fields,
            [
                "hooks.prestart[0]",
                "hooks.createRuntime[0]",
                "hooks.createRuntime[1]",
                "hooks.createContainer[0]",
                "hooks.startContainer[0]",
                "hooks.poststart[0]",
                "hooks.poststop[0]"
            ]
        );
        let h = &b.hooks[1];
        assert_eq!(h.args, ["sh", "-c", "true"]);
        assert_eq!(h.env, ["A=1"]);
        assert_eq!(h.timeout, Some(std::time::Duration::from_secs(5)));
        assert_eq!(b.hooks[2].timeout, None);
        assert!(b.config.hooks.is_none(), "the caller sets them, with the container's ID");
    }

    #[test]
    fn a_hook_that_cannot_run_is_refused_naming_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let not_exec = dir.path().join("plain-file");
        std::fs::write(&not_exec, "").unwrap();
        let cases = [
            (serde_json::json!({"createRuntime": [{"path": "/no/such/hook"}]}), "hooks.createRuntime[0].path"),
            (serde_json::json!({"poststop": [{"path": "relative/hook"}]}), "hooks.poststop[0].path"),
            (serde_json::json!({"prestart": [{"path": not_exec}]}), "chmod +x"),
            (serde_json::json!({"poststart": [{"path": "/bin/sh", "timeout": 0}]}), "hooks.poststart[0].timeout"),
            (
                serde_json::json!({"createContainer": [{"path": "/bin/sh", "env": ["NOEQUALS"]}]}),
                "hooks.createContainer[0].env",
            ),
            (serde_json::json!({"startContainer": [{"path": "/not/in/rootfs"}]}), "hooks.startContainer[0].path"),
        ];
        for (hooks, says) in cases {
            let spec = with_hooks(dir.path(), hooks.clone());
            let e = convert(dir.path(), &spec).unwrap_err().to_string();
            assert!(e.contains(says), "{hooks}: {e}");
        }
    }

    #[test]
    fn namespaces_joined_by_path_are_kept_apart_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let with = |entries: serde_json::Value, maps: bool| {
            let mut spec = runc_default(dir.path());
            let mut linux = spec.linux().clone().unwrap();
            linux.set_namespaces(Some(serde_json::from_value(entries).unwrap()));
            if maps {
                let m: Vec<oci_spec::runtime::LinuxIdMapping> =
                    serde_json::from_value(serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]))
                        .unwrap();
                linux.set_uid_mappings(Some(m.clone()));
                linux.set_gid_mappings(Some(m));
            }
            spec.set_linux(Some(linux));
            spec.set_hostname(None);
            convert(dir.path(), &spec)
        };
        let c = with(
            serde_json::json!([{"type": "pid"}, {"type": "mount"}, {"type": "network", "path": "/run/netns/t"},
                {"type": "uts", "path": "/proc/1/ns/uts"}]),
            false,
        )
        .unwrap()
        .config;
        assert!(c.namespaces.net && c.namespaces.uts, "still the container's own, joined");
        let joined: Vec<(NsKind, &str)> = c.join_namespaces.iter().map(|j| (j.kind, j.field.as_str())).collect();
        assert_eq!(joined, [(NsKind::Net, "linux.namespaces[2].path"), (NsKind::Uts, "linux.namespaces[3].path")]);
        assert_eq!(c.hostname, "", "a joined uts namespace keeps its hostname");
        let err = |entries, maps| with(entries, maps).unwrap_err().to_string();
        let e = err(serde_json::json!([{"type": "mount", "path": "/proc/1/ns/mnt"}]), false);
        assert!(e.contains("linux.namespaces[0].path") && e.contains("mount namespace"), "{e}");
        let e =
            err(serde_json::json!([{"type": "mount"}, {"type": "network"}, {"type": "network", "path": "/x"}]), false);
        assert!(e.contains("linux.namespaces[2]") && e.contains("second"), "{e}");
        let e = err(serde_json::json!([{"type": "mount"}, {"type": "user", "path": "/proc/1/ns/user"}]), true);
        assert!(e.contains("linux.uidMappings") && e.contains("linux.namespaces[1].path"), "{e}");
        let e = err(serde_json::json!([{"type": "mount"}, {"type": "ipc", "path": "relative"}]), false);
        assert!(e.contains("linux.namespaces[1].path") && e.contains("absolute"), "{e}");
    }

    #[test]
    fn an_exec_process_replaces_the_bundles_own() {
        let dir = tempfile::tempdir().unwrap();
        let spec = runc_default(dir.path());
        spec.save(dir.path().join("config.json")).unwrap();
        let process: Process = serde_json::from_value(serde_json::json!({
            "terminal": true, "user": {"uid": 1000, "gid": 100}, "cwd": "/tmp",
            "args": ["sh", "-c", "id"], "env": ["ONLY=this"],
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}
        }))
        .unwrap();
        let (c, terminal) = exec_config(dir.path(), &process).unwrap();
        assert!(terminal);
        assert_eq!(c.argv, ["sh", "-c", "id"]);
        assert_eq!(c.env, [("ONLY".to_string(), "this".to_string())], "not added to the bundle's");
        assert_eq!(c.user, Some(User { uid: 1000, gid: 100 }));
        assert_eq!(c.workdir, Path::new("/tmp"));
        assert_eq!(c.capabilities, Some(1 << 5));
        assert_eq!(c.hostname, spec.hostname().clone().unwrap(), "the rest is the bundle's");
        let own = own_process(dir.path()).unwrap();
        assert_eq!(own.args().as_deref(), Some(&["sh".to_string()][..]));
        let mut empty = process.clone();
        empty.set_args(Some(Vec::new()));
        assert!(exec_config(dir.path(), &empty).unwrap_err().to_string().contains("process.args"));
    }
}
