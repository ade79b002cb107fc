//! The per-doctor policy under real races: the daily cap and the booking window are decided
//! by the doctor's actor, so concurrent requests can never get past them; and the schedule
//! exceptions survive a restart.

use chrono::{Duration, DurationRound, Utc};
use consult_actors::calendar::{
    BookingPolicy, Break, DateOverride, DateOverrides, LocalTime, WeeklySchedule,
};
use consult_actors::*;
use futures::future::join_all;

use crate::helpers::*;

/// Sets `policy` (and `overrides`, if given) on the doctor, keeping the rest.
async fn set_policy(
    engine: &Engine,
    doctor: &DoctorProfile,
    policy: BookingPolicy,
    overrides: Option<DateOverrides>,
    schedule: WeeklySchedule,
) -> DoctorProfile {
    engine
        .update_schedule(
            doctor.id,
            ScheduleUpdate {
                timezone: None,
                slot_minutes: None,
                schedule,
                date_overrides: overrides,
                policy: Some(policy),
            },
        )
        .await
        .expect("valid policy")
}

async fn two_hundred_concurrent_bookings_on_a_day_capped_at_five_store_exactly_five(b: &Backend) {
    let engine = start(b.store.clone()).await;
    let doctor = engine
        .create_doctor(NewDoctor {
            slot_minutes: 5,
            ..open_doctor("Dr. Cap", chrono_tz::UTC)
        })
        .await
        .unwrap();
    let policy = BookingPolicy {
        max_per_day: Some(5),
        ..BookingPolicy::default()
    };
    set_policy(&engine, &doctor, policy, None, doctor.schedule).await;
    // Two days ahead, 200 distinct 5-minute slots of one UTC day.
    let day = (Utc::now() + Duration::days(2))
        .duration_trunc(Duration::days(1))
        .unwrap();
    let tasks = (0..200).map(|i| {
        let engine = engine.clone();
        let at = day + Duration::minutes(5 * i);
        tokio::spawn(async move { engine.book(booking(doctor.id, 1000 + i, at)).await })
    });
    let results: Vec<_> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 5, "exactly the cap is booked");
    for r in &results {
        if let Err(e) = r {
            assert_eq!(*e, EngineError::Rejected(Rejection::DayFull));
        }
    }
    let active = b.store.active_consultations(Some(doctor.id)).await.unwrap();
    assert_eq!(active.len(), 5, "the store holds exactly five");
    assert!(active
        .iter()
        .all(|c| c.scheduled_at.date_naive() == day.date_naive()));
    // The next day is not affected.
    engine
        .book(booking(doctor.id, 1, day + Duration::days(1)))
        .await
        .expect("another day has room");
    engine.shutdown().await;
}

async fn two_hundred_racing_requests_around_the_booking_window_book_only_inside_it(b: &Backend) {
    let engine = start(b.store.clone()).await;
    let doctor = engine
        .create_doctor(open_doctor("Dr. Window", chrono_tz::UTC))
        .await
        .unwrap();
    let policy = BookingPolicy {
        booking_window_days: Some(2),
        ..BookingPolicy::default()
    };
    set_policy(&engine, &doctor, policy, None, doctor.schedule).await;
    let boundary = Utc::now() + Duration::days(2);
    // 200 distinct 30-minute slots from tomorrow on: about 100 hours, half past the window.
    // Slots within an hour of the boundary are left out (the clock moves during the test).
    let starts: Vec<_> = (0..260)
        .map(slot)
        .filter(|s| (*s - boundary).num_minutes().abs() > 60)
        .take(200)
        .collect();
    assert_eq!(starts.len(), 200);
    let tasks = starts.iter().enumerate().map(|(i, at)| {
        let engine = engine.clone();
        let at = *at;
        tokio::spawn(async move { (at, engine.book(booking(doctor.id, i as i64, at)).await) })
    });
    let results: Vec<_> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let mut inside = 0;
    for (at, r) in &results {
        if *at < boundary {
            inside += 1;
            assert!(r.is_ok(), "{at} is inside the window: {r:?}");
        } else {
            assert_eq!(
                r.as_ref().unwrap_err(),
                &EngineError::Rejected(Rejection::OutsideBookingWindow),
                "{at}"
            );
        }
    }
    assert!(inside > 0 && inside < 200);
    let active = b.store.active_consultations(Some(doctor.id)).await.unwrap();
    assert_eq!(active.len(), inside);
    assert!(active.iter().all(|c| c.scheduled_at < boundary));
    engine.shutdown().await;
}

async fn breaks_overrides_and_policy_survive_a_restart_and_keep_deciding(b: &Backend) {
    let engine = start(b.store.clone()).await;
    let doctor = engine
        .create_doctor(open_doctor("Dr. Durable", chrono_tz::Europe::Berlin))
        .await
        .unwrap();
    let berlin_day = (Utc::now() + Duration::days(3))
        .with_timezone(&chrono_tz::Europe::Berlin)
        .date_naive();
    let mut schedule = doctor.schedule;
    schedule.monday = schedule
        .monday
        .with_breaks(&[Break::new(LocalTime::hm(12, 0), LocalTime::hm(13, 0))]);
    let overrides: DateOverrides = [(berlin_day, DateOverride::closed())].into_iter().collect();
    let policy = BookingPolicy {
        min_notice_minutes: 120,
        booking_window_days: Some(30),
        max_per_day: Some(3),
    };
    let before = set_policy(&engine, &doctor, policy, Some(overrides), schedule).await;
    // Wait (with a deadline) for a snapshot of the new format, so the restart loads it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let history = b.store.load_doctor(doctor.id).await.unwrap().unwrap();
        if history.snapshot.is_some_and(|s| s.seq >= 2) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no snapshot written"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    engine.shutdown().await;

    let engine = start(b.reopen().await).await;
    let after = engine.doctor(doctor.id).await.unwrap();
    assert_eq!(after, before);
    let listed = b
        .reopen()
        .await
        .list_doctors()
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.id == doctor.id)
        .unwrap();
    assert_eq!(listed, before, "the doctors row holds the same");
    let noon = berlin_day
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_local_timezone(chrono_tz::Europe::Berlin)
        .single()
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(
        engine.book(booking(doctor.id, 1, noon)).await.unwrap_err(),
        EngineError::Rejected(Rejection::DayUnavailable)
    );
    engine.shutdown().await;
}

crate::on_every_backend!(
    two_hundred_concurrent_bookings_on_a_day_capped_at_five_store_exactly_five,
    two_hundred_racing_requests_around_the_booking_window_book_only_inside_it,
    breaks_overrides_and_policy_survive_a_restart_and_keep_deciding,
);
