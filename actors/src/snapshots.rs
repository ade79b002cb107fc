//! Snapshot writes in batches. A doctor's snapshot only speeds up its next activation, so
//! it is written in the background, and many of them share one store call: each writer
//! task takes whatever has queued up while its previous batch was in flight (up to
//! [`SNAPSHOT_BATCH_MAX`]), so 100,000 dirty doctors cost a few hundred transactions
//! instead of 100,000, and the journal keeps its connections. A doctor always goes to the
//! same writer, so its snapshots are written in the order they were taken.
//!
//! Encoded snapshots wait in a bounded queue: a doctor takes a place before it encodes its
//! state and gives it back when its write is done. When the queue is full a periodic
//! snapshot simply waits for a later tick, so a snapshot round of every doctor at once
//! never holds every doctor's encoded state in memory at once.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::batch::Batcher;
use crate::error::StoreError;
use crate::stats::EngineStats;
use crate::store::{SnapshotWrite, Store};

/// Most snapshots in one store call.
pub(crate) const SNAPSHOT_BATCH_MAX: usize = 256;

/// Encoded snapshots that may wait for (or be in) a write, per writer.
const QUEUED_PER_WRITER: usize = 2 * SNAPSHOT_BATCH_MAX;

pub(crate) struct SnapshotWriter {
    writers: Vec<Batcher<SnapshotWrite, bool>>,
    queue: Arc<Semaphore>,
}

impl SnapshotWriter {
    /// Starts `writers` writing tasks (at least one) on `store`.
    pub fn start(store: &Arc<dyn Store>, writers: usize, stats: &Arc<EngineStats>) -> Self {
        let writers: Vec<_> = (0..writers.max(1))
            .map(|_| {
                let store = Arc::clone(store);
                let stats = Arc::clone(stats);
                Batcher::start(SNAPSHOT_BATCH_MAX, move |batch: Vec<SnapshotWrite>| {
                    let store = Arc::clone(&store);
                    let stats = Arc::clone(&stats);
                    async move {
                        let written = store.save_snapshots(&batch).await;
                        EngineStats::bump(&stats.snapshot_batches);
                        written
                    }
                })
            })
            .collect();
        let queue = Arc::new(Semaphore::new(writers.len() * QUEUED_PER_WRITER));
        Self { writers, queue }
    }

    /// A place in the queue for one encoded snapshot, if one is free now.
    pub fn try_reserve(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.queue).try_acquire_owned().ok()
    }

    /// A place in the queue, once one is free.
    pub async fn reserve(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.queue)
            .acquire_owned()
            .await
            .expect("the snapshot queue is never closed")
    }

    /// Writes `snapshot` with the next batch of its doctor's writer: `Ok(true)` written,
    /// `Ok(false)` refused because its fence no longer holds.
    pub async fn write(&self, snapshot: SnapshotWrite) -> Result<bool, StoreError> {
        let index = snapshot.doctor_id.unsigned_abs() as usize % self.writers.len();
        self.writers[index].run(snapshot).await
    }
}
