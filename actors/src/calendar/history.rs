//! Why a slot is (un)available: which of a doctor's journal events touched one slot, and
//! who decided them. Pure functions over journal entries the engine has read (bounded);
//! what the slot is now comes from [`super::Calendar::slot_state`].

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::event::{ActedBy, DoctorEvent};
use super::rules::SlotState;
use crate::model::{ConsultationId, DoctorId, PatientId};
use crate::store::JournalEntry;

/// Most journal rows one slot history reads (the doctor's latest); past it the answer says
/// `truncated`.
pub const SLOT_HISTORY_SCAN_EVENTS: u32 = 10_000;
/// Most events one slot history answers (the latest that touched the slot).
pub const SLOT_HISTORY_MAX_EVENTS: usize = 500;

/// What a journal event did to the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotEventKind {
    /// The doctor was registered, with the first schedule.
    Registered,
    /// A consultation was booked on (or overlapping) the slot.
    Booked,
    /// A consultation on the slot was cancelled.
    Cancelled,
    /// A consultation moved onto the slot.
    RescheduledIn,
    /// A consultation on the slot moved away.
    RescheduledOut,
    /// The schedule (timezone, slot length, windows) changed: it affects every slot.
    ScheduleUpdated,
    /// The doctor's availability or approval changed: it affects every slot.
    StatusChanged,
}

impl SlotEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Booked => "booked",
            Self::Cancelled => "cancelled",
            Self::RescheduledIn => "rescheduled_in",
            Self::RescheduledOut => "rescheduled_out",
            Self::ScheduleUpdated => "schedule_updated",
            Self::StatusChanged => "status_changed",
        }
    }
}

/// One journal event that touched the slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotEvent {
    pub seq: u64,
    pub kind: SlotEventKind,
    /// When the journal recorded it.
    pub at: DateTime<Utc>,
    pub consultation_id: Option<ConsultationId>,
    /// The consultation's patient, where known; only the admin's view shows it.
    pub patient_id: Option<PatientId>,
    /// Who decided it; `None` when the journal did not record it (older rows).
    pub by: Option<ActedBy>,
    /// For reschedules: the start the consultation left and the one it took.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Where a consultation is, as the consultations table holds it now: a cancelled one stays
/// where it was cancelled, which locates cancellations whose booking the bounded read of
/// the journal did not reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub start: DateTime<Utc>,
    pub duration_minutes: u16,
    pub patient_id: PatientId,
}

impl Placement {
    fn overlaps(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        overlaps(self.start, self.duration_minutes, start, end)
    }
}

fn overlaps(at: DateTime<Utc>, minutes: u16, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
    at < end && at + Duration::minutes(i64::from(minutes)) > start
}

/// A slot's history and what it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotHistory {
    pub doctor_id: DoctorId,
    pub start: DateTime<Utc>,
    /// The slot's length: the doctor's current slot length.
    pub slot_minutes: u16,
    /// Oldest first.
    pub events: Vec<SlotEvent>,
    /// Older events exist that were not read or not answered (see the bounds above).
    pub truncated: bool,
    pub now: SlotState,
}

/// The events of `entries` (oldest first) that touched `[start, start + slot_minutes)`,
/// oldest first. Bookings and moves carry where their consultation is; a cancellation is
/// placed where the events read so far put its consultation, or else by `placements`.
/// Schedule and status changes touch every slot.
pub fn slot_events(
    entries: &[JournalEntry],
    start: DateTime<Utc>,
    slot_minutes: u16,
    placements: &HashMap<ConsultationId, Placement>,
) -> Vec<SlotEvent> {
    let end = start + Duration::minutes(i64::from(slot_minutes));
    let mut seen: HashMap<ConsultationId, Placement> = HashMap::new();
    let mut out = Vec::new();
    for entry in entries {
        let event = |kind, by| SlotEvent {
            seq: entry.seq,
            kind,
            at: entry.recorded_at,
            consultation_id: None,
            patient_id: None,
            by,
            from: None,
            to: None,
        };
        match &entry.event {
            DoctorEvent::Registered { .. } => {
                out.push(event(SlotEventKind::Registered, Some(ActedBy::Admin)));
            }
            DoctorEvent::Booked { slot } => {
                let placed = Placement {
                    start: slot.start,
                    duration_minutes: slot.duration_minutes,
                    patient_id: slot.patient_id,
                };
                seen.insert(slot.id, placed);
                if placed.overlaps(start, end) {
                    out.push(SlotEvent {
                        consultation_id: Some(slot.id),
                        patient_id: Some(slot.patient_id),
                        ..event(SlotEventKind::Booked, Some(ActedBy::Patient))
                    });
                }
            }
            DoctorEvent::Cancelled {
                consultation_id,
                by,
                ..
            } => {
                let placed = seen
                    .remove(consultation_id)
                    .or_else(|| placements.get(consultation_id).copied());
                if let Some(p) = placed.filter(|p| p.overlaps(start, end)) {
                    out.push(SlotEvent {
                        consultation_id: Some(*consultation_id),
                        patient_id: Some(p.patient_id),
                        ..event(SlotEventKind::Cancelled, *by)
                    });
                }
            }
            DoctorEvent::Rescheduled {
                consultation_id,
                from,
                to,
                ..
            } => {
                let known = seen
                    .get(consultation_id)
                    .or_else(|| placements.get(consultation_id))
                    .copied();
                let minutes = known.map_or(slot_minutes, |p| p.duration_minutes);
                let kind = if overlaps(*to, minutes, start, end) {
                    Some(SlotEventKind::RescheduledIn)
                } else if overlaps(*from, minutes, start, end) {
                    Some(SlotEventKind::RescheduledOut)
                } else {
                    None
                };
                if let Some(p) = known {
                    seen.insert(*consultation_id, Placement { start: *to, ..p });
                }
                if let Some(kind) = kind {
                    // Only a consultation's own patient may move it.
                    out.push(SlotEvent {
                        consultation_id: Some(*consultation_id),
                        patient_id: known.map(|p| p.patient_id),
                        from: Some(*from),
                        to: Some(*to),
                        ..event(kind, Some(ActedBy::Patient))
                    });
                }
            }
            // Only the doctor changes their schedule.
            DoctorEvent::ScheduleUpdated { .. } => {
                out.push(event(SlotEventKind::ScheduleUpdated, Some(ActedBy::Doctor)));
            }
            DoctorEvent::StatusChanged { by, .. } => {
                out.push(event(SlotEventKind::StatusChanged, *by));
            }
        }
    }
    out
}
