//! In-app sessions end to end: the real application with provider `vonage` pointed at the
//! fake Vonage server (real HTTP, real JWT verification), faults injected on the fake.

use std::time::{Duration, Instant};

use consult_scheduler::fake_vonage::FakeVonage;
use consult_scheduler::persistence::testing::pg_url_for;
use consult_scheduler::settings::{DEV_ENCRYPTION_KEY, DEV_VONAGE_PUBLIC_KEY};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::eventually;
use crate::helpers::*;

/// The dev private key's path, as an operator would configure a real one.
fn private_key_path() -> String {
    format!(
        "{}/config/dev/vonage-private.pem",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// An app whose session worker talks to `fake` as if it were Vonage, with quick retries.
async fn spawn_with_fake(extra: &[(&str, &str)]) -> (TestApp, FakeVonage) {
    let fake = FakeVonage::start(
        "127.0.0.1:0".parse().unwrap(),
        DEV_VONAGE_PUBLIC_KEY,
        Some("29f760f8-7ce1-46c9-ade3-f2dedee4ed5f".into()),
    )
    .await
    .expect("fake vonage starts");
    let key = private_key_path();
    let base = fake.base_url();
    let mut settings: Vec<(&str, &str)> = vec![
        ("CONSULT__SESSIONS__PROVIDER", "vonage"),
        (
            "CONSULT__SESSIONS__APPLICATION_ID",
            "29f760f8-7ce1-46c9-ade3-f2dedee4ed5f",
        ),
        ("CONSULT__SESSIONS__PRIVATE_KEY_PATH", &key),
        ("CONSULT__SESSIONS__VIDEO_BASE_URL", &base),
        ("CONSULT__SESSIONS__API_BASE_URL", &base),
        ("CONSULT__SESSIONS__REQUEST_TIMEOUT_MS", "400"),
        ("CONSULT__SESSIONS__WORKER__BACKOFF_BASE_MS", "20"),
        ("CONSULT__SESSIONS__WORKER__BACKOFF_MAX_MS", "200"),
        ("CONSULT__SESSIONS__WORKER__POLL_INTERVAL_MS", "100"),
    ];
    settings.extend_from_slice(extra);
    let app = TestApp::spawn_sqlite_with(&settings).await;
    (app, fake)
}

async fn book_mode(app: &TestApp, patient: i64, doctor: i64, hour: u32, mode: &str) -> i64 {
    let (status, body) = app
        .post(
            "/patient/doctors/book",
            &app.token(Patient, patient),
            json!({"doctor_id": doctor, "scheduled_at": tomorrow_at(hour, 0), "consult_mode": mode,
                "reason": "private medical text"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let expected = if mode == "whatsapp" {
        "not_required"
    } else {
        "pending"
    };
    assert_eq!(body["consultation"]["session_status"], expected);
    body["consultation"]["id"].as_i64().unwrap()
}

/// Polls the patient's session endpoint until the session is settled; answers its body.
async fn settled_session(app: &TestApp, patient: i64, id: i64) -> Value {
    let token = app.token(Patient, patient);
    eventually(|| async {
        let (status, body) = app
            .get(&format!("/patient/consultations/{id}/session"), &token)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (body["session_status"] != "pending").then_some(body)
    })
    .await
}

fn claims(token: &str) -> Value {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_rsa_pem(DEV_VONAGE_PUBLIC_KEY.as_bytes()).unwrap(),
        &validation,
    )
    .expect("token verifies with the application's public key")
    .claims
}

#[tokio::test]
async fn each_in_app_mode_gets_a_session_whose_tokens_verify_and_are_bound_to_session_and_role() {
    let (app, fake) = spawn_with_fake(&[]).await;
    let doctor = app.doctor().await;
    let video = book_mode(&app, 7, doctor, 9, "video").await;
    let voice = book_mode(&app, 7, doctor, 10, "voice").await;
    let chat = book_mode(&app, 8, doctor, 11, "chat").await;
    let whatsapp = book_mode(&app, 8, doctor, 12, "whatsapp").await;
    let doctor_token = app.token(Doctor, doctor);

    for (id, audio_only) in [(video, false), (voice, true)] {
        let body = settled_session(&app, 7, id).await;
        assert_eq!(body["session_status"], "ready", "{body}");
        let s = &body["session"];
        assert_eq!(s["provider"], "vonage");
        assert_eq!(s["audio_only"], audio_only);
        assert_eq!(s["application_id"], "29f760f8-7ce1-46c9-ade3-f2dedee4ed5f");
        let session_id = s["session_id"].as_str().unwrap().to_owned();
        assert!(fake.video_sessions().contains(&session_id));
        assert!(session_id.starts_with("1_MX4") || session_id.starts_with("2_MX4"));
        let c = claims(s["token"].as_str().unwrap());
        assert_eq!(c["session_id"], session_id.as_str());
        assert_eq!(c["role"], "publisher");
        assert_eq!(c["scope"], "session.connect");
        assert_eq!(c["application_id"], "29f760f8-7ce1-46c9-ade3-f2dedee4ed5f");
        assert_eq!(s["role"], "publisher");

        let (status, d) = app
            .get(
                &format!("/doctor/consultations/{id}/session"),
                &doctor_token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{d}");
        assert_eq!(d["session"]["session_id"], session_id.as_str());
        let dc = claims(d["session"]["token"].as_str().unwrap());
        assert_eq!(dc["role"], "moderator");
        assert_eq!(dc["session_id"], session_id.as_str());
    }

    let body = settled_session(&app, 8, chat).await;
    assert_eq!(body["session_status"], "ready", "{body}");
    let s = &body["session"];
    let conversation = s["conversation_id"].as_str().unwrap().to_owned();
    assert!(conversation.starts_with("CON-"));
    assert!(fake
        .conversations()
        .contains(&(conversation.clone(), format!("consultation-{chat}"))));
    let mut members = fake.members(&conversation);
    members.sort();
    assert_eq!(
        members,
        vec![format!("doctor-{doctor}"), "patient-8".to_owned()]
    );
    assert_eq!(s["user_name"], "patient-8");
    let c = claims(s["token"].as_str().unwrap());
    assert_eq!(c["sub"], "patient-8");
    assert!(c["acl"]["paths"]["/*/conversations/**"].is_object());
    let (_, d) = app
        .get(
            &format!("/doctor/consultations/{chat}/session"),
            &doctor_token,
        )
        .await;
    assert_eq!(
        claims(d["session"]["token"].as_str().unwrap())["sub"],
        format!("doctor-{doctor}")
    );

    // WhatsApp needs no session; nobody else may see one.
    let body = settled_session(&app, 8, whatsapp).await;
    assert_eq!(body["session_status"], "not_required");
    assert!(body.get("session").is_none());
    let (status, body) = app
        .get(
            &format!("/patient/consultations/{video}/session"),
            &app.token(Patient, 8),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = app
        .get(
            &format!("/doctor/consultations/{video}/session"),
            &app.token(Doctor, doctor + 1),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .get(
            "/patient/consultations/999999/session",
            &app.token(Patient, 7),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The consultation shows its session status; the fake made exactly what was needed.
    let (_, c) = app
        .get(
            &format!("/patient/consultations/{video}"),
            &app.token(Patient, 7),
        )
        .await;
    assert_eq!(c["consultation"]["session_status"], "ready");
    let counts = fake.counts();
    assert_eq!(counts.video_sessions, 2);
    assert_eq!(counts.conversations, 1);
    assert_eq!(counts.members, 2);
    assert_eq!(counts.unauthorized, 0);
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn server_errors_rate_limits_and_hangs_are_retried_until_the_session_is_made() {
    let (app, fake) = spawn_with_fake(&[]).await;
    let doctor = app.doctor().await;

    // 500 three times, then success.
    fake.fail_next(3, 500, None);
    let id = book_mode(&app, 7, doctor, 9, "video").await;
    assert_eq!(
        settled_session(&app, 7, id).await["session_status"],
        "ready"
    );
    assert_eq!(fake.counts().video_sessions, 1);

    // 429 with Retry-After: 1 is honoured: the retry waits at least a second.
    fake.fail_next(1, 429, Some(1));
    let started = Instant::now();
    let id = book_mode(&app, 7, doctor, 10, "video").await;
    assert_eq!(
        settled_session(&app, 7, id).await["session_status"],
        "ready"
    );
    assert!(started.elapsed() >= Duration::from_millis(950));
    assert_eq!(fake.counts().video_sessions, 2);

    // A hanging call times out (request_timeout_ms 400) and is retried.
    fake.hang_next(1);
    let id = book_mode(&app, 7, doctor, 11, "chat").await;
    assert_eq!(
        settled_session(&app, 7, id).await["session_status"],
        "ready"
    );
    assert_eq!(fake.counts().conversations, 1);
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn exhausted_retries_and_client_errors_fail_the_session_but_never_the_booking() {
    let (app, fake) = spawn_with_fake(&[("CONSULT__SESSIONS__WORKER__MAX_ATTEMPTS", "3")]).await;
    let doctor = app.doctor().await;
    let patient = app.token(Patient, 7);

    fake.fail_next(1_000, 503, None);
    let id = book_mode(&app, 7, doctor, 9, "video").await;
    assert_eq!(
        settled_session(&app, 7, id).await["session_status"],
        "failed"
    );
    let requests_after_exhaustion = fake.counts().requests;
    assert_eq!(
        requests_after_exhaustion, 3,
        "max_attempts bounds the calls"
    );

    // A 4xx other than 429 is not retried.
    fake.clear_faults();
    fake.fail_next(1, 400, None);
    let id2 = book_mode(&app, 7, doctor, 10, "video").await;
    assert_eq!(
        settled_session(&app, 7, id2).await["session_status"],
        "failed"
    );
    assert_eq!(fake.counts().requests, requests_after_exhaustion + 1);
    assert_eq!(fake.counts().video_sessions, 0);

    // Both bookings stand, and still hold their slots.
    for (id, hour) in [(id, 9), (id2, 10)] {
        let (status, c) = app
            .get(&format!("/patient/consultations/{id}"), &patient)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(c["consultation"]["status"], "scheduled");
        assert_eq!(c["consultation"]["session_status"], "failed");
        let (status, body) = app.book(8, doctor, tomorrow_at(hour, 0)).await;
        assert_eq!(
            (status, seed_fields(&body)),
            (StatusCode::CONFLICT, conflict_body())
        );
    }
    // Patient and doctor were told.
    let (_, inbox) = app.get("/notifications", &patient).await;
    let failed: Vec<_> = inbox["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["event"] == "session_failed")
        .map(|n| n["consultation"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(failed, vec![id2, id]);
    let (_, inbox) = app.get("/notifications", &app.token(Doctor, doctor)).await;
    assert!(inbox["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["event"] == "session_failed" && n["consultation"]["id"] == id));
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_session_requests_for_one_consultation_make_exactly_one_session() {
    let (app, fake) = spawn_with_fake(&[]).await;
    let doctor = app.doctor().await;
    // Slow answers keep the first attempt in flight while the other requests arrive.
    fake.set_latency(Duration::from_millis(300));
    let id = book_mode(&app, 7, doctor, 9, "video").await;
    let patient = app.token(Patient, 7);
    let doctor_token = app.token(Doctor, doctor);
    let requests = (0..50).map(|i| {
        let (path, token) = if i % 2 == 0 {
            (format!("/patient/consultations/{id}/session"), &patient)
        } else {
            (format!("/doctor/consultations/{id}/session"), &doctor_token)
        };
        let app = &app;
        async move {
            app.engine.ensure_session(id);
            app.get(&path, token).await
        }
    });
    let answers = futures::future::join_all(requests).await;
    assert!(answers.iter().all(|(s, _)| *s == StatusCode::OK));
    let body = settled_session(&app, 7, id).await;
    assert_eq!(body["session_status"], "ready");
    // Every later request sees the same session.
    let session_id = body["session"]["session_id"].clone();
    for _ in 0..5 {
        let (_, again) = app
            .get(&format!("/patient/consultations/{id}/session"), &patient)
            .await;
        assert_eq!(again["session"]["session_id"], session_id);
    }
    assert_eq!(fake.counts().video_sessions, 1);
    assert_eq!(
        fake.video_sessions(),
        vec![session_id.as_str().unwrap().to_owned()]
    );
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn join_tokens_are_signed_when_asked_for_then_kept_sealed_never_plaintext() {
    let (app, fake) = spawn_with_fake(&[]).await;
    let doctor = app.doctor().await;
    let id = book_mode(&app, 7, doctor, 9, "video").await;
    let Db::Sqlite(path) = &app.db else {
        unreachable!()
    };
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let joins = || async {
        sqlx::query_as::<_, (String, Option<Vec<u8>>, Option<Vec<u8>>)>(
            "SELECT status, patient_join, doctor_join FROM sessions WHERE consultation_id = ?1",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    // Ready, and nobody has asked to join yet: no token has been signed.
    let (_, patient_join, doctor_join) =
        eventually(|| async { Some(joins().await).filter(|(status, ..)| status == "ready") }).await;
    assert_eq!((patient_join, doctor_join), (None, None));

    let body = settled_session(&app, 7, id).await;
    let token = body["session"]["token"].as_str().unwrap().to_owned();
    let (_, patient_join, doctor_join) = joins().await;
    assert_eq!(doctor_join, None, "only the side that asked gets a token");
    let patient_join = patient_join.expect("the patient's token is kept");
    // Asked again: the kept token, not a new signature.
    assert_eq!(
        settled_session(&app, 7, id).await["session"]["token"],
        token.as_str()
    );

    let (status, doctor_body) = app
        .get(
            &format!("/doctor/consultations/{id}/session"),
            &app.token(Doctor, doctor),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{doctor_body}");
    let doctor_token = doctor_body["session"]["token"].as_str().unwrap();
    assert_eq!(claims(doctor_token)["role"], "moderator");
    let (_, _, doctor_join) = joins().await;
    let doctor_join = doctor_join.expect("the doctor's token is kept");
    pool.close().await;

    for (blob, token) in [
        (&patient_join, token.as_str()),
        (&doctor_join, doctor_token),
    ] {
        let text = String::from_utf8_lossy(blob);
        for part in token.split('.') {
            assert!(!text.contains(part), "a token part is stored in the clear");
        }
        assert!(!text.contains("publisher") && !text.contains("moderator"));
    }
    let sealer = consult_scheduler::engine::seal::Sealer::from_base64(DEV_ENCRYPTION_KEY).unwrap();
    let opened = String::from_utf8(sealer.open(&patient_join).unwrap()).unwrap();
    assert!(opened.contains(&token));
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn on_postgres_a_session_is_made_and_its_status_shows_on_the_consultation() {
    let fake = FakeVonage::start("127.0.0.1:0".parse().unwrap(), DEV_VONAGE_PUBLIC_KEY, None)
        .await
        .unwrap();
    let Some((store, name)) = consult_scheduler::persistence::testing::fresh_postgres().await
    else {
        return;
    };
    drop(store);
    let key = private_key_path();
    let base = fake.base_url();
    let settings = test_settings(
        &pg_url_for(&name),
        &[
            ("CONSULT__SESSIONS__PROVIDER", "vonage"),
            ("CONSULT__SESSIONS__PRIVATE_KEY_PATH", &key),
            ("CONSULT__SESSIONS__VIDEO_BASE_URL", &base),
            ("CONSULT__SESSIONS__API_BASE_URL", &base),
        ],
    );
    let app = TestApp::start(Db::Postgres(name), settings).await;
    let doctor = app.doctor().await;
    let id = book_mode(&app, 7, doctor, 9, "voice").await;
    let body = settled_session(&app, 7, id).await;
    assert_eq!(body["session_status"], "ready");
    assert_eq!(body["session"]["audio_only"], true);
    let (_, list) = app
        .get("/patient/consultations", &app.token(Patient, 7))
        .await;
    assert_eq!(list["consultations"][0]["session_status"], "ready");
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn each_in_app_item_of_a_multi_patient_booking_gets_its_own_session() {
    let (app, fake) = spawn_with_fake(&[]).await;
    let (d1, d2) = (app.doctor().await, app.doctor().await);
    let item = |doctor: i64, hour: u32, mode: &str, name: &str| {
        json!({"doctor_id": doctor, "scheduled_at": tomorrow_at(hour, 0), "consult_mode": mode,
            "patient_name": name})
    };
    let (status, body) = app
        .post(
            "/patient/bookings",
            &app.token(Patient, 7),
            json!({"items": [item(d1, 9, "video", "Ada"), item(d2, 9, "video", "Ben"),
                item(d1, 10, "chat", "Cy"), item(d2, 10, "whatsapp", "Dee")]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ids: Vec<i64> = body["booking"]["consultations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    let video: Vec<String> = {
        let mut sessions = Vec::new();
        for id in &ids[..2] {
            let s = settled_session(&app, 7, *id).await;
            assert_eq!(s["session_status"], "ready", "{s}");
            sessions.push(s["session"]["session_id"].as_str().unwrap().to_owned());
        }
        sessions
    };
    assert_ne!(video[0], video[1], "one session per consultation");
    let made = fake.video_sessions();
    assert_eq!(made.len(), 2, "the fake made exactly two video sessions");
    assert!(video.iter().all(|s| made.contains(s)));
    let chat = settled_session(&app, 7, ids[2]).await;
    assert_eq!(chat["session_status"], "ready", "{chat}");
    assert_eq!(
        fake.conversations().len(),
        1,
        "one conversation for the chat item"
    );
    let (_, whatsapp) = app
        .get(
            &format!("/patient/consultations/{}", ids[3]),
            &app.token(Patient, 7),
        )
        .await;
    assert_eq!(whatsapp["consultation"]["session_status"], "not_required");
    app.stop().await;
}
