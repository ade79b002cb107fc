//! Schedule exceptions and the per-doctor policy through the HTTP API: breaks, date
//! overrides and policy on `PUT`/`GET /doctor/availability`, the new 400s, their bounds,
//! and the `outside_schedule` flag on the doctor's consultation list.

use chrono::{DateTime, Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

/// `every_day(start, end)` with `breaks` on every day.
fn every_day_with_breaks(start: &str, end: &str, breaks: Value) -> Value {
    let day = json!({"enabled": true, "start": start, "end": end, "breaks": breaks});
    json!({"monday": day, "tuesday": day, "wednesday": day, "thursday": day,
        "friday": day, "saturday": day, "sunday": day})
}

async fn put(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    app.call(Method::PUT, "/doctor/availability", Some(token), Some(body))
        .await
}

fn local_times(day: &Value) -> Vec<String> {
    day["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["local_time"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_rule_error(status: StatusCode, body: &Value, code: &str, message: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body,
        &json!({"success": false, "message": message, "error": code})
    );
}

#[tokio::test]
async fn a_doctor_puts_breaks_overrides_and_policy_and_both_sides_see_them_applied() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let me = app.token(Doctor, doctor);
    let d1 = tomorrow_at(0, 0).date_naive();
    let d2 = d1 + Duration::days(1);
    let d3 = d1 + Duration::days(2);
    let (status, body) = put(
        &app,
        &me,
        json!({
            "availability_schedule": every_day_with_breaks("08:00", "18:00",
                json!([{"start": "12:00", "end": "13:00"}])),
            "date_overrides": {
                d2.to_string(): {"enabled": false},
                d3.to_string(): {"enabled": true, "start": "10:00", "end": "12:00",
                    "breaks": [{"start": "11:00", "end": "11:30"}]}
            },
            "policy": {"min_notice_minutes": 60, "booking_window_days": 30, "max_per_day": 4}
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let d = &body["doctor"];
    assert_eq!(
        d["availability_schedule"]["monday"],
        json!({"enabled": true, "start": "08:00", "end": "18:00",
            "breaks": [{"start": "12:00", "end": "13:00"}]})
    );
    assert_eq!(
        d["date_overrides"][d2.to_string()],
        json!({"enabled": false, "start": null, "end": null, "breaks": []})
    );
    assert_eq!(d["date_overrides"][d3.to_string()]["start"], "10:00");
    assert_eq!(
        d["policy"],
        json!({"min_notice_minutes": 60, "booking_window_days": 30, "max_per_day": 4})
    );

    for (path, token) in [
        (format!("/doctor/availability?from={d1}&days=3"), me.clone()),
        (
            format!("/patient/doctors/{doctor}/availability?from={d1}&days=3"),
            app.token(Patient, 5),
        ),
    ] {
        let (status, a) = app.get(&path, &token).await;
        assert_eq!(status, StatusCode::OK, "{a}");
        assert_eq!(a["policy"]["max_per_day"], 4);
        assert_eq!(a["date_overrides"].as_object().unwrap().len(), 2);
        let days = a["days"].as_array().unwrap();
        let first = local_times(&days[0]);
        assert!(!first.contains(&"12:00".to_owned()) && !first.contains(&"12:30".to_owned()));
        assert!(first.contains(&"13:00".to_owned()));
        assert_eq!(
            days[0]["breaks"],
            json!([{"start": "12:00", "end": "13:00"}])
        );
        assert_eq!(days[0]["overridden"], false);
        assert_eq!(days[1]["enabled"], false);
        assert_eq!(days[1]["overridden"], true);
        assert_eq!(days[1]["slots"], json!([]));
        assert_eq!(local_times(&days[2]), vec!["10:00", "10:30", "11:30"]);
        assert_eq!(days[2]["full"], false);
        assert_eq!(days[2]["booked"], 0);
    }

    // The profile keeps them; a PUT without them keeps them too.
    let (status, body) = put(
        &app,
        &me,
        json!({"availability_schedule": every_day("08:00", "18:00")}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["doctor"]["policy"]["max_per_day"], 4);
    assert_eq!(
        body["doctor"]["availability_schedule"]["monday"],
        json!({"enabled": true, "start": "08:00", "end": "18:00"}),
        "a day without breaks keeps the seed's shape"
    );
    let (_, profile) = app.get("/doctor/profile", &me).await;
    assert_eq!(
        profile["doctor"]["date_overrides"]
            .as_object()
            .unwrap()
            .len(),
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn bookings_inside_a_break_or_on_a_closed_date_are_refused_with_the_seed_codes() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let me = app.token(Doctor, doctor);
    let closed = tomorrow_at(0, 0).date_naive() + Duration::days(1);
    let (status, body) = put(
        &app,
        &me,
        json!({
            "availability_schedule": every_day_with_breaks("08:00", "18:00",
                json!([{"start": "12:00", "end": "13:00"}])),
            "date_overrides": {closed.to_string(): {"enabled": false}}
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.book(1, doctor, tomorrow_at(12, 30)).await;
    assert_rule_error(
        status,
        &body,
        "outside_availability",
        "The requested time is outside the doctor's availability",
    );
    let (status, body) = app
        .book(1, doctor, tomorrow_at(10, 0) + Duration::days(1))
        .await;
    assert_rule_error(
        status,
        &body,
        "day_unavailable",
        "Doctor is not available on this day",
    );
    assert_eq!(
        app.book(1, doctor, tomorrow_at(13, 0)).await.0,
        StatusCode::CREATED
    );
    app.stop().await;
}

#[tokio::test]
async fn a_booking_past_the_booking_window_is_refused_as_outside_booking_window() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let me = app.token(Doctor, doctor);
    let (status, body) = put(
        &app,
        &me,
        json!({"availability_schedule": every_day("08:00", "18:00"),
            "policy": {"booking_window_days": 2}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let far = tomorrow_at(10, 0) + Duration::days(3);
    let (status, body) = app.book(1, doctor, far).await;
    assert_rule_error(
        status,
        &body,
        "outside_booking_window",
        "The requested time is beyond the doctor's booking window",
    );
    let patient = app.token(Patient, 1);
    let (status, body) = app
        .post(
            "/patient/doctors/check-slot",
            &patient,
            json!({"doctor_id": doctor, "scheduled_at": far}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "outside_booking_window");
    let (_, a) = app
        .get(
            &format!(
                "/patient/doctors/{doctor}/availability?from={}&days=1",
                far.date_naive()
            ),
            &patient,
        )
        .await;
    assert!(a["days"][0]["slots"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["status"] == "outside_booking_window"));
    assert_eq!(
        app.book(1, doctor, tomorrow_at(10, 0)).await.0,
        StatusCode::CREATED
    );
    app.stop().await;
}

#[tokio::test]
async fn a_day_at_its_cap_refuses_bookings_holds_and_moves_as_day_full() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let me = app.token(Doctor, doctor);
    let (status, body) = put(
        &app,
        &me,
        json!({"availability_schedule": every_day("08:00", "18:00"),
            "policy": {"max_per_day": 2}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        app.book(1, doctor, tomorrow_at(9, 0)).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        app.book(2, doctor, tomorrow_at(10, 0)).await.0,
        StatusCode::CREATED
    );
    let (status, body) = app.book(3, doctor, tomorrow_at(11, 0)).await;
    assert_rule_error(
        status,
        &body,
        "day_full",
        "The doctor is fully booked on this day",
    );
    let patient = app.token(Patient, 3);
    let (status, body) = app
        .post(
            "/patient/doctors/check-slot",
            &patient,
            json!({"doctor_id": doctor, "scheduled_at": tomorrow_at(11, 0), "hold": true}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "day_full");
    // A consultation of another day cannot move into the full one.
    let (status, other) = app
        .book(3, doctor, tomorrow_at(11, 0) + Duration::days(1))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    let id = other["consultation"]["id"].as_i64().unwrap();
    let (status, body) = app
        .post(
            &format!("/patient/consultations/{id}/reschedule"),
            &patient,
            json!({"scheduled_at": tomorrow_at(15, 0)}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "day_full");
    let (_, a) = app
        .get(
            &format!(
                "/patient/doctors/{doctor}/availability?from={}&days=1",
                tomorrow_at(0, 0).date_naive()
            ),
            &patient,
        )
        .await;
    let day = &a["days"][0];
    assert_eq!(day["full"], true);
    assert_eq!(day["booked"], 2);
    assert!(day["slots"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["status"] != "available"));
    app.stop().await;
}

#[tokio::test]
async fn every_out_of_bounds_exception_or_policy_is_a_validation_error_on_its_field() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let me = app.token(Doctor, doctor);
    let today = Utc::now().date_naive();
    let far = today + Duration::days(800);
    let nine: Vec<Value> = (0..9)
        .map(|i| json!({"start": format!("1{i}:00"), "end": format!("1{i}:10")}))
        .collect();
    let many: serde_json::Map<String, Value> = (1..=367)
        .map(|n| {
            (
                (today + Duration::days(n)).to_string(),
                json!({"enabled": false}),
            )
        })
        .collect();
    let week = || every_day("08:00", "18:00");
    let cases: Vec<(Value, String)> = vec![
        (
            json!({"availability_schedule": every_day_with_breaks("08:00", "18:00",
                json!([{"start": "12:00", "end": "13:00"}, {"start": "12:30", "end": "14:00"}]))}),
            "availability_schedule.monday.breaks[1]".into(),
        ),
        (
            json!({"availability_schedule": every_day_with_breaks("08:00", "18:00",
                json!([{"start": "07:00", "end": "09:00"}]))}),
            "availability_schedule.monday.breaks[0]".into(),
        ),
        (
            json!({"availability_schedule": every_day_with_breaks("08:00", "18:00",
                json!([{"start": "13:00", "end": "12:00"}]))}),
            "availability_schedule.monday.breaks[0]".into(),
        ),
        (
            json!({"availability_schedule": every_day_with_breaks("08:00", "20:00", json!(nine))}),
            "availability_schedule.monday.breaks".into(),
        ),
        (
            json!({"availability_schedule": every_day_with_breaks("08:00", "18:00",
                json!([{"start": "noon", "end": "13:00"}]))}),
            "availability_schedule.monday.breaks[0].start".into(),
        ),
        (
            json!({"availability_schedule": week(), "date_overrides": {"2026-13-01": {"enabled": false}}}),
            "date_overrides.2026-13-01".into(),
        ),
        (
            json!({"availability_schedule": week(), "date_overrides": {far.to_string(): {"enabled": false}}}),
            format!("date_overrides.{far}"),
        ),
        (
            json!({"availability_schedule": week(),
                "date_overrides": {(today + Duration::days(3)).to_string(): {"enabled": true}}}),
            format!("date_overrides.{}.start", today + Duration::days(3)),
        ),
        (
            json!({"availability_schedule": week(),
                "date_overrides": {(today + Duration::days(3)).to_string():
                    {"enabled": true, "start": "10:00", "end": "09:00"}}}),
            format!("date_overrides.{}", today + Duration::days(3)),
        ),
        (
            json!({"availability_schedule": week(), "date_overrides": many}),
            "date_overrides".into(),
        ),
        (
            json!({"availability_schedule": week(), "policy": {"min_notice_minutes": 43201}}),
            "policy.min_notice_minutes".into(),
        ),
        (
            json!({"availability_schedule": week(), "policy": {"booking_window_days": 0}}),
            "policy.booking_window_days".into(),
        ),
        (
            json!({"availability_schedule": week(), "policy": {"booking_window_days": 731}}),
            "policy.booking_window_days".into(),
        ),
        (
            json!({"availability_schedule": week(), "policy": {"max_per_day": 0}}),
            "policy.max_per_day".into(),
        ),
        (
            json!({"availability_schedule": week(), "policy": {"max_per_day": 201}}),
            "policy.max_per_day".into(),
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = put(&app, &me, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {answer}");
        assert_eq!(answer["success"], false);
        assert_eq!(answer["error"], "validation_failed", "{field}: {answer}");
        assert!(
            answer["errors"][&field].is_array(),
            "{field} not named in {answer}"
        );
    }
    // Ill-typed policy values are validation errors too.
    for policy in [
        json!({"max_per_day": -1}),
        json!({"min_notice_minutes": "soon"}),
        json!({"extra": 1}),
    ] {
        let (status, answer) = put(
            &app,
            &me,
            json!({"availability_schedule": week(), "policy": policy}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"], "validation_failed");
    }
    // The bounds themselves are accepted.
    let (status, body) = put(
        &app,
        &me,
        json!({"availability_schedule": week(),
            "date_overrides": {(today + Duration::days(731)).to_string(): {"enabled": false}},
            "policy": {"min_notice_minutes": 43200, "booking_window_days": 730, "max_per_day": 200}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_schedule_change_keeps_consultations_and_flags_those_now_outside_it() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let me = app.token(Doctor, doctor);
    let inside: DateTime<Utc> = tomorrow_at(9, 0);
    let lunch = tomorrow_at(12, 0);
    let closed_day = tomorrow_at(10, 0) + Duration::days(1);
    for (patient, at) in [(1, inside), (2, lunch), (3, closed_day)] {
        assert_eq!(app.book(patient, doctor, at).await.0, StatusCode::CREATED);
    }
    let (_, before) = app.get("/doctor/consultations", &me).await;
    assert!(before["consultations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["outside_schedule"] == false));
    let (status, body) = put(
        &app,
        &me,
        json!({
            "availability_schedule": every_day_with_breaks("08:00", "18:00",
                json!([{"start": "12:00", "end": "13:00"}])),
            "date_overrides": {closed_day.date_naive().to_string(): {"enabled": false}}
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, after) = app.get("/doctor/consultations", &me).await;
    let flags: Vec<(Value, Value, Value)> = after["consultations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["scheduled_at"].clone(),
                c["status"].clone(),
                c["outside_schedule"].clone(),
            )
        })
        .collect();
    assert_eq!(
        flags,
        vec![
            (json!(inside), json!("scheduled"), json!(false)),
            (json!(lunch), json!("scheduled"), json!(true)),
            (json!(closed_day), json!("scheduled"), json!(true)),
        ]
    );
    // Patients' own answers do not carry the flag.
    let (_, mine) = app
        .get("/patient/consultations", &app.token(Patient, 2))
        .await;
    assert!(mine["consultations"][0].get("outside_schedule").is_none());
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_breaks_overrides_and_policy() {
    let app = TestApp::spawn().await;
    let (status, doc) = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let schemas = &doc["components"]["schemas"];
    for (schema, field) in [
        ("DayWindowDto", "breaks"),
        ("ScheduleRequest", "date_overrides"),
        ("ScheduleRequest", "policy"),
        ("DoctorDto", "policy"),
        ("AvailabilityAnswer", "date_overrides"),
        ("DayDto", "full"),
        ("PolicyDto", "max_per_day"),
        ("DateOverrideDto", "enabled"),
        ("BreakDto", "start"),
        ("ConsultationDto", "outside_schedule"),
    ] {
        assert!(
            schemas[schema]["properties"][field].is_object(),
            "{schema}.{field} missing"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_conflict_keeps_the_seed_fields_byte_for_byte_and_offers_the_next_three_free_starts() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let me = app.token(Doctor, doctor);
    let (status, body) = put(
        &app,
        &me,
        json!({"availability_schedule": every_day_with_breaks("08:00", "18:00",
            json!([{"start": "10:00", "end": "11:00"}]))}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        app.book(1, doctor, tomorrow_at(9, 0)).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        app.book(3, doctor, tomorrow_at(11, 0)).await.0,
        StatusCode::CREATED
    );
    let expected = json!([tomorrow_at(9, 30), tomorrow_at(11, 30), tomorrow_at(12, 0)]);

    // The raw body: the seed's three fields first, exactly, then next_available.
    let resp = app
        .client
        .post(app.url("/patient/doctors/book"))
        .bearer_auth(app.token(Patient, 2))
        .json(&json!({"doctor_id": doctor, "scheduled_at": tomorrow_at(9, 0), "consult_mode": "video"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let text = resp.text().await.unwrap();
    assert!(
        text.starts_with(r#"{"success":false,"message":"This time slot was just booked by another patient. Please select a different time.","error":"time_slot_conflict","next_available":["#),
        "{text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(seed_fields(&body), conflict_body());
    assert_eq!(
        body["next_available"], expected,
        "after 09:00, skipping the booked 11:00 and the break"
    );

    // The same on check-slot and on a reschedule onto a taken time.
    let patient = app.token(Patient, 2);
    let (status, body) = app
        .post(
            "/patient/doctors/check-slot",
            &patient,
            json!({"doctor_id": doctor, "scheduled_at": tomorrow_at(9, 0), "hold": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["next_available"], expected);
    let (status, mine) = app.book(2, doctor, tomorrow_at(15, 0)).await;
    assert_eq!(status, StatusCode::CREATED, "{mine}");
    let id = mine["consultation"]["id"].as_i64().unwrap();
    let (status, body) = app
        .post(
            &format!("/patient/consultations/{id}/reschedule"),
            &patient,
            json!({"scheduled_at": tomorrow_at(9, 0)}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(seed_fields(&body), conflict_body());
    assert_eq!(body["next_available"], expected);

    // Every offered start is bookable.
    for start in expected.as_array().unwrap() {
        let at: DateTime<Utc> = serde_json::from_value(start.clone()).unwrap();
        let (status, body) = app.book(4, doctor, at).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        app.post(
            &format!(
                "/patient/consultations/{}/cancel",
                body["consultation"]["id"]
            ),
            &app.token(Patient, 4),
            json!({}),
        )
        .await;
    }
    app.stop().await;
}
