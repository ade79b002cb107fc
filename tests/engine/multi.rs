//! Multi-patient bookings through the engine: all or nothing under real races with single
//! bookings, under a failing store, and with doctor actors panicking meanwhile; checked on
//! the durable store.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;

use chrono::DurationRound;
use consult_actors::*;
use futures::future::join_all;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::helpers::*;

fn item(doctor_id: DoctorId, n: i64, name: &str) -> BookingItem {
    BookingItem {
        doctor_id,
        scheduled_at: slot(n),
        mode: ConsultMode::Video,
        patient_name: name.into(),
        relation: Some("child".into()),
        medical: MedicalInfo {
            reason: Some("fever".into()),
            ..Default::default()
        },
    }
}

fn request(patient_id: PatientId, items: Vec<BookingItem>) -> MultiBookingRequest {
    MultiBookingRequest { patient_id, items }
}

/// Every multi-patient booking in the store is whole (`items` consultations, all active
/// or all cancelled together here), and no two active consultations overlap.
async fn assert_complete(store: &dyn Store, items: usize) -> BTreeMap<i64, Vec<Consultation>> {
    let active = store.active_consultations(None).await.unwrap();
    assert_no_overlaps(&active);
    let mut bookings: BTreeMap<i64, Vec<Consultation>> = BTreeMap::new();
    for c in active {
        if let Some(m) = &c.member {
            bookings.entry(m.booking_id).or_default().push(c);
        }
    }
    for (id, cs) in &bookings {
        assert_eq!(cs.len(), items, "booking {id} is partial: {cs:?}");
        let stored = store.booking_consultations(*id).await.unwrap();
        assert_eq!(stored.len(), items, "booking {id} reads back whole");
    }
    bookings
}

async fn a_multi_booking_books_every_item_with_its_member_in_one_go(b: &Backend) {
    let engine = start(b.store.clone()).await;
    let d1 = engine
        .create_doctor(open_doctor("Dr. A", chrono_tz::UTC))
        .await
        .unwrap();
    let d2 = engine
        .create_doctor(open_doctor("Dr. B", chrono_tz::UTC))
        .await
        .unwrap();
    let booking = engine
        .book_many(
            request(
                67,
                vec![
                    item(d2.id, 4, "Ada"),
                    item(d1.id, 4, "Ben"),
                    item(d2.id, 5, "Cy"),
                ],
            ),
            None,
        )
        .await
        .expect("booked");
    let ids: Vec<i64> = booking.consultations.iter().map(|c| c.id).collect();
    assert_eq!(
        booking.id, ids[0],
        "the booking's id is its first consultation's"
    );
    assert_eq!(
        booking.consultations[1].doctor_id, d1.id,
        "item order is kept"
    );
    for c in &booking.consultations {
        assert_eq!(c.patient_id, 67, "the booker owns every consultation");
        assert_eq!(c.member.as_ref().unwrap().booking_id, booking.id);
    }
    let stored = b.store.booking_consultations(booking.id).await.unwrap();
    assert_eq!(stored.iter().map(|c| c.id).collect::<Vec<_>>(), ids);
    assert_eq!(stored[2].member.as_ref().unwrap().patient_name, "Cy");
    assert_eq!(stored[0].medical.reason.as_deref(), Some("fever"));
    // The actors applied it: the slots are taken for everyone else.
    let again = engine.book(booking_for(d2.id, 99, slot(5))).await;
    assert_eq!(
        again.unwrap_err(),
        EngineError::Rejected(Rejection::Conflict)
    );
    // And it survives a restart from the journal alone.
    engine.shutdown().await;
    b.store.delete_snapshots().await.unwrap();
    let engine = start(b.reopen().await).await;
    let again = engine.book(booking_for(d1.id, 99, slot(4))).await;
    assert_eq!(
        again.unwrap_err(),
        EngineError::Rejected(Rejection::Conflict)
    );
    assert_eq!(
        engine
            .booking(booking.id, 67)
            .await
            .unwrap()
            .consultations
            .len(),
        3
    );
    assert_eq!(
        engine.booking(booking.id, 68).await.unwrap_err(),
        EngineError::Forbidden
    );
    engine.shutdown().await;
}

fn booking_for(
    doctor_id: DoctorId,
    patient_id: PatientId,
    at: chrono::DateTime<chrono::Utc>,
) -> BookingRequest {
    booking(doctor_id, patient_id, at)
}

