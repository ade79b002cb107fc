//! Hostile and broken clients: NUL bytes and control characters in every string field,
//! invalid UTF-8, deeply nested JSON, numbers out of range, duplicated keys, huge headers.
//! Each answers a clear 4xx, never a 5xx, and nothing is stored. On SQLite and on
//! Postgres (whose text type cannot hold a NUL byte at all).

use consult_scheduler::http::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

/// Every string field a client can write, as (method, path, role, body, field).
fn writes(doctor: i64, at: &str) -> Vec<(Method, String, Role, Value, &'static str)> {
    let book = |field: &'static str, value: &str| {
        let mut body = json!({"doctor_id": doctor, "scheduled_at": at, "consult_mode": "chat"});
        body[field] = json!(value);
        (
            Method::POST,
            "/patient/doctors/book".to_owned(),
            Patient,
            body,
            field,
        )
    };
    let family = |field: &'static str, value: &str| {
        let mut item = json!({"doctor_id": doctor, "scheduled_at": at, "consult_mode": "chat",
            "patient_name": "Ada Okafor", "relation": "child"});
        item[field] = json!(value);
        (
            Method::POST,
            "/patient/bookings".to_owned(),
            Patient,
            json!({"items": [item]}),
            field,
        )
    };
    let new_doctor = |field: &'static str, value: &str| {
        let mut body = json!({"name": "Dr. Hostile", "specialty": "General practice",
            "timezone": "UTC"});
        body[field] = json!(value);
        (
            Method::POST,
            "/admin/doctors".to_owned(),
            Admin,
            body,
            field,
        )
    };
    let mut out = Vec::new();
    for value in ["A\u{0}B", "\u{0}", "line\u{1b}[31mred", "bell\u{7}"] {
        for field in [
            "reason",
            "symptoms",
            "medical_history",
            "allergies",
            "current_medications",
        ] {
            out.push(book(field, value));
            out.push(family(field, value));
        }
        out.push(book("consult_mode", value));
        out.push(book("scheduled_at", value));
        out.push(family("patient_name", value));
        out.push(family("relation", value));
        out.push(new_doctor("name", value));
        out.push(new_doctor("specialty", value));
        out.push(new_doctor("timezone", value));
        out.push((
            Method::PUT,
            "/doctor/availability".to_owned(),
            Doctor,
            json!({"timezone": value}),
            "timezone",
        ));
        out.push((
            Method::POST,
            "/patient/consultations/1/reschedule".to_owned(),
            Patient,
            json!({"scheduled_at": value}),
            "scheduled_at",
        ));
        out.push((
            Method::POST,
            "/patient/doctors/check-slot".to_owned(),
            Patient,
            json!({"doctor_id": doctor, "scheduled_at": value}),
            "scheduled_at",
        ));
    }
    out
}

