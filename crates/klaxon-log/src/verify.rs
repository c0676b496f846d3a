//! A full consistency check of a log folder.

use std::collections::HashMap;

use serde::Serialize;

use crate::{Error, Log, Position, StreamId, StreamVersion};

/// What [`Log::verify`] found in a healthy log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Records checked (positions 1..=head, each read and checksummed once).
    pub records: u64,
    /// Distinct streams.
    pub streams: u64,
}

impl Log {
    /// Reads the whole log and checks every invariant: positions gapless from
    /// 1 to the head, every checksum, versions gapless from 1 per stream, and
    /// the stream and idempotency indexes (in sled or still in the tail)
    /// agreeing with the records.
    /// The first violation is returned as [`Error::Corrupt`].
    pub fn verify(&self) -> Result<VerifyReport, Error> {
        let head = self.head();
        let mut versions: HashMap<StreamId, u64> = HashMap::new();
        let mut position = Position::ZERO;
        loop {
            let records = self.read_all(position.next(), 4096)?;
            let Some(last) = records.last() else { break };
            position = last.position;
            for record in records {
                let corrupt = |reason: String| Error::Corrupt { position: record.position, reason };
                let version = versions.entry(record.stream.clone()).or_insert(0);
                *version += 1;
                if record.version.0 != *version {
                    return Err(corrupt(format!(
                        "stream {} jumps to version {} after {}",
                        record.stream,
                        record.version,
                        *version - 1
                    )));
                }
                match self.indexed_place(&record.stream, record.version)? {
                    Some(p) if p == record.position => {}
                    other => return Err(corrupt(format!("stream index points elsewhere: {other:?}"))),
                }
                match self.indexed_id(record.id)? {
                    Some((p, v, s)) if p == record.position && v == record.version && s == record.stream => {}
                    _ => return Err(corrupt(format!("idempotency index entry for {} is wrong", record.id))),
                }
            }
        }
        if position != head {
            return Err(Error::Corrupt { position: position.next(), reason: format!("head is {head}") });
        }
        for (stream, version) in &versions {
            let stored = self.stream_version(stream)?;
            if stored != StreamVersion(*version) {
                return Err(Error::Corrupt {
                    position: head,
                    reason: format!("stream {stream} index ends at version {stored}, records say {version}"),
                });
            }
        }
        Ok(VerifyReport { records: head.0, streams: versions.len() as u64 })
    }
}
