//! The MultiLangDaemon's properties file: the Java `.properties` syntax, every key the
//! daemon documents, and what each one does here.
//!
//! ```text
//!  app.properties ──parse_entries (Java syntax: # ! comments, = : or space, \ continuations,
//!                  \uXXXX escapes)──▶ [Entry { key, value, line }]
//!     ──MultiLangConfig::from_entries──▶ each key: applied ─▶ MultiLangConfig field
//!                                                  no effect here ─▶ no_effect (one warning)
//!                                                  unknown / bad value ─▶ PropertiesError
//!                                                                          (file:line, exit 2)
//! ```
//!
//! Keys are matched as the daemon matches them: exactly (case-sensitive), except the
//! `AwsCredentialsProvider*` family, whose prefix is matched in any case. An empty value
//! leaves a key unset (the sample files carry `workerId =` lines). Values are trimmed.
//!
//! Defaults follow the daemon where they decide behaviour: shards without a checkpoint start
//! at `LATEST`, and `retrievalMode` `DEFAULT` reads with enhanced fan-out unless a polling
//! key (`maxRecords`, `idleTimeBetweenReadsInMillis`, ...) is set. Timings the daemon leaves
//! to the KCL's defaults take this project's library defaults.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kinesis_consumer::{FanOutConfig, InitialPosition, PollingConfig, Retrieval};

use crate::args;

/// A properties file that cannot be used; every variant names the file, and the key and
/// line where there is one. Exit status 2, as for a bad command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PropertiesError {
    /// The file cannot be read.
    #[error("cannot read properties file {path}: {reason}")]
    Read {
        /// The file as named on the command line.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// A line breaks the `.properties` syntax (a bad `\u` escape).
    #[error("{path}:{line}: {reason}")]
    Syntax {
        /// The file.
        path: String,
        /// The line (1-based) where the entry starts.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A key the MultiLangDaemon does not know.
    #[error("{path}:{line}: unknown property {key:?}{}", did_you_mean(suggestion))]
    UnknownKey {
        /// The file.
        path: String,
        /// The line (1-based) where the entry starts.
        line: usize,
        /// The key as written.
        key: String,
        /// A known key that differs only in case, if any.
        suggestion: Option<&'static str>,
    },
    /// A value that is not valid for its key.
    #[error("{path}:{line}: {key} = {value:?}: {reason}")]
    BadValue {
        /// The file.
        path: String,
        /// The line (1-based) where the entry starts.
        line: usize,
        /// The key.
        key: String,
        /// The value as written (trimmed).
        value: String,
        /// What is wrong with it, and what is accepted.
        reason: String,
    },
    /// A required key is missing (or empty).
    #[error("{path}: {what} is required")]
    Missing {
        /// The file.
        path: String,
        /// The key (or keys) that must be set.
        what: &'static str,
    },
}

/// ", did you mean X?" or nothing.
fn did_you_mean(suggestion: &Option<&'static str>) -> String {
    suggestion.map_or_else(String::new, |s| format!(" (did you mean {s:?}?)"))
}

/// One `key = value` of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key, unescaped.
    pub key: String,
    /// The value, unescaped and trimmed.
    pub value: String,
    /// The line (1-based) where the entry starts.
    pub line: usize,
}

/// Splits `text` into entries with the rules of `java.util.Properties.load`: comment lines
/// start with `#` or `!`; the key ends at the first unescaped `=`, `:` or white space; a
/// line ending in an odd number of backslashes continues on the next one (whose leading
/// white space is dropped); `\t \n \r \f \uXXXX` are escapes, any other `\c` is `c`.
///
/// # Errors
/// [`PropertiesError::Syntax`] for a malformed `\u` escape.
pub fn parse_entries(path: &str, text: &str) -> Result<Vec<Entry>, PropertiesError> {
    let mut entries = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((index, first)) = lines.next() {
        let start = index + 1;
        let trimmed = first.trim_start_matches([' ', '\t', '\x0c']);
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
            continue;
        }
        // Join continuation lines into one logical line.
        let mut logical = String::from(trimmed);
        while ends_with_odd_backslashes(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start_matches([' ', '\t', '\x0c'])),
                None => break,
            }
        }
        let (raw_key, raw_value) = split_key(&logical);
        let syntax = |reason: String| PropertiesError::Syntax {
            path: path.to_owned(),
            line: start,
            reason,
        };
        let key = unescape(raw_key).map_err(syntax)?;
        let value = unescape(raw_value).map_err(syntax)?;
        entries.push(Entry {
            key,
            value: value.trim().to_owned(),
            line: start,
        });
    }
    Ok(entries)
}

/// Whether the line ends in an odd number of backslashes (a continuation).
fn ends_with_odd_backslashes(line: &str) -> bool {
    line.bytes().rev().take_while(|b| *b == b'\\').count() % 2 == 1
}

/// Splits a logical line into its raw key and raw value (escapes still in place).
fn split_key(line: &str) -> (&str, &str) {
    let mut end = line.len();
    let mut chars = line.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '=' | ':' | ' ' | '\t' | '\x0c' => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let key = &line[..end];
    let mut rest = line[end..].trim_start_matches([' ', '\t', '\x0c']);
    if let Some(r) = rest.strip_prefix(['=', ':']) {
        rest = r.trim_start_matches([' ', '\t', '\x0c']);
    }
    (key, rest)
}

