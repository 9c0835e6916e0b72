//! Parsers for argument values, so that a bad value is refused by clap before anything is
//! done (exit status 2, a message naming the flag).
//!
//! ```text
//!  "--stream ''"            ─▶ stream_name  ─▶ error: invalid value '' for '--stream <STREAM>': ...
//!  "--from yesterday"       ─▶ position     ─▶ error: invalid value 'yesterday' for '--from <FROM>': ...
//!  "--failover-ms 0"        ─▶ failover_ms  ─▶ error: invalid value '0' for '--failover-ms <FAILOVER_MS>': ...
//!  "register 'bad name'"    ─▶ consumer_name ─▶ error: invalid value 'bad name' for '<NAME>': ...
//! ```
//!
//! The rules are AWS's (stream and stream consumer names: 1–128 characters of
//! `a-z A-Z 0-9 _ . -`; DynamoDB table names: 3–255 of the same), checked again by the
//! libraries' builders. `consume --consumer-name` is left to the consumer library's
//! builder, whose typed `ConfigError` exits with the same status 2.

use std::time::SystemTime;

use kinesis_consumer::InitialPosition;

/// Whether `name` is made of the characters AWS allows in stream and table names.
fn name_chars_ok(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A Kinesis stream name: 1–128 characters of `a-z A-Z 0-9 _ . -`.
///
/// # Errors
/// Says which rule the value breaks.
pub fn stream_name(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("a stream name cannot be empty".into());
    }
    if value.len() > 128 {
        return Err(format!(
            "a stream name has at most 128 characters, this has {}",
            value.len()
        ));
    }
    if !name_chars_ok(value) {
        return Err("a stream name may contain only a-z, A-Z, 0-9, '_', '.' and '-'".into());
    }
    Ok(value.to_owned())
}

/// An enhanced fan-out stream consumer name: 1–128 characters of `a-z A-Z 0-9 _ . -`.
///
/// # Errors
/// Says which rule the value breaks.
pub fn consumer_name(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("a stream consumer name cannot be empty".into());
    }
    if value.len() > 128 {
        return Err(format!(
            "a stream consumer name has at most 128 characters, this has {}",
            value.len()
        ));
    }
    if !name_chars_ok(value) {
        return Err(
            "a stream consumer name may contain only a-z, A-Z, 0-9, '_', '.' and '-'".into(),
        );
    }
    Ok(value.to_owned())
}

/// A consumer application name, which names its DynamoDB lease table: 3–255 characters of
/// `a-z A-Z 0-9 _ . -`.
///
/// # Errors
/// Says which rule the value breaks.
pub fn application_name(value: &str) -> Result<String, String> {
    if value.len() < 3 || value.len() > 255 {
        return Err(format!(
            "an application name names a DynamoDB table: 3 to 255 characters, this has {}",
            value.len()
        ));
    }
    if !name_chars_ok(value) {
        return Err("an application name may contain only a-z, A-Z, 0-9, '_', '.' and '-'".into());
    }
    Ok(value.to_owned())
}

/// A non-empty value (worker ids, shard ids).
///
/// # Errors
/// When the value is empty or only white space.
pub fn non_empty(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        return Err("cannot be empty".into());
    }
    Ok(value.to_owned())
}

/// An endpoint URL: `http://` or `https://`, then a host.
///
/// # Errors
/// When the scheme is missing or another, or nothing follows it.
pub fn endpoint_url(value: &str) -> Result<String, String> {
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
        .ok_or_else(|| {
            format!("{value:?} is not an http:// or https:// URL, e.g. http://127.0.0.1:4566")
        })?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
        return Err(format!(
            "{value:?} names no host, e.g. http://127.0.0.1:4566"
        ));
    }
    Ok(value.to_owned())
}

