//! The on-disk format: sled keys and the binary record encoding (format 3).
//!
//! Everything lives in one sled tree so that one group commit is one atomic
//! `sled::Batch`. Keys start with a one-byte tag:
//!
//! | key | value |
//! | --- | --- |
//! | `k` first position (u64 BE) | a chunk: consecutive encoded records |
//! | `r` position (u64 BE) | one encoded record (format-1 folders only) |
//! | `s` stream `\0` version (u64 BE) | positions (u64 BE each) of this and the next versions |
//! | `j` run's first position (u64 BE), piece's first id (16 bytes) | a piece of an id run: sorted (id, offset) pairs |
//! | `i` event id (16 bytes) | position, version (u64 BE each), stream (formats 1 and 2 only; upgraded to `j`) |
//! | `c` consumer name | checkpoint position (u64 BE) |
//! | `m` `format` | [`FORMAT_MARKER`] |
//! | `m` `indexed` | position (u64 BE): `s` and `i` cover every record up to it |
//! | `m` `mark:` name | a caller's opaque bytes (`Log::apply`'s mark) |
//! | `m` `idruns` | folder token, generation (u64 BE each): bumped by every change to existing `j` keys |
//!
//! One group commit writes its records as chunks of at most
//! [`CHUNK_BYTES_MAX`] (a larger record gets a chunk of its own): a chunk
//! is `[format: u8 = 2][count: u32 LE]` followed by `count` times
//! `[length: u32 LE][record]`, the records at the consecutive positions from
//! the key's on. The bound keeps a sled leaf (at most 16 entries) under
//! sled's blob threshold (a quarter of its 512 KiB segment), as one record
//! per key did. The stream (`s`) and id (`i`) indexes are written *behind*
//! the records, in later batches together with the `m indexed` mark (see
//! `index`); at open the records after the mark are indexed again. One
//! index batch writes each stream's new versions as one run (up to
//! [`STREAM_RUN_VERSIONS_MAX`] under one key); a format-1 entry is a run of
//! one. The ids of one index batch are one *run*: its (id, position)
//! pairs sorted by id, in pieces of at most [`ID_PIECE_IDS_MAX`] (5 KiB)
//! under `j`, the batch's first position and the piece's first id, each
//! piece with its own CRC (so a batch of 8,192 records writes 32 id keys,
//! not 8,192). An id's run is found through the in-memory directory
//! (`idfilter`); the record at the position found confirms the id.
//!
//! A record is `[format: u8 = 1][crc32: u32 LE of everything after it]`
//! followed by position, version (u64 LE), event id (16 bytes), recorded_at
//! (i64 LE microseconds since the Unix epoch), a flags byte saying which
//! optional metadata follow, then stream, kind, actor, correlation id,
//! causation id, traceparent and the data, strings as u16 LE length + bytes
//! (the data as u32 LE length + bytes). Trailing bytes are corruption.
//!
//! Format 1 (`klaxon-log/1`) stored every record under its own `r` key and
//! wrote both indexes in the record's batch; format 2 (`klaxon-log/2`)
//! packed records in chunks but kept one `i` key per id. Both are upgraded
//! in place at open (see `Log::open`): `r` records and `s` entries stay and
//! are read as they are, the `i` keys are rewritten as runs in one atomic
//! batch with the format-3 marker, and new records go into chunks.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{EventData, EventKind, Metadata, Position, Record, StreamId, StreamVersion};

