//! The storage test suite: every test in `store_test_suite!` runs once against SQLite and
//! once against Postgres, each on its own fresh database (quickwit's
//! `metastore_test_suite!` pattern). Backend-specific tests follow at the end.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use consult_actors::calendar::{
    ActedBy, BookedSlot, BookingPolicy, Break, DateOverride, DateOverrides, DoctorEvent,
    JournalRecord, LocalTime, WeeklySchedule,
};
use consult_actors::outbox::{
    InboxQuery, JoinSide, NotificationKind, Recipient, SessionOutcome, WebhookUpdate,
};
use consult_actors::{
    reference_for, BookingMember, ConsultMode, Consultation, ConsultationStatus, DoctorProfile,
    IdempotencyClaim, MedicalInfo, NewDoctor, SessionStatus, SnapshotWrite, Store, StoreError,
    StoredIdempotency, StoredSnapshot,
};
use consult_persistence::{open_store, testing, SqliteStore};

// ---------------------------------------------------------------------------------------
// Running one test on each backend

/// Runs `test` on a fresh SQLite file, then removes the file, even if the test panicked.
async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (store, path) = testing::fresh_sqlite().await;
    let handle = store.clone();
    let outcome = tokio::spawn(test(Arc::new(store))).await;
    handle.close().await;
    testing::remove_sqlite(&path);
    rethrow(outcome);
}

/// Runs `test` on a fresh Postgres database, then drops it, even if the test panicked.
async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some((store, name)) = testing::fresh_postgres().await else {
        return;
    };
    let handle = store.clone();
    let outcome = tokio::spawn(test(Arc::new(store))).await;
    handle.close().await;
    testing::drop_postgres(&name).await;
    rethrow(outcome);
}

/// The engine's in-memory store: a real implementation of the same port, so it must pass
/// the same suite.
async fn on_memory<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let store = Arc::new(consult_actors::memory::MemoryStore::default());
    rethrow(tokio::spawn(test(store)).await);
}

fn rethrow(outcome: Result<(), tokio::task::JoinError>) {
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task did not finish: {e}"),
        }
    }
}

macro_rules! store_test_suite {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::on_sqlite(super::$test).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    super::on_postgres(super::$test).await;
                }
            )*
        }
        mod memory {
            $(
                #[tokio::test]
                async fn $test() {
                    super::on_memory(super::$test).await;
                }
            )*
        }
    };
}

store_test_suite!(
    a_multi_doctor_batch_stores_its_booking_members_and_reads_the_booking_back_whole,
    a_batch_with_a_member_on_a_cancellation_or_a_taken_slot_stores_nothing,
    create_doctor_then_load_doctor_returns_registered_at_seq_1_with_the_profile,
    load_doctor_of_an_unknown_doctor_is_none,
    an_appended_batch_is_reflected_in_the_journal_and_every_projection,
    a_batch_with_two_active_consultations_at_one_start_fails_whole_with_constraint,
    a_batch_with_a_duplicate_journal_seq_fails_whole_with_constraint,
    a_batch_that_books_cancels_and_rebooks_one_slot_succeeds,
    a_batch_mixing_bookings_reschedules_and_cancellations_of_one_doctor_in_tricky_orders_succeeds,
    a_reschedule_onto_an_active_start_fails_the_whole_batch_with_constraint,
    snapshots_are_replaced_hide_the_events_they_cover_and_can_be_deleted,
    snapshots_saved_together_are_each_stored_and_replace_older_ones,
    max_consultation_id_is_zero_then_the_highest_id,
    patient_consultations_are_newest_first_and_limited,
    doctor_consultations_filter_a_half_open_range_across_a_utc_day_boundary,
    timestamps_round_trip_at_microsecond_precision,
    a_five_thousand_row_append_is_stored,
    concurrent_appends_and_doctor_creations_all_commit,
    ping_answers,
    a_batch_writes_session_rows_and_notifications_with_its_bookings,
    a_failed_batch_writes_no_outbox_rows,
    settling_a_session_is_once_only_and_notifies_patient_and_doctor,
    sessions_are_claimed_and_settled_in_batches_each_once,
    a_retried_session_is_due_again_only_at_its_next_attempt,
    the_inbox_pages_newest_first_and_marks_only_the_recipients_own_read,
    a_webhook_stays_due_until_delivered_or_given_up,
    notifications_written_while_webhooks_are_not_queued_reach_the_inbox_and_no_webhook,
    an_idempotency_key_is_stored_with_its_booking_or_reschedule_in_the_same_batch,
    a_failing_batch_stores_neither_its_bookings_nor_their_idempotency_keys,
    a_batch_repeating_a_stored_idempotency_key_of_the_patient_fails_whole_with_constraint,
    purging_idempotency_keys_removes_only_expired_ones_in_bounded_batches,
    unexpired_idempotency_keys_are_read_in_key_order_page_by_page,
    the_doctor_journal_is_the_latest_rows_newest_first_with_their_times_and_only_that_doctors,
);

// ---------------------------------------------------------------------------------------
// Fixtures

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .expect("valid UTC time")
}

/// When the fixtures' facts are recorded.
fn now() -> DateTime<Utc> {
    utc(2030, 1, 1, 8, 0, 0)
}

fn new_doctor(name: &str) -> NewDoctor {
    NewDoctor {
        name: name.to_owned(),
        specialty: "cardiology".to_owned(),
        timezone: "Europe/London".parse::<Tz>().expect("known timezone"),
        slot_minutes: 30,
        schedule: WeeklySchedule::weekdays(LocalTime::hm(9, 0), LocalTime::hm(17, 0)),
        is_available: true,
        is_approved: true,
    }
}

fn medical(reason: &str) -> MedicalInfo {
    MedicalInfo {
        reason: Some(reason.to_owned()),
        symptoms: Some("shortness of breath".to_owned()),
        medical_history: None,
        allergies: Some("penicillin".to_owned()),
        current_medications: None,
    }
}

fn booking(
    doctor_id: i64,
    seq: u64,
    id: i64,
    patient_id: i64,
    start: DateTime<Utc>,
    medical: MedicalInfo,
) -> JournalRecord {
    JournalRecord {
        doctor_id,
        seq,
        recorded_at: now(),
        event: DoctorEvent::Booked {
            slot: BookedSlot {
                id,
                patient_id,
                start,
                duration_minutes: 30,
                status: ConsultationStatus::Scheduled,
                mode: ConsultMode::Video,
                created_at: now(),
            },
        },
        medical,
        idempotency: None,
        member: None,
    }
}

fn cancellation(doctor_id: i64, seq: u64, consultation_id: i64) -> JournalRecord {
    JournalRecord {
        doctor_id,
        seq,
        recorded_at: now() + Duration::minutes(5),
        event: DoctorEvent::Cancelled {
            consultation_id,
            at: now() + Duration::minutes(5),
            by: Some(ActedBy::Patient),
        },
        medical: MedicalInfo::default(),
        idempotency: None,
        member: None,
    }
}

fn reschedule(
    doctor_id: i64,
    seq: u64,
    consultation_id: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> JournalRecord {
    JournalRecord {
        doctor_id,
        seq,
        recorded_at: now() + Duration::minutes(3),
        event: DoctorEvent::Rescheduled {
            consultation_id,
            from,
            to,
            at: now() + Duration::minutes(3),
        },
        medical: MedicalInfo::default(),
        idempotency: None,
        member: None,
    }
}

/// The consultation a `booking` record should project to.
fn projected(record: &JournalRecord) -> Consultation {
    record.booked_consultation().expect("a booking")
}

async fn create(store: &dyn Store, name: &str) -> DoctorProfile {
    store
        .create_doctor(&new_doctor(name), now())
        .await
        .expect("create_doctor")
}

/// How many consultations are active in the store.
async fn active_count(store: &dyn Store) -> i64 {
    store
        .active_consultations(None)
        .await
        .expect("active")
        .len() as i64
}

async fn journal_seqs(store: &dyn Store, doctor_id: i64) -> Vec<u64> {
    store
        .load_doctor(doctor_id)
        .await
        .expect("load_doctor")
        .expect("doctor exists")
        .events
        .iter()
        .map(|(seq, _)| *seq)
        .collect()
}

fn ids(consultations: &[Consultation]) -> Vec<i64> {
    consultations.iter().map(|c| c.id).collect()
}

/// Monday 2030-01-07, 09:00 UTC plus `slots` half hours.
fn slot(slots: i64) -> DateTime<Utc> {
    utc(2030, 1, 7, 9, 0, 0) + Duration::minutes(30 * slots)
}

// ---------------------------------------------------------------------------------------
// The suite

async fn the_doctor_journal_is_the_latest_rows_newest_first_with_their_times_and_only_that_doctors(
    store: Arc<dyn Store>,
) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    let other = create(&*store, "Dr. Ben Lind").await;
    let batch = vec![
        booking(doctor.id, 2, 1, 100, slot(0), medical("chest pain")),
        booking(other.id, 2, 2, 100, slot(0), MedicalInfo::default()),
        reschedule(doctor.id, 3, 1, slot(0), slot(2)),
        cancellation(doctor.id, 4, 1),
        JournalRecord {
            doctor_id: doctor.id,
            seq: 5,
            recorded_at: now() + Duration::minutes(9),
            event: DoctorEvent::StatusChanged {
                is_available: false,
                is_approved: true,
                by: Some(ActedBy::Admin),
            },
            medical: MedicalInfo::default(),
            idempotency: None,
            member: None,
        },
    ];
    store.append(&batch).await.expect("append");

    let latest = store.doctor_journal(doctor.id, 3).await.expect("journal");
    let seen: Vec<(u64, DateTime<Utc>, DoctorEvent)> = latest
        .into_iter()
        .map(|e| (e.seq, e.recorded_at, e.event))
        .collect();
    let expected: Vec<(u64, DateTime<Utc>, DoctorEvent)> = batch[2..]
        .iter()
        .rev()
        .map(|r| (r.seq, r.recorded_at, r.event.clone()))
        .collect();
    assert_eq!(seen, expected, "the latest three, newest first, `by` kept");

    let all = store.doctor_journal(doctor.id, 100).await.expect("journal");
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![5, 4, 3, 2, 1]
    );
    let registered = all.last().expect("seq 1");
    assert_eq!(registered.recorded_at, now());
    assert_eq!(
        registered.event,
        DoctorEvent::Registered {
            profile: doctor.clone()
        }
    );
    assert_eq!(
        store
            .doctor_journal(other.id, 100)
            .await
            .expect("journal")
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        vec![2, 1],
        "only that doctor's rows"
    );
    assert!(store
        .doctor_journal(424_242, 100)
        .await
        .expect("journal")
        .is_empty());
    assert!(store
        .doctor_journal(doctor.id, 0)
        .await
        .expect("journal")
        .is_empty());
}

