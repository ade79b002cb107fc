//! Turns a journal batch into what both backends write in its one transaction: the journal
//! rows, the consultation inserts, reschedules and cancellations grouped into
//! order-preserving phases, and the doctor-row updates. Backend-neutral, so both adapters
//! project the same way.
//!
//! Why phases: the unique index on `(doctor_id, scheduled_at)` over active consultations is
//! checked row by row, so the rows of one batch must reach the table in an order in which
//! no two active consultations of a doctor ever share a start. The doctor's actor decided
//! the batch's events of that doctor one at a time, each against the state the earlier ones
//! left, so their own order is such an order. A phase applies all its inserts, then its
//! reschedules one at a time in batch order, then its cancellations; the planner puts each
//! doctor's events into phases so that, for every doctor, this replays its events in their
//! own order (doctors never share an index key, so how doctors interleave is irrelevant):
//! within a phase a doctor's events are bookings, then reschedules, then cancellations, and
//! an event that would have to come earlier than one already in the doctor's phase starts
//! the doctor's next phase. So a booking after a reschedule or a cancellation (it may take
//! the start just freed), and a reschedule after a cancellation (same), go to a later
//! phase; a reschedule after a booking or another reschedule stays, in order.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use consult_actors::calendar::{DoctorEvent, JournalRecord};
use consult_actors::outbox::NotificationKind;
use consult_actors::{BookingMember, DoctorId, MedicalInfo, SessionStatus, StoreError};

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
    pub reference: String,
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

/// One consultation to move, from a `Rescheduled` event.
pub(crate) struct Reschedule {
    pub id: i64,
    pub doctor_id: i64,
    pub to: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

/// Consultation changes that may be applied as "all inserts, then the reschedules in
/// order, then all cancellations" without changing their outcome (see the module docs).
#[derive(Default)]
pub(crate) struct Phase<'a> {
    pub bookings: Vec<NewConsultation<'a>>,
    /// Applied one at a time, in this order.
    pub reschedules: Vec<Reschedule>,
    pub cancellations: Vec<Cancellation>,
}

/// Which part of a phase a consultation change belongs to, in the order a phase applies
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
enum Step {
    #[default]
    Booking,
    Reschedule,
    Cancellation,
}

/// Where a doctor's next consultation change goes: its phase, and the latest step the
/// doctor has in that phase.
#[derive(Default)]
struct DoctorCursor {
    phase: usize,
    last: Option<Step>,
}

impl DoctorCursor {
    /// The phase for a change of `step`: the current one, unless the doctor already has a
    /// later step there (the phase would apply this change before that one: next phase).
    /// Equal steps stay together: bookings free nothing, reschedules are applied in
    /// order, and cancellations only free.
    fn place(&mut self, step: Step) -> usize {
        if self.last.is_some_and(|last| last > step) {
            self.phase += 1;
        }
        self.last = Some(step);
        self.phase
    }
}

/// A change to a `doctors` row, applied in event order.
pub(crate) enum DoctorUpdate {
    Schedule {
        doctor_id: i64,
        timezone: &'static str,
        slot_minutes: i32,
        schedule_json: String,
        /// The `date_overrides` and `booking_policy` columns.
        overrides_json: String,
        policy_json: String,
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

/// One `idempotency_keys` row, from a record's claim.
pub(crate) struct NewIdempotencyKey<'a> {
    pub patient_id: i64,
    pub key: &'a str,
    pub fingerprint: &'a str,
    pub consultation_id: i64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// One `booking_members` row, from a `Booked` of a multi-patient booking.
pub(crate) struct NewMember<'a> {
    pub consultation_id: i64,
    pub member: &'a BookingMember,
}

/// Everything one `append` writes.
pub(crate) struct Plan<'a> {
    pub journal: Vec<JournalRow>,
    /// Applied in order. Usually one; a new phase starts when a doctor books after a
    /// reschedule or a cancellation in the same batch, or moves a consultation after a
    /// cancellation, because it may take the freed slot and must not be applied before
    /// what freed it (the unique index would fire). See the module docs.
    pub phases: Vec<Phase<'a>>,
    pub doctor_updates: Vec<DoctorUpdate>,
    /// Written after every phase (a cancellation's or reschedule's notification reads its
    /// consultation row).
    pub sessions: Vec<NewSession>,
    pub notifications: Vec<NewNotification>,
    /// Written after every phase; empty (nothing written) for records without a key.
    pub idempotency: Vec<NewIdempotencyKey<'a>>,
    /// Written after every phase; empty for single bookings.
    pub members: Vec<NewMember<'a>>,
}

