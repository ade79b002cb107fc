//! `Idempotency-Key` on bookings and reschedules: a repeat from the same patient answers the
//! first answer, also after a restart on the same database (the key is stored with the
//! booking, in its transaction); the same key with another body is 422
//! `idempotency_key_reused`; keys are per patient and bounded.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

/// Sends `POST path` as `patient` with `Idempotency-Key: key`.
pub async fn send(
    app: &TestApp,
    patient: i64,
    path: &str,
    key: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let resp = app
        .client
        .post(app.url(path))
        .bearer_auth(app.token(Patient, patient))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("request reaches the server");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

const BOOK: &str = "/patient/doctors/book";

fn booking(doctor: i64, hour: u32) -> Value {
    // WhatsApp needs no session, so the stored answer's session_status cannot move on.
    json!({"doctor_id": doctor, "scheduled_at": tomorrow_at(hour, 0), "consult_mode": "whatsapp",
        "reason": "persistent cough", "allergies": "penicillin"})
}

async fn active(app: &TestApp, doctor: i64) -> Vec<consult_scheduler::engine::Consultation> {
    app.engine
        .store()
        .active_consultations(Some(doctor))
        .await
        .expect("active consultations")
}

#[tokio::test]
async fn the_same_idempotency_key_twice_answers_the_same_consultation_and_stores_one_row() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let body = booking(doctor, 9);
    let first = send(&app, 7, BOOK, "order-1", &body).await;
    assert_eq!(first.0, StatusCode::CREATED, "{}", first.1);
    let again = send(&app, 7, BOOK, "order-1", &body).await;
    assert_eq!(again, first);
    let stored = active(&app, doctor).await;
    assert_eq!(stored.len(), 1);
    let id = first.1["consultation"]["id"].as_i64().expect("id");
    assert_eq!(stored[0].id, id);
    let key = app
        .engine
        .store()
        .find_idempotency(7, "order-1")
        .await
        .expect("find")
        .expect("the key is stored with its booking");
    assert_eq!(key.consultation_id, id);
    assert!(
        !key.fingerprint.contains("cough"),
        "the fingerprint is a hash"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_with_a_different_body_answers_422_idempotency_key_reused() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let body = booking(doctor, 9);
    assert_eq!(
        send(&app, 7, BOOK, "order-1", &body).await.0,
        StatusCode::CREATED
    );
    let reused = json!({
        "success": false,
        "message": "This Idempotency-Key was already used for a different request",
        "error": "idempotency_key_reused"
    });
    // Another start, and the same start with other medical text: both another request.
    let mut later = body.clone();
    later["scheduled_at"] = json!(tomorrow_at(10, 0));
    let mut other_reason = body.clone();
    other_reason["reason"] = json!("fever");
    for other in [later, other_reason] {
        let (status, answer) = send(&app, 7, BOOK, "order-1", &other).await;
        assert_eq!(
            (status, answer),
            (StatusCode::UNPROCESSABLE_ENTITY, reused.clone())
        );
    }
    // The same instant written in another offset is the same request.
    let mut offset = body.clone();
    offset["scheduled_at"] = json!(tomorrow_at(9, 0)
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339());
    assert_eq!(
        send(&app, 7, BOOK, "order-1", &offset).await.0,
        StatusCode::CREATED
    );
    assert_eq!(active(&app, doctor).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_from_another_patient_books_separately() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let (status, first) = send(&app, 7, BOOK, "order-1", &booking(doctor, 9)).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, second) = send(&app, 8, BOOK, "order-1", &booking(doctor, 10)).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_ne!(first["consultation"]["id"], second["consultation"]["id"]);
    assert_eq!(second["consultation"]["patient_id"], 8);
    assert_eq!(active(&app, doctor).await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_over_255_bytes_or_with_invisible_characters_answers_400() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    for key in ["k".repeat(256), "two words".to_owned()] {
        let (status, answer) = send(&app, 7, BOOK, &key, &booking(doctor, 9)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"], "validation_failed");
        assert!(answer["errors"]["Idempotency-Key"].is_array(), "{answer}");
    }
    assert!(active(&app, doctor).await.is_empty(), "nothing was booked");
    let longest = "k".repeat(255);
    assert_eq!(
        send(&app, 7, BOOK, &longest, &booking(doctor, 9)).await.0,
        StatusCode::CREATED
    );
    app.stop().await;
}

/// Books under a key, restarts the app on the same database (with or without snapshots),
/// and repeats: the first 201, no second booking; another body is 422.
async fn a_repeat_after_a_restart_answers_the_first_201(app: TestApp, delete_snapshots: bool) {
    let doctor = app.doctor().await;
    let body = booking(doctor, 9);
    let first = send(&app, 7, BOOK, "order-1", &body).await;
    assert_eq!(first.0, StatusCode::CREATED, "{}", first.1);
    let app = app.restart(delete_snapshots).await;
    assert_eq!(send(&app, 7, BOOK, "order-1", &body).await, first);
    let stored = active(&app, doctor).await;
    assert_eq!(stored.len(), 1, "no second booking");
    assert_eq!(json!(stored[0].id), first.1["consultation"]["id"]);
    let mut other = body.clone();
    other["scheduled_at"] = json!(tomorrow_at(11, 0));
    assert_eq!(
        send(&app, 7, BOOK, "order-1", &other).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(active(&app, doctor).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_repeated_idempotency_key_after_a_restart_answers_the_first_201_without_booking_again() {
    a_repeat_after_a_restart_answers_the_first_201(TestApp::spawn().await, false).await;
    a_repeat_after_a_restart_answers_the_first_201(TestApp::spawn().await, true).await;
    if let Some(app) = TestApp::spawn_postgres().await {
        a_repeat_after_a_restart_answers_the_first_201(app, true).await;
    }
}

#[tokio::test]
async fn a_repeated_reschedule_with_its_idempotency_key_answers_the_first_200_also_after_a_restart()
{
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let (status, booked) = app
        .post(BOOK, &app.token(Patient, 7), booking(doctor, 9))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{booked}");
    let id = booked["consultation"]["id"].as_i64().expect("id");
    let path = format!("/patient/consultations/{id}/reschedule");
    let to = json!({"scheduled_at": tomorrow_at(12, 0)});
    let first = send(&app, 7, &path, "move-1", &to).await;
    assert_eq!(first.0, StatusCode::OK, "{}", first.1);
    assert_eq!(send(&app, 7, &path, "move-1", &to).await, first);
    // Without the key the same move is refused (it is already there): the key made it 200.
    assert_eq!(
        app.post(&path, &app.token(Patient, 7), to.clone()).await.0,
        StatusCode::BAD_REQUEST
    );
    let app = app.restart(true).await;
    assert_eq!(send(&app, 7, &path, "move-1", &to).await, first);
    let elsewhere = json!({"scheduled_at": tomorrow_at(13, 0)});
    assert_eq!(
        send(&app, 7, &path, "move-1", &elsewhere).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // A booking key is not a reschedule key.
    assert_eq!(
        send(&app, 7, BOOK, "move-1", &booking(doctor, 14)).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let stored = active(&app, doctor).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].scheduled_at, tomorrow_at(12, 0));
    app.stop().await;
}

#[tokio::test]
async fn a_key_stored_meanwhile_refuses_the_second_booking_with_a_retryable_503_never_a_double_booking(
) {
    use consult_scheduler::engine::{BookingRequest, ConsultMode, EngineError, MedicalInfo};
    use consult_scheduler::http::error::ApiError;
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let request = |hour| BookingRequest {
        doctor_id: doctor,
        patient_id: 7,
        scheduled_at: tomorrow_at(hour, 0),
        mode: ConsultMode::Whatsapp,
        medical: MedicalInfo::default(),
    };
    // Bypassing the HTTP layer's look-up, as a second process or a race would.
    let claim = app.engine.idempotency_claim(7, "race", "fp".to_owned());
    app.engine
        .book_with(request(9), Some(claim.clone()))
        .await
        .expect("the first booking");
    let second = app.engine.book_with(request(10), Some(claim)).await;
    let Err(e @ EngineError::Storage(_)) = second else {
        panic!("the unique index must refuse the second booking: {second:?}");
    };
    assert_eq!(ApiError::from(e).status(), StatusCode::SERVICE_UNAVAILABLE);
    let stored = active(&app, doctor).await;
    assert_eq!(stored.len(), 1, "never a double booking");
    assert_eq!(stored[0].scheduled_at, tomorrow_at(9, 0));
    // The doctor's actor recovers from the refused batch: the slot it tried is free.
    assert_eq!(
        app.book(8, doctor, tomorrow_at(10, 0)).await.0,
        StatusCode::CREATED
    );
    app.stop().await;
}