async fn create_doctor_then_load_doctor_returns_registered_at_seq_1_with_the_profile(
    store: Arc<dyn Store>,
) {
    let first = create(&*store, "Dr. Ada Okafor").await;
    let second = create(&*store, "Dr. Ben Lind").await;
    assert_ne!(first.id, second.id);
    let expected = new_doctor("Dr. Ada Okafor");
    assert_eq!(first.name, expected.name);
    assert_eq!(first.timezone, expected.timezone);
    assert_eq!(first.schedule, expected.schedule);
    assert_eq!(first.created_at, now());

    let history = store
        .load_doctor(first.id)
        .await
        .expect("load_doctor")
        .expect("doctor exists");
    assert_eq!(history.snapshot, None);
    assert_eq!(
        history.events,
        vec![(
            1,
            DoctorEvent::Registered {
                profile: first.clone()
            }
        )]
    );
    assert_eq!(
        store.list_doctors().await.expect("list_doctors"),
        vec![first, second]
    );
}

async fn load_doctor_of_an_unknown_doctor_is_none(store: Arc<dyn Store>) {
    assert_eq!(store.load_doctor(42).await.expect("load_doctor"), None);
}

async fn an_appended_batch_is_reflected_in_the_journal_and_every_projection(store: Arc<dyn Store>) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    let other = create(&*store, "Dr. Ben Lind").await;
    let mut new_schedule = WeeklySchedule::weekdays(LocalTime::hm(8, 0), LocalTime::hm(12, 0));
    new_schedule.monday = new_schedule
        .monday
        .with_breaks(&[Break::new(LocalTime::hm(10, 0), LocalTime::hm(10, 30))]);
    let new_overrides: DateOverrides = [
        (
            now().date_naive() + Duration::days(3),
            DateOverride::closed(),
        ),
        (
            now().date_naive() + Duration::days(4),
            DateOverride::open(LocalTime::hm(13, 0), LocalTime::hm(15, 0), &[]),
        ),
    ]
    .into_iter()
    .collect();
    let new_policy = BookingPolicy {
        min_notice_minutes: 120,
        booking_window_days: Some(30),
        max_per_day: Some(4),
    };
    let new_tz = "America/New_York".parse::<Tz>().expect("known timezone");
    let b1 = booking(doctor.id, 2, 1, 100, slot(0), medical("chest pain"));
    let b2 = booking(doctor.id, 3, 2, 101, slot(1), MedicalInfo::default());
    let b3 = booking(other.id, 2, 3, 100, slot(0), medical("follow-up"));
    let batch = vec![
        b1.clone(),
        b2.clone(),
        b3.clone(),
        cancellation(doctor.id, 4, 2),
        JournalRecord {
            doctor_id: doctor.id,
            seq: 5,
            recorded_at: now(),
            event: DoctorEvent::ScheduleUpdated {
                timezone: new_tz,
                slot_minutes: 20,
                schedule: new_schedule,
                date_overrides: new_overrides.clone(),
                policy: new_policy,
            },
            medical: MedicalInfo::default(),
            idempotency: None,
            member: None,
        },
        JournalRecord {
            doctor_id: doctor.id,
            seq: 6,
            recorded_at: now(),
            event: DoctorEvent::StatusChanged {
                is_available: false,
                is_approved: true,
                by: Some(ActedBy::Doctor),
            },
            medical: MedicalInfo::default(),
            idempotency: None,
            member: None,
        },
    ];
    store.append(&batch).await.expect("append");
    store.append(&[]).await.expect("an empty batch is a no-op");

    // The journal holds every event, in order, after Registered.
    let history = store
        .load_doctor(doctor.id)
        .await
        .expect("load_doctor")
        .expect("doctor exists");
    let expected: Vec<(u64, DoctorEvent)> = batch
        .iter()
        .filter(|r| r.doctor_id == doctor.id)
        .map(|r| (r.seq, r.event.clone()))
        .collect();
    assert_eq!(history.events[0].0, 1);
    assert_eq!(history.events[1..], expected[..]);
    assert_eq!(journal_seqs(&*store, other.id).await, vec![1, 2]);

    // The doctors rows.
    let doctors = store.list_doctors().await.expect("list_doctors");
    let updated = DoctorProfile {
        timezone: new_tz,
        slot_minutes: 20,
        schedule: new_schedule,
        is_available: false,
        date_overrides: new_overrides,
        policy: new_policy,
        ..doctor.clone()
    };
    assert_eq!(doctors, vec![updated, other.clone()]);

    // The consultations rows, medical text included.
    assert_eq!(
        store.get_consultation(1).await.expect("get"),
        Some(projected(&b1))
    );
    assert_eq!(
        store.get_consultation(3).await.expect("get"),
        Some(projected(&b3))
    );
    let cancelled = store
        .get_consultation(2)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(
        cancelled,
        Consultation {
            status: ConsultationStatus::Cancelled,
            cancelled_at: Some(now() + Duration::minutes(5)),
            ..projected(&b2)
        }
    );
    assert_eq!(store.get_consultation(99).await.expect("get"), None);

    // Active consultations exclude the cancelled one, ordered by doctor then start.
    assert_eq!(
        ids(&store.active_consultations(None).await.expect("active")),
        vec![1, 3]
    );
    assert_eq!(
        ids(&store
            .active_consultations(Some(doctor.id))
            .await
            .expect("active")),
        vec![1]
    );
}

async fn a_batch_with_two_active_consultations_at_one_start_fails_whole_with_constraint(
    store: Arc<dyn Store>,
) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    store
        .append(&[booking(
            doctor.id,
            2,
            1,
            100,
            slot(0),
            MedicalInfo::default(),
        )])
        .await
        .expect("first booking");

    // Against a stored booking.
    let batch = [
        booking(doctor.id, 3, 2, 101, slot(1), medical("a")),
        booking(doctor.id, 4, 3, 102, slot(0), medical("b")),
    ];
    let err = store.append(&batch).await.expect_err("duplicate start");
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
    assert!(!err.to_string().contains("penicillin"), "{err}");

    // Inside one batch.
    let batch = [
        booking(doctor.id, 3, 2, 101, slot(2), MedicalInfo::default()),
        booking(doctor.id, 4, 3, 102, slot(2), MedicalInfo::default()),
    ];
    let err = store.append(&batch).await.expect_err("duplicate start");
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");

    // Nothing of either batch was stored.
    assert_eq!(journal_seqs(&*store, doctor.id).await, vec![1, 2]);
    assert_eq!(store.get_consultation(2).await.expect("get"), None);
    assert_eq!(store.get_consultation(3).await.expect("get"), None);
    assert_eq!(store.max_consultation_id().await.expect("max"), 1);
    assert_eq!(
        ids(&store.active_consultations(None).await.expect("active")),
        vec![1]
    );
}

async fn a_batch_with_a_duplicate_journal_seq_fails_whole_with_constraint(store: Arc<dyn Store>) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    let batch = [
        booking(doctor.id, 2, 1, 100, slot(0), MedicalInfo::default()),
        booking(doctor.id, 2, 2, 101, slot(1), MedicalInfo::default()),
    ];
    let err = store.append(&batch).await.expect_err("duplicate seq");
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");

    // Against Registered at seq 1.
    let batch = [
        booking(doctor.id, 1, 1, 100, slot(0), MedicalInfo::default()),
        booking(doctor.id, 2, 2, 101, slot(1), MedicalInfo::default()),
    ];
    let err = store.append(&batch).await.expect_err("duplicate seq");
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");

    assert_eq!(journal_seqs(&*store, doctor.id).await, vec![1]);
    assert_eq!(store.max_consultation_id().await.expect("max"), 0);
}

async fn a_batch_that_books_cancels_and_rebooks_one_slot_succeeds(store: Arc<dyn Store>) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    let batch = [
        booking(doctor.id, 2, 1, 100, slot(0), MedicalInfo::default()),
        cancellation(doctor.id, 3, 1),
        booking(doctor.id, 4, 2, 101, slot(0), MedicalInfo::default()),
        cancellation(doctor.id, 5, 2),
        booking(doctor.id, 6, 3, 102, slot(0), medical("third time")),
    ];
    store.append(&batch).await.expect("append");
    assert_eq!(
        journal_seqs(&*store, doctor.id).await,
        vec![1, 2, 3, 4, 5, 6]
    );
    let active = store
        .active_consultations(Some(doctor.id))
        .await
        .expect("active");
    assert_eq!(active, vec![projected(&batch[4])]);
    for id in [1, 2] {
        let c = store
            .get_consultation(id)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(c.status, ConsultationStatus::Cancelled);
    }
}

