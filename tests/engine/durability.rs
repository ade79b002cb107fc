//! Persist, then reply: what was acknowledged survives failures and restarts, and what was
//! not acknowledged is not stored.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use consult_actors::calendar::Availability;
use consult_actors::*;
use futures::future::join_all;

use crate::helpers::*;

async fn a_failing_batch_acknowledges_nothing_stores_nothing_and_later_bookings_succeed(
    b: &Backend,
) {
    let store = FaultyStore::wrap(b.store.clone());
    let engine = start(store.clone()).await;
    let d1 = engine
        .create_doctor(open_doctor("Dr. A", chrono_tz::UTC))
        .await
        .unwrap();
    let d2 = engine
        .create_doctor(open_doctor("Dr. B", chrono_tz::UTC))
        .await
        .unwrap();
    // Activate both before the store fails, so the failure hits the journal, not a load.
    engine.doctor(d1.id).await.unwrap();
    engine.doctor(d2.id).await.unwrap();

    store.fail_appends.store(true, Ordering::SeqCst);
    // Two patients race for each of 20 slots per doctor. The winner's batch fails, so the
    // loser's 409 would rest on a booking that never became durable: it must get a storage
    // error too.
    let tasks = (0..80i64).map(|i| {
        let engine = engine.clone();
        let doctor = if i % 2 == 0 { d1.id } else { d2.id };
        tokio::spawn(async move { engine.book(booking(doctor, i, slot((i / 2) % 20))).await })
    });
    for r in join_all(tasks).await {
        let err = r
            .unwrap()
            .expect_err("no caller of a failed batch sees success");
        assert!(
            err.is_retryable(),
            "a retryable error, never a conflict with an undurable booking; got {err:?}"
        );
    }
    // Failed batches and the records refused behind them are all answered.
    assert_eq!(engine.stats().journal_waiting, 0, "records left waiting");
    store.fail_appends.store(false, Ordering::SeqCst);
    assert!(b.store.active_consultations(None).await.unwrap().is_empty());
    for d in [d1.id, d2.id] {
        // The journal's last sequence number, whether or not a periodic snapshot (every
        // 200 ms here) has folded the registration in meanwhile.
        let history = b.store.load_doctor(d).await.unwrap().unwrap();
        let last_seq = history
            .events
            .iter()
            .map(|(seq, _)| *seq)
            .chain(history.snapshot.map(|s| s.seq))
            .max();
        assert_eq!(last_seq, Some(1), "only the registration is journaled");
    }
    assert!(engine.stats().journal_failed_batches >= 1);

    // The same slots are free again: the actors reloaded from the store.
    let tasks = (0..40i64).map(|i| {
        let engine = engine.clone();
        let doctor = if i % 2 == 0 { d1.id } else { d2.id };
        tokio::spawn(async move { engine.book(booking(doctor, i, slot(i / 2))).await })
    });
    for r in join_all(tasks).await {
        r.unwrap().expect("bookings after the failure succeed");
    }
    assert_eq!(b.store.active_consultations(None).await.unwrap().len(), 40);
    engine.shutdown().await;
}

async fn a_plain_check_never_reports_a_slot_taken_by_an_undurable_booking(b: &Backend) {
    let store = FaultyStore::wrap(b.store.clone());
    let engine = start(store.clone()).await;
    let doctor = engine
        .create_doctor(open_doctor("Dr. Check", chrono_tz::UTC))
        .await
        .unwrap();
    engine.doctor(doctor.id).await.unwrap();
    store.fail_appends.store(true, Ordering::SeqCst);
    // Bookings (all failing) and plain checks race on the same 10 slots.
    let books = (0..100i64).map(|i| {
        let engine = engine.clone();
        tokio::spawn(async move { engine.book(booking(doctor.id, i, slot(i % 10))).await })
    });
    let checks = (0..400i64).map(|i| {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .check_slot(doctor.id, 1_000 + i, slot(i % 10), false)
                .await
        })
    });
    let (books, checks) = tokio::join!(join_all(books), join_all(checks));
    assert!(books.into_iter().all(|r| r.unwrap().is_err()));
    for r in checks {
        match r.unwrap() {
            Ok(check) => assert_eq!(check.held_until, None),
            Err(e) => assert!(
                e.is_retryable(),
                "nothing became durable, so never a conflict; got {e:?}"
            ),
        }
    }
    store.fail_appends.store(false, Ordering::SeqCst);
    engine.shutdown().await;
}

