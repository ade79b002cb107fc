//! Rescheduling over HTTP: `POST /patient/consultations/{id}/reschedule` moves a
//! consultation in one decision, so the old slot is free and the new one taken at once; the
//! booking rules, conflicts, ownership and lifecycle answer as documented and leave it where
//! it was; the session is kept, both sides are notified, watchers see both sides, many
//! racing moves into one slot give one winner, and a restart keeps the move.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, FixedOffset, Utc};
use consult_scheduler::engine::calendar::weekday_name;
use consult_scheduler::fake_vonage::FakeVonage;
use consult_scheduler::settings::DEV_VONAGE_PUBLIC_KEY;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::eventually;
use crate::helpers::*;
use crate::watcher::Watcher;

async fn reschedule(
    app: &TestApp,
    patient: i64,
    id: i64,
    to: DateTime<Utc>,
) -> (StatusCode, Value) {
    app.post(
        &format!("/patient/consultations/{id}/reschedule"),
        &app.token(Patient, patient),
        json!({ "scheduled_at": to }),
    )
    .await
}

/// Books `at` as `patient`; answers the consultation's id.
async fn booked(app: &TestApp, patient: i64, doctor: i64, at: DateTime<Utc>) -> i64 {
    let (status, body) = app.book(patient, doctor, at).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["consultation"]["id"].as_i64().unwrap()
}