async fn a_batch_mixing_bookings_reschedules_and_cancellations_of_one_doctor_in_tricky_orders_succeeds(
    store: Arc<dyn Store>,
) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    let other = create(&*store, "Dr. Ben Lind").await;
    let stored = [
        booking(doctor.id, 2, 1, 100, slot(0), medical("first")),
        booking(doctor.id, 3, 2, 101, slot(1), MedicalInfo::default()),
        booking(doctor.id, 4, 3, 102, slot(2), medical("third")),
    ];
    store.append(&stored).await.expect("first batch");
    // Each step is what the doctor's actor could decide after the one before it.
    let batch = vec![
        // Reschedule 1: slot 0 -> 5, then book the start it left.
        reschedule(doctor.id, 5, 1, slot(0), slot(5)),
        booking(doctor.id, 6, 4, 103, slot(0), medical("fourth")),
        // Cancel 2 at slot 1, then move 3 into it.
        cancellation(doctor.id, 7, 2),
        reschedule(doctor.id, 8, 3, slot(2), slot(1)),
        // Book the start 3 left, then move that new booking on.
        booking(doctor.id, 9, 5, 104, slot(2), MedicalInfo::default()),
        reschedule(doctor.id, 10, 5, slot(2), slot(3)),
        // Swap 1 (slot 5) and 4 (slot 0) through the free slot 6.
        reschedule(doctor.id, 11, 1, slot(5), slot(6)),
        reschedule(doctor.id, 12, 4, slot(0), slot(5)),
        reschedule(doctor.id, 13, 1, slot(6), slot(0)),
        // Another doctor's booking at slot 0, moved: independent of the first doctor's.
        booking(other.id, 2, 6, 100, slot(0), MedicalInfo::default()),
        reschedule(other.id, 3, 6, slot(0), slot(1)),
    ];
    store.append(&batch).await.expect("the mixed batch commits");

    let history = store
        .load_doctor(doctor.id)
        .await
        .expect("load_doctor")
        .expect("doctor exists");
    let expected: Vec<(u64, DoctorEvent)> = stored
        .iter()
        .chain(&batch)
        .filter(|r| r.doctor_id == doctor.id)
        .map(|r| (r.seq, r.event.clone()))
        .collect();
    assert_eq!(history.events[1..], expected[..]);

    let at_of = |id: i64| {
        let store = Arc::clone(&store);
        async move {
            let c = store.get_consultation(id).await.expect("get").expect("row");
            (c.scheduled_at, c.status)
        }
    };
    assert_eq!(at_of(1).await, (slot(0), ConsultationStatus::Scheduled));
    assert_eq!(at_of(2).await, (slot(1), ConsultationStatus::Cancelled));
    assert_eq!(at_of(3).await, (slot(1), ConsultationStatus::Scheduled));
    assert_eq!(at_of(4).await, (slot(5), ConsultationStatus::Scheduled));
    assert_eq!(at_of(5).await, (slot(3), ConsultationStatus::Scheduled));
    assert_eq!(at_of(6).await, (slot(1), ConsultationStatus::Scheduled));
    let active = store
        .active_consultations(Some(doctor.id))
        .await
        .expect("active");
    assert_eq!(ids(&active), vec![1, 3, 5, 4], "by start, each once");
    // A move changes the start only: same reference, mode, duration, medical text.
    assert_eq!(
        store.get_consultation(1).await.expect("get"),
        Some(Consultation {
            scheduled_at: slot(0),
            ..projected(&stored[0])
        })
    );
    assert_eq!(
        store.get_consultation(4).await.expect("get"),
        Some(Consultation {
            scheduled_at: slot(5),
            ..projected(&batch[1])
        })
    );
    // The session rows are the bookings' (a reschedule adds or changes none).
    let due = store.due_sessions(now(), 10).await.expect("due");
    assert_eq!(
        due.iter().map(|t| t.consultation_id).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    assert_eq!(
        due[2].scheduled_at,
        slot(1),
        "the worker sees the new start"
    );

    // Each move notifies patient and doctor, showing the consultation as it is now.
    use NotificationKind::*;
    assert_eq!(
        kinds(&*store, Recipient::patient(100)).await,
        vec![
            (ConsultationRescheduled, 6),
            (ConsultationScheduled, 6),
            (ConsultationRescheduled, 1),
            (ConsultationRescheduled, 1),
            (ConsultationRescheduled, 1),
            (ConsultationScheduled, 1),
        ]
    );
    let moved = &store
        .notifications(&inbox(Recipient::patient(102)))
        .await
        .expect("inbox")[0];
    assert_eq!(
        (
            moved.kind,
            moved.consultation.id,
            moved.consultation.scheduled_at
        ),
        (ConsultationRescheduled, 3, slot(1))
    );
    let doctor_kinds = kinds(&*store, Recipient::doctor(doctor.id)).await;
    assert_eq!(
        doctor_kinds
            .iter()
            .filter(|(k, _)| *k == ConsultationRescheduled)
            .count(),
        6
    );
    assert_eq!(
        doctor_kinds.len(),
        5 + 1 + 6,
        "bookings, the cancellation, the moves"
    );
}

async fn a_reschedule_onto_an_active_start_fails_the_whole_batch_with_constraint(
    store: Arc<dyn Store>,
) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    store
        .append(&[
            booking(doctor.id, 2, 1, 100, slot(0), MedicalInfo::default()),
            booking(doctor.id, 3, 2, 101, slot(1), MedicalInfo::default()),
        ])
        .await
        .expect("bookings");
    let batch = [
        booking(doctor.id, 4, 3, 102, slot(2), MedicalInfo::default()),
        reschedule(doctor.id, 5, 2, slot(1), slot(0)),
    ];
    let err = store
        .append(&batch)
        .await
        .expect_err("two active at slot 0");
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
    assert_eq!(journal_seqs(&*store, doctor.id).await, vec![1, 2, 3]);
    assert_eq!(store.get_consultation(3).await.expect("get"), None);
    let second = store.get_consultation(2).await.expect("get").expect("row");
    assert_eq!(second.scheduled_at, slot(1), "nothing of the batch moved");
    assert_eq!(kinds(&*store, Recipient::patient(101)).await.len(), 1);
}

async fn snapshots_are_replaced_hide_the_events_they_cover_and_can_be_deleted(
    store: Arc<dyn Store>,
) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    let other = create(&*store, "Dr. Ben Lind").await;
    let batch: Vec<JournalRecord> = (0..3)
        .map(|i| {
            booking(
                doctor.id,
                2 + i as u64,
                1 + i,
                100,
                slot(i),
                MedicalInfo::default(),
            )
        })
        .collect();
    store.append(&batch).await.expect("append");

    store
        .save_snapshot(doctor.id, 3, b"\x01state at 3")
        .await
        .expect("save");
    let history = store
        .load_doctor(doctor.id)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(
        history.snapshot,
        Some(StoredSnapshot {
            seq: 3,
            blob: b"\x01state at 3".to_vec()
        })
    );
    assert_eq!(history.events, vec![(4, batch[2].event.clone())]);

    store
        .save_snapshot(doctor.id, 4, b"\x01state at 4")
        .await
        .expect("save again");
    store
        .save_snapshot(other.id, 1, b"\x01other")
        .await
        .expect("save other");
    let history = store
        .load_doctor(doctor.id)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(
        history.snapshot,
        Some(StoredSnapshot {
            seq: 4,
            blob: b"\x01state at 4".to_vec()
        })
    );
    assert!(history.events.is_empty());

    assert_eq!(store.delete_snapshots().await.expect("delete"), 2);
    assert_eq!(store.delete_snapshots().await.expect("delete"), 0);
    let history = store
        .load_doctor(doctor.id)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(history.snapshot, None);
    assert_eq!(
        history.events.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
}

async fn snapshots_saved_together_are_each_stored_and_replace_older_ones(store: Arc<dyn Store>) {
    let mut doctors = Vec::new();
    for name in ["Dr. Ada Okafor", "Dr. Ben Lind", "Dr. Chen Wu"] {
        doctors.push(create(&*store, name).await.id);
    }
    let snapshot = |doctor_id, seq: u64, blob: &str| SnapshotWrite {
        doctor_id,
        seq,
        blob: blob.as_bytes().to_vec(),
        fence: None,
    };
    store
        .save_snapshot(doctors[0], 1, b"\x01old")
        .await
        .expect("save");
    assert_eq!(
        store.save_snapshots(&[]).await.expect("none"),
        Vec::<bool>::new()
    );
    let written = store
        .save_snapshots(&[
            snapshot(doctors[0], 1, "\x01a"),
            snapshot(doctors[1], 1, "\x01b"),
            snapshot(doctors[2], 1, "\x01c"),
        ])
        .await
        .expect("save together");
    assert_eq!(written, [true, true, true]);
    for (id, blob) in doctors.iter().zip(["\x01a", "\x01b", "\x01c"]) {
        let history = store.load_doctor(*id).await.expect("load").expect("exists");
        assert_eq!(
            history.snapshot,
            Some(StoredSnapshot {
                seq: 1,
                blob: blob.as_bytes().to_vec()
            })
        );
        assert!(history.events.is_empty());
    }
    assert_eq!(store.delete_snapshots().await.expect("delete"), 3);
}

