//! `kinesis-cat`: see the `kinesis_cat` library for the commands.
#![deny(unsafe_code, rust_2018_idioms)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = kinesis_cat::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kinesis-cat: error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kinesis_cat::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kinesis-cat: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
