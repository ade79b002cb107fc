//! Counters the engine keeps for metrics and tests. Cheap relaxed atomics; read with
//! [`EngineStats::snapshot`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct EngineStats {
    pub activations: AtomicU64,
    pub passivations: AtomicU64,
    pub actor_failures: AtomicU64,
    pub overloaded: AtomicU64,
    pub journal_batches: AtomicU64,
    pub journal_records: AtomicU64,
    pub journal_failed_batches: AtomicU64,
    pub journal_flush_micros: AtomicU64,
    /// Records handed to the journal and not yet answered: queued, or in a batch being
    /// written. A gauge: how many bookings are waiting on the store right now.
    pub journal_waiting: AtomicU64,
    /// When a journal batch last began with more than `JournalConfig::busy_above` records
    /// waiting, in ms since `started` plus one (0: never).
    journal_busy_at_ms: AtomicU64,
    started: Instant,
    pub snapshots_written: AtomicU64,
    pub snapshot_batches: AtomicU64,
    pub doctor_ticks: AtomicU64,
    pub journal_batch_sizes: Buckets<{ BATCH_SIZE_BOUNDS.len() }>,
    pub journal_flush_latency_us: Buckets<{ FLUSH_LATENCY_BOUNDS_US.len() }>,
}

/// Upper bounds of the journal batch size histogram, in records.
pub const BATCH_SIZE_BOUNDS: [u64; 12] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];
/// Upper bounds of the journal flush latency histogram, in microseconds.
pub const FLUSH_LATENCY_BOUNDS_US: [u64; 12] = [
    250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 512_000, 2_000_000,
];

/// A fixed-bucket histogram of relaxed atomics: one increment per observation, readable
/// at any time without stopping writers.
#[derive(Debug)]
pub(crate) struct Buckets<const N: usize> {
    bounds: &'static [u64; N],
    /// counts[i]: observations <= bounds[i] and > bounds[i - 1]; counts[N]: above all.
    counts: [AtomicU64; N],
    overflow: AtomicU64,
    sum: AtomicU64,
}

impl<const N: usize> Buckets<N> {
    pub const fn new(bounds: &'static [u64; N]) -> Self {
        Self {
            bounds,
            counts: [const { AtomicU64::new(0) }; N],
            overflow: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: u64) {
        match self.bounds.iter().position(|b| value <= *b) {
            Some(i) => self.counts[i].fetch_add(1, Relaxed),
            None => self.overflow.fetch_add(1, Relaxed),
        };
        self.sum.fetch_add(value, Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(b, c)| {
                cumulative += c.load(Relaxed);
                (*b, cumulative)
            })
            .collect();
        HistogramSnapshot {
            buckets,
            count: cumulative + self.overflow.load(Relaxed),
            sum: self.sum.load(Relaxed),
        }
    }
}

/// A histogram read from the engine: cumulative counts per upper bound, Prometheus-style.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// (upper bound, observations <= bound), bounds ascending.
    pub buckets: Vec<(u64, u64)>,
    /// All observations, including those above the last bound.
    pub count: u64,
    pub sum: u64,
}

impl Default for EngineStats {
    fn default() -> Self {
        Self {
            activations: AtomicU64::new(0),
            passivations: AtomicU64::new(0),
            actor_failures: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            journal_batches: AtomicU64::new(0),
            journal_records: AtomicU64::new(0),
            journal_failed_batches: AtomicU64::new(0),
            journal_flush_micros: AtomicU64::new(0),
            journal_waiting: AtomicU64::new(0),
            journal_busy_at_ms: AtomicU64::new(0),
            started: Instant::now(),
            snapshots_written: AtomicU64::new(0),
            snapshot_batches: AtomicU64::new(0),
            doctor_ticks: AtomicU64::new(0),
            journal_batch_sizes: Buckets::new(&BATCH_SIZE_BOUNDS),
            journal_flush_latency_us: Buckets::new(&FLUSH_LATENCY_BOUNDS_US),
        }
    }
}

/// A point-in-time copy of the engine's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// Records queued for the journal or being written, at the time of the snapshot.
    pub journal_waiting: u64,
    pub snapshots_written: u64,
    /// Store calls that wrote snapshots (each a batch of them).
    pub snapshot_batches: u64,
    /// Ticks sent to doctor actors (each a message; idle doctors get few).
    pub doctor_ticks: u64,
    /// Doctor actors currently active.
    pub active_actors: u64,
    /// Records per journal transaction.
    pub journal_batch_sizes: HistogramSnapshot,
    /// Time per journal transaction, in microseconds.
    pub journal_flush_latency_us: HistogramSnapshot,
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
            journal_waiting: self.journal_waiting.load(Relaxed),
            snapshots_written: self.snapshots_written.load(Relaxed),
            snapshot_batches: self.snapshot_batches.load(Relaxed),
            doctor_ticks: self.doctor_ticks.load(Relaxed),
            active_actors,
            journal_batch_sizes: self.journal_batch_sizes.snapshot(),
            journal_flush_latency_us: self.journal_flush_latency_us.snapshot(),
        }
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

impl EngineStats {
    /// Marks the journal busy now: bookings are queueing for the store.
    pub fn journal_busy(&self) {
        let now = self.started.elapsed().as_millis() as u64 + 1;
        self.journal_busy_at_ms.store(now, Relaxed);
    }

    /// Whether the journal was marked busy within the last `window`.
    pub fn journal_busy_within(&self, window: Duration) -> bool {
        let at = self.journal_busy_at_ms.load(Relaxed);
        at != 0 && self.started.elapsed().as_millis() as u64 + 1 < at + window.as_millis() as u64
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}
