//! Two processes on one `s3://` data directory (moto_server on a free loopback port): what
//! POSIX guards with OS locks and appends, the object store guards with create-only writes
//! and leases. Two handles opened on the same URL share nothing in memory, like two pods.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::seal;
use veritrace_anchor::epoch_loop::{BatchFeed, EpochLoop, EpochObserver};
use veritrace_anchor::store::S3Options;
use veritrace_anchor::{Backend, BatchWriter, DataDir, EpochLog, Error, LocalLedger};
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
    // The same name again (a second replica on one host, or another part of the same
    // process) is another holder, as with an OS lock.
    assert!(b.try_lock(&lock, "pod-a").expect("lease").is_none());
    assert!(a.try_lock(&lock, "pod-a").expect("lease").is_none());
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

/// Counts what a contending loop reports, readable from the test thread.
#[derive(Default)]
struct Leads {
    leading: AtomicUsize,
    stepped_down: AtomicUsize,
}

impl EpochObserver for Leads {
    fn leading(&self, _backend: &str) {
        self.leading.fetch_add(1, Ordering::SeqCst);
    }
    fn stepped_down(&self) {
        self.stepped_down.fetch_add(1, Ordering::SeqCst);
    }
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The leading epoch sealer finds that another writer sealed the epoch it was about to
/// write (a zombie, or a process that took over while this one stalled): it gives up the
/// lead instead of stopping the process, leads again later from what the directory says,
/// and the epochs stay one chain with every batch in exactly one of them.
#[test]
fn an_epoch_sealer_that_loses_its_epoch_steps_down_and_leads_again() {
    let moto = Moto::start();
    moto.create_bucket("stepdown");
    let url = "s3://stepdown/plant";
    let a = DataDir::create_with(url, &s3(&moto)).expect("create");
    let b = DataDir::open_with(url, &s3(&moto)).expect("open");
    let mut w = BatchWriter::open(&a, "demo", 0).expect("writer");
    let zombie_epochs = EpochLog::open_writer(&b).expect("zombie opens the epoch log");

    let leads = Arc::new(Leads::default());
    let stop = Arc::new(AtomicBool::new(false));
    let looping = std::thread::spawn({
        let (a, stop, leads) = (a.clone(), stop.clone(), leads.clone());
        move || {
            EpochLoop::contending(&a, Duration::from_millis(100), Backend::Local, "pod-a").run(
                BatchFeed::Rescan(stop),
                Duration::from_secs(5),
                &*leads,
            )
        }
    });
    wait_until("the loop to lead", || {
        leads.leading.load(Ordering::SeqCst) == 1
    });
    // The loop leads with an empty epoch log in memory; the zombie seals epoch 0 under it.
    seal(&mut w, 0, 10).expect("batch 0");
    seal(&mut w, 10, 10).expect("batch 1");
    let mut zombie_epochs = zombie_epochs;
    zombie_epochs
        .seal(
            b.all_batch_headers().expect("headers"),
            "2026-12-03T00:00:01.000Z".into(),
        )
        .expect("zombie seals")
        .expect("something to seal");
    seal(&mut w, 20, 10).expect("batch 2");
    wait_until("the loop to step down", || {
        leads.stepped_down.load(Ordering::SeqCst) >= 1
    });
    wait_until("the loop to lead again and seal batch 2", || {
        EpochLog::read(&b)
            .map(|e| e.records().len() == 2)
            .unwrap_or(false)
    });
    stop.store(true, Ordering::SeqCst);
    looping
        .join()
        .expect("join")
        .expect("a lost epoch is not the process's end");
    assert!(leads.leading.load(Ordering::SeqCst) >= 2);

    let epochs = EpochLog::read(&b).expect("read");
    let records = epochs.records();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].sealed_at, "2026-12-03T00:00:01.000Z");
    let mut batches: Vec<&String> = records.iter().flat_map(|r| &r.batch_ids).collect();
    let all = batches.len();
    batches.sort();
    batches.dedup();
    assert_eq!(
        (all, batches.len()),
        (3, 3),
        "every batch in exactly one epoch"
    );
    // Both epochs anchored by the leader that came back, once each.
    let ledger = LocalLedger::read_entries(&b).expect("ledger");
    assert_eq!(ledger.len(), 2);
}