/// A partition key: 1–256 Unicode characters (Kinesis counts characters, not bytes).
///
/// # Errors
/// When it is empty or longer than 256 characters.
pub fn partition_key(value: &str) -> Result<String, String> {
    match value.chars().count() {
        0 => Err("a partition key cannot be empty".into()),
        n if n > 256 => Err(format!(
            "a partition key has at most 256 characters, this has {n}"
        )),
        _ => Ok(value.to_owned()),
    }
}

/// The failover time in milliseconds: at least 100 (renewals run every failover / 3 −
/// 25 ms, so less leaves no time between them) and at most a day.
///
/// # Errors
/// When out of range or not a number.
pub fn failover_ms(value: &str) -> Result<u64, String> {
    let ms: u64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a whole number of milliseconds"))?;
    if !(100..=86_400_000).contains(&ms) {
        return Err(format!(
            "{ms} ms is out of range: the failover time is 100 ms to 86400000 ms (a day)"
        ));
    }
    Ok(ms)
}

/// The forms `--from` accepts, for error messages.
const POSITIONS: &str = "expected trim-horizon, latest, at-timestamp:<RFC 3339 time or epoch \
                         seconds> (e.g. at-timestamp:2024-01-02T03:04:05Z or \
                         at-timestamp:1704164645) or a time ago such as -5m, -30s, -2h, -1d";

/// Where shards without a checkpoint start: `trim-horizon`, `latest`,
/// `at-timestamp:TIME` (TIME an RFC 3339 time, with `Z`, `z` or a `±HH:MM` offset, `T` or
/// `t`, optional fraction, or seconds since the Unix epoch, optional fraction), or a time
/// ago, `-DURATION` (`-5m`, `-90s`, `-2h`, `-1d`, `-500ms`: AT_TIMESTAMP that long before
/// now). The keywords are also accepted as the API writes them (`TRIM_HORIZON`, `LATEST`,
/// `AT_TIMESTAMP:...`).
///
/// # Errors
/// Names the accepted forms.
pub fn position(value: &str) -> Result<InitialPosition, String> {
    if let Some(ago) = value.strip_prefix('-') {
        return since(ago).map_err(|e| format!("{value:?}: {e}; {POSITIONS}"));
    }
    let (keyword, rest) = match value.split_once(':') {
        Some((k, rest)) => (k, Some(rest)),
        None => (value, None),
    };
    let keyword = keyword.to_ascii_lowercase().replace('_', "-");
    match (keyword.as_str(), rest) {
        ("trim-horizon", None) => Ok(InitialPosition::TrimHorizon),
        ("latest", None) => Ok(InitialPosition::Latest),
        ("at-timestamp", Some(ts)) => {
            let t = epoch_seconds(ts).or_else(|| rfc3339(ts)).ok_or_else(|| {
                format!(
                    "{ts:?} is neither an RFC 3339 time such as 2024-01-02T03:04:05Z or \
                     2024-01-02T05:04:05+02:00 nor seconds since the Unix epoch such as \
                     1704164645"
                )
            })?;
            if t > SystemTime::now() {
                return Err(format!(
                    "{ts:?} is in the future: Kinesis starts AT_TIMESTAMP only at a time that has passed"
                ));
            }
            Ok(InitialPosition::AtTimestamp(t))
        }
        _ => Err(POSITIONS.to_owned()),
    }
}

/// A duration for `--since` and relative `--from`: a whole number and a unit, `ms`, `s`,
/// `m`, `h` or `d`, longer than zero.
///
/// # Errors
/// Names the accepted forms.
pub fn duration(value: &str) -> Result<std::time::Duration, String> {
    let text = value.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let n: u64 = number
        .parse()
        .map_err(|_| "expected a time such as 500ms, 30s, 5m, 2h or 1d".to_owned())?;
    let d = match unit {
        "h" => Some(std::time::Duration::from_secs(n.saturating_mul(3600))),
        "d" => Some(std::time::Duration::from_secs(n.saturating_mul(86_400))),
        other => time_of(n, other),
    }
    .ok_or_else(|| "expected a time such as 500ms, 30s, 5m, 2h or 1d".to_owned())?;
    if d.is_zero() {
        return Err("a time ago must be longer than zero (latest is now)".to_owned());
    }
    Ok(d)
}

