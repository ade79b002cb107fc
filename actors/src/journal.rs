//! The journal writer: group commit. Doctor actors hand it decided events; it writes them
//! in batches, one store transaction per batch, and only then completes each caller's reply
//! (persist, then reply). It is a plain task with a bounded queue rather than an actor
//! because it drains many messages at once.
//!
//! Failure rule: if a batch fails, every caller in it gets a storage error, and every later
//! record of the same doctors from the same actor generation is refused too (it may have
//! been decided on top of a failed one). The actors are told and stop; they are reactivated
//! from the store, behind a fence.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::ActorRef;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::calendar::JournalRecord;
use crate::cluster::{Cluster, Fence};
use crate::doctor::msg::DoctorMsg;
use crate::error::{EngineError, StoreError};
use crate::model::DoctorId;
use crate::stats::EngineStats;
use crate::store::Store;

/// Called once with the batch's outcome; it sends the caller's reply.
pub(crate) type Completion = Box<dyn FnOnce(Result<(), EngineError>) + Send>;

/// One record to make durable, with where to report.
pub(crate) struct Entry {
    pub record: JournalRecord,
    /// The generation of the actor that decided it (see module docs).
    pub generation: u64,
    /// The lease it was decided under, in a cluster: checked in the write's transaction.
    pub fence: Option<Fence>,
    pub actor: ActorRef<DoctorMsg>,
    pub done: Completion,
}

// Appends are nearly every message; boxing them would cost an allocation per record.
#[allow(clippy::large_enum_variant)]
enum JournalMsg {
    Append(Entry),
    /// Runs `done` once every record of the doctor queued before it is durable (`Ok`), or
    /// with an error if one of them failed. Lets an answer that depends on undurable state
    /// wait for it.
    After {
        doctor_id: DoctorId,
        generation: u64,
        done: Completion,
    },
    /// Acknowledged once every record queued before it is durable or refused.
    Fence(oneshot::Sender<()>),
    /// Like a fence, then the writer exits.
    Shutdown(oneshot::Sender<()>),
}

/// A cloneable handle to the writers' bounded queues. Each doctor's records always go to
/// the same writer (by hash of its id), so per-doctor order and the failure rule hold
/// within one writer, while writers for different doctors commit concurrently.
#[derive(Clone)]
pub(crate) struct JournalHandle {
    writers: Arc<[mpsc::Sender<JournalMsg>]>,
    stats: Arc<EngineStats>,
}

/// A reserved place in the writer's queue: once held, appending cannot fail, so an actor
/// reserves first, then decides and applies, then appends.
pub(crate) struct JournalPermit<'a> {
    place: mpsc::Permit<'a, JournalMsg>,
    waiting: &'a AtomicU64,
}

impl JournalPermit<'_> {
    pub fn append(self, entry: Entry) {
        // Counted until the writer has answered it (see `EngineStats::journal_waiting`).
        self.waiting.fetch_add(1, Relaxed);
        self.place.send(JournalMsg::Append(entry));
    }
}

impl JournalHandle {
    fn writer(&self, doctor_id: DoctorId) -> &mpsc::Sender<JournalMsg> {
        &self.writers[crate::cluster::shard_index(doctor_id, self.writers.len())]
    }

    /// A place in the doctor's writer queue, or `Overloaded` when it is full.
    pub fn try_reserve(&self, doctor_id: DoctorId) -> Result<JournalPermit<'_>, EngineError> {
        match self.writer(doctor_id).try_reserve() {
            Ok(place) => Ok(JournalPermit {
                place,
                waiting: &self.stats.journal_waiting,
            }),
            Err(mpsc::error::TrySendError::Full(())) => Err(EngineError::Overloaded),
            Err(mpsc::error::TrySendError::Closed(())) => {
                Err(EngineError::Unavailable("journal writer stopped".into()))
            }
        }
    }

    /// Queues `done` behind the doctor's records (see `JournalMsg::After`); gives it back
    /// if the queue is full or closed.
    pub fn try_after(
        &self,
        doctor_id: DoctorId,
        generation: u64,
        done: Completion,
    ) -> Result<(), Completion> {
        self.writer(doctor_id)
            .try_send(JournalMsg::After {
                doctor_id,
                generation,
                done,
            })
            .map_err(|e| match e.into_inner() {
                JournalMsg::After { done, .. } => done,
                _ => unreachable!("only an After was sent"),
            })
    }

    /// Waits until every record of the doctor queued before this call is durable or
    /// refused.
    pub async fn fence(&self, doctor_id: DoctorId) -> Result<(), EngineError> {
        fence(self.writer(doctor_id)).await
    }

    /// Like [`Self::fence`], for every doctor.
    pub async fn fence_all(&self) -> Result<(), EngineError> {
        for w in self.writers.iter() {
            fence(w).await?;
        }
        Ok(())
    }

    /// Flushes everything queued and stops the writers.
    pub async fn shutdown(&self) {
        for w in self.writers.iter() {
            let (tx, rx) = oneshot::channel();
            if w.send(JournalMsg::Shutdown(tx)).await.is_ok() {
                let _ = rx.await;
            }
        }
    }
}