/// The value stored under the `m format` key of every log.
pub(crate) const FORMAT_MARKER: &[u8] = b"klaxon-log/3";
/// The marker of format 2: records in chunks, one `i` key per id.
pub(crate) const FORMAT_MARKER_V2: &[u8] = b"klaxon-log/2";
/// The marker of format 1: one key per record, indexes in the same batch.
pub(crate) const FORMAT_MARKER_V1: &[u8] = b"klaxon-log/1";
pub(crate) const FORMAT_KEY: &[u8] = b"mformat";
/// The key of the position up to which the stream and id indexes are written.
pub(crate) const INDEXED_KEY: &[u8] = b"mindexed";
/// The key of the id runs' generation: a token drawn when the key is first
/// written (it names this folder; the format-3 upgrade, which writes every
/// run anew, draws a new one) and a counter that every merge of two runs
/// bumps in the same atomic batch. The id filter's file (`idfilter::file`)
/// records the value it reflects: another token refuses the file, another
/// generation only says that runs were merged since (the file's runs are
/// then checked one by one).
pub(crate) const ID_RUNS_GENERATION_KEY: &[u8] = b"midruns";
const CHUNK_FORMAT: u8 = 2;
const CHUNK_HEADER_LEN: usize = 5;
/// Bytes after which a chunk takes no further record.
pub(crate) const CHUNK_BYTES_MAX: usize = 6 * 1024;
const RECORD_FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = 5;

const FLAG_ACTOR: u8 = 1;
const FLAG_CORRELATION: u8 = 2;
const FLAG_CAUSATION: u8 = 4;
const FLAG_TRACEPARENT: u8 = 8;

pub(crate) const TAG_RECORD: u8 = b'r';
pub(crate) const TAG_CHUNK: u8 = b'k';
pub(crate) const TAG_STREAM: u8 = b's';
pub(crate) const TAG_ID: u8 = b'i';
pub(crate) const TAG_ID_RUN: u8 = b'j';
pub(crate) const TAG_CHECKPOINT: u8 = b'c';

pub(crate) fn record_key(position: Position) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = TAG_RECORD;
    k[1..].copy_from_slice(&position.0.to_be_bytes());
    k
}

pub(crate) fn position_from_record_key(key: &[u8]) -> Option<Position> {
    match key {
        [TAG_RECORD, rest @ ..] => Some(Position(u64::from_be_bytes(rest.try_into().ok()?))),
        _ => None,
    }
}

pub(crate) fn chunk_key(first: Position) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = TAG_CHUNK;
    k[1..].copy_from_slice(&first.0.to_be_bytes());
    k
}

pub(crate) fn position_from_chunk_key(key: &[u8]) -> Option<Position> {
    match key {
        [TAG_CHUNK, rest @ ..] => Some(Position(u64::from_be_bytes(rest.try_into().ok()?))),
        _ => None,
    }
}

/// Packs consecutive sealed records into one chunk value.
pub(crate) struct ChunkBuilder {
    first: Position,
    count: u32,
    bytes: Vec<u8>,
}

impl ChunkBuilder {
    /// A chunk starting at `first`, with room for `first_record_len` bytes
    /// of record (it grows for more): a lone append's chunk is one small
    /// allocation, not a 6.5 KiB one (which glibc serves only after
    /// consolidating its small free chunks).
    pub(crate) fn new(first: Position, first_record_len: usize) -> ChunkBuilder {
        let mut bytes = Vec::with_capacity(CHUNK_HEADER_LEN + 4 + first_record_len);
        bytes.push(CHUNK_FORMAT);
        bytes.extend_from_slice(&[0; 4]);
        ChunkBuilder { first, count: 0, bytes }
    }

    /// The position the next record must have.
    pub(crate) fn next(&self) -> Position {
        Position(self.first.0 + u64::from(self.count))
    }

    /// Whether `record_len` more bytes still fit (an empty chunk takes any record).
    pub(crate) fn fits(&self, record_len: usize) -> bool {
        self.count == 0 || self.bytes.len() + 4 + record_len <= CHUNK_BYTES_MAX
    }

    pub(crate) fn push(&mut self, record: &[u8]) {
        let len = u32::try_from(record.len()).expect("record length checked against the event size limit");
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(record);
        self.count += 1;
    }

    /// The chunk's key and value.
    pub(crate) fn finish(mut self) -> ([u8; 9], Vec<u8>) {
        self.bytes[1..CHUNK_HEADER_LEN].copy_from_slice(&self.count.to_le_bytes());
        (chunk_key(self.first), self.bytes)
    }
}