async fn max_consultation_id_is_zero_then_the_highest_id(store: Arc<dyn Store>) {
    assert_eq!(store.max_consultation_id().await.expect("max"), 0);
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    store
        .append(&[
            booking(doctor.id, 2, 17, 100, slot(0), MedicalInfo::default()),
            booking(doctor.id, 3, 5, 100, slot(1), MedicalInfo::default()),
            cancellation(doctor.id, 4, 17),
        ])
        .await
        .expect("append");
    assert_eq!(store.max_consultation_id().await.expect("max"), 17);
}

async fn patient_consultations_are_newest_first_and_limited(store: Arc<dyn Store>) {
    let a = create(&*store, "Dr. Ada Okafor").await;
    let b = create(&*store, "Dr. Ben Lind").await;
    store
        .append(&[
            booking(a.id, 2, 1, 100, slot(3), MedicalInfo::default()),
            booking(a.id, 3, 2, 100, slot(0), MedicalInfo::default()),
            booking(b.id, 2, 3, 100, slot(5), MedicalInfo::default()),
            booking(b.id, 3, 4, 100, slot(1), MedicalInfo::default()),
            booking(b.id, 4, 5, 200, slot(4), MedicalInfo::default()),
            cancellation(a.id, 4, 1),
        ])
        .await
        .expect("append");
    let all = store.patient_consultations(100, 50).await.expect("query");
    assert_eq!(ids(&all), vec![3, 1, 4, 2]);
    assert_eq!(all[1].status, ConsultationStatus::Cancelled);
    let newest = store.patient_consultations(100, 2).await.expect("query");
    assert_eq!(ids(&newest), vec![3, 1]);
    assert!(store
        .patient_consultations(999, 10)
        .await
        .expect("query")
        .is_empty());
}

async fn doctor_consultations_filter_a_half_open_range_across_a_utc_day_boundary(
    store: Arc<dyn Store>,
) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    let other = create(&*store, "Dr. Ben Lind").await;
    let late = utc(2030, 3, 1, 23, 0, 0);
    let starts = [
        (1, utc(2030, 3, 1, 22, 59, 59)),
        (2, late),
        (3, utc(2030, 3, 1, 23, 59, 59)),
        (4, utc(2030, 3, 1, 23, 59, 59) + Duration::milliseconds(250)),
        (5, utc(2030, 3, 2, 0, 0, 0)),
        (6, utc(2030, 3, 2, 0, 30, 0)),
        (7, utc(2030, 3, 2, 1, 0, 0)),
        (8, utc(2031, 3, 2, 0, 0, 0)),
    ];
    let mut batch: Vec<JournalRecord> = starts
        .iter()
        .enumerate()
        .map(|(i, (id, start))| {
            booking(
                doctor.id,
                2 + i as u64,
                *id,
                100,
                *start,
                MedicalInfo::default(),
            )
        })
        .collect();
    batch.push(booking(other.id, 2, 9, 100, late, MedicalInfo::default()));
    store.append(&batch).await.expect("append");

    let found = store
        .doctor_consultations(doctor.id, late, utc(2030, 3, 2, 1, 0, 0), 100)
        .await
        .expect("query");
    assert_eq!(ids(&found), vec![2, 3, 4, 5, 6]);
    assert_eq!(found[2].scheduled_at, starts[3].1);

    let limited = store
        .doctor_consultations(doctor.id, late, utc(2030, 3, 2, 1, 0, 0), 2)
        .await
        .expect("query");
    assert_eq!(ids(&limited), vec![2, 3]);

    let next_day = store
        .doctor_consultations(
            doctor.id,
            utc(2030, 3, 2, 0, 0, 0),
            utc(2030, 3, 3, 0, 0, 0),
            100,
        )
        .await
        .expect("query");
    assert_eq!(ids(&next_day), vec![5, 6, 7]);
}

async fn timestamps_round_trip_at_microsecond_precision(store: Arc<dyn Store>) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    let start = slot(0) + Duration::nanoseconds(123_456_789);
    store
        .append(&[booking(doctor.id, 2, 1, 100, start, MedicalInfo::default())])
        .await
        .expect("append");
    let stored = store
        .get_consultation(1)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(
        stored.scheduled_at,
        slot(0) + Duration::microseconds(123_456)
    );
}

async fn a_five_thousand_row_append_is_stored(store: Arc<dyn Store>) {
    const ROWS: i64 = 5_000;
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    let mut batch: Vec<JournalRecord> = (0..ROWS)
        .map(|i| {
            booking(
                doctor.id,
                2 + i as u64,
                1 + i,
                1_000 + i % 7,
                slot(i),
                medical(&format!("visit {i}")),
            )
        })
        .collect();
    batch
        .extend((0..ROWS / 10).map(|i| cancellation(doctor.id, (2 + ROWS + i) as u64, 1 + i * 10)));
    store.append(&batch).await.expect("append");

    let history = store
        .load_doctor(doctor.id)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(history.events.len() as i64, 1 + ROWS + ROWS / 10);
    assert_eq!(store.max_consultation_id().await.expect("max"), ROWS);
    let all = store
        .doctor_consultations(doctor.id, slot(0), slot(ROWS), 10_000)
        .await
        .expect("query");
    assert_eq!(all.len() as i64, ROWS);
    assert_eq!(all[4_321], projected(&batch[4_321]));
    let active = store
        .active_consultations(Some(doctor.id))
        .await
        .expect("active");
    assert_eq!(active.len() as i64, ROWS - ROWS / 10);
}

async fn concurrent_appends_and_doctor_creations_all_commit(store: Arc<dyn Store>) {
    const WRITERS: i64 = 6;
    const BATCHES: i64 = 15;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let doctor = create(&*store, &format!("Dr. Writer {w}")).await;
            for b in 0..BATCHES {
                let id = 1 + w * BATCHES + b;
                let record = booking(doctor.id, 2 + b as u64, id, 100 + w, slot(b), medical("x"));
                store.append(&[record]).await.expect("append");
                store.ping().await.expect("ping");
            }
            doctor.id
        }));
    }
    for task in tasks {
        let doctor_id = task.await.expect("writer task");
        let seqs = journal_seqs(&*store, doctor_id).await;
        assert_eq!(seqs, (1..=1 + BATCHES as u64).collect::<Vec<_>>());
    }
    assert_eq!(active_count(&*store).await, WRITERS * BATCHES);
    assert_eq!(
        store.list_doctors().await.expect("list").len() as i64,
        WRITERS
    );
}

async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
}

// ---------------------------------------------------------------------------------------
// SQLite only

fn temp_dir(prefix: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(testing::unique_name(prefix))
}

#[tokio::test]
async fn sqlite_connect_creates_a_missing_parent_directory() {
    let root = temp_dir("consult_test_dir");
    let file = root.join("nested").join("deeper").join("consult.db");
    let store = SqliteStore::connect(&format!("sqlite://{}", file.display()))
        .await
        .expect("connect");
    store.ping().await.expect("ping");
    store.close().await;
    assert!(file.is_file(), "{} was not created", file.display());
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn reopening_a_sqlite_file_keeps_the_data() {
    let root = temp_dir("consult_test_reopen");
    let url = format!("sqlite://{}", root.join("consult.db").display());
    let store = SqliteStore::connect(&url).await.expect("connect");
    let doctor = create(&store, "Dr. Ada Okafor").await;
    let record = booking(doctor.id, 2, 1, 100, slot(0), medical("chest pain"));
    store
        .append(std::slice::from_ref(&record))
        .await
        .expect("append");
    store
        .save_snapshot(doctor.id, 2, b"\x01s")
        .await
        .expect("snapshot");
    store.close().await;
    drop(store);

    let store = open_store(&url).await.expect("reopen");
    let history = store
        .load_doctor(doctor.id)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(history.snapshot.map(|s| s.seq), Some(2));
    assert_eq!(store.list_doctors().await.expect("list"), vec![doctor]);
    assert_eq!(
        store.get_consultation(1).await.expect("get"),
        Some(projected(&record))
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn sqlite_connections_use_wal_full_sync_and_foreign_keys() {
    let (store, path) = testing::fresh_sqlite().await;
    let mut conn = store.pool().acquire().await.expect("acquire");
    let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *conn)
        .await
        .expect("pragma");
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&mut *conn)
        .await
        .expect("pragma");
    let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&mut *conn)
        .await
        .expect("pragma");
    let busy_timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(&mut *conn)
        .await
        .expect("pragma");
    drop(conn);
    store.close().await;
    testing::remove_sqlite(&path);
    assert_eq!(journal_mode, "wal");
    assert_eq!(synchronous, 2, "FULL");
    assert_eq!(foreign_keys, 1);
    assert_eq!(busy_timeout, 5_000);
}

