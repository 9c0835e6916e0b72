//! The fidelity peers: npm `kinesis-local` (kinesis-mock) and `dynalite` as child processes.
//!
//! ```text
//!  <target>/fidelity-peers/  exists and complete? --no--> npm install into
//!        ^                                                 <target>/fidelity-peers.tmp-<pid>-<n>
//!        |                                                 then rename (first one wins)
//!        +------------------------------------------------------+
//!  node -e <watchdog> <pkg entry> ...   stdin: pipe from us (EOF = parent gone -> exit)
//!                                       stdout+stderr: <target>/fidelity-logs/<peer>-<pid>-<n>.log
//!  poll http://127.0.0.1:<port> until it answers -> ready
//!  Drop: SIGTERM, grace, SIGKILL, wait
//! ```

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Error;

/// The npm package providing the kinesis-mock server, pinned so every machine tests the
/// same server.
pub(crate) const KINESIS_LOCAL_PACKAGE: &str = "kinesis-local@0.6.2";
/// The npm package providing the DynamoDB emulator, pinned for the same reason.
pub(crate) const DYNALITE_PACKAGE: &str = "dynalite@4.0.0";
/// Written last into a finished install, so a half-done install is never taken for a
/// complete one.
const INSTALLED_MARKER: &str = ".kinesis-emulators-installed";
/// How long a peer gets to exit after SIGTERM before it is killed.
const TERM_GRACE: Duration = Duration::from_millis(1500);

/// Makes `node` run a package entry file as if it were the main script, and exit as soon as
/// its standard input (a pipe held by the parent) closes, i.e. when the parent goes away
/// even without running its destructors.
const WATCHDOG_JS: &str = "process.stdin.on('end',()=>process.exit(0));\
process.stdin.on('error',()=>process.exit(0));\
process.stdin.resume();\
require(process.argv[1]);";

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Returns the cargo target directory of the workspace this process belongs to.
///
/// Tried in order: `CARGO_TARGET_DIR` (relative values are taken from the current
/// directory, as cargo does); the nearest ancestor of the running executable that holds
/// cargo's `CACHEDIR.TAG`; `target/` next to the workspace root found by walking up from
/// the run-time `CARGO_MANIFEST_DIR` (set by `cargo test` and `cargo run`); the same walk from
/// this crate's own source directory.
///
/// # Errors
/// [`Error::TargetDirNotFound`] when none of these applies.
pub fn workspace_target_dir() -> Result<PathBuf, Error> {
    find_target_dir(
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from),
        std::env::current_dir().ok(),
        std::env::current_exe().ok(),
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    )
    .ok_or(Error::TargetDirNotFound)
}

fn find_target_dir(
    cargo_target_dir: Option<PathBuf>,
    cwd: Option<PathBuf>,
    exe: Option<PathBuf>,
    runtime_manifest_dir: Option<PathBuf>,
    build_manifest_dir: Option<PathBuf>,
) -> Option<PathBuf> {
    if let Some(dir) = cargo_target_dir.filter(|d| !d.as_os_str().is_empty()) {
        if dir.is_absolute() {
            return Some(dir);
        }
        if let Some(cwd) = cwd {
            return Some(cwd.join(dir));
        }
    }
    if let Some(exe) = exe {
        if let Some(found) = exe
            .ancestors()
            .skip(1)
            .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        {
            return Some(found.to_path_buf());
        }
    }
    [runtime_manifest_dir, build_manifest_dir]
        .into_iter()
        .flatten()
        .find_map(|start| workspace_root(&start))
        .map(|root| root.join("target"))
}

/// Walks up from `start` to the outermost directory whose `Cargo.toml` declares a
/// `[workspace]`.
fn workspace_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .filter(|dir| {
            fs::read_to_string(dir.join("Cargo.toml"))
                .map(|text| text.lines().any(|l| l.trim() == "[workspace]"))
                .unwrap_or(false)
        })
        .last()
        .map(Path::to_path_buf)
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

/// Paths of an installed peer set.
#[derive(Debug, Clone)]
pub(crate) struct Peers {
    /// `node_modules/kinesis-local`, holding `main.js` and the TLS `server.json`.
    kinesis_local: PathBuf,
    /// `node_modules/dynalite`, holding `cli.js`.
    dynalite: PathBuf,
    /// Where peer logs go, outside the install directory so it can be renamed into place.
    logs: PathBuf,
}

fn is_installed(dir: &Path) -> bool {
    dir.join(INSTALLED_MARKER).is_file()
        && dir.join("node_modules/kinesis-local/main.js").is_file()
        && dir.join("node_modules/dynalite/cli.js").is_file()
}