/// Resolves the escapes of a key or value.
fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            None => {}
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = (hex.len() == 4)
                    .then(|| u32::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("malformed \\u escape \"\\u{hex}\""))?;
                out.push(code);
            }
            Some(other) => out.push(other),
        }
    }
    Ok(out)
}

/// What the daemon's value converter accepts for a key that has no effect here (checked
/// all the same, so that a typo in a value is said at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Any text.
    Text,
    /// `true` or `false`, in any case.
    Bool,
    /// A whole number (may be negative).
    Int,
    /// A decimal number.
    Float,
}

/// Keys the daemon documents that are read and checked but do nothing here, with the kind
/// of value each takes. They are named in one warning at start-up.
const NO_EFFECT: &[(&str, Kind)] = &[
    ("processingLanguage", Kind::Text),
    ("maxActiveThreads", Kind::Int),
    ("cleanupLeasesUponShardCompletion", Kind::Bool),
    ("ignoreUnexpectedChildShards", Kind::Bool),
    ("enablePriorityLeaseAssignment", Kind::Bool),
    ("leaseTableDeletionProtectionEnabled", Kind::Bool),
    ("leaseTablePitrEnabled", Kind::Bool),
    ("initialLeaseTableReadCapacity", Kind::Int),
    ("initialLeaseTableWriteCapacity", Kind::Int),
    ("leaseTableScanTotalSegments", Kind::Int),
    ("maxLeaseRenewalThreads", Kind::Int),
    ("listShardsBackoffTimeInMillis", Kind::Int),
    ("maxListShardsRetryAttempts", Kind::Int),
    ("shardPrioritization", Kind::Text),
    (
        "skipShardSyncAtWorkerInitializationIfLeasesExist",
        Kind::Bool,
    ),
    ("schedulerInitializationBackoffTimeMillis", Kind::Int),
    ("clientVersionConfig", Kind::Text),
    ("migrateAllEntitiesToLeaseTable", Kind::Bool),
    ("tableMigrationCompleteBakeTimeSeconds", Kind::Int),
    ("taskBackoffTimeMillis", Kind::Int),
    ("metricsBufferTimeMillis", Kind::Int),
    ("metricsMaxQueueSize", Kind::Int),
    ("metricsLevel", Kind::Text),
    ("metricsEnabledDimensions", Kind::Text),
    ("logWarningForTaskAfterMillis", Kind::Int),
    ("validateSequenceNumberBeforeCheckpointing", Kind::Bool),
    ("retryGetRecordsInSeconds", Kind::Int),
    ("maxGetRecordsThreadPool", Kind::Int),
    ("millisBehindLatestThresholdForReducedTps", Kind::Int),
    ("gracefulLeaseHandoffTimeoutMillis", Kind::Int),
    ("isGracefulLeaseHandoffEnabled", Kind::Bool),
    ("inMemoryWorkerMetricsCaptureFrequencyMillis", Kind::Int),
    ("workerMetricsReporterFreqInMillis", Kind::Int),
    ("noOfPersistedMetricsPerWorkerMetrics", Kind::Int),
    ("disableWorkerMetrics", Kind::Bool),
    ("maxThroughputPerHostKBps", Kind::Float),
    ("dampeningPercentage", Kind::Int),
    ("reBalanceThresholdPercentage", Kind::Int),
    ("allowThroughputOvershoot", Kind::Bool),
    ("varianceBalancingFrequency", Kind::Int),
    ("workerMetricsEMAAlpha", Kind::Float),
    ("staleWorkerMetricsEntryCleanupDuration", Kind::Text),
    ("workerMetricsTableName", Kind::Text),
    ("workerMetricsBillingMode", Kind::Text),
    ("workerMetricsReadCapacity", Kind::Int),
    ("workerMetricsWriteCapacity", Kind::Int),
    ("workerMetricsPointInTimeRecoveryEnabled", Kind::Bool),
    ("workerMetricsDeletionProtectionEnabled", Kind::Bool),
    ("workerMetricsTags", Kind::Text),
    ("coordinatorStateTableName", Kind::Text),
    ("coordinatorStateBillingMode", Kind::Text),
    ("coordinatorStateReadCapacity", Kind::Int),
    ("coordinatorStateWriteCapacity", Kind::Int),
    ("coordinatorStatePointInTimeRecoveryEnabled", Kind::Bool),
    ("coordinatorStateDeletionProtectionEnabled", Kind::Bool),
    ("coordinatorStateTags", Kind::Text),
    ("fanoutConfig.consumerArn", Kind::Text),
    ("fanoutConfig.maxDescribeStreamSummaryRetries", Kind::Int),
    ("fanoutConfig.maxDescribeStreamConsumerRetries", Kind::Int),
    ("fanoutConfig.registerStreamConsumerRetries", Kind::Int),
    ("fanoutConfig.retryBackoffMillis", Kind::Int),
];

/// Keys that change what the host does (see [`MultiLangConfig`]).
const APPLIED: &[&str] = &[
    "executableName",
    "applicationName",
    "streamName",
    "streamArn",
    "tableName",
    "workerId",
    "workerIdentifier",
    "regionName",
    "kinesisEndpoint",
    "dynamoDBEndpoint",
    "initialPositionInStream",
    "initialPositionInStreamExtended",
    "failoverTimeMillis",
    "leaseAssignmentIntervalMillis",
    "shardSyncIntervalMillis",
    "maxLeasesForWorker",
    "maxLeasesToStealAtOneTime",
    "parentShardPollIntervalMillis",
    "shutdownGraceMillis",
    "timeoutInSeconds",
    "retrievalMode",
    "maxRecords",
    "idleTimeBetweenReadsInMillis",
    "callProcessRecordsEvenForEmptyRecordList",
    "fanoutConfig.consumerName",
];

