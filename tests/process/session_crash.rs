//! A crash between a booking and its session: the release binary books a video
//! consultation while Vonage (the fake, in this test process) hangs, is killed with
//! SIGKILL, and on restart the session outbox still yields the session. Neither run logs a
//! join token or a bearer token.

use std::time::{Duration, Instant};

use consult_scheduler::fake_vonage::FakeVonage;
use consult_scheduler::http::auth::Role;
use consult_scheduler::settings::DEV_VONAGE_PUBLIC_KEY;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

async fn get(client: &reqwest::Client, url: &str, token: &str) -> (StatusCode, Value) {
    let r = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("GET");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_interrupted_by_a_crash_is_made_after_restart_and_no_token_is_logged() {
    let bin = release_binary_async().await;
    let dir = TempDir::new("cs_session_crash");
    let client = http_client();
    let fake = FakeVonage::start("127.0.0.1:0".parse().unwrap(), DEV_VONAGE_PUBLIC_KEY, None)
        .await
        .expect("fake vonage starts");
    // Every call hangs until the process dies (the request timeout is longer than the test).
    fake.hang_next(1_000);
    let key = format!(
        "{}/config/dev/vonage-private.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let env: Vec<(&str, String)> = vec![
        ("CONSULT__SESSIONS__PROVIDER", "vonage".into()),
        ("CONSULT__SESSIONS__PRIVATE_KEY_PATH", key),
        ("CONSULT__SESSIONS__VIDEO_BASE_URL", fake.base_url()),
        ("CONSULT__SESSIONS__API_BASE_URL", fake.base_url()),
        ("CONSULT__SESSIONS__REQUEST_TIMEOUT_MS", "120000".into()),
        ("CONSULT__SESSIONS__WORKER__POLL_INTERVAL_MS", "100".into()),
        ("CONSULT__LOG__FORMAT", "json".into()),
    ];
    let token = dev_token(Role::Patient, 501);

    let mut server = Server::start_ready(&bin, dir.path(), "before-crash", &env, &client).await;
    let (status, doctors) = get(&client, &server.url("/patient/doctors"), &token).await;
    assert_eq!(status, StatusCode::OK, "{doctors}");
    let doctor = doctors["doctors"][0]["id"].as_i64().expect("a demo doctor");
    let (status, availability) = get(
        &client,
        &server.url(&format!("/patient/doctors/{doctor}/availability?days=7")),
        &token,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{availability}");
    let slot = availability["days"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["slots"].as_array().unwrap().iter())
        .find(|s| s["status"] == "available")
        .expect("an available slot")["start"]
        .clone();
    let booked = client
        .post(server.url("/patient/doctors/book"))
        .bearer_auth(&token)
        .json(&json!({"doctor_id": doctor, "scheduled_at": slot, "consult_mode": "video"}))
        .send()
        .await
        .expect("book");
    assert_eq!(booked.status(), StatusCode::CREATED);
    let booked: Value = booked.json().await.unwrap();
    let id = booked["consultation"]["id"].as_i64().unwrap();
    assert_eq!(booked["consultation"]["session_status"], "pending");

    // The worker's call to Vonage is in flight (hanging) when the process dies.
    let deadline = Instant::now() + Duration::from_secs(20);
    while fake.counts().requests == 0 {
        assert!(Instant::now() < deadline, "the worker never called Vonage");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill_hard();
    assert_eq!(fake.counts().video_sessions, 0);
    fake.clear_faults();

    let server = Server::start_ready(&bin, dir.path(), "after-crash", &env, &client).await;
    let session_url = server.url(&format!("/patient/consultations/{id}/session"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let session = loop {
        let (status, body) = get(&client, &session_url, &token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["session_status"] != "pending" {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no session after restart: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(session["session_status"], "ready", "{session}");
    let join_token = session["session"]["token"].as_str().unwrap().to_owned();
    let doctor_session = get(
        &client,
        &server.url(&format!("/doctor/consultations/{id}/session")),
        &dev_token(Role::Doctor, doctor),
    )
    .await
    .1;
    let doctor_token = doctor_session["session"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(fake.counts().video_sessions, 1);
    assert_eq!(
        fake.video_sessions(),
        vec![session["session"]["session_id"]
            .as_str()
            .unwrap()
            .to_owned()]
    );

    // The logs of both runs: the session event is there, no token of any kind is.
    let logs = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(logs.contains("\"event_type\":\"session_ready\""), "{logs}");
    for secret in [&join_token, &doctor_token, &token] {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(!logs.contains(signature), "a token was logged");
    }
    drop(server);
    fake.stop().await;
}
