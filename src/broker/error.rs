//! Errors of the broker layer: a lost session (reconnect) versus one action that failed.

use crate::broker::connect::ConnectError;

/// Something went wrong with the connection or the consumer: the session is over.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The broker refused an operation or the connection broke.
    #[error("{context}: {reason}")]
    Amqp {
        context: String,
        reason: String,
        /// True when reconnecting cannot help (the DLQ does not exist, access refused).
        fatal: bool,
    },
}

impl BrokerError {
    pub(crate) fn amqp(context: impl Into<String>, e: &lapin::Error) -> Self {
        let reason = e.to_string();
        let fatal = reason.contains("NOT_FOUND") || reason.contains("ACCESS_REFUSED");
        BrokerError::Amqp {
            context: context.into(),
            reason,
            fatal,
        }
    }

    /// The broker said a queue or exchange does not exist (404 NOT_FOUND).
    pub fn is_not_found(&self) -> bool {
        matches!(self, BrokerError::Amqp { reason, .. } if reason.contains("NOT_FOUND"))
    }

    /// True when reconnecting cannot help.
    pub fn is_fatal(&self) -> bool {
        match self {
            BrokerError::Connect(ConnectError::BadUrl { .. } | ConnectError::Tls { .. }) => true,
            BrokerError::Connect(ConnectError::Connect { reason, .. }) => {
                reason.contains("ACCESS_REFUSED")
            }
            BrokerError::Amqp { fatal, .. } => *fatal,
        }
    }
}

/// One publish (or the check before it) failed; the message stays on the DLQ.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{reason}")]
pub struct ActionFailure {
    /// The broker's reason, e.g. `returned by the broker: 312 NO_ROUTE`.
    pub reason: String,
    /// The message's headers are too large for one AMQP frame: no copy of it can be
    /// published on this connection (see [`crate::broker::frame`]).
    pub too_large: bool,
    /// Another publish on the same channel made the broker close it (this one was
    /// refused with it, not for itself): sending it again on a fresh channel may work.
    pub resend: bool,
}

impl ActionFailure {
    pub fn new(reason: impl Into<String>) -> Self {
        ActionFailure {
            reason: reason.into(),
            too_large: false,
            resend: false,
        }
    }

    /// Refused with the channel another publish closed (see [`ActionFailure::resend`]).
    pub fn neighbour(reason: impl Into<String>) -> Self {
        ActionFailure {
            resend: true,
            ..ActionFailure::new(reason)
        }
    }

    /// The publish came back unroutable (312 NO_ROUTE): the queue it was for is missing.
    pub fn is_no_route(&self) -> bool {
        self.reason.contains("NO_ROUTE")
    }

    /// A publish refused before sending because its headers exceed `frame_max`.
    pub fn too_large(reason: impl Into<String>) -> Self {
        ActionFailure {
            reason: reason.into(),
            too_large: true,
            resend: false,
        }
    }
}
