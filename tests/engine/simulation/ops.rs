//! The random operations: what a round asks of the engine, drawn from the seed and from
//! what the world holds now (the doctors' current schedules, the consultations known).

use chrono::{DateTime, Duration, DurationRound, NaiveDate, Utc};
use consult_actors::calendar::{
    day_window, local_slots, BookingPolicy, DateOverride, DayWindow, LocalTime, WeeklySchedule,
};
use consult_actors::*;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;

use super::world::TIMEZONES;

/// Patients the operations act for.
const PATIENTS: PatientId = 6;

/// Slot lengths a schedule change draws from.
const SLOT_LENGTHS: [u16; 3] = [15, 30, 60];

/// The longest of them: a hold spans the slot length of its day, which a later change
/// does not shorten.
pub const LONGEST_SLOT_MINUTES: u16 = 60;

/// One request to the engine. Rounds run several at once.
#[derive(Debug, Clone)]
pub enum Op {
    Book {
        doctor: DoctorId,
        patient: PatientId,
        at: DateTime<Utc>,
    },
    /// A multi-patient booking: every item or none.
    BookMany {
        patient: PatientId,
        items: Vec<(DoctorId, DateTime<Utc>)>,
    },
    Cancel {
        id: ConsultationId,
        by: PatientId,
    },
    Reschedule {
        id: ConsultationId,
        by: PatientId,
        to: DateTime<Utc>,
    },
    /// A check-slot, holding the slot when `hold`.
    Check {
        doctor: DoctorId,
        patient: PatientId,
        at: DateTime<Utc>,
        hold: bool,
    },
    Availability {
        doctor: DoctorId,
    },
    /// The free times offered with a 409, from `after`.
    Offer {
        doctor: DoctorId,
        patient: PatientId,
        after: DateTime<Utc>,
    },
    Schedule {
        doctor: DoctorId,
        update: Box<ScheduleUpdate>,
    },
    Status {
        doctor: DoctorId,
        available: bool,
    },
    /// The doctor's actor panics on its next message.
    Panic {
        doctor: DoctorId,
    },
}

/// What happens between two rounds.
#[derive(Debug, Clone, Copy)]
pub enum Pause {
    None,
    /// Time passes (holds expire, idle actors passivate, snapshots are written).
    Tick(std::time::Duration),
    /// The engine stops and a new one starts on the same store.
    Restart,
}

/// What the generator needs to know of the world at the start of a round.
pub struct Scene<'a> {
    pub now: DateTime<Utc>,
    pub profiles: &'a [DoctorProfile],
    /// Consultations known active, with their patient.
    pub active: &'a [(ConsultationId, PatientId, DoctorId)],
}

pub fn pause(rng: &mut StdRng) -> Pause {
    match rng.random_range(0..100) {
        0..=64 => Pause::None,
        65..=89 => Pause::Tick(std::time::Duration::from_secs(rng.random_range(1..240))),
        90..=96 => Pause::Tick(std::time::Duration::from_secs(rng.random_range(600..5400))),
        _ => Pause::Restart,
    }
}

/// One to four operations to run concurrently; cancels and moves in one round touch
/// distinct consultations.
pub fn round(rng: &mut StdRng, scene: &Scene) -> Vec<Op> {
    let n = rng.random_range(1..=4);
    let mut ops: Vec<Op> = Vec::with_capacity(n);
    let mut touched = Vec::new();
    for _ in 0..n {
        let op = op(rng, scene);
        let id = match &op {
            Op::Cancel { id, .. } | Op::Reschedule { id, .. } => Some(*id),
            _ => None,
        };
        if let Some(id) = id {
            if touched.contains(&id) {
                continue;
            }
            touched.push(id);
        }
        ops.push(op);
    }
    ops
}

