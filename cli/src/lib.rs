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
pub mod help;
pub mod logging;
pub mod metrics_server;
pub mod output;
pub mod render;
pub mod retry;
pub mod signals;
pub mod template;

pub use error::Error;

use clap::{Parser, Subcommand};

/// Top-level command line.
#[derive(Debug, Parser)]
#[command(
    name = "kinesis-cat",
    version,
    about = "Kinesis streams from the command line",
    after_help = help::TOP
)]
pub struct Cli {
    /// More log output on standard error: -v this project's info, -vv debug (and the AWS
    /// SDK's info), -vvv trace. RUST_LOG, when set, decides instead. Without: warnings
    /// and errors only. Failures print their full AWS error chain from -v on.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Region, profile and endpoint over the standard AWS configuration chain.
    #[command(flatten)]
    pub aws: aws::AwsOptions,
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
            Command::Tail(args) => args.check().err(),
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

/// The subcommands.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Run local Kinesis and DynamoDB emulators until Ctrl-C or SIGTERM.
    #[command(after_help = help::LOCAL)]
    Local(commands::local::LocalArgs),
    /// Create, inspect, reshard and delete streams.
    #[command(after_help = help::STREAM)]
    Stream(commands::stream::StreamArgs),
    /// Put standard input to a stream, one record per line, through the producer library.
    #[command(after_help = help::PRODUCE)]
    Produce(commands::produce::ProduceArgs),
    /// Run a consumer worker (leases, balancing, checkpoints) that prints every record.
    #[command(after_help = help::CONSUME)]
    Consume(commands::consume::ConsumeArgs),
    /// Read every shard of a stream without a lease table (like kcat -C).
    #[command(after_help = help::TAIL)]
    Tail(commands::tail::TailArgs),
    /// Show a consumer application's lease table.
    #[command(after_help = help::LEASES)]
    Leases(commands::leases::LeasesArgs),
    /// Run MultiLang record processors (amazon-kclpy, aws-kcl for Node, ...) from a
    /// MultiLangDaemon properties file: one child process per shard.
    #[command(name = "multilang", after_help = help::MULTILANG)]
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
        Command::Stream(args) => commands::stream::run(args, &cli.aws).await,
        Command::Produce(args) => commands::produce::run(args, &cli.aws).await,
        Command::Consume(args) => commands::consume::run(args, &cli.aws).await,
        Command::Tail(args) => commands::tail::run(args, &cli.aws).await,
        Command::Leases(args) => commands::leases::run(args, &cli.aws).await,
        Command::MultiLang(args) => commands::multilang::run(args, &cli.aws).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every subcommand (nested ones included), with its path.
    fn every_command() -> Vec<(String, clap::Command)> {
        let mut all = Vec::new();
        let mut todo = vec![(String::from("kinesis-cat"), Cli::command())];
        while let Some((path, cmd)) = todo.pop() {
            for sub in cmd.get_subcommands() {
                if sub.get_name() != "help" {
                    todo.push((format!("{path} {}", sub.get_name()), sub.clone()));
                }
            }
            all.push((path, cmd));
        }
        all
    }

    #[test]
    fn every_help_has_examples_and_exit_statuses() {
        let all = every_command();
        assert!(all.len() > 15, "the whole tree: {}", all.len());
        for (path, mut cmd) in all {
            let help = cmd.render_long_help().to_string();
            let examples = help.find("Examples:");
            let status = help.find("Exit status:");
            assert!(
                matches!((examples, status), (Some(e), Some(s)) if e < s),
                "{path}: --help needs Examples: then Exit status:\n{help}"
            );
            let after = &help[examples.unwrap_or(0)..];
            assert!(
                after.contains(path.split(' ').next_back().unwrap_or_default())
                    || path == "kinesis-cat",
                "{path}: the examples do not use the subcommand\n{after}"
            );
            assert!(
                after.contains("\n  0 "),
                "{path}: status 0 is explained\n{after}"
            );
        }
    }

    #[test]
    fn defaults_are_stated_once() {
        for (path, cmd) in every_command() {
            for arg in cmd.get_arguments() {
                let text = format!(
                    "{} {}",
                    arg.get_help().map(ToString::to_string).unwrap_or_default(),
                    arg.get_long_help()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                );
                let shown =
                    !arg.get_default_values().is_empty() && !arg.is_hide_default_value_set();
                assert!(
                    !(shown && text.contains("Default:")),
                    "{path} --{}: says its default and clap shows it again: {text}",
                    arg.get_id()
                );
            }
        }
    }

    #[test]
    fn short_flags_mean_the_same_everywhere() {
        use std::collections::HashMap;
        let mut meaning: HashMap<char, String> = HashMap::new();
        for (path, cmd) in every_command() {
            for arg in cmd.get_arguments() {
                let Some(short) = arg.get_short() else {
                    continue;
                };
                let long = arg.get_long().unwrap_or_default().to_owned();
                let seen = meaning.entry(short).or_insert_with(|| long.clone());
                assert_eq!(
                    *seen, long,
                    "{path}: -{short} is --{long} here, --{seen} elsewhere"
                );
            }
        }
        for (short, long) in [
            ('s', "stream"),
            ('a', "app"),
            ('f', "format"),
            ('e', "exit-at-end"),
        ] {
            assert_eq!(meaning.get(&short).map(String::as_str), Some(long));
        }
    }

    #[test]
    fn global_aws_flags_parse_anywhere() {
        let cli = Cli::try_parse_from([
            "kinesis-cat",
            "stream",
            "list",
            "--region",
            "eu-west-1",
            "--profile",
            "p",
            "--endpoint-url",
            "http://127.0.0.1:4566",
        ])
        .unwrap();
        assert_eq!(cli.aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(cli.aws.profile.as_deref(), Some("p"));
        assert_eq!(
            cli.aws.endpoint_url.as_deref(),
            Some("http://127.0.0.1:4566")
        );
        let e = Cli::try_parse_from([
            "kinesis-cat",
            "--endpoint-url",
            "localhost:1",
            "stream",
            "list",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("--endpoint-url"), "{e}");
    }
}
