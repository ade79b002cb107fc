//! SIGKILL mid-load on Postgres: the release binary is killed while 64 clients book (a
//! quarter of them three-item family bookings), three times over; every booking a client
//! saw acknowledged (201) must be in the store and in the restarted engine, no family
//! booking may be stored in part, and no doctor may ever hold two overlapping active
//! bookings.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use consult_scheduler::http::auth::Role;
use consult_scheduler::persistence::testing::{drop_postgres, fresh_postgres, pg_url_for};
use futures::StreamExt;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::support::*;

const ROUNDS: usize = 3;
const CLIENTS: usize = 64;
/// Doctors registered through the admin API each round, so every round has free slots.
const DOCTORS_PER_ROUND: usize = 3;
/// The deliberate random delay between the start of the load and the SIGKILL.
const KILL_AFTER_MS: std::ops::RangeInclusive<u64> = 300..=1200;
/// How many acknowledged slots are booked again after each restart (expecting 409).
const REBOOK_SAMPLE: usize = 50;
/// A patient who never books successfully: used to probe slots that must be taken.
const PROBE_PATIENT: i64 = 999_999;

/// A booking a client saw acknowledged with 201.
#[derive(Debug, Clone)]
struct Ack {
    id: i64,
    doctor_id: i64,
    patient_id: i64,
    scheduled_at: DateTime<Utc>,
}

/// What one round of load saw, besides the acknowledgements.
#[derive(Debug, Default)]
struct LoadStats {
    /// Family bookings acknowledged (their consultations are among the acks).
    families: AtomicU64,
    conflicts: AtomicU64,
    unavailable: AtomicU64,
    transport_errors: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_release_binary_mid_load_loses_no_acknowledged_booking() {
    let Some((store, db)) = fresh_postgres().await else {
        eprintln!("skipped killing_the_release_binary_mid_load_loses_no_acknowledged_booking: no Postgres");
        return;
    };
    store.close().await;
    let url = pg_url_for(&db);
    // The body runs as its own task so the database is dropped whatever happens in it.
    let outcome = tokio::spawn(kill_rounds(url)).await;
    drop_postgres(&db).await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("the test body did not finish: {e}"),
        }
    }
}

async fn kill_rounds(url: String) {
    let bin = release_binary_async().await;
    let dir = TempDir::new("cs_crash");
    let client = http_client();
    let db = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .expect("cannot connect to the test database");
    let env = vec![
        ("CONSULT__DATABASE__URL", url.clone()),
        ("CONSULT__DEMO__SEED", "true".to_owned()),
        ("CONSULT__LOG__FORMAT", "json".to_owned()),
    ];
    let mut tokens = Tokens::default();
    let mut acked: Vec<Ack> = Vec::new();
    let mut families = 0;

    for round in 0..ROUNDS {
        let server =
            Server::start_ready(&bin, dir.path(), &format!("round-{round}"), &env, &client).await;
        if round > 0 {
            verify(&server, &client, &db, &mut tokens, &acked).await;
        }
        let slots = slots_for_round(&server, &client, round).await;
        let patient_base = 10_000 + 1_000 * round as i64;
        let (new_acks, stats) = book_until_killed(server, &client, slots, patient_base).await;
        families += stats.families.load(Ordering::Relaxed);
        println!(
            "round {round}: {} acknowledged ({} family bookings), {} conflicts, {} unavailable, {} transport errors at the kill",
            new_acks.len(),
            stats.families.load(Ordering::Relaxed),
            stats.conflicts.load(Ordering::Relaxed),
            stats.unavailable.load(Ordering::Relaxed),
            stats.transport_errors.load(Ordering::Relaxed),
        );
        assert!(
            !new_acks.is_empty(),
            "round {round}: no booking was acknowledged before the kill, so nothing was tested"
        );
        acked.extend(new_acks);
    }
    assert!(
        families > 0,
        "no family booking was acknowledged in any round"
    );

    // The last restart: everything acknowledged is there, and booking still works.
    let mut server = Server::start_ready(&bin, dir.path(), "final", &env, &client).await;
    verify(&server, &client, &db, &mut tokens, &acked).await;
    let doctors = approved_doctors(&server, &client).await;
    let token = tokens.get(PROBE_PATIENT + 1);
    let mut booked_after_restart = None;
    'doctors: for doctor_id in doctors {
        for start in availability(&server, &client, doctor_id).await {
            let (status, body) = book(&server, &client, &token, doctor_id, start).await;
            match status {
                StatusCode::CREATED => {
                    booked_after_restart = Some(ack_from(&body));
                    break 'doctors;
                }
                StatusCode::CONFLICT => continue,
                other => panic!("booking after the restarts answered {other}: {body}"),
            }
        }
    }
    let last = booked_after_restart.expect("no booking succeeded after the restarts");
    acked.push(last);
    verify_store(&db, &acked).await;
    println!(
        "{} acknowledged bookings survived {ROUNDS} SIGKILLs",
        acked.len()
    );
    server.kill_hard();
    assert_no_errors_logged(&server);
    db.close().await;
}

