//! The engine's storage port. The persistence crate implements it for SQLite and Postgres;
//! tests wrap it to inject failures. The engine is the only writer of journal rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::calendar::{DoctorEvent, JournalRecord};
use crate::cluster::{ClusterStore, Fence};
use crate::error::StoreError;
use crate::model::{
    Consultation, ConsultationId, DoctorId, DoctorProfile, NewDoctor, PatientId, StoredIdempotency,
};
use crate::outbox::{
    InboxQuery, JoinSide, Notification, Recipient, SessionOutcome, SessionRecord, SessionTask,
    WebhookUpdate,
};

/// A stored snapshot blob and the last journal sequence number it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    pub seq: u64,
    pub blob: Vec<u8>,
}

/// A snapshot to store: the doctor's state covering its journal up to `seq`, written only
/// while `fence` holds (in a cluster; `None` alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotWrite {
    pub doctor_id: DoctorId,
    pub seq: u64,
    pub blob: Vec<u8>,
    pub fence: Option<Fence>,
}

/// What activation needs: the latest snapshot, if any, and every journal event after it,
/// in sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoctorHistory {
    pub snapshot: Option<StoredSnapshot>,
    pub events: Vec<(u64, DoctorEvent)>,
}

/// One journal row as read back: its sequence number, when it was recorded, and its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub seq: u64,
    pub recorded_at: DateTime<Utc>,
    pub event: DoctorEvent,
}

