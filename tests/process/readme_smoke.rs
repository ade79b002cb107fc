//! The binary started the way the README says (`cargo run --release`: no arguments, the
//! built-in defaults, SQLite file `data/consult-scheduler.db` under the working directory),
//! driven over HTTP, stopped with SIGTERM and started again.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

/// The medical text of the booking: it must reach the store, never the logs.
const REASON: &str = "itchy rash secret-medical-text";

/// How long a SIGTERM'd server may take to drain and exit (its own grace is 10 s).
const EXIT_DEADLINE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_binary_started_as_the_readme_says_books_on_sqlite_and_keeps_the_booking_across_a_sigterm_restart(
) {
    let bin = release_binary_async().await;
    // A fresh working directory, so the default relative SQLite path lands in it.
    let dir = TempDir::new("cs_readme");
    let client = http_client();
    // The README runs `cargo run --release` with no arguments and no environment. The one
    // deviation here is the port (CONSULT__SERVER__BIND, added by `Server::start_ready`):
    // the default 127.0.0.1:8080 may be taken on a shared machine.
    let env: Vec<(&str, String)> = Vec::new();

    let token = token_from_binary(&bin, dir.path(), &env, "patient", 67);
    let other_token = token_from_binary(&bin, dir.path(), &env, "patient", 68);

    let mut server = Server::start_ready(&bin, dir.path(), "first-run", &env, &client).await;

    // The page at `/`.
    let index = client
        .get(server.url("/"))
        .send()
        .await
        .expect("GET / failed");
    assert_eq!(index.status(), StatusCode::OK);
    let content_type = index
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/html"),
        "GET / content type {content_type:?}"
    );
    let html = index.text().await.expect("GET / body");
    assert!(
        html.to_ascii_lowercase().contains("<html"),
        "GET / is not an HTML page: {}",
        &html[..html.len().min(200)]
    );

    // The demo doctors, seeded on the empty store.
    let (status, doctors) = get_json(&client, &server.url("/patient/doctors"), &token).await;
    assert_eq!(status, StatusCode::OK, "{doctors}");
    let doctors = doctors["doctors"].as_array().expect("doctors[]").clone();
    assert_eq!(doctors.len(), 5, "the five demo doctors: {doctors:?}");
    assert!(doctors
        .iter()
        .all(|d| d["is_approved"] == true && d["is_available"] == true));
    let doctor_id = doctors[0]["id"].as_i64().expect("doctor id");

    // A free slot.
    let (status, availability) = get_json(
        &client,
        &server.url(&format!(
            "/patient/doctors/{doctor_id}/availability?days=14"
        )),
        &token,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{availability}");
    let slot = *available_starts(&availability, chrono::Duration::minutes(10))
        .first()
        .expect("the demo doctor has a free slot in the next 14 days");
    let booking = json!({
        "doctor_id": doctor_id,
        "scheduled_at": slot.to_rfc3339(),
        "consult_mode": "video",
        "reason": REASON,
    });

    // Book it.
    let book_url = server.url("/patient/doctors/book");
    let (status, booked) = post_json(&client, &book_url, &token, &booking).await;
    assert_eq!(status, StatusCode::CREATED, "{booked}");
    assert_eq!(booked["success"], true);
    let consultation = &booked["consultation"];
    let id = consultation["id"].as_i64().expect("consultation id");
    let reference = consultation["reference"].as_str().expect("reference");
    assert!(
        reference.len() == 11
            && reference.starts_with("CONS-")
            && reference[5..]
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()),
        "reference {reference:?} is not CONS- + 6 characters"
    );
    assert_eq!(consultation["doctor_id"], doctor_id);
    assert_eq!(consultation["patient_id"], 67);
    assert_eq!(parse_time(&consultation["scheduled_at"]), slot);
    assert_eq!(consultation["status"], "scheduled");
    assert_eq!(consultation["consult_mode"], "video");

    // The same slot for another patient: the exact conflict answer.
    let (status, conflict) = post_json(&client, &book_url, &other_token, &booking).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(seed_fields(&conflict), conflict_body());

    // SIGTERM: drain, flush, exit 0.
    let terminated = std::time::Instant::now();
    server.terminate();
    let exit = server.wait_exit(EXIT_DEADLINE).await.unwrap_or_else(|| {
        panic!(
            "the server did not exit within {EXIT_DEADLINE:?} of SIGTERM\n{}",
            tail(&server.stdout(), 20)
        )
    });
    assert!(
        exit.success(),
        "exit after SIGTERM: {exit}\n--- stderr ---\n{}",
        server.stderr()
    );
    println!("exited {exit} {:?} after SIGTERM", terminated.elapsed());
    assert!(
        dir.path().join("data/consult-scheduler.db").is_file(),
        "the SQLite file is at data/consult-scheduler.db under the working directory"
    );
    let wal = dir.path().join("data/consult-scheduler.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "a clean stop checkpoints the WAL into the database file"
    );

    // The structured log: the booking event is there; the token and the medical text are
    // not.
    let first_stdout = server.stdout();
    let scheduled_event = first_stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["event_type"] == "consultation_scheduled");
    let scheduled_event = scheduled_event.unwrap_or_else(|| {
        panic!(
            "no JSON log line with event_type consultation_scheduled:\n{}",
            tail(&first_stdout, 40)
        )
    });
    assert_eq!(scheduled_event["consultation_id"], id, "{scheduled_event}");
    assert_no_errors_logged(&server);
    let first_output = format!("{first_stdout}\n{}", server.stderr());
    assert_no_secrets(&first_output, &[&token, &other_token]);
    drop(server);

    // Started again on the same file: the booking and its conflict are still there.
    let mut server = Server::start_ready(&bin, dir.path(), "second-run", &env, &client).await;
    let (status, list) = get_json(&client, &server.url("/patient/consultations"), &token).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let kept = list["consultations"]
        .as_array()
        .expect("consultations[]")
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("consultation {id} is gone after the restart: {list}"))
        .clone();
    assert_eq!(kept["status"], "scheduled");
    assert_eq!(kept["reference"], reference);
    assert_eq!(kept["doctor_id"], doctor_id);
    assert_eq!(parse_time(&kept["scheduled_at"]), slot);
    let (status, body) = get_json(
        &client,
        &server.url(&format!("/patient/consultations/{id}")),
        &other_token,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, conflict) = post_json(
        &client,
        &server.url("/patient/doctors/book"),
        &other_token,
        &booking,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(seed_fields(&conflict), conflict_body());

    server.terminate();
    let exit = server.wait_exit(EXIT_DEADLINE).await;
    assert!(
        exit.is_some_and(|s| s.success()),
        "second run after SIGTERM: {exit:?}\n{}",
        server.stderr()
    );
    assert_no_errors_logged(&server);
    let second_output = format!("{}\n{}", server.stdout(), server.stderr());
    assert_no_secrets(&second_output, &[&token, &other_token]);
}

/// Neither a bearer token nor the booking's medical text appears in `output`.
fn assert_no_secrets(output: &str, tokens: &[&str]) {
    for token in tokens {
        assert!(!output.contains(token), "a bearer token was logged");
        // Its signature alone is secret enough to look for too.
        let signature = token.rsplit('.').next().unwrap_or(token);
        assert!(!output.contains(signature), "a token signature was logged");
    }
    assert!(
        !output.contains(REASON) && !output.contains("secret-medical-text"),
        "the medical reason was logged"
    );
}