/// The records of the chunk stored under `first`, each with its position,
/// still encoded (each one is checked when decoded). A chunk whose framing
/// does not add up is corruption.
pub(crate) fn chunk_records(first: Position, bytes: &[u8]) -> Result<Vec<(Position, &[u8])>, crate::Error> {
    let corrupt = |reason: String| crate::Error::Corrupt { position: first, reason };
    if bytes.len() < CHUNK_HEADER_LEN {
        return Err(corrupt(format!("chunk is {} bytes, shorter than its header", bytes.len())));
    }
    if bytes[0] != CHUNK_FORMAT {
        return Err(corrupt(format!("unknown chunk format {}", bytes[0])));
    }
    let count = u32::from_le_bytes(bytes[1..CHUNK_HEADER_LEN].try_into().expect("4 bytes"));
    if count == 0 {
        return Err(corrupt("chunk holds no record".into()));
    }
    // Each record takes at least its 4-byte length: a damaged count allocates no more.
    let mut out = Vec::with_capacity((count as usize).min(bytes.len() / 4));
    let mut r = Reader { bytes, at: CHUNK_HEADER_LEN };
    for i in 0..u64::from(count) {
        let position = Position(first.0 + i);
        let record = r
            .take(4)
            .and_then(|l| r.take(u32::from_le_bytes(l.try_into().ok()?) as usize))
            .ok_or_else(|| crate::Error::Corrupt { position, reason: "chunk is truncated".into() })?;
        out.push((position, record));
    }
    if r.at != bytes.len() {
        return Err(corrupt(format!("{} trailing bytes after the chunk's {count} records", bytes.len() - r.at)));
    }
    Ok(out)
}

pub(crate) fn stream_prefix(stream: &StreamId) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.as_str().len() + 2);
    k.push(TAG_STREAM);
    k.extend_from_slice(stream.as_str().as_bytes());
    k.push(0);
    k
}

pub(crate) fn stream_key(stream: &StreamId, version: StreamVersion) -> Vec<u8> {
    let mut k = stream_prefix(stream);
    k.extend_from_slice(&version.0.to_be_bytes());
    k
}

/// Most versions in one stream index entry.
pub(crate) const STREAM_RUN_VERSIONS_MAX: usize = 512;

pub(crate) fn stream_run_value(positions: &[Position]) -> Vec<u8> {
    positions.iter().flat_map(|p| p.0.to_be_bytes()).collect()
}

/// The positions of a stream index entry's run; `None` if it does not decode.
pub(crate) fn read_stream_run(bytes: &[u8]) -> Option<Vec<Position>> {
    if bytes.is_empty() || bytes.len() % 8 != 0 {
        return None;
    }
    Some(bytes.chunks_exact(8).map(|b| Position(u64::from_be_bytes(b.try_into().expect("8 bytes")))).collect())
}

/// Most ids in one piece of an id run: 256 x 20 bytes = 5 KiB, under the
/// chunk bound for the same reason (no sled blobs).
pub(crate) const ID_PIECE_IDS_MAX: usize = 256;
const ID_PIECE_FORMAT: u8 = 1;
const ID_PIECE_HEADER_LEN: usize = 9;
const ID_PIECE_ENTRY_LEN: usize = 20;

/// The key of a piece of the id run of the index batch starting at
/// position `run`: `j`, the run's first position, the piece's first id.
pub(crate) fn id_piece_key(run: Position, first_id: Uuid) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[0] = TAG_ID_RUN;
    k[1..9].copy_from_slice(&run.0.to_be_bytes());
    k[9..].copy_from_slice(first_id.as_bytes());
    k
}

/// The run (its first position) and first id a piece key names.
pub(crate) fn read_id_piece_key(key: &[u8]) -> Option<(Position, Uuid)> {
    match key {
        [TAG_ID_RUN, rest @ ..] if rest.len() == 24 => {
            Some((Position(u64::from_be_bytes(rest[..8].try_into().ok()?)), Uuid::from_slice(&rest[8..]).ok()?))
        }
        _ => None,
    }
}

