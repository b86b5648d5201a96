//! The `meridian` binary: parses the command line and runs one command.

mod cli;
mod cmd;
mod table;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: measured with `../shared/peers`
/// (README, Performance), it takes a share of the CPU per request that
/// glibc's malloc spent on the request path's many short-lived allocations.
/// `--features system-allocator` builds with glibc's, for heap profilers.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(cmd::run(cli.command)) {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "error: {e:#}");
    ExitCode::FAILURE
}
