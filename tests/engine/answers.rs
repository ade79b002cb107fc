//! Kept availability answers (`Engine::availability_encoded`) against answers rebuilt from
//! the calendar: byte for byte equal after random bookings, cancellations, holds, schedule
//! and status changes and clock moves. The cache lives beside the actor's view whatever
//! the store, so this runs on the in-memory store.

use std::sync::Arc;

use axum::body::Bytes;
use chrono::{Duration, DurationRound, NaiveDate, TimeZone, Utc};
use consult_actors::calendar::{Availability, BookingPolicy, DayWindow, LocalTime, WeeklySchedule};
use consult_actors::memory::MemoryStore;
use consult_actors::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::helpers::*;

/// The encoding the kept-answer tests use: the answer as JSON.
pub fn encode(a: &Availability) -> Bytes {
    Bytes::from(serde_json::to_vec(a).expect("availability serializes"))
}

/// A random schedule change: weekly hours, a notice, a booking window and a daily cap.
fn random_schedule(rng: &mut SmallRng) -> ScheduleUpdate {
    let schedule = if rng.random_bool(0.5) {
        WeeklySchedule::every_day(DayWindow::open(LocalTime::hm(0, 0), LocalTime::END_OF_DAY))
    } else {
        WeeklySchedule::weekdays(LocalTime::hm(9, 0), LocalTime::hm(17, 0))
    };
    ScheduleUpdate {
        timezone: None,
        slot_minutes: None,
        schedule,
        date_overrides: None,
        policy: Some(BookingPolicy {
            min_notice_minutes: [0, 45, 600][rng.random_range(0..3)],
            booking_window_days: [None, Some(1), Some(2)][rng.random_range(0..3)],
            max_per_day: [None, Some(2), Some(5)][rng.random_range(0..3)],
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_availability_answers_equal_rebuilt_ones_after_random_changes() {
    // Friday 2030-03-08 22:10 UTC: New York's DST starts in two days.
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2030, 3, 8, 22, 10, 0).unwrap());
    let engine = Engine::builder(Arc::new(MemoryStore::default()))
        // No ticks: nothing but the steps below changes a calendar between two reads.
        .settings(EngineSettings {
            tick_interval_ms: 3_600_000,
            ..settings()
        })
        .clock(Arc::new(clock.clone()))
        .start()
        .await
        .unwrap();
    let mut rng = SmallRng::seed_from_u64(14);
    let mut doctors = Vec::new();
    for tz in [chrono_tz::UTC, chrono_tz::America::New_York] {
        doctors.push(
            engine
                .create_doctor(open_doctor("Dr. Kept", tz))
                .await
                .unwrap()
                .id,
        );
    }
    for &doctor in &doctors {
        // Activates the actor, so every read below is served from its view.
        engine.doctor(doctor).await.unwrap();
    }
    let mut booked: Vec<ConsultationId> = Vec::new();
    let mut reused = 0;
    for step in 0..1_500 {
        let doctor = doctors[rng.random_range(0..doctors.len())];
        let now = clock.now();
        let at = (now + Duration::minutes(30 * rng.random_range(0..150)))
            .duration_trunc(Duration::minutes(30))
            .unwrap();
        let patient = rng.random_range(1..=6);
        match rng.random_range(0..100) {
            0..=34 => {
                if let Ok(c) = engine.book(booking(doctor, patient, at)).await {
                    booked.push(c.id);
                }
            }
            35..=49 if !booked.is_empty() => {
                let id = booked.swap_remove(rng.random_range(0..booked.len()));
                let _ = engine.cancel(id, Requester::Admin).await;
            }
            50..=69 => {
                let _ = engine.check_slot(doctor, patient, at, true).await;
            }
            70..=74 => {
                let _ = engine.release_hold(doctor, patient).await;
            }
            75..=79 => {
                let _ = engine
                    .update_schedule(doctor, random_schedule(&mut rng))
                    .await;
            }
            80..=82 => {
                let on = rng.random_bool(0.7);
                let status = StatusUpdate {
                    is_available: Some(on),
                    is_approved: None,
                };
                let _ = engine.set_status(doctor, status).await;
            }
            _ => clock.advance(Duration::seconds(rng.random_range(0..2_400))),
        }
        for _ in 0..4 {
            let today = clock.now().date_naive();
            let from: NaiveDate = today + Duration::days(rng.random_range(-1..4));
            let days = rng.random_range(1..=2);
            let kept = engine
                .availability_encoded(doctor, from, days, encode)
                .await
                .unwrap();
            let again = engine
                .availability_encoded(doctor, from, days, encode)
                .await
                .unwrap();
            let rebuilt = engine.availability(doctor, from, days).await.unwrap();
            assert_eq!(kept.body, encode(&rebuilt), "step {step}: {from} + {days}");
            assert_eq!(kept.bookable, rebuilt.bookable, "step {step}");
            assert_eq!(again, kept, "step {step}");
            if again.body.as_ptr() == kept.body.as_ptr() {
                reused += 1;
            }
        }
    }
    // The second of two reads with nothing changed between them is the kept answer.
    assert_eq!(reused, 1_500 * 4);
    engine.shutdown().await;
}
