//! The only module that knows AMQP (lapin): connect, consume, publish with confirms, delay queues.

pub mod browse;
pub mod connect;
pub mod consumer;
pub mod convert;
pub mod error;
pub mod frame;
pub mod management;
pub mod publisher;
pub mod session;
pub mod topology;

pub use connect::{ConnectError, connect, redact};
pub use consumer::{Delivery, DlqConsumer};
pub use error::{ActionFailure, BrokerError, Cause};
pub use publisher::Confirm;
pub use session::Session;
