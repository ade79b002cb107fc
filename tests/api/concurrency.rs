//! Racing HTTP clients: one slot, many patients.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

/// 200 concurrent bookings of one slot: one 201, 199 times the exact 409 body, and one
/// active consultation in the store.
async fn two_hundred_concurrent_bookings_of_one_slot(app: TestApp) {
    let doctor = app.doctor().await;
    let at = tomorrow_at(11, 30);
    let app = Arc::new(app);
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let app = Arc::clone(&app);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                app.book(1000 + i, doctor, at).await
            })
        })
        .collect();
    let mut created: Vec<Value> = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            StatusCode::CREATED => created.push(body),
            StatusCode::CONFLICT => {
                assert_eq!(seed_fields(&body), conflict_body());
                conflicts += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((created.len(), conflicts), (1, 199));
    let active = app
        .engine
        .store()
        .active_consultations(Some(doctor))
        .await
        .unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(
        active[0].id,
        created[0]["consultation"]["id"].as_i64().unwrap()
    );
    let app = Arc::into_inner(app).expect("tasks done");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_bookings_of_one_slot_on_sqlite_give_one_201_and_199_exact_409s() {
    two_hundred_concurrent_bookings_of_one_slot(TestApp::spawn().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_bookings_of_one_slot_on_postgres_give_one_201_and_199_exact_409s() {
    let Some(app) = TestApp::spawn_postgres().await else {
        return;
    };
    two_hundred_concurrent_bookings_of_one_slot(app).await;
}

/// SIGTERM-style shutdown while bookings are in flight: every request gets an answer,
/// and every 201 is in the store afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutting_down_mid_load_answers_every_request_and_keeps_every_201() {
    let mut app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let client = app.client.clone();
    let url = app.url("/patient/doctors/book");
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let client = client.clone();
            let url = url.clone();
            let token = app.token(Patient, 500 + i);
            let at = tomorrow_at(8, 0) + chrono::Duration::minutes(30 * (i % 20));
            tokio::spawn(async move {
                let resp = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&serde_json::json!({"doctor_id": doctor, "scheduled_at": at, "consult_mode": "chat"}))
                    .send()
                    .await;
                match resp {
                    Ok(r) => {
                        let status = r.status();
                        Some((status, r.json::<Value>().await.ok()))
                    }
                    // Refused after the listener closed: never acknowledged.
                    Err(_) => None,
                }
            })
        })
        .collect();
    tokio::task::yield_now().await;
    app.shutdown().await;
    let mut acknowledged = Vec::new();
    for t in tasks {
        if let Some((status, body)) = t.await.unwrap() {
            assert!(
                [
                    StatusCode::CREATED,
                    StatusCode::CONFLICT,
                    StatusCode::SERVICE_UNAVAILABLE
                ]
                .contains(&status),
                "{status}"
            );
            if status == StatusCode::CREATED {
                acknowledged.push(body.unwrap()["consultation"]["id"].as_i64().unwrap());
            }
        }
    }
    // Reopen the same database: every acknowledged booking is there.
    let Db::Sqlite(path) = &app.db else {
        unreachable!()
    };
    let url = format!("sqlite://{}", path.display());
    let reopened = TestApp::start(Db::Sqlite(path.clone()), test_settings(&url, &[])).await;
    let mut active: Vec<i64> = reopened
        .engine
        .store()
        .active_consultations(Some(doctor))
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    active.sort();
    acknowledged.sort();
    assert_eq!(active, acknowledged);
    reopened.stop().await;
}