#[tokio::test]
async fn open_store_refuses_an_unknown_scheme_without_echoing_the_url() {
    let err = open_store("mysql://user:secret@host/db")
        .await
        .err()
        .expect("unknown scheme");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains("secret"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Outboxes: sessions and notifications

fn with_mode(mut record: JournalRecord, mode: ConsultMode) -> JournalRecord {
    if let DoctorEvent::Booked { slot } = &mut record.event {
        slot.mode = mode;
    }
    record
}

fn inbox(recipient: Recipient) -> InboxQuery {
    InboxQuery {
        recipient,
        before_id: None,
        limit: 50,
        unread_only: false,
    }
}

async fn kinds(store: &dyn Store, recipient: Recipient) -> Vec<(NotificationKind, i64)> {
    store
        .notifications(&inbox(recipient))
        .await
        .expect("notifications")
        .iter()
        .map(|n| (n.kind, n.consultation.id))
        .collect()
}

async fn a_batch_writes_session_rows_and_notifications_with_its_bookings(store: Arc<dyn Store>) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    let batch = vec![
        booking(doctor.id, 2, 1, 100, slot(0), medical("chest pain")),
        with_mode(
            booking(doctor.id, 3, 2, 101, slot(1), MedicalInfo::default()),
            ConsultMode::Whatsapp,
        ),
        with_mode(
            booking(doctor.id, 4, 3, 100, slot(2), MedicalInfo::default()),
            ConsultMode::Chat,
        ),
        cancellation(doctor.id, 5, 3),
        // A booking after the cancellation: its notifications come after the cancellation's.
        booking(doctor.id, 6, 4, 100, slot(3), MedicalInfo::default()),
    ];
    store.append(&batch).await.expect("append");

    // In-app bookings get a pending session, due at once; WhatsApp gets none.
    let due = store.due_sessions(now(), 10).await.expect("due_sessions");
    assert_eq!(
        due.iter().map(|t| t.consultation_id).collect::<Vec<_>>(),
        vec![1, 3, 4]
    );
    assert_eq!(due[0].mode, ConsultMode::Video);
    assert_eq!(due[0].patient_id, 100);
    assert_eq!(due[0].doctor_id, doctor.id);
    assert_eq!(due[0].reference, reference_for(1));
    assert_eq!(due[0].attempts, 0);
    assert_eq!(due[1].consultation_status, ConsultationStatus::Cancelled);
    assert!(store
        .due_sessions(now() - Duration::seconds(1), 10)
        .await
        .expect("due")
        .is_empty());
    assert!(store.pending_session(2).await.expect("pending").is_none());
    let record = store.session(1).await.expect("session").expect("row");
    assert_eq!(record.status, SessionStatus::Pending);
    assert_eq!(record.doctor_join, None);

    // Each event once for the patient and once for the doctor, newest first.
    use NotificationKind::*;
    assert_eq!(
        kinds(&*store, Recipient::patient(100)).await,
        vec![
            (ConsultationScheduled, 4),
            (ConsultationCancelled, 3),
            (ConsultationScheduled, 3),
            (ConsultationScheduled, 1)
        ]
    );
    assert_eq!(
        kinds(&*store, Recipient::patient(101)).await,
        vec![(ConsultationScheduled, 2)]
    );
    assert_eq!(
        kinds(&*store, Recipient::doctor(doctor.id)).await,
        vec![
            (ConsultationScheduled, 4),
            (ConsultationCancelled, 3),
            (ConsultationScheduled, 3),
            (ConsultationScheduled, 2),
            (ConsultationScheduled, 1)
        ]
    );
    // A notification carries the consultation as it stands, never medical text.
    let first = &store
        .notifications(&inbox(Recipient::patient(100)))
        .await
        .expect("inbox")[1];
    assert_eq!(first.consultation.status, ConsultationStatus::Cancelled);
    assert_eq!(first.read_at, None);
    assert_eq!(
        store
            .due_webhooks(now() + Duration::minutes(5), 100)
            .await
            .expect("due")
            .len(),
        10
    );
}

fn with_member(mut record: JournalRecord, booking_id: i64, name: &str) -> JournalRecord {
    record.member = Some(BookingMember {
        booking_id,
        patient_name: name.to_owned(),
        relation: Some("parent".to_owned()),
    });
    record
}

async fn a_multi_doctor_batch_stores_its_booking_members_and_reads_the_booking_back_whole(
    store: Arc<dyn Store>,
) {
    let a = create(&*store, "Dr. Ada Okafor").await;
    let b = create(&*store, "Dr. Ben Adeyemi").await;
    // One transaction over two doctors, plus an unrelated single booking.
    let batch = vec![
        with_member(
            booking(a.id, 2, 10, 100, slot(0), medical("fever")),
            10,
            "Zoe",
        ),
        with_member(
            booking(b.id, 2, 11, 100, slot(0), MedicalInfo::default()),
            10,
            "Yan",
        ),
        booking(b.id, 3, 12, 101, slot(1), MedicalInfo::default()),
    ];
    store.append(&batch).await.expect("append");
    let booking = store.booking_consultations(10).await.expect("read");
    assert_eq!(
        booking,
        vec![projected(&batch[0]), projected(&batch[1])],
        "both consultations, by id, with who they are for"
    );
    assert_eq!(booking[0].member.as_ref().unwrap().patient_name, "Zoe");
    assert_eq!(
        booking[1].member.as_ref().unwrap().relation.as_deref(),
        Some("parent")
    );
    let single = store
        .get_consultation(12)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(single.member, None);
    assert_eq!(
        store
            .patient_consultations(100, 10)
            .await
            .expect("list")
            .len(),
        2
    );
    assert!(store
        .booking_consultations(12)
        .await
        .expect("read")
        .is_empty());
    assert!(store
        .booking_consultations(999)
        .await
        .expect("read")
        .is_empty());
}

async fn a_batch_with_a_member_on_a_cancellation_or_a_taken_slot_stores_nothing(
    store: Arc<dyn Store>,
) {
    let a = create(&*store, "Dr. Ada Okafor").await;
    let b = create(&*store, "Dr. Ben Adeyemi").await;
    store
        .append(&[booking(b.id, 2, 1, 100, slot(0), MedicalInfo::default())])
        .await
        .expect("append");
    // The second item takes a start that is already active: the whole booking fails.
    let batch = vec![
        with_member(
            booking(a.id, 2, 10, 100, slot(0), MedicalInfo::default()),
            10,
            "Zoe",
        ),
        with_member(
            booking(b.id, 3, 11, 100, slot(0), MedicalInfo::default()),
            10,
            "Yan",
        ),
    ];
    assert!(matches!(
        store.append(&batch).await,
        Err(StoreError::Constraint(_))
    ));
    assert!(store
        .booking_consultations(10)
        .await
        .expect("read")
        .is_empty());
    assert!(
        store.get_consultation(10).await.expect("get").is_none(),
        "nothing partial"
    );
    let mut cancel = cancellation(b.id, 3, 1);
    cancel.member = batch[0].member.clone();
    assert!(matches!(
        store.append(&[cancel]).await,
        Err(StoreError::Constraint(_))
    ));
    assert_eq!(
        store
            .active_consultations(None)
            .await
            .expect("active")
            .len(),
        1
    );
}

async fn a_failed_batch_writes_no_outbox_rows(store: Arc<dyn Store>) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    let batch = vec![
        booking(doctor.id, 2, 1, 100, slot(0), MedicalInfo::default()),
        booking(doctor.id, 2, 2, 101, slot(1), MedicalInfo::default()),
    ];
    assert!(matches!(
        store.append(&batch).await,
        Err(StoreError::Constraint(_))
    ));
    assert!(store.due_sessions(now(), 10).await.expect("due").is_empty());
    assert!(kinds(&*store, Recipient::patient(100)).await.is_empty());
    assert!(store.session(1).await.expect("session").is_none());
}

async fn sessions_are_claimed_and_settled_in_batches_each_once(store: Arc<dyn Store>) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    store
        .append(&[
            booking(doctor.id, 2, 1, 100, slot(0), MedicalInfo::default()),
            booking(doctor.id, 3, 2, 101, slot(1), MedicalInfo::default()),
            booking(doctor.id, 4, 3, 102, slot(2), MedicalInfo::default()),
        ])
        .await
        .expect("append");
    let later = now() + Duration::minutes(1);
    let failed = |id| SessionOutcome::Failed {
        consultation_id: id,
        error: "HTTP 500".into(),
    };
    assert_eq!(
        store
            .settle_sessions(&[failed(3)], later)
            .await
            .expect("settle"),
        vec![true]
    );
    // One statement for several: the pending ones, none for a settled or unknown id.
    let mut claimed: Vec<_> = store
        .pending_sessions(&[1, 2, 3, 99])
        .await
        .expect("claim")
        .into_iter()
        .map(|t| (t.consultation_id, t.patient_id))
        .collect();
    claimed.sort();
    assert_eq!(claimed, vec![(1, 100), (2, 101)]);
    // One transaction for several; an outcome for a settled session changes nothing, and
    // two outcomes for one session in one batch settle it once.
    let ready = |id| SessionOutcome::Ready {
        consultation_id: id,
        provider: "fake".into(),
        provider_session_id: format!("s{id}"),
        expires_at: slot(3),
    };
    assert_eq!(
        store
            .settle_sessions(&[ready(1), failed(3), ready(2), failed(2)], later)
            .await
            .expect("settle"),
        vec![true, false, true, false]
    );
    for (id, status) in [
        (1, SessionStatus::Ready),
        (2, SessionStatus::Ready),
        (3, SessionStatus::Failed),
    ] {
        let record = store.session(id).await.expect("session").expect("row");
        assert_eq!(record.status, status, "session {id}");
        let c = store.get_consultation(id).await.expect("get").expect("row");
        assert_eq!(c.session_status, status, "consultation {id}");
    }
    // Every reader of consultations sees the settled status: the patient's list and the
    // inbox's consultation summaries.
    let listed: Vec<_> = store
        .patient_consultations(101, 10)
        .await
        .expect("list")
        .iter()
        .map(|c| (c.id, c.session_status))
        .collect();
    assert_eq!(listed, vec![(2, SessionStatus::Ready)]);
    let inbox = store
        .notifications(&inbox(Recipient::patient(102)))
        .await
        .expect("inbox");
    assert!(
        inbox
            .iter()
            .all(|n| n.consultation.session_status == SessionStatus::Failed),
        "{inbox:?}"
    );
    assert_eq!(
        kinds(&*store, Recipient::patient(101)).await,
        vec![
            (NotificationKind::SessionReady, 2),
            (NotificationKind::ConsultationScheduled, 2)
        ]
    );
    assert!(store
        .pending_sessions(&[1, 2, 3])
        .await
        .expect("claim")
        .is_empty());
}

