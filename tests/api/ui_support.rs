//! What the booking UI needs from the API beyond the seed's endpoints: the development
//! sign-in and its demo users (absent in production), the doctor's own profile, the
//! embedded static files with their caching headers, the calendar file, and medical text
//! limits reported by field.

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn development_sign_in_mints_working_tokens_for_demo_users_and_refuses_bad_input() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;

    let (status, patient) = app
        .call(
            Method::POST,
            "/dev/sign-in",
            None,
            Some(json!({"role": "patient"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patient}");
    assert_eq!(
        (patient["sub"].as_i64(), patient["role"].as_str()),
        (Some(67), Some("patient"))
    );
    assert_eq!(patient["name"], "Asha Patel");
    let expires: DateTime<Utc> = patient["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(expires > Utc::now());
    let (status, _) = app
        .get("/patient/doctors", patient["token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, signed) = app
        .call(
            Method::POST,
            "/dev/sign-in",
            None,
            Some(json!({"role": "doctor", "sub": doctor})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{signed}");
    let (status, profile) = app
        .get("/doctor/profile", signed["token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["doctor"]["id"].as_i64(), Some(doctor));
    assert_eq!(profile["doctor"]["name"], "Dr. Test");
    assert_eq!(
        profile["doctor"]["availability_schedule"]["monday"]["start"],
        "08:00"
    );

    for (body, status, code) in [
        (
            json!({"role": "doctor"}),
            StatusCode::BAD_REQUEST,
            "validation_failed",
        ),
        (
            json!({"role": "doctor", "sub": 999}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"role": "root"}),
            StatusCode::BAD_REQUEST,
            "validation_failed",
        ),
        (
            json!({"role": "patient", "sub": -3}),
            StatusCode::BAD_REQUEST,
            "validation_failed",
        ),
        (
            json!({"role": "admin", "extra": 1}),
            StatusCode::BAD_REQUEST,
            "validation_failed",
        ),
    ] {
        let (got, answer) = app
            .call(Method::POST, "/dev/sign-in", None, Some(body.clone()))
            .await;
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(code)),
            "{body} -> {answer}"
        );
    }
    // A patient token is not a doctor's.
    let (status, _) = app
        .get("/doctor/profile", patient["token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.stop().await;
}

#[tokio::test]
async fn the_demo_users_are_the_patients_the_admin_and_every_doctor_approved_or_not() {
    let app = TestApp::spawn().await;
    let approved = app.doctor().await;
    let admin = app.token(Admin, 1);
    let (_, pending) = app
        .post(
            "/admin/doctors",
            &admin,
            json!({"name": "Dr. Pending", "specialty": "Neurology", "timezone": "Europe/Paris"}),
        )
        .await;
    let pending = pending["doctor"]["id"].as_i64().unwrap();
    let (status, answer) = app.call(Method::GET, "/dev/users", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let users: Vec<(String, i64)> = answer["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["role"].as_str().unwrap().to_owned(),
                u["sub"].as_i64().unwrap(),
            )
        })
        .collect();
    for expected in [
        ("patient", 67),
        ("patient", 68),
        ("doctor", approved),
        ("doctor", pending),
        ("admin", 1),
    ] {
        assert!(
            users.contains(&(expected.0.to_owned(), expected.1)),
            "{expected:?} missing from {users:?}"
        );
    }
    let pending_user = answer["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["sub"].as_i64() == Some(pending) && u["role"] == "doctor")
        .unwrap();
    assert_eq!(pending_user["detail"], "Neurology (awaiting approval)");
    app.stop().await;
}

#[tokio::test]
async fn the_production_profile_has_no_development_sign_in() {
    let app = TestApp::spawn_sqlite_with(&[
        ("CONSULT__APP__PROFILE", "production"),
        (
            "CONSULT__AUTH__JWT_SECRET",
            "a-real-production-secret-of-40-bytes-long!",
        ),
        (
            "CONSULT__SESSIONS__ENCRYPTION_KEY",
            "Q0hBTkdFLU1FLXRvLTMyLXJhbmRvbS1ieXRlcyEhISE=",
        ),
        ("CONSULT__SESSIONS__PROVIDER", "off"),
    ])
    .await;
    for (method, path) in [(Method::POST, "/dev/sign-in"), (Method::GET, "/dev/users")] {
        let (status, body) = app
            .call(method, path, None, Some(json!({"role": "admin"})))
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
    }
    // The page itself is served: the platform hands it a token.
    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn ui_files_are_served_with_types_etags_and_revalidation_and_nothing_else_is() {
    let app = TestApp::spawn().await;
    let index = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    let headers = index.headers().clone();
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let html = index.text().await.unwrap();
    assert!(html.contains("Consult Scheduler"));
    // The page's own module is served as JavaScript under the path the page names.
    let script = html
        .split("src=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .find(|src| src.ends_with(".js"))
        .expect("the page loads a script");
    let js = app
        .client
        .get(app.url(&format!(
            "/{}",
            script.trim_start_matches("./").trim_start_matches('/')
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), StatusCode::OK, "{script}");
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));

    let again = app
        .client
        .get(app.url("/index.html"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    let stale = app
        .client
        .get(app.url("/"))
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::OK);

    for (method, path) in [
        (Method::GET, "/no-such-file.js"),
        (Method::GET, "/../Cargo.toml"),
        (Method::GET, "/%2e%2e/Cargo.toml"),
        (Method::POST, "/index.html"),
    ] {
        let (status, body) = app.call(method.clone(), path, None, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "{method} {path}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_consultation_downloads_as_an_rfc5545_event_in_utc_without_medical_text() {
    let app = TestApp::spawn().await;
    let doctor = app
        .doctor_with(json!({"name": "Dr. Iyer", "specialty": "Dermatology",
            "timezone": "Asia/Kolkata", "availability_schedule": every_day("00:00", "23:30")}))
        .await;
    let at = tomorrow_at(10, 0);
    let patient = app.token(Patient, 67);
    let (status, booked) = app
        .post(
            "/patient/doctors/book",
            &patient,
            json!({"doctor_id": doctor, "scheduled_at": at, "consult_mode": "chat",
                "reason": "private rash details", "allergies": "penicillin"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{booked}");
    let id = booked["consultation"]["id"].as_i64().unwrap();
    let reference = booked["consultation"]["reference"]
        .as_str()
        .unwrap()
        .to_owned();

    let resp = app
        .client
        .get(app.url(&format!("/patient/consultations/{id}/calendar.ics")))
        .bearer_auth(&patient)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/calendar"));
    assert!(resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains(&format!("{reference}.ics")));
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains("rash") && !text.contains("penicillin"),
        "{text}"
    );

    let parsed: icalendar::Calendar = text.parse().expect("a valid iCalendar file");
    let event = parsed
        .components
        .iter()
        .find_map(|c| c.as_event())
        .expect("one event");
    use icalendar::Component;
    let start = event.get_start().expect("DTSTART");
    assert_eq!(
        start,
        icalendar::DatePerhapsTime::DateTime(icalendar::CalendarDateTime::Utc(at))
    );
    let end = event.get_end().expect("DTEND");
    assert_eq!(
        end,
        icalendar::DatePerhapsTime::DateTime(icalendar::CalendarDateTime::Utc(
            at + chrono::Duration::minutes(30)
        ))
    );
    assert_eq!(
        event.get_uid(),
        Some(format!("{reference}@consult-scheduler").as_str())
    );
    let description = event.get_description().unwrap().to_owned();
    let local = at
        .with_timezone(&chrono_tz::Asia::Kolkata)
        .format("%H:%M")
        .to_string();
    assert!(
        description.contains("Asia/Kolkata") && description.contains(&local),
        "{description}"
    );

    let other = app.token(Patient, 68);
    let (status, _) = app
        .get(&format!("/patient/consultations/{id}/calendar.ics"), &other)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .get("/patient/consultations/999/calendar.ics", &patient)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn medical_text_over_its_limit_is_refused_field_by_field_and_at_the_limit_accepted() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let patient = app.token(Patient, 67);
    let at = tomorrow_at(9, 0);
    let (status, body) = app
        .post(
            "/patient/doctors/book",
            &patient,
            json!({"doctor_id": doctor, "scheduled_at": at, "consult_mode": "video",
                "reason": "r".repeat(501), "symptoms": "s".repeat(2001),
                "allergies": "a".repeat(1000)}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "validation_failed");
    let errors = body["errors"].as_object().unwrap();
    let mut fields: Vec<&String> = errors.keys().collect();
    fields.sort();
    assert_eq!(fields, ["reason", "symptoms"]);
    assert_eq!(errors["reason"], json!(["must be at most 500 characters"]));
    assert_eq!(
        errors["symptoms"],
        json!(["must be at most 2000 characters"])
    );

    // Limits count characters, not bytes: 500 two-byte characters pass.
    let (status, body) = app
        .post(
            "/patient/doctors/book",
            &patient,
            json!({"doctor_id": doctor, "scheduled_at": at, "consult_mode": "video",
                "reason": "é".repeat(500), "medical_history": "h".repeat(4000)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["consultation"]["reason"]
            .as_str()
            .map(|r| r.chars().count()),
        Some(500)
    );
    let _: Value = body;
    app.stop().await;
}

#[tokio::test]
async fn a_patient_sees_and_releases_their_own_hold_and_others_can_then_take_the_slot() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let (holder, other) = (app.token(Patient, 67), app.token(Patient, 68));
    let at = tomorrow_at(11, 0);
    let (status, held) = app
        .post(
            "/patient/doctors/check-slot",
            &holder,
            json!({"doctor_id": doctor, "scheduled_at": at, "hold": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{held}");
    let availability = format!("/patient/doctors/{doctor}/availability?days=2");
    let (_, mine) = app.get(&availability, &holder).await;
    let start: DateTime<Utc> = mine["your_hold"]["start"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(start, at);
    assert_eq!(mine["your_hold"]["held_until"], held["held_until"]);
    let (_, theirs) = app.get(&availability, &other).await;
    assert!(theirs.get("your_hold").is_none(), "{theirs}");
    let hold = json!({"doctor_id": doctor, "scheduled_at": at, "hold": true});
    let (status, _) = app
        .post("/patient/doctors/check-slot", &other, hold.clone())
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let path = format!("/patient/doctors/{doctor}/hold");
    let (status, released) = app.call(Method::DELETE, &path, Some(&holder), None).await;
    assert_eq!(
        (status, released["released"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (status, again) = app.call(Method::DELETE, &path, Some(&holder), None).await;
    assert_eq!(
        (status, again["released"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    let (_, mine) = app.get(&availability, &holder).await;
    assert!(mine.get("your_hold").is_none(), "{mine}");
    let (status, _) = app.post("/patient/doctors/check-slot", &other, hold).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = app
        .call(
            Method::DELETE,
            &path,
            Some(&app.token(Doctor, doctor)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .call(
            Method::DELETE,
            "/patient/doctors/999/hold",
            Some(&holder),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn a_patients_consultations_name_their_doctor_and_zone_even_when_the_doctor_stops_booking() {
    let app = TestApp::spawn().await;
    let doctor = app
        .doctor_with(
            json!({"name": "Dr. Zone", "specialty": "GP", "timezone": "Asia/Tokyo",
            "availability_schedule": every_day("00:00", "23:30")}),
        )
        .await;
    let (status, booked) = app.book(67, doctor, tomorrow_at(3, 0)).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = booked["consultation"]["id"].as_i64().unwrap();
    let doctor_token = app.token(Doctor, doctor);
    let (status, _) = app
        .call(
            Method::PATCH,
            "/doctor/status",
            Some(&doctor_token),
            Some(json!({"is_available": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let patient = app.token(Patient, 67);
    let (_, list) = app.get("/patient/consultations", &patient).await;
    let (_, one) = app
        .get(&format!("/patient/consultations/{id}"), &patient)
        .await;
    for c in [&list["consultations"][0], &one["consultation"]] {
        assert_eq!(c["doctor_name"], "Dr. Zone", "{c}");
        assert_eq!(c["doctor_timezone"], "Asia/Tokyo", "{c}");
    }
    app.stop().await;
}