/// The polling keys: with `retrievalMode` `DEFAULT` (or unset), setting any of them reads
/// by polling, as the daemon decides.
const POLLING_KEYS: &[&str] = &[
    "maxRecords",
    "idleTimeBetweenReadsInMillis",
    "retryGetRecordsInSeconds",
    "maxGetRecordsThreadPool",
    "millisBehindLatestThresholdForReducedTps",
];

/// The prefix of the credential provider keys, matched in any case as the daemon does.
const CREDENTIALS_PREFIX: &str = "awscredentialsprovider";

/// The credential provider the standard AWS chain stands for: a key naming it changes
/// nothing and is not warned about.
const DEFAULT_CREDENTIALS: &str = "DefaultCredentialsProvider";

/// The child command of `executableName`: split on spaces as the daemon does, the program
/// found in the properties file's folder or else on `PATH`, run in that folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executable {
    /// The value as written.
    pub text: String,
    /// The program: an absolute path, or a bare name looked up on `PATH`.
    pub program: PathBuf,
    /// Its arguments, as written (relative paths resolve against `working_dir`).
    pub args: Vec<String>,
    /// The properties file's folder: the child's working directory.
    pub working_dir: PathBuf,
    /// The line of `executableName`, for errors found when the program is looked for.
    pub line: usize,
}

impl Executable {
    /// Splits `text` and places the program relative to `base` (the properties file's
    /// folder): a path with a `/` is joined to `base` unless absolute; a bare name is taken
    /// from `base` when a file of that name is there (`executableName = sample_app.py`),
    /// else left to the `PATH` lookup (`executableName = python3 app.py`).
    fn new(text: &str, base: &Path, line: usize) -> Option<Self> {
        let mut words = text.split_whitespace();
        let first = words.next()?;
        let program = if first.contains('/') || base.join(first).is_file() {
            base.join(first)
        } else {
            PathBuf::from(first)
        };
        Some(Executable {
            text: text.to_owned(),
            program,
            args: words.map(str::to_owned).collect(),
            working_dir: base.to_path_buf(),
            line,
        })
    }

    /// Whether the program can be found: the file exists (for a path), or some `PATH`
    /// folder has it (for a bare name).
    pub fn program_exists(&self) -> bool {
        if self.program.components().count() > 1 || self.program.is_absolute() {
            return self.program.is_file();
        }
        std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|dir| dir.join(&self.program).is_file())
        })
    }
}

/// Everything the host takes from the properties file.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiLangConfig {
    /// The file as named on the command line (for messages).
    pub path: String,
    /// The child command (`executableName`, required).
    pub executable: Executable,
    /// `applicationName` (required): names the lease table unless `tableName` does.
    pub application_name: String,
    /// The stream: `streamName`, or the name inside `streamArn` (which wins, as in the
    /// daemon). One of them is required.
    pub stream_name: String,
    /// `tableName`: the lease table, when not named after the application.
    pub table_name: Option<String>,
    /// `workerId` (or `workerIdentifier`). Default: the library's (host, process, random).
    pub worker_id: Option<String>,
    /// `initialPositionInStream` (`TRIM_HORIZON`, `LATEST`) or
    /// `initialPositionInStreamExtended` (epoch seconds: `AT_TIMESTAMP`). Default: `LATEST`.
    pub initial_position: InitialPosition,
    /// `regionName`: overrides the region of the AWS configuration chain.
    pub region: Option<String>,
    /// `kinesisEndpoint`: overrides `AWS_ENDPOINT_URL_KINESIS`.
    pub kinesis_endpoint: Option<String>,
    /// `dynamoDBEndpoint`: overrides `AWS_ENDPOINT_URL_DYNAMODB`.
    pub dynamodb_endpoint: Option<String>,
    /// `failoverTimeMillis`. Default: the library's (10 s, as the KCL).
    pub failover_time: Option<Duration>,
    /// `leaseAssignmentIntervalMillis`: how often the lease table is scanned to take
    /// leases. Default: 2 × (failover + 25 ms).
    pub taker_interval: Option<Duration>,
    /// `shardSyncIntervalMillis`. Default: the library's (60 s, as the KCL).
    pub shard_sync_interval: Option<Duration>,
    /// `maxLeasesForWorker`. Default: no limit.
    pub max_leases_per_worker: Option<usize>,
    /// `maxLeasesToStealAtOneTime`. Default: 1.
    pub max_leases_to_steal: Option<usize>,
    /// `parentShardPollIntervalMillis`: also the pause before a failed child's shard is
    /// started again. Default: the library's (1 s).
    pub parent_poll_interval: Option<Duration>,
    /// `shutdownGraceMillis`: how long a graceful shutdown waits for the children.
    /// Default: the library's (60 s).
    pub shutdown_grace: Option<Duration>,
    /// How shards are read (`retrievalMode`, the polling keys, `fanoutConfig.consumerName`).
    pub retrieval: Retrieval,
    /// `callProcessRecordsEvenForEmptyRecordList`: hand the child an empty
    /// `processRecords` when no records came for a while.
    pub empty_record_lists: bool,
    /// How long "a while" is for [`empty_record_lists`](Self::empty_record_lists): the
    /// polling idle time (`idleTimeBetweenReadsInMillis`, default 1 s).
    pub empty_record_list_interval: Duration,
    /// `timeoutInSeconds`: the longest wait for each message from a child. Default: none.
    pub timeout: Option<Duration>,
    /// Keys that were accepted but do nothing here, with their lines (for the warning).
    pub no_effect: Vec<(String, usize)>,
    /// Keys set more than once: (key, earlier line, later line); the later value wins.
    pub duplicates: Vec<(String, usize, usize)>,
}

