//! The pinned peers the tests and benchmarks run against, installed once under the target
//! directory: the MultiLang record-processor libraries `kinesis-cat multilang` hosts (under
//! `<target>/multilang-peers/`), kcl-rs, the consumer peer of the latency bench, and aiokpl,
//! the producer peer of the shard-limit bench (both under `<target>/peers/`).
//!
//! ```text
//!  kclpy()    ─ pip download --no-binary :all: amazon-kclpy==3.2.0 ─ tar xzf ─▶ kclpy/amazon_kclpy-3.2.0
//!  node_kcl() ─ npm install --ignore-scripts aws-kcl@2.3.2 ──────────────────▶ node/node_modules
//!  kcl_rs()   ─ python3 -m venv; pip install kcl-rs==0.1.4 ──────────────────▶ kcl-rs-venv/bin/python
//!  aiokpl()   ─ python3 -m venv; pip install aiokpl==0.2.0 ──────────────────▶ aiokpl-venv/bin/python
//!     each: staged in .staging-<name>-<pid>-<ns>/, checked (import / require), stamped,
//!           renamed into place; a folder with a matching stamp is kept as it is
//! ```
//!
//! amazon-kclpy is used as its sdist's pure-Python modules on `PYTHONPATH`: `pip install`
//! would fetch the Java jars of the MultiLangDaemon. When a package registry cannot be
//! reached the installer says [`PeerError::Offline`], and [`available`] turns that into a
//! skip with a message.

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The pinned amazon-kclpy sdist.
pub const KCLPY: &str = "amazon-kclpy==3.2.0";
/// The folder the sdist unpacks to.
const KCLPY_DIR: &str = "amazon_kclpy-3.2.0";
/// The pinned Node library.
pub const NPM_KCL: &str = "aws-kcl@2.3.2";
/// Written into an installed peer folder once it is complete.
const STAMP: &str = "multilang-peer.stamp";

/// The workspace target directory ([`kinesis_emulators::workspace_target_dir`]).
pub fn target_dir() -> PathBuf {
    kinesis_emulators::workspace_target_dir().expect("the workspace's target directory")
}

/// Why a peer is not available: a registry that cannot be reached (the test is skipped),
/// or anything else (the test fails).
#[derive(Debug, Clone)]
pub enum PeerError {
    /// The registry could not be reached.
    Offline(String),
    /// The install failed otherwise.
    Failed(String),
}

/// The peer's path, or `None` after saying why the test is skipped.
pub fn available(peer: &Result<PathBuf, PeerError>, what: &str) -> Option<PathBuf> {
    match peer {
        Ok(p) => Some(p.clone()),
        Err(PeerError::Offline(e)) => {
            eprintln!("SKIPPED: {what} cannot be installed (package registry unreachable):\n{e}");
            None
        }
        Err(PeerError::Failed(e)) => panic!("installing {what} failed:\n{e}"),
    }
}

/// Whether an installer's output says the registry could not be reached.
fn offline(output: &str) -> bool {
    [
        "Network is unreachable",
        "Temporary failure in name resolution",
        "Name or service not known",
        "Failed to establish a new connection",
        "No matching distribution found",
        "Could not find a version",
        "ENOTFOUND",
        "EAI_AGAIN",
        "ECONNREFUSED",
        "ECONNRESET",
        "ETIMEDOUT",
        "getaddrinfo",
        "timed out",
    ]
    .iter()
    .any(|s| output.contains(s))
}

