//! Reschedules through the engine on every backend: races against bookings and other
//! reschedules of the same slot, a failing journal, and restarts.

use std::sync::atomic::Ordering;

use consult_actors::*;
use futures::future::join_all;

use crate::helpers::*;

/// Each round: a consultation moves to a free slot while 20 other patients book that slot
/// and another patient moves their own consultation there too. One of them wins; every
/// loser is a conflict and its consultation is where it was.
async fn a_reschedule_racing_bookings_and_another_reschedule_of_its_target_has_one_winner(
    b: &Backend,
) {
    let engine = start(b.store.clone()).await;
    let doctor = engine
        .create_doctor(open_doctor("Dr. Race", chrono_tz::UTC))
        .await
        .unwrap();
    for round in 0..12i64 {
        let (a_at, b_at, target) = (slot(3 * round), slot(3 * round + 1), slot(3 * round + 2));
        let a = engine.book(booking(doctor.id, 1, a_at)).await.unwrap();
        let c = engine.book(booking(doctor.id, 2, b_at)).await.unwrap();
        let moves = [(a.id, 1), (c.id, 2)].map(|(id, patient)| {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine
                    .reschedule(id, Requester::Patient(patient), target)
                    .await
                    .map(|c| c.id)
            })
        });
        let books = (0..20).map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine
                    .book(booking(doctor.id, 100 + i, target))
                    .await
                    .map(|c| c.id)
            })
        });
        let (moves, books) = tokio::join!(join_all(moves), join_all(books));
        let results: Vec<Result<ConsultationId, EngineError>> =
            moves.into_iter().chain(books).map(|r| r.unwrap()).collect();
        let wins: Vec<ConsultationId> = results.iter().filter_map(|r| r.clone().ok()).collect();
        assert_eq!(wins.len(), 1, "round {round}: {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert_eq!(
                    *e,
                    EngineError::Rejected(Rejection::Conflict),
                    "round {round}"
                );
            }
        }
        let at_target = engine
            .store()
            .active_consultations(Some(doctor.id))
            .await
            .unwrap();
        let there: Vec<_> = at_target
            .iter()
            .filter(|c| c.scheduled_at == target)
            .map(|c| c.id)
            .collect();
        assert_eq!(there, wins, "round {round}: the winner holds the slot");
        for (id, home) in [(a.id, a_at), (c.id, b_at)] {
            let stored = engine.consultation(id).await.unwrap();
            if id == wins[0] {
                assert_eq!(stored.scheduled_at, target);
            } else {
                assert_eq!(stored.scheduled_at, home, "round {round}: a loser stays");
            }
        }
    }
    let active = engine
        .store()
        .active_consultations(Some(doctor.id))
        .await
        .unwrap();
    assert_no_overlaps(&active);
    let mut in_memory: Vec<_> = engine
        .observe(doctor.id)
        .await
        .unwrap()
        .active
        .iter()
        .map(|s| (s.id, s.start))
        .collect();
    let mut stored: Vec<_> = active.iter().map(|c| (c.id, c.scheduled_at)).collect();
    in_memory.sort();
    stored.sort();
    assert_eq!(in_memory, stored, "the actor and the store agree");
    engine.shutdown().await;
}

async fn a_failed_reschedule_write_acknowledges_nothing_and_the_consultation_stays(b: &Backend) {
    let store = FaultyStore::wrap(b.store.clone());
    let engine = start(store.clone()).await;
    let doctor = engine
        .create_doctor(open_doctor("Dr. Faulty", chrono_tz::UTC))
        .await
        .unwrap();
    let c = engine.book(booking(doctor.id, 5, slot(1))).await.unwrap();
    store.fail_appends.store(true, Ordering::SeqCst);
    let err = engine
        .reschedule(c.id, Requester::Patient(5), slot(4))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    store.fail_appends.store(false, Ordering::SeqCst);
    assert_eq!(
        engine.consultation(c.id).await.unwrap().scheduled_at,
        slot(1)
    );
    // The actor reloaded from the store: the old slot is still taken, the new one free.
    assert_eq!(
        engine
            .book(booking(doctor.id, 6, slot(1)))
            .await
            .unwrap_err(),
        EngineError::Rejected(Rejection::Conflict)
    );
    let moved = engine
        .reschedule(c.id, Requester::Patient(5), slot(4))
        .await
        .expect("the move succeeds once the store is back");
    assert_eq!(moved.scheduled_at, slot(4));
    assert_eq!(moved.reference, c.reference);
    engine.shutdown().await;
}

async fn a_reschedule_survives_restarts_with_and_without_snapshots_and_the_calendar_agrees(
    b: &Backend,
) {
    let engine = start(b.store.clone()).await;
    let doctor = engine
        .create_doctor(open_doctor("Dr. Restart", chrono_tz::Europe::Berlin))
        .await
        .unwrap();
    let c = engine.book(booking(doctor.id, 5, slot(2))).await.unwrap();
    let other = engine.book(booking(doctor.id, 6, slot(3))).await.unwrap();
    // Two moves, the second into the slot the first one left.
    engine
        .reschedule(c.id, Requester::Patient(5), slot(8))
        .await
        .unwrap();
    engine
        .reschedule(other.id, Requester::Patient(6), slot(2))
        .await
        .unwrap();
    engine.shutdown().await;

    for delete_snapshots in [false, true] {
        let store = b.reopen().await;
        if delete_snapshots {
            assert!(store.delete_snapshots().await.unwrap() >= 1);
        }
        let engine = start(store).await;
        let stored = engine.consultation(c.id).await.unwrap();
        assert_eq!(stored.scheduled_at, slot(8));
        assert_eq!(stored.medical.reason.as_deref(), Some("follow-up"));
        assert_eq!(
            engine.consultation(other.id).await.unwrap().scheduled_at,
            slot(2)
        );
        let mut seen: Vec<_> = engine
            .observe(doctor.id)
            .await
            .unwrap()
            .active
            .iter()
            .map(|s| (s.id, s.start))
            .collect();
        seen.sort();
        assert_eq!(seen, vec![(c.id, slot(8)), (other.id, slot(2))]);
        for taken in [slot(2), slot(8)] {
            assert_eq!(
                engine
                    .check_slot(doctor.id, 7, taken, false)
                    .await
                    .unwrap_err(),
                EngineError::Rejected(Rejection::Conflict)
            );
        }
        engine
            .check_slot(doctor.id, 7, slot(3), false)
            .await
            .expect("the slot the second move left is free");
        engine.shutdown().await;
    }
}

crate::on_every_backend!(
    a_reschedule_racing_bookings_and_another_reschedule_of_its_target_has_one_winner,
    a_failed_reschedule_write_acknowledges_nothing_and_the_consultation_stays,
    a_reschedule_survives_restarts_with_and_without_snapshots_and_the_calendar_agrees,
);
