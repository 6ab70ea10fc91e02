//! The only module that knows AMQP (lapin): connect, consume, publish with confirms, delay queues.

pub mod browse;
pub mod connect;
pub mod convert;

pub use connect::{ConnectError, connect, redact};
