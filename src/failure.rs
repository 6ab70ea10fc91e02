//! Why one action failed, as a type: set where the failure is created (a publish
//! returned with its code, nacked, refused with its code, the channel closed under it,
//! too large, archive I/O, ...). Metrics labels, audit fields, the summary and the
//! daemon's choice (send again, leave, hold) all read the cause; none parses the text.

use std::fmt;

/// The cause of a failed action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// The publish came back unroutable (`basic.return`, e.g. 312 NO_ROUTE: the queue
    /// it was for is missing).
    Returned { code: u16 },
    /// The broker nacked the publish (e.g. a full queue with `reject-publish`).
    Nacked,
    /// The broker refused this publish and closed the channel with it (e.g. 406: a
    /// `user_id` naming another user; 403: no write permission; 404: no exchange).
    Refused { code: u16 },
    /// Another publish on the same channel made the broker close it; this one was
    /// refused with it, not for itself. Sending it again on a fresh channel may work.
    ChannelClosed,
    /// The message cannot be published as it is: its headers exceed `frame_max`, or it
    /// is over the broker's `max_message_size`.
    TooLarge,
    /// The action has nowhere to go (a RETRY of a message with no original queue).
    NoTarget,
    /// dlqd could not form the publish (a name over 255 bytes, a property it cannot
    /// encode).
    Invalid,
    /// An ARCHIVE file could not be opened or written.
    ArchiveIo,
    /// The broker did not confirm the publish.
    Unconfirmed,
}

impl Cause {
    /// The short, stable name used as the `cause` label and audit field.
    pub fn label(self) -> &'static str {
        match self {
            Cause::Returned { .. } => "returned",
            Cause::Nacked => "nacked",
            Cause::Refused { .. } => "refused",
            Cause::ChannelClosed => "channel_closed",
            Cause::TooLarge => "too_large",
            Cause::NoTarget => "no_target",
            Cause::Invalid => "invalid",
            Cause::ArchiveIo => "archive_io",
            Cause::Unconfirmed => "unconfirmed",
        }
    }

    /// Every label, for the metrics' list of known values.
    pub const LABELS: &'static [&'static str] = &[
        "returned",
        "nacked",
        "refused",
        "channel_closed",
        "too_large",
        "no_target",
        "invalid",
        "archive_io",
        "unconfirmed",
    ];
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One action failed; the message stays on the DLQ (or is left).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct ActionFailure {
    pub cause: Cause,
    /// The broker's (or the OS's) words, e.g. `returned by the broker: 312 NO_ROUTE`.
    pub reason: String,
}

impl ActionFailure {
    pub fn new(cause: Cause, reason: impl Into<String>) -> Self {
        ActionFailure {
            cause,
            reason: reason.into(),
        }
    }

    /// The publish came back unroutable (312 NO_ROUTE): the queue it was for is missing.
    pub fn is_no_route(&self) -> bool {
        self.cause == Cause::Returned { code: 312 }
    }

    /// No copy of this message can be published: the daemon holds the delivery itself.
    pub fn is_too_large(&self) -> bool {
        self.cause == Cause::TooLarge
    }

    /// Refused with a channel another publish closed: worth sending again, uncharged.
    pub fn is_neighbours(&self) -> bool {
        self.cause == Cause::ChannelClosed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_has_a_listed_label() {
        for c in [
            Cause::Returned { code: 312 },
            Cause::Nacked,
            Cause::Refused { code: 406 },
            Cause::ChannelClosed,
            Cause::TooLarge,
            Cause::NoTarget,
            Cause::Invalid,
            Cause::ArchiveIo,
            Cause::Unconfirmed,
        ] {
            assert!(Cause::LABELS.contains(&c.label()), "{c:?}");
        }
    }

    #[test]
    fn a_missing_queue_named_archive_is_returned_not_archive_io() {
        // cause_of once read "archive" in the text and said archive_io.
        let f = ActionFailure::new(
            Cause::Returned { code: 312 },
            "returned by the broker: 312 NO_ROUTE (queue orders.archive)",
        );
        assert_eq!(f.cause.label(), "returned");
        assert!(f.is_no_route());
    }
}
