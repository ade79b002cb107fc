//! The engine's error vocabulary: rule rejections (the booking was refused for a reason the
//! caller can act on) and engine errors (the engine could not decide).

use crate::model::ConsultationId;

/// Why the booking rules refused a slot, in the seed's check order. Each maps to one row of
/// the HTTP error table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Rejection {
    /// 400 `doctor_unavailable`: not approved, or switched off by the doctor.
    #[error("Doctor is not available for booking")]
    DoctorUnavailable,
    /// 400 `day_unavailable`: the weekday is disabled in the schedule.
    #[error("Doctor is not available on this day")]
    DayUnavailable,
    /// 400 `outside_availability`: the consultation would not lie inside the day's window.
    #[error("The requested time is outside the doctor's availability")]
    OutsideAvailability,
    /// 400 `off_slot_grid`: the time is not on the doctor's slot grid.
    #[error("The requested time is not on the doctor's slot grid")]
    OffSlotGrid,
    /// 400 `in_past`: not in the future, or inside the minimum notice.
    #[error("The requested time must be in the future")]
    InPast,
    /// 400 `outside_booking_window`: further ahead than the doctor's booking window.
    #[error("The requested time is beyond the doctor's booking window")]
    OutsideBookingWindow,
    /// 400 `day_full`: the doctor already has their maximum of consultations that day.
    #[error("The doctor is fully booked on this day")]
    DayFull,
    /// 409 `time_slot_conflict`: another active consultation or another patient's hold.
    #[error("This time slot was just booked by another patient. Please select a different time.")]
    Conflict,
}

impl Rejection {
    /// The API's `error` code for this rejection.
    pub fn code(self) -> &'static str {
        match self {
            Self::DoctorUnavailable => "doctor_unavailable",
            Self::DayUnavailable => "day_unavailable",
            Self::OutsideAvailability => "outside_availability",
            Self::OffSlotGrid => "off_slot_grid",
            Self::InPast => "in_past",
            Self::OutsideBookingWindow => "outside_booking_window",
            Self::DayFull => "day_full",
            Self::Conflict => "time_slot_conflict",
        }
    }
}

/// A field that failed validation, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    pub field: String,
    pub reason: String,
}

impl InvalidField {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Everything an engine call can answer instead of success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The booking rules refused (400s and the 409).
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// Ill-formed input (400 `validation_failed`).
    #[error("invalid input: {0}")]
    Invalid(#[from] InvalidField),
    /// 404: no such doctor.
    #[error("doctor not found")]
    DoctorNotFound,
    /// 404: no such consultation.
    #[error("consultation {0} not found")]
    ConsultationNotFound(ConsultationId),
    /// 404: no such multi-patient booking.
    #[error("booking {0} not found")]
    BookingNotFound(i64),
    /// 403: the requester may not act on this consultation.
    #[error("not allowed to act on this consultation")]
    Forbidden,
    /// 409-like: the consultation is not active (already cancelled, completed, or past).
    #[error("consultation cannot be cancelled: {0}")]
    NotCancellable(&'static str),
    /// 409-like: the consultation cannot be moved any more (not active, or started).
    #[error("consultation cannot be rescheduled: {0}")]
    NotReschedulable(&'static str),
    /// One item of a multi-patient booking was refused (a rule, a conflict, or an overlap
    /// with another item); nothing of the booking was made. `item` is its 0-based index.
    #[error("item {item}: {error}")]
    ItemRejected {
        item: usize,
        error: Box<EngineError>,
    },
    /// 503: admission control refused; nothing was done. Retry later.
    #[error("engine overloaded")]
    Overloaded,
    /// 503: no answer within the call timeout. A booking may or may not have been made.
    #[error("engine call timed out")]
    Timeout,
    /// 503: the store failed; nothing of this request was acknowledged.
    #[error("storage error: {0}")]
    Storage(String),
    /// 503: the store lost its connection after the write was sent, so the write may or
    /// may not be durable: callers must not be told that nothing was done (the store is
    /// the truth; the doctors reload from it).
    #[error("storage write outcome unknown: {0}")]
    Indeterminate(String),
    /// 503: the engine is stopping, or the doctor's actor failed while handling the request.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
    /// Another instance serves this doctor (its advertised URL, when known): the request
    /// had no effect here; forward it there, or retry shortly when no owner is known.
    #[error("the doctor is served by another instance")]
    NotOwner { owner: Option<String> },
}

impl EngineError {
    /// Whether the caller may safely retry later (503-class errors).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Overloaded
                | Self::Timeout
                | Self::Storage(_)
                | Self::Indeterminate(_)
                | Self::Unavailable(_)
                | Self::NotOwner { .. }
        ) || matches!(self, Self::ItemRejected { error, .. } if error.is_retryable())
    }
}

/// What a store adapter reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or the transaction failed; nothing was written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness guard fired (e.g. two active consultations at one start).
    #[error("store constraint violated: {0}")]
    Constraint(String),
    /// A fence no longer held: another instance took the shard over. Nothing was written;
    /// the caller's shard must stop serving (retryable elsewhere).
    #[error("shard {shard} was taken over by another instance (epoch {epoch} is stale)")]
    Fenced { shard: u32, epoch: u64 },
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The connection was lost after a write was sent (during its COMMIT, or its one
    /// auto-committed statement): it may or may not have been committed.
    #[error("store write outcome unknown: {0}")]
    Indeterminate(String),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Indeterminate(_) => EngineError::Indeterminate(e.to_string()),
            _ => EngineError::Storage(e.to_string()),
        }
    }
}