fn op(rng: &mut StdRng, scene: &Scene) -> Op {
    let profile = scene.profiles.choose(rng).expect("doctors");
    let doctor = profile.id;
    let patient = rng.random_range(1..=PATIENTS);
    let known = scene.active.choose(rng).copied();
    match (rng.random_range(0..100), known) {
        (0..=29, _) => Op::Book {
            doctor,
            patient,
            at: slot(rng, profile, scene.now),
        },
        (30..=37, _) => {
            let mut items = Vec::new();
            for _ in 0..rng.random_range(2..=3) {
                let p = scene.profiles.choose(rng).expect("doctors");
                items.push((p.id, slot(rng, p, scene.now)));
            }
            Op::BookMany { patient, items }
        }
        (38..=47, Some((id, owner, _))) => Op::Cancel {
            id,
            by: if rng.random_bool(0.9) { owner } else { patient },
        },
        (48..=57, Some((id, owner, d))) => {
            let p = scene.profiles.iter().find(|p| p.id == d).unwrap_or(profile);
            Op::Reschedule {
                id,
                by: if rng.random_bool(0.9) { owner } else { patient },
                to: slot(rng, p, scene.now),
            }
        }
        (58..=71, _) => Op::Check {
            doctor,
            patient,
            at: slot(rng, profile, scene.now),
            hold: rng.random_bool(0.6),
        },
        (72..=80, _) => Op::Availability { doctor },
        (81..=85, _) => Op::Offer {
            doctor,
            patient,
            after: slot(rng, profile, scene.now) - Duration::minutes(1),
        },
        (86..=91, _) => Op::Schedule {
            doctor,
            update: Box::new(schedule(rng, profile, scene.now)),
        },
        (92..=95, _) => Op::Status {
            doctor,
            available: rng.random_bool(0.7),
        },
        (96..=99, _) => Op::Panic { doctor },
        _ => Op::Availability { doctor },
    }
}

/// The doctor's local date today.
pub fn local_today(profile: &DoctorProfile, now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&profile.timezone).date_naive()
}

/// Mostly one of the first slots of the doctor's grid in the next three local days (so
/// that operations meet), sometimes any instant on the half hour nearby.
fn slot(rng: &mut StdRng, profile: &DoctorProfile, now: DateTime<Utc>) -> DateTime<Utc> {
    let date = local_today(profile, now) + Duration::days(rng.random_range(0..3));
    let window = day_window(profile, date);
    let starts: Vec<DateTime<Utc>> =
        local_slots(date, &window, profile.slot_minutes, profile.timezone)
            .into_iter()
            .map(|(start, _)| start)
            .filter(|start| *start > now)
            .take(12)
            .collect();
    match starts.choose(rng) {
        Some(start) if rng.random_bool(0.9) => *start,
        _ => {
            let later = now + Duration::minutes(30 * rng.random_range(1..144));
            later
                .duration_trunc(Duration::minutes(30))
                .expect("a date far from the limits")
        }
    }
}

fn schedule(rng: &mut StdRng, profile: &DoctorProfile, now: DateTime<Utc>) -> ScheduleUpdate {
    let schedule = match rng.random_range(0..3) {
        0 => WeeklySchedule::every_day(DayWindow::open(LocalTime::hm(0, 0), LocalTime::END_OF_DAY)),
        1 => WeeklySchedule::every_day(DayWindow::open(LocalTime::hm(6, 0), LocalTime::hm(22, 0))),
        _ => WeeklySchedule::weekdays(LocalTime::hm(9, 0), LocalTime::hm(17, 0)),
    };
    let date_overrides = rng.random_bool(0.3).then(|| {
        let tomorrow = local_today(profile, now) + Duration::days(1);
        [(tomorrow, DateOverride::closed())].into_iter().collect()
    });
    let policy = rng.random_bool(0.4).then(|| BookingPolicy {
        min_notice_minutes: *[0, 30, 120].choose(rng).expect("choices"),
        booking_window_days: rng.random_bool(0.5).then_some(2),
        max_per_day: rng.random_bool(0.5).then(|| rng.random_range(2..6)),
    });
    ScheduleUpdate {
        timezone: rng
            .random_bool(0.15)
            .then(|| *TIMEZONES.choose(rng).expect("timezones")),
        slot_minutes: rng
            .random_bool(0.2)
            .then(|| *SLOT_LENGTHS.choose(rng).expect("choices")),
        schedule,
        date_overrides,
        policy,
    }
}