/// `--since DURATION`: AT_TIMESTAMP that long before now (`10m`, `2h`, `1d`, ...).
///
/// # Errors
/// Names the accepted forms; refuses a time before the Unix epoch.
pub fn since(value: &str) -> Result<InitialPosition, String> {
    let d = duration(value)?;
    SystemTime::now()
        .checked_sub(d)
        .filter(|t| *t >= SystemTime::UNIX_EPOCH)
        .map(InitialPosition::AtTimestamp)
        .ok_or_else(|| format!("{value:?} ago is before 1970"))
}

/// Where `tail` starts in a shard: a position every shard has, or a sequence number of one
/// shard (`at-sequence:SEQ`, `after-sequence:SEQ`; only with `tail --shard`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailStart {
    /// `trim-horizon`, `latest`, `at-timestamp:...` or a time ago.
    Position(InitialPosition),
    /// AT_SEQUENCE_NUMBER: the record with this sequence number and those after it.
    AtSequence(String),
    /// AFTER_SEQUENCE_NUMBER: the records after this sequence number.
    AfterSequence(String),
}

/// Parses `tail --from`: [`position`]'s forms, or `at-sequence:SEQ` /
/// `after-sequence:SEQ` (SEQ a decimal sequence number; also `AT_SEQUENCE_NUMBER:SEQ` /
/// `AFTER_SEQUENCE_NUMBER:SEQ`).
///
/// # Errors
/// Names the accepted forms.
pub fn tail_start(value: &str) -> Result<TailStart, String> {
    if let Some((keyword, seq)) = value.split_once(':') {
        let keyword = keyword.to_ascii_lowercase().replace('_', "-");
        let at = match keyword.as_str() {
            "at-sequence" | "at-sequence-number" => Some(true),
            "after-sequence" | "after-sequence-number" => Some(false),
            _ => None,
        };
        if let Some(at) = at {
            if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) || seq.len() > 128 {
                return Err(format!(
                    "{seq:?} is not a sequence number (decimal digits, as `tail` prints them)"
                ));
            }
            return Ok(if at {
                TailStart::AtSequence(seq.to_owned())
            } else {
                TailStart::AfterSequence(seq.to_owned())
            });
        }
    }
    position(value).map(TailStart::Position).map_err(|e| {
        if e == POSITIONS {
            format!("{POSITIONS}, or at-sequence:SEQ / after-sequence:SEQ with --shard")
        } else {
            e
        }
    })
}

/// Parses seconds since the Unix epoch: digits, optionally a fraction (`1704164645.25`).
fn epoch_seconds(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 9 {
        return None;
    }
    let secs: u64 = whole.parse().ok()?;
    let nanos: u32 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().ok()?
    };
    SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::new(secs, nanos))
}

/// Parses an RFC 3339 time with `Z`/`z` or a numeric `±HH:MM` offset.
fn rfc3339(text: &str) -> Option<SystemTime> {
    use aws_sdk_kinesis::primitives::{DateTime, DateTimeFormat};
    let text = text.trim();
    let (base, offset_secs) = match text.char_indices().rev().nth(5) {
        Some((i, sign @ ('+' | '-'))) if text[i..].len() == 6 && text.as_bytes()[i + 3] == b':' => {
            let hours: i64 = text[i + 1..i + 3].parse().ok()?;
            let minutes: i64 = text[i + 4..].parse().ok()?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let secs = hours * 3600 + minutes * 60;
            (&text[..i], if sign == '+' { secs } else { -secs })
        }
        _ => (text.strip_suffix(['Z', 'z'])?, 0),
    };
    let utc = DateTime::from_str(&format!("{base}Z"), DateTimeFormat::DateTime).ok()?;
    let utc = SystemTime::try_from(utc).ok()?;
    let shift = std::time::Duration::from_secs(offset_secs.unsigned_abs());
    // 05:04:05+02:00 is 03:04:05 UTC: subtract a positive offset.
    if offset_secs >= 0 {
        utc.checked_sub(shift)
    } else {
        utc.checked_add(shift)
    }
}

