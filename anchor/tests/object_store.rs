//! Two processes on one `s3://` data directory (moto_server on a free loopback port): what
//! POSIX guards with OS locks and appends, the object store guards with create-only writes
//! and leases. Two handles opened on the same URL share nothing in memory, like two pods.

mod common;

use common::seal;
use veritrace_anchor::store::S3Options;
use veritrace_anchor::{BatchWriter, DataDir, EpochLog, Error};
use veritrace_testkit::moto::Moto;

fn s3(moto: &Moto) -> S3Options {
    S3Options {
        endpoint: moto.endpoint(),
        region: "us-east-1".into(),
        access_key_id: "test".into(),
        secret_access_key: "test".into(),
        allow_http: true,
    }
}

#[test]
fn two_writers_of_one_partition_or_one_epoch_log_cannot_both_commit() {
    let moto = Moto::start();
    moto.create_bucket("fencing");
    let url = "s3://fencing/plant";
    let a = DataDir::create_with(url, &s3(&moto)).expect("create");
    let b = DataDir::open_with(url, &s3(&moto)).expect("open");

    // Leases: one holder at a time; the second is told who holds it.
    let lock = a.partition_lock_file("demo", 0);
    let held = a.try_lock(&lock, "pod-a").expect("lease").expect("free");
    assert!(b.try_lock(&lock, "pod-b").expect("lease").is_none());
    assert!(
        b.lock_holder(&lock).contains("pod-a"),
        "{}",
        b.lock_holder(&lock)
    );

    // A zombie (b) that never took the lease and opened the partition before a sealed:
    // both think the next batch is number 0. Exactly one commit wins.
    let mut wa = BatchWriter::open(&a, "demo", 0).expect("open a");
    let mut wb = BatchWriter::open(&b, "demo", 0).expect("open b");
    let first = seal(&mut wa, 0, 10).expect("a seals");
    // Same offsets: the batch file itself is taken.
    match seal(&mut wb, 0, 10) {
        Err(Error::Lost { .. }) => {}
        other => panic!("the second writer of batch 0 must lose, got {other:?}"),
    }
    // Other offsets (a different batch file): the manifest entry is taken.
    match seal(&mut wb, 0, 5) {
        Err(Error::Lost { .. }) => {}
        other => panic!("the second writer of entry 0 must lose, got {other:?}"),
    }
    // The winner goes on; the chain is one chain.
    let second = seal(&mut wa, 10, 10).expect("a seals again");
    assert_eq!(second.prev_root, first.root);
    let reread = BatchWriter::open(&b, "demo", 0).expect("reopen checks the whole chain");
    assert_eq!(reread.last().map(|h| h.seq), Some(1));
    assert_eq!(reread.committed_offset(), Some(19));

    // The lease frees on drop; the next holder gets a higher generation.
    drop(held);
    let taken = b.try_lock(&lock, "pod-b").expect("lease").expect("freed");
    assert!(
        a.lock_holder(&lock).contains("pod-b"),
        "{}",
        a.lock_holder(&lock)
    );
    assert!(!taken.lost());

    // Two epoch sealers over the same batches: one epoch 0.
    let mut ea = EpochLog::open_writer(&a).expect("epochs a");
    let mut eb = EpochLog::open_writer(&b).expect("epochs b");
    let headers = a.all_batch_headers().expect("headers");
    ea.seal(headers.clone(), "2026-12-03T00:00:01.000Z".into())
        .expect("a seals epoch 0")
        .expect("something to seal");
    match eb.seal(headers, "2026-12-03T00:00:02.000Z".into()) {
        Err(Error::Lost { .. }) => {}
        other => panic!("the second sealer of epoch 0 must lose, got {other:?}"),
    }
    let epochs = EpochLog::read(&b).expect("read");
    assert_eq!(epochs.records().len(), 1);
    assert_eq!(epochs.records()[0].sealed_at, "2026-12-03T00:00:01.000Z");
}