async fn settling_a_session_is_once_only_and_notifies_patient_and_doctor(store: Arc<dyn Store>) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    store
        .append(&[
            booking(doctor.id, 2, 1, 100, slot(0), MedicalInfo::default()),
            booking(doctor.id, 3, 2, 100, slot(1), MedicalInfo::default()),
        ])
        .await
        .expect("append");
    let later = now() + Duration::minutes(1);
    let ready = SessionOutcome::Ready {
        consultation_id: 1,
        provider: "fake".into(),
        provider_session_id: "1_MX4abc".into(),
        expires_at: slot(1),
    };
    // No join token is kept before the session is ready.
    store
        .save_join(1, JoinSide::Doctor, &[9])
        .await
        .expect("save on a pending session is a no-op");
    assert!(store.settle_session(&ready, later).await.expect("settle"));
    // A second outcome for the same consultation changes nothing.
    let failed = SessionOutcome::Failed {
        consultation_id: 1,
        error: "late".into(),
    };
    assert!(!store
        .settle_session(&failed, later)
        .await
        .expect("settle again"));
    store
        .retry_session(1, 5, later, "ignored")
        .await
        .expect("retry on a settled session is a no-op");

    let record = store.session(1).await.expect("session").expect("row");
    assert_eq!(record.status, SessionStatus::Ready);
    assert_eq!(record.attempts, 0);
    assert_eq!(record.provider.as_deref(), Some("fake"));
    assert_eq!(record.provider_session_id.as_deref(), Some("1_MX4abc"));
    assert_eq!((record.doctor_join, record.patient_join), (None, None));
    assert_eq!(record.expires_at, Some(slot(1)));
    // Each side's token is kept when it is signed, and a later one replaces it.
    store
        .save_join(1, JoinSide::Doctor, &[1, 2, 3])
        .await
        .expect("save");
    store
        .save_join(1, JoinSide::Patient, &[4])
        .await
        .expect("save");
    store
        .save_join(1, JoinSide::Patient, &[4, 5, 6])
        .await
        .expect("save");
    let record = store.session(1).await.expect("session").expect("row");
    assert_eq!(record.doctor_join, Some(vec![1, 2, 3]));
    assert_eq!(record.patient_join, Some(vec![4, 5, 6]));
    let c = store.get_consultation(1).await.expect("get").expect("row");
    assert_eq!(c.session_status, SessionStatus::Ready);

    assert!(store
        .settle_session(
            &SessionOutcome::Failed {
                consultation_id: 2,
                error: "HTTP 500".into()
            },
            later
        )
        .await
        .expect("settle"));
    assert_eq!(
        store
            .get_consultation(2)
            .await
            .expect("get")
            .expect("row")
            .session_status,
        SessionStatus::Failed
    );
    assert_eq!(
        store
            .session(2)
            .await
            .expect("s")
            .expect("row")
            .last_error
            .as_deref(),
        Some("HTTP 500")
    );
    assert!(store.due_sessions(later, 10).await.expect("due").is_empty());

    use NotificationKind::*;
    for recipient in [Recipient::patient(100), Recipient::doctor(doctor.id)] {
        assert_eq!(
            kinds(&*store, recipient).await,
            vec![
                (SessionFailed, 2),
                (SessionReady, 1),
                (ConsultationScheduled, 2),
                (ConsultationScheduled, 1)
            ]
        );
    }
    // No session row, nothing to settle.
    assert!(!store
        .settle_session(
            &SessionOutcome::NotRequired {
                consultation_id: 99
            },
            later
        )
        .await
        .expect("settle"));
}

async fn a_retried_session_is_due_again_only_at_its_next_attempt(store: Arc<dyn Store>) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    store
        .append(&[booking(
            doctor.id,
            2,
            1,
            100,
            slot(0),
            MedicalInfo::default(),
        )])
        .await
        .expect("append");
    let next = now() + Duration::seconds(30);
    store
        .retry_session(1, 1, next, "HTTP 503")
        .await
        .expect("retry");
    // Read before anything claims it (a shared store's claim moves the next attempt).
    let record = store.session(1).await.expect("session").expect("row");
    assert_eq!(record.next_attempt_at, next);
    assert_eq!(record.last_error.as_deref(), Some("HTTP 503"));
    assert!(store
        .due_sessions(now() + Duration::seconds(29), 10)
        .await
        .expect("due")
        .is_empty());
    let due = store.due_sessions(next, 10).await.expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempts, 1);
    assert_eq!(
        store
            .pending_session(1)
            .await
            .expect("pending")
            .expect("task")
            .attempts,
        1
    );
}

async fn the_inbox_pages_newest_first_and_marks_only_the_recipients_own_read(
    store: Arc<dyn Store>,
) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    let batch: Vec<_> = (0..5)
        .map(|i| {
            booking(
                doctor.id,
                2 + i as u64,
                1 + i,
                100,
                slot(i),
                MedicalInfo::default(),
            )
        })
        .collect();
    store.append(&batch).await.expect("append");
    let patient = Recipient::patient(100);
    let page1 = store
        .notifications(&InboxQuery {
            limit: 2,
            ..inbox(patient)
        })
        .await
        .expect("page 1");
    assert_eq!(
        page1.iter().map(|n| n.consultation.id).collect::<Vec<_>>(),
        vec![5, 4]
    );
    let page2 = store
        .notifications(&InboxQuery {
            limit: 2,
            before_id: Some(page1[1].id),
            ..inbox(patient)
        })
        .await
        .expect("page 2");
    assert_eq!(
        page2.iter().map(|n| n.consultation.id).collect::<Vec<_>>(),
        vec![3, 2]
    );

    // The doctor's ids are not the patient's to mark.
    let doctors = store
        .notifications(&inbox(Recipient::doctor(doctor.id)))
        .await
        .expect("doctor");
    let mut ids: Vec<i64> = page1.iter().map(|n| n.id).collect();
    ids.push(doctors[0].id);
    let at = now() + Duration::minutes(2);
    assert_eq!(
        store
            .mark_notifications_read(patient, &ids, at)
            .await
            .expect("mark"),
        2
    );
    assert_eq!(
        store
            .mark_notifications_read(patient, &ids, at)
            .await
            .expect("mark again"),
        0
    );
    let unread = store
        .notifications(&InboxQuery {
            unread_only: true,
            ..inbox(patient)
        })
        .await
        .expect("unread");
    assert_eq!(
        unread.iter().map(|n| n.consultation.id).collect::<Vec<_>>(),
        vec![3, 2, 1]
    );
    let all = store.notifications(&inbox(patient)).await.expect("all");
    assert_eq!(all[0].read_at, Some(at));
    let doctors_after = store
        .notifications(&inbox(Recipient::doctor(doctor.id)))
        .await
        .expect("doctor");
    assert!(doctors_after.iter().all(|n| n.read_at.is_none()));
}

async fn a_webhook_stays_due_until_delivered_or_given_up(store: Arc<dyn Store>) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    store
        .append(&[booking(
            doctor.id,
            2,
            1,
            100,
            slot(0),
            MedicalInfo::default(),
        )])
        .await
        .expect("append");
    let due = store.due_webhooks(now(), 10).await.expect("due");
    assert_eq!(due.len(), 2);
    let (a, b) = (due[0].id, due[1].id);
    assert_eq!(due[0].recipient, Recipient::patient(100));
    assert_eq!(due[1].recipient, Recipient::doctor(doctor.id));
    store
        .update_webhook(a, WebhookUpdate::Delivered)
        .await
        .expect("delivered");
    let next = now() + Duration::seconds(10);
    store
        .update_webhook(
            b,
            WebhookUpdate::Retry {
                attempts: 1,
                next_at: next,
            },
        )
        .await
        .expect("retry");
    assert!(store
        .due_webhooks(now() + Duration::seconds(9), 10)
        .await
        .expect("due")
        .is_empty());
    let again = store.due_webhooks(next, 10).await.expect("due");
    assert_eq!(
        again
            .iter()
            .map(|n| (n.id, n.webhook_attempts))
            .collect::<Vec<_>>(),
        vec![(b, 1)]
    );
    store
        .update_webhook(b, WebhookUpdate::GaveUp { attempts: 2 })
        .await
        .expect("gave up");
    assert!(store
        .due_webhooks(next + Duration::days(1), 10)
        .await
        .expect("due")
        .is_empty());
}