/// `--checkpoint-every`: records, a time, or both (whichever comes first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointCadence {
    /// Records between checkpoints, if counted.
    pub records: Option<u64>,
    /// Time between checkpoints, if timed.
    pub interval: Option<std::time::Duration>,
}

impl CheckpointCadence {
    /// A fresh cadence for one shard's processor.
    pub fn start(self) -> kinesis_consumer::CheckpointEvery {
        use kinesis_consumer::CheckpointEvery;
        match (self.records, self.interval) {
            (Some(n), Some(t)) => CheckpointEvery::records_or_interval(n, t),
            (Some(n), None) => CheckpointEvery::records(n),
            (None, Some(t)) => CheckpointEvery::interval(t),
            (None, None) => CheckpointEvery::batch(),
        }
    }
}

/// Parses `--checkpoint-every`: `N` records (at least 1), a time (`500ms`, `10s`, `2m`), or
/// both separated by a comma (`1000,10s`: whichever comes first).
///
/// # Errors
/// Names the accepted forms.
pub fn checkpoint_every(value: &str) -> Result<CheckpointCadence, String> {
    let forms = "expected a number of records (e.g. 1000), a time (500ms, 10s, 2m) or both \
                 (1000,10s)";
    let mut cadence = CheckpointCadence {
        records: None,
        interval: None,
    };
    for part in value.split(',').map(str::trim) {
        let digits = part.bytes().take_while(u8::is_ascii_digit).count();
        let (number, unit) = part.split_at(digits);
        let n: u64 = number.parse().map_err(|_| format!("{part:?}: {forms}"))?;
        let slot_taken = |taken: bool| {
            if taken {
                Err(format!("{value:?} gives the same kind twice: {forms}"))
            } else {
                Ok(())
            }
        };
        if unit.is_empty() {
            slot_taken(cadence.records.is_some())?;
            if n == 0 {
                return Err("a number of records must be at least 1".to_owned());
            }
            cadence.records = Some(n);
            continue;
        }
        let interval = time_of(n, unit).ok_or_else(|| format!("{part:?}: {forms}"))?;
        slot_taken(cadence.interval.is_some())?;
        if interval.is_zero() {
            return Err("a time must be longer than zero".to_owned());
        }
        cadence.interval = Some(interval);
    }
    Ok(cadence)
}

/// `n` in `unit` (`ms`, `s` or `m`), or `None` for another unit.
fn time_of(n: u64, unit: &str) -> Option<std::time::Duration> {
    match unit {
        "ms" => Some(std::time::Duration::from_millis(n)),
        "s" => Some(std::time::Duration::from_secs(n)),
        "m" => Some(std::time::Duration::from_secs(n.saturating_mul(60))),
        _ => None,
    }
}

/// The longest `--batch-window`: 5 minutes, AWS Lambda's longest batching window for
/// Kinesis event sources.
pub const MAX_BATCH_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

/// Parses `--batch-window`: a time written as `--checkpoint-every` writes one (`500ms`,
/// `10s`, `2m`), longer than zero and at most [`MAX_BATCH_WINDOW`].
///
/// # Errors
/// Names the accepted forms and range.
pub fn batch_window(value: &str) -> Result<std::time::Duration, String> {
    let forms = "expected a time such as 500ms, 10s or 2m";
    let text = value.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let window = number
        .parse()
        .ok()
        .and_then(|n| time_of(n, unit))
        .ok_or_else(|| format!("{value:?}: {forms}"))?;
    if window.is_zero() {
        return Err(
            "a batch window must be longer than zero (leave --batch-window out for no waiting)"
                .to_owned(),
        );
    }
    if window > MAX_BATCH_WINDOW {
        return Err(format!(
            "{value:?} is longer than the longest batch window, 5m (AWS Lambda's limit)"
        ));
    }
    Ok(window)
}

