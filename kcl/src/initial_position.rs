//! [`InitialPosition`]: where a worker starts reading shards that have no checkpoint yet.
//!
//! ```text
//!  InitialPosition ──checkpoint()──▶ the checkpoint of a new lease without a leased parent
//!    TrimHorizon ─▶ TRIM_HORIZON   Latest ─▶ LATEST (open shards only)
//!    AtTimestamp(t) ─▶ AT_TIMESTAMP (the consumer asks for records from t)
//! ```

use std::time::SystemTime;

use crate::checkpoint::Checkpoint;

/// Where a worker starts reading shards that have no checkpoint yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum InitialPosition {
    /// The oldest record still in the stream.
    #[default]
    TrimHorizon,
    /// Only records put after the lease is first started.
    Latest,
    /// Records that arrived at or after this time.
    AtTimestamp(SystemTime),
}

impl InitialPosition {
    pub(crate) fn checkpoint(self) -> Checkpoint {
        match self {
            InitialPosition::TrimHorizon => Checkpoint::TrimHorizon,
            InitialPosition::Latest => Checkpoint::Latest,
            InitialPosition::AtTimestamp(_) => Checkpoint::AtTimestamp,
        }
    }
}
