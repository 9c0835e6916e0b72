//! Graceful lease handoff between live workers (the Java KCL 3.x protocol): what a worker
//! makes of a lease it holds, given the lease as stored. Pure decisions, no I/O.
//!
//! ```text
//!  taker of worker N (moving a lease from a live worker O for balance)
//!    start_handoff: leaseOwner O→N, checkpointOwner = O        (counter unchanged)
//!        │  O's next owner write is refused (it expected no checkpointOwner), or O hears
//!        │  of it (fleet notice, its taker's scan): O reads the item ─▶ reconcile: Adopt
//!        ▼
//!  O: Outgoing ── its consumer is asked to stop (processor: shutdown_requested, may
//!        │        checkpoint: accepted, the guard expects leaseOwner N, checkpointOwner O)
//!        │        consumer ended, or graceful_handoff_timeout passed (consumer aborted)
//!        ▼
//!     end_handoff: REMOVE checkpointOwner, counter + 1   (if leaseOwner N, checkpointOwner O)
//!  N: Incoming ── holds the lease, starts no consumer; reads the item every dispatch tick:
//!        incoming(...) ─▶ Wait | Start (checkpointOwner gone: process from the checkpoint
//!                                       now stored) | Force (timed out, or O is gone)
//!     Force: end_handoff itself, then Start
//! ```
//!
//! The next owner's timeout is `graceful_handoff_timeout + taker_interval` from when it
//! started (or first saw) the handoff: the previous owner hears of it within a taker
//! interval at worst (its scan; renewals and fleet notices are quicker) and gives up at
//! most `graceful_handoff_timeout` later, so a forced handoff never overlaps a previous
//! owner still processing. The Java KCL leaves the forcing to its leader, which reassigns
//! a pending lease once its counter stood still for the failover time.
//!
//! # Either side leaving while the handoff is pending
//! The previous owner's last checkpoint is what the next holder starts from, so nothing
//! may end the handoff under it while it is finishing ([`release`] and [`pending_free`]):
//!
//! ```text
//!  N released (graceful shutdown, its stream retired) while Incoming:
//!    no write: N forgets the lease; the item stays leaseOwner N, checkpointOwner O
//!    ─▶ O checkpoints and ends the handoff as ever ─▶ leaseOwner N (gone), no checkpointOwner
//!    ─▶ taken as any lease of a gone owner (fleet: at once; else once its counter stood
//!       still for the failover time)
//!    N still alive (its stream retired, not a shutdown): N remembers the lease; its first
//!       taker round after the handoff ended releases it (REMOVE leaseOwner, guarded by
//!       leaseOwner N) ─▶ taken at once (else it would stay a live worker's, unprocessed)
//!  N declared gone (heartbeats) while Incoming: the same from the second step on
//!  O released (graceful shutdown) while Outgoing: its consumer stops first (dispatcher
//!    stop: shutdown_requested, its checkpoint accepted), then the release ends the
//!    handoff (end_handoff, not a removal of leaseOwner): N starts from that checkpoint
//!  a taker seeing leaseOwner gone, checkpointOwner O set (pending_free):
//!    O gone too, or the counter stood still for the next owner's patience ─▶ take
//!    (a take removes checkpointOwner); else O may still be finishing ─▶ leave it
//!  N losing the lease while Incoming (a take once both owners looked gone, a Java
//!    leader's reassignment after its timeout): incoming ─▶ Lost, N forgets it unwritten
//! ```
//!
//! Why N writes nothing rather than clearing `leaseOwner`: the Java KCL 3.x's next owner
//! does not hold a pending lease at all (its discoverer skips leases with
//! `checkpointOwner`), so its shutdown leaves the item alone; the table keeps only the
//! states a Java worker makes (`leaseOwner` removed with `checkpointOwner` kept is one it
//! never writes, and its leader would assign such a lease at once, cutting the previous
//! owner short), and a Java previous owner's `assignLease` to N (guarded by leaseOwner N,
//! checkpointOwner O) still ends the handoff. The cost: without a fleet, a lease whose
//! next owner left waits the failover time after the handoff ends before it is taken.

use std::time::Duration;

use crate::leases::Lease;

/// Where one worker stands with a lease, from the lease alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Its own, no handoff pending.
    Held,
    /// Being handed from this worker to another (`checkpointOwner` = this worker).
    Outgoing,
    /// Being handed to this worker from `from` (`leaseOwner` = this worker,
    /// `checkpointOwner` = `from`).
    Incoming {
        /// The previous owner, finishing.
        from: String,
    },
    /// Not this worker's (another's, unowned, or an odd state).
    Other,
}

