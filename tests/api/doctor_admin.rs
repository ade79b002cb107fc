//! Doctors managing their own schedule and status; admins registering and approving.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn admins_register_doctors_unapproved_then_approve_them() {
    let app = TestApp::spawn().await;
    let admin = app.token(Admin, 1);
    let (status, body) = app
        .post(
            "/admin/doctors",
            &admin,
            json!({"name": "Dr. Ana Lima", "specialty": "Neurology", "timezone": "America/Sao_Paulo"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let d = &body["doctor"];
    let id = d["id"].as_i64().unwrap();
    assert_eq!(d["name"], "Dr. Ana Lima");
    assert_eq!(d["timezone"], "America/Sao_Paulo");
    assert_eq!(d["is_approved"], false);
    assert_eq!(d["is_available"], true);
    assert_eq!(d["slot_minutes"], 30);
    assert_eq!(
        d["availability_schedule"]["monday"],
        json!({"enabled": true, "start": "09:00", "end": "17:00"})
    );
    assert_eq!(d["availability_schedule"]["sunday"]["enabled"], false);

    let patient = app.token(Patient, 1);
    let (_, listed) = app.get("/patient/doctors", &patient).await;
    assert_eq!(
        listed["doctors"],
        json!([]),
        "unapproved doctors are not listed"
    );

    let (status, approved) = app
        .post(&format!("/admin/doctors/{id}/approve"), &admin, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(approved["doctor"]["is_approved"], true);
    let (_, listed) = app.get("/patient/doctors", &patient).await;
    assert_eq!(listed["doctors"][0]["id"], id);
    let (_, all) = app.get("/admin/doctors", &admin).await;
    assert_eq!(all["doctors"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn doctors_change_their_schedule_and_status_and_patients_see_it() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let me = app.token(Doctor, doctor);
    let (status, body) = app
        .call(
            Method::PUT,
            "/doctor/availability",
            Some(&me),
            Some(json!({"timezone": "Asia/Tokyo", "slot_minutes": 60,
                "availability_schedule": every_day("09:00", "12:00")})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["doctor"]["timezone"], "Asia/Tokyo");
    assert_eq!(body["doctor"]["slot_minutes"], 60);

    let (status, own) = app.get("/doctor/availability?days=1", &me).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(own["timezone"], "Asia/Tokyo");
    let slots = own["days"][0]["slots"].as_array().unwrap();
    let local: Vec<&str> = slots
        .iter()
        .map(|s| s["local_time"].as_str().unwrap())
        .collect();
    assert_eq!(local, vec!["09:00", "10:00", "11:00"]);

    let (status, off) = app
        .call(
            Method::PATCH,
            "/doctor/status",
            Some(&me),
            Some(json!({"is_available": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(off["doctor"]["is_available"], false);
    let (_, listed) = app.get("/patient/doctors", &app.token(Patient, 1)).await;
    assert_eq!(listed["doctors"], json!([]));
    // The doctor still sees their own calendar.
    assert_eq!(app.get("/doctor/availability", &me).await.0, StatusCode::OK);

    let (status, body) = app
        .call(
            Method::PATCH,
            "/doctor/status",
            Some(&me),
            Some(json!({"is_available": "yes"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn doctors_list_their_consultations_in_a_range() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let first = tomorrow_at(9, 0);
    let later = first + chrono::Duration::days(3);
    app.book(1, doctor, first).await;
    app.book(2, doctor, later).await;
    let me = app.token(Doctor, doctor);

    let (status, all) = app.get("/doctor/consultations", &me).await;
    assert_eq!(status, StatusCode::OK);
    let starts: Vec<_> = all["consultations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["scheduled_at"].clone())
        .collect();
    assert_eq!(starts, vec![json!(first), json!(later)], "oldest first");

    let day = first.date_naive();
    let next = day.succ_opt().unwrap();
    let (_, one_day) = app
        .get(&format!("/doctor/consultations?from={day}&to={next}"), &me)
        .await;
    assert_eq!(one_day["consultations"].as_array().unwrap().len(), 1);
    let from = (later - chrono::Duration::minutes(1))
        .to_rfc3339()
        .replace('+', "%2B");
    let (_, tail) = app
        .get(&format!("/doctor/consultations?from={from}"), &me)
        .await;
    assert_eq!(tail["consultations"][0]["scheduled_at"], json!(later));

    for bad in [
        "from=yesterday",
        "from=2030-01-02&to=2030-01-01",
        "from=2030-01-01&to=2032-01-01",
    ] {
        let (status, body) = app.get(&format!("/doctor/consultations?{bad}"), &me).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"], "validation_failed");
    }
    app.stop().await;
}