/// Encodes a piece: `[format: u8 = 1][crc32: u32 LE of the rest][count: u32
/// LE]` then `count` times `[id: 16 bytes][offset: u32 LE]`, ids ascending,
/// each offset the record's position minus the run's first position.
pub(crate) fn id_piece_value(entries: &[(Uuid, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ID_PIECE_HEADER_LEN + entries.len() * ID_PIECE_ENTRY_LEN);
    out.push(ID_PIECE_FORMAT);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&u32::try_from(entries.len()).expect("a piece is small").to_le_bytes());
    for (id, offset) in entries {
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
    }
    let crc = crc32fast::hash(&out[HEADER_LEN..]);
    out[1..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    out
}

/// A piece's (id, offset) entries in id order, checked: a bad checksum,
/// framing or order is `None`.
pub(crate) fn read_id_piece(bytes: &[u8]) -> Option<Vec<(Uuid, u32)>> {
    if bytes.len() < ID_PIECE_HEADER_LEN || bytes[0] != ID_PIECE_FORMAT {
        return None;
    }
    let stored = u32::from_le_bytes(bytes[1..HEADER_LEN].try_into().ok()?);
    if stored != crc32fast::hash(&bytes[HEADER_LEN..]) {
        return None;
    }
    let count = u32::from_le_bytes(bytes[HEADER_LEN..ID_PIECE_HEADER_LEN].try_into().ok()?) as usize;
    let body = &bytes[ID_PIECE_HEADER_LEN..];
    if count == 0 || body.len() != count.checked_mul(ID_PIECE_ENTRY_LEN)? {
        return None;
    }
    let entries: Vec<(Uuid, u32)> = body
        .chunks_exact(ID_PIECE_ENTRY_LEN)
        .map(|e| {
            let id = Uuid::from_bytes(e[..16].try_into().expect("16 bytes"));
            (id, u32::from_le_bytes(e[16..].try_into().expect("4 bytes")))
        })
        .collect();
    entries.windows(2).all(|w| w[0].0 < w[1].0).then_some(entries)
}

pub(crate) fn checkpoint_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1);
    k.push(TAG_CHECKPOINT);
    k.extend_from_slice(name.as_bytes());
    k
}

pub(crate) fn mark_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 6);
    k.extend_from_slice(b"mmark:");
    k.extend_from_slice(name.as_bytes());
    k
}

pub(crate) fn u64_value(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

pub(crate) fn read_u64_value(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// Encodes the id runs' generation (see [`ID_RUNS_GENERATION_KEY`]).
pub(crate) fn id_runs_generation_value(token: u64, generation: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&token.to_be_bytes());
    v[8..].copy_from_slice(&generation.to_be_bytes());
    v
}

/// The (token, generation) of an [`ID_RUNS_GENERATION_KEY`] value.
pub(crate) fn read_id_runs_generation(bytes: &[u8]) -> Option<(u64, u64)> {
    if bytes.len() != 16 {
        return None;
    }
    Some((read_u64_value(&bytes[..8])?, read_u64_value(&bytes[8..])?))
}

/// The position a format-1/2 idempotency entry (`i` key) names.
pub(crate) fn read_id_value_position(bytes: &[u8]) -> Option<Position> {
    read_u64_value(bytes).map(Position)
}

/// The parts of a record that encoding needs, borrowed.
pub(crate) struct RecordRef<'a> {
    pub position: Position,
    pub version: StreamVersion,
    pub id: Uuid,
    pub recorded_at_micros: i64,
    pub stream: &'a str,
    pub kind: &'a str,
    pub metadata: &'a Metadata,
    pub data: &'a str,
}

/// Byte ranges of the fields that only the writer knows.
const POSITION_AT: usize = HEADER_LEN;
const VERSION_AT: usize = POSITION_AT + 8;
const RECORDED_AT_AT: usize = VERSION_AT + 8 + 16;

/// Encodes everything but the place in the log, which [`seal`] fills in:
/// appenders encode on their own tasks, the single writer only patches
/// three numbers and the checksum.
pub(crate) fn encode_unsealed(id: Uuid, stream: &str, kind: &str, metadata: &Metadata, data: &str) -> Vec<u8> {
    encode(&RecordRef {
        position: Position::ZERO,
        version: StreamVersion(0),
        id,
        recorded_at_micros: 0,
        stream,
        kind,
        metadata,
        data,
    })
}