/// Makes sure the peers are installed in `dir` (installing them if needed) and returns
/// their paths. Concurrent callers each install into their own temporary directory and
/// the first to rename it into place wins, so no lock is needed and a crashed install
/// leaves nothing half-done at `dir`.
pub(crate) fn ensure_installed(dir: &Path) -> Result<Peers, Error> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let logs = parent.join("fidelity-logs");
    if !is_installed(dir) {
        fs::create_dir_all(parent).map_err(io_err("creating directory", parent))?;
        let tmp = parent.join(format!(
            "{}.tmp-{}-{}",
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "fidelity-peers".into()),
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        ));
        let result = install_into(&tmp).and_then(|()| move_into_place(&tmp, dir));
        // Whatever happened, our temporary copy is no longer needed.
        let _ = fs::remove_dir_all(&tmp);
        result?;
    }
    prune_old_logs(&logs);
    Ok(Peers {
        kinesis_local: dir.join("node_modules/kinesis-local"),
        dynalite: dir.join("node_modules/dynalite"),
        logs,
    })
}

/// Removes peer logs older than a day. Logs of stacks that were never dropped (e.g. held in
/// a `static` by a test binary) are not removed by `Drop`; this keeps them from piling up.
fn prune_old_logs(logs: &Path) {
    let Ok(entries) = fs::read_dir(logs) else {
        return;
    };
    let day = Duration::from_secs(24 * 3600);
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > day);
        if old && entry.path().extension().is_some_and(|e| e == "log") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn install_into(tmp: &Path) -> Result<(), Error> {
    let packages = format!("{KINESIS_LOCAL_PACKAGE} {DYNALITE_PACKAGE}");
    fs::create_dir_all(tmp).map_err(io_err("creating directory", tmp))?;
    tracing::info!(dir = %tmp.display(), %packages, "installing fidelity emulators with npm");
    let output = Command::new("npm")
        .arg("install")
        .arg("--prefix")
        .arg(tmp)
        .args(["--no-audit", "--no-fund", "--loglevel=error"])
        .args([KINESIS_LOCAL_PACKAGE, DYNALITE_PACKAGE])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::NpmInstall {
            packages: packages.clone(),
            detail: format!("could not run npm: {e}"),
        })?;
    if !output.status.success() {
        return Err(Error::NpmInstall {
            packages,
            detail: format!(
                "{}: {}",
                output.status,
                tail(&String::from_utf8_lossy(&output.stderr), 20)
            ),
        });
    }
    if !tmp.join("node_modules/kinesis-local/main.js").is_file()
        || !tmp.join("node_modules/dynalite/cli.js").is_file()
    {
        return Err(Error::NpmInstall {
            packages,
            detail: "npm succeeded but kinesis-local/main.js or dynalite/cli.js is missing".into(),
        });
    }
    let marker = tmp.join(INSTALLED_MARKER);
    File::create(&marker)
        .and_then(|mut f| f.write_all(b"ok\n"))
        .map_err(io_err("writing", &marker))
}

fn move_into_place(tmp: &Path, dir: &Path) -> Result<(), Error> {
    for attempt in 0..2 {
        match fs::rename(tmp, dir) {
            Ok(()) => return Ok(()),
            Err(_) if is_installed(dir) => return Ok(()), // another process won the race
            Err(e) if attempt == 0 && dir.exists() => {
                // An incomplete directory that is not ours to keep (e.g. an interrupted
                // manual install): replace it.
                tracing::warn!(dir = %dir.display(), error = %e, "replacing incomplete install");
                fs::remove_dir_all(dir).map_err(io_err("removing incomplete install", dir))?;
            }
            Err(e) => return Err(io_err("moving the npm install into", dir)(e)),
        }
    }
    Err(Error::Io {
        action: "moving the npm install into",
        path: dir.to_path_buf(),
        source: std::io::Error::other("the target kept reappearing incomplete"),
    })
}

/// Returns the last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn read_tail(path: &Path) -> String {
    let mut text = String::new();
    match File::open(path).and_then(|mut f| f.read_to_string(&mut text)) {
        Ok(_) => tail(&text, 30),
        Err(e) => format!("(log {} unreadable: {e})", path.display()),
    }
}

/// Asks the OS for a free loopback port. Another process may take it before the peer binds
/// it; the readiness check then fails with a clear error.
pub(crate) fn free_port() -> Result<u16, Error> {
    let probe = Path::new("127.0.0.1:0");
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io_err("finding a free port on", probe))
}

/// A running peer; stopping it is tied to this value's lifetime.
#[derive(Debug)]
pub(crate) struct PeerProcess {
    /// Short peer name for messages.
    what: &'static str,
    /// The `node` process.
    child: Child,
    /// The write end of the peer's standard input; the peer exits when it closes.
    _stdin: Option<ChildStdin>,
    /// Combined stdout/stderr of the peer, shown when it fails and removed on drop.
    log: PathBuf,
    /// The port it serves on, for messages and readiness checks.
    port: u16,
}

