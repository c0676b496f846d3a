use std::collections::BTreeMap;

use super::*;

fn state() -> BTreeMap<String, u64> {
    BTreeMap::from([("INC-1".to_owned(), 3), ("INC-2".to_owned(), 7)])
}

fn saved() -> (tempfile::TempDir, SnapshotFile) {
    let dir = tempfile::tempdir().unwrap();
    let file = SnapshotFile::new(dir.path().join("snapshots").join("svc.snap"));
    file.save(3, Position(42), Uuid::from_u128(9), &state()).unwrap();
    (dir, file)
}

#[test]
fn a_saved_snapshot_reads_back_with_its_position_and_id() {
    let (_dir, file) = saved();
    let loaded = file.load::<BTreeMap<String, u64>>(3).unwrap();
    assert_eq!((loaded.position, loaded.id, loaded.state), (Position(42), Uuid::from_u128(9), state()));
}

#[test]
fn another_schema_version_is_rejected() {
    let (_dir, file) = saved();
    let rejected = file.load::<BTreeMap<String, u64>>(4).unwrap_err();
    assert!(matches!(rejected, Rejected::Schema { found: 3, expected: 4 }), "{rejected:?}");
}

#[test]
fn every_flipped_byte_and_every_truncation_is_rejected() {
    let (_dir, file) = saved();
    let good = fs::read(file.path()).unwrap();
    for at in 0..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        fs::write(file.path(), &bad).unwrap();
        assert!(file.load::<BTreeMap<String, u64>>(3).is_err(), "byte {at} flipped was accepted");
    }
    for len in 0..good.len() {
        fs::write(file.path(), &good[..len]).unwrap();
        assert!(file.load::<BTreeMap<String, u64>>(3).is_err(), "a snapshot cut at {len} was accepted");
    }
}

#[test]
fn a_missing_or_removed_snapshot_is_missing() {
    let (_dir, file) = saved();
    file.remove().unwrap();
    assert!(matches!(file.load::<BTreeMap<String, u64>>(3), Err(Rejected::Missing)));
    file.remove().unwrap();
}
