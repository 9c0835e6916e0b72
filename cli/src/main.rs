//! `kinesis-cat`: see the `kinesis_cat` library for the commands.
#![deny(unsafe_code, rust_2018_idioms)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::process::ExitCode;

use clap::Parser;

/// The process's allocator with the `jemalloc` feature (see BENCHMARKS.md, "Allocator").
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The process's allocator with the `mimalloc` feature (and not `jemalloc`).
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = kinesis_cat::Cli::parse();
    if let Err(e) = cli.check() {
        e.exit();
    }
    let verbose = cli.verbose;
    kinesis_cat::logging::init(verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            kinesis_cat::say!("kinesis-cat: error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(kinesis_cat::run(cli));
    // Blocked reads of standard input (tokio reads it on a blocking thread) must not keep
    // the process alive after the command is done.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of standard output went away (`| head`): done, as `cat` is.
        Err(kinesis_cat::Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            kinesis_cat::say!("kinesis-cat: error: {e}");
            if let Some(hint) = e.hint() {
                kinesis_cat::say!("kinesis-cat: hint: {hint}");
            }
            match e.detail() {
                Some(detail) if verbose > 0 => kinesis_cat::say!("kinesis-cat: detail: {detail}"),
                Some(_) => kinesis_cat::say!("kinesis-cat: (-v shows the full error)"),
                None => {}
            }
            ExitCode::from(e.exit_code())
        }
    }
}