async fn control_characters_in_every_string_field(app: TestApp) {
    let doctor = app.doctor().await;
    let at = tomorrow_at(9, 0).to_rfc3339();
    let doctors_before = app.engine.store().list_doctors().await.unwrap().len();
    for (method, path, role, body, field) in writes(doctor, &at) {
        let sub = if role == Doctor { doctor } else { 67 };
        let token = app.token(role, sub);
        let (status, answer) = app
            .call(method.clone(), &path, Some(&token), Some(body.clone()))
            .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {path} with a control character in {field}: {answer}"
        );
        assert_eq!(
            answer["error"], "validation_failed",
            "{method} {path}: {answer}"
        );
        assert!(
            answer["errors"].to_string().contains(field),
            "{method} {path}: the error names {field}: {answer}"
        );
    }
    let active = app.engine.store().active_consultations(None).await.unwrap();
    assert!(active.is_empty(), "nothing was booked: {active:?}");
    let doctors = app.engine.store().list_doctors().await.unwrap().len();
    assert_eq!(doctors, doctors_before, "no doctor was created");
    // Plain text, tabs and line breaks are fine.
    let token = app.token(Patient, 67);
    let (status, created) = app
        .post(
            "/patient/doctors/book",
            &token,
            json!({"doctor_id": doctor, "scheduled_at": at, "consult_mode": "chat",
                "reason": "Fever\tsince Tuesday\r\nand a cough", "symptoms": "Müdigkeit, 头痛"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    app.stop().await;
}

#[tokio::test]
async fn control_characters_in_any_string_field_are_400_on_sqlite() {
    control_characters_in_every_string_field(TestApp::spawn().await).await;
}

#[tokio::test]
async fn control_characters_in_any_string_field_are_400_on_postgres() {
    let Some(app) = TestApp::spawn_postgres().await else {
        return;
    };
    control_characters_in_every_string_field(app).await;
}

/// Raw bodies no JSON parser should take, and numbers no id can be.
#[tokio::test]
async fn malformed_json_bodies_are_400_naming_the_body_or_field() {
    let app = TestApp::spawn().await;
    let doctor = app.doctor().await;
    let at = tomorrow_at(9, 0).to_rfc3339();
    let token = app.token(Patient, 67);
    let nested = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    let deep_object = format!(
        r#"{{"doctor_id": {doctor}, "scheduled_at": "{at}", "consult_mode": "chat", "reason": {}1{}}}"#,
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        (
            "invalid UTF-8",
            [
                br#"{"doctor_id": 1, "scheduled_at": ""#.as_slice(),
                b"\xff\xfe",
                br#"", "consult_mode": "chat"}"#,
            ]
            .concat(),
        ),
        ("deeply nested arrays", nested.into_bytes()),
        ("deeply nested field", deep_object.into_bytes()),
        (
            "duplicated key",
            format!(
                r#"{{"doctor_id": {doctor}, "doctor_id": {doctor}, "scheduled_at": "{at}", "consult_mode": "chat"}}"#
            )
            .into_bytes(),
        ),
        (
            "id beyond i64",
            format!(r#"{{"doctor_id": 9223372036854775808, "scheduled_at": "{at}", "consult_mode": "chat"}}"#)
                .into_bytes(),
        ),
        (
            "huge float id",
            format!(r#"{{"doctor_id": 1e300, "scheduled_at": "{at}", "consult_mode": "chat"}}"#)
                .into_bytes(),
        ),
        (
            "negative id",
            format!(r#"{{"doctor_id": -1, "scheduled_at": "{at}", "consult_mode": "chat"}}"#)
                .into_bytes(),
        ),
        (
            "year 10000",
            format!(r#"{{"doctor_id": {doctor}, "scheduled_at": "+10000-01-01T00:00:00Z", "consult_mode": "chat"}}"#)
                .into_bytes(),
        ),
        ("a bare string", br#""book""#.to_vec()),
        ("trailing garbage", format!(r#"{{"doctor_id": {doctor}, "scheduled_at": "{at}", "consult_mode": "chat"}} x"#).into_bytes()),
        ("NUL byte outside a string", b"{\"doctor_id\": 1\x00}".to_vec()),
    ];
    for (what, body) in bodies {
        let resp = app
            .client
            .post(app.url("/patient/doctors/book"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{what}: {status} {answer}"
        );
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: the error body: {answer}"
        );
    }
    let active = app.engine.store().active_consultations(None).await.unwrap();
    assert!(active.is_empty(), "nothing was booked: {active:?}");
    app.stop().await;
}

/// Oversized headers are refused before any handler runs (431, or the connection closed by
/// the HTTP parser); the server stays up.
#[tokio::test]
async fn huge_headers_are_refused_and_the_server_stays_up() {
    let app = TestApp::spawn().await;
    let token = app.token(Patient, 67);
    let padded = app
        .client
        .get(app.url("/patient/doctors"))
        .header("x-padding", "a".repeat(40_000))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(padded.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let body: Value = padded.json().await.unwrap();
    assert_eq!(body["error"], "headers_too_large");
    let huge_token = app
        .client
        .get(app.url("/patient/doctors"))
        .bearer_auth("a".repeat(100_000))
        .send()
        .await
        .unwrap();
    assert_eq!(
        huge_token.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    // Past the parser's own bounds (a megabyte, or 500 headers): refused, or cut off.
    let megabyte = app
        .client
        .get(app.url("/patient/doctors"))
        .header("x-padding", "a".repeat(1 << 20))
        .send()
        .await;
    if let Ok(resp) = megabyte {
        assert!(resp.status().is_client_error(), "{}", resp.status());
    }
    let many = (0..500).fold(app.client.get(app.url("/patient/doctors")), |req, i| {
        req.header(format!("x-h{i}"), "v")
    });
    if let Ok(resp) = many.bearer_auth(&token).send().await {
        assert!(resp.status().is_client_error(), "{}", resp.status());
    }
    let (status, _) = app.get("/patient/doctors", &token).await;
    assert_eq!(status, StatusCode::OK, "still answering");
    app.stop().await;
}

/// Sends `GET /healthz` on a fresh connection and reads the whole answer (the request asks
/// the server to close), within 5 s.
async fn raw_healthz(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("an answer within 5 s")
    .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// A client trickling its request head is cut off at the header read timeout, and does
/// not keep others from being served meanwhile.
#[tokio::test]
async fn a_client_trickling_its_headers_is_closed_at_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app =
        TestApp::spawn_sqlite_with(&[("CONSULT__SERVER__HEADER_READ_TIMEOUT_MS", "800")]).await;
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let started = std::time::Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nhost: test\r\nx-slow: ";
    let mut closed_after = None;
    for byte in head.iter().chain(b"a".repeat(100).iter()) {
        if slow.write_all(&[*byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        // Others are served while the slow client trickles.
        if started.elapsed() < std::time::Duration::from_millis(300) {
            assert!(raw_healthz(app.addr).await.starts_with("HTTP/1.1 200"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut buf = [0u8; 256];
        if let Ok(read) =
            tokio::time::timeout(std::time::Duration::from_millis(1), slow.read(&mut buf)).await
        {
            // EOF or an error answer (408): the server gave up on this client.
            let _ = read;
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the server closed the trickling connection");
    assert!(
        closed_after >= std::time::Duration::from_millis(700),
        "not before the timeout: {closed_after:?}"
    );
    assert!(raw_healthz(app.addr).await.starts_with("HTTP/1.1 200"));
    app.stop().await;
}

/// Past `server.max_connections`, a new connection is answered 503 with `Retry-After` and
/// closed; once a connection closes, new ones are served again.
#[tokio::test]
async fn connections_past_the_limit_get_503_and_the_service_stays_responsive() {
    let app = TestApp::spawn_sqlite_with(&[("CONSULT__SERVER__MAX_CONNECTIONS", "4")]).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(app.addr).await.unwrap());
    }
    // The server may not have accepted all four yet: wait until a fifth is refused.
    let mut refused = String::new();
    for _ in 0..50 {
        refused = raw_healthz(app.addr).await;
        if refused.starts_with("HTTP/1.1 503") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("retry-after: 1"), "{refused}");
    let body: Value = serde_json::from_str(refused.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error"], "unavailable");
    drop(idle.pop());
    let mut answer = String::new();
    for _ in 0..50 {
        answer = raw_healthz(app.addr).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(answer.starts_with("HTTP/1.1 200"), "served again: {answer}");
    drop(idle);
    app.stop().await;
}
