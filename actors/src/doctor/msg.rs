//! The messages a doctor actor handles, and what they answer.

use chrono::{DateTime, NaiveDate, Utc};
use ractor::RpcReplyPort;
use tokio::sync::watch;

use crate::calendar::{ActedBy, Availability, BookedSlot, Hold, JournalRecord, SlotState};
use crate::cluster::Fence;
use crate::error::EngineError;
use crate::model::{
    BookingMember, BookingRequest, Consultation, ConsultationId, DoctorProfile, IdempotencyClaim,
    PatientId, Requester, ScheduleUpdate, StatusUpdate,
};

/// Reply of a successful slot check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotCheck {
    /// Set when a hold was placed: the slot is reserved for the asker until then.
    pub held_until: Option<DateTime<Utc>>,
}

/// What a doctor actor shows of itself; for tests and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoctorSnapshot {
    pub profile: DoctorProfile,
    /// Last journal sequence number decided.
    pub seq: u64,
    /// Last journal sequence number known durable.
    pub durable_seq: u64,
    /// Last journal sequence number covered by a stored snapshot (0: none known).
    pub snapshot_seq: u64,
    /// Incarnation of the actor; a new activation always has a higher one.
    pub generation: u64,
    pub active: Vec<BookedSlot>,
    pub live_holds: Vec<Hold>,
}

pub(crate) type Reply<T> = RpcReplyPort<Result<T, EngineError>>;

/// The messages a doctor actor handles.
pub enum DoctorMsg {
    Availability {
        from: NaiveDate,
        days: u16,
        reply: Reply<Availability>,
    },
    CheckSlot {
        patient_id: PatientId,
        at: DateTime<Utc>,
        hold: bool,
        reply: Reply<SlotCheck>,
    },
    ReleaseHold {
        patient_id: PatientId,
        reply: Reply<bool>,
    },
    Book {
        request: BookingRequest,
        /// Stored with the booking, in its journal record's transaction.
        idempotency: Option<IdempotencyClaim>,
        reply: Reply<Consultation>,
    },
    /// Replies with the cancellation time.
    Cancel {
        consultation_id: ConsultationId,
        by: Requester,
        reply: Reply<DateTime<Utc>>,
    },
    /// Moves a consultation to `to` in one journal record; replies with its former start.
    Reschedule {
        consultation_id: ConsultationId,
        by: Requester,
        to: DateTime<Utc>,
        /// Stored with the move, in its journal record's transaction.
        idempotency: Option<IdempotencyClaim>,
        reply: Reply<DateTime<Utc>>,
    },
    UpdateSchedule {
        update: ScheduleUpdate,
        reply: Reply<DoctorProfile>,
    },
    SetStatus {
        update: StatusUpdate,
        /// Who asked; recorded in the journal event.
        by: ActedBy,
        reply: Reply<DoctorProfile>,
    },
    Profile {
        reply: Reply<DoctorProfile>,
    },
    /// What the slot at `at` is now (for its history); answered once durable.
    SlotState {
        at: DateTime<Utc>,
        reply: Reply<SlotState>,
    },
    /// The observable state; does not count as activity.
    Observe {
        reply: Reply<DoctorSnapshot>,
    },
    /// From the journal writer: records up to `seq` of `generation` are durable.
    Durable {
        generation: u64,
        seq: u64,
    },
    /// From the journal writer: a batch with records of `generation` failed.
    JournalFailed {
        generation: u64,
    },
    /// From the shard: expire holds, maybe passivate, maybe snapshot.
    Tick {
        snapshot_due: bool,
    },
    /// From the background snapshot write: whether the snapshot of `seq` was stored.
    SnapshotWritten {
        seq: u64,
        ok: bool,
    },
    /// From the shard at shutdown: the snapshot to write, if the state is dirty.
    FinalSnapshot {
        reply: RpcReplyPort<Option<(u64, Vec<u8>)>>,
    },
    /// Phase one of a multi-patient booking: decide these items of this doctor and answer
    /// their records, then decide nothing else until the coordinator's verdict (see
    /// [`Self::Prepare`]'s handler, `DoctorActor::prepare`).
    Prepare {
        items: Vec<PrepareItem>,
        verdict: watch::Receiver<Option<Verdict>>,
        reply: Reply<(Vec<JournalRecord>, Option<Fence>)>,
    },
    /// Fault injection for tests: the handler panics.
    #[cfg(feature = "fault-injection")]
    Crash,
}

/// One item of a multi-patient booking, sent to the doctor it names.
#[derive(Debug, Clone)]
pub(crate) struct PrepareItem {
    /// Its place in the booking (0-based), for the caller's error.
    pub index: usize,
    pub request: BookingRequest,
    /// Allocated by the coordinator, in item order.
    pub id: ConsultationId,
    pub member: BookingMember,
}

/// What became of a prepared multi-patient booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Its one transaction committed: apply the records.
    Committed,
    /// Nothing was written (another doctor refused, or the time ran out before writing).
    Aborted,
    /// The transaction failed or its outcome is unknown: reload from the store.
    Unknown,
}

impl DoctorMsg {
    /// Whether the message is someone using the doctor (it keeps the actor from being
    /// passivated); internal and diagnostic messages are not.
    pub(crate) fn is_request(&self) -> bool {
        matches!(
            self,
            Self::Availability { .. }
                | Self::CheckSlot { .. }
                | Self::ReleaseHold { .. }
                | Self::Book { .. }
                | Self::Cancel { .. }
                | Self::Reschedule { .. }
                | Self::UpdateSchedule { .. }
                | Self::SetStatus { .. }
                | Self::Profile { .. }
                | Self::Prepare { .. }
                | Self::SlotState { .. }
        )
    }
}
