//! Multi-patient bookings over HTTP: `POST /patient/bookings` books every item or none;
//! 409 names the conflicting item and keeps the seed's three fields; overlapping items are
//! a 400 naming both; every bound and ill-formed field answers 400 by name; the booking is
//! its booker's only; `Idempotency-Key` answers the first booking, also after a restart;
//! notifications reach the patient and each doctor per consultation; racing bookings are
//! all or nothing on the store.

use std::collections::{BTreeMap, HashSet};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

const BOOKINGS: &str = "/patient/bookings";

fn item(doctor: i64, hour: u32, minute: u32, name: &str) -> Value {
    json!({"doctor_id": doctor, "scheduled_at": tomorrow_at(hour, minute), "consult_mode": "video",
        "patient_name": name, "relation": "child", "reason": "fever since Tuesday"})
}

async fn book_many(app: &TestApp, patient: i64, items: Vec<Value>) -> (StatusCode, Value) {
    app.post(
        BOOKINGS,
        &app.token(Patient, patient),
        json!({ "items": items }),
    )
    .await
}

async fn send_with_key(
    app: &TestApp,
    patient: i64,
    key: &str,
    body: &Value,
) -> (StatusCode, Value) {
    crate::idempotency::send(app, patient, BOOKINGS, key, body).await
}

async fn active_count(app: &TestApp) -> usize {
    app.engine
        .store()
        .active_consultations(None)
        .await
        .expect("active consultations")
        .len()
}

