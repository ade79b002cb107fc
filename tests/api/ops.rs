//! Health, readiness, metrics, the OpenAPI document, the index page and request ids.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn health_readiness_index_and_request_ids() {
    let app = TestApp::spawn().await;
    let resp = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let id = resp
        .headers()
        .get("x-request-id")
        .expect("request id")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!id.is_empty());
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "ok");
    let (status, body) = app.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, "ready".into())
    );
    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text().await.unwrap().contains("Consult Scheduler"));
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_bookings_by_outcome_and_expose_journal_histograms() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let at = tomorrow_at(9, 0);
    app.book(1, doctor, at).await;
    app.book(2, doctor, at).await;
    app.book(2, doctor, at - chrono::Duration::days(3)).await;
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |line_start: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(value(r#"consult_bookings_total{outcome="booked"}"#), 1.0);
    assert_eq!(value(r#"consult_bookings_total{outcome="conflict"}"#), 1.0);
    assert_eq!(value(r#"consult_bookings_total{outcome="rejected"}"#), 1.0);
    assert_eq!(value("consult_booking_duration_seconds_count"), 3.0);
    assert!(value("consult_journal_batch_size_records_count") >= 1.0);
    assert!(value("consult_journal_flush_duration_seconds_count") >= 1.0);
    assert!(value(r#"consult_journal_batch_size_records_bucket{le="+Inf"}"#) >= 1.0);
    assert_eq!(value("consult_engine_active_actors"), 1.0);
    // Every booking was answered, so none waits for the journal.
    assert_eq!(value("consult_journal_waiting_records"), 0.0);
    // The scrape itself is in flight.
    assert_eq!(value("consult_http_requests_in_flight"), 1.0);
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_covers_every_endpoint_of_the_contract() {
    let app = TestApp::spawn().await;
    let (status, doc) = app
        .call(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/patient/doctors", "get"),
        ("/patient/doctors/{id}/availability", "get"),
        ("/patient/doctors/check-slot", "post"),
        ("/patient/doctors/book", "post"),
        ("/patient/consultations", "get"),
        ("/patient/consultations/{id}", "get"),
        ("/patient/consultations/{id}/cancel", "post"),
        ("/patient/consultations/{id}/reschedule", "post"),
        ("/doctor/availability", "get"),
        ("/doctor/availability", "put"),
        ("/doctor/status", "patch"),
        ("/doctor/consultations", "get"),
        ("/admin/doctors", "post"),
        ("/admin/doctors", "get"),
        ("/admin/doctors/{id}/approve", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/patient/doctors/{id}/availability/stream", "get"),
        ("/patient/consultations/{id}/calendar.ics", "get"),
        ("/doctor/profile", "get"),
        ("/patient/doctors/{id}/hold", "delete"),
        ("/dev/sign-in", "post"),
        ("/dev/users", "get"),
        ("/doctor/slots/{start}/history", "get"),
        ("/admin/doctors/{id}/slots/{start}/history", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
    let book = &doc["components"]["schemas"]["BookRequest"]["properties"];
    for field in ["doctor_id", "scheduled_at", "consult_mode", "reason"] {
        assert!(book[field].is_object(), "BookRequest.{field}");
    }
    assert!(
        doc["components"]["schemas"]["RescheduleRequest"]["properties"]["scheduled_at"].is_object(),
        "RescheduleRequest.scheduled_at"
    );
    let reschedule = &doc["paths"]["/patient/consultations/{id}/reschedule"]["post"]["responses"];
    for status in ["200", "400", "401", "403", "404", "409", "503"] {
        assert!(
            reschedule[status].is_object(),
            "reschedule answers {status}"
        );
    }
    let consultation = &doc["components"]["schemas"]["ConsultationDto"]["properties"];
    for field in [
        "id",
        "reference",
        "status",
        "consultation_mode",
        "consult_mode",
        "session_status",
    ] {
        assert!(consultation[field].is_object(), "ConsultationDto.{field}");
    }
    let history = &doc["components"]["schemas"]["SlotHistoryAnswer"]["properties"];
    for field in ["doctor_id", "start", "events", "truncated", "now"] {
        assert!(history[field].is_object(), "SlotHistoryAnswer.{field}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    app.stop().await;
}

/// What schemathesis found undeclared (404 for an unknown doctor named in a body, a 503
/// from admission on any operation) is declared, each error with the error body; the
/// served `days` bound follows the configured `engine.max_availability_days`; and a time of
/// day with a sign (`+9:00`), which the document's `HH:MM` pattern refuses, is refused by
/// the server too.
#[tokio::test]
async fn the_openapi_document_declares_what_the_server_answers() {
    let app = TestApp::spawn_sqlite_with(&[("CONSULT__ENGINE__MAX_AVAILABILITY_DAYS", "14")]).await;
    let (status, doc) = app
        .call(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let responses = &op["responses"];
            for status in ["431", "503"] {
                assert_eq!(
                    responses[status]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} declares {status} with the error body"
                );
            }
            for (status, answer) in responses.as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        answer["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    assert!(operations >= 30, "{operations} operations");

    // An unknown doctor named in the body: 404, declared.
    let patient = app.token(Patient, 67);
    let at = tomorrow_at(9, 0);
    for (path, body) in [
        (
            "/patient/doctors/book",
            json!({"doctor_id": 999_999, "scheduled_at": at, "consult_mode": "video"}),
        ),
        (
            "/patient/doctors/check-slot",
            json!({"doctor_id": 999_999, "scheduled_at": at}),
        ),
    ] {
        let (status, answer) = app.post(path, &patient, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {answer}");
        assert_eq!(answer["error"], "not_found");
        assert!(
            doc["paths"][path]["post"]["responses"]["404"].is_object(),
            "{path} declares 404"
        );
    }

    // `days` as configured, in the document and at the server.
    for path in ["/patient/doctors/{id}/availability", "/doctor/availability"] {
        let days = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "days")
            .unwrap();
        assert_eq!(days["schema"]["minimum"], 1, "{path}");
        assert_eq!(days["schema"]["maximum"], 14, "{path}");
    }
    let doctor = app.doctor().await;
    for (days, expected) in [(14, StatusCode::OK), (15, StatusCode::BAD_REQUEST)] {
        let (status, body) = app
            .get(
                &format!("/patient/doctors/{doctor}/availability?days={days}"),
                &patient,
            )
            .await;
        assert_eq!(status, expected, "days={days}: {body}");
    }

    // A signed hour parses as a number but is not `HH:MM`: refused, naming the field.
    let mut week = every_day("08:00", "18:00");
    week["monday"]["start"] = json!("+9:00");
    let (status, body) = app
        .call(
            reqwest::Method::PUT,
            "/doctor/availability",
            Some(&app.token(Doctor, doctor)),
            Some(json!({ "availability_schedule": week })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["errors"]["availability_schedule.monday.start"].is_array(),
        "{body}"
    );
    app.stop().await;
}