async fn notifications_written_while_webhooks_are_not_queued_reach_the_inbox_and_no_webhook(
    store: Arc<dyn Store>,
) {
    use NotificationKind::*;
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    let far = now() + Duration::days(30);
    store.queue_webhooks(false);
    // A bookings-only batch (Postgres: its one statement), then a batch with a
    // cancellation (the statements one by one), then a settled session.
    store
        .append(&[booking(
            doctor.id,
            2,
            1,
            100,
            slot(0),
            MedicalInfo::default(),
        )])
        .await
        .expect("append bookings");
    store
        .append(&[
            booking(doctor.id, 3, 2, 100, slot(1), MedicalInfo::default()),
            cancellation(doctor.id, 4, 2),
        ])
        .await
        .expect("append with a cancellation");
    let ready = SessionOutcome::Ready {
        consultation_id: 1,
        provider: "fake".into(),
        provider_session_id: "1_MX4abc".into(),
        expires_at: slot(1),
    };
    assert!(store.settle_session(&ready, now()).await.expect("settle"));
    assert_eq!(
        kinds(&*store, Recipient::patient(100)).await,
        vec![
            (SessionReady, 1),
            (ConsultationCancelled, 2),
            (ConsultationScheduled, 2),
            (ConsultationScheduled, 1)
        ]
    );
    assert_eq!(kinds(&*store, Recipient::doctor(doctor.id)).await.len(), 4);
    assert!(store.due_webhooks(far, 100).await.expect("due").is_empty());

    // Queued again: what is written from now on is due, and only that.
    store.queue_webhooks(true);
    store
        .append(&[booking(
            doctor.id,
            5,
            3,
            100,
            slot(2),
            MedicalInfo::default(),
        )])
        .await
        .expect("append");
    let due = store.due_webhooks(far, 100).await.expect("due");
    assert_eq!(
        due.iter()
            .map(|n| (n.kind, n.consultation.id, n.recipient))
            .collect::<Vec<_>>(),
        vec![
            (ConsultationScheduled, 3, Recipient::patient(100)),
            (ConsultationScheduled, 3, Recipient::doctor(doctor.id)),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Idempotency keys

/// `record` carrying patient `patient_id`'s key `key`, expiring a day after `now()`.
fn with_key(mut record: JournalRecord, patient_id: i64, key: &str) -> JournalRecord {
    record.idempotency = Some(IdempotencyClaim {
        patient_id,
        key: key.to_owned(),
        fingerprint: format!("fp-{patient_id}-{key}"),
        expires_at: now() + Duration::hours(24),
    });
    record
}

fn stored_key(patient_id: i64, key: &str, consultation_id: i64) -> Option<StoredIdempotency> {
    Some(StoredIdempotency {
        fingerprint: format!("fp-{patient_id}-{key}"),
        consultation_id,
        expires_at: now() + Duration::hours(24),
    })
}

async fn an_idempotency_key_is_stored_with_its_booking_or_reschedule_in_the_same_batch(
    store: Arc<dyn Store>,
) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    // Bookings only (Postgres: the one-statement path), one of them with a key.
    store
        .append(&[
            with_key(
                booking(doctor.id, 2, 1, 100, slot(0), medical("chest pain")),
                100,
                "book-1",
            ),
            booking(doctor.id, 3, 2, 101, slot(1), MedicalInfo::default()),
        ])
        .await
        .expect("append");
    assert_eq!(
        store.find_idempotency(100, "book-1").await.expect("find"),
        stored_key(100, "book-1", 1)
    );
    assert_eq!(
        store
            .get_consultation(1)
            .await
            .expect("get")
            .map(|c| c.patient_id),
        Some(100)
    );
    // Keys are the patient's: another patient's same key is not stored.
    assert_eq!(
        store.find_idempotency(101, "book-1").await.expect("find"),
        None
    );
    // A reschedule with a key, beside a cancellation (Postgres: the transaction path).
    store
        .append(&[
            with_key(reschedule(doctor.id, 4, 1, slot(0), slot(4)), 100, "move-1"),
            cancellation(doctor.id, 5, 2),
        ])
        .await
        .expect("append");
    assert_eq!(
        store.find_idempotency(100, "move-1").await.expect("find"),
        stored_key(100, "move-1", 1)
    );
    assert_eq!(
        store
            .get_consultation(1)
            .await
            .expect("get")
            .map(|c| c.scheduled_at),
        Some(slot(4))
    );
}

async fn a_failing_batch_stores_neither_its_bookings_nor_their_idempotency_keys(
    store: Arc<dyn Store>,
) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    // The second booking takes the first one's start: the batch fails whole.
    let batch = vec![
        with_key(
            booking(doctor.id, 2, 1, 100, slot(0), MedicalInfo::default()),
            100,
            "k",
        ),
        with_key(
            booking(doctor.id, 3, 2, 101, slot(0), MedicalInfo::default()),
            101,
            "k",
        ),
    ];
    assert!(matches!(
        store.append(&batch).await,
        Err(StoreError::Constraint(_))
    ));
    assert_eq!(store.find_idempotency(100, "k").await.expect("find"), None);
    assert_eq!(store.find_idempotency(101, "k").await.expect("find"), None);
    assert_eq!(store.get_consultation(1).await.expect("get"), None);
    assert_eq!(store.get_consultation(2).await.expect("get"), None);
}

async fn a_batch_repeating_a_stored_idempotency_key_of_the_patient_fails_whole_with_constraint(
    store: Arc<dyn Store>,
) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    store
        .append(&[with_key(
            booking(doctor.id, 2, 1, 100, slot(0), MedicalInfo::default()),
            100,
            "k",
        )])
        .await
        .expect("append");
    // The second guard: the same (patient, key) again refuses the batch, with every
    // booking in it, so a race can never book twice under one key.
    let again = vec![
        booking(doctor.id, 3, 2, 102, slot(2), MedicalInfo::default()),
        with_key(
            booking(doctor.id, 4, 3, 100, slot(1), MedicalInfo::default()),
            100,
            "k",
        ),
    ];
    assert!(matches!(
        store.append(&again).await,
        Err(StoreError::Constraint(_))
    ));
    assert_eq!(store.get_consultation(2).await.expect("get"), None);
    assert_eq!(store.get_consultation(3).await.expect("get"), None);
    assert_eq!(
        store.find_idempotency(100, "k").await.expect("find"),
        stored_key(100, "k", 1)
    );
    // Twice in one batch: refused too.
    let twice = vec![
        with_key(
            booking(doctor.id, 3, 2, 103, slot(2), MedicalInfo::default()),
            103,
            "k",
        ),
        with_key(
            booking(doctor.id, 4, 3, 103, slot(3), MedicalInfo::default()),
            103,
            "k",
        ),
    ];
    assert!(matches!(
        store.append(&twice).await,
        Err(StoreError::Constraint(_))
    ));
    assert_eq!(store.find_idempotency(103, "k").await.expect("find"), None);
    // Another patient's same key is another key.
    store
        .append(&[with_key(
            booking(doctor.id, 3, 2, 101, slot(1), MedicalInfo::default()),
            101,
            "k",
        )])
        .await
        .expect("another patient's key");
    assert_eq!(
        store.find_idempotency(101, "k").await.expect("find"),
        stored_key(101, "k", 2)
    );
}

async fn unexpired_idempotency_keys_are_read_in_key_order_page_by_page(store: Arc<dyn Store>) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    let mut expired = with_key(
        booking(doctor.id, 5, 4, 101, slot(3), medical("x")),
        101,
        "a",
    );
    expired.idempotency.as_mut().unwrap().expires_at = now() - Duration::minutes(1);
    store
        .append(&[
            with_key(
                booking(doctor.id, 2, 1, 102, slot(0), medical("x")),
                102,
                "b",
            ),
            with_key(
                booking(doctor.id, 3, 2, 100, slot(1), medical("x")),
                100,
                "z",
            ),
            with_key(
                booking(doctor.id, 4, 3, 100, slot(2), medical("x")),
                100,
                "y",
            ),
            expired,
        ])
        .await
        .expect("append");
    let mut seen = Vec::new();
    let mut after = (i64::MIN, String::new());
    loop {
        let page = store
            .unexpired_idempotency_keys(now(), (after.0, &after.1), 2)
            .await
            .expect("page");
        assert!(page.len() <= 2, "bounded by the limit");
        let Some(last) = page.last().cloned() else {
            break;
        };
        after = (last.0, last.1.clone());
        seen.extend(page);
    }
    let expires = now() + Duration::hours(24);
    assert_eq!(
        seen,
        vec![
            (100, "y".to_owned(), expires),
            (100, "z".to_owned(), expires),
            (102, "b".to_owned(), expires),
        ],
        "unexpired keys only, by patient then key"
    );
}

async fn purging_idempotency_keys_removes_only_expired_ones_in_bounded_batches(
    store: Arc<dyn Store>,
) {
    let doctor = create(&*store, "Dr. Ada Okafor").await;
    // Keys k0..k4 expire 1..5 hours after now().
    let batch: Vec<JournalRecord> = (0..5_i64)
        .map(|i| {
            let mut r = with_key(
                booking(
                    doctor.id,
                    2 + i as u64,
                    1 + i,
                    100,
                    slot(i),
                    MedicalInfo::default(),
                ),
                100,
                &format!("k{i}"),
            );
            if let Some(claim) = &mut r.idempotency {
                claim.expires_at = now() + Duration::hours(1 + i);
            }
            r
        })
        .collect();
    store.append(&batch).await.expect("append");
    let at = now() + Duration::hours(3); // k0, k1, k2 have expired (k2 exactly now)
    assert_eq!(store.purge_idempotency(at, 2).await.expect("purge"), 2);
    assert_eq!(store.purge_idempotency(at, 2).await.expect("purge"), 1);
    assert_eq!(store.purge_idempotency(at, 2).await.expect("purge"), 0);
    for i in 0..3 {
        let key = format!("k{i}");
        assert_eq!(
            store.find_idempotency(100, &key).await.expect("find"),
            None,
            "{key}"
        );
    }
    for i in 3..5 {
        let key = format!("k{i}");
        let found = store.find_idempotency(100, &key).await.expect("find");
        assert_eq!(found.map(|k| k.consultation_id), Some(1 + i), "{key}");
    }
    // Their consultations stay.
    assert_eq!(
        store
            .active_consultations(Some(doctor.id))
            .await
            .expect("active")
            .len(),
        5
    );
    // One key at a time: only once expired.
    assert!(!store
        .forget_expired_idempotency(100, "k3", at)
        .await
        .expect("forget"));
    assert!(store
        .forget_expired_idempotency(100, "k3", now() + Duration::hours(4))
        .await
        .expect("forget"));
    assert_eq!(store.find_idempotency(100, "k3").await.expect("find"), None);
    assert!(store
        .find_idempotency(100, "k4")
        .await
        .expect("find")
        .is_some());
}

