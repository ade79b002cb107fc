//! The invariants, checked after every round: no overlaps (store and engine), every
//! answer rests on durable state, acknowledged writes read back, and availability is what
//! the rules derive from the store.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use consult_actors::calendar::{
    Availability, Calendar, DoctorEvent, SlotStatus, PRUNE_AFTER_END_HOURS,
};
use consult_actors::*;

use super::ops::{local_today, Op, LONGEST_SLOT_MINUTES};
use super::oracle::HoldFact;
use super::run::{Ack, Answer};
use super::world::World;

/// Days of availability compared after each round, from the doctor's local today.
const COMPARED_DAYS: u16 = 3;

/// A consultation's span: id, start, minutes.
type Span = (ConsultationId, DateTime<Utc>, u16);

fn overlaps(a: DateTime<Utc>, a_min: u16, b: DateTime<Utc>, b_min: u16) -> bool {
    a < b + Duration::minutes(i64::from(b_min)) && b < a + Duration::minutes(i64::from(a_min))
}

/// One doctor's durable state around a round: what the store held when it began, what
/// its journal added during it, and what it held when it ended.
#[derive(Default)]
pub struct Durable {
    before: Vec<Span>,
    last_seq: u64,
    /// Spans the journal put consultations on during the round (bookings and moves).
    placed: Vec<Span>,
    after: Vec<Span>,
    slot_minutes: Vec<u16>,
}

async fn spans(store: &dyn Store, doctor: DoctorId) -> Vec<Span> {
    store
        .active_consultations(Some(doctor))
        .await
        .expect("read active consultations")
        .iter()
        .map(|c| (c.id, c.scheduled_at, c.duration_minutes))
        .collect()
}

async fn last_seq(store: &dyn Store, doctor: DoctorId) -> u64 {
    let newest = store.doctor_journal(doctor, 1).await.expect("read journal");
    newest.first().map_or(0, |e| e.seq)
}

pub async fn before_round(world: &World) -> BTreeMap<DoctorId, Durable> {
    let store: &dyn Store = world.store.as_ref();
    let mut out = BTreeMap::new();
    for p in store.list_doctors().await.expect("list doctors") {
        out.insert(
            p.id,
            Durable {
                before: spans(store, p.id).await,
                last_seq: last_seq(store, p.id).await,
                slot_minutes: vec![p.slot_minutes],
                ..Default::default()
            },
        );
    }
    out
}

pub async fn after_round(world: &World, durable: &mut BTreeMap<DoctorId, Durable>) {
    let store: &dyn Store = world.store.as_ref();
    for p in store.list_doctors().await.expect("list doctors") {
        let Some(d) = durable.get_mut(&p.id) else {
            continue;
        };
        d.after = spans(store, p.id).await;
        d.slot_minutes.push(p.slot_minutes);
        let added = last_seq(store, p.id).await - d.last_seq;
        let journal = store
            .doctor_journal(p.id, added as u32)
            .await
            .expect("read journal");
        for entry in journal {
            let span = match entry.event {
                DoctorEvent::Booked { slot } => (slot.id, slot.start, slot.duration_minutes),
                DoctorEvent::Rescheduled {
                    consultation_id,
                    to,
                    ..
                } => {
                    let c = store
                        .get_consultation(consultation_id)
                        .await
                        .expect("read consultation")
                        .expect("a moved consultation is stored");
                    (consultation_id, to, c.duration_minutes)
                }
                _ => continue,
            };
            d.placed.push(span);
        }
    }
}

impl Durable {
    /// Something durable occupied the span at some moment of the round (other than
    /// `except`, a consultation being moved).
    fn occupied_sometime(
        &self,
        at: DateTime<Utc>,
        minutes: u16,
        except: Option<ConsultationId>,
    ) -> bool {
        self.before
            .iter()
            .chain(&self.placed)
            .any(|(id, s, m)| Some(*id) != except && overlaps(at, minutes, *s, *m))
    }