async fn consultation(app: &TestApp, patient: i64, id: i64) -> Value {
    let (status, body) = app
        .get(
            &format!("/patient/consultations/{id}"),
            &app.token(Patient, patient),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["consultation"].clone()
}

/// The slot's status in the doctor's availability (UTC doctors: the UTC date).
async fn status_at(app: &TestApp, doctor: i64, at: DateTime<Utc>) -> String {
    let path = format!(
        "/patient/doctors/{doctor}/availability?from={}&days=1",
        at.date_naive()
    );
    let (status, body) = app.get(&path, &app.token(Patient, 999)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["days"][0]["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["start"] == json!(at))
        .map(|s| s["status"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no slot at {at}"))
}

fn scheduled_at(c: &Value) -> DateTime<Utc> {
    c["scheduled_at"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_reschedule_moves_the_consultation_frees_the_old_slot_at_once_and_takes_the_new_one() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let (from, to) = (tomorrow_at(9, 0), tomorrow_at(15, 30));
    let (status, created) = app.book(7, doctor, from).await;
    assert_eq!(status, StatusCode::CREATED);
    let before = created["consultation"].clone();
    let id = before["id"].as_i64().unwrap();

    // Any offset is accepted; the answer is in UTC.
    let plus_two = to.with_timezone(&FixedOffset::east_opt(2 * 3600).unwrap());
    let (status, moved) = app
        .post(
            &format!("/patient/consultations/{id}/reschedule"),
            &app.token(Patient, 7),
            json!({ "scheduled_at": plus_two.to_rfc3339() }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["success"], true);
    let after = &moved["consultation"];
    assert_eq!(scheduled_at(after), to);
    for same in [
        "id",
        "reference",
        "doctor_id",
        "patient_id",
        "duration_minutes",
        "status",
        "consultation_mode",
        "consult_mode",
        "created_at",
    ] {
        assert_eq!(after[same], before[same], "{same} is kept");
    }
    assert_eq!(scheduled_at(&consultation(&app, 7, id).await), to);

    // The old slot is bookable by someone else at once; the new one is not.
    assert_eq!(status_at(&app, doctor, from).await, "available");
    assert_eq!(status_at(&app, doctor, to).await, "booked");
    assert_eq!(app.book(8, doctor, from).await.0, StatusCode::CREATED);
    let (status, body) = app.book(9, doctor, to).await;
    assert_eq!(
        (status, seed_fields(&body)),
        (StatusCode::CONFLICT, conflict_body())
    );
    let (_, list) = app
        .get("/patient/consultations", &app.token(Patient, 7))
        .await;
    assert_eq!(
        list["consultations"].as_array().unwrap().len(),
        1,
        "moved, not copied"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_patients_own_hold_on_the_new_slot_is_used_up_by_the_reschedule() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let (from, to) = (tomorrow_at(9, 0), tomorrow_at(12, 0));
    let id = booked(&app, 7, doctor, from).await;
    let (status, _) = app
        .post(
            "/patient/doctors/check-slot",
            &app.token(Patient, 7),
            json!({"doctor_id": doctor, "scheduled_at": to, "hold": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(status_at(&app, doctor, to).await, "held");
    assert_eq!(reschedule(&app, 7, id, to).await.0, StatusCode::OK);
    assert_eq!(status_at(&app, doctor, to).await, "booked");
    let seen = app.engine.observe(doctor).await.unwrap();
    assert!(seen.live_holds.is_empty(), "{:?}", seen.live_holds);
    app.stop().await;
}

#[tokio::test]
async fn a_sixty_minute_consultation_can_move_by_half_an_hour_over_its_own_slot() {
    let app = TestApp::spawn().await;
    let doctor = app
        .doctor_with(
            json!({"name": "Dr. Long", "specialty": "Psychiatry", "timezone": "UTC",
            "slot_minutes": 60, "availability_schedule": every_day("08:00", "18:00")}),
        )
        .await;
    let id = booked(&app, 7, doctor, tomorrow_at(10, 0)).await;
    let (status, body) = app
        .call(
            Method::PUT,
            "/doctor/availability",
            Some(&app.token(Doctor, doctor)),
            Some(json!({"slot_minutes": 30, "availability_schedule": every_day("08:00", "18:00")})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, moved) = reschedule(&app, 7, id, tomorrow_at(10, 30)).await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["consultation"]["duration_minutes"], 60);
    for (at, want) in [
        (tomorrow_at(10, 0), "available"),
        (tomorrow_at(10, 30), "booked"),
        (tomorrow_at(11, 0), "booked"),
        (tomorrow_at(11, 30), "available"),
    ] {
        assert_eq!(status_at(&app, doctor, at).await, want, "{at}");
    }
    app.stop().await;
}

#[tokio::test]
async fn every_booking_rule_applies_to_the_new_time_and_a_400_leaves_the_consultation_where_it_was()
{
    let app = TestApp::spawn().await;
    // Open every day but the day after tomorrow.
    let closed_day = (tomorrow_at(0, 0) + Duration::days(1)).weekday();
    let mut schedule = every_day("08:00", "18:00");
    schedule[weekday_name(closed_day)]["enabled"] = json!(false);
    let doctor = app
        .doctor_with(
            json!({"name": "Dr. Rules", "specialty": "GP", "timezone": "UTC",
            "availability_schedule": schedule}),
        )
        .await;
    let from = tomorrow_at(9, 0);
    let id = booked(&app, 7, doctor, from).await;
    let yesterday = tomorrow_at(10, 0) - Duration::days(2);
    let cases = [
        (
            tomorrow_at(10, 0) + Duration::days(1),
            "day_unavailable",
            "Doctor is not available on this day",
        ),
        (
            tomorrow_at(7, 30),
            "outside_availability",
            "The requested time is outside the doctor's availability",
        ),
        (
            tomorrow_at(18, 0),
            "outside_availability",
            "The requested time is outside the doctor's availability",
        ),
        (
            tomorrow_at(10, 15),
            "off_slot_grid",
            "The requested time is not on the doctor's slot grid",
        ),
        (
            tomorrow_at(10, 0) + Duration::seconds(30),
            "off_slot_grid",
            "The requested time is not on the doctor's slot grid",
        ),
        (
            yesterday,
            "in_past",
            "The requested time must be in the future",
        ),
    ];
    for (to, code, message) in cases {
        let (status, body) = reschedule(&app, 7, id, to).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{to}: {body}");
        assert_eq!(
            body,
            json!({"success": false, "message": message, "error": code}),
            "{to}"
        );
    }
    // Its own time: a validation failure naming the field.
    let (status, body) = reschedule(&app, 7, id, from).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "validation_failed");
    assert_eq!(
        body["errors"]["scheduled_at"],
        json!(["is the consultation's current time"])
    );
    // Bad bodies.
    let path = format!("/patient/consultations/{id}/reschedule");
    let patient = app.token(Patient, 7);
    for (bad, field) in [
        (json!({}), "body"),
        (json!({"scheduled_at": "tomorrow"}), "scheduled_at"),
        (
            json!({"scheduled_at": tomorrow_at(11, 0), "doctor_id": doctor}),
            "doctor_id",
        ),
    ] {
        let (status, body) = app.post(&path, &patient, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"], "validation_failed", "{bad}");
        assert!(body["errors"].get(field).is_some(), "{bad}: {body}");
    }
    // The doctor switched bookings off.
    let doctor_token = app.token(Doctor, doctor);
    let switch = |on: bool| {
        app.call(
            Method::PATCH,
            "/doctor/status",
            Some(&doctor_token),
            Some(json!({ "is_available": on })),
        )
    };
    assert_eq!(switch(false).await.0, StatusCode::OK);
    let (status, body) = reschedule(&app, 7, id, tomorrow_at(11, 0)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("doctor_unavailable"))
    );
    assert_eq!(switch(true).await.0, StatusCode::OK);

    assert_eq!(scheduled_at(&consultation(&app, 7, id).await), from);
    assert_eq!(status_at(&app, doctor, from).await, "booked");
    app.stop().await;
}

#[tokio::test]
async fn only_the_own_patient_may_reschedule_unknown_ids_are_404_and_inactive_ones_409() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let from = tomorrow_at(9, 0);
    let id = booked(&app, 7, doctor, from).await;
    let path = format!("/patient/consultations/{id}/reschedule");
    let body = json!({ "scheduled_at": tomorrow_at(11, 0) });

    let (status, answer) = app.post(&path, &app.token(Patient, 8), body.clone()).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    for token in [app.token(Doctor, doctor), app.token(Admin, 1)] {
        let (status, _) = app.post(&path, &token, body.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "patients only");
    }
    let (status, _) = app
        .call(Method::POST, &path, None, Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(scheduled_at(&consultation(&app, 7, id).await), from);

    let (status, answer) = reschedule(&app, 7, 999_999, tomorrow_at(11, 0)).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, answer) = app
        .post(
            "/patient/consultations/abc/reschedule",
            &app.token(Patient, 7),
            body.clone(),
        )
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("validation_failed"))
    );

    let (status, _) = app
        .post(
            &format!("/patient/consultations/{id}/cancel"),
            &app.token(Patient, 7),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = reschedule(&app, 7, id, tomorrow_at(11, 0)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        answer,
        json!({"success": false, "message": "This consultation can no longer be rescheduled",
            "error": "not_reschedulable"})
    );
    let after = consultation(&app, 7, id).await;
    assert_eq!(
        (after["status"].as_str(), scheduled_at(&after)),
        (Some("cancelled"), from)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_conflicting_reschedule_answers_the_seed_409_and_leaves_the_consultation_where_it_was() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let (mine, theirs, held) = (tomorrow_at(9, 0), tomorrow_at(11, 0), tomorrow_at(12, 0));
    let id = booked(&app, 7, doctor, mine).await;
    booked(&app, 8, doctor, theirs).await;
    let (status, _) = app
        .post(
            "/patient/doctors/check-slot",
            &app.token(Patient, 9),
            json!({"doctor_id": doctor, "scheduled_at": held, "hold": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for to in [theirs, held] {
        let (status, body) = reschedule(&app, 7, id, to).await;
        assert_eq!(
            (status, seed_fields(&body)),
            (StatusCode::CONFLICT, conflict_body()),
            "{to}"
        );
    }
    assert_eq!(scheduled_at(&consultation(&app, 7, id).await), mine);
    assert_eq!(status_at(&app, doctor, mine).await, "booked");
    assert_eq!(status_at(&app, doctor, theirs).await, "booked");
    assert_eq!(status_at(&app, doctor, held).await, "held");
    let (status, body) = app.book(10, doctor, mine).await;
    assert_eq!(
        (status, seed_fields(&body)),
        (StatusCode::CONFLICT, conflict_body())
    );
    app.stop().await;
}

#[tokio::test]
async fn both_sides_find_the_reschedule_in_their_inbox_with_the_new_time() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let to = tomorrow_at(16, 0);
    let id = booked(&app, 7, doctor, tomorrow_at(9, 0)).await;
    assert_eq!(reschedule(&app, 7, id, to).await.0, StatusCode::OK);
    for token in [app.token(Patient, 7), app.token(Doctor, doctor)] {
        let (status, inbox) = app.get("/notifications", &token).await;
        assert_eq!(status, StatusCode::OK, "{inbox}");
        // Session notifications may arrive in between; the consultation's own, newest first.
        let events: Vec<(&str, &Value)> = inbox["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["event"].as_str().unwrap().starts_with("consultation_"))
            .map(|n| (n["event"].as_str().unwrap(), &n["consultation"]))
            .collect();
        let kinds: Vec<&str> = events.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            ["consultation_rescheduled", "consultation_scheduled"]
        );
        let c = events[0].1;
        assert_eq!(c["id"], id);
        assert_eq!(scheduled_at(c), to);
        assert!(c.get("reason").is_none(), "no medical text");
    }
    app.stop().await;
}

fn claims(token: &str) -> Value {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_rsa_pem(DEV_VONAGE_PUBLIC_KEY.as_bytes()).unwrap(),
        &validation,
    )
    .expect("token verifies")
    .claims
}

#[tokio::test]
async fn a_rescheduled_consultation_keeps_its_session_and_its_tokens_cover_the_new_time() {
    let fake = FakeVonage::start(
        "127.0.0.1:0".parse().unwrap(),
        DEV_VONAGE_PUBLIC_KEY,
        Some("29f760f8-7ce1-46c9-ade3-f2dedee4ed5f".into()),
    )
    .await
    .expect("fake vonage starts");
    let key = format!(
        "{}/config/dev/vonage-private.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let base = fake.base_url();
    let app = TestApp::spawn_sqlite_with(&[
        ("CONSULT__SESSIONS__PROVIDER", "vonage"),
        (
            "CONSULT__SESSIONS__APPLICATION_ID",
            "29f760f8-7ce1-46c9-ade3-f2dedee4ed5f",
        ),
        ("CONSULT__SESSIONS__PRIVATE_KEY_PATH", &key),
        ("CONSULT__SESSIONS__VIDEO_BASE_URL", &base),
        ("CONSULT__SESSIONS__API_BASE_URL", &base),
        ("CONSULT__SESSIONS__WORKER__POLL_INTERVAL_MS", "100"),
    ])
    .await;
    let doctor = app.doctor().await;
    let patient = app.token(Patient, 7);
    let mut ids = Vec::new();
    for (hour, mode) in [(9, "video"), (10, "chat")] {
        let (status, body) = app
            .post(
                "/patient/doctors/book",
                &patient,
                json!({"doctor_id": doctor, "scheduled_at": tomorrow_at(hour, 0), "consult_mode": mode}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(body["consultation"]["id"].as_i64().unwrap());
    }
    let session = |id: i64| {
        let app = &app;
        let patient = patient.clone();
        async move {
            eventually(|| async {
                let (status, body) = app
                    .get(&format!("/patient/consultations/{id}/session"), &patient)
                    .await;
                assert_eq!(status, StatusCode::OK, "{body}");
                (body["session_status"] == "ready").then_some(body["session"].clone())
            })
            .await
        }
    };
    let before = [session(ids[0]).await, session(ids[1]).await];

    // A day later: past the old tokens' expiry (old end + 1 h grace).
    let moved_to = [
        tomorrow_at(9, 0) + Duration::days(1),
        tomorrow_at(10, 0) + Duration::days(1),
    ];
    for (id, to) in ids.iter().zip(moved_to) {
        let (status, body) = reschedule(&app, 7, *id, to).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["consultation"]["session_status"], "ready");
    }
    let after = [session(ids[0]).await, session(ids[1]).await];
    assert_eq!(
        after[0]["session_id"], before[0]["session_id"],
        "same video session"
    );
    assert_eq!(
        after[1]["conversation_id"], before[1]["conversation_id"],
        "same conversation"
    );
    assert_eq!(
        fake.counts().video_sessions,
        1,
        "no second session was made"
    );
    assert_eq!(fake.conversations().len(), 1);
    for (join, to) in after.iter().zip(moved_to) {
        let expires: DateTime<Utc> = join["expires_at"].as_str().unwrap().parse().unwrap();
        let end = to + Duration::minutes(30);
        assert_eq!(
            expires,
            end + Duration::hours(1),
            "the new end plus the grace"
        );
        assert_eq!(
            claims(join["token"].as_str().unwrap())["exp"].as_i64(),
            Some(expires.timestamp())
        );
    }
    // The doctor's side follows too.
    let (_, d) = app
        .get(
            &format!("/doctor/consultations/{}/session", ids[0]),
            &app.token(Doctor, doctor),
        )
        .await;
    let expires: DateTime<Utc> = d["session"]["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(expires, moved_to[0] + Duration::minutes(90));
    assert_eq!(d["session"]["session_id"], before[0]["session_id"]);
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_watcher_sees_a_reschedule_as_the_start_left_available_then_the_start_taken_booked() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let mut w = Watcher::open(&app, doctor, &app.token(Patient, 67), None).await;
    w.expect("ready", None).await;
    let (from, to) = (tomorrow_at(9, 0), tomorrow_at(11, 0));
    let id = booked(&app, 68, doctor, from).await;
    w.expect("booked", Some(from)).await;
    assert_eq!(reschedule(&app, 68, id, to).await.0, StatusCode::OK);
    let left = w.expect("rescheduled", Some(from)).await;
    let taken = w.expect("rescheduled", Some(to)).await;
    assert_eq!(left.data["status"], "available");
    assert_eq!(taken.data["status"], "booked");
    for e in [&left, &taken] {
        let keys: Vec<&String> = e.data.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["doctor_id", "start", "status"], "never a patient");
    }
    // One journal record: one sequence number, two positions in it.
    let (seq_left, n_left) = left.id.split_once('.').unwrap();
    let (seq_taken, n_taken) = taken.id.split_once('.').unwrap();
    assert_eq!(seq_left, seq_taken);
    assert_eq!(
        n_taken.parse::<u32>().unwrap(),
        n_left.parse::<u32>().unwrap() + 1
    );
    app.stop().await;
}

/// 50 patients each move their own consultation into the same free slot at once: one 200,
/// 49 exact 409s. After a restart on the same database the store holds every consultation
/// exactly once, active, none overlapping, the winner at the slot and the others where they
/// were.
async fn fifty_concurrent_reschedules_into_one_free_slot(app: TestApp) {
    let doctor = app
        .doctor_with(
            json!({"name": "Dr. Busy", "specialty": "GP", "timezone": "UTC",
            "availability_schedule": every_day("00:00", "24:00")}),
        )
        .await;
    let slot = |k: i64| tomorrow_at(0, 0) + Duration::minutes(30 * k);
    let target = slot(60);
    let mut consultations = Vec::new();
    for k in 0..50 {
        let patient = 1_000 + k;
        consultations.push((
            patient,
            booked(&app, patient, doctor, slot(k)).await,
            slot(k),
        ));
    }
    let app = Arc::new(app);
    let barrier = Arc::new(tokio::sync::Barrier::new(consultations.len()));
    let tasks: Vec<_> = consultations
        .iter()
        .map(|&(patient, id, _)| {
            let app = Arc::clone(&app);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                (id, reschedule(&app, patient, id, target).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        let (id, (status, body)) = t.await.unwrap();
        match status {
            StatusCode::OK => winners.push(id),
            StatusCode::CONFLICT => {
                assert_eq!(seed_fields(&body), conflict_body());
                conflicts += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((winners.len(), conflicts), (1, 49));
    let app = Arc::into_inner(app).expect("tasks done");

    let app = app.restart(false).await;
    let active = app
        .engine
        .store()
        .active_consultations(Some(doctor))
        .await
        .unwrap();
    let ids: Vec<i64> = active.iter().map(|c| c.id).collect();
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), 50, "each consultation exactly once");
    assert_eq!(
        unique,
        consultations.iter().map(|c| c.1).collect::<HashSet<_>>()
    );
    for pair in active.windows(2) {
        let end = pair[0].scheduled_at + Duration::minutes(i64::from(pair[0].duration_minutes));
        assert!(
            end <= pair[1].scheduled_at,
            "{} overlaps {}",
            pair[0].id,
            pair[1].id
        );
    }
    for (_, id, at) in &consultations {
        let c = active.iter().find(|c| c.id == *id).unwrap();
        let want = if *id == winners[0] { target } else { *at };
        assert_eq!(c.scheduled_at, want, "consultation {id}");
    }
    // The restarted actor agrees with the store.
    let seen = app.engine.observe(doctor).await.unwrap();
    let mut in_memory: Vec<(i64, DateTime<Utc>)> =
        seen.active.iter().map(|s| (s.id, s.start)).collect();
    let mut stored: Vec<(i64, DateTime<Utc>)> =
        active.iter().map(|c| (c.id, c.scheduled_at)).collect();
    in_memory.sort();
    stored.sort();
    assert_eq!(in_memory, stored);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_reschedules_into_one_free_slot_on_sqlite_give_one_200_and_49_exact_409s()
{
    fifty_concurrent_reschedules_into_one_free_slot(TestApp::spawn().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_reschedules_into_one_free_slot_on_postgres_give_one_200_and_49_exact_409s(
) {
    let Some(app) = TestApp::spawn_postgres().await else {
        return;
    };
    fifty_concurrent_reschedules_into_one_free_slot(app).await;
}

#[tokio::test]
async fn a_reschedule_survives_a_restart_of_the_app_with_and_without_snapshots() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let (from, to) = (tomorrow_at(9, 0), tomorrow_at(13, 0));
    let id = booked(&app, 7, doctor, from).await;
    assert_eq!(reschedule(&app, 7, id, to).await.0, StatusCode::OK);
    let mut app = app;
    for delete_snapshots in [false, true] {
        app = app.restart(delete_snapshots).await;
        assert_eq!(scheduled_at(&consultation(&app, 7, id).await), to);
        assert_eq!(status_at(&app, doctor, from).await, "available");
        assert_eq!(status_at(&app, doctor, to).await, "booked");
        let seen = app.engine.observe(doctor).await.unwrap();
        assert_eq!(
            seen.active
                .iter()
                .map(|s| (s.id, s.start))
                .collect::<Vec<_>>(),
            [(id, to)]
        );
        let (status, body) = app.book(8, doctor, to).await;
        assert_eq!(
            (status, seed_fields(&body)),
            (StatusCode::CONFLICT, conflict_body())
        );
        // A plain check of the old start passes; nothing is booked there.
        let (status, body) = app
            .post(
                "/patient/doctors/check-slot",
                &app.token(Patient, 8),
                json!({"doctor_id": doctor, "scheduled_at": from}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // Booked after both restarts, the old start is someone else's.
    assert_eq!(app.book(8, doctor, from).await.0, StatusCode::CREATED);
    app.stop().await;
}