/// The values of the file by key, remembering lines; every lookup marks the key as used.
struct Values<'a> {
    /// The file, for errors.
    path: &'a str,
    /// Each key's last entry.
    by_key: HashMap<&'a str, &'a Entry>,
}

impl<'a> Values<'a> {
    /// The entry of `key` when it is set to a non-empty value.
    fn get(&self, key: &str) -> Option<&'a Entry> {
        self.by_key
            .get(key)
            .copied()
            .filter(|e| !e.value.is_empty())
    }

    /// A [`PropertiesError::BadValue`] for `entry`.
    fn bad(&self, entry: &Entry, reason: impl Into<String>) -> PropertiesError {
        PropertiesError::BadValue {
            path: self.path.to_owned(),
            line: entry.line,
            key: entry.key.clone(),
            value: entry.value.clone(),
            reason: reason.into(),
        }
    }

    /// A string value checked by `check` (one of the CLI's argument rules).
    fn text(
        &self,
        key: &str,
        check: impl Fn(&str) -> Result<String, String>,
    ) -> Result<Option<String>, PropertiesError> {
        self.get(key)
            .map(|e| check(&e.value).map_err(|r| self.bad(e, r)))
            .transpose()
    }

    /// A whole number in `min..=max`.
    fn int(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, PropertiesError> {
        let Some(e) = self.get(key) else {
            return Ok(None);
        };
        let n: i64 = e
            .value
            .parse()
            .map_err(|_| self.bad(e, "expected a whole number"))?;
        if !(min..=max).contains(&n) {
            return Err(self.bad(e, format!("out of range: {min} to {max}")));
        }
        Ok(Some(n))
    }

    /// Milliseconds in `min..=max`, as a duration.
    fn millis(&self, key: &str, min: i64, max: i64) -> Result<Option<Duration>, PropertiesError> {
        Ok(self
            .int(key, min, max)?
            .map(|ms| Duration::from_millis(ms.unsigned_abs())))
    }

    /// `true` or `false`, in any case.
    fn bool(&self, key: &str) -> Result<Option<bool>, PropertiesError> {
        self.get(key)
            .map(|e| parse_bool(&e.value).ok_or_else(|| self.bad(e, "expected true or false")))
            .transpose()
    }
}

