use super::*;

use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Calls `f` while counting how many calls run at once; the most seen.
struct Overlap {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl Overlap {
    fn new() -> Self {
        Overlap {
            now: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        }
    }

    fn during<R>(&self, f: impl FnOnce() -> R) -> R {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(n, Ordering::SeqCst);
        let r = f();
        self.now.fetch_sub(1, Ordering::SeqCst);
        r
    }
}

#[test]
fn workers_is_the_key_else_the_cores_within_the_sources() {
    assert_eq!(workers(None, 100), cores().min(100));
    assert_eq!(workers(Some(4), 2), 2);
    assert_eq!(workers(Some(1), 5), 1);
    assert_eq!(workers(Some(3), 5), 3);
    assert_eq!(workers(Some(3), 0), 1);
}

/// Items whose work ends in reverse order come back in item order, at most `workers` ran at
/// once, and every item ran exactly once.
#[test]
fn results_keep_item_order_and_at_most_workers_run_at_once() {
    let items: Vec<u64> = (0..7).collect();
    let overlap = Overlap::new();
    let calls = AtomicUsize::new(0);
    let out = run_each(&items, 3, |&i| {
        calls.fetch_add(1, Ordering::SeqCst);
        overlap.during(|| std::thread::sleep(Duration::from_millis(20 * (7 - i))));
        i * 10
    });
    assert_eq!(out, vec![0, 10, 20, 30, 40, 50, 60]);
    assert_eq!(calls.load(Ordering::SeqCst), 7);
    assert_eq!(overlap.most.load(Ordering::SeqCst), 3);
}

/// Two items that each wait for the other to have started finish only if they overlap.
#[test]
fn two_workers_really_overlap() {
    let started = [AtomicBool::new(false), AtomicBool::new(false)];
    let items = [0usize, 1];
    let out = run_each(&items, 2, |&i| {
        started[i].store(true, Ordering::SeqCst);
        let end = Instant::now() + Duration::from_secs(10);
        while !started[1 - i].load(Ordering::SeqCst) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
        started[1 - i].load(Ordering::SeqCst)
    });
    assert_eq!(
        out,
        vec![true, true],
        "the two items did not run at the same time"
    );
}

/// One worker: the original's order, on the caller's thread, one at a time.
#[test]
fn one_worker_runs_in_order_on_the_callers_thread() {
    let caller = std::thread::current().id();
    let order = Mutex::new(Vec::new());
    let overlap = Overlap::new();
    let out = run_each(&[3, 1, 2], 1, |&i| {
        overlap.during(|| order.lock().unwrap().push(i));
        std::thread::current().id() == caller
    });
    assert_eq!(out, vec![true, true, true]);
    assert_eq!(*order.lock().unwrap(), vec![3, 1, 2]);
    assert_eq!(overlap.most.load(Ordering::SeqCst), 1);
    assert!(run_each(&[] as &[u8], 4, |_| ()).is_empty());
}

/// Pipelines started by a worker share the cores with the others running at once; outside
/// an executor (and with one worker) a pipeline gets them all, as before.
#[test]
fn zstd_threads_share_the_cores_between_running_sources() {
    let all = cores().clamp(1, MAX_ZSTD_THREADS) as u32;
    assert_eq!(zstd_threads(), all);
    assert_eq!(run_each(&[(), ()], 1, |_| zstd_threads()), vec![all, all]);
    let half = (cores() / 2).clamp(1, MAX_ZSTD_THREADS) as u32;
    assert_eq!(run_each(&[(), ()], 2, |_| zstd_threads()), vec![half, half]);
    assert_eq!(
        zstd_threads(),
        all,
        "the caller's thread is given back its share"
    );
}

#[test]
fn uploads_are_bounded_and_given_back_on_drop() {
    let one = Uploads::new(NonZeroUsize::new(1));
    let first = one.try_take().expect("free");
    assert!(one.try_take().is_none(), "only one at a time");
    drop(first);
    assert!(one.try_take().is_some(), "given back");

    let any = Uploads::new(None);
    let held: Vec<_> = (0..100)
        .map(|_| any.try_take().expect("no limit"))
        .collect();
    assert_eq!(held.len(), 100);
}

/// A wait ends when the upload is given back by another thread.
#[test]
fn take_waits_for_the_upload_to_be_given_back() {
    let one = Uploads::new(NonZeroUsize::new(1));
    let cancel = Cancel::new();
    let held = one.try_take().expect("free");
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            drop(held);
        });
        let again = one.take(cancel).expect("given back");
        assert!(started.elapsed() >= Duration::from_millis(150));
        drop(again);
    });
}

/// A signal ends the wait, and what `take_all` took before it is given back.
#[test]
fn a_signal_ends_the_wait_and_take_all_gives_back_what_it_held() {
    let free = Uploads::new(NonZeroUsize::new(1));
    let busy = Uploads::new(NonZeroUsize::new(1));
    let cancel = Cancel::new();
    let _held = busy.try_take().expect("free");
    let waited = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            cancel.cancel(15);
        });
        let r = take_all(&[&free, &busy], cancel, |i| waited.lock().unwrap().push(i));
        assert_eq!(r.err(), Some(15));
    });
    assert_eq!(*waited.lock().unwrap(), vec![1]);
    assert!(free.try_take().is_some(), "the first upload was given back");
    assert!(
        Uploads::new(None).take(cancel).is_err(),
        "cancelled: no wait starts"
    );
}
