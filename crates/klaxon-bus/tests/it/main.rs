//! klaxon-bus against real components: a log server on loopback gRPC, a
//! real `nats-server` with JetStream, real sled folders.
#![allow(missing_docs)]

mod fanout;
mod relay;
mod server;
mod source;
mod support;
