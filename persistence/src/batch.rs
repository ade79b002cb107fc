//! Turns a journal batch into what both backends write in its one transaction: the journal
//! rows, the consultation inserts and cancellations grouped into order-preserving phases,
//! and the doctor-row updates. Backend-neutral, so both adapters project the same way.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use consult_actors::calendar::{DoctorEvent, JournalRecord};
use consult_actors::outbox::NotificationKind;
use consult_actors::{DoctorId, MedicalInfo, SessionStatus, StoreError};

/// One `journal` row.
pub(crate) struct JournalRow {
    pub doctor_id: i64,
    pub seq: i64,
    pub kind: &'static str,
    pub payload: Vec<u8>,
    pub recorded_at: DateTime<Utc>,
}

/// One `consultations` row to insert, from a `Booked` event.
pub(crate) struct NewConsultation<'a> {
    pub id: i64,
    pub reference: &'a str,
    pub doctor_id: i64,
    pub patient_id: i64,
    pub scheduled_at: DateTime<Utc>,
    pub duration_minutes: i32,
    pub status: &'static str,
    /// Written to both `consultation_mode` and `consult_mode`.
    pub mode: &'static str,
    pub session_status: &'static str,
    pub medical: &'a MedicalInfo,
    /// Also the row's `updated_at`.
    pub created_at: DateTime<Utc>,
}

/// One consultation to mark cancelled, from a `Cancelled` event.
pub(crate) struct Cancellation {
    pub id: i64,
    pub doctor_id: i64,
    pub at: DateTime<Utc>,
}

/// Consultation changes that may be applied as "all inserts, then all cancellations"
/// without changing their outcome.
#[derive(Default)]
pub(crate) struct Phase<'a> {
    pub bookings: Vec<NewConsultation<'a>>,
    pub cancellations: Vec<Cancellation>,
}

/// A change to a `doctors` row, applied in event order.
pub(crate) enum DoctorUpdate {
    Schedule {
        doctor_id: i64,
        timezone: &'static str,
        slot_minutes: i32,
        schedule_json: String,
        at: DateTime<Utc>,
    },
    Status {
        doctor_id: i64,
        is_available: bool,
        is_approved: bool,
        at: DateTime<Utc>,
    },
}

/// One notification event; the store writes it for the consultation's patient and doctor.
pub(crate) struct NewNotification {
    pub kind: &'static str,
    pub consultation_id: i64,
    /// (patient, doctor) when the event names them (a booking), so the store writes the
    /// rows straight from the batch; `None` (a cancellation): read from the consultation.
    pub parties: Option<(i64, i64)>,
    pub at: DateTime<Utc>,
}

/// One pending session row, from a `Booked` in-app consultation.
pub(crate) struct NewSession {
    pub consultation_id: i64,
    pub at: DateTime<Utc>,
}

/// Everything one `append` writes.
pub(crate) struct Plan<'a> {
    pub journal: Vec<JournalRow>,
    /// Applied in order. Usually one; a new phase starts when a doctor books after a
    /// cancellation in the same batch, because the booking may take the freed slot and
    /// must not be inserted before that cancellation (the unique index would fire).
    pub phases: Vec<Phase<'a>>,
    pub doctor_updates: Vec<DoctorUpdate>,
    /// Written after every phase (a cancellation's notification reads its consultation row).
    pub sessions: Vec<NewSession>,
    pub notifications: Vec<NewNotification>,
}

/// Plans the writes of `batch`. Fails only on values the schema cannot hold.
pub(crate) fn plan(batch: &[JournalRecord]) -> Result<Plan<'_>, StoreError> {
    let mut journal = Vec::with_capacity(batch.len());
    let mut phases: Vec<Phase<'_>> = vec![Phase::default()];
    let mut doctor_updates = Vec::new();
    let mut sessions = Vec::new();
    let mut notifications = Vec::new();
    // Per doctor: the phase its next consultation change goes to, and whether its last
    // consultation change was a cancellation.
    let mut doctor_phase: HashMap<DoctorId, (usize, bool)> = HashMap::new();

    for record in batch {
        journal.push(JournalRow {
            doctor_id: record.doctor_id,
            seq: seq_to_i64(record.seq)?,
            kind: record.event.kind(),
            payload: record.event.encode(),
            recorded_at: record.recorded_at,
        });
        match &record.event {
            DoctorEvent::Registered { .. } => {}
            DoctorEvent::Booked { slot } => {
                let (phase, after_cancel) = doctor_phase.entry(record.doctor_id).or_default();
                if *after_cancel {
                    *phase += 1;
                    *after_cancel = false;
                }
                if phases.len() <= *phase {
                    phases.push(Phase::default());
                }
                phases[*phase].bookings.push(NewConsultation {
                    id: slot.id,
                    reference: &slot.reference,
                    doctor_id: record.doctor_id,
                    patient_id: slot.patient_id,
                    scheduled_at: slot.start,
                    duration_minutes: i32::from(slot.duration_minutes),
                    status: slot.status.as_str(),
                    mode: slot.mode.as_str(),
                    session_status: SessionStatus::initial_for(slot.mode).as_str(),
                    medical: &record.medical,
                    created_at: slot.created_at,
                });
                if slot.mode.needs_session() {
                    sessions.push(NewSession {
                        consultation_id: slot.id,
                        at: slot.created_at,
                    });
                }
                notifications.push(NewNotification {
                    kind: NotificationKind::ConsultationScheduled.as_str(),
                    consultation_id: slot.id,
                    parties: Some((slot.patient_id, record.doctor_id)),
                    at: record.recorded_at,
                });
            }
            DoctorEvent::Cancelled {
                consultation_id,
                at,
            } => {
                let (phase, after_cancel) = doctor_phase.entry(record.doctor_id).or_default();
                *after_cancel = true;
                phases[*phase].cancellations.push(Cancellation {
                    id: *consultation_id,
                    doctor_id: record.doctor_id,
                    at: *at,
                });
                notifications.push(NewNotification {
                    kind: NotificationKind::ConsultationCancelled.as_str(),
                    consultation_id: *consultation_id,
                    parties: None,
                    at: *at,
                });
            }
            DoctorEvent::ScheduleUpdated {
                timezone,
                slot_minutes,
                schedule,
            } => doctor_updates.push(DoctorUpdate::Schedule {
                doctor_id: record.doctor_id,
                timezone: timezone.name(),
                slot_minutes: i32::from(*slot_minutes),
                schedule_json: schedule_json(schedule)?,
                at: record.recorded_at,
            }),
            DoctorEvent::StatusChanged {
                is_available,
                is_approved,
            } => doctor_updates.push(DoctorUpdate::Status {
                doctor_id: record.doctor_id,
                is_available: *is_available,
                is_approved: *is_approved,
                at: record.recorded_at,
            }),
        }
    }
    Ok(Plan {
        journal,
        phases,
        doctor_updates,
        sessions,
        notifications,
    })
}

