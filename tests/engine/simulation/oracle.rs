//! The model: what the engine acknowledged, so that the store can be held to it. An error
//! that may come after the write (storage, timeout) leaves the outcome open: the model
//! then allows both, and settles on what the store shows at the next check.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use consult_actors::*;

use super::ops::Op;
use super::run::{Ack, Answer};

/// Where a consultation may be: its start while active, `None` once cancelled.
type Place = Option<DateTime<Utc>>;

struct Known {
    doctor: DoctorId,
    patient: PatientId,
    /// One place once settled; more while an open answer left it undecided.
    places: Vec<Place>,
}

/// A hold the engine granted: its doctor, patient, start and end of life.
#[derive(Debug, Clone, Copy)]
pub struct HoldFact {
    pub doctor: DoctorId,
    pub patient: PatientId,
    pub start: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

#[derive(Default)]
pub struct Model {
    consultations: BTreeMap<ConsultationId, Known>,
    /// Bookings answered with an open error: each may have been written.
    maybe_booked: Vec<(DoctorId, DateTime<Utc>)>,
    /// The doctor's profile as last acknowledged; `None` after an open answer.
    profiles: BTreeMap<DoctorId, Option<DoctorProfile>>,
    pub holds: Vec<HoldFact>,
}

/// Whether an error leaves open whether the operation happened.
fn open(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::Storage(_)
            | EngineError::Indeterminate(_)
            | EngineError::Timeout
            | EngineError::Unavailable(_)
    )
}

impl Model {
    /// Consultations known active (settled), with their patient and doctor.
    pub fn active(&self) -> Vec<(ConsultationId, PatientId, DoctorId)> {
        self.consultations
            .iter()
            .filter(|(_, k)| matches!(k.places.as_slice(), [Some(_)]))
            .map(|(id, k)| (*id, k.patient, k.doctor))
            .collect()
    }

    pub fn record(&mut self, answer: &Answer) {
        match (&answer.op, &answer.result) {
            (_, Ok(Ack::Booked(c))) => self.booked(c),
            (_, Ok(Ack::BookedMany(m))) => m.consultations.iter().for_each(|c| self.booked(c)),
            (Op::Book { doctor, at, .. }, Err(e)) if open(e) => {
                self.maybe_booked.push((*doctor, *at));
            }
            (Op::BookMany { items, .. }, Err(e)) if open(e) => {
                self.maybe_booked.extend(items.iter().copied());
            }
            (Op::Cancel { id, .. }, Ok(_)) => self.moved(*id, None, true),
            (Op::Cancel { id, .. }, Err(e)) if open(e) => self.moved(*id, None, false),
            (Op::Reschedule { id, .. }, Ok(Ack::Rescheduled(c))) => {
                self.moved(*id, Some(c.scheduled_at), true);
            }
            (Op::Reschedule { id, to, .. }, Err(e)) if open(e) => {
                self.moved(*id, Some(*to), false);
            }
            (
                Op::Check {
                    doctor,
                    patient,
                    at,
                    ..
                },
                Ok(Ack::Checked(Some(until))),
            ) => self.holds.push(HoldFact {
                doctor: *doctor,
                patient: *patient,
                start: *at,
                until: *until,
            }),
            (_, Ok(Ack::Profile(p))) => {
                self.profiles.insert(p.id, Some((**p).clone()));
            }
            (Op::Schedule { doctor, .. } | Op::Status { doctor, .. }, Err(e)) if open(e) => {
                self.profiles.insert(*doctor, None);
            }
            _ => {}
        }
    }

    fn booked(&mut self, c: &Consultation) {
        self.consultations.insert(
            c.id,
            Known {
                doctor: c.doctor_id,
                patient: c.patient_id,
                places: vec![Some(c.scheduled_at)],
            },
        );
    }

    /// An acknowledged (`settled`) or open cancel or move.
    fn moved(&mut self, id: ConsultationId, to: Place, settled: bool) {
        if let Some(k) = self.consultations.get_mut(&id) {
            if settled {
                k.places = vec![to];
            } else if !k.places.contains(&to) {
                k.places.push(to);
            }
        }
    }

    /// Holds the store to every acknowledged operation: each consultation acknowledged is
    /// there, where the last acknowledged operation put it (or where an open one may
    /// have); every other active consultation answers a request that failed openly; each
    /// doctor's profile is the one last acknowledged. Settles the open outcomes.
    pub async fn reconcile(&mut self, store: &dyn Store) -> Result<(), String> {
        for (id, k) in &mut self.consultations {
            let c = store
                .get_consultation(*id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("acknowledged consultation {id} is not in the store"))?;
            let place = c.status.is_active().then_some(c.scheduled_at);
            if !k.places.contains(&place) {
                return Err(format!(
                    "consultation {id} is at {place:?} in the store; acknowledged: {:?}",
                    k.places
                ));
            }
            k.places = vec![place];
        }
        let active = store
            .active_consultations(None)
            .await
            .map_err(|e| e.to_string())?;
        for c in active {
            if self.consultations.contains_key(&c.id) {
                continue;
            }
            let asked = self
                .maybe_booked
                .iter()
                .position(|m| *m == (c.doctor_id, c.scheduled_at))
                .ok_or_else(|| {
                    format!(
                        "consultation {} (doctor {} at {}) is in the store, but no booking of it \
                         was acknowledged or left open",
                        c.id, c.doctor_id, c.scheduled_at
                    )
                })?;
            self.maybe_booked.swap_remove(asked);
            self.booked(&c);
        }
        for stored in store.list_doctors().await.map_err(|e| e.to_string())? {
            match self.profiles.get(&stored.id) {
                Some(Some(acked)) if *acked != stored => {
                    return Err(format!(
                        "doctor {}'s profile in the store differs from the one acknowledged:\n\
                         store: {stored:?}\nacked: {acked:?}",
                        stored.id
                    ));
                }
                _ => {
                    self.profiles.insert(stored.id, Some(stored));
                }
            }
        }
        Ok(())
    }
}
