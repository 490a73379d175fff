//! The `iptables-ctl` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use iptables_ctl::cli::exit;
use iptables_ctl::cli::output::Output;

fn main() -> ExitCode {
    let cli = iptables_ctl::cli::Cli::parse();
    let mut out = Output::stdio();
    if let Err(e) = iptables_ctl::bounds::limit_memory() {
        out.warn(format!("cannot limit the memory this run may use: {e}"));
    }
    match iptables_ctl::cli::run(cli, &mut out) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            out.error(format!("{error:#}"));
            ExitCode::from(exit::FAILURE)
        }
    }
}
