//! `virtlab lab escape`: the escape lab (see the `virtlab-lab` crate).

use anyhow::Context;
use clap::{Args, Subcommand};
use virtlab_lab::{find_lab, surface, Defence, LabRun, LABS};

/// Lab subcommands.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Try the classic container escapes for real, in virtlab containers,
    /// and see which defence stops each one.
    ///
    /// Without NAME every lab runs with the default defences and a table
    /// says what blocked each. With NAME and --without, the named defences
    /// are switched off for that lab: the next layer stops the attacker, or
    /// it reaches its target and stops there (it opens what it could harm,
    /// reads what is harmless to read, writes nothing on the host).
    ///
    /// Labs: chroot, leaked-fd, exe, sysrq, keyctl, proc-keys, mknod, ptrace,
    /// tiocsti, release-agent. Defences: seccomp, userns, pidns, caps, masked-paths,
    /// readonly-paths, pivot-root, close-fds, devices, tty-filter.
    ///
    /// Exit status: 0 when every lab did what its layers predict (blocked
    /// while one of them is on, reached once all are off); 1 otherwise;
    /// 125 when the lab itself fails (a bad name, not root).
    ///
    /// Examples:
    ///   virtlab lab escape
    ///   virtlab lab escape keyctl --without seccomp
    ///   virtlab lab escape ptrace --without pidns,userns,caps
    ///   virtlab lab escape --table
    ///   virtlab lab escape --vm
    #[command(verbatim_doc_comment)]
    Escape(EscapeArgs),
}

/// `virtlab lab escape`.
#[derive(Debug, Args)]
pub struct EscapeArgs {
    /// The lab to run [default: all of them]
    name: Option<String>,
    /// Defences to switch off, comma-separated (e.g. seccomp,userns)
    #[arg(long, value_name = "LIST")]
    without: Option<String>,
    /// One JSON object per lab run, on stdout
    #[arg(long)]
    json: bool,
    /// Show each lab's set-up and the attacker's raw result on stderr
    #[arg(long)]
    explain: bool,
    /// Print what each environment exposes (system calls, host
    /// interfaces) instead of running the labs
    #[arg(long)]
    table: bool,
    /// Run every attack inside a Linux VM guest instead (one boot, 20-60 s
    /// on nested KVM; needs /dev/kvm and a guest kernel)
    #[arg(long)]
    vm: bool,
}

/// Runs a lab subcommand; returns the exit status to use.
pub fn run(cmd: LabCommand) -> anyhow::Result<u8> {
    match cmd {
        LabCommand::Escape(args) => escape(&args),
    }
}

fn escape(args: &EscapeArgs) -> anyhow::Result<u8> {
    if args.table {
        print_exposure(args.json);
        return Ok(0);
    }
    if args.vm {
        return escape_in_vm(args);
    }
    let removed = Defence::parse_list(args.without.as_deref().unwrap_or(""))?;
    let labs: Vec<&'static virtlab_lab::Lab> = match &args.name {
        Some(n) => vec![find_lab(n)?],
        None => LABS.iter().collect(),
    };
    let mut runs: Vec<LabRun> = Vec::new();
    for lab in labs {
        let run = virtlab_lab::run_lab(lab, &removed, args.explain).with_context(|| format!("lab {}", lab.name))?;
        if args.json {
            println!("{}", serde_json::to_string(&run)?);
        } else if args.name.is_some() {
            print_one(lab, &run);
        }
        runs.push(run);
    }
    if !args.json && args.name.is_none() {
        print_table(&runs);
    }
    let odd: Vec<&LabRun> = runs.iter().filter(|r| !r.as_expected).collect();
    if odd.is_empty() {
        return Ok(0);
    }
    for r in odd {
        let want = match find_lab(r.lab)?.expected_blocker(&r.removed) {
            Some(d) => format!("blocked by {d}"),
            None => "reached (every layer it depends on was off)".to_string(),
        };
        eprintln!("virtlab: lab {} did not behave as its layers predict: expected {want}, got {}", r.lab, r.summary());
    }
    Ok(1)
}