async fn a_conflicting_item_books_nothing_and_names_the_item(b: &Backend) {
    let engine = start(b.store.clone()).await;
    let d1 = engine
        .create_doctor(open_doctor("Dr. A", chrono_tz::UTC))
        .await
        .unwrap();
    let d2 = engine
        .create_doctor(open_doctor("Dr. B", chrono_tz::UTC))
        .await
        .unwrap();
    engine.book(booking(d2.id, 5, slot(7))).await.unwrap();
    let refused = engine
        .book_many(
            request(67, vec![item(d1.id, 7, "Ada"), item(d2.id, 7, "Ben")]),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused,
        EngineError::ItemRejected {
            item: 1,
            error: Box::new(EngineError::Rejected(Rejection::Conflict))
        }
    );
    assert!(
        active_ids(b.store.as_ref(), d1.id).await.is_empty(),
        "nothing booked"
    );
    // Doctor 1 was prepared, then aborted: its slot is free at once.
    engine
        .book(booking(d1.id, 6, slot(7)))
        .await
        .expect("slot free");
    // Overlapping items of one doctor: a 400 naming both, before any doctor decides.
    let overlap = engine
        .book_many(
            request(67, vec![item(d1.id, 9, "Ada"), item(d1.id, 9, "Ben")]),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        overlap,
        EngineError::Invalid(InvalidField::new(
            "items[1].scheduled_at",
            "overlaps items[0] (same doctor and time)"
        ))
    );
    engine.shutdown().await;
}

