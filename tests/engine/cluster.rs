//! Two engines on one Postgres database, as two instances would run: they split the lease
//! shards, refuse each other's doctors with `NotOwner`, hand everything over on leave,
//! and a write under an epoch that was taken over is fenced (nothing stored).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use consult_actors::cluster::{ClusterSettings, Route};
use consult_actors::*;
use consult_persistence::testing::test_pg_url;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::helpers::*;

const SHARDS: u32 = 16;
const SETTLE: Duration = Duration::from_secs(15);

async fn clustered(store: Arc<dyn Store>, url: &str) -> Engine {
    clustered_with_ttl(store, url, Duration::from_millis(1500)).await
}

async fn clustered_with_ttl(store: Arc<dyn Store>, url: &str, lease_ttl: Duration) -> Engine {
    Engine::builder(store)
        .settings(settings())
        .cluster(ClusterSettings {
            advertise_url: url.into(),
            shard_count: SHARDS,
            lease_ttl,
            id_block: 20,
        })
        .start()
        .await
        .expect("clustered engine starts")
}

fn owned(e: &Engine) -> usize {
    e.cluster().expect("clustered").ownership().owned().len()
}

fn unrouted(e: &Engine) -> usize {
    e.cluster().expect("clustered").ownership().unrouted()
}

/// Waits until the two engines hold every shard between them, each some, both routed.
async fn settled(a: &Engine, b: &Engine) {
    assert!(
        eventually(SETTLE, || owned(a) > 0
            && owned(b) > 0
            && owned(a) + owned(b) == SHARDS as usize
            && unrouted(a) == 0
            && unrouted(b) == 0)
        .await,
        "shards not split: a {} b {} unrouted {} {}",
        owned(a),
        owned(b),
        unrouted(a),
        unrouted(b)
    );
}

/// The engine that serves `doctor`, and the other one.
fn owner_of<'e>(doctor: DoctorId, a: &'e Engine, b: &'e Engine) -> (&'e Engine, &'e Engine) {
    match a.cluster().expect("clustered").route(doctor) {
        Route::Local(_) => (a, b),
        _ => (b, a),
    }
}

async fn sql(backend: &Backend) -> sqlx::PgConnection {
    let Kind::Postgres(name) = &backend.kind else {
        panic!("a Postgres backend")
    };
    test_pg_url()
        .parse::<PgConnectOptions>()
        .expect("pg url")
        .database(name)
        .connect()
        .await
        .expect("connect")
}

#[tokio::test]
async fn two_engines_split_the_shards_and_refuse_each_others_doctors() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let a = clustered(Arc::clone(&backend.store), "http://a.test").await;
    let b = clustered(backend.reopen().await, "http://b.test").await;
    settled(&a, &b).await;
    let mut doctors = Vec::new();
    for i in 0..12 {
        doctors.push(
            a.create_doctor(open_doctor(&format!("Dr. {i}"), chrono_tz::UTC))
                .await
                .expect("doctor")
                .id,
        );
    }
    let mut served = [0, 0];
    for (i, &d) in doctors.iter().enumerate() {
        let (owner, other) = owner_of(d, &a, &b);
        served[usize::from(std::ptr::eq(owner, &b))] += 1;
        let url = owner.cluster().unwrap().advertise_url().to_owned();
        assert_eq!(
            other.book(booking(d, 100, slot(i as i64))).await,
            Err(EngineError::NotOwner { owner: Some(url) }),
            "the other engine refuses doctor {d} and names its owner"
        );
        // 16 patients race for one slot at the owner: one wins.
        let racers = (0..16).map(|p| {
            let owner = owner.clone();
            tokio::spawn(async move { owner.book(booking(d, 200 + p, slot(i as i64))).await })
        });
        let mut won = 0;
        for r in racers {
            match r.await.expect("task") {
                Ok(_) => won += 1,
                Err(EngineError::Rejected(Rejection::Conflict)) => {}
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(won, 1, "doctor {d}");
    }
    assert!(
        served[0] > 0 && served[1] > 0,
        "both engines serve doctors: {served:?}"
    );
    // Ids come from disjoint reserved ranges: every booking stored, none lost to a clash.
    let active = backend
        .store
        .active_consultations(None)
        .await
        .expect("active");
    assert_eq!(active.len(), doctors.len());
    assert_no_overlaps(&active);
    a.shutdown().await;
    b.shutdown().await;
    backend.cleanup().await;
}

#[tokio::test]
async fn leaving_hands_every_shard_to_the_other_with_its_bookings() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let a = clustered(Arc::clone(&backend.store), "http://a.test").await;
    let b = clustered(backend.reopen().await, "http://b.test").await;
    settled(&a, &b).await;
    let mut at_a = Vec::new();
    for i in 0..20 {
        let d = a
            .create_doctor(open_doctor(&format!("Dr. {i}"), chrono_tz::UTC))
            .await
            .expect("doctor")
            .id;
        if matches!(a.cluster().unwrap().route(d), Route::Local(_)) {
            a.book(booking(d, 7, slot(3))).await.expect("booked at a");
            at_a.push(d);
        }
    }
    assert!(!at_a.is_empty(), "a serves some doctors");
    a.leave_cluster().await;
    assert_eq!(owned(&a), 0, "a holds nothing once it has left");
    assert!(
        eventually(SETTLE, || owned(&b) == SHARDS as usize).await,
        "b took every shard: {}",
        owned(&b)
    );
    for &d in &at_a {
        assert_eq!(
            b.book(booking(d, 8, slot(3))).await,
            Err(EngineError::Rejected(Rejection::Conflict)),
            "b sees what a booked for doctor {d}"
        );
        b.book(booking(d, 8, slot(4))).await.expect("b books");
        assert!(matches!(
            a.book(booking(d, 9, slot(5))).await,
            Err(EngineError::NotOwner { .. })
        ));
    }
    a.shutdown().await;
    b.shutdown().await;
    backend.cleanup().await;
}

