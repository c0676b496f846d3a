//! Integration tests of outbound channels: real HTTP deliveries to a real
//! receiver (axum) on 127.0.0.1; no mocks.
#![allow(missing_docs)]

mod config;
mod log;
mod receiver;
mod slack;
mod webhook;
