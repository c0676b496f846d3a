//! Integration tests of the event log: real sled folders in temp dirs, a real
//! child process for crash tests; no mocks.
#![allow(missing_docs)]

mod basics;
mod crash;
mod errors;
mod fault;
mod idfile;
mod layout;
mod logtool;
mod model;
mod replicated;
#[path = "../../../../tests/src/seed.rs"]
mod seed;
mod subscribe;
mod support;
