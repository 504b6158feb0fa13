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
    /// Labs: chroot, leaked-fd, sysrq, keyctl, mknod, ptrace, release-agent.
    /// Defences: seccomp, userns, pidns, caps, masked-paths, readonly-paths,
    /// pivot-root, close-fds, devices.
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
    let layers: Vec<String> = lab
        .layers
        .iter()
        .map(|d| if run.removed.contains(d) { format!("{d} (off)") } else { d.to_string() })
        .collect();
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
        };
        let by = r.blocked_by.map_or("-".to_string(), |d| d.to_string());
        println!("{:<14} {:<9} {:<15} {:<28} {}", r.lab, result, by, errno, r.class);
    }
    let blocked = runs.iter().filter(|r| matches!(r.attack, virtlab_lab::Attack::Blocked { .. })).count();
    println!("{blocked} of {} escapes blocked; `virtlab lab escape NAME` says more about one", runs.len());
}

/// What the VMM hands a Linux guest: the exit reasons its dispatch handles
/// and the devices on its bus.
pub fn vmm_surface() -> surface::VmmSurface {
    surface::VmmSurface {
        exit_reasons: virtlab_vmm::exit::Exit::REASONS.to_vec(),
        devices: virtlab_vmm::linux::run::guest_devices(),
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

/// The exposure table's lines (also a section of `virtlab compare`'s report).
pub fn exposure_lines(rows: &[surface::Exposure]) -> Vec<String> {
    let mut out = vec![format!("{:<32} {:>7}  {}", "environment", "entries", "what the code inside can call")];
    for r in rows {
        out.push(format!("{:<32} {:>7}  {}", r.environment, r.entry_points, r.entry_points_are));
        out.push(format!("{:<32} {:>7}  reaches: {}", "", "", r.host_interfaces));
    }
    out
}
