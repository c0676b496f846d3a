//! Integration tests of the event log: real sled folders in temp dirs, a real
//! child process for crash tests; no mocks.
#![allow(missing_docs)]

mod basics;
mod crash;
mod errors;
mod model;
mod replicated;
mod subscribe;
mod support;
