//! Real races: many tasks booking at once, then the invariant checked on the durable store.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration as StdDuration;

use chrono::Duration;
use consult_actors::*;
use futures::future::join_all;
use rand::{Rng, SeedableRng};

use crate::helpers::*;

async fn one_thousand_concurrent_bookings_of_one_slot_yield_exactly_one(b: &Backend) {
    let engine = start(b.store.clone()).await;
    let doctor = engine
        .create_doctor(open_doctor("Dr. Hot", chrono_tz::UTC))
        .await
        .unwrap();
    let at = slot(3);
    let tasks = (0..1000).map(|patient| {
        let engine = engine.clone();
        tokio::spawn(async move { engine.book(booking(doctor.id, patient, at)).await })
    });
    let results: Vec<_> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let wins: Vec<&Consultation> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(wins.len(), 1, "exactly one booking succeeds");
    for r in &results {
        if let Err(e) = r {
            assert_eq!(*e, EngineError::Rejected(Rejection::Conflict));
        }
    }
    let active = b.store.active_consultations(Some(doctor.id)).await.unwrap();
    assert_eq!(active.len(), 1, "the store holds exactly one active row");
    assert_eq!(active[0].id, wins[0].id);
    assert_eq!(active[0].scheduled_at, at);
    engine.shutdown().await;
}

