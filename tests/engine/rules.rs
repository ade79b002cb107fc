//! The booking rules as seen through the engine: holds with an injected clock, the seed's
//! rejections, schedule changes, availability and input bounds.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use consult_actors::calendar::{DayWindow, LocalTime, SlotStatus, WeeklySchedule};
use consult_actors::feed::ChangeKind;
use consult_actors::*;

use crate::helpers::*;

async fn a_hold_blocks_other_patients_until_it_expires_and_the_holder_books_it(b: &Backend) {
    // Monday 2030-01-07 08:00 UTC.
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2030, 1, 7, 8, 0, 0).unwrap());
    let engine = Engine::builder(b.store.clone())
        .settings(settings())
        .clock(Arc::new(clock.clone()))
        .start()
        .await
        .unwrap();
    let doctor = engine
        .create_doctor(weekday_doctor("Dr. Hold", chrono_tz::UTC))
        .await
        .unwrap();
    let at = Utc.with_ymd_and_hms(2030, 1, 7, 10, 0, 0).unwrap();
    let held = engine.check_slot(doctor.id, 1, at, true).await.unwrap();
    assert_eq!(held.held_until, Some(clock.now() + Duration::seconds(300)));
    assert_eq!(
        engine
            .check_slot(doctor.id, 2, at, false)
            .await
            .unwrap_err(),
        EngineError::Rejected(Rejection::Conflict)
    );
    assert_eq!(
        engine.book(booking(doctor.id, 2, at)).await.unwrap_err(),
        EngineError::Rejected(Rejection::Conflict)
    );
    let day = engine
        .availability(doctor.id, at.date_naive(), 1)
        .await
        .unwrap();
    let view = day.days[0].slots.iter().find(|s| s.start == at).unwrap();
    assert_eq!(view.status, SlotStatus::Held);

    clock.advance(Duration::seconds(301));
    engine
        .check_slot(doctor.id, 2, at, false)
        .await
        .expect("expired hold frees the slot");

    // The holder's booking consumes a live hold.
    engine.check_slot(doctor.id, 1, at, true).await.unwrap();
    engine.book(booking(doctor.id, 1, at)).await.unwrap();
    assert!(engine
        .observe(doctor.id)
        .await
        .unwrap()
        .live_holds
        .is_empty());
    engine.shutdown().await;
}

async fn a_booking_over_an_expired_hold_is_never_announced_as_free_when_the_hold_is_swept(
    b: &Backend,
) {
    // The expired hold stays stored until a tick sweeps it; another patient books the start
    // meanwhile. The sweep must not tell the live stream that the (booked) slot is free:
    // the booking UI showed a just-booked time as available again after a 409 this way.
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2030, 1, 7, 8, 0, 0).unwrap());
    let engine = Engine::builder(b.store.clone())
        .settings(EngineSettings {
            tick_interval_ms: 400,
            ..settings()
        })
        .clock(Arc::new(clock.clone()))
        .start()
        .await
        .unwrap();
    let doctor = engine
        .create_doctor(weekday_doctor("Dr. Sweep", chrono_tz::UTC))
        .await
        .unwrap();
    let at = Utc.with_ymd_and_hms(2030, 1, 7, 10, 0, 0).unwrap();
    let mut feed = engine.subscribe(doctor.id, None).await.unwrap();
    engine.check_slot(doctor.id, 1, at, true).await.unwrap();
    clock.advance(Duration::seconds(301));
    engine.book(booking(doctor.id, 2, at)).await.unwrap();
    // Every tick after this (two at least) has had its chance to sweep.
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    let mut changes = Vec::new();
    while let Ok(change) = feed.receiver.try_recv() {
        changes.push((change.kind, change.start));
    }
    let booked = changes
        .iter()
        .position(|c| *c == (ChangeKind::Booked, Some(at)))
        .unwrap_or_else(|| panic!("no booking in {changes:?}"));
    assert!(
        !changes[booked..].contains(&(ChangeKind::Released, Some(at))),
        "the booked start was announced as released: {changes:?}"
    );
    let day = engine
        .availability(doctor.id, at.date_naive(), 1)
        .await
        .unwrap();
    let view = day.days[0].slots.iter().find(|s| s.start == at).unwrap();
    assert_eq!(view.status, SlotStatus::Booked);
    engine.shutdown().await;
}