/// What a readiness probe expects back.
#[derive(Debug, Clone, Copy)]
enum Probe {
    /// `GET path` must answer 200.
    Ok200(&'static str),
    /// Any HTTP response to `GET /` will do.
    AnyHttp,
}

impl PeerProcess {
    fn spawn(
        what: &'static str,
        entry: &Path,
        args: &[String],
        envs: &[(String, String)],
        logs: &Path,
        port: u16,
    ) -> Result<Self, Error> {
        fs::create_dir_all(logs).map_err(io_err("creating directory", logs))?;
        let log = logs.join(format!(
            "{what}-{}-{}.log",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        ));
        let out = File::create(&log).map_err(io_err("creating log file", &log))?;
        let err = out.try_clone().map_err(io_err("opening log file", &log))?;
        let mut cmd = Command::new("node");
        cmd.arg("-e")
            .arg(WATCHDOG_JS)
            .arg(entry)
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err);
        if let Some(dir) = entry.parent() {
            cmd.current_dir(dir);
        }
        // Own process group: a Ctrl-C aimed at the test run does not reach the peer
        // half-way; it goes when its stdin closes or when we stop it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .spawn()
            .map_err(|source| Error::Spawn { what, source })?;
        let stdin = child.stdin.take();
        Ok(Self {
            what,
            child,
            _stdin: stdin,
            log,
            port,
        })
    }

    /// Waits until the peer answers `probe` on its port, or fails.
    fn wait_ready(&mut self, probe: Probe, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::ExitedEarly {
                    what: self.what,
                    status: status.to_string(),
                    log_tail: read_tail(&self.log),
                });
            }
            if probe_once(self.port, probe) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    what: self.what,
                    port: self.port,
                    timeout,
                    log_tail: read_tail(&self.log),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The port the peer serves on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let deadline = Instant::now() + TERM_GRACE;
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            // kinesis-local may ignore SIGTERM under load.
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_file(&self.log);
    }
}

/// One HTTP/1.1 request to `127.0.0.1:port`; true when the answer matches `probe`.
fn probe_once(port: u16, probe: Probe) -> bool {
    let path = match probe {
        Probe::Ok200(path) => path,
        Probe::AnyHttp => "/",
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0_u8; 12];
    if stream.read_exact(&mut head).is_err() {
        return false;
    }
    match probe {
        Probe::Ok200(_) => head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"),
        Probe::AnyHttp => head.starts_with(b"HTTP/1."),
    }
}

/// The two fidelity peers, spawned together so their start-up overlaps.
#[derive(Debug, Default)]
pub(crate) struct Started {
    /// kinesis-local, when Kinesis is not external.
    pub(crate) kinesis: Option<PeerProcess>,
    /// dynalite, when DynamoDB is not external.
    pub(crate) dynamodb: Option<PeerProcess>,
}

