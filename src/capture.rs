//! The capture format (§5): JSON Lines, one message per line, lossless for every AMQP
//! field type. The only module that knows JSON.

use crate::message::Message;

/// A capture line that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CaptureError {
    /// 1-based line in the capture.
    pub line: u64,
    pub message: String,
}

/// One message as one JSON line (without the trailing newline).
pub fn to_line(_message: &Message) -> String {
    todo!("capture::to_line")
}

/// One JSON line as a message. `line` is used in the error.
pub fn from_line(_text: &str, _line: u64) -> Result<Message, CaptureError> {
    todo!("capture::from_line")
}
