//! The patient's happy paths, end to end over HTTP.

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn patients_see_only_approved_available_doctors_with_the_seed_fields() {
    let app = TestApp::spawn().await;
    let listed = app.doctor().await;
    let admin = app.token(Admin, 1);
    let (_, unapproved) = app
        .post(
            "/admin/doctors",
            &admin,
            json!({"name": "Dr. New", "specialty": "ENT", "timezone": "Europe/Berlin"}),
        )
        .await;
    let switched_off = app.doctor().await;
    let (status, _) = app
        .call(
            reqwest::Method::PATCH,
            "/doctor/status",
            Some(&app.token(Doctor, switched_off)),
            Some(json!({"is_available": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = app.get("/patient/doctors", &app.token(Patient, 67)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["success"], true);
    let doctors = body["doctors"].as_array().unwrap();
    let ids: Vec<i64> = doctors.iter().map(|d| d["id"].as_i64().unwrap()).collect();
    assert_eq!(
        ids,
        vec![listed],
        "unapproved {unapproved} and switched-off doctors are hidden"
    );
    for field in [
        "id",
        "name",
        "specialty",
        "timezone",
        "is_available",
        "is_approved",
        "slot_minutes",
    ] {
        assert!(
            doctors[0].get(field).is_some(),
            "missing {field}: {}",
            doctors[0]
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn availability_lists_local_days_and_slot_statuses() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let booked = tomorrow_at(9, 0);
    assert_eq!(app.book(1, doctor, booked).await.0, StatusCode::CREATED);
    let held = tomorrow_at(10, 0);
    let (status, _) = app
        .post(
            "/patient/doctors/check-slot",
            &app.token(Patient, 2),
            json!({"doctor_id": doctor, "scheduled_at": held, "hold": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let tomorrow = booked.date_naive();
    let path = format!("/patient/doctors/{doctor}/availability?from={tomorrow}&days=2");
    let (status, body) = app.get(&path, &app.token(Patient, 3)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["doctor_id"], doctor);
    assert_eq!(body["timezone"], "UTC");
    assert_eq!(body["slot_minutes"], 30);
    assert_eq!(body["availability_schedule"], every_day("08:00", "18:00"));
    assert_eq!(body["booked_slots"], json!([booked]));
    let days = body["days"].as_array().unwrap();
    assert_eq!(days.len(), 2);
    assert_eq!(days[0]["date"], tomorrow.to_string());
    let slots = days[0]["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 20, "08:00 to 18:00 in 30-minute slots");
    let status_at = |at: DateTime<Utc>| {
        slots
            .iter()
            .find(|s| s["start"] == json!(at))
            .map(|s| s["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(status_at(booked).as_deref(), Some("booked"));
    assert_eq!(status_at(held).as_deref(), Some("held"));
    assert_eq!(status_at(tomorrow_at(11, 0)).as_deref(), Some("available"));
    assert_eq!(slots[0]["local_time"], "08:00");

    // Defaults: today in the doctor's timezone, 7 days.
    let (status, body) = app
        .get(
            &format!("/patient/doctors/{doctor}/availability"),
            &app.token(Patient, 3),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["days"].as_array().unwrap().len(), 7);
    assert_eq!(body["days"][0]["date"], Utc::now().date_naive().to_string());
    app.stop().await;
}

#[tokio::test]
async fn a_hold_reserves_the_slot_for_its_patient_until_they_book_it() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let at = tomorrow_at(14, 30);
    let check = |patient: i64, hold: bool| {
        let token = app.token(Patient, patient);
        let app = &app;
        async move {
            app.post(
                "/patient/doctors/check-slot",
                &token,
                json!({"doctor_id": doctor, "scheduled_at": at, "hold": hold}),
            )
            .await
        }
    };
    let (status, body) = check(1, false).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"success": true, "available": true}))
    );

    let (status, body) = check(1, true).await;
    assert_eq!(status, StatusCode::OK);
    let held_until: DateTime<Utc> = serde_json::from_value(body["held_until"].clone()).unwrap();
    assert!(
        held_until > Utc::now() + Duration::minutes(4),
        "held for the configured 5 minutes"
    );

    let (status, body) = check(2, false).await;
    assert_eq!(
        (status, seed_fields(&body)),
        (StatusCode::CONFLICT, conflict_body())
    );
    let (status, body) = app.book(2, doctor, at).await;
    assert_eq!(
        (status, seed_fields(&body)),
        (StatusCode::CONFLICT, conflict_body())
    );
    let (status, booked) = app.book(1, doctor, at).await;
    assert_eq!(status, StatusCode::CREATED, "{booked}");
    app.stop().await;
}

#[tokio::test]
async fn booking_answers_201_with_the_seed_consultation_and_then_409_for_the_same_slot() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let at = tomorrow_at(9, 30);
    // Any offset is accepted; answers are UTC.
    let in_kolkata = at.with_timezone(&chrono_tz::Asia::Kolkata).to_rfc3339();
    let (status, body) = app
        .post(
            "/patient/doctors/book",
            &app.token(Patient, 67),
            json!({"doctor_id": doctor, "scheduled_at": in_kolkata, "consult_mode": "whatsapp",
                "reason": "follow-up", "allergies": "penicillin"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["success"], true);
    let c = &body["consultation"];
    assert_eq!(c["doctor_id"], doctor);
    assert_eq!(c["patient_id"], 67);
    assert_eq!(c["scheduled_at"], json!(at));
    assert!(c["scheduled_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(c["duration_minutes"], 30);
    assert_eq!(c["status"], "scheduled");
    assert_eq!(c["consultation_mode"], "whatsapp");
    assert_eq!(c["consult_mode"], "whatsapp");
    assert_eq!(c["session_status"], "not_required");
    let reference = c["reference"].as_str().unwrap();
    assert!(
        reference.len() == 11
            && reference.starts_with("CONS-")
            && reference[5..]
                .chars()
                .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit()),
        "{reference}"
    );

    let (status, again) = app.book(68, doctor, at).await;
    assert_eq!(
        (status, seed_fields(&again)),
        (StatusCode::CONFLICT, conflict_body())
    );
    // The seed's 29-minute window: a start 15 minutes later would also conflict, but it is
    // off the grid; the next slot is free.
    assert_eq!(
        app.book(68, doctor, at + Duration::minutes(30)).await.0,
        StatusCode::CREATED
    );

    let (_, video) = app.book(69, doctor, tomorrow_at(12, 0)).await;
    assert_eq!(video["consultation"]["session_status"], "pending");
    app.stop().await;
}

#[tokio::test]
async fn patients_list_read_and_cancel_their_own_consultations() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let me = app.token(Patient, 67);
    let (_, first) = app.book(67, doctor, tomorrow_at(9, 0)).await;
    let (_, second) = app.book(67, doctor, tomorrow_at(10, 0)).await;
    app.book(99, doctor, tomorrow_at(11, 0)).await;
    let id = first["consultation"]["id"].as_i64().unwrap();

    let (status, list) = app.get("/patient/consultations", &me).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<i64> = list["consultations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![second["consultation"]["id"].as_i64().unwrap(), id],
        "own, newest first"
    );

    let (status, one) = app.get(&format!("/patient/consultations/{id}"), &me).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        one["consultation"]["reference"],
        first["consultation"]["reference"]
    );

    let (status, cancelled) = app
        .post(
            &format!("/patient/consultations/{id}/cancel"),
            &me,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["consultation"]["status"], "cancelled");
    assert!(cancelled["consultation"]["cancelled_at"].is_string());
    let (_, read_back) = app.get(&format!("/patient/consultations/{id}"), &me).await;
    assert_eq!(read_back["consultation"]["status"], "cancelled");

    let (status, body) = app
        .post(
            &format!("/patient/consultations/{id}/cancel"),
            &me,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "not_cancellable");
    // The slot is free again.
    assert_eq!(
        app.book(5, doctor, tomorrow_at(9, 0)).await.0,
        StatusCode::CREATED
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repeated_idempotency_key_answers_the_first_answer_even_when_racing() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let doctor = app.doctor().await;
    let at = tomorrow_at(10, 30);
    let body = json!({"doctor_id": doctor, "scheduled_at": at, "consult_mode": "chat"});
    let send = |patient: i64, key: &'static str, body: serde_json::Value| {
        let app = std::sync::Arc::clone(&app);
        async move {
            let resp = app
                .client
                .post(app.url("/patient/doctors/book"))
                .bearer_auth(app.token(Patient, patient))
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                resp.status(),
                resp.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let racing: Vec<_> = (0..20)
        .map(|_| tokio::spawn(send(7, "order-1", body.clone())))
        .collect();
    let mut answers = Vec::new();
    for r in racing {
        let (status, answer) = r.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        answers.push(answer);
    }
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "every repeat got the first answer, byte for byte"
    );
    let id = answers[0]["consultation"]["id"].as_i64().unwrap();
    let active = app
        .engine
        .store()
        .active_consultations(Some(doctor))
        .await
        .unwrap();
    assert_eq!(active.len(), 1);

    // The same key for a different request is refused; another patient's key is theirs.
    let other = json!({"doctor_id": doctor, "scheduled_at": at + Duration::hours(1), "consult_mode": "chat"});
    let (status, answer) = send(7, "order-1", other).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"], "idempotency_key_reused");
    let (status, answer) = send(8, "order-1", body.clone()).await;
    assert_eq!(
        (status, seed_fields(&answer)),
        (StatusCode::CONFLICT, conflict_body())
    );
    let first_conflict = answer.clone();
    // A settled 409 is replayed too, even after the slot frees up.
    app.post(
        &format!("/patient/consultations/{id}/cancel"),
        &app.token(Patient, 7),
        json!({}),
    )
    .await;
    assert_eq!(
        send(8, "order-1", body).await,
        (StatusCode::CONFLICT, first_conflict),
        "the first 409 is replayed as it was, next_available included"
    );
    std::sync::Arc::into_inner(app).unwrap().stop().await;
}