fn print_one(lab: &virtlab_lab::Lab, run: &LabRun) {
    println!("lab {}: {}", lab.name, lab.class);
    println!("  attack: {}", lab.attack);
    let layers: Vec<String> =
        lab.layers.iter().map(|d| if run.removed.contains(d) { format!("{d} (off)") } else { d.to_string() }).collect();
    println!("  defences in its way, outermost first: {}", layers.join(", "));
    let without = if run.removed.is_empty() {
        "the default defences".to_string()
    } else {
        format!("--without {}", run.removed.iter().map(|d| d.name()).collect::<Vec<_>>().join(","))
    };
    println!("  with {without}: {}", run.summary());
    if let Some(d) = run.blocked_by {
        println!("  {d}: {}; in Docker: {}", d.what(), d.docker());
    }
    if let Some(next) = lab.layers.iter().find(|d| !run.removed.contains(d)) {
        let mut more: Vec<&str> = run.removed.iter().map(|d| d.name()).collect();
        more.push(next.name());
        println!("  next: virtlab lab escape {} --without {}", lab.name, more.join(","));
    }
}

fn print_table(runs: &[LabRun]) {
    println!("{:<14} {:<9} {:<15} {:<28} class", "lab", "result", "blocked by", "errno");
    for r in runs {
        let (result, errno) = match &r.attack {
            virtlab_lab::Attack::Blocked { step, errno } => {
                ("blocked", format!("{step}: {}", virtlab_lab::errno_text(*errno).split(' ').next().unwrap_or("")))
            }
            virtlab_lab::Attack::Reached { .. } => ("REACHED", "-".to_string()),
            virtlab_lab::Attack::HostRefuses { .. } => ("n/a", "the host kernel refuses it".to_string()),
        };
        let by = r.blocked_by.map_or("-".to_string(), |d| d.to_string());
        println!("{:<14} {:<9} {:<15} {:<28} {}", r.lab, result, by, errno, r.class);
    }
    let blocked = runs.iter().filter(|r| matches!(r.attack, virtlab_lab::Attack::Blocked { .. })).count();
    let shown = runs.iter().filter(|r| !matches!(r.attack, virtlab_lab::Attack::HostRefuses { .. })).count();
    println!("{blocked} of {shown} escapes blocked; `virtlab lab escape NAME` says more about one");
}

/// What the VMM hands a Linux guest: the exit reasons its dispatch handles
/// and the devices on its bus.
pub fn vmm_surface() -> surface::VmmSurface {
    let sandbox = virtlab_vmm::sandbox::SandboxReport::of_default_run(true);
    surface::VmmSurface {
        exit_reasons: virtlab_vmm::exit::Exit::REASONS.to_vec(),
        devices: virtlab_vmm::linux::run::guest_devices(),
        vmm_syscalls: sandbox.allowed_syscalls,
        vmm_kvm_ioctls: sandbox.kvm_ioctls,
    }
}

/// The exposure table, as text (or JSON).
pub fn print_exposure(json: bool) {
    let rows = surface::table(&vmm_surface());
    if json {
        println!("{}", serde_json::to_string(&rows).unwrap_or_default());
        return;
    }
    for line in exposure_lines(&rows) {
        println!("{line}");
    }
}

/// The section of `virtlab compare`'s report: "containers isolate less",
/// counted (no container or VM is started for it).
pub fn exposure_section() -> String {
    let mut out = String::from(
        "\nContainers isolate less: what the code inside each environment can call into\n\
         (the escapes themselves: sudo virtlab lab escape; inside a VM: --vm)\n",
    );
    for line in exposure_lines(&surface::table(&vmm_surface())) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The exposure table's lines (also a section of `virtlab compare`'s report).
pub fn exposure_lines(rows: &[surface::Exposure]) -> Vec<String> {
    let mut out = vec![format!("{:<32} {:>7}  {}", "environment", "entries", "what the code inside can call")];
    for r in rows {
        out.push(format!("{:<32} {:>7}  {}", r.environment, r.entry_points, r.entry_points_are));
        out.push(format!("{:<32} {:>7}  reaches: {}", "", "", r.host_interfaces));
    }
    out
}