    /// Durably taken all through the round, judged on the round's shortest slot length
    /// (a free answer may predate a change to a longer one).
    fn taken_all_along(&self, at: DateTime<Utc>) -> bool {
        let minutes = self.slot_minutes.iter().copied().min().unwrap_or(30);
        self.occupied_throughout(at, minutes)
    }

    /// The same consultation occupied the span durably all through the round.
    fn occupied_throughout(&self, at: DateTime<Utc>, minutes: u16) -> bool {
        self.before
            .iter()
            .any(|b| self.after.contains(b) && overlaps(at, minutes, b.1, b.2))
    }
}

/// No answer given during the round rests on a decision that never became durable: a
/// slot shown booked, or refused as taken, was taken in the store at some moment (or held
/// by someone else); a slot shown free was not taken in the store all along; and an
/// acknowledged booking or move was shown booked by a read right after it.
pub fn answers_rest_on_durable_state(
    answers: &[Answer],
    durable: &BTreeMap<DoctorId, Durable>,
    holds: &[HoldFact],
    round_began: DateTime<Utc>,
) -> Result<(), String> {
    for a in answers {
        for (at, listed) in &a.read_back {
            if !listed {
                return Err(format!(
                    "acknowledged, then read as free right after: {} (answer {:?})",
                    at,
                    a.trace()
                ));
            }
        }
        let conflict = |doctor: DoctorId, patient: PatientId, at: DateTime<Utc>, moving| {
            let d = &durable[&doctor];
            let minutes = d.slot_minutes.iter().copied().max().unwrap_or(30);
            let held = holds.iter().any(|h| {
                h.doctor == doctor
                    && h.patient != patient
                    && h.until > round_began
                    && overlaps(at, minutes, h.start, LONGEST_SLOT_MINUTES)
            });
            if held || d.occupied_sometime(at, minutes, moving) {
                Ok(())
            } else {
                Err(format!(
                    "refused as taken, but nothing durable took it: {}",
                    a.trace()
                ))
            }
        };
        match (&a.op, &a.result) {
            (
                Op::Book {
                    doctor,
                    patient,
                    at,
                },
                Err(e),
            )
            | (
                Op::Check {
                    doctor,
                    patient,
                    at,
                    ..
                },
                Err(e),
            ) if *e == EngineError::Rejected(Rejection::Conflict) => {
                conflict(*doctor, *patient, *at, None)?;
            }
            (Op::Check { doctor, at, .. }, Ok(_)) if durable[doctor].taken_all_along(*at) => {
                return Err(format!("shown free, but taken all along: {}", a.trace()));
            }
            (Op::Offer { doctor, .. }, Ok(Ack::Offered(times)))
                if times.iter().any(|t| durable[doctor].taken_all_along(*t)) =>
            {
                return Err(format!("offered, but taken all along: {}", a.trace()));
            }
            (Op::Availability { doctor }, Ok(Ack::Availability(av))) => {
                availability_rests_on_durable_state(av, &durable[doctor])
                    .map_err(|e| format!("{e}: {}", a.trace()))?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn availability_rests_on_durable_state(av: &Availability, d: &Durable) -> Result<(), String> {
    for day in &av.days {
        for s in &day.slots {
            match s.status {
                SlotStatus::Booked if !d.occupied_sometime(s.start, av.slot_minutes, None) => {
                    return Err(format!("{} shown booked, never durably taken", s.start));
                }
                SlotStatus::Available | SlotStatus::Held | SlotStatus::Full
                    if d.occupied_throughout(s.start, av.slot_minutes) =>
                {
                    return Err(format!("{} shown free, durably taken all along", s.start));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// No two active consultations of a doctor overlap, in the store and in the engine's
/// view, and the engine's view holds exactly the store's active consultations.
pub async fn no_overlaps_and_views_match(world: &World) -> Result<(), String> {
    let store: &dyn Store = world.store.as_ref();
    let all = store
        .active_consultations(None)
        .await
        .map_err(|e| e.to_string())?;
    no_overlap(
        all.iter()
            .map(|c| (c.doctor_id, c.id, c.scheduled_at, c.duration_minutes)),
    )
    .map_err(|e| format!("store: {e}"))?;
    for &doctor in &world.doctors {
        let seen = world
            .engine
            .observe(doctor)
            .await
            .map_err(|e| e.to_string())?;
        let view: Vec<Span> = seen
            .active
            .iter()
            .map(|s| (s.id, s.start, s.duration_minutes))
            .collect();
        no_overlap(view.iter().map(|(id, s, m)| (doctor, *id, *s, *m)))
            .map_err(|e| format!("engine view: {e}"))?;
        let stored = spans(store, doctor).await;
        // The engine drops consultations that ended long ago from memory (at its ticks).
        let horizon = world.now() - Duration::hours(PRUNE_AFTER_END_HOURS);
        let missing = stored
            .iter()
            .find(|s| s.1 + Duration::minutes(i64::from(s.2)) > horizon && !view.contains(s));
        let extra = view.iter().find(|s| !stored.contains(s));
        if missing.is_some() || extra.is_some() {
            return Err(format!(
                "doctor {doctor}: the engine's view lacks {missing:?} or has {extra:?} beyond the store"
            ));
        }
    }
    Ok(())
}

fn no_overlap(
    spans: impl Iterator<Item = (DoctorId, ConsultationId, DateTime<Utc>, u16)>,
) -> Result<(), String> {
    let mut sorted: Vec<_> = spans.collect();
    sorted.sort_by_key(|(d, _, s, _)| (*d, *s));
    for pair in sorted.windows(2) {
        let ((da, ia, sa, ma), (db, ib, sb, mb)) = (pair[0], pair[1]);
        if da == db && overlaps(sa, ma, sb, mb) {
            return Err(format!(
                "consultations {ia} and {ib} of doctor {da} overlap"
            ));
        }
    }
    Ok(())
}

/// The availability the engine answers equals what the rules derive from the store's
/// journal (holds aside: they live in memory only, by design).
pub async fn availability_is_derived_from_the_store(world: &World) -> Result<(), String> {
    let store: &dyn Store = world.store.as_ref();
    let rules = world.engine.settings().rules();
    for &doctor in &world.doctors {
        let profile = world
            .engine
            .doctor(doctor)
            .await
            .map_err(|e| e.to_string())?;
        let from = local_today(&profile, world.now());
        let answered = world
            .engine
            .availability(doctor, from, COMPARED_DAYS)
            .await
            .map_err(|e| e.to_string())?;
        let now = world.now();
        let history = store
            .load_doctor(doctor)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("doctor missing from the store")?;
        let mut calendar = Calendar::rebuild(history).map_err(|e| e.to_string())?;
        calendar.prune(now);
        let derived = calendar.availability(from, COMPARED_DAYS, now, &rules);
        let answered = without_holds(answered, &derived);
        if answered != derived {
            return Err(format!(
                "doctor {doctor}: availability differs from the rules over the store\n{}",
                first_difference(&answered, &derived)
            ));
        }
    }
    Ok(())
}

/// The engine's answer with each held slot shown as the store-derived answer shows it.
fn without_holds(mut answered: Availability, derived: &Availability) -> Availability {
    for (day, d) in answered.days.iter_mut().zip(&derived.days) {
        for (slot, s) in day.slots.iter_mut().zip(&d.slots) {
            if slot.status == SlotStatus::Held
                && slot.start == s.start
                && matches!(s.status, SlotStatus::Available | SlotStatus::Full)
            {
                slot.status = s.status;
            }
        }
    }
    answered
}

fn first_difference(a: &Availability, b: &Availability) -> String {
    if a.booked_slots != b.booked_slots {
        return format!(
            "booked: engine {:?}, store {:?}",
            a.booked_slots, b.booked_slots
        );
    }
    for (x, y) in a.days.iter().zip(&b.days) {
        if x != y {
            let slot = x.slots.iter().zip(&y.slots).find(|(s, t)| s != t);
            return format!(
                "{}: engine {:?} booked {} full {}, store booked {} full {}; first slot: {slot:?}",
                x.date, x.enabled, x.booked, x.full, y.booked, y.full
            );
        }
    }
    format!("engine {a:?}\nstore {b:?}")
}