/// Plans the writes of `batch`. Fails only on values the schema cannot hold.
pub(crate) fn plan(batch: &[JournalRecord]) -> Result<Plan<'_>, StoreError> {
    let mut journal = Vec::with_capacity(batch.len());
    let mut phases: Vec<Phase<'_>> = vec![Phase::default()];
    let mut doctor_updates = Vec::new();
    let mut sessions = Vec::new();
    let mut notifications = Vec::new();
    let mut idempotency = Vec::new();
    let mut members = Vec::new();
    let mut cursors: HashMap<DoctorId, DoctorCursor> = HashMap::new();
    let mut phase_for = |doctor_id: DoctorId, step: Step, phases: &mut Vec<Phase<'_>>| {
        let phase = cursors.entry(doctor_id).or_default().place(step);
        if phases.len() <= phase {
            phases.push(Phase::default());
        }
        phase
    };

    for record in batch {
        journal.push(JournalRow {
            doctor_id: record.doctor_id,
            seq: seq_to_i64(record.seq)?,
            kind: record.event.kind(),
            payload: record.event.encode(),
            recorded_at: record.recorded_at,
        });
        if let Some(claim) = &record.idempotency {
            let consultation_id = match &record.event {
                DoctorEvent::Booked { slot } => slot.id,
                DoctorEvent::Rescheduled {
                    consultation_id, ..
                } => *consultation_id,
                _ => {
                    return Err(StoreError::Constraint(format!(
                        "an idempotency key on a {} record answers no consultation",
                        record.event.kind()
                    )))
                }
            };
            idempotency.push(NewIdempotencyKey {
                patient_id: claim.patient_id,
                key: &claim.key,
                fingerprint: &claim.fingerprint,
                consultation_id,
                created_at: record.recorded_at,
                expires_at: claim.expires_at,
            });
        }
        if let Some(member) = &record.member {
            let DoctorEvent::Booked { slot } = &record.event else {
                return Err(StoreError::Constraint(format!(
                    "a booking member on a {} record belongs to no new consultation",
                    record.event.kind()
                )));
            };
            members.push(NewMember {
                consultation_id: slot.id,
                member,
            });
        }
        match &record.event {
            DoctorEvent::Registered { .. } => {}
            DoctorEvent::Booked { slot } => {
                let phase = phase_for(record.doctor_id, Step::Booking, &mut phases);
                phases[phase].bookings.push(NewConsultation {
                    id: slot.id,
                    reference: slot.reference(),
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
                ..
            } => {
                let phase = phase_for(record.doctor_id, Step::Cancellation, &mut phases);
                phases[phase].cancellations.push(Cancellation {
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
            DoctorEvent::Rescheduled {
                consultation_id,
                to,
                at,
                ..
            } => {
                let phase = phase_for(record.doctor_id, Step::Reschedule, &mut phases);
                phases[phase].reschedules.push(Reschedule {
                    id: *consultation_id,
                    doctor_id: record.doctor_id,
                    to: *to,
                    at: *at,
                });
                notifications.push(NewNotification {
                    kind: NotificationKind::ConsultationRescheduled.as_str(),
                    consultation_id: *consultation_id,
                    parties: None,
                    at: *at,
                });
            }
            DoctorEvent::ScheduleUpdated {
                timezone,
                slot_minutes,
                schedule,
                date_overrides,
                policy,
            } => doctor_updates.push(DoctorUpdate::Schedule {
                doctor_id: record.doctor_id,
                timezone: timezone.name(),
                slot_minutes: i32::from(*slot_minutes),
                schedule_json: schedule_json(schedule)?,
                overrides_json: overrides_json(date_overrides)?,
                policy_json: policy_json(policy)?,
                at: record.recorded_at,
            }),
            DoctorEvent::StatusChanged {
                is_available,
                is_approved,
                ..
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
        idempotency,
        members,
    })
}

/// Journal sequence numbers are `u64` in the engine and `BIGINT` in the schema.
pub(crate) fn seq_to_i64(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq)
        .map_err(|_| StoreError::Constraint(format!("journal seq {seq} exceeds BIGINT")))
}

/// The `date_overrides` column: JSON object by local date.
fn overrides_json(
    overrides: &consult_actors::calendar::DateOverrides,
) -> Result<String, StoreError> {
    serde_json::to_string(overrides)
        .map_err(|e| StoreError::Corrupt(format!("date overrides do not serialize: {e}")))
}

/// The `booking_policy` column.
fn policy_json(policy: &consult_actors::calendar::BookingPolicy) -> Result<String, StoreError> {
    serde_json::to_string(policy)
        .map_err(|e| StoreError::Corrupt(format!("booking policy does not serialize: {e}")))
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
    use consult_actors::{ConsultMode, ConsultationStatus};

    /// Monday 2030-01-07 09:00 UTC plus `minute` minutes.
    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 7, 9, 0, 0)
            .single()
            .expect("valid time")
            + chrono::Duration::minutes(i64::from(minute))
    }

    fn booked(doctor_id: i64, seq: u64, id: i64, start_minute: u32) -> JournalRecord {
        JournalRecord {
            doctor_id,
            seq,
            recorded_at: at(0),
            event: DoctorEvent::Booked {
                slot: BookedSlot {
                    id,
                    patient_id: 7,
                    start: at(start_minute),
                    duration_minutes: 30,
                    status: ConsultationStatus::Scheduled,
                    mode: ConsultMode::Video,
                    created_at: at(0),
                },
            },
            medical: MedicalInfo::default(),
            idempotency: None,
            member: None,
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
                by: None,
            },
            medical: MedicalInfo::default(),
            idempotency: None,
            member: None,
        }
    }

    fn rescheduled(doctor_id: i64, seq: u64, id: i64, from: u32, to: u32) -> JournalRecord {
        JournalRecord {
            doctor_id,
            seq,
            recorded_at: at(2),
            event: DoctorEvent::Rescheduled {
                consultation_id: id,
                from: at(from),
                to: at(to),
                at: at(2),
            },
            medical: MedicalInfo::default(),
            idempotency: None,
            member: None,
        }
    }

    /// Per phase: booked ids, rescheduled ids (in order), cancelled ids.
    fn shape3(plan: &Plan<'_>) -> Vec<(Vec<i64>, Vec<i64>, Vec<i64>)> {
        plan.phases
            .iter()
            .map(|p| {
                (
                    p.bookings.iter().map(|b| b.id).collect(),
                    p.reschedules.iter().map(|r| r.id).collect(),
                    p.cancellations.iter().map(|c| c.id).collect(),
                )
            })
            .collect()
    }

    fn shape(plan: &Plan<'_>) -> Vec<(Vec<i64>, Vec<i64>)> {
        shape3(plan)
            .into_iter()
            .map(|(b, r, c)| {
                assert!(r.is_empty());
                (b, c)
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

    #[test]
    fn a_booking_of_the_start_a_reschedule_left_goes_to_the_next_phase() {
        // Consultation 10 moves 09:00 -> 09:30, then 11 books 09:00.
        let batch = [rescheduled(1, 5, 10, 0, 30), booked(1, 6, 11, 0)];
        let plan = plan(&batch).expect("plannable");
        assert_eq!(
            shape3(&plan),
            vec![(vec![], vec![10], vec![]), (vec![11], vec![], vec![])]
        );
        assert_eq!(plan.phases[0].reschedules[0].to, at(30));
    }

    #[test]
    fn a_reschedule_into_a_start_a_cancellation_freed_goes_to_the_next_phase() {
        let batch = [cancelled(1, 5, 10), rescheduled(1, 6, 11, 30, 0)];
        let plan = plan(&batch).expect("plannable");
        assert_eq!(
            shape3(&plan),
            vec![(vec![], vec![], vec![10]), (vec![], vec![11], vec![])]
        );
    }

    #[test]
    fn booking_then_moving_the_same_consultation_fits_in_one_phase() {
        let batch = [booked(1, 2, 10, 0), rescheduled(1, 3, 10, 0, 30)];
        let plan = plan(&batch).expect("plannable");
        assert_eq!(shape3(&plan), vec![(vec![10], vec![10], vec![])]);
        // The booking's notification, then the reschedule's (read from the row).
        assert_eq!(
            plan.notifications
                .iter()
                .map(|n| (n.kind, n.consultation_id, n.parties.is_some()))
                .collect::<Vec<_>>(),
            vec![
                ("consultation_scheduled", 10, true),
                ("consultation_rescheduled", 10, false)
            ]
        );
        assert_eq!(plan.journal[1].kind, "rescheduled");
    }

    #[test]
    fn two_consultations_swapping_through_a_free_slot_stay_in_order_in_one_phase() {
        // 10 at 09:00 and 11 at 09:30 swap through 10:00.
        let batch = [
            rescheduled(1, 5, 10, 0, 60),
            rescheduled(1, 6, 11, 30, 0),
            rescheduled(1, 7, 10, 60, 30),
        ];
        let plan = plan(&batch).expect("plannable");
        assert_eq!(shape3(&plan), vec![(vec![], vec![10, 11, 10], vec![])]);
        let targets: Vec<_> = plan.phases[0].reschedules.iter().map(|r| r.to).collect();
        assert_eq!(targets, vec![at(60), at(0), at(30)]);
    }

    #[test]
    fn another_doctors_reschedule_does_not_split_a_doctors_phase() {
        let batch = [
            rescheduled(2, 5, 20, 0, 30),
            booked(1, 2, 10, 0),
            booked(2, 6, 21, 0),
            cancelled(1, 3, 10),
        ];
        let plan = plan(&batch).expect("plannable");
        assert_eq!(
            shape3(&plan),
            vec![(vec![10], vec![20], vec![10]), (vec![21], vec![], vec![])]
        );
    }

    mod replay {
        //! Every batch a set of doctor actors could write, applied the way the stores apply
        //! a plan (phase by phase, the unique active start checked on every row), never
        //! trips the index and ends where applying the events one by one ends.

        use std::collections::BTreeMap;

        use proptest::prelude::*;

        use super::*;

        const STARTS: u32 = 4;

        #[derive(Debug, Clone)]
        enum Op {
            Book { start: u32 },
            Cancel { which: usize },
            Move { which: usize, to: u32 },
        }

        /// (doctor, id) -> (start, active).
        type Table = BTreeMap<(i64, i64), (u32, bool)>;

        fn active_at(t: &Table, doctor: i64, start: u32) -> Option<i64> {
            t.iter()
                .find(|((d, _), (s, a))| *d == doctor && *s == start && *a)
                .map(|((_, id), _)| *id)
        }

        /// Turns random ops into a valid batch, the way an actor only journals what its
        /// calendar accepts; starts with a few consultations already stored.
        fn batch_of(ops: &[(i64, Op)]) -> (Table, Vec<JournalRecord>) {
            let mut table = Table::new();
            let mut next_id = 1;
            for doctor in [1, 2] {
                for start in [0, 2] {
                    table.insert((doctor, next_id), (start, true));
                    next_id += 1;
                }
            }
            let stored = table.clone();
            let mut seq: BTreeMap<i64, u64> = BTreeMap::new();
            let mut batch = Vec::new();
            for (doctor, op) in ops {
                let doctor = *doctor;
                let mine: Vec<(i64, u32)> = table
                    .iter()
                    .filter(|((d, _), (_, a))| *d == doctor && *a)
                    .map(|((_, id), (s, _))| (*id, *s))
                    .collect();
                let seq = seq.entry(doctor).or_insert(1);
                let record = match op {
                    Op::Book { start } if active_at(&table, doctor, *start).is_none() => {
                        table.insert((doctor, next_id), (*start, true));
                        next_id += 1;
                        booked(doctor, *seq + 1, next_id - 1, *start * 30)
                    }
                    Op::Cancel { which } if !mine.is_empty() => {
                        let (id, _) = mine[which % mine.len()];
                        table.get_mut(&(doctor, id)).unwrap().1 = false;
                        cancelled(doctor, *seq + 1, id)
                    }
                    Op::Move { which, to } if !mine.is_empty() => {
                        let (id, from) = mine[which % mine.len()];
                        if from == *to || active_at(&table, doctor, *to).is_some() {
                            continue;
                        }
                        table.get_mut(&(doctor, id)).unwrap().0 = *to;
                        rescheduled(doctor, *seq + 1, id, from * 30, *to * 30)
                    }
                    _ => continue,
                };
                *seq += 1;
                batch.push(record);
            }
            (stored, batch)
        }

        /// Applies `plan` to `table` as the SQL stores do; fails where the index would.
        fn apply(plan: &Plan<'_>, table: &mut Table) -> Result<(), String> {
            let minute = |t: DateTime<Utc>| ((t - at(0)).num_minutes() / 30) as u32;
            for (i, phase) in plan.phases.iter().enumerate() {
                for b in &phase.bookings {
                    let start = minute(b.scheduled_at);
                    if let Some(other) = active_at(table, b.doctor_id, start) {
                        return Err(format!("phase {i}: booking {} meets {other}", b.id));
                    }
                    table.insert((b.doctor_id, b.id), (start, true));
                }
                for r in &phase.reschedules {
                    let to = minute(r.to);
                    if let Some(other) = active_at(table, r.doctor_id, to) {
                        if other != r.id {
                            return Err(format!("phase {i}: move of {} meets {other}", r.id));
                        }
                    }
                    let row = table
                        .get_mut(&(r.doctor_id, r.id))
                        .ok_or(format!("phase {i}: no row {}", r.id))?;
                    row.0 = to;
                }
                for c in &phase.cancellations {
                    if let Some(row) = table.get_mut(&(c.doctor_id, c.id)) {
                        row.1 = false;
                    }
                }
            }
            Ok(())
        }

        fn op() -> impl Strategy<Value = (i64, Op)> {
            (
                1i64..=2,
                prop_oneof![
                    1 => (0..STARTS).prop_map(|start| Op::Book { start }),
                    1 => any::<usize>().prop_map(|which| Op::Cancel { which }),
                    2 => (any::<usize>(), 0..STARTS).prop_map(|(which, to)| Op::Move { which, to }),
                ],
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn any_batch_of_bookings_reschedules_and_cancellations_applies_phase_by_phase(
                ops in prop::collection::vec(op(), 1..40)
            ) {
                let (stored, batch) = batch_of(&ops);
                let mut sequential = stored.clone();
                // The expected end state: each record alone, in batch order.
                for record in &batch {
                    let plan = plan(std::slice::from_ref(record)).expect("plannable");
                    prop_assert_eq!(apply(&plan, &mut sequential), Ok(()));
                }
                let plan = plan(&batch).expect("plannable");
                let mut table = stored;
                prop_assert_eq!(apply(&plan, &mut table), Ok(()));
                prop_assert_eq!(table, sequential);
                // Phases are needed only where a doctor's order demands them.
                prop_assert!(plan.phases.len() <= batch.len().max(1));
            }
        }
    }
}