/// Spawns the requested peers on free ports and waits until each answers.
pub(crate) fn start(
    peers: &Peers,
    want_kinesis: Option<u16>,
    want_dynamodb: Option<u16>,
    timeout: Duration,
) -> Result<Started, Error> {
    let mut started = Started::default();
    if let Some(port) = want_kinesis {
        let port = if port == 0 { free_port()? } else { port };
        let tls_port = free_port()?;
        let mut envs = vec![
            (
                "KINESIS_MOCK_CERT_PATH".to_owned(),
                peers
                    .kinesis_local
                    .join("server.json")
                    .to_string_lossy()
                    .into_owned(),
            ),
            ("KINESIS_MOCK_PLAIN_PORT".to_owned(), port.to_string()),
            ("KINESIS_MOCK_TLS_PORT".to_owned(), tls_port.to_string()),
            ("LOG_LEVEL".to_owned(), "WARN".to_owned()),
            ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
            ("AWS_ACCOUNT_ID".to_owned(), "000000000000".to_owned()),
            ("SHARD_LIMIT".to_owned(), "1000".to_owned()),
        ];
        for delay in [
            "CREATE_STREAM_DURATION",
            "DELETE_STREAM_DURATION",
            "SPLIT_SHARD_DURATION",
            "MERGE_SHARDS_DURATION",
            "UPDATE_SHARD_COUNT_DURATION",
            "UPDATE_STREAM_MODE_DURATION",
            "REGISTER_STREAM_CONSUMER_DURATION",
            "DEREGISTER_STREAM_CONSUMER_DURATION",
            "START_STREAM_ENCRYPTION_DURATION",
            "STOP_STREAM_ENCRYPTION_DURATION",
        ] {
            envs.push((delay.to_owned(), "10ms".to_owned()));
        }
        started.kinesis = Some(PeerProcess::spawn(
            "kinesis-local",
            &peers.kinesis_local.join("main.js"),
            &[],
            &envs,
            &peers.logs,
            port,
        )?);
    }
    if let Some(port) = want_dynamodb {
        let port = if port == 0 { free_port()? } else { port };
        let args = [
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--createTableMs",
            "50",
            "--deleteTableMs",
            "50",
            "--updateTableMs",
            "50",
        ]
        .map(str::to_owned);
        started.dynamodb = Some(PeerProcess::spawn(
            "dynalite",
            &peers.dynalite.join("cli.js"),
            &args,
            &[],
            &peers.logs,
            port,
        )?);
    }
    if let Some(p) = started.kinesis.as_mut() {
        p.wait_ready(Probe::Ok200("/healthcheck"), timeout)?;
    }
    if let Some(p) = started.dynamodb.as_mut() {
        p.wait_ready(Probe::AnyHttp, timeout)?;
    }
    Ok(started)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_target_dir_wins_and_relative_values_follow_cwd() {
        let got = find_target_dir(
            Some("/abs/t".into()),
            Some("/cwd".into()),
            Some("/x/target/debug/deps/bin".into()),
            None,
            None,
        );
        assert_eq!(got, Some(PathBuf::from("/abs/t")));
        let got = find_target_dir(Some("rel".into()), Some("/cwd".into()), None, None, None);
        assert_eq!(got, Some(PathBuf::from("/cwd/rel")));
    }

    #[test]
    fn finds_the_target_dir_of_this_test_binary() {
        let exe = std::env::current_exe().expect("exe");
        let got = find_target_dir(None, None, Some(exe.clone()), None, None).expect("found");
        assert!(
            exe.starts_with(&got),
            "{} not under {}",
            exe.display(),
            got.display()
        );
        assert!(got.join("CACHEDIR.TAG").is_file());
    }

    #[test]
    fn falls_back_to_the_workspace_root_of_the_manifest_dir() {
        let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let got = find_target_dir(
            None,
            None,
            Some("/nonexistent/bin".into()),
            Some(here.clone()),
            None,
        )
        .expect("found");
        let root = here.parent().expect("workspace root");
        assert_eq!(got, root.join("target"));
        assert_eq!(
            find_target_dir(None, None, None, None, Some("/".into())),
            None
        );
    }

    fn fake_install(dir: &Path, tag: &str) {
        for pkg in ["kinesis-local/main.js", "dynalite/cli.js"] {
            let file = dir.join("node_modules").join(pkg);
            fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            fs::write(&file, tag).expect("write");
        }
        fs::write(dir.join(INSTALLED_MARKER), "ok").expect("marker");
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "kinesis-emulators-test-{name}-{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn first_install_to_be_renamed_wins_and_later_ones_are_accepted() {
        let root = scratch("race");
        let dir = root.join("fidelity-peers");
        let (a, b) = (root.join("a"), root.join("b"));
        fake_install(&a, "a");
        fake_install(&b, "b");
        move_into_place(&a, &dir).expect("first");
        assert!(is_installed(&dir));
        move_into_place(&b, &dir).expect("second finds a complete install");
        let kept =
            fs::read_to_string(dir.join("node_modules/kinesis-local/main.js")).expect("read");
        assert_eq!(kept, "a");
        ensure_installed(&dir).expect("already installed: npm is not run");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn an_incomplete_install_is_replaced() {
        let root = scratch("incomplete");
        let dir = root.join("fidelity-peers");
        fs::create_dir_all(dir.join("node_modules/kinesis-local")).expect("mkdir");
        fs::write(dir.join("node_modules/kinesis-local/main.js"), "partial").expect("write");
        assert!(!is_installed(&dir));
        let tmp = root.join("tmp");
        fake_install(&tmp, "new");
        move_into_place(&tmp, &dir).expect("replaced");
        assert!(is_installed(&dir));
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("", 3), "");
        assert_eq!(tail("only", 3), "only");
    }

    #[test]
    fn probe_refuses_closed_ports_and_non_http() {
        let port = free_port().expect("port");
        assert!(!probe_once(port, Probe::AnyHttp));

        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            for reply in [
                &b"HTTP/1.1 404 Not Found\r\n\r\n"[..],
                b"HTTP/1.1 200 OK\r\n\r\n",
                b"garbage-garbage",
            ] {
                let (mut s, _) = listener.accept().expect("accept");
                let mut buf = [0_u8; 256];
                let _ = s.read(&mut buf);
                s.write_all(reply).expect("reply");
            }
        });
        assert!(!probe_once(port, Probe::Ok200("/healthcheck")));
        assert!(probe_once(port, Probe::Ok200("/healthcheck")));
        assert!(!probe_once(port, Probe::AnyHttp));
        server.join().expect("server");
    }
}
