//! The disk fails: a sync that fails (injected with [`SyncFault`]) makes the
//! log answer every pending and every later append with an error, and
//! nothing acknowledged before is lost when the log is reopened.

use klaxon_log::{Error, ExpectedVersion, Log, Options, Position, SyncFault};

use crate::support::{event, sid};

#[tokio::test]
async fn after_a_failed_sync_every_pending_and_later_append_fails_and_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let fault = SyncFault::new();
    let log = Log::open_with_sync_fault(dir.path(), Options::default(), fault.clone()).unwrap();

    // Acknowledged before the disk fails: 30 appends of 2 events, some concurrent.
    let mut acknowledged = Vec::new();
    for round in 0..3u64 {
        let appends = (0..10u64).map(|i| {
            let log = log.clone();
            let events = vec![event(round * 100 + i), event(round * 100 + i + 50)];
            let ids: Vec<_> = events.iter().map(|e| e.id).collect();
            tokio::spawn(async move { (ids, log.append(&sid(&format!("s-{i}")), ExpectedVersion::Any, events).await) })
        });
        for task in futures::future::join_all(appends).await {
            let (ids, appended) = task.unwrap();
            let appended = appended.expect("the disk is fine");
            acknowledged.push((appended.first, ids));
        }
    }
    let head = log.head();
    assert_eq!(head, Position(60));
    assert_eq!(fault.failures(), 0);

    // The next sync fails. Many appends are pending at once: each is answered
    // with the failure, none with success.
    fault.fail_after(0);
    let pending = (0..40u64).map(|i| {
        let log = log.clone();
        tokio::spawn(async move { log.append(&sid("after"), ExpectedVersion::Any, vec![event(1000 + i)]).await })
    });
    for answer in futures::future::join_all(pending).await {
        let answer = answer.unwrap();
        assert!(matches!(answer, Err(Error::Failed { .. })), "a pending append after a failed sync: {answer:?}");
    }
    assert!(fault.failures() >= 1, "the fault was hit");
    assert_eq!(log.head(), head, "no failed append became visible");

    // Every later write is refused too, without touching the disk again.
    let failures = fault.failures();
    for i in 0..5 {
        let later = log.append(&sid("later"), ExpectedVersion::Any, vec![event(2000 + i)]).await;
        match later {
            Err(Error::Failed { reason }) => assert!(reason.contains("injected sync fault"), "{reason}"),
            other => panic!("a later append after a failed sync: {other:?}"),
        }
    }
    let checkpoint = log.save_checkpoint("reader", Position(1)).await;
    assert!(matches!(checkpoint, Err(Error::Failed { .. })), "{checkpoint:?}");
    assert_eq!(fault.failures(), failures, "a failed log does not sync again until reopened");
    log.close().await;
    drop(log);

    // Reopened (on a healthy disk): everything acknowledged is there, in place.
    let log = Log::open(dir.path(), Options::default()).unwrap();
    assert!(log.head() >= head, "the head after reopening is {:?}", log.head());
    let records = log.read_all(Position(1), 1000).unwrap();
    for (first, ids) in &acknowledged {
        for (offset, id) in ids.iter().enumerate() {
            let record = &records[(first.0 - 1) as usize + offset];
            assert_eq!(record.position, Position(first.0 + offset as u64));
            assert_eq!(record.id, *id, "acknowledged event at {:?}", record.position);
        }
    }
    // And the log takes writes again.
    let appended = log.append(&sid("again"), ExpectedVersion::Any, vec![event(3000)]).await.unwrap();
    assert_eq!(appended.first.0, log.head().0);
    log.close().await;
}
