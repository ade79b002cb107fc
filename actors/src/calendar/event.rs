//! The journal's events: the facts a doctor actor decides and the store records. Events
//! carry scheduling facts only, never medical text (that goes to the consultations table).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::schedule::{BookingPolicy, DateOverrides, WeeklySchedule};
use crate::error::StoreError;
use crate::model::{
    reference_for, BookingMember, ConsultMode, Consultation, ConsultationId, ConsultationStatus,
    DoctorId, DoctorProfile, IdempotencyClaim, MedicalInfo, PatientId, Requester, SessionStatus,
};

/// An active consultation as the calendar holds it: what the conflict check needs. Its
/// reference is not held (it is [`reference_for`] its id, see [`BookedSlot::reference`]),
/// which keeps a doctor's calendar a heap allocation per booking smaller; the journal and
/// snapshots still carry it, in the same place as before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "BookedSlotRecord", into = "BookedSlotRecord")]
pub struct BookedSlot {
    pub id: ConsultationId,
    pub patient_id: PatientId,
    pub start: DateTime<Utc>,
    pub duration_minutes: u16,
    pub status: ConsultationStatus,
    pub mode: ConsultMode,
    pub created_at: DateTime<Utc>,
}

impl BookedSlot {
    pub fn end(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::minutes(i64::from(self.duration_minutes))
    }

    /// The consultation's reference (`CONS-` + 6 characters).
    pub fn reference(&self) -> String {
        reference_for(self.id)
    }
}

/// [`BookedSlot`] as journaled and snapshotted: the same fields in the same order, the
/// reference included (snapshots are positional).
#[derive(Serialize, Deserialize)]
struct BookedSlotRecord {
    id: ConsultationId,
    /// Always [`reference_for`] the id: every reference ever stored was made by it, so
    /// reading drops it.
    reference: String,
    patient_id: PatientId,
    start: DateTime<Utc>,
    duration_minutes: u16,
    status: ConsultationStatus,
    mode: ConsultMode,
    created_at: DateTime<Utc>,
}

impl From<BookedSlotRecord> for BookedSlot {
    fn from(r: BookedSlotRecord) -> Self {
        Self {
            id: r.id,
            patient_id: r.patient_id,
            start: r.start,
            duration_minutes: r.duration_minutes,
            status: r.status,
            mode: r.mode,
            created_at: r.created_at,
        }
    }
}

impl From<BookedSlot> for BookedSlotRecord {
    fn from(s: BookedSlot) -> Self {
        Self {
            id: s.id,
            reference: s.reference(),
            patient_id: s.patient_id,
            start: s.start,
            duration_minutes: s.duration_minutes,
            status: s.status,
            mode: s.mode,
            created_at: s.created_at,
        }
    }
}

/// One fact in a doctor's journal. Sequence numbers start at 1 (`Registered`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DoctorEvent {
    /// The doctor was created by an admin; always seq 1.
    Registered { profile: DoctorProfile },
    /// A consultation was booked and now holds its slot.
    Booked { slot: BookedSlot },
    /// A consultation was cancelled and its slot is free again.
    Cancelled {
        consultation_id: ConsultationId,
        at: DateTime<Utc>,
        /// Who cancelled; `None` in rows written before the journal kept it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<ActedBy>,
    },
    /// A consultation moved to another start of the same doctor: one fact, so the new slot
    /// is taken and the old one freed together (a crash can never leave both or neither).
    /// It keeps its id, reference, mode, duration and session.
    Rescheduled {
        consultation_id: ConsultationId,
        /// The start it left; replay finds the consultation by id, this is for readers of
        /// the journal (and the live feed).
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The doctor changed timezone, slot length, weekly windows, overrides or policy. It
    /// carries the whole result, so replay needs no earlier state.
    ScheduleUpdated {
        timezone: Tz,
        slot_minutes: u16,
        schedule: WeeklySchedule,
        /// Absent in events written before overrides existed (there were none then).
        #[serde(default)]
        date_overrides: DateOverrides,
        #[serde(default)]
        policy: BookingPolicy,
    },
    /// The doctor's availability switch or the admin's approval changed.
    StatusChanged {
        is_available: bool,
        is_approved: bool,
        /// Who changed it; `None` in rows written before the journal kept it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<ActedBy>,
    },
}

/// Who decided a journal event, as far as the journal records it. Kept on the events whose
/// author is not implied by their kind (a booking or a move is always its patient's, a
/// schedule change always the doctor's); absent fields decode as `None`, so rows written
/// before keep decoding unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActedBy {
    Patient,
    Doctor,
    Admin,
    /// The engine itself (no person asked).
    System,
}