/// Durable storage for the engine.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Allocates the doctor's id and, in one transaction, writes the doctors row and journal
    /// event seq 1 (`Registered` with the full profile). Returns the profile with its id.
    async fn create_doctor(
        &self,
        doctor: &NewDoctor,
        now: DateTime<Utc>,
    ) -> Result<DoctorProfile, StoreError>;

    /// The latest snapshot and the journal events after it; `None` for an unknown doctor.
    async fn load_doctor(&self, id: DoctorId) -> Result<Option<DoctorHistory>, StoreError>;

    /// Makes a batch durable in ONE transaction: the journal rows, and the projections
    /// (`Booked` inserts a consultations row with its medical text; `Cancelled` sets status
    /// `cancelled` and `cancelled_at`; `Rescheduled` moves `scheduled_at` and nothing else,
    /// so the session row stays; `ScheduleUpdated` / `StatusChanged` update the doctors
    /// row), and the outboxes: a `Booked` in-app consultation gets its pending session row
    /// (due at once), and every `Booked` / `Cancelled` / `Rescheduled` gets a
    /// `consultation_scheduled` / `consultation_cancelled` / `consultation_rescheduled`
    /// notification for its patient and its doctor (webhook due at once, when queued: see
    /// [`Store::queue_webhooks`]). Events of one
    /// doctor are applied in an order that never puts two active consultations on one start
    /// (see `consult_persistence`'s batch planner). A record's `idempotency` claim becomes
    /// an `idempotency_keys` row; a `(patient, key)` already stored (expired or not) or twice
    /// in the batch refuses the whole batch with `Constraint`. All or nothing: on error
    /// nothing of the batch is stored.
    async fn append(&self, batch: &[JournalRecord]) -> Result<(), StoreError>;

    /// [`Store::append`], in a transaction that first checks every fence: each shard's
    /// lease must still carry the fence's epoch (the lease rows are read `FOR SHARE`, so a
    /// takeover waits for this commit or this commit sees the takeover). A fence that no
    /// longer holds refuses the whole batch with [`StoreError::Fenced`], nothing written.
    /// Stores without a cluster (see [`Store::cluster`]) have no leases: the default
    /// ignores the fences.
    async fn append_fenced(
        &self,
        batch: &[JournalRecord],
        fences: &[Fence],
    ) -> Result<(), StoreError> {
        let _ = fences;
        self.append(batch).await
    }

    /// The doctor's latest `limit` journal rows, newest first (none for an unknown doctor).
    /// A bounded backwards read of the journal's primary key, for diagnostics such as a
    /// slot's history; never on the booking path.
    async fn doctor_journal(
        &self,
        doctor_id: DoctorId,
        limit: u32,
    ) -> Result<Vec<JournalEntry>, StoreError>;

    /// Stores (replaces) the doctor's snapshot covering the journal up to `seq`.
    async fn save_snapshot(
        &self,
        doctor_id: DoctorId,
        seq: u64,
        blob: &[u8],
    ) -> Result<(), StoreError>;

    /// [`Store::save_snapshot`] only while `fence` holds (see [`Store::append_fenced`]).
    async fn save_snapshot_fenced(
        &self,
        doctor_id: DoctorId,
        seq: u64,
        blob: &[u8],
        fence: Option<Fence>,
    ) -> Result<(), StoreError> {
        let _ = fence;
        self.save_snapshot(doctor_id, seq, blob).await
    }

    /// Stores several snapshots (of distinct doctors) at once, each only while its fence
    /// holds; answers, per snapshot in order, whether it was written (`false`: its fence no
    /// longer holds). The stores write them in one transaction; this default, one by one.
    async fn save_snapshots(&self, snapshots: &[SnapshotWrite]) -> Result<Vec<bool>, StoreError> {
        let mut written = Vec::with_capacity(snapshots.len());
        for s in snapshots {
            match self
                .save_snapshot_fenced(s.doctor_id, s.seq, &s.blob, s.fence)
                .await
            {
                Ok(()) => written.push(true),
                Err(StoreError::Fenced { .. }) => written.push(false),
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    /// Deletes every snapshot; returns how many there were. Snapshots only speed up
    /// activation, so this loses nothing.
    async fn delete_snapshots(&self) -> Result<u64, StoreError>;

    /// The highest consultation id stored, or 0.
    async fn max_consultation_id(&self) -> Result<ConsultationId, StoreError>;

    /// Every doctor, by id.
    async fn list_doctors(&self) -> Result<Vec<DoctorProfile>, StoreError>;

    async fn get_consultation(
        &self,
        id: ConsultationId,
    ) -> Result<Option<Consultation>, StoreError>;

    /// The consultations of multi-patient booking `booking_id`, by id (which is item
    /// order), at most [`crate::model::MAX_BOOKING_ITEMS`]; empty for an unknown booking.
    async fn booking_consultations(&self, booking_id: i64)
        -> Result<Vec<Consultation>, StoreError>;

    /// A patient's consultations, newest `scheduled_at` first, at most `limit`.
    async fn patient_consultations(
        &self,
        patient_id: PatientId,
        limit: u32,
    ) -> Result<Vec<Consultation>, StoreError>;

    /// A doctor's consultations with `from <= scheduled_at < to`, oldest first, at most `limit`.
    async fn doctor_consultations(
        &self,
        doctor_id: DoctorId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Consultation>, StoreError>;

    /// Every `pending` / `scheduled` consultation (of one doctor, or of all), ordered by
    /// doctor then start. For invariant checks and operations, not the booking path.
    async fn active_consultations(
        &self,
        doctor_id: Option<DoctorId>,
    ) -> Result<Vec<Consultation>, StoreError>;

    /// Pending sessions due at `now` (`next_attempt_at <= now`), earliest first, at most
    /// `limit`, with the consultation facts the worker needs.
    ///
    /// A store several instances share (see [`Store::cluster`]) claims what it returns, so
    /// that each session is worked on by one instance: rows another transaction holds are
    /// skipped, and the rows returned get `next_attempt_at := now + claim period` (longer
    /// than an attempt takes) and are marked as this store's, so other instances skip
    /// them until the claim runs out (the work of an instance that died comes back then).
    /// A single-instance store (SQLite, memory) needs no claim and changes nothing.
    async fn due_sessions(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<SessionTask>, StoreError>;

    /// The pending sessions of these consultations as tasks (whatever their due time), in
    /// no particular order; a consultation with no pending session has none. One statement
    /// for the whole batch (the session worker claims its sessions in batches).
    ///
    /// A shared store claims them as [`Store::due_sessions`] does, and leaves out those
    /// another instance's claim holds (that instance is at it): a caller goes on only with
    /// sessions it has claimed. Its own claims (from `due_sessions` or an earlier call) do
    /// not stop it.
    async fn pending_sessions(
        &self,
        consultation_ids: &[ConsultationId],
    ) -> Result<Vec<SessionTask>, StoreError>;

    /// [`Store::pending_sessions`] of one consultation.
    async fn pending_session(
        &self,
        consultation_id: ConsultationId,
    ) -> Result<Option<SessionTask>, StoreError> {
        Ok(self.pending_sessions(&[consultation_id]).await?.pop())
    }

    /// The session row of a consultation, if it has one.
    async fn session(
        &self,
        consultation_id: ConsultationId,
    ) -> Result<Option<SessionRecord>, StoreError>;

    /// Records a failed attempt of a pending session and when to try again (which also
    /// ends the claim period early). Does nothing to a session that is no longer pending,
    /// nor, in a shared store, to one another instance has claimed since.
    async fn retry_session(
        &self,
        consultation_id: ConsultationId,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError>;

    /// Settles pending sessions, all in one transaction: each session row (a consultation's
    /// `session_status` is read from it) and, for ready / failed, a `session_ready` /
    /// `session_failed` notification for patient and doctor. Answers, per outcome in
    /// order, `false` (changing nothing for it) when the session was not pending (settled
    /// before): one outcome per consultation.
    async fn settle_sessions(
        &self,
        outcomes: &[SessionOutcome],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError>;

    /// [`Store::settle_sessions`] of one outcome.
    async fn settle_session(
        &self,
        outcome: &SessionOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let settled = self
            .settle_sessions(std::slice::from_ref(outcome), now)
            .await?;
        Ok(settled.first().copied().unwrap_or(false))
    }

    /// Keeps one side's sealed join token of a ready session (replacing the one kept
    /// before). Does nothing to a session that is not ready.
    async fn save_join(
        &self,
        consultation_id: ConsultationId,
        side: JoinSide,
        sealed: &[u8],
    ) -> Result<(), StoreError>;

    /// A page of someone's notifications, newest first.
    async fn notifications(&self, query: &InboxQuery) -> Result<Vec<Notification>, StoreError>;

    /// Marks the recipient's notifications with these ids read (others' ids are ignored);
    /// returns how many changed.
    async fn mark_notifications_read(
        &self,
        recipient: Recipient,
        ids: &[i64],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Whether notifications written from now on are queued for webhook delivery; `true`
    /// until told otherwise. The engine says `false` when no webhook receiver is
    /// configured: its notifications are then kept for the inbox only (no webhook state to
    /// index), and a receiver configured later is sent only what is written after it.
    /// Clones of a store share the setting.
    fn queue_webhooks(&self, queued: bool);

    /// Notifications whose webhook is due at `now`, oldest first, at most `limit`.
    ///
    /// A shared store claims what it returns (see [`Store::due_sessions`]): rows another
    /// transaction holds are skipped and the returned ones are due again only at
    /// `now + claim period`, unless [`Store::update_webhook`] records an outcome first.
    async fn due_webhooks(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError>;

    /// Records the outcome of a webhook delivery of notification `id`.
    async fn update_webhook(&self, id: i64, update: WebhookUpdate) -> Result<(), StoreError>;

    /// The stored idempotency key `key` of `patient_id`, expired or not (the caller
    /// decides; see [`Store::forget_expired_idempotency`]). Keys are written by `append`,
    /// with the record they answer (`JournalRecord::idempotency`).
    async fn find_idempotency(
        &self,
        patient_id: PatientId,
        key: &str,
    ) -> Result<Option<StoredIdempotency>, StoreError>;

    /// A page of the idempotency keys not expired at `now`, in `(patient, key)` order after
    /// `after` (exclusive), at most `limit`: the engine reads them once at start, so that
    /// a key it does not know needs no look-up in the store.
    async fn unexpired_idempotency_keys(
        &self,
        now: DateTime<Utc>,
        after: (PatientId, &str),
        limit: u32,
    ) -> Result<Vec<(PatientId, String, DateTime<Utc>)>, StoreError>;

    /// Deletes the key if it expired at or before `now`, so the patient may use it again
    /// (its unique index would refuse the new booking otherwise); answers whether it did.
    async fn forget_expired_idempotency(
        &self,
        patient_id: PatientId,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Deletes at most `limit` keys that expired at or before `now`, in one statement;
    /// returns how many. Callers repeat while it returns `limit`.
    async fn purge_idempotency(&self, now: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;

    /// Cheap reachability check for readiness probes.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Closes the store's connections once nothing will use it again (SQLite checkpoints
    /// its WAL). Later calls fail. The default does nothing.
    async fn close(&self) {}

    /// How many `append` transactions this store runs well at once. The engine runs that
    /// many journal writers (each owning a fixed subset of doctors) unless its settings say
    /// otherwise. SQLite has one writer; Postgres also says 1, as measured: one writer's
    /// batches grow while its transaction commits, and larger batches cost Postgres less
    /// per booking than more transactions at once (BENCHMARKS.md, "One journal writer on
    /// Postgres").
    fn preferred_append_concurrency(&self) -> usize {
        1
    }

    /// The membership and lease tables, when this store can be shared by several engine
    /// instances (Postgres). `None` (the default): one instance owns every doctor.
    fn cluster(&self) -> Option<std::sync::Arc<dyn ClusterStore>> {
        None
    }
}
