//! `consume --streams-file PATH`: a multi-stream application's list of streams read from a
//! file, and read again at every poll of the library's stream tracker, so that streams are
//! added and removed by editing the file while the workers run.
//!
//! ```text
//!  run(): StreamsFile::open(path) ── unreadable, bad line, no stream ─▶ StreamsFileError (exit 2)
//!            │ the first list
//!            ▼
//!  Scheduler ── every --stream-tracker-interval ──▶ StreamTracker::stream_configs()
//!            ─▶ read the file ─▶ parse (pure) ─▶ [StreamConfig]  ─▶ new streams added,
//!                     │                  │                           missing ones retired
//!                     └── error ─────────┴─▶ Err: the library keeps the previous list and
//!                                                 logs a warning naming the file and line
//!            changes (pure): what was added and removed since the last good read ─▶ said on stderr
//! ```
//!
//! # The file
//! One stream per line: its name, or its ARN, or its identifier `account:name:creationEpoch`
//! (as the library's `StreamRef` reads them), optionally followed by white space and where
//! that stream's shards without a checkpoint start (the forms of `--from`: `trim-horizon`,
//! `latest`, `at-timestamp:TIME` or a time ago such as `-5m`, taken when the line is read);
//! without one, `--from` / `--since`. Everything from a `#` to the end of the line is a
//! comment (stream names, ARNs and positions never hold one); blank lines are ignored. A
//! stream listed twice, a line with more than two fields and a file without any stream are
//! refused, naming the file and line: an empty file is taken for a mistake (a half-written
//! file, a wrong path), not as "consume nothing".
//!
//! ```text
//! # orders since the beginning, payments from now on
//! orders
//! payments   latest
//! arn:aws:kinesis:us-east-1:123456789012:stream/audit   at-timestamp:2024-01-02T03:04:05Z
//! ```
//!
//! The position of a stream matters only when a worker adds it (its new leases are created
//! there); changing it later changes nothing for a stream already consumed.
//!
//! Replace the file atomically (write another file, then rename it over this one): a
//! worker reading a half-written file would take the lines missing from it for streams
//! removed, and retire them until its next read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use kinesis_consumer::{StreamConfig, StreamTracker};

use crate::args;

/// A streams file that cannot be used; every variant names the file, and the line where
/// there is one. Exit status 2 at start-up, as for a bad command line; while the worker
/// runs, the library keeps the previous list and logs it as a warning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamsFileError {
    /// The file cannot be read (missing, not allowed, not UTF-8).
    #[error("cannot read streams file {path}: {reason}")]
    Read {
        /// The file as named on the command line.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// A line is not a stream with an optional position.
    #[error("{path}:{line}: {reason}")]
    Line {
        /// The file.
        path: String,
        /// The line (1-based).
        line: usize,
        /// What is wrong, with the accepted forms.
        reason: String,
    },
    /// A stream is listed on two lines.
    #[error("{path}:{line}: {stream} is listed twice (first on line {first})")]
    Twice {
        /// The file.
        path: String,
        /// The line (1-based) of the second entry.
        line: usize,
        /// The line (1-based) of the first entry.
        first: usize,
        /// The stream as written.
        stream: String,
    },
    /// Nothing but comments and blank lines.
    #[error(
        "streams file {path} lists no stream (one stream name or ARN per line, # comments); \
         to stop consuming, stop the workers"
    )]
    Empty {
        /// The file.
        path: String,
    },
}

