//! Several instances on one Postgres database, each test on its own fresh database: the
//! cluster port (`ClusterStore` for `PgStore`: lease takeover races, epochs, release and
//! restart, id ranges from many tasks, membership), the fenced writes (with a real
//! concurrent transaction holding the lease row), and outbox work claimed by one instance
//! at a time. Every wait is bounded.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use consult_actors::calendar::{
    ActedBy, BookedSlot, DoctorEvent, JournalRecord, LocalTime, WeeklySchedule,
};
use consult_actors::cluster::{ClusterStore, Fence, NodeIdentity};
use consult_actors::{
    ConsultMode, ConsultationStatus, MedicalInfo, NewDoctor, SnapshotWrite, Store, StoreError,
};
use consult_persistence::{testing, PgStore, DEFAULT_OUTBOX_CLAIM_S};
use sqlx::{Connection, PgConnection};
use tokio::task::JoinHandle;

/// How long any one wait in these tests may take before the test fails.
const WAIT: Duration = Duration::from_secs(10);

/// A lease TTL long enough that nothing expires during a test unless it means to.
const LONG_TTL: Duration = Duration::from_secs(600);

/// Runs `test` on a fresh Postgres database, then drops it, even if the test panicked.
/// Skips (returns) when Postgres is unreachable outside CI.
async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(PgStore) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some((store, name)) = testing::fresh_postgres().await else {
        return;
    };
    let handle = store.clone();
    let outcome = tokio::time::timeout(Duration::from_secs(120), tokio::spawn(test(store))).await;
    handle.close().await;
    testing::drop_postgres(&name).await;
    match outcome {
        Err(_) => panic!("test did not finish within 120 s"),
        Ok(Err(e)) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task did not finish: {e}"),
        },
        Ok(Ok(())) => {}
    }
}

fn node(url: &str, incarnation: i64) -> NodeIdentity {
    NodeIdentity {
        advertise_url: url.to_owned(),
        incarnation,
    }
}

fn fence(shard: u32, epoch: u64) -> Fence {
    Fence { shard, epoch }
}

/// The store's cluster port, as the engine gets it.
fn cluster(store: &PgStore) -> Arc<dyn ClusterStore> {
    store.cluster().expect("Postgres has a cluster port")
}

/// When the fixtures' facts are recorded.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 8, 0, 0)
        .single()
        .expect("valid UTC time")
}

/// Monday 2030-01-07, 09:00 UTC plus `slots` half hours.
fn slot(slots: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 7, 9, 0, 0)
        .single()
        .expect("valid UTC time")
        + chrono::Duration::minutes(30 * slots)
}

async fn create_doctor(store: &PgStore) -> i64 {
    store
        .create_doctor(
            &NewDoctor {
                name: "Dr. Ada Okafor".to_owned(),
                specialty: "cardiology".to_owned(),
                timezone: "Europe/London".parse().expect("known timezone"),
                slot_minutes: 30,
                schedule: WeeklySchedule::weekdays(LocalTime::hm(9, 0), LocalTime::hm(17, 0)),
                is_available: true,
                is_approved: true,
            },
            now(),
        )
        .await
        .expect("create_doctor")
        .id
}

fn booking(doctor_id: i64, seq: u64, id: i64, start: DateTime<Utc>) -> JournalRecord {
    booking_recorded_at(doctor_id, seq, id, start, now())
}

/// A booking recorded at `at`: its session and notifications are due from then.
fn booking_recorded_at(
    doctor_id: i64,
    seq: u64,
    id: i64,
    start: DateTime<Utc>,
    at: DateTime<Utc>,
) -> JournalRecord {
    JournalRecord {
        doctor_id,
        seq,
        recorded_at: at,
        event: DoctorEvent::Booked {
            slot: BookedSlot {
                id,
                patient_id: 100,
                start,
                duration_minutes: 30,
                status: ConsultationStatus::Scheduled,
                mode: ConsultMode::Video,
                created_at: at,
            },
        },
        medical: MedicalInfo {
            reason: Some("chest pain".to_owned()),
            ..MedicalInfo::default()
        },
        idempotency: None,
        member: None,
    }
}

fn cancellation(doctor_id: i64, seq: u64, consultation_id: i64) -> JournalRecord {
    JournalRecord {
        doctor_id,
        seq,
        recorded_at: now(),
        event: DoctorEvent::Cancelled {
            consultation_id,
            at: now(),
            by: Some(ActedBy::Patient),
        },
        medical: MedicalInfo::default(),
        idempotency: None,
        member: None,
    }
}

/// `SELECT count(*)` of one table.
async fn rows(store: &PgStore, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(store.pool())
        .await
        .unwrap_or_else(|e| panic!("count {table}: {e}"))
}

/// What a batch writes besides the doctor's `Registered` row: journal rows, consultations,
/// sessions, notifications.
async fn written(store: &PgStore) -> [i64; 4] {
    [
        rows(store, "journal").await - 1,
        rows(store, "consultations").await,
        rows(store, "sessions").await,
        rows(store, "notifications").await,
    ]
}

