//! dlqd: a rules-driven dead-letter-queue handler for RabbitMQ.
//!
//! Pure logic in the middle (`rules`, `message`, `dead_letter`, `decide`, `backoff`),
//! I/O at the edges (`capture` for files, `broker` for AMQP, `cli` for the command line).
//! See ARCHITECTURE.md for the code map and the invariants.

pub mod ack_window;
pub mod audit;
pub mod backoff;
pub mod broker;
pub mod capture;
pub mod cli;
pub mod commands;
pub mod daemon;
pub mod dead_letter;
pub mod decide;
pub mod depth_watch;
pub mod dry_run;
pub mod escape;
pub mod failure;
pub mod fleet;
pub mod inspect;
pub mod message;
pub mod metrics;
pub mod metrics_server;
pub mod observer;
pub mod outgoing;
pub mod progress;
pub mod rate_limit;
pub mod replay;
pub mod rules;
pub mod shutdown;
pub mod stage;
pub mod topology_check;