/// `true` / `false` in any case.
fn parse_bool(value: &str) -> Option<bool> {
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// A day in milliseconds: the upper bound of the interval settings.
const DAY_MS: i64 = 86_400_000;

impl MultiLangConfig {
    /// Reads and checks the properties file at `path`; a relative `executableName` is
    /// placed in the file's folder.
    ///
    /// # Errors
    /// [`PropertiesError`]: the file cannot be read, a syntax error, an unknown key, a bad
    /// value or a missing required key, naming the line.
    pub fn load(path: &Path) -> Result<Self, PropertiesError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PropertiesError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = std::fs::canonicalize(&base).unwrap_or(base);
        let entries = parse_entries(&shown, &text)?;
        Self::from_entries(&shown, &entries, &base)
    }

    /// Builds the configuration from parsed entries; `base` is the properties file's folder.
    ///
    /// # Errors
    /// As [`load`](Self::load), without the read and syntax errors.
    pub fn from_entries(
        path: &str,
        entries: &[Entry],
        base: &Path,
    ) -> Result<Self, PropertiesError> {
        let mut by_key: HashMap<&str, &Entry> = HashMap::new();
        let mut duplicates = Vec::new();
        let mut no_effect = Vec::new();
        for e in entries {
            let key = e.key.as_str();
            if !APPLIED.contains(&key) {
                if let Some((_, kind)) = NO_EFFECT.iter().find(|(k, _)| *k == key) {
                    check_kind(path, e, *kind)?;
                    if !e.value.is_empty() {
                        no_effect.push((e.key.clone(), e.line));
                    }
                } else if key.to_ascii_lowercase().starts_with(CREDENTIALS_PREFIX)
                    && is_credentials_key(key)
                {
                    if !e.value.is_empty() && e.value != DEFAULT_CREDENTIALS {
                        no_effect.push((e.key.clone(), e.line));
                    }
                } else {
                    return Err(PropertiesError::UnknownKey {
                        path: path.to_owned(),
                        line: e.line,
                        key: e.key.clone(),
                        suggestion: suggest(key),
                    });
                }
            }
            if let Some(earlier) = by_key.insert(key, e) {
                duplicates.push((e.key.clone(), earlier.line, e.line));
            }
        }
        let v = Values { path, by_key };

        let exe_entry = v.get("executableName").ok_or(PropertiesError::Missing {
            path: path.to_owned(),
            what: "executableName",
        })?;
        let executable = Executable::new(&exe_entry.value, base, exe_entry.line)
            .ok_or_else(|| v.bad(exe_entry, "names no program"))?;
        let application_name =
            v.text("applicationName", args::application_name)?
                .ok_or(PropertiesError::Missing {
                    path: path.to_owned(),
                    what: "applicationName",
                })?;
        let stream_name = match v.get("streamArn") {
            Some(e) => stream_of_arn(&e.value).map_err(|r| v.bad(e, r))?,
            None => v
                .text("streamName", args::stream_name)?
                .ok_or(PropertiesError::Missing {
                    path: path.to_owned(),
                    what: "streamName or streamArn",
                })?,
        };
        let table_name = v.text("tableName", args::application_name)?;
        let worker_id = match v.text("workerId", args::non_empty)? {
            Some(id) => Some(id),
            None => v.text("workerIdentifier", args::non_empty)?,
        };

        let initial_position = match (
            v.get("initialPositionInStream"),
            v.get("initialPositionInStreamExtended"),
        ) {
            (Some(a), Some(b)) => {
                let later = if b.line > a.line { b } else { a };
                return Err(v.bad(
                    later,
                    "initialPositionInStream and initialPositionInStreamExtended both set the \
                     initial position: keep one",
                ));
            }
            (Some(e), None) => {
                match e.value.to_ascii_uppercase().as_str() {
                    "TRIM_HORIZON" => InitialPosition::TrimHorizon,
                    "LATEST" => InitialPosition::Latest,
                    "AT_TIMESTAMP" => return Err(v.bad(
                        e,
                        "AT_TIMESTAMP needs a time: set initialPositionInStreamExtended to epoch \
                         seconds instead",
                    )),
                    _ => return Err(v.bad(e, "expected TRIM_HORIZON or LATEST")),
                }
            }
            (None, Some(e)) => {
                let secs: u64 = e
                    .value
                    .parse()
                    .map_err(|_| v.bad(e, "expected a time in whole seconds since 1970"))?;
                let at = UNIX_EPOCH
                    .checked_add(Duration::from_secs(secs))
                    .filter(|t| *t <= SystemTime::now())
                    .ok_or_else(|| {
                        v.bad(e, "in the future: Kinesis starts AT_TIMESTAMP only at a time that has passed")
                    })?;
                InitialPosition::AtTimestamp(at)
            }
            (None, None) => InitialPosition::Latest,
        };

        let region = v.text("regionName", args::non_empty)?;
        let kinesis_endpoint = v.text("kinesisEndpoint", endpoint)?;
        let dynamodb_endpoint = v.text("dynamoDBEndpoint", endpoint)?;
        let failover_time = v.millis("failoverTimeMillis", 100, DAY_MS)?;
        let taker_interval = v.millis("leaseAssignmentIntervalMillis", 1, DAY_MS)?;
        let shard_sync_interval = v.millis("shardSyncIntervalMillis", 1, DAY_MS)?;
        let max_leases_per_worker = v
            .int("maxLeasesForWorker", 1, i64::from(i32::MAX))?
            .map(|n| n.unsigned_abs() as usize);
        let max_leases_to_steal = v
            .int("maxLeasesToStealAtOneTime", 0, i64::from(i32::MAX))?
            .map(|n| n.unsigned_abs() as usize);
        let parent_poll_interval = v.millis("parentShardPollIntervalMillis", 1, DAY_MS)?;
        let shutdown_grace = v.millis("shutdownGraceMillis", 0, DAY_MS)?;
        let timeout = v
            .int("timeoutInSeconds", 1, DAY_MS / 1000)?
            .map(|s| Duration::from_secs(s.unsigned_abs()));
        let empty_record_lists = v
            .bool("callProcessRecordsEvenForEmptyRecordList")?
            .unwrap_or(false);

        let mut polling = PollingConfig::default();
        if let Some(n) = v.int("maxRecords", 1, 10_000)? {
            polling.max_records = i32::try_from(n).unwrap_or(10_000);
        }
        if let Some(d) = v.millis("idleTimeBetweenReadsInMillis", 1, DAY_MS)? {
            polling.idle_time_between_reads = d;
        }
        let empty_record_list_interval = polling.idle_time_between_reads;
        let consumer_name = v.text("fanoutConfig.consumerName", args::consumer_name)?;
        let polling_keys_set: Vec<&Entry> = POLLING_KEYS.iter().filter_map(|k| v.get(k)).collect();
        let fan_out = match v.get("retrievalMode") {
            Some(e) => match e.value.to_ascii_uppercase().as_str() {
                "FANOUT" => true,
                "POLLING" => false,
                "DEFAULT" => polling_keys_set.is_empty(),
                _ => return Err(v.bad(e, "expected FANOUT, POLLING or DEFAULT")),
            },
            None => polling_keys_set.is_empty(),
        };
        let retrieval = if fan_out {
            let mut f = FanOutConfig::default();
            if let Some(name) = consumer_name {
                f = f.with_consumer_name(name);
            }
            Retrieval::FanOut(f)
        } else {
            if let Some(e) = v.get("fanoutConfig.consumerName") {
                no_effect.push((e.key.clone(), e.line));
            }
            Retrieval::Polling(polling)
        };
        if fan_out {
            // Applied keys that polling would use.
            for e in &polling_keys_set {
                if APPLIED.contains(&e.key.as_str()) {
                    no_effect.push((e.key.clone(), e.line));
                }
            }
        }
        no_effect.sort_by_key(|(_, line)| *line);

        Ok(MultiLangConfig {
            path: path.to_owned(),
            executable,
            application_name,
            stream_name,
            table_name,
            worker_id,
            initial_position,
            region,
            kinesis_endpoint,
            dynamodb_endpoint,
            failover_time,
            taker_interval,
            shard_sync_interval,
            max_leases_per_worker,
            max_leases_to_steal,
            parent_poll_interval,
            shutdown_grace,
            retrieval,
            empty_record_lists,
            empty_record_list_interval,
            timeout,
            no_effect,
            duplicates,
        })
    }

    /// The one start-up warning naming every key accepted without effect, if any.
    pub fn no_effect_warning(&self) -> Option<String> {
        if self.no_effect.is_empty() {
            return None;
        }
        let keys: Vec<String> = self
            .no_effect
            .iter()
            .map(|(k, line)| format!("{k} (line {line})"))
            .collect();
        Some(format!(
            "{}: these properties are accepted but have no effect here: {}",
            self.path,
            keys.join(", ")
        ))
    }
}

