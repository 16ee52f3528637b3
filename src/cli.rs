//! Command-line surface (the contract in DESIGN.md: `run`, `check`, `cert`, `hash-password`,
//! `storage`). Parsing only; `main.rs` dispatches.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "pacsgate", version, about = "Security edge for a localhost PACS")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Options of `run`, accepted without the subcommand name (`pacsgate --config x`).
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Run(RunArgs),
    /// Validate the configuration and print the effective listeners; exit 64 on error.
    Check(RunArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Path of the TOML configuration.
    #[arg(long, short = 'c', default_value = "config.toml", global = true)]
    pub config: PathBuf,
}
