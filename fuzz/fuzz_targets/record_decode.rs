//! Any bytes claimed to be a stored (or relayed) record: decoding returns a
//! record or a `Corrupt` error, never panics, and what it accepts
//! re-encodes to exactly the same bytes. Each input is tried twice: as it
//! is, and with a valid checksum written into its header, so the fuzzer
//! reaches the field parser behind the checksum.
#![no_main]

use klaxon_log::{Position, Record};
use libfuzzer_sys::fuzz_target;

/// The checksum sits in bytes 1..5 and covers everything after them.
const HEADER_LEN: usize = 5;

fn check(position: u64, bytes: &[u8]) {
    if let Ok(record) = Record::from_bytes(Position(position), bytes) {
        assert_eq!(record.position, Position(position));
        assert_eq!(record.to_bytes(), bytes, "a decoded record re-encodes to its bytes");
    }
}

fuzz_target!(|input: (u64, Vec<u8>)| {
    let (position, mut bytes) = input;
    check(position, &bytes);
    if bytes.len() >= HEADER_LEN {
        let crc = crc32fast::hash(&bytes[HEADER_LEN..]);
        bytes[1..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        check(position, &bytes);
    }
});