async fn each_rule_rejects_with_its_own_reason_in_the_seed_order(b: &Backend) {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2030, 1, 7, 8, 0, 0).unwrap());
    let engine = Engine::builder(b.store.clone())
        .settings(EngineSettings {
            min_notice_minutes: 60,
            ..settings()
        })
        .clock(Arc::new(clock.clone()))
        .start()
        .await
        .unwrap();
    let doctor = engine
        .create_doctor(weekday_doctor("Dr. Rules", chrono_tz::Asia::Kolkata))
        .await
        .unwrap();
    let ist = |d, h, m| {
        chrono_tz::Asia::Kolkata
            .with_ymd_and_hms(2030, 1, d, h, m, 0)
            .unwrap()
            .with_timezone(&Utc)
    };
    let reject = |r| EngineError::Rejected(r);
    let cases = [
        (ist(12, 10, 0), Rejection::DayUnavailable), // Saturday
        (ist(8, 8, 30), Rejection::OutsideAvailability), // before 09:00
        (ist(8, 17, 0), Rejection::OutsideAvailability), // would end after 17:00
        (ist(8, 10, 15), Rejection::OffSlotGrid),
        (ist(7, 14, 0), Rejection::InPast), // 08:30 UTC, inside the 60-minute notice
        (ist(7, 9, 0), Rejection::InPast),
    ];
    for (at, expected) in cases {
        assert_eq!(
            engine.book(booking(doctor.id, 1, at)).await.unwrap_err(),
            reject(expected),
            "{at}"
        );
    }
    engine
        .book(booking(doctor.id, 1, ist(8, 10, 0)))
        .await
        .unwrap();
    for minutes in [-29, 0, 29] {
        let at = ist(8, 10, 0) + Duration::minutes(minutes);
        let err = engine
            .check_slot(doctor.id, 2, at, false)
            .await
            .unwrap_err();
        assert!(
            matches!(err, EngineError::Rejected(_)),
            "{minutes}: {err:?}"
        );
    }
    engine
        .check_slot(doctor.id, 2, ist(8, 10, 30), false)
        .await
        .expect("next slot is free");
    engine
        .set_status(
            doctor.id,
            StatusUpdate {
                is_available: None,
                is_approved: Some(false),
            },
        )
        .await
        .unwrap();
    // Unapproved beats every later rule.
    assert_eq!(
        engine
            .book(booking(doctor.id, 1, ist(12, 10, 0)))
            .await
            .unwrap_err(),
        reject(Rejection::DoctorUnavailable)
    );
    engine.shutdown().await;
}

async fn a_schedule_change_applies_to_new_bookings_and_keeps_existing_ones(b: &Backend) {
    let engine = start(b.store.clone()).await;
    let doctor = engine
        .create_doctor(open_doctor("Dr. Move", chrono_tz::UTC))
        .await
        .unwrap();
    let c = engine.book(booking(doctor.id, 1, slot(2))).await.unwrap();
    let closed = WeeklySchedule::every_day(DayWindow::closed());
    let bad = engine
        .update_schedule(
            doctor.id,
            ScheduleUpdate {
                date_overrides: None,
                policy: None,
                timezone: None,
                slot_minutes: Some(3),
                schedule: closed,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(bad, EngineError::Invalid(ref f) if f.field == "slot_minutes"));
    let profile = engine
        .update_schedule(
            doctor.id,
            ScheduleUpdate {
                date_overrides: None,
                policy: None,
                timezone: Some(chrono_tz::Australia::Sydney),
                slot_minutes: Some(60),
                schedule: closed,
            },
        )
        .await
        .unwrap();
    assert_eq!(profile.slot_minutes, 60);
    assert_eq!(
        engine
            .book(booking(doctor.id, 2, slot(10)))
            .await
            .unwrap_err(),
        EngineError::Rejected(Rejection::DayUnavailable)
    );
    let kept = engine.observe(doctor.id).await.unwrap();
    assert_eq!(kept.active.len(), 1);
    assert_eq!(kept.active[0].id, c.id);
    assert_eq!(engine.doctor(doctor.id).await.unwrap(), profile);
    let listed = engine.list_doctors().await.unwrap();
    assert_eq!(
        listed
            .iter()
            .find(|d| d.id == doctor.id)
            .unwrap()
            .slot_minutes,
        60
    );
    engine.shutdown().await;
}

async fn availability_shows_booked_slots_and_bounds_its_range(b: &Backend) {
    let engine = start(b.store.clone()).await;
    let doctor = engine
        .create_doctor(open_doctor("Dr. View", chrono_tz::UTC))
        .await
        .unwrap();
    let at = slot(5);
    engine.book(booking(doctor.id, 1, at)).await.unwrap();
    let a = engine
        .availability(doctor.id, at.date_naive(), 1)
        .await
        .unwrap();
    assert_eq!(a.days.len(), 1);
    assert_eq!(a.days[0].slots.len(), 48);
    assert_eq!(a.booked_slots, vec![at]);
    let view = a.days[0].slots.iter().find(|s| s.start == at).unwrap();
    assert_eq!(view.status, SlotStatus::Booked);
    for days in [0, 63] {
        let err = engine
            .availability(doctor.id, at.date_naive(), days)
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::Invalid(ref f) if f.field == "days"));
    }
    assert_eq!(
        engine
            .availability(doctor.id, at.date_naive(), 62)
            .await
            .unwrap()
            .days
            .len(),
        62
    );
    assert_eq!(
        engine
            .availability(999_999, at.date_naive(), 1)
            .await
            .unwrap_err(),
        EngineError::DoctorNotFound
    );
    engine.shutdown().await;
}