#[tokio::test]
async fn an_idempotency_key_is_found_after_reopening_sqlite_and_postgres() {
    let root = temp_dir("consult_test_reopen_keys");
    let url = format!("sqlite://{}", root.join("consult.db").display());
    let pg = testing::fresh_postgres().await;
    let mut urls = vec![url];
    if let Some((store, name)) = &pg {
        store.close().await;
        urls.push(testing::pg_url_for(name));
    }
    for url in &urls {
        let store = open_store(url).await.expect("connect");
        let doctor = create(&*store, "Dr. Ada Okafor").await;
        store
            .append(&[with_key(
                booking(doctor.id, 2, 1, 100, slot(0), medical("chest pain")),
                100,
                "after-a-crash",
            )])
            .await
            .expect("append");
        store.close().await;
        drop(store);
        let store = open_store(url).await.expect("reopen");
        assert_eq!(
            store
                .find_idempotency(100, "after-a-crash")
                .await
                .expect("find"),
            stored_key(100, "after-a-crash", 1),
            "{}",
            url.split(':').next().unwrap_or_default()
        );
        store.close().await;
    }
    if let Some((_, name)) = pg {
        testing::drop_postgres(&name).await;
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// Writes `consultation` as the SQLite adapter stores it, with plain SQL (for a database
/// whose schema is older than the adapter).
async fn insert_consultation_row(pool: &sqlx::SqlitePool, c: &Consultation) {
    let ts = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    sqlx::query(
        "INSERT INTO consultations (id, reference, doctor_id, patient_id, scheduled_at, \
         duration_minutes, status, consultation_mode, consult_mode, session_status, reason, \
         symptoms, medical_history, allergies, current_medications, created_at, updated_at, \
         cancelled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(c.id)
    .bind(&c.reference)
    .bind(c.doctor_id)
    .bind(c.patient_id)
    .bind(ts(c.scheduled_at))
    .bind(i64::from(c.duration_minutes))
    .bind(c.status.as_str())
    .bind(c.consultation_mode.as_str())
    .bind(c.consult_mode.as_str())
    .bind(c.session_status.as_str())
    .bind(c.medical.reason.as_deref())
    .bind(c.medical.symptoms.as_deref())
    .bind(c.medical.medical_history.as_deref())
    .bind(c.medical.allergies.as_deref())
    .bind(c.medical.current_medications.as_deref())
    .bind(ts(c.created_at))
    .bind(ts(c.created_at))
    .bind(c.cancelled_at.map(ts))
    .execute(pool)
    .await
    .expect("insert a consultation row");
}

/// SQLite migration 0007 rebuilds `consultations` without the inline UNIQUE on `reference`.
/// A database migrated up to 0006 and holding consultations keeps every row through it
/// (medical text included), and afterwards the second guard still refuses a second active
/// consultation at a start while a cancelled one there does not count.
#[tokio::test]
async fn sqlite_rebuilding_consultations_keeps_the_rows_and_the_second_guard() {
    let root = temp_dir("consult_test_rebuild");
    let before = root.join("migrations");
    std::fs::create_dir_all(&before).expect("temp dir");
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for entry in std::fs::read_dir(&source).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name.as_str() < "0007" {
            std::fs::copy(&path, before.join(&name)).expect("copy");
        }
    }
    let file = root.join("consult.db");
    let url = format!("sqlite://{}", file.display());
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true),
    )
    .await
    .expect("connect");
    sqlx::migrate::Migrator::new(before.as_path())
        .await
        .expect("migrations up to 0006")
        .run(&pool)
        .await
        .expect("migrate up to 0006");
    let mut cancelled = projected(&booking(7, 1, 1, 100, slot(0), medical("headache")));
    cancelled.status = ConsultationStatus::Cancelled;
    cancelled.cancelled_at = Some(now() + Duration::minutes(5));
    let active = projected(&booking(7, 3, 2, 101, slot(0), medical("chest pain")));
    let later = projected(&booking(7, 4, 3, 100, slot(1), MedicalInfo::default()));
    for c in [&cancelled, &active, &later] {
        insert_consultation_row(&pool, c).await;
    }
    pool.close().await;

    let store = SqliteStore::connect(&url).await.expect("open and migrate");
    for c in [&cancelled, &active, &later] {
        assert_eq!(
            store.get_consultation(c.id).await.expect("get").as_ref(),
            Some(c)
        );
    }
    assert_eq!(
        ids(&store
            .doctor_consultations(7, slot(0), slot(2), 10)
            .await
            .expect("doctor's consultations")),
        vec![1, 2, 3]
    );
    let unique_on_reference: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pragma_index_list('consultations') \
         WHERE \"unique\" = 1 AND name LIKE 'sqlite_autoindex%'",
    )
    .fetch_one(store.pool())
    .await
    .expect("index list");
    assert_eq!(unique_on_reference, 0);
    // The second guard: another active consultation at the active one's start.
    assert!(matches!(
        store
            .append(&[booking(7, 5, 4, 102, slot(0), MedicalInfo::default())])
            .await,
        Err(StoreError::Constraint(_))
    ));
    store
        .append(&[booking(7, 5, 4, 102, slot(2), MedicalInfo::default())])
        .await
        .expect("a free start");
    store.close().await;
    let _ = std::fs::remove_dir_all(&root);
}

/// The backends of this database whose latest statement was a bookings batch.
async fn batch_backends(store: &consult_persistence::PgStore) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'WITH j AS (%' ORDER BY pid",
    )
    .fetch_all(store.pool())
    .await
    .expect("pg_stat_activity")
}

/// Postgres keeps the journal's connection between batches: batch after batch goes to one
/// backend, while other queries use the pool. When that backend is cut while idle, one
/// batch fails (nothing of it written) and the next is written on a new connection.
#[tokio::test]
async fn postgres_journal_batches_stay_on_one_backend_and_recover_when_it_is_cut() {
    use sqlx::Connection;

    let Some((store, name)) = testing::fresh_postgres().await else {
        return;
    };
    let doctor = create(&store, "Dr. Ada Okafor").await;
    // Eight connections open and idle in the pool, which hands them out in turn.
    futures_util::future::try_join_all(
        (0..8).map(|_| sqlx::query("SELECT pg_sleep(0.05)").execute(store.pool())),
    )
    .await
    .expect("open the pool's connections");
    for i in 0..20 {
        store
            .append(&[booking(
                doctor.id,
                2 + i,
                1 + i as i64,
                100,
                slot(i as i64),
                MedicalInfo::default(),
            )])
            .await
            .expect("append");
        // Pool traffic between the batches.
        store
            .patient_consultations(100, 10)
            .await
            .expect("patient's consultations");
    }
    let backends = batch_backends(&store).await;
    assert_eq!(backends.len(), 1, "batches ran on backends {backends:?}");

    let mut monitor = sqlx::PgConnection::connect(&testing::pg_url_for(&name))
        .await
        .expect("a connection of the test's own");
    let cut: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(backends[0])
        .fetch_one(&mut monitor)
        .await
        .expect("terminate");
    assert!(cut);
    let record = booking(doctor.id, 22, 21, 100, slot(20), MedicalInfo::default());
    let mut failed = 0;
    loop {
        match store.append(std::slice::from_ref(&record)).await {
            Ok(()) => break,
            Err(StoreError::Unavailable(_) | StoreError::Indeterminate(_)) if failed == 0 => {
                failed += 1;
                assert_eq!(journal_seqs(&store, doctor.id).await.len(), 21);
            }
            Err(e) => panic!("the batch after the failed one must be written, got {e:?}"),
        }
    }
    assert_eq!(failed, 1, "the batch on the cut connection must fail");
    assert_eq!(journal_seqs(&store, doctor.id).await.len(), 22);
    let after = batch_backends(&store).await;
    assert_eq!(after.len(), 1);
    assert_ne!(after, backends);
    drop(monitor);
    store.close().await;
    testing::drop_postgres(&name).await;
}

/// Postgres: many more writers than the pool has connections (as multi-patient bookings
/// write their own batches, many at once), writing for 3 s, all commit: connections the
/// journal keeps must not leave callers waiting in the pool until it gives up on them
/// (2 s), while newer callers take the kept ones.
#[tokio::test]
async fn postgres_more_concurrent_writers_than_connections_all_commit() {
    const WRITERS: i64 = 256;
    const FOR: std::time::Duration = std::time::Duration::from_secs(3);
    let Some((store, name)) = testing::fresh_postgres().await else {
        return;
    };
    let store = Arc::new(store);
    let mut doctors = Vec::new();
    for w in 0..WRITERS {
        doctors.push(create(&*store, &format!("Dr. Writer {w}")).await.id);
    }
    let until = std::time::Instant::now() + FOR;
    let tasks: Vec<_> = doctors
        .iter()
        .enumerate()
        .map(|(w, &doctor)| {
            let store = Arc::clone(&store);
            let w = w as i64;
            tokio::spawn(async move {
                let mut written = 0;
                while std::time::Instant::now() < until {
                    let id = 1 + w * 100_000 + written;
                    let record = booking(
                        doctor,
                        2 + written as u64,
                        id,
                        100 + w,
                        slot(written),
                        MedicalInfo::default(),
                    );
                    store.append(&[record]).await?;
                    written += 1;
                }
                Ok::<_, StoreError>(written)
            })
        })
        .collect();
    let mut written = 0;
    for task in tasks {
        written += task
            .await
            .expect("writer task")
            .expect("every batch commits");
    }
    assert_eq!(active_count(&*store).await, written);
    store.close().await;
    testing::drop_postgres(&name).await;
}
