//! Integration tests of the log group: real sled logs and Raft files in
//! temp dirs, real gRPC between nodes on loopback; no mocks.
#![allow(missing_docs)]

mod group;
mod storage;
mod support;
