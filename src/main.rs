//! `iptables-ctl`: the command-line entry point. Everything happens in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = iptables_ctl::cli::Cli::parse();
    match iptables_ctl::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("iptables-ctl: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