/// A time between two rounds of something (`--stream-tracker-interval`,
/// `--shard-sync-interval`): a whole number and a unit, `ms`, `s`, `m` or `h`, longer than
/// zero and at most a day.
///
/// # Errors
/// Names the accepted forms and range.
pub fn interval(value: &str) -> Result<std::time::Duration, String> {
    let forms = "expected a time such as 200ms, 10s, 5m or 1h";
    let text = value.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let n: u64 = number.parse().map_err(|_| format!("{value:?}: {forms}"))?;
    let d = match unit {
        "h" => Some(std::time::Duration::from_secs(n.saturating_mul(3600))),
        other => time_of(n, other),
    }
    .ok_or_else(|| format!("{value:?}: {forms}"))?;
    if d.is_zero() || d > std::time::Duration::from_secs(86_400) {
        return Err(format!(
            "{value:?} is out of range: longer than zero and at most a day (24h)"
        ));
    }
    Ok(d)
}

/// `--former-streams-delete-after`: `never` (the leases of streams no longer consumed stay
/// in the table), or how long a worker sees a stream untracked before it deletes its leases
/// (as [`interval`]: `30s`, `10m`, `1h`; at most a day).
///
/// # Errors
/// Names the accepted forms.
pub fn former_streams_deletion(
    value: &str,
) -> Result<kinesis_consumer::FormerStreamsLeasesDeletionStrategy, String> {
    use kinesis_consumer::FormerStreamsLeasesDeletionStrategy as Strategy;
    if value.trim().eq_ignore_ascii_case("never") {
        return Ok(Strategy::NoDeletion);
    }
    interval(value)
        .map(Strategy::DeleteAfter)
        .map_err(|e| format!("{e}; or never (the leases stay)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_follow_kinesis_rules() {
        assert_eq!(stream_name("my-stream_1.x").unwrap(), "my-stream_1.x");
        assert!(stream_name("").unwrap_err().contains("empty"));
        assert!(stream_name(&"a".repeat(129)).unwrap_err().contains("128"));
        assert!(stream_name(&"a".repeat(128)).is_ok());
        assert!(stream_name("a b").unwrap_err().contains("only"));
        assert!(stream_name("arn:aws:kinesis").is_err());
    }

    #[test]
    fn consumer_names_follow_kinesis_rules() {
        assert_eq!(consumer_name("billing_1.x-y").unwrap(), "billing_1.x-y");
        assert!(consumer_name("").unwrap_err().contains("empty"));
        assert!(consumer_name(&"c".repeat(128)).is_ok());
        assert!(consumer_name(&"c".repeat(129)).unwrap_err().contains("128"));
        assert!(consumer_name("bad name").unwrap_err().contains("only"));
        assert!(consumer_name("é").is_err());
    }

    #[test]
    fn application_names_follow_dynamodb_table_rules() {
        assert!(application_name("app").is_ok());
        assert!(application_name("ab").unwrap_err().contains("3 to 255"));
        assert!(application_name("").is_err());
        assert!(application_name(&"a".repeat(256)).is_err());
        assert!(application_name("my app").is_err());
    }

    #[test]
    fn keys_and_ids() {
        assert!(partition_key("").is_err());
        assert!(
            partition_key(&"€".repeat(256)).is_ok(),
            "characters, not bytes"
        );
        assert!(partition_key(&"€".repeat(257)).is_err());
        assert!(non_empty(" ").is_err());
        assert_eq!(non_empty("w-1").unwrap(), "w-1");
    }

    #[test]
    fn failover_has_a_sane_range() {
        assert!(failover_ms("0").unwrap_err().contains("out of range"));
        assert!(failover_ms("1").is_err());
        assert!(failover_ms("-5").unwrap_err().contains("whole number"));
        assert_eq!(failover_ms("100").unwrap(), 100);
        assert_eq!(failover_ms("10000").unwrap(), 10_000);
        assert!(failover_ms("86400001").is_err());
    }

    #[test]
    fn checkpoint_cadences_parse() {
        use std::time::Duration;
        let c = |r, t| CheckpointCadence {
            records: r,
            interval: t,
        };
        assert_eq!(checkpoint_every("1").unwrap(), c(Some(1), None));
        assert_eq!(
            checkpoint_every("10s").unwrap(),
            c(None, Some(Duration::from_secs(10)))
        );
        assert_eq!(
            checkpoint_every("1000, 500ms").unwrap(),
            c(Some(1000), Some(Duration::from_millis(500)))
        );
        assert_eq!(
            checkpoint_every("2m,5").unwrap(),
            c(Some(5), Some(Duration::from_secs(120)))
        );
        for bad in ["0", "0s", "", "ten", "5h", "1,2", "1s,2s", "-1", "1.5s"] {
            assert!(checkpoint_every(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn batch_windows_parse_like_checkpoint_times() {
        use std::time::Duration;
        assert_eq!(batch_window("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(batch_window("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(batch_window(" 2m ").unwrap(), Duration::from_secs(120));
        assert_eq!(batch_window("5m").unwrap(), MAX_BATCH_WINDOW);
        assert_eq!(batch_window("300000ms").unwrap(), MAX_BATCH_WINDOW);
        for zero in ["0", "0ms", "0s", "0m"] {
            let e = batch_window(zero).unwrap_err();
            assert!(e.contains("zero") || e.contains("expected"), "{zero}: {e}");
        }
        assert!(batch_window("0s").unwrap_err().contains("longer than zero"));
        assert!(batch_window("301s").unwrap_err().contains("5m"));
        assert!(batch_window("99999999999999999999m").is_err());
        assert!(batch_window(&format!("{}m", u64::MAX))
            .unwrap_err()
            .contains("5m"));
        for bad in ["", "10", "ten", "5h", "1.5s", "-1s", "1s,2s", "s"] {
            assert!(batch_window(bad).unwrap_err().contains("expected"), "{bad}");
        }
    }

    #[test]
    fn positions_parse() {
        assert_eq!(position("latest").unwrap(), InitialPosition::Latest);
        assert_eq!(
            position("trim-horizon").unwrap(),
            InitialPosition::TrimHorizon
        );
        let InitialPosition::AtTimestamp(t) =
            position("at-timestamp:2024-01-02T03:04:05Z").unwrap()
        else {
            panic!("not a timestamp")
        };
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_704_164_645
        );
        assert!(position("at-timestamp:yesterday")
            .unwrap_err()
            .contains("RFC 3339"));
        for same in [
            "2024-01-02T05:04:05+02:00",
            "2024-01-01T22:04:05-05:00",
            "2024-01-02T03:04:05+00:00",
            "2024-01-02t03:04:05z",
            "2024-01-02T03:04:05.000Z",
            "2024-01-02T03:04:05-00:00",
            "1704164645",
            "1704164645.000",
        ] {
            assert_eq!(
                position(&format!("at-timestamp:{same}")).unwrap(),
                InitialPosition::AtTimestamp(t),
                "{same}"
            );
        }
        assert!(position("at-timestamp:2024-01-02T03:04:05+24:00").is_err());
        assert!(position("at-timestamp:2024-01-02T03:04:05").is_err());
        let InitialPosition::AtTimestamp(frac) = position("at-timestamp:1704164645.25").unwrap()
        else {
            panic!("not a timestamp")
        };
        assert_eq!(
            frac.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            std::time::Duration::from_millis(1_704_164_645_250)
        );
        for bad in ["-5", "1.2.3", "17e9", ".5", "1704164645.1234567891"] {
            assert!(position(&format!("at-timestamp:{bad}")).is_err(), "{bad}");
        }
        assert!(position("at-timestamp:99999999999")
            .unwrap_err()
            .contains("future"));
        assert!(position("at-timestamp:2999-01-01T00:00:00Z")
            .unwrap_err()
            .contains("future"));
        assert!(position("oldest").unwrap_err().contains("trim-horizon"));
    }

    #[test]
    fn relative_and_api_spelled_positions_parse() {
        let ago = |p: InitialPosition| {
            let InitialPosition::AtTimestamp(t) = p else {
                panic!("not a timestamp: {p:?}")
            };
            SystemTime::now().duration_since(t).unwrap().as_secs()
        };
        // The parse happened just before `now`: within a minute of the asked time ago.
        let near = |got: u64, want: u64| got >= want && got < want + 60;
        assert!(near(ago(position("-5m").unwrap()), 300));
        assert!(near(ago(position("-2h").unwrap()), 7200));
        assert!(near(ago(position("-1d").unwrap()), 86_400));
        assert!(near(ago(since("10m").unwrap()), 600));
        assert!(near(ago(since("90s").unwrap()), 90));
        assert_eq!(
            position("TRIM_HORIZON").unwrap(),
            InitialPosition::TrimHorizon
        );
        assert_eq!(position("LATEST").unwrap(), InitialPosition::Latest);
        assert!(position("AT_TIMESTAMP:1704164645").is_ok());
        for bad in [
            "-0s",
            "-5",
            "-5w",
            "--5m",
            "-m",
            "latest:1",
            "trim-horizon:x",
        ] {
            assert!(position(bad).is_err(), "{bad}");
        }
        for bad in ["0m", "", "5", "1.5h", "-5m", "100000000000000d"] {
            assert!(since(bad).is_err(), "{bad}");
        }
        assert_eq!(
            duration("500ms").unwrap(),
            std::time::Duration::from_millis(500)
        );
    }

    #[test]
    fn tail_starts_take_sequence_numbers() {
        assert_eq!(
            tail_start("at-sequence:4959").unwrap(),
            TailStart::AtSequence("4959".into())
        );
        assert_eq!(
            tail_start("AFTER_SEQUENCE_NUMBER:12").unwrap(),
            TailStart::AfterSequence("12".into())
        );
        assert_eq!(
            tail_start("latest").unwrap(),
            TailStart::Position(InitialPosition::Latest)
        );
        assert!(tail_start("at-sequence:").is_err());
        assert!(tail_start("at-sequence:12a").is_err());
        assert!(tail_start("nowhere").unwrap_err().contains("at-sequence"));
    }

    #[test]
    fn intervals_and_former_stream_deletions_parse() {
        use kinesis_consumer::FormerStreamsLeasesDeletionStrategy as Strategy;
        use std::time::Duration;
        assert_eq!(interval("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(interval("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(interval("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(interval("24h"), Ok(Duration::from_secs(86_400)));
        for bad in ["0s", "25h", "10", "s", "-1s", "1d", "1.5s"] {
            let e = interval(bad).expect_err(bad);
            assert!(e.contains(bad) || e.contains("range"), "{bad}: {e}");
        }
        assert_eq!(former_streams_deletion("never"), Ok(Strategy::NoDeletion));
        assert_eq!(former_streams_deletion("NEVER"), Ok(Strategy::NoDeletion));
        assert_eq!(
            former_streams_deletion("2s"),
            Ok(Strategy::DeleteAfter(Duration::from_secs(2)))
        );
        let e = former_streams_deletion("soon").unwrap_err();
        assert!(e.contains("never") && e.contains("10s"), "{e}");
        assert!(former_streams_deletion("0s").is_err());
    }
}
