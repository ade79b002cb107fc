//! A slot's history (`GET /doctor/slots/{start}/history`, `GET /admin/doctors/{id}/slots/
//! {start}/history`): the journal events that touched a slot with who decided them, what
//! the slot is now and the rule that refuses it, and what each view may show.

use chrono::{DateTime, Datelike, Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

fn doctor_path(at: DateTime<Utc>) -> String {
    format!("/doctor/slots/{}/history", at.to_rfc3339())
}

fn admin_path(doctor: i64, at: DateTime<Utc>) -> String {
    format!("/admin/doctors/{doctor}/slots/{}/history", at.to_rfc3339())
}

/// `(kind, by, consultation_id)` of each event, oldest first.
fn events(history: &Value) -> Vec<(String, Value, Value)> {
    history["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().expect("kind").to_owned(),
                e["by"].clone(),
                e["consultation_id"].clone(),
            )
        })
        .collect()
}

fn kinds(history: &Value) -> Vec<String> {
    events(history).into_iter().map(|(k, _, _)| k).collect()
}

async fn cancel(app: &TestApp, patient: i64, id: &Value) {
    let (status, body) = app
        .post(
            &format!("/patient/consultations/{id}/cancel"),
            &app.token(Patient, patient),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn reschedule(app: &TestApp, patient: i64, id: &Value, to: DateTime<Utc>) {
    let (status, body) = app
        .post(
            &format!("/patient/consultations/{id}/reschedule"),
            &app.token(Patient, patient),
            json!({ "scheduled_at": to }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_slot_booked_cancelled_rebooked_and_rescheduled_away_shows_those_events_in_order_with_who(
) {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let at = tomorrow_at(9, 0);
    let (_, first) = app.book(1, doctor, at).await;
    let first = first["consultation"]["id"].clone();
    app.book(3, doctor, tomorrow_at(11, 0)).await;
    cancel(&app, 1, &first).await;
    let (status, second) = app.book(2, doctor, at).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    let second = second["consultation"]["id"].clone();
    reschedule(&app, 2, &second, tomorrow_at(10, 0)).await;

    let (status, history) = app.get(&doctor_path(at), &app.token(Doctor, doctor)).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(history["success"], true);
    assert_eq!(history["doctor_id"], doctor);
    assert_eq!(history["start"], json!(at));
    assert_eq!(history["slot_minutes"], 30);
    assert_eq!(history["truncated"], false);
    let (patient, admin, null) = (json!("patient"), json!("admin"), Value::Null);
    assert_eq!(
        events(&history),
        vec![
            ("registered".to_owned(), admin.clone(), null.clone()),
            ("status_changed".to_owned(), admin.clone(), null.clone()),
            ("booked".to_owned(), patient.clone(), first.clone()),
            ("cancelled".to_owned(), patient.clone(), first.clone()),
            ("booked".to_owned(), patient.clone(), second.clone()),
            (
                "rescheduled_out".to_owned(),
                patient.clone(),
                second.clone()
            ),
        ],
        "{history}"
    );
    let list = history["events"].as_array().unwrap();
    let seqs: Vec<i64> = list.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {seqs:?}"
    );
    let times: Vec<DateTime<Utc>> = list
        .iter()
        .map(|e| serde_json::from_value(e["at"].clone()).unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert_eq!(list[5]["from"], json!(at));
    assert_eq!(list[5]["to"], json!(tomorrow_at(10, 0)));
    assert_eq!(
        history["now"],
        json!({"status": "available", "rule": null}),
        "free again after the move"
    );

    // The slot it moved to shows the move in, and is booked now.
    let (_, target) = app
        .get(&doctor_path(tomorrow_at(10, 0)), &app.token(Doctor, doctor))
        .await;
    assert_eq!(
        kinds(&target),
        ["registered", "status_changed", "rescheduled_in"]
    );
    assert_eq!(target["now"]["status"], "booked");
    assert_eq!(target["now"]["rule"], "time_slot_conflict");
    assert_eq!(target["now"]["consultation_id"], second);

    // The admin's view adds the patient of each consultation event.
    let (status, by_admin) = app.get(&admin_path(doctor, at), &app.token(Admin, 1)).await;
    assert_eq!(status, StatusCode::OK, "{by_admin}");
    let patients: Vec<Value> = by_admin["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["patient_id"].clone())
        .collect();
    assert_eq!(
        patients,
        [
            Value::Null,
            Value::Null,
            json!(1),
            json!(1),
            json!(2),
            json!(2)
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn schedule_and_status_changes_show_as_the_doctors_and_the_rule_follows_them() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let token = app.token(Doctor, doctor);
    let at = tomorrow_at(9, 0);
    let (status, body) = app
        .call(
            Method::PUT,
            "/doctor/availability",
            Some(&token),
            Some(json!({"availability_schedule": every_day("12:00", "18:00")})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, history) = app.get(&doctor_path(at), &token).await;
    assert_eq!(
        events(&history).last().unwrap(),
        &("schedule_updated".to_owned(), json!("doctor"), Value::Null)
    );
    assert_eq!(
        history["now"],
        json!({"status": "unavailable", "rule": "outside_availability"})
    );

    let (status, body) = app
        .call(
            Method::PATCH,
            "/doctor/status",
            Some(&token),
            Some(json!({"is_available": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, history) = app.get(&doctor_path(tomorrow_at(13, 0)), &token).await;
    assert_eq!(
        kinds(&history),
        [
            "registered",
            "status_changed",
            "schedule_updated",
            "status_changed"
        ]
    );
    assert_eq!(
        events(&history).last().unwrap().1,
        json!("doctor"),
        "the doctor switched bookings off"
    );
    assert_eq!(history["now"]["rule"], "doctor_unavailable");
    app.stop().await;
}

#[tokio::test]
async fn the_doctors_view_carries_no_patient_id_or_medical_text() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let at = tomorrow_at(9, 0);
    let (status, booked) = app
        .post(
            "/patient/doctors/book",
            &app.token(Patient, 4242),
            json!({"doctor_id": doctor, "scheduled_at": at, "consult_mode": "video",
                "reason": "Recurring migraine", "symptoms": "Blurred vision",
                "allergies": "Penicillin"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{booked}");
    let id = booked["consultation"]["id"].clone();
    cancel(&app, 4242, &id).await;
    app.book(4242, doctor, at).await;

    let raw = |path: String, token: String| {
        let request = app.client.get(app.url(&path)).bearer_auth(token);
        async move {
            let resp = request.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            resp.text().await.unwrap()
        }
    };
    let doctors = raw(doctor_path(at), app.token(Doctor, doctor)).await;
    for secret in [
        "patient_id",
        "4242",
        "Recurring migraine",
        "Blurred vision",
        "Penicillin",
        "reason",
        "symptoms",
    ] {
        assert!(!doctors.contains(secret), "`{secret}` in {doctors}");
    }
    assert!(doctors.contains(&format!("\"consultation_id\":{id}")));
    let admins = raw(admin_path(doctor, at), app.token(Admin, 1)).await;
    assert!(admins.contains("\"patient_id\":4242"), "{admins}");
    for secret in ["Recurring migraine", "Blurred vision", "Penicillin"] {
        assert!(!admins.contains(secret), "`{secret}` in {admins}");
    }
    app.stop().await;
}

#[tokio::test]
async fn now_names_the_rule_for_a_past_slot_a_disabled_day_an_off_grid_time_a_booked_and_a_held_slot(
) {
    let app = TestApp::spawn().await;
    // Every day 08:00-18:00 except the weekday of the day after tomorrow.
    let closed = tomorrow_at(9, 0) + Duration::days(1);
    let mut schedule = every_day("08:00", "18:00");
    let name = closed.weekday().to_string().to_lowercase();
    let full = match name.as_str() {
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        "sat" => "saturday",
        _ => "sunday",
    };
    schedule[full] = json!({"enabled": false, "start": "08:00", "end": "18:00"});
    let doctor = app
        .doctor_with(json!({"name": "Dr. Rules", "specialty": "General Practice",
            "timezone": "UTC", "availability_schedule": schedule}))
        .await;
    let token = app.token(Doctor, doctor);
    let now_of = |at: DateTime<Utc>| {
        let token = token.clone();
        let app = &app;
        async move {
            let (status, history) = app.get(&doctor_path(at), &token).await;
            assert_eq!(status, StatusCode::OK, "{history}");
            history["now"].clone()
        }
    };

    assert_eq!(
        now_of(tomorrow_at(9, 0) - Duration::days(2)).await,
        json!({"status": "past", "rule": "in_past"})
    );
    assert_eq!(
        now_of(closed).await,
        json!({"status": "unavailable", "rule": "day_unavailable"})
    );
    assert_eq!(
        now_of(tomorrow_at(9, 10)).await,
        json!({"status": "unavailable", "rule": "off_slot_grid"})
    );
    let (_, booked) = app.book(1, doctor, tomorrow_at(9, 0)).await;
    assert_eq!(
        now_of(tomorrow_at(9, 0)).await,
        json!({"status": "booked", "rule": "time_slot_conflict",
            "consultation_id": booked["consultation"]["id"]})
    );
    let (status, hold) = app
        .post(
            "/patient/doctors/check-slot",
            &app.token(Patient, 77),
            json!({"doctor_id": doctor, "scheduled_at": tomorrow_at(10, 0), "hold": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{hold}");
    let held = now_of(tomorrow_at(10, 0)).await;
    assert_eq!(
        held,
        json!({"status": "held", "rule": "time_slot_conflict", "held_until": hold["held_until"]})
    );
    assert_eq!(
        now_of(tomorrow_at(11, 0)).await,
        json!({"status": "available", "rule": null})
    );
    app.stop().await;
}

#[tokio::test]
async fn the_start_may_have_any_offset_with_an_encoded_plus_and_is_answered_in_utc() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let at = tomorrow_at(9, 0);
    let local = at.with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap());
    let encoded = local.to_rfc3339().replace('+', "%2B");
    assert!(encoded.contains("%2B02:00"), "{encoded}");
    let (status, history) = app
        .get(
            &format!("/doctor/slots/{encoded}/history"),
            &app.token(Doctor, doctor),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(history["start"], json!(at));
    assert!(history["start"].as_str().unwrap().ends_with('Z'));
    let negative = at
        .with_timezone(&chrono::FixedOffset::west_opt(5 * 3600).unwrap())
        .to_rfc3339();
    let (status, history) = app
        .get(
            &format!("/admin/doctors/{doctor}/slots/{negative}/history"),
            &app.token(Admin, 1),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(history["start"], json!(at));
    app.stop().await;
}

#[tokio::test]
async fn an_admin_reads_any_doctors_slots_an_unknown_doctor_is_404_and_a_bad_instant_400() {
    let app = TestApp::spawn().await;
    let doctor_a = app.doctor().await;
    let doctor_b = app.doctor().await;
    let at = tomorrow_at(9, 0);
    app.book(1, doctor_b, at).await;
    let admin = app.token(Admin, 1);

    let (status, history) = app.get(&admin_path(doctor_b, at), &admin).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(history["doctor_id"], doctor_b);
    assert_eq!(history["now"]["status"], "booked");
    // Doctor A's own view of the same time is A's slot, untouched by B's booking.
    let (_, own) = app
        .get(&doctor_path(at), &app.token(Doctor, doctor_a))
        .await;
    assert_eq!(own["doctor_id"], doctor_a);
    assert_eq!(own["now"]["status"], "available");
    assert!(!kinds(&own).contains(&"booked".to_owned()));

    let (status, body) = app.get(&admin_path(424_242, at), &admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "not_found");
    assert_eq!(body["success"], false);
    // A doctor token whose sub is no doctor.
    let (status, body) = app.get(&doctor_path(at), &app.token(Doctor, 424_242)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    for bad in [
        "tomorrow",
        "2030-01-07",
        "2030-01-07T09:00:00",
        "2030-13-07T09:00:00Z",
    ] {
        for (path, token) in [
            (
                format!("/doctor/slots/{bad}/history"),
                app.token(Doctor, doctor_a),
            ),
            (
                format!("/admin/doctors/{doctor_a}/slots/{bad}/history"),
                admin.clone(),
            ),
        ] {
            let (status, body) = app.get(&path, &token).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
            assert_eq!(body["error"], "validation_failed", "{body}");
            assert!(body["errors"]["start"].is_array(), "{body}");
        }
    }
    app.stop().await;
}

/// 503 with `Retry-After` when storage is down (Postgres, cut off mid-run).
#[tokio::test]
async fn storage_down_answers_the_slot_history_503_with_retry_after() {
    let Some(app) = TestApp::spawn_postgres().await else {
        return;
    };
    let doctor = app.doctor().await;
    let token = app.token(Doctor, doctor);
    let at = tomorrow_at(9, 0);
    let (status, _) = app.get(&doctor_path(at), &token).await;
    assert_eq!(status, StatusCode::OK);
    let Db::Postgres(name) = &app.db else {
        unreachable!()
    };
    let admin_url = consult_scheduler::persistence::testing::test_pg_url();
    let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
    let allow = |allow: bool| format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {allow}");
    sqlx::query(&allow(false)).execute(&admin).await.unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(name)
        .execute(&admin)
        .await
        .unwrap();

    let resp = app
        .client
        .get(app.url(&doctor_path(at)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let retry_after = resp.headers().get("retry-after").cloned();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "unavailable");
    assert_eq!(body["success"], false);
    assert!(retry_after.is_some(), "Retry-After is set");

    sqlx::query(&allow(true)).execute(&admin).await.unwrap();
    let back = crate::eventually(|| async {
        let (status, _) = app.get(&doctor_path(at), &token).await;
        (status == StatusCode::OK).then_some(())
    })
    .await;
    let () = back;
    app.stop().await;
}

#[tokio::test]
async fn a_slots_history_is_the_same_after_a_restart_with_and_without_snapshots() {
    let mut app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let at = tomorrow_at(9, 0);
    let (_, first) = app.book(1, doctor, at).await;
    cancel(&app, 1, &first["consultation"]["id"]).await;
    app.book(2, doctor, at).await;
    let (_, before) = app.get(&admin_path(doctor, at), &app.token(Admin, 1)).await;
    assert_eq!(
        kinds(&before),
        [
            "registered",
            "status_changed",
            "booked",
            "cancelled",
            "booked"
        ]
    );
    for delete_snapshots in [false, true] {
        app = app.restart(delete_snapshots).await;
        let (status, after) = app.get(&admin_path(doctor, at), &app.token(Admin, 1)).await;
        assert_eq!(status, StatusCode::OK, "{after}");
        assert_eq!(after, before, "delete_snapshots: {delete_snapshots}");
    }
    app.stop().await;
}