/// Where `me` stands with `lease`.
pub(crate) fn standing(lease: &Lease, me: &str) -> Standing {
    let owner = lease.owner.as_deref();
    match lease.checkpoint_owner.as_deref() {
        None if owner == Some(me) => Standing::Held,
        Some(from) if owner == Some(me) && from != me => Standing::Incoming {
            from: from.to_owned(),
        },
        Some(from) if from == me && owner.is_some_and(|o| o != me) => Standing::Outgoing,
        _ => Standing::Other,
    }
}

/// What the holder of a lease makes of the lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reconcile {
    /// Nothing to change: the stored lease is the holder's copy, or older.
    Keep,
    /// A step of a handoff happened: the stored lease becomes the holder's copy.
    Adopt,
    /// The lease moved away (or was deleted): the tenure is over.
    Lost,
}

/// What a worker `me` holding `mine` (its copy, as it last wrote or adopted it) makes of
/// `stored` (as read or scanned; a deleted lease is lost). A scan may be older than the
/// copy: a lower counter, or the state just before a handoff's start (which leaves the
/// counter), is kept. Steps of the handoff protocol are adopted; any other change means
/// the lease was taken.
pub(crate) fn reconcile(mine: &Lease, stored: &Lease, me: &str) -> Reconcile {
    if stored.counter < mine.counter {
        return Reconcile::Keep;
    }
    let same_owners =
        stored.owner == mine.owner && stored.checkpoint_owner == mine.checkpoint_owner;
    let newer = stored.counter > mine.counter;
    match (standing(mine, me), standing(stored, me)) {
        _ if same_owners && !newer => Reconcile::Keep,
        // The handoff started (it leaves the counter as it was).
        (Standing::Held, Standing::Outgoing) if !newer => Reconcile::Adopt,
        // A scan from just before the start of the handoff this worker took part in.
        (Standing::Outgoing, Standing::Held) if !newer => Reconcile::Keep,
        (Standing::Incoming { from }, _)
            if !newer
                && stored.owner.as_deref() == Some(from.as_str())
                && stored.checkpoint_owner.is_none() =>
        {
            Reconcile::Keep
        }
        // The previous owner ended the handoff: the lease is this worker's now.
        (Standing::Incoming { .. }, Standing::Held) => Reconcile::Adopt,
        // The previous owner renewed or checkpointed meanwhile.
        (Standing::Incoming { .. }, Standing::Incoming { .. })
        | (Standing::Outgoing, Standing::Outgoing)
            if same_owners =>
        {
            Reconcile::Adopt
        }
        _ => Reconcile::Lost,
    }
}

/// What the next owner of a lease does, given the lease as read now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// The previous owner is still finishing: start nothing yet.
    Wait,
    /// The handoff is over: process the shard from the checkpoint stored now.
    Start,
    /// The previous owner took too long, or is gone: end the handoff itself.
    Force,
    /// The lease is not this worker's any more.
    Lost,
}

/// The next owner's decision for a handoff to `me` it has waited on for `waited`, with
/// `stored` the lease as read now (`None`: deleted), `timeout` its patience (see the module
/// header) and `from_gone` whether the fleet shows the previous owner gone.
pub(crate) fn incoming(
    stored: Option<&Lease>,
    me: &str,
    waited: Duration,
    timeout: Duration,
    from_gone: bool,
) -> Incoming {
    let Some(stored) = stored else {
        return Incoming::Lost;
    };
    match standing(stored, me) {
        Standing::Held => Incoming::Start,
        Standing::Incoming { .. } if from_gone || waited >= timeout => Incoming::Force,
        Standing::Incoming { .. } => Incoming::Wait,
        Standing::Outgoing | Standing::Other => Incoming::Lost,
    }
}

/// What the previous owner does with a lease it hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outgoing {
    /// Ask its consumer to stop (the processor gets `shutdown_requested`).
    StopConsumer,
    /// Its consumer is still stopping: wait.
    Wait,
    /// Hand over now: the consumer ended (or never ran), or it timed out (aborted first).
    Complete {
        /// Whether the consumer is still running and must be aborted first.
        abort: bool,
    },
}

