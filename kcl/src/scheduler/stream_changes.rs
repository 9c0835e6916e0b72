//! The decisions of a multi-stream worker's stream list, without I/O: what one look at the
//! tracker's list changes ([`stream_changes`]), and which stream a listed one is
//! ([`identify`]).
//!
//! ```text
//!  tracker's list ─resolve each─▶ [(identifier, what adding it needs)]  (in list order)
//!  ActiveStreams::ids ──────────────────────────────┐
//!                       stream_changes ─▶ added: listed, not active (first entry of each)
//!                                         removed: active, not listed
//!  StreamRef + DescribeStreamSummary (StreamFound) ─identify─▶ StreamIdentifier | error
//! ```
//!
//! A stream that is added may still wait (its fan-out consumer not `ACTIVE` yet): it stays
//! out of [`ActiveStreams`](super::active_streams::ActiveStreams), so the next look finds
//! it added again.

use std::collections::HashSet;

use super::start_up::StreamFound;
use crate::config_error::ConfigError;
use crate::multi_stream::{StreamIdentifier, StreamRef};

/// What one look at the tracker's list changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StreamChanges<T> {
    /// Streams listed and not active, in list order, each once (its first entry): to add.
    pub(super) added: Vec<(StreamIdentifier, T)>,
    /// Active streams no longer listed: to retire.
    pub(super) removed: Vec<StreamIdentifier>,
}

/// The changes from the `active` streams to the `listed` ones (each with what adding it
/// needs, `T`). A stream listed twice (e.g. by name and by ARN) counts once, with its first
/// entry.
pub(super) fn stream_changes<T>(
    listed: Vec<(StreamIdentifier, T)>,
    active: &HashSet<StreamIdentifier>,
) -> StreamChanges<T> {
    let mut seen = HashSet::new();
    let mut added = Vec::new();
    for (id, what) in listed {
        if seen.insert(id.clone()) && !active.contains(&id) {
            added.push((id, what));
        }
    }
    let mut removed: Vec<StreamIdentifier> = active
        .iter()
        .filter(|id| !seen.contains(*id))
        .cloned()
        .collect();
    removed.sort_by_key(ToString::to_string);
    StreamChanges { added, removed }
}

/// The identifier of `stream`, given as it is listed, from what `DescribeStreamSummary`
/// found (`found`, looked up by the stream's name with the worker's clients): the account
/// of the found ARN and the creation time for a name or an ARN; the identifier itself
/// for one given whole, once the found stream is checked to be of the identifier's
/// account (only then is the stream found the one meant).
///
/// # Errors
/// [`ConfigError::InvalidStreamIdentifier`] for an ARN that cannot be read, or an
/// identifier of another account than the stream found.
pub(super) fn identify(
    stream: &StreamRef,
    found: &StreamFound,
) -> Result<StreamIdentifier, ConfigError> {
    let looked_up = StreamIdentifier::from_arn(&found.arn, found.creation_epoch)?;
    match stream {
        StreamRef::Name(_) | StreamRef::Arn(_) => Ok(looked_up),
        StreamRef::Identifier(id) if id.account_id() == looked_up.account_id() => Ok(id.clone()),
        StreamRef::Identifier(id) => Err(ConfigError::InvalidStreamIdentifier {
            value: id.to_string(),
            reason: format!(
                "the worker's clients see the stream {} of account {}, not of account {}; \
                 give the stream by its ARN",
                id.stream_name(),
                looked_up.account_id(),
                id.account_id()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> StreamIdentifier {
        s.parse().unwrap()
    }

    #[test]
    fn listed_streams_not_active_are_added_once_and_unlisted_ones_removed() {
        let (a, b, c, d) = (id("1:a:1"), id("1:b:1"), id("1:c:1"), id("1:d:1"));
        let active = HashSet::from([a.clone(), b.clone()]);
        let changes = stream_changes(
            vec![
                (c.clone(), "c by name"),
                (a.clone(), "a"),
                (d.clone(), "d"),
                (c.clone(), "c by ARN"),
            ],
            &active,
        );
        assert_eq!(
            changes,
            StreamChanges {
                added: vec![(c.clone(), "c by name"), (d.clone(), "d")],
                removed: vec![b.clone()],
            }
        );
        // Nothing active (start-up): everything listed is added, in list order.
        let changes = stream_changes(vec![(b.clone(), 2), (a.clone(), 1)], &HashSet::new());
        assert_eq!(changes.added, vec![(b.clone(), 2), (a.clone(), 1)]);
        assert!(changes.removed.is_empty());
        // An empty list retires everything, in a stable order.
        let changes = stream_changes::<()>(Vec::new(), &HashSet::from([b.clone(), a.clone()]));
        assert!(changes.added.is_empty());
        assert_eq!(changes.removed, vec![a.clone(), b.clone()]);
        // Nothing changes when the list is what is active.
        let changes = stream_changes(vec![(a.clone(), ()), (b.clone(), ())], &active);
        assert!(changes.added.is_empty() && changes.removed.is_empty());
    }

    #[test]
    fn a_listed_stream_is_identified_by_what_was_found() {
        let found = StreamFound {
            arn: "arn:aws:kinesis:eu-west-1:111122223333:stream/orders".into(),
            creation_epoch: 1_700_000_000,
        };
        let want = id("111122223333:orders:1700000000");
        assert_eq!(
            identify(&StreamRef::Name("orders".into()), &found).unwrap(),
            want
        );
        assert_eq!(
            identify(
                &StreamRef::Arn("arn:aws:kinesis:eu-west-1:111122223333:stream/orders".into()),
                &found
            )
            .unwrap(),
            want
        );
        // An identifier stays as given (its epoch is the application's word), when the
        // stream found is of its account.
        let given = id("111122223333:orders:1600000000");
        assert_eq!(
            identify(&StreamRef::Identifier(given.clone()), &found).unwrap(),
            given
        );
        let other = id("444455556666:orders:1600000000");
        let e = identify(&StreamRef::Identifier(other), &found).unwrap_err();
        assert!(
            matches!(&e, ConfigError::InvalidStreamIdentifier { value, reason }
                if value == "444455556666:orders:1600000000"
                    && reason.contains("account 111122223333")
                    && reason.contains("by its ARN")),
            "{e:?}"
        );
        let bad = StreamFound {
            arn: "not an arn".into(),
            creation_epoch: 1,
        };
        assert!(identify(&StreamRef::Name("orders".into()), &bad).is_err());
    }
}