/// Whether `key` is one of the three credential provider keys (prefix in any case).
fn is_credentials_key(key: &str) -> bool {
    let rest = &key[CREDENTIALS_PREFIX.len()..];
    rest.is_empty() || rest == "DynamoDB" || rest == "CloudWatch"
}

/// Checks a no-effect key's value against its kind (an empty value is always fine).
fn check_kind(path: &str, e: &Entry, kind: Kind) -> Result<(), PropertiesError> {
    if e.value.is_empty() {
        return Ok(());
    }
    let reason = match kind {
        Kind::Text => return Ok(()),
        Kind::Bool if parse_bool(&e.value).is_none() => "expected true or false",
        Kind::Int if e.value.parse::<i64>().is_err() => "expected a whole number",
        Kind::Float if e.value.parse::<f64>().is_err() => "expected a number",
        _ => return Ok(()),
    };
    Err(PropertiesError::BadValue {
        path: path.to_owned(),
        line: e.line,
        key: e.key.clone(),
        value: e.value.clone(),
        reason: reason.to_owned(),
    })
}

/// A known key equal to `key` but for case.
fn suggest(key: &str) -> Option<&'static str> {
    APPLIED
        .iter()
        .copied()
        .chain(NO_EFFECT.iter().map(|(k, _)| *k))
        .find(|k| k.eq_ignore_ascii_case(key))
}

/// An endpoint URL: `http://` or `https://` and a host.
fn endpoint(value: &str) -> Result<String, String> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or("expected an http:// or https:// URL")?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("the URL has no host".into());
    }
    Ok(value.to_owned())
}