impl ActedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Patient => "patient",
            Self::Doctor => "doctor",
            Self::Admin => "admin",
            Self::System => "system",
        }
    }
}

impl From<Requester> for ActedBy {
    fn from(r: Requester) -> Self {
        match r {
            Requester::Patient(_) => Self::Patient,
            Requester::Doctor(_) => Self::Doctor,
            Requester::Admin => Self::Admin,
        }
    }
}

/// Version of the journal payload encoding (JSON of [`DoctorEvent`], tagged by `type`).
/// Adding an event type is additive (every payload written before still decodes the same
/// way), so it keeps the version, and so is an optional field that decodes as absent when
/// missing (`by`); changing the shape of an existing one bumps it.
pub const EVENT_FORMAT_VERSION: u8 = 1;

impl DoctorEvent {
    /// Short name stored in the journal's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Registered { .. } => "registered",
            Self::Booked { .. } => "booked",
            Self::Cancelled { .. } => "cancelled",
            Self::Rescheduled { .. } => "rescheduled",
            Self::ScheduleUpdated { .. } => "schedule_updated",
            Self::StatusChanged { .. } => "status_changed",
        }
    }

    /// Applies a schedule or status change to `profile`; other events leave it as it is.
    pub fn apply_to_profile(&self, profile: &mut DoctorProfile) {
        match self {
            Self::ScheduleUpdated {
                timezone,
                slot_minutes,
                schedule,
                date_overrides,
                policy,
            } => {
                profile.timezone = *timezone;
                profile.slot_minutes = *slot_minutes;
                profile.schedule = *schedule;
                profile.date_overrides = date_overrides.clone();
                profile.policy = *policy;
            }
            Self::StatusChanged {
                is_available,
                is_approved,
                ..
            } => {
                profile.is_available = *is_available;
                profile.is_approved = *is_approved;
            }
            Self::Registered { .. }
            | Self::Booked { .. }
            | Self::Cancelled { .. }
            | Self::Rescheduled { .. } => {}
        }
    }

    /// Journal payload: a version byte, then JSON.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        out.push(EVENT_FORMAT_VERSION);
        serde_json::to_writer(&mut out, self).expect("events always serialize");
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        match bytes.split_first() {
            Some((&EVENT_FORMAT_VERSION, json)) => serde_json::from_slice(json)
                .map_err(|e| StoreError::Corrupt(format!("journal event: {e}"))),
            Some((v, _)) => Err(StoreError::Corrupt(format!(
                "journal event format version {v} is unknown"
            ))),
            None => Err(StoreError::Corrupt("empty journal event".into())),
        }
    }
}

impl JournalRecord {
    /// The consultation a `Booked` record makes, as the store projects it (medical text and
    /// who it is for included); `None` for other events.
    pub fn booked_consultation(&self) -> Option<Consultation> {
        let DoctorEvent::Booked { slot } = &self.event else {
            return None;
        };
        Some(Consultation {
            id: slot.id,
            reference: slot.reference(),
            doctor_id: self.doctor_id,
            patient_id: slot.patient_id,
            scheduled_at: slot.start,
            duration_minutes: slot.duration_minutes,
            status: slot.status,
            consultation_mode: slot.mode,
            consult_mode: slot.mode,
            session_status: SessionStatus::initial_for(slot.mode),
            medical: self.medical.clone(),
            created_at: slot.created_at,
            cancelled_at: None,
            member: self.member.clone(),
        })
    }
}

/// One row for the journal writer to make durable: the event plus what the projections
/// need beyond it (the medical text of a booking).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    pub doctor_id: DoctorId,
    /// Per-doctor sequence number, contiguous from 1.
    pub seq: u64,
    pub recorded_at: DateTime<Utc>,
    pub event: DoctorEvent,
    /// Only for `Booked`: goes to the consultations table, never to the journal.
    pub medical: MedicalInfo,
    /// For a `Booked` (or `Rescheduled`) sent with an `Idempotency-Key`: goes to the
    /// `idempotency_keys` table in the same transaction, never to the journal. `None`
    /// writes nothing extra.
    pub idempotency: Option<IdempotencyClaim>,
    /// Only for a `Booked` of a multi-patient booking: who it is for, stored with the
    /// consultation (never journaled). `None` for single bookings.
    pub member: Option<BookingMember>,
}
