//! Helpers shared by the fault tests: a private RabbitMQ node that can be crashed, a TCP
//! proxy that can cut connections, a broker workbench, and the dlqd process.
#![allow(dead_code)]

pub mod dlqd;
pub mod lab;
pub mod mix;
pub mod private_node;
pub mod proxy;
