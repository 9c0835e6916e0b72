//! What the CLI tests share: the built binary, an environment that points it at a
//! [`LocalStack`] and nothing else of the machine's AWS configuration, and runs bounded by
//! a watchdog (a process still alive at its limit is killed and the test fails, "hang").
//!
//! ```text
//!  Env (endpoints, test credentials; machine config removed) ─▶ Command(kinesis-cat ...)
//!     └─ Running (stdout/stderr collected on threads) ─finish(limit)─▶ Finished
//! ```
//!
//! Each test binary uses part of it. [`fleet`]: worker processes of `consume`.
#![allow(dead_code, unreachable_pub)]

pub mod fleet;

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kinesis_emulators::{LocalStack, ServiceKind};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_kinesis-cat");

/// The longest any one run may take before it counts as a hang.
pub const LIMIT: Duration = Duration::from_secs(120);

/// Where the child's AWS calls go, and with which credentials.
#[derive(Debug, Clone)]
pub struct Env {
    vars: Vec<(String, String)>,
    removed: Vec<&'static str>,
}

impl Env {
    /// Nothing from the machine's AWS configuration leaks in: no profile files, no
    /// instance metadata, no endpoints, no credentials, no region.
    pub fn isolated() -> Env {
        Env {
            vars: vec![
                ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
                (
                    "AWS_SHARED_CREDENTIALS_FILE".into(),
                    "/nonexistent/creds".into(),
                ),
                ("AWS_CONFIG_FILE".into(), "/nonexistent/config".into()),
                ("NO_COLOR".into(), "1".into()),
            ],
            removed: vec![
                "AWS_PROFILE",
                "AWS_SESSION_TOKEN",
                "AWS_DEFAULT_REGION",
                "AWS_ENDPOINT_URL",
                "AWS_ENDPOINT_URL_KINESIS",
                "AWS_ENDPOINT_URL_DYNAMODB",
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_REGION",
                "RUST_LOG",
            ],
        }
    }

    /// This variable set (replacing an earlier value).
    pub fn with(mut self, k: &str, v: &str) -> Env {
        self.vars.retain(|(key, _)| key != k);
        self.vars.push((k.into(), v.into()));
        self
    }

    /// This variable not set.
    pub fn without(mut self, k: &'static str) -> Env {
        self.vars.retain(|(key, _)| key != k);
        if !self.removed.contains(&k) {
            self.removed.push(k);
        }
        self
    }

    /// Test credentials and a region, endpoints at `kinesis` / `dynamodb`.
    pub fn local(kinesis: &str, dynamodb: &str) -> Env {
        Env::isolated()
            .with("AWS_ACCESS_KEY_ID", "test")
            .with("AWS_SECRET_ACCESS_KEY", "test")
            .with("AWS_REGION", "us-east-1")
            .with("AWS_ENDPOINT_URL_KINESIS", kinesis)
            .with("AWS_ENDPOINT_URL_DYNAMODB", dynamodb)
    }

    /// The stack's endpoints; an external stack keeps the caller's own configuration.
    pub fn stack(stack: &LocalStack) -> Env {
        if stack.kinesis_kind() == ServiceKind::External {
            return Env {
                vars: vec![
                    (
                        "AWS_ENDPOINT_URL_KINESIS".into(),
                        stack.kinesis_endpoint().into(),
                    ),
                    (
                        "AWS_ENDPOINT_URL_DYNAMODB".into(),
                        stack.dynamodb_endpoint().into(),
                    ),
                    ("NO_COLOR".into(), "1".into()),
                ],
                removed: vec!["RUST_LOG"],
            };
        }
        Env::local(stack.kinesis_endpoint(), stack.dynamodb_endpoint())
    }

    /// `kinesis-cat args...` in this environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        for k in &self.removed {
            cmd.env_remove(k);
        }
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd
    }
}

/// The embedded stack (or whatever `AWS_ENDPOINT_URL_*` point at).
pub async fn stack() -> LocalStack {
    LocalStack::builder().start_async().await.expect("stack")
}