/// The previous owner's decision: `running` whether a consumer of the lease runs,
/// `stopping` whether it was asked to stop already, `waited` how long since this worker
/// learnt of the handoff, `timeout` the graceful handoff timeout.
pub(crate) fn outgoing(
    running: bool,
    stopping: bool,
    waited: Duration,
    timeout: Duration,
) -> Outgoing {
    match (running, stopping) {
        (false, _) => Outgoing::Complete { abort: false },
        (true, _) if waited >= timeout => Outgoing::Complete { abort: true },
        (true, false) => Outgoing::StopConsumer,
        (true, true) => Outgoing::Wait,
    }
}

/// What a worker giving a held lease up (graceful shutdown, its stream no longer
/// consumed) writes, by where it stands with the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// Remove `leaseOwner` (any worker may take the lease at once): a lease of its own.
    RemoveOwner,
    /// End the handoff (`REMOVE checkpointOwner`, the next owner starts): the previous
    /// owner, whose consumer stopped (and checkpointed) before.
    EndHandoff,
    /// Write nothing: the next owner of a pending handoff leaves it to the previous owner,
    /// which may still checkpoint and then ends it (a removal would refuse that checkpoint,
    /// and the records processed since the one before would be delivered again).
    Nothing,
}

/// What a worker standing `standing` with a lease writes when it gives it up (see the
/// module header).
pub(crate) fn release(standing: &Standing) -> Release {
    match standing {
        Standing::Held | Standing::Other => Release::RemoveOwner,
        Standing::Outgoing => Release::EndHandoff,
        Standing::Incoming { .. } => Release::Nothing,
    }
}

