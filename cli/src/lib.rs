//! `kinesis-cat`: a command-line companion for Kinesis streams.
//!
//! One module per subcommand under [`commands`]; [`run`] dispatches a parsed [`Cli`].
//!
//! ```text
//!  argv --clap--> Cli { command }
//!                    |-- local  --> kinesis_emulators::LocalStack (fixed ports) --> export lines, wait
//!                    |-- stream --> aws_config::defaults() --> Kinesis client --> create/describe/...
//!                    v
//!                 Result<(), Error> --main--> stderr message + exit code
//! ```
//!
//! Commands that talk to Kinesis use the standard AWS configuration chain, so they honour
//! `AWS_ENDPOINT_URL_KINESIS`, `AWS_REGION`, profiles and so on. Adding a subcommand means
//! adding a module under `commands/`, a variant to [`Command`] and an arm to [`run`].
#![deny(unsafe_code, rust_2018_idioms)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

/// Writes a line to standard error, ignoring failures: a closed or full stderr must not
/// turn a finished command into a panic (`eprintln!` panics when it cannot write).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr(), $($arg)*);
    }};
}

/// [`say!`] without the newline (progress lines).
#[macro_export]
macro_rules! say_inline {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let mut err = ::std::io::stderr();
        let _ = ::std::write!(err, $($arg)*);
        let _ = err.flush();
    }};
}

pub mod args;
pub mod aws;
pub mod commands;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod logging;
pub mod output;
pub mod retry;
pub mod signals;

pub use error::Error;

use clap::{Parser, Subcommand};

/// Top-level command line.
#[derive(Debug, Parser)]
#[command(
    name = "kinesis-cat",
    version,
    about = "Kinesis streams from the command line",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// More log output on standard error: -v this project's info, -vv debug (and the AWS
    /// SDK's info), -vvv trace. RUST_LOG, when set, decides instead. Default: warnings
    /// and errors only. Failures print their full AWS error chain from -v on.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Checks the rules between flags that clap cannot (e.g. `consume --exit-when-idle`
    /// longer than `--batch-window`); `main` calls it right after parsing.
    ///
    /// # Errors
    /// A clap usage error (`ArgumentConflict`: exit status 2, printed as clap prints its
    /// own) saying which flags conflict.
    pub fn check(&self) -> Result<(), clap::Error> {
        let conflict = match &self.command {
            Command::Consume(args) => args.check().err(),
            _ => None,
        };
        match conflict {
            None => Ok(()),
            Some(message) => {
                let mut cmd = <Self as clap::CommandFactory>::command();
                Err(cmd.error(clap::error::ErrorKind::ArgumentConflict, message))
            }
        }
    }
}

/// The environment and exit statuses, shown at the end of `--help`.
const AFTER_HELP: &str = "\
AWS configuration: the standard chain (AWS_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID, ...);
AWS_ENDPOINT_URL_KINESIS / AWS_ENDPOINT_URL_DYNAMODB point at other endpoints, such as the
emulators `kinesis-cat local` starts. Logs: RUST_LOG or -v/-vv/-vvv, on standard error.

Ctrl-C or SIGTERM stops gracefully (produce flushes, consume and multilang hand their leases over);
a second one exits at once with status 130.

Exit statuses: 0 done (also after a graceful stop, or when the reader of standard output
goes away); 1 failed; 2 bad command line; 3 stream, shard, stream consumer or table not
found; 4 no region, no credentials or access denied; 5 endpoint unreachable;
130 interrupted (a second signal, or the first while a `stream` command waits).";

/// The subcommands.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Run local Kinesis and DynamoDB emulators until Ctrl-C or SIGTERM.
    Local(commands::local::LocalArgs),
    /// Create, inspect, reshard and delete streams.
    Stream(commands::stream::StreamArgs),
    /// Put standard input to a stream, one record per line, through the producer library.
    Produce(commands::produce::ProduceArgs),
    /// Run a consumer worker (leases, balancing, checkpoints) that prints every record.
    Consume(commands::consume::ConsumeArgs),
    /// Read every shard of a stream without a lease table.
    Tail(commands::tail::TailArgs),
    /// Show a consumer application's lease table.
    Leases(commands::leases::LeasesArgs),
    /// Run MultiLang record processors (amazon-kclpy, aws-kcl for Node, ...) from a
    /// MultiLangDaemon properties file: one child process per shard.
    #[command(name = "multilang")]
    MultiLang(commands::multilang::MultiLangArgs),
}

/// Runs one parsed command line to completion.
///
/// # Cancellation
/// Dropping the future abandons the command where it stands: a `local` stack is stopped;
/// a stream operation already sent to Kinesis goes ahead without the CLI waiting for it.
///
/// # Errors
/// Any [`Error`]; its [`Error::exit_code`] is the process exit code.
pub async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Local(args) => commands::local::run(args).await,
        Command::Stream(args) => commands::stream::run(args).await,
        Command::Produce(args) => commands::produce::run(args).await,
        Command::Consume(args) => commands::consume::run(args).await,
        Command::Tail(args) => commands::tail::run(args).await,
        Command::Leases(args) => commands::leases::run(args).await,
        Command::MultiLang(args) => commands::multilang::run(args).await,
    }
}
