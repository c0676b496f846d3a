//! Intake integration tests: a real log in a temp dir, the real gRPC server
//! on 127.0.0.1:0, the generated tonic client. No mocks.
#![allow(missing_docs)]

mod bridge;
mod catalog;
mod commands;
mod email;
mod errors;
mod evict;
mod http;
mod rebuild;
#[path = "../../../../tests/src/seed.rs"]
mod seed;
mod stream;
mod support;
mod tiers;
