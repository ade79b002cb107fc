//! The `consult-scheduler` binary: parse the command line, run it.

use clap::Parser;

/// mimalloc instead of glibc's allocator: see BENCHMARKS.md ("The allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = consult_scheduler::cli::Cli::parse();
    match consult_scheduler::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consult-scheduler: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
