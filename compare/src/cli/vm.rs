//! `virtlab vm ...`

use clap::Subcommand;

/// VM subcommands.
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Boot a guest and run the workload in it.
    Run,
}

/// Runs a VM subcommand; returns the exit status to use.
pub fn run(cmd: VmCommand) -> anyhow::Result<u8> {
    match cmd {
        VmCommand::Run => anyhow::bail!("virtlab vm run is not built yet"),
    }
}
