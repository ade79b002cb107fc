//! An `Idempotency-Key` repeat after `kill -9`: the release binary acknowledges a booking
//! made with a key (201), is killed with SIGKILL right after, and the restarted process
//! answers the repeat with the first 201 (same consultation id) instead of a 409 for the
//! patient's own booking; the store holds exactly one active consultation on that slot.
//! On SQLite (the default configuration, in the working directory) and on Postgres.

use consult_scheduler::http::auth::Role;
use consult_scheduler::persistence::testing::{drop_postgres, fresh_postgres, pg_url_for};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

async fn book(
    client: &reqwest::Client,
    server: &Server,
    token: &str,
    key: &str,
    body: &Value,
) -> (StatusCode, Value) {
    send(client, server, "/patient/doctors/book", token, key, body).await
}

async fn send(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
    token: &str,
    key: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let response = client
        .post(server.url(path))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("POST reaches the server");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Book with a key, SIGKILL, restart, repeat; `db_url` is the database both runs use.
async fn a_repeat_after_kill_9_answers_the_first_201(db_url: String, env: Vec<(&str, String)>) {
    let bin = release_binary_async().await;
    let dir = TempDir::new("cs_idempotency_crash");
    let client = http_client();
    let token = dev_token(Role::Patient, 601);

    let mut server = Server::start_ready(&bin, dir.path(), "before-kill", &env, &client).await;
    let (status, doctors) = get_json(&client, &server.url("/patient/doctors"), &token).await;
    assert_eq!(status, StatusCode::OK, "{doctors}");
    let doctor = doctors["doctors"][0]["id"].as_i64().expect("a demo doctor");
    let (status, availability) = get_json(
        &client,
        &server.url(&format!("/patient/doctors/{doctor}/availability?days=7")),
        &token,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{availability}");
    let starts = available_starts(&availability, chrono::Duration::hours(1));
    assert!(starts.len() >= 3, "three available slots");
    let slot = starts[0];
    let body = json!({"doctor_id": doctor, "scheduled_at": slot, "consult_mode": "whatsapp",
        "reason": "follow-up"});
    let first = book(&client, &server, &token, "retry-after-crash", &body).await;
    assert_eq!(first.0, StatusCode::CREATED, "{}", first.1);
    // A family booking under its own key, acknowledged just before the kill too.
    let family = json!({"items": [
        {"doctor_id": doctor, "scheduled_at": starts[1], "consult_mode": "whatsapp", "patient_name": "Ada"},
        {"doctor_id": doctor, "scheduled_at": starts[2], "consult_mode": "whatsapp", "patient_name": "Ben", "relation": "child"}
    ]});
    let family_first = send(
        &client,
        &server,
        "/patient/bookings",
        &token,
        "family-after-crash",
        &family,
    )
    .await;
    assert_eq!(family_first.0, StatusCode::CREATED, "{}", family_first.1);
    server.kill_hard();

    let server = Server::start_ready(&bin, dir.path(), "after-kill", &env, &client).await;
    let again = book(&client, &server, &token, "retry-after-crash", &body).await;
    assert_eq!(again.0, StatusCode::CREATED, "{}", again.1);
    assert_eq!(
        again.1["consultation"]["id"], first.1["consultation"]["id"],
        "the repeat answers the first booking"
    );
    assert_eq!(
        again.1, first.1,
        "the same answer (a WhatsApp booking does not change)"
    );
    let family_again = send(
        &client,
        &server,
        "/patient/bookings",
        &token,
        "family-after-crash",
        &family,
    )
    .await;
    assert_eq!(
        family_again, family_first,
        "the repeat answers the first family booking"
    );
    // Without the key the same request is a second booking attempt: its own slot, 409.
    let (status, answer) =
        post_json(&client, &server.url("/patient/doctors/book"), &token, &body).await;
    assert_eq!(
        (status, seed_fields(&answer)),
        (StatusCode::CONFLICT, conflict_body())
    );
    assert_no_errors_logged(&server);
    drop(server);

    let store = consult_scheduler::persistence::open_store(&db_url)
        .await
        .expect("the database opens");
    let on_slot: Vec<_> = store
        .active_consultations(Some(doctor))
        .await
        .expect("active consultations")
        .into_iter()
        .filter(|c| c.scheduled_at == slot)
        .collect();
    assert_eq!(
        on_slot.len(),
        1,
        "exactly one active consultation on the slot"
    );
    let booking_id = family_first.1["booking"]["id"]
        .as_i64()
        .expect("booking id");
    assert_eq!(
        store
            .booking_consultations(booking_id)
            .await
            .expect("the booking")
            .len(),
        2,
        "one family booking, whole"
    );
    assert_eq!(
        store
            .active_consultations(Some(doctor))
            .await
            .expect("active")
            .len(),
        3,
        "no second booking of anything"
    );
    assert_eq!(
        serde_json::json!(on_slot[0].id),
        first.1["consultation"]["id"]
    );
    store.close().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_repeat_after_kill_9_answers_the_first_201_on_sqlite() {
    // SQLite in a directory of its own (removed at the end), demo doctors as by default.
    let db_dir = TempDir::new("cs_idempotency_crash_sqlite");
    let file = db_dir.path().join("consult.db");
    let url = format!("sqlite://{}", file.display());
    let env = vec![
        ("CONSULT__DATABASE__URL", url.clone()),
        ("CONSULT__LOG__FORMAT", "json".to_owned()),
    ];
    a_repeat_after_kill_9_answers_the_first_201(url, env).await;
    drop(db_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_repeat_after_kill_9_answers_the_first_201_on_postgres() {
    let Some((store, db)) = fresh_postgres().await else {
        eprintln!("skipped an_idempotency_key_repeat_after_kill_9_answers_the_first_201_on_postgres: no Postgres");
        return;
    };
    store.close().await;
    let url = pg_url_for(&db);
    let env = vec![
        ("CONSULT__DATABASE__URL", url.clone()),
        ("CONSULT__DEMO__SEED", "true".to_owned()),
        ("CONSULT__LOG__FORMAT", "json".to_owned()),
    ];
    let outcome = tokio::spawn(a_repeat_after_kill_9_answers_the_first_201(url, env)).await;
    drop_postgres(&db).await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("the test body did not finish: {e}"),
        }
    }
}
