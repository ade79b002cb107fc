//! The authorization matrix, generated from the served OpenAPI document: every operation
//! it lists x every caller (no token, patient, doctor, admin) x the caller's own resource
//! and someone else's. Each operation must have a row in [`rule`] (a new endpoint fails
//! this test until it is given one), each answer must be exactly the row's (401 without a
//! token, 403 for a wrong role or someone else's resource, 2xx for one's own), every status
//! answered must be declared for that operation in the document, and no answer to one
//! user ever carries another user's medical text.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Nobody,
    Patient,
    Doctor,
    Admin,
}

const CALLERS: [Caller; 4] = [
    Caller::Nobody,
    Caller::Patient,
    Caller::Doctor,
    Caller::Admin,
];

/// What an operation's path parameters name, so "own" and "other" can be told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// No resource of a user's in the path: own and other are the same request.
    Caller,
    /// A consultation: the caller's own (patient's or doctor's) or someone else's.
    Consultation,
    /// A multi-patient booking.
    Booking,
    /// A doctor any caller of the role may name (availability, an admin's doctor).
    AnyDoctor,
}

/// A matrix row: who may call it (empty: anyone, no token needed) and what it acts on.
struct Row {
    roles: &'static [Caller],
    scope: Scope,
}

/// The row of an operation; `None` for one the matrix does not know yet.
fn rule(method: &Method, path: &str) -> Option<Row> {
    use Caller::*;
    let row = |roles, scope| Some(Row { roles, scope });
    match (method.as_str(), path) {
        ("GET", "/healthz" | "/readyz" | "/metrics" | "/openapi.json" | "/dev/users")
        | ("POST", "/dev/sign-in") => row(&[], Scope::Caller),
        ("GET", "/patient/doctors" | "/patient/consultations")
        | ("POST", "/patient/doctors/check-slot" | "/patient/doctors/book" | "/patient/bookings") => {
            row(&[Patient], Scope::Caller)
        }
        (
            "GET",
            "/patient/doctors/{id}/availability" | "/patient/doctors/{id}/availability/stream",
        )
        | ("DELETE", "/patient/doctors/{id}/hold") => row(&[Patient], Scope::AnyDoctor),
        (
            "GET",
            "/patient/consultations/{id}"
            | "/patient/consultations/{id}/session"
            | "/patient/consultations/{id}/calendar.ics",
        )
        | (
            "POST",
            "/patient/consultations/{id}/cancel" | "/patient/consultations/{id}/reschedule",
        ) => row(&[Patient], Scope::Consultation),
        ("GET", "/patient/bookings/{id}") => row(&[Patient], Scope::Booking),
        ("GET", "/notifications") | ("POST", "/notifications/read") => {
            row(&[Patient, Doctor], Scope::Caller)
        }
        (
            "GET",
            "/doctor/profile"
            | "/doctor/availability"
            | "/doctor/consultations"
            | "/doctor/slots/{start}/history",
        )
        | ("PUT", "/doctor/availability")
        | ("PATCH", "/doctor/status") => row(&[Doctor], Scope::Caller),
        ("GET", "/doctor/consultations/{id}/session") => row(&[Doctor], Scope::Consultation),
        ("GET", "/admin/doctors") | ("POST", "/admin/doctors") => row(&[Admin], Scope::Caller),
        ("POST", "/admin/doctors/{id}/approve")
        | ("GET", "/admin/doctors/{id}/slots/{start}/history") => row(&[Admin], Scope::AnyDoctor),
        _ => None,
    }
}

/// Two doctors, two patients, each patient with a consultation (and a booking) of their
/// own doctor, their medical text marked so a leak can be found.
struct World {
    app: TestApp,
    /// The "own" doctor (the doctor caller) and the other one.
    doctors: [i64; 2],
    /// Patient 67 ("own") and 68 ("other").
    patients: [i64; 2],
    consultations: [i64; 2],
    bookings: [i64; 2],
    /// Fresh slots for requests that change something, so each succeeds on its own.
    next_slot: std::cell::Cell<i64>,
}

const MARK: [&str; 2] = ["own-marker-medical-text", "other-marker-medical-text"];

