//! Every row of API.md's error table, and the error shape on every path: bad input never
//! yields a 500 or a non-JSON body.

use chrono::Duration;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

fn assert_error(status: StatusCode, body: &Value, want_status: StatusCode, code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn malformed_missing_and_ill_typed_input_is_a_400_naming_the_field() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let token = app.token(Patient, 1);
    let at = tomorrow_at(9, 0);
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("{not json", Some("body")),
        ("", Some("body")),
        ("[]", Some("body")),
        (
            r#"{"scheduled_at": "2030-01-01T09:00:00Z", "consult_mode": "video"}"#,
            Some("body"),
        ),
        (
            r#"{"doctor_id": "one", "scheduled_at": "2030-01-01T09:00:00Z", "consult_mode": "video"}"#,
            Some("doctor_id"),
        ),
        (
            r#"{"doctor_id": 1, "scheduled_at": "tomorrow at nine", "consult_mode": "video"}"#,
            Some("scheduled_at"),
        ),
        (
            r#"{"doctor_id": 1, "scheduled_at": "2030-01-01T09:00:00Z", "consult_mode": "fax"}"#,
            Some("consult_mode"),
        ),
        (
            r#"{"doctor_id": 1, "scheduled_at": "2030-01-01T09:00:00Z", "consult_mode": "video", "colour": "red"}"#,
            None,
        ),
    ];
    for (raw, field) in cases {
        let resp = app
            .client
            .post(app.url("/patient/doctors/book"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(raw.to_owned())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.expect("error bodies are JSON");
        assert_error(status, &body, StatusCode::BAD_REQUEST, "validation_failed");
        if let Some(field) = field {
            assert!(body["errors"].get(field).is_some(), "{raw} -> {body}");
        }
    }
    let too_long = "x".repeat(5000);
    let (status, body) = app
        .post(
            "/patient/doctors/book",
            &token,
            json!({"doctor_id": doctor, "scheduled_at": at, "consult_mode": "video", "symptoms": too_long}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "validation_failed");
    assert!(body["errors"].get("symptoms").is_some(), "{body}");

    for query in [
        "days=0",
        "days=63",
        "days=abc",
        "from=2030-13-01",
        "color=red",
    ] {
        let (status, body) = app
            .get(
                &format!("/patient/doctors/{doctor}/availability?{query}"),
                &token,
            )
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "validation_failed");
    }
    let (status, body) = app.get("/patient/consultations/abc", &token).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "validation_failed");
    let (status, body) = app.get("/patient/consultations?limit=100000", &token).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "validation_failed");

    let admin = app.token(Admin, 1);
    for bad in [
        json!({"name": "Dr. X", "specialty": "ENT", "timezone": "Mars/Olympus"}),
        json!({"name": "", "specialty": "ENT", "timezone": "UTC"}),
        json!({"name": "Dr. X", "specialty": "ENT", "timezone": "UTC", "slot_minutes": 3}),
        json!({"name": "Dr. X", "specialty": "ENT", "timezone": "UTC",
            "availability_schedule": every_day("17:00", "09:00")}),
        json!({"name": "Dr. X", "specialty": "ENT", "timezone": "UTC",
            "availability_schedule": every_day("9am", "17:00")}),
    ] {
        let (status, body) = app.post("/admin/doctors", &admin, bad.clone()).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "validation_failed");
        assert!(body["errors"].is_object(), "{bad} -> {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_booking_rules_answer_their_seed_codes_and_messages() {
    let app = TestApp::spawn().await;
    let doctor = app
        .doctor_with(
            json!({"name": "Dr. Weekdays", "specialty": "GP", "timezone": "UTC",
        "availability_schedule": {
            "monday": {"enabled": true, "start": "09:00", "end": "17:00"},
            "tuesday": {"enabled": true, "start": "09:00", "end": "17:00"},
            "wednesday": {"enabled": true, "start": "09:00", "end": "17:00"},
            "thursday": {"enabled": true, "start": "09:00", "end": "17:00"},
            "friday": {"enabled": true, "start": "09:00", "end": "17:00"},
            "saturday": {"enabled": false, "start": "09:00", "end": "17:00"},
            "sunday": {"enabled": false, "start": "09:00", "end": "17:00"}}}),
        )
        .await;
    // The next Tuesday and Sunday, at least a day ahead.
    let mut day = tomorrow_at(0, 0);
    while day.format("%a").to_string() != "Tue" {
        day += Duration::days(1);
    }
    let tuesday = day;
    while day.format("%a").to_string() != "Sun" {
        day += Duration::days(1);
    }
    let sunday = day;
    let cases = [
        (
            sunday + Duration::hours(10),
            "day_unavailable",
            "Doctor is not available on this day",
        ),
        (tuesday + Duration::hours(8), "outside_availability", ""),
        (tuesday + Duration::hours(17), "outside_availability", ""),
        (
            tuesday + Duration::hours(10) + Duration::minutes(10),
            "off_slot_grid",
            "",
        ),
        (
            tuesday - Duration::days(14) + Duration::hours(10),
            "in_past",
            "",
        ),
    ];
    for (at, code, message) in cases {
        let (status, body) = app.book(1, doctor, at).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, code);
        if !message.is_empty() {
            assert_eq!(body["message"], message);
        }
        let (status, body) = app
            .post(
                "/patient/doctors/check-slot",
                &app.token(Patient, 1),
                json!({"doctor_id": doctor, "scheduled_at": at}),
            )
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, code);
    }

    // doctor_unavailable: unapproved, then switched off.
    let (_, created) = app
        .post(
            "/admin/doctors",
            &app.token(Admin, 1),
            json!({"name": "Dr. Pending", "specialty": "GP", "timezone": "UTC",
                "availability_schedule": every_day("08:00", "18:00")}),
        )
        .await;
    let pending = created["doctor"]["id"].as_i64().unwrap();
    for id in [pending, {
        let off = app.doctor().await;
        app.call(
            Method::PATCH,
            "/doctor/status",
            Some(&app.token(Doctor, off)),
            Some(json!({"is_available": false})),
        )
        .await;
        off
    }] {
        let (status, body) = app.book(1, id, tomorrow_at(9, 0)).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "doctor_unavailable");
        assert_eq!(body["message"], "Doctor is not available for booking");
        let (status, body) = app
            .get(
                &format!("/patient/doctors/{id}/availability"),
                &app.token(Patient, 1),
            )
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "doctor_unavailable");
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_things_are_404_wrong_methods_405_and_big_bodies_413_all_in_json() {
    let app = TestApp::spawn().await;
    let patient = app.token(Patient, 1);
    let (status, body) = app.book(1, 424_242, tomorrow_at(9, 0)).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = app
        .get("/patient/doctors/424242/availability", &patient)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = app.get("/patient/consultations/424242", &patient).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = app
        .post("/patient/consultations/424242/cancel", &patient, json!({}))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = app
        .post(
            "/admin/doctors/424242/approve",
            &app.token(Admin, 1),
            json!({}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = app
        .get("/doctor/availability", &app.token(Doctor, 424_242))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = app.call(Method::GET, "/no/such/route", None, None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    let (status, body) = app
        .call(Method::DELETE, "/patient/doctors", Some(&patient), None)
        .await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    let (status, body) = app
        .call(Method::GET, "/patient/doctors/book", Some(&patient), None)
        .await;
    assert!(
        status == StatusCode::METHOD_NOT_ALLOWED || status == StatusCode::BAD_REQUEST,
        "{status} {body}"
    );
    assert_eq!(body["success"], false);

    let big = json!({"doctor_id": 1, "scheduled_at": tomorrow_at(9, 0), "consult_mode": "video",
        "reason": "y".repeat(70 * 1024)});
    let (status, body) = app.post("/patient/doctors/book", &patient, big).await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    app.stop().await;
}

/// 503 with `Retry-After` when storage is down, and then nothing was booked.
#[tokio::test]
async fn storage_down_answers_503_with_retry_after_and_books_nothing() {
    let Some(app) = TestApp::spawn_postgres().await else {
        return;
    };
    let doctor = app.doctor().await;
    let at = tomorrow_at(9, 0);
    assert_eq!(
        app.book(1, doctor, tomorrow_at(8, 0)).await.0,
        StatusCode::CREATED
    );
    let Db::Postgres(name) = &app.db else {
        unreachable!()
    };
    let admin_url = consult_scheduler::persistence::testing::test_pg_url();
    let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
    let cut = |allow: bool| {
        let admin = admin.clone();
        let name = name.clone();
        async move {
            sqlx::query(&format!(
                "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {allow}"
            ))
            .execute(&admin)
            .await
            .unwrap();
            if !allow {
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                )
                .bind(&name)
                .execute(&admin)
                .await
                .unwrap();
            }
        }
    };
    cut(false).await;
    let resp = app
        .client
        .post(app.url("/patient/doctors/book"))
        .bearer_auth(app.token(Patient, 2))
        .json(&json!({"doctor_id": doctor, "scheduled_at": at, "consult_mode": "video"}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let retry_after = resp.headers().get("retry-after").cloned();
    let body: Value = resp.json().await.unwrap();
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    assert!(retry_after.is_some(), "Retry-After is set");
    // A multi-patient booking too: 503 with Retry-After, nothing of it stored.
    let family = json!({"items": [
        {"doctor_id": doctor, "scheduled_at": tomorrow_at(10, 0), "consult_mode": "chat", "patient_name": "Ada"},
        {"doctor_id": doctor, "scheduled_at": tomorrow_at(10, 30), "consult_mode": "chat", "patient_name": "Ben"}
    ]});
    let resp = app
        .client
        .post(app.url("/patient/bookings"))
        .bearer_auth(app.token(Patient, 2))
        .json(&family)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let retry_after = resp.headers().get("retry-after").cloned();
    let body: Value = resp.json().await.unwrap();
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    assert!(
        retry_after.is_some(),
        "Retry-After is set on the multi-patient booking"
    );
    let (status, body) = app.call(Method::GET, "/readyz", None, None).await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );

    cut(true).await;
    // Nothing was booked: the same slot books now (after the store is back).
    let booked = crate::eventually(|| async {
        let (status, body) = app.book(3, doctor, at).await;
        (status == StatusCode::CREATED).then_some(body)
    })
    .await;
    assert_eq!(booked["consultation"]["patient_id"], 3);
    let pool = sqlx::PgPool::connect(&consult_scheduler::persistence::testing::pg_url_for(name))
        .await
        .unwrap();
    let patients: Vec<i64> = sqlx::query_scalar(
        "SELECT patient_id FROM consultations WHERE doctor_id = $1 AND scheduled_at = $2",
    )
    .bind(doctor)
    .bind(at)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(patients, vec![3], "patient 2's refused booking left no row");
    let family_rows: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM consultations WHERE doctor_id = $1 AND scheduled_at >= $2",
    )
    .bind(doctor)
    .bind(tomorrow_at(10, 0))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        family_rows, 0,
        "the refused multi-patient booking left no row"
    );
    pool.close().await;
    admin.close().await;
    app.stop().await;
}

#[tokio::test]
async fn a_user_over_the_rate_limit_gets_429_with_retry_after_and_others_do_not() {
    let app = TestApp::spawn_sqlite_with(&[
        ("CONSULT__SERVER__RATE_LIMIT_PER_S", "1"),
        ("CONSULT__SERVER__RATE_LIMIT_BURST", "3"),
    ])
    .await;
    let greedy = app.token(Patient, 1);
    // A burst of 3, then 1 per second: of 10 quick requests the first 3 pass and, unless
    // the machine stalls for seconds between them, most of the rest are refused.
    let mut answers = Vec::new();
    for _ in 0..10 {
        let resp = app
            .client
            .get(app.url("/patient/doctors"))
            .bearer_auth(&greedy)
            .send()
            .await
            .unwrap();
        let retry_after = resp.headers().get("retry-after").is_some();
        let status = resp.status();
        answers.push((status, retry_after, resp.json::<Value>().await.unwrap()));
    }
    assert!(answers[..3].iter().all(|(s, _, _)| *s == StatusCode::OK));
    let (status, retry_after, body) = answers
        .iter()
        .find(|(s, _, _)| *s != StatusCode::OK)
        .expect("some request over the limit was refused");
    assert!(retry_after);
    assert_error(*status, body, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let (status, _) = app.get("/patient/doctors", &app.token(Patient, 2)).await;
    assert_eq!(status, StatusCode::OK, "another user is not limited");
    app.stop().await;
}