/// Collects a pipe on a thread of its own.
pub fn collect(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// A loopback address where nothing listens (a closed port): every call to it is refused.
pub fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("address").port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

/// What a finished run left.
#[derive(Debug)]
pub struct Finished {
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote to standard output (empty when the test took the pipe, or
    /// the output was thrown away).
    pub stdout: String,
    /// Everything it wrote to standard error.
    pub stderr: String,
    /// From the start to the exit.
    pub elapsed: Duration,
}

impl Finished {
    /// The exit status, unless killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Standard output, after checking that the run succeeded.
    pub fn ok(self) -> String {
        assert!(
            self.status.success(),
            "failed ({:?}); stderr:\n{}",
            self.status,
            self.stderr
        );
        self.stdout
    }
}

/// How a run's standard streams are set up (standard error is always collected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// No input; output collected.
    Quiet,
    /// Input piped from the test ([`Running::stdin`]); output collected.
    Input,
    /// No input; output handed to the test ([`Running::stdout`]).
    Output,
    /// Input piped from the test; output thrown away.
    InputNoOutput,
}

/// A running `kinesis-cat`, its output collected in the background.
pub struct Running {
    /// The process.
    pub child: Child,
    /// Its standard input, when piped.
    pub stdin: Option<ChildStdin>,
    /// Its standard output, when handed to the test ([`Io::Output`]).
    pub stdout: Option<ChildStdout>,
    /// When it started, for [`Finished::elapsed`].
    started: Instant,
    /// Standard output being collected, unless handed to the test or thrown away.
    collected: Option<JoinHandle<String>>,
    stderr: JoinHandle<String>,
    /// Standard error's lines, as they come.
    stderr_lines: std::sync::mpsc::Receiver<String>,
}

impl Running {
    /// Starts `args` in `env`, standard input piped (kept open until dropped or
    /// [`close_stdin`](Self::close_stdin)), output collected.
    pub fn start(env: &Env, args: &[&str]) -> Running {
        Running::start_with(env, args, Io::Input)
    }

    /// Starts `args` in `env`, its standard streams set up as `io` says.
    pub fn start_with(env: &Env, args: &[&str], io: Io) -> Running {
        let piped_in = matches!(io, Io::Input | Io::InputNoOutput);
        let mut child = env
            .command(args)
            .stdin(if piped_in {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(if io == Io::InputNoOutput {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kinesis-cat");
        let stdin = child.stdin.take();
        let (stdout, collected) = match io {
            Io::Output => (child.stdout.take(), None),
            _ => (None, child.stdout.take().map(collect)),
        };
        let (lines_tx, stderr_lines) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut all = String::new();
            for line in std::io::BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                all.push_str(&line);
                all.push('\n');
                let _ = lines_tx.send(line);
            }
            all
        });
        Running {
            child,
            stdin,
            stdout,
            started: Instant::now(),
            collected,
            stderr,
            stderr_lines,
        }
    }

    /// The first line of standard error (from those not yet seen) that `wanted` accepts;
    /// past `limit`, or at the end of standard error, the process is killed and the test
    /// fails.
    pub fn stderr_line(&mut self, limit: Duration, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(e) => {
                    let _ = self.child.kill();
                    panic!("no such line on standard error ({e})");
                }
            }
        }
    }

    /// Writes `input` to standard input.
    pub fn write(&mut self, input: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(input).expect("write stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Closes standard input (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Sends `sig` (e.g. `-TERM`) to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig}");
    }

    /// Ctrl-C twice, `gap` apart, `after` from now.
    pub fn interrupt_twice(&self, after: Duration, gap: Duration) {
        std::thread::sleep(after);
        self.signal("-INT");
        std::thread::sleep(gap);
        self.signal("-INT");
    }

    /// Waits for the exit (standard input closed first, unless the test took it); past
    /// `limit` the process is killed and the test fails.
    pub fn finish(mut self, limit: Duration) -> Finished {
        self.stdin.take();
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self.stderr.join().unwrap();
                panic!("hang: still alive after {limit:?}; stderr:\n{err}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Finished {
            status,
            stdout: self
                .collected
                .take()
                .map(|h| h.join().unwrap())
                .unwrap_or_default(),
            stderr: self.stderr.join().unwrap(),
            elapsed: self.started.elapsed(),
        }
    }
}

/// Runs to the end with `input` on standard input (then closed).
pub fn run_with_input(env: &Env, args: &[&str], input: &[u8]) -> Finished {
    run_with_input_within(env, args, input, LIMIT)
}

/// Runs to the end with `input` on standard input (then closed); past `limit` the process
/// is killed and the test fails.
pub fn run_with_input_within(env: &Env, args: &[&str], input: &[u8], limit: Duration) -> Finished {
    let mut running = Running::start(env, args);
    let mut stdin = running.stdin.take().unwrap();
    let input = input.to_owned();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let f = running.finish(limit);
    let _ = writer.join();
    f
}

/// Runs to the end with no input.
pub fn run(env: &Env, args: &[&str]) -> Finished {
    run_with_input(env, args, b"")
}