async fn fence(writer: &mpsc::Sender<JournalMsg>) -> Result<(), EngineError> {
    let (tx, rx) = oneshot::channel();
    writer
        .send(JournalMsg::Fence(tx))
        .await
        .map_err(|_| EngineError::Unavailable("journal writer stopped".into()))?;
    rx.await
        .map_err(|_| EngineError::Unavailable("journal writer stopped".into()))
}

/// Told of every durable batch, after its callers have their answers (wakes the session
/// worker and the notifier). Must not block.
pub(crate) type DurableHook = Arc<dyn Fn(&[JournalRecord]) + Send + Sync>;

pub(crate) struct JournalConfig {
    pub on_durable: Option<DurableHook>,
    pub writers: usize,
    pub max_batch: usize,
    pub flush_interval: Duration,
    pub queue_capacity: usize,
    /// Told when a batch is refused by a fence (another instance took a shard over).
    pub cluster: Option<Arc<Cluster>>,
    /// A batch that begins with more records than this waiting (its own and those queued
    /// behind it) marks the journal busy (`EngineStats::journal_busy`).
    pub busy_above: u64,
}

/// Starts the writer tasks; the queue capacity is shared out among them.
pub(crate) fn spawn(
    store: Arc<dyn Store>,
    config: JournalConfig,
    stats: Arc<EngineStats>,
) -> (JournalHandle, Vec<JoinHandle<()>>) {
    let writers = config.writers.max(1);
    let capacity = (config.queue_capacity / writers).max(1);
    let config = Arc::new(config);
    let mut senders = Vec::with_capacity(writers);
    let mut tasks = Vec::with_capacity(writers);
    for _ in 0..writers {
        let (tx, rx) = mpsc::channel(capacity);
        senders.push(tx);
        tasks.push(tokio::spawn(run(
            Arc::clone(&store),
            rx,
            Arc::clone(&config),
            Arc::clone(&stats),
        )));
    }
    (
        JournalHandle {
            writers: senders.into(),
            stats,
        },
        tasks,
    )
}

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<JournalMsg>,
    config: Arc<JournalConfig>,
    stats: Arc<EngineStats>,
) {
    let mut msgs = Vec::with_capacity(config.max_batch);
    // Doctor -> highest actor generation whose records must be refused.
    let mut poisoned: HashMap<DoctorId, u64> = HashMap::new();
    loop {
        if rx.recv_many(&mut msgs, config.max_batch).await == 0 {
            return;
        }
        if !config.flush_interval.is_zero() && msgs.len() < config.max_batch {
            let deadline = tokio::time::Instant::now() + config.flush_interval;
            while msgs.len() < config.max_batch {
                let room = config.max_batch - msgs.len();
                match tokio::time::timeout_at(deadline, rx.recv_many(&mut msgs, room)).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        if stats.journal_waiting.load(Relaxed) > config.busy_above {
            stats.journal_busy();
        }
        let mut batch = Batch::with_capacity(msgs.len());
        let mut fences = Vec::new();
        let mut stop = None;
        for msg in msgs.drain(..) {
            match msg {
                JournalMsg::Append(entry) => {
                    let doctor = entry.record.doctor_id;
                    match poisoned.get(&doctor) {
                        Some(&g) if entry.generation <= g => {
                            stats.journal_waiting.fetch_sub(1, Relaxed);
                            (entry.done)(Err(EngineError::Storage(
                                "an earlier write for this doctor failed".into(),
                            )))
                        }
                        Some(_) => {
                            poisoned.remove(&doctor);
                            batch.push(entry);
                        }
                        None => batch.push(entry),
                    }
                }
                JournalMsg::After {
                    doctor_id,
                    generation,
                    done,
                } => batch.after.push((doctor_id, generation, done)),
                JournalMsg::Fence(ack) => fences.push(ack),
                JournalMsg::Shutdown(ack) => stop = Some(ack),
            }
        }
        if !batch.records.is_empty() || !batch.after.is_empty() {
            batch
                .write(
                    store.as_ref(),
                    &stats,
                    &mut poisoned,
                    config.on_durable.as_ref(),
                    config.cluster.as_deref(),
                )
                .await;
        }
        for ack in fences {
            let _ = ack.send(());
        }
        if let Some(ack) = stop {
            let _ = ack.send(());
            return;
        }
    }
}

/// Records and their reply routes, kept apart so the store gets a plain slice.
#[derive(Default)]
struct Batch {
    records: Vec<JournalRecord>,
    routes: Vec<(u64, ActorRef<DoctorMsg>, Completion)>,
    /// Distinct fences of the records, checked in the batch's transaction.
    fences: Vec<Fence>,
    /// Answers waiting for their doctor's earlier records: doctor, generation, callback.
    after: Vec<(DoctorId, u64, Completion)>,
}

impl Batch {
    /// Room for `records` records, so that a large batch is not moved as it grows.
    fn with_capacity(records: usize) -> Self {
        Self {
            records: Vec::with_capacity(records),
            routes: Vec::with_capacity(records),
            ..Self::default()
        }
    }

    fn push(&mut self, e: Entry) {
        if let Some(f) = e.fence {
            if !self.fences.contains(&f) {
                self.fences.push(f);
            }
        }
        self.records.push(e.record);
        self.routes.push((e.generation, e.actor, e.done));
    }

    async fn write(
        mut self,
        store: &dyn Store,
        stats: &EngineStats,
        poisoned: &mut HashMap<DoctorId, u64>,
        on_durable: Option<&DurableHook>,
        cluster: Option<&Cluster>,
    ) {
        let result = if self.records.is_empty() {
            Ok(())
        } else {
            self.append(store, stats, poisoned).await
        };
        if let (Err(StoreError::Fenced { shard, epoch }), Some(c)) = (&result, cluster) {
            c.fenced(*shard, *epoch);
        }
        if let (Ok(()), Some(hook)) = (&result, on_durable) {
            if !self.records.is_empty() {
                hook(&self.records);
            }
        }
        // Waiters: their doctor's earlier records are settled now, in this batch or before.
        for (doctor, generation, done) in self.after {
            let failed = poisoned.get(&doctor).is_some_and(|&g| generation <= g);
            done(if failed {
                Err(EngineError::Storage(match &result {
                    Err(e) => e.to_string(),
                    Ok(()) => "an earlier write for this doctor failed".into(),
                }))
            } else {
                Ok(())
            });
        }
    }

    /// Writes the records and answers their callers; returns the store's verdict.
    async fn append(
        &mut self,
        store: &dyn Store,
        stats: &EngineStats,
        poisoned: &mut HashMap<DoctorId, u64>,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = store.append_fenced(&self.records, &self.fences).await;
        // Answered below, whatever the outcome.
        stats
            .journal_waiting
            .fetch_sub(self.records.len() as u64, Relaxed);
        let micros = started.elapsed().as_micros() as u64;
        stats.journal_flush_micros.fetch_add(micros, Relaxed);
        stats.journal_flush_latency_us.observe(micros);
        stats.journal_batch_sizes.observe(self.records.len() as u64);
        EngineStats::bump(&stats.journal_batches);
        // Per doctor: the actor to tell, its generation, and the highest seq in this batch.
        let mut touched: HashMap<DoctorId, (ActorRef<DoctorMsg>, u64, u64)> = HashMap::new();
        for (record, (generation, actor, _)) in self.records.iter().zip(&self.routes) {
            let t = touched
                .entry(record.doctor_id)
                .or_insert_with(|| (actor.clone(), *generation, 0));
            t.1 = t.1.max(*generation);
            t.2 = t.2.max(record.seq);
        }
        match &result {
            Ok(()) => {
                stats
                    .journal_records
                    .fetch_add(self.records.len() as u64, Relaxed);
                // Actors hear first, so a caller reacting to its reply finds them up to date.
                for (_, (actor, generation, seq)) in touched {
                    let _ = actor.cast(DoctorMsg::Durable { generation, seq });
                }
                for (_, _, done) in self.routes.drain(..) {
                    done(Ok(()));
                }
            }
            Err(e) => {
                EngineStats::bump(&stats.journal_failed_batches);
                tracing::error!(
                    error = %e,
                    records = self.records.len(),
                    "journal batch failed; its callers get a storage error"
                );
                // The failed actors must stop before any caller can retry against them:
                // their memory holds the failed decisions.
                for (doctor, (actor, generation, _)) in touched {
                    poisoned.insert(doctor, generation);
                    let _ = actor.cast(DoctorMsg::JournalFailed { generation });
                }
                for (_, _, done) in self.routes.drain(..) {
                    done(Err(EngineError::from(e.clone())));
                }
            }
        }
        result
    }
}
