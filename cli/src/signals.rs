//! Ctrl-C and SIGTERM: the first asks the command to stop gracefully, the second ends the
//! process at once.
//!
//! ```text
//!  SIGINT / SIGTERM #1 ──▶ "stopping gracefully (again to exit now)" ──▶ token.cancel()
//!                                                 command: flush / release leases / summary
//!  SIGINT / SIGTERM #2 ──▶ "exiting now" ──▶ process::exit(130)
//! ```

use tokio_util::sync::CancellationToken;

use crate::error::EXIT_FORCED;
use crate::Error;

/// Starts listening for SIGINT and SIGTERM. The returned token is cancelled on the first
/// signal; a second signal exits the process with status 130 without waiting for anything.
/// `what` names the graceful work in the message printed on the first signal (e.g.
/// "flushing records").
///
/// # Errors
/// [`Error::Signal`] when the signal handlers cannot be installed.
pub fn install(what: &'static str) -> Result<CancellationToken, Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).map_err(Error::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(Error::Signal)?;
    let token = CancellationToken::new();
    let first = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        crate::say!("kinesis-cat: stopping gracefully ({what}); press Ctrl-C again to exit now");
        first.cancel();
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        crate::say!("kinesis-cat: second signal: exiting now");
        std::process::exit(i32::from(EXIT_FORCED));
    });
    Ok(token)
}
