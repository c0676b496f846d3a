//! Finding records in sled: positions up to the legacy head are format-1
//! `r` keys (one record each), every later one is in a chunk (`k` keys,
//! see `codec`).

use crate::{Error, Position, Record, codec};

/// Up to `max` records from `from` to `head` (both inclusive), in order,
/// each decoded and checked; a missing one is [`Error::Corrupt`].
pub(crate) fn read_range(
    db: &sled::Db,
    legacy_head: Position,
    from: Position,
    head: Position,
    max: usize,
) -> Result<Vec<Record>, Error> {
    let from = from.max(Position(1));
    if from > head || max == 0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(max.min((head.0 - from.0 + 1) as usize).min(4096));
    let mut expected = from;
    if expected <= legacy_head {
        let end = head.min(legacy_head);
        for entry in db.range(codec::record_key(expected)..=codec::record_key(end)) {
            let (key, value) = entry?;
            let position = codec::position_from_record_key(&key).ok_or_else(|| Error::Corrupt {
                position: expected,
                reason: format!("malformed record key {key:?}"),
            })?;
            if position != expected {
                return Err(missing(expected, position));
            }
            out.push(codec::decode(position, &value)?);
            expected = expected.next();
            if out.len() == max {
                return Ok(out);
            }
        }
    }
    if expected <= head {
        let start = chunk_holding(db, expected)?.unwrap_or(expected);
        'chunks: for entry in db.range(codec::chunk_key(start)..=codec::chunk_key(head)) {
            let (key, value) = entry?;
            let first = codec::position_from_chunk_key(&key)
                .ok_or_else(|| Error::Corrupt { position: expected, reason: format!("malformed chunk key {key:?}") })?;
            for (position, bytes) in codec::chunk_records(first, &value)? {
                if position < expected {
                    continue;
                }
                if position > head {
                    break 'chunks;
                }
                if position != expected {
                    return Err(missing(expected, position));
                }
                out.push(codec::decode(position, bytes)?);
                expected = expected.next();
                if out.len() == max {
                    return Ok(out);
                }
            }
        }
    }
    if expected <= head {
        return Err(Error::Corrupt { position: expected, reason: "record missing below the head".into() });
    }
    Ok(out)
}

fn missing(expected: Position, next: Position) -> Error {
    Error::Corrupt { position: expected, reason: format!("record missing (next is {next})") }
}

/// The first position of the chunk that would hold `position`: the last
/// chunk starting at or before it.
fn chunk_holding(db: &sled::Db, position: Position) -> Result<Option<Position>, Error> {
    match db.range(codec::chunk_key(Position::ZERO)..=codec::chunk_key(position)).next_back() {
        None => Ok(None),
        Some(entry) => {
            let (key, _) = entry?;
            Ok(codec::position_from_chunk_key(&key))
        }
    }
}

/// The stored bytes of the record at `position`, not yet checked, if any.
pub(crate) fn read_raw(db: &sled::Db, legacy_head: Position, position: Position) -> Result<Option<Vec<u8>>, Error> {
    if position <= legacy_head {
        return Ok(db.get(codec::record_key(position))?.map(|v| v.to_vec()));
    }
    let Some(entry) = db.range(codec::chunk_key(Position::ZERO)..=codec::chunk_key(position)).next_back() else {
        return Ok(None);
    };
    let (key, value) = entry?;
    let first = codec::position_from_chunk_key(&key)
        .ok_or_else(|| Error::Corrupt { position, reason: format!("malformed chunk key {key:?}") })?;
    let index = (position.0 - first.0) as usize;
    Ok(codec::chunk_records(first, &value)?.get(index).map(|(_, bytes)| bytes.to_vec()))
}

/// The record at `position`, checked, if stored.
pub(crate) fn read_one(db: &sled::Db, legacy_head: Position, position: Position) -> Result<Option<Record>, Error> {
    match read_raw(db, legacy_head, position)? {
        Some(bytes) => codec::decode(position, &bytes).map(Some),
        None => Ok(None),
    }
}

/// The legacy head (the last format-1 `r` record, or 0) and the last record
/// of the log, checked.
pub(crate) fn ends(db: &sled::Db) -> Result<(Position, Option<Record>), Error> {
    let legacy = match db.scan_prefix([codec::TAG_RECORD]).next_back() {
        None => None,
        Some(entry) => {
            let (key, value) = entry?;
            let position = codec::position_from_record_key(&key).ok_or_else(|| Error::Corrupt {
                position: Position::ZERO,
                reason: format!("malformed record key {key:?}"),
            })?;
            Some(codec::decode(position, &value)?)
        }
    };
    let legacy_head = legacy.as_ref().map_or(Position::ZERO, |r| r.position);
    let last = match db.scan_prefix([codec::TAG_CHUNK]).next_back() {
        None => legacy,
        Some(entry) => {
            let (key, value) = entry?;
            let first = codec::position_from_chunk_key(&key).ok_or_else(|| Error::Corrupt {
                position: Position::ZERO,
                reason: format!("malformed chunk key {key:?}"),
            })?;
            let records = codec::chunk_records(first, &value)?;
            let (position, bytes) = records.last().expect("a chunk holds at least one record");
            Some(codec::decode(*position, bytes)?)
        }
    };
    Ok((legacy_head, last))
}
