//! Standard output shared by the tasks of a command, and what happens when the reader
//! goes away.
//!
//! ```text
//!  task ─lines─▶ Output (Mutex<BufWriter<Stdout>>) ─▶ stdout
//!                   └─ EPIPE (`| head` exited) ─▶ Closed: the command ends with status 0,
//!                                                 as `cat` does; nothing more is written
//! ```

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

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
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let result = lines
            .into_iter()
            .try_for_each(|l| out.write_all(l))
            .and_then(|()| out.flush());
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
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.flush().map_err(|e| self.sort(e))
    }

    /// Whether the reader has gone.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
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