/// `--vm`: the same attacker, every attack in turn (`all`), as a program of
/// a Linux guest's initramfs, in one boot.
fn escape_in_vm(args: &EscapeArgs) -> anyhow::Result<u8> {
    use std::sync::{Arc, Mutex};
    use virtlab_vmm::linux::{InitrdSource, LinuxConfig, DEFAULT_MEM};

    if args.name.is_some() || args.without.is_some() {
        anyhow::bail!("--vm runs every attack once in one guest boot: leave out the lab name and --without");
    }
    let kernel = virtlab_vmm::linux::provision::locate(None)
        .context("no Linux guest kernel: provision one with scripts/guest-kernel.sh (or leave out --vm)")?
        .path;
    let dir = std::env::temp_dir().join(format!("virtlab-lab-{}-vm", std::process::id()));
    let result = (|| -> anyhow::Result<u8> {
        let rootfs = dir.join("rootfs");
        virtlab_container::rootfs::build(&rootfs, None)?;
        let attacker = rootfs.join(virtlab_lab::ATTACKER_IN_ROOTFS.trim_start_matches('/'));
        std::fs::write(&attacker, virtlab_lab::ATTACKER)?;
        std::fs::set_permissions(&attacker, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let config = LinuxConfig {
            kernel,
            initrd: InitrdSource::Build { rootfs: Some(rootfs) },
            workload: Vec::new(),
            program: vec![virtlab_lab::ATTACKER_IN_ROOTFS.to_string(), "all".to_string()],
            env: Vec::new(),
            workdir: None,
            extra_cmdline: None,
            mem_size: DEFAULT_MEM,
            timeout: Some(std::time::Duration::from_secs(600)),
            snapshot: None,
            interactive: false,
            seccomp: true,
        };
        let console = Arc::new(Mutex::new(Vec::<u8>::new()));
        #[derive(Debug)]
        struct Shared(Arc<Mutex<Vec<u8>>>, bool);
        impl std::io::Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                if self.1 {
                    let _ = std::io::stderr().write_all(b);
                }
                self.0.lock().map_err(|_| std::io::Error::other("console buffer poisoned"))?.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = virtlab_vmm::ConsoleSink::Writer(Box::new(Shared(Arc::clone(&console), args.explain)));
        eprintln!("virtlab: booting a Linux guest to run every attack inside it (20-60 s on nested KVM)");
        let report =
            virtlab_vmm::run_linux(&config, sink, &mut virtlab_vmm::Quiet).context("the Linux VM could not run")?;
        let text = String::from_utf8_lossy(&console.lock().map_err(|_| anyhow::anyhow!("console buffer poisoned"))?)
            .into_owned();
        let runs: Vec<(String, virtlab_lab::Attack)> = text
            .lines()
            .filter_map(|l| {
                let l = l.trim_end_matches('\r');
                let name = l.strip_prefix("virtlab.lab attack=")?.split(' ').next()?.to_string();
                Some((name, virtlab_lab::Attack::parse(l)?))
            })
            .collect();
        if args.json {
            for (lab, attack) in &runs {
                println!("{}", serde_json::json!({ "environment": "vm", "lab": lab, "attack": attack }));
            }
        } else {
            println!("inside a virtlab VM (Linux guest, the attacker as root, no container defence at all):");
            for (lab, attack) in &runs {
                let what = match attack {
                    virtlab_lab::Attack::Blocked { step, errno } => {
                        format!("failed in the guest ({step}: {})", virtlab_lab::errno_text(*errno))
                    }
                    virtlab_lab::Attack::Reached { detail } => format!("reached the GUEST's own: {detail}"),
                    virtlab_lab::Attack::HostRefuses { why } => why.clone(),
                };
                println!("  {lab:<14} {what}");
            }
            let s = vmm_surface();
            println!(
                "whatever it reached belongs to the guest: its kernel, files, processes, keys and devices. The host is \
                 behind the VMM's {} exit reasons and {} port devices.",
                s.exit_reasons.len(),
                s.devices.len()
            );
        }
        if runs.len() != LABS.len() {
            anyhow::bail!(
                "the guest reported {} of {} attacks ({}); its last lines: {:?}",
                runs.len(),
                LABS.len(),
                report.summary(),
                report.last_lines
            );
        }
        Ok(0)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