async fn bad_input_is_refused_before_it_reaches_an_actor(b: &Backend) {
    let engine = start(b.store.clone()).await;
    let mut d = open_doctor("  ", chrono_tz::UTC);
    assert!(matches!(
        engine.create_doctor(d.clone()).await.unwrap_err(),
        EngineError::Invalid(ref f) if f.field == "name"
    ));
    // Control characters: a NUL cannot be stored in Postgres text; none reaches the store.
    for bad in ["Dr.\0Nul", "Dr.\nTwo lines", "Dr.\u{1b}[31m"] {
        assert!(matches!(
            engine.create_doctor(open_doctor(bad, chrono_tz::UTC)).await.unwrap_err(),
            EngineError::Invalid(ref f) if f.field == "name"
        ));
    }
    d.name = "Dr. Valid".into();
    d.schedule.monday = DayWindow::open(LocalTime::hm(12, 0), LocalTime::hm(11, 0));
    assert!(matches!(
        engine.create_doctor(d).await.unwrap_err(),
        EngineError::Invalid(ref f) if f.field.starts_with("availability_schedule.monday")
    ));
    let doctor = engine
        .create_doctor(open_doctor("Dr. Ok", chrono_tz::UTC))
        .await
        .unwrap();
    let mut req = booking(doctor.id, 1, slot(1));
    req.medical.symptoms = Some("é".repeat(2001));
    assert!(matches!(
        engine.book(req).await.unwrap_err(),
        EngineError::Invalid(ref f) if f.field == "symptoms"
    ));
    let mut req = booking(doctor.id, 1, slot(1));
    req.medical.allergies = Some("pollen\0".into());
    assert!(matches!(
        engine.book(req).await.unwrap_err(),
        EngineError::Invalid(ref f) if f.field == "allergies"
    ));
    // Free text may span lines.
    let mut req = booking(doctor.id, 1, slot(1));
    req.medical.reason = Some("Fever\tsince Tuesday\r\nand a cough".into());
    engine.book(req).await.unwrap();
    assert_eq!(
        engine.cancel(424_242, Requester::Admin).await.unwrap_err(),
        EngineError::ConsultationNotFound(424_242)
    );
    engine.shutdown().await;
    engine.shutdown().await; // idempotent
    assert!(matches!(
        engine
            .book(booking(doctor.id, 1, slot(1)))
            .await
            .unwrap_err(),
        EngineError::Unavailable(_)
    ));
}

crate::on_every_backend!(
    a_hold_blocks_other_patients_until_it_expires_and_the_holder_books_it,
    a_booking_over_an_expired_hold_is_never_announced_as_free_when_the_hold_is_swept,
    each_rule_rejects_with_its_own_reason_in_the_seed_order,
    a_schedule_change_applies_to_new_bookings_and_keeps_existing_ones,
    availability_shows_booked_slots_and_bounds_its_range,
    bad_input_is_refused_before_it_reaches_an_actor,
);