async fn two_hundred_multi_bookings_racing_eight_hundred_single_bookings_are_all_or_nothing(
    b: &Backend,
) {
    let engine = start(b.store.clone()).await;
    let mut doctors = Vec::new();
    for i in 0..4 {
        let d = engine
            .create_doctor(open_doctor(&format!("Dr. {i}"), chrono_tz::UTC))
            .await
            .unwrap();
        doctors.push(d.id);
    }
    const SLOTS: i64 = 250;
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let mut tasks = Vec::new();
    for patient in 0..1000_i64 {
        let engine = engine.clone();
        if patient % 5 == 0 {
            // Three distinct (doctor, slot) pairs: never overlapping each other.
            let mut pairs: Vec<(DoctorId, i64)> = Vec::new();
            while pairs.len() < 3 {
                let p = (doctors[rng.random_range(0..4)], rng.random_range(0..SLOTS));
                if !pairs.contains(&p) {
                    pairs.push(p);
                }
            }
            let items = pairs.iter().map(|(d, n)| item(*d, *n, "Kin")).collect();
            tasks.push(tokio::spawn(async move {
                (
                    true,
                    engine
                        .book_many(request(patient, items), None)
                        .await
                        .map(|b| b.consultations.iter().map(|c| c.id).collect::<Vec<_>>()),
                )
            }));
        } else {
            let req = booking(
                doctors[rng.random_range(0..4)],
                patient,
                slot(rng.random_range(0..SLOTS)),
            );
            tasks.push(tokio::spawn(async move {
                (false, engine.book(req).await.map(|c| vec![c.id]))
            }));
        }
    }
    let mut acked = HashSet::new();
    let (mut multi_ok, mut single_ok, mut conflicts) = (0, 0, 0);
    for r in join_all(tasks).await {
        let (multi, result) = r.expect("task");
        match result {
            Ok(ids) => {
                if multi {
                    multi_ok += 1;
                } else {
                    single_ok += 1;
                }
                for id in ids {
                    assert!(acked.insert(id), "one id per consultation");
                }
            }
            Err(EngineError::Rejected(Rejection::Conflict)) => conflicts += 1,
            Err(EngineError::ItemRejected { error, .. })
                if *error == EngineError::Rejected(Rejection::Conflict) =>
            {
                conflicts += 1
            }
            Err(other) => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(
        multi_ok > 0 && single_ok > 0 && conflicts > 0,
        "{multi_ok} {single_ok} {conflicts}"
    );
    let bookings = assert_complete(b.store.as_ref(), 3).await;
    assert_eq!(
        bookings.len(),
        multi_ok,
        "every acknowledged multi-booking, and only those"
    );
    let stored: HashSet<i64> = b
        .store
        .active_consultations(None)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(stored, acked, "store == acknowledged");
    engine.shutdown().await;
}

async fn a_failing_store_mid_commit_leaves_nothing_and_the_doctors_recover(b: &Backend) {
    let faulty = FaultyStore::wrap(b.store.clone());
    let engine = start(faulty.clone()).await;
    let d1 = engine
        .create_doctor(open_doctor("Dr. A", chrono_tz::UTC))
        .await
        .unwrap();
    let d2 = engine
        .create_doctor(open_doctor("Dr. B", chrono_tz::UTC))
        .await
        .unwrap();
    let items = || {
        vec![
            item(d1.id, 3, "Ada"),
            item(d2.id, 3, "Ben"),
            item(d2.id, 4, "Cy"),
        ]
    };
    // Both doctors have records in flight too, so prepare waits for them first.
    engine.book(booking(d1.id, 1, slot(1))).await.unwrap();
    faulty.fail_appends.store(true, Ordering::SeqCst);
    let failed = engine
        .book_many(request(67, items()), None)
        .await
        .unwrap_err();
    assert!(failed.is_retryable(), "{failed:?}");
    faulty.fail_appends.store(false, Ordering::SeqCst);
    assert!(
        assert_complete(b.store.as_ref(), 3).await.is_empty(),
        "nothing partial"
    );
    // The actors reloaded from the store: the same booking now goes through whole.
    let booking = engine
        .book_many(request(67, items()), None)
        .await
        .expect("booked");
    assert_eq!(assert_complete(b.store.as_ref(), 3).await.len(), 1);
    assert_eq!(booking.consultations.len(), 3);
    engine.shutdown().await;
}

async fn doctor_actors_panicking_during_multi_bookings_leave_no_partial_booking(b: &Backend) {
    let engine = start(b.store.clone()).await;
    let mut doctors = Vec::new();
    for i in 0..3 {
        let d = engine
            .create_doctor(open_doctor(&format!("Dr. {i}"), chrono_tz::UTC))
            .await
            .unwrap();
        doctors.push(d.id);
    }
    let mut tasks = Vec::new();
    let mut order: Vec<i64> = (0..60).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(3));
    for (patient, n) in order.into_iter().enumerate() {
        let engine = engine.clone();
        let items = doctors.iter().map(|d| item(*d, n % 20, "Kin")).collect();
        tasks.push(tokio::spawn(async move {
            engine.book_many(request(patient as i64, items), None).await
        }));
    }
    let panics = {
        let engine = engine.clone();
        let victim = doctors[1];
        tokio::spawn(async move {
            for _ in 0..10 {
                let _ = engine.inject_panic(victim).await;
                tokio::time::sleep(std::time::Duration::from_millis(3)).await;
            }
        })
    };
    let mut acked = Vec::new();
    for r in join_all(tasks).await {
        match r.expect("task") {
            Ok(booking) => acked.push(booking.id),
            Err(e) => assert!(
                e.is_retryable()
                    || matches!(&e, EngineError::ItemRejected { error, .. }
                        if **error == EngineError::Rejected(Rejection::Conflict)),
                "unexpected answer {e:?}"
            ),
        }
    }
    panics.await.unwrap();
    let bookings = assert_complete(b.store.as_ref(), 3).await;
    for id in &acked {
        assert!(
            bookings.contains_key(id),
            "acknowledged booking {id} is stored"
        );
    }
    assert_eq!(
        bookings.len(),
        acked.len(),
        "nothing stored that was not acknowledged"
    );
    // How many were booked during the storm depends on where the panics fell (all of them
    // may have been refused as retryable); after it, a booking over the three goes through.
    // (A last injected panic may still be on its way: retryable answers are retried.)
    let mut after = None;
    for _ in 0..100 {
        let items = doctors.iter().map(|d| item(*d, 20, "Kin")).collect();
        match engine.book_many(request(99, items), None).await {
            Ok(booking) => {
                after = Some(booking);
                break;
            }
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(e) => panic!("unexpected answer after the storm: {e:?}"),
        }
    }
    let after = after.expect("after the storm the three doctors book again");
    let bookings = assert_complete(b.store.as_ref(), 3).await;
    assert_eq!(bookings.len(), acked.len() + 1);
    assert!(bookings.contains_key(&after.id));
    // After the storm every doctor answers again, consistent with the store.
    for d in &doctors {
        let stored = active_ids(b.store.as_ref(), *d).await;
        let snapshot = engine.observe(*d).await.unwrap();
        let in_memory: HashSet<i64> = snapshot.active.iter().map(|s| s.id).collect();
        assert_eq!(
            in_memory, stored,
            "doctor {d}'s actor agrees with the store"
        );
    }
    engine.shutdown().await;
}

async fn twenty_four_racing_two_item_bookings_on_a_day_capped_at_five_store_two_whole_bookings(
    b: &Backend,
) {
    let engine = start(b.store.clone()).await;
    let doctor = engine
        .create_doctor(open_doctor("Dr. Cap", chrono_tz::UTC))
        .await
        .unwrap();
    engine
        .update_schedule(
            doctor.id,
            ScheduleUpdate {
                timezone: None,
                slot_minutes: None,
                schedule: doctor.schedule,
                date_overrides: None,
                policy: Some(calendar::BookingPolicy {
                    max_per_day: Some(5),
                    ..Default::default()
                }),
            },
        )
        .await
        .unwrap();
    // The 48 half-hour slots of one UTC day two days ahead, two per booking.
    let day = (chrono::Utc::now() + chrono::Duration::days(2))
        .duration_trunc(chrono::Duration::days(1))
        .unwrap();
    let at = move |k: i64| day + chrono::Duration::minutes(30 * k);
    let tasks = (0..24_i64).map(|i| {
        let engine = engine.clone();
        let items = [2 * i, 2 * i + 1]
            .iter()
            .map(|k| BookingItem {
                scheduled_at: at(*k),
                ..item(doctor.id, 0, "Kin")
            })
            .collect();
        tokio::spawn(async move { engine.book_many(request(100 + i, items), None).await })
    });
    let results: Vec<_> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        wins, 2,
        "a third two-item booking would pass the cap of five"
    );
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, EngineError::ItemRejected { error, .. }
                    if **error == EngineError::Rejected(Rejection::DayFull)),
                "{e:?}"
            );
        }
    }
    let bookings = assert_complete(b.store.as_ref(), 2).await;
    assert_eq!(bookings.len(), wins);
    let mut per_day = BTreeMap::new();
    for c in b.store.active_consultations(Some(doctor.id)).await.unwrap() {
        *per_day.entry(c.scheduled_at.date_naive()).or_insert(0) += 1;
    }
    assert_eq!(
        per_day.into_values().collect::<Vec<_>>(),
        vec![4],
        "two whole bookings, one day"
    );
    engine.shutdown().await;
}

