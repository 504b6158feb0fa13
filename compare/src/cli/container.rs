//! `virtlab container ...`

use clap::Subcommand;

/// Container subcommands.
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Run a command in a new container.
    Run,
}

/// Runs a container subcommand; returns the exit status to use.
pub fn run(cmd: ContainerCommand) -> anyhow::Result<u8> {
    match cmd {
        ContainerCommand::Run => anyhow::bail!("virtlab container run is not built yet"),
    }
}
