//! Runs one operation against the engine and keeps its answer, and, for an acknowledged
//! booking or move, what a read right after it showed (read-your-writes).

use chrono::{DateTime, Duration, Utc};
use consult_actors::calendar::Availability;
use consult_actors::*;

use super::ops::Op;

/// What the engine answered.
#[derive(Debug, Clone)]
pub enum Ack {
    Booked(Consultation),
    BookedMany(MultiBooking),
    Cancelled,
    Rescheduled(Consultation),
    Checked(Option<DateTime<Utc>>),
    Availability(Box<Availability>),
    Offered(Vec<DateTime<Utc>>),
    Profile(Box<DoctorProfile>),
    Panicked,
}

#[derive(Debug, Clone)]
pub struct Answer {
    pub op: Op,
    pub result: Result<Ack, EngineError>,
    /// After an acknowledged booking or move: the new starts, and whether an availability
    /// read right after the acknowledgement listed each as booked.
    pub read_back: Vec<(DateTime<Utc>, bool)>,
}

impl Answer {
    /// A line for the seed's trace: the same seed must produce the same lines.
    pub fn trace(&self) -> String {
        let result = match &self.result {
            Ok(Ack::Booked(c)) | Ok(Ack::Rescheduled(c)) => {
                format!("ok {} {}", c.id, c.scheduled_at)
            }
            Ok(Ack::BookedMany(m)) => format!("ok booking {}", m.id),
            Ok(Ack::Availability(a)) => format!("ok {} booked", a.booked_slots.len()),
            Ok(Ack::Profile(p)) => format!("ok {} {}", p.timezone, p.slot_minutes),
            Ok(other) => format!("{other:?}"),
            Err(e) => format!("err {e}"),
        };
        format!("{:?} -> {result}", self.op)
    }
}

pub async fn perform(engine: Engine, op: Op) -> Answer {
    let result = match &op {
        Op::Book {
            doctor,
            patient,
            at,
        } => engine
            .book(BookingRequest {
                doctor_id: *doctor,
                patient_id: *patient,
                scheduled_at: *at,
                mode: ConsultMode::Video,
                medical: MedicalInfo::default(),
            })
            .await
            .map(Ack::Booked),
        Op::BookMany { patient, items } => engine
            .book_many(
                MultiBookingRequest {
                    patient_id: *patient,
                    items: items
                        .iter()
                        .enumerate()
                        .map(|(i, (doctor, at))| BookingItem {
                            doctor_id: *doctor,
                            scheduled_at: *at,
                            mode: ConsultMode::Chat,
                            patient_name: format!("Member {i}"),
                            relation: None,
                            medical: MedicalInfo::default(),
                        })
                        .collect(),
                },
                None,
            )
            .await
            .map(Ack::BookedMany),
        Op::Cancel { id, by } => engine
            .cancel(*id, Requester::Patient(*by))
            .await
            .map(|_| Ack::Cancelled),
        Op::Reschedule { id, by, to } => engine
            .reschedule(*id, Requester::Patient(*by), *to)
            .await
            .map(Ack::Rescheduled),
        Op::Check {
            doctor,
            patient,
            at,
            hold,
        } => engine
            .check_slot(*doctor, *patient, *at, *hold)
            .await
            .map(|c| Ack::Checked(c.held_until)),
        Op::Availability { doctor } => {
            let today = engine.now().date_naive() - Duration::days(1);
            engine
                .availability(*doctor, today, 5)
                .await
                .map(|a| Ack::Availability(Box::new(a)))
        }
        Op::Offer {
            doctor,
            patient,
            after,
        } => engine
            .next_available(*doctor, *patient, *after, 3)
            .await
            .map(Ack::Offered),
        Op::Schedule { doctor, update } => engine
            .update_schedule(*doctor, (**update).clone())
            .await
            .map(|p| Ack::Profile(Box::new(p))),
        Op::Status { doctor, available } => engine
            .set_status(
                *doctor,
                StatusUpdate {
                    is_available: Some(*available),
                    is_approved: None,
                },
            )
            .await
            .map(|p| Ack::Profile(Box::new(p))),
        Op::Panic { doctor } => engine.inject_panic(*doctor).await.map(|()| Ack::Panicked),
    };
    let made: Vec<(DoctorId, DateTime<Utc>)> = match &result {
        Ok(Ack::Booked(c)) | Ok(Ack::Rescheduled(c)) => vec![(c.doctor_id, c.scheduled_at)],
        Ok(Ack::BookedMany(m)) => m
            .consultations
            .iter()
            .map(|c| (c.doctor_id, c.scheduled_at))
            .collect(),
        _ => Vec::new(),
    };
    let mut read_back = Vec::with_capacity(made.len());
    for (doctor, at) in made {
        let from = at.date_naive() - Duration::days(1);
        // A read that fails (the actor was just made to panic) shows nothing either way.
        if let Ok(a) = engine.availability(doctor, from, 3).await {
            read_back.push((at, a.booked_slots.contains(&at)));
        }
    }
    Answer {
        op,
        result,
        read_back,
    }
}
