//! `inspect`, `info` and `version`: a container's JSON description, and
//! what this host and store have.

use std::path::Path;

use clap::Args;
use serde_json::json;
use virtlab_container::engine::{Container, Status};
use virtlab_container::image::template;
use virtlab_container::time;

use super::lifecycle::{failed, RootArg};

/// `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    root: RootArg,
    /// A Go template over each object's JSON, e.g. '{{.State.Status}}'
    #[arg(short, long, value_name = "FORMAT")]
    format: Option<String>,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// A container's JSON, with Docker's field names for what it has.
fn container_json(c: &Container) -> serde_json::Value {
    let status = c.status();
    let exit = c.exit();
    let started = std::fs::metadata(c.dir.join("pid")).and_then(|m| m.modified()).ok().map(time::rfc3339);
    let spec = &c.config.spec;
    json!({
        "Id": c.config.id,
        "Name": format!("/{}", c.config.name),
        "Created": c.config.created,
        "Path": spec.argv.first(),
        "Args": spec.argv.get(1..).unwrap_or_default(),
        "State": {
            "Status": status.word(),
            "Running": matches!(status, Status::Up { .. }),
            "Dead": matches!(status, Status::Dead),
            "OOMKilled": exit.as_ref().is_some_and(|e| e.oom_killed),
            "Pid": match status { Status::Up { pid, .. } => pid, _ => 0 },
            "ExitCode": exit.as_ref().map_or(0, |e| e.code),
            "Error": exit.as_ref().and_then(|e| e.error.clone()).unwrap_or_default(),
            "StartedAt": started,
            "FinishedAt": exit.as_ref().map(|e| e.finished.clone()),
        },
        "Image": format!("sha256:{}", spec.image_id),
        "LogPath": c.log_path(),
        "Config": {
            "Image": spec.image,
            "Cmd": spec.argv,
            "Env": spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "WorkingDir": spec.workdir,
            "User": spec.user.clone().unwrap_or_default(),
            "Hostname": spec.hostname.clone().unwrap_or_else(|| c.short_id().to_string()),
            "Tty": spec.tty,
            "OpenStdin": spec.interactive,
        },
        "HostConfig": {
            "Memory": spec.memory.unwrap_or(0),
            "NanoCpus": spec.cpus.map_or(0, |c| (c * 1e9) as u64),
            "PidsLimit": spec.pids,
            "AutoRemove": spec.auto_remove,
            "ReadonlyRootfs": spec.read_only,
            "Namespaces": spec.namespaces,
            "Runtime": spec.runtime,
            "Privileged": spec.privileged,
            "CapAdd": (!spec.cap_add.is_empty()).then_some(&spec.cap_add),
            "CapDrop": (!spec.cap_drop.is_empty()).then_some(&spec.cap_drop),
            "SecurityOpt": (!spec.security_opt.is_empty()).then_some(&spec.security_opt),
        },
        "Driver": "overlay",
    })
}

/// `inspect CONTAINER...`: a JSON array, or `--format` per container.
pub fn inspect(args: &InspectArgs) -> anyhow::Result<u8> {
    if let Some(t) = &args.format {
        template::check(t)?;
    }
    let mut docs = Vec::new();
    let mut status = 0;
    for n in &args.containers {
        match Container::find(&args.root.path(), n) {
            Ok(c) => docs.push(container_json(&c)),
            Err(e) => status = failed(&e.into(), 1),
        }
    }
    match &args.format {
        Some(t) => {
            for d in &docs {
                println!("{}", template::render(t, d)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&docs)?),
    }
    Ok(status)
}

/// `system info`: where things are and what this host can do.
pub fn info(root: &RootArg) -> anyhow::Result<u8> {
    let root = root.path();
    let containers = Container::list(&root)?;
    let running = containers.iter().filter(|c| matches!(c.status(), Status::Up { .. })).count();
    let images = virtlab_container::image::Store::open(&root).and_then(|s| s.images()).map(|i| i.len()).unwrap_or(0);
    let cgroup = virtlab_container::cgroup::detect(Path::new("/sys/fs/cgroup"));
    let host = virtlab_compare::host::HostInfo::probe(false);
    let namespaces: Vec<&str> = ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"]
        .into_iter()
        .filter(|n| Path::new("/proc/self/ns").join(n).exists())
        .collect();
    println!("Containers: {}", containers.len());
    println!(" Running: {running}");
    println!(" Stopped: {}", containers.len() - running);
    println!("Images: {images}");
    println!("Storage Driver: overlay (each layer idmapped; detached mounts)");
    println!("Root Dir: {}", root.display());
    match cgroup {
        Ok(m) => println!(
            "Cgroup Driver: cgroupfs\nCgroup Version: {}",
            if m.is_v1() { format!("1 ({m:?})") } else { "2".into() }
        ),
        Err(e) => println!("Cgroup Driver: none ({e})"),
    }
    println!("Namespaces: {}", namespaces.join(" "));
    println!(
        "Security Options: seccomp (virtlab default; --security-opt seccomp=PROFILE.json), no-new-privileges, \
         masked /proc paths, read-only /sys, user namespaces (root maps to an unprivileged host range)"
    );
    println!("Kernel Version: {}", host.kernel);
    println!("CPUs: {}", host.cpus);
    println!("Total Memory: {} MiB", host.memory_mib);
    println!(
        "KVM: {}",
        match &host.kvm {
            Ok(()) => "available (`virtlab compare` measures whether it is nested)".to_string(),
            Err(e) => format!("not usable: {e}"),
        }
    );
    Ok(0)
}

/// `version`: this client and the engine it is (one binary: the engine
/// has no daemon), with what a bug report needs.
pub fn version() -> anyhow::Result<u8> {
    let host = virtlab_compare::host::HostInfo::probe(false);
    let v = env!("CARGO_PKG_VERSION");
    println!("Client: virtlab");
    println!(" Version:           {v}");
    println!(" OCI image spec:    {}", virtlab_container::image::OCI_IMAGE_SPEC_VERSION);
    println!(" Rust target:       {}-{}", std::env::consts::ARCH, std::env::consts::OS);
    println!();
    println!("Engine: virtlab (no daemon: each command reads the store; a monitor process per running container)");
    println!(" Version:           {v}");
    println!(" Runtime:           virtlab (namespaces, cgroups, pivot_root, overlayfs)");
    println!(" Kernel Version:    {}", host.kernel);
    println!(" OS/Arch:           {}/{}", std::env::consts::OS, std::env::consts::ARCH);
    Ok(0)
}