/// A multi-patient booking reads as booked as soon as it is acknowledged, from any
/// thread: the doctors' actors have applied it before the booker hears.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_acknowledged_multi_booking_is_never_read_as_free() {
    let engine = start(std::sync::Arc::new(memory::MemoryStore::default())).await;
    let d1 = engine
        .create_doctor(open_doctor("Dr. Seen", chrono_tz::UTC))
        .await
        .unwrap();
    let d2 = engine
        .create_doctor(open_doctor("Dr. Read", chrono_tz::UTC))
        .await
        .unwrap();
    for n in 0..200 {
        let items = vec![item(d1.id, n, "Ada"), item(d2.id, n, "Ben")];
        let booked = engine.book_many(request(1, items), None).await.unwrap();
        for c in &booked.consultations {
            let check = engine
                .check_slot(c.doctor_id, 2, c.scheduled_at, false)
                .await;
            assert!(
                matches!(check, Err(EngineError::Rejected(Rejection::Conflict))),
                "booking {} was acknowledged, then its slot {} read as {check:?}",
                booked.id,
                c.scheduled_at
            );
        }
    }
    engine.shutdown().await;
}

crate::on_every_backend!(
    twenty_four_racing_two_item_bookings_on_a_day_capped_at_five_store_two_whole_bookings,
    a_multi_booking_books_every_item_with_its_member_in_one_go,
    a_conflicting_item_books_nothing_and_names_the_item,
    two_hundred_multi_bookings_racing_eight_hundred_single_bookings_are_all_or_nothing,
    a_failing_store_mid_commit_leaves_nothing_and_the_doctors_recover,
    doctor_actors_panicking_during_multi_bookings_leave_no_partial_booking,
);
