use clap::Parser;

use pacsgate::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    match cli.command {
        None | Some(Command::Run(_)) | Some(Command::Check(_)) => {}
    }
}