/// Writes the record's position, version and time into an encoding from
/// [`encode_unsealed`] and computes its checksum.
pub(crate) fn seal(bytes: &mut [u8], position: Position, version: StreamVersion, recorded_at_micros: i64) {
    bytes[POSITION_AT..POSITION_AT + 8].copy_from_slice(&position.0.to_le_bytes());
    bytes[VERSION_AT..VERSION_AT + 8].copy_from_slice(&version.0.to_le_bytes());
    bytes[RECORDED_AT_AT..RECORDED_AT_AT + 8].copy_from_slice(&recorded_at_micros.to_le_bytes());
    let crc = crc32fast::hash(&bytes[HEADER_LEN..]);
    bytes[1..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
}

/// Bytes an encoded record takes, without encoding it.
pub(crate) fn encoded_len(stream: &str, kind: &str, metadata: &Metadata, data: &str) -> usize {
    HEADER_LEN
        + 8
        + 8
        + 16
        + 8
        + 1
        + 2
        + stream.len()
        + 2
        + kind.len()
        + metadata.actor.as_ref().map_or(0, |a| 2 + a.len())
        + metadata.correlation_id.map_or(0, |_| 16)
        + metadata.causation_id.map_or(0, |_| 16)
        + metadata.traceparent.as_ref().map_or(0, |t| 2 + t.len())
        + 4
        + data.len()
}

/// Encodes a record. Field lengths were validated before (strings fit in u16,
/// data in u32): a violation is a bug, so it panics.
pub(crate) fn encode(r: &RecordRef<'_>) -> Vec<u8> {
    let len = encoded_len(r.stream, r.kind, r.metadata, r.data);
    let mut out = Vec::with_capacity(len);
    out.push(RECORD_FORMAT_V1);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&r.position.0.to_le_bytes());
    out.extend_from_slice(&r.version.0.to_le_bytes());
    out.extend_from_slice(r.id.as_bytes());
    out.extend_from_slice(&r.recorded_at_micros.to_le_bytes());
    let m = r.metadata;
    let flags = (if m.actor.is_some() { FLAG_ACTOR } else { 0 })
        | (if m.correlation_id.is_some() { FLAG_CORRELATION } else { 0 })
        | (if m.causation_id.is_some() { FLAG_CAUSATION } else { 0 })
        | (if m.traceparent.is_some() { FLAG_TRACEPARENT } else { 0 });
    out.push(flags);
    put_str16(&mut out, r.stream);
    put_str16(&mut out, r.kind);
    if let Some(a) = &m.actor {
        put_str16(&mut out, a);
    }
    if let Some(c) = m.correlation_id {
        out.extend_from_slice(c.as_bytes());
    }
    if let Some(c) = m.causation_id {
        out.extend_from_slice(c.as_bytes());
    }
    if let Some(t) = &m.traceparent {
        put_str16(&mut out, t);
    }
    let data_len = u32::try_from(r.data.len()).expect("data length checked against the event size limit");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(r.data.as_bytes());
    assert_eq!(out.len(), len, "encoded_len disagrees with encode");
    let crc = crc32fast::hash(&out[HEADER_LEN..]);
    out[1..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    out
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).expect("string length checked before encoding");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Decodes and verifies a record read from key `position`. Any mismatch,
/// including a record that names another position, is corruption.
pub(crate) fn decode(position: Position, bytes: &[u8]) -> Result<Record, crate::Error> {
    let corrupt = |reason: String| crate::Error::Corrupt { position, reason };
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(format!("record is {} bytes, shorter than its header", bytes.len())));
    }
    if bytes[0] != RECORD_FORMAT_V1 {
        return Err(corrupt(format!("unknown record format {}", bytes[0])));
    }
    let stored = u32::from_le_bytes(bytes[1..HEADER_LEN].try_into().expect("4 bytes"));
    let actual = crc32fast::hash(&bytes[HEADER_LEN..]);
    if stored != actual {
        return Err(corrupt(format!("checksum mismatch: stored {stored:#010x}, computed {actual:#010x}")));
    }
    let mut r = Reader { bytes, at: HEADER_LEN };
    let parsed = (|| {
        let pos = r.u64()?;
        let version = r.u64()?;
        let id = Uuid::from_bytes(r.take(16)?.try_into().ok()?);
        let micros = i64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let flags = r.take(1)?[0];
        let stream = r.str16()?;
        let kind = r.str16()?;
        let actor = if flags & FLAG_ACTOR != 0 { Some(r.str16()?) } else { None };
        let correlation_id =
            if flags & FLAG_CORRELATION != 0 { Some(Uuid::from_bytes(r.take(16)?.try_into().ok()?)) } else { None };
        let causation_id =
            if flags & FLAG_CAUSATION != 0 { Some(Uuid::from_bytes(r.take(16)?.try_into().ok()?)) } else { None };
        let traceparent = if flags & FLAG_TRACEPARENT != 0 { Some(r.str16()?) } else { None };
        let data_len = u32::from_le_bytes(r.take(4)?.try_into().ok()?) as usize;
        let data = String::from_utf8(r.take(data_len)?.to_vec()).ok()?;
        Some((
            pos,
            version,
            id,
            micros,
            stream,
            kind,
            Metadata { actor, correlation_id, causation_id, traceparent },
            data,
        ))
    })();
    let Some((pos, version, id, micros, stream, kind, metadata, data)) = parsed else {
        return Err(corrupt("record is truncated or not UTF-8 where text is expected".into()));
    };
    if r.at != bytes.len() {
        return Err(corrupt(format!("{} trailing bytes after the record", bytes.len() - r.at)));
    }
    if pos != position.0 {
        return Err(corrupt(format!("record says position {pos}")));
    }
    if version == 0 {
        return Err(corrupt("record has stream version 0".into()));
    }
    let recorded_at: DateTime<Utc> = DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| corrupt(format!("recorded_at {micros} is out of range")))?;
    Ok(Record {
        position,
        stream: StreamId::new(stream).map_err(|e| corrupt(e.to_string()))?,
        version: StreamVersion(version),
        id,
        kind: EventKind::new(kind).map_err(|e| corrupt(e.to_string()))?,
        recorded_at,
        data: EventData::from_trusted(data),
        metadata,
        checksum: stored,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str16(&mut self) -> Option<String> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(data: &str, metadata: &Metadata) -> Vec<u8> {
        encode(&RecordRef {
            position: Position(7),
            version: StreamVersion(3),
            id: Uuid::from_u128(42),
            recorded_at_micros: 1_764_000_000_000_000,
            stream: "incident-INC-1",
            kind: "incident.declared.v1",
            metadata,
            data,
        })
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let m = Metadata { actor: Some("alice".into()), ..Metadata::default() };
        let bytes = sample(r#"{"severity":"sev1"}"#, &m);
        assert!(decode(Position(7), &bytes).is_ok());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            let err = decode(Position(7), &b).unwrap_err();
            assert!(matches!(err, crate::Error::Corrupt { position: Position(7), .. }), "byte {i}: {err}");
        }
    }

    #[test]
    fn a_sealed_encoding_equals_a_direct_one() {
        let m = Metadata { actor: Some("bob".into()), correlation_id: Some(Uuid::from_u128(3)), ..Metadata::default() };
        let mut unsealed = encode_unsealed(Uuid::from_u128(42), "incident-INC-1", "incident.declared.v1", &m, "{}");
        seal(&mut unsealed, Position(7), StreamVersion(3), 1_764_000_000_000_000);
        assert_eq!(unsealed, sample("{}", &m));
    }

    #[test]
    fn truncation_and_wrong_position_are_detected() {
        let bytes = sample("{}", &Metadata::default());
        for len in 0..bytes.len() {
            assert!(decode(Position(7), &bytes[..len]).is_err(), "truncated to {len}");
        }
        let err = decode(Position(8), &bytes).unwrap_err();
        assert!(err.to_string().contains("record says position 7"), "{err}");
    }

    /// Three records at positions 7, 8, 9 packed in one chunk.
    fn sample_chunk() -> Vec<u8> {
        let mut chunk = ChunkBuilder::new(Position(7), 0);
        for (i, data) in ["{}", r#"{"a":1}"#, r#"{"severity":"sev1"}"#].into_iter().enumerate() {
            let mut bytes = encode_unsealed(Uuid::from_u128(i as u128), "s-1", "k.v1", &Metadata::default(), data);
            seal(&mut bytes, Position(7 + i as u64), StreamVersion(1 + i as u64), 1_764_000_000_000_000);
            assert!(chunk.fits(bytes.len()));
            chunk.push(&bytes);
        }
        let (key, value) = chunk.finish();
        assert_eq!(position_from_chunk_key(&key), Some(Position(7)));
        value
    }

    fn decode_chunk(first: Position, bytes: &[u8]) -> Result<Vec<Record>, crate::Error> {
        chunk_records(first, bytes)?.into_iter().map(|(p, b)| decode(p, b)).collect()
    }

    #[test]
    fn a_chunk_holds_consecutive_records_and_every_flipped_byte_is_detected() {
        let bytes = sample_chunk();
        let records = decode_chunk(Position(7), &bytes).unwrap();
        assert_eq!(records.iter().map(|r| (r.position.0, r.version.0)).collect::<Vec<_>>(), [(7, 1), (8, 2), (9, 3)]);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(decode_chunk(Position(7), &b).is_err(), "byte {i} flipped went unnoticed");
        }
        for len in 0..bytes.len() {
            assert!(decode_chunk(Position(7), &bytes[..len]).is_err(), "truncated to {len}");
        }
        // Under another key, every record names the wrong position.
        assert!(decode_chunk(Position(6), &bytes).is_err());
    }

    #[test]
    fn a_chunk_stops_taking_records_at_its_size_bound_but_takes_one_large_record() {
        let mut chunk = ChunkBuilder::new(Position(1), 0);
        assert!(chunk.fits(CHUNK_BYTES_MAX * 4), "an empty chunk takes any record");
        chunk.push(&[0; 100]);
        assert!(chunk.fits(CHUNK_BYTES_MAX - 200));
        assert!(!chunk.fits(CHUNK_BYTES_MAX));
    }

    proptest! {
        #[test]
        fn round_trip(
            actor in proptest::option::of("[a-z@.]{1,40}"),
            corr in proptest::option::of(any::<u128>()),
            caus in proptest::option::of(any::<u128>()),
            text in ".{0,200}",
            micros in 0i64..4_000_000_000_000_000,
        ) {
            let metadata = Metadata {
                actor,
                correlation_id: corr.map(Uuid::from_u128),
                causation_id: caus.map(Uuid::from_u128),
                traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            };
            let data = serde_json::to_string(&text).unwrap();
            let bytes = encode(&RecordRef {
                position: Position(9), version: StreamVersion(1), id: Uuid::from_u128(5),
                recorded_at_micros: micros, stream: "s-1", kind: "k.v1", metadata: &metadata, data: &data,
            });
            prop_assert_eq!(bytes.len(), encoded_len("s-1", "k.v1", &metadata, &data));
            let r = decode(Position(9), &bytes).unwrap();
            prop_assert_eq!(&r.metadata, &metadata);
            prop_assert_eq!(r.data.as_str(), data.as_str());
            prop_assert_eq!(r.recorded_at.timestamp_micros(), micros);
            // The wire form is the stored form, byte for byte.
            prop_assert_eq!(r.to_bytes(), bytes.clone());
            prop_assert_eq!(crate::Record::from_bytes(Position(9), &r.to_bytes()).unwrap(), r);
            prop_assert!(crate::Record::from_bytes(Position(10), &bytes).is_err(), "another position is refused");
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(Position(1), &bytes);
        }
    }
}
