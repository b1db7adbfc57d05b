//! The one epoch loop, fed by a channel (in-process runtimes) or by the manifests
//! (processes that share a data directory), on the local ledger.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use veritrace_anchor::epoch_loop::{BatchFeed, EpochLoop, EpochObserver, anchor_once};
use veritrace_anchor::{
    AnchoredEpoch, Anchorer, Backend, BatchHeader, BatchWriter, DataDir, DirLock, EpochRecord,
    LocalLedger,
};

fn seal(w: &mut BatchWriter, first: u64, n: usize) -> BatchHeader {
    common::seal(w, first, n).expect("seal")
}

#[derive(Default)]
struct Seen {
    leading: Mutex<Vec<String>>,
    sealed: Mutex<Vec<EpochRecord>>,
    anchored: AtomicUsize,
    unanchored: AtomicUsize,
}

impl EpochObserver for Seen {
    fn leading(&self, backend: &str) {
        self.leading.lock().expect("lock").push(backend.into());
    }
    fn sealed(&self, e: &EpochRecord) {
        self.sealed.lock().expect("lock").push(e.clone());
    }
    fn anchored(&self, done: &[AnchoredEpoch]) {
        self.anchored.fetch_add(done.len(), Ordering::Relaxed);
    }
    fn unanchored_epochs(&self, n: usize) {
        self.unanchored.store(n, Ordering::Relaxed);
    }
}

#[test]
fn a_channel_fed_loop_seals_every_batch_and_anchors_on_stop() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let a = Anchorer::open(&dir, Duration::from_secs(3600), Backend::Local, || {
        "2026-12-02T00:00:00.000Z".into()
    })
    .expect("anchorer");
    let (tx, rx) = sync_channel(16);
    let seen = Seen::default();
    let mut w = BatchWriter::open(&dir, "s", 0).expect("writer");
    for i in 0..3 {
        tx.send(seal(&mut w, i * 10, 10)).expect("send");
    }
    drop(tx);
    // An hour between epochs: only the stop seals, once, over all three batches.
    let report = EpochLoop::with_anchorer(&dir, Duration::from_secs(3600), a)
        .run(BatchFeed::Channel(rx), Duration::from_secs(5), &seen)
        .expect("run");
    assert_eq!(report.anchored.len(), 1);
    assert_eq!(report.unanchored, 0);
    let sealed = seen.sealed.lock().expect("lock");
    assert_eq!(sealed.len(), 1);
    assert_eq!(sealed[0].batch_count, 3);
    assert_eq!(seen.anchored.load(Ordering::Relaxed), 1);
    assert_eq!(LocalLedger::read_entries(&dir).expect("ledger").len(), 1);
}

/// A rescanning loop contending for the anchorer lock on its own thread, until the flag is
/// set; it returns its report and the backends it led with.
fn contend(
    dir: &DataDir,
) -> (
    Arc<AtomicBool>,
    std::thread::JoinHandle<(veritrace_anchor::epoch_loop::EpochLoopReport, Vec<String>)>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let handle = std::thread::spawn({
        let (dir, stop) = (dir.clone(), stop.clone());
        move || {
            let seen = Seen::default();
            let r = EpochLoop::contending(&dir, Duration::from_millis(50), Backend::Local, "me")
                .run(BatchFeed::Rescan(stop), Duration::from_secs(1), &seen)
                .expect("run");
            let leading = seen.leading.lock().expect("lock").clone();
            (r, leading)
        }
    });
    (stop, handle)
}

#[test]
fn rescanning_loops_contend_for_the_lock_and_one_anchors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let mut w = BatchWriter::open(&dir, "s", 0).expect("writer");
    seal(&mut w, 0, 5);
    seal(&mut w, 5, 5);

    // Another process holds the anchorer lock: this loop waits and anchors nothing.
    let other = DirLock::try_acquire(&dir.anchorer_lock_file(), "other")
        .expect("lock")
        .expect("free");
    let (stop, waiting) = contend(&dir);
    std::thread::sleep(Duration::from_millis(400));
    stop.store(true, Ordering::Relaxed);
    let (r, leading) = waiting.join().expect("join");
    assert_eq!((r.anchored.len(), leading.len()), (0, 0));
    assert!(LocalLedger::read_entries(&dir).expect("ledger").is_empty());
    // `veritrace anchor run` says so too.
    assert!(
        anchor_once(
            &dir,
            Duration::from_secs(1),
            Backend::Local,
            "cli",
            Duration::from_secs(1)
        )
        .expect("once")
        .is_none()
    );

    // The lock frees: the loop takes the lead and anchors what the manifests hold.
    drop(other);
    let (stop, leading) = contend(&dir);
    std::thread::sleep(Duration::from_millis(400));
    seal(&mut w, 10, 5);
    std::thread::sleep(Duration::from_millis(400));
    stop.store(true, Ordering::Relaxed);
    let (r, leading) = leading.join().expect("join");
    assert_eq!(leading, vec!["local".to_owned()]);
    assert!(r.anchored.len() >= 2, "{:?}", r.anchored);
    let entries = LocalLedger::read_entries(&dir).expect("ledger");
    assert_eq!(entries.len(), r.anchored.len());

    // Nothing new: a one-shot run seals nothing and finds nothing waiting.
    let once = anchor_once(
        &dir,
        Duration::from_secs(1),
        Backend::Local,
        "cli",
        Duration::from_secs(1),
    )
    .expect("once")
    .expect("lock free");
    assert!(once.sealed.is_none());
    assert_eq!((once.waiting_before, once.waiting_after), (0, 0));
    assert_eq!(once.epochs, entries.len());
}