/// Reads the streams of `text` (the contents of the file `path`, named in errors).
///
/// # Errors
/// [`StreamsFileError::Line`] for a bad stream or position or an extra field,
/// [`StreamsFileError::Twice`] for a stream listed twice, [`StreamsFileError::Empty`] when
/// no line names a stream.
pub fn parse(path: &str, text: &str) -> Result<Vec<StreamConfig>, StreamsFileError> {
    let mut streams = Vec::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.split_once('#').map_or(raw, |(before, _)| before);
        let mut fields = content.split_whitespace();
        let Some(stream) = fields.next() else {
            continue;
        };
        let bad = |reason: String| StreamsFileError::Line {
            path: path.to_owned(),
            line,
            reason,
        };
        let mut config = StreamConfig::new(stream).map_err(|e| bad(e.to_string()))?;
        if let Some(position) = fields.next() {
            let position = args::position(position)
                .map_err(|e| bad(format!("bad position {position:?} of {stream}: {e}")))?;
            config = config.with_initial_position(position);
        }
        if let Some(extra) = fields.next() {
            return Err(bad(format!(
                "{extra:?} after the stream and its position: expected STREAM [POSITION]"
            )));
        }
        let key = config.stream.to_string();
        if let Some(first) = first_line.get(&key) {
            return Err(StreamsFileError::Twice {
                path: path.to_owned(),
                line,
                first: *first,
                stream: key,
            });
        }
        first_line.insert(key, line);
        streams.push(config);
    }
    if streams.is_empty() {
        return Err(StreamsFileError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(streams)
}

/// The streams of `after` not in `before` (added) and those of `before` not in `after`
/// (removed), each in the order listed.
pub fn changes(before: &[String], after: &[String]) -> (Vec<String>, Vec<String>) {
    let added = after
        .iter()
        .filter(|s| !before.contains(s))
        .cloned()
        .collect();
    let removed = before
        .iter()
        .filter(|s| !after.contains(s))
        .cloned()
        .collect();
    (added, removed)
}

/// The streams of each entry, as written (name, ARN or identifier).
fn names(streams: &[StreamConfig]) -> Vec<String> {
    streams.iter().map(|c| c.stream.to_string()).collect()
}

/// The library's [`StreamTracker`] over a streams file: each poll reads the file again.
#[derive(Debug)]
pub struct StreamsFile {
    /// The file, as named on the command line.
    path: PathBuf,
    /// The streams of the last good read, to say on standard error what a new list adds
    /// and removes (once per change, not at every poll).
    last: Mutex<Vec<String>>,
}

impl StreamsFile {
    /// Reads `path` once (the list the worker starts with) and makes the tracker.
    ///
    /// # Cancellation
    /// Safe to drop: it only reads the file.
    ///
    /// # Errors
    /// [`StreamsFileError::Read`] when the file cannot be read, and [`parse`]'s errors.
    pub async fn open(path: &Path) -> Result<(Self, Vec<StreamConfig>), StreamsFileError> {
        let streams = read(path).await?;
        let tracker = Self {
            path: path.to_owned(),
            last: Mutex::new(names(&streams)),
        };
        Ok((tracker, streams))
    }
}

/// Reads and parses the file at `path`.
async fn read(path: &Path) -> Result<Vec<StreamConfig>, StreamsFileError> {
    let shown = path.display().to_string();
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| StreamsFileError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    parse(&shown, &text)
}

#[async_trait]
impl StreamTracker for StreamsFile {
    async fn stream_configs(
        &self,
    ) -> Result<Vec<StreamConfig>, Box<dyn std::error::Error + Send + Sync>> {
        let streams = read(&self.path).await?;
        let now = names(&streams);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let (added, removed) = changes(&last, &now);
        if !added.is_empty() || !removed.is_empty() {
            crate::say!(
                "kinesis-cat: {} now lists {} (added: {}; removed: {})",
                self.path.display(),
                now.join(", "),
                if added.is_empty() {
                    "-".to_owned()
                } else {
                    added.join(", ")
                },
                if removed.is_empty() {
                    "-".to_owned()
                } else {
                    removed.join(", ")
                },
            );
            *last = now;
        }
        Ok(streams)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinesis_consumer::{InitialPosition, StreamRef};

    fn line_error(text: &str) -> (usize, String) {
        match parse("f", text) {
            Err(StreamsFileError::Line { line, reason, .. }) => (line, reason),
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn names_arns_identifiers_positions_comments_and_blank_lines() {
        let text = "\
# the streams of the app

orders
  payments   latest   # from now on
arn:aws:kinesis:us-east-1:123456789012:stream/audit\tat-timestamp:1704164645
123456789012:clicks:1700000000 TRIM_HORIZON
";
        let streams = parse("f", text).unwrap();
        let got: Vec<(String, Option<InitialPosition>)> = streams
            .iter()
            .map(|c| (c.stream.to_string(), c.initial_position))
            .collect();
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_704_164_645);
        assert_eq!(
            got,
            vec![
                ("orders".to_owned(), None),
                ("payments".to_owned(), Some(InitialPosition::Latest)),
                (
                    "arn:aws:kinesis:us-east-1:123456789012:stream/audit".to_owned(),
                    Some(InitialPosition::AtTimestamp(at))
                ),
                (
                    "123456789012:clicks:1700000000".to_owned(),
                    Some(InitialPosition::TrimHorizon)
                ),
            ]
        );
        assert!(matches!(streams[0].stream, StreamRef::Name(_)));
        assert!(matches!(streams[2].stream, StreamRef::Arn(_)));
        assert!(matches!(streams[3].stream, StreamRef::Identifier(_)));
        // A time ago is taken when the line is read.
        let ago = parse("f", "s -5m").unwrap();
        let Some(InitialPosition::AtTimestamp(t)) = ago[0].initial_position else {
            panic!("{ago:?}")
        };
        let age = std::time::SystemTime::now().duration_since(t).unwrap();
        assert!(age >= std::time::Duration::from_secs(300), "{age:?}");
    }

    #[test]
    fn bad_lines_are_refused_naming_the_file_and_line() {
        let (line, reason) = line_error("ok\nmy!stream\n");
        assert_eq!(line, 2);
        assert!(
            reason.contains("invalid stream name \"my!stream\""),
            "{reason}"
        );
        let (line, reason) = line_error("# c\n\norders sometime\n");
        assert_eq!(line, 3);
        assert!(
            reason.contains("sometime") && reason.contains("trim-horizon"),
            "{reason}"
        );
        let (line, reason) = line_error("orders latest extra\n");
        assert_eq!(line, 1);
        assert!(reason.contains("extra"), "{reason}");
        let (_, reason) = line_error("arn:aws:sqs:us-east-1:1:q\n");
        assert!(!reason.is_empty());
        let e = parse("/etc/streams", "a\nb\n  a latest\n").unwrap_err();
        assert_eq!(
            e,
            StreamsFileError::Twice {
                path: "/etc/streams".into(),
                line: 3,
                first: 1,
                stream: "a".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "/etc/streams:3: a is listed twice (first on line 1)"
        );
        for empty in ["", "\n\n", "# nothing yet\n   # at all\n"] {
            let e = parse("/etc/streams", empty).unwrap_err();
            assert_eq!(
                e,
                StreamsFileError::Empty {
                    path: "/etc/streams".into()
                }
            );
            assert!(e.to_string().contains("/etc/streams"), "{e}");
        }
    }

    #[test]
    fn changes_name_what_was_added_and_removed_in_order() {
        let v = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            changes(&v(&["a", "b"]), &v(&["b", "c", "d"])),
            (v(&["c", "d"]), v(&["a"]))
        );
        assert_eq!(changes(&v(&["a"]), &v(&["a"])), (v(&[]), v(&[])));
    }

    #[tokio::test]
    async fn the_tracker_reads_the_file_again_at_every_poll_and_fails_on_a_bad_one() {
        let dir = std::env::temp_dir().join(format!(
            "kinesis-cat-streams-file-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("streams");
        let missing = StreamsFile::open(&path).await.unwrap_err();
        assert!(
            matches!(&missing, StreamsFileError::Read { path: p, .. } if p == &path.display().to_string()),
            "{missing:?}"
        );
        assert!(missing.to_string().contains("streams"), "{missing}");

        std::fs::write(&path, "a\nb\n").unwrap();
        let (tracker, first) = StreamsFile::open(&path).await.unwrap();
        assert_eq!(names(&first), ["a", "b"]);
        std::fs::write(&path, "b\nc latest\n").unwrap();
        let now = tracker.stream_configs().await.unwrap();
        assert_eq!(names(&now), ["b", "c"]);
        assert_eq!(now[1].initial_position, Some(InitialPosition::Latest));
        assert_eq!(*tracker.last.lock().unwrap(), ["b", "c"]);

        // A bad line or a missing file: an error naming the file (the library keeps the
        // previous list), and the last good list is kept for the next comparison.
        std::fs::write(&path, "b\nc d e\n").unwrap();
        let e = tracker.stream_configs().await.unwrap_err().to_string();
        assert!(e.contains(&format!("{}:2:", path.display())), "{e}");
        std::fs::remove_file(&path).unwrap();
        let e = tracker.stream_configs().await.unwrap_err().to_string();
        assert!(e.contains("cannot read streams file"), "{e}");
        assert_eq!(*tracker.last.lock().unwrap(), ["b", "c"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