/// Whether a taker may take `lease`, whose owner (`leaseOwner`) it judges gone: yes,
/// unless a graceful handoff of it is pending (`checkpointOwner` set) and its previous
/// owner may still be finishing: `previous_gone` whether that owner is gone too (the
/// taker's own judgement: the fleet, else its counter), `stood_still` whether the lease's
/// counter stood still for the next owner's patience (`LeaseConfig::handoff_patience`):
/// a previous owner alive ends the handoff well within it, or is stuck.
pub(crate) fn pending_free(lease: &Lease, previous_gone: bool, stood_still: bool) -> bool {
    match lease.checkpoint_owner.as_deref() {
        Some(previous) if lease.owner.as_deref() != Some(previous) => previous_gone || stood_still,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;

    const SECOND: Duration = Duration::from_secs(1);

    fn lease(owner: Option<&str>, checkpoint_owner: Option<&str>, counter: u64) -> Lease {
        let mut l = Lease::new("shardId-1", Checkpoint::TrimHorizon);
        l.owner = owner.map(str::to_owned);
        l.checkpoint_owner = checkpoint_owner.map(str::to_owned);
        l.counter = counter;
        l
    }

    #[test]
    fn standing_reads_both_owners() {
        assert_eq!(standing(&lease(Some("a"), None, 1), "a"), Standing::Held);
        assert_eq!(
            standing(&lease(Some("b"), Some("a"), 1), "a"),
            Standing::Outgoing
        );
        assert_eq!(
            standing(&lease(Some("b"), Some("a"), 1), "b"),
            Standing::Incoming { from: "a".into() }
        );
        assert_eq!(
            standing(&lease(Some("b"), Some("a"), 1), "c"),
            Standing::Other
        );
        assert_eq!(standing(&lease(Some("b"), None, 1), "a"), Standing::Other);
        assert_eq!(standing(&lease(None, None, 1), "a"), Standing::Other);
        // Both owners the same: not a state the protocol makes; nobody's to process.
        assert_eq!(
            standing(&lease(Some("a"), Some("a"), 1), "a"),
            Standing::Other
        );
    }

    #[test]
    fn the_previous_owner_adopts_a_started_handoff_and_loses_a_take() {
        let mine = lease(Some("a"), None, 5);
        let started = lease(Some("b"), Some("a"), 5);
        assert_eq!(reconcile(&mine, &started, "a"), Reconcile::Adopt);
        // A take (counter moved, checkpointOwner gone) is a loss.
        assert_eq!(
            reconcile(&mine, &lease(Some("b"), None, 6), "a"),
            Reconcile::Lost
        );
        // Another worker's handoff start, not to this one: lost.
        assert_eq!(
            reconcile(&mine, &lease(Some("b"), Some("c"), 5), "a"),
            Reconcile::Lost
        );
        // The copy as stored, or an older scan: kept.
        assert_eq!(reconcile(&mine, &mine.clone(), "a"), Reconcile::Keep);
        assert_eq!(
            reconcile(&mine, &lease(Some("c"), None, 4), "a"),
            Reconcile::Keep
        );
        // Once adopted, an older scan of the state before the start is kept too, and the
        // previous owner's own later writes are adopted.
        assert_eq!(reconcile(&started, &mine, "a"), Reconcile::Keep);
        assert_eq!(
            reconcile(&started, &lease(Some("b"), Some("a"), 7), "a"),
            Reconcile::Adopt
        );
        // The handoff ended (or was forced): the lease is gone from this worker.
        assert_eq!(
            reconcile(&started, &lease(Some("b"), None, 8), "a"),
            Reconcile::Lost
        );
    }

    #[test]
    fn the_next_owner_adopts_the_end_of_the_handoff() {
        let mine = lease(Some("b"), Some("a"), 5);
        // A scan from before the start: kept.
        assert_eq!(
            reconcile(&mine, &lease(Some("a"), None, 5), "b"),
            Reconcile::Keep
        );
        // The previous owner renews or checkpoints meanwhile: adopted.
        assert_eq!(
            reconcile(&mine, &lease(Some("b"), Some("a"), 6), "b"),
            Reconcile::Adopt
        );
        // It ended the handoff.
        assert_eq!(
            reconcile(&mine, &lease(Some("b"), None, 7), "b"),
            Reconcile::Adopt
        );
        // Someone else took it (e.g. its owners both looked dead to a third worker).
        assert_eq!(
            reconcile(&mine, &lease(Some("c"), None, 7), "b"),
            Reconcile::Lost
        );
        // A plain holder whose counter moved without its write: taken, as ever.
        let held = lease(Some("b"), None, 5);
        assert_eq!(
            reconcile(&held, &lease(Some("b"), None, 6), "b"),
            Reconcile::Lost
        );
    }

    #[test]
    fn the_next_owner_waits_then_forces() {
        let pending = lease(Some("b"), Some("a"), 5);
        let timeout = 30 * SECOND;
        assert_eq!(
            incoming(Some(&pending), "b", SECOND, timeout, false),
            Incoming::Wait
        );
        assert_eq!(
            incoming(Some(&pending), "b", timeout, timeout, false),
            Incoming::Force
        );
        assert_eq!(
            incoming(Some(&pending), "b", SECOND, timeout, true),
            Incoming::Force
        );
        let done = lease(Some("b"), None, 6);
        assert_eq!(
            incoming(Some(&done), "b", SECOND, timeout, false),
            Incoming::Start
        );
        let taken = lease(Some("c"), None, 6);
        assert_eq!(
            incoming(Some(&taken), "b", timeout, timeout, true),
            Incoming::Lost
        );
        assert_eq!(incoming(None, "b", SECOND, timeout, false), Incoming::Lost);
    }

    #[test]
    fn the_previous_owner_stops_its_consumer_then_hands_over() {
        let timeout = 30 * SECOND;
        assert_eq!(
            outgoing(true, false, SECOND, timeout),
            Outgoing::StopConsumer
        );
        assert_eq!(outgoing(true, true, SECOND, timeout), Outgoing::Wait);
        assert_eq!(
            outgoing(false, true, SECOND, timeout),
            Outgoing::Complete { abort: false }
        );
        assert_eq!(
            outgoing(false, false, SECOND, timeout),
            Outgoing::Complete { abort: false }
        );
        assert_eq!(
            outgoing(true, true, timeout, timeout),
            Outgoing::Complete { abort: true }
        );
    }

    #[test]
    fn only_the_next_owner_of_a_pending_handoff_releases_by_writing_nothing() {
        assert_eq!(release(&Standing::Held), Release::RemoveOwner);
        assert_eq!(release(&Standing::Other), Release::RemoveOwner);
        assert_eq!(release(&Standing::Outgoing), Release::EndHandoff);
        assert_eq!(
            release(&Standing::Incoming { from: "a".into() }),
            Release::Nothing
        );
    }

    #[test]
    fn a_pending_lease_of_a_gone_next_owner_waits_for_its_previous_owner() {
        let pending = lease(Some("b"), Some("a"), 5);
        // The previous owner alive and the lease moving: it may still checkpoint.
        assert!(!pending_free(&pending, false, false));
        // It is gone too, or stood still for the patience: take it.
        assert!(pending_free(&pending, true, false));
        assert!(pending_free(&pending, false, true));
        // No handoff pending: a gone owner's lease is free as ever.
        assert!(pending_free(&lease(Some("b"), None, 5), false, false));
        // An odd state (both owners the same) is no handoff anybody finishes.
        assert!(pending_free(&lease(Some("a"), Some("a"), 5), false, false));
    }
}
