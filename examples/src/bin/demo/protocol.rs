//! What a worker process tells the demo: one JSON object per line on its standard output.
//!
//! ```text
//!  worker ── {"ev":"ready","pid":4242}
//!         ── {"ev":"started","shard":"shardId-…","at_us":…,"checkpoint":"TRIM_HORIZON"}
//!         ── {"ev":"batch","shard":"shardId-…","at_us":…,"records":[["user-00042",17,…]],"bad":[]}
//!         ── {"ev":"shard_ended","shard":…,"at_us":…}   (just before its SHARD_END checkpoint)
//!         ── {"ev":"lease_lost","shard":…,"at_us":…}
//!         ── {"ev":"stopped","shard":…,"at_us":…}       (asked to stop: handed over, or shutdown)
//!         ── {"ev":"warning","message":"…"}             (a failed checkpoint, ...)
//!         ── {"ev":"failed","message":"…"}              (the scheduler stopped with an error)
//! ```
//!
//! A batch is written and flushed before it is checkpointed, so the demo has seen every
//! record a checkpoint covers: records a killed worker processed but did not report are
//! delivered again to the next owner, never missed by the count.

use serde::{Deserialize, Serialize};

/// One line from a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub(crate) enum WorkerEvent {
    /// The process is up and its scheduler is starting.
    Ready {
        /// Its process id.
        pid: u32,
    },
    /// A shard consumer started (`initialize`), at its checkpoint.
    Started {
        /// The shard.
        shard: String,
        /// When (µs since the Unix epoch).
        at_us: u64,
        /// Where it resumes.
        checkpoint: String,
    },
    /// Records processed.
    Batch {
        /// The shard.
        shard: String,
        /// When (µs since the Unix epoch).
        at_us: u64,
        /// (partition key, producer sequence, µs when handed to the producer), in order.
        records: Vec<(String, u64, u64)>,
        /// Records whose data was not a demo event: what each was, and why.
        bad: Vec<String>,
    },
    /// The shard reached its end; sent just before its `SHARD_END` checkpoint, which is what
    /// lets its children start.
    ShardEnded {
        /// The shard.
        shard: String,
        /// When (µs since the Unix epoch).
        at_us: u64,
    },
    /// The lease was taken by another worker.
    LeaseLost {
        /// The shard.
        shard: String,
        /// When (µs since the Unix epoch).
        at_us: u64,
    },
    /// The shard consumer was asked to stop and took its last checkpoint: its lease is
    /// being handed to another worker (a graceful handoff), or this worker shuts down.
    Stopped {
        /// The shard.
        shard: String,
        /// When (µs since the Unix epoch).
        at_us: u64,
    },
    /// Something worth showing that does not stop the worker.
    Warning {
        /// What happened.
        message: String,
    },
    /// The worker stopped with an error.
    Failed {
        /// The error.
        message: String,
    },
}

impl WorkerEvent {
    /// The line to write (without the newline).
    pub(crate) fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"ev":"failed","message":"cannot encode an event: {e}"}}"#)
        })
    }

    /// Reads a line.
    ///
    /// # Errors
    /// The JSON error for a line that is not an event.
    pub(crate) fn parse(line: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let events = [
            WorkerEvent::Ready { pid: 7 },
            WorkerEvent::Batch {
                shard: "shardId-000000000001".into(),
                at_us: 5,
                records: vec![("user-00001".into(), 3, 4)],
                bad: vec!["seq 9: not json".into()],
            },
            WorkerEvent::ShardEnded {
                shard: "s".into(),
                at_us: 1,
            },
        ];
        for e in events {
            assert_eq!(WorkerEvent::parse(&e.to_line()).expect("parses"), e);
        }
        assert!(WorkerEvent::parse("hello").is_err());
        assert!(WorkerEvent::parse(r#"{"ev":"nope"}"#).is_err());
    }
}