/// The stream name inside `arn:<partition>:kinesis:<region>:<account>:stream/<name>`.
fn stream_of_arn(arn: &str) -> Result<String, String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [scheme, _partition, service, region, account, resource] = parts[..] else {
        return Err("expected arn:<partition>:kinesis:<region>:<account>:stream/<name>".into());
    };
    if scheme != "arn" || service != "kinesis" || region.is_empty() || account.is_empty() {
        return Err("expected arn:<partition>:kinesis:<region>:<account>:stream/<name>".into());
    }
    let name = resource
        .strip_prefix("stream/")
        .ok_or("the resource of a stream ARN is stream/<name>")?;
    args::stream_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<MultiLangConfig, PropertiesError> {
        let entries = parse_entries("app.properties", text)?;
        MultiLangConfig::from_entries("app.properties", &entries, Path::new("/srv/app"))
    }

    const MINIMAL: &str = "executableName = python3 app.py\n\
                           applicationName = my-app\n\
                           streamName = my-stream\n";

    #[test]
    fn java_properties_syntax() {
        let text = "# comment\n\
                    ! also a comment\n\
                    \n\
                    a=1\n\
                    b : 2\n\
                    c 3\n\
                    \x20 d  =   spaced value  \n\
                    e = first \\\n\
                    \x20   second\n\
                    f\\ g = h\\u0041\\t\n\
                    i\n\
                    j = ends with two \\\\\n\
                    k = 4\n";
        let entries = parse_entries("p", text).unwrap();
        let got: Vec<(&str, &str, usize)> = entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str(), e.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", "1", 4),
                ("b", "2", 5),
                ("c", "3", 6),
                ("d", "spaced value", 7),
                ("e", "first second", 8),
                ("f g", "hA", 10),
                ("i", "", 11),
                ("j", "ends with two \\", 12),
                ("k", "4", 13),
            ]
        );
        let e = parse_entries("p", "a = 1\nb = \\u12\n").unwrap_err();
        assert_eq!(
            e,
            PropertiesError::Syntax {
                path: "p".into(),
                line: 2,
                reason: "malformed \\u escape \"\\u12\"".into()
            }
        );
    }

    #[test]
    fn minimal_file_takes_the_daemon_defaults() {
        let c = config(MINIMAL).unwrap();
        assert_eq!(c.application_name, "my-app");
        assert_eq!(c.stream_name, "my-stream");
        assert_eq!(c.initial_position, InitialPosition::Latest);
        assert!(
            matches!(c.retrieval, Retrieval::FanOut(ref f) if *f == FanOutConfig::default()),
            "DEFAULT without polling keys reads with fan-out: {:?}",
            c.retrieval
        );
        assert_eq!(c.timeout, None);
        assert!(!c.empty_record_lists);
        assert_eq!(c.no_effect_warning(), None);
        assert_eq!(c.worker_id, None);
    }

    #[test]
    fn relative_executable_is_placed_in_the_properties_folder() {
        let c = config(MINIMAL).unwrap();
        assert_eq!(
            c.executable.program,
            PathBuf::from("python3"),
            "a bare name is left to PATH"
        );
        assert_eq!(c.executable.args, vec!["app.py"]);
        assert_eq!(c.executable.working_dir, PathBuf::from("/srv/app"));
        assert_eq!(c.executable.line, 1);
        let c = config(&MINIMAL.replace("python3 app.py", "bin/run.sh  --fast")).unwrap();
        assert_eq!(c.executable.program, PathBuf::from("/srv/app/bin/run.sh"));
        assert_eq!(c.executable.args, vec!["--fast"]);
        let c = config(&MINIMAL.replace("python3 app.py", "/usr/bin/env python3")).unwrap();
        assert_eq!(c.executable.program, PathBuf::from("/usr/bin/env"));

        // A bare name that is a file in the folder is taken from there.
        let dir = std::env::temp_dir().join(format!("multilang-props-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("sample_app.py"), "").unwrap();
        let text = MINIMAL.replace("python3 app.py", "sample_app.py");
        let entries = parse_entries("p", &text).unwrap();
        let c = MultiLangConfig::from_entries("p", &entries, &dir).unwrap();
        assert_eq!(c.executable.program, dir.join("sample_app.py"));
        assert!(c.executable.program_exists());
        let _ = std::fs::remove_dir_all(&dir);
        let missing = config(&MINIMAL.replace("python3 app.py", "./nope.sh")).unwrap();
        assert!(!missing.executable.program_exists());
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let e = config(&format!("{MINIMAL}maxRecord = 5\n")).unwrap_err();
        assert_eq!(
            e,
            PropertiesError::UnknownKey {
                path: "app.properties".into(),
                line: 4,
                key: "maxRecord".into(),
                suggestion: None,
            }
        );
        assert_eq!(
            e.to_string(),
            "app.properties:4: unknown property \"maxRecord\""
        );
        let e = config(&format!("{MINIMAL}\n\nMaxRecords = 5\n")).unwrap_err();
        assert!(
            e.to_string()
                .ends_with(":6: unknown property \"MaxRecords\" (did you mean \"maxRecords\"?)"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_refused_with_key_and_line() {
        for (line, reason) in [
            ("maxRecords = 0", "out of range: 1 to 10000"),
            ("maxRecords = lots", "expected a whole number"),
            ("failoverTimeMillis = 50", "out of range: 100 to 86400000"),
            (
                "initialPositionInStream = OLDEST",
                "expected TRIM_HORIZON or LATEST",
            ),
            (
                "retrievalMode = PUSH",
                "expected FANOUT, POLLING or DEFAULT",
            ),
            (
                "callProcessRecordsEvenForEmptyRecordList = yes",
                "expected true or false",
            ),
            ("timeoutInSeconds = 0", "out of range"),
            ("kinesisEndpoint = localhost:4567", "http://"),
            ("streamArn = arn:aws:s3:::bucket", "expected arn:"),
            (
                "cleanupLeasesUponShardCompletion = maybe",
                "expected true or false",
            ),
            ("maxActiveThreads = many", "expected a whole number"),
        ] {
            let e = config(&format!("{MINIMAL}{line}\n")).unwrap_err();
            let key = line.split(' ').next().unwrap();
            assert!(
                matches!(&e, PropertiesError::BadValue { line: 4, key: k, .. } if k == key),
                "{line}: {e:?}"
            );
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("app.properties:4: {key} = ")),
                "{text}"
            );
            assert!(text.contains(reason), "{line}: {text}");
        }
        let e = config(&MINIMAL.replace("my-app", "my app")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("app.properties:2: applicationName = \"my app\""),
            "{e}"
        );
    }

    #[test]
    fn required_keys_are_named() {
        let e = config("applicationName = a-b\nstreamName = s\n").unwrap_err();
        assert_eq!(e.to_string(), "app.properties: executableName is required");
        let e = config("executableName = x\nstreamName = s\n").unwrap_err();
        assert_eq!(e.to_string(), "app.properties: applicationName is required");
        let e = config("executableName = x\napplicationName = a-b\nstreamName =\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "app.properties: streamName or streamArn is required"
        );
    }

    #[test]
    fn no_effect_keys_are_named_in_one_warning() {
        let text = format!(
            "{MINIMAL}processingLanguage = python/3.8\n\
             AwsCredentialsProvider = DefaultCredentialsProvider\n\
             awscredentialsproviderDynamoDB = ProfileCredentialsProvider|dev\n\
             workerId =\n\
             metricsLevel = NONE\n\
             maxActiveThreads = 0\n"
        );
        let c = config(&text).unwrap();
        assert_eq!(
            c.no_effect_warning().unwrap(),
            "app.properties: these properties are accepted but have no effect here: \
             processingLanguage (line 4), awscredentialsproviderDynamoDB (line 6), \
             metricsLevel (line 8), maxActiveThreads (line 9)"
        );
        assert_eq!(c.worker_id, None, "an empty value leaves a key unset");
        // Polling keys do nothing with fan-out, and the consumer name nothing with polling.
        let c = config(&format!(
            "{MINIMAL}retrievalMode = FANOUT\nmaxRecords = 100\n"
        ))
        .unwrap();
        assert_eq!(c.no_effect, vec![("maxRecords".to_owned(), 5)]);
        let c = config(&format!(
            "{MINIMAL}retrievalMode = polling\nfanoutConfig.consumerName = c1\n"
        ))
        .unwrap();
        assert_eq!(
            c.no_effect,
            vec![("fanoutConfig.consumerName".to_owned(), 5)]
        );
    }

    #[test]
    fn applied_keys_reach_the_configuration() {
        let text = format!(
            "{MINIMAL}streamArn = arn:aws:kinesis:us-east-5:000000000000:stream/from-arn\n\
             tableName = my-leases\n\
             workerId = w-1\n\
             regionName = eu-west-1\n\
             kinesisEndpoint = http://127.0.0.1:4567\n\
             dynamoDBEndpoint = https://ddb.local\n\
             initialPositionInStream = trim_horizon\n\
             failoverTimeMillis = 2000\n\
             leaseAssignmentIntervalMillis = 500\n\
             shardSyncIntervalMillis = 30000\n\
             maxLeasesForWorker = 4\n\
             maxLeasesToStealAtOneTime = 0\n\
             parentShardPollIntervalMillis = 250\n\
             shutdownGraceMillis = 5000\n\
             timeoutInSeconds = 7\n\
             maxRecords = 100\n\
             idleTimeBetweenReadsInMillis = 200\n\
             callProcessRecordsEvenForEmptyRecordList = TRUE\n"
        );
        let c = config(&text).unwrap();
        assert_eq!(c.stream_name, "from-arn", "streamArn wins over streamName");
        assert_eq!(c.table_name.as_deref(), Some("my-leases"));
        assert_eq!(c.worker_id.as_deref(), Some("w-1"));
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.kinesis_endpoint.as_deref(), Some("http://127.0.0.1:4567"));
        assert_eq!(c.dynamodb_endpoint.as_deref(), Some("https://ddb.local"));
        assert_eq!(c.initial_position, InitialPosition::TrimHorizon);
        assert_eq!(c.failover_time, Some(Duration::from_secs(2)));
        assert_eq!(c.taker_interval, Some(Duration::from_millis(500)));
        assert_eq!(c.shard_sync_interval, Some(Duration::from_secs(30)));
        assert_eq!(c.max_leases_per_worker, Some(4));
        assert_eq!(c.max_leases_to_steal, Some(0));
        assert_eq!(c.parent_poll_interval, Some(Duration::from_millis(250)));
        assert_eq!(c.shutdown_grace, Some(Duration::from_secs(5)));
        assert_eq!(c.timeout, Some(Duration::from_secs(7)));
        assert!(c.empty_record_lists);
        assert_eq!(c.empty_record_list_interval, Duration::from_millis(200));
        let Retrieval::Polling(p) = &c.retrieval else {
            panic!("polling keys set: polling, as the daemon's DEFAULT")
        };
        assert_eq!(p.max_records, 100);
        assert_eq!(p.idle_time_between_reads, Duration::from_millis(200));
        assert_eq!(c.no_effect_warning(), None);

        let c = config(&format!(
            "{MINIMAL}retrievalMode = FANOUT\nfanoutConfig.consumerName = billing\n\
             initialPositionInStreamExtended = 1636609142\n"
        ))
        .unwrap();
        assert_eq!(
            c.retrieval,
            Retrieval::FanOut(FanOutConfig::default().with_consumer_name("billing"))
        );
        assert_eq!(
            c.initial_position,
            InitialPosition::AtTimestamp(UNIX_EPOCH + Duration::from_secs(1_636_609_142))
        );
    }

    #[test]
    fn conflicting_and_repeated_keys() {
        let e = config(&format!(
            "{MINIMAL}initialPositionInStream = LATEST\ninitialPositionInStreamExtended = 1\n"
        ))
        .unwrap_err();
        assert!(
            matches!(e, PropertiesError::BadValue { line: 5, .. }),
            "{e:?}"
        );
        let c = config(&format!("{MINIMAL}streamName = other\n")).unwrap();
        assert_eq!(c.stream_name, "other", "the later value wins");
        assert_eq!(c.duplicates, vec![("streamName".to_owned(), 3, 4)]);
    }

    #[test]
    fn the_sample_properties_of_amazon_kclpy_are_accepted() {
        // The keys and values of amazon-kclpy 3.2.0's samples/sample.properties.
        let text = "executableName = sample_kclpy_app.py\n\
                    streamArn = arn:aws:kinesis:us-east-5:000000000000:stream/kclpysample\n\
                    streamName = kclpysample\n\
                    applicationName = PythonKCLSample\n\
                    AwsCredentialsProvider = DefaultCredentialsProvider\n\
                    processingLanguage = python/3.8\n\
                    initialPositionInStream = TRIM_HORIZON\n\
                    #initialPositionInStreamExtended = 1636609142\n\
                    regionName = us-east-1\n";
        let c = config(text).unwrap();
        assert_eq!(c.stream_name, "kclpysample");
        assert_eq!(c.region.as_deref(), Some("us-east-1"));
        assert_eq!(c.no_effect, vec![("processingLanguage".to_owned(), 6)]);
    }
}
