use std::ops::ControlFlow;

use super::{HEADER_LEN, Row, Table};
use crate::Error;

/// A row of two numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pair(u32, u64);

impl Row for Pair {
    const LEN: usize = 12;
    const KIND: [u8; 8] = *b"pair-v1\0";
    fn encode(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.0.to_le_bytes());
        out[4..].copy_from_slice(&self.1.to_le_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Pair> {
        Some(Pair(u32::from_le_bytes(bytes[..4].try_into().ok()?), u64::from_le_bytes(bytes[4..].try_into().ok()?)))
    }
}

/// The same bytes, another kind.
struct Other;

impl Row for Other {
    const LEN: usize = 12;
    const KIND: [u8; 8] = *b"other-1\0";
    fn encode(&self, _: &mut [u8]) {}
    fn decode(_: &[u8]) -> Option<Other> {
        Some(Other)
    }
}

fn back(table: &Table<Pair>, below: Option<u64>) -> Vec<(u64, Pair)> {
    let mut out = Vec::new();
    table
        .scan_back(
            below,
            |_| false,
            |n, r| {
                out.push((n, r));
                ControlFlow::Continue(())
            },
        )
        .unwrap();
    out
}

fn forward(table: &Table<Pair>) -> Vec<(u64, Pair)> {
    let mut out = Vec::new();
    table.scan(|_| false, |n, r| out.push((n, r))).unwrap();
    out
}

#[test]
fn rows_are_found_by_number_newest_first_and_in_order_across_chunks_and_cleared_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let table = Table::<Pair>::open(dir.path().join("t.rows")).unwrap();
    assert_eq!(table.epoch(), 0, "a new file goes with no snapshot");
    let epoch = table.reset().unwrap();
    assert_ne!(epoch, 0);
    // Sparse, beyond one scan chunk (1,024 slots), out of order.
    let numbers = [3000u64, 1, 2, 1024, 1025, 2048, 7];
    for n in numbers {
        table.put(n, &Pair(n as u32, n * 10)).unwrap();
    }
    table.put(7, &Pair(70, 700)).unwrap();
    table.clear(2).unwrap();
    table.clear(999_999).unwrap();
    assert_eq!(table.get(7).unwrap(), Some(Pair(70, 700)), "replaced in place");
    assert_eq!(table.get(2).unwrap(), None, "cleared");
    assert_eq!(table.get(5).unwrap(), None, "never written");
    assert_eq!(table.get(1 << 40).unwrap(), None, "past the end");
    let mut expected: Vec<(u64, Pair)> = [3000u64, 2048, 1025, 1024, 7, 1]
        .iter()
        .map(|n| (*n, if *n == 7 { Pair(70, 700) } else { Pair(*n as u32, n * 10) }))
        .collect();
    assert_eq!(back(&table, None), expected);
    assert_eq!(back(&table, Some(1025)), expected[3..].to_vec(), "below a number");
    expected.reverse();
    assert_eq!(forward(&table), expected);
    // Stopping early, and skipping.
    let mut seen = Vec::new();
    table
        .scan_back(
            None,
            |n| n == 3000,
            |n, _| {
                seen.push(n);
                if seen.len() == 2 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
            },
        )
        .unwrap();
    assert_eq!(seen, [2048, 1025]);

    // Reopened: the same rows, the same epoch.
    drop(table);
    let table = Table::<Pair>::open(dir.path().join("t.rows")).unwrap();
    assert_eq!(table.epoch(), epoch);
    assert_eq!(forward(&table), expected);
    // Another row's table does not take it; a reset empties it.
    assert_eq!(Table::<Other>::open(dir.path().join("t.rows")).unwrap().epoch(), 0);
    let again = table.reset().unwrap();
    assert_ne!(again, epoch);
    assert_eq!(forward(&table), []);
    assert_eq!(table.len_bytes().unwrap(), HEADER_LEN);
}

#[test]
fn a_crash_mid_append_leaves_a_torn_tail_that_the_checksum_refuses_and_the_open_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.rows");
    let table = Table::<Pair>::open(&path).unwrap();
    table.reset().unwrap();
    for n in 1..=10 {
        table.put(n, &Pair(1, n)).unwrap();
    }
    table.persist().unwrap();
    let slot = Table::<Pair>::SLOT;
    let whole = table.len_bytes().unwrap();
    assert_eq!(whole, HEADER_LEN + 10 * slot);
    drop(table);

    // The write of incident 11's row stopped after 7 of its 17 bytes.
    let mut bytes = std::fs::read(&path).unwrap();
    let mut full = vec![0u8; slot as usize];
    {
        let scratch = tempfile::tempdir().unwrap();
        let other = Table::<Pair>::open(scratch.path().join("x")).unwrap();
        other.reset().unwrap();
        other.put(11, &Pair(9, 9)).unwrap();
        let written = std::fs::read(scratch.path().join("x")).unwrap();
        full.copy_from_slice(&written[(HEADER_LEN + 10 * slot) as usize..]);
    }
    bytes.extend_from_slice(&full[..7]);
    std::fs::write(&path, &bytes).unwrap();
    // Read as it is, the torn slot fails its checksum: never a row.
    {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        file.set_len(whole + slot).unwrap();
        let torn = Table::<Pair> { file, path: Some(path.clone()), ..Table::with(tempfile::tempfile().unwrap(), None) };
        torn.epoch.store(1, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(torn.get(11), Err(Error::Table { .. })), "{:?}", torn.get(11));
        assert!(torn.scan(|_| false, |_, _| {}).is_err(), "a scan reports it");
        let mut rows = 0;
        torn.scan(|n| n == 11, |_, _| rows += 1).unwrap();
        assert_eq!(rows, 10, "unless told the slot is a held incident's");
        torn.file.set_len(whole + 7).unwrap();
    }
    // Opened, the tail is cut: the ten rows before it stay, 11 has none.
    let table = Table::<Pair>::open(&path).unwrap();
    assert_eq!(table.len_bytes().unwrap(), whole);
    assert_eq!(table.get(11).unwrap(), None);
    assert_eq!(forward(&table), (1..=10).map(|n| (n, Pair(1, n))).collect::<Vec<_>>());

    // A bit flipped inside a row is refused too.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(HEADER_LEN + 4 * slot + 3) as usize] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let table = Table::<Pair>::open(&path).unwrap();
    let e = table.get(5).unwrap_err();
    assert!(e.to_string().contains("incident number 5 fails its checksum"), "{e}");
    assert_eq!(table.get(4).unwrap(), Some(Pair(1, 4)));
}

#[test]
fn an_anonymous_table_is_empty_and_leaves_no_file() {
    let table = Table::<Pair>::anonymous().unwrap();
    assert_ne!(table.epoch(), 0);
    assert!(table.path().is_none());
    table.put(2, &Pair(1, 2)).unwrap();
    assert_eq!(table.get(2).unwrap(), Some(Pair(1, 2)));
    let leftover = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with(&format!("klaxon-rows-{}-", std::process::id())));
    assert!(!leftover, "unlinked at once");
}