/// Runs an installer step; its failure is `Offline` when the output says so.
fn run(cmd: &mut StdCommand) -> Result<(), PeerError> {
    let out = cmd
        .output()
        .map_err(|e| PeerError::Failed(format!("could not start {cmd:?}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!(
        "{cmd:?} failed ({})\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Err(if offline(&text) {
        PeerError::Offline(text)
    } else {
        PeerError::Failed(text)
    })
}

/// Makes `root/name` hold a complete install stamped `stamp`: keeps a matching one, else
/// installs into a fresh staging folder and renames it into place (concurrent test
/// processes each stage their own; a lost rename is fine when the winner matches).
fn install_once(
    root: &Path,
    name: &str,
    stamp: &str,
    install: impl FnOnce(&Path) -> Result<(), PeerError>,
) -> Result<PathBuf, PeerError> {
    let dest = root.join(name);
    let matches = |dir: &Path| std::fs::read_to_string(dir.join(STAMP)).is_ok_and(|s| s == stamp);
    if matches(&dest) {
        return Ok(dest);
    }
    let unique = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    if dest.exists() {
        let trash = root.join(format!(".old-{name}-{unique}"));
        if std::fs::rename(&dest, &trash).is_ok() {
            let _ = std::fs::remove_dir_all(&trash);
        }
    }
    let staging = root.join(format!(".staging-{name}-{unique}"));
    let staged = staging.join(name);
    let fail = |e: std::io::Error| PeerError::Failed(e.to_string());
    std::fs::create_dir_all(&staged).map_err(fail)?;
    let result =
        install(&staged).and_then(|()| std::fs::write(staged.join(STAMP), stamp).map_err(fail));
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let renamed = std::fs::rename(&staged, &dest);
    let _ = std::fs::remove_dir_all(&staging);
    match renamed {
        Ok(()) => Ok(dest),
        Err(_) if matches(&dest) => Ok(dest),
        Err(e) => Err(fail(e)),
    }
}

/// The unpacked amazon-kclpy sdist (put on `PYTHONPATH`; `samples/` inside).
pub fn kclpy() -> Result<PathBuf, PeerError> {
    static PEER: OnceLock<Result<PathBuf, PeerError>> = OnceLock::new();
    PEER.get_or_init(|| {
        let root = target_dir().join("multilang-peers");
        let stamp = format!("pip download --no-binary :all: {KCLPY}");
        let dir = install_once(&root, "kclpy", &stamp, |dir| {
            run(StdCommand::new("python3")
                .args(["-m", "pip", "download", "--no-deps", "--no-binary", ":all:"])
                .args(["--disable-pip-version-check", "--no-input", "-q", "-d"])
                .arg(dir)
                .arg(KCLPY))?;
            run(StdCommand::new("tar")
                .arg("xzf")
                .arg(dir.join(format!("{KCLPY_DIR}.tar.gz")))
                .arg("-C")
                .arg(dir))?;
            run(StdCommand::new("python3")
                .args([
                    "-c",
                    "from amazon_kclpy import kcl; from amazon_kclpy.v3 import processor",
                ])
                .env("PYTHONPATH", dir.join(KCLPY_DIR)))
        })?;
        Ok(dir.join(KCLPY_DIR))
    })
    .clone()
}

/// The `node_modules` folder holding aws-kcl (used as `NODE_PATH`).
pub fn node_kcl() -> Result<PathBuf, PeerError> {
    static PEER: OnceLock<Result<PathBuf, PeerError>> = OnceLock::new();
    PEER.get_or_init(|| {
        let root = target_dir().join("multilang-peers");
        let stamp = format!("npm install --ignore-scripts {NPM_KCL}");
        let dir = install_once(&root, "node", &stamp, |dir| {
            run(StdCommand::new("npm")
                .arg("install")
                .arg("--prefix")
                .arg(dir)
                .args([
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "--ignore-scripts",
                ])
                .arg(NPM_KCL))?;
            run(StdCommand::new("node")
                .args(["-e", "require('aws-kcl')"])
                .env("NODE_PATH", dir.join("node_modules")))
        })?;
        Ok(dir.join("node_modules"))
    })
    .clone()
}

/// The pinned kcl-rs (LocalStack's Rust port of the Java KCL v3, with Python bindings).
pub const KCL_RS: &str = "kcl-rs==0.1.4";

/// The `python` of a venv holding kcl-rs.
pub fn kcl_rs() -> Result<PathBuf, PeerError> {
    static PEER: OnceLock<Result<PathBuf, PeerError>> = OnceLock::new();
    PEER.get_or_init(|| pip_venv("kcl-rs-venv", KCL_RS, "import kcl_rs"))
        .clone()
}

/// The pinned aiokpl, a pure-Python asyncio equivalent of the KPL: the producer peer of
/// the shard-limit bench.
pub const AIOKPL: &str = "aiokpl==0.2.0";

/// The `python` of a venv holding aiokpl.
pub fn aiokpl() -> Result<PathBuf, PeerError> {
    static PEER: OnceLock<Result<PathBuf, PeerError>> = OnceLock::new();
    PEER.get_or_init(|| pip_venv("aiokpl-venv", AIOKPL, "import aiokpl"))
        .clone()
}

/// The `python` of the venv `<target>/peers/<name>` holding the pinned `requirement`,
/// checked with the statement `check`.
fn pip_venv(name: &str, requirement: &str, check: &str) -> Result<PathBuf, PeerError> {
    let root = target_dir().join("peers");
    let stamp = format!("python3 -m venv; pip install {requirement}");
    let venv = install_once(&root, name, &stamp, |dir| {
        run(StdCommand::new("python3").args(["-m", "venv"]).arg(dir))?;
        run(StdCommand::new(dir.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
            ])
            .args(["-q", "--retries", "2", "--timeout", "20", requirement]))?;
        run(StdCommand::new(dir.join("bin/python")).args(["-c", check]))
    })?;
    Ok(venv.join("bin/python"))
}
