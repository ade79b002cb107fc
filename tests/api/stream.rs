//! The availability stream through a real server: what a watcher sees of other patients'
//! holds, bookings and cancellations and of schedule changes, resuming, bounds, auth,
//! and shutdown.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::watcher::Watcher;

fn position(id: &str) -> (u64, u32) {
    let (seq, n) = id.split_once('.').expect("a position seq.n");
    (seq.parse().unwrap(), n.parse().unwrap())
}

#[tokio::test]
async fn a_watcher_sees_another_patients_holds_bookings_releases_cancellations_and_schedule_changes_in_order(
) {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let watcher_token = app.token(Patient, 67);
    let other = app.token(Patient, 68);
    let mut w = Watcher::open(&app, doctor, &watcher_token, None).await;
    let ready = w.expect("ready", None).await;
    assert_eq!(ready.data["doctor_id"].as_i64(), Some(doctor));

    let (first, second) = (tomorrow_at(10, 0), tomorrow_at(10, 30));
    let hold = |at: DateTime<Utc>| json!({"doctor_id": doctor, "scheduled_at": at, "hold": true});
    assert_eq!(
        app.post("/patient/doctors/check-slot", &other, hold(first))
            .await
            .0,
        StatusCode::OK
    );
    // Holding another slot releases the first: one hold per patient per doctor.
    assert_eq!(
        app.post("/patient/doctors/check-slot", &other, hold(second))
            .await
            .0,
        StatusCode::OK
    );
    let (status, booked) = app.book(68, doctor, second).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = booked["consultation"]["id"].as_i64().unwrap();
    let (status, _) = app
        .post(
            &format!("/patient/consultations/{id}/cancel"),
            &other,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let doctor_token = app.token(Doctor, doctor);
    let (status, _) = app
        .call(
            Method::PUT,
            "/doctor/availability",
            Some(&doctor_token),
            Some(json!({"availability_schedule": every_day("09:00", "17:00")})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let mut seen = vec![ready.clone()];
    for (event, start, status) in [
        ("held", Some(first), Some("held")),
        ("released", Some(first), Some("available")),
        ("held", Some(second), Some("held")),
        ("booked", Some(second), Some("booked")),
        ("cancelled", Some(second), Some("available")),
        ("schedule_changed", None, None),
    ] {
        let got = w.expect(event, start).await;
        assert_eq!(got.data["status"].as_str(), status, "{got:?}");
        assert_eq!(got.data["doctor_id"].as_i64(), Some(doctor));
        let keys: Vec<&String> = got.data.as_object().unwrap().keys().collect();
        assert!(
            keys.iter()
                .all(|k| ["doctor_id", "start", "status"].contains(&k.as_str())),
            "only slot fields, never a patient: {keys:?}"
        );
        seen.push(got);
    }
    let positions: Vec<(u64, u32)> = seen.iter().map(|e| position(&e.id)).collect();
    assert!(positions.windows(2).all(|p| p[0] < p[1]), "{positions:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_stream_resumes_after_its_last_event_id_or_is_told_to_resync() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let token = app.token(Patient, 67);
    let mut w = Watcher::open(&app, doctor, &token, None).await;
    w.expect("ready", None).await;
    assert_eq!(
        app.book(68, doctor, tomorrow_at(9, 0)).await.0,
        StatusCode::CREATED
    );
    let last = w.expect("booked", Some(tomorrow_at(9, 0))).await;
    drop(w);

    // Missed while disconnected.
    assert_eq!(
        app.book(68, doctor, tomorrow_at(11, 0)).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        app.book(69, doctor, tomorrow_at(12, 0)).await.0,
        StatusCode::CREATED
    );
    let mut w = Watcher::open(&app, doctor, &token, Some(&last.id)).await;
    w.expect("ready", None).await;
    w.expect("booked", Some(tomorrow_at(11, 0))).await;
    let newest = w.expect("booked", Some(tomorrow_at(12, 0))).await;
    drop(w);

    // Up to date: nothing replayed; the next live event arrives.
    let mut w = Watcher::open(&app, doctor, &token, Some(&newest.id)).await;
    w.expect("ready", None).await;
    assert_eq!(
        app.book(68, doctor, tomorrow_at(13, 0)).await.0,
        StatusCode::CREATED
    );
    w.expect("booked", Some(tomorrow_at(13, 0))).await;
    drop(w);

    // A position this process never handed out (another run's): reload.
    let mut w = Watcher::open(&app, doctor, &token, Some("4000.2")).await;
    w.expect("ready", None).await;
    w.expect("resync", None).await;

    let (status, body) = app
        .client
        .get(app.url(&format!("/patient/doctors/{doctor}/availability/stream")))
        .bearer_auth(&token)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body: Value = body.json().await.unwrap();
    assert_eq!(body["error"], "validation_failed");
    app.stop().await;
}

#[tokio::test]
async fn an_expired_hold_is_streamed_as_released() {
    let app = TestApp::spawn_sqlite_with(&[("CONSULT__ENGINE__HOLD_TTL_S", "1")]).await;
    let doctor = app.doctor().await;
    let mut w = Watcher::open(&app, doctor, &app.token(Patient, 67), None).await;
    w.expect("ready", None).await;
    let at = tomorrow_at(15, 0);
    let (status, _) = app
        .post(
            "/patient/doctors/check-slot",
            &app.token(Patient, 68),
            json!({"doctor_id": doctor, "scheduled_at": at, "hold": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    w.expect("held", Some(at)).await;
    // The shard's tick (1 s) expires it; `next` waits up to 10 s.
    let released = w.expect("released", Some(at)).await;
    assert_eq!(released.data["status"], "available");
    app.stop().await;
}

#[tokio::test]
async fn streams_are_bounded_refuse_wrong_callers_and_end_when_the_server_stops() {
    let app =
        TestApp::spawn_sqlite_with(&[("CONSULT__ENGINE__MAX_STREAM_SUBSCRIBERS_PER_DOCTOR", "2")])
            .await;
    let doctor = app.doctor().await;
    let token = app.token(Patient, 67);
    let mut a = Watcher::open(&app, doctor, &token, None).await;
    let mut b = Watcher::open(&app, doctor, &token, None).await;
    a.expect("ready", None).await;
    b.expect("ready", None).await;
    let path = format!("/patient/doctors/{doctor}/availability/stream");
    let third = app
        .client
        .get(app.url(&path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(third.headers().contains_key("retry-after"));
    drop(b);
    // The freed place is taken again (the server notices the closed stream at once).
    crate::eventually(|| async {
        let r = app
            .client
            .get(app.url(&path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;

    let (status, _) = app.call(Method::GET, &path, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app.get(&path, &app.token(Doctor, doctor)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .get("/patient/doctors/999/availability/stream", &token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let admin = app.token(Admin, 1);
    let (_, pending) = app
        .post(
            "/admin/doctors",
            &admin,
            json!({"name": "Dr. New", "specialty": "x", "timezone": "UTC"}),
        )
        .await;
    let pending = pending["doctor"]["id"].as_i64().unwrap();
    let (status, body) = app
        .get(
            &format!("/patient/doctors/{pending}/availability/stream"),
            &token,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("doctor_unavailable"))
    );

    // Only `a` is still open; the gauge follows closed streams.
    crate::eventually(|| async {
        let text = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .any(|l| l == "consult_availability_streams 1")
            .then_some(())
    })
    .await;

    // Shutdown ends the open stream cleanly, and the server stops well within its grace.
    let started = std::time::Instant::now();
    app.stop().await;
    assert_eq!(a.next().await, None);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}