#[tokio::test]
async fn a_write_after_a_takeover_is_fenced_and_nothing_is_written() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    // A long lease: no renewal (which would notice the takeover) during the test's write.
    let a = clustered_with_ttl(
        Arc::clone(&backend.store),
        "http://a.test",
        Duration::from_secs(60),
    )
    .await;
    assert!(
        eventually(SETTLE, || owned(&a) == SHARDS as usize).await,
        "a alone holds every shard"
    );
    let d = a
        .create_doctor(open_doctor("Dr. Fenced", chrono_tz::UTC))
        .await
        .expect("doctor")
        .id;
    a.book(booking(d, 1, slot(2))).await.expect("first booking");
    let shard = a.cluster().unwrap().shard_of(d);
    // Another instance takes the shard over (as after a pause longer than the lease).
    let mut conn = sql(&backend).await;
    sqlx::query(
        "UPDATE shard_leases SET owner_url = 'http://x.test', owner_incarnation = 1, \
         epoch = epoch + 1, expires_at = now() + interval '1 hour' WHERE shard = $1",
    )
    .bind(i64::from(shard))
    .execute(&mut conn)
    .await
    .expect("takeover");
    // ... and heartbeats (an owner that does not is not forwarded to).
    sqlx::query(
        "INSERT INTO cluster_nodes (advertise_url, incarnation, heartbeat_at, started_at)          VALUES ('http://x.test', 1, now() + interval '1 hour', now())",
    )
    .execute(&mut conn)
    .await
    .expect("heartbeat");
    // a still believes it holds the lease (its deadline has not passed): its write is
    // refused inside the transaction.
    let late = a.book(booking(d, 2, slot(6))).await;
    assert!(
        matches!(late, Err(EngineError::Storage(_))),
        "the late write is refused by its fence: {late:?}"
    );
    let stored: Vec<_> = backend
        .store
        .active_consultations(Some(d))
        .await
        .expect("active")
        .into_iter()
        .map(|c| c.scheduled_at)
        .collect();
    assert_eq!(stored, vec![slot(2)], "nothing written after the takeover");
    assert!(
        eventually(SETTLE, || matches!(
            a.cluster().unwrap().route(d),
            Route::Remote(ref u) if &**u == "http://x.test"
        ))
        .await,
        "a routes the doctor to the new owner"
    );
    assert_eq!(
        a.book(booking(d, 2, slot(6))).await,
        Err(EngineError::NotOwner {
            owner: Some("http://x.test".into())
        })
    );
    assert!(a.cluster().unwrap().stats.fenced.load(Relaxed) >= 1);
    conn.close().await.ok();
    a.shutdown().await;
    backend.cleanup().await;
}
