//! Logs: the libraries log through `tracing`; this installs the subscriber that prints
//! them to standard error.
//!
//! ```text
//!  tracing events ─▶ EnvFilter (RUST_LOG, else by -v count) ─▶ fmt ─▶ Redacting writer ─▶ stderr
//!                                                                   (credential secrets
//!                                                                    replaced by <redacted>)
//! ```
//!
//! | flags | what is shown |
//! |---|---|
//! | none | warnings and errors |
//! | `-v` | also this project's info (worker start, leases taken, shard ends) |
//! | `-vv` | this project's debug, the AWS SDK's info |
//! | `-vvv` | this project's trace, the AWS SDK's debug |
//! | `RUST_LOG=...` | exactly what it says (`tracing_subscriber::EnvFilter` syntax) |
//!
//! Credentials never appear: the secret access key and session token in use are
//! registered by [`crate::aws::load`] and replaced in every line written, at any level.

use std::io::{IsTerminal, Write};
use std::sync::RwLock;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Secrets to replace in log output. Short values (under 8 bytes) are not secrets worth
/// the cost and would mangle ordinary words; local emulators take `test`.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers a secret (a secret access key, a session token) to be replaced in logs.
pub fn redact(secret: &str) {
    if secret.len() < 8 {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_owned());
    }
}

/// Replaces every registered secret in `text`.
fn scrub(text: &str) -> std::borrow::Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|p| p.into_inner());
    let mut out = std::borrow::Cow::Borrowed(text);
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = std::borrow::Cow::Owned(out.replace(s.as_str(), "<redacted>"));
        }
    }
    out
}

/// The filter for `-v` counted `verbosity` times, unless `RUST_LOG` is set.
pub fn filter(verbosity: u8, rust_log: Option<&str>) -> EnvFilter {
    if let Some(directives) = rust_log.filter(|d| !d.trim().is_empty()) {
        return EnvFilter::new(directives);
    }
    let ours = [
        "kinesis_cat",
        "kinesis_consumer",
        "kinesis_producer",
        "kinesis_agg",
    ];
    let (ours_level, others) = match verbosity {
        0 => ("warn", "warn"),
        1 => ("info", "warn"),
        2 => ("debug", "info"),
        _ => ("trace", "debug"),
    };
    let mut directives = others.to_owned();
    for krate in ours {
        // `produce` reports the producer's failed calls itself (once per kind, with a
        // hint): its warnings would say the same thing twice.
        let level = if krate == "kinesis_producer" && verbosity == 0 {
            "error"
        } else {
            ours_level
        };
        directives.push_str(&format!(",{krate}={level}"));
    }
    EnvFilter::new(directives)
}

/// Installs the subscriber; called once by `main`. A second call does nothing.
pub fn init(verbosity: u8) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(verbosity, rust_log.as_deref()))
        .with_writer(RedactingStderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(true)
        .try_init();
}

/// Makes a [`Redacting`] writer over standard error per event.
#[derive(Debug, Clone, Copy)]
struct RedactingStderr;

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = Redacting<std::io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        Redacting(std::io::stderr())
    }
}

/// Writes through to `W` with registered secrets replaced. The fmt layer writes each event
/// as one buffer, so a secret is never split across two writes.
#[derive(Debug)]
struct Redacting<W>(W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(scrub(text).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_in_every_write() {
        redact("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
        redact("test");
        let mut out = Redacting(Vec::new());
        out.write_all(b"key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY test\n")
            .unwrap();
        assert_eq!(
            String::from_utf8(out.0).unwrap(),
            "key=<redacted> test\n",
            "long secrets are replaced, short values left alone"
        );
    }

    #[test]
    fn verbosity_maps_to_levels_unless_rust_log_is_set() {
        let quiet = filter(0, None).to_string();
        assert!(quiet.split(',').any(|d| d == "warn"), "{quiet}");
        assert!(quiet.contains("kinesis_consumer=warn"), "{quiet}");
        assert!(quiet.contains("kinesis_producer=error"), "{quiet}");
        assert!(filter(1, None)
            .to_string()
            .contains("kinesis_consumer=info"));
        assert!(filter(2, None).to_string().split(',').any(|d| d == "info"));
        assert!(filter(9, None).to_string().contains("kinesis_cat=trace"));
        assert_eq!(
            filter(3, Some("aws_config=debug")).to_string(),
            "aws_config=debug"
        );
        assert!(filter(0, Some("  "))
            .to_string()
            .contains("kinesis_producer=error"));
    }
}
