//! Counters the engine keeps for metrics and tests. Cheap relaxed atomics; read with
//! [`EngineStats::snapshot`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub(crate) struct EngineStats {
    pub activations: AtomicU64,
    pub passivations: AtomicU64,
    pub actor_failures: AtomicU64,
    pub overloaded: AtomicU64,
    pub journal_batches: AtomicU64,
    pub journal_records: AtomicU64,
    pub journal_failed_batches: AtomicU64,
    pub journal_flush_micros: AtomicU64,
    pub snapshots_written: AtomicU64,
}

/// A point-in-time copy of the engine's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Doctor actors started from the store.
    pub activations: u64,
    /// Doctor actors stopped after being idle.
    pub passivations: u64,
    /// Doctor actors that panicked or failed.
    pub actor_failures: u64,
    /// Calls refused by admission control.
    pub overloaded: u64,
    /// Journal transactions committed or attempted.
    pub journal_batches: u64,
    /// Journal records committed.
    pub journal_records: u64,
    pub journal_failed_batches: u64,
    /// Total time spent in journal transactions.
    pub journal_flush_micros: u64,
    pub snapshots_written: u64,
    /// Doctor actors currently active.
    pub active_actors: u64,
}

impl EngineStats {
    pub fn snapshot(&self, active_actors: u64) -> StatsSnapshot {
        StatsSnapshot {
            activations: self.activations.load(Relaxed),
            passivations: self.passivations.load(Relaxed),
            actor_failures: self.actor_failures.load(Relaxed),
            overloaded: self.overloaded.load(Relaxed),
            journal_batches: self.journal_batches.load(Relaxed),
            journal_records: self.journal_records.load(Relaxed),
            journal_failed_batches: self.journal_failed_batches.load(Relaxed),
            journal_flush_micros: self.journal_flush_micros.load(Relaxed),
            snapshots_written: self.snapshots_written.load(Relaxed),
            active_actors,
        }
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

impl EngineStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}