/// Every approved doctor's free slots (the demo doctors and the round's new ones), as
/// `(doctor_id, start)` pairs.
async fn slots_for_round(
    server: &Server,
    client: &reqwest::Client,
    round: usize,
) -> Vec<(i64, DateTime<Utc>)> {
    let admin = dev_token(Role::Admin, 1);
    let all_day = json!({"enabled": true, "start": "00:00", "end": "24:00"});
    for n in 0..DOCTORS_PER_ROUND {
        let (status, created) = post_json(
            client,
            &server.url("/admin/doctors"),
            &admin,
            &json!({
                "name": format!("Dr. Crash {round}-{n}"),
                "specialty": "General Practice",
                "timezone": "UTC",
                "slot_minutes": 15,
                "availability_schedule": {
                    "monday": all_day, "tuesday": all_day, "wednesday": all_day,
                    "thursday": all_day, "friday": all_day, "saturday": all_day,
                    "sunday": all_day,
                },
            }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "creating a doctor: {created}");
        let id = created["doctor"]["id"].as_i64().expect("doctor id");
        let (status, approved) = post_json(
            client,
            &server.url(&format!("/admin/doctors/{id}/approve")),
            &admin,
            &json!({}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "approving doctor {id}: {approved}");
    }
    let mut slots = Vec::new();
    for doctor_id in approved_doctors(server, client).await {
        slots.extend(
            availability(server, client, doctor_id)
                .await
                .into_iter()
                .map(|start| (doctor_id, start)),
        );
    }
    assert!(!slots.is_empty(), "round {round}: no free slot to book");
    slots
}

async fn approved_doctors(server: &Server, client: &reqwest::Client) -> Vec<i64> {
    let token = dev_token(Role::Patient, PROBE_PATIENT);
    let (status, body) = get_json(client, &server.url("/patient/doctors"), &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["doctors"]
        .as_array()
        .expect("doctors[]")
        .iter()
        .map(|d| d["id"].as_i64().expect("doctor id"))
        .collect()
}

/// A doctor's free slot starts over the next 14 days, at least 10 minutes ahead.
async fn availability(
    server: &Server,
    client: &reqwest::Client,
    doctor_id: i64,
) -> Vec<DateTime<Utc>> {
    let token = dev_token(Role::Patient, PROBE_PATIENT);
    let (status, body) = get_json(
        client,
        &server.url(&format!(
            "/patient/doctors/{doctor_id}/availability?days=14"
        )),
        &token,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "availability of {doctor_id}: {body}"
    );
    available_starts(&body, chrono::Duration::minutes(10))
}

async fn book(
    server: &Server,
    client: &reqwest::Client,
    token: &str,
    doctor_id: i64,
    start: DateTime<Utc>,
) -> (StatusCode, Value) {
    post_json(
        client,
        &server.url("/patient/doctors/book"),
        token,
        &json!({
            "doctor_id": doctor_id,
            "scheduled_at": start.to_rfc3339(),
            "consult_mode": "video",
            "reason": "crash test",
        }),
    )
    .await
}

fn ack_from(body: &Value) -> Ack {
    let c = &body["consultation"];
    assert_eq!(c["status"], "scheduled", "{body}");
    Ack {
        id: c["id"].as_i64().expect("consultation id"),
        doctor_id: c["doctor_id"].as_i64().expect("doctor_id"),
        patient_id: c["patient_id"].as_i64().expect("patient_id"),
        scheduled_at: parse_time(&c["scheduled_at"]),
    }
}

/// Runs `CLIENTS` booking loops over random `slots` and SIGKILLs the server a random
/// 300–1200 ms into the load. Returns what was acknowledged with a complete 201 answer;
/// requests cut off by the kill are not acknowledged.
async fn book_until_killed(
    mut server: Server,
    client: &reqwest::Client,
    slots: Vec<(i64, DateTime<Utc>)>,
    patient_base: i64,
) -> (Vec<Ack>, LoadStats) {
    let slots = Arc::new(slots);
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(Mutex::new(Vec::new()));
    let stats = Arc::new(LoadStats::default());
    let unexpected = Arc::new(Mutex::new(Vec::<String>::new()));
    let url = server.url("/patient/doctors/book");
    let family_url = server.url("/patient/bookings");
    let mut tasks = Vec::new();
    for n in 0..CLIENTS {
        let patient_id = patient_base + n as i64;
        let token = dev_token(Role::Patient, patient_id);
        // Every fourth client books for three family members at once.
        let family = n % 4 == 0;
        let (client, url, slots, stop, acks, stats, unexpected) = (
            client.clone(),
            if family {
                family_url.clone()
            } else {
                url.clone()
            },
            slots.clone(),
            stop.clone(),
            acks.clone(),
            stats.clone(),
            unexpected.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (doctor_id, start) = slots[rand::rng().random_range(0..slots.len())];
                let body = if family {
                    let mut picks = vec![(doctor_id, start)];
                    while picks.len() < 3 {
                        let p = slots[rand::rng().random_range(0..slots.len())];
                        if !picks.contains(&p) {
                            picks.push(p);
                        }
                    }
                    json!({"items": picks.iter().enumerate().map(|(i, (d, at))| json!({
                        "doctor_id": d,
                        "scheduled_at": at.to_rfc3339(),
                        "consult_mode": "chat",
                        "patient_name": format!("Family member {i}"),
                    })).collect::<Vec<_>>()})
                } else {
                    json!({
                        "doctor_id": doctor_id,
                        "scheduled_at": start.to_rfc3339(),
                        "consult_mode": "chat",
                    })
                };
                let sent = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await;
                let response = match sent {
                    Ok(r) => r,
                    Err(_) => {
                        // Refused or cut off by the kill: not acknowledged.
                        stats.transport_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                let status = response.status();
                // Only a complete answer counts; a body cut off by the kill does not.
                let Ok(body) = response.json::<Value>().await else {
                    stats.transport_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                match status {
                    StatusCode::CREATED if family => {
                        let booking = &body["booking"]["consultations"];
                        let items = booking.as_array().expect("the booking's consultations");
                        assert_eq!(items.len(), 3, "{body}");
                        stats.families.fetch_add(1, Ordering::Relaxed);
                        let mut acks = acks.lock().unwrap();
                        for c in items {
                            let ack = ack_from(&json!({ "consultation": c }));
                            assert_eq!(ack.patient_id, patient_id, "{body}");
                            acks.push(ack);
                        }
                    }
                    StatusCode::CONFLICT if family => {
                        for (field, want) in conflict_body().as_object().unwrap() {
                            assert_eq!(&body[field], want, "{body}");
                        }
                        assert!(body["item"].is_u64(), "{body}");
                        stats.conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                    StatusCode::CREATED => {
                        let ack = ack_from(&body);
                        assert_eq!(
                            (ack.doctor_id, ack.patient_id, ack.scheduled_at),
                            (doctor_id, patient_id, start),
                            "the 201 answer describes another booking: {body}"
                        );
                        acks.lock().unwrap().push(ack);
                    }
                    StatusCode::CONFLICT => {
                        assert_eq!(seed_fields(&body), conflict_body());
                        stats.conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                    StatusCode::SERVICE_UNAVAILABLE if body["error"] == "unavailable" => {
                        stats.unavailable.fetch_add(1, Ordering::Relaxed);
                    }
                    other => unexpected
                        .lock()
                        .unwrap()
                        .push(format!("{other} for doctor {doctor_id} at {start}: {body}")),
                }
            }
        }));
    }
    // The one deliberate sleep: a random point in the load to pull the plug at.
    let delay = rand::rng().random_range(KILL_AFTER_MS);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    server.kill_hard();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a booking client panicked");
    }
    let unexpected = std::mem::take(&mut *unexpected.lock().unwrap());
    assert!(
        unexpected.is_empty(),
        "unexpected answers under load ({}), e.g.:\n{}\n--- server log (tail) ---\n{}",
        unexpected.len(),
        unexpected[..unexpected.len().min(10)].join("\n"),
        tail(&server.stdout(), 20)
    );
    assert_no_errors_logged(&server);
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    let stats = Arc::try_unwrap(stats).expect("all clients are done");
    (acks, stats)
}

/// Patient tokens, minted once each.
#[derive(Default)]
struct Tokens(HashMap<i64, String>);

impl Tokens {
    fn get(&mut self, patient_id: i64) -> String {
        self.0
            .entry(patient_id)
            .or_insert_with(|| dev_token(Role::Patient, patient_id))
            .clone()
    }
}

/// After a restart: the store and the restarted engine hold every acknowledged booking,
/// and the engine still refuses their slots to someone else.
async fn verify(
    server: &Server,
    client: &reqwest::Client,
    db: &PgPool,
    tokens: &mut Tokens,
    acked: &[Ack],
) {
    verify_store(db, acked).await;

    // Through the API of the restarted process, each with its patient's token.
    // Owned futures (no borrowed closure arguments), so the spawned test body stays Send.
    let checks: Vec<_> = acked
        .iter()
        .map(|ack| {
            let ack = ack.clone();
            let token = tokens.get(ack.patient_id);
            let url = server.url(&format!("/patient/consultations/{}", ack.id));
            let client = client.clone();
            async move {
                let (status, body) = get_json(&client, &url, &token).await;
                let c = &body["consultation"];
                let ok = status == StatusCode::OK
                    && c["status"] == "scheduled"
                    && c["doctor_id"] == ack.doctor_id
                    && c["patient_id"] == ack.patient_id
                    && c["scheduled_at"].is_string()
                    && parse_time(&c["scheduled_at"]) == ack.scheduled_at;
                (!ok).then(|| format!("{ack:?}: {status} {body}"))
            }
        })
        .collect();
    let missing: Vec<String> = futures::stream::iter(checks)
        .buffer_unordered(32)
        .filter_map(|m| async move { m })
        .collect()
        .await;
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged bookings are wrong or missing through the API after the restart, e.g.:\n{}",
        missing.len(),
        acked.len(),
        missing[..missing.len().min(10)].join("\n")
    );

    // A sample of the taken slots, asked for by someone else: each is still a conflict.
    let probe = tokens.get(PROBE_PATIENT);
    let step = (acked.len() / REBOOK_SAMPLE).max(1);
    for ack in acked.iter().step_by(step).take(REBOOK_SAMPLE) {
        let (status, body) = book(server, client, &probe, ack.doctor_id, ack.scheduled_at).await;
        assert_eq!(
            (status, &seed_fields(&body)),
            (StatusCode::CONFLICT, &conflict_body()),
            "booking the acknowledged slot of {ack:?} again after the restart"
        );
    }
}

/// Directly in Postgres: every acknowledged booking is stored as scheduled, and no doctor
/// has two active consultations that overlap in time.
async fn verify_store(db: &PgPool, acked: &[Ack]) {
    let rows: Vec<(i64, i64, i64, DateTime<Utc>, String)> =
        sqlx::query_as("SELECT id, doctor_id, patient_id, scheduled_at, status FROM consultations")
            .fetch_all(db)
            .await
            .expect("cannot read consultations");
    let stored: HashMap<i64, (i64, i64, DateTime<Utc>, String)> = rows
        .into_iter()
        .map(|(id, doctor, patient, at, status)| (id, (doctor, patient, at, status)))
        .collect();
    let wrong: Vec<String> = acked
        .iter()
        .filter_map(|ack| match stored.get(&ack.id) {
            None => Some(format!("{ack:?}: not stored")),
            Some((doctor, patient, at, status))
                if (*doctor, *patient, *at, status.as_str())
                    != (ack.doctor_id, ack.patient_id, ack.scheduled_at, "scheduled") =>
            {
                Some(format!(
                    "{ack:?}: stored as doctor {doctor}, patient {patient}, {at}, {status}"
                ))
            }
            Some(_) => None,
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} acknowledged bookings are missing or wrong in Postgres, e.g.:\n{}",
        wrong.len(),
        acked.len(),
        wrong[..wrong.len().min(10)].join("\n")
    );

    let overlaps = crate::cluster_support::overlapping_active(db).await;
    assert!(
        overlaps.is_empty(),
        "overlapping active consultations (doctor, id, id): {overlaps:?}"
    );

    // Family bookings are whole: three members, each with its scheduled consultation.
    let partial: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT m.booking_id, COUNT(c.id)
           FROM booking_members m
           LEFT JOIN consultations c ON c.id = m.consultation_id AND c.status = 'scheduled'
          GROUP BY m.booking_id
         HAVING COUNT(c.id) <> 3 OR COUNT(*) <> 3
          LIMIT 10",
    )
    .fetch_all(db)
    .await
    .expect("cannot check family bookings");
    assert!(
        partial.is_empty(),
        "family bookings stored in part (booking, consultations): {partial:?}"
    );
}
