//! The latest poll result per polled target: what a scrape (or a sink) reads.
//!
//! A poll task builds a whole new snapshot and swaps it in; a reader takes an `Arc` to the
//! current one. Neither waits for the other beyond an `Arc` clone, so a slow target never slows
//! `/metrics`, and a reader never sees half a poll. A generation counter, bumped after every
//! publish, lets `/metrics` cache its encoding (see [`crate::exposition::Exposition::cached`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// What a [`Store`] holds per target.
pub trait Snapshot: Send + Sync + 'static {
    /// The configured name of the target this snapshot belongs to (its slot in the store).
    fn key(&self) -> &str;
    /// The state of `key` before its first poll.
    fn empty(key: &str) -> Self;
}

/// Age at `now` of data fetched at `fetched` (`None`: never fetched); a clock stepping back
/// gives zero, not a panic.
pub fn age(fetched: Option<SystemTime>, now: SystemTime) -> Option<Duration> {
    fetched.map(|t| now.duration_since(t).unwrap_or(Duration::ZERO))
}

/// The current snapshot of every configured target, in config order.
#[derive(Debug)]
pub struct Store<T> {
    names: Vec<String>,
    slots: Vec<RwLock<Arc<T>>>,
    generation: AtomicU64,
}

impl<T: Snapshot> Store<T> {
    /// One empty slot per target name.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Store<T> {
        let names: Vec<String> = names.into_iter().map(str::to_string).collect();
        let slots = names
            .iter()
            .map(|s| RwLock::new(Arc::new(T::empty(s))))
            .collect();
        Store {
            names,
            slots,
            generation: AtomicU64::new(0),
        }
    }

    fn index(&self, key: &str) -> Option<usize> {
        self.names.iter().position(|s| s == key)
    }

    /// Replaces the snapshot of `snap.key()` (ignored for a target not configured).
    pub fn publish(&self, snap: T) {
        if let Some(i) = self.index(snap.key()) {
            let mut slot = self.slots[i].write().unwrap_or_else(|e| e.into_inner());
            *slot = Arc::new(snap);
            drop(slot);
            // After the swap: whoever sees the new generation also sees the new snapshot.
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// Changes whenever a snapshot is published.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current snapshot of `key`.
    pub fn get(&self, key: &str) -> Option<Arc<T>> {
        self.index(key).map(|i| read(&self.slots[i]))
    }

    /// The current snapshots of all targets, in config order.
    pub fn all(&self) -> Vec<Arc<T>> {
        self.slots.iter().map(read).collect()
    }

    /// The configured target names.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

fn read<T>(slot: &RwLock<Arc<T>>) -> Arc<T> {
    Arc::clone(&slot.read().unwrap_or_else(|e| e.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default)]
    struct S {
        name: String,
        polls: u64,
    }

    impl Snapshot for S {
        fn key(&self) -> &str {
            &self.name
        }
        fn empty(key: &str) -> S {
            S {
                name: key.into(),
                polls: 0,
            }
        }
    }

    #[test]
    fn publish_replaces_whole_snapshot() {
        let s: Store<S> = Store::new(["a", "b"]);
        assert_eq!(s.names(), ["a", "b"]);
        let before = s.get("a").unwrap();
        s.publish(S {
            name: "a".into(),
            polls: 1,
        });
        // A reader holding the old Arc keeps a consistent view.
        assert_eq!(before.polls, 0);
        assert_eq!(s.get("a").unwrap().polls, 1);
        assert_eq!(s.generation(), 1);
        assert_eq!(s.get("b").unwrap().polls, 0);
        s.publish(S::empty("zzz"));
        assert!(s.get("zzz").is_none());
        assert_eq!(s.generation(), 1, "an unknown target changes nothing");
        assert_eq!(s.all().len(), 2);
    }

    #[test]
    fn age_is_never_negative() {
        let now = SystemTime::now();
        assert_eq!(age(None, now), None);
        assert_eq!(
            age(Some(now - Duration::from_secs(3)), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            age(Some(now + Duration::from_secs(3)), now),
            Some(Duration::ZERO)
        );
    }
}