/// An engine on the in-memory store whose every append takes 10 ms, then fails, and an
/// active doctor open around the clock.
async fn slowly_failing_engine() -> (Engine, DoctorProfile) {
    let slow_failure = AppendFault {
        delay: Some(std::time::Duration::from_millis(10)),
        outcome: AppendOutcome::FailBefore,
    };
    let store = FaultyStore::with_plan(
        Arc::new(consult_actors::memory::MemoryStore::default()),
        Box::new(move || slow_failure),
    );
    let engine = start(store).await;
    let doctor = engine
        .create_doctor(open_doctor("Dr. Inflight", chrono_tz::UTC))
        .await
        .unwrap();
    engine.doctor(doctor.id).await.unwrap();
    (engine, doctor)
}

/// Returns once the doctor's actor has decided something whose write is in flight.
async fn until_in_flight(engine: &Engine, doctor_id: DoctorId) {
    loop {
        let seen = engine.observe(doctor_id).await.unwrap();
        if seen.seq > seen.durable_seq {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// Availability waits for the doctor's writes in flight, like a plain check: a slot shown
/// booked by a booking whose write then fails would be an answer resting on undurable
/// state (found by the simulation, `tests/engine/simulation`).
/// Both ways of reading it: the answer as data, and encoded (kept beside the view).
#[tokio::test(start_paused = true)]
async fn availability_never_shows_a_slot_taken_by_an_undurable_booking() {
    for encoded in [false, true] {
        let (engine, doctor) = slowly_failing_engine().await;
        let at = slot(2);
        let book = tokio::spawn({
            let engine = engine.clone();
            async move { engine.book(booking(doctor.id, 1, at)).await }
        });
        until_in_flight(&engine, doctor.id).await;
        let (from, days) = (at.date_naive(), 1);
        let shown = if encoded {
            engine
                .availability_encoded(doctor.id, from, days, crate::answers::encode)
                .await
                .map(|e| serde_json::from_slice::<Availability>(&e.body).expect("decodes"))
        } else {
            engine.availability(doctor.id, from, days).await
        };
        assert!(book.await.unwrap().is_err(), "the write was made to fail");
        match shown {
            Ok(a) => assert!(
                !a.booked_slots.contains(&at),
                "availability (encoded: {encoded}) showed a booking that never became durable"
            ),
            Err(e) => assert!(e.is_retryable(), "got {e:?}"),
        }
        engine.shutdown().await;
    }
}

/// The free times offered with a 409 wait for the doctor's writes in flight too: a slot
/// taken by a booking whose write then fails is still offered (or the read fails).
#[tokio::test(start_paused = true)]
async fn times_offered_never_leave_out_a_slot_taken_only_by_an_undurable_booking() {
    let (engine, doctor) = slowly_failing_engine().await;
    let at = slot(2);
    let book = tokio::spawn({
        let engine = engine.clone();
        async move { engine.book(booking(doctor.id, 1, at)).await }
    });
    until_in_flight(&engine, doctor.id).await;
    let offered = engine
        .next_available(doctor.id, 2, at - chrono::Duration::minutes(1), 1)
        .await;
    assert!(book.await.unwrap().is_err(), "the write was made to fail");
    match offered {
        Ok(times) => assert_eq!(times, vec![at], "the slot never durably taken"),
        Err(e) => assert!(e.is_retryable(), "got {e:?}"),
    }
    engine.shutdown().await;
}

/// A profile read, or a status change that changes nothing, waits for the doctor's
/// profile change in flight: answered at once, it showed a schedule change that then
/// failed (found by the simulation).
#[tokio::test(start_paused = true)]
async fn answers_that_write_nothing_never_show_an_undurable_profile_change() {
    let (engine, doctor) = slowly_failing_engine().await;
    let update = ScheduleUpdate {
        timezone: None,
        slot_minutes: Some(60),
        schedule: doctor.schedule,
        date_overrides: None,
        policy: None,
    };
    let change = tokio::spawn({
        let engine = engine.clone();
        async move { engine.update_schedule(doctor.id, update).await }
    });
    until_in_flight(&engine, doctor.id).await;
    let unchanged = StatusUpdate {
        is_available: Some(true),
        is_approved: None,
    };
    let answers = [
        engine.doctor(doctor.id).await,
        engine.set_status(doctor.id, unchanged).await,
    ];
    assert!(change.await.unwrap().is_err(), "the write was made to fail");
    for answer in answers {
        match answer {
            Ok(p) => assert_eq!(p.slot_minutes, 30, "answered the failed change"),
            Err(e) => assert!(e.is_retryable(), "got {e:?}"),
        }
    }
    engine.shutdown().await;
}

/// Books from many tasks on several doctors, cancels a few; returns what was acknowledged
/// as still active.
async fn book_a_mixed_load(engine: &Engine) -> (Vec<DoctorProfile>, HashSet<ConsultationId>) {
    let mut doctors = Vec::new();
    for i in 0..5 {
        let tz = [
            chrono_tz::UTC,
            chrono_tz::Europe::Berlin,
            chrono_tz::America::New_York,
        ][i % 3];
        doctors.push(
            engine
                .create_doctor(open_doctor(&format!("Dr. {i}"), tz))
                .await
                .unwrap(),
        );
    }
    let tasks = (0..300i64).map(|i| {
        let engine = engine.clone();
        let doctor = doctors[(i % 5) as usize].id;
        tokio::spawn(async move { engine.book(booking(doctor, i, slot(i % 90))).await })
    });
    let mut acked: HashSet<ConsultationId> = join_all(tasks)
        .await
        .into_iter()
        .filter_map(|r| r.unwrap().ok())
        .map(|c| c.id)
        .collect();
    let cancelled: Vec<ConsultationId> = acked.iter().copied().take(10).collect();
    for id in cancelled {
        let c = engine.consultation(id).await.unwrap();
        let done = engine
            .cancel(id, Requester::Patient(c.patient_id))
            .await
            .unwrap();
        assert_eq!(done.status, ConsultationStatus::Cancelled);
        acked.remove(&id);
    }
    (doctors, acked)
}

/// After a restart: the store and every actor hold exactly the acknowledged bookings, and
/// each of their slots still conflicts.
async fn assert_restart_kept(
    engine: &Engine,
    doctors: &[DoctorProfile],
    acked: &HashSet<ConsultationId>,
) {
    let active = engine.store().active_consultations(None).await.unwrap();
    let stored: HashSet<_> = active.iter().map(|c| c.id).collect();
    assert_eq!(&stored, acked);
    assert_no_overlaps(&active);
    let mut in_memory = HashSet::new();
    for d in doctors {
        in_memory.extend(
            engine
                .observe(d.id)
                .await
                .unwrap()
                .active
                .iter()
                .map(|s| s.id),
        );
    }
    assert_eq!(
        &in_memory, acked,
        "actors rebuilt exactly the acknowledged bookings"
    );
    for c in &active {
        let again = engine
            .book(booking(c.doctor_id, 10_000, c.scheduled_at))
            .await;
        assert_eq!(
            again.unwrap_err(),
            EngineError::Rejected(Rejection::Conflict)
        );
    }
}

async fn a_restart_keeps_every_acknowledged_booking_with_and_without_snapshots(b: &Backend) {
    let engine = start(b.store.clone()).await;
    let (doctors, acked) = book_a_mixed_load(&engine).await;
    engine.shutdown().await;
    assert!(
        engine.stats().snapshots_written >= 1,
        "shutdown wrote snapshots"
    );
    assert!(engine
        .book(booking(doctors[0].id, 1, slot(200)))
        .await
        .is_err());

    // Restart on snapshots + journal.
    let engine = start(b.reopen().await).await;
    assert_restart_kept(&engine, &doctors, &acked).await;
    // Ids continue after the highest stored one.
    let next = engine
        .book(booking(doctors[0].id, 1, slot(300)))
        .await
        .unwrap();
    assert!(acked.iter().all(|id| *id < next.id));
    engine.cancel(next.id, Requester::Admin).await.unwrap();
    engine.shutdown().await;

    // Restart on the journal alone.
    let store = b.reopen().await;
    assert!(store.delete_snapshots().await.unwrap() >= 1);
    let engine = start(store).await;
    assert_restart_kept(&engine, &doctors, &acked).await;
    engine.shutdown().await;
}

async fn acknowledged_bookings_survive_without_a_graceful_shutdown(b: &Backend) {
    let engine = start(b.store.clone()).await;
    let (doctors, acked) = book_a_mixed_load(&engine).await;
    // No shutdown: no final flush, no final snapshots. What was acknowledged is already
    // durable, so a new engine on a new connection sees all of it.
    drop(engine);
    let engine = start(b.reopen().await).await;
    assert_restart_kept(&engine, &doctors, &acked).await;
    engine.shutdown().await;
}

async fn dropping_the_engine_without_shutdown_ends_its_tasks(b: &Backend) {
    let store = b.reopen().await;
    let engine = start(store.clone()).await;
    let doctor = engine
        .create_doctor(open_doctor("Dr. Drop", chrono_tz::UTC))
        .await
        .unwrap();
    engine.book(booking(doctor.id, 1, slot(1))).await.unwrap();
    assert!(Arc::strong_count(&store) > 1, "the engine holds the store");
    drop(engine);
    let released = eventually(std::time::Duration::from_secs(5), || {
        Arc::strong_count(&store) == 1
    })
    .await;
    assert!(released, "every engine task ended and released the store");
    assert_eq!(store.active_consultations(None).await.unwrap().len(), 1);
}

async fn periodic_snapshots_cover_the_journal_and_activation_uses_them(b: &Backend) {
    let engine = start(b.store.clone()).await;
    let doctor = engine
        .create_doctor(open_doctor("Dr. Snap", chrono_tz::UTC))
        .await
        .unwrap();
    for i in 0..25 {
        engine.book(booking(doctor.id, i, slot(i))).await.unwrap();
    }
    let settled = eventually(std::time::Duration::from_secs(5), || {
        engine.stats().snapshots_written >= 1
    })
    .await;
    assert!(settled, "a periodic snapshot was written");
    let seen = engine.observe(doctor.id).await.unwrap();
    assert_eq!(seen.seq, 26, "registered + 25 bookings");
    let history = b.store.load_doctor(doctor.id).await.unwrap().unwrap();
    let snap = history.snapshot.expect("stored snapshot");
    assert_eq!(snap.seq + history.events.len() as u64, 26);
    assert_eq!(snap.blob[0], calendar::SNAPSHOT_FORMAT_VERSION);
    engine.shutdown().await;
}

/// A doctor with nothing but its registration is live for several snapshot rounds and
/// is never snapshotted (activation replays that one event); its first booking is.
async fn a_doctor_with_only_its_registration_is_not_snapshotted(b: &Backend) {
    let engine = start(b.store.clone()).await;
    let doctor = engine
        .create_doctor(open_doctor("Dr. New", chrono_tz::UTC))
        .await
        .unwrap();
    assert_eq!(engine.observe(doctor.id).await.unwrap().seq, 1, "live");
    // Five rounds (every 200 ms in these settings).
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    assert_eq!(engine.stats().snapshots_written, 0);
    let history = b.store.load_doctor(doctor.id).await.unwrap().unwrap();
    assert_eq!(history.snapshot, None);
    engine.book(booking(doctor.id, 7, slot(0))).await.unwrap();
    let written = eventually(std::time::Duration::from_secs(5), || {
        engine.stats().snapshots_written == 1
    })
    .await;
    assert!(written, "the booking's snapshot was written");
    engine.shutdown().await;
}

/// More dirty doctors than the snapshot queue holds, on a slow store that holds every
/// snapshot write until all of them are dirty: the doctors that find the queue full try
/// again on later ticks, and every one is written, many per store call.
async fn a_snapshot_round_larger_than_the_queue_writes_every_doctor_in_batches(b: &Backend) {
    const DOCTORS: usize = 700; // the queue holds 512 with one writer
    let store = FaultyStore::wrap(b.store.clone());
    store.hold_snapshots.store(true, Ordering::SeqCst);
    store.snapshot_delay_ms.store(100, Ordering::SeqCst);
    let settings = EngineSettings {
        max_concurrent_snapshot_writes: 1,
        ..settings()
    };
    let engine = Engine::start(settings, store.clone()).await.unwrap();
    let mut doctors = Vec::with_capacity(DOCTORS);
    for i in 0..DOCTORS {
        let doctor = engine
            .create_doctor(open_doctor(&format!("Dr. Queue {i}"), chrono_tz::UTC))
            .await
            .unwrap();
        engine
            .book(booking(doctor.id, 1 + i as i64, slot(0)))
            .await
            .unwrap();
        doctors.push(doctor.id);
    }
    store.hold_snapshots.store(false, Ordering::SeqCst);
    // Every doctor's snapshot at its last sequence number (registered + one booking).
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let mut missing = 0;
        for &id in &doctors {
            let history = b.store.load_doctor(id).await.unwrap().unwrap();
            if history.snapshot.map(|s| s.seq) != Some(2) {
                missing += 1;
            }
        }
        if missing == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "{missing} of {DOCTORS} doctors have no snapshot at seq 2 after 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let calls = store.snapshot_calls.load(Ordering::SeqCst);
    assert!(
        calls * 10 <= DOCTORS as u64,
        "{DOCTORS} snapshots took {calls} store calls"
    );
    assert!(store.largest_snapshot_batch.load(Ordering::SeqCst) > 1);
    assert_eq!(
        engine.stats().snapshot_batches,
        calls,
        "the engine counts its store calls"
    );
    engine.shutdown().await;
}

async fn cancellations_and_status_changes_survive_a_restart(b: &Backend) {
    let engine = start(b.store.clone()).await;
    let doctor = engine
        .create_doctor(open_doctor("Dr. Change", chrono_tz::UTC))
        .await
        .unwrap();
    let c = engine.book(booking(doctor.id, 5, slot(4))).await.unwrap();
    assert_eq!(
        engine
            .cancel(c.id, Requester::Patient(6))
            .await
            .unwrap_err(),
        EngineError::Forbidden
    );
    let cancelled = engine.cancel(c.id, Requester::Patient(5)).await.unwrap();
    assert_eq!(cancelled.status, ConsultationStatus::Cancelled);
    assert_eq!(
        engine
            .cancel(c.id, Requester::Patient(5))
            .await
            .unwrap_err(),
        EngineError::NotCancellable("consultation is not active")
    );
    let profile = engine
        .set_status(
            doctor.id,
            StatusUpdate {
                is_available: Some(false),
                is_approved: None,
            },
        )
        .await
        .unwrap();
    assert!(!profile.is_available);
    engine.shutdown().await;

    let engine = start(b.reopen().await).await;
    let stored = engine.consultation(c.id).await.unwrap();
    assert_eq!(stored.status, ConsultationStatus::Cancelled);
    assert!(stored.cancelled_at.is_some());
    assert_eq!(stored.medical.reason.as_deref(), Some("follow-up"));
    assert_eq!(
        engine
            .book(booking(doctor.id, 7, slot(4)))
            .await
            .unwrap_err(),
        EngineError::Rejected(Rejection::DoctorUnavailable),
        "the status change is durable"
    );
    engine
        .set_status(
            doctor.id,
            StatusUpdate {
                is_available: Some(true),
                is_approved: None,
            },
        )
        .await
        .unwrap();
    engine
        .book(booking(doctor.id, 7, slot(4)))
        .await
        .expect("the cancelled slot is free");
    let listed = engine.list_doctors().await.unwrap();
    assert!(listed.iter().any(|d| d.id == doctor.id && d.is_available));
    engine.shutdown().await;
}

crate::on_every_backend!(
    a_failing_batch_acknowledges_nothing_stores_nothing_and_later_bookings_succeed,
    a_plain_check_never_reports_a_slot_taken_by_an_undurable_booking,
    a_restart_keeps_every_acknowledged_booking_with_and_without_snapshots,
    acknowledged_bookings_survive_without_a_graceful_shutdown,
    dropping_the_engine_without_shutdown_ends_its_tasks,
    periodic_snapshots_cover_the_journal_and_activation_uses_them,
    a_snapshot_round_larger_than_the_queue_writes_every_doctor_in_batches,
    a_doctor_with_only_its_registration_is_not_snapshotted,
    cancellations_and_status_changes_survive_a_restart,
);
