//! The last stage: hashes and counts the object bytes and fans them out to every
//! destination's writer thread ([`crate::engine::fanout`]).

use std::io;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::destination::DestinationError;
use crate::engine::fanout::{Chunk as SharedChunk, Feed};

/// One destination inside the tee.
pub(super) struct Slot {
    pub(super) destination: String,
    /// Its writer thread, while it is still in the run.
    pub(super) feed: Option<Feed>,
    pub(super) error: Option<DestinationError>,
    /// When this destination was done (committed or failed), from the run's start.
    pub(super) done: Option<Duration>,
}

impl Slot {
    /// Waits for this destination's writer thread after [`Feed::close`] and records how it
    /// went.
    pub(super) fn wait(&mut self, started: Instant) {
        if let Some(feed) = self.feed.take() {
            let f = feed.wait(started);
            if let Err(e) = f.result {
                if self.error.is_none() {
                    self.error = Some(e);
                }
            }
            self.done = Some(f.done);
        }
    }
}

/// Hashes, counts and fans the object bytes out to every live destination's thread.
pub(super) struct Tee {
    pub(super) slots: Vec<Slot>,
    pub(super) hasher: Sha256,
    pub(super) size: u64,
    pub(super) started: Instant,
}

impl Tee {
    pub(super) fn live(&self) -> usize {
        self.slots.iter().filter(|s| s.feed.is_some()).count()
    }

    /// Aborts every live writer and waits for the aborts (nothing partial stays behind).
    pub(super) fn abort_all(&mut self) {
        self.close_all(false);
    }

    /// Closes every live writer first, then waits for each: they commit (or abort) in
    /// parallel, each in its own thread, so a slow or stalled destination does not hold
    /// another's commit.
    pub(super) fn close_all(&mut self, commit: bool) {
        for slot in &self.slots {
            if let Some(feed) = &slot.feed {
                feed.close(commit);
            }
        }
        for slot in &mut self.slots {
            slot.wait(self.started);
        }
    }

    /// Commits every live writer (see [`Tee::close_all`]).
    pub(super) fn commit_all(&mut self) {
        self.close_all(true);
    }

    /// Hashes `chunk` and queues it for every live destination; a destination that failed or
    /// stalled is finished (and reported) at once. Fails when none is left.
    pub(super) fn send(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        self.hasher.update(&chunk);
        self.size += chunk.len() as u64;
        let shared: SharedChunk = std::sync::Arc::new(chunk);
        for slot in &mut self.slots {
            let Some(feed) = slot.feed.as_ref() else {
                continue;
            };
            if !feed.send(shared.clone()) {
                feed.close(false);
                slot.wait(self.started);
            }
        }
        if self.live() == 0 {
            return Err(io::Error::other("every destination failed"));
        }
        Ok(())
    }
}