/// Polls `condition` until it holds; panics after [`WAIT`].
async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + WAIT;
    while !condition().await {
        assert!(Instant::now() < until, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A connection of its own to the store's database, outside the store's pool (which the
/// tasks under test may fill).
async fn raw_connection(store: &PgStore) -> PgConnection {
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(store.pool())
        .await
        .expect("database name");
    PgConnection::connect(&testing::pg_url_for(&name))
        .await
        .expect("raw connection")
}

/// Waits until `count` backends of this database are blocked on a lock while running a
/// statement that starts with `statement`: the calls under test really wait for the lock
/// the test holds (not merely run slowly). `monitor` must not be inside a transaction
/// (activity is read once per transaction).
async fn wait_for_lock_waits(monitor: &mut PgConnection, statement: &str, count: i64) {
    let until = Instant::now() + WAIT;
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE $1",
        )
        .bind(format!("{statement}%"))
        .fetch_one(&mut *monitor)
        .await
        .expect("pg_stat_activity");
        if waiting == count {
            return;
        }
        assert!(
            Instant::now() < until,
            "{count} `{statement}` waiting for a lock: not within {WAIT:?} ({waiting} are)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// On four shards, node a takes the leases of `held`, then hands those of `moved` over to
/// node b: from here on a's fences of `moved` (epoch 1) are stale, b's (epoch 2) current.
async fn hand_over(c: &Arc<dyn ClusterStore>, held: &[u32], moved: &[u32]) {
    c.prepare_shards(4).await.expect("prepare");
    let (a, b) = (node("http://a:8080", 1), node("http://b:8080", 1));
    c.acquire_leases(&a, held, LONG_TTL).await.expect("a");
    c.release_leases(&a, moved).await.expect("release");
    c.acquire_leases(&b, moved, LONG_TTL).await.expect("b");
}

/// Waits until the lease of `shard` has expired by the database clock.
async fn wait_expired(c: &Arc<dyn ClusterStore>, shard: u32) {
    wait_until(&format!("lease of shard {shard} expired"), || async {
        let view = c.cluster_view(LONG_TTL).await.expect("view");
        !view.leases[shard as usize].live
    })
    .await;
}

/// A second store on the same database: what another instance opens.
async fn second_store(store: &PgStore) -> PgStore {
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(store.pool())
        .await
        .expect("database name");
    PgStore::connect(&testing::pg_url_for(&name))
        .await
        .expect("second store")
}

/// `count` bookings of one new doctor (ids `1..=count`), recorded at `at`.
async fn book(store: &PgStore, count: i64, at: DateTime<Utc>) {
    let doctor = create_doctor(store).await;
    let batch: Vec<_> = (1..=count)
        .map(|i| booking_recorded_at(doctor, 1 + i as u64, i, slot(i), at))
        .collect();
    store.append(&batch).await.expect("append");
}

async fn finished<T>(task: JoinHandle<T>) -> T {
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap_or_else(|_| panic!("the task did not finish within {WAIT:?}"))
        .expect("the task panicked")
}

// ---------------------------------------------------------------------------------------
// Shard preparation

#[tokio::test]
async fn prepare_shards_is_idempotent_and_refuses_another_shard_count() {
    on_postgres(|store| async move {
        let c = cluster(&store);
        c.prepare_shards(8).await.expect("first prepare");
        c.prepare_shards(8)
            .await
            .expect("second prepare, same count");
        let view = c.cluster_view(LONG_TTL).await.expect("view");
        assert_eq!(
            view.leases.iter().map(|l| l.shard).collect::<Vec<_>>(),
            (0..8).collect::<Vec<_>>()
        );
        assert!(view
            .leases
            .iter()
            .all(|l| l.owner.is_none() && l.epoch == 0 && !l.live));
        match c.prepare_shards(16).await {
            Err(StoreError::Unavailable(message)) => {
                assert!(message.contains("8") && message.contains("16"), "{message}");
            }
            other => panic!("another shard count must be refused, got {other:?}"),
        }
        assert_eq!(
            c.cluster_view(LONG_TTL).await.expect("view").leases.len(),
            8
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Leases

#[tokio::test]
async fn of_sixteen_nodes_taking_one_expired_lease_at_once_exactly_one_wins() {
    on_postgres(|store| async move {
        let c = cluster(&store);
        c.prepare_shards(4).await.expect("prepare");
        // Sixteen takeovers of one expired lease at once: row locks decide, one wins (a
        // loser either waited and re-checked, or skipped the locked row).
        let start = Arc::new(tokio::sync::Barrier::new(16));
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let c = Arc::clone(&c);
                let start = Arc::clone(&start);
                tokio::spawn(async move {
                    let me = node(&format!("http://node-{i}:8080"), 1);
                    start.wait().await;
                    (me.clone(), c.acquire_leases(&me, &[2], LONG_TTL).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            let (me, taken) = finished(task).await;
            let taken = taken.expect("acquire");
            if !taken.is_empty() {
                assert_eq!(taken, vec![fence(2, 1)]);
                winners.push(me);
            }
        }
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        let view = c.cluster_view(LONG_TTL).await.expect("view");
        let lease = &view.leases[2];
        assert_eq!(lease.owner.as_ref(), Some(&winners[0]));
        assert_eq!((lease.epoch, lease.live), (1, true));
        // Nobody else's lease moved.
        assert!(view
            .leases
            .iter()
            .filter(|l| l.shard != 2)
            .all(|l| l.epoch == 0 && l.owner.is_none()));
    })
    .await;
}

#[tokio::test]
async fn a_live_lease_is_not_taken_and_each_takeover_raises_the_epoch() {
    on_postgres(|store| async move {
        let c = cluster(&store);
        c.prepare_shards(4).await.expect("prepare");
        let (a, b) = (node("http://a:8080", 1), node("http://b:8080", 1));
        let mut epochs = Vec::new();
        let taken = c.acquire_leases(&a, &[0, 1, 3], LONG_TTL).await.expect("a");
        assert_eq!(taken, vec![fence(0, 1), fence(1, 1), fence(3, 1)]);
        epochs.push(taken[1].epoch);
        assert!(c
            .acquire_leases(&b, &[1], LONG_TTL)
            .await
            .expect("b")
            .is_empty());
        // Taking a lease one already holds (same incarnation) takes it anew, epoch + 1:
        // what the node wrote under the old epoch is fenced from now on.
        let again = c.acquire_leases(&a, &[1], LONG_TTL).await.expect("a");
        assert_eq!(again, vec![fence(1, 2)]);
        epochs.push(again[0].epoch);
        for round in 0..4 {
            let (from, to) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
            c.release_leases(from, &[1]).await.expect("release");
            let taken = c.acquire_leases(to, &[1], LONG_TTL).await.expect("take");
            assert_eq!(taken.len(), 1, "round {round}");
            epochs.push(taken[0].epoch);
        }
        assert!(
            epochs.windows(2).all(|w| w[1] > w[0]),
            "epochs must strictly increase: {epochs:?}"
        );
        assert_eq!(epochs, vec![1, 2, 3, 4, 5, 6]);
        let view = c.cluster_view(LONG_TTL).await.expect("view");
        assert_eq!(view.leases[1].epoch, 6);
        assert_eq!(view.leases[1].owner.as_ref(), Some(&a));
        // The other shards of `a` were untouched by the handoffs.
        assert_eq!((view.leases[0].epoch, view.leases[3].epoch), (1, 1));
    })
    .await;
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_its_old_owner_no_longer_renews_it() {
    on_postgres(|store| async move {
        let c = cluster(&store);
        c.prepare_shards(4).await.expect("prepare");
        let (a, b) = (node("http://a:8080", 1), node("http://b:8080", 1));
        let short = Duration::from_millis(300);
        assert_eq!(
            c.acquire_leases(&a, &[0, 1], short).await.expect("a"),
            vec![fence(0, 1), fence(1, 1)]
        );
        wait_expired(&c, 1).await;
        // Expired and not taken: renewing keeps the epoch (nobody else wrote).
        assert_eq!(
            c.renew_leases(&a, short).await.expect("renew"),
            vec![fence(0, 1), fence(1, 1)]
        );
        assert!(c.cluster_view(LONG_TTL).await.expect("view").leases[1].live);
        wait_expired(&c, 1).await;
        assert_eq!(
            c.acquire_leases(&b, &[1], LONG_TTL).await.expect("b"),
            vec![fence(1, 2)]
        );
        assert_eq!(
            c.renew_leases(&a, LONG_TTL).await.expect("renew"),
            vec![fence(0, 1)],
            "a lease taken over is not renewed"
        );
        let view = c.cluster_view(LONG_TTL).await.expect("view");
        assert_eq!(view.leases[1].owner.as_ref(), Some(&b));
        assert_eq!((view.leases[1].epoch, view.leases[1].live), (2, true));
        assert_eq!(
            c.renew_leases(&b, LONG_TTL).await.expect("renew"),
            vec![fence(1, 2)]
        );
    })
    .await;
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once_with_the_next_epoch_and_only_its_owner_releases() {
    on_postgres(|store| async move {
        let c = cluster(&store);
        c.prepare_shards(4).await.expect("prepare");
        let (a, b) = (node("http://a:8080", 1), node("http://b:8080", 1));
        c.acquire_leases(&a, &[0, 2], LONG_TTL).await.expect("a");
        // Not b's to release, nor an older incarnation's.
        c.release_leases(&b, &[0, 2]).await.expect("release");
        c.release_leases(&node("http://a:8080", 0), &[0, 2])
            .await
            .expect("release");
        assert!(c
            .acquire_leases(&b, &[0, 2], LONG_TTL)
            .await
            .expect("b")
            .is_empty());
        c.release_leases(&a, &[2]).await.expect("release");
        let view = c.cluster_view(LONG_TTL).await.expect("view");
        assert!(!view.leases[2].live);
        assert_eq!(view.leases[2].epoch, 1, "a release keeps the epoch");
        assert_eq!(view.leases[2].owner, None, "and clears the owner");
        assert_eq!(
            c.acquire_leases(&b, &[0, 2], LONG_TTL).await.expect("b"),
            vec![fence(2, 2)]
        );
        assert_eq!(
            c.renew_leases(&a, LONG_TTL).await.expect("renew"),
            vec![fence(0, 1)]
        );
    })
    .await;
}

#[tokio::test]
async fn a_new_incarnation_of_a_node_takes_its_old_leases_at_once() {
    on_postgres(|store| async move {
        let c = cluster(&store);
        c.prepare_shards(4).await.expect("prepare");
        let old = node("http://a:8080", 7);
        let new = node("http://a:8080", 8);
        c.acquire_leases(&old, &[1, 3], LONG_TTL)
            .await
            .expect("old");
        // Still live, but the same URL restarted: no TTL wait.
        assert_eq!(
            c.acquire_leases(&new, &[1, 2, 3], LONG_TTL)
                .await
                .expect("new"),
            vec![fence(1, 2), fence(2, 1), fence(3, 2)]
        );
        assert!(c
            .renew_leases(&old, LONG_TTL)
            .await
            .expect("renew")
            .is_empty());
        // The old run waking up (a paused process) may not take them back.
        assert!(c
            .acquire_leases(&old, &[1, 3], LONG_TTL)
            .await
            .expect("old again")
            .is_empty());
        // Another URL still may not.
        assert!(c
            .acquire_leases(&node("http://b:8080", 8), &[1], LONG_TTL)
            .await
            .expect("b")
            .is_empty());
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Fenced writes

#[tokio::test]
async fn a_journal_batch_with_a_stale_epoch_is_fenced_and_writes_nothing() {
    on_postgres(|store| async move {
        hand_over(&cluster(&store), &[1, 2], &[1]).await;
        let doctor = create_doctor(&store).await;
        let bookings = [
            booking(doctor, 2, 1, slot(0)),
            booking(doctor, 3, 2, slot(1)),
        ];

        // The one-statement shape (bookings only) and the transaction shape (with a
        // cancellation), each refused whole.
        for batch in [
            &bookings[..],
            &[bookings[0].clone(), cancellation(doctor, 3, 1)],
        ] {
            match store.append_fenced(batch, &[fence(1, 1)]).await {
                Err(StoreError::Fenced { shard: 1, epoch: 1 }) => {}
                other => panic!("a stale epoch must be fenced, got {other:?}"),
            }
            // One stale fence among good ones refuses the batch too, naming the stale one.
            match store
                .append_fenced(batch, &[fence(2, 1), fence(1, 1), fence(2, 1)])
                .await
            {
                Err(StoreError::Fenced { shard: 1, epoch: 1 }) => {}
                other => panic!("a stale epoch must be fenced, got {other:?}"),
            }
            // A shard nobody prepared has no lease to hold.
            match store.append_fenced(batch, &[fence(9, 1)]).await {
                Err(StoreError::Fenced { shard: 9, epoch: 1 }) => {}
                other => panic!("an unknown shard must be fenced, got {other:?}"),
            }
            assert_eq!(written(&store).await, [0, 0, 0, 0]);
        }

        // The current epochs write.
        store
            .append_fenced(&bookings, &[fence(1, 2), fence(2, 1)])
            .await
            .expect("current epochs");
        assert_eq!(written(&store).await, [2, 2, 2, 4]);
        store
            .append_fenced(&[cancellation(doctor, 4, 1)], &[fence(1, 2)])
            .await
            .expect("current epoch, transaction shape");
        assert_eq!(written(&store).await, [3, 2, 2, 6]);
    })
    .await;
}

#[tokio::test]
async fn a_snapshot_with_a_stale_epoch_is_fenced_and_not_saved() {
    on_postgres(|store| async move {
        hand_over(&cluster(&store), &[3], &[3]).await;
        let doctor = create_doctor(&store).await;
        match store
            .save_snapshot_fenced(doctor, 1, b"old owner", Some(fence(3, 1)))
            .await
        {
            Err(StoreError::Fenced { shard: 3, epoch: 1 }) => {}
            other => panic!("a stale epoch must be fenced, got {other:?}"),
        }
        assert_eq!(rows(&store, "snapshots").await, 0);
        store
            .save_snapshot_fenced(doctor, 1, b"new owner", Some(fence(3, 2)))
            .await
            .expect("current epoch");
        store
            .save_snapshot_fenced(doctor, 1, b"unfenced", None)
            .await
            .expect("no fence");
        let blob: Vec<u8> = sqlx::query_scalar("SELECT blob FROM snapshots")
            .fetch_one(store.pool())
            .await
            .expect("snapshot");
        assert_eq!(blob, b"unfenced");
    })
    .await;
}

#[tokio::test]
async fn snapshots_saved_together_are_each_written_only_under_their_own_current_fence() {
    on_postgres(|store| async move {
        hand_over(&cluster(&store), &[1, 3], &[3]).await;
        let mut doctors = Vec::new();
        for _ in 0..4 {
            doctors.push(create_doctor(&store).await);
        }
        let snapshot = |doctor_id, fence: Option<Fence>| SnapshotWrite {
            doctor_id,
            seq: 1,
            blob: format!("doctor {doctor_id}").into_bytes(),
            fence,
        };
        let written = store
            .save_snapshots(&[
                snapshot(doctors[0], Some(fence(1, 1))), // a's current lease
                snapshot(doctors[1], Some(fence(3, 1))), // a's old lease of shard 3: stale
                snapshot(doctors[2], Some(fence(3, 2))), // b's current lease
                snapshot(doctors[3], None),
            ])
            .await
            .expect("save together");
        assert_eq!(written, [true, false, true, true]);
        let stored: Vec<i64> =
            sqlx::query_scalar("SELECT doctor_id FROM snapshots ORDER BY doctor_id")
                .fetch_all(store.pool())
                .await
                .expect("snapshots");
        assert_eq!(stored, [doctors[0], doctors[2], doctors[3]]);
    })
    .await;
}

#[tokio::test]
async fn a_takeover_skips_a_lease_row_held_by_an_open_fenced_transaction_and_takes_it_after() {
    on_postgres(|store| async move {
        let c = cluster(&store);
        c.prepare_shards(4).await.expect("prepare");
        let a = node("http://a:8080", 1);
        c.acquire_leases(&a, &[1], Duration::from_millis(300))
            .await
            .expect("a");
        // What a fenced journal transaction of `a` does first, left open.
        let mut open = store.pool().begin().await.expect("begin");
        let held: Vec<i32> = sqlx::query_scalar(
            "SELECT shard FROM shard_leases \
             WHERE (shard, epoch) IN (SELECT * FROM UNNEST($1::bigint[], $2::bigint[])) \
             ORDER BY shard FOR SHARE",
        )
        .bind(vec![1_i64])
        .bind(vec![1_i64])
        .fetch_all(&mut *open)
        .await
        .expect("fence check");
        assert_eq!(held, vec![1]);
        wait_expired(&c, 1).await;

        // The takeover does not wait behind the open transaction (a paused owner must not
        // stall the taker's lease loop): it skips the row this time.
        let b = node("http://b:8080", 1);
        assert_eq!(
            c.acquire_leases(&b, &[1], LONG_TTL).await.expect("skipped"),
            vec![],
            "a locked lease row is skipped"
        );
        // The old owner's transaction still commits under its epoch.
        let doctor = create_doctor(&store).await;
        sqlx::query(
            "INSERT INTO snapshots (doctor_id, seq, blob, taken_at) VALUES ($1, 1, 'x', now())",
        )
        .bind(doctor)
        .execute(&mut *open)
        .await
        .expect("write under the old epoch");
        open.commit().await.expect("commit");
        assert_eq!(
            c.acquire_leases(&b, &[1], LONG_TTL)
                .await
                .expect("takeover"),
            vec![fence(1, 2)]
        );
        // From now on the old epoch writes nothing.
        match store
            .append_fenced(&[booking(doctor, 2, 1, slot(0))], &[fence(1, 1)])
            .await
        {
            Err(StoreError::Fenced { shard: 1, epoch: 1 }) => {}
            other => panic!("a stale epoch must be fenced, got {other:?}"),
        }
        assert_eq!(written(&store).await, [0, 0, 0, 0]);
    })
    .await;
}

#[tokio::test]
async fn a_fenced_batch_behind_an_uncommitted_takeover_waits_then_is_fenced() {
    on_postgres(|store| async move {
        let c = cluster(&store);
        c.prepare_shards(4).await.expect("prepare");
        c.acquire_leases(&node("http://a:8080", 1), &[1], LONG_TTL)
            .await
            .expect("a");
        let doctor = create_doctor(&store).await;
        // A takeover that has bumped the epoch but not committed yet.
        let mut takeover = store.pool().begin().await.expect("begin");
        sqlx::query(
            "UPDATE shard_leases SET owner_url = 'http://b:8080', owner_incarnation = 1, \
             epoch = epoch + 1, expires_at = now() + interval '10 minutes' WHERE shard = 1",
        )
        .execute(&mut *takeover)
        .await
        .expect("takeover");
        let append = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append_fenced(&[booking(doctor, 2, 1, slot(0))], &[fence(1, 1)])
                    .await
            })
        };
        let mut monitor = raw_connection(&store).await;
        // A bookings-only batch checks its fences in its one statement.
        wait_for_lock_waits(
            &mut monitor,
            "WITH f AS (SELECT shard, epoch FROM shard_leases",
            1,
        )
        .await;
        assert!(
            !append.is_finished(),
            "the fence check must wait for the takeover"
        );
        takeover.commit().await.expect("commit");
        match finished(append).await {
            Err(StoreError::Fenced { shard: 1, epoch: 1 }) => {}
            other => panic!("the batch must be fenced after the takeover, got {other:?}"),
        }
        assert_eq!(written(&store).await, [0, 0, 0, 0]);
    })
    .await;
}

#[tokio::test]
async fn a_connection_lost_during_the_commit_of_a_fenced_batch_is_an_error() {
    on_postgres(|store| async move {
        let c = cluster(&store);
        c.prepare_shards(4).await.expect("prepare");
        c.acquire_leases(&node("http://a:8080", 1), &[1], LONG_TTL)
            .await
            .expect("a");
        let doctor = create_doctor(&store).await;
        // A deferred trigger makes COMMIT wait for an advisory lock the test holds, so the
        // connection can be cut exactly while the commit is under way.
        sqlx::query(
            "CREATE FUNCTION gate_commit() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN NULL; END $$",
        )
        .execute(store.pool())
        .await
        .expect("function");
        sqlx::query(
            "CREATE CONSTRAINT TRIGGER journal_commit_gate AFTER INSERT ON journal \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION gate_commit()",
        )
        .execute(store.pool())
        .await
        .expect("trigger");
        let mut gate = store.pool().acquire().await.expect("gate connection");
        sqlx::query("SELECT pg_advisory_lock(4242)")
            .execute(&mut *gate)
            .await
            .expect("lock");

        // The one-statement shape (bookings only: its implicit commit ends the statement)
        // and the transaction shape (with a cancellation: an explicit COMMIT).
        let shapes = [
            (
                vec![booking(doctor, 2, 1, slot(0))],
                "WITH f AS (SELECT shard, epoch FROM shard_leases",
            ),
            (
                vec![booking(doctor, 2, 1, slot(0)), cancellation(doctor, 3, 1)],
                "COMMIT",
            ),
        ];
        let mut monitor = raw_connection(&store).await;
        for (batch, statement) in shapes {
            let append = {
                let store = store.clone();
                tokio::spawn(async move { store.append_fenced(&batch, &[fence(1, 1)]).await })
            };
            wait_for_lock_waits(&mut monitor, statement, 1).await;
            let cut: bool = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND query LIKE $1 \
                 AND wait_event_type = 'Lock'",
            )
            .bind(format!("{statement}%"))
            .fetch_one(store.pool())
            .await
            .expect("terminate");
            assert!(cut);
            // Never success, nor a sure failure: without an answer the commit may have
            // landed (here it did not: the gate held it before its commit record).
            match finished(append).await {
                Err(StoreError::Indeterminate(_)) => {}
                other => panic!(
                    "a commit without an answer must be an unknown outcome ({statement}), got {other:?}"
                ),
            }
        }
        sqlx::query("SELECT pg_advisory_unlock(4242)")
            .execute(&mut *gate)
            .await
            .expect("unlock");
        drop(gate);
        assert_eq!(written(&store).await, [0, 0, 0, 0]);
    })
    .await;
}

#[tokio::test]
async fn a_connection_cut_before_the_one_statement_completes_is_a_sure_failure() {
    on_postgres(|store| async move {
        let c = cluster(&store);
        c.prepare_shards(4).await.expect("prepare");
        c.acquire_leases(&node("http://a:8080", 1), &[1], LONG_TTL)
            .await
            .expect("a");
        let doctor = create_doctor(&store).await;
        // The lease row locked, so the batch's fence check waits inside its statement.
        let mut holder = raw_connection(&store).await;
        let mut open = holder.begin().await.expect("begin");
        sqlx::query("SELECT 1 FROM shard_leases WHERE shard = 1 FOR UPDATE")
            .execute(&mut *open)
            .await
            .expect("lock the lease row");
        let append = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append_fenced(&[booking(doctor, 2, 1, slot(0))], &[fence(1, 1)])
                    .await
            })
        };
        let statement = "WITH f AS (SELECT shard, epoch FROM shard_leases";
        let mut monitor = raw_connection(&store).await;
        wait_for_lock_waits(&mut monitor, statement, 1).await;
        let cut: bool = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE $1 \
             AND wait_event_type = 'Lock'",
        )
        .bind(format!("{statement}%"))
        .fetch_one(&mut monitor)
        .await
        .expect("terminate");
        assert!(cut);
        // The server said so before the statement completed: it was rolled back, so the
        // caller is told for sure that nothing was written (not "it may have completed").
        match finished(append).await {
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("a statement cut while it ran must be a sure failure, got {other:?}"),
        }
        open.rollback().await.expect("rollback");
        assert_eq!(written(&store).await, [0, 0, 0, 0]);
        // And the store writes again.
        store
            .append_fenced(&[booking(doctor, 2, 1, slot(0))], &[fence(1, 1)])
            .await
            .expect("a batch after the cut");
        assert_eq!(written(&store).await[..2], [1, 1]);
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Consultation ids

#[tokio::test]
async fn concurrent_id_ranges_are_disjoint_and_above_every_stored_id() {
    on_postgres(|store| async move {
        let c = cluster(&store);
        let doctor = create_doctor(&store).await;
        store
            .append(&[booking(doctor, 2, 1_000, slot(0))])
            .await
            .expect("append");
        const TASKS: usize = 32;
        const COUNT: u32 = 7;
        // Hold the allocator row so that the calls pile up and race when it is let go (as
        // many as the pool has connections wait on the row, the rest for a connection).
        // The journal keeps the connection its batch went to, out of the pool.
        let waiters = i64::from(store.pool().options().get_max_connections()) - 1;
        let mut monitor = raw_connection(&store).await;
        let mut holder = raw_connection(&store).await;
        let mut open = holder.begin().await.expect("begin");
        sqlx::query("SELECT next_id FROM consultation_id_allocator FOR SHARE")
            .execute(&mut *open)
            .await
            .expect("hold the row");
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let c = Arc::clone(&c);
                tokio::spawn(async move { c.allocate_consultation_ids(COUNT).await })
            })
            .collect();
        wait_for_lock_waits(&mut monitor, "UPDATE consultation_id_allocator", waiters).await;
        open.commit().await.expect("commit");
        let mut firsts = Vec::new();
        for task in tasks {
            firsts.push(finished(task).await.expect("allocate"));
        }
        firsts.sort_unstable();
        assert!(firsts[0] > 1_000, "{firsts:?}");
        assert!(
            firsts.windows(2).all(|w| w[0] + i64::from(COUNT) <= w[1]),
            "ranges overlap: {firsts:?}"
        );
        // Ids stored without the allocator (a single instance before the cluster) push
        // the next range above them.
        let last = firsts[TASKS - 1] + i64::from(COUNT);
        store
            .append(&[booking(doctor, 3, last + 50, slot(1))])
            .await
            .expect("append");
        assert_eq!(
            c.allocate_consultation_ids(COUNT).await.expect("allocate"),
            last + 51
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Membership

#[tokio::test]
async fn the_cluster_view_lists_the_nodes_whose_heartbeat_is_younger_than_the_ttl() {
    on_postgres(|store| async move {
        let c = cluster(&store);
        c.prepare_shards(2).await.expect("prepare");
        let (a, b) = (node("http://a:8080", 1), node("http://b:8080", 1));
        c.heartbeat(&a).await.expect("a");
        c.heartbeat(&b).await.expect("b");
        let view = c.cluster_view(LONG_TTL).await.expect("view");
        assert_eq!(view.live_nodes, vec![a.clone(), b.clone()]);
        assert_eq!(view.leases.len(), 2);

        let ttl = Duration::from_millis(1_500);
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        c.heartbeat(&b).await.expect("b again");
        let view = c.cluster_view(ttl).await.expect("view");
        assert_eq!(view.live_nodes, vec![b.clone()], "a's heartbeat is too old");
        let age = view.db_now - Utc::now();
        assert!(age.num_seconds().abs() < 60, "db_now is the database's now");

        // A restart replaces the node's row; leaving removes only the current incarnation.
        let b2 = node("http://b:8080", 2);
        c.heartbeat(&b2).await.expect("b2");
        c.leave(&b).await.expect("old incarnation leaves");
        assert_eq!(
            c.cluster_view(ttl).await.expect("view").live_nodes,
            vec![b2.clone()]
        );
        c.leave(&b2).await.expect("leave");
        assert!(
            c.cluster_view(LONG_TTL)
                .await
                .expect("view")
                .live_nodes
                .len()
                == 1
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Outbox claims

#[tokio::test]
async fn two_instances_polling_due_sessions_at_once_never_get_the_same_consultation() {
    on_postgres(|a| async move {
        let b = second_store(&a).await;
        book(&a, 20, now()).await;
        // Another transaction holds four rows: polls skip them instead of waiting.
        let mut holder = raw_connection(&a).await;
        let mut open = holder.begin().await.expect("begin");
        sqlx::query("SELECT 1 FROM sessions WHERE consultation_id <= 4 FOR UPDATE")
            .execute(&mut *open)
            .await
            .expect("hold four rows");
        let (got_a, got_b) = tokio::time::timeout(WAIT, async {
            tokio::join!(a.due_sessions(now(), 10), b.due_sessions(now(), 10))
        })
        .await
        .expect("polls do not wait for locked rows");
        let ids = |tasks: Vec<consult_actors::outbox::SessionTask>| {
            tasks.iter().map(|t| t.consultation_id).collect::<Vec<_>>()
        };
        let (got_a, got_b) = (ids(got_a.expect("a")), ids(got_b.expect("b")));
        assert!(
            got_a.iter().all(|id| !got_b.contains(id)),
            "both instances got one consultation: {got_a:?} {got_b:?}"
        );
        let mut all: Vec<_> = got_a.iter().chain(&got_b).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (5..=20).collect::<Vec<_>>());
        // Claimed: no one gets them again now, from either store.
        assert!(a.due_sessions(now(), 100).await.expect("a").is_empty());
        open.commit().await.expect("commit");
        assert_eq!(
            ids(b.due_sessions(now(), 100).await.expect("b")),
            vec![1, 2, 3, 4]
        );

        // The claim of `b` holds against `a`, not against `b` itself.
        assert!(a.pending_session(1).await.expect("a").is_none());
        assert_eq!(
            b.pending_session(1)
                .await
                .expect("b")
                .map(|t| t.consultation_id),
            Some(1)
        );
        // Nor may `a` record an attempt of it.
        a.retry_session(1, 3, now(), "not mine")
            .await
            .expect("retry");
        let record = a.session(1).await.expect("session").expect("row");
        assert_eq!((record.attempts, record.last_error), (0, None));
        b.retry_session(1, 1, now(), "HTTP 503")
            .await
            .expect("retry");
        assert_eq!(a.session(1).await.expect("s").expect("row").attempts, 1);

        // A claim runs out: the work of an instance that died comes back.
        let later = now() + chrono::Duration::seconds(DEFAULT_OUTBOX_CLAIM_S as i64 + 1);
        assert_eq!(
            ids(a.due_sessions(later, 100).await.expect("a")),
            (1..=20).collect::<Vec<_>>()
        );
        b.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_session_claimed_by_one_instance_is_free_for_another_once_the_claim_runs_out() {
    on_postgres(|store| async move {
        let a = store.clone().with_outbox_claim(Duration::from_millis(800));
        let b = second_store(&store).await;
        book(&store, 1, Utc::now()).await;
        assert!(a.pending_session(1).await.expect("a").is_some());
        assert!(a.pending_session(1).await.expect("a again").is_some());
        assert!(b.pending_session(1).await.expect("b").is_none());
        wait_until("the claim of `a` runs out", || async {
            b.pending_session(1).await.expect("b").is_some()
        })
        .await;
        // Now `b` holds it for the default claim period.
        assert!(a.pending_session(1).await.expect("a").is_none());
        b.close().await;
    })
    .await;
}

#[tokio::test]
async fn two_instances_polling_due_webhooks_at_once_never_get_the_same_notification() {
    on_postgres(|a| async move {
        let b = second_store(&a).await;
        book(&a, 10, now()).await;
        let mut holder = raw_connection(&a).await;
        let mut open = holder.begin().await.expect("begin");
        let held: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM notifications ORDER BY id LIMIT 4 FOR UPDATE")
                .fetch_all(&mut *open)
                .await
                .expect("hold four rows");
        let (got_a, got_b) = tokio::time::timeout(WAIT, async {
            tokio::join!(a.due_webhooks(now(), 10), b.due_webhooks(now(), 10))
        })
        .await
        .expect("polls do not wait for locked rows");
        let ids = |ns: Vec<consult_actors::outbox::Notification>| {
            ns.iter().map(|n| n.id).collect::<Vec<_>>()
        };
        let (got_a, got_b) = (ids(got_a.expect("a")), ids(got_b.expect("b")));
        assert!(
            got_a.iter().all(|id| !got_b.contains(id)),
            "both instances got one notification: {got_a:?} {got_b:?}"
        );
        let mut all: Vec<_> = got_a.iter().chain(&got_b).copied().collect();
        all.sort_unstable();
        let everyone: Vec<i64> = sqlx::query_scalar("SELECT id FROM notifications ORDER BY id")
            .fetch_all(a.pool())
            .await
            .expect("ids");
        assert_eq!(all, everyone[4..]);
        assert!(b.due_webhooks(now(), 100).await.expect("b").is_empty());
        open.commit().await.expect("commit");
        assert_eq!(ids(a.due_webhooks(now(), 100).await.expect("a")), held);

        // An outcome ends the claim; an unanswered claim runs out.
        a.update_webhook(held[0], consult_actors::outbox::WebhookUpdate::Delivered)
            .await
            .expect("delivered");
        a.update_webhook(
            held[1],
            consult_actors::outbox::WebhookUpdate::Retry {
                attempts: 1,
                next_at: now() + chrono::Duration::seconds(1),
            },
        )
        .await
        .expect("retry");
        assert_eq!(
            ids(b
                .due_webhooks(now() + chrono::Duration::seconds(1), 100)
                .await
                .expect("b")),
            vec![held[1]]
        );
        let later = now() + chrono::Duration::seconds(DEFAULT_OUTBOX_CLAIM_S as i64 + 1);
        assert_eq!(
            b.due_webhooks(later, 100).await.expect("b").len(),
            everyone.len() - 1,
            "all but the delivered one"
        );
        b.close().await;
    })
    .await;
}