impl World {
    async fn new() -> Self {
        let app = TestApp::spawn().await;
        let open = json!({"name": "Dr. Matrix", "specialty": "General Practice", "timezone": "UTC",
            "availability_schedule": every_day("00:00", "24:00")});
        let doctors = [
            app.doctor_with(open.clone()).await,
            app.doctor_with(open).await,
        ];
        let patients = [67, 68];
        let mut consultations = [0; 2];
        let mut bookings = [0; 2];
        for k in 0..2 {
            let token = app.token(Patient, patients[k]);
            let (status, body) = app
                .post(
                    "/patient/doctors/book",
                    &token,
                    json!({"doctor_id": doctors[k], "scheduled_at": tomorrow_at(8, 0),
                        "consult_mode": "chat", "reason": MARK[k]}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            consultations[k] = body["consultation"]["id"].as_i64().unwrap();
            let (status, body) = app
                .post(
                    "/patient/bookings",
                    &token,
                    json!({"items": [{"doctor_id": doctors[k], "scheduled_at": tomorrow_at(8, 30),
                        "consult_mode": "chat", "patient_name": "Family member", "symptoms": MARK[k]}]}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            bookings[k] = body["booking"]["id"].as_i64().unwrap();
        }
        Self {
            app,
            doctors,
            patients,
            consultations,
            bookings,
            next_slot: std::cell::Cell::new(0),
        }
    }

    /// The next unused 30-minute slot from tomorrow 09:00 on (the doctors are open around
    /// the clock).
    fn fresh_slot(&self) -> chrono::DateTime<chrono::Utc> {
        let n = self.next_slot.get();
        self.next_slot.set(n + 1);
        tomorrow_at(9, 0) + chrono::Duration::minutes(30 * n)
    }

    fn token(&self, caller: Caller) -> Option<String> {
        match caller {
            Caller::Nobody => None,
            Caller::Patient => Some(self.app.token(Patient, self.patients[0])),
            Caller::Doctor => Some(self.app.token(Doctor, self.doctors[0])),
            Caller::Admin => Some(self.app.token(Admin, 1)),
        }
    }

    /// A consultation of patient 67 with doctor 0 that nothing else uses, for requests
    /// that change it.
    async fn fresh_consultation(&self) -> i64 {
        let (status, body) = self
            .app
            .post(
                "/patient/doctors/book",
                &self.app.token(Patient, self.patients[0]),
                json!({"doctor_id": self.doctors[0], "scheduled_at": self.fresh_slot(),
                    "consult_mode": "chat", "reason": MARK[0]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["consultation"]["id"].as_i64().unwrap()
    }

    /// The concrete request of an operation for `caller` on its own resource (`k` = 0) or
    /// someone else's (`k` = 1).
    /// Only the patient's own changes get fresh resources: every other caller is refused,
    /// and the test checks afterwards that the shared ones did not change.
    async fn request(
        &self,
        method: &Method,
        path: &str,
        scope: Scope,
        k: usize,
        caller: Caller,
    ) -> (String, Option<Value>) {
        let changes = *method != Method::GET;
        let id = match scope {
            Scope::Caller => 0,
            Scope::Consultation if k == 0 && changes && caller == Caller::Patient => {
                self.fresh_consultation().await
            }
            Scope::Consultation => self.consultations[k],
            Scope::Booking => self.bookings[k],
            Scope::AnyDoctor => self.doctors[k],
        };
        let start = tomorrow_at(8, 0).to_rfc3339().replace('+', "%2B");
        let concrete = path
            .replace("{id}", &id.to_string())
            .replace("{start}", &start);
        let body = match (method.as_str(), path) {
            ("POST", "/dev/sign-in") => Some(json!({"role": "patient"})),
            ("POST", "/patient/doctors/check-slot") => {
                Some(json!({"doctor_id": self.doctors[0], "scheduled_at": self.fresh_slot()}))
            }
            ("POST", "/patient/doctors/book") => Some(json!({"doctor_id": self.doctors[0],
                "scheduled_at": self.fresh_slot(), "consult_mode": "chat"})),
            ("POST", "/patient/bookings") => Some(json!({"items": [{"doctor_id": self.doctors[0],
                "scheduled_at": self.fresh_slot(), "consult_mode": "chat", "patient_name": "Kin"}]})),
            ("POST", "/patient/consultations/{id}/reschedule") => {
                Some(json!({"scheduled_at": self.fresh_slot()}))
            }
            ("POST", "/notifications/read") => Some(json!({"ids": []})),
            ("PUT", "/doctor/availability") => {
                Some(json!({"availability_schedule": every_day("00:00", "24:00")}))
            }
            ("PATCH", "/doctor/status") => Some(json!({"is_available": true})),
            ("POST", "/admin/doctors") => Some(json!({"name": "Dr. Matrix",
                "specialty": "General Practice", "timezone": "UTC"})),
            (_, _) if changes => Some(json!({})),
            _ => None,
        };
        (concrete, body)
    }

    /// Status and body; a stream's body is not read (it does not end).
    async fn send(
        &self,
        method: &Method,
        path: &str,
        caller: Caller,
        body: Option<Value>,
    ) -> (StatusCode, String) {
        let mut req = self.app.client.request(method.clone(), self.app.url(path));
        if let Some(t) = self.token(caller) {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request reaches the server");
        let status = resp.status();
        let streaming = resp.headers().get("content-type").is_some_and(|v| {
            v.to_str()
                .unwrap_or_default()
                .starts_with("text/event-stream")
        });
        let text = if streaming {
            String::new()
        } else {
            resp.text().await.unwrap_or_default()
        };
        (status, text)
    }
}

/// Every (method, path) of the document, with its declared statuses.
fn operations(doc: &Value) -> Vec<(Method, String, BTreeSet<u16>)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let declared = op["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .filter_map(|s| s.parse().ok())
                .collect();
            ops.push((method, path.clone(), declared));
        }
    }
    ops
}

#[tokio::test]
async fn every_operation_of_the_openapi_document_answers_every_caller_as_the_matrix_says() {
    let world = World::new().await;
    let (status, doc) = world
        .app
        .call(Method::GET, "/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let ops = operations(&doc);
    assert!(
        ops.len() >= 30,
        "the document lists every operation ({})",
        ops.len()
    );
    let unknown: Vec<String> = ops
        .iter()
        .filter(|(m, p, _)| rule(m, p).is_none())
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    assert!(
        unknown.is_empty(),
        "operations without a matrix row: {unknown:?}"
    );

    let mut failures = Vec::new();
    let mut checked = 0;
    for (method, path, declared) in &ops {
        let row = rule(method, path).expect("checked above");
        let owners: &[usize] = if row.scope == Scope::Caller {
            &[0]
        } else {
            &[0, 1]
        };
        for caller in CALLERS {
            for &k in owners {
                let (concrete, body) = world.request(method, path, row.scope, k, caller).await;
                let (status, text) = world.send(method, &concrete, caller, body).await;
                checked += 1;
                let allowed = row.roles.is_empty() || row.roles.contains(&caller);
                let others = k == 1 && matches!(row.scope, Scope::Consultation | Scope::Booking);
                let want: &[u16] = if row.roles.is_empty() {
                    &[200]
                } else if caller == Caller::Nobody {
                    &[401]
                } else if !allowed || others {
                    &[403]
                } else {
                    &[200, 201]
                };
                let what = format!(
                    "{caller:?} {method} {concrete} ({})",
                    if k == 0 { "own" } else { "other's" }
                );
                if !want.contains(&status.as_u16()) {
                    failures.push(format!("{what}: {status}, wanted {want:?}: {text:.200}"));
                }
                if !declared.contains(&status.as_u16()) {
                    failures.push(format!(
                        "{what}: {status} is not declared in the document ({declared:?})"
                    ));
                }
                if caller != Caller::Admin && text.contains(MARK[1]) {
                    failures.push(format!("{what}: carries the other patient's medical text"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} answers wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The shared consultations did not change: only fresh ones were cancelled or moved.
    for k in 0..2 {
        let (_, c) = world
            .app
            .get(
                &format!("/patient/consultations/{}", world.consultations[k]),
                &world.app.token(Patient, world.patients[k]),
            )
            .await;
        assert_eq!(c["consultation"]["status"], "scheduled", "{c}");
        assert_eq!(
            c["consultation"]["scheduled_at"],
            json!(tomorrow_at(8, 0)),
            "{c}"
        );
    }
    world.app.stop().await;
}
