//! Notifications: the in-app inbox over HTTP, and signed webhooks delivered at least once to
//! a receiver server that checks every signature and fails some deliveries on purpose.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use axum::Router;
use consult_scheduler::engine::notifier::{
    verify, WebhookBody, IDEMPOTENCY_HEADER, SIGNATURE_HEADER,
};
use reqwest::StatusCode;
use serde_json::json;

use crate::eventually;
use crate::helpers::*;

const SECRET: &str = "webhook-secret-for-tests-0123";

#[derive(Default)]
struct Received {
    /// Every delivery that carried a valid signature, in arrival order: (key, body).
    valid: Vec<(String, WebhookBody)>,
    /// Deliveries whose signature did not verify.
    invalid: usize,
    /// Keys already refused once (each key's first delivery answers 500).
    refused: HashMap<String, u32>,
}

/// A webhook receiver on a free port that verifies signatures, answers 500 to the first
/// delivery of each key (so every notification needs a retry), then 200.
async fn receiver() -> (SocketAddr, Arc<Mutex<Received>>) {
    async fn hook(
        State(seen): State<Arc<Mutex<Received>>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> AxumStatus {
        let signature = headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let mut seen = seen.lock().unwrap();
        if !verify(SECRET.as_bytes(), signature, &body) {
            seen.invalid += 1;
            return AxumStatus::UNAUTHORIZED;
        }
        let key = headers
            .get(IDEMPOTENCY_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let parsed: WebhookBody = serde_json::from_slice(&body).expect("webhook body parses");
        assert_eq!(parsed.id, key, "the body carries the idempotency key");
        let refusals = seen.refused.entry(key.clone()).or_insert(0);
        if *refusals == 0 {
            *refusals += 1;
            return AxumStatus::INTERNAL_SERVER_ERROR;
        }
        seen.valid.push((key, parsed));
        AxumStatus::OK
    }
    let seen = Arc::new(Mutex::new(Received::default()));
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

#[tokio::test]
async fn webhooks_are_signed_retried_and_seen_at_least_once_each_deduplicable_by_key() {
    let (addr, seen) = receiver().await;
    let url = format!("http://{addr}/hook");
    let app = TestApp::spawn_sqlite_with(&[
        ("CONSULT__NOTIFICATIONS__WEBHOOK_URLS", &url),
        ("CONSULT__NOTIFICATIONS__WEBHOOK_SECRET", SECRET),
        ("CONSULT__NOTIFICATIONS__WEBHOOK_BACKOFF_BASE_MS", "20"),
        ("CONSULT__NOTIFICATIONS__WEBHOOK_BACKOFF_MAX_MS", "100"),
        ("CONSULT__NOTIFICATIONS__POLL_INTERVAL_MS", "50"),
        ("CONSULT__SESSIONS__WORKER__POLL_INTERVAL_MS", "100"),
    ])
    .await;
    let doctor = app.doctor().await;
    let patient = app.token(Patient, 7);
    let (status, booked) = app
        .post(
            "/patient/doctors/book",
            &patient,
            json!({"doctor_id": doctor, "scheduled_at": tomorrow_at(9, 0), "consult_mode": "video",
                "symptoms": "private medical text"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = booked["consultation"]["id"].as_i64().unwrap();
    // The default local provider (the built-in fake) makes the session.
    eventually(|| async {
        let (_, s) = app
            .get(&format!("/patient/consultations/{id}/session"), &patient)
            .await;
        (s["session_status"] == "ready").then_some(())
    })
    .await;
    let (status, _) = app
        .post(
            &format!("/patient/consultations/{id}/cancel"),
            &patient,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let expected: BTreeSet<(String, String, i64)> = [
        "consultation_scheduled",
        "session_ready",
        "consultation_cancelled",
    ]
    .iter()
    .flat_map(|e| {
        [
            (e.to_string(), "patient".to_owned(), 7),
            (e.to_string(), "doctor".to_owned(), doctor),
        ]
    })
    .collect();
    let deliveries = eventually(|| async {
        let seen = seen.lock().unwrap();
        let by_key: HashMap<&str, &WebhookBody> =
            seen.valid.iter().map(|(k, b)| (k.as_str(), b)).collect();
        let got: BTreeSet<(String, String, i64)> = by_key
            .values()
            .map(|b| {
                (
                    b.event.clone(),
                    b.recipient.role.as_str().to_owned(),
                    b.recipient.id,
                )
            })
            .collect();
        (got == expected).then(|| seen.valid.len())
    })
    .await;
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.invalid, 0, "every delivery was signed with the secret");
        // Each of the six was refused once and so delivered again under the same key.
        assert_eq!(seen.refused.len(), 6);
        assert!(seen.refused.values().all(|&n| n == 1));
        assert!(deliveries >= 6);
        for (_, body) in &seen.valid {
            assert_eq!(body.consultation.id, id);
            let text = serde_json::to_string(body).unwrap();
            assert!(!text.contains("private medical text"));
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn the_inbox_is_the_callers_own_newest_first_paged_and_marked_read() {
    let app = TestApp::spawn_sqlite_with(&[("CONSULT__SESSIONS__PROVIDER", "off")]).await;
    let doctor = app.doctor().await;
    for hour in 9..12 {
        let (status, _) = app.book(7, doctor, tomorrow_at(hour, 0)).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, _) = app.book(8, doctor, tomorrow_at(12, 0)).await;
    assert_eq!(status, StatusCode::CREATED);
    let patient = app.token(Patient, 7);
    // No webhook receiver is configured: the notifications are for the inbox only.
    let far = chrono::Utc::now() + chrono::Duration::days(365);
    let due = app.engine.store().due_webhooks(far, 100).await.unwrap();
    assert!(due.is_empty(), "{} webhooks queued", due.len());

    let (status, page1) = app.get("/notifications?limit=2", &patient).await;
    assert_eq!(status, StatusCode::OK, "{page1}");
    let list = page1["notifications"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["event"], "consultation_scheduled");
    assert_eq!(list[0]["read"], false);
    assert!(
        list[0]["consultation"]["scheduled_at"].as_str().unwrap()
            > list[1]["consultation"]["scheduled_at"].as_str().unwrap()
    );
    assert!(list.iter().all(|n| n["consultation"]["patient_id"] == 7));
    let before = page1["next_before"].as_i64().expect("a next page");
    let (_, page2) = app
        .get(&format!("/notifications?limit=2&before={before}"), &patient)
        .await;
    let list2 = page2["notifications"].as_array().unwrap();
    assert_eq!(list2.len(), 1);
    assert!(page2.get("next_before").is_none());

    // Mark the first page read; another patient's ids are ignored.
    let (_, other) = app.get("/notifications", &app.token(Patient, 8)).await;
    let other_id = other["notifications"][0]["id"].as_i64().unwrap();
    let ids: Vec<i64> = list.iter().map(|n| n["id"].as_i64().unwrap()).collect();
    let (status, marked) = app
        .post(
            "/notifications/read",
            &patient,
            json!({"ids": [ids[0], ids[1], other_id]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{marked}");
    assert_eq!(marked["updated"], 2);
    let (_, unread) = app.get("/notifications?unread_only=true", &patient).await;
    assert_eq!(unread["notifications"].as_array().unwrap().len(), 1);
    let (_, other_after) = app.get("/notifications", &app.token(Patient, 8)).await;
    assert_eq!(other_after["notifications"][0]["read"], false);

    // The doctor sees all four bookings; an admin has no inbox; bad input is a 400.
    let (_, d) = app.get("/notifications", &app.token(Doctor, doctor)).await;
    assert_eq!(d["notifications"].as_array().unwrap().len(), 4);
    let (status, body) = app.get("/notifications", &app.token(Admin, 1)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = app.get("/notifications?limit=0", &patient).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "validation_failed");
    let (status, _) = app
        .call(reqwest::Method::GET, "/notifications", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = app
        .post("/notifications/read", &patient, json!({"ids": "x"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    app.stop().await;
}
