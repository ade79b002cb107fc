//! The authorization matrix: every role against every endpoint group, bad tokens, and own
//! versus someone else's resources.

use base64::Engine as _;
use consult_scheduler::http::auth::{now_s, JwtKeys};
use consult_scheduler::settings::DEV_JWT_SECRET;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn each_role_reaches_only_its_own_endpoint_groups() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let at = tomorrow_at(9, 0);
    let groups: Vec<(&str, Method, String, Option<Value>)> = vec![
        ("patient", Method::GET, "/patient/doctors".into(), None),
        (
            "patient",
            Method::GET,
            format!("/patient/doctors/{doctor}/availability"),
            None,
        ),
        (
            "patient",
            Method::POST,
            "/patient/doctors/check-slot".into(),
            Some(json!({"doctor_id": doctor, "scheduled_at": at})),
        ),
        (
            "patient",
            Method::GET,
            "/patient/consultations".into(),
            None,
        ),
        ("doctor", Method::GET, "/doctor/availability".into(), None),
        (
            "doctor",
            Method::PATCH,
            "/doctor/status".into(),
            Some(json!({"is_available": true})),
        ),
        ("doctor", Method::GET, "/doctor/consultations".into(), None),
        (
            "doctor",
            Method::GET,
            format!("/doctor/slots/{}/history", at.to_rfc3339()),
            None,
        ),
        ("admin", Method::GET, "/admin/doctors".into(), None),
        (
            "admin",
            Method::GET,
            format!("/admin/doctors/{doctor}/slots/{}/history", at.to_rfc3339()),
            None,
        ),
        (
            "admin",
            Method::POST,
            format!("/admin/doctors/{doctor}/approve"),
            Some(json!({})),
        ),
    ];
    let tokens = [
        ("patient", Some(app.token(Patient, 67))),
        ("doctor", Some(app.token(Doctor, doctor))),
        ("admin", Some(app.token(Admin, 1))),
        ("none", None),
    ];
    for (group, method, path, body) in &groups {
        for (role, token) in &tokens {
            let (status, answer) = app
                .call(method.clone(), path, token.as_deref(), body.clone())
                .await;
            let want = match *role {
                "none" => StatusCode::UNAUTHORIZED,
                r if r == *group => StatusCode::OK,
                _ => StatusCode::FORBIDDEN,
            };
            assert_eq!(status, want, "{role} -> {method} {path}: {answer}");
            if want != StatusCode::OK {
                let code = if want == StatusCode::UNAUTHORIZED {
                    "unauthorized"
                } else {
                    "forbidden"
                };
                assert_eq!(answer["error"], code, "{answer}");
            }
        }
    }
    // Booking and rescheduling are for patients only.
    for token in [app.token(Doctor, doctor), app.token(Admin, 1)] {
        let (status, _) = app
            .post(
                "/patient/doctors/book",
                &token,
                json!({"doctor_id": doctor, "scheduled_at": at, "consult_mode": "chat"}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = app
            .post(
                "/patient/consultations/1/reschedule",
                &token,
                json!({"scheduled_at": at}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    // Ops endpoints need no token.
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/"] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn expired_tampered_unsigned_and_foreign_tokens_are_401() {
    let app = TestApp::spawn().await;
    let keys = JwtKeys::new(DEV_JWT_SECRET.as_bytes(), 0);
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let good = app.token(Patient, 67);
    let parts: Vec<&str> = good.split('.').collect();
    let admin_claims = b64(&format!(
        r#"{{"sub":"67","role":"admin","exp":{}}}"#,
        now_s() + 600
    ));
    // Well signed with the right secret and HS256, whatever the claims say.
    let signed = |claims: String| {
        let message = format!("{}.{}", b64(r#"{"alg":"HS256","typ":"JWT"}"#), b64(&claims));
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(DEV_JWT_SECRET.as_bytes()),
            jsonwebtoken::Algorithm::HS256,
        )
        .unwrap();
        format!("{message}.{signature}")
    };
    let bad_tokens = [
        ("expired", keys.mint(Patient, 67, now_s() - 7200, 60)),
        (
            "tampered",
            format!("{}.{}.{}", parts[0], admin_claims, parts[2]),
        ),
        (
            "alg none",
            format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), admin_claims),
        ),
        (
            "foreign secret",
            JwtKeys::new(b"someone-elses-secret-someone-elses", 0).mint(Admin, 1, now_s(), 600),
        ),
        ("garbage", "not.a.token".to_owned()),
        ("no claims", signed(r#"{}"#.to_owned())),
        (
            "nbf in an hour",
            signed(format!(
                r#"{{"sub":"67","role":"patient","exp":{},"nbf":{}}}"#,
                now_s() + 7200,
                now_s() + 3600
            )),
        ),
        (
            "exp in ten years",
            signed(format!(
                r#"{{"sub":"67","role":"admin","exp":{}}}"#,
                now_s() + 10 * 365 * 24 * 3600
            )),
        ),
        (
            "sub not a number",
            signed(format!(
                r#"{{"sub":"admin","role":"admin","exp":{}}}"#,
                now_s() + 600
            )),
        ),
        (
            "role of the wrong type",
            signed(format!(
                r#"{{"sub":"1","role":["admin"],"exp":{}}}"#,
                now_s() + 600
            )),
        ),
        (
            "exp as text",
            signed(format!(
                r#"{{"sub":"1","role":"admin","exp":"{}"}}"#,
                now_s() + 600
            )),
        ),
        (
            "HS512 with the right secret",
            format!(
                "{}.{}.{}",
                b64(r#"{"alg":"HS512","typ":"JWT"}"#),
                admin_claims,
                jsonwebtoken::crypto::sign(
                    format!("{}.{}", b64(r#"{"alg":"HS512","typ":"JWT"}"#), admin_claims)
                        .as_bytes(),
                    &jsonwebtoken::EncodingKey::from_secret(DEV_JWT_SECRET.as_bytes()),
                    jsonwebtoken::Algorithm::HS512,
                )
                .unwrap()
            ),
        ),
    ];
    for (what, token) in bad_tokens {
        let (status, body) = app.get("/admin/doctors", &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["error"], "unauthorized");
    }
    let resp = app
        .client
        .get(app.url("/patient/doctors"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = app.get("/patient/doctors", &good).await;
    assert_eq!(status, StatusCode::OK, "the untampered token works");
    let hand_made = signed(format!(
        r#"{{"sub":67,"role":"patient","exp":{},"nbf":{}}}"#,
        now_s() + 600,
        now_s() - 10
    ));
    let (status, _) = app.get("/patient/doctors", &hand_made).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a hand-made token with valid claims works"
    );
    app.stop().await;
}

#[tokio::test]
async fn patients_and_doctors_act_only_on_their_own_records() {
    let app = TestApp::spawn().await;
    let doctor_a = app.doctor().await;
    let doctor_b = app.doctor().await;
    let (_, booked) = app.book(1, doctor_a, tomorrow_at(9, 0)).await;
    let id = booked["consultation"]["id"].as_i64().unwrap();
    app.book(2, doctor_b, tomorrow_at(9, 0)).await;

    let other = app.token(Patient, 2);
    let (status, body) = app
        .get(&format!("/patient/consultations/{id}"), &other)
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::FORBIDDEN, json!("forbidden"))
    );
    let (status, _) = app
        .post(
            &format!("/patient/consultations/{id}/cancel"),
            &other,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = app
        .post(
            &format!("/patient/consultations/{id}/reschedule"),
            &other,
            json!({"scheduled_at": tomorrow_at(15, 0)}),
        )
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::FORBIDDEN, json!("forbidden"))
    );
    let (_, still) = app
        .get(
            &format!("/patient/consultations/{id}"),
            &app.token(Patient, 1),
        )
        .await;
    assert_eq!(
        still["consultation"]["status"], "scheduled",
        "the other patient's cancel did nothing"
    );
    assert_eq!(
        still["consultation"]["scheduled_at"],
        json!(tomorrow_at(9, 0)),
        "nor their reschedule"
    );
    let (_, theirs) = app.get("/patient/consultations", &other).await;
    assert!(theirs["consultations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["patient_id"] == 2));

    // A doctor sees only their own consultations and changes only their own schedule.
    let (status, list) = app
        .get("/doctor/consultations", &app.token(Doctor, doctor_b))
        .await;
    assert_eq!(status, StatusCode::OK);
    let doctors: Vec<&Value> = list["consultations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["doctor_id"])
        .collect();
    assert_eq!(doctors, vec![&json!(doctor_b)]);
    let (status, _) = app
        .call(
            Method::PUT,
            "/doctor/availability",
            Some(&app.token(Doctor, doctor_b)),
            Some(json!({"availability_schedule": every_day("10:00", "12:00")})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, a) = app
        .get("/doctor/availability", &app.token(Doctor, doctor_a))
        .await;
    assert_eq!(
        a["availability_schedule"],
        every_day("08:00", "18:00"),
        "doctor A untouched"
    );
    app.stop().await;
}