/// Journal sequence numbers are `u64` in the engine and `BIGINT` in the schema.
pub(crate) fn seq_to_i64(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq)
        .map_err(|_| StoreError::Constraint(format!("journal seq {seq} exceeds BIGINT")))
}

/// The `availability_schedule` column: the seed's JSON shape of the weekly schedule.
pub(crate) fn schedule_json(
    schedule: &consult_actors::calendar::WeeklySchedule,
) -> Result<String, StoreError> {
    serde_json::to_string(schedule)
        .map_err(|e| StoreError::Corrupt(format!("weekly schedule does not serialize: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use consult_actors::calendar::BookedSlot;
    use consult_actors::{reference_for, ConsultMode, ConsultationStatus};

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 7, 9, minute, 0)
            .single()
            .expect("valid time")
    }

    fn booked(doctor_id: i64, seq: u64, id: i64, start_minute: u32) -> JournalRecord {
        JournalRecord {
            doctor_id,
            seq,
            recorded_at: at(0),
            event: DoctorEvent::Booked {
                slot: BookedSlot {
                    id,
                    reference: reference_for(id),
                    patient_id: 7,
                    start: at(start_minute),
                    duration_minutes: 30,
                    status: ConsultationStatus::Scheduled,
                    mode: ConsultMode::Video,
                    created_at: at(0),
                },
            },
            medical: MedicalInfo::default(),
        }
    }

    fn cancelled(doctor_id: i64, seq: u64, id: i64) -> JournalRecord {
        JournalRecord {
            doctor_id,
            seq,
            recorded_at: at(1),
            event: DoctorEvent::Cancelled {
                consultation_id: id,
                at: at(1),
            },
            medical: MedicalInfo::default(),
        }
    }

    fn shape(plan: &Plan<'_>) -> Vec<(Vec<i64>, Vec<i64>)> {
        plan.phases
            .iter()
            .map(|p| {
                (
                    p.bookings.iter().map(|b| b.id).collect(),
                    p.cancellations.iter().map(|c| c.id).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn bookings_then_cancellations_fit_in_one_phase() {
        let batch = [
            booked(1, 2, 10, 0),
            booked(2, 2, 11, 0),
            cancelled(1, 3, 10),
        ];
        let plan = plan(&batch).expect("plannable");
        assert_eq!(shape(&plan), vec![(vec![10, 11], vec![10])]);
        assert_eq!(plan.journal.len(), 3);
        // Video bookings get a session row; every event two notifications (written later).
        assert_eq!(
            plan.sessions
                .iter()
                .map(|s| s.consultation_id)
                .collect::<Vec<_>>(),
            vec![10, 11]
        );
        assert_eq!(
            plan.notifications
                .iter()
                .map(|n| (n.kind, n.consultation_id))
                .collect::<Vec<_>>(),
            vec![
                ("consultation_scheduled", 10),
                ("consultation_scheduled", 11),
                ("consultation_cancelled", 10)
            ]
        );
    }

    #[test]
    fn a_booking_after_a_cancellation_of_the_same_doctor_starts_a_new_phase() {
        let batch = [
            booked(1, 2, 10, 0),
            cancelled(1, 3, 10),
            booked(2, 2, 12, 0),
            booked(1, 4, 11, 0),
        ];
        let plan = plan(&batch).expect("plannable");
        assert_eq!(
            shape(&plan),
            vec![(vec![10, 12], vec![10]), (vec![11], vec![])]
        );
    }
}