#[tokio::test]
async fn a_multi_booking_books_every_item_for_its_family_members_and_reads_back() {
    let app = TestApp::spawn().await;
    let (d1, d2) = (app.doctor().await, app.doctor().await);
    let (status, body) = book_many(
        &app,
        67,
        vec![
            item(d1, 9, 0, "Ada Okafor"),
            item(d2, 9, 0, "Ben Okafor"),
            json!({"doctor_id": d1, "scheduled_at": tomorrow_at(9, 30), "consult_mode": "whatsapp",
                "patient_name": "  Cy Okafor  "}),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["success"], true);
    let booking = &body["booking"];
    let consultations = booking["consultations"].as_array().unwrap();
    assert_eq!(consultations.len(), 3);
    let id = booking["id"].as_i64().unwrap();
    assert_eq!(consultations[0]["id"].as_i64(), Some(id));
    for (c, (doctor, name)) in
        consultations
            .iter()
            .zip([(d1, "Ada Okafor"), (d2, "Ben Okafor"), (d1, "Cy Okafor")])
    {
        assert_eq!(c["booking_id"], id);
        assert_eq!(c["doctor_id"], doctor);
        assert_eq!(c["patient_id"], 67, "the booker owns it");
        assert_eq!(c["patient_name"], name);
        assert_eq!(c["status"], "scheduled");
        assert!(c["reference"].as_str().unwrap().starts_with("CONS-"));
    }
    assert_eq!(consultations[0]["relation"], "child");
    assert!(
        consultations[2].get("relation").is_none(),
        "no relation given"
    );
    assert_eq!(consultations[2]["session_status"], "not_required");
    assert_eq!(consultations[0]["session_status"], "pending");

    let (status, read) = app
        .get(&format!("{BOOKINGS}/{id}"), &app.token(Patient, 67))
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(
        read["booking"]["consultations"],
        body["booking"]["consultations"]
    );
    // Each consultation is also an ordinary one of the booker, with its booking id.
    let cid = consultations[1]["id"].as_i64().unwrap();
    let (_, one) = app
        .get(
            &format!("/patient/consultations/{cid}"),
            &app.token(Patient, 67),
        )
        .await;
    assert_eq!(one["consultation"]["booking_id"], id);
    assert_eq!(one["consultation"]["patient_name"], "Ben Okafor");
    // A single booking carries `booking_id: null`.
    let (_, single) = app.book(68, d2, tomorrow_at(11, 0)).await;
    assert_eq!(single["consultation"]["booking_id"], Value::Null);
    assert!(single["consultation"].get("patient_name").is_none());
    // The slots are taken for everyone else.
    let (status, _) = app.book(68, d2, tomorrow_at(9, 0)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    app.stop().await;
}

#[tokio::test]
async fn patient_and_each_doctor_are_notified_per_consultation() {
    let app = TestApp::spawn().await;
    let (d1, d2) = (app.doctor().await, app.doctor().await);
    let (status, body) = book_many(
        &app,
        67,
        vec![
            item(d1, 10, 0, "Ada"),
            item(d2, 10, 0, "Ben"),
            item(d2, 10, 30, "Cy"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let scheduled = |inbox: &Value| {
        inbox["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["event"] == "consultation_scheduled")
            .count()
    };
    let (_, patient) = app.get("/notifications", &app.token(Patient, 67)).await;
    assert_eq!(scheduled(&patient), 3, "{patient}");
    let (_, first) = app.get("/notifications", &app.token(Doctor, d1)).await;
    assert_eq!(scheduled(&first), 1, "{first}");
    let (_, second) = app.get("/notifications", &app.token(Doctor, d2)).await;
    assert_eq!(scheduled(&second), 2, "{second}");
    app.stop().await;
}

#[tokio::test]
async fn a_conflicting_item_answers_409_naming_it_and_books_nothing() {
    let app = TestApp::spawn().await;
    let (d1, d2) = (app.doctor().await, app.doctor().await);
    let (status, _) = app.book(5, d2, tomorrow_at(14, 0)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = book_many(
        &app,
        67,
        vec![
            item(d1, 14, 0, "Ada"),
            item(d1, 15, 0, "Ben"),
            item(d2, 14, 0, "Cy"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // The seed's three fields, exactly, plus the item.
    for (field, want) in conflict_body().as_object().unwrap() {
        assert_eq!(&body[field], want, "{field}");
    }
    assert_eq!(body["item"], 2);
    assert_eq!(
        body["errors"],
        json!({"items[2]": [conflict_body()["message"]]})
    );
    assert_eq!(
        active_count(&app).await,
        1,
        "nothing of the booking was stored"
    );
    // Doctor 1 is free again at once.
    let (status, _) = app.book(6, d1, tomorrow_at(14, 0)).await;
    assert_eq!(status, StatusCode::CREATED);
    app.stop().await;
}

#[tokio::test]
async fn rule_violations_and_bad_items_answer_400_by_item_and_field() {
    let app = TestApp::spawn().await;
    let d1 = app.doctor().await; // open 08:00-18:00
    let patient = 67;
    // Overlapping items of one doctor: 400 naming both.
    let (status, body) = book_many(
        &app,
        patient,
        vec![item(d1, 9, 0, "A"), item(d1, 9, 0, "B")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "validation_failed");
    assert_eq!(
        body["errors"],
        json!({"items[1].scheduled_at": ["overlaps items[0] (same doctor and time)"]})
    );
    // A booking rule on one item: its code, with the item.
    let (status, body) = book_many(
        &app,
        patient,
        vec![item(d1, 9, 0, "A"), item(d1, 19, 0, "B")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "outside_availability");
    assert_eq!(body["item"], 1);
    assert!(body["errors"]["items[1]"].is_array(), "{body}");
    // Every ill-formed field at once, by item.
    let (status, body) = book_many(
        &app,
        patient,
        vec![
            json!({"doctor_id": d1, "scheduled_at": tomorrow_at(9, 0), "consult_mode": "fax",
                "patient_name": " "}),
            json!({"doctor_id": d1, "scheduled_at": tomorrow_at(10, 0), "consult_mode": "chat",
                "patient_name": "B", "relation": "x".repeat(51), "reason": "r".repeat(501)}),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let fields: HashSet<&str> = body["errors"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        HashSet::from([
            "items[0].consult_mode",
            "items[0].patient_name",
            "items[1].relation",
            "items[1].reason"
        ])
    );
    // Bounds on the list.
    let (status, body) = book_many(&app, patient, vec![]).await;
    assert_eq!(
        (status, body["errors"]["items"].is_array()),
        (StatusCode::BAD_REQUEST, true)
    );
    let eleven = (0..11)
        .map(|i| item(d1, 8 + i / 2, (i % 2) * 30, "K"))
        .collect();
    let (status, body) = book_many(&app, patient, eleven).await;
    assert_eq!(
        (status, body["errors"]["items"].is_array()),
        (StatusCode::BAD_REQUEST, true)
    );
    // Unknown fields and a missing name are malformed bodies.
    let (status, body) = app
        .post(
            BOOKINGS,
            &app.token(Patient, patient),
            json!({"items": [{"doctor_id": d1, "scheduled_at": tomorrow_at(9, 0), "consult_mode": "chat"}]}),
        )
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("validation_failed"))
    );
    // An unknown doctor: 404, naming the item.
    let (status, body) = book_many(
        &app,
        patient,
        vec![item(d1, 9, 0, "A"), item(9999, 9, 0, "B")],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["item"], 1);
    assert_eq!(
        active_count(&app).await,
        0,
        "nothing was booked by any of these"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_booking_is_its_bookers_only() {
    let app = TestApp::spawn().await;
    let d1 = app.doctor().await;
    let (_, body) = book_many(&app, 67, vec![item(d1, 9, 0, "Ada")]).await;
    let id = body["booking"]["id"].as_i64().unwrap();
    let path = format!("{BOOKINGS}/{id}");
    let (status, body) = app.get(&path, &app.token(Patient, 68)).await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::FORBIDDEN, json!("forbidden"))
    );
    assert!(!body.to_string().contains("Ada"), "no one else's names");
    let (status, _) = app
        .get(&format!("{BOOKINGS}/{}", id + 100), &app.token(Patient, 67))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .get(&format!("{BOOKINGS}/abc"), &app.token(Patient, 67))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for token in [app.token(Doctor, d1), app.token(Admin, 1)] {
        let (status, _) = app.get(&path, &token).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = app
            .post(BOOKINGS, &token, json!({"items": [item(d1, 11, 0, "X")]}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _) = app.call(Method::GET, &path, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_answers_the_first_booking_also_after_a_restart() {
    let app = TestApp::spawn().await;
    let (d1, d2) = (app.doctor().await, app.doctor().await);
    let body = json!({"items": [
        {"doctor_id": d1, "scheduled_at": tomorrow_at(9, 0), "consult_mode": "whatsapp", "patient_name": "Ada"},
        {"doctor_id": d2, "scheduled_at": tomorrow_at(9, 0), "consult_mode": "whatsapp", "patient_name": "Ben"}
    ]});
    let first = send_with_key(&app, 7, "family-1", &body).await;
    assert_eq!(first.0, StatusCode::CREATED, "{}", first.1);
    let again = send_with_key(&app, 7, "family-1", &body).await;
    assert_eq!(again, first);
    assert_eq!(active_count(&app).await, 2);
    let mut other = body.clone();
    other["items"][0]["patient_name"] = json!("Cy");
    let reused = send_with_key(&app, 7, "family-1", &other).await;
    assert_eq!(reused.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.1["error"], "idempotency_key_reused");
    // The same key on the single-booking endpoint is another request.
    let resp = app
        .client
        .post(app.url("/patient/doctors/book"))
        .bearer_auth(app.token(Patient, 7))
        .header("Idempotency-Key", "family-1")
        .json(&json!({"doctor_id": d1, "scheduled_at": tomorrow_at(12, 0), "consult_mode": "chat"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let app = app.restart(true).await;
    let after = send_with_key(&app, 7, "family-1", &body).await;
    assert_eq!(
        after, first,
        "the stored key answers the first booking after a restart"
    );
    assert_eq!(active_count(&app).await, 2, "no second booking");
    app.stop().await;
}

/// Many bookers race for overlapping family bookings and single bookings on two doctors;
/// afterwards every stored booking is whole and matches what was acknowledged.
async fn racing_multi_bookings_are_whole_on_the_store(app: TestApp) {
    let (d1, d2) = (app.doctor().await, app.doctor().await);
    let mut tasks = Vec::new();
    for patient in 0..40_i64 {
        let client = app.client.clone();
        let url = app.url(BOOKINGS);
        let token = app.token(Patient, 1000 + patient);
        // Hours 9 to 16; single bookings contest the first four only, so each of the
        // other four has exactly one winning family booking.
        let hour = 9 + (patient % 8) as u32;
        let body = json!({"items": [item(d1, hour, 0, "A"), item(d2, hour, 0, "B"), item(d2, hour, 30, "C")]});
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap())
        }));
        let (client, url, token) = (
            app.client.clone(),
            app.url("/patient/doctors/book"),
            app.token(Patient, 100 + patient),
        );
        let body = json!({"doctor_id": d2, "scheduled_at": tomorrow_at(9 + (patient % 4) as u32, 30), "consult_mode": "chat"});
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap())
        }));
    }
    let mut acked = HashSet::new();
    let mut multi = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            StatusCode::CREATED => {
                if let Some(cs) = body["booking"]["consultations"].as_array() {
                    multi += 1;
                    acked.extend(cs.iter().map(|c| c["id"].as_i64().unwrap()));
                } else {
                    acked.insert(body["consultation"]["id"].as_i64().unwrap());
                }
            }
            StatusCode::CONFLICT => assert_eq!(body["error"], "time_slot_conflict"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(multi >= 4, "{multi} family bookings won");
    let active = app.engine.store().active_consultations(None).await.unwrap();
    let stored: HashSet<i64> = active.iter().map(|c| c.id).collect();
    assert_eq!(stored, acked, "store == acknowledged");
    let mut bookings: BTreeMap<i64, usize> = BTreeMap::new();
    for c in &active {
        if let Some(m) = &c.member {
            *bookings.entry(m.booking_id).or_default() += 1;
        }
    }
    assert_eq!(bookings.len(), multi);
    assert!(
        bookings.values().all(|n| *n == 3),
        "none partial: {bookings:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn racing_multi_bookings_are_whole_on_sqlite() {
    racing_multi_bookings_are_whole_on_the_store(TestApp::spawn().await).await;
}

#[tokio::test]
async fn racing_multi_bookings_are_whole_on_postgres() {
    let Some(app) = TestApp::spawn_postgres().await else {
        return;
    };
    racing_multi_bookings_are_whole_on_the_store(app).await;
}
