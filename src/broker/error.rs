//! Errors of the broker layer: a lost session (reconnect) versus one action that failed
//! ([`ActionFailure`], in `crate::failure`). Whether reconnecting can help is decided from
//! the broker's reply code, never from the words of the error.

use crate::broker::connect::ConnectError;
pub use crate::failure::{ActionFailure, Cause};

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
        /// The broker's reply code (404, 403, 530, ...) when it refused; `None` when
        /// the connection broke.
        code: Option<u16>,
    },
    /// A delivery lapin cannot parse (e.g. a short-string property that is not UTF-8):
    /// the connection is lost with it, and the same message comes first again.
    #[error("{context}: {}", unreadable(reason))]
    Unreadable { context: String, reason: String },
    /// dlqd cannot even ask (a queue name over 255 bytes): no retry can cure it.
    #[error("{context}: {reason}")]
    Invalid { context: String, reason: String },
}

/// What an unreadable message means and what the operator can do.
pub fn unreadable(lapin_says: &str) -> String {
    format!(
        "a message there cannot be read: one of its short-string properties (message_id, \
         content_type, type, app_id, correlation_id, reply_to, ...) or a header name is not \
         valid UTF-8, which lapin cannot parse ({lapin_says}); dlqd cannot get past it. Move \
         it aside byte for byte with a shovel (rabbitmq_shovel, src-delete-after 1: see \
         docs/hardening.md), then run dlqd again"
    )
}

/// The reply code of a broker's error (channel or connection close), if it is one.
pub fn reply_code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(p) => Some(p.get_id()),
        _ => None,
    }
}

/// Codes after which reconnecting cannot help: the queue does not exist (404), access
/// is refused (403), the vhost may not be used or does not exist (530).
fn is_fatal_code(code: u16) -> bool {
    matches!(code, 403 | 404 | 530)
}

impl BrokerError {
    pub(crate) fn amqp(context: impl Into<String>, e: &lapin::Error) -> Self {
        if let lapin::ErrorKind::ParsingError(_) = e.kind() {
            return BrokerError::Unreadable {
                context: context.into(),
                reason: e.to_string(),
            };
        }
        BrokerError::Amqp {
            context: context.into(),
            reason: e.to_string(),
            code: reply_code(e),
        }
    }

    /// A session lost without a refusal (the connection broke, a publish failed).
    pub fn lost(context: impl Into<String>, reason: impl Into<String>) -> Self {
        BrokerError::Amqp {
            context: context.into(),
            reason: reason.into(),
            code: None,
        }
    }

    /// The session ended because an operation on dlqd's own topology failed (`f`).
    pub fn from_failure(context: impl Into<String>, f: ActionFailure) -> Self {
        let context = context.into();
        match f.cause {
            Cause::Invalid => BrokerError::Invalid {
                context,
                reason: f.reason,
            },
            Cause::Refused { code } | Cause::Returned { code } => BrokerError::Amqp {
                context,
                reason: f.reason,
                code: Some(code),
            },
            _ => BrokerError::lost(context, f.reason),
        }
    }

    /// The broker said a queue or exchange does not exist (404 NOT_FOUND).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            BrokerError::Amqp {
                code: Some(404),
                ..
            }
        )
    }

    /// The broker refused access to a queue or exchange (403 ACCESS_REFUSED on a
    /// channel; not a refused login, which is a [`BrokerError::Connect`]).
    pub fn is_access_refused(&self) -> bool {
        matches!(
            self,
            BrokerError::Amqp {
                code: Some(403),
                ..
            }
        )
    }

    /// True when reconnecting cannot help.
    pub fn is_fatal(&self) -> bool {
        match self {
            BrokerError::Connect(e) => e.is_fatal(),
            BrokerError::Amqp { code, .. } => code.is_some_and(is_fatal_code),
            BrokerError::Unreadable { .. } => false,
            BrokerError::Invalid { .. } => true,
        }
    }
}

impl ConnectError {
    /// A bad URL, TLS files that cannot be used, refused credentials (403) or a vhost
    /// that may not be used (530): no retry can cure these.
    pub fn is_fatal(&self) -> bool {
        match self {
            ConnectError::BadUrl { .. } | ConnectError::Tls { .. } => true,
            ConnectError::Connect { code, .. } => code.is_some_and(is_fatal_code),
        }
    }
}
