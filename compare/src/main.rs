//! `virtlab`: run one workload natively, in a container and in a KVM virtual
//! machine, watch each step, and measure the difference.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// virtlab: hypervisor versus container, measured.
#[derive(Debug, Parser)]
#[command(name = "virtlab", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the same workload natively, in a container and in VMs; measure
    /// startup, overhead, VM exits and memory, and explain the result.
    Compare(cli::compare::CompareArgs),
    /// Render a saved run (`compare --json`) again: one HTML page, Markdown,
    /// CSV or the text report, chosen by the output's extension.
    Report(cli::report::ReportArgs),
    /// Start the same workload natively, in a container and in VMs side by
    /// side, and watch each launcher's steps as they happen.
    Race(cli::race::RaceArgs),
    /// Run a workload in a KVM virtual machine (our VMM and minikernel).
    #[command(subcommand)]
    Vm(cli::vm::VmCommand),
    /// Run a command in a container (namespaces, cgroups, pivot_root).
    #[command(subcommand)]
    Container(cli::container::ContainerCommand),
    /// Images: root file systems as layers, in the OCI image layout
    /// (import, ls, history, inspect, rm, tag, save, load).
    Image(cli::image::ImageArgs),
    /// List images (`virtlab image ls`).
    Images(cli::image::ImagesArgs),
    /// What virtlab keeps on disk (`system df`), and the event log (`system events`).
    System(cli::image::SystemArgs),
    /// Run a command in a new container (`container run`; -d runs it in the background).
    Run(Box<cli::container::RunArgs>),
    /// Make a container of an image without starting it (`container create`).
    Create(Box<cli::container::RunArgs>),
    /// Start containers (`container start`).
    Start(cli::lifecycle::StartArgs),
    /// Stop and start containers again (`container restart`).
    Restart(cli::lifecycle::RestartArgs),
    /// List containers (`container ps`).
    Ps(cli::lifecycle::PsArgs),
    /// Print a container's output (`container logs`).
    Logs(cli::logs::LogsArgs),
    /// Stop running containers (`container stop`).
    Stop(cli::lifecycle::StopArgs),
    /// Send a signal to containers (`container kill`).
    Kill(cli::lifecycle::KillArgs),
    /// Remove containers (`container rm`).
    Rm(cli::lifecycle::RmArgs),
    /// Wait for containers to end (`container wait`).
    Wait(cli::lifecycle::WaitArgs),
    /// Print containers' JSON descriptions (`container inspect`).
    Inspect(cli::inspect::InspectArgs),
    /// Show a container's processes (`container top`).
    Top(cli::stats::TopArgs),
    /// Show containers' resource usage, live (`container stats`).
    Stats(cli::stats::StatsArgs),
    /// Run a command in a running container (`container exec`).
    Exec(cli::exec::ExecArgs),
    /// Where virtlab keeps things and what this host can do (`system info`).
    Info(cli::lifecycle::RootArg),
    /// What happens to containers and images (`system events`).
    Events(cli::events::EventsArgs),
    /// The versions of virtlab, its formats and the kernel.
    Version,
    /// virtlab as an OCI runtime: runc's command line over a bundle
    /// (config.json and a root file system): spec, create, start, run,
    /// state, list, kill, delete, features.
    Oci(cli::oci::OciArgs),
    /// Print the path of the built-in workload binary (writing it out if
    /// needed), to run it natively: `$(virtlab workload) cpu 1000000`.
    Workload,
    /// Guest kernels.
    #[command(subcommand)]
    Guest(GuestCommand),
    /// The escape lab: classic container escapes tried against each defence.
    #[command(subcommand)]
    Lab(cli::lab::LabCommand),
}

#[derive(Debug, Subcommand)]
enum GuestCommand {
    /// Print the path of the built-in minikernel ELF (writing it out if
    /// needed); QEMU boots it too, through its PVH note.
    Minikernel,
    /// Print the Linux kernel `virtlab vm run` boots and why that one:
    /// --kernel, virtlab's minimal kernel (scripts/guest-kernel.sh),
    /// Debian's cloud kernel (scripts/guest-kernel.sh cloud), the host's.
    Kernel {
        /// A kernel to check instead of searching.
        #[arg(long, value_name = "PATH")]
        kernel: Option<std::path::PathBuf>,
        /// List every candidate and whether it is there.
        #[arg(long)]
        all: bool,
    },
}

fn main() -> ExitCode {
    // Installed (linked) as `virtlab-runc`, it is the OCI runtime: an
    // engine calls it with runc's command line.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.first().and_then(|a| std::path::Path::new(a).file_name()).is_some_and(|n| n == "virtlab-runc") {
        return finish(cli::oci::run(cli::oci::RuncCli::parse_from(args).args));
    }
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Command::Compare(args) => cli::compare::run(args),
        Command::Report(args) => cli::report::run(&args),
        Command::Race(args) => cli::race::run(&args),
        Command::Vm(cmd) => cli::vm::run(cmd),
        Command::Container(cmd) => cli::container::run(cmd),
        Command::Image(args) => cli::image::run(args),
        Command::Images(args) => cli::image::run_images(args),
        Command::System(args) => cli::image::run_system(args),
        Command::Run(args) => cli::container::run(cli::container::ContainerCommand::Run(args)),
        Command::Create(args) => cli::lifecycle::create(&args),
        Command::Start(a) => cli::lifecycle::exit1(cli::lifecycle::start(&a)),
        Command::Restart(a) => cli::lifecycle::exit1(cli::lifecycle::restart(&a)),
        Command::Ps(a) => cli::lifecycle::exit1(cli::lifecycle::ps(&a)),
        Command::Logs(a) => cli::lifecycle::exit1(cli::logs::logs(&a)),
        Command::Stop(a) => cli::lifecycle::exit1(cli::lifecycle::stop(&a)),
        Command::Kill(a) => cli::lifecycle::exit1(cli::lifecycle::kill(&a)),
        Command::Rm(a) => cli::lifecycle::exit1(cli::lifecycle::rm(&a)),
        Command::Wait(a) => cli::lifecycle::exit1(cli::lifecycle::wait(&a)),
        Command::Inspect(a) => cli::lifecycle::exit1(cli::inspect::inspect(&a)),
        Command::Info(a) => cli::lifecycle::exit1(cli::inspect::info(&a)),
        Command::Events(a) => cli::lifecycle::exit1(cli::events::events(&a)),
        Command::Version => cli::inspect::version(),
        Command::Top(a) => cli::lifecycle::exit1(cli::stats::top(&a)),
        Command::Stats(a) => cli::lifecycle::exit1(cli::stats::stats(&a)),
        Command::Exec(a) => cli::exec::run(&a),
        Command::Oci(args) => cli::oci::run(args),
        Command::Lab(cmd) => cli::lab::run(cmd),
        Command::Workload => virtlab_workload::materialize()
            .map(|p| {
                println!("{}", p.display());
                0
            })
            .map_err(anyhow::Error::from),
        Command::Guest(GuestCommand::Kernel { kernel, all }) => cli::guest::kernel(kernel, all),
        Command::Guest(GuestCommand::Minikernel) => virtlab_vmm::minikernel_path()
            .map(|p| {
                println!("{}", p.display());
                0
            })
            .map_err(anyhow::Error::from),
    };
    finish(result)
}

/// The exit status of a command's result, its error printed.
fn finish(result: anyhow::Result<u8>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("virtlab: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(cli::EXIT_TOOL_ERROR)
        }
    }
}
