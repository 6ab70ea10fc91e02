//! Helpers shared by every integration test: the shared broker (URL, connecting, unique
//! names, the ways of dead-lettering), a private RabbitMQ node that can be crashed, a TCP proxy that can cut
//! connections, a broker workbench, and the dlqd process.
#![allow(dead_code)]

pub mod broker;
pub mod census;
pub mod cluster;
pub mod dlqd;
pub mod fixture;
pub mod http;
pub mod lab;
pub mod management;
pub mod mix;
pub mod private_node;
pub mod proxy;
pub mod raw_amqp;
