//! Standard output shared by the tasks of a command, and what happens when the reader
//! goes away.
//!
//! ```text
//!  task ─lines─▶ Output (Mutex<BufWriter<Stdout>>) ─▶ stdout
//!                   └─ EPIPE (`| head` exited) ─▶ Closed: the command ends with status 0,
//!                      or poll(2) POLLERR          as `cat` does; nothing more is written
//! ```

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Whether standard output is a pipe or socket whose reading end is closed (poll(2)
/// reports an error or hang-up on it). Files and terminals never are.
fn stdout_reader_gone() -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::empty())];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(n) if n > 0 => fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP)),
        _ => false,
    }
}

/// Runs a write that may block for as long as the reader does not read (`| sleep 30`):
/// on a multi-threaded runtime the worker thread hands its other tasks over first, so the
/// signal handler and the timers keep running meanwhile.
fn blocking<T>(write: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(write)
        }
        _ => write(),
    }
}

/// Why a write did not happen.
#[derive(Debug)]
pub enum WriteError {
    /// The reader closed standard output: stop quietly and successfully.
    Closed,
    /// Any other I/O error.
    Failed(std::io::Error),
}

/// Buffered standard output that remembers when the reader has gone.
#[derive(Debug)]
pub struct Output {
    /// The buffered stream, locked per batch of lines.
    out: Mutex<std::io::BufWriter<std::io::Stdout>>,
    /// Set at the first broken pipe; later writes are refused at once.
    closed: AtomicBool,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            out: Mutex::new(std::io::BufWriter::new(std::io::stdout())),
            closed: AtomicBool::new(false),
        }
    }
}

impl Output {
    /// Writes every chunk of `lines` and flushes, so that what a caller checkpoints after
    /// this returns has reached the reader.
    ///
    /// # Errors
    /// [`WriteError::Closed`] when the reader has gone (now or before);
    /// [`WriteError::Failed`] for other I/O errors.
    pub fn write_flush<'a>(
        &self,
        lines: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), WriteError> {
        if self.is_closed() {
            return Err(WriteError::Closed);
        }
        let result = blocking(|| {
            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
            lines
                .into_iter()
                .try_for_each(|l| out.write_all(l))
                .and_then(|()| out.flush())
        });
        result.map_err(|e| self.sort(e))
    }

    /// Flushes what is buffered.
    ///
    /// # Errors
    /// As [`write_flush`](Self::write_flush).
    pub fn flush(&self) -> Result<(), WriteError> {
        if self.is_closed() {
            return Err(WriteError::Closed);
        }
        blocking(|| self.out.lock().unwrap_or_else(|p| p.into_inner()).flush())
            .map_err(|e| self.sort(e))
    }

    /// Whether the reader has gone.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves once the reader has gone, noticed by a failed write or, while nothing is
    /// written, by polling standard output every 250 ms (as `tail -f` does): a command
    /// whose output is all in the pipe already still ends when `| head` exits.
    ///
    /// # Cancellation
    /// Safe to drop at any point.
    pub async fn reader_gone(&self) {
        loop {
            if self.is_closed() {
                return;
            }
            if stdout_reader_gone() {
                self.closed.store(true, Ordering::Release);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    fn sort(&self, e: std::io::Error) -> WriteError {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            self.closed.store(true, Ordering::Release);
            WriteError::Closed
        } else {
            WriteError::Failed(e)
        }
    }
}