async fn ten_thousand_concurrent_random_bookings_over_100_doctors_are_durable_and_never_overlap(
    b: &Backend,
) {
    let engine = start(b.store.clone()).await;
    let mut doctors = Vec::new();
    for i in 0..100 {
        // A third of the doctors work weekdays only, so weekend picks are rule rejections.
        let new = if i % 3 == 0 {
            weekday_doctor(&format!("Dr. {i}"), chrono_tz::Europe::London)
        } else {
            open_doctor(&format!("Dr. {i}"), chrono_tz::UTC)
        };
        doctors.push(engine.create_doctor(new).await.unwrap());
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let requests: Vec<BookingRequest> = (0..10_000)
        .map(|patient| {
            let doctor = &doctors[rng.random_range(0..doctors.len())];
            let mut at = slot(rng.random_range(0..7 * 48));
            if rng.random_ratio(1, 20) {
                at += Duration::minutes(10); // off the grid
            }
            booking(doctor.id, patient, at)
        })
        .collect();
    let tasks = requests.into_iter().map(|req| {
        let engine = engine.clone();
        tokio::spawn(async move { engine.book(req).await })
    });
    let mut acked = HashSet::new();
    let (mut conflicts, mut rule_rejections) = (0, 0);
    for r in join_all(tasks).await {
        match r.expect("task") {
            Ok(c) => assert!(acked.insert(c.id), "one id per booking"),
            Err(EngineError::Rejected(Rejection::Conflict)) => conflicts += 1,
            Err(EngineError::Rejected(_)) => rule_rejections += 1,
            Err(other) => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(conflicts > 0 && rule_rejections > 0 && acked.len() > 5_000);
    let active = b.store.active_consultations(None).await.unwrap();
    let stored: HashSet<_> = active.iter().map(|c| c.id).collect();
    assert_eq!(
        stored, acked,
        "the store holds exactly the acknowledged bookings"
    );
    assert_no_overlaps(&active);
    engine.shutdown().await;
}

async fn concurrent_first_messages_activate_a_doctor_exactly_once(b: &Backend) {
    let store = FaultyStore::wrap(b.store.clone());
    let engine = start(store.clone()).await;
    let doctor = engine
        .create_doctor(open_doctor("Dr. Cold", chrono_tz::UTC))
        .await
        .unwrap();
    assert!(!engine.is_active(doctor.id));
    let tasks = (0..500).map(|i| {
        let engine = engine.clone();
        tokio::spawn(async move {
            if i % 2 == 0 {
                engine.doctor(doctor.id).await.map(|_| ())
            } else {
                engine
                    .check_slot(doctor.id, i, slot(1), false)
                    .await
                    .map(|_| ())
            }
        })
    });
    for r in join_all(tasks).await {
        r.expect("task").expect("every first message is answered");
    }
    assert_eq!(
        store.loads.load(Ordering::SeqCst),
        1,
        "one load from the store"
    );
    assert_eq!(engine.stats().activations, 1, "one activation");
    assert!(engine.is_active(doctor.id));
    engine.shutdown().await;
}

async fn an_overloaded_shard_answers_overloaded_at_once_and_books_nothing_extra(b: &Backend) {
    let settings = EngineSettings {
        shards: 1,
        max_in_flight_per_shard: 8,
        ..settings()
    };
    let engine = Engine::start(settings, b.store.clone()).await.unwrap();
    let doctor = engine
        .create_doctor(open_doctor("Dr. Busy", chrono_tz::UTC))
        .await
        .unwrap();
    let tasks = (0..400).map(|i| {
        let engine = engine.clone();
        tokio::spawn(async move { engine.book(booking(doctor.id, i, slot(i))).await })
    });
    let results: Vec<_> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let acked: HashSet<_> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|c| c.id)
        .collect();
    let overloaded = results
        .iter()
        .filter(|r| matches!(r, Err(EngineError::Overloaded)))
        .count();
    assert!(
        overloaded > 0,
        "admission refused some of 400 calls with 8 permits"
    );
    assert_eq!(acked.len() + overloaded, 400, "everything else was booked");
    assert_eq!(active_ids(b.store.as_ref(), doctor.id).await, acked);
    assert_eq!(engine.stats().overloaded as usize, overloaded);
    engine.shutdown().await;
}

async fn passivation_under_concurrent_messages_loses_nothing(b: &Backend) {
    let settings = EngineSettings {
        passivate_after_idle_ms: 25,
        tick_interval_ms: 5,
        ..settings()
    };
    let engine = Engine::start(settings, b.store.clone()).await.unwrap();
    let doctor = engine
        .create_doctor(open_doctor("Dr. Sleepy", chrono_tz::UTC))
        .await
        .unwrap();
    // 30 rounds of 16 concurrent clients. Each client waits 0-40 ms into its round, so the
    // gaps between rounds straddle the 25 ms idle limit: some rounds find the actor active,
    // some find it draining, some passivated. Every fifth round first waits until it has
    // passivated, so that case is certain to be exercised.
    let mut acked = HashSet::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for round in 0..30i64 {
        if round % 5 == 4 {
            let idle = eventually(StdDuration::from_secs(5), || !engine.is_active(doctor.id)).await;
            assert!(idle, "the idle actor passivates");
        }
        let tasks: Vec<_> = (0..16i64)
            .map(|client| {
                let engine = engine.clone();
                let pause = StdDuration::from_millis(rng.random_range(0..40));
                let at = slot(round * 16 + client);
                tokio::spawn(async move {
                    tokio::time::sleep(pause).await;
                    engine.book(booking(doctor.id, client, at)).await
                })
            })
            .collect();
        for r in join_all(tasks).await {
            let c = r
                .unwrap()
                .expect("no message is lost or refused around passivation");
            acked.insert(c.id);
        }
    }
    assert_eq!(acked.len(), 16 * 30);
    let stats = engine.stats();
    assert!(stats.passivations >= 1, "the actor passivated: {stats:?}");
    assert!(stats.activations >= 2, "and was reactivated: {stats:?}");
    assert_eq!(active_ids(b.store.as_ref(), doctor.id).await, acked);
    // Idle now: it passivates, and comes back with every booking on the next message.
    let passivated = eventually(StdDuration::from_secs(5), || !engine.is_active(doctor.id)).await;
    assert!(passivated);
    let seen = engine.observe(doctor.id).await.unwrap();
    assert_eq!(seen.active.len(), 16 * 30);
    engine.shutdown().await;
}

async fn idle_doctors_are_not_ticked_and_a_doctor_with_a_hold_is_ticked_until_it_expires(
    b: &Backend,
) {
    // Idle doctors would be ticked every 30 s (a tenth of passivation's 5 min), and no
    // snapshot round comes within the test: any tick seen is one a doctor asked for.
    let settings = EngineSettings {
        tick_interval_ms: 5,
        snapshot_interval_ms: 600_000,
        passivate_after_idle_ms: 300_000,
        hold_ttl_s: 1,
        ..settings()
    };
    assert_eq!(settings.idle_tick_every(), 6_000);
    let engine = Engine::start(settings, b.store.clone()).await.unwrap();
    let mut doctors = Vec::new();
    for i in 0..20 {
        let doctor = engine
            .create_doctor(open_doctor(&format!("Dr. Quiet {i}"), chrono_tz::UTC))
            .await
            .unwrap();
        engine.book(booking(doctor.id, 1, slot(0))).await.unwrap();
        doctors.push(doctor.id);
    }
    // 20 active doctors, all quiet: 60 tick intervals pass with no tick sent.
    let before = engine.stats().doctor_ticks;
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert_eq!(
        engine.stats().doctor_ticks,
        before,
        "no quiet doctor is ticked"
    );
    // A hold: that doctor is ticked every interval until the hold expires and is swept.
    let held = engine
        .check_slot(doctors[0], 2, slot(1), true)
        .await
        .unwrap();
    assert!(held.held_until.is_some());
    let ticked = eventually(StdDuration::from_secs(10), || {
        engine.stats().doctor_ticks >= before + 20
    })
    .await;
    assert!(ticked, "the doctor holding a slot is ticked");
    let mut last = engine.stats().doctor_ticks;
    let mut quiet_for = 0;
    let stopped = eventually(StdDuration::from_secs(10), || {
        let now = engine.stats().doctor_ticks;
        quiet_for = if now == last { quiet_for + 1 } else { 0 };
        last = now;
        quiet_for >= 40
    })
    .await;
    assert!(stopped, "the ticks stop once the hold is swept");
    let seen = engine.observe(doctors[0]).await.unwrap();
    assert!(seen.live_holds.is_empty());
    assert!(
        engine
            .check_slot(doctors[0], 3, slot(1), false)
            .await
            .is_ok(),
        "the slot is free again"
    );
    engine.shutdown().await;
}

async fn a_panicking_actor_restarts_from_the_store_and_callers_never_get_a_wrong_answer(
    b: &Backend,
) {
    let engine = start(b.store.clone()).await;
    let doctor = engine
        .create_doctor(open_doctor("Dr. Fragile", chrono_tz::UTC))
        .await
        .unwrap();
    for i in 0..20 {
        engine.book(booking(doctor.id, i, slot(i))).await.unwrap();
    }
    let engine2 = engine.clone();
    let tasks: Vec<_> = (20..220)
        .map(|i| {
            let engine = engine.clone();
            // Every other request goes for a slot that is already taken.
            let at = if i % 2 == 0 { slot(i) } else { slot(i % 20) };
            tokio::spawn(async move { (at, engine.book(booking(doctor.id, i, at)).await) })
        })
        .collect();
    engine2.inject_panic(doctor.id).await.unwrap();
    let mut acked = HashSet::new();
    for r in join_all(tasks).await {
        let (at, result) = r.unwrap();
        match result {
            Ok(c) => {
                assert!(at >= slot(20), "a taken slot was never granted");
                acked.insert(c.id);
            }
            Err(EngineError::Rejected(Rejection::Conflict)) => {}
            Err(e) => assert!(e.is_retryable(), "only errors, never a wrong answer: {e:?}"),
        }
    }
    assert!(
        eventually(StdDuration::from_secs(5), || engine.stats().actor_failures
            == 1)
        .await,
        "the panic was seen by the supervisor"
    );
    let active = b.store.active_consultations(Some(doctor.id)).await.unwrap();
    assert_eq!(
        active.len(),
        20 + acked.len(),
        "every acknowledged booking is stored"
    );
    assert!(acked.iter().all(|id| active.iter().any(|c| c.id == *id)));
    // The restarted actor agrees with the store.
    let seen = engine.observe(doctor.id).await.unwrap();
    let in_memory: HashSet<_> = seen.active.iter().map(|s| s.id).collect();
    let stored: HashSet<_> = active.iter().map(|c| c.id).collect();
    assert_eq!(in_memory, stored);
    assert_eq!(
        engine
            .book(booking(doctor.id, 999, slot(0)))
            .await
            .unwrap_err(),
        EngineError::Rejected(Rejection::Conflict)
    );
    engine.shutdown().await;
}

crate::on_every_backend!(
    one_thousand_concurrent_bookings_of_one_slot_yield_exactly_one,
    ten_thousand_concurrent_random_bookings_over_100_doctors_are_durable_and_never_overlap,
    concurrent_first_messages_activate_a_doctor_exactly_once,
    an_overloaded_shard_answers_overloaded_at_once_and_books_nothing_extra,
    passivation_under_concurrent_messages_loses_nothing,
    idle_doctors_are_not_ticked_and_a_doctor_with_a_hold_is_ticked_until_it_expires,
    a_panicking_actor_restarts_from_the_store_and_callers_never_get_a_wrong_answer,
);
