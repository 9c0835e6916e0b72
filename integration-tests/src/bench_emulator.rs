//! The embedded Kinesis emulator in a child process of a bench binary, so that the CPU
//! time and memory the bench reads of its own process are the client's alone.
//!
//! ```text
//!  bench process                          child: the same binary, BENCH_EMULATOR_CHILD=<mode>
//!  EmulatorChild::spawn(limits) ──spawn──▶ serve_if_child(): LocalStack (ferrokinesis,
//!      reads the endpoint line ◀──stdout──   write limits per <mode>), prints its endpoint,
//!      drop: closes stdin ───────────────▶   serves until its standard input closes
//! ```
//!
//! # Usage
//! ```no_run
//! use integration_tests::bench_emulator::{serve_if_child, EmulatorChild, WriteLimits};
//!
//! fn main() {
//!     if serve_if_child() {
//!         return; // this process was the emulator
//!     }
//!     let emulator = EmulatorChild::spawn(WriteLimits::Enforced).expect("emulator");
//!     let _client = integration_tests::kinesis::emulator_client(emulator.endpoint());
//! }
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

use kinesis_emulators::LocalStack;

/// The variable that makes a bench binary serve as the emulator child; its value names the
/// [`WriteLimits`].
const CHILD_VAR: &str = "BENCH_EMULATOR_CHILD";

/// Whether the emulator throttles writes like real shards (1 MiB/s and 1,000 records/s
/// per shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteLimits {
    /// No throttling: the emulator's own speed is the limit.
    Off,
    /// ferrokinesis' `enforce_limits`: per-record `ProvisionedThroughputExceededException`
    /// beyond 1 MiB of data or 1,000 records in a shard's one-second window.
    Enforced,
}

impl WriteLimits {
    fn as_var(self) -> &'static str {
        match self {
            WriteLimits::Off => "off",
            WriteLimits::Enforced => "enforced",
        }
    }
}

/// In a child spawned by [`EmulatorChild::spawn`]: starts the embedded stack, prints its
/// Kinesis endpoint on standard output, serves until standard input closes, and returns
/// `true`. Anywhere else returns `false` at once.
///
/// # Panics
/// In the child, when the stack cannot be started.
pub fn serve_if_child() -> bool {
    let Ok(mode) = std::env::var(CHILD_VAR) else {
        return false;
    };
    let stack = LocalStack::builder()
        .with_endpoint_overrides(Default::default())
        .with_enforce_limits(mode == WriteLimits::Enforced.as_var())
        .start()
        .expect("the embedded emulator");
    println!("{}", stack.kinesis_endpoint());
    let _ = std::io::stdout().flush();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    true
}

/// The emulator child; dropping it closes the child's standard input and waits for it.
#[derive(Debug)]
pub struct EmulatorChild {
    /// The child process, reaped on drop.
    child: Child,
    /// Its Kinesis endpoint (`http://127.0.0.1:<port>`).
    endpoint: String,
}

impl EmulatorChild {
    /// Runs this executable again as the emulator (see [`serve_if_child`]) and reads its
    /// endpoint.
    ///
    /// # Errors
    /// A message saying what failed: the spawn, or a child that printed no endpoint.
    pub fn spawn(limits: WriteLimits) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(&exe)
            .env(CHILD_VAR, limits.as_var())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not start the emulator child {exe:?}: {e}"))?;
        let mut endpoint = String::new();
        let read = match child.stdout.take() {
            Some(out) => BufReader::new(out).read_line(&mut endpoint),
            None => Ok(0),
        };
        let endpoint = endpoint.trim().to_owned();
        if read.is_err() || !endpoint.starts_with("http") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the emulator child printed no endpoint ({read:?})"));
        }
        Ok(EmulatorChild { child, endpoint })
    }

    /// The Kinesis endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The child's process id (to read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EmulatorChild {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}
