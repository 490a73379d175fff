//! The `iptables-ctl` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = iptables_ctl::cli::Cli::parse();
    match iptables_ctl::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("iptables-ctl: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
